//! The store as the data API's `RecordStore`.

use std::collections::HashMap;
use std::sync::Arc;

use tessera_metadata::{Filter, ObjectDefinition, Registry};

use super::Store;
use crate::graphql::{
    AggregateQuery, AggregateRow, Caller, DataResult, ListQuery, Page, Record, RecordInput, RecordStore, Upsert,
};

/// Rows of a page; the API layer caps `first`/`last` before calling.
fn page_limit(query: &ListQuery) -> u64 {
    query.page.first.or(query.page.last).unwrap_or(20)
}

#[async_trait::async_trait]
impl RecordStore for Store {
    async fn get(
        &self,
        _caller: &Caller,
        object: &ObjectDefinition,
        id: &str,
        columns: &[String],
    ) -> DataResult<Option<Record>> {
        Ok(self.read_one(object, id, columns, false).await?)
    }

    async fn list(&self, _caller: &Caller, object: &ObjectDefinition, query: &ListQuery) -> DataResult<Page> {
        Ok(self.read_page(object, query, page_limit(query)).await?)
    }

    async fn load_many(
        &self,
        _caller: &Caller,
        object: &ObjectDefinition,
        ids: &[String],
        columns: &[String],
    ) -> DataResult<Vec<Record>> {
        Ok(self.read_many(object, ids, columns).await?)
    }

    async fn load_related(
        &self,
        _caller: &Caller,
        object: &ObjectDefinition,
        column: &str,
        parents: &[String],
        query: &ListQuery,
    ) -> DataResult<HashMap<String, Page>> {
        Ok(self.read_related(object, column, parents, query, page_limit(query)).await?)
    }

    async fn aggregate(
        &self,
        _caller: &Caller,
        object: &ObjectDefinition,
        query: &AggregateQuery,
    ) -> DataResult<Vec<AggregateRow>> {
        Ok(self.read_aggregate(object, query).await?)
    }

    async fn create(
        &self,
        caller: &Caller,
        registry: &Arc<Registry>,
        object: &ObjectDefinition,
        inputs: Vec<RecordInput>,
        upsert: Option<Upsert>,
    ) -> DataResult<Vec<Record>> {
        self.create_records(caller, registry, object, inputs, upsert).await
    }

    async fn update(
        &self,
        caller: &Caller,
        registry: &Arc<Registry>,
        object: &ObjectDefinition,
        id: &str,
        input: RecordInput,
        expected_version: Option<i64>,
    ) -> DataResult<Record> {
        self.update_record(caller, registry, object, id, input, expected_version).await
    }

    async fn update_many(
        &self,
        caller: &Caller,
        registry: &Arc<Registry>,
        object: &ObjectDefinition,
        filter: Option<Filter>,
        input: RecordInput,
    ) -> DataResult<Vec<Record>> {
        self.update_records(caller, registry, object, filter, input).await
    }

    async fn delete(&self, caller: &Caller, object: &ObjectDefinition, id: &str) -> DataResult<Record> {
        self.set_deleted(caller, object, id, true).await
    }

    async fn restore(&self, caller: &Caller, object: &ObjectDefinition, id: &str) -> DataResult<Record> {
        self.set_deleted(caller, object, id, false).await
    }

    async fn destroy(
        &self,
        caller: &Caller,
        registry: &Arc<Registry>,
        object: &ObjectDefinition,
        id: &str,
    ) -> DataResult<String> {
        self.destroy_record(caller, registry, object, id).await
    }
}

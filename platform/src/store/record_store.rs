//! The store as the data API's `RecordStore`: every call is bounded by the caller's access
//! (`enforce`) before it reaches SQL.

use std::collections::HashMap;
use std::sync::Arc;

use tessera_metadata::{Action, Filter, ObjectDefinition, Registry};

use super::{Store, enforce};
use crate::graphql::{
    AggregateQuery, AggregateRow, Caller, DataResult, ListQuery, Page, Record, RecordInput, RecordStore, Upsert,
};

/// Rows of a page; the API layer caps `first`/`last` before calling.
fn page_limit(query: &ListQuery) -> u64 {
    query.page.first.or(query.page.last).unwrap_or(20)
}

/// A list query as the caller may run it: scoped filter, readable sort keys and columns.
fn scoped_list(caller: &Caller, object: &ObjectDefinition, query: &ListQuery) -> DataResult<ListQuery> {
    enforce::check_order(caller, object, &query.order)?;
    Ok(ListQuery {
        filter: enforce::read_filter(caller, object, query.filter.as_ref())?,
        order: query.order.clone(),
        page: query.page.clone(),
        columns: enforce::readable_columns(caller, object, &query.columns),
        with_total: query.with_total,
    })
}

#[async_trait::async_trait]
impl RecordStore for Store {
    async fn get(
        &self,
        caller: &Caller,
        object: &ObjectDefinition,
        id: &str,
        columns: &[String],
    ) -> DataResult<Option<Record>> {
        let scope = enforce::rows(caller, object.name.as_str(), Action::Read)?;
        let columns = enforce::readable_columns(caller, object, columns);
        Ok(self.read_one(object, id, &columns, false, scope.as_ref()).await?)
    }

    async fn list(&self, caller: &Caller, object: &ObjectDefinition, query: &ListQuery) -> DataResult<Page> {
        let query = scoped_list(caller, object, query)?;
        Ok(self.read_page(object, &query, page_limit(&query)).await?)
    }

    async fn load_many(
        &self,
        caller: &Caller,
        object: &ObjectDefinition,
        ids: &[String],
        columns: &[String],
    ) -> DataResult<Vec<Record>> {
        // A lookup to a record the caller may not see resolves to nothing, not to an error.
        let Ok(scope) = enforce::rows(caller, object.name.as_str(), Action::Read) else { return Ok(Vec::new()) };
        let columns = enforce::readable_columns(caller, object, columns);
        Ok(self.read_many(object, ids, &columns, scope.as_ref()).await?)
    }

    async fn load_related(
        &self,
        caller: &Caller,
        object: &ObjectDefinition,
        column: &str,
        parents: &[String],
        query: &ListQuery,
    ) -> DataResult<HashMap<String, Page>> {
        enforce::require_readable(caller, object, column)?;
        let query = scoped_list(caller, object, query)?;
        Ok(self.read_related(object, column, parents, &query, page_limit(&query)).await?)
    }

    async fn aggregate(
        &self,
        caller: &Caller,
        object: &ObjectDefinition,
        query: &AggregateQuery,
    ) -> DataResult<Vec<AggregateRow>> {
        for column in query.group_by.iter().chain(query.aggregates.iter().map(|(_, c)| c)) {
            enforce::require_readable(caller, object, column)?;
        }
        let query = AggregateQuery {
            filter: enforce::read_filter(caller, object, query.filter.as_ref())?,
            group_by: query.group_by.clone(),
            aggregates: query.aggregates.clone(),
            limit: query.limit,
        };
        Ok(self.read_aggregate(object, &query).await?)
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

//! The store as the data API's `RecordStore`: every call is bounded by the caller's access
//! (`enforce`) before it reaches SQL.

use std::collections::HashMap;
use std::sync::Arc;

use tessera_metadata::{Action, Filter, ObjectDefinition, Registry};

use super::sensitive::Supplied;
use super::{Store, Via, enforce};
use crate::graphql::{
    AggregateQuery, AggregateRow, Caller, DataError, DataResult, ListQuery, Page, Record, RecordInput, RecordStore,
    Upsert,
};

/// Rows of a page; the API layer caps `first`/`last` before calling.
fn page_limit(query: &ListQuery) -> u64 {
    query.page.first.or(query.page.last).unwrap_or(20)
}

/// A list query as the caller may run it: scoped filter (blind-index conditions hashed),
/// readable sort keys and columns.
fn scoped_list(store: &Store, caller: &Caller, object: &ObjectDefinition, query: &ListQuery) -> DataResult<ListQuery> {
    enforce::check_order(caller, object, &query.order)?;
    Ok(ListQuery {
        filter: store.hash_filter_opt(enforce::read_filter(caller, object, query.filter.as_ref())?)?,
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
        let Some(record) = self.read_one(object, id, &columns, false, scope.as_ref()).await? else { return Ok(None) };
        let mut records = [record];
        self.reveal(caller, object, &mut records, Via::Get, None).await?;
        let [record] = records;
        Ok(Some(record))
    }

    async fn list(&self, caller: &Caller, object: &ObjectDefinition, query: &ListQuery) -> DataResult<Page> {
        let scoped = scoped_list(self, caller, object, query)?;
        self.admit_probes(caller, query.filter.as_ref()).await?;
        let query = scoped;
        let mut page = self.read_page(object, &query, page_limit(&query)).await?;
        self.reveal(caller, object, &mut page.records, Via::List, None).await?;
        Ok(page)
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
        let mut records = self.read_many(object, ids, &columns, scope.as_ref()).await?;
        self.reveal(caller, object, &mut records, Via::Lookup, None).await?;
        Ok(records)
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
        let scoped = scoped_list(self, caller, object, query)?;
        self.admit_probes(caller, query.filter.as_ref()).await?;
        let query = scoped;
        let mut pages = self.read_related(object, column, parents, &query, page_limit(&query)).await?;
        for page in pages.values_mut() {
            self.reveal(caller, object, &mut page.records, Via::List, None).await?;
        }
        Ok(pages)
    }

    async fn aggregate(
        &self,
        caller: &Caller,
        object: &ObjectDefinition,
        query: &AggregateQuery,
    ) -> DataResult<Vec<AggregateRow>> {
        for column in query.group_by.iter().chain(query.aggregates.iter().map(|(_, c)| c)) {
            enforce::require_readable(caller, object, column)?;
            if let Some(f) = object.fields.iter().find(|f| &f.column() == column && f.is_encrypted()) {
                return Err(DataError::bad_input(format!(
                    "`{}` is encrypted: grouping by it or taking its minimum or maximum would need its plaintext",
                    f.graphql_name()
                )));
            }
            let grant = caller.access.object(object.name.as_str());
            if let Some(f) = object.fields.iter().find(|f| {
                &f.column() == column
                    && f.sensitive.is_some_and(|s| s.mask != tessera_metadata::Mask::None)
                    && !grant.unmasked(f.name.as_str())
            }) {
                return Err(DataError::bad_input(format!(
                    "`{}` is shown to you masked: grouping by it or taking its minimum or maximum would reveal it",
                    f.graphql_name()
                )));
            }
        }
        let filter = self.hash_filter_opt(enforce::read_filter(caller, object, query.filter.as_ref())?)?;
        self.admit_probes(caller, query.filter.as_ref()).await?;
        let query = AggregateQuery {
            filter,
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
        let mut supplied = Supplied::of(object, &inputs);
        if let Some(u) = &upsert {
            supplied = supplied.upserted(object, &u.update);
        }
        let caller = &self.in_chain(caller, object);
        let written = self.create_records(caller, registry, object, inputs, upsert).await?;
        self.after_save(caller, registry, object, &written).await;
        // Inserted records hold the values written; those an upsert updated, stored values.
        let supplied = supplied.holding_plain_text(written.iter().map(|(_, old)| old.is_none()).collect());
        let mut records: Vec<Record> = written.into_iter().map(|(r, _)| r).collect();
        self.reveal(caller, object, &mut records, Via::Write, Some(&supplied)).await?;
        Ok(records)
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
        let supplied = Supplied::of(object, std::slice::from_ref(&input));
        let caller = &self.in_chain(caller, object);
        let (record, old) = self.update_record(caller, registry, object, id, input, expected_version).await?;
        let written = [(record, Some(old))];
        self.after_save(caller, registry, object, &written).await;
        let [(record, _)] = written;
        let mut records = [record];
        self.reveal(caller, object, &mut records, Via::Write, Some(&supplied)).await?;
        let [record] = records;
        Ok(record)
    }

    async fn update_many(
        &self,
        caller: &Caller,
        registry: &Arc<Registry>,
        object: &ObjectDefinition,
        filter: Option<Filter>,
        input: RecordInput,
    ) -> DataResult<Vec<Record>> {
        let supplied = Supplied::of(object, std::slice::from_ref(&input));
        let caller = &self.in_chain(caller, object);
        self.admit_probes(caller, filter.as_ref()).await?;
        let filter = self.hash_filter_opt(filter)?;
        let written: Vec<(Record, Option<Record>)> = self
            .update_records(caller, registry, object, filter, input)
            .await?
            .into_iter()
            .map(|(r, old)| (r, Some(old)))
            .collect();
        self.after_save(caller, registry, object, &written).await;
        let mut records: Vec<Record> = written.into_iter().map(|(r, _)| r).collect();
        self.reveal(caller, object, &mut records, Via::Write, Some(&supplied)).await?;
        Ok(records)
    }

    async fn delete(&self, caller: &Caller, object: &ObjectDefinition, id: &str) -> DataResult<Record> {
        let mut records = [self.set_deleted(caller, object, id, true).await?];
        self.reveal(caller, object, &mut records, Via::Write, None).await?;
        let [record] = records;
        Ok(record)
    }

    async fn restore(&self, caller: &Caller, object: &ObjectDefinition, id: &str) -> DataResult<Record> {
        let mut records = [self.set_deleted(caller, object, id, false).await?];
        self.reveal(caller, object, &mut records, Via::Write, None).await?;
        let [record] = records;
        Ok(record)
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

    async fn run_action(
        &self,
        caller: &Caller,
        registry: &Arc<Registry>,
        object: &Arc<ObjectDefinition>,
        id: &str,
        action: &str,
        input: Option<serde_json::Value>,
    ) -> DataResult<serde_json::Value> {
        Store::run_action(self, caller, registry, object, id, action, input).await
    }
}

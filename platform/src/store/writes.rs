//! The write half of the record pipeline: defaults, coercion and validation of input, lookup
//! and uniqueness checks, auto numbers, optimistic versions, the recycle bin and the audit
//! trail, each write in one transaction.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend};
use sea_query::{Expr, ExprTrait, Query};
use tessera_metadata::{
    Action, FieldDefinition, FieldIssue, FieldType, Filter, IssueCode, ObjectDefinition, Registry, Value,
};

use super::audit::{AuditEntry, append, append_rows};
use super::codec::{Storage, storage, to_sql};
use super::fence::Reach;
use super::filter::condition;
use super::reads::{SYSTEM_COLUMNS, may_be_record_id, read_columns};
use super::scripts::SaveJob;
use super::validation::{checked_columns, coerce_input};
use super::{Store, StoreError, enforce};
use crate::graphql::{Caller, DataError, DataResult, Record, RecordInput, Upsert};

/// Most records one `updateMany` may touch.
pub const MAX_UPDATE_MANY: usize = 10_000;

/// Parameters per statement, under SQLite's and PostgreSQL's limits.
const MAX_PARAMS: usize = 30_000;

impl From<StoreError> for DataError {
    fn from(e: StoreError) -> DataError {
        match e {
            StoreError::Refused(message) => DataError::bad_input(message),
            StoreError::Db(db) if is_unique_violation(&db) => DataError::Conflict {
                message: "a unique field already has this value".into(),
                field_errors: Vec::new(),
            },
            StoreError::Db(db) if is_reference_violation(&db) => DataError::Conflict {
                message: "a record it refers to was removed at the same time; try again".into(),
                field_errors: Vec::new(),
            },
            StoreError::Db(db) if is_timeout(&db) => DataError::Timeout,
            other => {
                tracing::error!(error = %other, "store failure");
                DataError::Internal
            }
        }
    }
}

impl From<sea_orm::DbErr> for DataError {
    fn from(e: sea_orm::DbErr) -> DataError {
        StoreError::Db(e).into()
    }
}

fn is_unique_violation(e: &sea_orm::DbErr) -> bool {
    let s = e.to_string();
    s.contains("UNIQUE constraint failed") || s.contains("duplicate key value")
}

/// A lookup's foreign key refused a write: on PostgreSQL, where writers run side by side, the
/// record it names was destroyed after the write checked its references.
fn is_reference_violation(e: &sea_orm::DbErr) -> bool {
    let s = e.to_string();
    s.contains("violates foreign key constraint") || s.contains("FOREIGN KEY constraint failed")
}

fn is_timeout(e: &sea_orm::DbErr) -> bool {
    let s = e.to_string();
    s.contains("statement timeout") || s.contains("canceling statement") || s.contains("database is locked")
}

/// Microsecond precision: what PostgreSQL keeps, so values and cursors round-trip exactly.
pub fn now() -> DateTime<Utc> {
    let t = Utc::now();
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// A validated record about to be written: field column → value.
pub(super) type Row = tessera_metadata::Values;

/// The audit image of a record: field api names → API values, in definition order, then the
/// owner; with `only`, just those columns. Creates serialise it straight into their audit
/// entries' text (`image_text`); other writes keep it as a JSON value (`image`).
struct Image<'a> {
    object: &'a ObjectDefinition,
    values: &'a Row,
    only: Option<&'a HashSet<String>>,
}

impl serde::Serialize for Image<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let wanted = |column: &str| self.only.is_none_or(|o| o.contains(column));
        let mut map = s.serialize_map(None)?;
        for f in &self.object.fields {
            let column = f.column_name();
            if let Some(v) = self.values.get(column.as_ref()).filter(|_| wanted(&column)) {
                map.serialize_entry(f.name.as_str(), &v.as_json(f))?;
            }
        }
        if let Some(Value::Text(owner)) = self.values.get("owner_id").filter(|_| wanted("owner_id")) {
            map.serialize_entry("owner_id", owner)?;
        }
        map.end()
    }
}

// Neither can fail: an image's keys are strings, and its values plain JSON.
fn image(object: &ObjectDefinition, values: &Row, only: Option<&HashSet<String>>) -> serde_json::Value {
    serde_json::to_value(Image { object, values, only }).unwrap_or_default()
}

fn image_text(object: &ObjectDefinition, values: &Row) -> String {
    serde_json::to_string(&Image { object, values, only: None }).unwrap_or_default()
}

/// `INSERT INTO table (columns) VALUES (…), (…)` with `values` row after row, written directly
/// rather than through sea-query's expression tree: batches bind thousands of values, and this
/// builds the text once and moves each value into the statement once.
///
/// On SQLite it is `INSERT OR FAIL`: with the default `ABORT`, a multi-row insert inside a
/// transaction must first copy every page it touches into a statement journal so that a failing
/// row can undo the rows before it; `FAIL` keeps those rows instead, which changes nothing here
/// because every caller runs it inside a transaction that is rolled back on any error.
pub(super) fn insert_many<C: AsRef<str>>(
    backend: DbBackend,
    table: &str,
    columns: &[C],
    values: Vec<sea_query::Value>,
) -> sea_orm::Statement {
    use std::fmt::Write;
    let quote = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
    let mut sql = String::with_capacity(64 + values.len() * 5);
    sql.push_str(if backend == DbBackend::Sqlite { "INSERT OR FAIL INTO " } else { "INSERT INTO " });
    sql.push_str(&quote(table));
    sql.push_str(" (");
    sql.push_str(&columns.iter().map(|c| quote(c.as_ref())).collect::<Vec<_>>().join(", "));
    sql.push_str(") VALUES ");
    let width = columns.len().max(1);
    for i in 0..values.len() {
        sql.push_str(match (i % width == 0, i == 0) {
            (true, true) => "(",
            (true, false) => "), (",
            (false, _) => ", ",
        });
        match backend {
            DbBackend::Postgres => {
                let _ = write!(sql, "${}", i + 1);
            }
            _ => sql.push('?'),
        }
    }
    sql.push(')');
    sea_orm::Statement::from_sql_and_values(backend, sql, values)
}

impl Store {
    /// Reserves `n` consecutive numbers of an auto-number field inside the transaction, so a
    /// rollback gives them back: no gaps, no duplicates.
    async fn reserve_numbers(
        &self,
        txn: &DatabaseTransaction,
        object: &ObjectDefinition,
        field: &FieldDefinition,
        n: i64,
    ) -> DataResult<i64> {
        let stmt = Query::update()
            .table("sys_sequences")
            .value("next_value", Expr::col("next_value").add(n))
            .and_where(Expr::col("object").eq(object.name.as_str()))
            .and_where(Expr::col("field").eq(field.name.as_str()))
            .returning_col("next_value")
            .to_owned();
        let row = txn
            .query_one(&stmt)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("no sequence for {}.{}", object.name, field.name)))?;
        let next: i64 = row.try_get_by_index(0)?;
        Ok(next - n)
    }

    /// The statements that insert `rows`. A batch of creates builds them before it takes the
    /// writer lock when nothing under the lock changes its rows (no auto number to fill in, no
    /// upsert), so that binding thousands of values does not keep other writers waiting.
    fn insert_statements(&self, object: &ObjectDefinition, rows: &[&Row]) -> Vec<sea_orm::Statement> {
        if rows.is_empty() {
            return Vec::new();
        }
        let mut columns: Vec<String> = SYSTEM_COLUMNS.iter().map(|c| c.to_string()).collect();
        columns.extend(object.fields.iter().map(|f| f.column()));
        columns.extend(object.fields.iter().filter(|f| f.is_searchable()).map(|f| f.blind_index_column()));
        let storages: Vec<Storage> = columns.iter().map(|c| stored_as(object, c)).collect();
        let per_statement = (MAX_PARAMS / columns.len()).max(1);
        rows.chunks(per_statement)
            .map(|chunk| {
                let mut values = Vec::with_capacity(chunk.len() * columns.len());
                for row in chunk {
                    values.extend(
                        columns.iter().zip(&storages).map(|(c, st)| to_sql(row.get(c).unwrap_or(&Value::Null), *st)),
                    );
                }
                insert_many(self.backend, &object.table(), &columns, values)
            })
            .collect()
    }

    /// A write transaction without the metadata fence (`begin_fenced`): for a soft delete or
    /// restore, which writes no field value a changed definition could find in the wrong form.
    async fn begin(&self) -> DataResult<DatabaseTransaction> {
        Ok(self.begin_write().await?)
    }

    /// Creates records (all or nothing); with `upsert`, inputs matching an existing record on
    /// the conflict field update it instead.
    pub async fn create_records(
        &self,
        caller: &Caller,
        registry: &Arc<Registry>,
        object: &ObjectDefinition,
        inputs: Vec<RecordInput>,
        upsert: Option<Upsert>,
    ) -> DataResult<Vec<(Record, Option<Record>)>> {
        enforce::require(caller, object, Action::Create)?;
        let conflict_field = match &upsert {
            Some(u) => Some(upsert_field(object, u)?),
            None => None,
        };
        // An upsert updates the records it matches, so it matches only those the caller may update.
        let update_scope = match &upsert {
            Some(_) => enforce::rows(caller, object.name.as_str(), Action::Update)?,
            None => None,
        };
        let mut rows: Vec<Row> = Vec::with_capacity(inputs.len());
        let mut issues = Vec::new();
        for (i, input) in inputs.iter().enumerate() {
            issues.extend(enforce::write_issues(caller, object, i, input));
            match coerce_input(object, i, input, true) {
                Ok(r) => rows.push(r),
                Err(mut e) => {
                    issues.append(&mut e);
                    rows.push(Row::default());
                }
            }
        }
        if !issues.is_empty() {
            return Err(DataError::invalid_fields(issues));
        }
        // BEFORE_SAVE scripts, formulas and validation rules, before the writer lock. An
        // upsert runs them under the lock instead, once it knows which inputs update records.
        let scripted = self.has_save_scripts(registry, object)?;
        if scripted && upsert.is_none() {
            let object = registry.require(object.name.as_str()).map_err(|e| DataError::bad_input(e.to_string()))?;
            let jobs = rows.into_iter().map(|record| SaveJob { record, old: None }).collect();
            let (saved, issues) = self.run_save_scripts(caller, registry, object, jobs).await?;
            if !issues.is_empty() {
                return Err(DataError::invalid_fields(issues));
            }
            rows = saved.into_iter().map(|(record, _)| record).collect();
        }
        // New records get their ids, system columns and (when no auto number has to be filled
        // in under the lock) audit images before the writer lock is taken, so that little but
        // the database's own work is serialised. Inputs that an upsert turns into updates
        // drop theirs. Audit entries themselves are made under the lock, so their ids follow
        // the order of commits.
        let now = now();
        let auto_numbers: Vec<&FieldDefinition> =
            object.fields.iter().filter(|f| f.field_type == FieldType::AutoNumber).collect();
        // Encrypted values are bound to their record, so they are sealed once it has an id;
        // the audit image then holds the same envelopes as the table.
        let finish = |(id, row, after): &mut (String, Row, Option<String>)| -> DataResult<()> {
            self.seal_row(object, id, row)?;
            *after = auto_numbers.is_empty().then(|| image_text(object, row));
            Ok(())
        };
        let fresh = |input: Row| -> (String, Row, Option<String>) {
            let (id, row) = new_row(caller, input, now);
            (id, row, None)
        };
        let prepare = |input: &Row| -> DataResult<(String, Row, Option<String>)> {
            let mut prepared = fresh(input.clone());
            finish(&mut prepared)?;
            Ok(prepared)
        };
        // Ids in input order (they are the default sort), then sealing and audit images, the
        // costly part, on two threads for large batches. Without an upsert, the inputs move
        // into the new rows, and `rows` keeps only what is read after sealing: the values
        // whose references and uniqueness are checked, and encrypted values in plain text,
        // which the writer gets back. An upsert keeps whole inputs: some become updates.
        let mut prepared: Vec<(String, Row, Option<String>)> = match upsert {
            Some(_) => rows.iter().map(|r| fresh(r.clone())).collect(),
            None => {
                // A handful of columns, each looked up in every row (not every column of every
                // row tested against them).
                let encrypted = object.fields.iter().filter(|f| f.is_encrypted()).map(|f| f.column());
                let kept: Vec<String> = checked_columns(object).chain(encrypted).collect();
                let checked: Vec<Row> = rows
                    .iter()
                    .map(|r| kept.iter().filter_map(|c| Some((c.clone(), r.get(c)?.clone()))).collect())
                    .collect();
                let inputs = std::mem::replace(&mut rows, checked);
                inputs.into_iter().map(fresh).collect()
            }
        };
        on_two_threads(&mut prepared, finish)?;
        let early_inserts = (upsert.is_none() && auto_numbers.is_empty()).then(|| {
            let rows: Vec<&Row> = prepared.iter().map(|(_, row, _)| row).collect();
            self.insert_statements(object, &rows)
        });
        // A batch that only inserts checks its references on a reader before it takes the
        // writer lock (on SQLite, where that lock serialises every write): inserts cannot hide
        // the records it refers to, so the check still holds under the lock if no other kind
        // of write ran in between (`hiding_writes`), and otherwise is made again there.
        let only_inserts = upsert.is_none() && !scripted;
        let early_references = match self.hiding_epoch().filter(|_| only_inserts) {
            Some(epoch) => {
                let all: Vec<(usize, &Row)> = rows.iter().enumerate().collect();
                Some((epoch, self.check_references(&self.db, caller, registry, object, &all).await?))
            }
            None => None,
        };
        let _guard = if only_inserts { self.insert_guard().await } else { self.write_guard().await };
        let txn = self.begin_fenced(registry, object, Reach::Object).await?;
        // Split upserts into updates of existing records and inserts.
        let mut existing: HashMap<usize, Record> = HashMap::new();
        if let (Some(field), Some(u)) = (conflict_field, &upsert) {
            let column = field.column();
            // An encrypted field matches through its blind index.
            let match_column = if field.is_encrypted() { field.blind_index_column() } else { column.clone() };
            let mut row_keys: Vec<Vec<Value>> = Vec::with_capacity(rows.len());
            for r in &rows {
                row_keys.push(match r.get(&column) {
                    Some(v) => self.match_keys(field, v)?,
                    None => Vec::new(),
                });
            }
            let match_storage = stored_as(object, &match_column);
            let keys: Vec<sea_query::Value> = row_keys.iter().flatten().map(|v| to_sql(v, match_storage)).collect();
            let mut cols: Vec<String> = object.fields.iter().map(|f| f.column()).collect();
            if field.is_encrypted() {
                cols.push(match_column.clone());
            }
            let mut read = read_columns(object, &cols);
            if field.is_encrypted() {
                read.push(super::reads::ReadColumn { name: match_column.clone(), storage: match_storage });
            }
            let mut by_key: HashMap<String, Record> = HashMap::new();
            for chunk in keys.chunks(1000) {
                let mut q = Query::select();
                q.columns(read.iter().map(|c| c.name.clone()))
                    .from(object.table())
                    .and_where(Expr::col(match_column.clone()).is_in(chunk.iter().cloned()))
                    .and_where(Expr::col("deleted_at").is_null());
                if let Some(f) = &update_scope {
                    q.cond_where(condition(f));
                }
                if self.backend == DbBackend::Postgres {
                    q.lock(sea_query::LockType::Update);
                }
                for row in txn.query_all(&q).await? {
                    let mut rec = self.decode_record(&row, &read)?;
                    let key = format!("{:?}", rec.get(&match_column));
                    if field.is_encrypted() {
                        rec.values.remove(&match_column);
                    }
                    by_key.insert(key, rec);
                }
            }
            for (i, r) in rows.iter_mut().enumerate() {
                if let Some(rec) = row_keys[i].iter().find_map(|k| by_key.get(&format!("{:?}", k))) {
                    // Only the listed fields overwrite an existing record.
                    let allowed: HashSet<String> =
                        u.update.iter().filter_map(|n| object.field(n)).map(|f| f.column()).collect();
                    r.retain(|c, _| allowed.contains(c));
                    existing.insert(i, rec.clone());
                }
            }
        }
        if scripted && upsert.is_some() {
            // The inputs that create records run the scripts as creates (those that update
            // records run them as updates, below), before references and uniqueness are checked.
            let def = registry.require(object.name.as_str()).map_err(|e| DataError::bad_input(e.to_string()))?;
            let inserts: Vec<usize> = (0..rows.len()).filter(|i| !existing.contains_key(i)).collect();
            let jobs = inserts.iter().map(|&i| SaveJob { record: std::mem::take(&mut rows[i]), old: None }).collect();
            let (saved, mut issues) = self.run_save_scripts(caller, registry, def, jobs).await?;
            if !issues.is_empty() {
                for issue in &mut issues {
                    issue.index = inserts[issue.index];
                }
                return Err(DataError::invalid_fields(issues));
            }
            for (&i, (record, _)) in inserts.iter().zip(saved) {
                prepared[i] = prepare(&record)?;
                rows[i] = record;
            }
            // Those that update records run them as updates, over the record each updates, so
            // that what the scripts set is checked with the rest of the patch below.
            let mut matched: Vec<(usize, &Record)> = existing.iter().map(|(&i, rec)| (i, rec)).collect();
            matched.sort_by_key(|(i, _)| *i);
            for (i, rec) in matched {
                let given = std::mem::take(&mut rows[i]);
                rows[i] =
                    self.scripted_patch(caller, registry, object, rec, given).await.map_err(|e| at_index(e, i))?;
            }
        }
        let all: Vec<(usize, &Row)> = rows.iter().enumerate().collect();
        let mut issues = match early_references {
            Some((epoch, issues)) if self.hiding_epoch() == Some(epoch) => issues,
            _ => self.check_references(&txn, caller, registry, object, &all).await?,
        };
        let exclude: HashSet<String> = existing.values().map(|r| r.id.clone()).collect();
        issues.extend(self.check_unique(&txn, object, &all, &exclude).await?);
        if !issues.is_empty() {
            issues.sort_by_key(|i| i.index);
            let unique_only = issues.iter().all(|i| i.code == IssueCode::Unique);
            return Err(if unique_only {
                DataError::Conflict { message: "a unique field already has this value".into(), field_errors: issues }
            } else {
                DataError::invalid_fields(issues)
            });
        }
        let inserting = rows.len() - existing.len();
        let mut numbers: Vec<(&FieldDefinition, i64)> = Vec::with_capacity(auto_numbers.len());
        for f in auto_numbers {
            numbers.push((f, self.reserve_numbers(&txn, object, f, inserting as i64).await?));
        }
        let mut new_rows: Vec<(usize, String, Row)> = Vec::with_capacity(inserting);
        let mut out: Vec<Option<(Record, Option<Record>)>> = vec![None; rows.len()];
        // Creates' audit entries, and their after images as JSON text.
        let mut created: Vec<AuditEntry> = Vec::with_capacity(inserting);
        let mut afters: Vec<String> = Vec::with_capacity(inserting);
        let new = prepared.into_iter().enumerate().filter(|(i, _)| !existing.contains_key(i));
        for (n, (i, (id, mut row, after))) in new.enumerate() {
            for (f, start) in &numbers {
                row.insert(f.column(), Value::Text(f.format_auto_number(start + n as i64)));
            }
            afters.push(after.unwrap_or_else(|| image_text(object, &row)));
            created
                .push(AuditEntry::new("record", "create", Some(&caller.user_id)).on(object.name.as_str(), Some(&id)));
            new_rows.push((i, id, row));
        }
        let inserts = match early_inserts {
            Some(statements) => statements,
            None => self.insert_statements(object, &new_rows.iter().map(|(_, _, row)| row).collect::<Vec<_>>()),
        };
        for statement in inserts {
            if let Err(e) = txn.execute_raw(statement).await {
                drop(txn);
                return Err(self.insert_failure(e, caller, registry, object, &all).await);
            }
        }
        // The writer gets back the values they gave, not the envelopes stored for them (and no
        // blind indexes): moved from `rows`, which new records need no more, into place.
        let encrypted: Vec<(String, Option<String>)> = object
            .fields
            .iter()
            .filter(|f| f.is_encrypted())
            .map(|f| (f.column(), f.is_searchable().then(|| f.blind_index_column())))
            .collect();
        for (i, id, mut values) in new_rows {
            for (column, blind_index) in &encrypted {
                if let Some(blind_index) = blind_index {
                    values.remove(blind_index);
                }
                if let (Some(slot), Some(given)) = (values.get_mut(column), rows[i].get_mut(column)) {
                    *slot = std::mem::replace(given, Value::Null);
                }
            }
            out[i] = Some((Record { id, values, broken: Vec::new() }, None));
        }
        let mut audit = Vec::with_capacity(existing.len());
        for (i, rec) in existing {
            // Matched by an upsert, the input is an update, its scripts already applied above.
            let patch = std::mem::take(&mut rows[i]);
            let updated = self.apply_update(&txn, caller, object, rec.clone(), patch, None, &mut audit).await?;
            out[i] = Some((updated, Some(rec)));
        }
        let images = created.into_iter().zip(afters).map(|(e, after)| (e, None, Some(after))).collect();
        append_rows(&txn, images, self.backend).await?;
        append(&txn, &audit, self.backend).await?;
        txn.commit().await?;
        self.note_inserted(&object.table(), inserting);
        Ok(out.into_iter().flatten().collect())
    }

    /// The error of a failed insert. When a lookup's target was destroyed by another writer
    /// after the references were checked (PostgreSQL's foreign key then refuses the insert),
    /// the check is made again, now that the destroy has committed, to name the references.
    async fn insert_failure(
        &self,
        e: sea_orm::DbErr,
        caller: &Caller,
        registry: &Registry,
        object: &ObjectDefinition,
        rows: &[(usize, &Row)],
    ) -> DataError {
        if !is_reference_violation(&e) {
            return e.into();
        }
        match self.check_references(&self.db, caller, registry, object, rows).await {
            Ok(issues) if !issues.is_empty() => DataError::invalid_fields(issues),
            Ok(_) => e.into(),
            Err(err) => err,
        }
    }

    /// Writes a validated patch onto a locked current record, bumping its version.
    #[allow(clippy::too_many_arguments)]
    async fn apply_update(
        &self,
        txn: &DatabaseTransaction,
        caller: &Caller,
        object: &ObjectDefinition,
        current: Record,
        patch: Row,
        expected_version: Option<i64>,
        audit: &mut Vec<AuditEntry>,
    ) -> DataResult<Record> {
        let version = match current.get("version") {
            Value::Int(v) => *v,
            _ => 0,
        };
        if let Some(expected) = expected_version
            && expected != version
        {
            return Err(DataError::Conflict {
                message: format!(
                    "record {} was changed by someone else: expected version {expected}, found {version}",
                    current.id
                ),
                field_errors: Vec::new(),
            });
        }
        let mut patch = patch;
        self.seal_row(object, &current.id, &mut patch)?;
        let now = now();
        let mut update = Query::update();
        update.table(object.table());
        let changed: HashSet<String> = patch.keys().cloned().collect();
        for (column, v) in &patch {
            update.value(column.clone(), to_sql(v, stored_as(object, column)));
        }
        update
            .value("version", version + 1)
            .value("updated_at", now)
            .value("updated_by", caller.user_id.clone())
            .and_where(Expr::col("id").eq(current.id.clone()))
            .and_where(Expr::col("version").eq(version));
        let result = txn.execute(&update).await?;
        if result.rows_affected() == 0 {
            return Err(DataError::Conflict {
                message: format!("record {} was changed concurrently; retry", current.id),
                field_errors: Vec::new(),
            });
        }
        let before = image(object, &current.values, Some(&changed));
        let mut values = current.values;
        values.extend(patch);
        values.insert("version".into(), Value::Int(version + 1));
        values.insert("updated_at".into(), Value::DateTime(now));
        values.insert("updated_by".into(), Value::Text(caller.user_id.clone()));
        let after = image(object, &values, Some(&changed));
        audit.push(
            AuditEntry::new("record", "update", Some(&caller.user_id))
                .on(object.name.as_str(), Some(&current.id))
                .images(Some(before), Some(after)),
        );
        Ok(Record { id: current.id, values, broken: Vec::new() })
    }

    async fn lock_record(
        &self,
        txn: &DatabaseTransaction,
        object: &ObjectDefinition,
        id: &str,
        deleted: Option<bool>,
        scope: Option<&Filter>,
    ) -> DataResult<Option<Record>> {
        if !may_be_record_id(id) {
            return Ok(None);
        }
        let cols: Vec<String> = object.fields.iter().map(|f| f.column()).collect();
        let read = read_columns(object, &cols);
        let mut q = Query::select();
        q.columns(read.iter().map(|c| c.name.clone())).from(object.table()).and_where(Expr::col("id").eq(id));
        match deleted {
            Some(true) => {
                q.and_where(Expr::col("deleted_at").is_not_null());
            }
            Some(false) => {
                q.and_where(Expr::col("deleted_at").is_null());
            }
            None => {}
        }
        if let Some(f) = scope {
            q.cond_where(condition(f));
        }
        if self.backend == DbBackend::Postgres {
            q.lock(sea_query::LockType::Update);
        }
        match txn.query_one(&q).await? {
            Some(row) => Ok(Some(self.decode_record(&row, &read)?)),
            None => Ok(None),
        }
    }

    pub async fn update_record(
        &self,
        caller: &Caller,
        registry: &Arc<Registry>,
        object: &ObjectDefinition,
        id: &str,
        input: RecordInput,
        expected_version: Option<i64>,
    ) -> DataResult<(Record, Record)> {
        let scope = enforce::rows(caller, object.name.as_str(), Action::Update)?;
        let given = checked_patch(caller, object, &input)?;
        let scripted = self.has_save_scripts(registry, object)?;
        let columns: Vec<String> = object.fields.iter().map(|f| f.column()).collect();
        // Scripts run before the writer lock, over the record as read then; if it changed by
        // the time it is locked, they run again over the new version.
        let mut attempts = 0;
        let (_guard, txn, current, patch) = loop {
            attempts += 1;
            let (seen, patch) = if scripted {
                let seen = self
                    .read_one(object, id, &columns, false, scope.as_ref())
                    .await?
                    .ok_or_else(|| not_found(object, id))?;
                let patch = self.scripted_patch(caller, registry, object, &seen, given.clone()).await?;
                (Some(seen.get("version").clone()), patch)
            } else {
                (None, given.clone())
            };
            let guard = self.write_guard().await;
            let txn = self.begin_fenced(registry, object, Reach::Object).await?;
            let current = self
                .lock_record(&txn, object, id, Some(false), scope.as_ref())
                .await?
                .ok_or_else(|| not_found(object, id))?;
            if seen.is_none_or(|v| &v == current.get("version")) {
                break (guard, txn, current, patch);
            }
            drop(txn);
            drop(guard);
            if attempts == 3 {
                return Err(DataError::Conflict {
                    message: format!("record {id} kept changing while its scripts ran; retry"),
                    field_errors: Vec::new(),
                });
            }
        };
        let rows = [(0usize, &patch)];
        let mut issues = self.check_references(&txn, caller, registry, object, &rows).await?;
        issues.extend(self.check_unique(&txn, object, &rows, &HashSet::from([id.to_string()])).await?);
        if !issues.is_empty() {
            return Err(issue_error(issues));
        }
        let mut audit = Vec::new();
        let record =
            self.apply_update(&txn, caller, object, current.clone(), patch, expected_version, &mut audit).await?;
        append(&txn, &audit, self.backend).await?;
        txn.commit().await?;
        Ok((record, current))
    }

    /// An update's patch with what the object's scripts add to it (BEFORE_SAVE assignments and
    /// formula values), after its validation rules passed, run over the current record with
    /// the patch applied.
    async fn scripted_patch(
        &self,
        caller: &Caller,
        registry: &Arc<Registry>,
        object: &ObjectDefinition,
        current: &Record,
        patch: Row,
    ) -> DataResult<Row> {
        if !self.has_save_scripts(registry, object)? {
            return Ok(patch);
        }
        let mut patches =
            self.scripted_patches(caller, registry, object, std::slice::from_ref(current), &patch).await?;
        Ok(patches.pop().unwrap_or(patch))
    }

    /// `scripted_patch` for one patch applied to several records, in one batch of script runs.
    /// Field errors keep index 0 (the one input) and name the record they are about when
    /// there are several.
    async fn scripted_patches(
        &self,
        caller: &Caller,
        registry: &Arc<Registry>,
        object: &ObjectDefinition,
        records: &[Record],
        patch: &Row,
    ) -> DataResult<Vec<Row>> {
        let object = registry.require(object.name.as_str()).map_err(|e| DataError::bad_input(e.to_string()))?;
        let jobs = records
            .iter()
            .map(|current| {
                let mut old = self.open_for_scripts(object, &current.id, &current.values);
                old.insert("id".into(), Value::Text(current.id.clone()));
                let mut record = old.clone();
                record.extend(patch.iter().map(|(k, v)| (k.clone(), v.clone())));
                SaveJob { record, old: Some(old) }
            })
            .collect();
        let (saved, mut issues) = self.run_save_scripts(caller, registry, object, jobs).await?;
        if !issues.is_empty() {
            if records.len() > 1 {
                for issue in &mut issues {
                    issue.message = format!("record {}: {}", records[issue.index].id, issue.message);
                    issue.index = 0;
                }
            }
            return Err(DataError::invalid_fields(issues));
        }
        Ok(saved
            .into_iter()
            .map(|(_, changes)| {
                let mut p = patch.clone();
                p.extend(changes);
                p
            })
            .collect())
    }

    pub async fn update_records(
        &self,
        caller: &Caller,
        registry: &Arc<Registry>,
        object: &ObjectDefinition,
        filter: Option<Filter>,
        input: RecordInput,
    ) -> DataResult<Vec<(Record, Record)>> {
        let filter = Filter::and_maybe(
            filter.map(|f| enforce::scope_related(caller, object, f)).transpose()?,
            enforce::rows(caller, object.name.as_str(), Action::Update)?,
        );
        let patch = checked_patch(caller, object, &input)?;
        let cols: Vec<String> = object.fields.iter().map(|f| f.column()).collect();
        let read = read_columns(object, &cols);
        let matching = |lock: bool| {
            let mut q = Query::select();
            q.columns(read.iter().map(|c| c.name.clone()))
                .from(object.table())
                .and_where(Expr::col("deleted_at").is_null());
            if let Some(f) = &filter {
                q.cond_where(condition(f));
            }
            q.limit(MAX_UPDATE_MANY as u64 + 1);
            if lock && self.backend == DbBackend::Postgres {
                q.lock(sea_query::LockType::Update);
            }
            q
        };
        let decode_all = |rows: Vec<sea_orm::QueryResult>| -> DataResult<Vec<Record>> {
            if rows.len() > MAX_UPDATE_MANY {
                return Err(DataError::bad_input(format!(
                    "the filter matches more than {MAX_UPDATE_MANY} records; narrow it"
                )));
            }
            rows.iter().map(|row| Ok(self.decode_record(row, &read)?)).collect()
        };
        // Scripts run before the writer lock, over the records as read then (keyed by id, with
        // the version they saw); records changed since run them again under the lock.
        let scripted = self.has_save_scripts(registry, object)?;
        let mut scripted_patches: HashMap<String, (Value, Row)> = HashMap::new();
        if scripted {
            let seen = decode_all(self.db.query_all(&matching(false)).await?)?;
            let patches = self.scripted_patches(caller, registry, object, &seen, &patch).await?;
            for (rec, p) in seen.iter().zip(patches) {
                scripted_patches.insert(rec.id.clone(), (rec.get("version").clone(), p));
            }
        }
        let _guard = self.write_guard().await;
        let txn = self.begin_fenced(registry, object, Reach::Object).await?;
        let current = decode_all(txn.query_all(&matching(true)).await?)?;
        if scripted {
            let stale: Vec<Record> = current
                .iter()
                .filter(|r| !scripted_patches.get(&r.id).is_some_and(|(v, _)| v == r.get("version")))
                .cloned()
                .collect();
            if !stale.is_empty() {
                let patches = self.scripted_patches(caller, registry, object, &stale, &patch).await?;
                for (rec, p) in stale.iter().zip(patches) {
                    scripted_patches.insert(rec.id.clone(), (rec.get("version").clone(), p));
                }
            }
        }
        let check = [(0usize, &patch)];
        let mut issues = self.check_references(&txn, caller, registry, object, &check).await?;
        let ids: HashSet<String> = current.iter().map(|r| r.id.clone()).collect();
        issues.extend(self.check_unique(&txn, object, &check, &ids).await?);
        for f in object.fields.iter().filter(|f| f.unique) {
            if current.len() > 1 && patch.get(&f.column()).is_some_and(|v| !v.is_null()) {
                issues.push(FieldIssue::new(
                    f.name.as_str(),
                    IssueCode::Unique,
                    "one value cannot be written to several records of a unique field",
                ));
            }
        }
        if !issues.is_empty() {
            return Err(issue_error(issues));
        }
        let mut audit = Vec::with_capacity(current.len());
        let mut out = Vec::with_capacity(current.len());
        for rec in current {
            let patch = scripted_patches.remove(&rec.id).map(|(_, p)| p).unwrap_or_else(|| patch.clone());
            out.push((self.apply_update(&txn, caller, object, rec.clone(), patch, None, &mut audit).await?, rec));
        }
        append(&txn, &audit, self.backend).await?;
        txn.commit().await?;
        Ok(out)
    }

    /// Moves a record to the recycle bin (`restore == false`) or back out of it.
    pub async fn set_deleted(
        &self,
        caller: &Caller,
        object: &ObjectDefinition,
        id: &str,
        delete: bool,
    ) -> DataResult<Record> {
        let scope = enforce::rows(caller, object.name.as_str(), Action::Delete)?;
        let _guard = self.write_guard().await;
        let txn = self.begin().await?;
        let current = self
            .lock_record(&txn, object, id, Some(!delete), scope.as_ref())
            .await?
            .ok_or_else(|| not_found(object, id))?;
        let version = match current.get("version") {
            Value::Int(v) => *v,
            _ => 0,
        };
        let now = now();
        let deleted_at = if delete { Value::DateTime(now) } else { Value::Null };
        txn.execute(
            &Query::update()
                .table(object.table())
                .value("deleted_at", to_sql(&deleted_at, Storage::DateTime))
                .value("version", version + 1)
                .value("updated_at", now)
                .value("updated_by", caller.user_id.clone())
                .and_where(Expr::col("id").eq(id))
                .to_owned(),
        )
        .await?;
        let action = if delete { "delete" } else { "restore" };
        let entry = AuditEntry::new("record", action, Some(&caller.user_id)).on(object.name.as_str(), Some(id));
        append(&txn, &[entry], self.backend).await?;
        txn.commit().await?;
        let mut values = current.values;
        values.insert("deleted_at".into(), deleted_at);
        values.insert("version".into(), Value::Int(version + 1));
        values.insert("updated_at".into(), Value::DateTime(now));
        values.insert("updated_by".into(), Value::Text(caller.user_id.clone()));
        Ok(Record { id: id.to_string(), values, broken: Vec::new() })
    }

    /// Deletes a record permanently, clearing lookups that point at it.
    pub async fn destroy_record(
        &self,
        caller: &Caller,
        registry: &Arc<Registry>,
        object: &ObjectDefinition,
        id: &str,
    ) -> DataResult<String> {
        let scope = enforce::rows(caller, object.name.as_str(), Action::Delete)?;
        let _guard = self.write_guard().await;
        let txn = self.begin_fenced(registry, object, Reach::Registry).await?;
        let current =
            self.lock_record(&txn, object, id, None, scope.as_ref()).await?.ok_or_else(|| not_found(object, id))?;
        let mut audit = remove_record(&txn, registry, object, id, &caller.user_id).await?;
        let before = image(object, &current.values, None);
        audit.push(
            AuditEntry::new("record", "destroy", Some(&caller.user_id))
                .on(object.name.as_str(), Some(id))
                .images(Some(before), None),
        );
        append(&txn, &audit, self.backend).await?;
        txn.commit().await?;
        Ok(id.to_string())
    }
}

/// Deletes a record permanently, clearing the lookups that point at it first. Each record whose
/// lookup is cleared changes like any update (version, `updated_at`, `updated_by` the caller
/// whose deletion caused it) and gets an audit entry `clear_lookup` with the lookup before and
/// after, which the caller appends in the same transaction.
pub(super) async fn remove_record(
    txn: &DatabaseTransaction,
    registry: &Registry,
    object: &ObjectDefinition,
    id: &str,
    actor: &str,
) -> Result<Vec<AuditEntry>, sea_orm::DbErr> {
    let now = now();
    let mut audit = Vec::new();
    for rel in registry.reverse_relations(object.name.as_str()) {
        let Some(source) = registry.object(rel.source.as_str()) else { continue };
        let mut update = Query::update();
        update
            .table(source.table())
            .value(rel.column.clone(), Storage::Text.null())
            .value("version", Expr::col("version").add(1))
            .value("updated_at", now)
            .value("updated_by", actor)
            .and_where(Expr::col(rel.column.clone()).eq(id))
            .returning_col("id");
        if source.name == object.name {
            // The record itself goes below; it is not changed first.
            update.and_where(Expr::col("id").ne(id));
        }
        for row in txn.query_all(&update).await? {
            let cleared: String = row.try_get_by_index(0)?;
            audit.push(
                AuditEntry::new("record", "clear_lookup", Some(actor)).on(source.name.as_str(), Some(&cleared)).images(
                    Some(serde_json::json!({ rel.field.as_str(): id })),
                    Some(serde_json::json!({ rel.field.as_str(): null })),
                ),
            );
        }
    }
    txn.execute(&Query::delete().from_table(object.table()).and_where(Expr::col("id").eq(id)).to_owned()).await?;
    Ok(audit)
}

/// The coerced patch of an update, refused per field where the caller may not edit.
fn checked_patch(caller: &Caller, object: &ObjectDefinition, input: &RecordInput) -> DataResult<Row> {
    let mut issues = enforce::write_issues(caller, object, 0, input);
    match coerce_input(object, 0, input, false) {
        Ok(patch) if issues.is_empty() => Ok(patch),
        Ok(_) => Err(DataError::invalid_fields(issues)),
        Err(mut more) => {
            issues.append(&mut more);
            Err(DataError::invalid_fields(issues))
        }
    }
}

/// A new record's row: the validated input plus its id and system columns.
fn new_row(caller: &Caller, input: Row, now: DateTime<Utc>) -> (String, Row) {
    let mut row = input;
    let id = uuid::Uuid::now_v7().to_string();
    row.insert("id".into(), Value::Text(id.clone()));
    row.entry("owner_id".into()).or_insert_with(|| Value::Text(caller.user_id.clone()));
    row.insert("created_at".into(), Value::DateTime(now));
    row.insert("updated_at".into(), Value::DateTime(now));
    row.insert("created_by".into(), Value::Text(caller.user_id.clone()));
    row.insert("updated_by".into(), Value::Text(caller.user_id.clone()));
    row.insert("version".into(), Value::Int(1));
    row.insert("deleted_at".into(), Value::Null);
    (id, row)
}

/// `e` with its field errors moved to the input at `index` (an upsert's update, whose
/// scripts run one input at a time).
fn at_index(e: DataError, index: usize) -> DataError {
    match e {
        DataError::BadInput { message, field_errors } => DataError::BadInput {
            message,
            field_errors: field_errors.into_iter().map(|issue| issue.at(index)).collect(),
        },
        other => other,
    }
}

fn not_found(object: &ObjectDefinition, id: &str) -> DataError {
    DataError::NotFound(format!("no {} with id `{id}`", object.name))
}

fn issue_error(issues: Vec<FieldIssue>) -> DataError {
    if issues.iter().all(|i| i.code == IssueCode::Unique) {
        DataError::Conflict { message: "a unique field already has this value".into(), field_errors: issues }
    } else {
        DataError::invalid_fields(issues)
    }
}

/// The single unique field an upsert matches on.
fn upsert_field<'a>(object: &'a ObjectDefinition, upsert: &Upsert) -> DataResult<&'a FieldDefinition> {
    let [name] = upsert.on_conflict.as_slice() else {
        return Err(DataError::bad_input("upsert.onConflict must name exactly one unique field"));
    };
    let field = object
        .field(name)
        .ok_or_else(|| DataError::bad_input(format!("upsert.onConflict: `{name}` is not a field")))?;
    if !field.unique {
        return Err(DataError::bad_input(format!("upsert.onConflict: `{name}` is not a unique field")));
    }
    for u in &upsert.update {
        if object.field(u).is_none() {
            return Err(DataError::bad_input(format!("upsert.update: `{u}` is not a field")));
        }
    }
    Ok(field)
}

/// How a column of an object's table stores its values: a field's column, a blind index
/// (64-bit integers) or a system column.
pub(super) fn stored_as(object: &ObjectDefinition, column: &str) -> Storage {
    if let Some(s) = Storage::of_system(column) {
        return s;
    }
    for f in object.fields.iter() {
        if f.column() == column {
            return storage(f);
        }
        if f.is_searchable() && f.blind_index_column() == column {
            return Storage::Int;
        }
    }
    Storage::Text
}

/// Batches smaller than this are prepared on one thread: starting another costs more than
/// sharing a few rows saves.
const TWO_THREADS_FROM: usize = 128;

/// Runs `f` over `items`, the second half on a thread of its own for large batches: a batch is
/// prepared on the request's worker, so without this one core sits idle while the other
/// encrypts and serialises hundreds of rows.
fn on_two_threads<T: Send, E: Send>(items: &mut [T], f: impl Fn(&mut T) -> Result<(), E> + Sync) -> Result<(), E> {
    if items.len() < TWO_THREADS_FROM {
        return items.iter_mut().try_for_each(&f);
    }
    let (first, second) = items.split_at_mut(items.len() / 2);
    std::thread::scope(|s| {
        let other = s.spawn(|| second.iter_mut().try_for_each(&f));
        let here = first.iter_mut().try_for_each(&f);
        let there = other.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        here.and(there)
    })
}

//! Validation of record input before it is written: coercion of every given field, defaults
//! and requiredness, lookup and owner references, and uniqueness within a batch and against
//! stored records.

use std::collections::{HashMap, HashSet};

use sea_orm::{ConnectionTrait, DatabaseTransaction};
use sea_query::{Expr, ExprTrait, Query};
use tessera_metadata::{Action, FieldIssue, FieldType, Filter, IssueCode, ObjectDefinition, Registry, Value};

use super::codec::{storage, to_sql};
use super::filter::{condition, in_text_list};
use super::writes::Row;
use super::{Store, enforce};
use crate::graphql::{Caller, DataResult, RecordInput};

/// Coerces the given input fields; `Err` collects every issue of this record.
pub(super) fn coerce_input(
    object: &ObjectDefinition,
    index: usize,
    input: &RecordInput,
    creating: bool,
) -> Result<Row, Vec<FieldIssue>> {
    // Room for every field and the system columns a new record gets (`writes::new_row`).
    let mut row =
        Row::with_capacity_and_hasher(object.fields.len() + super::reads::SYSTEM_COLUMNS.len(), Default::default());
    let mut issues = Vec::new();
    for (name, json) in input {
        if name == "owner_id" {
            match json {
                serde_json::Value::String(s) => {
                    row.insert("owner_id".into(), Value::Text(s.clone()));
                }
                _ => issues.push(FieldIssue::new("owner", IssueCode::InvalidType, "expected a user id").at(index)),
            }
            continue;
        }
        let Some(field) = object.field(name) else {
            issues.push(
                FieldIssue::new(
                    name.as_str(),
                    IssueCode::UnknownField,
                    format!("`{name}` is not a field of `{}`", object.name),
                )
                .at(index),
            );
            continue;
        };
        if field.field_type == FieldType::AutoNumber {
            issues.push(
                FieldIssue::new(name.as_str(), IssueCode::ReadOnly, "auto numbers are assigned by the platform")
                    .at(index),
            );
            continue;
        }
        if field.is_formula() {
            issues.push(
                FieldIssue::new(name.as_str(), IssueCode::ReadOnly, "is computed by its formula and cannot be written")
                    .at(index),
            );
            continue;
        }
        match Value::coerce(field, json) {
            Ok(v) => {
                if v.is_null() && field.required {
                    issues.push(FieldIssue::new(name.as_str(), IssueCode::Required, "is required").at(index));
                }
                row.insert(field.column(), v);
            }
            Err(issue) => issues.push(issue.at(index)),
        }
    }
    if creating {
        for field in &object.fields {
            let column = field.column_name();
            // A field given in the input (even one whose value was refused above) takes no
            // default and is not reported missing.
            if row.contains_key(column.as_ref())
                || input.contains_key(field.name.as_str())
                || field.field_type == FieldType::AutoNumber
                || field.is_formula()
            {
                continue;
            }
            match field.default() {
                Ok(Some(v)) => {
                    row.insert(column.into_owned(), v);
                }
                Ok(None) if field.required => {
                    issues.push(FieldIssue::new(field.name.as_str(), IssueCode::Required, "is required").at(index))
                }
                Ok(None) => {}
                Err(issue) => issues.push(issue.at(index)),
            }
        }
    }
    if issues.is_empty() { Ok(row) } else { Err(issues) }
}

/// The columns of a row that `check_references` and `check_unique` read: lookups, the owner
/// and unique fields. A batch of creates keeps only these of each input once the rest has
/// moved into the rows it inserts.
pub(super) fn checked_columns(object: &ObjectDefinition) -> impl Iterator<Item = String> + '_ {
    object
        .fields
        .iter()
        .filter(|f| f.field_type == FieldType::Lookup || f.unique)
        .map(|f| f.column())
        .chain(["owner_id".to_string()])
}

impl Store {
    /// Checks that every lookup id names a live record of its target, and every owner a user.
    pub(super) async fn check_references(
        &self,
        txn: &impl ConnectionTrait,
        caller: &Caller,
        registry: &Registry,
        object: &ObjectDefinition,
        rows: &[(usize, &Row)],
    ) -> DataResult<Vec<FieldIssue>> {
        let mut issues = Vec::new();
        for field in object.fields.iter().filter(|f| f.field_type == FieldType::Lookup) {
            let Some(target) = field.target.as_ref().and_then(|t| registry.object(t.as_str())) else { continue };
            let column = field.column();
            let ids: HashSet<&str> = rows
                .iter()
                .filter_map(|(_, r)| match r.get(&column) {
                    Some(Value::Text(id)) => Some(id.as_str()),
                    _ => None,
                })
                .collect();
            if ids.is_empty() {
                continue;
            }
            // A record the caller may not see is reported exactly like a missing one.
            let found = match enforce::rows(caller, target.name.as_str(), Action::Read) {
                Ok(scope) => {
                    let ids = ids.iter().map(|s| s.to_string()).collect();
                    self.existing_ids(txn, &target.table(), ids, Some(scope.as_ref())).await?
                }
                Err(_) => HashSet::new(),
            };
            for (index, r) in rows {
                if let Some(Value::Text(id)) = r.get(&column)
                    && !found.contains(id)
                {
                    issues.push(
                        FieldIssue::new(
                            field.name.as_str(),
                            IssueCode::NotFound,
                            format!("no {} with id `{id}`", target.name),
                        )
                        .at(*index),
                    );
                }
            }
        }
        let owners: HashSet<String> = rows
            .iter()
            .filter_map(|(_, r)| match r.get("owner_id") {
                Some(Value::Text(id)) => Some(id.clone()),
                _ => None,
            })
            .collect();
        if !owners.is_empty() {
            let found = self.existing_ids(txn, "sys_users", owners.into_iter().collect(), None).await?;
            for (index, r) in rows {
                if let Some(Value::Text(id)) = r.get("owner_id")
                    && !found.contains(id)
                {
                    issues.push(
                        FieldIssue::new("owner", IssueCode::NotFound, format!("no user with id `{id}`")).at(*index),
                    );
                }
            }
        }
        Ok(issues)
    }

    async fn existing_ids(
        &self,
        txn: &impl ConnectionTrait,
        table: &str,
        ids: Vec<String>,
        live_within: Option<Option<&Filter>>,
    ) -> DataResult<HashSet<String>> {
        let mut found = HashSet::new();
        for chunk in ids.chunks(1000) {
            let mut q = Query::select();
            q.column("id").from(table.to_string()).and_where(in_text_list("id", chunk, self.backend));
            if let Some(scope) = live_within {
                q.and_where(Expr::col("deleted_at").is_null());
                if let Some(f) = scope {
                    q.cond_where(condition(f));
                }
            }
            for row in txn.query_all(&q).await? {
                found.insert(row.try_get_by_index::<String>(0)?);
            }
        }
        Ok(found)
    }

    /// Unique fields: duplicates within the batch and against stored records (the recycle bin
    /// included, since restoring must not create duplicates).
    pub(super) async fn check_unique(
        &self,
        txn: &DatabaseTransaction,
        object: &ObjectDefinition,
        rows: &[(usize, &Row)],
        exclude: &HashSet<String>,
    ) -> DataResult<Vec<FieldIssue>> {
        let mut issues = Vec::new();
        for field in object.fields.iter().filter(|f| f.unique) {
            let column = field.column();
            let st = storage(field);
            // An encrypted field is unique by its blind index: values that normalise alike
            // (`+86 138-1234-5678`, `13812345678`) are the same value.
            let encrypted = field.is_encrypted();
            let checked = if encrypted { field.blind_index_column() } else { column.clone() };
            let checked_st = super::writes::stored_as(object, &checked);
            // While the field's values are being encrypted some rows are still plaintext.
            let plain_too = encrypted && self.is_converting(object.name.as_str(), field.name.as_str());
            let mut seen: HashMap<String, usize> = HashMap::new();
            let mut values = Vec::new();
            let mut plains = Vec::new();
            // Each given value with the keys a stored equal value may hold, made once (for an
            // encrypted field, a keyed hash per key) and compared with what is stored below.
            let mut given: Vec<(usize, &Value, Vec<Value>)> = Vec::new();
            for (index, r) in rows {
                let Some(v) = r.get(&column).filter(|v| !v.is_null()) else { continue };
                if plain_too {
                    plains.push(to_sql(v, st));
                }
                let keys = self.match_keys(field, v)?;
                let key = format!("{:?}", keys.first());
                if let Some(first) = seen.insert(key, *index) {
                    issues.push(
                        FieldIssue::new(
                            field.name.as_str(),
                            IssueCode::Unique,
                            format!("same value as record {first} of this batch"),
                        )
                        .at(*index),
                    );
                }
                values.extend(keys.iter().map(|k| to_sql(k, checked_st)));
                given.push((*index, v, keys));
            }
            if values.is_empty() {
                continue;
            }
            let mut taken: HashSet<String> = HashSet::new();
            for chunk in values.chunks(1000) {
                let q = Query::select()
                    .columns(["id".to_string(), checked.clone()])
                    .from(object.table())
                    .and_where(Expr::col(checked.clone()).is_in(chunk.iter().cloned()))
                    .to_owned();
                for row in txn.query_all(&q).await? {
                    let id: String = row.try_get_by_index(0)?;
                    if exclude.contains(&id) {
                        continue;
                    }
                    let v = super::codec::decode(&row, 1, checked_st, self.backend, &checked)?;
                    taken.insert(format!("{:?}", v));
                }
            }
            let mut taken_plain: HashSet<String> = HashSet::new();
            for chunk in plains.chunks(1000) {
                let q = Query::select()
                    .columns(["id".to_string(), column.clone()])
                    .from(object.table())
                    .and_where(Expr::col(column.clone()).is_in(chunk.iter().cloned()))
                    .to_owned();
                for row in txn.query_all(&q).await? {
                    let id: String = row.try_get_by_index(0)?;
                    if !exclude.contains(&id) {
                        taken_plain.insert(format!("{:?}", super::codec::decode(&row, 1, st, self.backend, &column)?));
                    }
                }
            }
            for (index, value, keys) in given {
                let stored_alike = keys.iter().any(|k| taken.contains(&format!("{:?}", k)));
                if stored_alike || taken_plain.contains(&format!("{:?}", value)) {
                    issues.push(
                        FieldIssue::new(
                            field.name.as_str(),
                            IssueCode::Unique,
                            format!("{} is already used by another record", value.to_json(field)),
                        )
                        .at(index),
                    );
                }
            }
        }
        Ok(issues)
    }
}

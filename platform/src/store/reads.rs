//! Record reads: by id, keyset-paginated lists, batched lookups and reverse relations, and
//! aggregates. Only requested columns are selected.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sea_orm::{ConnectionTrait, QueryResult};
use sea_query::{Alias, Expr, ExprTrait, Func, Query, SelectStatement, WindowStatement};
use tessera_metadata::{Filter, ObjectDefinition, OrderKey, Value};

use super::codec::{Storage, decode};
use super::filter::{after, apply_order, condition, full_order, in_text_list};
use super::{Store, StoreError, StoreResult};
use crate::graphql::{AggregateFn, AggregateQuery, AggregateRow, AggregateValue, ListQuery, Page, Record};

/// Columns every read returns.
pub const SYSTEM_COLUMNS: [&str; 8] =
    ["id", "owner_id", "created_at", "updated_at", "created_by", "updated_by", "version", "deleted_at"];

/// Whether `id` could name a record: records have UUIDs, so anything else names none, and is
/// not sent to the database (where text that no column may hold, such as the NUL character,
/// would fail the statement on PostgreSQL).
pub(super) fn may_be_record_id(id: &str) -> bool {
    uuid::Uuid::try_parse(id).is_ok()
}

/// A column to read and how to decode it.
#[derive(Debug, Clone)]
pub struct ReadColumn {
    pub name: String,
    pub storage: Storage,
}

/// System columns plus the requested field columns (unknown names are ignored: the API layer
/// has already validated them).
pub fn read_columns(object: &ObjectDefinition, columns: &[String]) -> Vec<ReadColumn> {
    let mut out: Vec<ReadColumn> = SYSTEM_COLUMNS
        .iter()
        .filter_map(|c| Storage::of_system(c).map(|storage| ReadColumn { name: (*c).to_string(), storage }))
        .collect();
    for c in columns {
        if out.iter().any(|r| &r.name == c) {
            continue;
        }
        if let Some(f) = object.fields.iter().find(|f| &f.column() == c) {
            out.push(ReadColumn { name: c.clone(), storage: Storage::of(f.field_type) });
        }
    }
    out
}

/// Storage of any column of an object (system or field).
pub fn column_storage(object: &ObjectDefinition, column: &str) -> Option<Storage> {
    Storage::of_system(column)
        .or_else(|| object.fields.iter().find(|f| f.column() == column).map(|f| Storage::of(f.field_type)))
}

fn live() -> Expr {
    Expr::col("deleted_at").is_null()
}

impl Store {
    pub(super) fn decode_record(&self, row: &QueryResult, columns: &[ReadColumn]) -> StoreResult<Record> {
        let mut values = tessera_metadata::Values::with_capacity_and_hasher(columns.len(), Default::default());
        for (i, c) in columns.iter().enumerate() {
            values.insert(c.name.clone(), decode(row, i, c.storage, self.backend, &c.name)?);
        }
        let id = match values.get("id") {
            Some(Value::Text(id)) => id.clone(),
            _ => return Err(StoreError::Corrupt("record without id".into())),
        };
        Ok(Record { id, values, broken: Vec::new() })
    }

    fn base_select(object: &ObjectDefinition, columns: &[ReadColumn]) -> SelectStatement {
        let mut q = Query::select();
        q.columns(columns.iter().map(|c| c.name.clone())).from(object.table());
        q
    }

    /// One record by id within `scope`; deleted records only when `include_deleted`.
    pub async fn read_one(
        &self,
        object: &ObjectDefinition,
        id: &str,
        columns: &[String],
        include_deleted: bool,
        scope: Option<&Filter>,
    ) -> StoreResult<Option<Record>> {
        if !may_be_record_id(id) {
            return Ok(None);
        }
        let cols = read_columns(object, columns);
        let mut q = Self::base_select(object, &cols);
        q.and_where(Expr::col("id").eq(id));
        if let Some(f) = scope {
            q.cond_where(condition(f));
        }
        if !include_deleted {
            q.and_where(live());
        }
        match self.db.query_one(&q).await? {
            Some(row) => Ok(Some(self.decode_record(&row, &cols)?)),
            None => Ok(None),
        }
    }

    /// Live records by id within `scope`.
    pub async fn read_many(
        &self,
        object: &ObjectDefinition,
        ids: &[String],
        columns: &[String],
        scope: Option<&Filter>,
    ) -> StoreResult<Vec<Record>> {
        let ids: Vec<String> = ids.iter().filter(|id| may_be_record_id(id)).cloned().collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let cols = read_columns(object, columns);
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(1000) {
            let mut q = Self::base_select(object, &cols);
            q.and_where(in_text_list("id", chunk, self.backend)).and_where(live());
            if let Some(f) = scope {
                q.cond_where(condition(f));
            }
            for row in self.db.query_all(&q).await? {
                out.push(self.decode_record(&row, &cols)?);
            }
        }
        Ok(out)
    }

    /// A keyset-paginated page of live records.
    pub async fn read_page(&self, object: &ObjectDefinition, query: &ListQuery, limit: u64) -> StoreResult<Page> {
        let cols = read_columns(object, &query_columns(query));
        let keys = full_order(&query.order);
        let backwards = query.page.last.is_some() || (query.page.before.is_some() && query.page.first.is_none());
        let (walk, cursor) = if backwards {
            (keys.iter().map(OrderKey::reversed).collect::<Vec<_>>(), query.page.before.as_deref())
        } else {
            (keys.clone(), query.page.after.as_deref())
        };
        let mut q = Self::base_select(object, &cols);
        q.and_where(live());
        if let Some(f) = &query.filter {
            q.cond_where(condition(f));
        }
        if let Some(c) = cursor {
            let values = decode_cursor(object, &keys, c)?;
            q.cond_where(after(&walk, &values));
        }
        // Backwards pages that also give `after` (or forwards with `before`) are bounded too.
        let bound = if backwards { query.page.after.as_deref() } else { query.page.before.as_deref() };
        if let Some(c) = bound {
            let values = decode_cursor(object, &keys, c)?;
            let rev: Vec<OrderKey> = walk.iter().map(OrderKey::reversed).collect();
            q.cond_where(after(&rev, &values));
        }
        apply_order(&mut q, &walk);
        q.limit(limit + 1);
        let rows = self.db.query_all(&q).await?;
        let more = rows.len() as u64 > limit;
        let mut records = Vec::with_capacity(rows.len().min(limit as usize));
        for row in rows.iter().take(limit as usize) {
            records.push(self.decode_record(row, &cols)?);
        }
        if backwards {
            records.reverse();
        }
        let total = if query.with_total { Some(self.count(object, query).await?) } else { None };
        let cursors = records.iter().map(|r| encode_cursor(&keys, r)).collect();
        Ok(Page {
            cursors,
            records,
            has_next: if backwards { query.page.before.is_some() } else { more },
            has_previous: if backwards { more } else { query.page.after.is_some() },
            total,
        })
    }

    async fn count(&self, object: &ObjectDefinition, query: &ListQuery) -> StoreResult<i64> {
        let mut q = Query::select();
        q.expr(Func::count(Expr::col("id"))).from(object.table()).and_where(live());
        if let Some(f) = &query.filter {
            q.cond_where(condition(f));
        }
        let row = self.db.query_one(&q).await?;
        Ok(row.map(|r| r.try_get_by_index::<i64>(0)).transpose()?.unwrap_or(0))
    }

    /// For each parent, the first page of live records whose `column` points at it, in one
    /// statement (a window function numbers each parent's records).
    pub async fn read_related(
        &self,
        object: &ObjectDefinition,
        column: &str,
        parents: &[String],
        query: &ListQuery,
        limit: u64,
    ) -> StoreResult<HashMap<String, Page>> {
        let mut cols = read_columns(object, &query_columns(query));
        if !cols.iter().any(|c| c.name == column) {
            cols.push(ReadColumn { name: column.to_string(), storage: Storage::Text });
        }
        let keys = full_order(&query.order);
        let mut out: HashMap<String, Page> = HashMap::new();
        for chunk in parents.chunks(500) {
            let mut window = WindowStatement::partition_by(column.to_string());
            apply_order(&mut window, &keys);
            let mut inner = Self::base_select(object, &cols);
            inner
                .expr_window_as(Expr::cust("ROW_NUMBER()"), window, "tessera_rn")
                .and_where(in_text_list(column, chunk, self.backend))
                .and_where(live());
            if let Some(f) = &query.filter {
                inner.cond_where(condition(f));
            }
            if let Some(c) = &query.page.after {
                let values = decode_cursor(object, &keys, c)?;
                inner.cond_where(after(&keys, &values));
            }
            let mut outer = Query::select();
            outer
                .columns(cols.iter().map(|c| c.name.clone()))
                .from_subquery(inner, Alias::new("related"))
                .and_where(Expr::col("tessera_rn").lte((limit + 1) as i64))
                .order_by(column.to_string(), sea_query::Order::Asc)
                .order_by("tessera_rn", sea_query::Order::Asc);
            for row in self.db.query_all(&outer).await? {
                let record = self.decode_record(&row, &cols)?;
                let Value::Text(parent) = record.get(column).clone() else { continue };
                let page = out.entry(parent).or_default();
                if page.records.len() as u64 >= limit {
                    page.has_next = true;
                } else {
                    page.cursors.push(encode_cursor(&keys, &record));
                    page.records.push(record);
                }
            }
        }
        Ok(out)
    }

    /// Counts and aggregates, optionally grouped.
    pub async fn read_aggregate(
        &self,
        object: &ObjectDefinition,
        query: &AggregateQuery,
    ) -> StoreResult<Vec<AggregateRow>> {
        let mut q = Query::select();
        q.from(object.table()).and_where(live());
        for g in &query.group_by {
            q.column(g.clone()).group_by_col(g.clone());
        }
        q.expr(Func::count(Expr::col("id")));
        for (func, column) in &query.aggregates {
            let col = Expr::col(column.clone());
            match func {
                AggregateFn::Sum | AggregateFn::Avg => {
                    // A sum of 64-bit values can leave 64 bits (SQLite then fails, and so does
                    // PostgreSQL's cast back to BIGINT): the high and low 32 bits of every value
                    // are summed apart, each sum safe below 2^31 rows, and joined in 128 bits.
                    let high = col.clone().right_shift(32);
                    let low = col.clone().bit_and(LOW_BITS);
                    q.expr(Func::cast_as(Func::sum(high), Alias::new(self.bigint_type())));
                    q.expr(Func::cast_as(Func::sum(low), Alias::new(self.bigint_type())));
                    q.expr(Func::count(col));
                }
                AggregateFn::Min => {
                    q.expr(Func::min(col));
                }
                AggregateFn::Max => {
                    q.expr(Func::max(col));
                }
            }
        }
        if let Some(f) = &query.filter {
            q.cond_where(condition(f));
        }
        for g in &query.group_by {
            q.order_by_with_nulls(g.clone(), sea_query::Order::Asc, sea_query::NullOrdering::Last);
        }
        q.limit(query.limit);
        let rows = self.db.query_all(&q).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut idx = 0;
            let mut result = AggregateRow::default();
            for g in &query.group_by {
                let st = column_storage(object, g).unwrap_or(Storage::Text);
                result.keys.insert(g.clone(), decode(row, idx, st, self.backend, g)?);
                idx += 1;
            }
            result.count = row.try_get_by_index::<i64>(idx)?;
            idx += 1;
            for (func, column) in &query.aggregates {
                let field = object.fields.iter().find(|f| &f.column() == column);
                let st = column_storage(object, column).unwrap_or(Storage::Int);
                let value = match func {
                    AggregateFn::Sum | AggregateFn::Avg => {
                        let high = row.try_get_by_index::<Option<i64>>(idx)?;
                        let low = row.try_get_by_index::<Option<i64>>(idx + 1)?;
                        let n = row.try_get_by_index::<i64>(idx + 2)?;
                        idx += 3;
                        let sum = high.zip(low).map(|(h, l)| (i128::from(h) << 32) + i128::from(l));
                        let scale =
                            field.filter(|f| f.field_type.is_decimal()).map(|f| f.effective_scale()).unwrap_or(0);
                        match (func, sum) {
                            (_, None) => AggregateValue::Value(Value::Null),
                            (AggregateFn::Sum, Some(s)) => match i64::try_from(s) {
                                Ok(s) => AggregateValue::Value(Value::Int(s)),
                                // Decimals are answered as strings, which hold any sum.
                                Err(_) if field.is_some_and(|f| f.field_type.is_decimal()) => {
                                    AggregateValue::Decimal(format_units(s, scale))
                                }
                                Err(_) => AggregateValue::OutOfRange,
                            },
                            (_, Some(s)) => AggregateValue::Decimal(average(s, n, scale)),
                        }
                    }
                    _ => {
                        let v = decode(row, idx, st, self.backend, column)?;
                        idx += 1;
                        AggregateValue::Value(v)
                    }
                };
                result.values.insert((*func, column.clone()), value);
            }
            out.push(result);
        }
        Ok(out)
    }

    fn bigint_type(&self) -> &'static str {
        if self.is_postgres() { "BIGINT" } else { "INTEGER" }
    }
}

/// `sum / n` of values scaled by `10^scale`, as a decimal string with `scale + 2` digits,
/// rounded half away from zero. The sum of 64-bit values over fewer than 2^31 rows times 100
/// stays far inside 128 bits.
fn average(sum: i128, n: i64, scale: u8) -> String {
    if n == 0 {
        return "0".into();
    }
    let num = sum * 100;
    let den = i128::from(n);
    let q = num / den;
    let r = num % den;
    let rounded = if 2 * r.abs() >= den { q + num.signum() } else { q };
    format_units(rounded, scale + 2)
}

/// Units scaled by `10^scale` as a decimal string, as `tessera_metadata::format_decimal` writes
/// them, in 128 bits.
fn format_units(units: i128, scale: u8) -> String {
    let digits = units.unsigned_abs().to_string();
    let scale = usize::from(scale);
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (whole, fraction) = padded.split_at(padded.len() - scale);
    let sign = if units < 0 { "-" } else { "" };
    if scale == 0 { format!("{sign}{whole}") } else { format!("{sign}{whole}.{fraction}") }
}

/// The low 32 bits of a 64-bit value (see `read_aggregate`).
const LOW_BITS: i64 = 0xFFFF_FFFF;

fn query_columns(query: &ListQuery) -> Vec<String> {
    let mut cols = query.columns.clone();
    for k in &query.order {
        if !cols.contains(&k.column) {
            cols.push(k.column.clone());
        }
    }
    cols
}

/// A stored value as JSON (dates as ISO text), for cursors and exports.
pub(super) fn cursor_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Null => J::Null,
        Value::Text(s) => J::String(s.clone()),
        Value::Int(i) => J::from(*i),
        Value::Bool(b) => J::Bool(*b),
        Value::Date(d) => J::String(d.format("%Y-%m-%d").to_string()),
        Value::DateTime(d) => J::String(d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        Value::Json(j) => j.clone(),
    }
}

fn signature(keys: &[OrderKey]) -> String {
    keys.iter().map(|k| format!("{}:{:?}:{:?}", k.column, k.direction, k.nulls)).collect::<Vec<_>>().join(",")
}

/// An opaque cursor: the record's sort-key values and the sort it belongs to.
pub fn encode_cursor(keys: &[OrderKey], record: &Record) -> String {
    let values: Vec<serde_json::Value> = keys.iter().map(|k| cursor_json(record.get(&k.column))).collect();
    let body = serde_json::json!({ "k": values, "o": signature(keys) });
    URL_SAFE_NO_PAD.encode(body.to_string())
}

/// Decodes a cursor made for the same sort; anything else is refused.
pub fn decode_cursor(object: &ObjectDefinition, keys: &[OrderKey], cursor: &str) -> StoreResult<Vec<Value>> {
    let bad = || StoreError::Refused("invalid cursor: it is malformed or belongs to a different sort order".into());
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let body: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if body.get("o").and_then(|o| o.as_str()) != Some(signature(keys).as_str()) {
        return Err(bad());
    }
    let values = body.get("k").and_then(|k| k.as_array()).ok_or_else(bad)?;
    if values.len() != keys.len() {
        return Err(bad());
    }
    keys.iter()
        .zip(values)
        .map(|(k, v)| {
            if v.is_null() {
                return Ok(Value::Null);
            }
            let storage = column_storage(object, &k.column).ok_or_else(bad)?;
            let parsed = match storage {
                Storage::Text => v.as_str().map(|s| Value::Text(s.to_string())),
                Storage::Int => v.as_i64().map(Value::Int),
                Storage::Bool => v.as_bool().map(Value::Bool),
                Storage::Date => {
                    v.as_str().and_then(|s| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()).map(Value::Date)
                }
                Storage::DateTime => v
                    .as_str()
                    .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                    .map(|d| Value::DateTime(d.with_timezone(&chrono::Utc))),
                Storage::Json => None,
            };
            parsed.ok_or_else(bad)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{average, format_units};

    #[test]
    fn formats_and_averages_sums_beyond_64_bits() {
        assert_eq!(format_units(5, 2), "0.05");
        assert_eq!(format_units(-12_345, 2), "-123.45");
        assert_eq!(format_units(7, 0), "7");
        let big = i128::from(i64::MAX) * 2;
        assert_eq!(format_units(big, 2), "184467440737095516.14");
        assert_eq!(average(big, 2, 2), "92233720368547758.0700");
        assert_eq!(average(-5, 2, 0), "-2.50");
        assert_eq!(average(1, 3, 0), "0.33");
    }
}

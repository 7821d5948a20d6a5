//! Reading the sensitive access log back: entries newest first, by record, user or object.

use std::collections::HashMap;

use sea_orm::ConnectionTrait;
use sea_query::{Expr, ExprTrait, Order, Query};
use tessera_metadata::Value;

use super::access_log::{LogUnavailable, READ_COLUMNS, ReadRuns, SAME_RECORDS_AS, SensitiveRead, SensitiveReadQuery};
use super::codec::{Storage, decode};
use super::{Store, StoreError, StoreResult};

/// Read ids one statement of `sensitive_reads` looks up (bound parameters, far under the
/// engines' limits).
const READ_IDS_PER_STATEMENT: usize = 1_000;

/// The ids of the disjoint ranges `runs`, none above `at_most`: newest first, as they are
/// needed (a record read a million times is a few runs, not a million ids).
fn newest_reads(mut runs: Vec<(i64, i64)>, at_most: Option<i64>) -> impl Iterator<Item = i64> {
    if let Some(cap) = at_most {
        runs =
            runs.into_iter().filter_map(|(from, to)| (from <= cap).then_some((from, std::cmp::min(to, cap)))).collect();
    }
    runs.sort_unstable_by_key(|run| std::cmp::Reverse(run.1));
    runs.into_iter().flat_map(|(from, to)| (from..=to).rev())
}

impl Store {
    /// The record lists of rows of `sys_sensitive_reads` (columns as `sensitive_reads` selects
    /// them) by read id, with lists written as references to an earlier read looked up.
    async fn resolve_record_lists(&self, rows: &[sea_orm::QueryResult]) -> StoreResult<HashMap<i64, String>> {
        let mut lists: HashMap<i64, String> = HashMap::with_capacity(rows.len());
        let mut references: Vec<(i64, i64)> = Vec::new();
        let text = |row: &sea_orm::QueryResult, i: usize| -> StoreResult<String> {
            match decode(row, i, Storage::Text, self.backend, "record_ids")? {
                Value::Text(s) => Ok(s),
                _ => Ok(String::new()),
            }
        };
        for row in rows {
            let id: i64 = row.try_get_by_index(0)?;
            let text = text(row, 7)?;
            match text.strip_prefix(SAME_RECORDS_AS) {
                Some(first) => {
                    let first = first
                        .parse()
                        .map_err(|_| StoreError::Corrupt(format!("sensitive read {id} refers to read `{first}`")))?;
                    references.push((id, first));
                }
                None => {
                    lists.insert(id, text);
                }
            }
        }
        let missing: Vec<i64> =
            references.iter().map(|(_, first)| *first).filter(|first| !lists.contains_key(first)).collect();
        let mut fetched: HashMap<i64, String> = HashMap::new();
        for chunk in missing.chunks(1000) {
            let q = Query::select()
                .columns(["id", "record_ids"])
                .from("sys_sensitive_reads")
                .and_where(Expr::col("id").is_in(chunk.iter().copied()))
                .to_owned();
            for row in self.db.query_all(&q).await? {
                fetched.insert(row.try_get_by_index(0)?, text(&row, 1)?);
            }
        }
        for (id, first) in references {
            let list = lists.get(&first).or_else(|| fetched.get(&first)).cloned().ok_or_else(|| {
                StoreError::Corrupt(format!("sensitive read {id} refers to read {first}, which is missing"))
            })?;
            lists.insert(id, list);
        }
        Ok(lists)
    }

    /// Reads the sensitive access log, newest first: one entry per record read (and one for a
    /// search that matched none). With a record
    /// id it is an index lookup of that record's reads; otherwise reads are listed newest first
    /// and expanded into their records.
    pub async fn sensitive_reads(&self, q: &SensitiveReadQuery) -> StoreResult<Vec<SensitiveRead>> {
        if !self.flush_access_log().await {
            return Err(StoreError::Unavailable(LogUnavailable.to_string()));
        }
        let bad_cursor = || StoreError::Refused("after: not an entry id of the sensitive access log".into());
        let after: Option<(i64, String)> = match &q.after {
            Some(a) => {
                let (read, record) = a.split_once(':').ok_or_else(bad_cursor)?;
                Some((read.parse().map_err(|_| bad_cursor())?, record.to_string()))
            }
            None => None,
        };
        // One more read than the page, as the page may skip the first (the cursor's).
        let wanted = q.limit + 1;
        let select = |ids: Option<&[i64]>, limit: u64| {
            let mut select = Query::select();
            select
                .expr(Expr::col(("r", "id")))
                .columns(READ_COLUMNS.map(|c| ("r", c)))
                .from_as("sys_sensitive_reads", "r");
            if let Some(ids) = ids {
                select.and_where(Expr::col(("r", "id")).is_in(ids.iter().copied()));
            }
            for (col, v) in [("object", &q.object), ("user_id", &q.user_id)] {
                if let Some(v) = v {
                    select.and_where(Expr::col(("r", col)).eq(v.clone()));
                }
            }
            if let Some((read, _)) = &after {
                select.and_where(Expr::col(("r", "id")).lte(*read));
            }
            select.order_by(("r", "id"), Order::Desc).limit(limit);
            select
        };
        let rows = match &q.record_id {
            None => self.db.query_all(&select(None, wanted)).await?,
            Some(record) => {
                // The record's reads, newest first, looked up a chunk at a time until the page
                // is full: the reads of other users (or objects) are skipped over.
                let mut index = Query::select();
                index
                    .column("read_ids")
                    .from("sys_sensitive_read_records")
                    .and_where(Expr::col("record_id").eq(record.clone()));
                if let Some((read, _)) = &after {
                    index.and_where(Expr::col("read_id").lte(*read));
                }
                let mut runs: Vec<(i64, i64)> = Vec::new();
                for row in self.db.query_all(&index).await? {
                    let text: String = row.try_get_by_index(0)?;
                    runs.extend(ReadRuns::parse(&text));
                }
                let mut ids = newest_reads(runs, after.as_ref().map(|(read, _)| *read));
                let mut rows = Vec::new();
                while (rows.len() as u64) < wanted {
                    let chunk: Vec<i64> = ids.by_ref().take(READ_IDS_PER_STATEMENT).collect();
                    if chunk.is_empty() {
                        break;
                    }
                    rows.extend(self.db.query_all(&select(Some(&chunk), wanted - rows.len() as u64)).await?);
                }
                rows
            }
        };
        let lists = self.resolve_record_lists(&rows).await?;
        let mut out = Vec::new();
        for row in &rows {
            let text = |i: usize| -> StoreResult<Option<String>> {
                match decode(row, i, Storage::Text, self.backend, "sys_sensitive_reads")? {
                    Value::Text(s) => Ok(Some(s)),
                    _ => Ok(None),
                }
            };
            let id: i64 = row.try_get_by_index(0)?;
            let at = match decode(row, 1, Storage::DateTime, self.backend, "at")? {
                Value::DateTime(d) => d,
                _ => return Err(StoreError::Corrupt("sensitive read without time".into())),
            };
            let fields: Vec<String> =
                text(4)?.unwrap_or_default().split(',').filter(|s| !s.is_empty()).map(str::to_string).collect();
            let list = lists.get(&id).map(String::as_str).unwrap_or_default();
            // In the order of ids, which the cursor (`<read>:<record>`) compares with.
            let mut records: Vec<Option<&str>> = list.split(',').filter(|s| !s.is_empty()).map(Some).collect();
            records.sort_unstable();
            if records.is_empty() {
                // A search that matched no record is one entry without a record.
                records.push(None);
            }
            for record in records {
                if q.record_id.is_some() && q.record_id.as_deref() != record {
                    continue;
                }
                let key = record.unwrap_or_default();
                if let Some((read, last)) = &after
                    && *read == id
                    && key <= last.as_str()
                {
                    continue;
                }
                out.push(SensitiveRead {
                    id: format!("{id}:{key}"),
                    at,
                    user_id: text(2)?.unwrap_or_default(),
                    object: text(3)?.unwrap_or_default(),
                    record_id: record.map(str::to_string),
                    fields: fields.clone(),
                    via: text(5)?.unwrap_or_default(),
                    request_id: text(6)?,
                });
            }
            if out.len() as u64 >= q.limit {
                break;
            }
        }
        out.truncate(q.limit as usize);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_records_reads_are_read_back_newest_first() {
        // Runs of two flushes, and a row written as a plain list before runs.
        let all = vec![(4, 7), (9, 9), (12, 13), (20, 22), (1, 1), (2, 2)];
        let newest = |at_most: Option<i64>, n: usize| newest_reads(all.clone(), at_most).take(n).collect::<Vec<_>>();
        assert_eq!(newest(None, 100), [22, 21, 20, 13, 12, 9, 7, 6, 5, 4, 2, 1]);
        assert_eq!(newest(Some(12), 4), [12, 9, 7, 6]);
        assert_eq!(newest(Some(21), 2), [21, 20]);
        assert_eq!(newest(Some(0), 100), Vec::<i64>::new());
    }
}

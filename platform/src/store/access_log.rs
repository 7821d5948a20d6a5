//! The sensitive access log: every value shown unmasked (and every search of a field shown
//! masked) is queued here and written, in batches off the request path, by a background
//! writer that keeps what it failed to write until it can. `sensitive_reads` reads it back.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, TransactionTrait};
use sea_query::{Expr, Func, Query};
use tokio::sync::{mpsc, oneshot};

use super::writes::insert_many;
use super::{Store, StoreResult};
use crate::graphql::DataError;

/// How a sensitive value reached the caller, as the access log records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A list page (or a reverse relation's page).
    List,
    /// A record read by id.
    Get,
    /// A record reached through a lookup.
    Lookup,
    /// A record returned by a write.
    Write,
    /// A data-subject export.
    Export,
    /// A record's audit images.
    Audit,
    /// A search by equality on a field the caller sees masked: the records it matched, whose
    /// value the answer confirmed (the value searched for is not logged).
    Search,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::List => "list",
            Via::Get => "get",
            Via::Lookup => "lookup",
            Via::Write => "write",
            Via::Export => "export",
            Via::Audit => "audit",
            Via::Search => "search",
        }
    }
}

/// One entry of the sensitive access log: who saw which fields of a record unmasked.
#[derive(Debug, Clone, PartialEq)]
pub struct SensitiveRead {
    /// `<read id>:<record id>`: one read may cover many records.
    pub id: String,
    pub at: DateTime<Utc>,
    pub user_id: String,
    pub object: String,
    /// The record read; none for a search that matched no record.
    pub record_id: Option<String>,
    /// Api names of the fields shown unmasked.
    pub fields: Vec<String>,
    pub via: String,
    pub request_id: Option<String>,
}

/// A page of the sensitive access log, newest first.
#[derive(Debug, Clone, Default)]
pub struct SensitiveReadQuery {
    pub object: Option<String>,
    pub record_id: Option<String>,
    pub user_id: Option<String>,
    /// Only entries after this one (the previous page's last `id`).
    pub after: Option<String>,
    pub limit: u64,
}

/// One read to log: the records whose `fields` a caller saw unmasked in one request.
#[derive(Debug, Clone)]
pub(super) struct ReadBatch {
    pub at: DateTime<Utc>,
    pub user_id: String,
    pub object: String,
    pub fields: Vec<String>,
    pub via: Via,
    pub request_id: Option<String>,
    pub record_ids: Vec<String>,
}

enum LogMessage {
    Entries(Vec<ReadBatch>),
    /// Answered, once everything sent before it is written or could not be, with whether it
    /// was.
    Flush(oneshot::Sender<bool>),
}

/// Queues access-log entries for a background writer that inserts them many rows per
/// statement, so reading sensitive values costs a list query no extra round trip. Entries
/// whose write fails stay queued and are written again, after a growing pause, until they are
/// written; meanwhile the log says it is `failing`, and values that would have to be logged are
/// not shown (see `Store::reveal`).
#[derive(Clone)]
pub struct AccessLog {
    tx: mpsc::Sender<LogMessage>,
    failing: Arc<AtomicBool>,
}

/// The sensitive access log cannot take entries now: a write of it failed and is being retried,
/// or its writer has stopped.
#[derive(Debug, thiserror::Error)]
#[error(
    "the sensitive access log cannot be written at the moment, so values that would be logged are withheld; try again shortly"
)]
pub(super) struct LogUnavailable;

impl From<LogUnavailable> for DataError {
    fn from(e: LogUnavailable) -> DataError {
        DataError::Unavailable(e.to_string())
    }
}

/// Entries waiting before writers are held back (each list page sends one message).
const LOG_QUEUE: usize = 4096;
/// How long the writer gathers entries before writing them. Each flush writes one row per read
/// and one per record read, so the longer the window, the more reads of the same records share
/// that row. In figure (h) on PostgreSQL (lists of 50 of a city's contacts, 50 cities), a tenth
/// of a second wrote six times the per-record rows of a second, and the encrypted list cost
/// PostgreSQL 200–220 µs more CPU per request than the plain one, against 80–90 µs.
/// Reading the log and stopping the server flush first.
const LOG_GATHER: Duration = Duration::from_secs(1);
/// Most record ids one flush gathers (a few MiB) before it writes them.
const LOG_BATCH: usize = 50_000;
/// Most distinct records one flush gathers: it writes a row for each, so this bounds the
/// flush's transaction (and how long it holds SQLite's write lock).
const LOG_RECORDS: usize = 10_000;
/// The pause before a failed write of the log is tried again; it doubles after each failure
/// up to `RETRY_MAX`. A flush (reading the log, stopping the server) tries at once.
const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(10);
/// Tries of a failed write once the server stops, before the entries are given up (loudly).
const RETRIES_AT_EXIT: u32 = 5;
pub(super) const READ_COLUMNS: [&str; 7] = ["at", "user_id", "object", "fields", "via", "request_id", "record_ids"];
/// Starts `record_ids` of a read that saw the same records as an earlier read of its flush:
/// `=<that read's id>` instead of the list again. A list page read over and over (a dashboard,
/// a refreshed view) then costs its fifty ids once per flush rather than once per read; ids
/// never start with it, so older rows (always lists) read as before.
pub(super) const SAME_RECORDS_AS: char = '=';

/// The `record_ids` column of each read, in order: the ids joined, or a reference to the first
/// read of the same flush that saw exactly the same records.
fn record_lists(entries: &[ReadBatch], ids: &[i64]) -> Vec<String> {
    let mut first_with: HashMap<&[String], i64, foldhash::fast::RandomState> = HashMap::default();
    entries
        .iter()
        .zip(ids)
        .map(|(e, id)| match first_with.entry(e.record_ids.as_slice()) {
            Entry::Occupied(first) => format!("{SAME_RECORDS_AS}{}", first.get()),
            Entry::Vacant(slot) => {
                slot.insert(*id);
                e.record_ids.join(",")
            }
        })
        .collect()
}

/// The ids of a record's reads in one flush, as `read_ids` stores them: ascending runs of
/// consecutive ids, `4-9,12,15-16`. The reads of one flush have consecutive ids, so a record on
/// a page read over and over (a dashboard, a list refreshed) costs a few bytes per flush rather
/// than a number per read: in figure (h) of the bench that was 24 KB per record per second.
/// Rows written before runs hold plain lists of ids, which parse as runs of one.
#[derive(Default)]
pub(super) struct ReadRuns {
    text: String,
    first: Option<i64>,
    /// The run being extended: its first and last id.
    run: Option<(i64, i64)>,
}

impl ReadRuns {
    /// Adds a read id, no smaller than the last one added.
    fn push(&mut self, id: i64) {
        match &mut self.run {
            Some((_, last)) if id == *last || id == *last + 1 => *last = id,
            _ => {
                self.close();
                self.run = Some((id, id));
                self.first.get_or_insert(id);
            }
        }
    }

    fn close(&mut self) {
        use std::fmt::Write as _;
        if let Some((from, to)) = self.run.take() {
            let comma = if self.text.is_empty() { "" } else { "," };
            // Writing to a `String` cannot fail.
            let _ =
                if from == to { write!(self.text, "{comma}{from}") } else { write!(self.text, "{comma}{from}-{to}") };
        }
    }

    fn finish(mut self) -> String {
        self.close();
        self.text
    }

    /// The inclusive ranges of ids a stored `read_ids` holds (items that do not parse are
    /// skipped).
    pub(super) fn parse(text: &str) -> impl Iterator<Item = (i64, i64)> + '_ {
        text.split(',').filter_map(|item| match item.split_once('-') {
            Some((from, to)) => Some((from.parse().ok()?, to.parse().ok()?)),
            None => item.parse().ok().map(|id| (id, id)),
        })
    }
}

/// What the log writer has gathered for its next flush.
#[derive(Default)]
struct Gathered {
    entries: Vec<ReadBatch>,
    acks: Vec<oneshot::Sender<bool>>,
    ids: usize,
    /// Hashes of the distinct record ids among `entries` (a collision only lets a flush
    /// gather a little more), by `hasher`. Both are foldhash: with SipHash, counting the ids
    /// of list reads was half of the log's CPU.
    records: HashSet<u64, foldhash::fast::RandomState>,
    hasher: foldhash::fast::RandomState,
}

impl Gathered {
    fn take(&mut self, message: LogMessage) {
        match message {
            LogMessage::Entries(mut reads) => {
                for read in &reads {
                    self.ids += read.record_ids.len();
                    self.records.extend(read.record_ids.iter().map(|id| self.hasher.hash_one(id)));
                }
                self.entries.append(&mut reads);
            }
            LogMessage::Flush(ack) => self.acks.push(ack),
        }
    }

    /// Whether to write now: someone waits for the log, or a bound is reached.
    fn full(&self) -> bool {
        !self.acks.is_empty() || self.ids >= LOG_BATCH || self.records.len() >= LOG_RECORDS
    }
}

impl AccessLog {
    pub(super) fn start(
        writer: DatabaseConnection,
        backend: DbBackend,
        lock: std::sync::Arc<tokio::sync::Mutex<()>>,
    ) -> AccessLog {
        let (tx, rx) = mpsc::channel::<LogMessage>(LOG_QUEUE);
        let failing = Arc::new(AtomicBool::new(false));
        let writer = LogWriter { writer, backend, lock, failing: failing.clone() };
        tokio::spawn(writer.run(rx));
        AccessLog { tx, failing }
    }

    /// Whether the last write of the log failed and its entries wait to be written again.
    pub(super) fn failing(&self) -> bool {
        self.failing.load(Ordering::Acquire)
    }

    /// Queues entries. They are in the log once written: waiting for room in the queue when
    /// the writer is behind, and refused when its writer has stopped.
    pub(super) async fn record(&self, entries: Vec<ReadBatch>) -> Result<(), LogUnavailable> {
        if entries.is_empty() {
            return Ok(());
        }
        self.tx.send(LogMessage::Entries(entries)).await.map_err(|_| {
            tracing::error!("the sensitive access log writer has stopped");
            LogUnavailable
        })
    }

    /// Waits until every entry queued so far is written, or a try to write them failed;
    /// returns whether they are written.
    pub async fn flush(&self) -> bool {
        let (ack, done) = oneshot::channel();
        if self.tx.send(LogMessage::Flush(ack)).await.is_err() {
            return false;
        }
        done.await.unwrap_or(false)
    }
}

/// The background writer of the log.
struct LogWriter {
    writer: DatabaseConnection,
    backend: DbBackend,
    lock: std::sync::Arc<tokio::sync::Mutex<()>>,
    failing: Arc<AtomicBool>,
}

impl LogWriter {
    async fn run(self, mut rx: mpsc::Receiver<LogMessage>) {
        // Entries a write failed to store, written again before any others.
        let mut pending: Vec<ReadBatch> = Vec::new();
        let mut pause = RETRY_FIRST;
        let mut open = true;
        while open {
            let mut gathered = Gathered::default();
            if pending.is_empty() {
                match rx.recv().await {
                    Some(first) => gathered.take(first),
                    None => break,
                }
            }
            // Gather for a while, or while entries wait for their next try, until the pause is
            // over or someone waits for the log.
            let wait = if pending.is_empty() { LOG_GATHER } else { pause };
            let deadline = tokio::time::Instant::now() + wait;
            while !gathered.full() {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(m)) => gathered.take(m),
                    Ok(None) => {
                        open = false;
                        break;
                    }
                    Err(_) => break,
                }
            }
            // A flush also takes whatever else is already queued.
            while let Ok(m) = rx.try_recv() {
                gathered.take(m);
            }
            let Gathered { entries, acks, .. } = gathered;
            pending.extend(entries);
            let written = self.write(&pending).await;
            if written {
                pending.clear();
                pause = RETRY_FIRST;
            } else {
                pause = std::cmp::min(pause * 2, RETRY_MAX);
            }
            for ack in acks {
                let _ = ack.send(written);
            }
        }
        // Every handle is gone (the server stopped): a few more tries for what is left.
        let mut tries = 0;
        while !pending.is_empty() && tries < RETRIES_AT_EXIT {
            tries += 1;
            tokio::time::sleep(RETRY_FIRST * tries).await;
            if self.write(&pending).await {
                pending.clear();
            }
        }
        if !pending.is_empty() {
            let records: usize = pending.iter().map(|e| e.record_ids.len()).sum();
            tracing::error!(entries = pending.len(), records, "sensitive reads were served but could not be logged");
        }
    }

    /// Writes `entries` (none: nothing to do); returns whether they are written, and says so
    /// in `failing`.
    async fn write(&self, entries: &[ReadBatch]) -> bool {
        if entries.is_empty() {
            return true;
        }
        // SQLite has one writer: take turns with the record writes.
        let guard = if self.backend == DbBackend::Sqlite { Some(self.lock.lock().await) } else { None };
        let result = write_log(&self.writer, self.backend, entries).await;
        drop(guard);
        match result {
            Ok(()) => {
                if self.failing.swap(false, Ordering::AcqRel) {
                    tracing::info!(entries = entries.len(), "the sensitive access log is written again");
                }
                true
            }
            Err(e) => {
                // Kept and tried again; until then, values that would be logged are withheld.
                tracing::error!(error = %e, entries = entries.len(), "cannot write the sensitive access log; retrying");
                self.failing.store(true, Ordering::Release);
                false
            }
        }
    }
}

/// Writes reads, many rows per statement, and per record read the ids of its reads in this
/// flush, one row per record. Read ids are taken up front: on SQLite the next after the largest
/// (the write lock is held from the start, so no other writer interleaves), on PostgreSQL from
/// the column's sequence.
async fn write_log(writer: &DatabaseConnection, backend: DbBackend, entries: &[ReadBatch]) -> StoreResult<()> {
    use sea_orm::{SqliteTransactionMode, TransactionOptions};
    let mode = (backend == DbBackend::Sqlite).then_some(SqliteTransactionMode::Immediate);
    let options = TransactionOptions { isolation_level: None, access_mode: None, sqlite_transaction_mode: mode };
    let txn = writer.begin_with_options(options).await?;
    let n = entries.len() as i64;
    let ids: Vec<i64> = match backend {
        DbBackend::Postgres => {
            let sql = "SELECT nextval(pg_get_serial_sequence('sys_sensitive_reads', 'id')) FROM generate_series(1, $1)";
            let rows = txn.query_all_raw(sea_orm::Statement::from_sql_and_values(backend, sql, [n.into()])).await?;
            rows.iter().map(|r| r.try_get_by_index::<i64>(0)).collect::<Result<_, _>>()?
        }
        _ => {
            let q = Query::select().expr(Func::max(Expr::col("id"))).from("sys_sensitive_reads").to_owned();
            let last: Option<i64> = match txn.query_one(&q).await? {
                Some(row) => row.try_get_by_index(0)?,
                None => None,
            };
            let first = last.unwrap_or(0) + 1;
            (first..first + n).collect()
        }
    };
    let mut by_record: std::collections::BTreeMap<&str, ReadRuns> = std::collections::BTreeMap::new();
    let mut rows: Vec<sea_query::Value> = Vec::with_capacity(entries.len() * (READ_COLUMNS.len() + 1));
    let lists = record_lists(entries, &ids);
    for ((e, id), records) in entries.iter().zip(&ids).zip(lists) {
        rows.extend([
            (*id).into(),
            e.at.into(),
            e.user_id.clone().into(),
            e.object.clone().into(),
            e.fields.join(",").into(),
            e.via.as_str().into(),
            sea_query::Value::String(e.request_id.clone()),
            records.into(),
        ]);
        for record in &e.record_ids {
            by_record.entry(record.as_str()).or_default().push(*id);
        }
    }
    let mut columns = vec!["id"];
    columns.extend(READ_COLUMNS);
    for chunk in rows.chunks(columns.len() * 2000) {
        txn.execute_raw(insert_many(backend, "sys_sensitive_reads", &columns, chunk.to_vec())).await?;
    }
    let mut values: Vec<sea_query::Value> = Vec::with_capacity(by_record.len() * 3);
    for (record, runs) in by_record {
        let Some(first) = runs.first else { continue };
        values.extend([record.to_string().into(), first.into(), runs.finish().into()]);
    }
    for chunk in values.chunks(3 * 3000) {
        let columns = ["record_id", "read_id", "read_ids"];
        txn.execute_raw(insert_many(backend, "sys_sensitive_read_records", &columns, chunk.to_vec())).await?;
    }
    txn.commit().await?;
    Ok(())
}

impl Store {
    /// Queues entries for the sensitive access log.
    pub(super) async fn log_sensitive_reads(&self, entries: Vec<ReadBatch>) -> Result<(), LogUnavailable> {
        self.access_log.record(entries).await
    }

    /// Whether values that must be logged can be shown: not while writes of the log fail.
    pub(super) fn access_log_available(&self) -> Result<(), LogUnavailable> {
        if self.access_log.failing() { Err(LogUnavailable) } else { Ok(()) }
    }

    /// Waits until the sensitive access log holds every read so far, or a try to write them
    /// failed; returns whether it holds them.
    pub async fn flush_access_log(&self) -> bool {
        self.access_log.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(records: &[&str]) -> ReadBatch {
        ReadBatch {
            at: Utc::now(),
            user_id: "u".into(),
            object: "customer".into(),
            fields: vec!["phone".into()],
            via: Via::List,
            request_id: None,
            record_ids: records.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[test]
    fn a_flush_stores_each_list_of_records_once() {
        let entries = [read(&["a", "b"]), read(&["c"]), read(&["a", "b"]), read(&["b", "a"]), read(&["c"])];
        let lists = record_lists(&entries, &[10, 11, 12, 13, 14]);
        assert_eq!(lists, ["a,b", "c", "=10", "b,a", "=11"]);
    }

    #[test]
    fn a_records_reads_are_stored_as_runs() {
        let mut runs = ReadRuns::default();
        for id in [4, 5, 6, 6, 7, 9, 12, 13] {
            runs.push(id);
        }
        assert_eq!(runs.first, Some(4));
        let text = runs.finish();
        assert_eq!(text, "4-7,9,12-13");
        // A row of another flush, and one written as a plain list before runs.
        let stored = [text.as_str(), "20-22", "1,2"];
        let all: Vec<(i64, i64)> = stored.iter().flat_map(|t| ReadRuns::parse(t)).collect();
        assert_eq!(all, [(4, 7), (9, 9), (12, 13), (20, 22), (1, 1), (2, 2)]);
        assert_eq!(ReadRuns::parse("x,3-y,5").collect::<Vec<_>>(), [(5, 5)], "what does not parse is skipped");
        assert_eq!(ReadRuns::default().finish(), "");
    }

    #[test]
    fn a_flush_is_due_at_its_bounds_of_distinct_records_and_of_ids_or_when_awaited() {
        let page: Vec<String> = (0..50).map(|i| format!("r{i}")).collect();
        let page: Vec<&str> = page.iter().map(String::as_str).collect();
        // The same page read again and again: many ids, few records.
        let mut g = Gathered::default();
        for _ in 0..LOG_BATCH / 50 - 1 {
            g.take(LogMessage::Entries(vec![read(&page)]));
        }
        assert!(!g.full(), "{} ids of {} records", g.ids, g.records.len());
        g.take(LogMessage::Entries(vec![read(&page)]));
        assert!(g.full());

        // Pages of different records: the records' bound comes first.
        let mut g = Gathered::default();
        let ids: Vec<String> = (0..LOG_RECORDS).map(|i| format!("r{i}")).collect();
        for chunk in ids[..LOG_RECORDS - 1].chunks(50) {
            g.take(LogMessage::Entries(vec![read(&chunk.iter().map(String::as_str).collect::<Vec<_>>())]));
        }
        assert!(!g.full());
        g.take(LogMessage::Entries(vec![read(&[ids[LOG_RECORDS - 1].as_str()])]));
        assert!(g.full());
        assert_eq!(g.entries.iter().map(|e| e.record_ids.len()).sum::<usize>(), LOG_RECORDS);

        let mut g = Gathered::default();
        g.take(LogMessage::Entries(vec![read(&["a"])]));
        assert!(!g.full());
        let (ack, _done) = oneshot::channel();
        g.take(LogMessage::Flush(ack));
        assert!(g.full(), "someone reading the log waits for it");
    }
}

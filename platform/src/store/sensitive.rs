//! Sensitive fields on the record path. Writes: values of encrypted fields become envelopes
//! bound to their record, with blind indexes beside them. Searches: plaintexts in `eq`/`in`
//! conditions become blind indexes. Reads: envelopes are opened and the value masked for
//! callers without `UNMASKED_READ`; every value shown unmasked is logged in the sensitive
//! access log, in batches written off the request path.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, TransactionTrait};
use sea_query::{Expr, ExprTrait, Order, Query};
use tessera_metadata::{FieldDefinition, Filter, Mask, ObjectDefinition, Value};
use tokio::sync::{mpsc, oneshot};

use super::codec::{Storage, decode};
use super::writes::{Row, insert_many};
use super::{Store, StoreError, StoreResult};
use crate::crypto::{Aad, CryptoError, KeyRing};
use crate::graphql::{Caller, DataResult, Record};

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
        }
    }
}

/// One entry of the sensitive access log: who saw which fields of a record unmasked.
#[derive(Debug, Clone, PartialEq)]
pub struct SensitiveRead {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub user_id: String,
    pub object: String,
    pub record_id: String,
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
    /// Only entries older than this id (the previous page's last).
    pub before_id: Option<i64>,
    pub limit: u64,
}

enum LogMessage {
    Entries(Vec<SensitiveRead>),
    /// Answered once everything sent before it is written.
    Flush(oneshot::Sender<()>),
}

/// Queues access-log entries for a background writer that inserts them many rows per
/// statement, so reading sensitive values costs a list query no extra round trip.
#[derive(Clone)]
pub struct AccessLog {
    tx: mpsc::Sender<LogMessage>,
}

/// Entries waiting before writers are held back (each list page sends one message).
const LOG_QUEUE: usize = 4096;
/// How long the writer gathers entries before writing them.
const LOG_GATHER: Duration = Duration::from_millis(100);
/// Most entries written in one transaction.
const LOG_BATCH: usize = 5000;
const LOG_COLUMNS: [&str; 7] = ["at", "user_id", "object", "record_id", "fields", "via", "request_id"];

impl AccessLog {
    pub(super) fn start(
        writer: DatabaseConnection,
        backend: DbBackend,
        lock: std::sync::Arc<tokio::sync::Mutex<()>>,
    ) -> AccessLog {
        let (tx, mut rx) = mpsc::channel::<LogMessage>(LOG_QUEUE);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut entries = Vec::new();
                let mut acks = Vec::new();
                let take =
                    |m: LogMessage, entries: &mut Vec<SensitiveRead>, acks: &mut Vec<oneshot::Sender<()>>| match m {
                        LogMessage::Entries(mut e) => entries.append(&mut e),
                        LogMessage::Flush(ack) => acks.push(ack),
                    };
                take(first, &mut entries, &mut acks);
                let deadline = tokio::time::Instant::now() + LOG_GATHER;
                while acks.is_empty() && entries.len() < LOG_BATCH {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(m)) => take(m, &mut entries, &mut acks),
                        _ => break,
                    }
                }
                // A flush also takes whatever else is already queued.
                while let Ok(m) = rx.try_recv() {
                    take(m, &mut entries, &mut acks);
                }
                if !entries.is_empty() {
                    // SQLite has one writer: take turns with the record writes.
                    let guard = if backend == DbBackend::Sqlite { Some(lock.lock().await) } else { None };
                    if let Err(e) = write_log(&writer, backend, &entries).await {
                        // The entries stay in memory no longer; the failure is loud.
                        tracing::error!(error = %e, entries = entries.len(), "cannot write the sensitive access log");
                    }
                    drop(guard);
                }
                for ack in acks {
                    let _ = ack.send(());
                }
            }
        });
        AccessLog { tx }
    }

    async fn record(&self, entries: Vec<SensitiveRead>) {
        if !entries.is_empty() && self.tx.send(LogMessage::Entries(entries)).await.is_err() {
            tracing::error!("the sensitive access log writer has stopped");
        }
    }

    /// Waits until every entry queued so far is written.
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(LogMessage::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }
}

async fn write_log(writer: &DatabaseConnection, backend: DbBackend, entries: &[SensitiveRead]) -> StoreResult<()> {
    let txn = writer.begin().await?;
    for chunk in entries.chunks(2000) {
        let mut values = Vec::with_capacity(chunk.len() * LOG_COLUMNS.len());
        for e in chunk {
            values.extend([
                e.at.into(),
                e.user_id.clone().into(),
                e.object.clone().into(),
                e.record_id.clone().into(),
                e.fields.join(",").into(),
                e.via.clone().into(),
                sea_query::Value::String(e.request_id.clone()),
            ]);
        }
        txn.execute_raw(insert_many(backend, "sys_sensitive_access", &LOG_COLUMNS, values)).await?;
    }
    txn.commit().await?;
    Ok(())
}

impl From<CryptoError> for StoreError {
    fn from(e: CryptoError) -> StoreError {
        StoreError::Corrupt(e.to_string())
    }
}

/// Opens a stored value of a field. `Ok(None)` is plaintext left from before the field was
/// encrypted (accepted only while its values are being converted).
pub(super) fn open_value(
    ring: &KeyRing,
    object: &str,
    field: &FieldDefinition,
    record_id: &str,
    stored: &str,
    converting: bool,
) -> Result<Option<String>, CryptoError> {
    let aad = Aad { object, field: field.name.as_str(), record_id };
    match ring.decrypt(aad, stored) {
        Ok(plain) => Ok(Some(plain)),
        // A forged envelope cannot authenticate, so during a conversion anything that does
        // not open is a value not converted yet.
        Err(_) if converting => Ok(None),
        Err(e) => Err(e),
    }
}

impl Store {
    /// Encrypts the encrypted fields of a row about to be written to record `record_id`, and
    /// fills their blind indexes.
    pub(super) fn seal_row(&self, object: &ObjectDefinition, record_id: &str, row: &mut Row) -> DataResult<()> {
        let mut ring: Option<std::sync::Arc<KeyRing>> = None;
        for f in object.fields.iter().filter(|f| f.is_encrypted()) {
            let column = f.column();
            let Some(value) = row.get(&column) else { continue };
            let sealed = match value {
                Value::Text(plain) => {
                    let ring = match &ring {
                        Some(r) => r.clone(),
                        None => ring.insert(self.key_ring()?).clone(),
                    };
                    let index = f.is_searchable().then(|| ring.blind_index(f.field_type, plain));
                    let aad = Aad { object: object.name.as_str(), field: f.name.as_str(), record_id };
                    Some((ring.encrypt(aad, plain), index))
                }
                _ => None,
            };
            match sealed {
                Some((envelope, index)) => {
                    row.insert(column, Value::Text(envelope));
                    if let Some(index) = index {
                        row.insert(f.blind_index_column(), Value::Text(index));
                    }
                }
                None => {
                    if f.is_searchable() {
                        row.insert(f.blind_index_column(), Value::Null);
                    }
                }
            }
        }
        Ok(())
    }

    /// The blind index a plaintext of a searchable field would have.
    pub(super) fn blind_index_of(&self, field: &FieldDefinition, plain: &str) -> StoreResult<String> {
        Ok(self.key_ring()?.blind_index(field.field_type, plain))
    }

    /// Turns the plaintexts of blind-index conditions into blind indexes (anywhere in the
    /// filter, lookups included); while a field's values are still being encrypted the
    /// plaintexts are compared with its column too.
    pub(super) fn hash_filter(&self, filter: Filter) -> StoreResult<Filter> {
        Ok(match filter {
            Filter::Blind { object, field, field_type, column, index_column, values, hashed: false, .. } => {
                let ring = self.key_ring()?;
                let hashes = values.iter().map(|v| ring.blind_index(field_type, v)).collect();
                let plain = if self.is_converting(&object, &field) { values } else { Vec::new() };
                Filter::Blind { object, field, field_type, column, index_column, values: hashes, hashed: true, plain }
            }
            Filter::Related { column, target, filter } => {
                Filter::Related { column, target, filter: Box::new(self.hash_filter(*filter)?) }
            }
            Filter::And(parts) => {
                Filter::And(parts.into_iter().map(|p| self.hash_filter(p)).collect::<Result<_, _>>()?)
            }
            Filter::Or(parts) => Filter::Or(parts.into_iter().map(|p| self.hash_filter(p)).collect::<Result<_, _>>()?),
            Filter::Not(inner) => Filter::Not(Box::new(self.hash_filter(*inner)?)),
            other => other,
        })
    }

    pub(super) fn hash_filter_opt(&self, filter: Option<Filter>) -> StoreResult<Option<Filter>> {
        filter.map(|f| self.hash_filter(f)).transpose()
    }

    /// Opens the sensitive values of records for the caller: the value itself where they may
    /// see it unmasked (logged), its mask otherwise. Fields in `supplied` came from the
    /// caller's own input and are returned as given, unlogged. A value that fails to open is
    /// left out and named in `Record::broken`, so the API reports an error for that value only.
    pub(super) async fn reveal(
        &self,
        caller: &Caller,
        object: &ObjectDefinition,
        records: &mut [Record],
        via: Via,
        supplied: Option<&HashSet<String>>,
    ) -> DataResult<()> {
        let fields: Vec<&FieldDefinition> = object.fields.iter().filter(|f| f.sensitive.is_some()).collect();
        if fields.is_empty() || records.is_empty() {
            return Ok(());
        }
        let present = |f: &FieldDefinition| records.iter().any(|r| r.values.contains_key(&f.column()));
        let fields: Vec<&FieldDefinition> = fields.into_iter().filter(|f| present(f)).collect();
        if fields.is_empty() {
            return Ok(());
        }
        let name = object.name.as_str();
        let converting: Vec<bool> = fields.iter().map(|f| self.is_converting(name, f.name.as_str())).collect();
        let ring = if fields.iter().zip(&converting).any(|(f, c)| f.is_encrypted() || *c) {
            Some(self.key_ring()?)
        } else {
            None
        };
        let grant = caller.access.object(name);
        let now = Utc::now();
        let mut log = Vec::new();
        for record in records.iter_mut() {
            let mut shown = Vec::new();
            for (f, converting) in fields.iter().zip(&converting) {
                let column = f.column();
                let Some(Value::Text(stored)) = record.values.get(&column) else { continue };
                let plain = match &ring {
                    Some(ring) if f.is_encrypted() || *converting => {
                        match open_value(ring, name, f, &record.id, stored, *converting || !f.is_encrypted()) {
                            Ok(Some(p)) => p,
                            Ok(None) => stored.clone(),
                            Err(e) => {
                                tracing::error!(object = name, field = %f.name, record = %record.id, error = %e, "a sensitive value cannot be opened");
                                record.values.insert(column.clone(), Value::Null);
                                record.broken.push(column);
                                continue;
                            }
                        }
                    }
                    _ => stored.clone(),
                };
                let mask = f.sensitive.map_or(Mask::None, |s| s.mask);
                let own_input = supplied.is_some_and(|s| s.contains(&column));
                let value = if own_input {
                    plain
                } else if mask == Mask::None || grant.unmasked(f.name.as_str()) {
                    shown.push(f.name.to_string());
                    plain
                } else {
                    mask.apply(&plain)
                };
                record.values.insert(column, Value::Text(value));
            }
            if !shown.is_empty() {
                log.push(SensitiveRead {
                    id: 0,
                    at: now,
                    user_id: caller.user_id.clone(),
                    object: name.to_string(),
                    record_id: record.id.clone(),
                    fields: shown,
                    via: via.as_str().to_string(),
                    request_id: caller.request_id.clone(),
                });
            }
        }
        self.access_log.record(log).await;
        Ok(())
    }

    /// Queues entries for the sensitive access log.
    pub(super) async fn log_sensitive_reads(&self, entries: Vec<SensitiveRead>) {
        self.access_log.record(entries).await;
    }

    /// Waits until the sensitive access log holds every read so far.
    pub async fn flush_access_log(&self) {
        self.access_log.flush().await;
    }

    /// Reads the sensitive access log, newest first.
    pub async fn sensitive_reads(&self, q: &SensitiveReadQuery) -> StoreResult<Vec<SensitiveRead>> {
        self.flush_access_log().await;
        let mut select = Query::select();
        select.column("id").columns(LOG_COLUMNS).from("sys_sensitive_access");
        for (col, v) in [("object", &q.object), ("record_id", &q.record_id), ("user_id", &q.user_id)] {
            if let Some(v) = v {
                select.and_where(Expr::col(col).eq(v.clone()));
            }
        }
        if let Some(before) = q.before_id {
            select.and_where(Expr::col("id").lt(before));
        }
        select.order_by("id", Order::Desc).limit(q.limit);
        let rows = self.db.query_all(&select).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let text = |i: usize| -> StoreResult<Option<String>> {
                match decode(row, i, Storage::Text, self.backend, "sys_sensitive_access")? {
                    Value::Text(s) => Ok(Some(s)),
                    _ => Ok(None),
                }
            };
            let at = match decode(row, 1, Storage::DateTime, self.backend, "at")? {
                Value::DateTime(d) => d,
                _ => return Err(StoreError::Corrupt("sensitive access entry without time".into())),
            };
            out.push(SensitiveRead {
                id: row.try_get_by_index(0)?,
                at,
                user_id: text(2)?.unwrap_or_default(),
                object: text(3)?.unwrap_or_default(),
                record_id: text(4)?.unwrap_or_default(),
                fields: text(5)?.unwrap_or_default().split(',').filter(|s| !s.is_empty()).map(str::to_string).collect(),
                via: text(6)?.unwrap_or_default(),
                request_id: text(7)?,
            });
        }
        Ok(out)
    }
}

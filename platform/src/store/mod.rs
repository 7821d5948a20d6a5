//! The record store: the only place that writes SQL. It owns the connection pool, runs the
//! system migrations, turns metadata changes into DDL, and reads and writes records, users,
//! tokens, access policy rules and the audit log through sea-query over sea-orm, on SQLite and
//! PostgreSQL alike.

mod access_log;
mod audit;
mod cancel;
mod catalog;
mod codec;
mod ddl;
mod enforce;
mod fence;
mod filter;
mod identity;
mod key_jobs;
mod key_ring;
mod masked_search;
mod policy_rules;
mod privacy;
mod reads;
mod record_store;
mod rekey;
mod roles;
mod scripts;
mod sensitive;
mod sensitive_reads;
mod suspended_formulas;
mod upgrade;
mod users;
mod validation;
mod writes;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr};
use tessera_migrations::{Migrator, MigratorTrait};
use tokio::sync::Mutex;

use crate::crypto::{KeyRing, MasterKey};

pub use access_log::{SensitiveRead, SensitiveReadQuery, Via};
pub use audit::{AuditEntry, AuditQuery};
pub use cancel::interruptible;
pub use catalog::MetadataChange;
pub use identity::{TokenKind, TokenRow};
pub use key_jobs::{JobKind, JobState, KeyJob};
pub use key_ring::{KeyRingRow, PURPOSE_BLIND_INDEX, PURPOSE_DATA};
pub use masked_search::{DEFAULT_MASKED_SEARCHES_PER_FIELD, DEFAULT_MASKED_SEARCHES_PER_MINUTE, MaskedSearchLimits};
pub use policy_rules::{PolicyChange, PolicyChangeEffect, PolicyRule, PolicyRuleFilter};
pub use privacy::Erasure;
pub use rekey::{FieldKeyUsage, KeyStatus, RekeyOptions, RotationOutcome};
pub use roles::RoleRow;
pub use scripts::TestRun;
pub use users::{LoginReservation, LoginSubject, NewUser, UserChange, UserRow};
pub use writes::MAX_UPDATE_MANY;

/// Failures of the store. User-facing problems are mapped by the layers above; everything
/// else is logged once and reported as an internal error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    #[error("cannot build a statement: {0}")]
    Build(#[from] sea_query::error::Error),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// A change that the data does not allow (duplicates for a new unique index, values that
    /// cannot follow a type change, a concurrent metadata change); the message is for the user.
    #[error("{0}")]
    Refused(String),
    #[error("unsupported database url `{0}`: use sqlite://path.db or postgres://...")]
    UnsupportedUrl(String),
    /// A service the operation needs is failing for now (the sensitive access log cannot be
    /// written); the message is for the user, who may try again.
    #[error("{0}")]
    Unavailable(String),
    /// Field encryption is needed but no key ring is loaded (no master key was given).
    #[error("field encryption is not set up: start the server with its master key (--data-key-file)")]
    NoKeys,
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Handle to the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    /// Where write transactions run: a dedicated connection on SQLite, the pool on PostgreSQL.
    writer: DatabaseConnection,
    backend: DbBackend,
    /// SQLite allows one writer; queueing writers here avoids lock-upgrade failures of
    /// deferred transactions. PostgreSQL writers run concurrently.
    write_lock: std::sync::Arc<Mutex<()>>,
    /// Woken when a writer releases the write lock: the background checkpointer then copies
    /// what the write appended to the log into the database (see `spawn_maintenance`).
    wrote: Arc<tokio::sync::Notify>,
    /// SQLite: writes so far that may have removed or hidden records (every write under
    /// `write_guard`; batches of plain inserts take `insert_guard` instead). A batch create
    /// checks its references on a reader before it takes the write lock, and trusts that
    /// check under the lock only if this did not move in between.
    hiding_writes: Arc<AtomicU64>,
    schema: Arc<SchemaEpoch>,
    /// SQL statements executed so far, for tests that hold the API to a statement budget.
    statements: Arc<AtomicU64>,
    /// The unwrapped keys of field encryption, once the master key has opened the key ring.
    keys: Arc<arc_swap::ArcSwapOption<KeyRing>>,
    /// Fields whose stored values are being brought to their definition (encrypted after the
    /// field became encrypted, or given blind indexes): until that is done some rows may hold
    /// plaintext, which reads and searches then accept.
    converting: Arc<arc_swap::ArcSwap<HashSet<(String, String)>>>,
    /// Where unmasked reads of sensitive values are queued for the access log.
    access_log: access_log::AccessLog,
    /// The master key, kept to unwrap keys that a rotation adds while the server runs.
    master: Arc<arc_swap::ArcSwapOption<MasterKey>>,
    /// The key ring version the installed ring was loaded at.
    key_ring_loaded: Arc<AtomicI64>,
    /// The script host, its compiled scripts and the budgets of script runs.
    scripts: Arc<scripts::ScriptRuntime>,
    /// The limits and per-user rates of searches on fields a caller sees masked.
    masked_search: Arc<masked_search::MaskedSearchGuard>,
    /// PostgreSQL: rows inserted per table since its statistics were last refreshed.
    statistics: Arc<parking_lot::Mutex<std::collections::HashMap<String, TableGrowth>>>,
}

/// How much a table grew since the store last had PostgreSQL analyse it.
#[derive(Debug, Default)]
struct TableGrowth {
    /// Rows inserted since the last `ANALYZE`.
    inserted: i64,
    /// Rows the table had at the last `ANALYZE` (0 before the first one of this process).
    analysed: i64,
    running: bool,
}

/// Rows inserted that make a table's statistics stale: this many, and a tenth of its size.
const STALE_STATISTICS_ROWS: i64 = 1_000;

/// When the table layout last changed. PostgreSQL refuses to run a cached prepared statement
/// whose result or parameter types a DDL change altered ("cached plan must not change result
/// type"), and sqlx caches prepared statements per pooled connection; so after a metadata
/// change every connection opened before it is discarded instead of being handed out again.
struct SchemaEpoch {
    start: Instant,
    changed_nanos: AtomicU64,
}

impl SchemaEpoch {
    fn connection_is_current(&self, age: Duration) -> bool {
        let changed = self.start + Duration::from_nanos(self.changed_nanos.load(Ordering::Acquire));
        Instant::now().checked_sub(age).is_some_and(|opened| opened > changed)
    }
}

/// The least time between two background checkpoints (see `Store::spawn_maintenance`).
const CHECKPOINT_GAP: Duration = Duration::from_millis(100);

/// How long a PostgreSQL statement may run when the store is opened without a request timeout
/// (the command line tools).
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an SQLite statement waits for a lock another connection or process holds.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Pooled SQLite connections for reads (two cores here; more connections would only hold
/// more page caches).
const READER_CONNECTIONS: u32 = 3;
/// Pooled PostgreSQL connections, for reads and writes.
const POSTGRES_CONNECTIONS: u32 = 16;
/// Page cache of each reader connection, in KiB.
const READER_CACHE_KIB: u32 = 8192;
/// Page cache of the writer connection, in KiB: room for the pages a 500-row batch dirties
/// (so they are not spilled to the log mid-transaction) and the index pages it keeps revisiting.
const WRITER_CACHE_KIB: u32 = 8192;

/// Opens an SQLite pool of `connections` connections with a `cache_kib` page cache each. Each
/// connection handed out is bound to its taker's request (see `cancel`).
async fn connect_sqlite(
    url: &str,
    connections: u32,
    cache_kib: u32,
    statements: &Arc<AtomicU64>,
) -> StoreResult<DatabaseConnection> {
    let mut options = ConnectOptions::new(url.to_string());
    // A pooled SQLite connection is a file handle in this process: nothing between here and the
    // file can drop it, so it is not pinged (a round trip to its worker thread) on every acquire.
    options.sqlx_logging(false).acquire_timeout(Duration::from_secs(30)).test_before_acquire(false);
    options.max_connections(connections).min_connections(1).map_sqlx_sqlite_opts(move |o| {
        use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
        o.create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            // Pages are read into each connection's page cache, not through a memory map: a
            // mapped page counts towards the server's resident memory once per connection that
            // touched it, so a map lets memory grow with the database file times the pool size,
            // while page caches are bounded (the kernel still caches the file for every reader).
            .pragma("mmap_size", "0")
            .pragma("cache_size", format!("-{cache_kib}"))
            .pragma("temp_store", "memory")
            // Checkpoints run in the background (`spawn_maintenance`), not inside the commit
            // of whichever write crosses the threshold; this high threshold is only a safety net.
            .pragma("wal_autocheckpoint", "16384")
            // `like`, `startsWith` and `endsWith` are case-sensitive, as on PostgreSQL.
            .pragma("case_sensitive_like", "ON")
            // Deleted and overwritten content is zeroed, so a value that was encrypted or erased
            // does not linger readable in free space of the database file.
            .pragma("secure_delete", "ON")
    });
    options.map_sqlx_sqlite_before_acquire(|connection, _| {
        Box::pin(async move { cancel::bind(connection).await.map(|()| true) })
    });
    options.map_sqlx_sqlite_pool_opts(|pool| {
        pool.after_connect(|connection, _| Box::pin(async move { cancel::bind(connection).await }))
    });
    let mut db = Database::connect(options).await?;
    count_statements(&mut db, statements);
    Ok(db)
}

fn count_statements(db: &mut DatabaseConnection, statements: &Arc<AtomicU64>) {
    let counter = statements.clone();
    db.set_metric_callback(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    });
}

impl Store {
    /// Connects (creating an SQLite file if needed) and brings the system tables up to date.
    pub async fn connect(url: &str) -> StoreResult<Store> {
        Self::connect_with_timeout(url, DEFAULT_STATEMENT_TIMEOUT).await
    }

    /// `connect`, with PostgreSQL cancelling every statement that runs longer than
    /// `statement_timeout`: the server passes its request timeout, so no statement goes on
    /// long after the request that started it has been answered `TIMEOUT`. (SQLite statements
    /// stop with their request, see `interruptible`.)
    pub async fn connect_with_timeout(url: &str, statement_timeout: Duration) -> StoreResult<Store> {
        let backend = if url.starts_with("sqlite:") {
            DbBackend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            DbBackend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        };
        let schema = Arc::new(SchemaEpoch { start: Instant::now(), changed_nanos: AtomicU64::new(0) });
        let statements = Arc::new(AtomicU64::new(0));
        let (db, writer) = match backend {
            DbBackend::Sqlite => {
                if !tessera_alloc::route_sqlite() {
                    tracing::warn!("SQLite was in use before the store opened it: it keeps the C library's allocator");
                }
                // Readers share a small pool; every write transaction goes through one
                // connection of its own (SQLite has one writer anyway), whose page cache then
                // stays valid from one write to the next instead of being discarded whenever
                // another pooled connection wrote in between.
                let db = connect_sqlite(url, READER_CONNECTIONS, READER_CACHE_KIB, &statements).await?;
                let writer = connect_sqlite(url, 1, WRITER_CACHE_KIB, &statements).await?;
                (db, writer)
            }
            _ => {
                let mut options = ConnectOptions::new(url.to_string());
                options.sqlx_logging(false).acquire_timeout(Duration::from_secs(30));
                let epoch = schema.clone();
                options.max_connections(POSTGRES_CONNECTIONS).min_connections(1).statement_timeout(statement_timeout);
                options.map_sqlx_postgres_before_acquire(move |_, meta| {
                    let current = epoch.connection_is_current(meta.age);
                    Box::pin(async move { Ok(current) })
                });
                let mut db = Database::connect(options).await?;
                count_statements(&mut db, &statements);
                (db.clone(), db)
            }
        };
        Migrator::up(&db, None).await?;
        upgrade::blind_indexes_to_integers(&writer, backend).await?;
        let write_lock = std::sync::Arc::new(Mutex::new(()));
        let access_log = access_log::AccessLog::start(writer.clone(), backend, write_lock.clone());
        Ok(Store {
            db,
            writer,
            backend,
            write_lock,
            wrote: Default::default(),
            hiding_writes: Default::default(),
            access_log,
            schema,
            statements,
            keys: Arc::new(arc_swap::ArcSwapOption::empty()),
            converting: Arc::new(arc_swap::ArcSwap::from_pointee(HashSet::new())),
            master: Arc::new(arc_swap::ArcSwapOption::empty()),
            key_ring_loaded: Arc::new(AtomicI64::new(0)),
            scripts: Arc::new(scripts::ScriptRuntime::new(Default::default(), Default::default())),
            masked_search: Arc::new(masked_search::MaskedSearchGuard::new(Default::default())),
            statistics: Default::default(),
        })
    }

    /// Records that table layouts changed (here or on another node): pooled connections opened
    /// before now are not reused, so no stale prepared statement meets the new layout.
    pub fn schema_changed(&self) {
        let nanos = u64::try_from(self.schema.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.schema.changed_nanos.store(nanos, Ordering::Release);
    }

    /// Starts background upkeep: on SQLite, a passive WAL checkpoint after writes (at most one
    /// per `CHECKPOINT_GAP`, and every half second for writes by other processes), on a reader
    /// connection. The log then reaches the database file on the other core while the writer
    /// goes on, instead of in the commit of whichever writer crosses the automatic threshold.
    /// Returns `None` when the engine needs none.
    pub fn spawn_maintenance(&self) -> Option<tokio::task::JoinHandle<()>> {
        if self.backend != DbBackend::Sqlite {
            return None;
        }
        let (db, wrote) = (self.db.clone(), self.wrote.clone());
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = wrote.notified() => {}
                    _ = tick.tick() => {}
                }
                if let Err(e) = db.execute_unprepared("PRAGMA wal_checkpoint(PASSIVE)").await {
                    tracing::warn!(error = %e, "WAL checkpoint failed");
                }
                // Each checkpoint syncs the log and the database file: many small writes share
                // one checkpoint rather than each paying for its own.
                tokio::time::sleep(CHECKPOINT_GAP).await;
            }
        }))
    }

    /// Notes rows inserted into a table. On PostgreSQL, once they are a tenth of the table (and
    /// at least `STALE_STATISTICS_ROWS`), the table is analysed in the background: right after a
    /// bulk load the planner would otherwise still believe the table nearly empty and sort every
    /// match of a filter rather than walk the index that orders them (autovacuum analyses it only
    /// a minute or more later).
    pub(crate) fn note_inserted(&self, table: &str, rows: usize) {
        if self.backend != DbBackend::Postgres || rows == 0 {
            return;
        }
        {
            let mut stats = self.statistics.lock();
            let growth = stats.entry(table.to_string()).or_default();
            growth.inserted += rows as i64;
            if growth.running || growth.inserted < STALE_STATISTICS_ROWS || growth.inserted * 10 < growth.analysed {
                return;
            }
            growth.running = true;
            growth.inserted = 0;
        }
        let (db, statistics, table) = (self.db.clone(), self.statistics.clone(), table.to_string());
        tokio::spawn(async move {
            let quoted = format!("\"{}\"", table.replace('"', "\"\""));
            let analysed = async {
                db.execute_unprepared(&format!("ANALYZE {quoted}")).await?;
                let row = db
                    .query_one_raw(sea_orm::Statement::from_sql_and_values(
                        DbBackend::Postgres,
                        "SELECT reltuples::bigint FROM pg_class WHERE relname = $1",
                        [table.clone().into()],
                    ))
                    .await?;
                Ok::<i64, DbErr>(row.and_then(|r| r.try_get_by_index::<i64>(0).ok()).unwrap_or(0))
            };
            let result = analysed.await;
            let mut stats = statistics.lock();
            let growth = stats.entry(table.clone()).or_default();
            growth.running = false;
            match result {
                Ok(rows) => growth.analysed = rows,
                Err(e) => tracing::warn!(error = %e, table = %table, "cannot refresh table statistics"),
            }
        });
    }

    /// Installs the unwrapped key ring (at start-up, and again when a rotation adds a key).
    pub fn set_key_ring(&self, ring: KeyRing) {
        self.keys.store(Some(Arc::new(ring)));
    }

    /// The key ring, or `NoKeys` when encryption is not set up.
    pub fn key_ring(&self) -> StoreResult<Arc<KeyRing>> {
        self.keys.load_full().ok_or(StoreError::NoKeys)
    }

    /// Replaces the set of `(object, field)` whose values are being converted.
    pub fn set_converting(&self, fields: HashSet<(String, String)>) {
        self.converting.store(Arc::new(fields));
    }

    /// Whether a field's stored values are being converted (so some may still be plaintext).
    pub fn is_converting(&self, object: &str, field: &str) -> bool {
        let set = self.converting.load();
        !set.is_empty() && set.contains(&(object.to_string(), field.to_string()))
    }

    /// After values were encrypted or erased: on SQLite, copies the write-ahead log into the
    /// database and empties it, so earlier page versions holding the old values are gone from
    /// disk (with `secure_delete`, freed space in the database file is zeroed already). Readers
    /// holding old snapshots can delay it; it is retried briefly and otherwise left to the
    /// next background checkpoint.
    pub async fn forget_old_pages(&self) {
        if self.backend != DbBackend::Sqlite {
            return;
        }
        let _guard = self.write_lock.lock().await;
        for _ in 0..20 {
            match self
                .writer
                .query_one_raw(sea_orm::Statement::from_string(self.backend, "PRAGMA wal_checkpoint(TRUNCATE)"))
                .await
            {
                // The first column is 1 when the checkpoint could not finish (busy readers).
                Ok(Some(row)) if row.try_get_by_index::<i64>(0).unwrap_or(1) == 0 => return,
                Ok(_) => tokio::time::sleep(Duration::from_millis(25)).await,
                Err(e) => {
                    tracing::warn!(error = %e, "WAL checkpoint after an erasure failed");
                    return;
                }
            }
        }
        tracing::warn!("readers kept the write-ahead log busy; old page versions stay until the next checkpoint");
    }

    /// Empties SQLite's page caches (`PRAGMA shrink_memory`) on the writer connection and on
    /// each reader connection not in use, so that an idle server holds no copy of pages the
    /// operating system caches anyway; the next query reads what it needs again. Nothing on
    /// PostgreSQL, whose caches live in its own processes.
    pub async fn shrink_caches(&self) {
        if self.backend != DbBackend::Sqlite {
            return;
        }
        let mut idle = Vec::new();
        for db in [&self.writer, &self.db] {
            let pool = db.get_sqlite_connection_pool();
            while let Some(connection) = pool.try_acquire() {
                idle.push(connection);
            }
        }
        for connection in &mut idle {
            // Taken without the pool's hooks: unbind it from the last request first.
            if cancel::bind(connection).await.is_err() {
                continue;
            }
            if let Err(e) = sea_orm::sqlx::query("PRAGMA shrink_memory").execute(&mut **connection).await {
                tracing::warn!(error = %e, "cannot empty an SQLite page cache");
            }
        }
    }

    /// How many SQL statements this store has executed.
    pub fn statements_executed(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// How many reads can run at once: SQLite's reader connections, PostgreSQL's pool.
    pub fn read_connections(&self) -> u32 {
        match self.backend {
            DbBackend::Sqlite => READER_CONNECTIONS,
            _ => POSTGRES_CONNECTIONS,
        }
    }

    pub fn backend(&self) -> DbBackend {
        self.backend
    }

    pub fn is_postgres(&self) -> bool {
        self.backend == DbBackend::Postgres
    }

    /// Checks the database answers.
    pub async fn ping(&self) -> StoreResult<()> {
        self.db.execute_unprepared("SELECT 1").await?;
        Ok(())
    }

    /// Runs raw SQL; for benchmarks comparing hand-written SQL with the generated API.
    pub async fn raw_query_count(&self, sql: &str, values: Vec<sea_orm::Value>) -> StoreResult<usize> {
        let stmt = sea_orm::Statement::from_sql_and_values(self.backend, sql, values);
        Ok(self.db.query_all_raw(stmt).await?.len())
    }

    /// Begins a write transaction. On SQLite it takes the write lock at once (waiting up to the
    /// busy timeout): a deferred transaction that reads before it writes fails instead of
    /// waiting when another process (`tessera keys rotate`, say) committed in between.
    async fn begin_write(&self) -> Result<sea_orm::DatabaseTransaction, DbErr> {
        use sea_orm::{SqliteTransactionMode, TransactionOptions, TransactionTrait};
        let mode = (self.backend == DbBackend::Sqlite).then_some(SqliteTransactionMode::Immediate);
        self.writer
            .begin_with_options(TransactionOptions {
                isolation_level: None,
                access_mode: None,
                sqlite_transaction_mode: mode,
            })
            .await
    }

    /// Serialises writers on SQLite; a no-op guard on PostgreSQL. A write under it may remove
    /// or hide records (see `hiding_writes`).
    async fn write_guard(&self) -> Option<WriteGuard<'_>> {
        self.guard(Some(&self.hiding_writes)).await
    }

    /// `write_guard` for a write that only inserts records: it leaves `hiding_writes` as it is.
    async fn insert_guard(&self) -> Option<WriteGuard<'_>> {
        self.guard(None).await
    }

    async fn guard<'a>(&'a self, hiding: Option<&'a AtomicU64>) -> Option<WriteGuard<'a>> {
        match self.backend {
            DbBackend::Sqlite => Some(WriteGuard { _lock: self.write_lock.lock().await, wrote: &self.wrote, hiding }),
            _ => None,
        }
    }

    /// The count of `hiding_writes` so far; on PostgreSQL (concurrent writers, other nodes)
    /// `None`, since no count here can vouch for what another writer did.
    fn hiding_epoch(&self) -> Option<u64> {
        (self.backend == DbBackend::Sqlite).then(|| self.hiding_writes.load(Ordering::Acquire))
    }
}

/// The SQLite write lock, held for one write; releasing it wakes the background checkpointer.
struct WriteGuard<'a> {
    _lock: tokio::sync::MutexGuard<'a, ()>,
    wrote: &'a tokio::sync::Notify,
    /// Counted when released (before the lock is: `drop` runs before the fields are dropped),
    /// for a write that may have removed or hidden records.
    hiding: Option<&'a AtomicU64>,
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        if let Some(hiding) = self.hiding {
            hiding.fetch_add(1, Ordering::Release);
        }
        self.wrote.notify_one();
    }
}

//! The record store: the only place that writes SQL. It owns the connection pool, runs the
//! system migrations, turns metadata changes into DDL, and reads and writes records, users,
//! tokens and the audit log through sea-query over sea-orm, on SQLite and PostgreSQL alike.

mod audit;
mod catalog;
mod codec;
mod ddl;
mod filter;
mod identity;
mod reads;
mod record_store;
mod writes;

use std::time::Duration;

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr};
use tessera_migrations::{Migrator, MigratorTrait};
use tokio::sync::Mutex;

pub use audit::{AuditEntry, AuditQuery};
pub use catalog::MetadataChange;
pub use identity::{NewUser, TokenKind, UserRow};

/// Failures of the store. User-facing problems are mapped by the layers above; everything
/// else is logged once and reported as an internal error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// A change that the data does not allow (duplicates for a new unique index, values that
    /// cannot follow a type change, a concurrent metadata change); the message is for the user.
    #[error("{0}")]
    Refused(String),
    #[error("unsupported database url `{0}`: use sqlite://path.db or postgres://...")]
    UnsupportedUrl(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Handle to the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    backend: DbBackend,
    /// SQLite allows one writer; queueing writers here avoids lock-upgrade failures of
    /// deferred transactions. PostgreSQL writers run concurrently.
    write_lock: std::sync::Arc<Mutex<()>>,
    statement_timeout: Duration,
}

impl Store {
    /// Connects (creating an SQLite file if needed) and brings the system tables up to date.
    pub async fn connect(url: &str) -> StoreResult<Store> {
        let backend = if url.starts_with("sqlite:") {
            DbBackend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            DbBackend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        };
        let statement_timeout = Duration::from_secs(30);
        let mut options = ConnectOptions::new(url.to_string());
        options.sqlx_logging(false).acquire_timeout(Duration::from_secs(30));
        match backend {
            DbBackend::Sqlite => {
                options.max_connections(8).min_connections(1).map_sqlx_sqlite_opts(move |o| {
                    use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
                    o.create_if_missing(true)
                        .journal_mode(SqliteJournalMode::Wal)
                        .synchronous(SqliteSynchronous::Normal)
                        .busy_timeout(statement_timeout)
                        .foreign_keys(true)
                        .pragma("cache_size", "-65536")
                        .pragma("temp_store", "memory")
                });
            }
            _ => {
                options.max_connections(16).min_connections(1).statement_timeout(statement_timeout);
            }
        }
        let db = Database::connect(options).await?;
        Migrator::up(&db, None).await?;
        Ok(Store { db, backend, write_lock: std::sync::Arc::new(Mutex::new(())), statement_timeout })
    }

    pub fn backend(&self) -> DbBackend {
        self.backend
    }

    pub fn is_postgres(&self) -> bool {
        self.backend == DbBackend::Postgres
    }

    pub fn statement_timeout(&self) -> Duration {
        self.statement_timeout
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

    /// Serialises writers on SQLite; a no-op guard on PostgreSQL.
    async fn write_guard(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self.backend {
            DbBackend::Sqlite => Some(self.write_lock.lock().await),
            _ => None,
        }
    }
}

//! The key ring table (`sys_key_ring`: data keys and the blind-index key, each wrapped by the
//! master key) and the key ring version in `sys_metadata`, which every change of the ring bumps
//! so that every node reloads it.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend};
use sea_query::{Expr, ExprTrait, Order, Query};

use super::codec::{Storage, decode};
use super::writes::now;
use super::{Store, StoreError, StoreResult};
use crate::crypto::{KeyRing, MasterKey, keys};

/// The key of the key ring version in `sys_metadata`.
const KEY_RING_VERSION: &str = "key_ring_version";

/// What a key encrypts.
pub const PURPOSE_DATA: &str = "data";
pub const PURPOSE_BLIND_INDEX: &str = "blind_index";

/// One stored key, still wrapped (so printing it reveals nothing).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRingRow {
    pub purpose: String,
    pub version: u32,
    pub wrapped: String,
    pub created_at: DateTime<Utc>,
    pub retired_at: Option<DateTime<Utc>>,
}

impl KeyRingRow {
    pub fn new(purpose: &str, version: u32, wrapped: String) -> KeyRingRow {
        KeyRingRow { purpose: purpose.into(), version, wrapped, created_at: now(), retired_at: None }
    }
}

/// The highest version among `rows` of keys for `purpose`.
pub(super) fn newest_version(rows: &[KeyRingRow], purpose: &str) -> Option<u32> {
    rows.iter().filter(|r| r.purpose == purpose).map(|r| r.version).max()
}

/// The versions among `rows` of keys for `purpose` below `version` and not yet retired.
pub(super) fn unretired_below(rows: &[KeyRingRow], purpose: &str, version: u32) -> Vec<u32> {
    rows.iter()
        .filter(|r| r.purpose == purpose && r.version < version && r.retired_at.is_none())
        .map(|r| r.version)
        .collect()
}

pub(super) async fn read_rows<C: ConnectionTrait>(conn: &C, backend: DbBackend) -> StoreResult<Vec<KeyRingRow>> {
    let q = Query::select()
        .columns(["purpose", "version", "wrapped", "created_at", "retired_at"])
        .from("sys_key_ring")
        .order_by("purpose", Order::Asc)
        .order_by("version", Order::Asc)
        .to_owned();
    let mut out = Vec::new();
    for row in conn.query_all(&q).await? {
        let version: i32 = row.try_get_by_index(1)?;
        let at = |i, column| -> StoreResult<Option<DateTime<Utc>>> {
            Ok(match decode(&row, i, Storage::DateTime, backend, column)? {
                tessera_metadata::Value::DateTime(d) => Some(d),
                _ => None,
            })
        };
        out.push(KeyRingRow {
            purpose: row.try_get_by_index(0)?,
            version: u32::try_from(version).map_err(|_| StoreError::Corrupt(format!("key version {version}")))?,
            wrapped: row.try_get_by_index(2)?,
            created_at: at(3, "created_at")?.unwrap_or_else(now),
            retired_at: at(4, "retired_at")?,
        });
    }
    Ok(out)
}

pub(super) async fn insert_row<C: ConnectionTrait>(conn: &C, row: &KeyRingRow) -> StoreResult<()> {
    let insert = Query::insert()
        .into_table("sys_key_ring")
        .columns(["purpose", "version", "wrapped", "created_at", "retired_at"])
        .values([
            row.purpose.clone().into(),
            i64::from(row.version).into(),
            row.wrapped.clone().into(),
            row.created_at.into(),
            sea_query::Value::ChronoDateTimeUtc(row.retired_at).into(),
        ])?
        .to_owned();
    conn.execute(&insert).await?;
    Ok(())
}

/// Moves the key ring version on by one inside the caller's transaction.
pub(super) async fn bump_key_ring_version<C: ConnectionTrait>(conn: &C) -> StoreResult<i64> {
    let update = Query::update()
        .table("sys_metadata")
        .value("value", Expr::col("value").add(1))
        .and_where(Expr::col("key").eq(KEY_RING_VERSION))
        .returning_col("value")
        .to_owned();
    let row =
        conn.query_one(&update).await?.ok_or_else(|| StoreError::Corrupt("key ring version row is missing".into()))?;
    Ok(row.try_get_by_index(0)?)
}

fn is_unique_violation(e: &StoreError) -> bool {
    let s = e.to_string();
    s.contains("UNIQUE constraint failed") || s.contains("duplicate key value")
}

impl Store {
    /// Every stored key, wrapped.
    pub async fn key_ring_rows(&self) -> StoreResult<Vec<KeyRingRow>> {
        read_rows(&self.db, self.backend).await
    }

    /// The key ring version in the database (a rotation on any node moves it on).
    pub async fn stored_key_ring_version(&self) -> StoreResult<i64> {
        let q = Query::select()
            .column("value")
            .from("sys_metadata")
            .and_where(Expr::col("key").eq(KEY_RING_VERSION))
            .to_owned();
        let row = self
            .db
            .query_one(&q)
            .await?
            .ok_or_else(|| StoreError::Corrupt("key ring version row is missing".into()))?;
        Ok(row.try_get_by_index(0)?)
    }

    /// Stores the first key ring. Returns `false`, storing nothing, when another node stored
    /// one first (the caller then loads that one).
    pub async fn create_key_ring(&self, rows: &[KeyRingRow]) -> StoreResult<bool> {
        let _guard = self.write_guard().await;
        let txn = self.begin_write().await?;
        let mut result = Ok(());
        for row in rows {
            result = insert_row(&txn, row).await;
            if result.is_err() {
                break;
            }
        }
        if let Err(e) = result {
            txn.rollback().await?;
            return if is_unique_violation(&e) { Ok(false) } else { Err(e) };
        }
        bump_key_ring_version(&txn).await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Keeps the master key, so the ring can be reloaded when a rotation adds a key.
    pub fn set_master_key(&self, master: MasterKey) {
        self.master.store(Some(std::sync::Arc::new(master)));
    }

    pub(super) fn master_key(&self) -> StoreResult<std::sync::Arc<MasterKey>> {
        self.master.load_full().ok_or(StoreError::NoKeys)
    }

    /// Unwraps the stored ring with the master key and installs it.
    pub async fn reload_key_ring(&self) -> StoreResult<()> {
        let master = self.master_key()?;
        // Read the version first: a change committed in between is then seen again next time.
        let version = self.stored_key_ring_version().await?;
        let rows = self.key_ring_rows().await?;
        let ring = keys::open_ring(&master, &rows).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.set_key_ring(ring);
        self.key_ring_loaded.store(version, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Reloads the ring when another node (or `tessera keys rotate`) changed it. Returns
    /// whether it reloaded.
    pub async fn refresh_key_ring(&self) -> StoreResult<bool> {
        if self.master.load().is_none() {
            return Ok(false);
        }
        let stored = self.stored_key_ring_version().await?;
        if stored <= self.key_ring_loaded.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(false);
        }
        self.reload_key_ring().await?;
        tracing::info!(version = stored, "reloaded the key ring changed by another node");
        Ok(true)
    }

    /// The key ring, reloaded first if it lacks data key `version` (a value written by a node
    /// that already rotated). Use when a decryption reports an unknown key.
    pub async fn key_ring_holding(&self, version: u32) -> StoreResult<std::sync::Arc<KeyRing>> {
        let ring = self.key_ring()?;
        if ring.versions().contains(&version) {
            return Ok(ring);
        }
        self.reload_key_ring().await?;
        self.key_ring()
    }
}

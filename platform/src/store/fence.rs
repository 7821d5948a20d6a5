//! Orders record writes against metadata changes. A request prepares its writes (coercion,
//! scripts, encryption of sensitive values) under the metadata snapshot it started with, and
//! a change may have committed since, on this node or another. Each record write transaction
//! therefore reads the metadata version first: on PostgreSQL `FOR SHARE`, so a change (which
//! locks that row `FOR UPDATE` before anything else) waits for the writes in flight, and a
//! write that begins meanwhile waits for the change and then sees its version; on SQLite the
//! write lock serialises writes and changes. A write whose object's definition is no longer
//! the one it was prepared under is refused with `CONFLICT` before it writes anything.

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend};
use sea_query::{Expr, ExprTrait, LockType, Query};
use tessera_metadata::{ObjectDefinition, Registry};

use super::{Store, StoreError, StoreResult};
use crate::graphql::{DataError, DataResult};

/// What a write depends on besides its object's definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reach {
    /// Only the object's definition: a write prepared under an older metadata version still
    /// goes ahead when the object's definition is unchanged.
    Object,
    /// Other objects' definitions too (a destroy clears the lookups pointing at the record):
    /// any metadata change since refuses it.
    Registry,
}

impl Store {
    /// Begins the write transaction of a write to `object` prepared under `registry`; refuses
    /// it (`CONFLICT`, retryable) when the metadata it depends on changed since.
    pub(super) async fn begin_fenced(
        &self,
        registry: &Registry,
        object: &ObjectDefinition,
        reach: Reach,
    ) -> DataResult<DatabaseTransaction> {
        let txn = self.begin_write().await?;
        let version = self.fenced_metadata_version(&txn).await?;
        if version == registry.version {
            return Ok(txn);
        }
        if reach == Reach::Object && self.stored_definition(&txn, object.name.as_str()).await?.as_ref() == Some(object)
        {
            return Ok(txn);
        }
        txn.rollback().await?;
        Err(DataError::Conflict {
            message: format!(
                "the definition of `{}` changed while this write was prepared (metadata version {} is now {version}); \
                 nothing was written: retry",
                object.name, registry.version
            ),
            field_errors: Vec::new(),
        })
    }

    /// The metadata version, read inside a write transaction so that no metadata change can
    /// commit before the transaction does (see the module's comment).
    pub(super) async fn fenced_metadata_version(&self, txn: &DatabaseTransaction) -> StoreResult<i64> {
        let mut q = Query::select();
        q.column("value").from("sys_metadata").and_where(Expr::col("key").eq("version"));
        if self.backend == DbBackend::Postgres {
            q.lock(LockType::Share);
        }
        let row =
            txn.query_one(&q).await?.ok_or_else(|| StoreError::Corrupt("metadata version row is missing".into()))?;
        Ok(row.try_get_by_index(0)?)
    }

    /// An object's definition as stored (`None` once deleted).
    async fn stored_definition(&self, txn: &DatabaseTransaction, name: &str) -> StoreResult<Option<ObjectDefinition>> {
        let q =
            Query::select().column("definition").from("sys_objects").and_where(Expr::col("name").eq(name)).to_owned();
        let Some(row) = txn.query_one(&q).await? else { return Ok(None) };
        let text: String = row.try_get_by_index(0)?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("definition of object `{name}`: {e}")))
    }
}

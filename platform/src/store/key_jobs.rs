//! Key jobs (`sys_key_jobs`): the stored progress of field conversions and key rotations,
//! and the leases that keep two runners off one job. What a job does is in `rekey`.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend};
use sea_query::{Condition, Expr, ExprTrait, Order, Query};

use super::codec::{Storage, decode};
use super::key_ring::PURPOSE_DATA;
use super::writes::now;
use super::{Store, StoreError, StoreResult};

/// How long a runner holds a job without renewing (each batch renews it).
pub(super) const LEASE_MS: i64 = 10_000;

const JOB_COLUMNS: [&str; 13] = [
    "id",
    "kind",
    "object",
    "field",
    "target_version",
    "phase",
    "cursor",
    "done",
    "total",
    "state",
    "error",
    "created_at",
    "finished_at",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Re-encrypts an object's values and audit images with a new key version.
    Rotate,
    /// Encrypts and indexes one field's values after the field became encrypted or searchable.
    ConvertField,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Rotate => "rotate",
            JobKind::ConvertField => "convert_field",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Pending,
    Running,
    Done,
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
        }
    }
}

/// Where a job is: its main pass over the records then the audit images, then the sweeps.
pub(super) const PHASES: [&str; 4] = ["records", "audit", "verify_records", "verify_audit"];

/// One stored job and its progress.
#[derive(Debug, Clone)]
pub struct KeyJob {
    pub id: String,
    pub kind: JobKind,
    pub object: String,
    pub field: Option<String>,
    pub target_version: u32,
    pub phase: String,
    pub cursor: Option<String>,
    pub done: i64,
    pub total: i64,
    pub state: JobState,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

pub(super) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn parse_job(row: &sea_orm::QueryResult, backend: DbBackend) -> StoreResult<KeyJob> {
    let kind: String = row.try_get_by_index(1)?;
    let state: String = row.try_get_by_index(9)?;
    let at = |i, column| -> StoreResult<Option<DateTime<Utc>>> {
        Ok(match decode(row, i, Storage::DateTime, backend, column)? {
            tessera_metadata::Value::DateTime(d) => Some(d),
            _ => None,
        })
    };
    let target: i32 = row.try_get_by_index(4)?;
    Ok(KeyJob {
        id: row.try_get_by_index(0)?,
        kind: match kind.as_str() {
            "rotate" => JobKind::Rotate,
            "convert_field" => JobKind::ConvertField,
            other => return Err(StoreError::Corrupt(format!("key job kind `{other}`"))),
        },
        object: row.try_get_by_index(2)?,
        field: row.try_get_by_index(3)?,
        target_version: u32::try_from(target).unwrap_or(0),
        phase: row.try_get_by_index(5)?,
        cursor: row.try_get_by_index(6)?,
        done: row.try_get_by_index(7)?,
        total: row.try_get_by_index(8)?,
        state: match state.as_str() {
            "pending" => JobState::Pending,
            "running" => JobState::Running,
            "done" => JobState::Done,
            "failed" => JobState::Failed,
            other => return Err(StoreError::Corrupt(format!("key job state `{other}`"))),
        },
        error: row.try_get_by_index(10)?,
        created_at: at(11, "created_at")?.unwrap_or_else(now),
        finished_at: at(12, "finished_at")?,
    })
}

pub(super) async fn read_jobs<C: ConnectionTrait>(
    conn: &C,
    backend: DbBackend,
    cond: Condition,
) -> StoreResult<Vec<KeyJob>> {
    let q = Query::select()
        .columns(JOB_COLUMNS)
        .from("sys_key_jobs")
        .cond_where(cond)
        .order_by("created_at", Order::Asc)
        .order_by("id", Order::Asc)
        .to_owned();
    conn.query_all(&q).await?.iter().map(|r| parse_job(r, backend)).collect()
}

async fn max_data_version<C: ConnectionTrait>(conn: &C) -> StoreResult<u32> {
    let q = Query::select()
        .expr(Expr::col("version").max())
        .from("sys_key_ring")
        .and_where(Expr::col("purpose").eq(PURPOSE_DATA))
        .to_owned();
    let max: Option<i32> = match conn.query_one(&q).await? {
        Some(row) => row.try_get_by_index(0)?,
        None => None,
    };
    Ok(max.and_then(|v| u32::try_from(v).ok()).unwrap_or(0))
}

pub(super) async fn insert_job<C: ConnectionTrait>(
    conn: &C,
    kind: JobKind,
    object: &str,
    field: Option<&str>,
    target_version: u32,
) -> StoreResult<()> {
    insert_job_at(conn, kind, object, field, target_version, PHASES[0]).await
}

async fn insert_job_at<C: ConnectionTrait>(
    conn: &C,
    kind: JobKind,
    object: &str,
    field: Option<&str>,
    target_version: u32,
    phase: &str,
) -> StoreResult<()> {
    let insert = Query::insert()
        .into_table("sys_key_jobs")
        .columns(["id", "kind", "object", "field", "target_version", "phase", "done", "total", "state", "created_at"])
        .values([
            uuid::Uuid::now_v7().to_string().into(),
            kind.as_str().into(),
            object.into(),
            sea_query::Value::String(field.map(str::to_string)).into(),
            i64::from(target_version).into(),
            phase.into(),
            0i64.into(),
            0i64.into(),
            JobState::Pending.as_str().into(),
            now().into(),
        ])?
        .to_owned();
    conn.execute(&insert).await?;
    Ok(())
}

/// Queues the conversion of a field's stored values, inside the transaction of the metadata
/// change that made the field encrypted or searchable. An unfinished conversion of the same
/// field is replaced: the new one starts over under the newer definition.
pub(super) async fn enqueue_field_conversion<C: ConnectionTrait>(
    conn: &C,
    _backend: DbBackend,
    object: &str,
    field: &str,
) -> StoreResult<()> {
    enqueue_field_job(conn, object, field, PHASES[0]).await
}

/// Queues, inside the metadata change that converted a field's values itself, a sweep of the
/// values still not in the field's form a little later (`RELOAD_GRACE`): those a writer that
/// did not know the change stored meanwhile (a node running a version without the write fence,
/// during an upgrade). It replaces an unfinished conversion of the field, as a conversion does.
pub(super) async fn enqueue_field_sweep<C: ConnectionTrait>(conn: &C, object: &str, field: &str) -> StoreResult<()> {
    enqueue_field_job(conn, object, field, PHASES[2]).await
}

async fn enqueue_field_job<C: ConnectionTrait>(conn: &C, object: &str, field: &str, phase: &str) -> StoreResult<()> {
    let delete = Query::delete()
        .from_table("sys_key_jobs")
        .and_where(Expr::col("kind").eq(JobKind::ConvertField.as_str()))
        .and_where(Expr::col("object").eq(object))
        .and_where(Expr::col("field").eq(field))
        .and_where(Expr::col("state").ne(JobState::Done.as_str()))
        .to_owned();
    conn.execute(&delete).await?;
    let target = max_data_version(conn).await?;
    insert_job_at(conn, JobKind::ConvertField, object, Some(field), target, phase).await
}

impl Store {
    /// Jobs, oldest first; only those not done when `unfinished`.
    pub async fn key_jobs(&self, unfinished: bool) -> StoreResult<Vec<KeyJob>> {
        let mut cond = Condition::all();
        if unfinished {
            cond = cond.add(Expr::col("state").ne(JobState::Done.as_str()));
        }
        read_jobs(&self.db, self.backend, cond).await
    }

    /// Takes a job for `owner` unless another runner holds a live lease on it. A failed job is
    /// taken only when `retry_failed`.
    pub(super) async fn claim_job(&self, id: &str, owner: &str, retry_failed: bool) -> StoreResult<bool> {
        let mut claimable = Condition::any().add(Expr::col("state").eq(JobState::Pending.as_str())).add(
            Condition::all().add(Expr::col("state").eq(JobState::Running.as_str())).add(
                Condition::any().add(Expr::col("lease_until").is_null()).add(Expr::col("lease_until").lt(now_ms())),
            ),
        );
        if retry_failed {
            claimable = claimable.add(Expr::col("state").eq(JobState::Failed.as_str()));
        }
        let update = Query::update()
            .table("sys_key_jobs")
            .value("state", JobState::Running.as_str())
            .value("lease_owner", owner)
            .value("lease_until", now_ms() + LEASE_MS)
            .value("error", sea_query::Value::String(None))
            .value("finished_at", sea_query::Value::ChronoDateTimeUtc(None))
            .and_where(Expr::col("id").eq(id))
            .cond_where(claimable)
            .to_owned();
        let _guard = self.write_guard().await;
        Ok(self.writer.execute(&update).await?.rows_affected() == 1)
    }

    pub(super) async fn finish_job(
        &self,
        id: &str,
        owner: &str,
        state: JobState,
        error: Option<String>,
    ) -> StoreResult<()> {
        let mut update = Query::update();
        update
            .table("sys_key_jobs")
            .value("lease_owner", sea_query::Value::String(None))
            .value("lease_until", sea_query::Value::BigInt(None))
            .and_where(Expr::col("id").eq(id))
            .and_where(Expr::col("lease_owner").eq(owner));
        if state != JobState::Running {
            update
                .value("state", state.as_str())
                .value("error", sea_query::Value::String(error))
                .value("finished_at", now());
        }
        let _guard = self.write_guard().await;
        self.writer.execute(&update).await?;
        Ok(())
    }

    pub(super) async fn key_job(&self, id: &str) -> StoreResult<KeyJob> {
        read_jobs(&self.db, self.backend, Condition::all().add(Expr::col("id").eq(id)))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Corrupt(format!("key job {id} vanished")))
    }
}

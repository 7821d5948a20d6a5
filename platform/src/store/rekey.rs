//! Brings stored values of encrypted fields to their definition and to the active data key:
//! after a field became encrypted or searchable (`convert_field` jobs) and after a new key
//! version (`rotate` jobs, one per object with encrypted fields, which also re-encrypt the
//! object's audit images).
//!
//! A job walks its table in id order, a batch per write transaction, so user writes interleave;
//! its cursor and counts are stored in the same transaction, so a killed job resumes where it
//! stopped. Values are rewritten compare-and-set (and locked `FOR UPDATE` on PostgreSQL), so a
//! user's write between the read and the rewrite is never overwritten. After its main pass a
//! job waits until every node has had time to reload the ring or the metadata, then sweeps the
//! rows still not on the active key (written meanwhile by a node that had not reloaded).

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use sea_orm::{ConnectionTrait, DatabaseTransaction};
use sea_query::{Condition, Expr, ExprTrait, LockType, Order, Query};
use tessera_metadata::{FieldDefinition, ObjectDefinition};

use super::key_jobs::{
    JobKind, JobState, KeyJob, LEASE_MS, PHASES, enqueue_field_conversion, insert_job, now_ms, read_jobs,
};
use super::key_ring::{
    KeyRingRow, PURPOSE_BLIND_INDEX, PURPOSE_DATA, bump_key_ring_version, insert_row, newest_version, read_rows,
    unretired_below,
};
use super::writes::now;
use super::{Store, StoreError, StoreResult};
use crate::crypto::{Aad, CryptoError, KeyMaterial, KeyRing, Secret, envelope_prefix, envelope_version};

/// Rows per write transaction unless told otherwise.
pub const DEFAULT_BATCH_SIZE: u64 = 500;
/// Nodes reload the key ring and the metadata within a second of a change; the sweep for
/// stragglers starts this long after a job was created, when none can still be writing the
/// old way.
const RELOAD_GRACE: Duration = Duration::from_secs(3);

/// How a run proceeds.
#[derive(Debug, Clone, Copy)]
pub struct RekeyOptions {
    pub batch_size: u64,
    /// Stop (resumably) after this many batches: for tests and for spreading work out.
    pub max_batches: Option<u64>,
}

impl Default for RekeyOptions {
    fn default() -> Self {
        RekeyOptions { batch_size: DEFAULT_BATCH_SIZE, max_batches: None }
    }
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotationOutcome {
    /// Every value is on `version`; the versions before it are retired.
    Done { version: u32, retired: Vec<u32>, rewritten: u64, resumed: bool },
    /// Stopped after `max_batches`; run again to resume.
    Paused { version: u32 },
}

/// Overall progress of a rotation, after each batch.
#[derive(Debug, Clone)]
pub struct RotationProgress {
    pub version: u32,
    pub object: String,
    pub done: u64,
    pub total: u64,
}

/// How many values of an encrypted field are on each key version.
#[derive(Debug, Clone)]
pub struct FieldKeyUsage {
    pub object: String,
    pub field: String,
    pub by_version: Vec<(u32, u64)>,
    /// Values on no data key version (plaintext while converting).
    pub other: u64,
}

/// The state of field encryption, for `tessera keys status`.
#[derive(Debug, Clone)]
pub struct KeyStatus {
    pub active_version: Option<u32>,
    pub versions: Vec<KeyRingRow>,
    pub blind_index_versions: Vec<KeyRingRow>,
    pub fields: Vec<FieldKeyUsage>,
    pub unfinished_jobs: Vec<KeyJob>,
}

/// How a job's run ended.
enum RunEnd {
    Finished {
        rewritten: u64,
    },
    Paused,
    /// Another runner holds the job (our lease expired, or it was replaced).
    LeaseLost,
}

/// One field a job brings to its definition.
struct FieldWork {
    def: FieldDefinition,
    /// Plaintext may still be stored (the field's conversion is unfinished).
    converting: bool,
}

enum Step {
    Scanned {
        rewritten: u64,
    },
    /// The metadata changed since the batch was planned.
    Stale,
    LeaseLost,
    Problem(String),
}

/// Why a stored value could not be brought to the active key.
enum Fault {
    NotEncrypted,
    Unauthentic,
    UnknownKey(u32),
}

/// Decrypts a stored value (or takes it as plaintext while its field converts) and tells the
/// envelope to store instead, if it is not on the active key.
fn bring(
    ring: &KeyRing,
    aad: Aad<'_>,
    stored: &str,
    converting: bool,
) -> Result<(Secret<String>, Option<String>), Fault> {
    match ring.decrypt(aad, stored) {
        Ok(plain) => {
            let plain = Secret::new(plain);
            let rewrite =
                (envelope_version(stored) != Some(ring.active_version())).then(|| ring.encrypt(aad, plain.expose()));
            Ok((plain, rewrite))
        }
        Err(CryptoError::UnknownKey(v)) => Err(Fault::UnknownKey(v)),
        // A forged or moved ciphertext cannot authenticate, so during a conversion anything
        // that does not decrypt is a plaintext value still waiting.
        Err(_) if converting => {
            let plain = Secret::new(stored.to_string());
            let envelope = ring.encrypt(aad, plain.expose());
            Ok((plain, Some(envelope)))
        }
        Err(CryptoError::NotEncrypted) => Err(Fault::NotEncrypted),
        Err(_) => Err(Fault::Unauthentic),
    }
}

/// `col IS NULL` or `col = value`: the compare half of compare-and-set.
fn same<V: Into<sea_query::Value> + Clone>(column: &str, value: &Option<V>) -> Expr {
    match value {
        Some(v) => Expr::col(column.to_string()).eq(v.clone().into()),
        None => Expr::col(column.to_string()).is_null(),
    }
}

/// The fields a job works on, from the object's current definition.
fn work_fields(job: &KeyJob, object: &ObjectDefinition, converting: &HashSet<(String, String)>) -> Vec<FieldWork> {
    object
        .fields
        .iter()
        .filter(|f| f.is_encrypted())
        .filter(|f| match job.kind {
            JobKind::Rotate => true,
            JobKind::ConvertField => job.field.as_deref() == Some(f.name.as_str()),
        })
        .map(|f| FieldWork {
            def: f.clone(),
            converting: job.kind == JobKind::ConvertField
                || converting.contains(&(job.object.clone(), f.name.to_string())),
        })
        .collect()
}

impl Store {
    /// Queues the conversion of a field's stored values on its own (an operator re-running a
    /// failed conversion; the metadata change path calls `enqueue_field_conversion` inside its
    /// own transaction instead), and marks the field converting at once.
    pub async fn queue_field_conversion(&self, object: &str, field: &str) -> StoreResult<()> {
        {
            let _guard = self.write_guard().await;
            let txn = self.begin_write().await?;
            enqueue_field_conversion(&txn, self.backend, object, field).await?;
            txn.commit().await?;
        }
        self.refresh_converting().await
    }

    /// Sets the fields being converted to those with an unfinished (or failed, so still partly
    /// plaintext) conversion job.
    pub async fn refresh_converting(&self) -> StoreResult<()> {
        let cond = Condition::all()
            .add(Expr::col("kind").eq(JobKind::ConvertField.as_str()))
            .add(Expr::col("state").ne(JobState::Done.as_str()));
        let jobs = read_jobs(&self.db, self.backend, cond).await?;
        let fields = jobs.into_iter().filter_map(|j| j.field.map(|f| (j.object, f))).collect();
        self.set_converting(fields);
        Ok(())
    }

    async fn count_rows(&self, table: &str, object: Option<&str>) -> StoreResult<i64> {
        let mut q = Query::select();
        q.expr(Expr::col(sea_query::Asterisk).count()).from(table.to_string());
        if let Some(object) = object {
            q.and_where(Expr::col("object").eq(object)).and_where(Expr::col("category").eq("record"));
        }
        match self.db.query_one(&q).await? {
            Some(row) => Ok(row.try_get_by_index(0)?),
            None => Ok(0),
        }
    }

    /// Counts the rows a job has to go through, once, when it starts.
    async fn ensure_total(&self, job: &mut KeyJob) -> StoreResult<()> {
        if job.phase != PHASES[0] || job.cursor.is_some() || job.done != 0 {
            return Ok(());
        }
        let (_, objects) = self.load_metadata().await?;
        let Some(object) = objects.iter().find(|o| o.name.as_str() == job.object) else { return Ok(()) };
        job.total =
            self.count_rows(&object.table(), None).await? + self.count_rows("sys_audit", Some(&job.object)).await?;
        let update = Query::update()
            .table("sys_key_jobs")
            .value("total", job.total)
            .and_where(Expr::col("id").eq(job.id.as_str()))
            .to_owned();
        let _guard = self.write_guard().await;
        self.writer.execute(&update).await?;
        Ok(())
    }

    /// Runs one job until it is done, fails, or `max_batches` (counted down in `budget`) is
    /// spent. `progress` hears the job's `done` after each batch.
    async fn run_job(
        &self,
        job: &KeyJob,
        owner: &str,
        options: RekeyOptions,
        budget: &mut Option<u64>,
        progress: &mut (dyn FnMut(&KeyJob) + Send),
    ) -> StoreResult<RunEnd> {
        let Some((mut version, mut object, mut fields)) = self.job_work(job).await? else {
            // The object is gone, and its values with it.
            self.finish_job(&job.id, owner, JobState::Done, None).await?;
            return Ok(RunEnd::Finished { rewritten: 0 });
        };
        self.reload_key_ring().await?;
        let ring = self.key_ring()?;
        if job.kind == JobKind::Rotate && ring.active_version() < job.target_version {
            return Err(StoreError::Corrupt(format!("key version {} is not in the key ring", job.target_version)));
        }
        let mut job = self.key_job(&job.id).await?;
        self.ensure_total(&mut job).await?;
        let mut rewritten = 0;
        while let Some(phase) = PHASES.iter().position(|p| *p == job.phase) {
            // The sweeps wait until every node has had time to reload the ring or the
            // metadata. So does a rotation's first rewrite: a node still on the old ring would
            // otherwise look rows up by the old blind-index key only and miss those already
            // rewritten; once it holds the new ring, its lookups match both keys.
            if phase >= 2 || job.kind == JobKind::Rotate {
                let ready = job.created_at + RELOAD_GRACE;
                if let Ok(wait) = (ready - Utc::now()).to_std() {
                    tokio::time::sleep(wait).await;
                }
            }
            if let Some(left) = budget {
                if *left == 0 {
                    self.finish_job(&job.id, owner, JobState::Running, None).await?;
                    return Ok(RunEnd::Paused);
                }
                *left -= 1;
            }
            let step =
                self.run_batch(&mut job, owner, version, &object, &fields, &ring, phase, options.batch_size).await;
            match step {
                Ok(Step::Scanned { rewritten: n, .. }) => {
                    rewritten += n;
                    progress(&job);
                }
                Ok(Step::Stale) => match self.job_work(&job).await? {
                    Some(work) => (version, object, fields) = work,
                    None => break,
                },
                Ok(Step::LeaseLost) => return Ok(RunEnd::LeaseLost),
                Ok(Step::Problem(message)) => {
                    tracing::error!(job = %job.id, %message, "key job failed");
                    self.finish_job(&job.id, owner, JobState::Failed, Some(message.clone())).await?;
                    return Err(StoreError::Refused(message));
                }
                Err(e) => {
                    // Database trouble (a lock timeout, a lost connection): the batch rolled
                    // back; leave the job to be resumed.
                    let _ = self.finish_job(&job.id, owner, JobState::Running, None).await;
                    return Err(e);
                }
            }
        }
        self.finish_job(&job.id, owner, JobState::Done, None).await?;
        Ok(RunEnd::Finished { rewritten })
    }

    /// The metadata version, the object's definition and the fields a job works on, as stored
    /// now; `None` once the object is gone.
    async fn job_work(&self, job: &KeyJob) -> StoreResult<Option<(i64, ObjectDefinition, Vec<FieldWork>)>> {
        let (version, objects) = self.load_metadata().await?;
        let Some(object) = objects.into_iter().find(|o| o.name.as_str() == job.object) else { return Ok(None) };
        self.refresh_converting().await?;
        let fields = work_fields(job, &object, &self.converting.load_full());
        Ok(Some((version, object, fields)))
    }

    /// One batch of one phase in one write transaction, with the lease renewed and the
    /// progress stored in it. A batch planned under metadata `version` that has since changed
    /// (a field stopped or started being encrypted) writes nothing: it is `Stale`, and the job
    /// goes on under the new definitions.
    #[allow(clippy::too_many_arguments)]
    async fn run_batch(
        &self,
        job: &mut KeyJob,
        owner: &str,
        version: i64,
        object: &ObjectDefinition,
        fields: &[FieldWork],
        ring: &KeyRing,
        phase: usize,
        batch_size: u64,
    ) -> StoreResult<Step> {
        let _guard = self.write_guard().await;
        let txn = self.begin_write().await?;
        // First, as in a metadata change, which locks the version row before the job rows it
        // replaces: the other order could deadlock on PostgreSQL.
        if self.fenced_metadata_version(&txn).await? != version {
            txn.rollback().await?;
            return Ok(Step::Stale);
        }
        let renew = Query::update()
            .table("sys_key_jobs")
            .value("lease_until", now_ms() + LEASE_MS)
            .and_where(Expr::col("id").eq(job.id.as_str()))
            .and_where(Expr::col("lease_owner").eq(owner))
            .and_where(Expr::col("state").eq(JobState::Running.as_str()))
            .to_owned();
        if txn.execute(&renew).await?.rows_affected() != 1 {
            txn.rollback().await?;
            return Ok(Step::LeaseLost);
        }

        let scanned = match phase {
            0 | 2 => self.records_batch(&txn, job, object, fields, ring, phase == 2, batch_size).await,
            _ => self.audit_batch(&txn, job, fields, ring, phase == 3, batch_size).await,
        };
        let (rows, last_id, rewritten) = match scanned {
            Ok(Ok(scan)) => scan,
            Ok(Err(problem)) => {
                txn.rollback().await?;
                return Ok(Step::Problem(problem));
            }
            Err(e) => {
                txn.rollback().await?;
                return Err(e);
            }
        };
        let mut next = job.clone();
        if phase < 2 {
            next.done += i64::try_from(rows).unwrap_or(0);
        }
        if rows < batch_size {
            next.phase = PHASES.get(phase + 1).copied().unwrap_or("done").to_string();
            next.cursor = None;
        } else {
            next.cursor = last_id;
        }
        let save = Query::update()
            .table("sys_key_jobs")
            .value("phase", next.phase.as_str())
            .value("cursor", sea_query::Value::String(next.cursor.clone()))
            .value("done", next.done)
            .and_where(Expr::col("id").eq(job.id.as_str()))
            .to_owned();
        txn.execute(&save).await?;
        txn.commit().await?;
        *job = next;
        Ok(Step::Scanned { rewritten })
    }

    /// Brings a batch of an object's rows to the active key. With `leftovers`, only rows
    /// still needing it are read.
    #[allow(clippy::too_many_arguments)]
    async fn records_batch(
        &self,
        txn: &DatabaseTransaction,
        job: &KeyJob,
        object: &ObjectDefinition,
        fields: &[FieldWork],
        ring: &KeyRing,
        leftovers: bool,
        batch_size: u64,
    ) -> StoreResult<Result<(u64, Option<String>, u64), String>> {
        if fields.is_empty() {
            return Ok(Ok((0, None, 0)));
        }
        let table = object.table();
        let mut select = Query::select();
        select.column("id").from(table.clone());
        for f in fields {
            select.column(f.def.column());
            if f.def.is_searchable() {
                select.column(f.def.blind_index_column());
            }
        }
        if let Some(cursor) = &job.cursor {
            select.and_where(Expr::col("id").gt(cursor.clone()));
        }
        if leftovers {
            let mut any = Condition::any();
            let active = format!("{}%", envelope_prefix(ring.active_version()));
            for f in fields {
                let column = f.def.column();
                any = any.add(
                    Condition::all()
                        .add(Expr::col(column.clone()).is_not_null())
                        .add(Expr::col(column.clone()).not_like(active.clone())),
                );
                if f.def.is_searchable() {
                    any = any.add(
                        Condition::all()
                            .add(Expr::col(column).is_not_null())
                            .add(Expr::col(f.def.blind_index_column()).is_null()),
                    );
                }
            }
            select.cond_where(any);
        }
        select.order_by("id", Order::Asc).limit(batch_size).lock(LockType::Update);
        let rows = txn.query_all(&select).await?;
        let mut rewritten = 0;
        let mut last_id = None;
        for row in &rows {
            let id: String = row.try_get_by_index(0)?;
            let mut update = Query::update();
            update.table(table.clone()).and_where(Expr::col("id").eq(id.as_str()));
            let mut changed = false;
            let mut index = 1;
            for f in fields {
                let column = f.def.column();
                let stored: Option<String> = row.try_get_by_index(index)?;
                index += 1;
                let bidx = if f.def.is_searchable() {
                    index += 1;
                    Some(row.try_get_by_index::<Option<i64>>(index - 1)?)
                } else {
                    None
                };
                let aad = Aad { object: &job.object, field: f.def.name.as_str(), record_id: &id };
                let plain = match &stored {
                    None => None,
                    Some(value) => match bring(ring, aad, value, f.converting) {
                        Ok((plain, rewrite)) => {
                            if let Some(envelope) = rewrite {
                                update.value(column.clone(), envelope).and_where(same(&column, &stored));
                                changed = true;
                            }
                            Some(plain)
                        }
                        Err(fault) => {
                            let what = match fault {
                                Fault::NotEncrypted => "holds a value that is not encrypted".to_string(),
                                Fault::Unauthentic => {
                                    "holds a ciphertext that fails authentication (altered, or copied from another record or field)".to_string()
                                }
                                Fault::UnknownKey(v) => format!("is encrypted with key version {v}, which the key ring does not hold"),
                            };
                            return Ok(Err(format!(
                                "{}.{} of record {id} {what}; nothing was overwritten",
                                job.object, f.def.name
                            )));
                        }
                    },
                };
                if let Some(current) = bidx {
                    let wanted = plain.map(|p| ring.blind_index(f.def.field_type, p.expose()));
                    if wanted != current {
                        let bidx_column = f.def.blind_index_column();
                        update
                            .value(bidx_column.clone(), sea_query::Value::BigInt(wanted))
                            .and_where(same(&bidx_column, &current));
                        changed = true;
                    }
                }
            }
            if changed && txn.execute(&update).await?.rows_affected() == 1 {
                rewritten += 1;
            }
            last_id = Some(id);
        }
        Ok(Ok((rows.len() as u64, last_id, rewritten)))
    }

    /// Re-encrypts the encrypted fields' values in a batch of the object's audit images (and,
    /// while a field converts, encrypts its plaintext there). With `leftovers`, only images
    /// that mention a retired key version's prefix are read.
    async fn audit_batch(
        &self,
        txn: &DatabaseTransaction,
        job: &KeyJob,
        fields: &[FieldWork],
        ring: &KeyRing,
        leftovers: bool,
        batch_size: u64,
    ) -> StoreResult<Result<(u64, Option<String>, u64), String>> {
        let old: Vec<u32> = ring.versions().into_iter().filter(|v| *v != ring.active_version()).collect();
        if fields.is_empty() || (leftovers && (job.kind != JobKind::Rotate || old.is_empty())) {
            return Ok(Ok((0, None, 0)));
        }
        let mut select = Query::select();
        select
            .columns(["id", "record_id", "before_image", "after_image"])
            .from("sys_audit")
            .and_where(Expr::col("object").eq(job.object.as_str()))
            .and_where(Expr::col("category").eq("record"));
        if let Some(cursor) = &job.cursor {
            select.and_where(Expr::col("id").gt(cursor.clone()));
        }
        if leftovers {
            let mut any = Condition::any();
            for v in old {
                let pattern = format!("%\"{}%", envelope_prefix(v));
                any = any
                    .add(Expr::col("before_image").like(pattern.clone()))
                    .add(Expr::col("after_image").like(pattern));
            }
            select.cond_where(any);
        }
        select.order_by("id", Order::Asc).limit(batch_size).lock(LockType::Update);
        let rows = txn.query_all(&select).await?;
        let mut rewritten = 0;
        let mut last_id = None;
        for row in &rows {
            let id: String = row.try_get_by_index(0)?;
            last_id = Some(id.clone());
            let Some(record_id) = row.try_get_by_index::<Option<String>>(1)? else { continue };
            let mut update = Query::update();
            update.table("sys_audit").and_where(Expr::col("id").eq(id.as_str()));
            let mut changed = false;
            for (index, column) in [(2, "before_image"), (3, "after_image")] {
                let Some(text) = row.try_get_by_index::<Option<String>>(index)? else { continue };
                let Ok(serde_json::Value::Object(mut image)) = serde_json::from_str::<serde_json::Value>(&text) else {
                    continue;
                };
                let mut image_changed = false;
                for f in fields {
                    let Some(serde_json::Value::String(stored)) = image.get(f.def.name.as_str()) else { continue };
                    let aad = Aad { object: &job.object, field: f.def.name.as_str(), record_id: &record_id };
                    match bring(ring, aad, stored, f.converting) {
                        Ok((_, Some(envelope))) => {
                            image.insert(f.def.name.to_string(), serde_json::Value::String(envelope));
                            image_changed = true;
                        }
                        Ok((_, None)) => {}
                        // History from before the field was encrypted is left as it was.
                        Err(Fault::NotEncrypted) => {}
                        Err(Fault::Unauthentic) => {
                            return Ok(Err(format!(
                                "audit entry {id} holds a ciphertext of {}.{} (record {record_id}) that fails authentication; nothing was overwritten",
                                job.object, f.def.name
                            )));
                        }
                        Err(Fault::UnknownKey(v)) => {
                            return Ok(Err(format!(
                                "audit entry {id} holds a value of {}.{} (record {record_id}) encrypted with key version {v}, which the key ring does not hold",
                                job.object, f.def.name
                            )));
                        }
                    }
                }
                if image_changed {
                    update.value(column, serde_json::Value::Object(image).to_string());
                    changed = true;
                }
            }
            if changed {
                txn.execute(&update).await?;
                rewritten += 1;
            }
        }
        Ok(Ok((rows.len() as u64, last_id, rewritten)))
    }

    /// Starts a rotation (a new data key version and a blind-index key of the same version,
    /// and a job per object with encrypted fields) or finds the unfinished one. Returns its
    /// version and whether it resumed.
    async fn begin_rotation(&self) -> StoreResult<(u32, bool)> {
        let rows = read_rows(&self.db, self.backend).await?;
        let newest = |purpose: &str| newest_version(&rows, purpose).unwrap_or(0);
        let (max, max_blind) = (newest(PURPOSE_DATA), newest(PURPOSE_BLIND_INDEX));
        let unretired_old = !unretired_below(&rows, PURPOSE_DATA, max).is_empty()
            || !unretired_below(&rows, PURPOSE_BLIND_INDEX, max_blind).is_empty();
        let unfinished = self.key_jobs(true).await?.into_iter().any(|j| j.kind == JobKind::Rotate);
        if unretired_old || unfinished {
            return Ok((max, true));
        }
        let master = self.master_key()?;
        let version = max + 1;
        let wrapped = master.wrap(PURPOSE_DATA, version, &KeyMaterial::generate());
        // The blind-index key turns over too: were it ever exposed, its indexes would let
        // anyone test guesses (a phone number has few enough) against a copy of the database.
        // Rows carry indexes of the old key until the jobs rewrite them; lookups match both.
        // Databases rotated before the blind-index key rotated may have an older one, so its
        // version is the data key's, not its own predecessor's plus one.
        let blind = master.wrap(PURPOSE_BLIND_INDEX, version, &KeyMaterial::generate());
        let (_, objects) = self.load_metadata().await?;
        let _guard = self.write_guard().await;
        let txn = self.begin_write().await?;
        let inserted = match insert_row(&txn, &KeyRingRow::new(PURPOSE_DATA, version, wrapped)).await {
            Ok(()) => insert_row(&txn, &KeyRingRow::new(PURPOSE_BLIND_INDEX, version, blind)).await,
            Err(e) => Err(e),
        };
        if let Err(e) = inserted {
            txn.rollback().await?;
            let text = e.to_string();
            if text.contains("UNIQUE constraint failed") || text.contains("duplicate key value") {
                return Err(StoreError::Refused(
                    "another rotation started at the same moment: run `tessera keys rotate` again to resume it".into(),
                ));
            }
            return Err(e);
        }
        bump_key_ring_version(&txn).await?;
        for object in objects.iter().filter(|o| o.fields.iter().any(FieldDefinition::is_encrypted)) {
            insert_job(&txn, JobKind::Rotate, object.name.as_str(), None, version).await?;
        }
        txn.commit().await?;
        Ok((version, false))
    }

    /// Rotates the keys online: a new data key version encrypts new values at once and a new
    /// blind-index key indexes them, every stored value and audit image is re-encrypted and
    /// every blind index recomputed in batches (lookups match both blind-index keys meanwhile),
    /// then the old versions are retired (data keys kept, to read old backups; a retired
    /// blind-index key is no longer matched). Run again after an interruption, it resumes.
    pub async fn rotate_keys(
        &self,
        options: RekeyOptions,
        mut on_progress: impl FnMut(&RotationProgress) + Send,
    ) -> StoreResult<RotationOutcome> {
        let (version, resumed) = self.begin_rotation().await?;
        self.reload_key_ring().await?;
        let owner = uuid::Uuid::new_v4().to_string();
        let mut jobs: Vec<KeyJob> = self
            .key_jobs(false)
            .await?
            .into_iter()
            .filter(|j| j.kind == JobKind::Rotate && j.target_version == version)
            .collect();
        for job in jobs.iter_mut().filter(|j| j.state != JobState::Done) {
            self.ensure_total(job).await?;
        }
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        let total: u64 = jobs.iter().map(|j| count(j.total)).sum();
        let mut finished: u64 = 0;
        let mut budget = options.max_batches;
        let mut rewritten = 0;
        for job in &jobs {
            if job.state == JobState::Done {
                finished += count(job.total);
                continue;
            }
            // A runner killed a moment ago still holds its lease until it runs out.
            while !self.claim_job(&job.id, &owner, true).await? {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let base = finished;
            let mut report = |j: &KeyJob| {
                let done = Ord::min(base + count(j.done), total);
                on_progress(&RotationProgress { version, object: j.object.clone(), done, total });
            };
            match self.run_job(job, &owner, options, &mut budget, &mut report).await? {
                RunEnd::Finished { rewritten: n } => rewritten += n,
                RunEnd::Paused => return Ok(RotationOutcome::Paused { version }),
                RunEnd::LeaseLost => {
                    return Err(StoreError::Refused(format!("another runner took over the rotation job {}", job.id)));
                }
            }
            finished += count(job.total);
        }
        let retired = self.retire_keys_below(version).await?;
        Ok(RotationOutcome::Done { version, retired, rewritten, resumed })
    }

    /// Marks the data key versions below `version` retired, and every blind-index key but the
    /// newest (lookups then stop matching its indexes, which no row holds any more); returns
    /// the data key versions it retired.
    async fn retire_keys_below(&self, version: u32) -> StoreResult<Vec<u32>> {
        let rows = read_rows(&self.db, self.backend).await?;
        let newest_blind = newest_version(&rows, PURPOSE_BLIND_INDEX);
        let retiring = unretired_below(&rows, PURPOSE_DATA, version);
        let retiring_blind = unretired_below(&rows, PURPOSE_BLIND_INDEX, newest_blind.unwrap_or(0));
        if retiring.is_empty() && retiring_blind.is_empty() {
            return Ok(retiring);
        }
        let retire = |purpose: &str, versions: &[u32]| {
            Query::update()
                .table("sys_key_ring")
                .value("retired_at", now())
                .and_where(Expr::col("purpose").eq(purpose))
                .and_where(Expr::col("version").is_in(versions.iter().map(|v| i64::from(*v))))
                .to_owned()
        };
        let _guard = self.write_guard().await;
        let txn = self.begin_write().await?;
        for (purpose, versions) in [(PURPOSE_DATA, &retiring), (PURPOSE_BLIND_INDEX, &retiring_blind)] {
            if !versions.is_empty() {
                txn.execute(&retire(purpose, versions)).await?;
            }
        }
        bump_key_ring_version(&txn).await?;
        txn.commit().await?;
        Ok(retiring)
    }

    /// Runs pending field conversions in the background (one runner per node; leases keep
    /// two nodes off one job) and keeps the set of converting fields current.
    pub fn spawn_key_jobs(&self) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let owner = uuid::Uuid::new_v4().to_string();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = store.run_pending_conversions(&owner).await {
                    tracing::warn!(error = %e, "field conversion stopped; it resumes on the next poll");
                }
            }
        })
    }

    /// Refreshes the converting set and runs every claimable conversion job.
    pub async fn run_pending_conversions(&self, owner: &str) -> StoreResult<()> {
        self.refresh_converting().await?;
        if self.key_ring().is_err() {
            return Ok(());
        }
        let cond = Condition::all()
            .add(Expr::col("kind").eq(JobKind::ConvertField.as_str()))
            .add(Expr::col("state").is_in([JobState::Pending.as_str(), JobState::Running.as_str()]));
        for job in read_jobs(&self.db, self.backend, cond).await? {
            if !self.claim_job(&job.id, owner, false).await? {
                continue;
            }
            let result = self.run_job(&job, owner, RekeyOptions::default(), &mut None, &mut |_| {}).await;
            self.refresh_converting().await?;
            match result {
                Ok(RunEnd::Finished { rewritten }) => {
                    tracing::info!(object = %job.object, field = ?job.field, rewritten, "field conversion done");
                    // The plaintext page versions the conversion replaced leave the disk too.
                    self.forget_old_pages().await;
                }
                Ok(_) => {}
                Err(StoreError::Refused(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Key versions, values per version of every encrypted field, and unfinished jobs.
    pub async fn key_status(&self) -> StoreResult<KeyStatus> {
        let rows = read_rows(&self.db, self.backend).await?;
        let of = |purpose: &str| -> Vec<KeyRingRow> { rows.iter().filter(|r| r.purpose == purpose).cloned().collect() };
        let (versions, blind_index_versions) = (of(PURPOSE_DATA), of(PURPOSE_BLIND_INDEX));
        let (_, objects) = self.load_metadata().await?;
        let mut fields = Vec::new();
        for object in &objects {
            for f in object.fields.iter().filter(|f| f.is_encrypted()) {
                let count = |cond: Condition| {
                    let q = Query::select()
                        .expr(Expr::col(sea_query::Asterisk).count())
                        .from(object.table())
                        .cond_where(cond)
                        .to_owned();
                    async move {
                        Ok::<u64, StoreError>(match self.db.query_one(&q).await? {
                            Some(row) => u64::try_from(row.try_get_by_index::<i64>(0)?).unwrap_or(0),
                            None => 0,
                        })
                    }
                };
                let column = f.column();
                let mut by_version = Vec::new();
                for v in &versions {
                    let n = count(
                        Condition::all()
                            .add(Expr::col(column.clone()).like(format!("{}%", envelope_prefix(v.version)))),
                    )
                    .await?;
                    by_version.push((v.version, n));
                }
                let all = count(Condition::all().add(Expr::col(column.clone()).is_not_null())).await?;
                let on_keys: u64 = by_version.iter().map(|(_, n)| n).sum();
                fields.push(FieldKeyUsage {
                    object: object.name.to_string(),
                    field: f.name.to_string(),
                    by_version,
                    other: all.saturating_sub(on_keys),
                });
            }
        }
        Ok(KeyStatus {
            active_version: versions.iter().map(|r| r.version).max(),
            versions,
            blind_index_versions,
            fields,
            unfinished_jobs: self.key_jobs(true).await?,
        })
    }
}

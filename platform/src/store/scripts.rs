//! Scripts in the record pipeline: compiled scripts per metadata version, the script steps of
//! a save (`BEFORE_SAVE`, formulas, `VALIDATE`), `AFTER_SAVE` triggers after commit, actions,
//! dry runs, and the host API through which scripts reach records as the user they run for.

use std::collections::HashMap;
use std::sync::Arc;

use sea_orm::ConnectionTrait;
use sea_query::{Expr, ExprTrait, Order, Query};
use tessera_metadata::{Action, FieldIssue, IssueCode, Mask, ObjectDefinition, Registry, ScriptHook, Value};
use tessera_plugins::{
    BudgetLimits, Chain, Compiled, Host, HostError, HostRecord, Limits, ObjectScripts, RunInput, RunOutcome, SaveInput,
    ScriptHost, ScriptUser,
};

use super::audit::{AuditEntry, append};
use super::codec::{storage, to_sql};
use super::reads::read_columns;
use super::writes::Row;
use super::{Store, StoreError, StoreResult, enforce};
use crate::graphql::{Caller, DataError, DataResult, ListQuery, PageRequest, Record, RecordStore};

/// Rows recomputed per statement batch when a formula changes.
const FORMULA_BATCH: u64 = 1_000;

/// The script host with the compiled scripts of the current metadata version.
pub(super) struct ScriptRuntime {
    host: ScriptHost,
    budget: BudgetLimits,
    compiled: parking_lot::Mutex<CompiledCache>,
}

#[derive(Default)]
struct CompiledCache {
    version: i64,
    objects: HashMap<String, Arc<ObjectScripts>>,
}

impl ScriptRuntime {
    pub(super) fn new(limits: Limits, budget: BudgetLimits) -> ScriptRuntime {
        ScriptRuntime { host: ScriptHost::new(limits), budget, compiled: Default::default() }
    }

    /// The compiled scripts and formulas of `object` at `registry`'s version, compiled on first
    /// use and kept until the metadata changes.
    fn scripts_of(&self, registry: &Registry, object: &ObjectDefinition) -> DataResult<Arc<ObjectScripts>> {
        if object.scripts.is_empty() && object.formulas().next().is_none() {
            return Ok(Arc::default());
        }
        let name = object.name.as_str();
        {
            let cache = self.compiled.lock();
            if cache.version == registry.version
                && let Some(s) = cache.objects.get(name)
            {
                return Ok(s.clone());
            }
        }
        let compiled = self.host.compile_object(object).map_err(|(script, e)| {
            // Sources are checked when they are saved, so this means the sandbox limits changed.
            DataError::bad_input(format!("script or formula `{script}` of `{name}` no longer compiles: {e}"))
        })?;
        let compiled = Arc::new(compiled);
        let mut cache = self.compiled.lock();
        if registry.version > cache.version {
            *cache = CompiledCache { version: registry.version, objects: HashMap::new() };
        }
        if registry.version == cache.version {
            cache.objects.insert(name.to_string(), compiled.clone());
        }
        Ok(compiled)
    }
}

fn script_user(caller: &Caller) -> ScriptUser {
    ScriptUser { id: caller.user_id.clone(), email: caller.email.clone(), roles: caller.roles.clone() }
}

/// A script failure or limit as the API reports it: a `SCRIPT` field error on the record.
fn script_issue(script: &str, hook: ScriptHook, message: impl std::fmt::Display) -> FieldIssue {
    FieldIssue::new("", IssueCode::Script, format!("{} script `{script}` failed: {message}", hook.as_str()))
}

/// Sensitive values that script messages must not carry: wherever one appears in a message, as
/// given or escaped as a script prints strings, it becomes `[sensitive]`. Messages a script
/// writes itself (`error`, `reject`) are redacted too, since they may quote a value; a part of
/// a value cut out by the script is beyond what matching by value can find.
struct Secrets(Vec<String>);

impl Secrets {
    fn of<'a>(values: impl IntoIterator<Item = &'a Value>) -> Secrets {
        let mut secrets = Vec::new();
        for value in values {
            let Value::Text(s) = value else { continue };
            if s.is_empty() {
                continue;
            }
            let escaped = format!("{s:?}");
            if let Some(inner) = escaped.strip_prefix('"').and_then(|e| e.strip_suffix('"'))
                && inner != s
            {
                secrets.push(inner.to_string());
            }
            secrets.push(s.clone());
        }
        // Longest first, so that a value inside another does not leave the rest of it behind.
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        Secrets(secrets)
    }

    fn redact(&self, message: String) -> String {
        self.0.iter().fold(message, |m, secret| m.replace(secret.as_str(), "[sensitive]"))
    }
}

/// What one save's script steps need, owned so they can move to a blocking thread.
pub(super) struct SaveJob {
    pub record: Row,
    pub old: Option<Row>,
}

impl Store {
    /// Replaces the sandbox limits and per-transaction budgets of scripts (at start-up).
    pub fn configure_scripts(&mut self, limits: Limits, budget: BudgetLimits) {
        self.scripts = Arc::new(ScriptRuntime::new(limits, budget));
    }

    /// The script host, for checking sources when they are saved.
    pub fn script_host(&self) -> &ScriptHost {
        &self.scripts.host
    }

    /// The chain a write of `caller` belongs to: theirs when a script made it, else a fresh one.
    fn chain_of(&self, caller: &Caller) -> Chain {
        caller.chain.clone().unwrap_or_else(|| Chain::start(self.scripts.budget.clone()))
    }

    /// The caller of one API write with the chain all its scripts share (its save steps, its
    /// triggers and their writes), so the budget is the call's, not each script's. Objects
    /// without scripts skip this.
    pub(super) fn in_chain<'c>(&self, caller: &'c Caller, object: &ObjectDefinition) -> std::borrow::Cow<'c, Caller> {
        let scripted = !object.scripts.is_empty() || object.formulas().next().is_some();
        if caller.chain.is_some() || !scripted {
            return std::borrow::Cow::Borrowed(caller);
        }
        std::borrow::Cow::Owned(Caller { chain: Some(self.chain_of(caller)), ..caller.clone() })
    }

    /// Whether saves of `object` run any script step. A script that no longer compiles (the
    /// sandbox limits changed) fails the write rather than letting it skip its rules.
    pub(super) fn has_save_scripts(&self, registry: &Registry, object: &ObjectDefinition) -> DataResult<bool> {
        if object.scripts.is_empty() && object.formulas().next().is_none() {
            return Ok(false);
        }
        Ok(self.scripts.scripts_of(registry, object)?.touches_saves())
    }

    /// Runs the script steps of a save for each record (`BEFORE_SAVE`, formulas, `VALIDATE`) on
    /// a blocking thread. Returns, per record, the record with the scripts' changes applied and
    /// those changes alone, and every issue (indexed by the record's position).
    pub(super) async fn run_save_scripts(
        &self,
        caller: &Caller,
        registry: &Registry,
        object: &Arc<ObjectDefinition>,
        jobs: Vec<SaveJob>,
    ) -> DataResult<(Vec<(Row, Row)>, Vec<FieldIssue>)> {
        let scripts = self.scripts.scripts_of(registry, object)?;
        if !scripts.touches_saves() {
            return Ok((jobs.into_iter().map(|j| (j.record, Row::default())).collect(), Vec::new()));
        }
        // Messages of the scripts and formulas (a failed `decimal("<id number>")`, a rule quoting a
        // value) must not show the caller values they may only see masked.
        let grant = caller.access.object(object.name.as_str());
        let masked: Vec<String> = object
            .fields
            .iter()
            .filter(|f| f.sensitive.is_some_and(|s| s.mask != Mask::None) && !grant.unmasked(f.name.as_str()))
            .map(|f| f.column())
            .collect();
        let runtime = self.scripts.clone();
        let chain = self.chain_of(caller);
        let user = script_user(caller);
        let object = object.clone();
        // One stack for the whole batch's runs (see `ScriptHost::with_stack`).
        let outcomes = tokio::task::spawn_blocking(move || {
            runtime.host.with_stack(|| {
                jobs.into_iter()
                    .map(|job| {
                        let outcome = runtime.host.save(
                            &scripts,
                            SaveInput {
                                object: &object,
                                record: &job.record,
                                old: job.old.as_ref(),
                                user: &user,
                                chain: &chain,
                            },
                        );
                        (job.record, job.old, outcome)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "script thread failed");
            DataError::Internal
        })?;
        let mut changes = Vec::with_capacity(outcomes.len());
        let mut issues = Vec::new();
        for (i, (mut record, old, o)) in outcomes.into_iter().enumerate() {
            if !o.issues.is_empty() {
                let rows = [Some(&record), old.as_ref(), Some(&o.changes)];
                let secrets =
                    Secrets::of(masked.iter().flat_map(|c| rows.iter().flatten().filter_map(move |row| row.get(c))));
                issues.extend(o.issues.into_iter().map(|mut issue| {
                    issue.message = secrets.redact(std::mem::take(&mut issue.message));
                    issue.at(i)
                }));
            }
            record.extend(o.changes.iter().map(|(k, v)| (k.clone(), v.clone())));
            changes.push((record, o.changes));
        }
        Ok((changes, issues))
    }

    /// A stored row with its encrypted values opened, for scripts (which see plaintext; what
    /// they return to a caller goes through the caller's masks). A value that does not open is
    /// left out.
    pub(super) fn open_for_scripts(&self, object: &ObjectDefinition, id: &str, row: &Row) -> Row {
        let mut out = row.clone();
        let encrypted: Vec<_> = object.fields.iter().filter(|f| f.is_encrypted()).collect();
        if encrypted.is_empty() {
            return out;
        }
        let Ok(ring) = self.key_ring() else {
            for f in encrypted {
                out.remove(&f.column());
            }
            return out;
        };
        for f in encrypted {
            let column = f.column();
            if let Some(Value::Text(stored)) = row.get(&column) {
                if crate::crypto::envelope_version(stored).is_none() {
                    continue; // the plaintext a writer just gave
                }
                let mut plain = stored.clone();
                match super::sensitive::open_value(&ring, object.name.as_str(), f, id, &mut plain, false) {
                    Ok(()) => {
                        out.insert(column, Value::Text(plain));
                    }
                    Err(_) => {
                        out.remove(&column);
                    }
                }
            }
        }
        out
    }

    /// Runs the `AFTER_SAVE` scripts of `object` for records just committed, as their writer.
    /// A failure cannot undo the write: it is recorded in the audit log (category `script`)
    /// and logged, and the remaining scripts and records still run.
    pub(super) async fn after_save(
        &self,
        caller: &Caller,
        registry: &Arc<Registry>,
        object: &ObjectDefinition,
        written: &[(Record, Option<Record>)],
    ) {
        if written.is_empty() || !object.scripts.iter().any(|s| s.hook == ScriptHook::AfterSave && s.active) {
            return;
        }
        let scripts = match self.scripts.scripts_of(registry, object) {
            Ok(s) => s,
            Err(e) => {
                // The triggers cannot run; say so for every record rather than skip them.
                let failures = written.iter().map(|(r, _)| (r.id.clone(), "AFTER_SAVE".to_string(), e.to_string()));
                self.record_trigger_failures(caller, object, failures.collect()).await;
                return;
            }
        };
        if scripts.after_save.is_empty() {
            return;
        }
        let Some(object) = registry.object(object.name.as_str()).cloned() else { return };
        let chain = self.chain_of(caller);
        let mut failures = Vec::new();
        for (record, old) in written {
            let mut row = self.open_for_scripts(&object, &record.id, &record.values);
            row.insert("id".into(), Value::Text(record.id.clone()));
            let old = old.as_ref().map(|o| {
                let mut r = self.open_for_scripts(&object, &o.id, &o.values);
                r.insert("id".into(), Value::Text(o.id.clone()));
                r
            });
            // Sensitive values the script saw must not end up in the audit log through its error.
            let secrets = Secrets::of(
                object
                    .fields
                    .iter()
                    .filter(|f| f.sensitive.is_some())
                    .flat_map(|f| [row.get(&f.column()), old.as_ref().and_then(|o| o.get(&f.column()))])
                    .flatten(),
            );
            let redact = |message: String| secrets.redact(message);
            for (name, compiled) in &scripts.after_save {
                let outcome = self
                    .run_with_host(
                        caller,
                        registry,
                        &object,
                        name,
                        ScriptHook::AfterSave,
                        compiled,
                        &chain,
                        &row,
                        old.as_ref(),
                        None,
                        false,
                    )
                    .await;
                match outcome {
                    Ok((o, _)) => {
                        if let Some(failure) = o.failure {
                            failures.push((record.id.clone(), name.clone(), redact(failure.to_string())));
                        }
                    }
                    Err(e) => failures.push((record.id.clone(), name.clone(), redact(e.to_string()))),
                }
            }
        }
        self.record_trigger_failures(caller, &object, failures).await;
    }

    /// Records failed triggers (record id, script, error) in the audit log.
    async fn record_trigger_failures(
        &self,
        caller: &Caller,
        object: &ObjectDefinition,
        failures: Vec<(String, String, String)>,
    ) {
        if failures.is_empty() {
            return;
        }
        let entries: Vec<AuditEntry> = failures
            .iter()
            .map(|(id, script, error)| {
                tracing::warn!(object = %object.name, record = %id, script = %script, "AFTER_SAVE script failed");
                AuditEntry::new("script", "after_save_failed", Some(&caller.user_id))
                    .on(object.name.as_str(), Some(id))
                    .images(None, Some(serde_json::json!({"script": script, "error": error})))
            })
            .collect();
        let written = async {
            let _guard = self.write_guard().await;
            let txn = self.begin_write().await?;
            append(&txn, &entries, self.backend).await?;
            txn.commit().await.map_err(StoreError::from)
        };
        if let Err(e) = written.await {
            tracing::error!(error = %e, "cannot record AFTER_SAVE failures");
        }
    }

    /// Runs one script with the host API on a blocking thread, as `caller`.
    #[allow(clippy::too_many_arguments)]
    async fn run_with_host(
        &self,
        caller: &Caller,
        registry: &Arc<Registry>,
        object: &Arc<ObjectDefinition>,
        name: &str,
        hook: ScriptHook,
        compiled: &Compiled,
        chain: &Chain,
        record: &Row,
        old: Option<&Row>,
        input: Option<serde_json::Value>,
        dry_run: bool,
    ) -> DataResult<(RunOutcome, Vec<serde_json::Value>)> {
        let host = ScriptHostApi {
            store: self.clone(),
            caller: caller.clone(),
            chain: chain.clone(),
            registry: registry.clone(),
            handle: tokio::runtime::Handle::current(),
            dry_run,
            dry_writes: parking_lot::Mutex::new(Vec::new()),
        };
        let runtime = self.scripts.clone();
        let (object, name, compiled, chain) = (object.clone(), name.to_string(), compiled.clone(), chain.clone());
        let (record, old) = (record.clone(), old.cloned());
        let user = script_user(caller);
        tokio::task::spawn_blocking(move || {
            let outcome = runtime.host.run(
                &compiled,
                RunInput {
                    object: &object,
                    script_name: &name,
                    hook,
                    record: &record,
                    old: old.as_ref(),
                    user: &user,
                    input: input.as_ref(),
                    host: hook.has_host_api().then_some(&host as &dyn Host),
                    chain: &chain,
                },
            );
            let writes = std::mem::take(&mut *host.dry_writes.lock());
            (outcome, writes)
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "script thread failed");
            DataError::Internal
        })
    }

    /// Runs the `ACTION` script `action` on a record for the caller: they must be able to read
    /// the record, and be in one of the action's roles or, when it lists none, able to update it.
    pub async fn run_action(
        &self,
        caller: &Caller,
        registry: &Arc<Registry>,
        object: &Arc<ObjectDefinition>,
        id: &str,
        action: &str,
        input: Option<serde_json::Value>,
    ) -> DataResult<serde_json::Value> {
        let script = object
            .script(action)
            .filter(|s| s.hook == ScriptHook::Action && s.active)
            .ok_or_else(|| DataError::NotFound(format!("`{}` has no action `{action}`", object.name)))?;
        let allowed_by_role = caller.is_admin() || script.roles.iter().any(|r| caller.roles.contains(r));
        if !script.roles.is_empty() && !allowed_by_role {
            return Err(DataError::Forbidden(format!(
                "action `{action}` may be run only by the roles {}",
                script.roles.join(", ")
            )));
        }
        if script.roles.is_empty() {
            enforce::require(caller, object, Action::Update)?;
        }
        let columns: Vec<String> = object.fields.iter().map(|f| f.column()).collect();
        let record = RecordStore::get(self, caller, object, id, &columns)
            .await?
            .ok_or_else(|| DataError::NotFound(format!("no {} with id `{id}`", object.name)))?;
        if script.roles.is_empty() {
            // The record must be one the caller may update, not only read.
            let scope = enforce::rows(caller, object.name.as_str(), Action::Update)?;
            if self.read_one(object, id, &[], false, scope.as_ref()).await?.is_none() {
                return Err(DataError::Forbidden(format!("you may not update this {}", object.name)));
            }
        }
        if let Some(input) = &input
            && !input.is_object()
        {
            return Err(DataError::bad_input("input must be a JSON object"));
        }
        let scripts = self.scripts.scripts_of(registry, object)?;
        let compiled = scripts
            .actions
            .get(action)
            .ok_or_else(|| DataError::NotFound(format!("`{}` has no action `{action}`", object.name)))?;
        let mut row = record.values.clone();
        row.insert("id".into(), Value::Text(record.id.clone()));
        let chain = self.chain_of(caller);
        let caller = &Caller { chain: Some(chain.clone()), ..caller.clone() };
        let (outcome, _) = self
            .run_with_host(
                caller,
                registry,
                object,
                action,
                ScriptHook::Action,
                compiled,
                &chain,
                &row,
                None,
                input,
                false,
            )
            .await?;
        if let Some(failure) = outcome.failure {
            return Err(DataError::BadInput {
                message: format!("action `{action}` failed: {failure}"),
                field_errors: vec![script_issue(action, ScriptHook::Action, &failure)],
            });
        }
        let issues: Vec<FieldIssue> = outcome
            .issues
            .into_iter()
            .map(|i| FieldIssue::new(i.field.unwrap_or_default(), IssueCode::Script, i.message))
            .collect();
        if !issues.is_empty() {
            return Err(DataError::invalid_fields(issues));
        }
        Ok(outcome.result)
    }

    /// A dry run of a script source against a sample record: nothing is written (`create` and
    /// `update` are recorded, not performed; `find` reads as the caller).
    #[allow(clippy::too_many_arguments)]
    pub async fn test_script(
        &self,
        caller: &Caller,
        registry: &Arc<Registry>,
        object: &Arc<ObjectDefinition>,
        hook: ScriptHook,
        source: &str,
        record: &serde_json::Map<String, serde_json::Value>,
        old: Option<&serde_json::Map<String, serde_json::Value>>,
        input: Option<serde_json::Value>,
    ) -> DataResult<TestRun> {
        let compiled = self
            .scripts
            .host
            .compile(source)
            .map_err(|e| DataError::bad_input(format!("the script does not compile: {e}")))?;
        let record = sample_row(object, record)?;
        let old = old.map(|o| sample_row(object, o)).transpose()?;
        let chain = self.chain_of(caller);
        let (outcome, writes) = self
            .run_with_host(
                caller,
                registry,
                object,
                "test",
                hook,
                &compiled,
                &chain,
                &record,
                old.as_ref(),
                input,
                true,
            )
            .await?;
        let mut field_errors: Vec<(String, String)> =
            outcome.issues.iter().map(|i| (i.field.clone().unwrap_or_default(), i.message.clone())).collect();
        field_errors.extend(outcome.change_issues.iter().map(|i| (i.field.clone(), i.message.clone())));
        let mut changes = serde_json::Map::new();
        for f in &object.fields {
            if let Some(v) = outcome.changes.get(&f.column()) {
                changes.insert(f.name.to_string(), v.to_json(f));
            }
        }
        Ok(TestRun {
            ok: outcome.failure.is_none() && field_errors.is_empty(),
            error: outcome.failure.map(|f| f.to_string()),
            field_errors,
            changes: serde_json::Value::Object(changes),
            writes,
            logs: outcome.logs,
            result: outcome.result,
            duration_micros: u64::try_from(outcome.duration.as_micros()).unwrap_or(u64::MAX),
            operations: outcome.operations,
        })
    }

    /// Stores every record's value of a formula field (after the field is created or its
    /// formula changed), in keyset batches inside the metadata change's transaction.
    pub(super) async fn recompute_formula(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        object: &ObjectDefinition,
        field: &tessera_metadata::FieldDefinition,
    ) -> StoreResult<()> {
        let compiled = self
            .scripts
            .host
            .compile(field.formula.as_deref().unwrap_or_default())
            .map_err(|e| StoreError::Refused(format!("the formula of `{}` does not compile: {e}", field.name)))?;
        if compiled.sensitive_reads(object, field.name.as_str()).is_some() {
            // Suspended (see `suspended_formulas`): stored empty, not computed.
            let clear = Query::update().table(object.table()).value(field.column(), storage(field).null()).to_owned();
            txn.execute(&clear).await?;
            return Ok(());
        }
        let columns: Vec<String> = object.fields.iter().map(|f| f.column()).collect();
        let read = read_columns(object, &columns);
        let column = field.column();
        let mut after: Option<String> = None;
        loop {
            let mut q = Query::select();
            q.columns(read.iter().map(|c| c.name.clone()))
                .from(object.table())
                .order_by("id", Order::Asc)
                .limit(FORMULA_BATCH);
            if let Some(a) = &after {
                q.and_where(Expr::col("id").gt(a.clone()));
            }
            let rows = txn.query_all(&q).await?;
            let mut records = Vec::with_capacity(rows.len());
            for row in &rows {
                records.push(self.decode_record(row, &read)?);
            }
            let Some(last) = records.last() else { break };
            after = Some(last.id.clone());
            for record in &records {
                let values = self.open_for_scripts(object, &record.id, &record.values);
                let value = self.scripts.host.formula(&compiled, object, field, &values).map_err(|e| {
                    StoreError::Refused(format!(
                        "the formula of `{}` fails on record {}: {e}; no value was changed",
                        field.name, record.id
                    ))
                })?;
                if record.values.get(&column) == Some(&value) {
                    continue;
                }
                txn.execute(
                    &Query::update()
                        .table(object.table())
                        .value(column.clone(), to_sql(&value, storage(field)))
                        .and_where(Expr::col("id").eq(record.id.clone()))
                        .to_owned(),
                )
                .await?;
            }
            if (rows.len() as u64) < FORMULA_BATCH {
                break;
            }
        }
        Ok(())
    }
}

/// The outcome of `testScript`.
#[derive(Debug)]
pub struct TestRun {
    pub ok: bool,
    /// Why the script failed as a whole (runtime error or limit).
    pub error: Option<String>,
    /// (field, message) of each field error; the field is empty for `reject`.
    pub field_errors: Vec<(String, String)>,
    /// Assignments of a `BEFORE_SAVE` script, by field api name.
    pub changes: serde_json::Value,
    /// The `create` and `update` calls a trigger or action would have made.
    pub writes: Vec<serde_json::Value>,
    pub logs: Vec<String>,
    pub result: serde_json::Value,
    pub duration_micros: u64,
    pub operations: u64,
}

/// A sample record given as API values by field api name, coerced like input.
fn sample_row(object: &ObjectDefinition, values: &serde_json::Map<String, serde_json::Value>) -> DataResult<Row> {
    let mut row = Row::default();
    let mut issues = Vec::new();
    for (name, json) in values {
        if name == "id" || name == "owner_id" {
            if let Some(s) = json.as_str() {
                row.insert(name.clone(), Value::Text(s.to_string()));
            }
            continue;
        }
        let Some(field) = object.field(name) else {
            issues.push(FieldIssue::new(
                name,
                IssueCode::UnknownField,
                format!("`{name}` is not a field of `{}`", object.name),
            ));
            continue;
        };
        match Value::coerce(field, json) {
            Ok(v) => {
                row.insert(field.column(), v);
            }
            Err(issue) => issues.push(issue),
        }
    }
    if issues.is_empty() { Ok(row) } else { Err(DataError::invalid_fields(issues)) }
}

/// The host API as one script run sees it: every call goes through the store's permission
/// checks as the user the script runs for, and every write through the whole record pipeline
/// one trigger level deeper.
struct ScriptHostApi {
    store: Store,
    caller: Caller,
    chain: Chain,
    registry: Arc<Registry>,
    handle: tokio::runtime::Handle,
    dry_run: bool,
    dry_writes: parking_lot::Mutex<Vec<serde_json::Value>>,
}

fn host_error(e: DataError) -> HostError {
    let (code, field_errors) = match &e {
        DataError::BadInput { field_errors, .. } => ("BAD_USER_INPUT", field_errors.as_slice()),
        DataError::Conflict { field_errors, .. } => ("CONFLICT", field_errors.as_slice()),
        DataError::NotFound(_) => ("NOT_FOUND", &[][..]),
        DataError::Forbidden(_) => ("FORBIDDEN", &[][..]),
        DataError::Timeout => ("TIMEOUT", &[][..]),
        DataError::RateLimited(_) => ("RATE_LIMITED", &[][..]),
        DataError::Unavailable(_) => ("UNAVAILABLE", &[][..]),
        DataError::Internal => ("INTERNAL_SERVER_ERROR", &[][..]),
    };
    let mut message = e.to_string();
    for i in field_errors {
        message.push_str(&format!("; {}: {} ({})", i.field, i.message, i.code));
    }
    HostError { code: code.into(), message }
}

impl ScriptHostApi {
    fn object(&self, name: &str) -> Result<Arc<ObjectDefinition>, HostError> {
        self.registry
            .object(name)
            .cloned()
            .ok_or_else(|| HostError { code: "NOT_FOUND".into(), message: format!("there is no object `{name}`") })
    }

    /// The caller of a write made by this script: one trigger level deeper.
    fn writer(&self) -> Result<Caller, HostError> {
        let chain = self.chain.nested().map_err(|e| HostError { code: "SCRIPT".into(), message: e.to_string() })?;
        Ok(Caller { chain: Some(chain), ..self.caller.clone() })
    }

    fn record(object: &Arc<ObjectDefinition>, record: Record) -> HostRecord {
        HostRecord { object: object.clone(), id: record.id, row: record.values }
    }

    fn dry(
        &self,
        object: &Arc<ObjectDefinition>,
        op: &str,
        id: Option<&str>,
        values: serde_json::Map<String, serde_json::Value>,
    ) -> HostRecord {
        let id = id.map(str::to_string).unwrap_or_else(|| format!("dry-run-{}", self.dry_writes.lock().len() + 1));
        self.dry_writes.lock().push(serde_json::json!({
            "op": op, "object": object.name.as_str(), "id": id, "values": values,
        }));
        let row = sample_row(object, &values).unwrap_or_default();
        HostRecord { object: object.clone(), id, row }
    }
}

/// A script's filter map (field api names; a value means equality) as the data API's filter input.
fn script_filter(object: &ObjectDefinition, filter: &serde_json::Value) -> Result<async_graphql::Value, HostError> {
    let bad = |m: String| HostError { code: "BAD_USER_INPUT".into(), message: m };
    let serde_json::Value::Object(map) = filter else {
        return if filter.is_null() {
            Ok(async_graphql::Value::Null)
        } else {
            Err(bad("a filter must be a map".into()))
        };
    };
    let mut out = serde_json::Map::new();
    for (name, v) in map {
        let key = if name == "id" {
            "id".to_string()
        } else {
            let f = object.field(name).ok_or_else(|| bad(format!("`{name}` is not a field of `{}`", object.name)))?;
            if f.field_type == tessera_metadata::FieldType::Lookup { f.graphql_id_name() } else { f.graphql_name() }
        };
        let ops = match v {
            serde_json::Value::Object(_) => v.clone(),
            serde_json::Value::Null => serde_json::json!({"isNull": true}),
            serde_json::Value::Array(_) => serde_json::json!({"in": v}),
            other => serde_json::json!({"eq": other}),
        };
        out.insert(key, ops);
    }
    async_graphql::Value::from_json(serde_json::Value::Object(out)).map_err(|e| bad(e.to_string()))
}

impl Host for ScriptHostApi {
    fn find(&self, object: &str, filter: &serde_json::Value, limit: usize) -> Result<Vec<HostRecord>, HostError> {
        let def = self.object(object)?;
        let filter = script_filter(&def, filter)?;
        let filter = crate::graphql::filter_input::parse_filter(&self.registry, &self.caller.access, &def, &filter)
            .map_err(host_error)?;
        let query = ListQuery {
            filter,
            order: Vec::new(),
            page: PageRequest { first: Some(limit.clamp(1, 1000) as u64), ..Default::default() },
            columns: def.fields.iter().map(|f| f.column()).collect(),
            with_total: false,
        };
        let page =
            self.handle.block_on(RecordStore::list(&self.store, &self.caller, &def, &query)).map_err(host_error)?;
        Ok(page.records.into_iter().map(|r| Self::record(&def, r)).collect())
    }

    fn create(
        &self,
        object: &str,
        values: serde_json::Map<String, serde_json::Value>,
    ) -> Result<HostRecord, HostError> {
        let def = self.object(object)?;
        let writer = self.writer()?;
        if self.dry_run {
            enforce::require(&writer, &def, Action::Create).map_err(host_error)?;
            return Ok(self.dry(&def, "create", None, values));
        }
        let records = self
            .handle
            .block_on(RecordStore::create(&self.store, &writer, &self.registry, &def, vec![values], None))
            .map_err(host_error)?;
        let record = records.into_iter().next().ok_or_else(|| host_error(DataError::Internal))?;
        Ok(Self::record(&def, record))
    }

    fn update(
        &self,
        object: &str,
        id: &str,
        values: serde_json::Map<String, serde_json::Value>,
    ) -> Result<HostRecord, HostError> {
        let def = self.object(object)?;
        let writer = self.writer()?;
        if self.dry_run {
            enforce::require(&writer, &def, Action::Update).map_err(host_error)?;
            return Ok(self.dry(&def, "update", Some(id), values));
        }
        let record = self
            .handle
            .block_on(RecordStore::update(&self.store, &writer, &self.registry, &def, id, values, None))
            .map_err(host_error)?;
        Ok(Self::record(&def, record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_as_given_and_as_scripts_print_them_longest_first() {
        let values = [Value::Text("李\"雷\"".into()), Value::Text("1381".into()), Value::Text("13812345678".into())];
        let secrets = Secrets::of(values.iter().chain([&Value::Null, &Value::Text(String::new())]));
        let message = r#"a: 13812345678, b: 李"雷", c: "李\"雷\"", d: 1381"#.to_string();
        assert_eq!(secrets.redact(message), r#"a: [sensitive], b: [sensitive], c: "[sensitive]", d: [sensitive]"#);
    }
}

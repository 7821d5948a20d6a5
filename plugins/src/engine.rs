//! The sandboxed engine, compilation (cached ASTs) and running scripts.

use std::collections::HashMap;
use std::sync::{Arc, mpsc};
use std::time::Instant;

use rhai::{Dynamic, Map, ParseErrorType, Scope};
use tessera_metadata::{
    FieldDefinition, FieldIssue, FieldType, IssueCode, ObjectDefinition, SYSTEM_FIELDS, ScriptHook, Value,
};

use crate::convert::{
    describe, dynamic_to_json, dynamic_to_value, json_to_dynamic, row_to_map, same, value_to_dynamic,
};
use crate::sandbox::{self, HostCall, HostLink, HostReply, Pushed, RunState};
use crate::{
    Host, Limits, Row, RunInput, RunOutcome, SaveInput, SaveOutcome, ScriptError, ScriptUser, SensitiveFormula,
};

/// A compile error, with the position Rhai reports (1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct CompileError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// A compiled script or formula (cheap to clone).
#[derive(Debug, Clone)]
pub struct Compiled {
    pub(crate) ast: Arc<rhai::AST>,
}

/// Every active script and formula of one object, compiled; built once per metadata version.
#[derive(Debug, Clone, Default)]
pub struct ObjectScripts {
    /// (script name, compiled) in run order.
    pub validate: Vec<(String, Compiled)>,
    pub before_save: Vec<(String, Compiled)>,
    pub after_save: Vec<(String, Compiled)>,
    pub actions: HashMap<String, Compiled>,
    /// (field api name, compiled expression) in definition order.
    pub formulas: Vec<(String, Compiled)>,
    /// Formula fields whose expression reads a sensitive field (saved before such formulas
    /// were refused): they are not computed, and every save stores them empty.
    pub suspended: Vec<String>,
}

impl ObjectScripts {
    /// Whether a save of this object runs any script or formula.
    pub fn touches_saves(&self) -> bool {
        !(self.validate.is_empty()
            && self.before_save.is_empty()
            && self.formulas.is_empty()
            && self.suspended.is_empty())
    }
}

/// The script host: one configured engine shared by every run (`Send + Sync`).
pub struct ScriptHost {
    pub(crate) engine: rhai::Engine,
    pub(crate) limits: Limits,
    /// The stack every run gets (`script_stack`).
    stack: usize,
}

/// Names every script sees; compiled into strict-variables mode so a typo in any other name
/// is a compile error.
const INPUTS: [&str; 4] = ["record", "old", "user", "input"];
/// Stack a run needs besides its calls and data: the host's frames around the engine and a
/// top-level expression nested to `max_expr_depth`.
const BASE_STACK: usize = 2 << 20;
/// Stack per level of script function calls, each with a body nested to its expression depth
/// limit (measured at most 64 KiB in a debug build at the default limits).
const STACK_PER_CALL: usize = 128 << 10;
/// Stack per level of nested arrays and maps, which Rhai walks recursively to check sizes,
/// clone and drop them (measured about 300 bytes in debug and release builds).
const STACK_PER_NESTED_VALUE: usize = 1 << 10;
/// Room above a run's stack on a thread started for it, for the frames before the run begins.
const STACK_SLACK: usize = 256 << 10;

/// The stack a run under `limits` may use: its deepest calls plus its deepest data (arrays and
/// maps nest at most as deep as their size limits allow). Memory is reserved, not committed:
/// only what a run touches is.
fn script_stack(limits: &Limits) -> usize {
    let nesting = limits.max_array_len.saturating_add(limits.max_map_len);
    BASE_STACK
        .saturating_add(STACK_PER_CALL.saturating_mul(limits.max_call_depth))
        .saturating_add(STACK_PER_NESTED_VALUE.saturating_mul(nesting))
}

fn compile_scope() -> Scope<'static> {
    let mut scope = Scope::new();
    for name in INPUTS {
        scope.push_dynamic(name, Dynamic::UNIT);
    }
    scope
}

/// Fills `scope` with the inputs of one script, `record` last so the others stay put while
/// formulas replace it.
fn push_inputs(scope: &mut Scope, record: Map, constant_record: bool, old: &Dynamic, user: &Dynamic, input: Dynamic) {
    scope.clear();
    scope.push_constant_dynamic("old", old.clone());
    scope.push_constant_dynamic("user", user.clone());
    scope.push_constant_dynamic("input", input);
    if constant_record {
        scope.push_constant_dynamic("record", Dynamic::from_map(record));
    } else {
        scope.push_dynamic("record", Dynamic::from_map(record));
    }
}

/// Takes `record` back out of a scope filled by `push_inputs` (dropping the script's own
/// top-level variables).
fn take_record(scope: &mut Scope) -> Dynamic {
    scope.rewind(INPUTS.len());
    scope.remove::<Dynamic>("record").unwrap_or(Dynamic::UNIT)
}

/// The record as formulas see it: sensitive fields are `()`. A formula's value is stored and
/// shown without encryption, masking or access log, so it must not be computed from them;
/// formulas that name one are refused when saved, and this keeps any other way of reaching
/// them (a computed key) from seeing their values.
fn withhold_sensitive(object: &ObjectDefinition, record: &Map) -> Map {
    let mut out = record.clone();
    for f in object.fields.iter().filter(|f| f.sensitive.is_some()) {
        if let Some(slot) = out.get_mut(f.name.as_str()) {
            *slot = Dynamic::UNIT;
        }
    }
    out
}

fn user_map(user: &ScriptUser) -> Dynamic {
    let mut map = Map::new();
    map.insert("id".into(), Dynamic::from(user.id.clone()));
    map.insert("email".into(), Dynamic::from(user.email.clone()));
    map.insert("roles".into(), Dynamic::from_array(user.roles.iter().map(|r| Dynamic::from(r.clone())).collect()));
    Dynamic::from_map(map)
}

fn script_issue(field: &str, message: String) -> FieldIssue {
    FieldIssue::new(field, IssueCode::Script, message)
}

/// The field a script may assign under `key`, or why it may not.
fn writable<'o>(object: &'o ObjectDefinition, key: &str) -> Result<&'o FieldDefinition, String> {
    if SYSTEM_FIELDS.contains(&key) {
        return Err("it is a system field".into());
    }
    let Some(field) = object.field(key) else {
        let lookup = key.strip_suffix("_id").and_then(|stem| object.field(stem));
        if let Some(lookup) = lookup.filter(|f| f.field_type == FieldType::Lookup) {
            return Err(format!("assign the lookup by its api name: `record.{} = \"<id>\"`", lookup.name));
        }
        return Err(format!("object `{}` has no such field", object.name));
    };
    if field.is_formula() {
        return Err("it is a formula field, computed from the record".into());
    }
    if field.field_type == FieldType::AutoNumber {
        return Err("it is an AUTO_NUMBER, assigned by the platform".into());
    }
    Ok(field)
}

/// Compares `record` after a `BEFORE_SAVE` script with the map the script was given; records
/// the accepted assignments in `changes` (by column, only values that differ from the saved
/// record) and the refused ones in `issues`. Returns the map the next step sees.
fn take_assignments(
    object: &ObjectDefinition,
    script: &str,
    before: &Map,
    after: Dynamic,
    saved: &Row,
    changes: &mut Row,
    issues: &mut Vec<FieldIssue>,
) -> Map {
    let mut next = before.clone();
    // A map without every key it was given is another map, not the record with assignments.
    let Some(after) = after.try_cast::<Map>().filter(|a| before.keys().all(|k| a.contains_key(k))) else {
        issues.push(script_issue(
            "",
            format!(
                "BEFORE_SAVE script `{script}` replaced `record` or removed its keys: assign its fields \
                 (`record.amount = …`, `()` to clear one) instead"
            ),
        ));
        return next;
    };
    let assigned: Vec<(String, Dynamic)> = after
        .iter()
        .filter(|(k, v)| before.get(*k).is_none_or(|old| !same(old, v)))
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    for (key, value) in assigned {
        let field = match writable(object, &key) {
            Ok(f) => f,
            Err(why) => {
                issues.push(script_issue(&key, format!("BEFORE_SAVE script `{script}` cannot set `{key}`: {why}")));
                continue;
            }
        };
        match dynamic_to_value(field, &value, false) {
            Ok(v) => {
                next.insert(key.as_str().into(), value_to_dynamic(field, &v));
                note_change(field, v, saved, changes);
            }
            Err(reason) => issues.push(script_issue(
                &key,
                format!("BEFORE_SAVE script `{script}` set `{key}` to {}: {reason}", describe(&value)),
            )),
        }
    }
    next
}

/// Records `value` for `field` in `changes` unless the saved record already holds it.
fn note_change(field: &FieldDefinition, value: Value, saved: &Row, changes: &mut Row) {
    let column = field.column();
    if saved.get(&column).unwrap_or(&Value::Null) == &value {
        changes.remove(&column);
    } else {
        changes.insert(column, value);
    }
}

impl ScriptHost {
    pub fn new(limits: Limits) -> ScriptHost {
        let mut engine = rhai::Engine::new();
        engine.set_max_operations(limits.max_operations);
        engine.set_max_call_levels(limits.max_call_depth);
        // Rhai reads 0 as "no limit": function bodies keep at least a depth of 1.
        engine.set_max_expr_depths(limits.max_expr_depth, (limits.max_expr_depth / 2).max(1));
        engine.set_max_string_size(limits.max_string_bytes);
        engine.set_max_array_size(limits.max_array_len);
        engine.set_max_map_size(limits.max_map_len);
        engine.set_strict_variables(true);
        engine.set_fail_on_invalid_map_property(true);
        engine.set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
        for symbol in ["eval", "import", "export"] {
            engine.disable_symbol(symbol);
        }
        engine.on_progress(sandbox::on_progress);
        sandbox::register(&mut engine);
        let stack = script_stack(&limits);
        ScriptHost { engine, limits, stack }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Runs `f` with the stack a script run may use (see `script_stack`) left on this thread:
    /// on its own stack when enough is left, else on one allocated for the call, on the same
    /// thread. Every entry point of the host (compile, save, formula, run) goes through this,
    /// so deep recursion meets a script limit, never the end of a thread's stack, whichever
    /// thread calls; callers with many runs to make wrap them all in one call.
    pub fn with_stack<R>(&self, f: impl FnOnce() -> R) -> R {
        stacker::maybe_grow(self.stack, self.stack + STACK_SLACK, f)
    }

    /// Compiles a script source.
    pub fn compile(&self, source: &str) -> Result<Compiled, CompileError> {
        self.with_stack(|| self.compile_here(source))
    }

    fn compile_here(&self, source: &str) -> Result<Compiled, CompileError> {
        match self.engine.compile_with_scope(&compile_scope(), source) {
            Ok(ast) => Ok(Compiled { ast: Arc::new(ast) }),
            Err(err) => {
                let (line, column) = sandbox::position(err.1).unwrap_or((1, 1));
                let message = match err.err_type() {
                    ParseErrorType::ExprTooDeep => format!(
                        "expressions nest too deeply (limit `max_expr_depth`: {} levels, {} inside functions)",
                        self.limits.max_expr_depth,
                        (self.limits.max_expr_depth / 2).max(1)
                    ),
                    ParseErrorType::Reserved(word) if word == "import" || word == "export" => {
                        format!("`{word}` is not available in scripts: they cannot load modules")
                    }
                    // A disabled symbol is reported as a lexer error naming it.
                    other if other.to_string().contains("'eval'") => "`eval` is not available in scripts".to_string(),
                    other => other.to_string(),
                };
                Err(CompileError { line, column, message })
            }
        }
    }

    /// Compiles every active script and every formula of `object`; the error names the script
    /// (or formula field) that failed.
    pub fn compile_object(&self, object: &ObjectDefinition) -> Result<ObjectScripts, (String, CompileError)> {
        self.with_stack(|| self.compile_object_here(object))
    }

    fn compile_object_here(&self, object: &ObjectDefinition) -> Result<ObjectScripts, (String, CompileError)> {
        let mut out = ObjectScripts::default();
        for hook in ScriptHook::ALL {
            for script in object.active_scripts(hook) {
                let name = script.name.to_string();
                let compiled = self.compile_here(&script.source).map_err(|e| (name.clone(), e))?;
                match hook {
                    ScriptHook::Validate => out.validate.push((name, compiled)),
                    ScriptHook::BeforeSave => out.before_save.push((name, compiled)),
                    ScriptHook::AfterSave => out.after_save.push((name, compiled)),
                    ScriptHook::Action => {
                        out.actions.insert(name, compiled);
                    }
                }
            }
        }
        for field in object.formulas() {
            let name = field.name.to_string();
            let source = field.formula.as_deref().unwrap_or_default();
            let compiled = self.compile_here(source).map_err(|e| (name.clone(), e))?;
            if compiled.sensitive_reads(object, &name).is_some() {
                out.suspended.push(name);
            } else {
                out.formulas.push((name, compiled));
            }
        }
        Ok(out)
    }

    /// The formulas of `object` that read its sensitive fields. A formula that does not
    /// compile reads nothing (it cannot be saved, and one saved before fails every write).
    pub fn sensitive_formulas(&self, object: &ObjectDefinition) -> Vec<SensitiveFormula> {
        object
            .formulas()
            .filter_map(|f| {
                let compiled = self.compile(f.formula.as_deref().unwrap_or_default()).ok()?;
                compiled.sensitive_reads(object, f.name.as_str())
            })
            .collect()
    }

    /// One evaluation within the run whose state is on this thread's stack.
    fn step(
        &self,
        pushed: &Pushed,
        hook: Option<ScriptHook>,
        name: &str,
        scope: &mut Scope,
        compiled: &Compiled,
    ) -> Result<Dynamic, ScriptError> {
        pushed.with(|s| s.begin(hook, name));
        let result = self.engine.eval_ast_with_scope::<Dynamic>(scope, &compiled.ast);
        let abort = pushed.with(|s| {
            s.end();
            s.abort.take()
        });
        result.map_err(|e| sandbox::script_error(&e, abort.flatten(), &self.limits))
    }

    /// The script steps of one save: `BEFORE_SAVE` scripts (each sees the assignments of the
    /// ones before it), then formulas in definition order (each sees the values before it),
    /// then `VALIDATE` rules over the final record.
    pub fn save(&self, scripts: &ObjectScripts, input: SaveInput<'_>) -> SaveOutcome {
        if !scripts.touches_saves() {
            return SaveOutcome::default();
        }
        self.with_stack(|| self.save_here(scripts, input))
    }

    fn save_here(&self, scripts: &ObjectScripts, input: SaveInput<'_>) -> SaveOutcome {
        let mut out = SaveOutcome::default();
        let budget = &input.chain.budget;
        if let Some(e) = sandbox::exhausted(budget) {
            out.issues.push(script_issue("", format!("the record's scripts did not run: {e}")));
            return out;
        }
        let object = input.object;
        let mut record = row_to_map(object, input.record);
        let old = input.old.map_or(Dynamic::UNIT, |r| Dynamic::from_map(row_to_map(object, r)));
        let user = user_map(input.user);
        let pushed = Pushed::push(RunState::new(None, "", &self.limits, Some(budget.clone()), None));
        pushed.with(|s| s.log_prefix = true);
        let mut scope = Scope::new();
        let mut stopped = false;

        for (name, compiled) in &scripts.before_save {
            push_inputs(&mut scope, record.clone(), false, &old, &user, Dynamic::UNIT);
            match self.step(&pushed, Some(ScriptHook::BeforeSave), name, &mut scope, compiled) {
                Ok(_) => {
                    let after = take_record(&mut scope);
                    record =
                        take_assignments(object, name, &record, after, input.record, &mut out.changes, &mut out.issues);
                }
                Err(e) => {
                    stopped = matches!(e, ScriptError::Budget { .. });
                    out.issues.push(script_issue("", format!("BEFORE_SAVE script `{name}` failed: {e}")));
                    if stopped {
                        break;
                    }
                }
            }
        }

        // Formulas see neither `old` nor `user`: a stored value must follow from the record
        // alone, as when existing rows are recomputed. Nor do they see sensitive fields.
        for name in &scripts.suspended {
            if let Some(field) = object.field(name) {
                record.insert(name.as_str().into(), Dynamic::UNIT);
                note_change(field, Value::Null, input.record, &mut out.changes);
            }
        }
        push_inputs(
            &mut scope,
            withhold_sensitive(object, &record),
            true,
            &Dynamic::UNIT,
            &Dynamic::UNIT,
            Dynamic::UNIT,
        );
        for (name, compiled) in &scripts.formulas {
            if stopped {
                break;
            }
            let Some(field) = object.field(name) else { continue };
            let result = self.step(&pushed, None, name, &mut scope, compiled);
            let mut seen = take_record(&mut scope).try_cast::<Map>().unwrap_or_default();
            match result {
                Ok(value) => match dynamic_to_value(field, &value, true) {
                    Ok(v) => {
                        let computed = value_to_dynamic(field, &v);
                        seen.insert(name.as_str().into(), computed.clone());
                        record.insert(name.as_str().into(), computed);
                        note_change(field, v, input.record, &mut out.changes);
                    }
                    Err(reason) => out
                        .issues
                        .push(script_issue(name, format!("formula `{name}` gave {}: {reason}", describe(&value)))),
                },
                Err(e) => {
                    stopped = matches!(e, ScriptError::Budget { .. });
                    out.issues.push(script_issue(name, format!("formula `{name}` failed: {e}")));
                }
            }
            scope.push_constant_dynamic("record", Dynamic::from_map(seen));
        }
        if !scripts.validate.is_empty() && !stopped {
            push_inputs(&mut scope, record, true, &old, &user, Dynamic::UNIT);
        }

        for (name, compiled) in &scripts.validate {
            if stopped {
                break;
            }
            let result = self.step(&pushed, Some(ScriptHook::Validate), name, &mut scope, compiled);
            scope.rewind(INPUTS.len());
            let reported = pushed.with(|s| std::mem::take(&mut s.issues)).unwrap_or_default();
            out.issues.extend(reported.into_iter().map(|i| script_issue(i.field.as_deref().unwrap_or(""), i.message)));
            if let Err(e) = result {
                stopped = matches!(e, ScriptError::Budget { .. });
                out.issues.push(script_issue("", format!("VALIDATE script `{name}` failed: {e}")));
            }
        }

        if let Some(mut state) = pushed.finish() {
            out.logs = state.take_logs();
            out.operations = state.total_ops;
        }
        out
    }

    /// Computes one formula over a record (used to recompute stored values of existing rows).
    pub fn formula(
        &self,
        compiled: &Compiled,
        object: &ObjectDefinition,
        field: &FieldDefinition,
        record: &Row,
    ) -> Result<Value, ScriptError> {
        self.with_stack(|| self.formula_here(compiled, object, field, record))
    }

    fn formula_here(
        &self,
        compiled: &Compiled,
        object: &ObjectDefinition,
        field: &FieldDefinition,
        record: &Row,
    ) -> Result<Value, ScriptError> {
        let mut scope = Scope::new();
        let record = withhold_sensitive(object, &row_to_map(object, record));
        push_inputs(&mut scope, record, true, &Dynamic::UNIT, &Dynamic::UNIT, Dynamic::UNIT);
        let pushed = Pushed::push(RunState::new(None, field.name.as_str(), &self.limits, None, None));
        let result = self.step(&pushed, None, field.name.as_str(), &mut scope, compiled);
        drop(pushed.finish());
        let value = result?;
        dynamic_to_value(field, &value, true).map_err(|reason| ScriptError::Runtime {
            message: format!("formula `{}` gave {}: {reason}", field.name, describe(&value)),
            position: None,
        })
    }

    /// Runs one script once (AFTER_SAVE, ACTION, or a testScript dry run of any hook).
    pub fn run(&self, compiled: &Compiled, input: RunInput<'_>) -> RunOutcome {
        let started = Instant::now();
        // Only AFTER_SAVE and ACTION scripts reach records, whatever the caller passes.
        let mut outcome = match input.host.filter(|_| input.hook.has_host_api()) {
            None => self.with_stack(|| self.execute(compiled, &input, None)),
            Some(host) => self.execute_with_host(compiled, &input, host),
        };
        outcome.duration = started.elapsed();
        outcome
    }

    /// Runs the script on a thread of its own while this thread serves its host calls: the
    /// host is borrowed for this call only, so it cannot be reached from the engine's
    /// functions; requests and replies go through channels instead.
    fn execute_with_host(&self, compiled: &Compiled, input: &RunInput<'_>, host: &dyn Host) -> RunOutcome {
        let (call_tx, call_rx) = mpsc::channel::<HostCall>();
        let (reply_tx, reply_rx) = mpsc::channel();
        let link = HostLink { calls: call_tx, replies: reply_rx };
        std::thread::scope(|scope| {
            let spawned = std::thread::Builder::new()
                .name("tessera-script".into())
                .stack_size(self.stack + STACK_SLACK)
                .spawn_scoped(scope, move || self.execute(compiled, input, Some(link)));
            let handle = match spawned {
                Ok(h) => h,
                Err(e) => return failed(format!("could not start the script: {e}")),
            };
            while let Ok(call) = call_rx.recv() {
                let reply = match call {
                    HostCall::Find { object, filter, limit } => host.find(&object, &filter, limit).map(HostReply::Many),
                    HostCall::Create { object, values } => host.create(&object, values).map(HostReply::One),
                    HostCall::Update { object, id, values } => host.update(&object, &id, values).map(HostReply::One),
                };
                if reply_tx.send(reply).is_err() {
                    break;
                }
            }
            handle.join().unwrap_or_else(|_| failed("the script host failed while running the script".into()))
        })
    }

    fn execute(&self, compiled: &Compiled, input: &RunInput<'_>, link: Option<HostLink>) -> RunOutcome {
        let mut out = RunOutcome::default();
        let budget = &input.chain.budget;
        if let Some(e) = sandbox::exhausted(budget) {
            out.failure = Some(e);
            return out;
        }
        let hook = input.hook;
        let record = row_to_map(input.object, input.record);
        let before = if hook == ScriptHook::BeforeSave { Some(record.clone()) } else { None };
        let old = input.old.map_or(Dynamic::UNIT, |r| Dynamic::from_map(row_to_map(input.object, r)));
        let user = user_map(input.user);
        let action_input = input.input.map_or(Dynamic::UNIT, json_to_dynamic);
        let mut scope = Scope::new();
        push_inputs(&mut scope, record, before.is_none(), &old, &user, action_input);
        let pushed =
            Pushed::push(RunState::new(Some(hook), input.script_name, &self.limits, Some(budget.clone()), link));
        let result = self.step(&pushed, Some(hook), input.script_name, &mut scope, compiled);
        if let Some(mut state) = pushed.finish() {
            out.issues = std::mem::take(&mut state.issues);
            out.logs = state.take_logs();
            out.operations = state.total_ops;
        }
        match result {
            Ok(value) => {
                out.result = dynamic_to_json(&value).unwrap_or_else(|_| serde_json::Value::String(value.to_string()));
                if let Some(before) = before {
                    let after = take_record(&mut scope);
                    take_assignments(
                        input.object,
                        input.script_name,
                        &before,
                        after,
                        input.record,
                        &mut out.changes,
                        &mut out.change_issues,
                    );
                }
            }
            Err(e) => out.failure = Some(e),
        }
        out
    }
}

fn failed(message: String) -> RunOutcome {
    RunOutcome { failure: Some(ScriptError::Runtime { message, position: None }), ..RunOutcome::default() }
}

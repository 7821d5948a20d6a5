//! Per-run state and the functions scripts may call. The engine is shared by every run, so the
//! state of the run in progress reaches native functions and the progress callback through a
//! thread-local stack (runs nest when a host call's write runs scripts of another object).

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use rhai::{Array, Dynamic, Engine, EvalAltResult, INT, ImmutableString, Map, NativeCallContext, Position};
use rust_decimal::Decimal;
use serde_json::Value as J;
use tessera_metadata::ScriptHook;

use crate::convert::{as_decimal, dynamic_to_json, rfc3339, round_half_away, row_to_map};
use crate::{Budget, HostError, HostRecord, Limits, ScriptError, ScriptIssue};

/// Log lines kept per run, and the longest line kept (bytes).
const MAX_LOG_LINES: usize = 100;
const MAX_LOG_LINE: usize = 1024;
/// Records one `find` may return at most.
const MAX_FIND_LIMIT: usize = 1000;
/// `find` without a limit.
const DEFAULT_FIND_LIMIT: INT = 100;
/// The clock is read every this many operations (reading it on each one costs too much).
const CLOCK_EVERY: u64 = 32;

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// A request from a script to the host API, carried to the thread that holds the host.
pub(crate) enum HostCall {
    Find { object: String, filter: J, limit: usize },
    Create { object: String, values: serde_json::Map<String, J> },
    Update { object: String, id: String, values: serde_json::Map<String, J> },
}

pub(crate) enum HostReply {
    Many(Vec<HostRecord>),
    One(HostRecord),
}

/// The script's end of the host API.
pub(crate) struct HostLink {
    pub calls: Sender<HostCall>,
    pub replies: Receiver<Result<HostReply, HostError>>,
}

/// The state of the run in progress on this thread.
pub(crate) struct RunState {
    /// `None` for a formula.
    pub hook: Option<ScriptHook>,
    /// The script's name (or the formula's field), for issues and log prefixes.
    pub script: String,
    pub log_prefix: bool,
    pub issues: Vec<ScriptIssue>,
    pub logs: Vec<String>,
    dropped_logs: usize,
    timeout: Duration,
    max_map_len: usize,
    budget: Option<Arc<Budget>>,
    host: Option<HostLink>,
    started: Instant,
    deadline: Instant,
    /// Start of the stretch of wall time not yet charged to the budget.
    segment: Instant,
    wall_deadline: Option<Instant>,
    /// Operations of the evaluation in progress, as last reported by the engine.
    ops: u64,
    /// Most operations the budget leaves to the evaluation in progress.
    ops_cap: u64,
    pub total_ops: u64,
    /// Why the run was stopped by us (limit or budget), when it was.
    pub abort: Option<ScriptError>,
}

impl RunState {
    pub fn new(
        hook: Option<ScriptHook>,
        script: &str,
        limits: &Limits,
        budget: Option<Arc<Budget>>,
        host: Option<HostLink>,
    ) -> RunState {
        let now = Instant::now();
        RunState {
            hook,
            script: script.to_string(),
            log_prefix: false,
            issues: Vec::new(),
            logs: Vec::new(),
            dropped_logs: 0,
            timeout: limits.timeout,
            max_map_len: limits.max_map_len,
            budget,
            host,
            started: now,
            deadline: now + limits.timeout,
            segment: now,
            wall_deadline: None,
            ops: 0,
            ops_cap: u64::MAX,
            total_ops: 0,
            abort: None,
        }
    }

    /// Starts one evaluation: its clock, deadline and share of the budget.
    pub fn begin(&mut self, hook: Option<ScriptHook>, script: &str) {
        self.hook = hook;
        if self.script != script {
            self.script.clear();
            self.script.push_str(script);
        }
        let now = Instant::now();
        self.started = now;
        self.deadline = now + self.timeout;
        self.segment = now;
        self.ops = 0;
        self.abort = None;
        self.refresh_budget(now);
    }

    fn refresh_budget(&mut self, now: Instant) {
        if let Some(budget) = &self.budget {
            let left = budget.limits.operations.saturating_sub(budget.operations());
            self.ops_cap = self.ops.saturating_add(left);
            let spent = Duration::from_micros(budget.wall_micros.load(Ordering::Relaxed));
            self.wall_deadline = Some(now + budget.limits.wall.saturating_sub(spent));
        }
    }

    /// Ends one evaluation, charging its operations and time to the budget.
    pub fn end(&mut self) -> u64 {
        let ops = self.ops;
        self.total_ops += ops;
        self.ops = 0;
        if let Some(budget) = &self.budget {
            budget.operations.fetch_add(ops, Ordering::Relaxed);
        }
        self.charge_segment(Instant::now());
        ops
    }

    fn charge_segment(&mut self, now: Instant) {
        if let Some(budget) = &self.budget {
            let micros = u64::try_from(now.saturating_duration_since(self.segment).as_micros()).unwrap_or(u64::MAX);
            budget.wall_micros.fetch_add(micros, Ordering::Relaxed);
        }
        self.segment = now;
    }

    fn progress(&mut self, ops: u64) -> Option<Dynamic> {
        self.ops = ops;
        if ops > self.ops_cap {
            if let Some(budget) = &self.budget {
                self.abort = Some(budget_error("operations", &budget.limits));
            }
            return Some(Dynamic::UNIT);
        }
        if ops.is_multiple_of(CLOCK_EVERY) {
            return self.check_clock(Instant::now());
        }
        None
    }

    fn check_clock(&mut self, now: Instant) -> Option<Dynamic> {
        if now >= self.deadline {
            self.abort = Some(timeout_error(self.timeout));
            return Some(Dynamic::UNIT);
        }
        if let (Some(wall), Some(budget)) = (self.wall_deadline, &self.budget)
            && now >= wall
        {
            self.abort = Some(budget_error("wall", &budget.limits));
            return Some(Dynamic::UNIT);
        }
        None
    }

    pub fn log(&mut self, text: &str) {
        if self.logs.len() >= MAX_LOG_LINES {
            self.dropped_logs += 1;
            return;
        }
        let mut line = if self.log_prefix { format!("[{}] ", self.script) } else { String::new() };
        let room = MAX_LOG_LINE.saturating_sub(line.len());
        if text.len() > room {
            let mut cut = room.saturating_sub('…'.len_utf8());
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            line.push_str(&text[..cut]);
            line.push('…');
        } else {
            line.push_str(text);
        }
        self.logs.push(line);
    }

    /// The log lines, with a note of those dropped past the limit.
    pub fn take_logs(&mut self) -> Vec<String> {
        let mut logs = std::mem::take(&mut self.logs);
        if self.dropped_logs > 0 {
            logs.push(format!("({} more log lines dropped: at most {MAX_LOG_LINES} are kept)", self.dropped_logs));
            self.dropped_logs = 0;
        }
        logs
    }
}

pub(crate) fn timeout_error(timeout: Duration) -> ScriptError {
    ScriptError::Limit { limit: "timeout", message: format!("the script ran longer than {} ms", timeout.as_millis()) }
}

/// The error of a per-transaction budget that ran out.
pub(crate) fn budget_error(limit: &'static str, limits: &crate::BudgetLimits) -> ScriptError {
    let message = match limit {
        "queries" => format!("more than {} queries in one transaction", limits.queries),
        "rows_read" => format!("more than {} rows read in one transaction", limits.rows_read),
        "writes" => format!("more than {} writes in one transaction", limits.writes),
        "operations" => format!("scripts ran more than {} operations in one transaction", limits.operations),
        "wall" => format!("scripts ran longer than {} ms in one transaction", limits.wall.as_millis()),
        _ => format!("triggers nested more than {} levels deep", limits.trigger_depth),
    };
    ScriptError::Budget { limit, message }
}

/// The budget that has already run out, if one has (operations or wall time).
pub(crate) fn exhausted(budget: &Budget) -> Option<ScriptError> {
    if budget.operations() >= budget.limits.operations {
        return Some(budget_error("operations", &budget.limits));
    }
    if Duration::from_micros(budget.wall_micros.load(Ordering::Relaxed)) >= budget.limits.wall {
        return Some(budget_error("wall", &budget.limits));
    }
    None
}

thread_local! {
    static STACK: RefCell<Vec<RunState>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on the state of the run in progress on this thread.
fn with_state<R>(f: impl FnOnce(&mut RunState) -> R) -> Option<R> {
    STACK.try_with(|stack| stack.try_borrow_mut().ok().and_then(|mut s| s.last_mut().map(f))).ok().flatten()
}

/// A run state pushed on this thread's stack; popped by `finish`, or on drop if the run
/// leaves early.
pub(crate) struct Pushed {
    done: bool,
}

impl Pushed {
    pub fn push(state: RunState) -> Pushed {
        let _ = STACK.try_with(|stack| {
            if let Ok(mut s) = stack.try_borrow_mut() {
                s.push(state);
            }
        });
        Pushed { done: false }
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut RunState) -> R) -> Option<R> {
        with_state(f)
    }

    pub fn finish(mut self) -> Option<RunState> {
        self.done = true;
        pop()
    }
}

fn pop() -> Option<RunState> {
    STACK.try_with(|stack| stack.try_borrow_mut().ok().and_then(|mut s| s.pop())).ok().flatten()
}

impl Drop for Pushed {
    fn drop(&mut self) {
        if !self.done {
            let _ = pop();
        }
    }
}

/// The engine's progress callback: operations, timeout and budget of the run in progress.
pub(crate) fn on_progress(ops: u64) -> Option<Dynamic> {
    with_state(|s| s.progress(ops)).flatten()
}

fn runtime(message: impl Into<String>, pos: Position) -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(Dynamic::from(message.into()), pos).into()
}

/// Stops the run (the error cannot be caught by the script) with `error` as its failure.
fn abort(state: &mut RunState, error: ScriptError, pos: Position) -> Box<EvalAltResult> {
    state.abort = Some(error);
    EvalAltResult::ErrorTerminated(Dynamic::UNIT, pos).into()
}

fn hook_name(hook: Option<ScriptHook>) -> &'static str {
    hook.map_or("FORMULA", ScriptHook::as_str)
}

fn text_of(value: &Dynamic) -> String {
    value.to_string()
}

fn report(ctx: &NativeCallContext, field: Option<String>, message: &Dynamic) -> RhaiResult<()> {
    let pos = ctx.call_position();
    let what = if field.is_some() { "error(field, message)" } else { "reject(message)" };
    with_state(|s| {
        if s.hook != Some(ScriptHook::Validate) {
            let message = if s.hook.is_none() {
                format!("{what} is for VALIDATE scripts, not formulas")
            } else {
                format!("{what} is for VALIDATE scripts; this is a {} script", hook_name(s.hook))
            };
            return Err(runtime(message, pos));
        }
        s.issues.push(ScriptIssue { script: s.script.clone(), field, message: text_of(message) });
        Ok(())
    })
    .unwrap_or_else(|| Err(runtime(format!("{what} called outside a script run"), pos)))
}

fn decimal_of(value: &Dynamic, pos: Position) -> RhaiResult<Decimal> {
    if let Some(d) = as_decimal(value) {
        return Ok(d);
    }
    if value.is_string() {
        let text = value.to_string();
        return Decimal::from_str_exact(text.trim())
            .map_err(|_| runtime(format!("decimal(\"{text}\"): not a decimal number"), pos));
    }
    Err(runtime(format!("decimal() takes a string or a number, not {}", value.type_name()), pos))
}

fn percent_of(ctx: NativeCallContext, amount: Dynamic, percent: Dynamic) -> RhaiResult<Decimal> {
    let pos = ctx.call_position();
    let (Some(a), Some(p)) = (as_decimal(&amount), as_decimal(&percent)) else {
        return Err(runtime(
            format!(
                "percent_of(amount, percent) takes numbers, not {} and {}",
                amount.type_name(),
                percent.type_name()
            ),
            pos,
        ));
    };
    a.checked_mul(p)
        .and_then(|x| x.checked_div(Decimal::ONE_HUNDRED))
        .ok_or_else(|| runtime(format!("percent_of({a}, {p}) overflows"), pos))
}

fn round_money(d: Decimal) -> Decimal {
    round_half_away(d, 2)
}

/// Registers the functions scripts may call and routes `print`/`debug` to the run's logs.
pub(crate) fn register(engine: &mut Engine) {
    engine.on_print(|text| {
        with_state(|s| s.log(text));
    });
    engine.on_debug(|text, _, _| {
        with_state(|s| s.log(text));
    });
    engine.register_fn("log", |value: Dynamic| {
        let text = text_of(&value);
        with_state(|s| s.log(&text));
    });
    // rhai's math package has `log(decimal)` (a logarithm): these exact signatures, registered
    // on the engine, take precedence, so `log(x)` logs whatever `x` is.
    engine.register_fn("log", |value: Decimal| {
        with_state(|s| s.log(&value.to_string()));
    });
    engine.register_fn("log", |value: INT| {
        with_state(|s| s.log(&value.to_string()));
    });
    engine.register_fn("error", |ctx: NativeCallContext, field: ImmutableString, message: Dynamic| {
        report(&ctx, Some(field.to_string()), &message)
    });
    engine.register_fn("reject", |ctx: NativeCallContext, message: Dynamic| report(&ctx, None, &message));
    engine.register_fn("now", || rfc3339(&chrono::Utc::now()));
    engine.register_fn("today", || chrono::Utc::now().date_naive().format("%Y-%m-%d").to_string());
    engine.register_fn("decimal", |ctx: NativeCallContext, value: Dynamic| decimal_of(&value, ctx.call_position()));
    engine.register_fn("round_money", round_money);
    engine.register_fn("round_money", |i: INT| Decimal::from(i));
    engine.register_fn("percent_of", percent_of);
    engine.register_fn("find", |ctx: NativeCallContext, object: ImmutableString, filter: Map, limit: INT| {
        find(&ctx, &object, filter, limit)
    });
    engine.register_fn("find", |ctx: NativeCallContext, object: ImmutableString, filter: Map| {
        find(&ctx, &object, filter, DEFAULT_FIND_LIMIT)
    });
    engine.register_fn("create", |ctx: NativeCallContext, object: ImmutableString, values: Map| {
        let values = json_values(&ctx, "create", values)?;
        one(host_call(&ctx, "create", HostCall::Create { object: object.to_string(), values })?, &ctx)
    });
    engine.register_fn(
        "update",
        |ctx: NativeCallContext, object: ImmutableString, id: ImmutableString, values: Map| {
            let values = json_values(&ctx, "update", values)?;
            let call = HostCall::Update { object: object.to_string(), id: id.to_string(), values };
            one(host_call(&ctx, "update", call)?, &ctx)
        },
    );
}

fn json_values(ctx: &NativeCallContext, what: &str, values: Map) -> RhaiResult<serde_json::Map<String, J>> {
    match dynamic_to_json(&Dynamic::from_map(values)) {
        Ok(J::Object(map)) => Ok(map),
        Ok(_) => Err(runtime(format!("{what}: the values must be a map"), ctx.call_position())),
        Err(e) => Err(runtime(format!("{what}: {e}"), ctx.call_position())),
    }
}

fn record_map(record: &HostRecord) -> Dynamic {
    let mut map = row_to_map(&record.object, &record.row);
    map.insert("id".into(), Dynamic::from(record.id.clone()));
    Dynamic::from_map(map)
}

fn one(reply: HostReply, ctx: &NativeCallContext) -> RhaiResult<Dynamic> {
    match reply {
        HostReply::One(record) => Ok(record_map(&record)),
        HostReply::Many(_) => Err(runtime("the host answered a write with a list", ctx.call_position())),
    }
}

fn find(ctx: &NativeCallContext, object: &str, filter: Map, limit: INT) -> RhaiResult<Array> {
    let filter = match dynamic_to_json(&Dynamic::from_map(filter)) {
        Ok(f) => f,
        Err(e) => return Err(runtime(format!("find: {e}"), ctx.call_position())),
    };
    let wanted = usize::try_from(limit.max(1)).unwrap_or(MAX_FIND_LIMIT).min(MAX_FIND_LIMIT);
    let call = HostCall::Find { object: object.to_string(), filter, limit: wanted };
    let records = match host_call(ctx, "find", call)? {
        HostReply::Many(records) => records,
        HostReply::One(record) => vec![record],
    };
    let maps: Array = records.iter().map(record_map).collect();
    // Said here, in terms of the call, rather than later as a map that grew too large.
    let entries: usize = maps.iter().map(|m| m.read_lock::<Map>().map_or(0, |m| m.len())).sum();
    let most = with_state(|s| s.max_map_len).unwrap_or(usize::MAX);
    if most > 0 && entries > most {
        let error = ScriptError::Limit {
            limit: "max_map_len",
            message: format!(
                "find(\"{object}\") returned {} records holding {entries} values, more than the {most} a script may \
                 hold: ask for fewer",
                maps.len()
            ),
        };
        return Err(with_state(|s| abort(s, error, ctx.call_position()))
            .unwrap_or_else(|| runtime("find() called outside a script run", ctx.call_position())));
    }
    Ok(maps)
}

/// One host call: checks the hook has the host API, counts the budget before the call (and
/// the rows read after it), and turns a host error into a script error naming the call.
fn host_call(ctx: &NativeCallContext, what: &str, mut call: HostCall) -> RhaiResult<HostReply> {
    let pos = ctx.call_position();
    let outcome = with_state(|s| {
        if s.host.is_none() {
            return Err(runtime(
                format!(
                    "{what}() is not available in {} scripts: only AFTER_SAVE and ACTION scripts may read or write records",
                    hook_name(s.hook)
                ),
                pos,
            ));
        }
        let Some(budget) = s.budget.clone() else {
            return Err(runtime(format!("{what}() needs a transaction budget"), pos));
        };
        let limits = &budget.limits;
        match &mut call {
            HostCall::Find { limit, .. } => {
                if budget.queries.fetch_add(1, Ordering::Relaxed) + 1 > limits.queries {
                    return Err(abort(s, budget_error("queries", limits), pos));
                }
                let left = limits.rows_read.saturating_sub(budget.rows_read.load(Ordering::Relaxed));
                if left == 0 {
                    return Err(abort(s, budget_error("rows_read", limits), pos));
                }
                *limit = (*limit).min(usize::try_from(left).unwrap_or(usize::MAX));
            }
            HostCall::Create { .. } | HostCall::Update { .. } => {
                if budget.writes.fetch_add(1, Ordering::Relaxed) + 1 > limits.writes {
                    return Err(abort(s, budget_error("writes", limits), pos));
                }
            }
        }
        let before = Instant::now();
        s.charge_segment(before);
        let nested_before = budget.wall_micros.load(Ordering::Relaxed);
        let reply = match &s.host {
            Some(host) if host.calls.send(call).is_ok() => host.replies.recv().ok(),
            _ => None,
        };
        let after = Instant::now();
        // The call's own time; scripts it ran have charged theirs already.
        let nested = budget.wall_micros.load(Ordering::Relaxed).saturating_sub(nested_before);
        let own = u64::try_from(after.duration_since(before).as_micros()).unwrap_or(u64::MAX).saturating_sub(nested);
        budget.wall_micros.fetch_add(own, Ordering::Relaxed);
        s.segment = after;
        s.refresh_budget(after);
        let Some(reply) = reply else {
            return Err(runtime(format!("{what}(): the host is gone"), pos));
        };
        let reply = reply.map_err(|e| runtime(format!("{what}() failed: {e}"), pos))?;
        if let HostReply::Many(records) = &reply {
            let n = u32::try_from(records.len()).unwrap_or(u32::MAX);
            if budget.rows_read.fetch_add(n, Ordering::Relaxed).saturating_add(n) > limits.rows_read {
                return Err(abort(s, budget_error("rows_read", limits), pos));
            }
        }
        if s.check_clock(after).is_some() {
            return Err(EvalAltResult::ErrorTerminated(Dynamic::UNIT, pos).into());
        }
        Ok(reply)
    });
    outcome.unwrap_or_else(|| Err(runtime(format!("{what}() called outside a script run"), pos)))
}

/// A Rhai error as the script author should read it.
pub(crate) fn script_error(err: &EvalAltResult, abort: Option<ScriptError>, limits: &Limits) -> ScriptError {
    if let Some(e) = abort {
        return e;
    }
    let inner = err.unwrap_inner();
    let limit = |limit: &'static str, message: String| ScriptError::Limit { limit, message };
    match inner {
        EvalAltResult::ErrorTooManyOperations(_) => {
            limit("max_operations", format!("the script ran more than {} operations", limits.max_operations))
        }
        EvalAltResult::ErrorStackOverflow(_) => limit(
            "max_call_depth",
            format!("the script nested function calls more than {} deep", limits.max_call_depth),
        ),
        EvalAltResult::ErrorDataTooLarge(what, _) if what.starts_with("Length of string") => limit(
            "max_string_bytes",
            format!("the script built a string longer than {} bytes", limits.max_string_bytes),
        ),
        EvalAltResult::ErrorDataTooLarge(what, _) if what.starts_with("Size of array") => {
            limit("max_array_len", format!("the script built arrays of more than {} elements", limits.max_array_len))
        }
        EvalAltResult::ErrorDataTooLarge(what, _) if what.starts_with("Size of object map") => {
            limit("max_map_len", format!("the script built maps of more than {} entries", limits.max_map_len))
        }
        EvalAltResult::ErrorDataTooLarge(..) => {
            limit("max_string_bytes", format!("the script built a value too large ({inner})"))
        }
        EvalAltResult::ErrorRuntime(value, pos) => {
            let message = if value.is_unit() { "the script threw an error".to_string() } else { value.to_string() };
            ScriptError::Runtime { message, position: position(*pos) }
        }
        other => {
            let pos = other.position();
            let text = other.to_string();
            let suffix = format!(" ({pos})");
            let message = text.strip_suffix(&suffix).unwrap_or(&text).to_string();
            ScriptError::Runtime { message, position: position(pos) }
        }
    }
}

/// A Rhai position as 1-based (line, column).
pub(crate) fn position(pos: Position) -> Option<(usize, usize)> {
    pos.line().map(|l| (l, pos.position().unwrap_or(1)))
}

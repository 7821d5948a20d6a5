//! The Rhai script host: the sandbox (limits, no `eval`, no files, network or modules), the
//! conversion between records and script values (decimals stay exact), the functions scripts
//! may call, per-transaction budgets, and the host-API trait through which `AFTER_SAVE` and
//! `ACTION` scripts reach records. `platform` implements the host API; this crate never
//! depends on it (`metadata` ← `plugins` ← `platform`).
//!
//! The plugin author's guide is `plugins/GUIDE.md`.

mod convert;
mod engine;
mod host;
mod limits;
mod reads;
mod run;
mod sandbox;

pub use engine::{CompileError, Compiled, ObjectScripts, ScriptHost};
pub use host::{Host, HostError, HostRecord};
pub use limits::{Budget, BudgetLimits, Chain, Limits};
pub use reads::{RecordReads, SensitiveFormula};
pub use run::{RunInput, RunOutcome, SaveInput, SaveOutcome, ScriptError, ScriptIssue, ScriptUser};

/// A record as scripts and the pipeline exchange it: column → value, as the store holds rows
/// (`account_id` for a lookup `account`; system columns such as `id` and `owner_id` may be present).
pub type Row = tessera_metadata::Values;

// Refuses to compile when a crate in the build strips rhai of what the script host needs:
// cargo unifies features, so one dependency turning on rhai's `only_i32`, `no_function` or
// `unchecked` changes rhai for us too (casbin does; hence the casbin patch in the workspace
// manifest). `tests/rhai_capabilities.rs` checks the same at run time.
const _: () = {
    let _: fn(rhai::INT) -> i64 = |x| x;
    let _ = rhai::Dynamic::as_decimal;
    let _ = rhai::Engine::set_max_operations;
    let _ = rhai::CallFnOptions::new;
};

//! Inputs and outcomes of script runs.

use std::time::Duration;

use tessera_metadata::{FieldIssue, ObjectDefinition};

use crate::{Chain, Host, Row};

/// The user a script runs for: the caller of the API request (`user` in scripts).
#[derive(Debug, Clone)]
pub struct ScriptUser {
    pub id: String,
    pub email: String,
    pub roles: Vec<String>,
}

/// Why a script failed as a whole (as opposed to reporting field errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    /// A runtime error in the script (type mismatch, unknown function, `throw`, a failed host
    /// call, ...), with the position when Rhai knows it.
    #[error("{}{message}", position.map(|(l, c)| format!("line {l}, column {c}: ")).unwrap_or_default())]
    Runtime { message: String, position: Option<(usize, usize)> },
    /// A sandbox limit of one run was hit: `limit` is its name in `Limits` (`max_operations`,
    /// `max_call_depth`, `max_expr_depth`, `max_string_bytes`, `max_array_len`,
    /// `max_map_len`, `timeout`).
    #[error("{message} (limit `{limit}`)")]
    Limit { limit: &'static str, message: String },
    /// A per-transaction budget ran out: `limit` is its name in `BudgetLimits` (`queries`,
    /// `rows_read`, `writes`, `operations`, `wall`, `trigger_depth`).
    #[error("{message} (budget `{limit}`)")]
    Budget { limit: &'static str, message: String },
}

/// A field error a `VALIDATE` script reported: `error(field, message)` gives `field`,
/// `reject(message)` gives none (the record as a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptIssue {
    pub script: String,
    pub field: Option<String>,
    pub message: String,
}

/// One record going through the write pipeline's script steps.
pub struct SaveInput<'a> {
    pub object: &'a ObjectDefinition,
    /// The record as it will be saved (for an update: the current record with the patch
    /// applied), decrypted; `id` present on updates.
    pub record: &'a Row,
    /// The current record on an update, `None` on a create.
    pub old: Option<&'a Row>,
    pub user: &'a ScriptUser,
    pub chain: &'a Chain,
}

/// What the script steps of one save produced.
#[derive(Debug, Default)]
pub struct SaveOutcome {
    /// Columns to write on top of the record: assignments of `BEFORE_SAVE` scripts (coerced to
    /// their field type) and every formula's value (only those that differ from `record`).
    pub changes: Row,
    /// Field errors to return with code `SCRIPT` (validation rules, assignments that do not
    /// fit their field, formulas that failed, scripts that failed or hit a limit), with
    /// `field` set to the field's api name, or empty for the record as a whole.
    pub issues: Vec<FieldIssue>,
    pub logs: Vec<String>,
    pub operations: u64,
}

/// One run of one script outside the write path: `AFTER_SAVE` after commit, an `ACTION`, or a
/// `testScript` dry run of any hook.
pub struct RunInput<'a> {
    pub object: &'a ObjectDefinition,
    pub script_name: &'a str,
    pub hook: tessera_metadata::ScriptHook,
    pub record: &'a Row,
    pub old: Option<&'a Row>,
    pub user: &'a ScriptUser,
    /// `input` of an `ACTION` (a JSON object), `()` otherwise.
    pub input: Option<&'a serde_json::Value>,
    /// The host API; `None` where the hook has none (calls then fail with a clear message).
    pub host: Option<&'a dyn Host>,
    pub chain: &'a Chain,
}

/// Everything one run produced.
#[derive(Debug, Default)]
pub struct RunOutcome {
    /// `error`/`reject` calls (VALIDATE).
    pub issues: Vec<ScriptIssue>,
    /// Assignments to `record` (BEFORE_SAVE), coerced to their field type.
    pub changes: Row,
    /// Assignments that could not be coerced or are not allowed (unknown field, formula, auto
    /// number, system column), as field issues with code `SCRIPT`.
    pub change_issues: Vec<FieldIssue>,
    pub logs: Vec<String>,
    /// The script's value (an ACTION's result), as JSON (decimals as strings).
    pub result: serde_json::Value,
    pub operations: u64,
    pub duration: Duration,
    /// Set when the script failed as a whole.
    pub failure: Option<ScriptError>,
}

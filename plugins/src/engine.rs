//! The sandboxed engine, compilation (cached ASTs) and running scripts.

use std::collections::HashMap;
use std::sync::Arc;

use tessera_metadata::{FieldDefinition, ObjectDefinition, Value};

use crate::{Limits, Row, RunInput, RunOutcome, SaveInput, SaveOutcome, ScriptError};

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
}

impl ObjectScripts {
    /// Whether a save of this object runs any script or formula.
    pub fn touches_saves(&self) -> bool {
        !(self.validate.is_empty() && self.before_save.is_empty() && self.formulas.is_empty())
    }
}

/// The script host: one configured engine shared by every run (`Send + Sync`).
pub struct ScriptHost {
    pub(crate) engine: rhai::Engine,
    pub(crate) limits: Limits,
}

impl ScriptHost {
    pub fn new(limits: Limits) -> ScriptHost {
        let _ = limits;
        todo!("helper")
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Compiles a script source.
    pub fn compile(&self, source: &str) -> Result<Compiled, CompileError> {
        let _ = source;
        todo!("helper")
    }

    /// Compiles every active script and every formula of `object`; the error names the script
    /// (or formula field) that failed.
    pub fn compile_object(&self, object: &ObjectDefinition) -> Result<ObjectScripts, (String, CompileError)> {
        let _ = object;
        todo!("helper")
    }

    /// The script steps of one save: `BEFORE_SAVE` scripts (each sees the assignments of the
    /// ones before it), then formulas in definition order (each sees the values before it),
    /// then `VALIDATE` rules over the final record.
    pub fn save(&self, scripts: &ObjectScripts, input: SaveInput<'_>) -> SaveOutcome {
        let _ = (scripts, input);
        todo!("helper")
    }

    /// Computes one formula over a record (used to recompute stored values of existing rows).
    pub fn formula(
        &self,
        compiled: &Compiled,
        object: &ObjectDefinition,
        field: &FieldDefinition,
        record: &Row,
    ) -> Result<Value, ScriptError> {
        let _ = (compiled, object, field, record);
        todo!("helper")
    }

    /// Runs one script once (AFTER_SAVE, ACTION, or a testScript dry run of any hook).
    pub fn run(&self, compiled: &Compiled, input: RunInput<'_>) -> RunOutcome {
        let _ = (compiled, input);
        todo!("helper")
    }
}

#[allow(dead_code)]
fn unused(_: Row) {}

//! Scripts as metadata: Rhai sources attached to an object, run by the record pipeline at a hook.
//! Compiling and running them is the script host's job (`tessera-plugins`); here they are plain
//! data with their definition rules.

use serde::{Deserialize, Serialize};

use crate::{FieldName, MetadataError};

/// When a script runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ScriptHook {
    /// Before a write, after coercion: may add field errors or reject the record, not change it.
    Validate,
    /// Before a write, after validation rules: may assign fields of the record.
    BeforeSave,
    /// After the write committed: may find, create and update records through the host API.
    AfterSave,
    /// Run on demand through `runAction`.
    Action,
}

impl ScriptHook {
    pub const ALL: [ScriptHook; 4] =
        [ScriptHook::Validate, ScriptHook::BeforeSave, ScriptHook::AfterSave, ScriptHook::Action];

    /// The API spelling (`BEFORE_SAVE`).
    pub fn as_str(self) -> &'static str {
        match self {
            ScriptHook::Validate => "VALIDATE",
            ScriptHook::BeforeSave => "BEFORE_SAVE",
            ScriptHook::AfterSave => "AFTER_SAVE",
            ScriptHook::Action => "ACTION",
        }
    }

    pub fn parse(s: &str) -> Option<ScriptHook> {
        ScriptHook::ALL.into_iter().find(|h| h.as_str() == s)
    }

    /// Whether scripts of this hook may call `find`, `create` and `update`.
    pub fn has_host_api(self) -> bool {
        matches!(self, ScriptHook::AfterSave | ScriptHook::Action)
    }
}

/// Largest script source, in bytes.
pub const MAX_SCRIPT_BYTES: usize = 64 * 1024;
/// Most scripts one object may have.
pub const MAX_SCRIPTS: usize = 100;

fn default_true() -> bool {
    true
}

/// One script of an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScriptDefinition {
    /// Unique within the object; an `ACTION` is invoked by this name.
    pub name: FieldName,
    pub hook: ScriptHook,
    /// Scripts of one hook run in ascending order, then by name.
    #[serde(default)]
    pub order: i32,
    #[serde(default = "default_true")]
    pub active: bool,
    pub source: String,
    /// For an `ACTION`: the roles that may run it (none listed: anyone who may update the record).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl ScriptDefinition {
    /// Checks the definition on its own; whether the source compiles is the script host's check.
    pub fn validate(&self) -> Result<(), MetadataError> {
        let invalid = |msg: String| Err(MetadataError::Invalid(format!("script `{}`: {msg}", self.name)));
        if self.source.trim().is_empty() {
            return invalid("source must not be empty".into());
        }
        if self.source.len() > MAX_SCRIPT_BYTES {
            return invalid(format!("source must be at most {MAX_SCRIPT_BYTES} bytes"));
        }
        if !self.roles.is_empty() && self.hook != ScriptHook::Action {
            return invalid("roles apply only to ACTION scripts (who may run them)".into());
        }
        if self.description.as_ref().is_some_and(|d| d.chars().count() > 1000) {
            return invalid("description must be at most 1000 characters".into());
        }
        Ok(())
    }
}

/// Checks an object's scripts together: each valid, names unique, not too many.
pub(crate) fn validate_scripts(object: &str, scripts: &[ScriptDefinition]) -> Result<(), MetadataError> {
    if scripts.len() > MAX_SCRIPTS {
        return Err(MetadataError::Invalid(format!("object `{object}` may have at most {MAX_SCRIPTS} scripts")));
    }
    let mut seen = std::collections::HashSet::new();
    for s in scripts {
        s.validate()?;
        if !seen.insert(s.name.as_str()) {
            return Err(MetadataError::Conflict(format!("object `{object}` already has a script `{}`", s.name)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(name: &str, hook: ScriptHook) -> ScriptDefinition {
        ScriptDefinition {
            name: FieldName::new(name).unwrap(),
            hook,
            order: 0,
            active: true,
            source: "true".into(),
            roles: vec![],
            description: None,
        }
    }

    #[test]
    fn hooks_round_trip_their_api_spelling() {
        for h in ScriptHook::ALL {
            assert_eq!(ScriptHook::parse(h.as_str()), Some(h));
        }
        assert_eq!(ScriptHook::parse("before_save"), None);
    }

    #[test]
    fn refuses_empty_huge_and_misplaced_definitions() {
        let mut s = script("guard", ScriptHook::Validate);
        s.source = "  ".into();
        assert!(s.validate().is_err());
        s.source = "x".repeat(MAX_SCRIPT_BYTES + 1);
        assert!(s.validate().is_err());
        s.source = "true".into();
        s.roles = vec!["sales".into()];
        assert!(s.validate().unwrap_err().to_string().contains("ACTION"));
        s.hook = ScriptHook::Action;
        assert!(s.validate().is_ok());
        let dup = [script("a", ScriptHook::Validate), script("a", ScriptHook::Action)];
        assert!(validate_scripts("deal", &dup).is_err());
    }

    #[test]
    fn reads_definitions_without_optional_keys() {
        let s: ScriptDefinition = serde_json::from_str(r#"{"name":"x","hook":"AFTER_SAVE","source":"1"}"#).unwrap();
        assert!(s.active);
        assert_eq!(s.order, 0);
        assert_eq!(s.hook, ScriptHook::AfterSave);
    }
}

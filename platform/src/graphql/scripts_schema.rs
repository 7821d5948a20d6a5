//! Scripts on the metadata API: `setScript`, `deleteScript` and `testScript`, a dry run for
//! plugin authors.

use std::sync::Arc;

use async_graphql::{Context, Enum, InputObject, Json, Object, SimpleObject};
use tessera_metadata::{FieldName, ScriptDefinition, ScriptHook};

use super::metadata_schema::change_error;
use super::{Caller, data_error, gql_error};
use crate::metadata_service::{ChangeError, MetadataService};
use crate::store::Store;

/// Script hooks as the API names them.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(name = "ScriptHook", rename_items = "SCREAMING_SNAKE_CASE")]
pub enum HookGql {
    Validate,
    BeforeSave,
    AfterSave,
    Action,
}

impl HookGql {
    fn model(self) -> ScriptHook {
        match self {
            HookGql::Validate => ScriptHook::Validate,
            HookGql::BeforeSave => ScriptHook::BeforeSave,
            HookGql::AfterSave => ScriptHook::AfterSave,
            HookGql::Action => ScriptHook::Action,
        }
    }

    fn of(hook: ScriptHook) -> HookGql {
        match hook {
            ScriptHook::Validate => HookGql::Validate,
            ScriptHook::BeforeSave => HookGql::BeforeSave,
            ScriptHook::AfterSave => HookGql::AfterSave,
            ScriptHook::Action => HookGql::Action,
        }
    }
}

/// A script as the metadata API shows it.
pub struct ScriptGql(pub ScriptDefinition);

#[Object(name = "Script")]
impl ScriptGql {
    async fn name(&self) -> &str {
        self.0.name.as_str()
    }
    async fn hook(&self) -> HookGql {
        HookGql::of(self.0.hook)
    }
    async fn order(&self) -> i32 {
        self.0.order
    }
    async fn active(&self) -> bool {
        self.0.active
    }
    async fn source(&self) -> &str {
        &self.0.source
    }
    /// For an `ACTION`: the roles that may run it (none: whoever may update the record).
    async fn roles(&self) -> &[String] {
        &self.0.roles
    }
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }
}

#[derive(InputObject)]
pub struct ScriptInput {
    name: String,
    hook: HookGql,
    #[graphql(default)]
    order: i32,
    #[graphql(default = true)]
    active: bool,
    source: String,
    roles: Option<Vec<String>>,
    description: Option<String>,
}

#[derive(SimpleObject)]
#[graphql(name = "ScriptFieldError")]
pub struct ScriptFieldErrorGql {
    /// The field's api name; `null` for the record as a whole (`reject`).
    field: Option<String>,
    message: String,
}

/// What a dry run of a script did.
#[derive(SimpleObject)]
#[graphql(name = "ScriptTestResult")]
pub struct TestResultGql {
    /// No failure and no field errors.
    ok: bool,
    /// Why the script failed as a whole: a runtime error, or the limit or budget it hit.
    error: Option<String>,
    field_errors: Vec<ScriptFieldErrorGql>,
    /// Fields a `BEFORE_SAVE` script assigned, by api name, as the API would store them.
    changes: Json<serde_json::Value>,
    /// The `create` and `update` calls an `AFTER_SAVE` or `ACTION` script would have made.
    writes: Vec<Json<serde_json::Value>>,
    logs: Vec<String>,
    /// The script's value (what an `ACTION` returns).
    result: Json<serde_json::Value>,
    duration_micros: u64,
    operations: u64,
}

fn service<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Arc<MetadataService>> {
    ctx.data::<Arc<MetadataService>>()
}

fn json_object(
    what: &str,
    value: Option<Json<serde_json::Value>>,
) -> async_graphql::Result<Option<serde_json::Map<String, serde_json::Value>>> {
    match value.map(|j| j.0) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(gql_error("BAD_USER_INPUT", format!("{what} must be a JSON object"))),
    }
}

#[derive(Default)]
pub struct ScriptsMutation;

#[Object]
impl ScriptsMutation {
    /// Adds a script to an object or replaces the one of the same name; a source that does not
    /// compile is refused with its line and column.
    async fn set_script(
        &self,
        ctx: &Context<'_>,
        object: String,
        input: ScriptInput,
    ) -> async_graphql::Result<ScriptGql> {
        let script = ScriptDefinition {
            name: FieldName::new(&input.name).map_err(|e| change_error(ChangeError::Invalid(e)))?,
            hook: input.hook.model(),
            order: input.order,
            active: input.active,
            source: input.source,
            roles: input.roles.unwrap_or_default(),
            description: input.description,
        };
        let actor = ctx.data::<Caller>()?.user_id.clone();
        let saved = service(ctx)?.set_script(&actor, &object, script).await.map_err(change_error)?;
        Ok(ScriptGql(saved))
    }

    async fn delete_script(&self, ctx: &Context<'_>, object: String, name: String) -> async_graphql::Result<bool> {
        let actor = ctx.data::<Caller>()?.user_id.clone();
        service(ctx)?.delete_script(&actor, &object, &name).await.map_err(change_error)?;
        Ok(true)
    }

    /// Runs a script source once against a sample `record` (and `old`, for an update) without
    /// writing anything: `find` reads as you, `create` and `update` are only reported.
    #[allow(clippy::too_many_arguments)]
    async fn test_script(
        &self,
        ctx: &Context<'_>,
        object: String,
        hook: HookGql,
        source: String,
        record: Option<Json<serde_json::Value>>,
        old: Option<Json<serde_json::Value>>,
        input: Option<Json<serde_json::Value>>,
    ) -> async_graphql::Result<TestResultGql> {
        let registry = service(ctx)?.current().registry.clone();
        let def = registry.require(&object).map_err(|e| change_error(ChangeError::Invalid(e)))?.clone();
        let record = json_object("record", record)?.unwrap_or_default();
        let old = json_object("old", old)?;
        let input = json_object("input", input)?.map(serde_json::Value::Object);
        let store = ctx.data::<Store>()?;
        let caller = ctx.data::<Caller>()?;
        let run = store
            .test_script(caller, &registry, &def, hook.model(), &source, &record, old.as_ref(), input)
            .await
            .map_err(data_error)?;
        Ok(TestResultGql {
            ok: run.ok,
            error: run.error,
            field_errors: run
                .field_errors
                .into_iter()
                .map(|(field, message)| ScriptFieldErrorGql { field: (!field.is_empty()).then_some(field), message })
                .collect(),
            changes: Json(run.changes),
            writes: run.writes.into_iter().map(Json).collect(),
            logs: run.logs,
            result: Json(run.result),
            duration_micros: run.duration_micros,
            operations: run.operations,
        })
    }
}

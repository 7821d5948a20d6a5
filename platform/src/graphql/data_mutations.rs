//! The generated mutations of the data API: create (single and batch, with upsert), update
//! (single with `expectedVersion`, and by filter), recycle bin, restore and destroy.

use std::sync::Arc;

use async_graphql::dynamic::{Field, FieldFuture, FieldValue, InputObject, InputValue, Object, TypeRef};
use async_graphql::{Error, Value as GqlValue};
use tessera_metadata::ObjectDefinition;

use super::data_schema::{Shared, arg_value, data, object_of};
use super::filter_input::parse_filter;
use super::prefetch::prefetch;
use super::values::InputFields;
use super::{Upsert, data_error};

/// Which mutations of an object the caller may run; only those are generated.
#[derive(Debug, Clone, Copy)]
pub(super) struct Allowed {
    pub create: bool,
    pub update: bool,
    pub delete: bool,
}

impl Allowed {
    pub fn any_write(&self) -> bool {
        self.create || self.update
    }
}

pub(super) fn add_mutations(
    shared: &Arc<Shared>,
    object: &Arc<ObjectDefinition>,
    mut mutation: Object,
    allowed: Allowed,
) -> Object {
    let tn = object.type_name();
    let single = tessera_metadata::pascal_case(object.name.as_str());
    let plural = tessera_metadata::pascal_case(object.plural_name.as_str());
    let name = object.name.to_string();
    let input = format!("{tn}Input");
    let with = |s: &Arc<Shared>, n: &String| (s.clone(), n.clone());

    let (s, n) = with(shared, &name);
    let create = Field::new(format!("create{single}"), TypeRef::named_nn(&tn), move |ctx| {
        let (shared, name) = (s.clone(), n.clone());
        FieldFuture::new(async move {
            let object = object_of(&shared, &name)?;
            let dc = data(&ctx)?;
            let data_arg = ctx.args.try_get("data")?;
            let inputs = vec![InputFields::new(&object).record(data_arg.as_value())];
            let records =
                dc.store.create(&dc.caller, &shared.registry, &object, inputs, None).await.map_err(data_error)?;
            let nodes = prefetch(&shared, dc, &object, records, &[ctx.ctx.field()]).await.map_err(data_error)?;
            Ok(nodes.into_iter().next().map(FieldValue::owned_any))
        })
    })
    .argument(InputValue::new("data", TypeRef::named_nn(&input)));

    let (s, n) = with(shared, &name);
    let upsert_type = format!("{tn}Upsert");
    let create_many = Field::new(format!("create{plural}"), TypeRef::named_nn_list_nn(&tn), move |ctx| {
        let (shared, name) = (s.clone(), n.clone());
        FieldFuture::new(async move {
            let object = object_of(&shared, &name)?;
            let dc = data(&ctx)?;
            // The request's mutations together were held to `--max-batch` before any ran.
            let list = ctx.args.try_get("data")?.list()?;
            let fields = InputFields::new(&object);
            let inputs = list.iter().map(|v| fields.record(v.as_value())).collect();
            let upsert = match ctx.args.get("upsert").filter(|v| !v.is_null()) {
                Some(u) => Some(parse_upsert(&object, u.as_value())?),
                None => None,
            };
            let records =
                dc.store.create(&dc.caller, &shared.registry, &object, inputs, upsert).await.map_err(data_error)?;
            let nodes = prefetch(&shared, dc, &object, records, &[ctx.ctx.field()]).await.map_err(data_error)?;
            Ok(Some(FieldValue::list(nodes.into_iter().map(FieldValue::owned_any))))
        })
    })
    .argument(InputValue::new("data", TypeRef::named_nn_list_nn(&input)))
    .argument(InputValue::new("upsert", TypeRef::named(&upsert_type)));

    let (s, n) = with(shared, &name);
    let update = Field::new(format!("update{single}"), TypeRef::named_nn(&tn), move |ctx| {
        let (shared, name) = (s.clone(), n.clone());
        FieldFuture::new(async move {
            let object = object_of(&shared, &name)?;
            let dc = data(&ctx)?;
            let id = ctx.args.try_get("id")?.string()?.to_string();
            let input = InputFields::new(&object).record(ctx.args.try_get("data")?.as_value());
            let expected = match ctx.args.get("expectedVersion") {
                Some(v) if !v.is_null() => Some(v.i64()?),
                _ => None,
            };
            let record = dc
                .store
                .update(&dc.caller, &shared.registry, &object, &id, input, expected)
                .await
                .map_err(data_error)?;
            let nodes = prefetch(&shared, dc, &object, vec![record], &[ctx.ctx.field()]).await.map_err(data_error)?;
            Ok(nodes.into_iter().next().map(FieldValue::owned_any))
        })
    })
    .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
    .argument(InputValue::new("data", TypeRef::named_nn(&input)))
    .argument(InputValue::new("expectedVersion", TypeRef::named(TypeRef::INT)));

    let (s, n) = with(shared, &name);
    let update_many = Field::new(format!("update{plural}"), TypeRef::named_nn_list_nn(&tn), move |ctx| {
        let (shared, name) = (s.clone(), n.clone());
        FieldFuture::new(async move {
            let object = object_of(&shared, &name)?;
            let dc = data(&ctx)?;
            let filter = match arg_value(&ctx, "filter") {
                Some(f) => parse_filter(&shared.registry, &shared.access, &object, f).map_err(data_error)?,
                None => None,
            };
            let input = InputFields::new(&object).record(ctx.args.try_get("data")?.as_value());
            let records =
                dc.store.update_many(&dc.caller, &shared.registry, &object, filter, input).await.map_err(data_error)?;
            let nodes = prefetch(&shared, dc, &object, records, &[ctx.ctx.field()]).await.map_err(data_error)?;
            Ok(Some(FieldValue::list(nodes.into_iter().map(FieldValue::owned_any))))
        })
    })
    .argument(InputValue::new("filter", TypeRef::named(format!("{tn}Filter"))))
    .argument(InputValue::new("data", TypeRef::named_nn(&input)));

    let lifecycle = |verb: &'static str| {
        let (s, n) = with(shared, &name);
        Field::new(format!("{verb}{single}"), TypeRef::named_nn(&tn), move |ctx| {
            let (shared, name) = (s.clone(), n.clone());
            FieldFuture::new(async move {
                let object = object_of(&shared, &name)?;
                let dc = data(&ctx)?;
                let id = ctx.args.try_get("id")?.string()?.to_string();
                let record = if verb == "delete" {
                    dc.store.delete(&dc.caller, &object, &id).await
                } else {
                    dc.store.restore(&dc.caller, &object, &id).await
                }
                .map_err(data_error)?;
                let nodes =
                    prefetch(&shared, dc, &object, vec![record], &[ctx.ctx.field()]).await.map_err(data_error)?;
                Ok(nodes.into_iter().next().map(FieldValue::owned_any))
            })
        })
        .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
    };

    let (s, n) = with(shared, &name);
    let destroy = Field::new(format!("destroy{single}"), TypeRef::named_nn(TypeRef::ID), move |ctx| {
        let (shared, name) = (s.clone(), n.clone());
        FieldFuture::new(async move {
            let object = object_of(&shared, &name)?;
            let dc = data(&ctx)?;
            let id = ctx.args.try_get("id")?.string()?.to_string();
            let id = dc.store.destroy(&dc.caller, &shared.registry, &object, &id).await.map_err(data_error)?;
            Ok(Some(FieldValue::value(id)))
        })
    })
    .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)));

    if allowed.create {
        mutation = mutation.field(create).field(create_many);
    }
    if allowed.update {
        mutation = mutation.field(update).field(update_many);
    }
    if allowed.delete {
        mutation = mutation.field(lifecycle("delete")).field(lifecycle("restore")).field(destroy);
    }
    mutation
}

fn parse_upsert(object: &ObjectDefinition, value: &GqlValue) -> Result<Upsert, Error> {
    let names = |key: &str| -> Vec<String> {
        match value {
            GqlValue::Object(m) => match m.get(key) {
                Some(GqlValue::List(items)) => items
                    .iter()
                    .filter_map(|i| match i {
                        GqlValue::Enum(n) => object.field_by_graphql(n.as_str()).map(|f| f.name.to_string()),
                        // Enum values given through variables arrive as strings.
                        GqlValue::String(n) => object.field_by_graphql(n).map(|f| f.name.to_string()),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    };
    Ok(Upsert { on_conflict: names("onConflict"), update: names("update") })
}

/// The `…Upsert` input types (registered with the other inputs).
pub fn upsert_type(object: &ObjectDefinition) -> InputObject {
    let fe = format!("{}Field", object.type_name());
    InputObject::new(format!("{}Upsert", object.type_name()))
        .field(InputValue::new("onConflict", TypeRef::named_nn_list_nn(&fe)))
        .field(InputValue::new("update", TypeRef::named_nn_list_nn(&fe)))
}

/// `runAction(object, id, action, input)`: runs an `ACTION` script on a record; whether the
/// caller may is checked when it runs (the action's roles, or update access to the record).
pub(super) fn run_action_field(shared: &Arc<Shared>) -> Field {
    let s = shared.clone();
    Field::new("runAction", TypeRef::named("JSON"), move |ctx| {
        let shared = s.clone();
        FieldFuture::new(async move {
            let dc = data(&ctx)?;
            let name = ctx.args.try_get("object")?.string()?.to_string();
            let object = object_of(&shared, &name)?;
            let id = ctx.args.try_get("id")?.string()?.to_string();
            let action = ctx.args.try_get("action")?.string()?.to_string();
            let input = arg_value(&ctx, "input").map(super::values::json_of).filter(|v| !v.is_null());
            let result = dc
                .store
                .run_action(&dc.caller, &shared.registry, &object, &id, &action, input)
                .await
                .map_err(data_error)?;
            Ok(Some(FieldValue::value(GqlValue::from_json(result).map_err(|e| Error::new(e.to_string()))?)))
        })
    })
    .description("Runs an ACTION script of an object on one of its records.")
    .argument(InputValue::new("object", TypeRef::named_nn(TypeRef::STRING)))
    .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
    .argument(InputValue::new("action", TypeRef::named_nn(TypeRef::STRING)))
    .argument(InputValue::new("input", TypeRef::named("JSON")))
}

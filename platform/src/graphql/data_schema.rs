//! Builds the data API (`POST /graphql`) from a metadata snapshot: one set of types, queries and
//! mutations per object. Resolvers call `RecordStore`; lookups and reverse relations are loaded
//! per selection level in batches (`prefetch`), so a page costs a constant number of statements.

use std::sync::Arc;

use async_graphql::dynamic::{
    Enum, EnumItem, Field, FieldFuture, FieldValue, InputObject, InputValue, Object, ResolverContext, Schema,
    SchemaError, TypeRef,
};
use async_graphql::{Error, Value as GqlValue};
use tessera_metadata::{AccessProfile, Action, FieldAccess, FieldDefinition, FieldType, ObjectDefinition, Registry};

use super::data_mutations::{Allowed, add_mutations, upsert_type};
use super::filter_input::{object_filter, object_order_by, parse_filter, shared_types};
use super::prefetch::{Conn, Node, connection_node_parents, list_query, node_columns, prefetch};
use super::values::{enum_item, output, picklist_enum_name, scalars, system_output};
use super::{
    AggregateFn, AggregateQuery, AggregateRow, AggregateValue, Caller, DataError, RecordStore, data_error, gql_error,
};

/// Records the mutations of one request may carry unless the server is configured otherwise
/// (`API.md` sets 500 per batch; aliases and several mutations share it).
pub const DEFAULT_MAX_BATCH: u16 = 500;

/// Records one request may ask for unless the server is configured otherwise: a page of 100 with
/// a nested page of 100 under each record and a lookup on each of those (20,200), or an update
/// by filter's 10,000 results with their lookups, fit; three nested pages of 100 (a million)
/// do not.
pub const DEFAULT_MAX_REQUEST_ROWS: u64 = 25_000;

/// The page a connection returns when the query gives neither `first` nor `last`.
pub const DEFAULT_PAGE: u64 = 20;

/// Limits of the data API.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_page: u64,
    /// Records written by the mutations of one request (see `request_budget`).
    pub max_batch: usize,
    /// Records one request may ask for, estimated before it runs (see `request_budget`).
    pub max_request_rows: u64,
    pub max_depth: usize,
    pub max_complexity: usize,
    pub max_groups: u64,
    /// Whether clients may introspect the schema (turn off in production if wanted).
    pub introspection: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_page: 100,
            max_batch: usize::from(DEFAULT_MAX_BATCH),
            max_request_rows: DEFAULT_MAX_REQUEST_ROWS,
            max_depth: 12,
            max_complexity: 5_000,
            max_groups: 1_000,
            introspection: true,
        }
    }
}

/// Per-request data the resolvers need.
pub struct DataContext {
    pub caller: Caller,
    pub store: Arc<dyn RecordStore>,
}

/// Everything a resolver closure captures.
pub(super) struct Shared {
    pub registry: Arc<Registry>,
    pub limits: Limits,
    /// The access this schema was generated for (filters on fields shown masked are limited).
    pub access: AccessProfile,
}

pub(super) fn data<'a>(ctx: &ResolverContext<'a>) -> Result<&'a DataContext, Error> {
    ctx.ctx.data::<DataContext>()
}

pub(super) fn arg_value<'a>(ctx: &'a ResolverContext<'_>, name: &str) -> Option<&'a GqlValue> {
    ctx.args.get(name).map(|v| v.as_value()).filter(|v| !matches!(v, GqlValue::Null))
}

/// The object as a caller sees it: only the fields they may read, and lookups to objects they
/// may not read reduced to the bare id (no `target`, so no related record or filter). `None`
/// when they may not read the object at all.
fn visible(object: &ObjectDefinition, access: &AccessProfile) -> Option<Arc<ObjectDefinition>> {
    let grant = access.object(object.name.as_str());
    if !grant.allows(Action::Read) {
        return None;
    }
    let mut view = object.clone();
    view.fields.retain(|f| grant.field(f.name.as_str()) >= FieldAccess::Read);
    for f in &mut view.fields {
        if f.target.as_ref().is_some_and(|t| !access.object(t.as_str()).allows(Action::Read)) {
            f.target = None;
        }
    }
    Some(Arc::new(view))
}

/// Builds the schema of one metadata version as a caller with `access` sees it: objects they may
/// not read, fields they may not read and mutations they may not run are not in it at all.
/// Resolvers get the full definitions, so defaults and validation of hidden fields still apply.
pub fn build(registry: Arc<Registry>, limits: Limits, access: &AccessProfile) -> Result<Schema, SchemaError> {
    let shared = Arc::new(Shared { registry: registry.clone(), limits: limits.clone(), access: access.clone() });
    let views: Vec<Arc<ObjectDefinition>> = registry.objects().filter_map(|o| visible(o, access)).collect();
    let allowed = |o: &ObjectDefinition| {
        let grant = access.object(o.name.as_str());
        Allowed {
            create: grant.allows(Action::Create),
            update: grant.allows(Action::Update),
            delete: grant.allows(Action::Delete),
        }
    };
    let has_actions = views.iter().any(|o| !o.active_scripts(tessera_metadata::ScriptHook::Action).is_empty());
    let has_mutations = has_actions
        || views.iter().any(|o| {
            let a = allowed(o);
            a.any_write() || a.delete
        });
    let mut query = Object::new("Query").field(me_field());
    let mut mutation = Object::new("Mutation");
    let mut schema = Schema::build("Query", has_mutations.then_some("Mutation"), None);
    for s in scalars() {
        schema = schema.register(s);
    }
    let (inputs, sort) = shared_types();
    for i in inputs {
        schema = schema.register(i);
    }
    schema = schema.register(sort).register(page_info_type()).register(me_type());
    for object in &views {
        let allowed = allowed(object);
        for t in object_types(&shared, object, access) {
            schema = schema.register(t);
        }
        for e in picklist_enums(object) {
            schema = schema.register(e);
        }
        for i in object_filter(object) {
            schema = schema.register(i);
        }
        schema = schema.register(object_order_by(object));
        if allowed.any_write() {
            schema = schema.register(input_type(object)).register(field_enum(object)).register(upsert_type(object));
        }
        if let Some(e) = group_field_enum(object) {
            schema = schema.register(e);
        }
        query = add_queries(&shared, object, query);
        mutation = add_mutations(&shared, object, mutation, allowed);
    }
    if has_actions {
        mutation = mutation.field(super::data_mutations::run_action_field(&shared));
    }
    schema = schema.register(query);
    if has_mutations {
        schema = schema.register(mutation);
    }
    if !limits.introspection {
        schema = schema.disable_introspection();
    }
    schema
        .extension(super::errors::ErrorPaths)
        .extension(super::request_budget::RequestBudget::new(&registry, &limits))
        .limit_depth(limits.max_depth)
        .limit_complexity(limits.max_complexity)
        .finish()
}

fn me_type() -> Object {
    let field = |name: &'static str, ty: TypeRef| {
        Field::new(name, ty, move |ctx| {
            FieldFuture::new(async move {
                let caller = ctx.parent_value.try_downcast_ref::<Caller>()?;
                Ok(Some(match name {
                    "id" => FieldValue::value(caller.user_id.clone()),
                    "email" => FieldValue::value(caller.email.clone()),
                    _ => FieldValue::list(caller.roles.iter().map(|r| FieldValue::value(r.clone()))),
                }))
            })
        })
    };
    Object::new("Me")
        .field(field("id", TypeRef::named_nn(TypeRef::ID)))
        .field(field("email", TypeRef::named_nn(TypeRef::STRING)))
        .field(field("roles", TypeRef::named_nn_list_nn(TypeRef::STRING)))
}

/// `me { id email roles }`.
pub fn me_field() -> Field {
    Field::new("me", TypeRef::named_nn("Me"), |ctx| {
        FieldFuture::new(async move { Ok(Some(FieldValue::owned_any(data(&ctx)?.caller.clone()))) })
    })
}

fn page_info_type() -> Object {
    let flag = |name: &'static str| {
        Field::new(name, TypeRef::named_nn(TypeRef::BOOLEAN), move |ctx| {
            FieldFuture::new(async move {
                let c = ctx.parent_value.try_downcast_ref::<Arc<Conn>>()?;
                Ok(Some(FieldValue::value(if name == "hasNextPage" { c.has_next } else { c.has_previous })))
            })
        })
    };
    let cursor = |name: &'static str| {
        Field::new(name, TypeRef::named(TypeRef::STRING), move |ctx| {
            FieldFuture::new(async move {
                let c = ctx.parent_value.try_downcast_ref::<Arc<Conn>>()?;
                let v = if name == "startCursor" { c.cursors.first() } else { c.cursors.last() };
                Ok(v.map(|s| FieldValue::value(s.clone())))
            })
        })
    };
    Object::new("PageInfo")
        .field(flag("hasNextPage"))
        .field(flag("hasPreviousPage"))
        .field(cursor("startCursor"))
        .field(cursor("endCursor"))
}

fn picklist_enums(object: &ObjectDefinition) -> Vec<Enum> {
    object
        .fields
        .iter()
        .filter(|f| matches!(f.field_type, FieldType::Picklist | FieldType::MultiPicklist))
        .map(|f| {
            let mut e = Enum::new(picklist_enum_name(object, f));
            for o in &f.options {
                let mut item = EnumItem::new(enum_item(&o.value)).description(o.label.clone());
                if !o.active {
                    item = item.deprecation(Some("retired option"));
                }
                e = e.item(item);
            }
            e
        })
        .collect()
}

/// The GraphQL output type of a field's value.
fn output_type(object: &ObjectDefinition, f: &FieldDefinition) -> TypeRef {
    let t = f.field_type;
    match t {
        FieldType::Integer => TypeRef::named(TypeRef::INT),
        _ if t.is_decimal() => TypeRef::named("Decimal"),
        FieldType::Boolean => TypeRef::named(TypeRef::BOOLEAN),
        FieldType::Date => TypeRef::named("Date"),
        FieldType::Datetime => TypeRef::named("DateTime"),
        FieldType::Json => TypeRef::named("JSON"),
        FieldType::Picklist => TypeRef::named(picklist_enum_name(object, f)),
        FieldType::MultiPicklist => TypeRef::named_nn_list(picklist_enum_name(object, f)),
        _ => TypeRef::named(TypeRef::STRING),
    }
}

fn node_of<'a>(ctx: &'a ResolverContext<'_>) -> Result<&'a Arc<Node>, Error> {
    ctx.parent_value.try_downcast_ref::<Arc<Node>>()
}

fn response_key<'a>(ctx: &'a ResolverContext<'_>) -> &'a str {
    let f = ctx.ctx.field();
    f.alias().unwrap_or(f.name())
}

/// The record type, its connection and edge, and its aggregate types.
fn object_types(shared: &Arc<Shared>, object: &Arc<ObjectDefinition>, access: &AccessProfile) -> Vec<Object> {
    let tn = object.type_name();
    let mut t = Object::new(&tn).description(object.label.clone());
    let system: [(&str, &str, TypeRef); 8] = [
        ("id", "id", TypeRef::named_nn(TypeRef::ID)),
        ("owner", "owner_id", TypeRef::named_nn(TypeRef::ID)),
        ("createdAt", "created_at", TypeRef::named_nn("DateTime")),
        ("updatedAt", "updated_at", TypeRef::named_nn("DateTime")),
        ("createdBy", "created_by", TypeRef::named_nn(TypeRef::ID)),
        ("updatedBy", "updated_by", TypeRef::named_nn(TypeRef::ID)),
        ("version", "version", TypeRef::named_nn(TypeRef::INT)),
        ("deletedAt", "deleted_at", TypeRef::named("DateTime")),
    ];
    for (name, column, ty) in system {
        t = t.field(Field::new(name, ty, move |ctx| {
            let v = node_of(&ctx).map(|n| system_output(n.record.get(column)));
            FieldFuture::Value(v.ok().map(FieldValue::value))
        }));
    }
    for f in &object.fields {
        let field = Arc::new(f.clone());
        if f.field_type == FieldType::Lookup {
            let column = f.column();
            let col = column.clone();
            t = t.field(
                Field::new(f.graphql_id_name(), TypeRef::named(TypeRef::ID), move |ctx| {
                    let v = node_of(&ctx).map(|n| system_output(n.record.get(&col)));
                    FieldFuture::Value(v.ok().map(FieldValue::value))
                })
                .description(format!("Id of {}", f.label)),
            );
            let Some(target) = &f.target else { continue };
            t = t.field(
                Field::new(
                    f.graphql_name(),
                    TypeRef::named(tessera_metadata::pascal_case(target.as_str())),
                    move |ctx| {
                        let node =
                            node_of(&ctx).ok().and_then(|n| n.lookups.get(response_key(&ctx)).cloned().flatten());
                        FieldFuture::Value(node.map(FieldValue::owned_any))
                    },
                )
                .description(f.label.clone()),
            );
            continue;
        }
        let mut gf = Field::new(f.graphql_name(), output_type(object, f), move |ctx| {
            let Ok(node) = node_of(&ctx) else { return FieldFuture::Value(None) };
            let column = field.column();
            if node.record.broken.contains(&column) {
                // This value alone fails: the rest of the record is still answered.
                let message = format!(
                    "the stored value of `{}` cannot be decrypted: it was altered or belongs elsewhere",
                    field.graphql_name()
                );
                return FieldFuture::new(async move {
                    Err::<Option<FieldValue>, _>(gql_error("INTERNAL_SERVER_ERROR", message))
                });
            }
            FieldFuture::Value(Some(FieldValue::value(output(&field, node.record.get(&column)))))
        })
        .description(f.help_text.clone().unwrap_or_else(|| f.label.clone()));
        if f.field_type == FieldType::AutoNumber {
            gf = gf.description(format!("{} (assigned automatically)", f.label));
        }
        if f.is_formula() {
            gf = gf.description(format!("{} (computed by a formula)", f.label));
        }
        t = t.field(gf);
    }
    for rel in shared.registry.reverse_relations(object.name.as_str()) {
        let Some(source) = shared.registry.object(rel.source.as_str()) else { continue };
        // The relation is the source's lookup seen from here: it needs both readable.
        let grant = access.object(source.name.as_str());
        if !grant.allows(Action::Read) || grant.field(rel.field.as_str()) < FieldAccess::Read {
            continue;
        }
        let sn = source.type_name();
        t = t.field(
            Field::new(rel.name.clone(), TypeRef::named_nn(format!("{sn}Connection")), move |ctx| {
                let conn = node_of(&ctx).ok().and_then(|n| n.related.get(response_key(&ctx)).cloned());
                FieldFuture::Value(Some(FieldValue::owned_any(conn.unwrap_or_default())))
            })
            .argument(InputValue::new("filter", TypeRef::named(format!("{sn}Filter"))))
            .argument(InputValue::new("orderBy", TypeRef::named_nn_list(format!("{sn}OrderBy"))))
            .argument(InputValue::new("first", TypeRef::named(TypeRef::INT)))
            .argument(InputValue::new("after", TypeRef::named(TypeRef::STRING))),
        );
    }
    let edge = Object::new(format!("{tn}Edge"))
        .field(Field::new("cursor", TypeRef::named_nn(TypeRef::STRING), |ctx| {
            FieldFuture::Value(
                ctx.parent_value.downcast_ref::<(Arc<Node>, String)>().map(|(_, c)| FieldValue::value(c.clone())),
            )
        }))
        .field(Field::new("node", TypeRef::named_nn(&tn), |ctx| {
            FieldFuture::Value(
                ctx.parent_value.downcast_ref::<(Arc<Node>, String)>().map(|(n, _)| FieldValue::owned_any(n.clone())),
            )
        }));
    let connection = Object::new(format!("{tn}Connection"))
        .field(Field::new("totalCount", TypeRef::named(TypeRef::INT), |ctx| {
            FieldFuture::Value(
                ctx.parent_value.downcast_ref::<Arc<Conn>>().and_then(|c| c.total).map(FieldValue::value),
            )
        }))
        .field(Field::new("edges", TypeRef::named_nn_list_nn(format!("{tn}Edge")), |ctx| {
            let edges = ctx.parent_value.downcast_ref::<Arc<Conn>>().map(|c| {
                FieldValue::list(
                    c.nodes.iter().zip(&c.cursors).map(|(n, cur)| FieldValue::owned_any((n.clone(), cur.clone()))),
                )
            });
            FieldFuture::Value(edges)
        }))
        .field(Field::new("nodes", TypeRef::named_nn_list_nn(&tn), |ctx| {
            let nodes = ctx
                .parent_value
                .downcast_ref::<Arc<Conn>>()
                .map(|c| FieldValue::list(c.nodes.iter().map(|n| FieldValue::owned_any(n.clone()))));
            FieldFuture::Value(nodes)
        }))
        .field(Field::new("pageInfo", TypeRef::named_nn("PageInfo"), |ctx| {
            FieldFuture::Value(ctx.parent_value.downcast_ref::<Arc<Conn>>().map(|c| FieldValue::owned_any(c.clone())))
        }));
    let mut out = vec![t, edge, connection];
    out.extend(aggregate_types(object));
    out
}

/// Fields that `sum`/`avg` apply to, and those `min`/`max` apply to.
fn numeric_fields(object: &ObjectDefinition) -> Vec<&FieldDefinition> {
    object.fields.iter().filter(|f| f.field_type.is_numeric()).collect()
}

fn ordered_fields(object: &ObjectDefinition) -> Vec<&FieldDefinition> {
    object
        .fields
        .iter()
        .filter(|f| f.field_type.is_ordered() && !matches!(f.field_type, FieldType::Lookup | FieldType::Picklist))
        .collect()
}

fn aggregate_fields(object: &ObjectDefinition, func: AggregateFn) -> Vec<&FieldDefinition> {
    match func {
        AggregateFn::Sum | AggregateFn::Avg => numeric_fields(object),
        AggregateFn::Min | AggregateFn::Max => ordered_fields(object),
    }
}

const AGGREGATES: [(AggregateFn, &str, &str); 4] = [
    (AggregateFn::Sum, "sum", "Sum"),
    (AggregateFn::Avg, "avg", "Avg"),
    (AggregateFn::Min, "min", "Min"),
    (AggregateFn::Max, "max", "Max"),
];

/// `…Sum`, `…Avg`, `…Min`, `…Max` (when the object has fields they apply to), `…Aggregate` and
/// `…Group`.
fn aggregate_types(object: &Arc<ObjectDefinition>) -> Vec<Object> {
    let tn = object.type_name();
    let mut out = Vec::new();
    let mut aggregate = Object::new(format!("{tn}Aggregate")).field(count_field());
    let mut group = Object::new(format!("{tn}Group")).field(count_field());
    for (func, name, suffix) in AGGREGATES {
        let fields = aggregate_fields(object, func);
        if fields.is_empty() {
            continue;
        }
        let type_name = format!("{tn}{suffix}");
        let mut t = Object::new(&type_name);
        for f in fields {
            let field = Arc::new(f.clone());
            let ty = match func {
                AggregateFn::Avg => TypeRef::named("Decimal"),
                _ => output_type(object, f),
            };
            t = t.field(Field::new(f.graphql_name(), ty, move |ctx| {
                let row = ctx.parent_value.downcast_ref::<Arc<AggregateRow>>();
                let v = match row.and_then(|r| r.values.get(&(func, field.column()))) {
                    None => None,
                    Some(AggregateValue::Decimal(s)) => Some(GqlValue::String(s.clone())),
                    Some(AggregateValue::Value(v)) => Some(output(&field, v)),
                    Some(AggregateValue::OutOfRange) => {
                        let e = gql_error("OUT_OF_RANGE", format!("the {name} of `{}` is beyond 64 bits", field.name));
                        return FieldFuture::new(async move { Err::<Option<FieldValue>, _>(e) });
                    }
                };
                FieldFuture::Value(v.map(FieldValue::value))
            }));
        }
        out.push(t);
        let sub = |_: ()| {
            Field::new(name, TypeRef::named(&type_name), |ctx| {
                FieldFuture::Value(
                    ctx.parent_value.downcast_ref::<Arc<AggregateRow>>().map(|r| FieldValue::owned_any(r.clone())),
                )
            })
        };
        aggregate = aggregate.field(sub(()));
        group = group.field(sub(()));
    }
    for f in object.fields.iter().filter(|f| f.field_type.is_groupable()) {
        let field = Arc::new(f.clone());
        let (name, ty) = if f.field_type == FieldType::Lookup {
            (f.graphql_id_name(), TypeRef::named(TypeRef::ID))
        } else {
            (f.graphql_name(), output_type(object, f))
        };
        group = group.field(Field::new(name, ty, move |ctx| {
            let row = ctx.parent_value.downcast_ref::<Arc<AggregateRow>>();
            let v = row.and_then(|r| r.keys.get(&field.column())).map(|v| match field.field_type {
                FieldType::Lookup => system_output(v),
                _ => output(&field, v),
            });
            FieldFuture::Value(v.map(FieldValue::value))
        }));
    }
    out.push(aggregate);
    out.push(group);
    out
}

fn count_field() -> Field {
    Field::new("count", TypeRef::named_nn(TypeRef::INT), |ctx| {
        FieldFuture::Value(ctx.parent_value.downcast_ref::<Arc<AggregateRow>>().map(|r| FieldValue::value(r.count)))
    })
}

/// `…Field`: the fields an upsert names.
fn field_enum(object: &ObjectDefinition) -> Enum {
    let mut e = Enum::new(format!("{}Field", object.type_name()));
    for f in &object.fields {
        e = e.item(EnumItem::new(f.graphql_name()));
    }
    if object.fields.is_empty() {
        e = e.item(EnumItem::new("id"));
    }
    e
}

fn groupable(object: &ObjectDefinition) -> impl Iterator<Item = &FieldDefinition> {
    object.fields.iter().filter(|f| f.field_type.is_groupable())
}

/// `…GroupField`: the fields `groupBy` accepts (only objects that have some get `…GroupBy`).
fn group_field_enum(object: &ObjectDefinition) -> Option<Enum> {
    let items: Vec<EnumItem> = groupable(object).map(|f| EnumItem::new(f.graphql_name())).collect();
    (!items.is_empty())
        .then(|| items.into_iter().fold(Enum::new(format!("{}GroupField", object.type_name())), Enum::item))
}

/// `…Input`: every writable field, all optional (requiredness is reported as `fieldErrors`).
fn input_type(object: &ObjectDefinition) -> InputObject {
    let mut i = InputObject::new(format!("{}Input", object.type_name()))
        .field(InputValue::new("owner", TypeRef::named(TypeRef::ID)));
    for f in &object.fields {
        match f.field_type {
            _ if f.is_formula() => {}
            FieldType::AutoNumber => {}
            FieldType::Lookup => i = i.field(InputValue::new(f.graphql_id_name(), TypeRef::named(TypeRef::ID))),
            _ => i = i.field(InputValue::new(f.graphql_name(), output_type(object, f)).description(f.label.clone())),
        }
    }
    i
}

pub(super) fn object_of(shared: &Shared, name: &str) -> Result<Arc<ObjectDefinition>, Error> {
    shared
        .registry
        .object(name)
        .cloned()
        .ok_or_else(|| data_error(DataError::NotFound(format!("object `{name}` no longer exists"))))
}

fn add_queries(shared: &Arc<Shared>, object: &Arc<ObjectDefinition>, query: Object) -> Object {
    let tn = object.type_name();
    let name = object.name.to_string();
    let (s1, s2, s3, s4) = (shared.clone(), shared.clone(), shared.clone(), shared.clone());
    let (n1, n2, n3, n4) = (name.clone(), name.clone(), name.clone(), name);
    let single = Field::new(object.single_field(), TypeRef::named(&tn), move |ctx| {
        let (shared, name) = (s1.clone(), n1.clone());
        FieldFuture::new(async move {
            let object = object_of(&shared, &name)?;
            let dc = data(&ctx)?;
            let id = ctx.args.try_get("id")?.string()?.to_string();
            let children: Vec<_> = ctx.ctx.field().selection_set().collect();
            let columns = node_columns(&object, &children);
            let record = dc.store.get(&dc.caller, &object, &id, &columns).await.map_err(data_error)?;
            let Some(record) = record else { return Ok(None) };
            let nodes = prefetch(&shared, dc, &object, vec![record], &[ctx.ctx.field()]).await.map_err(data_error)?;
            Ok(nodes.into_iter().next().map(FieldValue::owned_any))
        })
    })
    .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)));
    let list = Field::new(object.plural_field(), TypeRef::named_nn(format!("{tn}Connection")), move |ctx| {
        let (shared, name) = (s2.clone(), n2.clone());
        FieldFuture::new(async move {
            let object = object_of(&shared, &name)?;
            let dc = data(&ctx)?;
            let field = ctx.ctx.field();
            let args: Vec<(async_graphql::Name, GqlValue)> = field.arguments()?;
            let query = list_query(&shared, &object, &args, &field).map_err(data_error)?;
            let page = dc.store.list(&dc.caller, &object, &query).await.map_err(data_error)?;
            let parents = connection_node_parents(&field);
            let nodes = prefetch(&shared, dc, &object, page.records, &parents).await.map_err(data_error)?;
            Ok(Some(FieldValue::owned_any(Arc::new(Conn {
                nodes,
                cursors: page.cursors,
                has_next: page.has_next,
                has_previous: page.has_previous,
                total: page.total,
            }))))
        })
    })
    .argument(InputValue::new("filter", TypeRef::named(format!("{tn}Filter"))))
    .argument(InputValue::new("orderBy", TypeRef::named_nn_list(format!("{tn}OrderBy"))))
    .argument(InputValue::new("first", TypeRef::named(TypeRef::INT)))
    .argument(InputValue::new("after", TypeRef::named(TypeRef::STRING)))
    .argument(InputValue::new("last", TypeRef::named(TypeRef::INT)))
    .argument(InputValue::new("before", TypeRef::named(TypeRef::STRING)));
    let aggregate = Field::new(
        format!("{}Aggregate", object.plural_field()),
        TypeRef::named_nn(format!("{tn}Aggregate")),
        move |ctx| {
            let (shared, name) = (s3.clone(), n3.clone());
            FieldFuture::new(async move {
                let object = object_of(&shared, &name)?;
                let dc = data(&ctx)?;
                let mut q = AggregateQuery { limit: 1, ..Default::default() };
                if let Some(f) = arg_value(&ctx, "filter") {
                    q.filter = parse_filter(&shared.registry, &shared.access, &object, f).map_err(data_error)?;
                }
                q.aggregates = requested_aggregates(&object, &ctx);
                let rows = dc.store.aggregate(&dc.caller, &object, &q).await.map_err(data_error)?;
                let row = rows.into_iter().next().unwrap_or_default();
                Ok(Some(FieldValue::owned_any(Arc::new(row))))
            })
        },
    )
    .argument(InputValue::new("filter", TypeRef::named(format!("{tn}Filter"))));
    let group_by = Field::new(
        format!("{}GroupBy", object.plural_field()),
        TypeRef::named_nn_list_nn(format!("{tn}Group")),
        move |ctx| {
            let (shared, name) = (s4.clone(), n4.clone());
            FieldFuture::new(async move {
                let object = object_of(&shared, &name)?;
                let dc = data(&ctx)?;
                let mut q = AggregateQuery::default();
                for item in ctx.args.try_get("groupBy")?.list()?.iter() {
                    let gql = item.enum_name()?;
                    let f = object
                        .field_by_graphql(gql)
                        .ok_or_else(|| data_error(DataError::bad_input(format!("unknown field `{gql}`"))))?;
                    if !f.field_type.is_groupable() {
                        return Err(data_error(DataError::bad_input(format!(
                            "cannot group by `{gql}`: {} fields are not groupable",
                            f.field_type.as_str()
                        ))));
                    }
                    if !q.group_by.contains(&f.column()) {
                        q.group_by.push(f.column());
                    }
                }
                if q.group_by.is_empty() || q.group_by.len() > 5 {
                    return Err(data_error(DataError::bad_input("groupBy takes 1 to 5 fields")));
                }
                if let Some(f) = arg_value(&ctx, "filter") {
                    q.filter = parse_filter(&shared.registry, &shared.access, &object, f).map_err(data_error)?;
                }
                let first = match ctx.args.get("first") {
                    Some(v) if !v.is_null() => v.u64()?,
                    _ => shared.limits.max_groups,
                };
                if first == 0 || first > shared.limits.max_groups {
                    return Err(data_error(DataError::bad_input(format!(
                        "first must be between 1 and {}",
                        shared.limits.max_groups
                    ))));
                }
                q.limit = first;
                q.aggregates = requested_aggregates(&object, &ctx);
                let rows = dc.store.aggregate(&dc.caller, &object, &q).await.map_err(data_error)?;
                Ok(Some(FieldValue::list(rows.into_iter().map(|r| FieldValue::owned_any(Arc::new(r))))))
            })
        },
    )
    .argument(InputValue::new("groupBy", TypeRef::named_nn_list_nn(format!("{tn}GroupField"))))
    .argument(InputValue::new("filter", TypeRef::named(format!("{tn}Filter"))))
    .argument(InputValue::new("first", TypeRef::named(TypeRef::INT)));
    let query = query.field(single).field(list).field(aggregate);
    if groupable(object).next().is_some() { query.field(group_by) } else { query }
}

/// The `sum { a } avg { b }` selections of an aggregate or group-by field.
fn requested_aggregates(object: &ObjectDefinition, ctx: &ResolverContext<'_>) -> Vec<(AggregateFn, String)> {
    let mut out = Vec::new();
    for sel in ctx.ctx.field().selection_set() {
        let Some((func, _, _)) = AGGREGATES.iter().find(|(_, n, _)| *n == sel.name()) else { continue };
        for f in sel.selection_set() {
            if let Some(def) = object.field_by_graphql(f.name()) {
                let key = (*func, def.column());
                if !out.contains(&key) {
                    out.push(key);
                }
            }
        }
    }
    out
}

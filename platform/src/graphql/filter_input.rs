//! The generated `…Filter` and `…OrderBy` input types, and their parsing into the query model.

use async_graphql::Value as GqlValue;
use async_graphql::dynamic::{Enum, EnumItem, InputObject, InputValue, TypeRef};
use tessera_metadata::{
    AccessProfile, FieldDefinition, FieldType, Filter, FilterOp, Mask, NullsOrder, ObjectDefinition, OrderKey,
    Registry, SortDirection, Value,
};

use super::DataError;
use super::values::{input_json, picklist_enum_name};

pub const SORT_ORDER: &str = "SortOrder";
/// Deepest nesting of `and`/`or`/`not`/related filters accepted.
const MAX_FILTER_DEPTH: usize = 8;
/// Most values one `in` / `notIn` may list (each becomes a bound parameter).
const MAX_IN_VALUES: usize = 1_000;

/// The operator input type used for a field, e.g. `StringFilter`.
pub fn filter_type(object: &ObjectDefinition, field: &FieldDefinition) -> Option<String> {
    let t = field.field_type;
    Some(match t {
        _ if t.is_textual() => "StringFilter".into(),
        FieldType::Integer => "IntFilter".into(),
        _ if t.is_decimal() => "DecimalFilter".into(),
        FieldType::Boolean => "BooleanFilter".into(),
        FieldType::Date => "DateFilter".into(),
        FieldType::Datetime => "DateTimeFilter".into(),
        FieldType::Picklist => format!("{}Filter", picklist_enum_name(object, field)),
        FieldType::MultiPicklist | FieldType::Json => "NullFilter".into(),
        FieldType::Lookup => return None,
        _ => return None,
    })
}

fn ops(name: &str, scalar: &str, ordered: bool, text: bool) -> InputObject {
    let mut o = InputObject::new(name)
        .field(InputValue::new("eq", TypeRef::named(scalar)))
        .field(InputValue::new("neq", TypeRef::named(scalar)))
        .field(InputValue::new("in", TypeRef::named_nn_list(scalar)))
        .field(InputValue::new("notIn", TypeRef::named_nn_list(scalar)))
        .field(InputValue::new("isNull", TypeRef::named(TypeRef::BOOLEAN)));
    if ordered {
        for op in ["gt", "gte", "lt", "lte"] {
            o = o.field(InputValue::new(op, TypeRef::named(scalar)));
        }
    }
    if text {
        for op in ["like", "ilike", "startsWith", "endsWith"] {
            o = o.field(InputValue::new(op, TypeRef::named(TypeRef::STRING)));
        }
    }
    o
}

/// The shared operator types and the sort-order enum.
pub fn shared_types() -> (Vec<InputObject>, Enum) {
    let inputs = vec![
        ops("StringFilter", TypeRef::STRING, true, true),
        ops("IDFilter", TypeRef::ID, false, false),
        ops("IntFilter", TypeRef::INT, true, false),
        ops("DecimalFilter", "Decimal", true, false),
        ops("BooleanFilter", TypeRef::BOOLEAN, false, false),
        ops("DateFilter", "Date", true, false),
        ops("DateTimeFilter", "DateTime", true, false),
        InputObject::new("NullFilter").field(InputValue::new("isNull", TypeRef::named(TypeRef::BOOLEAN))),
    ];
    let sort = Enum::new(SORT_ORDER)
        .item(EnumItem::new("AscNullsFirst"))
        .item(EnumItem::new("AscNullsLast"))
        .item(EnumItem::new("DescNullsFirst"))
        .item(EnumItem::new("DescNullsLast"));
    (inputs, sort)
}

/// `…Filter` for an object, and the enum filter types of its picklists.
pub fn object_filter(object: &ObjectDefinition) -> Vec<InputObject> {
    let name = format!("{}Filter", object.type_name());
    let mut f = InputObject::new(&name)
        .field(InputValue::new("and", TypeRef::named_nn_list(&name)))
        .field(InputValue::new("or", TypeRef::named_nn_list(&name)))
        .field(InputValue::new("not", TypeRef::named(&name)))
        .field(InputValue::new("id", TypeRef::named("IDFilter")))
        .field(InputValue::new("owner", TypeRef::named("IDFilter")))
        .field(InputValue::new("createdBy", TypeRef::named("IDFilter")))
        .field(InputValue::new("updatedBy", TypeRef::named("IDFilter")))
        .field(InputValue::new("createdAt", TypeRef::named("DateTimeFilter")))
        .field(InputValue::new("updatedAt", TypeRef::named("DateTimeFilter")))
        .field(InputValue::new("version", TypeRef::named("IntFilter")));
    let mut out = Vec::new();
    for field in &object.fields {
        if field.field_type == FieldType::Lookup {
            if let Some(target) = &field.target {
                f = f.field(InputValue::new(
                    field.graphql_name(),
                    TypeRef::named(format!("{}Filter", tessera_metadata::pascal_case(target.as_str()))),
                ));
            }
            f = f.field(InputValue::new(field.graphql_id_name(), TypeRef::named("IDFilter")));
            continue;
        }
        if let Some(t) = filter_type(object, field) {
            if field.field_type == FieldType::Picklist {
                out.push(ops(&t, &picklist_enum_name(object, field), false, false));
            }
            f = f.field(InputValue::new(field.graphql_name(), TypeRef::named(t)));
        }
    }
    out.push(f);
    out
}

/// `…OrderBy`: one optional sort order per sortable field.
pub fn object_order_by(object: &ObjectDefinition) -> InputObject {
    let mut o = InputObject::new(format!("{}OrderBy", object.type_name()));
    for system in ["id", "createdAt", "updatedAt", "version"] {
        o = o.field(InputValue::new(system, TypeRef::named(SORT_ORDER)));
    }
    for f in &object.fields {
        if f.field_type.is_sortable() {
            let name = if f.field_type == FieldType::Lookup { f.graphql_id_name() } else { f.graphql_name() };
            o = o.field(InputValue::new(name, TypeRef::named(SORT_ORDER)));
        }
    }
    o
}

/// Column of a system field by GraphQL name.
pub fn system_column(name: &str) -> Option<&'static str> {
    Some(match name {
        "id" => "id",
        "owner" => "owner_id",
        "createdBy" => "created_by",
        "updatedBy" => "updated_by",
        "createdAt" => "created_at",
        "updatedAt" => "updated_at",
        "version" => "version",
        "deletedAt" => "deleted_at",
        _ => return None,
    })
}

fn system_definition(column: &str) -> Result<FieldDefinition, DataError> {
    let t = match column {
        "created_at" | "updated_at" | "deleted_at" => FieldType::Datetime,
        "version" => FieldType::Integer,
        _ => FieldType::Text,
    };
    let name = tessera_metadata::FieldName::new("system_value").map_err(|_| DataError::Internal)?;
    Ok(FieldDefinition::new(name, column, t))
}

/// A filter value: like an input value but without write-only rules (retired picklist options
/// and overlong strings may still be searched for).
fn filter_value(field: &FieldDefinition, value: &GqlValue) -> Result<Value, DataError> {
    let mut relaxed = field.clone();
    relaxed.max_length = None;
    relaxed.required = false;
    for o in &mut relaxed.options {
        o.active = true;
    }
    if relaxed.field_type == FieldType::Lookup || relaxed.field_type == FieldType::AutoNumber {
        relaxed.field_type = FieldType::Text;
    }
    if matches!(relaxed.field_type, FieldType::Email | FieldType::Phone | FieldType::Url) {
        relaxed.field_type = FieldType::Text;
    }
    let json = input_json(field, value);
    Value::coerce(&relaxed, &json)
        .map_err(|issue| DataError::bad_input(format!("filter on `{}`: {}", field.graphql_name(), issue.message)))
}

/// Whether the caller sees a sensitive field's values masked.
fn masked(access: &AccessProfile, object: &ObjectDefinition, field: &FieldDefinition) -> bool {
    field.sensitive.is_some_and(|s| s.mask != Mask::None)
        && !access.object(object.name.as_str()).unmasked(field.name.as_str())
}

/// Comparisons other than equality with one value would let a caller who sees a field masked
/// recover its values piece by piece (`startsWith: "1381"`, ranges) or many guesses at a time
/// (`in`, `notIn`, and `neq`, whose complement is an `eq`), so they are refused on such fields.
/// Each `eq` is still a guess, which the store counts, rate-limits and logs (`Filter::Probe`).
fn refuse_unmasking_ops(field: &FieldDefinition, ops: &GqlValue) -> Result<(), DataError> {
    let GqlValue::Object(map) = ops else { return Ok(()) };
    for (op, v) in map {
        if !matches!(v, GqlValue::Null) && !matches!(op.as_str(), "eq" | "isNull") {
            return Err(DataError::bad_input(format!(
                "`{}` is shown to you masked: only `eq` (one value at a time) and `isNull` filters work on it, \
                 not `{op}`",
                field.graphql_name()
            )));
        }
    }
    Ok(())
}

/// A condition on a field the caller sees masked, marked as a probe when it compares with a value.
fn probe(object: &ObjectDefinition, field: &FieldDefinition, condition: Filter) -> Filter {
    let guess = match &condition {
        Filter::Column { op: FilterOp::Eq(v), .. } => !v.is_null(),
        Filter::Blind { .. } => true,
        _ => false,
    };
    if !guess {
        return condition;
    }
    Filter::Probe { object: object.name.clone(), field: field.name.clone(), filter: Box::new(condition) }
}

/// Conditions on an encrypted field: `isNull` always; `eq` and `in` through the blind index of a
/// searchable field; anything else would need the plaintext and is refused, saying why.
fn parse_encrypted_ops(
    object: &ObjectDefinition,
    field: &FieldDefinition,
    ops: &GqlValue,
) -> Result<Vec<Filter>, DataError> {
    let GqlValue::Object(map) = ops else { return Ok(Vec::new()) };
    let name = field.graphql_name();
    let mut out = Vec::new();
    for (op, v) in map {
        let blind = |values: Vec<String>| {
            if !field.is_searchable() {
                return Err(DataError::bad_input(format!(
                    "`{name}` is encrypted and not searchable: only `isNull` filters work on it; make it \
                     searchable to find records by equal values"
                )));
            }
            Ok(Filter::Blind {
                object: object.name.to_string(),
                field: field.name.to_string(),
                field_type: field.field_type,
                column: field.column(),
                index_column: field.blind_index_column(),
                values,
                hashes: None,
                plain: Vec::new(),
            })
        };
        let text = |v: &GqlValue| match v {
            GqlValue::String(s) => Ok(s.clone()),
            _ => Err(DataError::bad_input(format!("filter on `{name}`: `{op}` takes strings"))),
        };
        match (op.as_str(), v) {
            ("eq", GqlValue::Null) | ("isNull", GqlValue::Boolean(true)) => {
                out.push(Filter::Column { column: field.column(), op: FilterOp::IsNull(true) })
            }
            ("isNull", _) => out.push(Filter::Column { column: field.column(), op: FilterOp::IsNull(false) }),
            ("eq", v) => out.push(blind(vec![text(v)?])?),
            ("in", GqlValue::List(items)) if items.len() > MAX_IN_VALUES => {
                return Err(DataError::bad_input(format!("`in` takes at most {MAX_IN_VALUES} values")));
            }
            ("in", GqlValue::List(items)) => out.push(blind(items.iter().map(text).collect::<Result<_, _>>()?)?),
            ("in", v) => out.push(blind(vec![text(v)?])?),
            (_, GqlValue::Null) => {}
            (other, _) => {
                return Err(DataError::bad_input(format!(
                    "`{name}` is encrypted: `{other}` would need its plaintext; only `eq`, `in` and `isNull` \
                     work on encrypted fields (`eq` and `in` when the field is searchable)"
                )));
            }
        }
    }
    Ok(out)
}

fn parse_ops(column: &str, field: &FieldDefinition, ops: &GqlValue) -> Result<Vec<Filter>, DataError> {
    let GqlValue::Object(map) = ops else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for (op, v) in map {
        let one = |v: &GqlValue| filter_value(field, v);
        let list = |v: &GqlValue| -> Result<Vec<Value>, DataError> {
            match v {
                GqlValue::List(items) if items.len() > MAX_IN_VALUES => {
                    Err(DataError::bad_input(format!("`{op}` takes at most {MAX_IN_VALUES} values")))
                }
                GqlValue::List(items) => items.iter().map(one).collect(),
                GqlValue::Null => Ok(Vec::new()),
                other => Ok(vec![one(other)?]),
            }
        };
        let text = |v: &GqlValue| match v {
            GqlValue::String(s) => Ok(s.clone()),
            _ => Err(DataError::bad_input(format!("`{op}` takes a string"))),
        };
        if matches!(v, GqlValue::Null) && op.as_str() != "eq" {
            continue;
        }
        let op = match op.as_str() {
            "eq" => FilterOp::Eq(one(v)?),
            "neq" => FilterOp::Neq(one(v)?),
            "in" => FilterOp::In(list(v)?),
            "notIn" => FilterOp::NotIn(list(v)?),
            "gt" => FilterOp::Gt(one(v)?),
            "gte" => FilterOp::Gte(one(v)?),
            "lt" => FilterOp::Lt(one(v)?),
            "lte" => FilterOp::Lte(one(v)?),
            "like" => FilterOp::Like(text(v)?),
            "ilike" => FilterOp::ILike(text(v)?),
            "startsWith" => FilterOp::StartsWith(text(v)?),
            "endsWith" => FilterOp::EndsWith(text(v)?),
            "isNull" => FilterOp::IsNull(matches!(v, GqlValue::Boolean(true))),
            other => return Err(DataError::bad_input(format!("unknown filter operator `{other}`"))),
        };
        out.push(Filter::Column { column: column.to_string(), op });
    }
    Ok(out)
}

/// Parses a `…Filter` input value.
pub fn parse_filter(
    registry: &Registry,
    access: &AccessProfile,
    object: &ObjectDefinition,
    value: &GqlValue,
) -> Result<Option<Filter>, DataError> {
    parse_filter_at(registry, access, object, value, 0)
}

fn parse_filter_at(
    registry: &Registry,
    access: &AccessProfile,
    object: &ObjectDefinition,
    value: &GqlValue,
    depth: usize,
) -> Result<Option<Filter>, DataError> {
    if depth > MAX_FILTER_DEPTH {
        return Err(DataError::bad_input(format!("filters may nest at most {MAX_FILTER_DEPTH} levels")));
    }
    let GqlValue::Object(map) = value else { return Ok(None) };
    let mut parts = Vec::new();
    for (key, v) in map {
        if matches!(v, GqlValue::Null) {
            continue;
        }
        match key.as_str() {
            "and" | "or" => {
                let GqlValue::List(items) = v else { continue };
                let mut subs = Vec::new();
                for item in items {
                    subs.extend(parse_filter_at(registry, access, object, item, depth + 1)?);
                }
                parts.push(if key.as_str() == "and" { Filter::And(subs) } else { Filter::Or(subs) });
            }
            "not" => {
                if let Some(inner) = parse_filter_at(registry, access, object, v, depth + 1)? {
                    parts.push(Filter::Not(Box::new(inner)));
                }
            }
            name => {
                if let Some(column) = system_column(name) {
                    parts.extend(parse_ops(column, &system_definition(column)?, v)?);
                } else if let Some(field) = object.field_by_graphql(name) {
                    if field.field_type == FieldType::Lookup {
                        let target = field.target.as_ref().and_then(|t| registry.object(t.as_str()));
                        let Some(target) = target else { continue };
                        if let Some(inner) = parse_filter_at(registry, access, target, v, depth + 1)? {
                            parts.push(Filter::Related {
                                column: field.column(),
                                target: target.name.clone(),
                                filter: Box::new(inner),
                            });
                        }
                    } else {
                        let masked = masked(access, object, field);
                        if masked {
                            refuse_unmasking_ops(field, v)?;
                        }
                        let conditions = if field.is_encrypted() {
                            parse_encrypted_ops(object, field, v)?
                        } else {
                            parse_ops(&field.column(), field, v)?
                        };
                        if masked {
                            parts.extend(conditions.into_iter().map(|c| probe(object, field, c)));
                        } else {
                            parts.extend(conditions);
                        }
                    }
                } else if let Some(field) =
                    object.fields.iter().find(|f| f.field_type == FieldType::Lookup && f.graphql_id_name() == name)
                {
                    let mut id_field = field.clone();
                    id_field.field_type = FieldType::Text;
                    parts.extend(parse_ops(&field.column(), &id_field, v)?);
                } else {
                    return Err(DataError::bad_input(format!("`{name}` is not a field of `{}`", object.name)));
                }
            }
        }
    }
    Ok(match parts.len() {
        0 => None,
        1 => parts.pop(),
        _ => Some(Filter::And(parts)),
    })
}

/// Parses `orderBy: [{field: AscNullsLast}, …]`.
pub fn parse_order(
    access: &AccessProfile,
    object: &ObjectDefinition,
    value: &GqlValue,
) -> Result<Vec<OrderKey>, DataError> {
    let items: Vec<&GqlValue> = match value {
        GqlValue::List(items) => items.iter().collect(),
        GqlValue::Null => Vec::new(),
        other => vec![other],
    };
    let mut keys = Vec::new();
    for item in items {
        let GqlValue::Object(map) = item else { continue };
        for (name, dir) in map {
            // Enum values given through variables arrive as strings.
            let dir = match dir {
                GqlValue::Enum(d) => d.as_str(),
                GqlValue::String(d) => d.as_str(),
                _ => continue,
            };
            let column = match system_column(name.as_str()) {
                Some(c) => c.to_string(),
                None => {
                    let field = object
                        .fields
                        .iter()
                        .find(|f| {
                            f.graphql_name() == name.as_str()
                                || (f.field_type == FieldType::Lookup && f.graphql_id_name() == name.as_str())
                        })
                        .ok_or_else(|| DataError::bad_input(format!("cannot sort by `{name}`")))?;
                    if field.is_encrypted() {
                        return Err(DataError::bad_input(format!(
                            "cannot sort by `{name}`: it is encrypted, and sorting would need its plaintext"
                        )));
                    }
                    if masked(access, object, field) {
                        return Err(DataError::bad_input(format!(
                            "cannot sort by `{name}`: it is shown to you masked, and its order would reveal it"
                        )));
                    }
                    field.column()
                }
            };
            let (direction, nulls) = match dir {
                "AscNullsFirst" => (SortDirection::Asc, NullsOrder::First),
                "AscNullsLast" => (SortDirection::Asc, NullsOrder::Last),
                "DescNullsFirst" => (SortDirection::Desc, NullsOrder::First),
                _ => (SortDirection::Desc, NullsOrder::Last),
            };
            keys.push(OrderKey { column, direction, nulls });
        }
    }
    if keys.len() > 5 {
        return Err(DataError::bad_input("sort by at most 5 keys"));
    }
    Ok(keys)
}

//! Conversions between stored values and GraphQL values, and the custom scalars.

use async_graphql::dynamic::Scalar;
use async_graphql::{Name, Value as GqlValue};
use tessera_metadata::{FieldDefinition, FieldType, ObjectDefinition, Value, pascal_case};

use super::RecordInput;

/// The enum type of a picklist field (`OpportunityStage`).
pub fn picklist_enum_name(object: &ObjectDefinition, field: &FieldDefinition) -> String {
    format!("{}{}", object.type_name(), pascal_case(field.name.as_str()))
}

/// The GraphQL enum item of a picklist value (`proposal` → `PROPOSAL`).
pub fn enum_item(value: &str) -> String {
    value.to_uppercase()
}

/// The custom scalars of the data API. Their validators also check resolved output values, so
/// they accept `null` (the value of an empty nullable field).
pub fn scalars() -> Vec<Scalar> {
    vec![
        Scalar::new("Decimal")
            .description(
                "An exact decimal number, sent as a string of digits (\"1234.50\"); accepted as a string or a number.",
            )
            .validator(|v| matches!(v, GqlValue::String(_) | GqlValue::Number(_) | GqlValue::Null)),
        Scalar::new("Date")
            .description("A calendar date, YYYY-MM-DD.")
            .validator(|v| matches!(v, GqlValue::String(_) | GqlValue::Null)),
        Scalar::new("DateTime")
            .description("An instant in RFC 3339, UTC.")
            .validator(|v| matches!(v, GqlValue::String(_) | GqlValue::Null)),
        Scalar::new("JSON").description("Any JSON value."),
    ]
}

/// The GraphQL value of a stored value of `field`.
pub fn output(field: &FieldDefinition, value: &Value) -> GqlValue {
    match (field.field_type, value) {
        (_, Value::Null) => GqlValue::Null,
        (FieldType::Picklist, Value::Text(s)) => GqlValue::Enum(Name::new(enum_item(s))),
        (FieldType::MultiPicklist, Value::Json(serde_json::Value::Array(items))) => GqlValue::List(
            items.iter().filter_map(|i| i.as_str()).map(|s| GqlValue::Enum(Name::new(enum_item(s)))).collect(),
        ),
        _ => GqlValue::from_json(value.to_json(field)).unwrap_or(GqlValue::Null),
    }
}

/// The GraphQL value of a system column.
pub fn system_output(value: &Value) -> GqlValue {
    match value {
        Value::Null => GqlValue::Null,
        Value::Text(s) => GqlValue::String(s.clone()),
        Value::Int(i) => GqlValue::from(*i),
        Value::DateTime(d) => GqlValue::String(d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        other => GqlValue::String(format!("{other:?}")),
    }
}

/// JSON of an input value for `field`, with picklist enum items mapped back to option values.
pub fn input_json(field: &FieldDefinition, value: &GqlValue) -> serde_json::Value {
    let option = |v: &GqlValue| match v {
        GqlValue::Enum(n) => serde_json::Value::String(n.as_str().to_lowercase()),
        GqlValue::String(s) => serde_json::Value::String(s.to_lowercase()),
        other => other.clone().into_json().unwrap_or_default(),
    };
    match (field.field_type, value) {
        (FieldType::Picklist, v) if !matches!(v, GqlValue::Null) => option(v),
        (FieldType::MultiPicklist, GqlValue::List(items)) => {
            serde_json::Value::Array(items.iter().map(option).collect())
        }
        _ => value.clone().into_json().unwrap_or_default(),
    }
}

/// Converts an `…Input` object into field values keyed by api name.
pub fn record_input(object: &ObjectDefinition, value: &GqlValue) -> RecordInput {
    let mut out = RecordInput::new();
    let GqlValue::Object(map) = value else { return out };
    for (name, v) in map {
        if name.as_str() == "owner" {
            out.insert("owner_id".into(), v.clone().into_json().unwrap_or_default());
        } else if let Some(f) = object.field_by_graphql(name.as_str()) {
            out.insert(f.name.to_string(), input_json(f, v));
        } else if let Some(f) =
            object.fields.iter().find(|f| f.field_type == FieldType::Lookup && f.graphql_id_name() == name.as_str())
        {
            out.insert(f.name.to_string(), input_json(f, v));
        } else {
            out.insert(name.to_string(), v.clone().into_json().unwrap_or_default());
        }
    }
    out
}

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

/// JSON of a GraphQL input value, without copying it first.
pub fn json_of(value: &GqlValue) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        GqlValue::Null => J::Null,
        GqlValue::Number(n) => J::Number(n.clone()),
        GqlValue::String(s) => J::String(s.clone()),
        GqlValue::Boolean(b) => J::Bool(*b),
        GqlValue::Enum(n) => J::String(n.to_string()),
        GqlValue::List(items) => J::Array(items.iter().map(json_of).collect()),
        GqlValue::Object(map) => J::Object(map.iter().map(|(k, v)| (k.to_string(), json_of(v))).collect()),
        GqlValue::Binary(bytes) => J::Array(bytes.iter().map(|b| J::from(*b)).collect()),
    }
}

/// JSON of an input value for `field`, with picklist enum items mapped back to option values.
pub fn input_json(field: &FieldDefinition, value: &GqlValue) -> serde_json::Value {
    let option = |v: &GqlValue| match v {
        GqlValue::Enum(n) => serde_json::Value::String(n.as_str().to_lowercase()),
        GqlValue::String(s) => serde_json::Value::String(s.to_lowercase()),
        other => json_of(other),
    };
    match (field.field_type, value) {
        (FieldType::Picklist, v) if !matches!(v, GqlValue::Null) => option(v),
        (FieldType::MultiPicklist, GqlValue::List(items)) => {
            serde_json::Value::Array(items.iter().map(option).collect())
        }
        _ => json_of(value),
    }
}

/// The fields of an `…Input` type by GraphQL name (lookups by their `…Id` name), built once
/// per request rather than once per record.
pub struct InputFields<'a> {
    by_name: std::collections::HashMap<String, &'a FieldDefinition, foldhash::fast::RandomState>,
}

impl<'a> InputFields<'a> {
    pub fn new(object: &'a ObjectDefinition) -> Self {
        let by_name = object
            .fields
            .iter()
            .map(|f| (if f.field_type == FieldType::Lookup { f.graphql_id_name() } else { f.graphql_name() }, f))
            .collect();
        InputFields { by_name }
    }

    /// Converts an `…Input` object into field values keyed by api name.
    pub fn record(&self, value: &GqlValue) -> RecordInput {
        let mut out = RecordInput::new();
        let GqlValue::Object(map) = value else { return out };
        for (name, v) in map {
            match self.by_name.get(name.as_str()) {
                Some(f) => {
                    out.insert(f.name.as_str().to_owned(), input_json(f, v));
                }
                None if name.as_str() == "owner" => {
                    out.insert("owner_id".into(), json_of(v));
                }
                None => {
                    out.insert(name.as_str().to_owned(), json_of(v));
                }
            }
        }
        out
    }
}

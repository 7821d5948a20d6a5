//! Record values ↔ script values: decimals as exact `Decimal`s, picklists as their api value
//! strings, multi-picklists as arrays, dates and date-times as ISO strings, `()` for null.

use rhai::{Array, Dynamic, INT, Map};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value as J;
use tessera_metadata::{FieldDefinition, FieldType, ObjectDefinition, Value};

use crate::Row;

/// System columns a record map carries besides its fields.
const SYSTEM_KEYS: [&str; 2] = ["id", "owner_id"];

/// A row as the script sees it: one key per field (api name, `()` when null or absent), plus
/// `id` and `owner_id` when the row has them.
pub(crate) fn row_to_map(object: &ObjectDefinition, row: &Row) -> Map {
    let mut map = Map::new();
    for field in &object.fields {
        let value = if field.field_type == FieldType::Lookup {
            row.get(&field.column()).or_else(|| row.get(field.name.as_str()))
        } else {
            row.get(field.name.as_str())
        };
        let dynamic = value.map_or(Dynamic::UNIT, |v| value_to_dynamic(field, v));
        map.insert(field.name.as_str().into(), dynamic);
    }
    for key in SYSTEM_KEYS {
        if let Some(v) = row.get(key) {
            map.insert(key.into(), system_value(v));
        }
    }
    map
}

fn system_value(v: &Value) -> Dynamic {
    match v {
        Value::Null => Dynamic::UNIT,
        Value::Text(s) => Dynamic::from(s.clone()),
        Value::Int(i) => Dynamic::from_int(*i),
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Date(d) => Dynamic::from(d.format("%Y-%m-%d").to_string()),
        Value::DateTime(d) => Dynamic::from(rfc3339(d)),
        Value::Json(j) => json_to_dynamic(j),
    }
}

pub(crate) fn rfc3339(d: &chrono::DateTime<chrono::Utc>) -> String {
    d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// One stored value of `field` as a script value.
pub(crate) fn value_to_dynamic(field: &FieldDefinition, value: &Value) -> Dynamic {
    match value {
        Value::Int(units) if field.field_type.is_decimal() => {
            match Decimal::try_new(*units, u32::from(field.effective_scale())) {
                Ok(d) => Dynamic::from_decimal(d),
                Err(_) => Dynamic::from_int(*units),
            }
        }
        other => system_value(other),
    }
}

/// A JSON value as a script value: whole numbers as integers, other numbers as exact decimals.
pub(crate) fn json_to_dynamic(json: &J) -> Dynamic {
    match json {
        J::Null => Dynamic::UNIT,
        J::Bool(b) => Dynamic::from_bool(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Dynamic::from_int(i),
            None => {
                let text = n.to_string();
                match Decimal::from_str_exact(&text).or_else(|_| Decimal::from_scientific(&text)) {
                    Ok(d) => Dynamic::from_decimal(d),
                    Err(_) => Dynamic::from(text),
                }
            }
        },
        J::String(s) => Dynamic::from(s.clone()),
        J::Array(items) => Dynamic::from_array(items.iter().map(json_to_dynamic).collect()),
        J::Object(entries) => {
            let mut map = Map::new();
            for (k, v) in entries {
                map.insert(k.as_str().into(), json_to_dynamic(v));
            }
            Dynamic::from_map(map)
        }
    }
}

/// Deepest nesting of arrays and maps in a script value that leaves the script (a `JSON`
/// field's value, an action's result, a host call's values): JSON read back from the database
/// stops at 128 levels, and converting a value walks it recursively.
pub(crate) const MAX_VALUE_DEPTH: usize = 64;

/// A script value as JSON: decimals as strings (`"12.50"`), integers as numbers, `()` as null.
/// Values with no JSON form (function pointers, timestamps, blobs, ...) and values nested
/// deeper than `MAX_VALUE_DEPTH` are refused, saying why.
pub(crate) fn dynamic_to_json(value: &Dynamic) -> Result<J, String> {
    json_at_depth(value, 0)
}

fn json_at_depth(value: &Dynamic, depth: usize) -> Result<J, String> {
    if value.is_unit() {
        return Ok(J::Null);
    }
    if let Ok(b) = value.as_bool() {
        return Ok(J::Bool(b));
    }
    if let Ok(i) = value.as_int() {
        return Ok(J::from(i));
    }
    if let Ok(d) = value.as_decimal() {
        return Ok(J::String(d.to_string()));
    }
    if let Ok(c) = value.as_char() {
        return Ok(J::String(c.to_string()));
    }
    if value.is_string() {
        return Ok(J::String(value.to_string()));
    }
    let nested = depth + 1;
    let too_deep = || format!("the value nests arrays and maps more than {MAX_VALUE_DEPTH} deep");
    if let Some(items) = value.read_lock::<Array>() {
        if nested > MAX_VALUE_DEPTH {
            return Err(too_deep());
        }
        return items.iter().map(|v| json_at_depth(v, nested)).collect::<Result<Vec<_>, _>>().map(J::Array);
    }
    if let Some(map) = value.read_lock::<Map>() {
        if nested > MAX_VALUE_DEPTH {
            return Err(too_deep());
        }
        let mut out = serde_json::Map::with_capacity(map.len());
        for (k, v) in map.iter() {
            out.insert(k.to_string(), json_at_depth(v, nested)?);
        }
        return Ok(J::Object(out));
    }
    Err(format!("a value of type `{}` has no JSON form", value.type_name()))
}

/// A script value for display in a message, cut short.
pub(crate) fn describe(value: &Dynamic) -> String {
    let text = match dynamic_to_json(value) {
        Ok(j) => j.to_string(),
        Err(_) => format!("a {}", value.type_name()),
    };
    if text.chars().count() > 80 { format!("{}…", text.chars().take(80).collect::<String>()) } else { text }
}

/// Rounds half away from zero (四舍五入) to `dp` digits.
pub(crate) fn round_half_away(d: Decimal, dp: u32) -> Decimal {
    d.round_dp_with_strategy(dp, RoundingStrategy::MidpointAwayFromZero)
}

/// A script value assigned to `field` (by a `BEFORE_SAVE` script, or as a formula's result when
/// `formula` is set) in storage form, through the same coercion and checks as API input. A
/// formula's decimal result is rounded to the field's scale first (half away from zero; an
/// `INTEGER` formula to a whole number), and a text formula takes a number or boolean as its
/// text. `Err` says why the value does not fit.
pub(crate) fn dynamic_to_value(field: &FieldDefinition, value: &Dynamic, formula: bool) -> Result<Value, String> {
    if value.is_unit() {
        return Ok(Value::Null);
    }
    let t = field.field_type;
    let json = if let Ok(d) = value.as_decimal() {
        if t.is_decimal() {
            let d = if formula { round_half_away(d, u32::from(field.effective_scale())) } else { d };
            J::String(d.to_string())
        } else if t == FieldType::Integer {
            let d = if formula { round_half_away(d, 0) } else { d };
            if !d.fract().is_zero() {
                return Err(format!("expected a whole number, got {d}"));
            }
            match i64::try_from(d.trunc()) {
                Ok(i) => J::from(i),
                Err(_) => return Err(format!("{d} does not fit a 64-bit whole number")),
            }
        } else {
            J::String(d.to_string())
        }
    } else if let Ok(i) = value.as_int() {
        if t.is_decimal() || (formula && t.is_textual()) { J::String(i.to_string()) } else { J::from(i) }
    } else if let (true, Ok(b)) = (formula && t.is_textual(), value.as_bool()) {
        J::String(b.to_string())
    } else {
        dynamic_to_json(value)?
    };
    Value::coerce(field, &json).map_err(|issue| issue.message)
}

/// Whether two script values are equal for change detection (numbers by value, containers
/// element by element).
pub(crate) fn same(a: &Dynamic, b: &Dynamic) -> bool {
    if a.is_unit() || b.is_unit() {
        return a.is_unit() && b.is_unit();
    }
    let num = |d: &Dynamic| d.as_decimal().ok().or_else(|| d.as_int().ok().map(Decimal::from));
    if let (Some(x), Some(y)) = (num(a), num(b)) {
        return x == y;
    }
    if let (Ok(x), Ok(y)) = (a.as_bool(), b.as_bool()) {
        return x == y;
    }
    if a.is_string() && b.is_string() {
        return a.to_string() == b.to_string();
    }
    if let (Some(x), Some(y)) = (a.read_lock::<Array>(), b.read_lock::<Array>()) {
        return x.len() == y.len() && x.iter().zip(y.iter()).all(|(p, q)| same(p, q));
    }
    if let (Some(x), Some(y)) = (a.read_lock::<Map>(), b.read_lock::<Map>()) {
        return x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)));
    }
    match (dynamic_to_json(a), dynamic_to_json(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// An `INT` or `Decimal` script value as a `Decimal`.
pub(crate) fn as_decimal(value: &Dynamic) -> Option<Decimal> {
    value.as_decimal().ok().or_else(|| value.as_int().ok().map(|i: INT| Decimal::from(i)))
}

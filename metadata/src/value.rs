//! Typed record values: coercion of API input, validation against a field definition, the API
//! representation of stored values, and conversion between field types.

use chrono::{DateTime, NaiveDate, Utc};

use crate::{FieldDefinition, FieldIssue, FieldType, IssueCode};

/// A value of one field of one record, in its storage form.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    /// Text-like types, picklist values, lookup ids.
    Text(String),
    /// `INTEGER`, and decimal types as integers scaled by `10^scale`.
    Int(i64),
    Bool(bool),
    Date(NaiveDate),
    DateTime(DateTime<Utc>),
    /// `JSON`, and `MULTI_PICKLIST` as an array of option values.
    Json(serde_json::Value),
}

/// A record's values keyed by column. Hashed with foldhash rather than the standard library's
/// SipHash: the keys are the object's column names, not input chosen to collide, and every
/// record of a batch or a page builds and reads such a map.
pub type Values = std::collections::HashMap<String, Value, foldhash::fast::RandomState>;

/// A value in its API representation (`Value::as_json`): decimals as exact strings, dates as
/// ISO 8601, `JSON` as itself.
#[derive(Debug, Clone, Copy)]
pub struct AsJson<'a> {
    value: &'a Value,
    field: &'a FieldDefinition,
}

impl serde::Serialize for AsJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.value {
            Value::Null => s.serialize_unit(),
            Value::Text(t) => s.serialize_str(t),
            Value::Int(i) if self.field.field_type.is_decimal() => {
                s.serialize_str(&format_decimal(*i, self.field.effective_scale()))
            }
            Value::Int(i) => s.serialize_i64(*i),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Date(d) => s.collect_str(&d.format("%Y-%m-%d")),
            Value::DateTime(d) => s.serialize_str(&d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            Value::Json(v) => v.serialize(s),
        }
    }
}

fn issue(field: &FieldDefinition, code: IssueCode, message: impl Into<String>) -> FieldIssue {
    FieldIssue::new(field.name.as_str(), code, message)
}

fn type_error(field: &FieldDefinition, expected: &str) -> FieldIssue {
    issue(field, IssueCode::InvalidType, format!("expected {expected}"))
}

/// Parses a decimal string (`"-12.5"`) into an integer scaled by `10^scale`. Refuses more
/// fraction digits than `scale` rather than rounding money silently.
pub fn parse_decimal(s: &str, scale: u8) -> Result<i64, String> {
    let s = s.trim();
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int_part, frac_part) = match digits.split_once('.') {
        Some((i, f)) => (i, f),
        None => (digits, ""),
    };
    if (int_part.is_empty() && frac_part.is_empty())
        || !int_part.chars().all(|c| c.is_ascii_digit())
        || !frac_part.chars().all(|c| c.is_ascii_digit())
    {
        return Err(format!("`{s}` is not a decimal number"));
    }
    let frac_trimmed = frac_part.trim_end_matches('0');
    if frac_trimmed.len() > usize::from(scale) {
        return Err(format!("`{s}` has more than {scale} digits after the decimal point"));
    }
    let too_big = || format!("`{s}` is too large");
    let mut units: i64 = 0;
    for c in int_part.chars().chain(frac_trimmed.chars()) {
        let d = i64::from(c as u8 - b'0');
        units = units.checked_mul(10).and_then(|u| u.checked_add(d)).ok_or_else(too_big)?;
    }
    for _ in frac_trimmed.len()..usize::from(scale) {
        units = units.checked_mul(10).ok_or_else(too_big)?;
    }
    Ok(if neg { -units } else { units })
}

/// Formats scaled units as a decimal string with exactly `scale` fraction digits.
pub fn format_decimal(units: i64, scale: u8) -> String {
    let neg = units < 0;
    let abs = units.unsigned_abs().to_string();
    let scale = usize::from(scale);
    let mut out = String::with_capacity(abs.len() + 3);
    if neg {
        out.push('-');
    }
    if scale == 0 {
        out.push_str(&abs);
        return out;
    }
    let padded = if abs.len() <= scale { format!("{}{abs}", "0".repeat(scale + 1 - abs.len())) } else { abs };
    let split = padded.len() - scale;
    out.push_str(&padded[..split]);
    out.push('.');
    out.push_str(&padded[split..]);
    out
}

/// Whether `s` looks like an email address (the rule of `EMAIL` fields and of user emails).
pub fn valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else { return false };
    !local.is_empty()
        && !domain.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(char::is_whitespace)
}

/// Whether a JSON value holds the NUL character in any string, keys included.
fn holds_nul(value: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match value {
        J::String(s) => s.contains('\0'),
        J::Array(items) => items.iter().any(holds_nul),
        J::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

fn valid_phone(s: &str) -> bool {
    let digits = s.chars().filter(char::is_ascii_digit).count();
    (3..=20).contains(&digits) && s.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c) || c == 'x')
}

fn valid_url(s: &str) -> bool {
    let rest = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.chars().any(char::is_whitespace))
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Coerces one API input value (JSON) for `field`, checking type, length, range and options.
    /// `null` coerces to `Value::Null`; whether that is allowed is the caller's `required` check.
    pub fn coerce(field: &FieldDefinition, input: &serde_json::Value) -> Result<Value, FieldIssue> {
        use serde_json::Value as J;
        if input.is_null() {
            return Ok(Value::Null);
        }
        if holds_nul(input) {
            // PostgreSQL's text and jsonb cannot store it, and no field means it: refused on
            // every engine alike rather than failing on one.
            return Err(issue(field, IssueCode::InvalidType, "must not contain the NUL character (U+0000)"));
        }
        let t = field.field_type;
        let value = match t {
            _ if t.is_textual() || t == FieldType::Lookup => {
                let J::String(s) = input else { return Err(type_error(field, "a string")) };
                Value::Text(s.clone())
            }
            FieldType::Integer => match input {
                J::Number(n) => match n.as_i64() {
                    Some(i) => Value::Int(i),
                    None => return Err(type_error(field, "a whole number within 64 bits")),
                },
                J::String(s) => {
                    s.trim().parse::<i64>().map(Value::Int).map_err(|_| type_error(field, "a whole number"))?
                }
                _ => return Err(type_error(field, "a whole number")),
            },
            _ if t.is_decimal() => {
                let text = match input {
                    J::Number(n) => n.to_string(),
                    J::String(s) => s.clone(),
                    _ => return Err(type_error(field, "a decimal number (string or number)")),
                };
                let units = parse_decimal(&text, field.effective_scale()).map_err(|m| {
                    let code = if m.contains("too large") { IssueCode::OutOfRange } else { IssueCode::InvalidType };
                    issue(field, code, m)
                })?;
                Value::Int(units)
            }
            FieldType::Boolean => match input {
                J::Bool(b) => Value::Bool(*b),
                _ => return Err(type_error(field, "true or false")),
            },
            FieldType::Date => {
                let J::String(s) = input else { return Err(type_error(field, "a date YYYY-MM-DD")) };
                NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .map(Value::Date)
                    .map_err(|_| type_error(field, "a date YYYY-MM-DD"))?
            }
            FieldType::Datetime => {
                let J::String(s) = input else { return Err(type_error(field, "an RFC 3339 date-time")) };
                DateTime::parse_from_rfc3339(s)
                    .map(|d| Value::DateTime(d.with_timezone(&Utc)))
                    .map_err(|_| type_error(field, "an RFC 3339 date-time"))?
            }
            FieldType::Picklist => {
                let J::String(s) = input else { return Err(type_error(field, "a picklist value")) };
                Value::Text(s.clone())
            }
            FieldType::MultiPicklist => {
                let J::Array(items) = input else { return Err(type_error(field, "a list of picklist values")) };
                let mut values: Vec<String> = Vec::with_capacity(items.len());
                for item in items {
                    let J::String(s) = item else { return Err(type_error(field, "a list of picklist values")) };
                    if !values.contains(s) {
                        values.push(s.clone());
                    }
                }
                Value::Json(J::Array(values.into_iter().map(J::String).collect()))
            }
            FieldType::Json => Value::Json(input.clone()),
            _ => return Err(type_error(field, "a supported value")),
        };
        value.check(field)?;
        Ok(value)
    }

    /// Checks a typed value against the field's constraints (length, format, options).
    pub fn check(&self, field: &FieldDefinition) -> Result<(), FieldIssue> {
        let t = field.field_type;
        match self {
            Value::Text(s) if t.is_textual() => {
                if let Some(max) = field.effective_max_length()
                    && s.chars().count() > max as usize
                {
                    return Err(issue(field, IssueCode::TooLong, format!("must be at most {max} characters")));
                }
                let ok = match t {
                    FieldType::Email => valid_email(s),
                    FieldType::Phone => valid_phone(s),
                    FieldType::Url => valid_url(s),
                    _ => true,
                };
                if !ok {
                    return Err(type_error(field, &format!("a valid {}", t.as_str().to_lowercase())));
                }
            }
            Value::Text(s) if t == FieldType::Picklist => match field.option(s) {
                Some(o) if o.active => {}
                Some(_) => return Err(issue(field, IssueCode::InvalidOption, format!("option `{s}` is retired"))),
                None => return Err(issue(field, IssueCode::InvalidOption, format!("`{s}` is not an option"))),
            },
            Value::Json(serde_json::Value::Array(items)) if t == FieldType::MultiPicklist => {
                for item in items {
                    let s = item.as_str().unwrap_or_default();
                    match field.option(s) {
                        Some(o) if o.active => {}
                        _ => {
                            return Err(issue(
                                field,
                                IssueCode::InvalidOption,
                                format!("`{s}` is not an active option"),
                            ));
                        }
                    }
                }
            }
            Value::Json(v)
                if t == FieldType::Json && serde_json::to_string(v).map(|s| s.len()).unwrap_or(0) > 1_048_576 =>
            {
                return Err(issue(field, IssueCode::TooLong, "JSON values are limited to 1 MiB"));
            }
            _ => {}
        }
        Ok(())
    }

    /// The API (JSON) representation of a stored value.
    pub fn to_json(&self, field: &FieldDefinition) -> serde_json::Value {
        // Serialising these values into a `serde_json::Value` cannot fail: no map keys.
        serde_json::to_value(self.as_json(field)).unwrap_or(serde_json::Value::Null)
    }

    /// The API representation of `to_json`, serialised where it is written (an audit image's
    /// text) rather than built as a `serde_json::Value` first.
    pub fn as_json<'a>(&'a self, field: &'a FieldDefinition) -> AsJson<'a> {
        AsJson { value: self, field }
    }

    /// Converts a stored value of `from` into the storage form of `to` for a type change,
    /// checking the new constraints; `Err` says why this value cannot follow.
    pub fn convert(&self, from: &FieldDefinition, to: &FieldDefinition) -> Result<Value, FieldIssue> {
        use serde_json::Value as J;
        if self.is_null() {
            return Ok(Value::Null);
        }
        let (a, b) = (from.field_type, to.field_type);
        let converted = match (self, b) {
            (Value::Int(units), FieldType::Integer) if a.is_decimal() => {
                let factor = 10_i64.pow(u32::from(from.effective_scale()));
                if units % factor != 0 {
                    return Err(issue(
                        to,
                        IssueCode::OutOfRange,
                        format!("{} has a fraction", format_decimal(*units, from.effective_scale())),
                    ));
                }
                Value::Int(units / factor)
            }
            (Value::Int(i), y) if y.is_decimal() => {
                let text = if a.is_decimal() { format_decimal(*i, from.effective_scale()) } else { i.to_string() };
                Value::coerce(to, &J::String(text))?
            }
            (Value::Date(d), FieldType::Datetime) => {
                Value::DateTime(d.and_hms_opt(0, 0, 0).map(|n| n.and_utc()).unwrap_or_default())
            }
            (Value::DateTime(d), FieldType::Date) => Value::Date(d.date_naive()),
            (Value::Text(s), FieldType::MultiPicklist) => Value::coerce(to, &J::Array(vec![J::String(s.clone())]))?,
            (Value::Json(J::Array(items)), FieldType::Picklist) => match items.as_slice() {
                [] => Value::Null,
                [one] => Value::coerce(to, one)?,
                _ => return Err(issue(to, IssueCode::InvalidOption, "holds more than one option")),
            },
            (Value::Text(s), FieldType::Integer | FieldType::Boolean | FieldType::Date | FieldType::Datetime) => {
                let json = match b {
                    FieldType::Boolean => match s.trim().to_lowercase().as_str() {
                        "true" | "yes" | "1" => J::Bool(true),
                        "false" | "no" | "0" => J::Bool(false),
                        _ => return Err(type_error(to, "true/false text")),
                    },
                    _ => J::String(s.trim().to_string()),
                };
                Value::coerce(to, &json)?
            }
            (Value::Text(s), _) => Value::coerce(to, &J::String(s.clone()))?,
            (other, FieldType::Text | FieldType::LongText) => {
                let text = match other.to_json(from) {
                    J::String(s) => s,
                    v => v.to_string(),
                };
                Value::coerce(to, &J::String(text))?
            }
            _ => return Err(type_error(to, to.field_type.as_str())),
        };
        Ok(converted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FieldName, PicklistOption};
    use serde_json::json;

    fn field(t: FieldType) -> FieldDefinition {
        let mut f = FieldDefinition::new(FieldName::new("f").unwrap(), "F", t);
        if matches!(t, FieldType::Picklist | FieldType::MultiPicklist) {
            f.options = vec![
                PicklistOption { value: "new".into(), label: "新".into(), active: true },
                PicklistOption { value: "old".into(), label: "Old".into(), active: false },
            ];
        }
        f
    }

    #[test]
    fn the_nul_character_is_refused_in_every_type_that_holds_text() {
        for (t, input) in [
            (FieldType::Text, json!("a\u{0}b")),
            (FieldType::Lookup, json!("\u{0}")),
            (FieldType::Json, json!({"k": ["x", "\u{0}"]})),
            (FieldType::Json, json!({"k\u{0}": 1})),
            (FieldType::MultiPicklist, json!(["new", "\u{0}"])),
        ] {
            let e = Value::coerce(&field(t), &input).unwrap_err();
            assert_eq!(e.code, IssueCode::InvalidType, "{t:?}");
        }
        assert!(Value::coerce(&field(FieldType::Json), &json!({"k": "\\0"})).is_ok());
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(parse_decimal("1234.5", 2), Ok(123_450));
        assert_eq!(parse_decimal("-0.05", 2), Ok(-5));
        assert_eq!(parse_decimal("1.230", 2), Ok(123));
        assert!(parse_decimal("1.234", 2).is_err());
        assert!(parse_decimal("abc", 2).is_err());
        assert!(parse_decimal("99999999999999999999", 2).is_err());
        assert_eq!(format_decimal(123_450, 2), "1234.50");
        assert_eq!(format_decimal(-5, 2), "-0.05");
        assert_eq!(format_decimal(7, 0), "7");
        let f = field(FieldType::Currency);
        assert_eq!(Value::coerce(&f, &json!(0.1)).unwrap(), Value::Int(10));
        assert_eq!(Value::coerce(&f, &json!("0.20")).unwrap().to_json(&f), json!("0.20"));
    }

    #[test]
    fn every_value_has_one_api_representation() {
        let date = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        let at = date.and_hms_milli_opt(9, 30, 0, 250).unwrap().and_utc();
        let cases = [
            (FieldType::Text, Value::Null, json!(null)),
            (FieldType::Text, Value::Text("客户 \"A\"\n".into()), json!("客户 \"A\"\n")),
            (FieldType::Integer, Value::Int(-42), json!(-42)),
            (FieldType::Currency, Value::Int(-5), json!("-0.05")),
            (FieldType::Boolean, Value::Bool(true), json!(true)),
            (FieldType::Date, Value::Date(date), json!("2026-12-01")),
            (FieldType::Datetime, Value::DateTime(at), json!("2026-12-01T09:30:00.250Z")),
            (FieldType::MultiPicklist, Value::Json(json!(["new"])), json!(["new"])),
        ];
        for (t, value, expected) in cases {
            let f = field(t);
            assert_eq!(value.to_json(&f), expected, "{t:?}");
            let text = serde_json::to_string(&value.as_json(&f)).unwrap();
            assert_eq!(serde_json::from_str::<serde_json::Value>(&text).unwrap(), expected, "{t:?}");
        }
    }

    #[test]
    fn validates_formats_and_lengths() {
        let email = field(FieldType::Email);
        assert!(Value::coerce(&email, &json!("li@example.com")).is_ok());
        assert_eq!(Value::coerce(&email, &json!("nope")).unwrap_err().code, IssueCode::InvalidType);
        let mut text = field(FieldType::Text);
        text.max_length = Some(3);
        assert_eq!(Value::coerce(&text, &json!("客户名称")).unwrap_err().code, IssueCode::TooLong);
        assert!(Value::coerce(&text, &json!("客户名")).is_ok());
        assert_eq!(Value::coerce(&text, &json!(5)).unwrap_err().code, IssueCode::InvalidType);
    }

    #[test]
    fn picklists_refuse_unknown_and_retired_options() {
        let p = field(FieldType::Picklist);
        assert!(Value::coerce(&p, &json!("new")).is_ok());
        assert_eq!(Value::coerce(&p, &json!("old")).unwrap_err().code, IssueCode::InvalidOption);
        assert_eq!(Value::coerce(&p, &json!("zzz")).unwrap_err().code, IssueCode::InvalidOption);
        let m = field(FieldType::MultiPicklist);
        assert_eq!(Value::coerce(&m, &json!(["new", "new"])).unwrap(), Value::Json(json!(["new"])));
    }

    #[test]
    fn converts_between_types_or_says_why_not() {
        let int = field(FieldType::Integer);
        let dec = field(FieldType::Decimal);
        assert_eq!(Value::Int(3).convert(&int, &dec).unwrap(), Value::Int(300));
        assert_eq!(Value::Int(300).convert(&dec, &int).unwrap(), Value::Int(3));
        assert!(Value::Int(301).convert(&dec, &int).is_err());
        let text = field(FieldType::Text);
        assert_eq!(Value::Text("42".into()).convert(&text, &int).unwrap(), Value::Int(42));
        assert!(Value::Text("forty".into()).convert(&text, &int).is_err());
        assert_eq!(Value::Int(300).convert(&dec, &text).unwrap(), Value::Text("3.00".into()));
    }
}

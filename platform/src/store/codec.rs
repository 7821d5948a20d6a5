//! Mapping between typed record values and SQL values and rows.

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::{DbBackend, QueryResult};
use sea_query::Value as SqlValue;
use tessera_metadata::{FieldDefinition, FieldType, Value};

use super::{StoreError, StoreResult};

/// How a column is stored, which decides binding of nulls and decoding of rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    Text,
    Int,
    Bool,
    Date,
    DateTime,
    Json,
}

impl Storage {
    pub fn of(t: FieldType) -> Storage {
        match t {
            FieldType::Integer | FieldType::Decimal | FieldType::Currency | FieldType::Percent => Storage::Int,
            FieldType::Boolean => Storage::Bool,
            FieldType::Date => Storage::Date,
            FieldType::Datetime => Storage::DateTime,
            FieldType::Json | FieldType::MultiPicklist => Storage::Json,
            _ => Storage::Text,
        }
    }

    /// Storage of a system column.
    pub fn of_system(column: &str) -> Option<Storage> {
        match column {
            "id" | "owner_id" | "created_by" | "updated_by" => Some(Storage::Text),
            "created_at" | "updated_at" | "deleted_at" => Some(Storage::DateTime),
            "version" => Some(Storage::Int),
            _ => None,
        }
    }

    pub fn null(self) -> SqlValue {
        match self {
            Storage::Text => SqlValue::String(None),
            Storage::Int => SqlValue::BigInt(None),
            Storage::Bool => SqlValue::Bool(None),
            Storage::Date => SqlValue::ChronoDate(None),
            Storage::DateTime => SqlValue::ChronoDateTimeUtc(None),
            Storage::Json => SqlValue::Json(None),
        }
    }
}

/// The storage of a field's column.
pub fn storage(field: &FieldDefinition) -> Storage {
    Storage::of(field.field_type)
}

/// A value ready to bind into a column of the given storage.
pub fn to_sql(value: &Value, storage: Storage) -> SqlValue {
    match value {
        Value::Null => storage.null(),
        Value::Text(s) => SqlValue::String(Some(s.clone())),
        Value::Int(i) => SqlValue::BigInt(Some(*i)),
        Value::Bool(b) => SqlValue::Bool(Some(*b)),
        Value::Date(d) => SqlValue::ChronoDate(Some(*d)),
        Value::DateTime(d) => SqlValue::ChronoDateTimeUtc(Some(*d)),
        Value::Json(j) => SqlValue::Json(Some(Box::new(j.clone()))),
    }
}

fn corrupt(column: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("column `{column}`: {e}"))
}

/// Reads column `idx` of a row as a typed value.
pub fn decode(row: &QueryResult, idx: usize, storage: Storage, backend: DbBackend, column: &str) -> StoreResult<Value> {
    let v = match storage {
        Storage::Text => row.try_get_by_index::<Option<String>>(idx).map(|v| v.map(Value::Text)),
        Storage::Int => row.try_get_by_index::<Option<i64>>(idx).map(|v| v.map(Value::Int)),
        Storage::Bool => row.try_get_by_index::<Option<bool>>(idx).map(|v| v.map(Value::Bool)),
        Storage::Date => row.try_get_by_index::<Option<NaiveDate>>(idx).map(|v| v.map(Value::Date)),
        Storage::DateTime => row.try_get_by_index::<Option<DateTime<Utc>>>(idx).map(|v| v.map(Value::DateTime)),
        Storage::Json => match backend {
            DbBackend::Postgres => row.try_get_by_index::<Option<serde_json::Value>>(idx).map(|v| v.map(Value::Json)),
            _ => {
                let text = row.try_get_by_index::<Option<String>>(idx).map_err(|e| corrupt(column, e))?;
                return match text {
                    None => Ok(Value::Null),
                    Some(t) => serde_json::from_str(&t).map(Value::Json).map_err(|e| corrupt(column, e)),
                };
            }
        },
    };
    Ok(v.map_err(|e| corrupt(column, e))?.unwrap_or(Value::Null))
}

//! Api names of objects and fields: validated newtypes and the GraphQL spellings derived from them.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::MetadataError;

/// Columns every object table carries; no admin field may take these names.
pub const SYSTEM_FIELDS: &[&str] =
    &["id", "owner", "owner_id", "created_at", "updated_at", "created_by", "updated_by", "version", "deleted_at"];

/// Words refused as api names: SQL keywords that make hand-written SQL painful, and names the
/// generated GraphQL API uses for its own arguments and result fields.
const RESERVED: &[&str] = &[
    "all",
    "and",
    "any",
    "as",
    "asc",
    "avg",
    "between",
    "by",
    "case",
    "check",
    "column",
    "count",
    "create",
    "cursor",
    "default",
    "delete",
    "desc",
    "distinct",
    "drop",
    "edges",
    "else",
    "end",
    "except",
    "exists",
    "false",
    "filter",
    "for",
    "foreign",
    "from",
    "grant",
    "group",
    "having",
    "in",
    "index",
    "insert",
    "intersect",
    "into",
    "is",
    "join",
    "key",
    "like",
    "limit",
    "max",
    "min",
    "mutation",
    "node",
    "nodes",
    "not",
    "null",
    "offset",
    "on",
    "or",
    "order",
    "page_info",
    "primary",
    "query",
    "references",
    "select",
    "sum",
    "subscription",
    "table",
    "then",
    "to",
    "total_count",
    "true",
    "typename",
    "union",
    "unique",
    "update",
    "user",
    "using",
    "values",
    "when",
    "where",
    "with",
];

/// Object names that would collide with types the data API always defines.
const RESERVED_OBJECTS: &[&str] = &[
    "date",
    "date_time",
    "decimal",
    "json",
    "boolean",
    "string",
    "int",
    "float",
    "id",
    "role",
    "me",
    "sort_direction",
];

fn validate_api_name(name: &str) -> Result<(), MetadataError> {
    let bad = |reason: &str| Err(MetadataError::InvalidName { name: name.to_string(), reason: reason.to_string() });
    if name.is_empty() {
        return bad("must not be empty");
    }
    if name.len() > 48 {
        return bad("must be at most 48 characters");
    }
    let mut chars = name.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_lowercase()) {
        return bad("must start with a lower-case ASCII letter (snake_case)");
    }
    if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return bad("may contain only lower-case ASCII letters, digits and `_` (snake_case)");
    }
    if name.contains("__") || name.ends_with('_') {
        return bad("must not contain `__` or end with `_`");
    }
    if name.starts_with("sys_") || name.starts_with("tessera") {
        return bad("the prefixes `sys_` and `tessera` are reserved for the platform");
    }
    if RESERVED.contains(&name) {
        return bad("is a reserved word");
    }
    Ok(())
}

macro_rules! api_name {
    ($(#[$doc:meta])* $ty:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $ty(String);

        impl $ty {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<$ty> for String {
            fn from(v: $ty) -> String {
                v.0
            }
        }

        impl TryFrom<String> for $ty {
            type Error = MetadataError;
            fn try_from(v: String) -> Result<Self, MetadataError> {
                $ty::new(&v)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

api_name!(
    /// The api name of an object (`opportunity`); its table is `obj_<name>`.
    ObjectName
);
api_name!(
    /// The api name of a field (`close_date`).
    FieldName
);

impl ObjectName {
    pub fn new(name: &str) -> Result<Self, MetadataError> {
        validate_api_name(name)?;
        if RESERVED_OBJECTS.contains(&name) {
            return Err(MetadataError::InvalidName {
                name: name.to_string(),
                reason: "is reserved for a built-in type of the API".to_string(),
            });
        }
        Ok(ObjectName(name.to_string()))
    }

    /// The SQL table holding this object's records.
    pub fn table(&self) -> String {
        format!("{OBJECT_TABLE_PREFIX}{}", self.0)
    }
}

impl FieldName {
    pub fn new(name: &str) -> Result<Self, MetadataError> {
        validate_api_name(name)?;
        if SYSTEM_FIELDS.contains(&name) {
            return Err(MetadataError::InvalidName {
                name: name.to_string(),
                reason: "clashes with a system field".to_string(),
            });
        }
        Ok(FieldName(name.to_string()))
    }
}

/// What every object's table name starts with (`obj_opportunity`).
pub const OBJECT_TABLE_PREFIX: &str = "obj_";

/// `close_date` → `closeDate`.
pub fn camel_case(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// `sales_order` → `SalesOrder`.
pub fn pascal_case(snake: &str) -> String {
    let camel = camel_case(snake);
    let mut chars = camel.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_snake_case_names() {
        assert!(ObjectName::new("sales_order").is_ok());
        assert!(FieldName::new("close_date2").is_ok());
    }

    #[test]
    fn rejects_bad_names_with_reasons() {
        for bad in ["", "Account", "1st", "a-b", "a__b", "a_", "select", "sys_x", "名字"] {
            let err = ObjectName::new(bad).err();
            assert!(err.is_some(), "{bad} accepted");
        }
        assert!(ObjectName::new(&"a".repeat(49)).is_err());
        assert!(ObjectName::new(&"a".repeat(48)).is_ok());
        let err = FieldName::new("created_at").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("system field"), "{err}");
    }

    #[test]
    fn derives_graphql_spellings() {
        assert_eq!(camel_case("close_date"), "closeDate");
        assert_eq!(pascal_case("sales_order"), "SalesOrder");
        assert_eq!(camel_case("field_1"), "field1");
    }
}

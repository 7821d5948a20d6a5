//! Indexes over several fields of an object, declared by an admin for the queries their users
//! run most (a filter on one field sorted by another, a uniqueness rule across fields).

use serde::{Deserialize, Serialize};

use crate::{FieldName, MetadataError, ObjectDefinition};

/// Most fields one index may cover.
pub const MAX_INDEX_FIELDS: usize = 5;
/// Most indexes one object may declare.
pub const MAX_INDEXES: usize = 20;

/// An index over one or more fields, in order. A non-unique index also ends with the record
/// id, the last key of every sort, so a filter on its first fields sorted by the next ones is
/// answered by walking the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexDefinition {
    pub name: FieldName,
    pub fields: Vec<FieldName>,
    /// No two records may share the values of all these fields (empty values aside).
    #[serde(default)]
    pub unique: bool,
}

impl IndexDefinition {
    /// The columns indexed, in order.
    pub fn columns(&self, object: &ObjectDefinition) -> Vec<String> {
        let mut out: Vec<String> =
            self.fields.iter().filter_map(|f| object.field(f.as_str())).map(|f| f.column()).collect();
        if !self.unique {
            out.push("id".into());
        }
        out
    }

    /// Whether the index covers the field `name`.
    pub fn covers(&self, name: &str) -> bool {
        self.fields.iter().any(|f| f.as_str() == name)
    }
}

/// Checks an object's indexes against its fields.
pub(crate) fn validate_indexes(object: &ObjectDefinition) -> Result<(), MetadataError> {
    if object.indexes.len() > MAX_INDEXES {
        return Err(MetadataError::Invalid(format!("object `{}` may have at most {MAX_INDEXES} indexes", object.name)));
    }
    let mut names = std::collections::HashSet::new();
    for ix in &object.indexes {
        let invalid = |msg: String| Err(MetadataError::Invalid(format!("index `{}`: {msg}", ix.name)));
        if !names.insert(ix.name.as_str()) {
            return Err(MetadataError::Conflict(format!(
                "object `{}` already has an index `{}`",
                object.name, ix.name
            )));
        }
        if ix.fields.is_empty() || ix.fields.len() > MAX_INDEX_FIELDS {
            return invalid(format!("an index covers 1 to {MAX_INDEX_FIELDS} fields"));
        }
        let mut seen = std::collections::HashSet::new();
        for name in &ix.fields {
            if !seen.insert(name.as_str()) {
                return invalid(format!("field `{name}` is listed twice"));
            }
            let Some(f) = object.field(name.as_str()) else {
                return invalid(format!("`{name}` is not a field of `{}`", object.name));
            };
            if !f.field_type.is_indexable() {
                return invalid(format!("{} fields cannot be indexed", f.field_type.as_str()));
            }
            if f.is_encrypted() {
                return invalid(format!(
                    "`{name}` is encrypted: its ciphertext cannot be indexed (a searchable field has a blind index)"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FieldDefinition, FieldType, ObjectName};

    fn object(indexes: Vec<IndexDefinition>) -> ObjectDefinition {
        let field = |n: &str, t| FieldDefinition::new(FieldName::new(n).unwrap(), n, t);
        ObjectDefinition {
            name: ObjectName::new("contact").unwrap(),
            plural_name: ObjectName::new("contacts").unwrap(),
            label: "Contact".into(),
            plural_label: "Contacts".into(),
            description: None,
            fields: vec![
                field("region", FieldType::Text),
                field("last_name", FieldType::Text),
                field("notes", FieldType::Json),
            ],
            scripts: vec![],
            indexes,
        }
    }

    fn index(name: &str, fields: &[&str]) -> IndexDefinition {
        IndexDefinition {
            name: FieldName::new(name).unwrap(),
            fields: fields.iter().map(|f| FieldName::new(f).unwrap()).collect(),
            unique: false,
        }
    }

    #[test]
    fn ends_a_non_unique_index_with_the_id() {
        let o = object(vec![index("by_region", &["region", "last_name"])]);
        assert!(o.validate().is_ok());
        assert_eq!(o.indexes[0].columns(&o), ["region", "last_name", "id"]);
        let mut unique = index("u", &["region", "last_name"]);
        unique.unique = true;
        assert_eq!(unique.columns(&o), ["region", "last_name"]);
    }

    #[test]
    fn refuses_unknown_repeated_and_unindexable_fields() {
        for bad in [
            vec![index("a", &["nope"])],
            vec![index("a", &["region", "region"])],
            vec![index("a", &["notes"])],
            vec![index("a", &[])],
            vec![index("a", &["region"]), index("a", &["last_name"])],
        ] {
            assert!(object(bad).validate().is_err());
        }
    }
}

//! Object definitions.

use serde::{Deserialize, Serialize};

use crate::{
    FieldDefinition, FieldName, IndexDefinition, MetadataError, ObjectName, ScriptDefinition, ScriptHook, camel_case,
    pascal_case,
};

/// An admin-defined object: its names, labels and fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectDefinition {
    pub name: ObjectName,
    pub plural_name: ObjectName,
    pub label: String,
    pub plural_label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub fields: Vec<FieldDefinition>,
    /// Validation rules, triggers and actions, run by the record pipeline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scripts: Vec<ScriptDefinition>,
    /// Indexes over several fields, declared by an admin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub indexes: Vec<IndexDefinition>,
}

/// Most fields one object may have: keeps rows and generated types a sane size.
pub const MAX_FIELDS: usize = 400;

impl ObjectDefinition {
    pub fn field(&self, name: &str) -> Option<&FieldDefinition> {
        self.fields.iter().find(|f| f.name.as_str() == name)
    }

    pub fn field_mut(&mut self, name: &str) -> Option<&mut FieldDefinition> {
        self.fields.iter_mut().find(|f| f.name.as_str() == name)
    }

    /// Finds a field by its GraphQL name (`closeDate`).
    pub fn field_by_graphql(&self, name: &str) -> Option<&FieldDefinition> {
        self.fields.iter().find(|f| f.graphql_name() == name)
    }

    pub fn script(&self, name: &str) -> Option<&ScriptDefinition> {
        self.scripts.iter().find(|s| s.name.as_str() == name)
    }

    /// The active scripts of one hook in the order they run (`order`, then name).
    pub fn active_scripts(&self, hook: ScriptHook) -> Vec<&ScriptDefinition> {
        let mut out: Vec<&ScriptDefinition> = self.scripts.iter().filter(|s| s.hook == hook && s.active).collect();
        out.sort_by(|a, b| (a.order, a.name.as_str()).cmp(&(b.order, b.name.as_str())));
        out
    }

    /// Formula fields in definition order: the order they are computed in, so a formula may
    /// use the result of one defined before it.
    pub fn formulas(&self) -> impl Iterator<Item = &FieldDefinition> {
        self.fields.iter().filter(|f| f.formula.is_some())
    }

    /// Formulas and scripts whose source reads `field` (`record.<field>`, `old.<field>`,
    /// `record["<field>"]`), as `formula `x`` / `script `y``: deleting the field would break them.
    pub fn uses_of(&self, field: &str) -> Vec<String> {
        let mut out = Vec::new();
        for f in self.formulas().filter(|f| f.name.as_str() != field) {
            if reads_field(f.formula.as_deref().unwrap_or_default(), field) {
                out.push(format!("formula `{}`", f.name));
            }
        }
        for s in &self.scripts {
            if reads_field(&s.source, field) {
                out.push(format!("script `{}`", s.name));
            }
        }
        out
    }

    pub fn table(&self) -> String {
        self.name.table()
    }

    /// The GraphQL type name (`SalesOrder`).
    pub fn type_name(&self) -> String {
        pascal_case(self.name.as_str())
    }

    /// The single-record query field (`salesOrder`).
    pub fn single_field(&self) -> String {
        camel_case(self.name.as_str())
    }

    /// The list query field (`salesOrders`).
    pub fn plural_field(&self) -> String {
        camel_case(self.plural_name.as_str())
    }

    /// Names this object adds to the generated data API: (type names, query fields, mutation
    /// fields). Two objects must not generate the same name.
    pub fn generated_names(&self) -> (Vec<String>, Vec<String>, Vec<String>) {
        let t = self.type_name();
        let mut types: Vec<String> = [
            "",
            "Connection",
            "Edge",
            "Filter",
            "OrderBy",
            "Input",
            "Field",
            "GroupField",
            "Upsert",
            "Aggregate",
            "Group",
            "Sum",
            "Avg",
            "Min",
            "Max",
        ]
        .iter()
        .map(|suffix| format!("{t}{suffix}"))
        .collect();
        for f in &self.fields {
            if matches!(f.field_type, crate::FieldType::Picklist | crate::FieldType::MultiPicklist) {
                let e = format!("{t}{}", pascal_case(f.name.as_str()));
                types.push(format!("{e}Filter"));
                types.push(e);
            }
        }
        let plural = self.plural_field();
        let queries =
            vec![self.single_field(), plural.clone(), format!("{plural}Aggregate"), format!("{plural}GroupBy")];
        let (one, many) = (pascal_case(self.name.as_str()), pascal_case(self.plural_name.as_str()));
        let mutations = ["create", "update", "delete", "restore", "destroy"]
            .iter()
            .map(|verb| format!("{verb}{one}"))
            .chain(["create", "update"].iter().map(|verb| format!("{verb}{many}")))
            .collect();
        (types, queries, mutations)
    }

    /// Checks labels and every field, and that no two fields share a column or GraphQL name.
    pub fn validate(&self) -> Result<(), MetadataError> {
        if self.name == self.plural_name {
            return Err(MetadataError::Invalid(format!("pluralName must differ from name `{}`", self.name)));
        }
        for (what, label) in [("label", &self.label), ("pluralLabel", &self.plural_label)] {
            if label.trim().is_empty() || label.chars().count() > 120 {
                return Err(MetadataError::Invalid(format!(
                    "object `{}`: {what} must have 1 to 120 characters",
                    self.name
                )));
            }
        }
        if self.fields.len() > MAX_FIELDS {
            return Err(MetadataError::Invalid(format!("object `{}` may have at most {MAX_FIELDS} fields", self.name)));
        }
        let mut columns = std::collections::HashMap::new();
        let mut gql = std::collections::HashMap::new();
        for system in crate::SYSTEM_FIELDS {
            columns.insert(system.to_string(), system.to_string());
            gql.insert(camel_case(system), system.to_string());
        }
        crate::script::validate_scripts(self.name.as_str(), &self.scripts)?;
        crate::index::validate_indexes(self)?;
        for f in &self.fields {
            f.validate()?;
            let mut gql_names = vec![f.graphql_name()];
            if f.field_type == crate::FieldType::Lookup {
                gql_names.push(f.graphql_id_name());
            }
            if let Some(other) = columns.insert(f.column(), f.name.to_string()) {
                return Err(clash(&f.name, &other));
            }
            for g in gql_names {
                if let Some(other) = gql.insert(g, f.name.to_string()) {
                    return Err(clash(&f.name, &other));
                }
            }
        }
        Ok(())
    }
}

fn clash(field: &FieldName, other: &str) -> MetadataError {
    MetadataError::Conflict(format!("field `{field}` clashes with `{other}`: both map to the same column or API name"))
}

/// Whether a script source reads `field` of `record` or `old` (a textual check: property access
/// with `.`, `?.` or an index with the quoted name).
fn reads_field(source: &str, field: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    for var in ["record", "old"] {
        let mut rest = source;
        while let Some(at) = rest.find(var) {
            let before_ok = source.len() - rest.len() + at == 0 || !rest[..at].ends_with(ident);
            let after = rest[at + var.len()..].trim_start();
            rest = &rest[at + var.len()..];
            if !before_ok {
                continue;
            }
            let after = after.strip_prefix('?').unwrap_or(after);
            if let Some(prop) = after.strip_prefix('.') {
                let prop = prop.trim_start();
                let name: String = prop.chars().take_while(|c| ident(*c)).collect();
                if name == field {
                    return true;
                }
            } else if let Some(index) = after.strip_prefix('[') {
                let index = index.trim_start();
                if index.starts_with(&format!("\"{field}\"")) || index.starts_with(&format!("`{field}`")) {
                    return true;
                }
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::reads_field;

    #[test]
    fn finds_reads_of_a_field_in_sources() {
        assert!(reads_field("record.price * record.qty", "qty"));
        assert!(reads_field("if old?.amount > 1 { }", "amount"));
        assert!(reads_field("record [\"price\"]", "price"));
        assert!(!reads_field("record.price_list", "price"));
        assert!(!reads_field("my_record.price", "price"));
        assert!(!reads_field("let price = 1;", "price"));
    }
}

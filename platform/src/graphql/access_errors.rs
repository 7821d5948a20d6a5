//! A caller's schema leaves out what they may not see, so GraphQL validation reports a hidden
//! field as unknown. The API promises `FORBIDDEN` naming the field instead: this module
//! recognises validation errors about names that exist in the full metadata but not in the
//! caller's view and rewrites them. Genuine typos stay `BAD_USER_INPUT`.

use async_graphql::{ErrorExtensionValues, Response};
use tessera_metadata::{AccessProfile, Action, FieldAccess, ObjectDefinition, Registry, pascal_case};

/// `(type, name)` of a validation error about an unknown name, in the messages async-graphql
/// uses for output fields, input object fields and enum values (pinned by the permission tests).
fn unknown_name(message: &str) -> Option<(&str, &str)> {
    let patterns: [(&str, &str, bool); 3] = [
        ("Unknown field \"", " on type ", false),
        ("unknown field \"", " of type ", false),
        ("enumeration type \"", " does not contain the value ", true),
    ];
    patterns.iter().find_map(|(start, middle, type_first)| {
        let at = message.find(start)?;
        let rest = &message[at + start.len() - 1..];
        let mut parts = rest.split('"').skip(1);
        let first = parts.next()?;
        if parts.next()? != *middle {
            return None;
        }
        let second = parts.next()?;
        Some(if *type_first { (first, second) } else { (second, first) })
    })
}

/// Suffixes of the generated types derived from an object's type name.
const SUFFIXES: [&str; 14] = [
    "",
    "GroupField",
    "OrderBy",
    "Filter",
    "Input",
    "Upsert",
    "Group",
    "Field",
    "Sum",
    "Avg",
    "Min",
    "Max",
    "Connection",
    "Aggregate",
];

/// The first root field of the request's mutation: a caller who may run no mutation at all has
/// a schema without a mutation type, and validation then names no field.
fn first_mutation_field(query: &str) -> Option<String> {
    use async_graphql::parser::types::{DocumentOperations, OperationType, Selection};
    let doc = async_graphql::parser::parse_query(query).ok()?;
    let ops: Vec<_> = match &doc.operations {
        DocumentOperations::Single(op) => vec![op],
        DocumentOperations::Multiple(map) => map.values().collect(),
    };
    let op = ops.into_iter().find(|op| op.node.ty == OperationType::Mutation)?;
    op.node.selection_set.node.items.iter().find_map(|item| match &item.node {
        Selection::Field(f) => Some(f.node.name.node.to_string()),
        _ => None,
    })
}

/// Rewrites validation errors about names the caller may not see into `FORBIDDEN`.
pub fn explain_forbidden(response: &mut Response, query: &str, registry: &Registry, access: &AccessProfile) {
    if access.is_admin() {
        return;
    }
    for error in &mut response.errors {
        let named = if error.message.starts_with("Schema is not configured for mutations") {
            first_mutation_field(query).map(|name| ("Mutation".to_string(), name))
        } else {
            unknown_name(&error.message).map(|(t, n)| (t.to_string(), n.to_string()))
        };
        let Some(denial) = named.and_then(|(type_name, name)| denial(registry, access, &type_name, &name)) else {
            continue;
        };
        error.message = denial;
        let mut ext = error.extensions.take().unwrap_or_else(ErrorExtensionValues::default);
        ext.set("code", "FORBIDDEN");
        error.extensions = Some(ext);
    }
    // Validation may report the missing mutation type once per visit; say it once.
    response.errors.dedup_by(|a, b| a.message == b.message && a.locations == b.locations);
}

fn no_records(object: &ObjectDefinition, action: Action) -> String {
    format!("you may not {} `{}` records", action.as_str(), object.name)
}

/// Why `name` on `type_name` is missing from the caller's schema, if access is the reason.
fn denial(registry: &Registry, access: &AccessProfile, type_name: &str, name: &str) -> Option<String> {
    if type_name == "Query" || type_name == "Mutation" {
        return registry.objects().find_map(|o| {
            let action = root_action(o, name)?;
            (!access.object(o.name.as_str()).allows(action)).then(|| no_records(o, action))
        });
    }
    SUFFIXES.iter().find_map(|suffix| {
        let prefix = type_name.strip_suffix(suffix)?;
        let object = registry.objects().find(|o| o.type_name() == prefix)?;
        let grant = access.object(object.name.as_str());
        if !grant.allows(Action::Read) {
            return Some(no_records(object, Action::Read));
        }
        if let Some(f) = object.fields.iter().find(|f| f.graphql_name() == name || f.graphql_id_name() == name) {
            if grant.field(f.name.as_str()) < FieldAccess::Read {
                return Some(format!("you may not read field `{}` of `{}`", f.name, object.name));
            }
            let target = f.target.as_ref().and_then(|t| registry.object(t.as_str()))?;
            return (!access.object(target.name.as_str()).allows(Action::Read))
                .then(|| no_records(target, Action::Read));
        }
        // `sum`/`avg`/`min`/`max` vanish when every field they apply to is hidden.
        if suffix.ends_with("Aggregate") || suffix.ends_with("Group") {
            let applies = |f: &&tessera_metadata::FieldDefinition| match name {
                "sum" | "avg" => f.field_type.is_numeric(),
                "min" | "max" => f.field_type.is_ordered(),
                _ => false,
            };
            let hidden: Vec<String> = object
                .fields
                .iter()
                .filter(applies)
                .filter(|f| grant.field(f.name.as_str()) < FieldAccess::Read)
                .map(|f| format!("`{}`", f.name))
                .collect();
            if !hidden.is_empty() {
                return Some(format!("you may not read field {} of `{}`", hidden.join(", "), object.name));
            }
        }
        let rel = registry.reverse_relations(object.name.as_str()).iter().find(|r| r.name == name)?;
        let source = registry.object(rel.source.as_str())?;
        let sgrant = access.object(source.name.as_str());
        if !sgrant.allows(Action::Read) {
            Some(no_records(source, Action::Read))
        } else {
            (sgrant.field(rel.field.as_str()) < FieldAccess::Read)
                .then(|| format!("you may not read field `{}` of `{}`", rel.field, source.name))
        }
    })
}

/// The action a root field of the data API performs on its object.
fn root_action(object: &ObjectDefinition, name: &str) -> Option<Action> {
    let single = pascal_case(object.name.as_str());
    let plural = pascal_case(object.plural_name.as_str());
    let reads = [
        object.single_field(),
        object.plural_field(),
        format!("{}Aggregate", object.plural_field()),
        format!("{}GroupBy", object.plural_field()),
    ];
    if reads.iter().any(|r| r == name) {
        return Some(Action::Read);
    }
    let verbs = [("create", Action::Create), ("update", Action::Update), ("delete", Action::Delete)];
    for (verb, action) in verbs {
        if name == format!("{verb}{single}") || name == format!("{verb}{plural}") {
            return Some(action);
        }
    }
    (name == format!("restore{single}") || name == format!("destroy{single}")).then_some(Action::Delete)
}

#[cfg(test)]
mod tests {
    use super::unknown_name;

    #[test]
    fn recognises_unknown_name_messages() {
        assert_eq!(unknown_name(r#"Unknown field "revenue" on type "Contact"."#), Some(("Contact", "revenue")));
        assert_eq!(
            unknown_name(r#"Invalid value for argument "filter", unknown field "revenue" of type "ContactFilter""#),
            Some(("ContactFilter", "revenue"))
        );
        assert_eq!(
            unknown_name(
                r#"Invalid value for argument "groupBy", enumeration type "ContactGroupField" does not contain the value "revenue""#
            ),
            Some(("ContactGroupField", "revenue"))
        );
        assert_eq!(unknown_name("Syntax error"), None);
    }
}

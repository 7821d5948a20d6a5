//! The immutable snapshot of all metadata that requests read.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::{FieldDefinition, FieldType, MetadataError, ObjectDefinition, ObjectName, camel_case, pascal_case};

/// A lookup seen from its target: `account.contacts` for `contact.account`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReverseRelation {
    /// GraphQL field name on the target type (`contacts` or `contactsByBillingAccount`).
    pub name: String,
    pub source: ObjectName,
    /// The lookup field on the source object.
    pub field: String,
    /// Its column (`account_id`).
    pub column: String,
}

/// Every object definition at one metadata version.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    pub version: i64,
    objects: BTreeMap<String, Arc<ObjectDefinition>>,
    reverse: BTreeMap<String, Vec<ReverseRelation>>,
}

impl Registry {
    /// Builds and cross-checks a snapshot: every object valid, names unique across objects,
    /// every lookup target present.
    pub fn new(version: i64, objects: Vec<ObjectDefinition>) -> Result<Registry, MetadataError> {
        let mut map = BTreeMap::new();
        let mut api_names: BTreeMap<String, String> = BTreeMap::new();
        for o in objects {
            o.validate()?;
            for n in [o.name.to_string(), o.plural_name.to_string()] {
                if let Some(other) = api_names.insert(n.clone(), o.name.to_string()) {
                    return Err(MetadataError::Conflict(format!(
                        "object `{}`: name `{n}` is already used by object `{other}`",
                        o.name
                    )));
                }
            }
            map.insert(o.name.to_string(), Arc::new(o));
        }
        check_generated_names(&map)?;
        let mut reverse: BTreeMap<String, Vec<ReverseRelation>> = BTreeMap::new();
        for o in map.values() {
            let lookups: Vec<&FieldDefinition> =
                o.fields.iter().filter(|f| f.field_type == FieldType::Lookup).collect();
            for f in &lookups {
                let Some(target) = &f.target else { continue };
                if !map.contains_key(target.as_str()) {
                    return Err(MetadataError::Invalid(format!(
                        "field `{}.{}`: target object `{target}` does not exist",
                        o.name, f.name
                    )));
                }
                let same_target = lookups.iter().filter(|g| g.target == f.target).count();
                let name = if same_target > 1 {
                    format!("{}By{}", camel_case(o.plural_name.as_str()), pascal_case(f.name.as_str()))
                } else {
                    camel_case(o.plural_name.as_str())
                };
                reverse.entry(target.to_string()).or_default().push(ReverseRelation {
                    name,
                    source: o.name.clone(),
                    field: f.name.to_string(),
                    column: f.column(),
                });
            }
        }
        for (target, relations) in &reverse {
            let Some(t) = map.get(target) else { continue };
            for r in relations {
                let clash = t.fields.iter().any(|f| f.graphql_name() == r.name || f.graphql_id_name() == r.name)
                    || relations.iter().filter(|x| x.name == r.name).count() > 1;
                if clash {
                    return Err(MetadataError::Conflict(format!(
                        "reverse relation `{}` on `{target}` (from `{}.{}`) clashes with another field",
                        r.name, r.source, r.field
                    )));
                }
            }
        }
        Ok(Registry { version, objects: map, reverse })
    }

    pub fn object(&self, name: &str) -> Option<&Arc<ObjectDefinition>> {
        self.objects.get(name)
    }

    pub fn require(&self, name: &str) -> Result<&Arc<ObjectDefinition>, MetadataError> {
        self.object(name).ok_or_else(|| MetadataError::UnknownObject(name.to_string()))
    }

    pub fn objects(&self) -> impl Iterator<Item = &Arc<ObjectDefinition>> {
        self.objects.values()
    }

    /// Lookups from other objects that point at `target`.
    pub fn reverse_relations(&self, target: &str) -> &[ReverseRelation] {
        self.reverse.get(target).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The definitions, for building the next snapshot.
    pub fn definitions(&self) -> Vec<ObjectDefinition> {
        self.objects.values().map(|o| (**o).clone()).collect()
    }
}

/// Types every data API defines, which no object may generate.
const BUILT_IN_TYPES: &[&str] = &[
    "Query",
    "Mutation",
    "Me",
    "PageInfo",
    "SortOrder",
    "StringFilter",
    "IDFilter",
    "IntFilter",
    "DecimalFilter",
    "BooleanFilter",
    "DateFilter",
    "DateTimeFilter",
    "NullFilter",
    "Decimal",
    "Date",
    "DateTime",
    "JSON",
    "String",
    "Int",
    "Float",
    "Boolean",
    "ID",
];

/// Two objects (or an object and a built-in) must not generate the same GraphQL name, e.g.
/// object `contact_group` and the `ContactGroup` type of object `contact`.
fn check_generated_names(objects: &BTreeMap<String, Arc<ObjectDefinition>>) -> Result<(), MetadataError> {
    let mut seen: BTreeMap<(u8, String), String> = BTreeMap::new();
    for t in BUILT_IN_TYPES {
        seen.insert((0, t.to_string()), "the built-in API".into());
    }
    seen.insert((1, "me".into()), "the built-in API".into());
    for o in objects.values() {
        let (types, queries, mutations) = o.generated_names();
        let all = types
            .into_iter()
            .map(|n| (0, n))
            .chain(queries.into_iter().map(|n| (1, n)))
            .chain(mutations.into_iter().map(|n| (2, n)));
        for key in all {
            if let Some(other) = seen.insert(key.clone(), format!("object `{}`", o.name)) {
                if other == format!("object `{}`", o.name) {
                    continue;
                }
                return Err(MetadataError::Conflict(format!(
                    "object `{}` would generate the API name `{}`, already used by {other}",
                    o.name, key.1
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FieldName, ObjectName};

    fn object(name: &str, plural: &str) -> ObjectDefinition {
        ObjectDefinition {
            name: ObjectName::new(name).unwrap(),
            plural_name: ObjectName::new(plural).unwrap(),
            label: name.into(),
            plural_label: plural.into(),
            description: None,
            fields: vec![],
            scripts: vec![],
            indexes: vec![],
        }
    }

    fn lookup(name: &str, target: &str) -> FieldDefinition {
        let mut f = FieldDefinition::new(FieldName::new(name).unwrap(), name, FieldType::Lookup);
        f.target = Some(ObjectName::new(target).unwrap());
        f
    }

    #[test]
    fn names_reverse_relations_after_the_source_plural() {
        let account = object("account", "accounts");
        let mut contact = object("contact", "contacts");
        contact.fields.push(lookup("account", "account"));
        let mut order = object("sales_order", "sales_orders");
        order.fields.push(lookup("billing_account", "account"));
        order.fields.push(lookup("shipping_account", "account"));
        let r = Registry::new(1, vec![account, contact, order]).unwrap();
        let names: Vec<_> = r.reverse_relations("account").iter().map(|x| x.name.clone()).collect();
        assert_eq!(names, ["contacts", "salesOrdersByBillingAccount", "salesOrdersByShippingAccount"]);
    }

    #[test]
    fn refuses_dangling_lookup_and_name_clashes() {
        let mut contact = object("contact", "contacts");
        contact.fields.push(lookup("account", "account"));
        assert!(Registry::new(1, vec![contact.clone()]).is_err());
        let clash = object("contacts", "contact_list");
        let err = Registry::new(1, vec![object("account", "accounts"), contact, clash]).unwrap_err();
        assert!(err.to_string().contains("already used"), "{err}");
        let mut dup = object("lead", "leads");
        dup.fields.push(lookup("company", "lead"));
        dup.fields.push(FieldDefinition::new(FieldName::new("company_id").unwrap(), "x", FieldType::Text));
        assert!(Registry::new(1, vec![dup]).is_err());
    }

    #[test]
    fn refuses_objects_whose_generated_api_names_collide() {
        let err = Registry::new(1, vec![object("contact", "contacts"), object("contact_group", "contact_groups")])
            .unwrap_err();
        assert!(err.to_string().contains("ContactGroup"), "{err}");
        assert!(Registry::new(1, vec![object("sort_order", "sort_orders")]).is_err());
        assert!(Registry::new(1, vec![object("account", "accounts"), object("contact", "contacts")]).is_ok());
    }
}

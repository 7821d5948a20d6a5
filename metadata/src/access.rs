//! Access rules as plain data: what a role may do with an object (`ObjectPermission`) and with
//! each of its fields (`FieldAccess`), and the effective access of a caller (`AccessProfile`),
//! the union of all their roles. The platform compiles a profile into SQL and into the schema
//! it generates for the caller; nothing here does I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ObjectDefinition;

/// Which records of an object a permission covers. Ordered: `Own` ⊂ `Team` ⊂ `All`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Scope {
    /// Records the caller owns.
    Own,
    /// Records owned by the caller or by anyone reporting to them, directly or indirectly.
    Team,
    /// Every record.
    All,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Own => "OWN",
            Scope::Team => "TEAM",
            Scope::All => "ALL",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "OWN" => Some(Scope::Own),
            "TEAM" => Some(Scope::Team),
            "ALL" => Some(Scope::All),
            _ => None,
        }
    }
}

/// An operation on the records of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Read,
    Create,
    Update,
    Delete,
}

impl Action {
    pub const ALL: [Action; 4] = [Action::Read, Action::Create, Action::Update, Action::Delete];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// What one role may do with one object, as an admin sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ObjectPermission {
    pub read: bool,
    pub create: bool,
    pub update: bool,
    pub delete: bool,
    /// The records that `read`, `update` and `delete` cover.
    pub scope: Scope,
}

impl ObjectPermission {
    pub fn allows(&self, action: Action) -> bool {
        match action {
            Action::Read => self.read,
            Action::Create => self.create,
            Action::Update => self.update,
            Action::Delete => self.delete,
        }
    }

    /// Whether it grants nothing (the same as no permission at all).
    pub fn is_empty(&self) -> bool {
        !(self.read || self.create || self.update || self.delete)
    }
}

/// What a role may do with one field. Ordered: `Hidden` < `Read` < `UnmaskedRead` < `Edit`.
/// On a sensitive field, `Read` shows the masked value; `UnmaskedRead` and `Edit` the value
/// itself. On other fields `UnmaskedRead` is the same as `Read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FieldAccess {
    Hidden,
    Read,
    UnmaskedRead,
    Edit,
}

impl FieldAccess {
    pub fn as_str(self) -> &'static str {
        match self {
            FieldAccess::Hidden => "HIDDEN",
            FieldAccess::Read => "READ",
            FieldAccess::UnmaskedRead => "UNMASKED_READ",
            FieldAccess::Edit => "EDIT",
        }
    }

    pub fn parse(s: &str) -> Option<FieldAccess> {
        match s {
            "HIDDEN" => Some(FieldAccess::Hidden),
            "READ" => Some(FieldAccess::Read),
            "UNMASKED_READ" => Some(FieldAccess::UnmaskedRead),
            "EDIT" => Some(FieldAccess::Edit),
            _ => None,
        }
    }
}

/// The rules one role has: object permissions and explicit field permissions, both keyed by
/// api name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleRules {
    pub objects: BTreeMap<String, ObjectPermission>,
    /// `(object, field)` → access.
    pub fields: BTreeMap<(String, String), FieldAccess>,
}

/// A caller's effective access to one object: the union of their roles.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ObjectAccess {
    /// The widest scope of a role that may read, or `None` when no role may.
    pub read: Option<Scope>,
    pub create: bool,
    pub update: Option<Scope>,
    pub delete: Option<Scope>,
    /// Every field's effective access (fields left out are hidden).
    pub fields: BTreeMap<String, FieldAccess>,
    /// Sensitive fields the caller may read unmasked: those a role grants `UNMASKED_READ` or
    /// `EDIT` explicitly. Without an explicit grant a sensitive field is masked, whatever the
    /// object permission allows.
    pub unmasked: std::collections::BTreeSet<String>,
}

impl ObjectAccess {
    pub fn scope(&self, action: Action) -> Option<Scope> {
        match action {
            Action::Read => self.read,
            Action::Create => self.create.then_some(Scope::All),
            Action::Update => self.update,
            Action::Delete => self.delete,
        }
    }

    pub fn field(&self, field: &str) -> FieldAccess {
        self.fields.get(field).copied().unwrap_or(FieldAccess::Hidden)
    }

    /// Whether the caller sees a sensitive field's values unmasked.
    pub fn unmasked(&self, field: &str) -> bool {
        self.unmasked.contains(field)
    }
}

/// What a caller may see and do: everything (the built-in `admin` role), or the union of their
/// roles' rules per object. Objects left out are invisible to the caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AccessProfile {
    Admin,
    Restricted(BTreeMap<String, ObjectAccess>),
}

/// The name of the built-in role that bypasses object, field and row checks.
pub const ADMIN_ROLE: &str = "admin";

impl AccessProfile {
    pub fn is_admin(&self) -> bool {
        matches!(self, AccessProfile::Admin)
    }

    /// The caller's access to an object.
    pub fn object(&self, object: &str) -> ObjectGrant<'_> {
        match self {
            AccessProfile::Admin => ObjectGrant::Unrestricted,
            AccessProfile::Restricted(objects) => match objects.get(object) {
                Some(access) => ObjectGrant::Limited(access),
                None => ObjectGrant::None,
            },
        }
    }

    /// Computes the union of the rules of `roles` (already expanded with the roles they
    /// inherit) over the objects of `objects`. A field without an explicit permission follows
    /// its object: editable if the role may update or create, readable if it may read.
    pub fn from_roles<'a>(
        roles: impl IntoIterator<Item = &'a RoleRules>,
        objects: impl IntoIterator<Item = &'a ObjectDefinition> + Clone,
    ) -> AccessProfile {
        let mut out: BTreeMap<String, ObjectAccess> = BTreeMap::new();
        for rules in roles {
            for object in objects.clone() {
                let name = object.name.as_str();
                let Some(perm) = rules.objects.get(name).filter(|p| !p.is_empty()) else { continue };
                let access = out.entry(name.to_string()).or_default();
                let widen = |current: Option<Scope>, allowed: bool| match (current, allowed) {
                    (c, false) => c,
                    (None, true) => Some(perm.scope),
                    (Some(c), true) => Some(c.max(perm.scope)),
                };
                access.read = widen(access.read, perm.read);
                access.create |= perm.create;
                access.update = widen(access.update, perm.update);
                access.delete = widen(access.delete, perm.delete);
                // Creating a record means setting its fields, so `create` allows editing them
                // too (on new records; updates still need `update`).
                let ceiling = if perm.update || perm.create {
                    FieldAccess::Edit
                } else if perm.read {
                    FieldAccess::Read
                } else {
                    FieldAccess::Hidden
                };
                for field in &object.fields {
                    let fname = field.name.as_str();
                    let explicit = rules.fields.get(&(name.to_string(), fname.to_string())).copied();
                    // An explicit permission narrows the object's, never widens it.
                    let granted = explicit.map_or(ceiling, |e| e.min(ceiling));
                    let slot = access.fields.entry(fname.to_string()).or_insert(FieldAccess::Hidden);
                    *slot = (*slot).max(granted);
                    if granted >= FieldAccess::Read && explicit.is_some_and(|e| e >= FieldAccess::UnmaskedRead) {
                        access.unmasked.insert(fname.to_string());
                    }
                }
            }
        }
        AccessProfile::Restricted(out)
    }
}

/// A caller's access to one object.
#[derive(Debug, Clone, Copy)]
pub enum ObjectGrant<'a> {
    /// Admin: every record, every field, every action.
    Unrestricted,
    Limited(&'a ObjectAccess),
    /// No access at all: the object is invisible.
    None,
}

impl ObjectGrant<'_> {
    /// The scope of an action, `Some(None)` meaning unrestricted, `None` meaning denied.
    pub fn scope(&self, action: Action) -> Option<Option<Scope>> {
        match self {
            ObjectGrant::Unrestricted => Some(None),
            ObjectGrant::Limited(a) => a.scope(action).map(|s| (s != Scope::All).then_some(s)),
            ObjectGrant::None => None,
        }
    }

    pub fn allows(&self, action: Action) -> bool {
        self.scope(action).is_some()
    }

    pub fn field(&self, field: &str) -> FieldAccess {
        match self {
            ObjectGrant::Unrestricted => FieldAccess::Edit,
            ObjectGrant::Limited(a) => a.field(field),
            ObjectGrant::None => FieldAccess::Hidden,
        }
    }

    /// Whether a sensitive field's values are shown unmasked (admins see every value).
    pub fn unmasked(&self, field: &str) -> bool {
        match self {
            ObjectGrant::Unrestricted => true,
            ObjectGrant::Limited(a) => a.unmasked(field),
            ObjectGrant::None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FieldDefinition, FieldName, FieldType, ObjectName};

    fn contact() -> ObjectDefinition {
        let field = |name: &str| FieldDefinition::new(FieldName::new(name).unwrap(), name, FieldType::Text);
        ObjectDefinition {
            name: ObjectName::new("contact").unwrap(),
            plural_name: ObjectName::new("contacts").unwrap(),
            label: "Contact".into(),
            plural_label: "Contacts".into(),
            description: None,
            fields: vec![field("name"), field("revenue")],
            scripts: vec![],
            indexes: vec![],
        }
    }

    fn perm(read: bool, update: bool, scope: Scope) -> ObjectPermission {
        ObjectPermission { read, create: false, update, delete: false, scope }
    }

    #[test]
    fn unions_roles_and_narrows_fields_by_explicit_permissions() {
        let objects = [contact()];
        let mut agent = RoleRules::default();
        agent.objects.insert("contact".into(), perm(true, false, Scope::Own));
        agent.fields.insert(("contact".into(), "revenue".into()), FieldAccess::Hidden);
        let AccessProfile::Restricted(p) = AccessProfile::from_roles([&agent], objects.iter()) else { panic!() };
        let c = &p["contact"];
        assert_eq!((c.read, c.update), (Some(Scope::Own), None));
        assert_eq!(c.field("name"), FieldAccess::Read);
        assert_eq!(c.field("revenue"), FieldAccess::Hidden);

        let mut manager = RoleRules::default();
        manager.objects.insert("contact".into(), perm(true, true, Scope::Team));
        // An explicit EDIT cannot exceed what the object permission allows elsewhere.
        manager.fields.insert(("contact".into(), "name".into()), FieldAccess::Read);
        let AccessProfile::Restricted(p) = AccessProfile::from_roles([&agent, &manager], objects.iter()) else {
            panic!()
        };
        let c = &p["contact"];
        assert_eq!((c.read, c.update), (Some(Scope::Team), Some(Scope::Team)));
        assert_eq!(c.field("revenue"), FieldAccess::Edit);
        assert_eq!(c.field("name"), FieldAccess::Read);
        assert!(c.unmasked.is_empty(), "nothing is unmasked without an explicit grant");
    }

    #[test]
    fn unmasks_only_on_explicit_grants_within_the_object_permission() {
        let objects = [contact()];
        let mut reader = RoleRules::default();
        reader.objects.insert("contact".into(), perm(true, false, Scope::All));
        reader.fields.insert(("contact".into(), "name".into()), FieldAccess::UnmaskedRead);
        reader.fields.insert(("contact".into(), "revenue".into()), FieldAccess::Edit);
        let AccessProfile::Restricted(p) = AccessProfile::from_roles([&reader], objects.iter()) else { panic!() };
        let c = &p["contact"];
        // Read-only on the object: an explicit EDIT is narrowed to reading, unmasked.
        assert_eq!((c.field("name"), c.field("revenue")), (FieldAccess::Read, FieldAccess::Read));
        assert!(c.unmasked("name") && c.unmasked("revenue"));

        let mut editor = RoleRules::default();
        editor.objects.insert("contact".into(), perm(true, true, Scope::All));
        editor.fields.insert(("contact".into(), "revenue".into()), FieldAccess::UnmaskedRead);
        let AccessProfile::Restricted(p) = AccessProfile::from_roles([&editor], objects.iter()) else { panic!() };
        let c = &p["contact"];
        assert_eq!(c.field("name"), FieldAccess::Edit);
        assert!(!c.unmasked("name"), "editing by default does not unmask");
        assert_eq!(c.field("revenue"), FieldAccess::UnmaskedRead);
        assert!(c.unmasked("revenue"));

        let mut none = RoleRules::default();
        none.fields.insert(("contact".into(), "name".into()), FieldAccess::UnmaskedRead);
        let p = AccessProfile::from_roles([&none], objects.iter());
        assert!(!p.object("contact").unmasked("name"), "a field grant never widens the object's");
    }

    #[test]
    fn denies_objects_without_permission() {
        let objects = [contact()];
        let p = AccessProfile::from_roles([&RoleRules::default()], objects.iter());
        assert!(matches!(p.object("contact"), ObjectGrant::None));
        assert!(AccessProfile::Admin.object("contact").allows(Action::Delete));
        let mut rules = RoleRules::default();
        rules.objects.insert("contact".into(), perm(false, false, Scope::All));
        let p = AccessProfile::from_roles([&rules], objects.iter());
        assert!(matches!(p.object("contact"), ObjectGrant::None));
    }
}

//! `PolicyEngine`: casbin decides what a role may do with an object (read, create, update,
//! delete, with the scope in the rule) and which roles a role inherits, from rules kept in
//! `sys_policy_rules`.
//!
//! Rules: `p, role, object, action, scope` — one per action a role may take on an object, all
//! with the same scope — and `g, child, parent` — the child has everything the parent has,
//! transitively. Every change is computed as rows to delete and insert, written in one store
//! transaction that bumps the access version, and checked (no inheritance cycle) and turned
//! into a complete new enforcer *inside* that transaction; only after the commit is the new
//! enforcer swapped in. So the rows, the version and what this node enforces change together
//! or not at all, and a change that another node committed meanwhile is picked up as well.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use casbin::{CoreApi, DefaultModel, DefaultRoleManager, Enforcer, MgmtApi, RbacApi};
use tessera_metadata::{ADMIN_ROLE, Action, ObjectPermission, Scope};
use tokio::sync::RwLock;

use super::casbin_adapter::PolicyRulesAdapter;
use crate::store::{PolicyChange, PolicyChangeEffect, PolicyRule, PolicyRuleFilter, Store, StoreError};

const MODEL: &str = r#"
[request_definition]
r = sub, obj, act

[policy_definition]
p = sub, obj, act, scope

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = g(r.sub, p.sub) && r.obj == p.obj && r.act == p.act
"#;

/// The longest role or object name a rule can hold (the width of the rule columns).
const MAX_NAME_CHARS: usize = 64;

/// casbin's default role manager stops following inheritance after 10 levels and then
/// silently answers "no". The role manager here is sized to the role graph instead (see
/// `build_enforcer`), never below this.
const MIN_HIERARCHY_LEVELS: usize = 10;

/// Failures of the policy engine. The first group are refusals whose message is for the user
/// (`BAD_USER_INPUT`); the rest are internal (logged, reported as `INTERNAL_SERVER_ERROR`).
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A role or object name that cannot name a rule.
    #[error(
        "`{name}` is not a valid {kind} name: it must be 1 to {MAX_NAME_CHARS} characters, without surrounding spaces or control characters"
    )]
    InvalidName { kind: &'static str, name: String },
    /// The built-in `admin` role has every permission; it has none to set.
    #[error("the `{ADMIN_ROLE}` role always has full access; its permissions cannot be changed")]
    AdminRole,
    /// Roles would inherit from themselves. `cycle` starts and ends with the same role.
    #[error("roles cannot inherit from each other in a cycle: {}", cycle.join(" → "))]
    InheritanceCycle { cycle: Vec<String> },

    #[error("policy storage failed: {0}")]
    Store(#[from] StoreError),
    #[error("policy engine failed: {0}")]
    Casbin(#[from] casbin::Error),
}

impl PolicyError {
    /// Whether the message is meant for the user (else it is an internal failure).
    pub fn is_user_error(&self) -> bool {
        matches!(self, PolicyError::InvalidName { .. } | PolicyError::AdminRole | PolicyError::InheritanceCycle { .. })
    }

    /// The stable error code at the API edge.
    pub fn code(&self) -> &'static str {
        if self.is_user_error() { "BAD_USER_INPUT" } else { "INTERNAL_SERVER_ERROR" }
    }
}

/// The role → object → action policy, with role inheritance, enforced by casbin.
pub struct PolicyEngine {
    store: Store,
    enforcer: RwLock<Enforcer>,
}

impl PolicyEngine {
    /// Loads every rule from the database.
    pub async fn load(store: Store) -> Result<PolicyEngine, PolicyError> {
        let enforcer = build_enforcer(PolicyRulesAdapter::new(store.clone())).await?;
        Ok(PolicyEngine { store, enforcer: RwLock::new(enforcer) })
    }

    /// Reloads rules from the database (another node changed them). On failure the rules
    /// enforced so far stay in force.
    pub async fn reload(&self) -> Result<(), PolicyError> {
        let mut enforcer = self.enforcer.write().await;
        *enforcer = build_enforcer(PolicyRulesAdapter::new(self.store.clone())).await?;
        Ok(())
    }

    /// Replaces the role's permission on the object; `None` or an empty permission removes it.
    pub async fn set_object_permission(
        &self,
        role: &str,
        object: &str,
        perm: Option<ObjectPermission>,
    ) -> Result<(), PolicyError> {
        check_name("role", role)?;
        check_name("object", object)?;
        if role == ADMIN_ROLE {
            return Err(PolicyError::AdminRole);
        }
        let add = perm
            .into_iter()
            .flat_map(|perm| {
                Action::ALL
                    .into_iter()
                    .filter(move |a| perm.allows(*a))
                    .map(move |a| PolicyRule::new("p", [role, object, a.as_str(), perm.scope.as_str()]))
            })
            .collect();
        self.change(PolicyChange { remove: vec![PolicyRuleFilter::ptype("p").value(0, role).value(1, object)], add })
            .await
    }

    /// The role's own (not inherited) permissions, by object.
    pub async fn object_permissions(&self, role: &str) -> BTreeMap<String, ObjectPermission> {
        let rules = self.enforcer.read().await.get_filtered_policy(0, vec![role.to_string()]);
        let mut out: BTreeMap<String, ObjectPermission> = BTreeMap::new();
        for rule in rules {
            let [_, object, action, scope] = rule.as_slice() else {
                tracing::warn!(?rule, "ignoring a policy rule of the wrong shape");
                continue;
            };
            let (Some(action), Some(scope)) = (Action::parse(action), Scope::parse(scope)) else {
                tracing::warn!(?rule, "ignoring a policy rule with an unknown action or scope");
                continue;
            };
            let perm = out.entry(object.clone()).or_insert(ObjectPermission {
                read: false,
                create: false,
                update: false,
                delete: false,
                scope,
            });
            // Rules of one permission share a scope; should stored rules disagree, the widest wins.
            perm.scope = perm.scope.max(scope);
            match action {
                Action::Read => perm.read = true,
                Action::Create => perm.create = true,
                Action::Update => perm.update = true,
                Action::Delete => perm.delete = true,
            }
        }
        out
    }

    /// Replaces the roles `role` inherits from; refuses a cycle with a clear error.
    pub async fn set_parents(&self, role: &str, parents: &[String]) -> Result<(), PolicyError> {
        check_name("role", role)?;
        let parents: BTreeSet<&str> = parents.iter().map(String::as_str).collect();
        for parent in &parents {
            check_name("role", parent)?;
        }
        let add = parents.into_iter().map(|parent| PolicyRule::new("g", [role, parent])).collect();
        self.change(PolicyChange { remove: vec![PolicyRuleFilter::ptype("g").value(0, role)], add }).await
    }

    /// The roles `role` inherits from directly, sorted.
    pub async fn parents(&self, role: &str) -> Vec<String> {
        let rules = self.enforcer.read().await.get_filtered_grouping_policy(0, vec![role.to_string()]);
        let parents: BTreeSet<String> = rules.into_iter().filter_map(|r| r.get(1).cloned()).collect();
        parents.into_iter().collect()
    }

    /// The given roles plus every role they inherit, transitively; sorted, deduplicated.
    pub async fn expand_roles(&self, roles: &[String]) -> Vec<String> {
        let enforcer = self.enforcer.read().await;
        expand(&enforcer, roles).into_iter().collect()
    }

    /// casbin's decision: may a user holding `roles` do `action` on `object`? (`admin`, held or
    /// inherited, always may.)
    pub async fn allows(&self, roles: &[String], object: &str, action: Action) -> bool {
        let enforcer = self.enforcer.read().await;
        if expand(&enforcer, roles).contains(ADMIN_ROLE) {
            return true;
        }
        roles.iter().any(|role| match enforcer.enforce((role.as_str(), object, action.as_str())) {
            Ok(allowed) => allowed,
            Err(e) => {
                tracing::error!(error = %e, role, object, "casbin could not decide; denying");
                false
            }
        })
    }

    /// Forgets every rule naming the role: its permissions, its parents, and its place as a
    /// parent of other roles (when the role is deleted).
    pub async fn remove_role(&self, role: &str) -> Result<(), PolicyError> {
        let remove = vec![
            PolicyRuleFilter::ptype("p").value(0, role),
            PolicyRuleFilter::ptype("g").value(0, role),
            PolicyRuleFilter::ptype("g").value(1, role),
        ];
        self.change(PolicyChange { remove, add: Vec::new() }).await
    }

    /// Forgets every permission on the object (when it is deleted).
    pub async fn remove_object(&self, object: &str) -> Result<(), PolicyError> {
        self.change(PolicyChange { remove: vec![PolicyRuleFilter::ptype("p").value(1, object)], add: Vec::new() }).await
    }

    /// Writes the change and swaps in an enforcer of the resulting rules, atomically (see the
    /// module comment). Holding the write lock throughout keeps changes on this node in order
    /// and readers from seeing the new enforcer before the rows are committed.
    async fn change(&self, change: PolicyChange) -> Result<(), PolicyError> {
        let mut enforcer = self.enforcer.write().await;
        let store = self.store.clone();
        let outcome = self
            .store
            .change_policy_rules(&change, |effect: &PolicyChangeEffect| {
                let rules = effect.rules.clone();
                async move {
                    if let Some(cycle) = find_cycle(&rules) {
                        return Err(PolicyError::InheritanceCycle { cycle });
                    }
                    build_enforcer(PolicyRulesAdapter::with_rules(store, rules)).await
                }
            })
            .await?;
        let (next, _effect) = outcome?;
        *enforcer = next;
        Ok(())
    }
}

/// A ready enforcer with the rules the adapter loads, saving nothing by itself.
async fn build_enforcer(adapter: PolicyRulesAdapter) -> Result<Enforcer, PolicyError> {
    let model = DefaultModel::from_str(MODEL).await?;
    let mut enforcer = Enforcer::new(model, adapter).await?;
    // Changes are written by `PolicyEngine::change`, in one transaction; never rule by rule.
    enforcer.enable_auto_save(false);
    // The role manager's breadth-first search advances at most one level per role it visits,
    // so a limit above the number of roles can never cut an inheritance chain short.
    let roles: BTreeSet<String> = enforcer.get_all_grouping_policy().into_iter().flatten().collect();
    let levels = (roles.len() + 1).max(MIN_HIERARCHY_LEVELS);
    enforcer.set_role_manager(Arc::new(parking_lot::RwLock::new(DefaultRoleManager::new(levels))))?;
    Ok(enforcer)
}

fn expand(enforcer: &Enforcer, roles: &[String]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for role in roles {
        out.insert(role.clone());
        out.extend(enforcer.get_implicit_roles_for_user(role, None));
    }
    out
}

fn check_name(kind: &'static str, name: &str) -> Result<(), PolicyError> {
    let count = name.chars().count();
    let ok = (1..=MAX_NAME_CHARS).contains(&count) && name.trim() == name && !name.chars().any(char::is_control);
    if ok { Ok(()) } else { Err(PolicyError::InvalidName { kind, name: name.to_string() }) }
}

/// A cycle among the `g` rules, as the path of roles from one back to itself, if any.
fn find_cycle(rules: &[PolicyRule]) -> Option<Vec<String>> {
    let mut parents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for rule in rules.iter().filter(|r| r.ptype == "g") {
        if let [child, parent] = rule.values.as_slice() {
            parents.entry(child.as_str()).or_default().push(parent.as_str());
        }
    }
    // Iterative depth-first search; `path` is the chain being explored, `done` the roles whose
    // ancestors are known to be free of cycles.
    let mut done: BTreeSet<&str> = BTreeSet::new();
    for &start in parents.keys() {
        if done.contains(start) {
            continue;
        }
        let mut path: Vec<(&str, usize)> = vec![(start, 0)];
        while let Some(&(role, next)) = path.last() {
            let Some(&parent) = parents.get(role).and_then(|p| p.get(next)) else {
                done.insert(role);
                path.pop();
                continue;
            };
            if let Some(top) = path.last_mut() {
                top.1 += 1;
            }
            if let Some(at) = path.iter().position(|(r, _)| *r == parent) {
                let mut cycle: Vec<String> = path[at..].iter().map(|(r, _)| r.to_string()).collect();
                cycle.push(parent.to_string());
                return Some(cycle);
            }
            if !done.contains(parent) {
                path.push((parent, 0));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(child: &str, parent: &str) -> PolicyRule {
        PolicyRule::new("g", [child, parent])
    }

    #[test]
    fn finds_inheritance_cycles() {
        assert_eq!(find_cycle(&[g("a", "b"), g("b", "c"), g("a", "c")]), None);
        assert_eq!(
            find_cycle(&[g("a", "b"), g("b", "c"), g("c", "a")]),
            Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
        );
        assert_eq!(find_cycle(&[g("x", "x")]), Some(vec!["x".into(), "x".into()]));
        assert!(find_cycle(&[g("a", "b"), g("c", "d"), g("d", "e"), g("e", "c")]).is_some());
    }

    #[test]
    fn rejects_unusable_names() {
        assert!(check_name("role", "sales_rep").is_ok());
        for bad in ["", " padded", "tab\tbed", &"x".repeat(65)] {
            assert!(matches!(check_name("role", bad), Err(PolicyError::InvalidName { .. })), "{bad:?}");
        }
    }
}

//! The casbin policy engine through real databases: rules persist in `sys_policy_rules`,
//! inheritance is transitive and acyclic, every change bumps the access version, and a change
//! either lands completely (rows, version, what is enforced) or not at all.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;

use sea_orm::{ConnectionTrait, Database};
use tessera_metadata::{ADMIN_ROLE, Action, ObjectPermission, Scope};
use tessera_platform::access::policy::{PolicyEngine, PolicyError};
use tessera_platform::store::Store;
use tessera_tests::{Backend, TestDatabase, backends};

/// Runs `body` once per backend with a fresh database, a store on it and an engine loaded
/// from it.
macro_rules! on_each_database {
    (|$db:ident, $store:ident, $engine:ident| $body:block) => {
        for backend in backends() {
            let $db = TestDatabase::create(backend).await;
            let $store = Store::connect(&$db.url).await.unwrap();
            let $engine = PolicyEngine::load($store.clone()).await.unwrap();
            $body
            $db.drop_database().await;
        }
    };
}

fn perm(actions: &str, scope: Scope) -> ObjectPermission {
    ObjectPermission {
        read: actions.contains('r'),
        create: actions.contains('c'),
        update: actions.contains('u'),
        delete: actions.contains('d'),
        scope,
    }
}

fn roles(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

async fn reopened(db: &TestDatabase) -> PolicyEngine {
    PolicyEngine::load(Store::connect(&db.url).await.unwrap()).await.unwrap()
}

#[tokio::test]
async fn persists_permissions_and_parents_across_a_reload_from_a_new_store() {
    on_each_database!(|db, store, engine| {
        engine.set_object_permission("sales_rep", "contact", Some(perm("rcu", Scope::Team))).await.unwrap();
        engine.set_object_permission("sales_rep", "account", Some(perm("r", Scope::Own))).await.unwrap();
        engine.set_object_permission("sales_manager", "contact", Some(perm("rcud", Scope::All))).await.unwrap();
        engine.set_parents("sales_manager", &roles(&["sales_rep"])).await.unwrap();

        let again = reopened(&db).await;
        let expected: BTreeMap<String, ObjectPermission> =
            [("account".to_string(), perm("r", Scope::Own)), ("contact".to_string(), perm("rcu", Scope::Team))].into();
        assert_eq!(again.object_permissions("sales_rep").await, expected, "[{:?}]", db.backend);
        assert_eq!(again.object_permissions("sales_manager").await["contact"], perm("rcud", Scope::All));
        assert_eq!(again.parents("sales_manager").await, roles(&["sales_rep"]));
        assert!(again.allows(&roles(&["sales_manager"]), "account", Action::Read).await);
        drop(store);
    });
}

#[tokio::test]
async fn replaces_a_permission_and_removes_it_when_empty() {
    on_each_database!(|db, store, engine| {
        engine.set_object_permission("agent", "case", Some(perm("rcud", Scope::All))).await.unwrap();
        engine.set_object_permission("agent", "case", Some(perm("r", Scope::Own))).await.unwrap();
        assert_eq!(engine.object_permissions("agent").await["case"], perm("r", Scope::Own));
        assert!(!engine.allows(&roles(&["agent"]), "case", Action::Delete).await);

        engine.set_object_permission("agent", "case", Some(perm("", Scope::All))).await.unwrap();
        assert!(engine.object_permissions("agent").await.is_empty(), "[{:?}]", db.backend);
        engine.set_object_permission("agent", "case", Some(perm("r", Scope::Own))).await.unwrap();
        engine.set_object_permission("agent", "case", None).await.unwrap();
        assert!(engine.object_permissions("agent").await.is_empty());
        assert!(store.policy_rules().await.unwrap().is_empty());
        assert!(!engine.allows(&roles(&["agent"]), "case", Action::Read).await);
    });
}

#[tokio::test]
async fn inherits_permissions_transitively() {
    on_each_database!(|db, store, engine| {
        engine.set_object_permission("employee", "contact", Some(perm("r", Scope::Own))).await.unwrap();
        engine.set_object_permission("sales_rep", "opportunity", Some(perm("rc", Scope::Own))).await.unwrap();
        engine.set_parents("sales_rep", &roles(&["employee"])).await.unwrap();
        engine.set_parents("sales_director", &roles(&["sales_manager"])).await.unwrap();
        engine.set_parents("sales_manager", &roles(&["sales_rep"])).await.unwrap();

        let director = roles(&["sales_director"]);
        assert_eq!(
            engine.expand_roles(&director).await,
            roles(&["employee", "sales_director", "sales_manager", "sales_rep"]),
            "[{:?}]",
            db.backend
        );
        assert!(engine.allows(&director, "contact", Action::Read).await);
        assert!(engine.allows(&director, "opportunity", Action::Create).await);
        assert!(!engine.allows(&director, "contact", Action::Update).await);
        // Inheritance runs one way: a parent gains nothing from its children.
        assert!(!engine.allows(&roles(&["employee"]), "opportunity", Action::Read).await);
        // Own permissions stay separate from inherited ones.
        assert!(engine.object_permissions("sales_director").await.is_empty());
        drop(store);
    });
}

#[tokio::test]
async fn follows_inheritance_deeper_than_casbins_default_ten_levels() {
    on_each_database!(|db, store, engine| {
        let chain: Vec<String> = (0..25).map(|i| format!("level_{i:02}")).collect();
        for pair in chain.windows(2) {
            engine.set_parents(&pair[0], &pair[1..]).await.unwrap();
        }
        let top = &chain[chain.len() - 1];
        engine.set_object_permission(top, "contact", Some(perm("r", Scope::All))).await.unwrap();

        let bottom = roles(&[chain[0].as_str()]);
        assert!(engine.allows(&bottom, "contact", Action::Read).await, "[{:?}]", db.backend);
        assert_eq!(engine.expand_roles(&bottom).await, chain);
        assert!(reopened(&db).await.allows(&bottom, "contact", Action::Read).await);
        drop(store);
    });
}

#[tokio::test]
async fn refuses_an_inheritance_cycle_and_keeps_the_rules() {
    on_each_database!(|db, store, engine| {
        engine.set_parents("a", &roles(&["b"])).await.unwrap();
        engine.set_parents("b", &roles(&["c"])).await.unwrap();
        let version = store.stored_access_version().await.unwrap();

        let err = engine.set_parents("c", &roles(&["a"])).await.unwrap_err();
        let PolicyError::InheritanceCycle { cycle } = &err else {
            panic!("[{:?}] unexpected error {err:?}", db.backend)
        };
        assert_eq!(cycle, &roles(&["a", "b", "c", "a"]));
        assert!(err.is_user_error());
        assert_eq!(err.code(), "BAD_USER_INPUT");
        assert!(err.to_string().contains("a → b → c → a"), "{err}");

        let err = engine.set_parents("d", &roles(&["d"])).await.unwrap_err();
        assert!(matches!(err, PolicyError::InheritanceCycle { .. }), "{err:?}");

        assert!(engine.parents("c").await.is_empty());
        assert_eq!(store.stored_access_version().await.unwrap(), version);
        assert!(reopened(&db).await.parents("c").await.is_empty());
        assert_eq!(engine.expand_roles(&roles(&["a"])).await, roles(&["a", "b", "c"]));
    });
}

#[tokio::test]
async fn replaces_the_parents_of_a_role() {
    on_each_database!(|db, store, engine| {
        engine.set_parents("rep", &roles(&["employee", "reader", "employee"])).await.unwrap();
        assert_eq!(engine.parents("rep").await, roles(&["employee", "reader"]), "[{:?}]", db.backend);
        engine.set_parents("rep", &roles(&["writer"])).await.unwrap();
        assert_eq!(engine.parents("rep").await, roles(&["writer"]));
        engine.set_parents("rep", &[]).await.unwrap();
        assert!(engine.parents("rep").await.is_empty());
        assert!(store.policy_rules().await.unwrap().is_empty());
    });
}

#[tokio::test]
async fn forgets_every_rule_naming_a_removed_role() {
    on_each_database!(|db, store, engine| {
        engine.set_object_permission("base", "contact", Some(perm("r", Scope::All))).await.unwrap();
        engine.set_object_permission("middle", "account", Some(perm("r", Scope::All))).await.unwrap();
        engine.set_parents("middle", &roles(&["base"])).await.unwrap();
        engine.set_parents("top", &roles(&["middle"])).await.unwrap();

        engine.remove_role("middle").await.unwrap();
        for engine in [&engine, &reopened(&db).await] {
            assert!(engine.object_permissions("middle").await.is_empty(), "[{:?}]", db.backend);
            assert!(engine.parents("middle").await.is_empty());
            assert!(engine.parents("top").await.is_empty());
            assert!(!engine.allows(&roles(&["top"]), "contact", Action::Read).await);
            assert!(engine.allows(&roles(&["base"]), "contact", Action::Read).await);
        }
        assert!(store.policy_rules().await.unwrap().iter().all(|r| !r.values.contains(&"middle".to_string())));
    });
}

#[tokio::test]
async fn forgets_every_permission_on_a_removed_object() {
    on_each_database!(|db, store, engine| {
        engine.set_object_permission("rep", "contact", Some(perm("rcud", Scope::Team))).await.unwrap();
        engine.set_object_permission("agent", "contact", Some(perm("r", Scope::Own))).await.unwrap();
        engine.set_object_permission("agent", "case", Some(perm("ru", Scope::Own))).await.unwrap();

        engine.remove_object("contact").await.unwrap();
        for engine in [&engine, &reopened(&db).await] {
            assert!(engine.object_permissions("rep").await.is_empty(), "[{:?}]", db.backend);
            assert_eq!(engine.object_permissions("agent").await.keys().collect::<Vec<_>>(), ["case"]);
            assert!(!engine.allows(&roles(&["rep", "agent"]), "contact", Action::Read).await);
        }
        drop(store);
    });
}

#[tokio::test]
async fn bumps_the_access_version_once_per_change() {
    on_each_database!(|db, store, engine| {
        assert_eq!(store.stored_access_version().await.unwrap(), 0, "[{:?}]", db.backend);
        engine.set_object_permission("rep", "contact", Some(perm("rcu", Scope::Team))).await.unwrap();
        assert_eq!(store.stored_access_version().await.unwrap(), 1);
        engine.set_parents("manager", &roles(&["rep"])).await.unwrap();
        assert_eq!(store.stored_access_version().await.unwrap(), 2);
        engine.remove_object("contact").await.unwrap();
        assert_eq!(store.stored_access_version().await.unwrap(), 3);
        engine.remove_role("rep").await.unwrap();
        assert_eq!(store.stored_access_version().await.unwrap(), 4);
        // Refused changes leave it alone.
        assert!(engine.set_object_permission(ADMIN_ROLE, "contact", Some(perm("r", Scope::All))).await.is_err());
        assert!(engine.set_object_permission("", "contact", None).await.is_err());
        assert!(engine.set_parents("x", &roles(&["x"])).await.is_err());
        assert_eq!(store.stored_access_version().await.unwrap(), 4);
    });
}

/// Makes every insert into `sys_policy_rules` fail, as a full disk or a lost connection would.
async fn break_rule_inserts(db: &TestDatabase, broken: bool) {
    let conn = Database::connect(&db.url).await.unwrap();
    let sql: &[&str] = match (db.backend, broken) {
        (Backend::Sqlite, true) => &[
            "CREATE TRIGGER fail_rule_inserts BEFORE INSERT ON sys_policy_rules BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
        ],
        (Backend::Sqlite, false) => &["DROP TRIGGER fail_rule_inserts"],
        (Backend::Postgres, true) => &[
            "CREATE FUNCTION fail_rule_inserts() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$",
            "CREATE TRIGGER fail_rule_inserts BEFORE INSERT ON sys_policy_rules FOR EACH ROW EXECUTE FUNCTION fail_rule_inserts()",
        ],
        (Backend::Postgres, false) => {
            &["DROP TRIGGER fail_rule_inserts ON sys_policy_rules", "DROP FUNCTION fail_rule_inserts()"]
        }
    };
    for statement in sql {
        conn.execute_unprepared(statement).await.unwrap();
    }
    conn.close().await.unwrap();
}

#[tokio::test]
async fn leaves_rules_version_and_decisions_unchanged_when_a_write_fails() {
    on_each_database!(|db, store, engine| {
        engine.set_object_permission("rep", "contact", Some(perm("r", Scope::Own))).await.unwrap();
        engine.set_parents("manager", &roles(&["rep"])).await.unwrap();
        let rules = store.policy_rules().await.unwrap();
        let version = store.stored_access_version().await.unwrap();

        break_rule_inserts(&db, true).await;
        // The old rule is deleted before the failing insert: the rollback must bring it back.
        let err = engine.set_object_permission("rep", "contact", Some(perm("rcud", Scope::All))).await.unwrap_err();
        assert!(matches!(err, PolicyError::Store(_)), "[{:?}] unexpected error {err:?}", db.backend);
        assert!(!err.is_user_error());
        assert!(engine.set_parents("manager", &roles(&["director"])).await.is_err());

        assert_eq!(store.policy_rules().await.unwrap(), rules);
        assert_eq!(store.stored_access_version().await.unwrap(), version);
        assert_eq!(engine.object_permissions("rep").await["contact"], perm("r", Scope::Own));
        assert_eq!(engine.parents("manager").await, roles(&["rep"]));
        assert!(!engine.allows(&roles(&["manager"]), "contact", Action::Delete).await);
        assert!(engine.allows(&roles(&["manager"]), "contact", Action::Read).await);

        break_rule_inserts(&db, false).await;
        engine.set_object_permission("rep", "contact", Some(perm("rcud", Scope::All))).await.unwrap();
        assert!(engine.allows(&roles(&["manager"]), "contact", Action::Delete).await);
        assert_eq!(store.stored_access_version().await.unwrap(), version + 1);
    });
}

#[tokio::test]
async fn reloads_rules_that_another_node_changed() {
    on_each_database!(|db, store, engine| {
        let other_node = reopened(&db).await;
        other_node.set_object_permission("rep", "contact", Some(perm("r", Scope::Team))).await.unwrap();
        assert!(!engine.allows(&roles(&["rep"]), "contact", Action::Read).await, "[{:?}]", db.backend);
        engine.reload().await.unwrap();
        assert!(engine.allows(&roles(&["rep"]), "contact", Action::Read).await);

        // A change made here also brings in what the other node committed before it.
        other_node.set_parents("manager", &roles(&["rep"])).await.unwrap();
        engine.set_object_permission("rep", "account", Some(perm("r", Scope::Own))).await.unwrap();
        assert_eq!(engine.parents("manager").await, roles(&["rep"]));
        drop(store);
    });
}

#[tokio::test]
async fn serialises_concurrent_changes_from_two_nodes() {
    on_each_database!(|db, store, engine| {
        let nodes = [Arc::new(engine), Arc::new(reopened(&db).await)];
        let mut tasks = Vec::new();
        for i in 0..8 {
            let node = nodes[i % 2].clone();
            tasks.push(tokio::spawn(async move {
                node.set_object_permission("rep", &format!("object_{i}"), Some(perm("r", Scope::All))).await
            }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(store.stored_access_version().await.unwrap(), 8, "[{:?}]", db.backend);
        assert_eq!(store.policy_rules().await.unwrap().len(), 8);
        nodes[0].reload().await.unwrap();
        assert_eq!(nodes[0].object_permissions("rep").await.len(), 8);
    });
}

#[tokio::test]
async fn treats_admin_as_allowed_everything_with_nothing_to_set() {
    on_each_database!(|db, store, engine| {
        assert!(engine.allows(&roles(&[ADMIN_ROLE]), "anything", Action::Delete).await, "[{:?}]", db.backend);
        let err = engine.set_object_permission(ADMIN_ROLE, "contact", Some(perm("r", Scope::All))).await.unwrap_err();
        assert!(matches!(err, PolicyError::AdminRole) && err.is_user_error(), "{err:?}");
        // A role that inherits from admin is an admin.
        engine.set_parents("super_user", &roles(&[ADMIN_ROLE])).await.unwrap();
        assert!(engine.allows(&roles(&["super_user"]), "contact", Action::Delete).await);
        assert!(!engine.allows(&roles(&["nobody"]), "contact", Action::Read).await);
        assert!(!engine.allows(&[], "contact", Action::Read).await);
        drop(store);
    });
}

#[tokio::test]
async fn allows_agrees_with_expanded_roles_and_their_own_permissions() {
    on_each_database!(|db, store, engine| {
        let objects = ["contact", "account", "case"];
        let all_roles = ["employee", "rep", "agent", "manager", "auditor"];
        engine.set_parents("rep", &roles(&["employee"])).await.unwrap();
        engine.set_parents("agent", &roles(&["employee"])).await.unwrap();
        engine.set_parents("manager", &roles(&["rep", "agent"])).await.unwrap();
        // A spread of permissions: each (role, object) gets a different set of actions.
        for (ri, role) in all_roles.iter().enumerate() {
            for (oi, object) in objects.iter().enumerate() {
                let mask = (ri * 7 + oi * 3) % 16;
                let actions: String = ['r', 'c', 'u', 'd']
                    .iter()
                    .enumerate()
                    .filter(|(bit, _)| mask & (1 << bit) != 0)
                    .map(|(_, a)| *a)
                    .collect();
                engine.set_object_permission(role, object, Some(perm(&actions, Scope::Own))).await.unwrap();
            }
        }
        for subset in 0..(1u32 << all_roles.len()) {
            let held: Vec<String> = all_roles
                .iter()
                .enumerate()
                .filter(|(i, _)| subset & (1 << i) != 0)
                .map(|(_, r)| r.to_string())
                .collect();
            let expanded = engine.expand_roles(&held).await;
            let mut own = Vec::new();
            for role in &expanded {
                own.push(engine.object_permissions(role).await);
            }
            for object in objects {
                for action in Action::ALL {
                    let expected = own.iter().any(|p| p.get(object).is_some_and(|p| p.allows(action)));
                    assert_eq!(
                        engine.allows(&held, object, action).await,
                        expected,
                        "[{:?}] {held:?} {action:?} {object}",
                        db.backend
                    );
                }
            }
        }
        drop(store);
    });
}

//! Integrity of what is stored and served, through HTTP on SQLite and PostgreSQL: a deleted
//! object takes its grants with it in one transaction, an upsert checks what its scripts set,
//! lookups cleared by a deletion are versioned and audited, aggregates and `like` patterns
//! answer alike on both engines, and a revoked grant is never served from a stale profile.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};
use tessera_metadata::{Action, Registry};
use tessera_platform::access::AccessService;
use tessera_platform::store::Store;
use tessera_tests::{Backend, TestServer, backends, each_backend, error_codes, field_errors};

/// Runs raw SQL on the server's database from outside, as an operator (or a fault) would.
async fn sql(t: &TestServer, statements: &[&str]) {
    let db = Database::connect(&t.database_url).await.unwrap();
    for s in statements {
        db.execute_unprepared(s).await.unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    db.close().await.ok();
}

/// Makes every deletion of a policy rule fail, as a crash or a lost connection in the middle
/// of a change would.
async fn refuse_rule_deletions(t: &TestServer, refuse: bool) {
    match (t.backend, refuse) {
        (Backend::Sqlite, true) => {
            sql(
                t,
                &["CREATE TRIGGER refuse_rule_deletes BEFORE DELETE ON sys_policy_rules \
                   BEGIN SELECT RAISE(ABORT, 'injected failure'); END"],
            )
            .await
        }
        (Backend::Sqlite, false) => sql(t, &["DROP TRIGGER refuse_rule_deletes"]).await,
        (Backend::Postgres, true) => {
            sql(
                t,
                &[
                    "CREATE FUNCTION refuse_rule_deletes() RETURNS trigger LANGUAGE plpgsql \
                     AS $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$",
                    "CREATE TRIGGER refuse_rule_deletes BEFORE DELETE ON sys_policy_rules \
                     FOR EACH ROW EXECUTE FUNCTION refuse_rule_deletes()",
                ],
            )
            .await
        }
        (Backend::Postgres, false) => sql(t, &["DROP TRIGGER refuse_rule_deletes ON sys_policy_rules"]).await,
    }
}

const ROLE: &str =
    "query($r: String!) { role(name: $r) { permissions { object read } fieldPermissions { object field access } } }";

#[tokio::test]
async fn deleting_an_object_removes_its_grants_in_the_same_transaction() {
    for backend in backends() {
        let t = TestServer::start(backend).await;
        t.object("gadget", "gadgets", vec![json!({"name": "label", "label": "Label", "type": "TEXT"})]).await;
        t.role("rep").await;
        t.grant("rep", "gadget", "read create", "ALL").await;
        t.field_access("rep", "gadget", "label", "READ").await;
        let (_, rep) = t.user("rep@example.com", &["rep"], None).await;
        t.data_ok("mutation { createGadget(data: {label: \"g\"}) { id } }", json!({})).await;
        let r = t.data_ok_as(&rep, "{ gadgets { totalCount nodes { label } } }", json!({})).await;
        assert_eq!(r["gadgets"]["totalCount"], 1, "the grant is in force");

        // The grants cannot be removed: the deletion fails as a whole, leaving the object, its
        // records and its grants as they were (never an object gone with its grants left).
        refuse_rule_deletions(&t, true).await;
        let r = t.meta("mutation { deleteObject(name: \"gadget\") }", json!({})).await;
        assert!(r.get("errors").is_some(), "[{backend:?}] {r}");
        refuse_rule_deletions(&t, false).await;
        let r = t.meta_ok("{ object(name: \"gadget\") { name } }", json!({})).await;
        assert_eq!(r["object"]["name"], "gadget", "[{backend:?}] the object is still there");
        let r = t.data_ok_as(&rep, "{ gadgets { totalCount nodes { label } } }", json!({})).await;
        assert_eq!(r["gadgets"]["nodes"], json!([{"label": "g"}]), "[{backend:?}]");
        let t = t.restart().await;
        let r = t.meta_ok(ROLE, json!({"r": "rep"})).await;
        assert_eq!(r["role"]["permissions"], json!([{"object": "gadget", "read": true}]), "[{backend:?}]");

        // Deleted for real, the object takes its grants along: one made again under the same
        // name grants the role nothing, on this node and on one started afresh.
        t.meta_ok("mutation { deleteObject(name: \"gadget\") }", json!({})).await;
        t.object("gadget", "gadgets", vec![json!({"name": "label", "label": "Label", "type": "TEXT"})]).await;
        t.data_ok("mutation { createGadget(data: {label: \"new\"}) { id } }", json!({})).await;
        let r = t.data_as(&rep, "{ gadgets { totalCount } }", json!({})).await;
        assert!(r.get("errors").is_some() && r["data"]["gadgets"].is_null(), "[{backend:?}] {r}");
        let t = t.restart().await;
        let r = t.meta_ok(ROLE, json!({"r": "rep"})).await;
        assert_eq!(r["role"], json!({"permissions": [], "fieldPermissions": []}), "[{backend:?}]");
        t.stop().await;
    }
}

#[tokio::test]
async fn an_upsert_that_updates_checks_what_its_scripts_set() {
    each_backend!(|t| {
        t.object("account", "accounts", vec![json!({"name": "name", "label": "Name", "type": "TEXT"})]).await;
        t.object(
            "deal",
            "deals",
            vec![
                json!({"name": "code", "label": "Code", "type": "TEXT", "unique": true}),
                json!({"name": "target", "label": "Target", "type": "TEXT"}),
                json!({"name": "account", "label": "Account", "type": "LOOKUP", "target": "account"}),
            ],
        )
        .await;
        t.meta_ok(
            "mutation($s: String!) { setScript(object: \"deal\", input: {name: \"route\", hook: BEFORE_SAVE, order: 0, source: $s}) { name } }",
            json!({"s": "if record.target != () { record.account = record.target; }"}),
        )
        .await;
        t.role("rep").await;
        t.grant("rep", "deal", "read create update", "OWN").await;
        t.grant("rep", "account", "read create", "OWN").await;
        let (_, rep) = t.user("rep@example.com", &["rep"], None).await;
        let create_account = "mutation($n: String!) { createAccount(data: {name: $n}) { id } }";
        let theirs = t.data_ok(create_account, json!({"n": "theirs"})).await["createAccount"]["id"].clone();
        let mine = t.data_ok_as(&rep, create_account, json!({"n": "mine"})).await["createAccount"]["id"].clone();
        t.data_ok_as(&rep, "mutation { createDeal(data: {code: \"D1\"}) { id } }", json!({})).await;

        let upsert = "mutation($d: [DealInput!]!) { createDeals(data: $d, upsert: {onConflict: [code], update: [target]}) { code accountId } }";
        // The rule routes the deal to an account the rep may see.
        let r = t.data_ok_as(&rep, upsert, json!({"d": [{"code": "D1", "target": mine}]})).await;
        assert_eq!(r["createDeals"], json!([{"code": "D1", "accountId": mine}]), "[{:?}]", t.backend);
        // An account out of the rep's scope, or none at all, is refused as an update would
        // refuse it, with the input's index, and nothing is written.
        let missing = "0190f0e2-0000-7000-8000-000000000000";
        for target in [theirs.clone(), json!(missing)] {
            let r = t.data_as(&rep, upsert, json!({"d": [{"code": "D2"}, {"code": "D1", "target": target}]})).await;
            assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "[{:?}] {r}", t.backend);
            assert_eq!(field_errors(&r), [(1, "account".to_string(), "NOT_FOUND".to_string())], "{r}");
        }
        let r = t.data_ok("{ deals { totalCount nodes { code accountId } } }", json!({})).await;
        assert_eq!(r["deals"]["totalCount"], 1, "[{:?}] {r}", t.backend);
        assert_eq!(r["deals"]["nodes"][0]["accountId"], mine, "[{:?}] {r}", t.backend);
    });
}

const AUDIT: &str =
    "query($id: String!) { auditLog(recordId: $id, first: 5) { actorId category action object before after } }";

#[tokio::test]
async fn clearing_lookups_to_a_removed_record_versions_and_audits_each_record() {
    each_backend!(|t| {
        t.object("account", "accounts", vec![json!({"name": "name", "label": "Name", "type": "TEXT"})]).await;
        t.object(
            "contact",
            "contacts",
            vec![
                json!({"name": "name", "label": "Name", "type": "TEXT"}),
                json!({"name": "account", "label": "Account", "type": "LOOKUP", "target": "account"}),
            ],
        )
        .await;
        let admin = t.meta_ok("{ me { id } }", json!({})).await["me"]["id"].clone();
        let account = |n: &'static str| {
            let t = &t;
            async move {
                t.data_ok("mutation($n: String!) { createAccount(data: {name: $n}) { id } }", json!({"n": n}))
                    .await["createAccount"]["id"]
                    .clone()
            }
        };
        let (destroyed, erased) = (account("destroyed").await, account("erased").await);
        let contact = "mutation($a: ID) { createContact(data: {name: \"c\", accountId: $a}) { id version updatedAt } }";
        let one = t.data_ok(contact, json!({"a": destroyed})).await["createContact"].clone();
        let two = t.data_ok(contact, json!({"a": erased})).await["createContact"].clone();
        assert_eq!(one["version"], 1);

        t.data_ok("mutation($id: ID!) { destroyAccount(id: $id) }", json!({"id": destroyed})).await;
        t.meta_ok(
            "mutation($id: String!) { erasePersonalData(object: \"account\", id: $id, mode: DELETE) }",
            json!({"id": erased}),
        )
        .await;

        for (before, target) in [(&one, &destroyed), (&two, &erased)] {
            let r = t
                .data_ok(
                    "query($id: ID!) { contact(id: $id) { accountId version updatedAt } }",
                    json!({"id": before["id"]}),
                )
                .await;
            let now = &r["contact"];
            assert_eq!(now["accountId"], Value::Null, "[{:?}]", t.backend);
            assert_eq!(now["version"], 2, "[{:?}] the cleared record is a new version", t.backend);
            assert!(now["updatedAt"].as_str() > before["updatedAt"].as_str(), "[{:?}] {now} {before}", t.backend);
            let log = t.meta_ok(AUDIT, json!({"id": before["id"]})).await;
            assert_eq!(
                log["auditLog"][0],
                json!({"actorId": admin, "category": "record", "action": "clear_lookup", "object": "contact",
                       "before": {"account": target}, "after": {"account": null}}),
                "[{:?}]",
                t.backend
            );
            // A writer still holding the old version is told the record changed.
            let r = t
                .data(
                    "mutation($id: ID!) { updateContact(id: $id, data: {name: \"d\"}, expectedVersion: 1) { id } }",
                    json!({"id": before["id"]}),
                )
                .await;
            assert_eq!(error_codes(&r), ["CONFLICT"], "[{:?}] {r}", t.backend);
        }
    });
}

#[tokio::test]
async fn sums_and_averages_beyond_64_bits_are_exact_or_out_of_range_by_field() {
    each_backend!(|t| {
        t.object(
            "ledger",
            "ledgers",
            vec![
                json!({"name": "amount", "label": "Amount", "type": "DECIMAL", "scale": 2}),
                json!({"name": "units", "label": "Units", "type": "INTEGER"}),
                json!({"name": "big", "label": "Big", "type": "BOOLEAN"}),
            ],
        )
        .await;
        // GraphQL's Int is 32 bits; a rule can store any 64-bit whole number.
        t.meta_ok(
            "mutation($s: String!) { setScript(object: \"ledger\", input: {name: \"big\", hook: BEFORE_SAVE, order: 0, source: $s}) { name } }",
            json!({"s": "if record.big == true { record.units = 9000000000000000000; }"}),
        )
        .await;
        let create = "mutation($d: [LedgerInput!]!) { createLedgers(data: $d) { id } }";
        let huge = "90000000000000000.00";
        t.data_ok(create, json!({"d": [{"amount": huge, "units": 1}, {"amount": huge, "units": 2}]})).await;
        let r = t.data_ok("{ ledgersAggregate { count sum { amount units } avg { amount units } } }", json!({})).await;
        let a = &r["ledgersAggregate"];
        assert_eq!(a["sum"], json!({"amount": "180000000000000000.00", "units": 3}), "[{:?}]", t.backend);
        assert_eq!(a["avg"]["amount"], "90000000000000000.0000", "[{:?}]", t.backend);
        // Whole numbers whose sum leaves 64 bits: that field is OUT_OF_RANGE, the rest answers.
        t.data_ok(create, json!({"d": [{"amount": "-0.01", "big": true}, {"amount": "0.01", "big": true}]})).await;
        let r = t
            .data("{ ledgersAggregate { count sum { amount units } avg { units } } ledgersGroupBy(groupBy: [big]) { big sum { units } } }", json!({}))
            .await;
        let errors = r["errors"].as_array().unwrap();
        assert!(!errors.is_empty() && error_codes(&r).iter().all(|c| c == "OUT_OF_RANGE"), "[{:?}] {r}", t.backend);
        assert!(errors[0]["message"].as_str().unwrap().contains("`units`"), "{r}");
        let a = &r["data"]["ledgersAggregate"];
        assert_eq!(a["count"], 4);
        assert_eq!(a["sum"]["amount"], "180000000000000000.00", "[{:?}]", t.backend);
        assert_eq!(a["avg"]["units"], "4500000000000000000.75", "[{:?}]", t.backend);
    });
}

#[tokio::test]
async fn like_patterns_treat_a_stray_backslash_as_itself_on_both_engines() {
    each_backend!(|t| {
        t.object("tag", "tags", vec![json!({"name": "name", "label": "Name", "type": "TEXT"})]).await;
        let names = [r"a\", r"a\b", "ab", "50%", "5_0", r"x_y\", "AB\\"];
        let data: Vec<Value> = names.iter().map(|n| json!({"name": n})).collect();
        t.data_ok("mutation($d: [TagInput!]!) { createTags(data: $d) { id } }", json!({"d": data})).await;
        let matching = |op: &'static str, pattern: &'static str| {
            let t = &t;
            async move {
                let q = format!(
                    "query($p: String!) {{ tags(first: 50, filter: {{name: {{{op}: $p}}}}) {{ nodes {{ name }} }} }}"
                );
                let r = t.data(&q, json!({"p": pattern})).await;
                assert!(r.get("errors").is_none(), "[{:?}] {op} {pattern:?}: {r}", t.backend);
                let mut found: Vec<String> = r["data"]["tags"]["nodes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|n| n["name"].as_str().unwrap().to_string())
                    .collect();
                found.sort();
                found
            }
        };
        assert_eq!(matching("like", r"a\").await, [r"a\"]);
        assert_eq!(matching("like", r"a\b").await, [r"a\b"]);
        assert_eq!(matching("like", r"%\").await, ["AB\\", r"a\", r"x_y\"]);
        assert_eq!(matching("like", r"50\%").await, ["50%"]);
        assert_eq!(matching("like", r"%\_%").await, ["5_0", r"x_y\"]);
        assert_eq!(matching("like", r"a\\").await, [r"a\"]);
        assert_eq!(matching("like", "a_").await, [r"a\", "ab"]);
        assert_eq!(matching("ilike", r"ab\").await, ["AB\\"]);
        assert_eq!(matching("startsWith", r"a\").await, [r"a\", r"a\b"]);
        assert_eq!(matching("endsWith", r"\").await, ["AB\\", r"a\", r"x_y\"]);
    });
}

#[tokio::test]
async fn a_profile_computed_across_a_revocation_is_neither_kept_nor_served() {
    each_backend!(|t| {
        t.object("deal", "deals", vec![json!({"name": "name", "label": "Name", "type": "TEXT"})]).await;
        t.role("rep").await;
        t.grant("rep", "deal", "read", "ALL").await;
        // A second node on the same database, driven step by step.
        let store = Store::connect(&t.database_url).await.unwrap();
        let node = AccessService::load(store.clone()).await.unwrap();
        let (version, objects) = store.load_metadata().await.unwrap();
        let registry = Registry::new(version, objects).unwrap();
        let roles = vec!["rep".to_string()];

        // A request computes the profile from the rules in force…
        let stale = node.compute_profile(&roles, &registry).await;
        assert!(stale.profile.object("deal").allows(Action::Read), "the grant is seen before it is revoked");
        // …the grant is revoked meanwhile, and the node learns of it…
        t.grant("rep", "deal", "", "ALL").await;
        assert!(node.refresh().await.unwrap(), "the node sees the new access version");
        // …so what was computed before is not kept, and the next request is refused.
        let kept = node.remember(stale).is_ok();
        let profile = node.profile(&roles, &registry).await;
        assert!(!profile.object("deal").allows(Action::Read), "[{:?}] a revoked grant was served", t.backend);
        assert!(!kept, "[{:?}]", t.backend);
    });
}

#[tokio::test]
async fn a_revoked_grant_is_not_served_afterwards() {
    each_backend!(|t| {
        t.object("deal", "deals", vec![json!({"name": "name", "label": "Name", "type": "TEXT"})]).await;
        t.data_ok("mutation { createDeal(data: {name: \"d\"}) { id } }", json!({})).await;
        t.role("rep").await;
        t.grant("rep", "deal", "read", "ALL").await;
        let (_, rep) = t.user("rep@example.com", &["rep"], None).await;
        let read = "{ deals { totalCount } }";
        assert_eq!(t.data_ok_as(&rep, read, json!({})).await["deals"]["totalCount"], 1);
        t.grant("rep", "deal", "", "ALL").await;
        for _ in 0..3 {
            let r = t.data_as(&rep, read, json!({})).await;
            assert!(r.get("errors").is_some() && r["data"].is_null(), "[{:?}] {r}", t.backend);
        }
    });
}

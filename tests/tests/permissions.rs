//! The permission matrix: a fixture of roles × objects × fields, and for every user and object
//! every read and write path of the data API checked against what the fixture allows — allowed
//! and denied — on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Value, json};
use tessera_tests::{TestServer, each_backend, error_codes, field_errors};

/// One role's rules in the fixture: (object, actions, scope) and (object, field, access).
struct RoleFixture {
    name: &'static str,
    objects: &'static [(&'static str, &'static str, &'static str)],
    fields: &'static [(&'static str, &'static str, &'static str)],
}

const ROLES: [RoleFixture; 3] = [
    RoleFixture {
        name: "sales_rep",
        objects: &[("account", "read create update", "OWN"), ("contact", "read create update delete", "OWN")],
        fields: &[("account", "revenue", "READ"), ("contact", "salary", "HIDDEN")],
    },
    RoleFixture {
        name: "sales_manager",
        objects: &[("account", "read update delete", "TEAM"), ("contact", "read", "TEAM")],
        fields: &[],
    },
    RoleFixture {
        name: "service_agent",
        objects: &[("contact", "read", "ALL")],
        fields: &[("contact", "salary", "HIDDEN"), ("contact", "phone", "READ")],
    },
];

/// Users: (key, roles, manager key). `mgr` holds two roles, so their access is a union.
const USERS: [(&str, &[&str], Option<&str>); 6] = [
    ("mgr", &["sales_manager", "sales_rep"], None),
    ("rep1", &["sales_rep"], Some("mgr")),
    ("rep2", &["sales_rep"], Some("rep1")),
    ("peer", &["sales_rep"], None),
    ("agent", &["service_agent"], None),
    ("nobody", &[], None),
];

/// Fields of the fixture objects: (object, field, type, sortable, numeric, groupable).
const FIELDS: [(&str, &str, &str, bool, bool, bool); 6] = [
    ("account", "name", "TEXT", true, false, true),
    ("account", "revenue", "CURRENCY", true, true, false),
    ("account", "region", "TEXT", true, false, true),
    ("contact", "name", "TEXT", true, false, true),
    ("contact", "phone", "PHONE", true, false, true),
    ("contact", "salary", "DECIMAL", true, true, false),
];

const OWNERS: [&str; 4] = ["mgr", "rep1", "rep2", "peer"];

fn scope_rank(s: &str) -> u8 {
    match s {
        "OWN" => 1,
        "TEAM" => 2,
        _ => 3,
    }
}

/// The test's own model of effective access: per action the widest scope, per field the
/// widest access of any role (explicit narrowing the role's object-level ceiling).
#[derive(Default, Debug)]
struct Expected {
    scope: HashMap<&'static str, u8>,
    fields: HashMap<&'static str, u8>,
}

fn expected(user: &str, object: &str) -> Expected {
    let roles = USERS.iter().find(|u| u.0 == user).unwrap().1;
    let mut out = Expected::default();
    for role in ROLES.iter().filter(|r| roles.contains(&r.name)) {
        let Some((_, actions, scope)) = role.objects.iter().find(|o| o.0 == object) else { continue };
        for a in actions.split_whitespace() {
            let e = out.scope.entry(a).or_default();
            *e = (*e).max(scope_rank(scope));
        }
        let ceiling = if actions.contains("update") || actions.contains("create") {
            2
        } else if actions.contains("read") {
            1
        } else {
            0
        };
        for (o, f, ..) in FIELDS.iter().filter(|f| f.0 == object) {
            let explicit = role.fields.iter().find(|x| x.0 == *o && x.1 == *f).map(|x| match x.2 {
                "HIDDEN" => 0,
                "READ" => 1,
                _ => 2,
            });
            let granted = explicit.map_or(ceiling, |e: u8| e.min(ceiling));
            let slot = out.fields.entry(f).or_default();
            *slot = (*slot).max(granted);
        }
    }
    out
}

/// Everyone `user` manages, directly or not, and the user.
fn team(user: &str) -> BTreeSet<&'static str> {
    let mut out: BTreeSet<&'static str> = USERS.iter().filter(|u| u.0 == user).map(|u| u.0).collect();
    loop {
        let more: Vec<&'static str> =
            USERS.iter().filter(|u| u.2.is_some_and(|m| out.contains(m)) && !out.contains(u.0)).map(|u| u.0).collect();
        if more.is_empty() {
            return out;
        }
        out.extend(more);
    }
}

/// Owners whose records `user` may act on with an action of `scope` rank.
fn owners_in(user: &str, rank: u8) -> BTreeSet<&'static str> {
    match rank {
        0 => BTreeSet::new(),
        1 => OWNERS.iter().copied().filter(|o| *o == user).collect(),
        2 => team(user).into_iter().filter(|o| OWNERS.contains(o)).collect(),
        _ => OWNERS.iter().copied().collect(),
    }
}

fn plural(object: &str) -> &'static str {
    if object == "account" { "accounts" } else { "contacts" }
}

fn type_name(object: &str) -> &'static str {
    if object == "account" { "Account" } else { "Contact" }
}

struct Fixture {
    tokens: BTreeMap<&'static str, String>,
    user_ids: BTreeMap<&'static str, String>,
    /// (object, owner key) → record id.
    records: BTreeMap<(&'static str, &'static str), String>,
}

async fn fixture(t: &TestServer) -> Fixture {
    t.object(
        "account",
        "accounts",
        vec![
            json!({"name": "name", "label": "名称", "type": "TEXT"}),
            json!({"name": "revenue", "label": "收入", "type": "CURRENCY"}),
            json!({"name": "region", "label": "区域", "type": "TEXT"}),
        ],
    )
    .await;
    t.object(
        "contact",
        "contacts",
        vec![
            json!({"name": "name", "label": "姓名", "type": "TEXT"}),
            json!({"name": "phone", "label": "手机号", "type": "PHONE"}),
            json!({"name": "salary", "label": "薪资", "type": "DECIMAL", "scale": 2}),
            json!({"name": "account", "label": "客户", "type": "LOOKUP", "target": "account"}),
        ],
    )
    .await;
    for role in &ROLES {
        t.role(role.name).await;
        for (object, actions, scope) in role.objects {
            t.grant(role.name, object, actions, scope).await;
        }
        for (object, field, access) in role.fields {
            t.field_access(role.name, object, field, access).await;
        }
    }
    let mut tokens = BTreeMap::new();
    let mut user_ids: BTreeMap<&'static str, String> = BTreeMap::new();
    for (key, roles, manager) in USERS {
        let manager = manager.map(|m| user_ids[m].clone());
        let (id, token) = t.user(&format!("{key}@example.com"), roles, manager.as_deref()).await;
        user_ids.insert(key, id);
        tokens.insert(key, token);
    }
    let mut records = BTreeMap::new();
    for owner in OWNERS {
        let r = t
            .data_ok(
                "mutation($d: AccountInput!) { createAccount(data: $d) { id } }",
                json!({"d": {"name": format!("A-{owner}"), "revenue": "1000.00", "region": "east", "owner": user_ids[owner]}}),
            )
            .await;
        records.insert(("account", owner), r["createAccount"]["id"].as_str().unwrap().to_string());
    }
    for owner in OWNERS {
        // rep2's contact works at peer's account: a lookup that leaves rep2's (and mgr's) scope.
        let account_owner = if owner == "rep2" { "peer" } else { owner };
        let r = t
            .data_ok(
                "mutation($d: ContactInput!) { createContact(data: $d) { id } }",
                json!({"d": {"name": format!("C-{owner}"), "phone": "13800000000", "salary": "88.50",
                       "accountId": records[&("account", account_owner)], "owner": user_ids[owner]}}),
            )
            .await;
        records.insert(("contact", owner), r["createContact"]["id"].as_str().unwrap().to_string());
    }
    Fixture { tokens, user_ids, records }
}

fn ids_of(nodes: &Value) -> BTreeSet<String> {
    nodes.as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap().to_string()).collect()
}

fn assert_forbidden(r: &Value, what: &str, context: &str) {
    assert_eq!(error_codes(r), vec!["FORBIDDEN"], "{context}: expected FORBIDDEN, got {r}");
    let message = r["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains(what), "{context}: the error should name `{what}`: {message}");
}

#[tokio::test]
async fn permission_matrix_holds_on_every_path() {
    each_backend!(|t| {
        let fx = fixture(&t).await;
        for (user, _, _) in USERS {
            let token = &fx.tokens[user];
            for object in ["account", "contact"] {
                check_reads(&t, &fx, token, user, object).await;
            }
        }
        check_relations(&t, &fx).await;
        for (user, _, _) in USERS {
            let token = &fx.tokens[user];
            for object in ["account", "contact"] {
                check_writes(&t, &fx, token, user, object).await;
            }
        }
        // The audit log and the rest of the metadata API are for admins only.
        let r = t
            .client
            .post(format!("{}/graphql/metadata", t.base))
            .bearer_auth(&fx.tokens["mgr"])
            .json(&json!({"query": "{ auditLog(first: 5) { id } }"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 403);
    });
}

async fn check_reads(t: &TestServer, fx: &Fixture, token: &str, user: &str, object: &'static str) {
    let exp = expected(user, object);
    let ctx = format!("[{:?}] {user} reading {object}", t.backend);
    let (plural, tn) = (plural(object), type_name(object));
    let read = exp.scope.get("read").copied().unwrap_or(0);
    let visible: BTreeSet<String> = owners_in(user, read).iter().map(|o| fx.records[&(object, *o)].clone()).collect();

    // Introspection lists exactly what the caller may read and do.
    let r = t
        .data_ok_as(
            token,
            "query($t: String!) { __type(name: $t) { fields { name } } __schema { queryType { fields { name } } mutationType { fields { name } } } }",
            json!({"t": tn}),
        )
        .await;
    let queries: BTreeSet<String> = r["__schema"]["queryType"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().into())
        .collect();
    let mutations: BTreeSet<String> = r["__schema"]["mutationType"]["fields"]
        .as_array()
        .map(|a| a.iter().map(|f| f["name"].as_str().unwrap().into()).collect())
        .unwrap_or_default();
    assert_eq!(queries.contains(plural), read > 0, "{ctx}: list query in introspection");
    for (verb, action) in [("create", "create"), ("update", "update"), ("delete", "delete"), ("destroy", "delete")] {
        let may = read > 0 && exp.scope.contains_key(action);
        assert_eq!(mutations.contains(&format!("{verb}{tn}")), may, "{ctx}: {verb} in introspection");
    }
    if read == 0 {
        assert!(r["__type"].is_null(), "{ctx}: the type must not exist");
        let r = t.data_as(token, &format!("{{ {plural}(first: 10) {{ nodes {{ id }} }} }}"), json!({})).await;
        assert_forbidden(&r, object, &ctx);
        return;
    }
    let type_fields: BTreeSet<String> =
        r["__type"]["fields"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap().into()).collect();
    for (o, f, ..) in FIELDS.iter().filter(|f| f.0 == object) {
        let readable = exp.fields.get(f).copied().unwrap_or(0) >= 1;
        assert_eq!(type_fields.contains(*f), readable, "{ctx}: field {o}.{f} in introspection");
    }

    // Lists, counts, aggregates and groups see exactly the records in scope.
    let r = t
        .data_ok_as(
            token,
            &format!(
                "{{ {plural}(first: 100) {{ totalCount nodes {{ id }} }} {plural}Aggregate {{ count }} \
                 {plural}GroupBy(groupBy: [name]) {{ count }} }}"
            ),
            json!({}),
        )
        .await;
    assert_eq!(ids_of(&r[plural]["nodes"]), visible, "{ctx}: list");
    assert_eq!(r[plural]["totalCount"], json!(visible.len()), "{ctx}: totalCount");
    assert_eq!(r[&format!("{plural}Aggregate")]["count"], json!(visible.len()), "{ctx}: aggregate");
    let grouped: i64 =
        r[&format!("{plural}GroupBy")].as_array().unwrap().iter().map(|g| g["count"].as_i64().unwrap()).sum();
    assert_eq!(grouped, visible.len() as i64, "{ctx}: groupBy");

    // By id: in scope → the record, out of scope → null.
    for owner in OWNERS {
        let id = &fx.records[&(object, owner)];
        let r =
            t.data_ok_as(token, &format!("query($id: ID!) {{ {object}(id: $id) {{ id }} }}"), json!({"id": id})).await;
        assert_eq!(!r[object].is_null(), visible.contains(id), "{ctx}: by id, owner {owner}");
    }

    // Every field on every read path: allowed when readable, FORBIDDEN naming it otherwise.
    for (_, f, _, sortable, numeric, groupable) in FIELDS.iter().filter(|f| f.0 == object) {
        let readable = exp.fields.get(f).copied().unwrap_or(0) >= 1;
        let mut paths = vec![
            ("select", format!("{{ {plural}(first: 5) {{ nodes {{ {f} }} }} }}")),
            ("filter", format!("{{ {plural}(filter: {{{f}: {{isNull: false}}}}) {{ nodes {{ id }} }} }}")),
        ];
        if *sortable {
            paths.push(("sort", format!("{{ {plural}(orderBy: [{{{f}: AscNullsLast}}]) {{ nodes {{ id }} }} }}")));
        }
        if *numeric {
            paths.push(("aggregate", format!("{{ {plural}Aggregate {{ sum {{ {f} }} }} }}")));
        }
        if *groupable {
            paths.push(("groupBy", format!("{{ {plural}GroupBy(groupBy: [{f}]) {{ count }} }}")));
        }
        for (path, q) in paths {
            let r = t.data_as(token, &q, json!({})).await;
            if readable {
                assert!(r.get("errors").is_none(), "{ctx}: {path} on {f} should work: {r}");
            } else {
                assert_forbidden(&r, f, &format!("{ctx}: {path} on {f}"));
            }
        }
    }
}

async fn check_writes(t: &TestServer, fx: &Fixture, token: &str, user: &str, object: &'static str) {
    let exp = expected(user, object);
    let ctx = format!("[{:?}] {user} writing {object}", t.backend);
    let tn = type_name(object);
    let read = exp.scope.get("read").copied().unwrap_or(0);
    let update = exp.scope.get("update").copied().unwrap_or(0).min(read);
    let delete = exp.scope.get("delete").copied().unwrap_or(0).min(read);
    let can = |a: &str| read > 0 && exp.scope.contains_key(a);

    // Create: allowed with editable fields; a read-only field is refused per field.
    let r = t
        .data_as(
            token,
            &format!("mutation {{ create{tn}(data: {{name: \"new by {user}\"}}) {{ id owner }} }}"),
            json!({}),
        )
        .await;
    if can("create") {
        assert!(r.get("errors").is_none(), "{ctx}: create: {r}");
        assert_eq!(r["data"][&format!("create{tn}")]["owner"], json!(fx.user_ids[user]), "{ctx}: creator owns");
        for (_, f, ty, ..) in FIELDS.iter().filter(|f| f.0 == object && f.1 != "name") {
            let access = exp.fields.get(f).copied().unwrap_or(0);
            let value = if *ty == "PHONE" { "\"13900000000\"" } else { "\"5.00\"" };
            let q = format!("mutation {{ create{tn}(data: {{name: \"x\", {f}: {value}}}) {{ id }} }}");
            let r = t.data_as(token, &q, json!({})).await;
            match access {
                2 => assert!(r.get("errors").is_none(), "{ctx}: create with {f}: {r}"),
                1 => assert_eq!(field_errors(&r), vec![(0, f.to_string(), "READ_ONLY".into())], "{ctx}: {f}: {r}"),
                _ => assert_forbidden(&r, f, &format!("{ctx}: create with hidden {f}")),
            }
        }
    } else {
        assert_forbidden(&r, object, &format!("{ctx}: create"));
    }

    // Update and delete every fixture record: in scope → done, visible but out of the action's
    // scope or invisible → NOT_FOUND, no permission at all → FORBIDDEN.
    for owner in OWNERS {
        let id = &fx.records[&(object, owner)];
        let q =
            format!("mutation($id: ID!) {{ update{tn}(id: $id, data: {{name: \"{}-{owner}\"}}) {{ id }} }}", &tn[..1]);
        let r = t.data_as(token, &q, json!({"id": id})).await;
        if !can("update") {
            assert_forbidden(&r, object, &format!("{ctx}: update"));
        } else if owners_in(user, update).contains(owner) {
            assert!(r.get("errors").is_none(), "{ctx}: update {owner}'s: {r}");
        } else {
            assert_eq!(error_codes(&r), vec!["NOT_FOUND"], "{ctx}: update {owner}'s: {r}");
        }
        let r = t
            .data_as(token, &format!("mutation($id: ID!) {{ delete{tn}(id: $id) {{ id }} }}"), json!({"id": id}))
            .await;
        if !can("delete") {
            assert_forbidden(&r, object, &format!("{ctx}: delete"));
        } else if owners_in(user, delete).contains(owner) {
            assert!(r.get("errors").is_none(), "{ctx}: delete {owner}'s: {r}");
            let r = t
                .data_as(token, &format!("mutation($id: ID!) {{ restore{tn}(id: $id) {{ id }} }}"), json!({"id": id}))
                .await;
            assert!(r.get("errors").is_none(), "{ctx}: restore {owner}'s: {r}");
        } else {
            assert_eq!(error_codes(&r), vec!["NOT_FOUND"], "{ctx}: delete {owner}'s: {r}");
        }
    }

    // Update-many touches only records in the update scope.
    if can("update") {
        let q = format!(
            "mutation {{ update{tn}s: update{}(filter: {{name: {{startsWith: \"{}-\"}}}}, data: {{name: \"{}-touched\"}}) {{ id }} }}",
            if object == "account" { "Accounts" } else { "Contacts" },
            &tn[..1],
            &tn[..1]
        );
        let r = t.data_ok_as(token, &q, json!({})).await;
        let touched = ids_of(&r[&format!("update{tn}s")]);
        let expected: BTreeSet<String> =
            owners_in(user, update).iter().map(|o| fx.records[&(object, *o)].clone()).collect();
        assert_eq!(touched, expected, "{ctx}: updateMany");
    }
}

/// Lookups, reverse relations and filters through lookups respect the scope of the related
/// object: nobody learns of a record they cannot see.
async fn check_relations(t: &TestServer, fx: &Fixture) {
    let ctx = format!("[{:?}] relations", t.backend);
    let rep2_contact = &fx.records[&("contact", "rep2")];
    let peer_account = &fx.records[&("account", "peer")];
    // rep2 sees their contact, but its account (peer's) is out of scope: the id stays, the
    // record resolves to null.
    let r = t
        .data_ok_as(
            &fx.tokens["rep2"],
            "query($id: ID!) { contact(id: $id) { accountId account { id } } }",
            json!({"id": rep2_contact}),
        )
        .await;
    assert_eq!(r["contact"]["accountId"], json!(peer_account), "{ctx}");
    assert!(r["contact"]["account"].is_null(), "{ctx}: out-of-scope lookup must be null: {r}");
    // Filtering through that lookup cannot probe peer's account either.
    let r = t
        .data_ok_as(
            &fx.tokens["rep2"],
            "{ contacts(filter: {account: {name: {startsWith: \"A-\"}}}) { nodes { id } } }",
            json!({}),
        )
        .await;
    assert!(r["contacts"]["nodes"].as_array().unwrap().is_empty(), "{ctx}: related filter leaked: {r}");
    // peer sees their account, whose reverse relation includes rep2's contact only for those
    // who may read rep2's contacts: peer may not.
    let r = t
        .data_ok_as(
            &fx.tokens["peer"],
            "query($id: ID!) { account(id: $id) { contacts(first: 10) { nodes { id } } } }",
            json!({"id": peer_account}),
        )
        .await;
    let ids = ids_of(&r["account"]["contacts"]["nodes"]);
    assert_eq!(ids, BTreeSet::from([fx.records[&("contact", "peer")].clone()]), "{ctx}: reverse relation");
    // The agent reads every contact but no account: the lookup is not in their schema.
    let r = t.data_as(&fx.tokens["agent"], "{ contacts { nodes { account { id } } } }", json!({})).await;
    assert_forbidden(&r, "account", &format!("{ctx}: agent selecting account"));
    let r = t.data_ok_as(&fx.tokens["agent"], "{ contacts(first: 10) { nodes { accountId } } }", json!({})).await;
    assert_eq!(r["contacts"]["nodes"].as_array().unwrap().len(), 4, "{ctx}: agent sees every contact");
    // The manager sees their team's contacts with their accounts, but not peer's account.
    let r =
        t.data_ok_as(&fx.tokens["mgr"], "{ contacts(first: 10) { nodes { name account { name } } } }", json!({})).await;
    let nulls = r["contacts"]["nodes"].as_array().unwrap().iter().filter(|n| n["account"].is_null()).count();
    assert_eq!(nulls, 1, "{ctx}: only the contact at peer's account resolves to null: {r}");
    // A user may not point a lookup at a record they cannot see.
    let r = t
        .data_as(
            &fx.tokens["rep1"],
            "mutation($a: ID!) { createContact(data: {name: \"x\", accountId: $a}) { id } }",
            json!({"a": peer_account}),
        )
        .await;
    assert_eq!(field_errors(&r), vec![(0, "account".to_string(), "NOT_FOUND".to_string())], "{ctx}: {r}");
}

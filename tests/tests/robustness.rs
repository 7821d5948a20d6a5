//! Robustness as a property: random GraphQL documents, variables, filters and field inputs (every
//! field type, odd Unicode, huge and negative numbers, deep nesting, mangled syntax) sent to both
//! endpoints of a real server, on SQLite and PostgreSQL. Whatever arrives, the server answers
//! with a client error or a result (never a panic or an internal error), a refused write leaves
//! the data and the audit trail as they were, and a reader who sees a field masked never finds
//! its stored values in any answer.
//!
//! Cases come from a fixed seed, so a failure reproduces; `TESSERA_FUZZ_CASES` runs more of them
//! and `TESSERA_FUZZ_SEED` another sequence.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use serde_json::{Map, Value, json};
use tessera_tests::{TestServer, backends};

/// Phones stored in the fixture; the masked reader must never see one of them whole.
const PHONES: [&str; 3] = ["13812345678", "13987654321", "15500001111"];

/// Api names (camelCase) of the fixture's fields, one per type, with what their values look like.
const FIELDS: [(&str, Kind); 17] = [
    ("name", Kind::Text),
    ("notes", Kind::Text),
    ("score", Kind::Int),
    ("amount", Kind::Decimal),
    ("price", Kind::Decimal),
    ("rate", Kind::Decimal),
    ("active", Kind::Bool),
    ("born", Kind::Date),
    ("seen", Kind::DateTime),
    ("email", Kind::Text),
    ("phone", Kind::Phone),
    ("site", Kind::Text),
    ("stage", Kind::Enum),
    ("tags", Kind::EnumList),
    ("accountId", Kind::Id),
    ("extra", Kind::Json),
    ("doubled", Kind::Int),
];

#[derive(Debug, Clone, Copy)]
enum Kind {
    Text,
    /// The encrypted phone: the stored phones among the values, so searches and upserts hit.
    Phone,
    Int,
    Decimal,
    Bool,
    Date,
    DateTime,
    Enum,
    EnumList,
    Id,
    Json,
}

const OPS: [&str; 13] =
    ["eq", "neq", "in", "notIn", "gt", "gte", "lt", "lte", "like", "ilike", "startsWith", "endsWith", "isNull"];

/// Error codes a client may be answered with; `INTERNAL_SERVER_ERROR` is not among them.
const CLIENT_CODES: [&str; 8] = [
    "BAD_USER_INPUT",
    "FORBIDDEN",
    "NOT_FOUND",
    "CONFLICT",
    "UNAUTHENTICATED",
    "TIMEOUT",
    "RATE_LIMITED",
    "OUT_OF_RANGE",
];

async fn fixture(t: &TestServer) -> Vec<String> {
    t.object("account", "accounts", vec![json!({"name": "name", "label": "名称", "type": "TEXT"})]).await;
    t.object(
        "thing",
        "things",
        vec![
            json!({"name": "name", "label": "名称", "type": "TEXT", "required": true, "maxLength": 40}),
            json!({"name": "notes", "label": "备注", "type": "LONG_TEXT"}),
            json!({"name": "score", "label": "评分", "type": "INTEGER"}),
            json!({"name": "amount", "label": "金额", "type": "DECIMAL", "scale": 2}),
            json!({"name": "price", "label": "价格", "type": "CURRENCY", "scale": 2}),
            json!({"name": "rate", "label": "比率", "type": "PERCENT", "scale": 2}),
            json!({"name": "active", "label": "有效", "type": "BOOLEAN"}),
            json!({"name": "born", "label": "生日", "type": "DATE"}),
            json!({"name": "seen", "label": "最近", "type": "DATETIME"}),
            json!({"name": "email", "label": "邮箱", "type": "EMAIL", "unique": true}),
            json!({"name": "phone", "label": "手机", "type": "PHONE",
                   "sensitive": {"encrypted": true, "searchable": true}}),
            json!({"name": "site", "label": "网站", "type": "URL"}),
            json!({"name": "stage", "label": "阶段", "type": "PICKLIST", "options": [
                {"value": "new", "label": "新建"}, {"value": "won", "label": "赢单"}]}),
            json!({"name": "tags", "label": "标签", "type": "MULTI_PICKLIST", "options": [
                {"value": "vip", "label": "重要"}, {"value": "key_partner", "label": "伙伴"}]}),
            json!({"name": "account", "label": "客户", "type": "LOOKUP", "target": "account"}),
            json!({"name": "code", "label": "编号", "type": "AUTO_NUMBER", "format": "T-{0000}"}),
            json!({"name": "extra", "label": "扩展", "type": "JSON"}),
            json!({"name": "doubled", "label": "双倍", "type": "FORMULA", "resultType": "INTEGER",
                   "expression": "if record.score == () { () } else { record.score * 2 }"}),
        ],
    )
    .await;
    let account = t.data_ok("mutation { createAccount(data: {name: \"Acme\"}) { id } }", json!({})).await;
    let account = account["createAccount"]["id"].as_str().unwrap().to_string();
    let mut ids = vec![account.clone()];
    for (i, phone) in PHONES.iter().enumerate() {
        let d = t
            .data_ok(
                "mutation($d: ThingInput!) { createThing(data: $d) { id } }",
                json!({"d": {"name": format!("thing {i}"), "score": i * 10, "amount": "12.50", "phone": phone,
                              "email": format!("t{i}@example.com"), "stage": "NEW", "tags": ["VIP"],
                              "accountId": account, "born": "1990-03-07", "extra": {"k": [1, 2]}}}),
            )
            .await;
        ids.push(d["createThing"]["id"].as_str().unwrap().to_string());
    }
    ids
}

// ---------------------------------------------------------------------------------------------
// Strategies

fn odd_string() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "\\PC{0,24}",
        2 => prop::sample::select(vec![
            "", " ", "\u{0}", "\u{202e}abc", "e\u{301}", "👨‍👩‍👧", "'; DROP TABLE obj_thing; --", "%_\\", "\\",
            "a\\", "<script>alert(1)</script>", "k1:AAAA", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "\u{feff}", "\r\n\t", "NEW", "WON", "VIP",
            "1e400", "-0", "NaN", "Infinity", "99999999999999999999.99", "0.000000000000001", "1,5", " 12 ",
            "2026-02-30", "2026-13-01", "0000-00-00", "2026-12-07T25:00:00Z", "2026-12-07T10:00:00Z",
            "1990-03-07", "+8613812345678", "138", "abc@", "http://", "t1@example.com", "92233720368547758.07",
            "-92233720368547758.08", "00000000-0000-0000-0000-000000000000",
        ])
        .prop_map(String::from),
        1 => (100usize..5_000).prop_map(|n| "长".repeat(n)),
    ]
    .boxed()
}

fn edge_number() -> BoxedStrategy<Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        prop::sample::select(vec![
            i64::MAX,
            i64::MIN,
            i64::from(i32::MAX),
            i64::from(i32::MAX) + 1,
            i64::from(i32::MIN) - 1,
            0,
            -1,
            9_007_199_254_740_993,
        ])
        .prop_map(Value::from),
        any::<f64>().prop_filter("JSON has no NaN or infinities", |f| f.is_finite()).prop_map(|f| json!(f)),
        Just(json!(u64::MAX)),
    ]
    .boxed()
}

fn edge_scalar() -> BoxedStrategy<Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::from),
        3 => edge_number(),
        4 => odd_string().prop_map(Value::from),
    ]
    .boxed()
}

fn edge_json() -> BoxedStrategy<Value> {
    edge_scalar()
        .prop_recursive(4, 24, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map("[a-zA-Z_]{1,8}", inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
        .boxed()
}

/// A value that fits a field's kind, so that some writes and filters get through.
fn fitting(kind: Kind, ids: Vec<String>) -> BoxedStrategy<Value> {
    match kind {
        Kind::Text => odd_string().prop_map(Value::from).boxed(),
        Kind::Phone => {
            prop_oneof![odd_string().prop_map(Value::from), prop::sample::select(PHONES.to_vec()).prop_map(Value::from)]
                .boxed()
        }
        Kind::Int => prop_oneof![(-1000i64..1000).prop_map(Value::from), edge_number()].boxed(),
        Kind::Decimal => prop_oneof![
            (-100_000i64..100_000).prop_map(|c| Value::from(format!("{}.{:02}", c / 100, (c % 100).abs()))),
            edge_number(),
            odd_string().prop_map(Value::from),
        ]
        .boxed(),
        Kind::Bool => any::<bool>().prop_map(Value::from).boxed(),
        Kind::Date => prop_oneof![
            (1i32..3000, 1u32..13, 1u32..29).prop_map(|(y, m, d)| Value::from(format!("{y:04}-{m:02}-{d:02}"))),
            odd_string().prop_map(Value::from),
        ]
        .boxed(),
        Kind::DateTime => prop_oneof![
            (0i64..4_000_000_000).prop_map(|s| Value::from(
                chrono::DateTime::from_timestamp(s, 0).map(|d| d.to_rfc3339()).unwrap_or_default()
            )),
            odd_string().prop_map(Value::from),
        ]
        .boxed(),
        Kind::Enum => prop::sample::select(vec!["NEW", "WON", "LOST", "new", ""]).prop_map(Value::from).boxed(),
        Kind::EnumList => prop::collection::vec(prop::sample::select(vec!["VIP", "KEY_PARTNER", "NOPE"]), 0..4)
            .prop_map(|v| json!(v))
            .boxed(),
        Kind::Id => {
            prop_oneof![prop::sample::select(ids).prop_map(Value::from), odd_string().prop_map(Value::from)].boxed()
        }
        Kind::Json => edge_json(),
    }
}

fn field_value(ids: Vec<String>) -> BoxedStrategy<(String, Value)> {
    let names: Vec<usize> = (0..FIELDS.len()).collect();
    prop_oneof![
        6 => prop::sample::select(names).prop_flat_map(move |i| {
            let (name, kind) = FIELDS[i];
            prop_oneof![3 => fitting(kind, ids.clone()), 1 => edge_json()].prop_map(move |v| (name.to_string(), v))
        }),
        1 => ("[a-zA-Z_]{1,12}", edge_json()),
        1 => (prop::sample::select(vec!["id", "owner", "version", "code", "createdAt", "deletedAt", "owner_id"]), edge_json())
            .prop_map(|(n, v)| (n.to_string(), v)),
    ]
    .boxed()
}

fn record_input(ids: Vec<String>) -> BoxedStrategy<Value> {
    prop_oneof![
        8 => prop::collection::vec(field_value(ids), 0..8).prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        1 => edge_json(),
    ]
    .boxed()
}

fn filter(ids: Vec<String>) -> BoxedStrategy<Value> {
    let names: Vec<usize> = (0..FIELDS.len()).collect();
    let leaf = prop_oneof![
        6 => (prop::sample::select(names), prop::sample::select(OPS.to_vec()), any::<u8>()).prop_flat_map(move |(i, op, pick)| {
            let (name, kind) = FIELDS[i];
            let name = if pick % 7 == 0 { name.trim_end_matches("Id").to_string() } else { name.to_string() };
            let one = prop_oneof![3 => fitting(kind, ids.clone()), 1 => edge_json()];
            let value = match op {
                "in" | "notIn" => prop::collection::vec(one, 0..6).prop_map(Value::Array).boxed(),
                "isNull" => any::<bool>().prop_map(Value::from).boxed(),
                _ => one.boxed(),
            };
            value.prop_map(move |v| json!({ name.clone(): { op: v } }))
        }),
        1 => (prop::sample::select(vec!["id", "owner", "createdAt", "version", "account"]), edge_json())
            .prop_map(|(n, v)| json!({ n: v })),
        1 => edge_json(),
    ];
    leaf.prop_recursive(6, 40, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| json!({"and": v})),
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| json!({"or": v})),
            inner.clone().prop_map(|v| json!({"not": v})),
            inner.prop_map(|v| json!({"account": v})),
        ]
    })
    .boxed()
}

/// A GraphQL request: its document, variables, and whether it is a single write whose refusal
/// must leave the data as it was.
#[derive(Debug, Clone)]
struct Case {
    endpoint: &'static str,
    query: String,
    variables: Value,
    single_write: bool,
}

const SELECTION: &str = "id name notes score amount price rate active born seen email phone site stage tags accountId code extra doubled version account { id name }";

fn page_args() -> BoxedStrategy<String> {
    (
        prop::option::of(prop_oneof![(-5i64..200).prop_map(|n| n.to_string()), Just("2147483648".to_string())]),
        prop::option::of(prop_oneof!["[a-zA-Z0-9+/=]{0,40}", Just("eyJrIjpbXX0".to_string())]),
        prop::option::of(prop::sample::select(vec![
            "{score: DescNullsLast}",
            "[{amount: AscNullsFirst}, {name: DescNullsFirst}]",
            "{phone: AscNullsLast}",
            "{doubled: DescNullsLast}",
            "{tags: AscNullsLast}",
        ])),
        any::<bool>(),
    )
        .prop_map(|(first, after, order, backwards)| {
            let mut args = Vec::new();
            if let Some(n) = first {
                args.push(if backwards { format!("last: {n}") } else { format!("first: {n}") });
            }
            if let Some(c) = after {
                args.push(if backwards { format!("before: {c:?}") } else { format!("after: {c:?}") });
            }
            if let Some(o) = order {
                args.push(format!("orderBy: {o}"));
            }
            args.join(", ")
        })
        .boxed()
}

fn case(ids: Vec<String>) -> BoxedStrategy<Case> {
    let read = |query: String, variables: Value| Case { endpoint: "/graphql", query, variables, single_write: false };
    let write = |query: &str, variables: Value| Case {
        endpoint: "/graphql",
        query: query.to_string(),
        variables,
        single_write: true,
    };
    let id = prop_oneof![prop::sample::select(ids.clone()).prop_map(Value::from), odd_string().prop_map(Value::from)];
    prop_oneof![
        (filter(ids.clone()), page_args()).prop_map(move |(f, args)| read(
            format!("query($f: ThingFilter) {{ things(filter: $f, {args}) {{ totalCount nodes {{ {SELECTION} }} pageInfo {{ endCursor }} }} }}"),
            json!({"f": f})
        )),
        filter(ids.clone()).prop_map(move |f| read(
            "query($f: ThingFilter) { thingsAggregate(filter: $f) { count sum { amount price score } avg { amount rate } min { score born } max { amount seen } } }".into(),
            json!({"f": f})
        )),
        (filter(ids.clone()), prop::collection::vec(prop::sample::select(vec!["stage", "active", "score", "born", "accountId", "phone", "tags", "nope"]), 0..3))
            .prop_map(move |(f, groups)| read(
                format!("query($f: ThingFilter) {{ thingsGroupBy(groupBy: [{}], filter: $f) {{ stage active score count sum {{ amount }} }} }}", groups.join(", ")),
                json!({"f": f})
            )),
        (id.clone(), filter(ids.clone())).prop_map(move |(id, f)| read(
            "query($id: ID!, $f: ThingFilter) { thing(id: $id) { id phone account { name things(first: 3, filter: $f) { nodes { phone } } } } }".into(),
            json!({"id": id, "f": f})
        )),
        record_input(ids.clone()).prop_map(move |d| write("mutation($d: ThingInput!) { createThing(data: $d) { id phone version } }", json!({"d": d}))),
        (prop::collection::vec(record_input(ids.clone()), 0..4), prop::option::of(edge_json()))
            .prop_map(move |(d, upsert)| write(
                "mutation($d: [ThingInput!]!, $u: ThingUpsert) { createThings(data: $d, upsert: $u) { id phone } }",
                json!({"d": d, "u": upsert})
            )),
        (prop::collection::vec(record_input(ids.clone()), 0..3), prop::sample::select(vec!["email", "phone", "name", "nope"]), prop::collection::vec(prop::sample::select(vec!["name", "phone", "score", "nope"]), 0..3))
            .prop_map(move |(d, on, update)| write(
                "mutation($d: [ThingInput!]!, $u: ThingUpsert) { createThings(data: $d, upsert: $u) { id phone } }",
                json!({"d": d, "u": {"onConflict": [on], "update": update}})
            )),
        (id.clone(), record_input(ids.clone()), prop::option::of(edge_number()))
            .prop_map(move |(id, d, v)| write(
                "mutation($id: ID!, $d: ThingInput!, $v: Int) { updateThing(id: $id, data: $d, expectedVersion: $v) { id phone version } }",
                json!({"id": id, "d": d, "v": v})
            )),
        (filter(ids.clone()), record_input(ids.clone())).prop_map(move |(f, d)| write(
            "mutation($f: ThingFilter, $d: ThingInput!) { updateThings(filter: $f, data: $d) { id version } }",
            json!({"f": f, "d": d})
        )),
        (prop::sample::select(vec!["deleteThing", "restoreThing", "destroyThing"]), id.clone()).prop_map(move |(m, id)| {
            let selection = if m == "destroyThing" { "" } else { " { id }" };
            write(&format!("mutation($id: ID!) {{ {m}(id: $id){selection} }}"), json!({"id": id}))
        }),
        (odd_string(), edge_json()).prop_map(|(q, v)| Case { endpoint: "/graphql", query: q, variables: v, single_write: false }),
        (mangled_document(), edge_json()).prop_map(|(q, v)| Case { endpoint: "/graphql", query: q, variables: v, single_write: false }),
        (metadata_document(), edge_json()).prop_map(|(q, v)| Case { endpoint: "/graphql/metadata", query: q, variables: json!({"v": v}), single_write: false }),
    ]
    .boxed()
}

/// A valid document with characters dropped, doubled or replaced.
fn mangled_document() -> BoxedStrategy<String> {
    let documents = vec![
        "query { things(first: 5, filter: {score: {gt: 3}}) { nodes { id name phone } } }",
        "mutation { createThing(data: {name: \"x\", score: 5}) { id } }",
        "{ thingsGroupBy(groupBy: [stage]) { stage count } }",
        "query($f: ThingFilter) { a: things(filter: $f) { totalCount } b: thingsAggregate { count } }",
        "{ __schema { types { name fields { name } } } }",
        "fragment F on Thing { id phone } query { things { nodes { ...F } } }",
    ];
    (
        prop::sample::select(documents),
        prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<char>()), 1..6),
    )
        .prop_map(|(doc, edits)| {
            let mut chars: Vec<char> = doc.chars().collect();
            for (at, how, c) in edits {
                if chars.is_empty() {
                    break;
                }
                let i = at.index(chars.len());
                match how {
                    0 => {
                        chars.remove(i);
                    }
                    1 => chars.insert(i, chars[i]),
                    _ => chars[i] = c,
                }
            }
            chars.into_iter().collect()
        })
        .boxed()
}

/// Metadata API documents with random inputs (the admin's endpoint must refuse bad input too).
fn metadata_document() -> BoxedStrategy<String> {
    prop::sample::select(vec![
        "mutation($v: JSON) { createObject(input: {name: \"fuzz_obj\", pluralName: \"fuzz_objs\", label: \"x\", pluralLabel: \"x\"}) { name } }",
        "mutation($v: FieldInput!) { createField(object: \"thing\", input: $v) { name } }",
        "mutation($v: String!) { updateField(object: \"thing\", field: $v, input: {label: \"y\"}) { name } }",
        "query($v: String!) { object(name: $v) { name fields { name } } }",
        "query($v: String) { auditLog(category: $v, first: 5) { id } }",
    ])
    .prop_map(String::from)
    .boxed()
}

// ---------------------------------------------------------------------------------------------
// The properties

/// What a refused write must leave as it was: every row's id, version and deletion time, and
/// the number of audit entries.
async fn fingerprint(db: &DatabaseConnection) -> Vec<String> {
    let backend = db.get_database_backend();
    let mut out = Vec::new();
    for sql in [
        "SELECT id, version, deleted_at FROM obj_thing ORDER BY id",
        "SELECT id, '', '' FROM obj_account ORDER BY id",
        "SELECT CAST(COUNT(*) AS TEXT), '', '' FROM sys_audit",
    ] {
        for row in db.query_all_raw(Statement::from_string(backend, sql)).await.unwrap() {
            let cell = |i: usize| -> String {
                row.try_get_by_index::<Option<String>>(i)
                    .ok()
                    .flatten()
                    .or_else(|| row.try_get_by_index::<Option<i64>>(i).ok().flatten().map(|v| v.to_string()))
                    .or_else(|| {
                        row.try_get_by_index::<Option<chrono::DateTime<chrono::Utc>>>(i)
                            .ok()
                            .flatten()
                            .map(|v| v.to_rfc3339())
                    })
                    .unwrap_or_default()
            };
            out.push(format!("{}|{}|{}", cell(0), cell(1), cell(2)));
        }
    }
    out
}

/// Sends a case as `token`; returns the status and the body as text.
async fn send(t: &TestServer, token: &str, case: &Case) -> (u16, String) {
    let r = t
        .client
        .post(format!("{}{}", t.base, case.endpoint))
        .bearer_auth(token)
        .json(&json!({"query": case.query, "variables": case.variables}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Checks one answer; returns what is wrong with it.
fn judge(status: u16, body: &str) -> Result<Value, String> {
    if ![200, 400].contains(&status) {
        return Err(format!("status {status}: {body}"));
    }
    let body: Value = serde_json::from_str(body).map_err(|e| format!("not JSON ({e}): {body}"))?;
    for e in body["errors"].as_array().into_iter().flatten() {
        let code = e["extensions"]["code"].as_str().unwrap_or("");
        if !CLIENT_CODES.contains(&code) {
            return Err(format!("error with code `{code}`: {e}"));
        }
    }
    Ok(body)
}

/// Whether a write answered without its result (refused, in whole).
fn refused(body: &Value) -> bool {
    body.get("errors").is_some() && body["data"].as_object().is_none_or(|d| d.values().all(Value::is_null))
}

fn cases() -> u32 {
    std::env::var("TESSERA_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(160)
}

fn runner() -> TestRunner {
    let seed: u64 = std::env::var("TESSERA_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(21);
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config { cases: cases(), failure_persistence: None, ..Config::default() };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_requests_get_client_errors_or_results_and_refused_writes_change_nothing() {
    for backend in backends() {
        let t = TestServer::start(backend).await;
        let ids = fixture(&t).await;
        t.role("viewer").await;
        t.grant("viewer", "thing", "read", "ALL").await;
        t.grant("viewer", "account", "read", "ALL").await;
        let (_, viewer) = t.user("viewer@example.com", &["viewer"], None).await;
        let db = Database::connect(&t.database_url).await.unwrap();
        // Positive controls: the admin sees a phone whole, the viewer only masked.
        let all = "{ things(first: 10) { nodes { phone } } }";
        assert!(t.data_ok(all, json!({})).await.to_string().contains(PHONES[0]));
        let masked = t.data_ok_as(&viewer, all, json!({})).await.to_string();
        assert!(masked.contains("138****5678") && !masked.contains(PHONES[0]), "{masked}");

        let mut runner = runner();
        let strategy = case(ids.clone());
        let handle = tokio::runtime::Handle::current();
        let mut failures = Vec::new();
        for n in 0..cases() {
            let case = strategy.new_tree(&mut runner).unwrap().current();
            let outcome: Result<(), String> = tokio::task::block_in_place(|| {
                handle.block_on(async {
                    let before = if case.single_write { Some(fingerprint(&db).await) } else { None };
                    let (status, body) = send(&t, &t.token, &case).await;
                    let body = judge(status, &body)?;
                    if let Some(before) = before
                        && refused(&body)
                        && fingerprint(&db).await != before
                    {
                        return Err(format!("a refused write changed data: {body}"));
                    }
                    if case.endpoint == "/graphql" && !case.single_write {
                        let (status, text) = send(&t, &viewer, &case).await;
                        judge(status, &text)?;
                        // A phone the request itself names may be echoed in an error about it.
                        let asked = format!("{} {}", case.query, case.variables);
                        if let Some(phone) = PHONES.iter().find(|p| text.contains(*p) && !asked.contains(*p)) {
                            return Err(format!("the masked reader saw {phone}: {text}"));
                        }
                    }
                    Ok(())
                })
            });
            if let Err(e) = outcome {
                failures.push(format!("case {n} [{backend:?}] {case:?}\n  -> {e}"));
            }
        }
        assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases(), failures.join("\n"));
        db.close().await.ok();
        t.stop().await;
    }
}

/// Bodies no JSON parser should choke the server on: lone surrogates, nesting deeper than any
/// parser's limit, numbers beyond every type, a document nested beyond the depth limit.
#[tokio::test]
async fn malformed_bodies_are_client_errors() {
    for backend in backends() {
        let t = TestServer::start(backend).await;
        fixture(&t).await;
        let deep_json = format!("{}1{}", "[".repeat(5_000), "]".repeat(5_000));
        let deep_query = format!("{{ things {{ nodes {{ {} id {} }} }} }}", "account { ".repeat(200), "} ".repeat(200));
        let deep_filter = format!("{}{{}}{}", "{\"not\": ".repeat(500), "}".repeat(500));
        let bodies = [
            r#"{"query": "{ things { nodes { name } } }", "variables": {"s": "\ud800"}}"#.to_string(),
            r#"{"query": "mutation($d: ThingInput!) { createThing(data: $d) { id } }", "variables": {"d": {"name": "\udfff\ud800"}}}"#.to_string(),
            format!(r#"{{"query": "query($v: JSON) {{ things {{ totalCount }} }}", "variables": {{"v": {deep_json}}}}}"#),
            json!({"query": deep_query}).to_string(),
            format!(r#"{{"query": "query($f: ThingFilter) {{ things(filter: $f) {{ totalCount }} }}", "variables": {{"f": {deep_filter}}}}}"#),
            r#"{"query": "mutation { createThing(data: {name: \"n\", score: 1e999999}) { id } }"}"#.to_string(),
            r#"{"query": "mutation { createThing(data: {name: \"n\", amount: 123456789012345678901234567890}) { id } }"}"#.to_string(),
            r#"{"query": "{ thing(id: \"\\u0000\") { id } }"}"#.to_string(),
            r#"{"query": "mutation { restoreThing(id: \"\\u0000\") { id } }"}"#.to_string(),
            r#"{"query": "{ things(filter: {id: {in: [\"\\u0000\"]}}) { totalCount } }"}"#.to_string(),
            r#"{"query": 5}"#.to_string(),
            r#"[{"query": "{ things { totalCount } }"}]"#.to_string(),
            "\u{0}\u{1}".to_string(),
            "{\"query\": \"".to_string(),
        ];
        let before = {
            let db = Database::connect(&t.database_url).await.unwrap();
            let f = fingerprint(&db).await;
            db.close().await.ok();
            f
        };
        for body in bodies {
            for path in ["/graphql", "/graphql/metadata"] {
                let (status, text) = t.post_text(path, body.clone()).await;
                if let Err(e) = judge(status, &text) {
                    panic!("[{backend:?}] {path} {}: {e}", &body[..body.len().min(120)]);
                }
            }
        }
        let db = Database::connect(&t.database_url).await.unwrap();
        assert_eq!(fingerprint(&db).await, before, "[{backend:?}] refused requests changed data");
        db.close().await.ok();
        t.stop().await;
    }
}

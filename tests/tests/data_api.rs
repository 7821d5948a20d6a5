#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! End-to-end specification of the generated data API (`POST /graphql`), run on every backend.

use serde_json::{Value, json};
use tessera_tests::*;

// ---------------------------------------------------------------------------------------------
// Shared setup

/// `account` (name, region) and `contact` with one field of most types, labelled in Chinese.
async fn crm(t: &TestServer) {
    t.object(
        "account",
        "accounts",
        vec![
            json!({"name": "name", "label": "名称", "type": "TEXT", "required": true, "maxLength": 40}),
            json!({"name": "region", "label": "地区", "type": "TEXT"}),
        ],
    )
    .await;
    t.object(
        "contact",
        "contacts",
        vec![
            json!({"name": "name", "label": "姓名", "type": "TEXT", "required": true, "maxLength": 20}),
            json!({"name": "first_name", "label": "名", "type": "TEXT"}),
            json!({"name": "email", "label": "邮箱", "type": "EMAIL", "unique": true}),
            json!({"name": "amount", "label": "金额", "type": "DECIMAL", "scale": 2}),
            json!({"name": "score", "label": "评分", "type": "INTEGER"}),
            json!({"name": "stage", "label": "阶段", "type": "PICKLIST", "defaultValue": "new", "options": [
                {"value": "new", "label": "新建"}, {"value": "in_progress", "label": "进行中"},
                {"value": "won", "label": "赢单"}, {"value": "archived", "label": "归档"}]}),
            json!({"name": "tags", "label": "标签", "type": "MULTI_PICKLIST", "options": [
                {"value": "vip", "label": "重要客户"}, {"value": "key_partner", "label": "合作伙伴"}]}),
            json!({"name": "active", "label": "有效", "type": "BOOLEAN", "defaultValue": true}),
            json!({"name": "account", "label": "所属客户", "type": "LOOKUP", "target": "account"}),
            json!({"name": "code", "label": "编号", "type": "AUTO_NUMBER", "format": "C-{000000}"}),
        ],
    )
    .await;
}

async fn account(t: &TestServer, name: &str) -> String {
    let d = t.data_ok("mutation($n: String!) { createAccount(data: {name: $n}) { id } }", json!({"n": name})).await;
    d["createAccount"]["id"].as_str().unwrap().to_string()
}

/// Creates contacts in one batch; returns them with `id name version`.
async fn contacts(t: &TestServer, data: Value) -> Vec<Value> {
    let d = t
        .data_ok("mutation($d: [ContactInput!]!) { createContacts(data: $d) { id name version } }", json!({"d": data}))
        .await;
    d["createContacts"].as_array().unwrap().clone()
}

/// Five contacts: Alice, Dave, 张伟 at Acme; Bob at Globex; carol without account.
async fn seed(t: &TestServer) -> (String, String) {
    let acme = account(t, "Acme").await;
    let globex = account(t, "Globex").await;
    contacts(
        t,
        json!([
            {"name": "Alice", "email": "alice@example.com", "score": 10, "amount": "2.00", "accountId": acme, "tags": ["VIP"]},
            {"name": "Bob", "email": "bob@example.com", "score": 20, "amount": "2.00", "accountId": globex, "stage": "WON"},
            {"name": "carol", "stage": "IN_PROGRESS"},
            {"name": "Dave", "email": "dave@example.com", "score": 30, "amount": "1.00", "accountId": acme, "stage": "WON"},
            {"name": "张伟", "email": "zw@example.com", "score": 40, "amount": "2.00", "accountId": acme},
        ]),
    )
    .await;
    (acme, globex)
}

fn names_of(nodes: &Value) -> Vec<String> {
    nodes.as_array().unwrap().iter().map(|n| n["name"].as_str().unwrap().to_string()).collect()
}

/// Names of the contacts matching `filter`, sorted (collation differs between backends).
async fn matching(t: &TestServer, filter: Value) -> Vec<String> {
    let d = t
        .data_ok(
            "query($f: ContactFilter) { contacts(filter: $f, first: 100) { nodes { name } } }",
            json!({"f": filter}),
        )
        .await;
    let mut names = names_of(&d["contacts"]["nodes"]);
    names.sort();
    names
}

/// Names in server order for `orderBy`.
async fn ordered(t: &TestServer, order: Value) -> Vec<String> {
    let d = t
        .data_ok(
            "query($o: [ContactOrderBy!]) { contacts(orderBy: $o, first: 100) { nodes { name } } }",
            json!({"o": order}),
        )
        .await;
    names_of(&d["contacts"]["nodes"])
}

fn sorted(v: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    out.sort();
    out
}

async fn count(t: &TestServer) -> i64 {
    t.data_ok("{ contactsAggregate { count } }", json!({})).await["contactsAggregate"]["count"].as_i64().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Creating records

#[tokio::test]
async fn creates_a_record_with_defaults_auto_number_and_chinese_text() {
    each_backend!(|t| {
        crm(&t).await;
        let d = t
            .data_ok(
                r#"mutation { createContact(data: {name: "张三", firstName: "小明", amount: 12.5, tags: [VIP, KEY_PARTNER]}) {
                    id name firstName stage active amount tags code version createdAt deletedAt accountId account { name } } }"#,
                json!({}),
            )
            .await;
        let c = &d["createContact"];
        assert_eq!(c["name"], "张三");
        assert_eq!(c["firstName"], "小明");
        assert_eq!(c["stage"], "NEW", "picklist default, as an UPPER_SNAKE enum value");
        assert_eq!(c["active"], true, "boolean default");
        assert_eq!(c["amount"], "12.50", "decimals come back as exact strings at the field's scale");
        assert_eq!(c["tags"], json!(["VIP", "KEY_PARTNER"]));
        assert_eq!(c["code"], "C-000001");
        assert_eq!(c["version"], 1);
        assert!(c["createdAt"].as_str().unwrap().ends_with('Z'));
        assert!(c["deletedAt"].is_null() && c["accountId"].is_null() && c["account"].is_null());

        let id = c["id"].as_str().unwrap();
        let d =
            t.data_ok("query($id: ID!) { contact(id: $id) { name firstName stage tags } }", json!({"id": id})).await;
        assert_eq!(
            d["contact"],
            json!({"name": "张三", "firstName": "小明", "stage": "NEW", "tags": ["VIP", "KEY_PARTNER"]})
        );
        let d = t.data_ok(r#"{ contacts(filter: {name: {eq: "张三"}}) { nodes { firstName } } }"#, json!({})).await;
        assert_eq!(d["contacts"]["nodes"][0]["firstName"], "小明");

        let m = t
            .meta_ok(r#"{ object(name: "contact") { fields { name label options { value label } } } }"#, json!({}))
            .await;
        let fields = m["object"]["fields"].as_array().unwrap();
        let stage = fields.iter().find(|f| f["name"] == "stage").unwrap();
        assert_eq!(stage["label"], "阶段");
        assert_eq!(stage["options"][1], json!({"value": "in_progress", "label": "进行中"}));
    });
}

#[tokio::test]
async fn unknown_id_reads_as_null() {
    each_backend!(|t| {
        crm(&t).await;
        let d = t.data_ok(r#"{ contact(id: "00000000-0000-0000-0000-000000000000") { id } }"#, json!({})).await;
        assert!(d["contact"].is_null());
    });
}

#[tokio::test]
async fn response_fields_come_in_the_order_the_query_asks_for_them() {
    each_backend!(|t| {
        crm(&t).await;
        let data = json!([{"name": "王芳", "firstName": "芳", "score": 3}]);
        contacts(&t, data).await;
        // Neither the query's order nor its reverse is alphabetical.
        for (query, order) in [
            ("{ contacts(first: 1) { nodes { score name firstName } } }", ["score", "name", "firstName"]),
            ("{ contacts(first: 1) { nodes { firstName name score } } }", ["firstName", "name", "score"]),
        ] {
            let (status, text) = t.post_text("/graphql", json!({ "query": query }).to_string()).await;
            assert_eq!(status, 200, "{text}");
            let at: Vec<usize> = order.iter().map(|f| text.find(&format!("\"{f}\"")).unwrap()).collect();
            assert!(at.windows(2).all(|w| w[0] < w[1]), "{query} answered {text}");
        }
    });
}

#[tokio::test]
async fn batch_create_is_all_or_nothing_with_indexed_field_errors() {
    each_backend!(|t| {
        crm(&t).await;
        let r = t
            .data(
                "mutation($d: [ContactInput!]!) { createContacts(data: $d) { id } }",
                json!({"d": [
                    {"name": "Fine"},
                    {"firstName": "no name"},
                    {"name": "this name is far too long for the field"},
                ]}),
            )
            .await;
        assert_eq!(error_codes(&r), ["BAD_USER_INPUT"]);
        let mut errs = field_errors(&r);
        errs.sort();
        assert_eq!(errs, [(1, "name".to_string(), "REQUIRED".to_string()), (2, "name".into(), "TOO_LONG".into())]);
        assert_eq!(count(&t).await, 0, "nothing of a failed batch is written");
        // The failed batch consumed no auto numbers.
        let c = contacts(&t, json!([{"name": "One"}, {"name": "Two"}])).await;
        assert_eq!(c.len(), 2);
        let d = t.data_ok("{ contacts(orderBy: [{code: AscNullsLast}]) { nodes { code } } }", json!({})).await;
        assert_eq!(d["contacts"]["nodes"], json!([{"code": "C-000001"}, {"code": "C-000002"}]));
    });
}

#[tokio::test]
async fn reports_field_errors_with_stable_codes() {
    each_backend!(|t| {
        crm(&t).await;
        let acme = account(&t, "Acme").await;
        contacts(&t, json!([{"name": "Taken", "email": "taken@example.com"}])).await;
        // Retire `archived`: it stays readable but can no longer be written.
        t.meta_ok(
            r#"mutation { updateField(object: "contact", field: "stage", input: {options: [
                {value: "new", label: "新建"}, {value: "in_progress", label: "进行中"}, {value: "won", label: "赢单"}]}) { name } }"#,
            json!({}),
        )
        .await;
        let one = |data: Value, field: &'static str, code: &'static str, top: &'static str| {
            let t = &t;
            async move {
                let r =
                    t.data("mutation($d: ContactInput!) { createContact(data: $d) { id } }", json!({"d": data})).await;
                assert_eq!(error_codes(&r), [top], "{r}");
                assert_eq!(field_errors(&r), [(0, field.to_string(), code.to_string())], "{r}");
            }
        };
        one(json!({"firstName": "x"}), "name", "REQUIRED", "BAD_USER_INPUT").await;
        one(json!({"name": null}), "name", "REQUIRED", "BAD_USER_INPUT").await;
        one(json!({"name": "x", "amount": "12abc"}), "amount", "INVALID_TYPE", "BAD_USER_INPUT").await;
        one(json!({"name": "x", "email": "not-an-email"}), "email", "INVALID_TYPE", "BAD_USER_INPUT").await;
        one(json!({"name": "一二三四五六七八九十一二三四五六七八九十一"}), "name", "TOO_LONG", "BAD_USER_INPUT").await;
        one(json!({"name": "x", "stage": "ARCHIVED"}), "stage", "INVALID_OPTION", "BAD_USER_INPUT").await;
        one(json!({"name": "x", "email": "taken@example.com"}), "email", "UNIQUE", "CONFLICT").await;
        one(json!({"name": "x", "accountId": "no-such-account"}), "account", "NOT_FOUND", "BAD_USER_INPUT").await;
        // Exactly 20 characters (not bytes) is fine; a real lookup id is fine.
        let d = t
            .data_ok(
                "mutation($d: ContactInput!) { createContact(data: $d) { account { name } } }",
                json!({"d": {"name": "一二三四五六七八九十一二三四五六七八九十", "accountId": acme}}),
            )
            .await;
        assert_eq!(d["createContact"]["account"]["name"], "Acme");
        // Duplicates inside one batch are reported at the later index.
        let r = t
            .data(
                "mutation($d: [ContactInput!]!) { createContacts(data: $d) { id } }",
                json!({"d": [{"name": "a", "email": "dup@example.com"}, {"name": "b", "email": "dup@example.com"}]}),
            )
            .await;
        assert_eq!(field_errors(&r), [(1, "email".to_string(), "UNIQUE".to_string())]);
        assert_eq!(count(&t).await, 2);
    });
}

#[tokio::test]
async fn decimals_are_exact_through_aggregates() {
    each_backend!(|t| {
        crm(&t).await;
        contacts(&t, json!([{"name": "a", "amount": "0.10"}, {"name": "b", "amount": 0.2}])).await;
        let d = t
            .data_ok(
                "{ contactsAggregate { count sum { amount } avg { amount } min { amount } max { amount } } }",
                json!({}),
            )
            .await;
        let a = &d["contactsAggregate"];
        assert_eq!(a["count"], 2);
        assert_eq!(a["sum"]["amount"], "0.30");
        let avg = a["avg"]["amount"].as_str().unwrap();
        assert_eq!(avg.trim_end_matches('0'), "0.15", "averages are exact decimal strings (extra digits allowed)");
        assert_eq!(a["min"]["amount"], "0.10");
        assert_eq!(a["max"]["amount"], "0.20");
        let d = t.data_ok(r#"{ contacts(filter: {amount: {eq: "0.3"}}) { nodes { name } } }"#, json!({})).await;
        assert_eq!(d["contacts"]["nodes"], json!([]));
        let d = t.data_ok(r#"{ contacts(filter: {amount: {gt: 0.1}}) { nodes { name } } }"#, json!({})).await;
        assert_eq!(d["contacts"]["nodes"], json!([{"name": "b"}]));
    });
}

// ---------------------------------------------------------------------------------------------
// Reading lists

#[tokio::test]
async fn filters_with_every_operator() {
    each_backend!(|t| {
        crm(&t).await;
        seed(&t).await;
        let cases = [
            (json!({"name": {"eq": "Bob"}}), vec!["Bob"]),
            (json!({"name": {"eq": "张伟"}}), vec!["张伟"]),
            (json!({"stage": {"neq": "WON"}}), vec!["Alice", "carol", "张伟"]),
            (json!({"name": {"in": ["Alice", "Dave", "Zed"]}}), vec!["Alice", "Dave"]),
            (json!({"stage": {"notIn": ["NEW", "IN_PROGRESS"]}}), vec!["Bob", "Dave"]),
            (json!({"score": {"gt": 20}}), vec!["Dave", "张伟"]),
            (json!({"score": {"gte": 20}}), vec!["Bob", "Dave", "张伟"]),
            (json!({"score": {"lt": 20}}), vec!["Alice"]),
            (json!({"score": {"lte": 20}}), vec!["Alice", "Bob"]),
            (json!({"amount": {"lt": "2"}}), vec!["Dave"]),
            (json!({"name": {"like": "%a%"}}), vec!["carol", "Dave"]),
            (json!({"name": {"ilike": "%A%"}}), vec!["Alice", "carol", "Dave"]),
            (json!({"name": {"startsWith": "Da"}}), vec!["Dave"]),
            (json!({"name": {"startsWith": "da"}}), vec![]),
            (json!({"name": {"endsWith": "ol"}}), vec!["carol"]),
            (json!({"email": {"endsWith": "@example.com"}}), vec!["Alice", "Bob", "Dave", "张伟"]),
            (json!({"score": {"isNull": true}}), vec!["carol"]),
            (json!({"email": {"isNull": false}}), vec!["Alice", "Bob", "Dave", "张伟"]),
            (json!({"or": [{"name": {"eq": "Alice"}}, {"score": {"gte": 30}}]}), vec!["Alice", "Dave", "张伟"]),
            (json!({"and": [{"score": {"gte": 10}}, {"score": {"lte": 30}}]}), vec!["Alice", "Bob", "Dave"]),
            (json!({"not": {"stage": {"eq": "WON"}}}), vec!["Alice", "carol", "张伟"]),
            (
                json!({"not": {"or": [{"name": {"eq": "Alice"}}, {"name": {"eq": "Bob"}}]}}),
                vec!["carol", "Dave", "张伟"],
            ),
            (json!({"account": {"name": {"eq": "Acme"}}}), vec!["Alice", "Dave", "张伟"]),
            (json!({"account": {"name": {"startsWith": "Glo"}}, "score": {"gt": 0}}), vec!["Bob"]),
            (json!({"accountId": {"isNull": true}}), vec!["carol"]),
        ];
        for (filter, expected) in cases {
            assert_eq!(matching(&t, filter.clone()).await, sorted(&expected), "[{:?}] filter {filter}", t.backend);
        }
        let r = t.data(r#"{ contacts(filter: {nope: {eq: 1}}) { nodes { name } } }"#, json!({})).await;
        assert_eq!(error_codes(&r), ["BAD_USER_INPUT"]);
    });
}

#[tokio::test]
async fn orders_by_several_keys_with_explicit_null_placement() {
    each_backend!(|t| {
        crm(&t).await;
        seed(&t).await;
        assert_eq!(ordered(&t, json!([{"score": "AscNullsFirst"}])).await, ["carol", "Alice", "Bob", "Dave", "张伟"]);
        assert_eq!(ordered(&t, json!([{"score": "AscNullsLast"}])).await, ["Alice", "Bob", "Dave", "张伟", "carol"]);
        assert_eq!(ordered(&t, json!([{"score": "DescNullsFirst"}])).await, ["carol", "张伟", "Dave", "Bob", "Alice"]);
        assert_eq!(ordered(&t, json!([{"score": "DescNullsLast"}])).await, ["张伟", "Dave", "Bob", "Alice", "carol"]);
        assert_eq!(
            ordered(&t, json!([{"amount": "DescNullsFirst"}, {"score": "DescNullsLast"}])).await,
            ["carol", "张伟", "Bob", "Alice", "Dave"]
        );
        assert_eq!(
            ordered(&t, json!([{"amount": "AscNullsLast"}, {"score": "AscNullsFirst"}])).await,
            ["Dave", "Alice", "Bob", "张伟", "carol"]
        );
    });
}

/// One page: (names, cursors of the edges, hasNext, hasPrevious, totalCount).
async fn page(t: &TestServer, args: &str) -> (Vec<String>, Vec<String>, bool, bool, Value) {
    let q = format!(
        "{{ contacts(orderBy: [{{score: AscNullsLast}}], {args}) {{ totalCount edges {{ cursor node {{ name }} }}
            pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }} }} }}"
    );
    let c = t.data_ok(&q, json!({})).await["contacts"].clone();
    let edges = c["edges"].as_array().unwrap();
    let names = edges.iter().map(|e| e["node"]["name"].as_str().unwrap().to_string()).collect();
    let cursors: Vec<String> = edges.iter().map(|e| e["cursor"].as_str().unwrap().to_string()).collect();
    if let Some(first) = cursors.first() {
        assert_eq!(&c["pageInfo"]["startCursor"], first);
        assert_eq!(&c["pageInfo"]["endCursor"], cursors.last().unwrap());
    }
    let pi = &c["pageInfo"];
    (
        names,
        cursors,
        pi["hasNextPage"].as_bool().unwrap(),
        pi["hasPreviousPage"].as_bool().unwrap(),
        c["totalCount"].clone(),
    )
}

#[tokio::test]
async fn keyset_pagination_walks_every_page_forwards_and_backwards() {
    each_backend!(|t| {
        crm(&t).await;
        // Many ties and some nulls in the sort key, so the hidden `id` key matters.
        let data: Vec<Value> = (1..=25)
            .map(|i| json!({"name": format!("P{i:02}"), "score": if i % 5 == 0 { Value::Null } else { json!(i % 3) }}))
            .collect();
        contacts(&t, Value::Array(data)).await;
        let (all, _, more, _, _) = page(&t, "first: 100").await;
        assert_eq!(all.len(), 25);
        assert!(!more);

        let mut forward = Vec::new();
        let mut after: Option<String> = None;
        let mut pages = 0;
        loop {
            let args = match &after {
                Some(c) => format!("first: 7, after: \"{c}\""),
                None => "first: 7".into(),
            };
            let (names, cursors, has_next, has_prev, _) = page(&t, &args).await;
            assert_eq!(has_prev, after.is_some());
            forward.extend(names);
            pages += 1;
            if !has_next {
                break;
            }
            after = cursors.last().cloned();
            assert!(pages < 10);
        }
        assert_eq!(pages, 4);
        assert_eq!(forward, all, "forward pages join into the full ordered list");

        let mut backward: Vec<String> = Vec::new();
        let mut before: Option<String> = None;
        loop {
            let args = match &before {
                Some(c) => format!("last: 7, before: \"{c}\""),
                None => "last: 7".into(),
            };
            let (names, cursors, has_next, has_prev, _) = page(&t, &args).await;
            assert_eq!(has_next, before.is_some());
            let mut joined = names;
            joined.extend(backward);
            backward = joined;
            if !has_prev {
                break;
            }
            before = cursors.first().cloned();
            assert!(backward.len() < 40);
        }
        assert_eq!(backward, all, "backward pages join into the full ordered list");

        let (names, _, _, _, total) = page(&t, "first: 3, filter: {score: {eq: 1}}").await;
        assert_eq!(names.len(), 3);
        assert_eq!(total, 7, "totalCount counts every match, not the page");
        let d = t.data_ok("{ contacts(first: 2) { nodes { name } } }", json!({})).await;
        assert_eq!(d["contacts"]["nodes"].as_array().unwrap().len(), 2);
        let d = t.data_ok("{ contacts { nodes { name } } }", json!({})).await;
        assert_eq!(d["contacts"]["nodes"].as_array().unwrap().len(), 20, "first defaults to 20");
        for bad in ["first: 101", "last: 101", "first: -1", "after: \"not-a-cursor\""] {
            let r = t.data(&format!("{{ contacts({bad}) {{ nodes {{ name }} }} }}"), json!({})).await;
            assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "{bad}: {r}");
        }
    });
}

#[tokio::test]
async fn resolves_lookups_and_reverse_relations_as_nested_connections() {
    each_backend!(|t| {
        crm(&t).await;
        seed(&t).await;
        let d = t
            .data_ok(
                r#"{ contacts(filter: {name: {in: ["Alice", "carol"]}}, orderBy: [{score: AscNullsLast}]) {
                    nodes { name accountId account { id name contacts(first: 2, orderBy: [{score: AscNullsLast}]) {
                        nodes { name account { name } } pageInfo { hasNextPage } } } } } }"#,
                json!({}),
            )
            .await;
        let nodes = &d["contacts"]["nodes"];
        assert_eq!(nodes[0]["account"]["name"], "Acme");
        assert_eq!(nodes[0]["accountId"], nodes[0]["account"]["id"]);
        assert_eq!(
            nodes[0]["account"]["contacts"]["nodes"],
            json!([
            {"name": "Alice", "account": {"name": "Acme"}}, {"name": "Dave", "account": {"name": "Acme"}}])
        );
        assert_eq!(nodes[0]["account"]["contacts"]["pageInfo"]["hasNextPage"], true);
        assert!(nodes[1]["account"].is_null() && nodes[1]["accountId"].is_null());

        let d = t
            .data_ok(
                r#"{ accounts(orderBy: [{name: AscNullsLast}]) { nodes { name
                    won: contacts(filter: {stage: {eq: WON}}) { nodes { name } }
                    contacts(first: 2, orderBy: [{score: DescNullsLast}]) { nodes { name } pageInfo { hasNextPage } } } } }"#,
                json!({}),
            )
            .await;
        assert_eq!(
            d["accounts"]["nodes"],
            json!([
                {"name": "Acme", "won": {"nodes": [{"name": "Dave"}]},
                 "contacts": {"nodes": [{"name": "张伟"}, {"name": "Dave"}], "pageInfo": {"hasNextPage": true}}},
                {"name": "Globex", "won": {"nodes": [{"name": "Bob"}]},
                 "contacts": {"nodes": [{"name": "Bob"}], "pageInfo": {"hasNextPage": false}}},
            ])
        );
    });
}

#[tokio::test]
async fn aggregates_and_groups_records() {
    each_backend!(|t| {
        crm(&t).await;
        seed(&t).await;
        let d = t
            .data_ok(
                r#"{ all: contactsAggregate { count sum { amount score } avg { score } min { amount score } max { amount score } }
                     acme: contactsAggregate(filter: {account: {name: {eq: "Acme"}}}) { count sum { amount } } }"#,
                json!({}),
            )
            .await;
        assert_eq!(d["all"]["count"], 5);
        assert_eq!(d["all"]["sum"], json!({"amount": "7.00", "score": 100}));
        assert_eq!(d["all"]["min"], json!({"amount": "1.00", "score": 10}));
        assert_eq!(d["all"]["max"], json!({"amount": "2.00", "score": 40}));
        assert_eq!(d["all"]["avg"]["score"].as_str().unwrap().parse::<f64>().unwrap(), 25.0);
        assert_eq!(d["acme"], json!({"count": 3, "sum": {"amount": "5.00"}}));

        let d = t
            .data_ok("{ contactsGroupBy(groupBy: [stage]) { stage count sum { amount } max { score } } }", json!({}))
            .await;
        let mut groups = d["contactsGroupBy"].as_array().unwrap().clone();
        groups.sort_by_key(|g| g["stage"].as_str().unwrap().to_string());
        assert_eq!(
            groups,
            [
                json!({"stage": "IN_PROGRESS", "count": 1, "sum": {"amount": null}, "max": {"score": null}}),
                json!({"stage": "NEW", "count": 2, "sum": {"amount": "4.00"}, "max": {"score": 40}}),
                json!({"stage": "WON", "count": 2, "sum": {"amount": "3.00"}, "max": {"score": 30}}),
            ]
        );
        let d = t
            .data_ok(
                "{ contactsGroupBy(groupBy: [stage], filter: {score: {gte: 20}}, first: 10) { stage count } }",
                json!({}),
            )
            .await;
        assert_eq!(
            d["contactsGroupBy"].as_array().unwrap().iter().map(|g| g["count"].as_i64().unwrap()).sum::<i64>(),
            3
        );
    });
}

// ---------------------------------------------------------------------------------------------
// Changing records

#[tokio::test]
async fn upserts_on_a_unique_field_updating_only_the_listed_fields() {
    each_backend!(|t| {
        crm(&t).await;
        seed(&t).await;
        let d = t
            .data_ok(
                r#"mutation { createContacts(data: [
                    {name: "Ignored", firstName: "Alicia", email: "alice@example.com", score: 99},
                    {name: "Erin", firstName: "E", email: "erin@example.com"}],
                    upsert: {onConflict: [email], update: [firstName]}) { name firstName score version email } }"#,
                json!({}),
            )
            .await;
        assert_eq!(
            d["createContacts"],
            json!([
                {"name": "Alice", "firstName": "Alicia", "score": 10, "version": 2, "email": "alice@example.com"},
                {"name": "Erin", "firstName": "E", "score": null, "version": 1, "email": "erin@example.com"},
            ])
        );
        assert_eq!(count(&t).await, 6);
        assert_eq!(matching(&t, json!({"firstName": {"eq": "Alicia"}})).await, ["Alice"]);
        // The same through variables, where enum values travel as strings.
        let d = t
            .data_ok(
                "mutation($d: [ContactInput!]!, $u: ContactUpsert) { createContacts(data: $d, upsert: $u) { name firstName } }",
                json!({"d": [{"name": "x", "firstName": "Bobby", "email": "bob@example.com"}],
                       "u": {"onConflict": ["email"], "update": ["firstName"]}}),
            )
            .await;
        assert_eq!(d["createContacts"], json!([{"name": "Bob", "firstName": "Bobby"}]));
        assert_eq!(count(&t).await, 6);
    });
}

#[tokio::test]
async fn rejects_stale_expected_version_with_conflict() {
    each_backend!(|t| {
        crm(&t).await;
        let c = contacts(&t, json!([{"name": "V", "score": 1}])).await;
        let id = c[0]["id"].as_str().unwrap();
        let q = "mutation($id: ID!, $d: ContactInput!, $v: Int) { updateContact(id: $id, data: $d, expectedVersion: $v) { score version } }";
        let d = t.data_ok(q, json!({"id": id, "d": {"score": 2}, "v": 1})).await;
        assert_eq!(d["updateContact"], json!({"score": 2, "version": 2}));
        let r = t.data(q, json!({"id": id, "d": {"score": 3}, "v": 1})).await;
        assert_eq!(error_codes(&r), ["CONFLICT"]);
        let d = t.data_ok(q, json!({"id": id, "d": {"score": 4}, "v": null})).await;
        assert_eq!(d["updateContact"], json!({"score": 4, "version": 3}), "without expectedVersion the write wins");
        let r = t.data(q, json!({"id": id, "d": {"name": null}, "v": 3})).await;
        assert_eq!(field_errors(&r), [(0, "name".to_string(), "REQUIRED".to_string())]);
        let r = t.data(q, json!({"id": "missing", "d": {"score": 1}, "v": null})).await;
        assert_eq!(error_codes(&r), ["NOT_FOUND"]);
    });
}

#[tokio::test]
async fn updates_many_records_by_filter_and_returns_them() {
    each_backend!(|t| {
        crm(&t).await;
        seed(&t).await;
        let d = t
            .data_ok(
                r#"mutation { updateContacts(filter: {account: {name: {eq: "Acme"}}}, data: {stage: ARCHIVED, score: 0}) {
                    name stage score version } }"#,
                json!({}),
            )
            .await;
        let mut got = d["updateContacts"].as_array().unwrap().clone();
        got.sort_by_key(|c| c["name"].as_str().unwrap().to_string());
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|c| c["stage"] == "ARCHIVED" && c["score"] == 0 && c["version"] == 2), "{got:?}");
        assert_eq!(matching(&t, json!({"stage": {"eq": "ARCHIVED"}})).await, sorted(&["Alice", "Dave", "张伟"]));
        assert_eq!(matching(&t, json!({"score": {"eq": 20}})).await, ["Bob"], "others untouched");
    });
}

#[tokio::test]
async fn deletes_to_the_recycle_bin_restores_and_destroys() {
    each_backend!(|t| {
        crm(&t).await;
        let (acme, _) = seed(&t).await;
        let alice = t.data_ok(r#"{ contacts(filter: {name: {eq: "Alice"}}) { nodes { id } } }"#, json!({})).await
            ["contacts"]["nodes"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let get = "query($id: ID!) { contact(id: $id) { name } }";
        let d =
            t.data_ok("mutation($id: ID!) { deleteContact(id: $id) { name deletedAt } }", json!({"id": alice})).await;
        assert!(d["deleteContact"]["deletedAt"].is_string());
        assert!(t.data_ok(get, json!({"id": alice})).await["contact"].is_null());
        assert_eq!(count(&t).await, 4);
        assert!(!matching(&t, json!({})).await.contains(&"Alice".to_string()));
        let d = t
            .data_ok(
                r#"{ account: accounts(filter: {name: {eq: "Acme"}}) { nodes { contacts { nodes { name } } } } }"#,
                json!({}),
            )
            .await;
        assert_eq!(d["account"]["nodes"][0]["contacts"]["nodes"].as_array().unwrap().len(), 2);

        let d =
            t.data_ok("mutation($id: ID!) { restoreContact(id: $id) { name deletedAt } }", json!({"id": alice})).await;
        assert_eq!(d["restoreContact"], json!({"name": "Alice", "deletedAt": null}));
        assert_eq!(t.data_ok(get, json!({"id": alice})).await["contact"]["name"], "Alice");

        let d = t.data_ok("mutation($id: ID!) { destroyAccount(id: $id) }", json!({"id": acme})).await;
        assert_eq!(d["destroyAccount"], acme.as_str());
        assert!(
            t.data_ok("query($id: ID!) { account(id: $id) { id } }", json!({"id": acme})).await["account"].is_null()
        );
        let d = t
            .data_ok(
                r#"{ contacts(filter: {name: {in: ["Alice", "Dave"]}}) { nodes { accountId account { name } } } }"#,
                json!({}),
            )
            .await;
        assert_eq!(
            d["contacts"]["nodes"],
            json!([{"accountId": null, "account": null}, {"accountId": null, "account": null}])
        );
        let r = t.data("mutation($id: ID!) { restoreAccount(id: $id) { id } }", json!({"id": acme})).await;
        assert_eq!(error_codes(&r), ["NOT_FOUND"], "destroyed records are gone for good");

        t.data_ok("mutation($id: ID!) { destroyContact(id: $id) }", json!({"id": alice})).await;
        assert_eq!(count(&t).await, 4);
    });
}

#[tokio::test]
async fn auto_numbers_are_gapless_and_unique_under_concurrent_inserts() {
    each_backend!(|t| {
        crm(&t).await;
        let tasks = (0..8).map(|task| {
            let (client, base, token) = (t.client.clone(), t.base.clone(), t.token.clone());
            async move {
                let mut codes = Vec::new();
                for i in 0..5 {
                    let body = json!({
                        "query": "mutation($n: String!) { createContact(data: {name: $n}) { code } }",
                        "variables": {"n": format!("t{task}-{i}")},
                    });
                    let r: Value = client
                        .post(format!("{base}/graphql"))
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    assert!(r.get("errors").is_none(), "{r}");
                    codes.push(r["data"]["createContact"]["code"].as_str().unwrap().to_string());
                }
                codes
            }
        });
        let mut codes: Vec<String> = futures::future::join_all(tasks).await.into_iter().flatten().collect();
        codes.sort();
        let expected: Vec<String> = (1..=40).map(|i| format!("C-{i:06}")).collect();
        assert_eq!(codes, expected);
    });
}

/// A batch mutation takes at most 500 records unless the server is configured otherwise
/// (`--max-batch`); a larger one is refused whole, before anything is written.
#[tokio::test]
async fn batches_over_the_cap_are_refused_and_the_cap_is_configurable() {
    let create = "mutation($d: [ContactInput!]!) { createContacts(data: $d) { id } }";
    let rows = |n: usize| json!({"d": (0..n).map(|i| json!({"name": format!("n{i}")})).collect::<Vec<_>>()});
    each_backend!(|t| {
        crm(&t).await;
        let r = t.data(create, rows(501)).await;
        assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "{r}");
        assert!(r["errors"][0]["message"].as_str().unwrap().contains("at most 500 records per batch"), "{r}");
        assert_eq!(count(&t).await, 0);
        assert_eq!(t.data_ok(create, rows(500)).await["createContacts"].as_array().unwrap().len(), 500);
    });
    for backend in backends() {
        let t = TestServer::start_with(backend, |c| c.limits.max_batch = 3).await;
        crm(&t).await;
        let r = t.data(create, rows(4)).await;
        assert!(r["errors"][0]["message"].as_str().unwrap().contains("at most 3 records per batch"), "{r}");
        assert_eq!(t.data_ok(create, rows(3)).await["createContacts"].as_array().unwrap().len(), 3);
        assert_eq!(count(&t).await, 3);
        t.stop().await;
    }
}

/// A batch create checks its lookups before it waits for SQLite's write lock; a record destroyed
/// while it waits must still stop it. Each round queues, behind a large batch that holds the
/// lock, first the destroy of an account and then a create of a contact that names it: the
/// create is refused (the account is gone when it writes), and no contact is left pointing at a
/// record that no longer exists.
#[tokio::test]
async fn a_lookup_destroyed_while_a_batch_create_waits_is_refused_and_never_left_dangling() {
    use sea_orm::{ConnectionTrait, Database, Statement};
    each_backend!(|t| {
        crm(&t).await;
        t.object("note", "notes", vec![json!({"name": "body", "label": "正文", "type": "LONG_TEXT"})]).await;
        let post = |query: &'static str, variables: Value| {
            let (client, base, token) = (t.client.clone(), t.base.clone(), t.token.clone());
            tokio::spawn(async move {
                let body = json!({"query": query, "variables": variables});
                let r = client.post(format!("{base}/graphql")).bearer_auth(&token).json(&body).send().await.unwrap();
                r.json::<Value>().await.unwrap()
            })
        };
        let notes: Vec<Value> = (0..500).map(|i| json!({"body": format!("{i} {}", "备注".repeat(200))})).collect();
        let mut refused = 0;
        for round in 0..12 {
            let r = t
                .data_ok(
                    "mutation($n: String!) { createAccount(data: {name: $n}) { id } }",
                    json!({"n": format!("A{round}")}),
                )
                .await;
            let account = r["createAccount"]["id"].as_str().unwrap().to_string();
            let filler = post("mutation($d: [NoteInput!]!) { createNotes(data: $d) { id } }", json!({"d": notes}));
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            let destroy = post("mutation($id: ID!) { destroyAccount(id: $id) }", json!({"id": account}));
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            let create = post(
                "mutation($d: [ContactInput!]!) { createContacts(data: $d) { id } }",
                json!({"d": [{"name": format!("C{round}"), "accountId": account}]}),
            );
            let (filler, destroy, create) = (filler.await.unwrap(), destroy.await.unwrap(), create.await.unwrap());
            assert!(filler.get("errors").is_none(), "{filler}");
            assert!(destroy.get("errors").is_none(), "{destroy}");
            if create.get("errors").is_some() {
                assert_eq!(field_errors(&create), [(0, "account".to_string(), "NOT_FOUND".to_string())], "{create}");
                refused += 1;
            }
        }
        let db = Database::connect(&t.database_url).await.unwrap();
        let dangling = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT COUNT(*) FROM obj_contact c WHERE c.account_id IS NOT NULL \
                 AND NOT EXISTS (SELECT 1 FROM obj_account a WHERE a.id = c.account_id)",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index::<i64>(0)
            .unwrap();
        db.close().await.unwrap();
        assert_eq!(dangling, 0, "contacts name destroyed accounts");
        // The destroy was queued first, so the create nearly always meets it; a round where the
        // create got in first is allowed, but not every round.
        assert!(refused > 0, "no create waited behind a destroy: the test did not race them");
    });
}

// ---------------------------------------------------------------------------------------------
// Protections and the live schema

#[tokio::test]
async fn bad_requests_are_refused_with_codes_and_the_server_keeps_serving() {
    each_backend!(|t| {
        crm(&t).await;
        let deep = format!(
            "{{ contacts {{ nodes {{ {} name {} }} }} }}",
            "account { contacts { nodes { ".repeat(8),
            "} } } ".repeat(8)
        );
        for q in ["{ contacts(first: 1) { nodes { name }", "{ contacts { nodes { nope } } }", "{ nope }", &deep] {
            let r = t.data(q, json!({})).await;
            assert!(r["data"].is_null() || r["data"].get("contacts").is_none(), "{r}");
            assert_eq!(error_codes(&r)[0], "BAD_USER_INPUT", "{q}: {r}");
        }
        let many: Vec<String> = (0..1001).map(|i| format!("n{i}")).collect();
        let r = t
            .data("query($v: [String!]) { contacts(filter: {name: {in: $v}}) { nodes { name } } }", json!({"v": many}))
            .await;
        assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "{r}");
        let (status, body) = t.post_raw("/graphql", "this is not json".into()).await;
        assert_eq!(status, 400);
        assert_eq!(error_codes(&body), ["BAD_USER_INPUT"]);
        let huge = json!({"query": format!("{{ contacts {{ nodes {{ name }} }} }} # {}", "x".repeat(5 * 1024 * 1024))});
        let (status, _) = t.post_raw("/graphql", huge.to_string()).await;
        assert_eq!(status, 413);
        let d = t.data_ok("{ contacts { nodes { name } } }", json!({})).await;
        assert_eq!(d["contacts"]["nodes"], json!([]));
    });
}

#[tokio::test]
async fn missing_or_invalid_token_is_unauthenticated() {
    each_backend!(|t| {
        crm(&t).await;
        let body = json!({"query": "{ contacts { nodes { name } } }"});
        for token in [None, Some("not-a-real-token"), Some("")] {
            let mut req = t.client.post(format!("{}/graphql", t.base)).json(&body);
            if let Some(tok) = token {
                req = req.bearer_auth(tok);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status().as_u16(), 401, "{token:?}");
            let v: Value = r.json().await.unwrap();
            assert_eq!(error_codes(&v), ["UNAUTHENTICATED"]);
        }
    });
}

#[tokio::test]
async fn metadata_changes_are_visible_in_the_next_request() {
    each_backend!(|t| {
        crm(&t).await;
        let r = t.data("{ contacts { nodes { nickname } } }", json!({})).await;
        assert_eq!(error_codes(&r), ["BAD_USER_INPUT"]);
        t.meta_ok(
            r#"mutation { createField(object: "contact", input: {name: "nickname", label: "昵称", type: TEXT}) { name } }"#,
            json!({}),
        )
        .await;
        let d = t
            .data_ok(r#"mutation { createContact(data: {name: "N", nickname: "小N"}) { nickname } }"#, json!({}))
            .await;
        assert_eq!(d["createContact"]["nickname"], "小N");
        t.object("lead", "leads", vec![json!({"name": "title", "label": "标题", "type": "TEXT"})]).await;
        let d = t.data_ok(r#"mutation { createLead(data: {title: "线索"}) { title } }"#, json!({})).await;
        assert_eq!(d["createLead"]["title"], "线索");
        t.meta_ok(r#"mutation { deleteField(object: "contact", field: "nickname") }"#, json!({})).await;
        let r = t.data("{ contacts { nodes { nickname } } }", json!({})).await;
        assert_eq!(error_codes(&r), ["BAD_USER_INPUT"]);
        let d = t.data_ok("{ contacts { nodes { name } } }", json!({})).await;
        assert_eq!(d["contacts"]["nodes"], json!([{"name": "N"}]));
    });
}

#[tokio::test]
async fn errors_name_the_response_path_of_the_field_that_failed() {
    each_backend!(|t| {
        crm(&t).await;
        seed(&t).await;
        // Aliased mutations: each error names the alias that failed, the others succeed.
        let r = t
            .data(
                r#"mutation {
                    ok: createContact(data: {name: "Erin", email: "erin@example.com"}) { id }
                    taken: createContact(data: {name: "Erin 2", email: "erin@example.com"}) { id }
                    missing: updateContact(id: "00000000-0000-7000-8000-000000000000", data: {score: 1}) { id }
                }"#,
                json!({}),
            )
            .await;
        assert!(r["data"]["ok"]["id"].is_string(), "{r}");
        let paths: Vec<(Value, Value)> = r["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["path"].clone(), e["extensions"]["code"].clone()))
            .collect();
        assert_eq!(paths, vec![(json!(["taken"]), json!("CONFLICT")), (json!(["missing"]), json!("NOT_FOUND"))], "{r}");
        // A nested page's arguments are checked when the list around it plans its batched
        // loads (before any row is read), so the error names that list.
        let r = t
            .data(
                r#"{ accounts(filter: {name: {eq: "Acme"}}) { nodes { name contacts(first: 100000) { nodes { name } } } } }"#,
                json!({}),
            )
            .await;
        assert_eq!(r["errors"][0]["path"], json!(["accounts"]), "{r}");
        assert_eq!(r["errors"][0]["extensions"]["code"], json!("BAD_USER_INPUT"), "{r}");
    });
}

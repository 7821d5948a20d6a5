#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The metadata API (`POST /graphql/metadata`) end to end: authentication, objects and fields,
//! name validation, schema changes against tables holding records, the audit log and the
//! metadata version — on SQLite and, when configured, PostgreSQL.

use serde_json::{Value, json};
use tessera_tests::*;

const CREATE_FIELD: &str =
    "mutation($o: String!, $f: FieldInput!) { createField(object: $o, input: $f) { name label type required unique } }";
const UPDATE_FIELD: &str = "mutation($o: String!, $f: String!, $i: UpdateFieldInput!) { updateField(object: $o, field: $f, input: $i) { name type scale options { value label active } } }";
const CREATE_OBJECT: &str =
    "mutation($i: CreateObjectInput!) { createObject(input: $i) { name pluralName label pluralLabel typeName } }";

async fn create_field(t: &TestServer, object: &str, field: Value) -> Value {
    t.meta(CREATE_FIELD, json!({"o": object, "f": field})).await
}

async fn update_field(t: &TestServer, object: &str, field: &str, input: Value) -> Value {
    t.meta(UPDATE_FIELD, json!({"o": object, "f": field, "i": input})).await
}

async fn create_object(t: &TestServer, name: &str, plural: &str) -> Value {
    let i = json!({"name": name, "pluralName": plural, "label": "对象", "pluralLabel": "对象"});
    t.meta(CREATE_OBJECT, json!({"i": i})).await
}

async fn version(t: &TestServer) -> i64 {
    t.meta_ok("{ metadataVersion }", json!({})).await["metadataVersion"].as_i64().unwrap()
}

fn message(r: &Value) -> String {
    r["errors"][0]["message"].as_str().unwrap_or_default().to_string()
}

/// Asserts the response failed with `code` and a message mentioning every part of `mentions`.
fn assert_refused(r: &Value, code: &str, mentions: &[&str]) {
    assert_eq!(error_codes(r), vec![code.to_string()], "expected {code}: {r}");
    let m = message(r);
    for part in mentions {
        assert!(m.contains(part), "message `{m}` should mention `{part}`");
    }
}

fn text(name: &str) -> Value {
    json!({"name": name, "label": "文本", "type": "TEXT"})
}

/// A `contact` object with a `name` text field and the given records.
async fn contacts_with(t: &TestServer, names: &[&str]) -> Vec<String> {
    t.object("contact", "contacts", vec![json!({"name": "name", "label": "姓名", "type": "TEXT"})]).await;
    let mut ids = Vec::new();
    for n in names {
        let d = t.data_ok("mutation($n: String) { createContact(data: {name: $n}) { id } }", json!({"n": n})).await;
        ids.push(d["createContact"]["id"].as_str().unwrap().to_string());
    }
    ids
}

async fn set_contact(t: &TestServer, id: &str, data: Value) -> Value {
    t.data(
        "mutation($id: ID!, $d: ContactInput!) { updateContact(id: $id, data: $d) { id } }",
        json!({"id": id, "d": data}),
    )
    .await
}

async fn contact_values(t: &TestServer, fields: &str) -> Vec<Value> {
    let q = format!("{{ contacts(first: 100, orderBy: [{{name: AscNullsLast}}]) {{ nodes {{ {fields} }} }} }}");
    t.data_ok(&q, json!({})).await["contacts"]["nodes"].as_array().unwrap().clone()
}

#[tokio::test]
async fn health_check_answers_ok() {
    each_backend!(|t| {
        let r = t.client.get(format!("{}/healthz", t.base)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": "ok"}));
    });
}

#[tokio::test]
async fn login_with_a_wrong_password_is_refused_with_401() {
    each_backend!(|t| {
        let r = t
            .client
            .post(format!("{}/auth/login", t.base))
            .json(&json!({"email": ADMIN_EMAIL, "password": "wrong"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401);
        assert_eq!(t.login("nobody@example.com", ADMIN_PASSWORD).await, None);
        assert!(t.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.is_some());
    });
}

#[tokio::test]
async fn metadata_api_refuses_missing_tokens_and_non_admins() {
    each_backend!(|t| {
        let url = format!("{}/graphql/metadata", t.base);
        let body = json!({"query": "{ metadataVersion }"});
        let r = t.client.post(&url).json(&body).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401);
        assert_eq!(error_codes(&r.json().await.unwrap()), vec!["UNAUTHENTICATED"]);
        let r = t.client.post(&url).bearer_auth("not-a-token").json(&body).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401);

        t.meta_ok(r#"mutation { createRole(input: {name: "sales_rep", label: "销售代表"}) { name } }"#, json!({}))
            .await;
        t.meta_ok(
            r#"mutation { createUser(input: {email: "rep@example.com", password: "rep password", displayName: "销售", roles: ["sales_rep"]}) { id } }"#,
            json!({}),
        )
        .await;
        let token = t.login("rep@example.com", "rep password").await.expect("a non-admin can log in");
        let r = t.client.post(&url).bearer_auth(&token).json(&body).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 403);
        assert_eq!(error_codes(&r.json().await.unwrap()), vec!["FORBIDDEN"]);
        let me = t.meta_ok("{ me { email roles } }", json!({})).await;
        assert_eq!(me["me"], json!({"email": ADMIN_EMAIL, "roles": ["admin"]}));
    });
}

#[tokio::test]
async fn objects_are_created_listed_updated_and_deleted_with_chinese_labels() {
    each_backend!(|t| {
        let i = json!({"name": "customer", "pluralName": "customers", "label": "客户", "pluralLabel": "客户们", "description": "买家"});
        let r = t.meta_ok(CREATE_OBJECT, json!({"i": i})).await;
        assert_eq!(
            r["createObject"],
            json!({"name": "customer", "pluralName": "customers", "label": "客户", "pluralLabel": "客户们", "typeName": "Customer"})
        );
        let list = t.meta_ok("{ objects { name label description fields { name } } }", json!({})).await;
        assert_eq!(
            list["objects"],
            json!([{"name": "customer", "label": "客户", "description": "买家", "fields": []}])
        );

        let r = t
            .meta_ok(r#"mutation { updateObject(name: "customer", input: {label: "顾客", pluralLabel: "顾客们"}) { label pluralLabel description } }"#, json!({}))
            .await;
        assert_eq!(r["updateObject"], json!({"label": "顾客", "pluralLabel": "顾客们", "description": "买家"}));
        let o = t.meta_ok(r#"{ object(name: "customer") { label } }"#, json!({})).await;
        assert_eq!(o["object"]["label"], "顾客");

        t.meta_ok(r#"mutation { deleteObject(name: "customer") }"#, json!({})).await;
        assert_eq!(t.meta_ok("{ objects { name } }", json!({})).await["objects"], json!([]));
        assert_eq!(t.meta_ok(r#"{ object(name: "customer") { name } }"#, json!({})).await["object"], Value::Null);
        let r = t.data("{ customers(first: 1) { nodes { id } } }", json!({})).await;
        assert_eq!(error_codes(&r), vec!["BAD_USER_INPUT"], "the data API no longer knows customers: {r}");
        let r = t.meta(r#"mutation { deleteObject(name: "customer") }"#, json!({})).await;
        assert_refused(&r, "NOT_FOUND", &["customer"]);
    });
}

#[tokio::test]
async fn fields_of_every_type_are_created_listed_written_and_read() {
    each_backend!(|t| {
        t.object("account", "accounts", vec![json!({"name": "name", "label": "名称", "type": "TEXT"})]).await;
        t.object("deal", "deals", vec![]).await;
        let opts = json!([{"value": "hot", "label": "热"}, {"value": "cold", "label": "冷"}]);
        let fields = vec![
            json!({"name": "title", "label": "标题", "type": "TEXT", "required": true, "maxLength": 80, "helpText": "简短"}),
            json!({"name": "notes", "label": "备注", "type": "LONG_TEXT"}),
            json!({"name": "seats", "label": "座位数", "type": "INTEGER", "indexed": true}),
            json!({"name": "ratio", "label": "比率", "type": "DECIMAL", "scale": 3}),
            json!({"name": "amount", "label": "金额", "type": "CURRENCY"}),
            json!({"name": "discount", "label": "折扣", "type": "PERCENT"}),
            json!({"name": "won", "label": "赢单", "type": "BOOLEAN", "defaultValue": false}),
            json!({"name": "close_date", "label": "结束日期", "type": "DATE"}),
            json!({"name": "met_at", "label": "会面时间", "type": "DATETIME"}),
            json!({"name": "email", "label": "邮箱", "type": "EMAIL", "unique": true}),
            json!({"name": "phone", "label": "电话", "type": "PHONE"}),
            json!({"name": "site", "label": "网站", "type": "URL"}),
            json!({"name": "heat", "label": "热度", "type": "PICKLIST", "options": opts}),
            json!({"name": "tags", "label": "标签", "type": "MULTI_PICKLIST", "options": opts}),
            json!({"name": "account", "label": "客户", "type": "LOOKUP", "target": "account"}),
            json!({"name": "number", "label": "编号", "type": "AUTO_NUMBER", "format": "D-{0000}"}),
            json!({"name": "extra", "label": "扩展", "type": "JSON"}),
        ];
        for f in &fields {
            let r = create_field(&t, "deal", f.clone()).await;
            assert!(r.get("errors").is_none(), "[{:?}] creating {f}: {r}", t.backend);
            assert_eq!(r["data"]["createField"]["label"], f["label"]);
            assert_eq!(r["data"]["createField"]["type"], f["type"]);
        }
        let o = t
            .meta_ok(r#"{ object(name: "deal") { fields { name label type required unique indexed maxLength helpText scale target format defaultValue options { value label active } } } }"#, json!({}))
            .await;
        let listed = o["object"]["fields"].as_array().unwrap();
        assert_eq!(listed.len(), fields.len());
        let by = |n: &str| listed.iter().find(|f| f["name"] == n).unwrap().clone();
        assert_eq!(by("title")["maxLength"], 80);
        assert_eq!(by("title")["required"], true);
        assert_eq!(by("title")["helpText"], "简短");
        assert_eq!(by("seats")["indexed"], true);
        assert_eq!(by("ratio")["scale"], 3);
        assert_eq!(by("email")["unique"], true);
        assert_eq!(by("won")["defaultValue"], false);
        assert_eq!(by("account")["target"], "account");
        assert_eq!(by("number")["format"], "D-{0000}");
        assert_eq!(
            by("heat")["options"],
            json!([{"value": "hot", "label": "热", "active": true}, {"value": "cold", "label": "冷", "active": true}])
        );

        let acc = t.data_ok(r#"mutation { createAccount(data: {name: "Acme"}) { id } }"#, json!({})).await;
        let acc = acc["createAccount"]["id"].as_str().unwrap();
        let data = json!({
            "title": "大单", "notes": "很长的备注", "seats": 12, "ratio": "0.125", "amount": 1234.5, "discount": "7.5",
            "closeDate": "2026-11-22", "metAt": "2026-01-02T03:04:05Z", "email": "li@example.com",
            "phone": "13800000000", "site": "https://example.com", "heat": "HOT", "tags": ["HOT", "COLD"],
            "accountId": acc, "extra": {"k": [1, "二"]}
        });
        let d = t
            .data_ok(
                "mutation($d: DealInput!) { createDeal(data: $d) { title notes seats ratio amount discount won closeDate metAt email phone site heat tags accountId account { name } number extra } }",
                json!({"d": data}),
            )
            .await;
        let deal = &d["createDeal"];
        assert_eq!(deal["title"], "大单");
        assert_eq!(deal["notes"], "很长的备注");
        assert_eq!(deal["seats"], 12);
        assert_eq!(deal["ratio"], "0.125");
        assert_eq!(deal["amount"], "1234.50");
        assert_eq!(deal["won"], false, "the default applies");
        assert_eq!(deal["closeDate"], "2026-11-22");
        assert!(deal["metAt"].as_str().unwrap().starts_with("2026-01-02T03:04:05"), "{deal}");
        assert_eq!(deal["heat"], "HOT");
        assert_eq!(deal["tags"], json!(["HOT", "COLD"]));
        assert_eq!(deal["account"]["name"], "Acme");
        assert_eq!(deal["number"], "D-0001");
        assert_eq!(deal["extra"], json!({"k": [1, "二"]}));

        let r = update_field(&t, "deal", "title", json!({"label": "主题", "helpText": "新的说明"})).await;
        assert!(r.get("errors").is_none(), "{r}");
        let o = t.meta_ok(r#"{ object(name: "deal") { fields { name label helpText } } }"#, json!({})).await;
        let title = o["object"]["fields"].as_array().unwrap().iter().find(|f| f["name"] == "title").unwrap().clone();
        assert_eq!(title, json!({"name": "title", "label": "主题", "helpText": "新的说明"}));
    });
}

#[tokio::test]
async fn api_names_are_validated_with_clear_errors() {
    each_backend!(|t| {
        let long = "a".repeat(49);
        for (name, why) in [
            ("Customer", "lower-case"),
            ("1customer", "lower-case"),
            (long.as_str(), "48"),
            ("select", "reserved"),
            ("cust-omer", "cust-omer"),
        ] {
            let r = create_object(&t, name, "things").await;
            assert_refused(&r, "BAD_USER_INPUT", &[why]);
        }
        assert_eq!(create_object(&t, &"a".repeat(48), "long_ones").await.get("errors"), None);
        let r = create_object(&t, "customer", "Customers").await;
        assert_refused(&r, "BAD_USER_INPUT", &["Customers"]);

        create_object(&t, "customer", "customers").await;
        assert_refused(&create_object(&t, "customer", "clients").await, "CONFLICT", &["customer"]);
        assert_refused(&create_object(&t, "client", "customer").await, "CONFLICT", &["customer"]);
        assert_refused(&create_object(&t, "customers", "customers_list").await, "CONFLICT", &["customers"]);

        for (name, why) in [
            ("Phone", "lower-case"),
            ("2phone", "lower-case"),
            ("from", "reserved"),
            ("created_at", "created_at"),
            ("id", "id"),
        ] {
            let r = create_field(&t, "customer", text(name)).await;
            assert_refused(&r, "BAD_USER_INPUT", &[why]);
        }
        let r = create_field(&t, "customer", text(&"p".repeat(49))).await;
        assert_refused(&r, "BAD_USER_INPUT", &["48"]);
        assert_eq!(create_field(&t, "customer", text("phone")).await.get("errors"), None);
        assert_refused(&create_field(&t, "customer", text("phone")).await, "CONFLICT", &["phone"]);
        assert_refused(&create_field(&t, "nowhere", text("phone")).await, "NOT_FOUND", &["nowhere"]);
        let r = update_field(&t, "customer", "missing", json!({"label": "x"})).await;
        assert_refused(&r, "NOT_FOUND", &["missing"]);
        let bad_option =
            json!({"name": "stage", "label": "阶段", "type": "PICKLIST", "options": [{"value": "Won", "label": "赢"}]});
        assert_refused(&create_field(&t, "customer", bad_option).await, "BAD_USER_INPUT", &["Won"]);
    });
}

#[tokio::test]
async fn a_lookup_target_must_exist_and_cannot_be_deleted_while_referenced() {
    each_backend!(|t| {
        t.object("account", "accounts", vec![text("name")]).await;
        t.object("contact", "contacts", vec![text("name")]).await;
        let lookup = |target: &str| json!({"name": "account", "label": "客户", "type": "LOOKUP", "target": target});
        let r = create_field(&t, "contact", lookup("company")).await;
        assert_refused(&r, "BAD_USER_INPUT", &["company"]);
        let r = create_field(&t, "contact", json!({"name": "account", "label": "客户", "type": "LOOKUP"})).await;
        assert_eq!(error_codes(&r), vec!["BAD_USER_INPUT"], "a lookup needs a target: {r}");
        assert_eq!(create_field(&t, "contact", lookup("account")).await.get("errors"), None);

        let v = version(&t).await;
        let r = t.meta(r#"mutation { deleteObject(name: "account") }"#, json!({})).await;
        assert_refused(&r, "BAD_USER_INPUT", &["contact.account"]);
        assert_eq!(version(&t).await, v);
        assert!(t.meta_ok(r#"{ object(name: "account") { name } }"#, json!({})).await["object"].is_object());

        t.meta_ok(r#"mutation { deleteField(object: "contact", field: "account") }"#, json!({})).await;
        t.meta_ok(r#"mutation { deleteObject(name: "account") }"#, json!({})).await;
    });
}

#[tokio::test]
async fn a_unique_field_refuses_a_duplicate_value_in_the_data_api() {
    each_backend!(|t| {
        t.object(
            "contact",
            "contacts",
            vec![json!({"name": "email", "label": "邮箱", "type": "EMAIL", "unique": true})],
        )
        .await;
        let create = r#"mutation { createContact(data: {email: "li@example.com"}) { id } }"#;
        t.data_ok(create, json!({})).await;
        let r = t.data(create, json!({})).await;
        assert_eq!(error_codes(&r), vec!["CONFLICT"], "{r}");
        assert_eq!(field_errors(&r), vec![(0, "email".to_string(), "UNIQUE".to_string())]);
        let d = t.data_ok("{ contacts(first: 10) { totalCount } }", json!({})).await;
        assert_eq!(d["contacts"]["totalCount"], 1);
    });
}

#[tokio::test]
async fn a_field_added_to_an_object_with_records_is_queryable_in_the_next_request() {
    each_backend!(|t| {
        contacts_with(&t, &["李雷", "韩梅梅"]).await;
        create_field(&t, "contact", json!({"name": "city", "label": "城市", "type": "TEXT", "defaultValue": "北京"}))
            .await;
        let nodes = contact_values(&t, "name city").await;
        assert_eq!(nodes, vec![json!({"name": "李雷", "city": "北京"}), json!({"name": "韩梅梅", "city": "北京"})]);
        let r = create_field(&t, "contact", json!({"name": "score", "label": "分数", "type": "INTEGER"})).await;
        assert_eq!(r.get("errors"), None);
        let d = t
            .data_ok(
                "{ contacts(first: 10, filter: {score: {isNull: true}}) { totalCount nodes { score } } }",
                json!({}),
            )
            .await;
        assert_eq!(d["contacts"]["totalCount"], 2);
    });
}

#[tokio::test]
async fn a_required_field_without_default_is_refused_on_an_object_with_records() {
    each_backend!(|t| {
        contacts_with(&t, &["李雷"]).await;
        let v = version(&t).await;
        let r =
            create_field(&t, "contact", json!({"name": "phone", "label": "电话", "type": "PHONE", "required": true}))
                .await;
        assert_refused(&r, "BAD_USER_INPUT", &["phone", "default"]);
        assert_eq!(version(&t).await, v);
        let r = create_field(
            &t,
            "contact",
            json!({"name": "phone", "label": "电话", "type": "PHONE", "required": true, "defaultValue": "10086"}),
        )
        .await;
        assert_eq!(r.get("errors"), None, "{r}");
        assert_eq!(contact_values(&t, "phone").await, vec![json!({"phone": "10086"})]);
        let r = t.data("mutation { createContact(data: {name: \"x\", phone: null}) { id } }", json!({})).await;
        assert_eq!(field_errors(&r), vec![(0, "phone".to_string(), "REQUIRED".to_string())], "{r}");
    });
}

#[tokio::test]
async fn text_to_integer_converts_when_every_value_parses() {
    each_backend!(|t| {
        let ids = contacts_with(&t, &["a", "b", "c"]).await;
        create_field(&t, "contact", text("age")).await;
        set_contact(&t, &ids[0], json!({"age": "42"})).await;
        set_contact(&t, &ids[1], json!({"age": " 7 "})).await;
        create_field(&t, "contact", json!({"name": "code", "label": "代码", "type": "TEXT", "unique": true})).await;
        set_contact(&t, &ids[0], json!({"code": "1"})).await;
        // Reads before the change leave prepared statements behind; they must not break after it.
        for _ in 0..3 {
            assert_eq!(contact_values(&t, "age").await[0], json!({"age": "42"}));
        }
        let r = update_field(&t, "contact", "age", json!({"type": "INTEGER"})).await;
        assert_eq!(r.get("errors"), None, "{r}");
        assert_eq!(r["data"]["updateField"]["type"], "INTEGER");
        assert_eq!(contact_values(&t, "age").await, vec![json!({"age": 42}), json!({"age": 7}), json!({"age": null})]);
        let d = t.data_ok("{ contacts(first: 10, filter: {age: {gt: 10}}) { nodes { name } } }", json!({})).await;
        assert_eq!(d["contacts"]["nodes"], json!([{"name": "a"}]));
        // A converted unique field stays unique.
        update_field(&t, "contact", "code", json!({"type": "INTEGER"})).await;
        let r = set_contact(&t, &ids[1], json!({"code": 1})).await;
        assert_eq!(field_errors(&r), vec![(0, "code".to_string(), "UNIQUE".to_string())], "{r}");
    });
}

#[tokio::test]
async fn a_refused_type_change_says_why_and_leaves_data_and_version_untouched() {
    each_backend!(|t| {
        let ids = contacts_with(&t, &["a", "b"]).await;
        create_field(&t, "contact", text("age")).await;
        set_contact(&t, &ids[0], json!({"age": "42"})).await;
        set_contact(&t, &ids[1], json!({"age": "forty"})).await;
        let v = version(&t).await;
        let r = update_field(&t, "contact", "age", json!({"type": "INTEGER"})).await;
        assert_refused(&r, "BAD_USER_INPUT", &["age", "forty"]);
        assert_eq!(version(&t).await, v, "a failed change does not bump the version");
        assert_eq!(contact_values(&t, "age").await, vec![json!({"age": "42"}), json!({"age": "forty"})]);
        let o = t.meta_ok(r#"{ object(name: "contact") { fields { name type } } }"#, json!({})).await;
        assert!(o["object"]["fields"].as_array().unwrap().contains(&json!({"name": "age", "type": "TEXT"})));
        set_contact(&t, &ids[0], json!({"age": "still text"})).await;
    });
}

#[tokio::test]
async fn integer_to_decimal_converts_and_decimal_scale_can_change() {
    each_backend!(|t| {
        let ids = contacts_with(&t, &["a", "b"]).await;
        create_field(&t, "contact", json!({"name": "score", "label": "分数", "type": "INTEGER"})).await;
        set_contact(&t, &ids[0], json!({"score": 3})).await;
        set_contact(&t, &ids[1], json!({"score": -12})).await;
        let r = update_field(&t, "contact", "score", json!({"type": "DECIMAL", "scale": 2})).await;
        assert_eq!(r.get("errors"), None, "{r}");
        assert_eq!(r["data"]["updateField"]["scale"], 2);
        assert_eq!(contact_values(&t, "score").await, vec![json!({"score": "3.00"}), json!({"score": "-12.00"})]);

        set_contact(&t, &ids[0], json!({"score": "3.14"})).await;
        let r = update_field(&t, "contact", "score", json!({"scale": 4})).await;
        assert_eq!(r.get("errors"), None, "{r}");
        assert_eq!(contact_values(&t, "score").await, vec![json!({"score": "3.1400"}), json!({"score": "-12.0000"})]);
        let d =
            t.data_ok("{ contacts(first: 10, filter: {score: {gt: \"3.1\"}}) { nodes { name } } }", json!({})).await;
        assert_eq!(d["contacts"]["nodes"], json!([{"name": "a"}]));
    });
}

#[tokio::test]
async fn a_lookup_cannot_become_text() {
    each_backend!(|t| {
        t.object("account", "accounts", vec![text("name")]).await;
        t.object(
            "contact",
            "contacts",
            vec![json!({"name": "account", "label": "客户", "type": "LOOKUP", "target": "account"})],
        )
        .await;
        let v = version(&t).await;
        let r = update_field(&t, "contact", "account", json!({"type": "TEXT"})).await;
        assert_refused(&r, "BAD_USER_INPUT", &["account"]);
        assert_eq!(version(&t).await, v);
    });
}

#[tokio::test]
async fn a_field_cannot_become_unique_while_duplicates_exist() {
    each_backend!(|t| {
        let ids = contacts_with(&t, &["a", "b", "c"]).await;
        create_field(&t, "contact", text("code")).await;
        set_contact(&t, &ids[0], json!({"code": "X1"})).await;
        set_contact(&t, &ids[1], json!({"code": "X1"})).await;
        let v = version(&t).await;
        let r = update_field(&t, "contact", "code", json!({"unique": true})).await;
        assert_refused(&r, "BAD_USER_INPUT", &["code", "X1"]);
        assert_eq!(version(&t).await, v);

        set_contact(&t, &ids[1], json!({"code": "X2"})).await;
        let r = update_field(&t, "contact", "code", json!({"unique": true})).await;
        assert_eq!(r.get("errors"), None, "{r}");
        let r = set_contact(&t, &ids[2], json!({"code": "X1"})).await;
        assert_eq!(error_codes(&r), vec!["CONFLICT"], "{r}");
        assert_eq!(field_errors(&r), vec![(0, "code".to_string(), "UNIQUE".to_string())]);
    });
}

#[tokio::test]
async fn picklist_options_are_added_relabelled_and_retired() {
    each_backend!(|t| {
        let ids = contacts_with(&t, &["a"]).await;
        let opts = json!([{"value": "new", "label": "新"}, {"value": "old", "label": "旧"}]);
        create_field(&t, "contact", json!({"name": "stage", "label": "阶段", "type": "PICKLIST", "options": opts}))
            .await;
        set_contact(&t, &ids[0], json!({"stage": "OLD"})).await;

        // `old` is left out: it is kept, retired; `new` is relabelled; `won` is added.
        let r = update_field(
            &t,
            "contact",
            "stage",
            json!({"options": [{"value": "new", "label": "新的"}, {"value": "won", "label": "赢单"}]}),
        )
        .await;
        assert_eq!(r.get("errors"), None, "{r}");
        assert_eq!(
            r["data"]["updateField"]["options"],
            json!([
                {"value": "new", "label": "新的", "active": true},
                {"value": "won", "label": "赢单", "active": true},
                {"value": "old", "label": "旧", "active": false}
            ])
        );
        assert_eq!(contact_values(&t, "stage").await, vec![json!({"stage": "OLD"})], "a retired value stays readable");
        let r = t.data(r#"mutation { createContact(data: {name: "b", stage: OLD}) { id } }"#, json!({})).await;
        assert_eq!(field_errors(&r), vec![(0, "stage".to_string(), "INVALID_OPTION".to_string())], "{r}");
        let r = set_contact(&t, &ids[0], json!({"stage": "OLD"})).await;
        assert_eq!(field_errors(&r), vec![(0, "stage".to_string(), "INVALID_OPTION".to_string())], "{r}");
        t.data_ok(r#"mutation { createContact(data: {name: "c", stage: WON}) { id } }"#, json!({})).await;
        set_contact(&t, &ids[0], json!({"name": "a2"})).await;
        assert_eq!(contact_values(&t, "name stage").await[0], json!({"name": "a2", "stage": "OLD"}));

        // A later update that again omits `old` keeps it retired, and it can be reactivated.
        let r = update_field(&t, "contact", "stage", json!({"options": [{"value": "new", "label": "新的"}]})).await;
        let opts = r["data"]["updateField"]["options"].as_array().unwrap().clone();
        assert_eq!(opts.len(), 3, "{r}");
        assert!(opts.contains(&json!({"value": "old", "label": "旧", "active": false})));
        assert!(opts.contains(&json!({"value": "won", "label": "赢单", "active": false})));
        update_field(&t, "contact", "stage", json!({"options": [{"value": "old", "label": "旧", "active": true}]}))
            .await;
        assert_eq!(set_contact(&t, &ids[0], json!({"stage": "OLD"})).await.get("errors"), None);
    });
}

#[tokio::test]
async fn a_deleted_field_disappears_from_the_data_api() {
    each_backend!(|t| {
        let ids = contacts_with(&t, &["a"]).await;
        create_field(&t, "contact", text("nickname")).await;
        set_contact(&t, &ids[0], json!({"nickname": "小a"})).await;
        t.meta_ok(r#"mutation { deleteField(object: "contact", field: "nickname") }"#, json!({})).await;
        let r = t.data("{ contacts(first: 10) { nodes { nickname } } }", json!({})).await;
        assert_eq!(error_codes(&r), vec!["BAD_USER_INPUT"], "{r}");
        assert_eq!(contact_values(&t, "name").await, vec![json!({"name": "a"})]);
        let r = t.meta(r#"mutation { deleteField(object: "contact", field: "nickname") }"#, json!({})).await;
        assert_refused(&r, "NOT_FOUND", &["nickname"]);
        // The name is free again, and the new field starts empty.
        create_field(&t, "contact", json!({"name": "nickname", "label": "昵称", "type": "INTEGER"})).await;
        assert_eq!(contact_values(&t, "nickname").await, vec![json!({"nickname": null})]);
    });
}

#[tokio::test]
async fn an_auto_number_added_to_an_object_with_records_numbers_them() {
    each_backend!(|t| {
        contacts_with(&t, &["a", "b", "c"]).await;
        let r = create_field(
            &t,
            "contact",
            json!({"name": "number", "label": "编号", "type": "AUTO_NUMBER", "format": "C-{000000}"}),
        )
        .await;
        assert_eq!(r.get("errors"), None, "{r}");
        let mut numbers: Vec<String> =
            contact_values(&t, "number").await.iter().map(|n| n["number"].as_str().unwrap().to_string()).collect();
        numbers.sort();
        assert_eq!(numbers, vec!["C-000001", "C-000002", "C-000003"]);
        let d = t.data_ok(r#"mutation { createContact(data: {name: "d"}) { number } }"#, json!({})).await;
        assert_eq!(d["createContact"]["number"], "C-000004");
        let r = t.data(r#"mutation { createContact(data: {name: "e", number: "C-9"}) { number } }"#, json!({})).await;
        assert!(r.get("errors").is_some(), "an auto number is read-only: {r}");
    });
}

#[tokio::test]
async fn metadata_and_records_survive_a_restart() {
    for backend in backends() {
        let t = TestServer::start(backend).await;
        let ids = contacts_with(&t, &["李雷"]).await;
        let opts = json!([{"value": "vip", "label": "贵宾"}]);
        create_field(&t, "contact", json!({"name": "level", "label": "等级", "type": "PICKLIST", "options": opts}))
            .await;
        create_field(
            &t,
            "contact",
            json!({"name": "number", "label": "编号", "type": "AUTO_NUMBER", "format": "C-{00}"}),
        )
        .await;
        set_contact(&t, &ids[0], json!({"level": "VIP"})).await;
        let v = version(&t).await;
        let objects =
            t.meta_ok("{ objects { name label fields { name label type options { value label } } } }", json!({})).await;

        let t = t.restart().await;
        assert_eq!(version(&t).await, v);
        let after =
            t.meta_ok("{ objects { name label fields { name label type options { value label } } } }", json!({})).await;
        assert_eq!(after, objects);
        assert_eq!(
            contact_values(&t, "name level number").await,
            vec![json!({"name": "李雷", "level": "VIP", "number": "C-01"})]
        );
        let d = t.data_ok(r#"mutation { createContact(data: {name: "韩梅梅"}) { number } }"#, json!({})).await;
        assert_eq!(d["createContact"]["number"], "C-02");
        t.stop().await;
    }
}

#[tokio::test]
async fn the_audit_log_lists_metadata_changes_and_record_images() {
    each_backend!(|t| {
        let ids = contacts_with(&t, &["李雷"]).await;
        set_contact(&t, &ids[0], json!({"name": "李磊"})).await;
        let me = t.meta_ok("{ me { id } }", json!({})).await["me"]["id"].clone();

        let q = "query($c: String, $o: String, $r: String) { auditLog(category: $c, object: $o, recordId: $r) { id actorId category action object recordId before after } }";
        let meta = t.meta_ok(q, json!({"c": "metadata", "o": "contact"})).await["auditLog"].as_array().unwrap().clone();
        let actions: Vec<&str> = meta.iter().map(|e| e["action"].as_str().unwrap()).collect();
        assert_eq!(actions, vec!["create_field", "create_object"], "newest first");
        assert!(meta.iter().all(|e| e["actorId"] == me && e["object"] == "contact"));
        assert_eq!(meta[1]["before"], Value::Null);
        assert!(meta[1]["after"].to_string().contains("contact"), "{}", meta[1]);

        let rec = t.meta_ok(q, json!({"c": "record", "o": "contact"})).await["auditLog"].as_array().unwrap().clone();
        assert_eq!(rec.len(), 2, "{rec:?}");
        let (update, create) = (&rec[0], &rec[1]);
        assert_eq!((create["action"].as_str(), update["action"].as_str()), (Some("create"), Some("update")));
        assert!(rec.iter().all(|e| e["recordId"] == ids[0].as_str() && e["actorId"] == me));
        assert_eq!(create["before"], Value::Null);
        assert_eq!(create["after"]["name"], "李雷", "{create}");
        assert_eq!(update["before"]["name"], "李雷", "{update}");
        assert_eq!(update["after"]["name"], "李磊", "{update}");

        let by_record = t.meta_ok(q, json!({"r": ids[0]})).await["auditLog"].as_array().unwrap().len();
        assert_eq!(by_record, 2);
        let page =
            t.meta_ok("query($a: String) { auditLog(first: 1, after: $a) { id } }", json!({"a": update["id"]})).await;
        assert_eq!(page["auditLog"][0]["id"], create["id"]);
    });
}

#[tokio::test]
async fn metadata_version_increases_with_each_change() {
    each_backend!(|t| {
        let mut seen = vec![version(&t).await];
        create_object(&t, "contact", "contacts").await;
        seen.push(version(&t).await);
        create_field(&t, "contact", text("name")).await;
        seen.push(version(&t).await);
        update_field(&t, "contact", "name", json!({"label": "名字"})).await;
        seen.push(version(&t).await);
        t.meta_ok(r#"mutation { updateObject(name: "contact", input: {label: "联系人"}) { name } }"#, json!({})).await;
        seen.push(version(&t).await);
        t.meta_ok(r#"mutation { deleteField(object: "contact", field: "name") }"#, json!({})).await;
        seen.push(version(&t).await);
        assert!(seen.windows(2).all(|w| w[1] > w[0]), "versions should increase: {seen:?}");
        // Refused changes leave it alone.
        let v = *seen.last().unwrap();
        assert!(create_object(&t, "contact", "contacts").await.get("errors").is_some());
        assert!(create_field(&t, "contact", text("Bad")).await.get("errors").is_some());
        assert_eq!(version(&t).await, v);
        t.meta_ok(r#"mutation { deleteObject(name: "contact") }"#, json!({})).await;
        assert!(version(&t).await > v);
    });
}

#[tokio::test]
async fn data_schema_sdl_matches_the_snapshot() {
    let t = TestServer::start(Backend::Sqlite).await;
    t.object("account", "accounts", vec![json!({"name": "name", "label": "名称", "type": "TEXT", "required": true})])
        .await;
    let stage = json!([{"value": "lead", "label": "线索"}, {"value": "won", "label": "赢单"}]);
    t.object(
        "opportunity",
        "opportunities",
        vec![
            json!({"name": "title", "label": "标题", "type": "TEXT", "required": true, "maxLength": 120}),
            json!({"name": "amount", "label": "金额", "type": "CURRENCY"}),
            json!({"name": "seats", "label": "座位", "type": "INTEGER"}),
            json!({"name": "won", "label": "赢", "type": "BOOLEAN"}),
            json!({"name": "close_date", "label": "结束日期", "type": "DATE"}),
            json!({"name": "stage", "label": "阶段", "type": "PICKLIST", "options": stage}),
            json!({"name": "tags", "label": "标签", "type": "MULTI_PICKLIST", "options": stage}),
            json!({"name": "account", "label": "客户", "type": "LOOKUP", "target": "account"}),
            json!({"name": "number", "label": "编号", "type": "AUTO_NUMBER", "format": "O-{0000}"}),
            json!({"name": "extra", "label": "扩展", "type": "JSON"}),
        ],
    )
    .await;
    let sdl = t.server.as_ref().unwrap().state.metadata.current().data_schema.sdl();
    insta::assert_snapshot!("data_schema_sdl", sdl);
    t.stop().await;
}

//! Formulas never launder sensitive values: a formula's value is stored and shown without
//! encryption, masking or access log, so formulas that read sensitive fields are refused (both
//! ways: saving such a formula, making a field a formula reads sensitive), and those a database
//! holds from before are suspended and emptied when the server starts. SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sea_orm::{ConnectionTrait, Database, Statement};
use serde_json::{Value, json};
use tessera_tests::{TestServer, each_backend, error_codes};

const PHONE: &str = "13812345678";

const CREATE_FIELD: &str =
    "mutation($o: String!, $f: FieldInput!) { createField(object: $o, input: $f) { name expression } }";
const UPDATE_FIELD: &str = "mutation($o: String!, $n: String!, $f: UpdateFieldInput!) { updateField(object: $o, field: $n, input: $f) { name } }";

fn formula(name: &str, expression: &str) -> Value {
    json!({"name": name, "label": name, "type": "FORMULA", "resultType": "TEXT", "expression": expression})
}

/// `patient`: an encrypted phone, a nickname that is only masked, and a plain city.
async fn patient(t: &TestServer) {
    t.object(
        "patient",
        "patients",
        vec![
            json!({"name": "phone", "label": "Phone", "type": "PHONE", "sensitive": {"encrypted": true}}),
            json!({"name": "nickname", "label": "Nickname", "type": "TEXT", "sensitive": {"mask": "FULL"}}),
            json!({"name": "city", "label": "City", "type": "TEXT"}),
        ],
    )
    .await;
}

/// The error message of a refused metadata change, which must be `BAD_USER_INPUT`.
fn refusal(t: &TestServer, r: &Value) -> String {
    assert_eq!(error_codes(r), ["BAD_USER_INPUT"], "[{:?}] {r}", t.backend);
    r["errors"][0]["message"].as_str().unwrap().to_string()
}

async fn expressions(t: &TestServer, object: &str) -> Value {
    let r =
        t.meta_ok("query($o: String!) { object(name: $o) { fields { name expression } } }", json!({"o": object})).await;
    r["object"]["fields"].clone()
}

#[tokio::test]
async fn formulas_that_read_sensitive_fields_are_refused() {
    each_backend!(|t| {
        patient(&t).await;
        for (name, expression, reads) in [
            ("dial", r#""tel:" + record.phone"#, "`phone`"),
            ("dial", r#"record?.phone ?? """#, "`phone`"),
            ("dial", r#"record["phone"]"#, "`phone`"),
            ("called", "record.nickname", "`nickname`"),
            ("probe", r#"let k = "ph" + "one"; record[k]"#, "the whole record"),
            ("probe", "record.values().len().to_string()", "the whole record"),
        ] {
            let r = t.meta(CREATE_FIELD, json!({"o": "patient", "f": formula(name, expression)})).await;
            let message = refusal(&t, &r);
            assert!(message.contains(&format!("formula `{name}` cannot read {reads}")), "{expression}: {message}");
        }
        // Positive control: a formula over plain fields is fine, and computes.
        let r = t.meta(CREATE_FIELD, json!({"o": "patient", "f": formula("town", "record.city.to_upper()")})).await;
        assert!(r.get("errors").is_none(), "{r}");
        let d = t
            .data_ok(
                "mutation($d: PatientInput!) { createPatient(data: $d) { id town } }",
                json!({"d": {"phone": PHONE, "nickname": "Lei", "city": "Beijing"}}),
            )
            .await;
        assert_eq!(d["createPatient"]["town"], "BEIJING");
        // Changing its expression to read a sensitive field is refused, and changes nothing.
        let before = expressions(&t, "patient").await;
        let r = t
            .meta(UPDATE_FIELD, json!({"o": "patient", "n": "town", "f": {"expression": "record.city + record.phone"}}))
            .await;
        assert!(refusal(&t, &r).contains("formula `town` cannot read `phone`"), "{r}");
        assert_eq!(expressions(&t, "patient").await, before);
        let d = t.data_ok("{ patients { nodes { town } } }", json!({})).await;
        assert_eq!(d["patients"]["nodes"][0]["town"], "BEIJING");
    });
}

#[tokio::test]
async fn fields_that_formulas_read_cannot_become_sensitive() {
    each_backend!(|t| {
        t.object(
            "lead",
            "leads",
            vec![
                json!({"name": "phone", "label": "Phone", "type": "PHONE"}),
                json!({"name": "city", "label": "City", "type": "TEXT"}),
            ],
        )
        .await;
        t.meta_ok(CREATE_FIELD, json!({"o": "lead", "f": formula("dial", r#""tel:" + record.phone"#)})).await;
        for sensitive in [json!({"encrypted": true}), json!({"mask": "PHONE"})] {
            let r = t.meta(UPDATE_FIELD, json!({"o": "lead", "n": "phone", "f": {"sensitive": sensitive}})).await;
            let message = refusal(&t, &r);
            assert!(message.contains("field `phone` cannot be sensitive while formula `dial` reads it"), "{message}");
        }
        // A formula that reads the record as a whole keeps every new field from being sensitive.
        t.meta_ok(CREATE_FIELD, json!({"o": "lead", "f": formula("size", "record.keys().len().to_string()")})).await;
        let email = json!({"name": "email", "label": "Email", "type": "EMAIL", "sensitive": {"encrypted": true}});
        let r = t.meta(CREATE_FIELD, json!({"o": "lead", "f": email})).await;
        let message = refusal(&t, &r);
        assert!(message.contains("formula `size` reads it (it reads the whole record)"), "{message}");
        // Nor can an existing one while that formula is there; once it is gone, one can.
        let r = t.meta(UPDATE_FIELD, json!({"o": "lead", "n": "city", "f": {"sensitive": {"mask": "FULL"}}})).await;
        let message = refusal(&t, &r);
        assert!(message.contains("formula `size`"), "{message}");
        t.meta_ok("mutation { deleteField(object: \"lead\", field: \"size\") }", json!({})).await;
        t.meta_ok(UPDATE_FIELD, json!({"o": "lead", "n": "city", "f": {"sensitive": {"mask": "FULL"}}})).await;
    });
}

async fn raw(t: &TestServer) -> sea_orm::DatabaseConnection {
    Database::connect(&t.database_url).await.unwrap()
}

async fn raw_strings(t: &TestServer, sql: &str) -> Vec<Option<String>> {
    let db = raw(t).await;
    let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap();
    db.close().await.ok();
    rows.iter().map(|r| r.try_get_by_index::<Option<String>>(0).unwrap()).collect()
}

/// Every record audit image, as text.
async fn audit_images(t: &TestServer) -> Vec<String> {
    let sql = "SELECT COALESCE(before_image, '') || COALESCE(after_image, '') FROM sys_audit WHERE category = 'record'";
    raw_strings(t, sql).await.into_iter().flatten().collect()
}

/// Marks `field` of `object` masked-only sensitive in the stored definition, as a database
/// from before formulas were checked could hold it next to a formula that reads it.
async fn make_sensitive_behind_the_api(t: &TestServer, object: &str, field: &str) {
    let db = raw(t).await;
    let backend = db.get_database_backend();
    let sql = format!("SELECT definition FROM sys_objects WHERE name = '{object}'");
    let row = db.query_one_raw(Statement::from_string(backend, sql)).await.unwrap().unwrap();
    let mut def: Value = serde_json::from_str(&row.try_get_by_index::<String>(0).unwrap()).unwrap();
    for f in def["fields"].as_array_mut().unwrap() {
        if f["name"] == field {
            f["sensitive"] = json!({"encrypted": false, "searchable": false, "mask": "PHONE"});
        }
    }
    let update = Statement::from_sql_and_values(
        backend,
        match backend {
            sea_orm::DbBackend::Postgres => "UPDATE sys_objects SET definition = $1 WHERE name = $2",
            _ => "UPDATE sys_objects SET definition = ? WHERE name = ?",
        },
        [def.to_string().into(), object.into()],
    );
    db.execute_raw(update).await.unwrap();
    db.close().await.ok();
}

#[tokio::test]
async fn formulas_saved_before_the_rule_are_suspended_and_emptied_at_start() {
    for backend in tessera_tests::backends() {
        let t = TestServer::start(backend).await;
        t.object(
            "lead",
            "leads",
            vec![
                json!({"name": "phone", "label": "Phone", "type": "PHONE"}),
                json!({"name": "city", "label": "City", "type": "TEXT"}),
            ],
        )
        .await;
        t.meta_ok(CREATE_FIELD, json!({"o": "lead", "f": formula("dial", r#""tel:" + record.phone"#)})).await;
        let d = t
            .data_ok(
                "mutation { createLead(data: {phone: \"13812345678\", city: \"Beijing\"}) { id dial } }",
                json!({}),
            )
            .await;
        let id = d["createLead"]["id"].as_str().unwrap().to_string();
        t.data_ok("mutation($id: ID!) { updateLead(id: $id, data: {city: \"Shanghai\"}) { id } }", json!({"id": id}))
            .await;
        // Positive control of the scans below: the formula's copy of the phone is at rest.
        assert_eq!(raw_strings(&t, "SELECT dial FROM obj_lead").await, [Some(format!("tel:{PHONE}"))]);
        let images = audit_images(&t).await;
        assert!(images.iter().any(|i| i.contains(&format!("tel:{PHONE}"))), "{images:?}");
        make_sensitive_behind_the_api(&t, "lead", "phone").await;
        let t = t.restart().await;
        t.role("rep").await;
        t.grant("rep", "lead", "read create update", "ALL").await;
        let (_, rep) = t.user("rep@example.com", &["rep"], None).await;

        // The phone is masked for the rep; the formula no longer hands it over in clear.
        let d = t.data_ok_as(&rep, "{ leads { nodes { phone dial } } }", json!({})).await;
        let lead = &d["leads"]["nodes"][0];
        assert!(!lead["phone"].as_str().unwrap().contains(PHONE), "{lead}");
        assert_eq!(lead["dial"], Value::Null, "{lead}");
        // Nothing of it is left at rest: not in the table, not in the audit images.
        assert_eq!(raw_strings(&t, "SELECT dial FROM obj_lead").await, [None]);
        for image in audit_images(&t).await {
            assert!(!image.contains(&format!("tel:{PHONE}")), "{image}");
        }
        let log = t.meta_ok("{ auditLog(category: \"metadata\", first: 1) { action object after } }", json!({})).await;
        assert_eq!(log["auditLog"][0]["action"], "suspend_formula", "{log}");
        assert_eq!(log["auditLog"][0]["after"]["field"], "dial", "{log}");

        // Writes keep it empty.
        let d = t
            .data_ok_as(
                &rep,
                "mutation { createLead(data: {phone: \"13900000000\", city: \"Xi'an\"}) { dial } }",
                json!({}),
            )
            .await;
        assert_eq!(d["createLead"]["dial"], Value::Null);
        // Once its expression reads no sensitive field, it computes again.
        t.meta_ok(UPDATE_FIELD, json!({"o": "lead", "n": "dial", "f": {"expression": r#""city:" + record.city"#}}))
            .await;
        let d = t.data_ok("{ leads { nodes { city dial } } }", json!({})).await;
        for lead in d["leads"]["nodes"].as_array().unwrap() {
            assert_eq!(lead["dial"].as_str().unwrap(), format!("city:{}", lead["city"].as_str().unwrap()));
        }
        t.stop().await;
    }
}

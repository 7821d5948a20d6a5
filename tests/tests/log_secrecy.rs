//! No key and no plaintext of a sensitive value reaches a log line: the server runs with every
//! log level on, captured, through writes, reads, a unique conflict, scripts that log and throw
//! sensitive values, a tampered value, a field becoming encrypted, an export and an erasure, on
//! SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use sea_orm::{ConnectionTrait, Database};
use serde_json::json;
use tessera_tests::{each_backend, error_codes};

/// Everything logged in this test binary.
fn captured() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| Arc::new(Mutex::new(Vec::new())))
}

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        captured().lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const SECRETS: [&str; 5] = ["13812345678", "110101199003071234", "li.lei@example.com", "13900001111", "13612340000"];

#[tokio::test]
async fn no_key_or_sensitive_value_reaches_a_log_line() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
        .with_ansi(false)
        .with_writer(|| Capture)
        .init();
    let mut keys = Vec::new();
    each_backend!(|t| {
        keys.push(std::fs::read_to_string(t.key_file().unwrap()).unwrap().trim().to_string());
        t.object(
            "client",
            "clients",
            vec![
                json!({"name": "phone", "label": "Phone", "type": "PHONE", "unique": true,
                       "sensitive": {"encrypted": true, "searchable": true}}),
                json!({"name": "id_number", "label": "ID", "type": "TEXT", "sensitive": {"encrypted": true}}),
                json!({"name": "email", "label": "Email", "type": "EMAIL"}),
            ],
        )
        .await;
        let r = t
            .data_ok(
                "mutation { createClient(data: {phone: \"13812345678\", idNumber: \"110101199003071234\", email: \"li.lei@example.com\"}) { id phone } }",
                json!({}),
            )
            .await;
        let id = r["createClient"]["id"].as_str().unwrap().to_string();
        t.data_ok("query($id: ID!) { client(id: $id) { phone idNumber } }", json!({"id": id})).await;
        t.data_ok("{ clients(filter: {phone: {eq: \"+86 138 1234 5678\"}}) { nodes { idNumber } } }", json!({})).await;
        let r = t.data("mutation { createClient(data: {phone: \"138-1234-5678\"}) { id } }", json!({})).await;
        assert_eq!(error_codes(&r), ["CONFLICT"]);
        t.data_ok(
            "mutation($id: ID!) { updateClient(id: $id, data: {phone: \"13900001111\"}) { id } }",
            json!({"id": id}),
        )
        .await;
        // A field with data becomes encrypted.
        t.data_ok("mutation { createClient(data: {phone: \"13612340000\"}) { id } }", json!({})).await;
        t.meta_ok(
            "mutation { updateField(object: \"client\", field: \"email\", input: {sensitive: {encrypted: true}}) { name } }",
            json!({}),
        )
        .await;
        // Scripts see plaintext: what they log stays in their run, and the error of a failed
        // trigger is recorded without the values.
        t.meta_ok(
            "mutation($i: ScriptInput!) { setScript(object: \"client\", input: $i) { name } }",
            json!({"i": {"name": "echo", "hook": "VALIDATE", "source": "log(record.phone); print(record.id_number);"}}),
        )
        .await;
        t.meta_ok(
            "mutation($i: ScriptInput!) { setScript(object: \"client\", input: $i) { name } }",
            json!({"i": {"name": "fail", "hook": "AFTER_SAVE", "source": "throw \"cannot sync \" + record.phone + \" \" + record.id_number;"}}),
        )
        .await;
        t.data_ok(
            "mutation($id: ID!) { updateClient(id: $id, data: {idNumber: \"110101199003071234\"}) { id } }",
            json!({"id": id}),
        )
        .await;
        let audit = t.meta_ok("{ auditLog(category: \"script\") { after } }", json!({})).await;
        let error = audit["auditLog"][0]["after"]["error"].as_str().unwrap().to_string();
        assert!(error.contains("cannot sync [sensitive] [sensitive]"), "{error}");
        for name in ["echo", "fail"] {
            t.meta_ok("mutation($n: String!) { deleteScript(object: \"client\", name: $n) }", json!({"n": name})).await;
        }
        // A tampered value is logged as an error, without the value.
        let db = Database::connect(&t.database_url).await.unwrap();
        db.execute_unprepared(&format!(
            "UPDATE obj_client SET id_number = 'k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' WHERE id = '{id}'"
        ))
        .await
        .unwrap();
        db.close().await.ok();
        let r = t.data("query($id: ID!) { client(id: $id) { idNumber } }", json!({"id": id})).await;
        assert_eq!(error_codes(&r), ["INTERNAL_SERVER_ERROR"]);
        t.meta_ok("mutation($id: String!) { exportPersonalData(object: \"client\", id: $id) }", json!({"id": id}))
            .await;
        t.meta_ok("{ auditLog(category: \"record\") { before after } }", json!({})).await;
        t.meta_ok(
            "mutation($id: String!) { erasePersonalData(object: \"client\", id: $id, mode: ANONYMIZE) }",
            json!({"id": id}),
        )
        .await;
    });
    let logs = String::from_utf8_lossy(&captured().lock().unwrap()).to_string();
    assert!(logs.contains("a sensitive value cannot be opened"), "the capture sees the server's logs");
    for secret in SECRETS.iter().copied().chain(keys.iter().map(String::as_str)) {
        assert!(!logs.contains(secret), "`{secret}` reached a log line");
    }
}

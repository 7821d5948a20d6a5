//! Ways around masking, closed, through the HTTP API on SQLite and PostgreSQL: writes that would
//! hand back stored values, filters that would recover masked values, an access log that would
//! lose or fail to list reads, and script errors that would quote sensitive values.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};
use tessera_tests::{TestServer, each_backend, error_codes, field_errors};

const PHONE: &str = "13812345678";
const ID_NUMBER: &str = "110101199003071234";
const EMAIL: &str = "li.lei@example.com";
const NAME: &str = "欧阳娜娜";

/// A customer object whose phone is encrypted, searchable and unique, whose ID number is
/// encrypted, whose email is encrypted and searchable and whose name is masked; and purchases
/// pointing at customers.
async fn customer_object(t: &TestServer) {
    t.object(
        "customer",
        "customers",
        vec![
            json!({"name": "name", "label": "姓名", "type": "TEXT", "sensitive": {"mask": "NAME"}}),
            json!({"name": "phone", "label": "手机号", "type": "PHONE", "unique": true,
                   "sensitive": {"encrypted": true, "searchable": true}}),
            json!({"name": "id_number", "label": "身份证号", "type": "TEXT",
                   "sensitive": {"encrypted": true, "mask": "ID_NUMBER"}}),
            json!({"name": "email", "label": "Email", "type": "EMAIL",
                   "sensitive": {"encrypted": true, "searchable": true}}),
            json!({"name": "city", "label": "城市", "type": "TEXT"}),
        ],
    )
    .await;
    t.object(
        "purchase",
        "purchases",
        vec![
            json!({"name": "title", "label": "Title", "type": "TEXT"}),
            json!({"name": "customer", "label": "Customer", "type": "LOOKUP", "target": "customer"}),
        ],
    )
    .await;
}

async fn create_customer(t: &TestServer, name: &str, phone: &str, id_number: &str, email: &str) -> String {
    let r = t
        .data_ok(
            "mutation($d: CustomerInput!) { createCustomer(data: $d) { id } }",
            json!({"d": {"name": name, "phone": phone, "idNumber": id_number, "email": email, "city": "Beijing"}}),
        )
        .await;
    r["createCustomer"]["id"].as_str().unwrap().to_string()
}

/// A user of a new role that may read (masked), create and update customers and read
/// purchases; returns (id, token).
async fn agent(t: &TestServer, email: &str) -> (String, String) {
    if t.meta("{ role(name: \"agent\") { name } }", json!({})).await["data"]["role"].is_null() {
        t.role("agent").await;
        t.grant("agent", "customer", "read create update", "ALL").await;
        t.grant("agent", "purchase", "read create", "ALL").await;
    }
    t.user(email, &["agent"], None).await
}

async fn set_script(t: &TestServer, object: &str, name: &str, hook: &str, source: &str) {
    let r = t
        .meta(
            "mutation($o: String!, $i: ScriptInput!) { setScript(object: $o, input: $i) { name } }",
            json!({"o": object, "i": {"name": name, "hook": hook, "order": 0, "source": source}}),
        )
        .await;
    assert!(r.get("errors").is_none(), "{r}");
}

/// The sensitive access log entries of a record (or all, without one), newest first.
async fn access_log(t: &TestServer, record: Option<&str>) -> Vec<Value> {
    let log = t
        .meta_ok(
            "query($id: String) { sensitiveAccessLog(recordId: $id, first: 500) { id userId object recordId fields via } }",
            json!({"id": record}),
        )
        .await;
    log["sensitiveAccessLog"].as_array().unwrap().clone()
}

#[tokio::test]
async fn upserts_show_unmasked_only_the_values_their_write_stored() {
    each_backend!(|t| {
        customer_object(&t).await;
        let id = create_customer(&t, NAME, PHONE, ID_NUMBER, EMAIL).await;
        let (agent_id, agent) = agent(&t, "agent@example.com").await;
        let upsert = "mutation($d: [CustomerInput!]!, $u: [CustomerField!]!) {
            createCustomers(data: $d, upsert: {onConflict: [phone], update: $u}) { id name phone idNumber email } }";

        // Matching a customer by phone while overwriting nothing names every field without
        // storing any: what comes back is the stored record, masked as any read of it.
        let guesses = json!([{"name": "x", "phone": PHONE, "idNumber": "x", "email": "x@example.com"}]);
        let r = t.data_ok_as(&agent, upsert, json!({"d": guesses, "u": []})).await;
        assert_eq!(
            r["createCustomers"][0],
            json!({"id": id, "name": "欧***", "phone": "138****5678", "idNumber": "1101**********1234",
                   "email": "l***@example.com"}),
            "[{:?}]",
            t.backend
        );
        // What the upsert does overwrite is the agent's own value, shown as given.
        let given = json!([{"phone": PHONE, "email": "new@example.com", "idNumber": "110101199003070000"}]);
        let r = t.data_ok_as(&agent, upsert, json!({"d": given, "u": ["email"]})).await;
        assert_eq!(r["createCustomers"][0]["email"], "new@example.com");
        assert_eq!(r["createCustomers"][0]["idNumber"], "1101**********1234", "named, not overwritten");
        let stored = t.data_ok("query($id: ID!) { customer(id: $id) { email idNumber } }", json!({"id": id})).await;
        assert_eq!(stored["customer"], json!({"email": "new@example.com", "idNumber": ID_NUMBER}));

        // Someone who may read the phone unmasked gets it back from such an upsert, logged.
        t.role("supervisor").await;
        t.grant("supervisor", "customer", "read create update", "ALL").await;
        t.field_access("supervisor", "customer", "phone", "EDIT").await;
        let (supervisor_id, supervisor) = t.user("supervisor@example.com", &["supervisor"], None).await;
        let r = t
            .data_ok_as(&supervisor, upsert, json!({"d": [{"phone": "+86 138 1234 5678", "name": "x"}], "u": []}))
            .await;
        assert_eq!(r["createCustomers"][0]["phone"], PHONE);
        assert_eq!(r["createCustomers"][0]["name"], "欧***");
        let log = access_log(&t, Some(&id)).await;
        let writes: Vec<&Value> = log.iter().filter(|e| e["via"] == "write").collect();
        assert_eq!(writes.len(), 1, "{log:?}");
        assert_eq!((&writes[0]["userId"], &writes[0]["fields"]), (&json!(supervisor_id), &json!(["phone"])));
        assert!(log.iter().all(|e| e["userId"] != json!(agent_id)), "the agent saw nothing unmasked: {log:?}");

        // A value a rule changed after the input gave it is the rule's, not the writer's: on a
        // create, an update and an upsert alike.
        set_script(
            &t,
            "customer",
            "rewrite",
            "BEFORE_SAVE",
            "if record.city == \"rewrite\" { record.id_number = \"110101198001010011\"; }",
        )
        .await;
        let rewritten = "1101**********0011";
        let r = t
            .data_ok_as(
                &agent,
                "mutation { createCustomer(data: {phone: \"13900000001\", city: \"rewrite\", idNumber: \"110101199003070000\"}) { id idNumber } }",
                json!({}),
            )
            .await;
        assert_eq!(r["createCustomer"]["idNumber"], rewritten);
        let other = r["createCustomer"]["id"].clone();
        let r = t
            .data_ok_as(
                &agent,
                "mutation($id: ID!) { updateCustomer(id: $id, data: {idNumber: \"110101199003070000\"}) { idNumber } }",
                json!({"id": other}),
            )
            .await;
        assert_eq!(r["updateCustomer"]["idNumber"], rewritten);
        let given = json!([{"phone": PHONE, "city": "rewrite", "idNumber": "110101199003070000"}]);
        let r = t.data_ok_as(&agent, upsert, json!({"d": given, "u": ["city", "idNumber"]})).await;
        assert_eq!(r["createCustomers"][0]["idNumber"], rewritten);
        // Without the rule's change, the same writes give the agent back their own value.
        let r = t
            .data_ok_as(
                &agent,
                "mutation($id: ID!) { updateCustomer(id: $id, data: {city: \"Shanghai\", idNumber: \"110101199003070000\"}) { idNumber } }",
                json!({"id": other}),
            )
            .await;
        assert_eq!(r["updateCustomer"]["idNumber"], "110101199003070000");
    });
}

//! Sensitive fields through the HTTP API on SQLite and PostgreSQL: nothing readable at rest
//! (checked on the raw database bytes), masking per role, blind-index search and uniqueness,
//! moved and tampered ciphertexts, encrypting existing data, the sensitive access log, and
//! data-subject export and erasure.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine;
use sea_orm::{ConnectionTrait, Database, Statement};
use serde_json::{Value, json};
use tessera_tests::customers::{EMAIL, ID_NUMBER, PHONE, create_customer, customer_object};
use tessera_tests::{Backend, TestServer, each_backend, error_codes, field_errors};

/// Every byte the database holds for the test: the SQLite files (database and write-ahead
/// log), or a text dump of every table of the PostgreSQL database.
async fn raw_bytes(t: &TestServer) -> Vec<u8> {
    match t.backend {
        Backend::Sqlite => {
            let path = t.database_url.trim_start_matches("sqlite://");
            let dir = std::path::Path::new(path).parent().unwrap();
            let mut out = Vec::new();
            for entry in std::fs::read_dir(dir).unwrap() {
                out.extend(std::fs::read(entry.unwrap().path()).unwrap_or_default());
            }
            out
        }
        Backend::Postgres => {
            let db = Database::connect(&t.database_url).await.unwrap();
            let tables = db
                .query_all_raw(Statement::from_string(
                    db.get_database_backend(),
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
                ))
                .await
                .unwrap();
            let mut out = Vec::new();
            for row in tables {
                let table: String = row.try_get_by_index(0).unwrap();
                let sql = format!("SELECT t::text FROM \"{table}\" t");
                for r in db.query_all_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap() {
                    let text: String = r.try_get_by_index(0).unwrap();
                    out.extend(text.into_bytes());
                    out.push(b'\n');
                }
            }
            db.close().await.ok();
            out
        }
    }
}

/// The forms of a secret someone scanning a database would look for.
fn encodings(secret: &str) -> Vec<Vec<u8>> {
    let b = secret.as_bytes();
    let utf16: Vec<u8> = secret.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    vec![
        b.to_vec(),
        base64::engine::general_purpose::STANDARD.encode(b).into_bytes(),
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(b).into_bytes(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b).into_bytes(),
        b.iter().map(|x| format!("{x:02x}")).collect::<String>().into_bytes(),
        utf16,
    ]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn assert_not_at_rest(t: &TestServer, secrets: &[&str]) {
    let bytes = raw_bytes(t).await;
    assert!(contains(&bytes, b"k1:"), "the scan sees the stored envelopes ({} bytes)", bytes.len());
    for secret in secrets {
        for form in encodings(secret) {
            assert!(
                !contains(&bytes, &form),
                "[{:?}] `{secret}` is readable at rest as {:?}",
                t.backend,
                String::from_utf8_lossy(&form)
            );
        }
    }
}

async fn raw_execute(t: &TestServer, sql: &str) {
    let db = Database::connect(&t.database_url).await.unwrap();
    db.execute_unprepared(sql).await.unwrap();
    db.close().await.ok();
}

async fn raw_text(t: &TestServer, sql: &str) -> String {
    let db = Database::connect(&t.database_url).await.unwrap();
    let row = db.query_one_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap().unwrap();
    let v: String = row.try_get_by_index(0).unwrap();
    db.close().await.ok();
    v
}

#[tokio::test]
async fn encrypted_values_are_never_stored_readable() {
    each_backend!(|t| {
        customer_object(&t).await;
        let id = create_customer(&t, "李雷", PHONE, ID_NUMBER, EMAIL).await;
        // An update leaves before/after images in the audit log: those must be encrypted too.
        t.data_ok(
            "mutation($id: ID!) { updateCustomer(id: $id, data: {phone: \"13999990000\", email: \"han.meimei@example.com\"}) { id } }",
            json!({"id": id}),
        )
        .await;
        let r =
            t.data_ok("query($id: ID!) { customer(id: $id) { phone idNumber email city } }", json!({"id": id})).await;
        assert_eq!(
            r["customer"],
            json!({"phone": "13999990000", "idNumber": ID_NUMBER, "email": "han.meimei@example.com", "city": "Beijing"})
        );
        let history = t
            .meta_ok(
                "query($id: String) { auditLog(category: \"record\", recordId: $id) { action before after } }",
                json!({"id": id}),
            )
            .await;
        let update = &history["auditLog"][0];
        assert_eq!(update["before"]["phone"], PHONE, "the admin reads the history in clear: {history}");
        assert_eq!(update["after"]["phone"], "13999990000");
        assert_not_at_rest(&t, &[PHONE, "13999990000", ID_NUMBER, EMAIL, "han.meimei@example.com"]).await;
        // The values are stored as envelopes of key version 1.
        let stored = raw_text(&t, &format!("SELECT id_number FROM obj_customer WHERE id = '{id}'")).await;
        assert!(stored.starts_with("k1:"), "{stored}");
    });
}

#[tokio::test]
async fn masks_per_role_and_logs_every_unmasked_read() {
    each_backend!(|t| {
        customer_object(&t).await;
        let id = create_customer(&t, "欧阳娜娜", PHONE, ID_NUMBER, EMAIL).await;
        t.role("agent").await;
        t.grant("agent", "customer", "read update", "ALL").await;
        t.role("supervisor").await;
        t.grant("supervisor", "customer", "read", "ALL").await;
        t.field_access("supervisor", "customer", "phone", "UNMASKED_READ").await;
        let (agent_id, agent) = t.user("agent@example.com", &["agent"], None).await;
        let (supervisor_id, supervisor) = t.user("supervisor@example.com", &["supervisor"], None).await;
        let query = "{ customers(first: 10) { nodes { name phone idNumber email city } } }";

        let r = t.data_ok_as(&agent, query, json!({})).await;
        assert_eq!(
            r["customers"]["nodes"][0],
            json!({"name": "欧***", "phone": "138****5678", "idNumber": "1101**********1234", "email": "l***@example.com", "city": "Beijing"})
        );
        // The same masks on a read by id and through a lookup.
        let order = t
            .data_ok(
                "mutation($c: ID!) { createPurchase(data: {title: \"first\", customerId: $c}) { id } }",
                json!({"c": id}),
            )
            .await["createPurchase"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        t.grant("agent", "purchase", "read", "ALL").await;
        let r = t
            .data_ok_as(&agent, "query($id: ID!) { purchase(id: $id) { customer { phone } } }", json!({"id": order}))
            .await;
        assert_eq!(r["purchase"]["customer"]["phone"], "138****5678");
        let r = t.data_ok_as(&agent, "query($id: ID!) { customer(id: $id) { idNumber } }", json!({"id": id})).await;
        assert_eq!(r["customer"]["idNumber"], "1101**********1234");

        // Whoever sees a field masked cannot recover it piece by piece or by its order.
        for probe in [
            "{ customers(filter: {name: {startsWith: \"欧\"}}) { totalCount } }",
            "{ customers(orderBy: [{name: AscNullsLast}]) { totalCount } }",
            "{ customersGroupBy(groupBy: [name]) { count } }",
        ] {
            let r = t.data_as(&agent, probe, json!({})).await;
            assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "{probe}: {r}");
            assert!(r["errors"][0]["message"].as_str().unwrap().contains("masked"), "{r}");
            t.data_ok(probe, json!({})).await;
        }
        let r =
            t.data_ok_as(&agent, "{ customers(filter: {name: {eq: \"欧阳娜娜\"}}) { totalCount } }", json!({})).await;
        assert_eq!(r["customers"]["totalCount"], 1, "equality still finds the record");

        let r = t.data_ok_as(&supervisor, query, json!({})).await;
        assert_eq!(r["customers"]["nodes"][0]["phone"], PHONE);
        assert_eq!(r["customers"]["nodes"][0]["idNumber"], "1101**********1234");
        let r = t.data_ok(query, json!({})).await;
        assert_eq!(r["customers"]["nodes"][0]["idNumber"], ID_NUMBER, "admins see every value");

        // An agent may still write a value they cannot read back unmasked.
        let r = t
            .data_ok_as(
                &agent,
                "mutation($id: ID!) { updateCustomer(id: $id, data: {phone: \"13700001111\"}) { phone idNumber } }",
                json!({"id": id}),
            )
            .await;
        assert_eq!(r["updateCustomer"], json!({"phone": "13700001111", "idNumber": "1101**********1234"}));

        let log = t
            .meta_ok(
                "query($id: String) { sensitiveAccessLog(object: \"customer\", recordId: $id) { id userId fields via requestId } }",
                json!({"id": id}),
            )
            .await;
        let entries = log["sensitiveAccessLog"].as_array().unwrap();
        // The agent's search by name is logged as one; their masked reads are not unmasked reads.
        let agent_entries: Vec<&Value> = entries.iter().filter(|e| e["userId"] == agent_id).collect();
        assert_eq!(agent_entries.len(), 1, "{log}");
        assert_eq!((&agent_entries[0]["via"], &agent_entries[0]["fields"]), (&json!("search"), &json!(["name"])));
        let supervisor_reads: Vec<&Value> = entries.iter().filter(|e| e["userId"] == supervisor_id).collect();
        assert_eq!(supervisor_reads.len(), 1, "{log}");
        assert_eq!(supervisor_reads[0]["fields"], json!(["phone"]), "the masked name is not an unmasked read");
        assert_eq!(supervisor_reads[0]["via"], "list");
        assert!(supervisor_reads[0]["requestId"].as_str().is_some_and(|r| !r.is_empty()));
        let admin_reads = entries.iter().filter(|e| e["userId"] != supervisor_id).count();
        assert!(admin_reads >= 1, "the admin's unmasked read is logged too: {log}");
        // Paging one entry at a time walks the same entries, newest first.
        let mut paged: Vec<Value> = Vec::new();
        let mut after = Value::Null;
        loop {
            let page = t
                .meta_ok(
                    "query($id: String, $a: String) { sensitiveAccessLog(recordId: $id, first: 1, after: $a) { id userId fields via } }",
                    json!({"id": id, "a": after}),
                )
                .await;
            let Some(entry) = page["sensitiveAccessLog"].as_array().unwrap().first().cloned() else { break };
            after = entry["id"].clone();
            paged.push(json!({"userId": entry["userId"], "fields": entry["fields"], "via": entry["via"]}));
            assert!(paged.len() <= entries.len(), "paging ends");
        }
        let expected: Vec<Value> =
            entries.iter().map(|e| json!({"userId": e["userId"], "fields": e["fields"], "via": e["via"]})).collect();
        assert_eq!(paged, expected);
    });
}

#[tokio::test]
async fn writers_see_unmasked_only_the_values_each_record_was_given() {
    each_backend!(|t| {
        customer_object(&t).await;
        // A rule fills in an ID number the writer left out: a value they did not give.
        let r = t
            .meta(
                "mutation($i: ScriptInput!) { setScript(object: \"customer\", input: $i) { name } }",
                json!({"i": {"name": "fill_id", "hook": "BEFORE_SAVE", "order": 0,
                    "source": "if record.id_number == () { record.id_number = \"110101198001010011\"; }"}}),
            )
            .await;
        assert!(r.get("errors").is_none(), "{r}");
        t.role("agent").await;
        t.grant("agent", "customer", "create read", "ALL").await;
        let (_, agent) = t.user("agent@example.com", &["agent"], None).await;
        // In one batch, the first record is given an ID number and the second is not: only the
        // first comes back as written.
        let r = t
            .data_ok_as(
                &agent,
                "mutation { createCustomers(data: [{name: \"A\", phone: \"13700000001\", idNumber: \"110101199003070000\"},
                    {name: \"B\", phone: \"13700000002\"}]) { name phone idNumber } }",
                json!({}),
            )
            .await;
        assert_eq!(
            r["createCustomers"],
            json!([
                {"name": "A", "phone": "13700000001", "idNumber": "110101199003070000"},
                {"name": "B", "phone": "13700000002", "idNumber": "1101**********0011"},
            ])
        );
        let r = t
            .data_ok_as(
                &agent,
                "mutation { createCustomer(data: {name: \"C\", phone: \"13700000003\"}) { idNumber } }",
                json!({}),
            )
            .await;
        assert_eq!(r["createCustomer"]["idNumber"], "1101**********0011");
        let r = t.data_ok("{ customers(filter: {name: {eq: \"B\"}}) { nodes { idNumber } } }", json!({})).await;
        assert_eq!(r["customers"]["nodes"][0]["idNumber"], "110101198001010011", "the rule's value is stored");
        // A value that looks like a stored envelope comes back as written, and reads back so.
        let r = t
            .data_ok(
                "mutation { createCustomer(data: {name: \"D\", phone: \"13700000004\", idNumber: \"k1:AAAAAAAAAAAAAAAAAAAA\"}) { id idNumber } }",
                json!({}),
            )
            .await;
        assert_eq!(r["createCustomer"]["idNumber"], "k1:AAAAAAAAAAAAAAAAAAAA");
        let id = r["createCustomer"]["id"].clone();
        let r = t.data_ok("query($id: ID!) { customer(id: $id) { idNumber } }", json!({"id": id})).await;
        assert_eq!(r["customer"]["idNumber"], "k1:AAAAAAAAAAAAAAAAAAAA");
    });
}

#[tokio::test]
async fn searchable_fields_find_normalised_values_and_stay_unique() {
    each_backend!(|t| {
        customer_object(&t).await;
        let a = create_customer(&t, "A", "+86 138-1234-5678", ID_NUMBER, "Li.Lei@Example.COM").await;
        let b = create_customer(&t, "B", "13900000000", "X", "b@example.com").await;
        let ids = |r: &Value| -> Vec<String> {
            r["customers"]["nodes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap().to_string()).collect()
        };
        let find = "query($f: CustomerFilter) { customers(filter: $f) { totalCount nodes { id } } }";
        let r = t.data_ok(find, json!({"f": {"phone": {"eq": "13812345678"}}})).await;
        assert_eq!(ids(&r), [a.as_str()]);
        let r = t.data_ok(find, json!({"f": {"email": {"eq": "li.lei@example.com"}}})).await;
        assert_eq!(ids(&r), [a.as_str()]);
        let r = t.data_ok(find, json!({"f": {"phone": {"in": ["0086 138 1234 5678", "139 0000 0000"]}}})).await;
        assert_eq!(r["customers"]["totalCount"], 2);
        let r = t.data_ok(find, json!({"f": {"phone": {"isNull": false}, "city": {"eq": "Beijing"}}})).await;
        assert_eq!(r["customers"]["totalCount"], 2);
        let r = t.data_ok(find, json!({"f": {"not": {"phone": {"eq": "13812345678"}}}})).await;
        assert_eq!(ids(&r), [b.as_str()]);
        // Through a lookup.
        t.data_ok("mutation($c: ID!) { createPurchase(data: {title: \"o\", customerId: $c}) { id } }", json!({"c": b}))
            .await;
        let r = t
            .data_ok(
                "{ purchases(filter: {customer: {phone: {eq: \"+8613900000000\"}}}) { nodes { title } } }",
                json!({}),
            )
            .await;
        assert_eq!(r["purchases"]["nodes"], json!([{"title": "o"}]));

        // What would need the plaintext is refused, saying why.
        for (filter, why) in [
            (json!({"phone": {"like": "138%"}}), "encrypted"),
            (json!({"phone": {"gt": "1"}}), "encrypted"),
            (json!({"idNumber": {"eq": ID_NUMBER}}), "not searchable"),
        ] {
            let r = t.data(find, json!({"f": filter})).await;
            assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "{r}");
            assert!(r["errors"][0]["message"].as_str().unwrap().contains(why), "{r}");
        }
        let r = t.data("{ customers(orderBy: [{phone: AscNullsLast}]) { nodes { id } } }", json!({})).await;
        assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "{r}");
        assert!(r["errors"][0]["message"].as_str().unwrap().contains("encrypted"), "{r}");
        let r = t.data("{ customersGroupBy(groupBy: [phone]) { count } }", json!({})).await;
        assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "{r}");
        assert!(r["errors"][0]["message"].as_str().unwrap().contains("encrypted"), "{r}");

        // Uniqueness compares normalised values, within a batch and against stored records.
        let r = t
            .data("mutation { createCustomer(data: {name: \"C\", phone: \"(+86) 138 1234 5678\"}) { id } }", json!({}))
            .await;
        assert_eq!(error_codes(&r), ["CONFLICT"], "{r}");
        assert_eq!(field_errors(&r)[0].1, "phone");
        let r = t
            .data(
                "mutation { createCustomers(data: [{name: \"D\", phone: \"13700000000\"}, {name: \"E\", phone: \"+86 137 0000 0000\"}]) { id } }",
                json!({}),
            )
            .await;
        assert_eq!(error_codes(&r), ["CONFLICT"], "{r}");
        // An upsert matches on the blind index.
        let r = t
            .data_ok(
                "mutation { createCustomers(data: [{name: \"A2\", phone: \"138 1234 5678\"}], upsert: {onConflict: [\"phone\"], update: [\"name\"]}) { id name } }",
                json!({}),
            )
            .await;
        assert_eq!(r["createCustomers"], json!([{"id": a, "name": "A2"}]));
    });
}

#[tokio::test]
async fn moved_or_altered_ciphertext_is_an_error_for_that_value_only() {
    each_backend!(|t| {
        customer_object(&t).await;
        let a = create_customer(&t, "A", PHONE, ID_NUMBER, EMAIL).await;
        let b = create_customer(&t, "B", "13900000000", "220101199001011111", "b@example.com").await;
        // Copy A's ID number ciphertext onto B: it is bound to A's record and fails on B.
        raw_execute(
            &t,
            &format!("UPDATE obj_customer SET id_number = (SELECT id_number FROM obj_customer WHERE id = '{a}') WHERE id = '{b}'"),
        )
        .await;
        let r = t.data("query($id: ID!) { customer(id: $id) { name idNumber city } }", json!({"id": b})).await;
        assert_eq!(r["data"]["customer"]["city"], "Beijing", "the rest of the record is answered: {r}");
        assert!(r["data"]["customer"]["idNumber"].is_null());
        let message = r["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains("`idNumber` cannot be decrypted"), "{r}");
        assert!(!r.to_string().contains(ID_NUMBER), "never someone else's value");

        // Flip one character of A's email ciphertext.
        let stored = raw_text(&t, &format!("SELECT email FROM obj_customer WHERE id = '{a}'")).await;
        let mut chars: Vec<char> = stored.chars().collect();
        let i = chars.len() - 5;
        chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
        let altered: String = chars.into_iter().collect();
        raw_execute(&t, &format!("UPDATE obj_customer SET email = '{altered}' WHERE id = '{a}'")).await;
        let r = t.data("{ customers(first: 10) { nodes { id email phone } } }", json!({})).await;
        assert_eq!(error_codes(&r), ["INTERNAL_SERVER_ERROR"], "{r}");
        let nodes = r["data"]["customers"]["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), 2, "the list is still served: {r}");
        assert_eq!(nodes[0]["phone"], PHONE);
        // The server keeps serving.
        t.data_ok("{ customers(first: 1) { nodes { city } } }", json!({})).await;
    });
}

#[tokio::test]
async fn existing_values_are_encrypted_when_a_field_becomes_sensitive_and_decrypted_when_it_stops() {
    each_backend!(|t| {
        t.object(
            "lead",
            "leads",
            vec![
                json!({"name": "name", "label": "Name", "type": "TEXT"}),
                json!({"name": "mobile", "label": "Mobile", "type": "PHONE", "unique": true}),
            ],
        )
        .await;
        let mut ids = Vec::new();
        for i in 0..30 {
            let r = t
                .data_ok(
                    "mutation($d: LeadInput!) { createLead(data: $d) { id } }",
                    json!({"d": {"name": format!("lead {i}"), "mobile": format!("1860000{i:04}")}}),
                )
                .await;
            ids.push(r["createLead"]["id"].as_str().unwrap().to_string());
        }
        let r = t
            .meta_ok(
                "mutation { updateField(object: \"lead\", field: \"mobile\", input: {sensitive: {encrypted: true, searchable: true}}) { sensitive { encrypted searchable mask } } }",
                json!({}),
            )
            .await;
        assert_eq!(r["updateField"]["sensitive"], json!({"encrypted": true, "searchable": true, "mask": "PHONE"}));
        let secrets: Vec<String> = (0..30).map(|i| format!("1860000{i:04}")).collect();
        let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        assert_not_at_rest(&t, &refs).await;
        let r = t
            .data_ok("{ leads(filter: {mobile: {eq: \"+86 186 0000 0007\"}}) { nodes { name mobile } } }", json!({}))
            .await;
        assert_eq!(r["leads"]["nodes"], json!([{"name": "lead 7", "mobile": "18600000007"}]));
        let r =
            t.data("mutation { createLead(data: {name: \"dup\", mobile: \"18600000003\"}) { id } }", json!({})).await;
        assert_eq!(error_codes(&r), ["CONFLICT"], "uniqueness now goes through the blind index: {r}");

        // Back to an ordinary field: every value decrypted, the unique index back on the column.
        t.meta_ok(
            "mutation { updateField(object: \"lead\", field: \"mobile\", input: {sensitive: null}) { name } }",
            json!({}),
        )
        .await;
        let stored = raw_text(&t, &format!("SELECT mobile FROM obj_lead WHERE id = '{}'", ids[5])).await;
        assert_eq!(stored, "18600000005");
        let r = t.data_ok("{ leads(filter: {mobile: {startsWith: \"1860000002\"}}) { totalCount } }", json!({})).await;
        assert_eq!(r["leads"]["totalCount"], 10);
        let r =
            t.data("mutation { createLead(data: {name: \"dup\", mobile: \"18600000003\"}) { id } }", json!({})).await;
        assert_eq!(error_codes(&r), ["CONFLICT"], "{r}");

        // A unique field whose values collide once normalised cannot be made searchable.
        t.data_ok("mutation { createLead(data: {name: \"x\", mobile: \"+86 186 0000 0001\"}) { id } }", json!({}))
            .await;
        let r = t
            .meta(
                "mutation { updateField(object: \"lead\", field: \"mobile\", input: {sensitive: {encrypted: true, searchable: true}}) { name } }",
                json!({}),
            )
            .await;
        assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "{r}");
        assert!(r["errors"][0]["message"].as_str().unwrap().contains("normalised"), "{r}");
    });
}

#[tokio::test]
async fn exports_and_erases_personal_data_everywhere() {
    each_backend!(|t| {
        customer_object(&t).await;
        let id = create_customer(&t, "韩梅梅", PHONE, ID_NUMBER, EMAIL).await;
        create_customer(&t, "王芳", "13600000000", "330101199001011111", "wang@example.com").await;
        t.data_ok(
            "mutation($id: ID!) { updateCustomer(id: $id, data: {email: \"new@example.com\"}) { id } }",
            json!({"id": id}),
        )
        .await;
        t.data_ok(
            "mutation($c: ID!) { createPurchase(data: {title: \"order 1\", customerId: $c}) { id } }",
            json!({"c": id}),
        )
        .await;
        let export = t
            .meta_ok("mutation($id: String!) { exportPersonalData(object: \"customer\", id: $id) }", json!({"id": id}))
            .await["exportPersonalData"]
            .clone();
        assert_eq!(export["record"]["phone"], PHONE);
        assert_eq!(export["record"]["id_number"], ID_NUMBER);
        assert_eq!(export["record"]["name"], "韩梅梅");
        assert_eq!(export["related"][0]["object"], "purchase");
        assert_eq!(export["related"][0]["records"][0]["title"], "order 1");
        let history = export["history"].as_array().unwrap();
        assert_eq!(history.len(), 2, "{export}");
        assert_eq!(history[0]["before"]["email"], EMAIL);
        let log = t
            .meta_ok("query($id: String) { sensitiveAccessLog(recordId: $id) { via fields } }", json!({"id": id}))
            .await;
        assert!(log["sensitiveAccessLog"].as_array().unwrap().iter().any(|e| e["via"] == "export"), "{log}");
        let audited = t.meta_ok("{ auditLog(category: \"privacy\") { action recordId } }", json!({})).await;
        assert_eq!(audited["auditLog"][0]["action"], "export_personal_data");

        let r = t
            .meta_ok(
                "mutation($id: String!) { erasePersonalData(object: \"customer\", id: $id, mode: ANONYMIZE) }",
                json!({"id": id}),
            )
            .await;
        assert_eq!(r["erasePersonalData"]["fields"], json!(["name", "phone", "id_number", "email"]));
        let r = t.data_ok("query($id: ID!) { customer(id: $id) { name phone email city } }", json!({"id": id})).await;
        assert_eq!(r["customer"], json!({"name": null, "phone": null, "email": null, "city": "Beijing"}));
        let history = t
            .meta_ok(
                "query($id: String) { auditLog(category: \"record\", recordId: $id) { before after } }",
                json!({"id": id}),
            )
            .await;
        let text = history.to_string();
        assert!(!text.contains(EMAIL) && !text.contains(PHONE) && !text.contains("韩梅梅"), "{text}");
        assert!(text.contains("[erased]"));
        assert_not_at_rest(&t, &[PHONE, ID_NUMBER, EMAIL, "new@example.com", "韩梅梅"]).await;
        let audited = t.meta_ok("{ auditLog(category: \"privacy\") { action recordId after } }", json!({})).await;
        assert_eq!(audited["auditLog"][0]["action"], "erase_personal_data");
        assert_eq!(audited["auditLog"][0]["after"]["mode"], "ANONYMIZE");

        // DELETE removes the record, and with it the order's lookup.
        let other = create_customer(&t, "李雷", "13900000000", "220101199001011111", "b@example.com").await;
        t.meta_ok(
            "mutation($id: String!) { erasePersonalData(object: \"customer\", id: $id, mode: DELETE) }",
            json!({"id": other}),
        )
        .await;
        let r = t.data_ok("query($id: ID!) { customer(id: $id) { id } }", json!({"id": other})).await;
        assert!(r["customer"].is_null());
        let history = t
            .meta_ok(
                "query($id: String) { auditLog(category: \"record\", recordId: $id) { after } }",
                json!({"id": other}),
            )
            .await;
        assert!(!history.to_string().contains("李雷"), "{history}");
        let r =
            t.meta("mutation { erasePersonalData(object: \"customer\", id: \"nope\", mode: DELETE) }", json!({})).await;
        assert_eq!(error_codes(&r), ["NOT_FOUND"], "{r}");
    });
}

#[tokio::test]
async fn sensitive_definitions_are_validated() {
    each_backend!(|t| {
        t.object("thing", "things", vec![json!({"name": "name", "label": "Name", "type": "TEXT"})]).await;
        for (field, why) in [
            (
                json!({"name": "n", "label": "N", "type": "INTEGER", "sensitive": {"encrypted": true}}),
                "cannot be sensitive",
            ),
            (json!({"name": "p", "label": "P", "type": "PHONE", "sensitive": {"searchable": true}}), "encrypted"),
            (
                json!({"name": "p", "label": "P", "type": "PHONE", "unique": true, "sensitive": {"encrypted": true}}),
                "searchable",
            ),
            (
                json!({"name": "p", "label": "P", "type": "PHONE", "indexed": true, "sensitive": {"encrypted": true}}),
                "searchable",
            ),
            (
                json!({"name": "p", "label": "P", "type": "TEXT", "defaultValue": "x", "sensitive": {"encrypted": true}}),
                "default",
            ),
        ] {
            let r = t
                .meta(
                    "mutation($f: FieldInput!) { createField(object: \"thing\", input: $f) { name } }",
                    json!({"f": field}),
                )
                .await;
            assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "{r}");
            assert!(r["errors"][0]["message"].as_str().unwrap().contains(why), "{why}: {r}");
        }
        t.meta_ok(
            "mutation { createField(object: \"thing\", input: {name: \"secret\", label: \"S\", type: TEXT, sensitive: {encrypted: true}}) { name } }",
            json!({}),
        )
        .await;
        let r = t
            .meta(
                "mutation { updateField(object: \"thing\", field: \"secret\", input: {type: INTEGER}) { name } }",
                json!({}),
            )
            .await;
        assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "{r}");
        assert!(r["errors"][0]["message"].as_str().unwrap().contains("encrypted"), "{r}");
    });
}

#[tokio::test]
async fn large_tables_are_encrypted_online_in_the_background() {
    each_backend!(|t| {
        t.object("lead", "leads", vec![json!({"name": "mobile", "label": "Mobile", "type": "PHONE"})]).await;
        let phone = |i: usize| format!("1770{i:07}");
        for batch in 0..5 {
            let data: Vec<Value> = (batch * 500..(batch + 1) * 500).map(|i| json!({"mobile": phone(i)})).collect();
            t.data_ok("mutation($d: [LeadInput!]!) { createLeads(data: $d) { id } }", json!({"d": data})).await;
        }
        t.meta_ok(
            "mutation { updateField(object: \"lead\", field: \"mobile\", input: {sensitive: {encrypted: true, searchable: true}}) { name } }",
            json!({}),
        )
        .await;
        // While the job runs, reads and searches keep answering, plaintext rows included.
        let r = t.data_ok("{ leads(filter: {mobile: {eq: \"17700002400\"}}) { nodes { mobile } } }", json!({})).await;
        assert_eq!(r["leads"]["nodes"], json!([{"mobile": "17700002400"}]));
        t.data_ok("mutation { createLead(data: {mobile: \"17799999999\"}) { id } }", json!({})).await;
        let mut done = false;
        for _ in 0..200 {
            let jobs = t.meta_ok("{ keyJobs(all: true) { kind state done total } }", json!({})).await;
            let job = jobs["keyJobs"].as_array().unwrap().iter().find(|j| j["kind"] == "convert_field").cloned();
            if job.as_ref().is_some_and(|j| j["state"] == "done") {
                done = true;
                break;
            }
            assert_ne!(job.as_ref().map(|j| j["state"].clone()), Some(json!("failed")), "{jobs}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(done, "the conversion finished");
        let r = t
            .data_ok(
                "{ leads(filter: {mobile: {in: [\"+86 177 0000 0001\", \"17799999999\"]}}) { totalCount } }",
                json!({}),
            )
            .await;
        assert_eq!(r["leads"]["totalCount"], 2);
        let secrets: Vec<String> = [1, 777, 2499].iter().map(|i| phone(*i)).collect();
        let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        assert_not_at_rest(&t, &refs).await;
    });
}

/// A database written before blind indexes became 64-bit integers holds them as base64 text
/// of 128 bits of HMAC, of which the integer is the first 64. Rewrites the customer's phone
/// index that way, as the old DDL made it (`VARCHAR(32)`, indexed unique), keeping each
/// record's integer as those first bits.
async fn store_phone_index_as_legacy_text(t: &TestServer) {
    let conn = Database::connect(t.database_url.clone()).await.unwrap();
    let backend = conn.get_database_backend();
    let raw = |sql: &str| Statement::from_string(backend, sql.to_string());
    let rows = conn.query_all_raw(raw("SELECT id, phone__bidx FROM obj_customer")).await.unwrap();
    let legacy: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            let index: i64 = r.try_get_by_index(1).unwrap();
            let mut bytes = index.to_be_bytes().to_vec();
            bytes.extend_from_slice(&[0x5a; 8]);
            (r.try_get_by_index(0).unwrap(), base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes))
        })
        .collect();
    if backend == sea_orm::DbBackend::Postgres {
        conn.execute_unprepared("ALTER TABLE obj_customer ALTER COLUMN phone__bidx TYPE VARCHAR(32) USING NULL")
            .await
            .unwrap();
    } else {
        let index = conn
            .query_one_raw(raw("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql LIKE '%phone__bidx%'"))
            .await
            .unwrap()
            .unwrap();
        let (name, sql): (String, String) = (index.try_get_by_index(0).unwrap(), index.try_get_by_index(1).unwrap());
        assert!(sql.starts_with("CREATE UNIQUE INDEX"), "{sql}");
        for step in [
            format!("DROP INDEX \"{name}\""),
            "ALTER TABLE obj_customer DROP COLUMN phone__bidx".into(),
            "ALTER TABLE obj_customer ADD COLUMN phone__bidx VARCHAR(32) NULL".into(),
            sql,
        ] {
            conn.execute_unprepared(&step).await.unwrap();
        }
    }
    let placeholders = if backend == sea_orm::DbBackend::Postgres { ("$1", "$2") } else { ("?", "?") };
    for (id, text) in legacy {
        let sql = format!("UPDATE obj_customer SET phone__bidx = {} WHERE id = {}", placeholders.0, placeholders.1);
        conn.execute_raw(Statement::from_sql_and_values(backend, sql, [text.into(), id.into()])).await.unwrap();
    }
    conn.close().await.unwrap();
}

async fn phone_index_type(t: &TestServer) -> String {
    let conn = Database::connect(t.database_url.clone()).await.unwrap();
    let backend = conn.get_database_backend();
    let sql = if backend == sea_orm::DbBackend::Postgres {
        "SELECT data_type::text FROM information_schema.columns WHERE table_name = 'obj_customer' AND column_name = 'phone__bidx'"
    } else {
        "SELECT lower(type) FROM pragma_table_info('obj_customer') WHERE name = 'phone__bidx'"
    };
    let row = conn.query_one_raw(Statement::from_string(backend, sql.to_string())).await.unwrap().unwrap();
    let kind = row.try_get_by_index(0).unwrap();
    conn.close().await.unwrap();
    kind
}

#[tokio::test]
async fn blind_indexes_stored_as_text_by_earlier_versions_are_converted_at_start() {
    for backend in tessera_tests::backends() {
        let t = TestServer::start(backend).await;
        customer_object(&t).await;
        let a = create_customer(&t, "A", "+86 138-1234-5678", ID_NUMBER, "a@example.com").await;
        let b = create_customer(&t, "B", "13900000000", "X", "b@example.com").await;
        let integer = phone_index_type(&t).await;
        assert!(integer.contains("int"), "{integer}");
        store_phone_index_as_legacy_text(&t).await;
        assert!(phone_index_type(&t).await.contains("char"));

        let t = t.restart().await;
        assert_eq!(phone_index_type(&t).await, integer, "[{backend:?}] converted at start, as new columns are made");
        let find = "query($f: CustomerFilter) { customers(filter: $f) { nodes { id name } } }";
        for (phone, id) in [("13812345678", &a), ("+86 139 0000 0000", &b)] {
            let r = t.data_ok(find, json!({"f": {"phone": {"eq": phone}}})).await;
            assert_eq!(r["customers"]["nodes"][0]["id"], json!(id), "[{backend:?}] {phone}: {r}");
            assert_eq!(r["customers"]["nodes"].as_array().unwrap().len(), 1);
        }
        // The unique index came back on the converted column.
        let r = t
            .data("mutation { createCustomer(data: {name: \"C\", phone: \"138 1234 5678\"}) { id } }", json!({}))
            .await;
        assert_eq!(error_codes(&r), ["CONFLICT"], "[{backend:?}] {r}");
        let c = create_customer(&t, "C", "13700000000", "Y", "c@example.com").await;
        let r = t.data_ok(find, json!({"f": {"phone": {"eq": "137-0000-0000"}}})).await;
        assert_eq!(r["customers"]["nodes"][0]["id"], json!(c));

        // Converting is done once: the next start finds nothing to convert and loses nothing.
        let t = t.restart().await;
        let r = t.data_ok(find, json!({"f": {"phone": {"in": ["13812345678", "13900000000", "13700000000"]}}})).await;
        assert_eq!(r["customers"]["nodes"].as_array().unwrap().len(), 3, "[{backend:?}] {r}");
        t.stop().await;
    }
}

#[tokio::test]
async fn reads_of_the_same_records_are_logged_each_with_the_list_stored_once() {
    each_backend!(|t| {
        customer_object(&t).await;
        let a = create_customer(&t, "A", PHONE, ID_NUMBER, EMAIL).await;
        let b = create_customer(&t, "B", "13900000000", "X", "b@example.com").await;
        // Twenty reads of the same page at once: they reach the log writer together, so most of
        // them share one flush.
        let page = "{ customers(first: 10) { nodes { id phone } } }";
        let reads = (0..20).map(|_| t.data_ok(page, json!({})));
        for r in futures::future::join_all(reads).await {
            assert_eq!(r["customers"]["nodes"].as_array().unwrap().len(), 2);
        }
        let store = t.server.as_ref().unwrap().store.clone();
        store.flush_access_log().await;
        let conn = Database::connect(t.database_url.clone()).await.unwrap();
        let backend = conn.get_database_backend();
        let stored = conn
            .query_all_raw(Statement::from_string(
                backend,
                "SELECT record_ids FROM sys_sensitive_reads WHERE via = 'list'".to_string(),
            ))
            .await
            .unwrap();
        let lists: Vec<String> = stored.iter().map(|r| r.try_get_by_index(0).unwrap()).collect();
        assert_eq!(lists.len(), 20, "one row per read");
        let references = lists.iter().filter(|l| l.starts_with('=')).count();
        assert!(references > 0, "reads of one flush share their list: {lists:?}");
        // Per record, the reads of a flush are stored as runs of consecutive ids.
        let per_record = conn
            .query_all_raw(Statement::from_string(
                backend,
                "SELECT read_ids FROM sys_sensitive_read_records".to_string(),
            ))
            .await
            .unwrap();
        let runs: Vec<String> = per_record.iter().map(|r| r.try_get_by_index(0).unwrap()).collect();
        assert!(runs.iter().any(|r| r.contains('-')), "consecutive reads as runs: {runs:?}");
        conn.close().await.unwrap();

        // Each record shows every read, whether its row holds the list or refers to another's,
        // and paging one entry at a time walks the same entries.
        for id in [&a, &b] {
            let log = t
                .meta_ok(
                    "query($id: String) { sensitiveAccessLog(recordId: $id, first: 100) { id recordId via fields } }",
                    json!({"id": id}),
                )
                .await;
            let entries = log["sensitiveAccessLog"].as_array().unwrap();
            let listed: Vec<&Value> = entries.iter().filter(|e| e["via"] == "list").collect();
            assert_eq!(listed.len(), 20, "{log}");
            assert!(listed.iter().all(|e| e["recordId"] == json!(id) && e["fields"] == json!(["phone"])));
        }
        let all = t.meta_ok("{ sensitiveAccessLog(first: 100) { recordId via } }", json!({})).await;
        let listed = all["sensitiveAccessLog"].as_array().unwrap().iter().filter(|e| e["via"] == "list").count();
        assert_eq!(listed, 40, "twenty reads of two records: {all}");
        let mut after = Value::Null;
        let mut walked = 0;
        loop {
            let page = t
                .meta_ok(
                    "query($a: String) { sensitiveAccessLog(first: 7, after: $a) { id via } }",
                    json!({"a": after}),
                )
                .await;
            let entries = page["sensitiveAccessLog"].as_array().unwrap();
            if entries.is_empty() {
                break;
            }
            walked += entries.iter().filter(|e| e["via"] == "list").count();
            after = entries.last().unwrap()["id"].clone();
        }
        assert_eq!(walked, 40);
    });
}

#[tokio::test]
async fn reads_logged_just_before_the_server_stops_are_written_when_it_stops() {
    for backend in tessera_tests::backends() {
        let mut t = TestServer::start(backend).await;
        customer_object(&t).await;
        let id = create_customer(&t, "A", PHONE, ID_NUMBER, EMAIL).await;
        let r = t.data_ok("{ customers(first: 10) { nodes { phone } } }", json!({})).await;
        assert_eq!(r["customers"]["nodes"][0]["phone"], PHONE);
        // The log writer gathers reads for up to a second; stopping the server writes them at
        // once, so they are in the database the moment it has stopped. (A clone of the store
        // outlives the server here, so the writer is not woken by its queue closing either.)
        let store = t.server.as_ref().unwrap().store.clone();
        t.server.take().unwrap().shutdown().await;
        let listed = raw_text(&t, "SELECT CAST(COUNT(*) AS TEXT) FROM sys_sensitive_reads WHERE via = 'list'").await;
        assert_eq!(listed, "1", "[{backend:?}]");
        drop(store);
        let t = t.restart().await;
        let log = t
            .meta_ok("query($id: String) { sensitiveAccessLog(recordId: $id) { via fields } }", json!({"id": id}))
            .await;
        assert_eq!(log["sensitiveAccessLog"], json!([{"via": "list", "fields": ["phone"]}]), "[{backend:?}]");
        t.stop().await;
    }
}

//! Ways around masking, closed, through the HTTP API on SQLite and PostgreSQL: writes that would
//! hand back stored values, filters that would recover masked values, an access log that would
//! lose or fail to list reads, and script errors that would quote sensitive values.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};
use tessera_tests::customers::{EMAIL, ID_NUMBER, PHONE, create_customer, customer_object};
use tessera_tests::{Backend, TestServer, each_backend, error_codes};

const NAME: &str = "欧阳娜娜";

/// A user of a new role that may read (masked), create and update customers and read
/// purchases; returns (id, token).
async fn new_agent(t: &TestServer, email: &str) -> (String, String) {
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

/// Every value of every row of a table, as text.
async fn table_text(t: &TestServer, table: &str) -> String {
    use sea_orm::{ConnectionTrait, Database, Statement};
    let db = Database::connect(&t.database_url).await.unwrap();
    let backend = db.get_database_backend();
    let sql = match t.backend {
        Backend::Postgres => format!("SELECT CAST(t AS TEXT) FROM {table} t"),
        Backend::Sqlite => {
            let info = Statement::from_string(backend, format!("SELECT name FROM pragma_table_info('{table}')"));
            let columns: Vec<String> = db
                .query_all_raw(info)
                .await
                .unwrap()
                .iter()
                .map(|r| format!("COALESCE(CAST(\"{}\" AS TEXT), '')", r.try_get_by_index::<String>(0).unwrap()))
                .collect();
            format!("SELECT {} FROM {table}", columns.join(" || ' ' || "))
        }
    };
    let mut out = String::new();
    for row in db.query_all_raw(Statement::from_string(backend, sql)).await.unwrap() {
        out.push_str(&row.try_get_by_index::<String>(0).unwrap());
        out.push('\n');
    }
    db.close().await.ok();
    out
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
        let (agent_id, agent) = new_agent(&t, "agent@example.com").await;
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

#[tokio::test]
async fn masked_fields_are_searched_only_by_single_values_a_few_per_request() {
    each_backend!(|t| {
        customer_object(&t).await;
        let a = create_customer(&t, NAME, PHONE, ID_NUMBER, EMAIL).await;
        create_customer(&t, "韩梅梅", "13900000000", "220101199001011111", "han@example.com").await;
        let (_, agent) = new_agent(&t, "agent@example.com").await;
        let find = "query($f: CustomerFilter) { customers(filter: $f) { totalCount } }";

        // Several values at once, their complement, or parts of one: refused on every field the
        // agent sees masked, encrypted or not.
        for filter in [
            json!({"phone": {"in": [PHONE, "13900000000"]}}),
            json!({"phone": {"notIn": [PHONE]}}),
            json!({"phone": {"neq": PHONE}}),
            json!({"email": {"in": [EMAIL]}}),
            json!({"name": {"in": [NAME, "韩梅梅"]}}),
            json!({"name": {"neq": NAME}}),
            json!({"name": {"like": "欧%"}}),
            json!({"name": {"gte": "欧"}}),
            json!({"not": {"or": [{"city": {"eq": "x"}}, {"name": {"notIn": [NAME]}}]}}),
        ] {
            let r = t.data_as(&agent, find, json!({"f": filter})).await;
            assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "{filter}: {r}");
            assert!(r["errors"][0]["message"].as_str().unwrap().contains("masked"), "{r}");
        }
        // Whoever sees the values unmasked may use them all.
        let r = t.data_ok(find, json!({"f": {"phone": {"in": [PHONE, "13900000000"]}}})).await;
        assert_eq!(r["customers"]["totalCount"], 2);
        // One value at a time finds the caller, encrypted or not, directly or through a lookup.
        t.data_ok("mutation($c: ID!) { createPurchase(data: {title: \"o\", customerId: $c}) { id } }", json!({"c": a}))
            .await;
        let r = t.data_ok_as(&agent, find, json!({"f": {"phone": {"eq": "+86 138 1234 5678"}}})).await;
        assert_eq!(r["customers"]["totalCount"], 1);
        let r = t.data_ok_as(&agent, find, json!({"f": {"name": {"eq": NAME}, "phone": {"isNull": false}}})).await;
        assert_eq!(r["customers"]["totalCount"], 1);
        let r = t
            .data_ok_as(
                &agent,
                "{ purchases(filter: {customer: {phone: {eq: \"13812345678\"}}}) { totalCount } }",
                json!({}),
            )
            .await;
        assert_eq!(r["purchases"]["totalCount"], 1);

        // Three different values of one field per request, wherever they are searched for: in
        // `or` branches, aliased aggregates, groups, lookups and nested relations alike.
        let or = |n: usize| {
            let branches: Vec<Value> = (0..n).map(|i| json!({"phone": {"eq": format!("1300000000{i}")}})).collect();
            json!({"or": branches})
        };
        let aggregate = "query($f: CustomerFilter) { customersAggregate(filter: $f) { count } }";
        t.data_ok_as(&agent, aggregate, json!({"f": or(3)})).await;
        let r = t.data_as(&agent, aggregate, json!({"f": or(4)})).await;
        assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "{r}");
        assert!(r["errors"][0]["message"].as_str().unwrap().contains("at most 3 different values"), "{r}");
        let spread = "{
            a: customersAggregate(filter: {phone: {eq: \"13000000011\"}}) { count }
            b: customersGroupBy(groupBy: [city], filter: {phone: {eq: \"13000000012\"}}) { count }
            c: purchases(filter: {customer: {phone: {eq: \"13000000013\"}}}) { totalCount }
            d: purchases(first: 1) { nodes { customer { purchases(filter: {customer: {phone: {eq: \"13000000014\"}}}) { nodes { title } } } } }
            e: customersAggregate(filter: {name: {eq: \"韩梅梅\"}}) { count }
        }";
        let r = t.data_as(&agent, spread, json!({})).await;
        assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "one search too many, whichever ran last: {r}");
        assert_eq!(r["data"]["e"]["count"], 1, "another field has its own count: {r}");
        // The same value searched for again in one request is one search.
        let again = "{
            a: customersAggregate(filter: {phone: {eq: \"13000000021\"}}) { count }
            b: customers(filter: {or: [{phone: {eq: \"13000000021\"}}, {phone: {eq: \"13000000022\"}}]}) { totalCount }
            c: purchases(filter: {customer: {phone: {eq: \"13000000022\"}}}) { totalCount }
            d: customersAggregate(filter: {not: {phone: {eq: \"13000000023\"}}}) { count }
        }";
        t.data_ok_as(&agent, again, json!({})).await;
        // The admin is not counted.
        t.data_ok(aggregate, json!({"f": or(10)})).await;
    });
}

#[tokio::test]
async fn each_search_of_a_masked_field_is_logged_with_the_records_it_matched_never_the_value() {
    each_backend!(|t| {
        customer_object(&t).await;
        let a = create_customer(&t, NAME, PHONE, ID_NUMBER, EMAIL).await;
        let (agent_id, agent) = new_agent(&t, "agent@example.com").await;
        t.data_ok("mutation($c: ID!) { createPurchase(data: {title: \"o\", customerId: $c}) { id } }", json!({"c": a}))
            .await;
        let missing = "13000000000";
        t.data_ok_as(
            &agent,
            "query($p: String, $m: String) {
                a: customers(filter: {phone: {eq: $p}}) { nodes { phone } }
                b: customersAggregate(filter: {phone: {eq: $p}}) { count }
                c: purchases(filter: {customer: {name: {eq: \"欧阳娜娜\"}}}) { totalCount }
                d: customersAggregate(filter: {phone: {eq: $m}}) { count }
            }",
            json!({"p": PHONE, "m": missing}),
        )
        .await;
        // The admin's searches see every value anyway: they are not guesses.
        t.data_ok("query($p: String) { customers(filter: {phone: {eq: $p}}) { totalCount } }", json!({"p": PHONE}))
            .await;

        let searches: Vec<Value> = access_log(&t, None)
            .await
            .into_iter()
            .filter(|e| e["via"] == "search")
            .map(|e| json!({"userId": e["userId"], "object": e["object"], "recordId": e["recordId"], "fields": e["fields"]}))
            .collect();
        let entry = |record: Value, field: &str| json!({"userId": agent_id, "object": "customer", "recordId": record, "fields": [field]});
        assert_eq!(searches.len(), 3, "one entry per value searched for in the request: {searches:?}");
        for expected in [entry(json!(a), "phone"), entry(json!(a), "name"), entry(Value::Null, "phone")] {
            assert!(searches.contains(&expected), "{expected} in {searches:?}");
        }
        let of_record = access_log(&t, Some(&a)).await;
        assert_eq!(of_record.iter().filter(|e| e["via"] == "search").count(), 2, "{of_record:?}");

        // The log's rows name the agent and the search, never a value searched for.
        let mut stored = table_text(&t, "sys_sensitive_reads").await;
        stored.push_str(&table_text(&t, "sys_sensitive_read_records").await);
        assert!(stored.contains(&agent_id) && stored.contains("search"), "the scan sees the entries: {stored}");
        for value in [PHONE, missing, NAME, "12345678"] {
            assert!(!stored.contains(value), "[{:?}] `{value}` is in the log: {stored}", t.backend);
        }
    });
}

#[tokio::test]
async fn searches_of_masked_fields_are_rate_limited_per_user() {
    for backend in tessera_tests::backends() {
        let t = TestServer::start_with(backend, |c| c.masked_search.per_user_per_minute = 4).await;
        customer_object(&t).await;
        create_customer(&t, NAME, PHONE, ID_NUMBER, EMAIL).await;
        let (_, agent) = new_agent(&t, "agent@example.com").await;
        let (_, other) = new_agent(&t, "other@example.com").await;
        let find = "query($p: String) { customersAggregate(filter: {phone: {eq: $p}}) { count } }";
        for i in 0..2 {
            t.data_ok_as(&agent, find, json!({"p": format!("1300000000{i}")})).await;
        }
        // Two more in one request fill the quota of four; a fifth, even of a value searched for
        // in an earlier request, is refused.
        t.data_ok_as(
            &agent,
            "{ customers(filter: {or: [{phone: {eq: \"13000000002\"}}, {phone: {eq: \"13000000003\"}}]}) { totalCount } }",
            json!({}),
        )
        .await;
        let r = t.data_as(&agent, find, json!({"p": "13000000000"})).await;
        assert_eq!(error_codes(&r), ["RATE_LIMITED"], "[{backend:?}] {r}");
        assert!(r["errors"][0]["message"].as_str().unwrap().contains("4 times a minute"), "{r}");
        // Searching without a masked field, another user and the admin go on.
        t.data_ok_as(&agent, "{ customersAggregate(filter: {city: {eq: \"Beijing\"}}) { count } }", json!({})).await;
        let r = t.data_ok_as(&other, find, json!({"p": PHONE})).await;
        assert_eq!(r["customersAggregate"]["count"], 1);
        for _ in 0..3 {
            t.data_ok(
                "{ customers(filter: {phone: {in: [\"13000000000\", \"13000000001\"]}}) { totalCount } }",
                json!({}),
            )
            .await;
        }
        t.stop().await;
    }
}

async fn raw_execute(t: &TestServer, sql: &str) {
    use sea_orm::{ConnectionTrait, Database};
    let db = Database::connect(&t.database_url).await.unwrap();
    db.execute_unprepared(sql).await.unwrap();
    db.close().await.ok();
}

#[tokio::test]
async fn unmasked_reads_fail_closed_while_the_access_log_cannot_be_written_and_served_ones_are_logged_later() {
    each_backend!(|t| {
        customer_object(&t).await;
        let id = create_customer(&t, NAME, PHONE, ID_NUMBER, EMAIL).await;
        t.role("supervisor").await;
        t.grant("supervisor", "customer", "read update", "ALL").await;
        t.field_access("supervisor", "customer", "phone", "UNMASKED_READ").await;
        let (supervisor_id, supervisor) = t.user("supervisor@example.com", &["supervisor"], None).await;
        let (_, agent) = new_agent(&t, "agent@example.com").await;
        let store = t.server.as_ref().unwrap().store.clone();
        assert!(store.flush_access_log().await);
        let list = "{ customers(first: 10) { nodes { name phone } } }";

        // The log's table goes away (a failover, a full disk) after a read was served.
        raw_execute(&t, "ALTER TABLE sys_sensitive_reads RENAME TO sys_sensitive_reads_away").await;
        let r = t.data_ok_as(&supervisor, list, json!({})).await;
        assert_eq!(r["customers"]["nodes"][0]["phone"], PHONE);
        assert!(!store.flush_access_log().await, "[{:?}] the served read cannot be written yet", t.backend);

        // Until it can be written again, nothing that would need it is shown: reads are refused,
        // searches of masked fields too, and a write's result comes back masked.
        let r = t.data_as(&supervisor, list, json!({})).await;
        assert_eq!(error_codes(&r), ["UNAVAILABLE"], "{r}");
        assert!(!r.to_string().contains(PHONE), "{r}");
        let r =
            t.data_as(&agent, "{ customers(filter: {phone: {eq: \"13812345678\"}}) { totalCount } }", json!({})).await;
        assert_eq!(error_codes(&r), ["UNAVAILABLE"], "{r}");
        let r = t.data_ok_as(&agent, list, json!({})).await;
        assert_eq!(r["customers"]["nodes"][0]["phone"], "138****5678", "masked reads need no log");
        let r = t
            .data_ok_as(
                &supervisor,
                "mutation($id: ID!) { updateCustomer(id: $id, data: {city: \"Shanghai\"}) { city phone } }",
                json!({"id": id}),
            )
            .await;
        assert_eq!(r["updateCustomer"], json!({"city": "Shanghai", "phone": "138****5678"}));
        let r = t.meta("{ sensitiveAccessLog { id } }", json!({})).await;
        assert_eq!(error_codes(&r), ["UNAVAILABLE"], "an incomplete log is not shown as the log: {r}");

        // Back again: the served read is written, once, and reads are served again.
        raw_execute(&t, "ALTER TABLE sys_sensitive_reads_away RENAME TO sys_sensitive_reads").await;
        assert!(store.flush_access_log().await);
        let supervisor_reads = |log: &[Value]| -> Vec<Value> {
            log.iter()
                .filter(|e| e["userId"] == json!(supervisor_id))
                .map(|e| json!({"via": e["via"], "fields": e["fields"]}))
                .collect()
        };
        let log = access_log(&t, Some(&id)).await;
        assert_eq!(supervisor_reads(&log), [json!({"via": "list", "fields": ["phone"]})], "{log:?}");
        let r = t.data_ok_as(&supervisor, list, json!({})).await;
        assert_eq!(r["customers"]["nodes"][0]["phone"], PHONE);
        let log = access_log(&t, Some(&id)).await;
        assert_eq!(supervisor_reads(&log).len(), 2, "{log:?}");
    });
}

#[tokio::test]
async fn the_access_log_of_a_record_read_more_often_than_one_statement_can_bind_is_paged() {
    each_backend!(|t| {
        customer_object(&t).await;
        let id = create_customer(&t, NAME, PHONE, ID_NUMBER, EMAIL).await;
        t.role("supervisor").await;
        t.grant("supervisor", "customer", "read", "ALL").await;
        t.field_access("supervisor", "customer", "phone", "UNMASKED_READ").await;
        let (supervisor_id, supervisor) = t.user("supervisor@example.com", &["supervisor"], None).await;
        t.data_ok_as(&supervisor, "{ customers { nodes { phone } } }", json!({})).await;
        let store = t.server.as_ref().unwrap().store.clone();
        assert!(store.flush_access_log().await);
        // Then 70,000 reads of the record by others, more than either engine binds in one
        // statement, as the log writer stores them: one row per read, and the record's runs.
        let reads = 70_000;
        let (first, last) = (1_000_000, 1_000_000 + reads - 1);
        let copy = format!(
            "SELECT n, (SELECT at FROM sys_sensitive_reads LIMIT 1), 'someone', 'customer', 'phone', 'list', NULL, '{id}'"
        );
        let insert = "INSERT INTO sys_sensitive_reads (id, at, user_id, object, fields, via, request_id, record_ids)";
        raw_execute(
            &t,
            &match t.backend {
                Backend::Sqlite => format!(
                    "{insert} WITH RECURSIVE s(n) AS (SELECT {first} UNION ALL SELECT n + 1 FROM s WHERE n < {last}) {copy} FROM s"
                ),
                Backend::Postgres => format!("{insert} {copy} FROM generate_series({first}, {last}) AS s(n)"),
            },
        )
        .await;
        raw_execute(
            &t,
            &format!(
                "INSERT INTO sys_sensitive_read_records (record_id, read_id, read_ids) VALUES ('{id}', {first}, '{first}-{last}')"
            ),
        )
        .await;

        // The supervisor's one read, behind all of the others.
        let page = "query($id: String, $u: String, $n: Int, $a: String) {
            sensitiveAccessLog(recordId: $id, user: $u, first: $n, after: $a) { id userId via } }";
        let r = t.meta(page, json!({"id": id, "u": supervisor_id, "n": 10})).await;
        assert!(r.get("errors").is_none(), "[{:?}] {r}", t.backend);
        let entries = r["data"]["sensitiveAccessLog"].as_array().unwrap();
        assert_eq!(entries.len(), 1, "{r}");
        assert_eq!(entries[0]["userId"], json!(supervisor_id));
        // The newest reads, a page at a time, from wherever the last page ended.
        let r = t.meta_ok(page, json!({"id": id, "u": "someone", "n": 3})).await;
        let ids: Vec<&str> =
            r["sensitiveAccessLog"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
        assert_eq!(ids, [format!("{last}:{id}"), format!("{}:{id}", last - 1), format!("{}:{id}", last - 2)]);
        let r = t.meta_ok(page, json!({"id": id, "n": 2, "a": ids[2]})).await;
        let next: Vec<&str> =
            r["sensitiveAccessLog"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
        assert_eq!(next, [format!("{}:{id}", last - 3), format!("{}:{id}", last - 4)]);
    });
}

#[tokio::test]
async fn paging_the_access_log_one_entry_at_a_time_walks_every_record_of_a_read() {
    each_backend!(|t| {
        customer_object(&t).await;
        let a = create_customer(&t, "A", PHONE, ID_NUMBER, EMAIL).await;
        let b = create_customer(&t, "B", "13900000000", "X", "b@example.com").await;
        // Sorted so that the later record comes first.
        t.data_ok("{ customers(orderBy: [{name: DescNullsLast}]) { nodes { phone } } }", json!({})).await;
        let mut after = Value::Null;
        let mut walked = Vec::new();
        loop {
            let r = t
                .meta_ok(
                    "query($a: String) { sensitiveAccessLog(first: 1, after: $a) { id recordId } }",
                    json!({"a": after}),
                )
                .await;
            let Some(entry) = r["sensitiveAccessLog"].as_array().unwrap().first().cloned() else { break };
            after = entry["id"].clone();
            walked.push(entry["recordId"].as_str().unwrap().to_string());
            assert!(walked.len() <= 2, "{walked:?}");
        }
        walked.sort();
        assert_eq!(walked, [a, b], "[{:?}]", t.backend);
    });
}

#[tokio::test]
async fn script_errors_do_not_quote_values_the_writer_sees_masked() {
    each_backend!(|t| {
        customer_object(&t).await;
        let id_number = "11010119900307123X";
        let id = create_customer(&t, NAME, PHONE, id_number, EMAIL).await;
        set_script(
            &t,
            "customer",
            "parse",
            "BEFORE_SAVE",
            "if record.city == \"parse\" { let n = decimal(record.id_number); }",
        )
        .await;
        set_script(
            &t,
            "customer",
            "moving_rules",
            "VALIDATE",
            "if record.city == \"check\" { error(\"city\", \"customer \" + record.name + \" may not move\"); }
             if record.city == \"reject\" { reject(\"phone \" + record.phone + \" is blocked\"); }",
        )
        .await;
        let (_, agent) = new_agent(&t, "agent@example.com").await;
        let update = "mutation($id: ID!, $c: String) { updateCustomer(id: $id, data: {city: $c}) { id } }";
        for (city, secret) in [("parse", id_number), ("check", NAME), ("reject", PHONE)] {
            // The admin sees the values: the scripts do put them in their messages.
            let r = t.data(update, json!({"id": id, "c": city})).await;
            assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "{r}");
            assert!(r["errors"][0]["extensions"]["fieldErrors"].to_string().contains(secret), "{r}");
            // Someone who sees them masked gets the message without them.
            let r = t.data_as(&agent, update, json!({"id": id, "c": city})).await;
            assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "{r}");
            assert!(!r.to_string().contains(secret), "[{:?}] {city}: {r}", t.backend);
            assert!(r["errors"][0]["extensions"]["fieldErrors"].to_string().contains("[sensitive]"), "{r}");
        }
    });
}

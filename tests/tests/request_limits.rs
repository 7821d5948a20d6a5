#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! What one data API request may ask of the database: the records it may read (pages multiplied
//! by the pages around them), the records its mutations may write, and how long its statements
//! may run.

use serde_json::{Value, json};
use tessera_tests::*;

/// Accounts, their contacts, and the contacts' notes: three levels of reverse relations.
async fn crm(t: &TestServer) {
    t.object("account", "accounts", vec![json!({"name": "name", "label": "名称", "type": "TEXT"})]).await;
    t.object(
        "contact",
        "contacts",
        vec![
            json!({"name": "name", "label": "姓名", "type": "TEXT"}),
            json!({"name": "account", "label": "客户", "type": "LOOKUP", "target": "account"}),
        ],
    )
    .await;
    t.object(
        "note",
        "notes",
        vec![
            json!({"name": "body", "label": "内容", "type": "LONG_TEXT"}),
            json!({"name": "contact", "label": "联系人", "type": "LOOKUP", "target": "contact"}),
        ],
    )
    .await;
}

async fn count(t: &TestServer) -> i64 {
    t.data_ok("{ contactsAggregate { count } }", json!({})).await["contactsAggregate"]["count"].as_i64().unwrap()
}

fn message(r: &Value) -> &str {
    r["errors"][0]["message"].as_str().unwrap_or("")
}

/// Asserts the request was refused for asking for `requested` records over `limit`.
fn assert_over_row_budget(r: &Value, requested: u64, limit: u64) {
    assert_eq!(error_codes(r), ["BAD_USER_INPUT"], "{r}");
    let ext = &r["errors"][0]["extensions"];
    assert_eq!((ext["requested"].as_u64(), ext["limit"].as_u64()), (Some(requested), Some(limit)), "{r}");
    assert!(message(r).contains("--max-request-rows"), "{r}");
    assert!(r["data"].is_null(), "nothing was answered: {r}");
}

/// Statements the server runs while answering `query`. The server's background work (version
/// polls, checkpoints) runs statements too, so a count of zero is looked for a few times.
async fn fewest_statements(t: &TestServer, query: &str, variables: Value) -> (u64, Value) {
    let store = &t.server.as_ref().unwrap().store;
    let mut fewest = (u64::MAX, Value::Null);
    for _ in 0..5 {
        let before = store.statements_executed();
        let r = t.data(query, variables.clone()).await;
        let ran = store.statements_executed() - before;
        if ran < fewest.0 {
            fewest = (ran, r);
        }
        if fewest.0 == 0 {
            break;
        }
    }
    fewest
}

#[tokio::test]
async fn three_nested_pages_of_a_hundred_are_refused_before_any_statement_runs() {
    let query = "query($n: Int) { accounts(first: $n) { nodes { name
        contacts(first: $n) { nodes { name notes(first: $n) { nodes { body } } } } } } }";
    each_backend!(|t| {
        crm(&t).await;
        t.data_ok("mutation { createAccount(data: {name: \"A\"}) { id } }", json!({})).await;
        // Warm up the session so that the request itself is all that runs.
        t.data_ok("{ me { id } }", json!({})).await;

        // A million notes at a complexity of about ten.
        let (ran, r) = fewest_statements(&t, query, json!({"n": 100})).await;
        assert_over_row_budget(&r, 100 + 100 * 100 + 100 * 100 * 100, 25_000);
        assert!(message(&r).contains("1010100"), "the message gives the estimate: {r}");
        assert_eq!(ran, 0, "refused before any statement ran");

        // The same shape with small pages runs, and the count above can see its statements.
        let (ran, r) = fewest_statements(&t, query, json!({"n": 10})).await;
        assert!(r.get("errors").is_none(), "{r}");
        assert_eq!(r["data"]["accounts"]["nodes"][0]["name"], "A");
        assert!(ran > 0, "a request that runs is seen running statements");
    });
}

#[tokio::test]
async fn variables_defaults_aliases_fragments_lookups_and_groups_all_count_against_the_row_budget() {
    for backend in backends() {
        let t = TestServer::start_with(backend, |c| c.limits.max_request_rows = 100).await;
        crm(&t).await;
        let nested = "query($n: Int) { accounts(first: $n) { nodes { contacts(first: $n) { nodes { name } } } } }";
        // Nested pages are per parent: 9 accounts × 9 contacts each.
        t.data_ok(nested, json!({"n": 9})).await;
        assert_over_row_budget(&t.data(nested, json!({"n": 10})).await, 10 + 10 * 10, 100);
        // A variable's default is its value when the request gives none.
        let defaulted =
            "query($n: Int = 10) { accounts(first: $n) { nodes { contacts(first: $n) { nodes { name } } } } }";
        assert_over_row_budget(&t.data(defaulted, json!({})).await, 110, 100);
        // Pages left unsized are 20 records.
        t.data_ok("{ accounts { nodes { name } } }", json!({})).await;
        let default_pages = "{ accounts { nodes { contacts { nodes { name } } } } }";
        assert_over_row_budget(&t.data(default_pages, json!({})).await, 20 + 20 * 20, 100);
        // `last` sizes a page as `first` does.
        assert_over_row_budget(
            &t.data("{ accounts(last: 100) { nodes { contacts(first: 1) { nodes { name } } } } }", json!({})).await,
            200,
            100,
        );

        // Every alias is a query of its own.
        t.data_ok("{ a: accounts(first: 60) { nodes { name } } }", json!({})).await;
        let aliased =
            "{ a: accounts(first: 60) { nodes { name } } b: accounts(first: 60) { edges { node { name } } } }";
        assert_over_row_budget(&t.data(aliased, json!({})).await, 120, 100);

        // Fragments count where they are spread, inline ones too.
        let fragments = "{ accounts(first: 5) { ...Page } }
            fragment Page on AccountConnection { nodes { ... on Account { contacts(first: 10) { ...Contacts } } } }
            fragment Contacts on ContactConnection { nodes { name } }";
        t.data_ok(fragments, json!({})).await;
        let spread_twice = "{ a: accounts(first: 5) { ...Page } b: accounts(first: 5) { ...Page } }
            fragment Page on AccountConnection { nodes { contacts(first: 10) { nodes { name } } } }";
        assert_over_row_budget(&t.data(spread_twice, json!({})).await, 2 * (5 + 5 * 10), 100);
        // A skipped selection asks for nothing.
        let skipped = "query($skip: Boolean!) { accounts(first: 9) { nodes { contacts(first: 100) @skip(if: $skip) { nodes { name } } } } }";
        t.data_ok(skipped, json!({"skip": true})).await;
        assert_over_row_budget(&t.data(skipped, json!({"skip": false})).await, 9 + 9 * 100, 100);

        // A lookup is one record per record it is read on.
        t.data_ok("{ contacts(first: 50) { nodes { account { name } } } }", json!({})).await;
        assert_over_row_budget(
            &t.data("{ contacts(first: 51) { nodes { account { name } } } }", json!({})).await,
            102,
            100,
        );
        // A group-by returns up to 1,000 groups unless `first` says fewer.
        t.data_ok("{ contactsGroupBy(groupBy: [name], first: 100) { count } }", json!({})).await;
        assert_over_row_budget(&t.data("{ contactsGroupBy(groupBy: [name]) { count } }", json!({})).await, 1_000, 100);
        t.stop().await;
    }
}

/// The estimate is made before validation has refused anything: fragments spreading each other
/// in a cycle, or doubling at every level, must not hang it.
#[tokio::test]
async fn cyclic_and_doubling_fragments_get_their_validation_error() {
    each_backend!(|t| {
        crm(&t).await;
        let cycle =
            "{ ...A } fragment A on Query { accounts { ...B } } fragment B on AccountConnection { nodes { ...C } }
            fragment C on Account { contacts { nodes { account { ...D } } } } fragment D on Account { name ...C }";
        let r = t.data(cycle, json!({})).await;
        assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "{r}");
        assert!(!message(&r).contains("--max-request-rows"), "validation answers first: {r}");

        // A million spreads of F0 if expanded: the estimate costs each fragment once.
        let mut doubling = String::from("{ accounts(first: 1) { nodes { ...F20 } } }");
        for i in 1..=20 {
            doubling.push_str(&format!(" fragment F{i} on Account {{ ...F{j} ...F{j} }}", j = i - 1));
        }
        doubling.push_str(" fragment F0 on Account { contacts(first: 1) { nodes { name } } }");
        let r = t.data(&doubling, json!({})).await;
        assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "{r}");
    });
}

/// The batch cap (`--max-batch`) is per request: aliases reusing one variable, and single creates
/// next to batches, share it, and a request over it is refused whole before anything is written.
#[tokio::test]
async fn mutations_of_one_request_share_the_batch_cap_and_a_request_over_it_writes_nothing() {
    let contacts = |n: usize| json!({"d": (0..n).map(|i| json!({"name": format!("n{i}")})).collect::<Vec<_>>()});
    for backend in backends() {
        let t = TestServer::start_with(backend, |c| c.limits.max_batch = 3).await;
        crm(&t).await;
        let aliased =
            "mutation($d: [ContactInput!]!) { a: createContacts(data: $d) { id } b: createContacts(data: $d) { id } }";
        let r = t.data(aliased, contacts(2)).await;
        assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "{r}");
        assert!(message(&r).contains("at most 3 records per batch"), "{r}");
        assert!(message(&r).contains("writes 4"), "{r}");
        assert_eq!(count(&t).await, 0, "nothing was written");

        let mixed = "mutation($d: [ContactInput!]!) { createContacts(data: $d) { id }
            one: createContact(data: {name: \"x\"}) { id } two: createContact(data: {name: \"y\"}) { id } }";
        let r = t.data(mixed, contacts(2)).await;
        assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "{r}");
        assert_eq!(count(&t).await, 0, "nothing was written");

        // Within the cap, every mutation runs.
        let within = "mutation($d: [ContactInput!]!) { a: createContacts(data: $d) { id } b: createContact(data: {name: \"z\"}) { id } }";
        let d = t.data_ok(within, contacts(2)).await;
        assert_eq!(d["a"].as_array().unwrap().len(), 2);
        assert_eq!(count(&t).await, 3);
        t.stop().await;
    }
}

/// An update by filter may change up to 10,000 records: a request holds one, and a request with
/// two is refused before either runs.
#[tokio::test]
async fn a_request_holds_at_most_one_update_by_filter() {
    each_backend!(|t| {
        crm(&t).await;
        t.data_ok("mutation { createContacts(data: [{name: \"n0\"}, {name: \"n1\"}]) { id } }", json!({})).await;
        let two = r#"mutation {
            a: updateContacts(filter: {name: {eq: "n0"}}, data: {name: "x0"}) { id }
            b: updateContacts(filter: {name: {eq: "n1"}}, data: {name: "x1"}) { id } }"#;
        let r = t.data(two, json!({})).await;
        assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "{r}");
        assert!(message(&r).contains("at most one update by filter per request"), "{r}");
        let names = |d: &Value| {
            let mut n: Vec<String> = d["contacts"]["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["name"].as_str().unwrap().to_string())
                .collect();
            n.sort();
            n
        };
        let d = t.data_ok("{ contacts { nodes { name } } }", json!({})).await;
        assert_eq!(names(&d), ["n0", "n1"], "neither update ran");

        let one = r#"mutation { updateContacts(filter: {name: {eq: "n0"}}, data: {name: "x0"}) { id } }"#;
        assert_eq!(t.data_ok(one, json!({})).await["updateContacts"].as_array().unwrap().len(), 1);
        let d = t.data_ok("{ contacts { nodes { name } } }", json!({})).await;
        assert_eq!(names(&d), ["n1", "x0"]);
    });
}

/// Active statements of the test's PostgreSQL database whose text contains `needle`.
async fn running_statements(t: &TestServer, needle: &str) -> i64 {
    use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
    let server = std::env::var("TESSERA_TEST_POSTGRES").unwrap();
    let database = t.database_url.rsplit('/').next().unwrap().to_string();
    let admin = Database::connect(format!("{}/postgres", server.trim_end_matches('/'))).await.unwrap();
    let row = admin
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND state = 'active' AND position($2 in query) > 0",
            [database.into(), needle.into()],
        ))
        .await
        .unwrap()
        .unwrap();
    admin.close().await.ok();
    row.try_get_by_index::<i64>(0).unwrap()
}

/// A request answered `TIMEOUT` leaves nothing running: SQLite interrupts its statements and
/// PostgreSQL cancels them after the same timeout, so their connections serve the next request
/// at once, even when the timed-out requests had taken every one of them.
#[tokio::test]
async fn statements_of_a_timed_out_request_stop_and_free_their_connections() {
    // `like` compares about a thousand characters at each position of a 100,000-character
    // text: a fraction of a second per note, seconds per statement over 40 notes.
    let slow = "query($p: String!) { notes(first: 1, filter: {body: {like: $p}}) { nodes { id } } }";
    let pattern = format!("%{}b%", "a".repeat(1_000));
    for backend in backends() {
        let t = TestServer::start(backend).await;
        crm(&t).await;
        let notes: Vec<Value> = (0..10).map(|_| json!({"body": "a".repeat(100_000)})).collect();
        for _ in 0..4 {
            t.data_ok("mutation($d: [NoteInput!]!) { createNotes(data: $d) { id } }", json!({"d": notes})).await;
        }
        let t = t.restart_with(|c| c.request_timeout = std::time::Duration::from_secs(1)).await;
        // Signed in before, so that every request below waits for the database only inside its
        // timeout.
        t.data_ok("{ me { id } }", json!({})).await;
        let connections = t.server.as_ref().unwrap().store.read_connections() as usize;

        // One slow request more than there are connections to read with.
        let slow_requests = (0..=connections).map(|_| t.data(slow, json!({"p": pattern})));
        for r in futures::future::join_all(slow_requests).await {
            assert_eq!(error_codes(&r), ["TIMEOUT"], "[{backend:?}] the statement runs past the timeout: {r}");
        }
        // Had they gone on, this request would wait for a connection past its own timeout.
        let r = t.data("{ notesAggregate { count } }", json!({})).await;
        assert!(r.get("errors").is_none(), "[{backend:?}] a connection is free: {r}");
        assert_eq!(r["data"]["notesAggregate"]["count"], 40);
        if backend == Backend::Postgres {
            // The server cancels them on its own clock: give it a moment, far less than they
            // would have run.
            let mut running = i64::MAX;
            for _ in 0..40 {
                running = running_statements(&t, "LIKE").await;
                if running == 0 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            assert_eq!(running, 0, "no statement of the timed-out requests is still running");
        }
        t.stop().await;
    }
}

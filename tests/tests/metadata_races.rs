//! Writes racing metadata changes. A request prepares its writes (coercion, scripts,
//! encryption) under the metadata snapshot it started with; a change that lands meanwhile must
//! not let it store plaintext in a column that just became encrypted, nor values in the old
//! form in a column just retyped. Many writers run while the change happens; afterwards the raw
//! table holds no plaintext, every value reads back as written, and a write refused for its
//! stale definition answered `CONFLICT` and changed nothing. SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use sea_orm::{ConnectionTrait, Database, Statement};
use serde_json::{Value, json};
use tessera_platform::crypto::envelope_version;
use tessera_tests::{TestServer, backends};

/// Concurrent writers.
const WRITERS: usize = 6;
/// Writes each writer completes before the change, and again after it.
const WRITES_AROUND: usize = 4;
/// Records in the table when the change starts (converted inside the change: under 2,000).
const SEEDED: usize = 400;

/// What one object looks like to the race: its names and how a value of the racing field is
/// written and compared.
struct Racer {
    type_name: &'static str,
    plural: &'static str,
    field: &'static str,
    value: fn(usize, usize) -> Value,
    same: fn(&Value, &Value) -> bool,
}

impl Racer {
    fn create_one(&self) -> String {
        format!("mutation($d: {t}Input!) {{ create{t}(data: $d) {{ id }} }}", t = self.type_name)
    }

    fn create_many(&self) -> String {
        format!("mutation($d: [{t}Input!]!) {{ create{p}(data: $d) {{ id }} }}", t = self.type_name, p = self.plural)
    }

    fn update(&self) -> String {
        format!("mutation($id: ID!, $d: {t}Input!) {{ update{t}(id: $id, data: $d) {{ id }} }}", t = self.type_name)
    }

    fn list(&self) -> String {
        format!(
            "query($a: String) {{ {}(first: 100, after: $a) {{ nodes {{ id {} }} pageInfo {{ hasNextPage endCursor }} }} }}",
            camel(self.plural),
            self.field
        )
    }
}

fn camel(plural: &str) -> String {
    let mut c = plural.chars();
    c.next().map(|f| f.to_lowercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

/// What the writers did: the value each record should hold, and how many writes were refused.
struct Outcome {
    expected: HashMap<String, Value>,
    conflicts: usize,
}

/// One writer's loop: creates one record, updates one of its own, creates two in a batch, and
/// again, until `stop`; every answer is a success or a `CONFLICT` that wrote nothing.
async fn writer(
    t: (reqwest::Client, String, String),
    racer: Arc<Racer>,
    w: usize,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
) -> Outcome {
    let (client, base, token) = t;
    let mut out = Outcome { expected: HashMap::new(), conflicts: 0 };
    let mut own: Vec<String> = Vec::new();
    let mut i = 0;
    while !stop.load(Ordering::Acquire) {
        i += 1;
        let value = (racer.value)(w, i);
        let field = racer.field;
        let (query, variables, targets) = match i % 3 {
            0 if !own.is_empty() => {
                let id = own[i % own.len()].clone();
                (racer.update(), json!({"id": id, "d": {field: value}}), vec![id])
            }
            1 => (racer.create_one(), json!({"d": {field: value}}), vec![]),
            _ => (racer.create_many(), json!({"d": [{field: value}, {field: value}]}), vec![]),
        };
        let r: Value = client
            .post(format!("{base}/graphql"))
            .bearer_auth(&token)
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(errors) = r.get("errors") {
            assert_eq!(errors[0]["extensions"]["code"], "CONFLICT", "writer {w}: {r}");
            assert!(errors[0]["message"].as_str().unwrap().contains("retry"), "{r}");
            out.conflicts += 1;
            continue;
        }
        let data = r["data"].as_object().unwrap().values().next().unwrap().clone();
        let ids: Vec<String> = match data {
            Value::Array(records) => records.iter().map(|r| r["id"].as_str().unwrap().to_string()).collect(),
            record => vec![record["id"].as_str().unwrap().to_string()],
        };
        if targets.is_empty() {
            own.extend(ids.iter().cloned());
        }
        for id in ids {
            out.expected.insert(id, value.clone());
        }
        done.fetch_add(1, Ordering::AcqRel);
    }
    out
}

/// Waits until every writer has completed `n` more writes than `from`.
async fn until_each_wrote(done: &[Arc<AtomicUsize>], from: &[usize], n: usize) {
    for _ in 0..6000 {
        if done.iter().zip(from).all(|(d, f)| d.load(Ordering::Acquire) >= f + n) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!(
        "the writers stopped making progress: {:?}",
        done.iter().map(|d| d.load(Ordering::Acquire)).collect::<Vec<_>>()
    );
}

/// Fills the table with `SEEDED` records; returns their values by id.
async fn seed(t: &TestServer, racer: &Racer) -> HashMap<String, Value> {
    let seeds: Vec<Value> = (0..SEEDED).map(|i| json!({racer.field: (racer.value)(99, i)})).collect();
    let d = t.data_ok(&racer.create_many(), json!({"d": seeds})).await;
    let mut expected: HashMap<String, Value> = HashMap::new();
    for (i, r) in d.as_object().unwrap().values().next().unwrap().as_array().unwrap().iter().enumerate() {
        expected.insert(r["id"].as_str().unwrap().to_string(), (racer.value)(99, i));
    }
    expected
}

/// Starts the writers, applies `change` (a metadata mutation) while they run, lets each write
/// a few more times, stops them, and returns what they wrote (`seeded` included).
async fn race(t: &TestServer, racer: Racer, seeded: HashMap<String, Value>, change: &str) -> Outcome {
    let racer = Arc::new(racer);
    let mut expected = seeded;
    let stop = Arc::new(AtomicBool::new(false));
    let done: Vec<Arc<AtomicUsize>> = (0..WRITERS).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let client = (t.client.clone(), t.base.clone(), t.token.clone());
            tokio::spawn(writer(client, racer.clone(), w, stop.clone(), done[w].clone()))
        })
        .collect();
    until_each_wrote(&done, &[0; WRITERS], WRITES_AROUND).await;
    t.meta_ok(change, json!({})).await;
    let after: Vec<usize> = done.iter().map(|d| d.load(Ordering::Acquire)).collect();
    until_each_wrote(&done, &after, WRITES_AROUND).await;
    stop.store(true, Ordering::Release);
    let mut conflicts = 0;
    for task in tasks {
        let out = task.await.unwrap();
        conflicts += out.conflicts;
        expected.extend(out.expected);
    }
    Outcome { expected, conflicts }
}

/// Every record reads back through the API as the writers last wrote it.
async fn assert_reads_back(
    t: &TestServer,
    racer_list: &str,
    field: &str,
    outcome: &Outcome,
    same: fn(&Value, &Value) -> bool,
) {
    let mut nodes = Vec::new();
    let mut after = Value::Null;
    loop {
        let d = t.data_ok(racer_list, json!({"a": after})).await;
        let page = d.as_object().unwrap().values().next().unwrap().clone();
        nodes.extend(page["nodes"].as_array().unwrap().iter().cloned());
        if page["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(nodes.len(), outcome.expected.len(), "[{:?}] every write that succeeded is there, no other", t.backend);
    let mut wrong = Vec::new();
    for node in &nodes {
        let want = &outcome.expected[node["id"].as_str().unwrap()];
        if !same(&node[field], want) {
            wrong.push(format!("{}: {} instead of {want}", node["id"], node[field]));
        }
    }
    assert!(
        wrong.is_empty(),
        "[{:?}] {} of {} records read back wrong, e.g. {:?}",
        t.backend,
        wrong.len(),
        nodes.len(),
        &wrong[..wrong.len().min(3)]
    );
}

async fn raw_column(t: &TestServer, table: &str, column: &str) -> Vec<String> {
    let db = Database::connect(&t.database_url).await.unwrap();
    let sql = format!("SELECT {column} FROM {table} WHERE {column} IS NOT NULL");
    let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap();
    db.close().await.ok();
    rows.iter().map(|r| r.try_get_by_index::<String>(0).unwrap()).collect()
}

/// The stored values of a column that are not envelopes: plaintext.
async fn plaintext_in(t: &TestServer, table: &str, column: &str) -> Vec<String> {
    raw_column(t, table, column).await.into_iter().filter(|v| envelope_version(v).is_none()).collect()
}

fn secret(w: usize, i: usize) -> Value {
    json!(format!("secret-{w}-{i}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_racing_a_field_becoming_encrypted_store_no_plaintext() {
    for backend in backends() {
        let t = TestServer::start(backend).await;
        t.object("lead", "leads", vec![json!({"name": "note", "label": "Note", "type": "TEXT"})]).await;
        let racer = Racer { type_name: "Lead", plural: "Leads", field: "note", value: secret, same: |a, b| a == b };
        let (list, same) = (racer.list(), racer.same);
        let seeded = seed(&t, &racer).await;
        // Positive control of the scan: it sees the plaintext stored before the change.
        assert_eq!(plaintext_in(&t, "obj_lead", "note").await.len(), SEEDED);
        let outcome = race(
            &t,
            racer,
            seeded,
            "mutation { updateField(object: \"lead\", field: \"note\", input: {sensitive: {encrypted: true}}) { name } }",
        )
        .await;
        assert!(outcome.conflicts > 0, "[{backend:?}] some writes were prepared under the old definition");
        let plaintext = plaintext_in(&t, "obj_lead", "note").await;
        assert!(
            plaintext.is_empty(),
            "[{backend:?}] {} plaintext values at rest, e.g. {:?}",
            plaintext.len(),
            plaintext.first()
        );
        assert_reads_back(&t, &list, "note", &outcome, same).await;
        t.stop().await;
    }
}

/// Decimals compared by value (`12.3` and `12.3000` are equal).
fn same_decimal(a: &Value, b: &Value) -> bool {
    let norm = |v: &Value| {
        let s = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
        if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
    };
    norm(a) == norm(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_racing_a_retype_store_values_in_the_new_form() {
    for backend in backends() {
        let t = TestServer::start(backend).await;
        t.object("deal", "deals", vec![json!({"name": "amount", "label": "Amount", "type": "DECIMAL", "scale": 2})])
            .await;
        let racer = Racer {
            type_name: "Deal",
            plural: "Deals",
            field: "amount",
            value: |w, i| json!(format!("{}.{:02}", w * 10_000 + i, (i * 7) % 100)),
            same: same_decimal,
        };
        let (list, same) = (racer.list(), racer.same);
        let seeded = seed(&t, &racer).await;
        // Scale 2 → 4: the stored integers are multiplied by 100 inside the change; one written
        // by a request still holding scale 2 would read back a hundred times too small.
        let outcome = race(
            &t,
            racer,
            seeded,
            "mutation { updateField(object: \"deal\", field: \"amount\", input: {type: DECIMAL, scale: 4}) { name } }",
        )
        .await;
        assert!(outcome.conflicts > 0, "[{backend:?}] some writes were prepared under the old definition");
        assert_reads_back(&t, &list, "amount", &outcome, same).await;
        t.stop().await;
    }
}

async fn raw_execute(t: &TestServer, sql: &str) {
    let db = Database::connect(&t.database_url).await.unwrap();
    db.execute_unprepared(sql).await.unwrap();
    db.close().await.ok();
}

/// The state of the newest field conversion job, once it is no longer pending or running.
async fn conversion_finished(t: &TestServer) -> Option<Value> {
    for _ in 0..200 {
        let jobs = t.meta_ok("{ keyJobs(all: true) { kind state } }", json!({})).await;
        let job = jobs["keyJobs"].as_array().unwrap().iter().rev().find(|j| j["kind"] == "convert_field").cloned();
        match job {
            Some(j) if j["state"] == "done" || j["state"] == "failed" => return Some(j),
            Some(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            None => return None,
        }
    }
    panic!("the field conversion did not finish");
}

#[tokio::test]
async fn a_conversion_inside_the_change_sweeps_values_stored_the_old_way_later() {
    for backend in backends() {
        let t = TestServer::start(backend).await;
        t.object("lead", "leads", vec![json!({"name": "note", "label": "Note", "type": "TEXT"})]).await;
        let d = t.data_ok("mutation { createLeads(data: [{note: \"a\"}, {note: \"b\"}]) { id } }", json!({})).await;
        let id = d["createLeads"][0]["id"].as_str().unwrap().to_string();
        t.meta_ok(
            "mutation { updateField(object: \"lead\", field: \"note\", input: {sensitive: {encrypted: true}}) { name } }",
            json!({}),
        )
        .await;
        assert!(plaintext_in(&t, "obj_lead", "note").await.is_empty());
        // What a node still running a version without the write fence could store meanwhile.
        raw_execute(&t, &format!("UPDATE obj_lead SET note = 'secret-straggler' WHERE id = '{id}'")).await;
        assert_eq!(plaintext_in(&t, "obj_lead", "note").await, ["secret-straggler"], "[{backend:?}] positive control");
        let job = conversion_finished(&t).await;
        assert_eq!(job.map(|j| j["state"].clone()), Some(json!("done")), "[{backend:?}] a sweep followed the change");
        assert!(plaintext_in(&t, "obj_lead", "note").await.is_empty(), "[{backend:?}] the sweep encrypted it");
        let d = t.data_ok("query($id: ID!) { lead(id: $id) { note } }", json!({"id": id})).await;
        assert_eq!(d["lead"]["note"], "secret-straggler");
        t.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotation_follows_a_field_that_stops_being_encrypted_while_it_runs() {
    use tessera_platform::crypto::keys::{self, KeySource};
    use tessera_platform::store::{RekeyOptions, RotationOutcome, Store};
    for backend in backends() {
        let t = TestServer::start(backend).await;
        let encrypted =
            |name: &str| json!({"name": name, "label": name, "type": "TEXT", "sensitive": {"encrypted": true}});
        t.object("lead", "leads", vec![encrypted("note"), encrypted("code")]).await;
        let leads: Vec<Value> =
            (0..20).map(|i| json!({"note": format!("note-{i}"), "code": format!("code-{i}")})).collect();
        t.data_ok("mutation($d: [LeadInput!]!) { createLeads(data: $d) { id } }", json!({"d": leads})).await;
        // `tessera keys rotate`, as a process of its own would run it.
        let store = Store::connect(&t.database_url).await.unwrap();
        keys::open_existing(&store, &KeySource::new(t.key_file(), None)).await.unwrap();
        let rotation =
            tokio::spawn(
                async move { store.rotate_keys(RekeyOptions { batch_size: 5, max_batches: None }, |_| {}).await },
            );
        // The job reads the definitions as it starts, then waits a few seconds for every node
        // to load the new key: the field stops being encrypted in between.
        for _ in 0..500 {
            let jobs = t.meta_ok("{ keyJobs { kind state } }", json!({})).await;
            if jobs["keyJobs"].as_array().unwrap().iter().any(|j| j["kind"] == "rotate" && j["state"] == "running") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        t.meta_ok(
            "mutation { updateField(object: \"lead\", field: \"note\", input: {sensitive: null}) { name } }",
            json!({}),
        )
        .await;
        let outcome = rotation.await.unwrap();
        assert!(matches!(outcome, Ok(RotationOutcome::Done { version: 2, .. })), "[{backend:?}] {outcome:?}");
        let codes = raw_column(&t, "obj_lead", "code").await;
        assert!(codes.iter().all(|c| envelope_version(c) == Some(2)), "[{backend:?}] {codes:?}");
        assert!(plaintext_in(&t, "obj_lead", "note").await.len() == 20, "[{backend:?}] the notes stay decrypted");
        let d = t.data_ok("{ leads(first: 100) { nodes { note code } } }", json!({})).await;
        for (i, lead) in d["leads"]["nodes"].as_array().unwrap().iter().enumerate() {
            assert_eq!(lead, &json!({"note": format!("note-{i}"), "code": format!("code-{i}")}));
        }
        t.stop().await;
    }
}

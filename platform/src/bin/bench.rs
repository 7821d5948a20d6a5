//! Tessera benchmark: starts the server in a child process (this binary again) on one database, loads 1,000 accounts and
//! 100,000 contacts (10 fields: a lookup to account, an unindexed text `city` and a text `region`
//! with 50 values each, the admin-declared index `(region, last_name)`, …) through the public APIs, then prints a markdown table of what
//! this ONE run measured, with targets and PASS/MISS:
//! - (a) `contacts(filter: {city: {eq}}, orderBy: [{lastName: AscNullsLast}], first: 50)` selecting
//!   `account { name }`: p50/p95 latency and req/s, beside the same page as hand-written SQL through
//!   the same driver (`Store::raw_query_count`; two statements, page then accounts by id, as the
//!   API issues them) and the API/raw throughput ratio, the two sides in `READ_ROUNDS`
//!   alternating rounds; plus the same query on `region`, answered from the
//!   declared index `(region, last_name)`;
//! - (b) get-by-id req/s; (c) `contactsGroupBy(groupBy: [city])` req/s;
//! - (d) bulk insert rows/s during the load (`createContacts` batches of 1,000, one per request:
//!   the bench's server runs with `max_batch` 1,000, where the API's default cap is 500; the
//!   request bodies are built before the clock starts);
//! - (e) time from `createField` until a query selecting the new field succeeds;
//! - (f) VmRSS of the server process after the load, once it has been idle for `RSS_SETTLE`
//!   (it hands freed memory back when idle, and empties SQLite's page caches once it has had
//!   no request for half a second), split into allocated (`RssAnon`, which includes SQLite's
//!   page caches) and mapped file pages (`RssFile`: the binary and libraries,
//!   and the database file if a connection maps it with `mmap_size`).
//! - (g) the list query of (a) over `lead`s (contact-shaped, as many as contacts, owned
//!   round-robin by a hierarchy of `--users` (1,000) users: a 20-level chain with a 3-ary tree
//!   below it), as a user whose role reads them with scope `TEAM` at the top of the hierarchy,
//!   beside the admin's throughput in alternating rounds, and as a manager in the middle.
//!
//! `--sensitive-only` prints figure (h) instead (encrypted fields against plain ones: on
//! ten-field contacts as the issue sets it, then on four-field persons as a worst case), and
//! `--scripts-only` figure (i): inserts into an object with Rhai `VALIDATE` rules and a
//! `FORMULA` field against the same fields without scripts (see `script_figures`).
//!
//! Throughput: `--concurrency` (16) tokio tasks share one `reqwest::Client` for `--seconds` (5)
//! and count completed requests; filter values go round-robin over the 50 values.
//!
//! ```text
//! cargo run --release -p tessera-platform --bin bench                       # fresh SQLite file
//! cargo run --release -p tessera-platform --bin bench -- --contacts 2000 --seconds 1   # smoke run
//! createdb -h 127.0.0.1 -U postgres tessera_bench    # PostgreSQL: create an empty database first
//! cargo run --release -p tessera-platform --bin bench -- \
//!     --database-url postgres://postgres@127.0.0.1:5432/tessera_bench
//! cargo run --release -p tessera-platform --bin bench -- --scripts-only   # figure (i) alone
//! ```
//! The targets were set for SQLite.

// The same allocator as the `tessera` binary (the server runs in this binary), so the figures
// describe the real server.
#[global_allocator]
static GLOBAL: tessera_alloc::MiMalloc = tessera_alloc::MiMalloc;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use serde_json::{Value as Json, json};
use tessera_platform::graphql::data_schema::DEFAULT_MAX_BATCH;
use tessera_platform::server::{Config, start};
use tessera_platform::store::Store;

type BoxResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[derive(Parser, Debug)]
#[command(name = "bench", about = "Measures Tessera's API latency, throughput, load speed and memory in one run")]
struct Args {
    /// Database to use; default: a fresh SQLite file in a temporary directory. A PostgreSQL
    /// database must already exist and be empty.
    #[arg(long, env = "TESSERA_BENCH_DATABASE_URL")]
    database_url: Option<String>,
    #[arg(long, default_value_t = 100_000)]
    contacts: usize,
    #[arg(long, default_value_t = 1_000)]
    accounts: usize,
    /// Duration of each throughput measurement, in seconds.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Concurrent request loops per throughput measurement.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Load requests in flight during the bulk insert.
    #[arg(long, default_value_t = 2)]
    load_concurrency: usize,
    /// Users in the manager hierarchy that owns the contacts (for the TEAM-scope figure).
    #[arg(long, default_value_t = 1_000)]
    users: usize,
    /// Only figure (h): encrypted fields against the same fields in plain text.
    #[arg(long)]
    sensitive_only: bool,
    /// Only figure (i): Rhai validation rules and a formula against the same fields without.
    #[arg(long)]
    scripts_only: bool,
    /// Records per pass of figure (i), loaded into each of its two objects.
    #[arg(long, default_value_t = 10_000)]
    records: usize,
}

#[rustfmt::skip]
const CITIES: [&str; 50] = [
    "Shanghai", "Beijing", "Shenzhen", "Guangzhou", "Chengdu", "Hangzhou", "Wuhan", "Xian", "Nanjing", "Tianjin",
    "Suzhou", "Chongqing", "Qingdao", "Dalian", "Xiamen", "Ningbo", "Kunming", "Harbin", "Jinan", "Fuzhou",
    "Changsha", "Zhengzhou", "Hefei", "Shenyang", "Nanning", "Guiyang", "Lanzhou", "Urumqi", "Lhasa", "Haikou",
    "Tokyo", "Osaka", "Seoul", "Singapore", "Bangkok", "Jakarta", "Manila", "Hanoi", "Sydney", "Melbourne", "London",
    "Paris", "Berlin", "Madrid", "Rome", "Amsterdam", "New York", "Chicago", "Toronto", "Sao Paulo",
];
const FIRST_NAMES: [&str; 12] =
    ["Wei", "Li", "Ming", "Fang", "Jing", "Lei", "Anna", "John", "Maria", "Yan", "Tao", "Mei"];
const LAST_NAMES: [&str; 12] =
    ["Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou", "Smith", "Garcia"];
const STATUSES: [&str; 3] = ["LEAD", "CUSTOMER", "CHURNED"];

const LIST_BY_CITY: &str = "query($v: String!) { contacts(filter: {city: {eq: $v}}, \
    orderBy: [{lastName: AscNullsLast}], first: 50) { nodes { id firstName lastName account { name } } } }";
const LIST_BY_REGION: &str = "query($v: String!) { contacts(filter: {region: {eq: $v}}, \
    orderBy: [{lastName: AscNullsLast}], first: 50) { nodes { id firstName lastName account { name } } } }";
const PAGE_ACCOUNTS: &str = "query($v: String!) { contacts(filter: {city: {eq: $v}}, \
    orderBy: [{lastName: AscNullsLast}], first: 50) { nodes { accountId } } }";
const LEADS_BY_CITY: &str = "query($v: String!) { leads(filter: {city: {eq: $v}}, \
    orderBy: [{lastName: AscNullsLast}], first: 50) { nodes { id firstName lastName account { name } } } }";
const GET_BY_ID: &str = "query($id: ID!) { contact(id: $id) { id firstName lastName } }";
const GROUP_BY_CITY: &str = "{ contactsGroupBy(groupBy: [city]) { city count } }";

/// Deterministic xorshift64 generator: the same data set on every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

fn region(i: usize) -> String {
    format!("Region {:02}", i % 50)
}

/// An authenticated client of the server under test.
#[derive(Clone)]
struct Api {
    client: reqwest::Client,
    base: String,
    token: Arc<str>,
}

impl Api {
    async fn login(base: String, email: &str, password: &str) -> BoxResult<Api> {
        let client = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
        let resp = client.post(format!("{base}/auth/login")).json(&json!({"email": email, "password": password}));
        let body: Json = resp.send().await?.error_for_status()?.json().await?;
        let token = body["token"].as_str().ok_or("login answered without a token")?;
        Ok(Api { client, base, token: token.into() })
    }

    /// Posts a GraphQL request and returns the HTTP status and the whole answer, errors included.
    async fn response(&self, path: &str, query: &str, variables: Json) -> BoxResult<(reqwest::StatusCode, Json)> {
        self.response_to(path, serde_json::to_vec(&json!({"query": query, "variables": variables}))?).await
    }

    /// `response` for a request body serialised beforehand.
    async fn response_to(&self, path: &str, body: Vec<u8>) -> BoxResult<(reqwest::StatusCode, Json)> {
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await?;
        let status = resp.status();
        Ok((status, resp.json().await?))
    }

    /// Posts a GraphQL request; any `errors` entry is a failure.
    async fn post(&self, path: &str, query: &str, variables: Json) -> BoxResult<Json> {
        let (status, body) = self.response(path, query, variables).await?;
        Self::data_of(status, body)
    }

    /// `post` for a request body serialised beforehand.
    async fn post_body(&self, path: &str, body: Vec<u8>) -> BoxResult<Json> {
        let (status, body) = self.response_to(path, body).await?;
        Self::data_of(status, body)
    }

    /// The `data` of an answer; GraphQL errors or an HTTP failure are an error.
    fn data_of(status: reqwest::StatusCode, mut body: Json) -> BoxResult<Json> {
        match body.get("errors") {
            Some(Json::Array(errors)) if !errors.is_empty() => {
                Err(format!("GraphQL errors: {}", Json::Array(errors.clone())).into())
            }
            _ if !status.is_success() => Err(format!("HTTP {status}: {body}").into()),
            _ => Ok(body["data"].take()),
        }
    }
    async fn data(&self, query: &str, variables: Json) -> BoxResult<Json> {
        self.post("/graphql", query, variables).await
    }
    async fn meta(&self, query: &str) -> BoxResult<Json> {
        self.post("/graphql/metadata", query, json!({})).await
    }
}

/// Result of one fixed-duration throughput run.
struct Stats {
    errors: usize,
    first_error: Option<String>,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Stats {
    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }
    fn percentile_ms(&self, q: f64) -> f64 {
        let i = ((self.latencies.len().saturating_sub(1)) as f64 * q).round() as usize;
        self.latencies.get(i).map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    }
    /// The rounds of one measurement as one: their requests over their summed time.
    fn merged(rounds: Vec<Stats>) -> Stats {
        let mut all = Stats { errors: 0, first_error: None, elapsed: Duration::ZERO, latencies: Vec::new() };
        for round in rounds {
            all.errors += round.errors;
            all.first_error = all.first_error.or(round.first_error);
            all.elapsed += round.elapsed;
            all.latencies.extend(round.latencies);
        }
        all.latencies.sort_unstable();
        all
    }

    fn summary(&self) -> String {
        let (p50, p95) = (self.percentile_ms(0.5), self.percentile_ms(0.95));
        format!("{:.0} req/s (p50 {p50:.2} ms, p95 {p95:.2} ms)", self.rate())
    }
}

/// Runs `concurrency` loops of `request(n)` for `seconds`; `n` counts requests across loops, so
/// callers use it to go round-robin over their filter values.
async fn run_load<F, Fut>(seconds: f64, concurrency: usize, request: F) -> Stats
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = BoxResult<()>> + Send + 'static,
{
    let request = Arc::new(request);
    let counter = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (request, counter) = (request.clone(), counter.clone());
            tokio::spawn(async move {
                let (mut latencies, mut errors, mut first_error) = (Vec::new(), 0usize, None);
                while Instant::now() < deadline {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let t = Instant::now();
                    match request(n).await {
                        Ok(()) => latencies.push(t.elapsed()),
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert_with(|| e.to_string());
                        }
                    }
                }
                (latencies, errors, first_error)
            })
        })
        .collect();
    let mut stats = Stats { errors: 0, first_error: None, elapsed: Duration::ZERO, latencies: Vec::new() };
    for joined in futures::future::join_all(tasks).await {
        match joined {
            Ok((latencies, errors, first_error)) => {
                stats.latencies.extend(latencies);
                stats.errors += errors;
                stats.first_error = stats.first_error.take().or(first_error);
            }
            Err(e) => {
                stats.errors += 1;
                stats.first_error.get_or_insert_with(|| format!("task failed: {e}"));
            }
        }
    }
    stats.elapsed = start.elapsed();
    stats.latencies.sort_unstable();
    stats
}

/// Throughput of one data-API query whose variables follow the request number; an answer whose
/// top-level field is null (e.g. a record not found) counts as a failure.
async fn gql_load<V>(api: &Api, secs: f64, conc: usize, query: &'static str, vars: V) -> Stats
where
    V: Fn(usize) -> Json + Send + Sync + 'static,
{
    let api = api.clone();
    run_load(secs, conc, move |n| {
        let (api, vars) = (api.clone(), vars(n));
        async move {
            let data = api.data(query, vars).await?;
            match data.as_object().and_then(|o| o.values().next()) {
                Some(v) if !v.is_null() => Ok(()),
                _ => Err(format!("empty answer: {data}").into()),
            }
        }
    })
    .await
}

/// Creates `account`, `contact` and `lead` (the same fields as `contact`, for the TEAM figure)
/// with their fields through the metadata API.
async fn create_schema(api: &Api) -> BoxResult<()> {
    for (name, plural) in [("account", "accounts"), ("contact", "contacts"), ("lead", "leads")] {
        let label = format!("{}{}", name[..1].to_uppercase(), &name[1..]);
        api.meta(&format!(
            r#"mutation {{ createObject(input: {{name: "{name}", pluralName: "{plural}", label: "{label}",
               pluralLabel: "{label}s"}}) {{ name }} }}"#
        ))
        .await?;
    }
    let fields = [
        ("account", "name", "TEXT"),
        ("account", "industry", "TEXT"),
        ("contact", "first_name", "TEXT"),
        ("contact", "last_name", "TEXT"),
        ("contact", "email", "EMAIL, indexed: true"),
        ("contact", "phone", "PHONE"),
        ("contact", "city", "TEXT"),
        ("contact", "region", "TEXT"),
        ("contact", "account", r#"LOOKUP, target: "account""#),
        ("contact", "score", "INTEGER"),
        ("contact", "lifetime_value", "CURRENCY"),
        (
            "contact",
            "status",
            r#"PICKLIST, options: [{value: "lead", label: "Lead"},
            {value: "customer", label: "Customer"}, {value: "churned", label: "Churned"}]"#,
        ),
    ];
    let leads =
        fields.iter().filter(|f| f.0 == "contact").map(|(_, name, ty)| ("lead", *name, *ty)).collect::<Vec<_>>();
    for (object, name, ty) in fields.into_iter().chain(leads) {
        api.meta(&format!(
            r#"mutation {{ createField(object: "{object}", input: {{name: "{name}", label: "{name}", type: {ty}}}) {{ name }} }}"#
        ))
        .await?;
    }
    // What an admin declares for "contacts of a region by last name": the filter's field, then
    // the sort's (the API ends it with the id, the last key of every sort).
    for object in ["contact", "lead"] {
        api.meta(&format!(
            r#"mutation {{ createIndex(object: "{object}", input: {{name: "region_last_name", fields: ["region", "last_name"]}}) {{ name }} }}"#
        ))
        .await?;
    }
    Ok(())
}

/// Sends `rows` as one request of up to two aliased batch mutations of 500 (the API's default
/// batch cap); returns the new ids.
async fn create_batch(api: &Api, plural: &str, input: &str, rows: Vec<Json>) -> BoxResult<Vec<String>> {
    send_batch(api, batch_body(plural, input, rows, usize::from(DEFAULT_MAX_BATCH))?).await
}

/// How long the server is left idle after the load before (f) reads its resident memory: twice
/// the quiet spell after which it empties SQLite's page caches (`http::SETTLED`).
const RSS_SETTLE: Duration = tessera_platform::http::SETTLED.saturating_mul(2);

/// The batch cap the bench's server runs with, so that figure (d) loads through `createContacts`
/// batches of 1,000 as the issue sets it (the default cap, 500, would refuse them).
const BENCH_MAX_BATCH: usize = 1_000;

/// The request body of `create_batch`, serialised, so a load can build every body before its
/// clock starts and time only what the server does (the client shares the machine's two cores):
/// one mutation of `per_mutation` rows at most, and a second, aliased, for the rest.
fn batch_body(plural: &str, input: &str, mut rows: Vec<Json>, per_mutation: usize) -> BoxResult<Vec<u8>> {
    let b = rows.split_off(rows.len().min(per_mutation));
    let (query, vars) = if b.is_empty() {
        (format!("mutation($a: [{input}!]!) {{ a: create{plural}(data: $a) {{ id }} }}"), json!({"a": rows}))
    } else {
        let q = format!(
            "mutation($a: [{input}!]!, $b: [{input}!]!) {{ a: create{plural}(data: $a) {{ id }} b: create{plural}(data: $b) {{ id }} }}"
        );
        (q, json!({"a": rows, "b": b}))
    };
    Ok(serde_json::to_vec(&json!({"query": query, "variables": vars}))?)
}

/// Posts a body made by `batch_body`; returns the new ids.
async fn send_batch(api: &Api, body: Vec<u8>) -> BoxResult<Vec<String>> {
    let data = api.post_body("/graphql", body).await?;
    let mut ids = Vec::new();
    for record in ["a", "b"].into_iter().filter_map(|k| data[k].as_array()).flatten() {
        ids.push(record["id"].as_str().ok_or("created record without id")?.to_string());
    }
    Ok(ids)
}

/// The phone number of bench record `i`: distinct for every `i` below 10^8 and in no
/// particular order, as real numbers arrive. Sequential numbers would flatter a plain index,
/// whose inserts would then all land at its right edge; so would numbers in any arithmetic
/// progression (`a·i + c mod 10^8`), whose thousand values of a batch go into the index in
/// ascending order and share half as many leaves as random ones, while a blind index scatters
/// them over every leaf.
fn phone_number(i: usize) -> String {
    format!("138{:08}", shuffled(i as u32 % PHONES))
}

/// Distinct 8-digit phone suffixes.
const PHONES: u32 = 100_000_000;

/// A fixed permutation of `0..PHONES`: a four-round Feistel network over 28 bits, walked until
/// it lands below `PHONES` (each step is a permutation of 28-bit values, so the walk from a
/// value below `PHONES` ends at a distinct one).
fn shuffled(i: u32) -> u32 {
    const HALF: u32 = 14;
    const MASK: u32 = (1 << HALF) - 1;
    let round = |r: u32, k: u32| (r ^ k).wrapping_mul(0x9E37_79B1).rotate_right(13) & MASK;
    let mut x = i;
    loop {
        let (mut l, mut r) = (x >> HALF, x & MASK);
        for k in [0x2C1B_3C6D, 0x297A_2D39, 0x85EB_CA6B, 0xC2B2_AE35] {
            (l, r) = (r, l ^ round(r, k));
        }
        x = (l << HALF) | r;
        if x < PHONES {
            return x;
        }
    }
}

/// The records of figure (h): contacts as the issue describes them (ten fields, two of them
/// sensitive), or a minimal person of four fields, where the two sensitive values are most of
/// each row and encryption's share of the cost is largest.
#[derive(Clone, Copy, PartialEq)]
enum SensitiveShape {
    Contact,
    Person,
}

impl SensitiveShape {
    /// `(object, plural, type name)` of the plain object, then of the encrypted one.
    fn objects(self) -> [(&'static str, &'static str, &'static str); 2] {
        match self {
            SensitiveShape::Contact => [
                ("plain_contact", "plain_contacts", "PlainContact"),
                ("secure_contact", "secure_contacts", "SecureContact"),
            ],
            SensitiveShape::Person => {
                [("plain_person", "plain_persons", "PlainPerson"), ("secure_person", "secure_persons", "SecurePerson")]
            }
        }
    }

    /// Fields besides `city` (indexed in both), `phone` and `id_number`.
    fn other_fields(self) -> Vec<(&'static str, &'static str)> {
        match self {
            SensitiveShape::Contact => vec![
                ("first_name", "TEXT"),
                ("last_name", "TEXT"),
                ("email", "EMAIL"),
                ("region", "TEXT"),
                ("score", "INTEGER"),
                ("lifetime_value", "CURRENCY"),
                (
                    "status",
                    r#"PICKLIST, options: [{value: "lead", label: "Lead"},
                    {value: "customer", label: "Customer"}, {value: "churned", label: "Churned"}]"#,
                ),
            ],
            SensitiveShape::Person => vec![("name", "TEXT")],
        }
    }

    fn row(self, i: usize) -> Json {
        let (first, last) = (FIRST_NAMES[i % 12], LAST_NAMES[(i / 12) % 12]);
        let mut row = json!({"city": CITIES[i % CITIES.len()], "phone": phone_number(i),
            "idNumber": format!("110101{:08}{:04}", 19_700_101 + i % 9_000, i % 10_000)});
        match self {
            SensitiveShape::Contact => {
                row["firstName"] = json!(first);
                row["lastName"] = json!(last);
                row["email"] = json!(format!("{}.{}.{i}@example.com", first.to_lowercase(), last.to_lowercase()));
                row["region"] = json!(region(i));
                row["score"] = json!(i % 100);
                row["lifetimeValue"] = json!(format!("{}.{:02}", i * 7 % 100_000, i % 100));
                row["status"] = json!(STATUSES[i % STATUSES.len()]);
            }
            SensitiveShape::Person => row["name"] = json!(format!("{first} {last}")),
        }
        row
    }

    /// What a list page selects: the record's name and both sensitive fields.
    fn selection(self) -> &'static str {
        match self {
            SensitiveShape::Contact => "id firstName lastName email phone idNumber",
            SensitiveShape::Person => "id name phone idNumber",
        }
    }
}

/// Figure (h) for the issue's contacts, then for the minimal person (see `sensitive_pair`).
async fn sensitive_figures(api: &Api, args: &Args, server_pid: u32) -> BoxResult<()> {
    sensitive_pair(api, args, SensitiveShape::Contact, server_pid).await?;
    sensitive_pair(api, args, SensitiveShape::Person, server_pid).await?;
    let (encrypt, decrypt, index) = crypto_costs();
    println!("    per value: encrypt {encrypt:.2} µs, decrypt {decrypt:.2} µs, blind index {index:.2} µs");
    Ok(())
}

/// One pair of figure (h): two objects with the same fields and data, one with its phone
/// encrypted and searchable and its ID number encrypted, the other with both in plain text (the
/// phone indexed). Loads both in alternating blocks of `LOAD_BLOCK` rows, then compares, in
/// `READ_ROUNDS` alternating rounds, a list read that returns both fields (decrypted for the
/// admin, and logged) and an `eq` lookup on the phone (blind index against the plain index).
/// Each pair of blocks and of rounds runs in `counterbalanced` order, and the server's CPU time
/// per row or request (and on SQLite the bytes it writes per row loaded) is reported beside the
/// throughput.
async fn sensitive_pair(api: &Api, args: &Args, shape: SensitiveShape, server_pid: u32) -> BoxResult<()> {
    let objects = shape.objects();
    for (name, plural, _) in objects {
        api.meta(&format!(
            r#"mutation {{ createObject(input: {{name: "{name}", pluralName: "{plural}", label: "{name}", pluralLabel: "{plural}"}}) {{ name }} }}"#
        ))
        .await?;
        let secure = name.starts_with("secure");
        let (phone, id_number) = if secure {
            (
                "PHONE, sensitive: {encrypted: true, searchable: true}",
                "TEXT, sensitive: {encrypted: true, mask: ID_NUMBER}",
            )
        } else {
            ("PHONE, indexed: true", "TEXT")
        };
        let fields = shape.other_fields().into_iter().chain([
            ("city", "TEXT, indexed: true"),
            ("phone", phone),
            ("id_number", id_number),
        ]);
        for (field, ty) in fields {
            api.meta(&format!(
                r#"mutation {{ createField(object: "{name}", input: {{name: "{field}", label: "{field}", type: {ty}}}) {{ name }} }}"#
            ))
            .await?;
        }
    }
    let n = args.contacts;
    let what = if shape == SensitiveShape::Contact { "contacts (ten fields)" } else { "persons (four fields)" };
    eprintln!("(h) loading {n} {what} into each of two objects, alternating blocks of {LOAD_BLOCK}…");
    let mut spent = [Duration::ZERO, Duration::ZERO];
    // The server's CPU seconds per side, beside the wall time: on a shared machine the CPU a
    // round gets varies, and this shows what each request really costs.
    let mut cpu = [[Cpu::default(); 2]; 4];
    let on_postgres = args.database_url.as_deref().is_some_and(|u| u.starts_with("postgres"));
    let cpu_now = || Cpu::now(server_pid, on_postgres);
    // Bytes the server writes per side (on SQLite, where it writes the log and the database
    // file itself): equal rows cost about equal writes, so a gap here is the data's, not the
    // encryption's.
    let mut written = [0.0f64; 2];
    // Each batch's time, per side: their medians leave out the batches a checkpoint landed on.
    let mut batches: [Vec<Duration>; 2] = Default::default();
    for (b, block) in (0..n).step_by(LOAD_BLOCK).enumerate() {
        // Every body of the block, for both sides, built before either side's clock starts.
        let mut bodies: Vec<[Vec<u8>; 2]> = (block..(block + LOAD_BLOCK).min(n))
            .step_by(1_000)
            .map(|start| {
                let rows: Vec<Json> = (start..(start + 1_000).min(n)).map(|i| shape.row(i)).collect();
                let body = |k: usize| {
                    let tn = objects[k].2;
                    batch_body(&format!("{tn}s"), &format!("{tn}Input"), rows.clone(), usize::from(DEFAULT_MAX_BATCH))
                };
                Ok([body(0)?, body(1)?])
            })
            .collect::<BoxResult<_>>()?;
        for k in counterbalanced(b) {
            let (t, c, w) = (Instant::now(), cpu_now(), proc_io(server_pid));
            for pair in bodies.iter_mut() {
                let body = std::mem::take(&mut pair[k]);
                let sent = Instant::now();
                send_batch(api, body).await?;
                batches[k].push(sent.elapsed());
            }
            spent[k] += t.elapsed();
            cpu[0][k] += cpu_now() - c;
            if let (Some([before, _]), Some([after, _])) = (w, proc_io(server_pid)) {
                written[k] += after - before;
            }
        }
    }
    let insert = [n as f64 / spent[0].as_secs_f64(), n as f64 / spent[1].as_secs_f64()];
    let (secs, conc) = (args.seconds / 2.0, args.concurrency);
    let [plain, secure] = objects.map(|(_, plural, _)| tessera_metadata::camel_case(plural));
    let sel = shape.selection();
    let list = |p: &str| {
        format!("query($v: String!) {{ {p}(filter: {{city: {{eq: $v}}}}, first: 50) {{ nodes {{ {sel} }} }} }}")
    };
    let eq = |p: &str| format!("query($v: String!) {{ {p}(filter: {{phone: {{eq: $v}}}}) {{ nodes {{ id }} }} }}");
    let page = |p: &str| format!("{{ {p}(first: 50) {{ nodes {{ {sel} }} }} }}");
    // The load loops need `'static` queries: six short strings per run, kept to the end.
    let leak = |q: String| -> &'static str { Box::leak(q.into_boxed_str()) };
    let queries = [
        [leak(list(&plain)), leak(list(&secure))],
        [leak(page(&plain)), leak(page(&secure))],
        [leak(eq(&plain)), leak(eq(&secure))],
    ];
    let city = |i: usize| json!({"v": CITIES[i % CITIES.len()]});
    // The same text for both: the plain index compares it as written, the blind index after
    // normalising it.
    let phone = move |i: usize| json!({"v": phone_number((i * 7919) % n)});
    let mut rates: [[Vec<Stats>; 2]; 3] = Default::default();
    eprintln!("(h) measuring ({secs} s per round, {READ_ROUNDS} alternating rounds each, concurrency {conc})…");
    for round in 0..READ_ROUNDS {
        for (q, pair) in queries.iter().enumerate() {
            for k in counterbalanced(round) {
                let query = pair[k];
                let c = cpu_now();
                let stats = match q {
                    0 => gql_load(api, secs, conc, query, city).await,
                    1 => gql_load(api, secs, conc, query, |_| json!({})).await,
                    _ => gql_load(api, secs, conc, query, phone).await,
                };
                cpu[q + 1][k] += cpu_now() - c;
                rates[q][k].push(stats);
            }
        }
    }
    let rate = |runs: &[Stats]| runs.iter().map(Stats::rate).sum::<f64>() / runs.len() as f64;
    let all = || rates.iter().flatten().flatten();
    let errors: usize = all().map(|s| s.errors).sum();
    if let Some(e) = all().find_map(|s| s.first_error.clone()) {
        eprintln!("(h) first error: {e}");
    }
    let pass = |ok: bool| if ok { "PASS" } else { "MISS" };
    let insert_ratio = insert[1] / insert[0];
    let [(lp, ls), (pp, ps), (ep, es)] = rates.each_ref().map(|[p, s]| (rate(p), rate(s)));
    println!(
        "(h) {n} {what}: phone encrypted + searchable and ID number encrypted, against both in plain text (phone indexed)"
    );
    println!(
        "    insert: plain {:.0} rows/s, encrypted {:.0} rows/s → {:.0}% (target ≥ 85%: {})",
        insert[0],
        insert[1],
        insert_ratio * 100.0,
        pass(insert_ratio >= 0.85)
    );
    // The median batch leaves out those a checkpoint landed on (see `LOAD_BLOCK`): what the
    // rows themselves cost, beside the totals above.
    let [median_plain, median_secure] = batches.map(|mut times| {
        times.sort_unstable();
        times.get(times.len() / 2).copied().unwrap_or_default().as_secs_f64() * 1e3
    });
    println!(
        "    insert, median batch of 1,000: plain {median_plain:.1} ms, encrypted {median_secure:.1} ms → {:.0}%",
        median_plain / median_secure * 100.0
    );
    println!(
        "    first page of 50 with both fields (admin: decrypted, logged): plain {pp:.0} req/s, encrypted {ps:.0} req/s → {:.0}% (target ≥ 85%: {})",
        ps / pp * 100.0,
        pass(ps / pp >= 0.85)
    );
    println!(
        "    50 of a city's 2,000 (city index; every match read to sort by id): plain {lp:.0} req/s, encrypted {ls:.0} req/s → {:.0}% (target ≥ 85%: {})",
        ls / lp * 100.0,
        pass(ls / lp >= 0.85)
    );
    println!(
        "    eq on phone: plain index {ep:.0} req/s, blind index {es:.0} req/s → {:.0}% (target within 20%: {})",
        es / ep * 100.0,
        pass(es / ep >= 0.8)
    );
    // Server CPU per row or request, each side over all its batches or rounds.
    let done = |q: usize, k: usize| -> f64 {
        if q == 0 { n as f64 } else { rates[q - 1][k].iter().map(|s| s.latencies.len()).sum::<usize>() as f64 }
    };
    let per = |q: usize, k: usize| cpu[q][k].parts().map(|secs| secs * 1e6 / done(q, k).max(1.0));
    println!("    CPU (utime + stime) per row or request, plain → encrypted:");
    // In the order of `cpu`: the insert, then `queries`.
    for (q, what) in ["insert, per row", "city list", "first page", "eq"].into_iter().enumerate() {
        let (plain, secure) = (per(q, 0), per(q, 1));
        let line: Vec<String> = (0..Cpu::PARTS.len())
            // No PostgreSQL part on SQLite, where the database works inside the server.
            .filter(|&i| on_postgres || Cpu::PARTS[i] != "PostgreSQL")
            .map(|i| {
                let (p, e) = (plain[i], secure[i]);
                format!("{} {p:.1} µs → {e:.1} µs ({:+.0}%)", Cpu::PARTS[i], (e / p - 1.0) * 100.0)
            })
            .collect();
        println!("      {what}: {}", line.join("; "));
    }
    if !on_postgres {
        let [p, e] = written.map(|bytes| bytes / 1024.0 / n as f64);
        println!(
            "    server writes per row loaded (log and checkpoints): {p:.2} KiB → {e:.2} KiB ({:+.0}%)",
            (e / p - 1.0) * 100.0
        );
    }
    println!("    request errors: {errors}");
    Ok(())
}

/// Rows figure (h) loads into one side, in batches of 1,000, before loading them into the other.
/// On SQLite the server copies the log into the database file in the background, at most every
/// 100 ms, and each checkpoint copies what both sides wrote since the last one: it lands on
/// whichever side is loading. A batch of 1,000 rows takes 20–25 ms, so with sides alternating
/// every batch, whether a checkpoint fell on one side or the other was a coin toss: in two
/// traced runs they split 18/26 and 28/20, moving the total ratio between 92% and 98% while the
/// median batches stayed at 93%. Blocks of 10,000 rows (a quarter of a second) each see one or
/// two checkpoints, of about a block's writes.
const LOAD_BLOCK: usize = 10_000;

/// Timed rounds per side of each read in figure (h).
const READ_ROUNDS: usize = 4;

/// Which side goes first in the `n`th of a series of paired measurements: plain then
/// encrypted, then the other way round, so neither side always runs right after the other
/// (warm caches, the access log's background writes, the machine's drift fall on both alike).
fn counterbalanced(n: usize) -> [usize; 2] {
    if n.is_multiple_of(2) { [0, 1] } else { [1, 0] }
}

/// Microseconds per value of sealing, opening and blind-indexing an 11-digit phone number.
fn crypto_costs() -> (f64, f64, f64) {
    use tessera_platform::crypto::{Aad, KeyMaterial, KeyRing};
    let ring = KeyRing::new(vec![(1, KeyMaterial::generate())], 1, &KeyMaterial::generate());
    let n = 200_000;
    let ids: Vec<String> = (0..1_000).map(|i| format!("0193a5b0-0000-7000-8000-{i:012}")).collect();
    let aad = |i: usize| Aad { object: "contact", field: "phone", record_id: &ids[i % ids.len()] };
    let t = Instant::now();
    let sealed: Vec<String> = (0..n).map(|i| ring.encrypt(aad(i), &phone_number(i))).collect();
    let encrypt = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    let t = Instant::now();
    let opened = sealed.iter().enumerate().filter(|(i, s)| ring.decrypt(aad(*i), s).is_ok()).count();
    let decrypt = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    assert_eq!(opened, n);
    let t = Instant::now();
    let indexed =
        (0..n).map(|i| ring.blind_index(tessera_metadata::FieldType::Phone, &phone_number(i))).fold(0i64, |a, b| a ^ b);
    let index = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    assert!(indexed != 0);
    (encrypt, decrypt, index)
}

/// Passes of figure (i) over its `--records`: enough that one noisy batch cannot make the figure.
const SCRIPT_PASSES: usize = 3;
/// Rows per object loaded before the timed passes of figure (i), so the first timed batches do
/// not pay for warming caches and compiling the scripts.
const SCRIPT_WARMUP: usize = 100;
/// Deal stages (picklist values) of figure (i).
const STAGES: [&str; 5] = ["prospect", "qualified", "proposal", "won", "lost"];
/// The `VALIDATE` rules of figure (i)'s `scripted_deal`, run in this order. Every generated deal
/// passes them; `rule_violations` breaks each one once.
const DEAL_RULES: [(&str, &str); 3] = [
    (
        "discount_limit",
        r#"if record.discount != () && record.discount > 0.30 && !user.roles.contains("sales_director") {
    error("discount", "a discount above 30% needs a sales director");
}"#,
    ),
    (
        "positive_amount",
        r#"if record.amount == () || record.amount <= 0.00 {
    error("amount", "the amount must be positive");
}"#,
    ),
    (
        "won_needs_close_date",
        r#"if record.stage == "won" && record.close_date == () {
    error("close_date", "a won deal needs a close date");
}"#,
    ),
];
/// The formula of `scripted_deal.net_amount`, over decimal fields only (amount × (1 − discount)).
const NET_AMOUNT: &str = "record.amount - record.amount * record.discount";

/// Deal `i` of figure (i) as the objects' input JSON (without `netAmount`), and its net amount
/// in cents. Amounts are whole units and discounts hundredths (0.00 to 0.30, the limit included),
/// so the net amount is exact to the cent: no rounding on either side to disagree about.
fn deal(i: usize) -> (Json, i64) {
    let units = 500 + (i as i64 * 7_919) % 199_500;
    let discount = (i * 13 % 31) as i64;
    let stage = STAGES[i % STAGES.len()];
    // Closed deals have a close date, open ones only sometimes.
    let close_date = (matches!(stage, "won" | "lost") || i.is_multiple_of(2))
        .then(|| format!("2026-{:02}-{:02}", 1 + i % 12, 1 + i % 28));
    let (first, last) = (FIRST_NAMES[i % FIRST_NAMES.len()], LAST_NAMES[(i / 12) % LAST_NAMES.len()]);
    let row = json!({
        "name": format!("Deal {i:06}"),
        "company": format!("{} {last} Ltd", CITIES[i % CITIES.len()]),
        "email": format!("{}.{}.{i}@example.com", first.to_lowercase(), last.to_lowercase()),
        "phone": phone_number(i),
        "amount": format!("{units}.00"),
        "discount": format!("0.{discount:02}"),
        "quantity": 1 + i % 50,
        "stage": stage.to_uppercase(),
        "region": region(i),
        "closeDate": close_date,
    });
    (row, units * (100 - discount))
}

fn cents_text(cents: i64) -> String {
    format!("{}{}.{:02}", if cents < 0 { "-" } else { "" }, cents.abs() / 100, cents.abs() % 100)
}

/// Cents of a decimal as the API writes it (`"1234.5"`, `"1234.50"`, `"-3"`); `None` if it has
/// more than two decimals or is not a number.
fn parse_cents(text: &str) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() || fraction.len() > 2 || !(whole.chars().chain(fraction.chars())).all(|c| c.is_ascii_digit()) {
        return None;
    }
    let cents = whole.parse::<i64>().ok()? * 100 + format!("{fraction:0<2}").parse::<i64>().ok()?;
    Some(if negative { -cents } else { cents })
}

/// Figure (i): two objects with the same ten fields and the same deals, one (`scripted_deal`)
/// with three `VALIDATE` rules and a `FORMULA` net amount, the other (`plain_deal`) with a plain
/// currency `net_amount` the bench fills with the same value, so both store the same data.
/// Loads `--records` deals into both in alternating batches of 1,000, `SCRIPT_PASSES` times
/// (which object goes first alternates too), then checks that the work was really done: the
/// formula's values against the ones computed here, and each rule refusing a deal that breaks it.
async fn script_figures(api: &Api, args: &Args) -> BoxResult<()> {
    let objects = [("plain_deal", "plain_deals", "PlainDeal"), ("scripted_deal", "scripted_deals", "ScriptedDeal")];
    let stages = STAGES.map(|s| format!(r#"{{value: "{s}", label: "{s}"}}"#)).join(", ");
    let stage = format!("PICKLIST, options: [{stages}]");
    let fields = [
        ("name", "TEXT"),
        ("company", "TEXT"),
        ("email", "EMAIL"),
        ("phone", "PHONE"),
        ("amount", "CURRENCY"),
        ("discount", "DECIMAL, scale: 2"),
        ("quantity", "INTEGER"),
        ("stage", stage.as_str()),
        ("region", "TEXT"),
        ("close_date", "DATE"),
    ];
    let formula = format!(r#"FORMULA, resultType: CURRENCY, expression: "{NET_AMOUNT}""#);
    for (name, plural, _) in objects {
        api.meta(&format!(
            r#"mutation {{ createObject(input: {{name: "{name}", pluralName: "{plural}", label: "{name}", pluralLabel: "{plural}"}}) {{ name }} }}"#
        ))
        .await?;
        let net_amount = if name == "scripted_deal" { formula.as_str() } else { "CURRENCY" };
        for (field, ty) in fields.into_iter().chain([("net_amount", net_amount)]) {
            api.meta(&format!(
                r#"mutation {{ createField(object: "{name}", input: {{name: "{field}", label: "{field}", type: {ty}}}) {{ name }} }}"#
            ))
            .await?;
        }
    }
    // Sources go as variables: they hold quotes a GraphQL string literal would need escaped.
    let set_script = "mutation($o: String!, $i: ScriptInput!) { setScript(object: $o, input: $i) { name } }";
    for (k, (name, source)) in DEAL_RULES.iter().enumerate() {
        let input = json!({"name": name, "hook": "VALIDATE", "order": 10 * (k + 1), "active": true, "source": source});
        api.post("/graphql/metadata", set_script, json!({"o": "scripted_deal", "i": input})).await?;
    }

    let n = args.records;
    if n == 0 {
        return Err("--records must be at least 1".into());
    }
    // Deal numbers: the passes take 0..n, n..2n, …; the warm-up comes after them.
    let warmup = SCRIPT_PASSES * n..SCRIPT_PASSES * n + SCRIPT_WARMUP;
    let batch = |range: std::ops::Range<usize>| {
        let deals: Vec<(Json, i64)> = range.map(deal).collect();
        let plain = deals
            .iter()
            .map(|(row, net)| {
                let mut row = row.clone();
                row["netAmount"] = json!(cents_text(*net));
                row
            })
            .collect::<Vec<_>>();
        [plain, deals.into_iter().map(|(row, _)| row).collect()]
    };
    let insert = |k: usize, rows: Vec<Json>| {
        let tn = objects[k].2;
        async move {
            let expected = rows.len();
            let ids = create_batch(api, &format!("{tn}s"), &format!("{tn}Input"), rows).await?;
            if ids.len() != expected {
                return Err(format!("{tn}: {expected} rows sent, {} created", ids.len()).into());
            }
            BoxResult::Ok(())
        }
    };
    for (k, rows) in batch(warmup).into_iter().enumerate() {
        insert(k, rows).await?;
    }
    eprintln!("(i) loading {n} deals into each of two objects, {SCRIPT_PASSES} passes of alternating batches…");
    let mut spent = [[Duration::ZERO; 2]; SCRIPT_PASSES];
    for (pass, spent) in spent.iter_mut().enumerate() {
        for (b, start) in (0..n).step_by(1_000).enumerate() {
            let from = pass * n + start;
            let mut rows = batch(from..from + 1_000.min(n - start)).map(Some);
            // Which object goes first alternates, so neither always writes right after the other.
            for k in if b % 2 == 0 { [0, 1] } else { [1, 0] } {
                let rows = rows[k].take().ok_or("batch rows used twice")?;
                let t = Instant::now();
                insert(k, rows).await?;
                spent[k] += t.elapsed();
            }
        }
    }

    // The figure must not measure a no-op: the formula's values are the ones computed here (and
    // both objects hold the same deals), and every rule refuses a deal that breaks it.
    let total = SCRIPT_PASSES * n;
    let sample: Vec<usize> = (0..total).step_by((total / 20).max(1)).chain([total - 1]).collect();
    const DEAL_PLAIN: &str = "query($v: String!) { plainDeals(filter: {name: {eq: $v}}) { nodes { name amount discount stage closeDate netAmount } } }";
    const DEAL_SCRIPTED: &str = "query($v: String!) { scriptedDeals(filter: {name: {eq: $v}}) { nodes { name amount discount stage closeDate netAmount } } }";
    for &i in &sample {
        let (row, net) = deal(i);
        let v = json!({"v": row["name"]});
        let (plain, scripted) = (api.data(DEAL_PLAIN, v.clone()).await?, api.data(DEAL_SCRIPTED, v).await?);
        let (plain, scripted) = (&plain["plainDeals"]["nodes"], &scripted["scriptedDeals"]["nodes"]);
        let got = scripted[0]["netAmount"].as_str().and_then(parse_cents);
        if scripted.as_array().map(Vec::len) != Some(1) || got != Some(net) {
            let expected = cents_text(net);
            return Err(
                format!("deal {i}: formula netAmount should be {expected}, scripted_deal has {scripted}").into()
            );
        }
        if plain != scripted {
            return Err(format!("deal {i}: plain_deal has {plain}, scripted_deal {scripted}").into());
        }
    }
    let refused = rule_violations(api).await?;
    for plural in ["plainDeals", "scriptedDeals"] {
        let field = format!("{plural}Aggregate");
        let count = api.data(&format!("{{ {field} {{ count }} }}"), json!({})).await?;
        if count[&field]["count"].as_u64() != Some((total + SCRIPT_WARMUP) as u64) {
            return Err(format!("expected {} {plural}, found {count}", total + SCRIPT_WARMUP).into());
        }
    }

    let rate = |k: usize, spent: &[[Duration; 2]]| {
        let secs: f64 = spent.iter().map(|s| s[k].as_secs_f64()).sum();
        (spent.len() * n) as f64 / secs.max(f64::MIN_POSITIVE)
    };
    let (plain, scripted) = (rate(0, &spent), rate(1, &spent));
    let ratio = scripted / plain;
    let per_pass: Vec<String> = spent
        .iter()
        .map(|s| format!("{:.0}%", rate(1, std::slice::from_ref(s)) / rate(0, std::slice::from_ref(s)) * 100.0))
        .collect();
    let micros = (1.0 / scripted - 1.0 / plain) * 1e6;
    let pass = |ok: bool| if ok { "PASS" } else { "MISS" };
    println!(
        "(i) Rhai scripts ({} VALIDATE rules + 1 FORMULA field) vs the same fields without, {n} records × {SCRIPT_PASSES} passes into each",
        DEAL_RULES.len()
    );
    println!(
        "    insert, 1,000 rows/request: plain {plain:.0} rows/s, scripted {scripted:.0} rows/s → {:.1}% (target ≥ 70%: {})",
        ratio * 100.0,
        pass(ratio >= 0.7)
    );
    println!("    scripted / plain per pass: {}", per_pass.join(", "));
    if micros > 0.0 {
        println!("    script cost per record (rules and formula): {micros:.1} µs");
    } else {
        // The scripted object loaded faster: what the scripts cost is below this run's noise.
        println!("    script cost per record (rules and formula): below this run's noise ({micros:.1} µs)");
    }
    println!(
        "    checked: {} formula values as computed here, {refused} rule violations refused with SCRIPT field errors",
        sample.len()
    );
    Ok(())
}

/// Sends `scripted_deal` one deal breaking each rule (and nothing else); each must be refused
/// with a `SCRIPT` field error on the rule's field. Returns how many were.
async fn rule_violations(api: &Api) -> BoxResult<usize> {
    let (base, _) = deal(3); // stage `won`, with a close date
    let mut bad = [base.clone(), base.clone(), base];
    bad[0]["discount"] = json!("0.45");
    bad[1]["amount"] = json!("0.00");
    bad[2]["closeDate"] = Json::Null;
    let fields = [["discount"; 2], ["amount"; 2], ["close_date", "closeDate"]];
    let create = "mutation($a: [ScriptedDealInput!]!) { createScriptedDeals(data: $a) { id } }";
    for (((rule, _), row), field) in DEAL_RULES.iter().zip(bad).zip(fields) {
        let (_, body) = api.response("/graphql", create, json!({"a": [row]})).await?;
        let errors = body["errors"][0]["extensions"]["fieldErrors"].as_array();
        let refused = errors
            .into_iter()
            .flatten()
            .any(|e| e["code"] == "SCRIPT" && e["field"].as_str().is_some_and(|f| field.contains(&f)));
        if !refused {
            return Err(format!("a deal breaking rule `{rule}` was not refused with a SCRIPT error: {body}").into());
        }
    }
    Ok(DEAL_RULES.len())
}

/// Levels of the chain at the top of the bench hierarchy; below it each manager has 3 reports.
const CHAIN: usize = 20;

/// The manager of user `i` in the bench hierarchy.
fn manager_of(i: usize) -> Option<usize> {
    match i {
        0 => None,
        i if i < CHAIN => Some(i - 1),
        i => Some(CHAIN - 1 + (i - CHAIN) / 3),
    }
}

fn depth_of(i: usize) -> usize {
    manager_of(i).map_or(0, |m| depth_of(m) + 1)
}

/// Creates a role reading leads with scope `TEAM` (accounts with `ALL`) and `n` users holding
/// it in a hierarchy, level by level; returns their ids.
async fn create_hierarchy(api: &Api, n: usize, password: &str) -> BoxResult<Vec<String>> {
    api.meta(r#"mutation { createRole(input: {name: "sales_manager", label: "Sales manager"}) { name } }"#).await?;
    api.meta(
        r#"mutation { setObjectPermission(role: "sales_manager", object: "lead", input: {read: true, scope: TEAM}) }"#,
    )
    .await?;
    api.meta(r#"mutation { setObjectPermission(role: "sales_manager", object: "account", input: {read: true, scope: ALL}) }"#)
        .await?;
    let mut ids: Vec<Option<String>> = vec![None; n];
    let max_depth = (0..n).map(depth_of).max().unwrap_or(0);
    for depth in 0..=max_depth {
        let level: Vec<usize> = (0..n).filter(|i| depth_of(*i) == depth).collect();
        let managers: Vec<(usize, Option<String>)> =
            level.iter().map(|&i| (i, manager_of(i).and_then(|m| ids[m].clone()))).collect();
        let requests = managers.into_iter().map(|(i, manager)| {
            let (api, password) = (api.clone(), password.to_string());
            async move {
                let q = "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }";
                let input = json!({"email": format!("user{i}@example.com"), "password": password,
                                   "roles": ["sales_manager"], "manager": manager});
                let data = api.post("/graphql/metadata", q, json!({"i": input})).await?;
                let id = data["createUser"]["id"].as_str().ok_or("createUser answered without an id")?.to_string();
                BoxResult::Ok((i, id))
            }
        });
        let mut created = futures::stream::iter(requests).buffer_unordered(4);
        while let Some(r) = created.next().await {
            let (i, id) = r?;
            ids[i] = Some(id);
        }
    }
    Ok(ids.into_iter().flatten().collect())
}

/// Users below `i` in the bench hierarchy, `i` included.
fn team_size(i: usize, n: usize) -> usize {
    1 + (0..n).filter(|&j| manager_of(j) == Some(i)).map(|j| team_size(j, n)).sum::<usize>()
}

async fn load_accounts(api: &Api, args: &Args) -> BoxResult<Vec<String>> {
    let mut account_ids = Vec::with_capacity(args.accounts);
    for chunk in (0..args.accounts).collect::<Vec<_>>().chunks(1000) {
        let rows = chunk
            .iter()
            .map(|i| json!({"name": format!("Account {i:05}"), "industry": format!("Industry {}", i % 20)}))
            .collect();
        account_ids.extend(create_batch(api, "Accounts", "AccountInput", rows).await?);
    }
    if account_ids.is_empty() {
        return Err("--accounts must be at least 1".into());
    }
    Ok(account_ids)
}

/// Loads `args.contacts` contact-shaped records into `object` (`contact` or `lead`), owned
/// round-robin by `owners` (by the admin when there are none); returns a sample of their ids and
/// the insert rows/s.
async fn load(
    api: &Api,
    args: &Args,
    object: (&'static str, &'static str),
    account_ids: &[String],
    owners: &[String],
) -> BoxResult<(Vec<String>, f64)> {
    let (plural, input) = object;
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    // Contact ids are kept only as a sample, so the bench's own memory does not skew the RSS figure.
    let sample_every = (args.contacts / 1000).max(1);
    let batches = (0..args.contacts).step_by(1000).map(|from| {
        let rows: Vec<Json> = (from..(from + 1000).min(args.contacts))
            .map(|i| {
                let (first, last) = (rng.pick(&FIRST_NAMES), rng.pick(&LAST_NAMES));
                let mut row = json!({
                    "firstName": first,
                    "lastName": last,
                    "email": format!("{}.{}.{i}@example.com", first.to_lowercase(), last.to_lowercase()),
                    "phone": format!("+86 138{:08}", rng.next() % 100_000_000),
                    "city": rng.pick(&CITIES),
                    "region": region(rng.below(50)),
                    "accountId": account_ids[rng.below(account_ids.len())],
                    "score": rng.below(100),
                    "lifetimeValue": format!("{}.{:02}", rng.below(100_000), rng.below(100)),
                    "status": rng.pick(&STATUSES),
                });
                if let Some(owner) = owners.get(i % owners.len().max(1)) {
                    row["owner"] = json!(owner);
                }
                row
            })
            .collect();
        batch_body(plural, input, rows, BENCH_MAX_BATCH)
    });
    let bodies = batches.collect::<BoxResult<Vec<_>>>()?;
    let batches = bodies.into_iter().map(|body| {
        let api = api.clone();
        async move { send_batch(&api, body).await }
    });
    let started = Instant::now();
    let mut results = futures::stream::iter(batches).buffer_unordered(args.load_concurrency.max(1));
    let (mut sample, mut created) = (Vec::new(), 0usize);
    while let Some(ids) = results.next().await {
        let ids = ids?;
        sample.extend(ids.iter().step_by(sample_every).cloned());
        created += ids.len();
    }
    let rows_per_sec = created as f64 / started.elapsed().as_secs_f64();
    let field = format!("{}Aggregate", plural.to_lowercase());
    let count = api.data(&format!("{{ {field} {{ count }} }}"), json!({})).await?;
    if count[&field]["count"].as_u64() != Some(args.contacts as u64) || sample.is_empty() {
        return Err(format!("expected {} {plural} after the load, found {count}", args.contacts).into());
    }
    Ok((sample, rows_per_sec))
}

/// The hand-written SQL of one list page: the page itself, then its accounts by id.
struct RawPage {
    accounts_sql: String,
    account_ids: Vec<String>,
}

fn placeholders(postgres: bool, from: usize, n: usize) -> String {
    let p: Vec<String> = (from..from + n).map(|i| if postgres { format!("${i}") } else { "?".into() }).collect();
    p.join(", ")
}

/// Prepares the raw pages per city (their account ids come from the API's own answer) and
/// checks that the API and the raw SQL see the same page.
async fn raw_pages(api: &Api, store: &Store, page_sql: &str) -> BoxResult<Vec<RawPage>> {
    let mut pages = Vec::with_capacity(CITIES.len());
    for city in CITIES {
        let data = api.data(PAGE_ACCOUNTS, json!({"v": city})).await?;
        let nodes = data["contacts"]["nodes"].as_array().ok_or("list answered without nodes")?;
        let mut account_ids: Vec<String> =
            nodes.iter().filter_map(|n| n["accountId"].as_str().map(str::to_string)).collect();
        account_ids.sort_unstable();
        account_ids.dedup();
        let raw_rows = store.raw_query_count(page_sql, vec![city.into()]).await?;
        if raw_rows.min(50) != nodes.len() {
            return Err(format!("{city}: the API returned {} rows, raw SQL {raw_rows}", nodes.len()).into());
        }
        let accounts_sql = format!(
            "SELECT id, owner_id, created_at, updated_at, created_by, updated_by, version, deleted_at, name \
             FROM obj_account WHERE id IN ({}) AND deleted_at IS NULL",
            placeholders(store.is_postgres(), 1, account_ids.len().max(1))
        );
        pages.push(RawPage { accounts_sql, account_ids });
    }
    Ok(pages)
}

/// Time from `createField` until a data query selecting the new field succeeds.
async fn add_field_latency(api: &Api) -> BoxResult<Duration> {
    let started = Instant::now();
    api.meta(r#"mutation { createField(object: "contact", input: {name: "nickname", label: "Nickname", type: TEXT}) { name } }"#)
        .await?;
    loop {
        match api.data("{ contacts(first: 1) { nodes { id nickname } } }", json!({})).await {
            Ok(_) => return Ok(started.elapsed()),
            Err(e) if started.elapsed() > Duration::from_secs(30) => {
                return Err(format!("new field never appeared: {e}").into());
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
}

/// CPU seconds a process has used (user + system), from `/proc/<pid>/stat`; `None` off Linux.
/// Linux reports them in clock ticks of 1/100 s (`USER_HZ`).
fn proc_cpu_secs(pid: u32) -> Option<f64> {
    let [utime, stime, _, _] = proc_cpu_ticks(pid)?;
    Some((utime + stime) / 100.0)
}

/// Bytes a process has passed to write calls, and the number of those calls (`wchar` and
/// `syscw` of `/proc/<pid>/io`); `None` off Linux.
fn proc_io(pid: u32) -> Option<[f64; 2]> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let field = |key: &str| io.lines().find_map(|l| l.strip_prefix(key)?.trim().parse::<f64>().ok());
    Some([field("wchar:")?, field("syscw:")?])
}

/// `utime`, `stime`, `cutime` and `cstime` of a process (fields 14–17 of `/proc/<pid>/stat`), in
/// clock ticks: its own CPU time, then that of its children that have exited and been waited for.
fn proc_cpu_ticks(pid: u32) -> Option<[f64; 4]> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    // Fields 14 to 17 of the line are the 12th to the 15th after the name.
    Some([ticks(11)?, ticks(12)?, ticks(13)?, ticks(14)?])
}

/// CPU seconds (utime + stime) so far of the server, of every PostgreSQL process on this
/// machine (zero on SQLite, where the database works inside the server), and of this client.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    server: f64,
    database: f64,
    client: f64,
}

impl Cpu {
    /// What `parts` returns, in order.
    const PARTS: [&str; 3] = ["server", "PostgreSQL", "bench client"];

    fn parts(&self) -> [f64; 3] {
        [self.server, self.database, self.client]
    }

    fn now(server_pid: u32, on_postgres: bool) -> Cpu {
        Cpu {
            server: proc_cpu_secs(server_pid).unwrap_or(f64::NAN),
            database: if on_postgres { postgres_cpu_secs() } else { 0.0 },
            client: proc_cpu_secs(std::process::id()).unwrap_or(f64::NAN),
        }
    }
}

impl std::ops::Sub for Cpu {
    type Output = Cpu;
    fn sub(self, o: Cpu) -> Cpu {
        Cpu { server: self.server - o.server, database: self.database - o.database, client: self.client - o.client }
    }
}

impl std::ops::AddAssign for Cpu {
    fn add_assign(&mut self, o: Cpu) {
        self.server += o.server;
        self.database += o.database;
        self.client += o.client;
    }
}

/// CPU seconds of every process named `postgres` (the server, its backends, autovacuum and the
/// checkpointer), with those of its exited children (an autovacuum worker that finished): the
/// database's side of a request when it runs on this machine. The server process waits for
/// its children, so their time moves into its `cutime` and `cstime` when they exit.
fn postgres_cpu_secs() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0.0 };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim_end() == "postgres")
        })
        .filter_map(proc_cpu_ticks)
        .map(|ticks| ticks.iter().sum::<f64>() / 100.0)
        .sum()
}

/// `VmRSS` (or another `/proc/<pid>/status` key) of a process in MiB; `None` off Linux.
fn proc_status_mib(pid: u32, key: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// PASS/MISS against a target (`None`: no target), or FAIL when requests failed.
fn verdict(met: Option<bool>, stats: &[&Stats]) -> String {
    match (stats.iter().find(|s| s.errors > 0), met) {
        (Some(s), _) => format!("FAIL ({} errors)", s.errors),
        (None, None) => "—".into(),
        (None, Some(true)) => "PASS".into(),
        (None, Some(false)) => "MISS".into(),
    }
}

async fn run(args: Args) -> BoxResult<()> {
    let temp_dir = std::env::temp_dir().join(format!("tessera-bench-{}", uuid::Uuid::new_v4()));
    let database_url = match &args.database_url {
        Some(url) => url.clone(),
        None => {
            std::fs::create_dir_all(&temp_dir)?;
            format!("sqlite://{}", temp_dir.join("bench.db").display())
        }
    };
    let (email, password) = ("bench@example.com", format!("bench-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&temp_dir)?;
    let server = ServerProcess::spawn(&database_url, email, &password, &temp_dir.join("bench.key"))?;
    // The raw-SQL comparison goes through the same driver on the same database.
    let store = Store::connect(&database_url).await?;
    let api = Api::login(format!("http://{}", server.addr), email, &password).await?;
    let (secs, conc) = (args.seconds, args.concurrency);
    eprintln!("database: {}", if store.is_postgres() { "PostgreSQL" } else { database_url.as_str() });

    if args.sensitive_only || args.scripts_only {
        let result = if args.scripts_only {
            script_figures(&api, &args).await
        } else {
            sensitive_figures(&api, &args, server.pid).await
        };
        server.stop();
        let _ = std::fs::remove_dir_all(&temp_dir);
        return result;
    }
    create_schema(&api).await?;
    eprintln!("loading {} accounts and {} contacts…", args.accounts, args.contacts);
    let account_ids = load_accounts(&api, &args).await?;
    let (cpu_before, io_before) = (proc_cpu_secs(server.pid), proc_io(server.pid));
    let (contact_ids, insert_rate) = load(&api, &args, ("Contacts", "ContactInput"), &account_ids, &[]).await?;
    let per_row = |a: f64, b: f64| (b - a) / args.contacts as f64;
    let cpu = cpu_before.zip(proc_cpu_secs(server.pid)).map(|(a, b)| per_row(a, b) * 1e6);
    // On PostgreSQL the database's own processes write, not the server.
    let io = io_before.zip(proc_io(server.pid)).filter(|_| !store.is_postgres());
    let wrote = io.map_or(String::new(), |(a, b)| {
        format!(", wrote {:.1} KiB/row in {:.2} calls/row", per_row(a[0], b[0]) / 1024.0, per_row(a[1], b[1]))
    });
    eprintln!("loaded: {insert_rate:.0} rows/s; server CPU {:.1} µs/row{wrote}", cpu.unwrap_or(f64::NAN));
    // The server hands freed memory back once no request is in flight, and empties SQLite's
    // page caches once none has come for a while (`http::idle`): the reading waits for both.
    tokio::time::sleep(RSS_SETTLE).await;
    let rss = proc_status_mib(server.pid, "VmRSS:");
    let rss_anon = proc_status_mib(server.pid, "RssAnon:");
    let rss_file = proc_status_mib(server.pid, "RssFile:");

    // (a) list on the unindexed city, raw SQL beside it, then the indexed region.
    let page_sql = format!(
        "SELECT id, owner_id, created_at, updated_at, created_by, updated_by, version, deleted_at, \
         first_name, last_name, account_id FROM obj_contact WHERE city = {} AND deleted_at IS NULL \
         ORDER BY last_name ASC NULLS LAST, id LIMIT 51",
        placeholders(store.is_postgres(), 1, 1)
    );
    let pages = Arc::new(raw_pages(&api, &store, &page_sql).await?);
    eprintln!("measuring ({secs} s each, concurrency {conc})…");
    let (s, sql) = (store.clone(), Arc::new(page_sql));
    let raw_page = Arc::new(move |n: usize| {
        let (s, sql, pages) = (s.clone(), sql.clone(), pages.clone());
        async move {
            let i = n % CITIES.len();
            s.raw_query_count(&sql, vec![CITIES[i].into()]).await?;
            if let Some(p) = pages.get(i).filter(|p| !p.account_ids.is_empty()) {
                s.raw_query_count(&p.accounts_sql, p.account_ids.iter().map(|id| id.clone().into()).collect()).await?;
            }
            Ok(())
        }
    });
    // The two sides of the ratio in alternating rounds (`counterbalanced`), so that the
    // machine's drift over the measurement falls on both alike.
    let mut list_rounds: [Vec<Stats>; 2] = Default::default();
    let round_secs = secs / READ_ROUNDS as f64;
    for round in 0..READ_ROUNDS {
        for k in counterbalanced(round) {
            list_rounds[k].push(if k == 0 {
                gql_load(&api, round_secs, conc, LIST_BY_CITY, |n| json!({"v": CITIES[n % CITIES.len()]})).await
            } else {
                let raw_page = raw_page.clone();
                run_load(round_secs, conc, move |n| raw_page(n)).await
            });
        }
    }
    let [list_api, list_raw] = list_rounds.map(Stats::merged);
    let list_indexed = gql_load(&api, secs, conc, LIST_BY_REGION, |n| json!({"v": region(n)})).await;
    // (b) get by id over the sampled ids; (c) group-by count by city.
    let get = gql_load(&api, secs, conc, GET_BY_ID, move |n| json!({"id": contact_ids[n % contact_ids.len()]})).await;
    let group = gql_load(&api, secs, conc, GROUP_BY_CITY, |_| json!({})).await;
    // (g) the same list over leads owned across a hierarchy, as TEAM-scoped managers: the top
    // one sees every lead, as the admin does, so both answer the same pages; rounds alternate to
    // even out drift. Loaded after (f) so the RSS figure describes the same data as before.
    eprintln!("creating a hierarchy of {} users and {} leads they own…", args.users, args.contacts);
    let user_password = format!("bench user {}", uuid::Uuid::new_v4());
    let users = create_hierarchy(&api, args.users, &user_password).await?;
    load(&api, &args, ("Leads", "LeadInput"), &account_ids, &users).await?;
    let base = format!("http://{}", server.addr);
    let top = Api::login(base.clone(), "user0@example.com", &user_password).await?;
    let mid_index = CHAIN + 1;
    let mid = Api::login(base, &format!("user{mid_index}@example.com"), &user_password).await?;
    for city in CITIES.iter().take(3) {
        let (a, t) =
            (api.data(LEADS_BY_CITY, json!({"v": city})).await?, top.data(LEADS_BY_CITY, json!({"v": city})).await?);
        if a != t {
            return Err(format!("{city}: the top manager and the admin see different pages").into());
        }
    }
    let by_city = |n: usize| json!({"v": CITIES[n % CITIES.len()]});
    let mut rounds = Vec::new();
    for _ in 0..2 {
        rounds.push((
            gql_load(&api, secs, conc, LEADS_BY_CITY, by_city).await,
            gql_load(&top, secs, conc, LEADS_BY_CITY, by_city).await,
        ));
    }
    let team_mid = gql_load(&mid, secs, conc, LEADS_BY_CITY, by_city).await;
    // (e) add a field.
    let add_field = add_field_latency(&api).await?;

    let ratio = list_api.rate() / list_raw.rate().max(f64::MIN_POSITIVE);
    let ms = add_field.as_secs_f64() * 1000.0;
    let ratio_verdict = verdict(Some(ratio >= 0.8), &[&list_api, &list_raw]);
    let indexed_verdict = verdict(Some(list_indexed.rate() >= 1000.0), &[&list_indexed]);
    let insert_verdict = verdict(Some(insert_rate >= 30_000.0), &[]);
    let backend = if store.is_postgres() { "PostgreSQL" } else { "SQLite" };
    println!(
        "\n## Tessera bench — {backend}, {} accounts, {} contacts, {conc} concurrent, {secs} s per figure\n",
        args.accounts, args.contacts
    );
    println!("| Figure | Measured | Target (SQLite) | Result |\n|---|---|---|---|");
    let rss_text = match (rss, rss_anon, rss_file) {
        (Some(all), Some(anon), Some(file)) => {
            format!("{all:.1} MB ({anon:.1} MB allocated, {file:.1} MB mapped database and binary)")
        }
        _ => rss.map_or("n/a".into(), |m| format!("{m:.1} MB")),
    };
    let rss_verdict = rss.map_or("n/a".into(), |m| verdict(Some(m <= 100.0), &[]));
    let admin_rate: f64 = rounds.iter().map(|(a, _)| a.rate()).sum::<f64>() / rounds.len() as f64;
    let team_rate: f64 = rounds.iter().map(|(_, t)| t.rate()).sum::<f64>() / rounds.len() as f64;
    let team_ratio = team_rate / admin_rate.max(f64::MIN_POSITIVE);
    let round_stats: Vec<&Stats> = rounds.iter().flat_map(|(a, t)| [a, t]).collect();
    let team_verdict = verdict(Some(team_ratio >= 0.85), &round_stats);
    let (top_team, mid_team) = (team_size(0, args.users), team_size(mid_index, args.users));
    let rows = [
        (
            "(a) list, city eq (unindexed), GraphQL, alternating rounds",
            list_api.summary(),
            "—",
            verdict(None, &[&list_api]),
        ),
        ("(a) same page, raw SQL (2 statements)", list_raw.summary(), "—", verdict(None, &[&list_raw])),
        ("(a) list throughput, API / raw SQL", format!("{:.0}%", ratio * 100.0), "≥ 80%", ratio_verdict),
        (
            "(a) list, region eq (index region, last name), GraphQL",
            list_indexed.summary(),
            "≥ 1,000 req/s",
            indexed_verdict,
        ),
        ("(b) get by id", get.summary(), "≥ 5,000 req/s", verdict(Some(get.rate() >= 5000.0), &[&get])),
        ("(c) group-by count (city)", group.summary(), "—", verdict(None, &[&group])),
        (
            "(d) bulk insert, `createContacts` batches of 1,000",
            format!("{insert_rate:.0} rows/s"),
            "≥ 30,000 rows/s",
            insert_verdict,
        ),
        ("(e) add field until queryable", format!("{ms:.1} ms"), "≤ 100 ms", verdict(Some(ms <= 100.0), &[])),
        ("(f) server RSS after the load", rss_text, "≤ 100 MB", rss_verdict),
        ("(g) list as admin, alternating rounds", format!("{admin_rate:.0} req/s"), "—", verdict(None, &round_stats)),
        (
            "(g) same list, TEAM scope, top of the hierarchy",
            format!("{team_rate:.0} req/s ({top_team} users in team)"),
            "—",
            verdict(None, &round_stats),
        ),
        ("(g) TEAM / admin throughput", format!("{:.0}%", team_ratio * 100.0), "≥ 85%", team_verdict),
        (
            "(g) same list, TEAM scope, mid-level manager",
            format!("{} ({mid_team} users in team)", team_mid.summary()),
            "—",
            verdict(None, &[&team_mid]),
        ),
    ];
    for (figure, measured, target, result) in rows {
        println!("| {figure} | {measured} | {target} | {result} |");
    }
    if let Some(peak) = proc_status_mib(server.pid, "VmHWM:") {
        println!("\nServer peak RSS over the whole run: {peak:.1} MB.");
    }
    let all = [("list/city", &list_api), ("raw SQL", &list_raw), ("list/region", &list_indexed), ("get", &get)];
    let team = rounds.iter().map(|(_, t)| ("TEAM list", t));
    for (name, s) in all.into_iter().chain([("group-by", &group), ("mid-level TEAM list", &team_mid)]).chain(team) {
        if let Some(e) = &s.first_error {
            println!("\n{name}: {} failed requests; first: {e}", s.errors);
        }
    }
    drop(store);
    server.stop();
    if args.database_url.is_none() {
        let _ = std::fs::remove_dir_all(&temp_dir);
    }
    Ok(())
}

/// The server under test, in a child process of its own so that its memory is measured apart
/// from the load generator's. It is this same binary, started with `SERVE_ENV` set.
struct ServerProcess {
    child: std::process::Child,
    pid: u32,
    addr: String,
}

const SERVE_ENV: &str = "TESSERA_BENCH_SERVE";

impl ServerProcess {
    fn spawn(database_url: &str, email: &str, password: &str, key_file: &std::path::Path) -> BoxResult<ServerProcess> {
        use std::io::BufRead;
        let mut child = std::process::Command::new(std::env::current_exe()?)
            .env(SERVE_ENV, database_url)
            .env("TESSERA_ADMIN_EMAIL", email)
            .env("TESSERA_ADMIN_PASSWORD", password)
            .env("TESSERA_DATA_KEY_FILE", key_file)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("server process has no stdout")?;
        // The server may print notices first (a generated master key, a generated password).
        let mut reader = std::io::BufReader::new(stdout);
        let mut line = String::new();
        for _ in 0..20 {
            line.clear();
            if reader.read_line(&mut line)? == 0 || line.starts_with("LISTENING ") {
                break;
            }
        }
        let addr = line.strip_prefix("LISTENING ").map(|a| a.trim().to_string());
        match addr {
            Some(addr) => Ok(ServerProcess { pid: child.id(), child, addr }),
            None => {
                let _ = child.kill();
                Err(format!("server process did not start (said {line:?})").into())
            }
        }
    }

    /// Closing its stdin tells the server to shut down; it is killed if it does not.
    fn stop(mut self) {
        drop(self.child.stdin.take());
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Child mode: serve until stdin closes.
async fn serve(database_url: String) -> BoxResult<()> {
    let mut config = Config {
        database_url,
        bind: "127.0.0.1:0".into(),
        admin_email: std::env::var("TESSERA_ADMIN_EMAIL").ok(),
        admin_password: std::env::var("TESSERA_ADMIN_PASSWORD").ok(),
        data_key_file: std::env::var("TESSERA_DATA_KEY_FILE").ok().map(std::path::PathBuf::from),
        ..Config::default()
    };
    config.limits.max_batch = BENCH_MAX_BATCH;
    let server = start(config).await?;
    {
        use std::io::Write;
        let mut out = std::io::stdout();
        writeln!(out, "LISTENING {}", server.addr)?;
        out.flush()?;
    }
    tokio::task::spawn_blocking(|| {
        use std::io::Read;
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    })
    .await?;
    server.shutdown().await;
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    if let Ok(database_url) = std::env::var(SERVE_ENV) {
        return match serve(database_url).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench server: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_are_distinct_and_in_no_order() {
        let n = 300_000;
        let numbers: Vec<String> = (0..n).map(phone_number).collect();
        let distinct: std::collections::HashSet<&String> = numbers.iter().collect();
        assert_eq!(distinct.len(), n);
        assert!(numbers.iter().all(|p| p.len() == 11 && p.starts_with("138")));
        // Within a batch of a thousand, about half the neighbours ascend, as for random numbers
        // (an arithmetic progression ascends almost everywhere).
        let ascending = numbers[..1_000].windows(2).filter(|w| w[0] < w[1]).count();
        assert!((400..600).contains(&ascending), "{ascending} of 999 neighbours ascend");
        // The walk ends for the largest inputs too.
        assert!(shuffled(PHONES - 1) < PHONES);
    }
}

//! End-to-end test harness: creates real databases — a fresh SQLite file, and a fresh
//! PostgreSQL database when `TESSERA_TEST_POSTGRES` names a server — for tests of the store and
//! engines, and starts a real Tessera server on one and talks to it over HTTP like any client.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod customers;

use serde_json::{Value, json};
use tessera_platform::server::{Config, RunningServer, start};

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "correct horse battery staple";

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The backends to run every test on: SQLite always, PostgreSQL when configured.
pub fn backends() -> Vec<Backend> {
    let mut out = vec![Backend::Sqlite];
    if std::env::var("TESSERA_TEST_POSTGRES").is_ok_and(|v| !v.is_empty()) {
        out.push(Backend::Postgres);
    }
    out
}

/// A fresh, empty database of one backend: an SQLite file in its own temporary directory, or a
/// new PostgreSQL database on the `TESSERA_TEST_POSTGRES` server. Call `drop_database` when done
/// (the SQLite directory goes away on drop anyway).
pub struct TestDatabase {
    pub backend: Backend,
    pub url: String,
    _dir: tempfile::TempDir,
    /// PostgreSQL: the server URL and the database's name.
    pg: Option<(String, String)>,
}

impl TestDatabase {
    pub async fn create(backend: Backend) -> TestDatabase {
        use sea_orm::{ConnectionTrait, Database};
        let dir = tempfile::tempdir().unwrap();
        match backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}", dir.path().join("tessera.db").display());
                TestDatabase { backend, url, _dir: dir, pg: None }
            }
            Backend::Postgres => {
                let server = std::env::var("TESSERA_TEST_POSTGRES").unwrap();
                let server = server.trim_end_matches('/').to_string();
                let name = format!("tessera_test_{}", uuid::Uuid::new_v4().simple());
                let admin = Database::connect(format!("{server}/postgres")).await.expect("connect to PostgreSQL");
                admin.execute_unprepared(&format!("CREATE DATABASE \"{name}\"")).await.expect("create test database");
                admin.close().await.ok();
                TestDatabase { backend, url: format!("{server}/{name}"), _dir: dir, pg: Some((server, name)) }
            }
        }
    }

    /// Drops the PostgreSQL database (closing whatever connections are still open to it).
    pub async fn drop_database(mut self) {
        if let Some((server, name)) = self.pg.take() {
            use sea_orm::{ConnectionTrait, Database};
            if let Ok(admin) = Database::connect(format!("{server}/postgres")).await {
                let _ = admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await;
                admin.close().await.ok();
            }
        }
    }
}

/// A running server with an admin session.
pub struct TestServer {
    pub backend: Backend,
    pub server: Option<RunningServer>,
    pub base: String,
    pub token: String,
    pub client: reqwest::Client,
    db: Option<TestDatabase>,
    pub database_url: String,
}

impl TestServer {
    pub async fn start(backend: Backend) -> TestServer {
        Self::start_on(TestDatabase::create(backend).await).await
    }

    /// Starts a server whose configuration `tweak` adjusts (limits, budgets).
    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestServer {
        Self::start_configured(TestDatabase::create(backend).await, tweak).await
    }

    async fn start_on(db: TestDatabase) -> TestServer {
        Self::start_configured(db, |_| {}).await
    }

    async fn start_configured(db: TestDatabase, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let backend = db.backend;
        let database_url = db.url.clone();
        let mut config = Config {
            database_url: database_url.clone(),
            bind: "127.0.0.1:0".into(),
            admin_email: Some(ADMIN_EMAIL.into()),
            admin_password: Some(ADMIN_PASSWORD.into()),
            // Each database's master key lives beside it, not in the working directory.
            data_key_file: Some(db.key_file()),
            ..Config::default()
        };
        tweak(&mut config);
        let server = start(config).await.expect("server starts");
        let base = format!("http://{}", server.addr);
        let client = reqwest::Client::new();
        let mut t = TestServer {
            backend,
            server: Some(server),
            base,
            token: String::new(),
            client,
            db: Some(db),
            database_url,
        };
        t.token = t.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.expect("admin can log in");
        t
    }

    /// Stops the server and starts a new one on the same database.
    pub async fn restart(self) -> TestServer {
        self.restart_with(|_| {}).await
    }

    /// Stops the server and starts a new one on the same database, configured by `tweak`.
    pub async fn restart_with(mut self, tweak: impl FnOnce(&mut Config)) -> TestServer {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
        let db = self.db.take().expect("a server owns its database until it stops");
        Self::start_configured(db, tweak).await
    }

    pub async fn login(&self, email: &str, password: &str) -> Option<String> {
        let r = self
            .client
            .post(format!("{}/auth/login", self.base))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap();
        if !r.status().is_success() {
            return None;
        }
        let body: Value = r.json().await.unwrap();
        body["token"].as_str().map(str::to_string)
    }

    /// Posts a raw body to a path with the admin token; returns status and JSON body.
    pub async fn post_raw(&self, path: &str, body: String) -> (u16, Value) {
        let (status, text) = self.post_text(path, body).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Posts a raw body to a path with the admin token; returns status and the body's text as
    /// sent (for what parsing would hide, such as the order of fields).
    pub async fn post_text(&self, path: &str, body: String) -> (u16, String) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn graphql(&self, path: &str, query: &str, variables: Value) -> Value {
        let (status, body) = self.post_raw(path, json!({"query": query, "variables": variables}).to_string()).await;
        assert!(status == 200, "{path} answered {status}: {body}");
        body
    }

    /// Runs a data API request; returns the whole response (`data` and `errors`).
    pub async fn data(&self, query: &str, variables: Value) -> Value {
        self.graphql("/graphql", query, variables).await
    }

    /// Runs a data API request that must succeed; returns `data`.
    pub async fn data_ok(&self, query: &str, variables: Value) -> Value {
        let r = self.data(query, variables).await;
        assert!(r.get("errors").is_none(), "[{:?}] unexpected errors: {r}", self.backend);
        r["data"].clone()
    }

    pub async fn meta(&self, query: &str, variables: Value) -> Value {
        self.graphql("/graphql/metadata", query, variables).await
    }

    pub async fn meta_ok(&self, query: &str, variables: Value) -> Value {
        let r = self.meta(query, variables).await;
        assert!(r.get("errors").is_none(), "[{:?}] unexpected errors: {r}", self.backend);
        r["data"].clone()
    }

    /// Creates an object with fields given as metadata `FieldInput` JSON objects.
    pub async fn object(&self, name: &str, plural: &str, fields: Vec<Value>) {
        self.meta_ok(
            "mutation($n: String!, $p: String!) { createObject(input: {name: $n, pluralName: $p, label: $n, pluralLabel: $p}) { name } }",
            json!({"n": name, "p": plural}),
        )
        .await;
        for f in fields {
            self.meta_ok(
                "mutation($o: String!, $f: FieldInput!) { createField(object: $o, input: $f) { name } }",
                json!({"o": name, "f": f}),
            )
            .await;
        }
    }

    /// Runs a data API request as the holder of `token`; returns the whole response.
    pub async fn data_as(&self, token: &str, query: &str, variables: Value) -> Value {
        let r = self
            .client
            .post(format!("{}/graphql", self.base))
            .bearer_auth(token)
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        assert!(status == 200, "/graphql answered {status}: {body}");
        body
    }

    /// Like `data_as`, for a request that must succeed; returns `data`.
    pub async fn data_ok_as(&self, token: &str, query: &str, variables: Value) -> Value {
        let r = self.data_as(token, query, variables).await;
        assert!(r.get("errors").is_none(), "[{:?}] unexpected errors: {r}", self.backend);
        r["data"].clone()
    }

    /// Creates a user through the metadata API and signs them in; returns (id, token).
    pub async fn user(&self, email: &str, roles: &[&str], manager: Option<&str>) -> (String, String) {
        let password = "a long enough password";
        let r = self
            .meta_ok(
                "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
                json!({"i": {"email": email, "password": password, "roles": roles, "manager": manager}}),
            )
            .await;
        let id = r["createUser"]["id"].as_str().unwrap().to_string();
        let token = self.login(email, password).await.expect("the new user can sign in");
        (id, token)
    }

    /// Creates a role through the metadata API.
    pub async fn role(&self, name: &str) {
        self.meta_ok("mutation($n: String!) { createRole(input: {name: $n, label: $n}) { name } }", json!({"n": name}))
            .await;
    }

    /// Grants a role an object permission, e.g. `grant("rep", "contact", "read create", "OWN")`.
    pub async fn grant(&self, role: &str, object: &str, actions: &str, scope: &str) {
        let has = |a: &str| actions.split_whitespace().any(|x| x == a);
        self.meta_ok(
            "mutation($r: String!, $o: String!, $i: ObjectPermissionInput!) { setObjectPermission(role: $r, object: $o, input: $i) }",
            json!({"r": role, "o": object, "i": {"read": has("read"), "create": has("create"), "update": has("update"), "delete": has("delete"), "scope": scope}}),
        )
        .await;
    }

    /// Sets a role's access to one field (`HIDDEN`, `READ`, `EDIT`).
    pub async fn field_access(&self, role: &str, object: &str, field: &str, access: &str) {
        self.meta_ok(
            "mutation($r: String!, $o: String!, $f: String!, $a: FieldAccess) { setFieldPermission(role: $r, object: $o, field: $f, access: $a) }",
            json!({"r": role, "o": object, "f": field, "a": access}),
        )
        .await;
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
        if let Some(db) = self.db.take() {
            db.drop_database().await;
        }
    }
}

/// The error codes of a response, in order.
pub fn error_codes(response: &Value) -> Vec<String> {
    response["errors"]
        .as_array()
        .map(|a| a.iter().map(|e| e["extensions"]["code"].as_str().unwrap_or("").to_string()).collect())
        .unwrap_or_default()
}

/// The `fieldErrors` of the first error, as (index, field, code).
pub fn field_errors(response: &Value) -> Vec<(i64, String, String)> {
    response["errors"][0]["extensions"]["fieldErrors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["index"].as_i64().unwrap_or(-1),
                        e["field"].as_str().unwrap_or("").to_string(),
                        e["code"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `body` once per backend, each on a fresh server.
#[macro_export]
macro_rules! each_backend {
    (|$t:ident| $body:block) => {
        for backend in $crate::backends() {
            let $t = $crate::TestServer::start(backend).await;
            $body
            $t.stop().await;
        }
    };
}

impl TestDatabase {
    /// The master key file of this database's tests (in its temporary directory).
    pub fn key_file(&self) -> std::path::PathBuf {
        self._dir.path().join("tessera.key")
    }
}

impl TestServer {
    /// Starts a server on a database made beforehand (whose key file the test knows).
    pub async fn start_on_database(db: TestDatabase) -> TestServer {
        Self::start_on(db).await
    }

    /// The master key file of the server's database.
    pub fn key_file(&self) -> Option<std::path::PathBuf> {
        self.db.as_ref().map(TestDatabase::key_file)
    }
}

/// The `tessera` binary of this build, built first if `cargo test` did not build it.
pub fn tessera_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|deps| deps.parent()).unwrap().to_path_buf();
    let bin = dir.join("tessera");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "-p", "tessera-platform", "--bin", "tessera"])
            .status()
            .unwrap();
        assert!(status.success(), "building the tessera binary");
    }
    bin
}

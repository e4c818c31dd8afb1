//! `spawn_app()`: the real server on 127.0.0.1:0, a fresh database (a SQLite file, or a schema of
//! its own on the real PostgreSQL: see `crate::BACKEND`), a manual clock.

use std::sync::Arc;
use std::time::Duration;

use keyward_core::crypto::MasterKey;
use keyward_runtime::ManualClock;
use keyward_server::config::Config;
use keyward_server::master_key::OperatorToken;
use keyward_server::{Deps, Keyward};
use keyward_store::Store;
use keyward_store_postgres::PostgresStore;
use keyward_store_sqlite::SqliteStore;
use reqwest::StatusCode;
use serde_json::{json, Value};
use time::macros::datetime;
use time::OffsetDateTime;

/// Where every test's clock starts.
pub const START: OffsetDateTime = datetime!(2030-01-01 00:00:00 UTC);

pub struct TestApp {
    pub base_url: String,
    pub client: reqwest::Client,
    pub operator_token: String,
    pub clock: Arc<ManualClock>,
    pub keyward: Arc<Keyward>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    _database: TestDatabase,
}

/// Which backend a test binary runs the HTTP suite on.
#[allow(dead_code, reason = "each test binary uses one of them")]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database of one test, removed when the test ends.
enum TestDatabase {
    Sqlite(#[allow(dead_code, reason = "kept for its Drop")] tempfile::TempDir),
    Postgres { schema: String },
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Self::Postgres { schema } = self {
            // Not on this thread: the test's server may still hold a lock in the schema, and its
            // tasks run on this very thread. Whatever a finished process leaves, the next run drops.
            let sql = format!("SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS {schema} CASCADE");
            std::thread::spawn(move || drop_schemas(&sql));
        }
    }
}

fn drop_schemas(sql: &str) {
    let _ = std::process::Command::new("psql").args([&postgres_server_url("test"), "-qc", sql]).output();
}

/// Drops the schemas of earlier runs whose process has ended.
fn drop_schemas_of_finished_runs() {
    let listed = std::process::Command::new("psql")
        .args([&postgres_server_url("test"), "-tAc", "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'it\\_%'"])
        .output();
    let Ok(listed) = listed else { return };
    for schema in String::from_utf8_lossy(&listed.stdout).lines() {
        let pid = schema.split('_').nth(1).and_then(|pid| pid.parse::<u32>().ok());
        if pid.is_some_and(|pid| pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()) {
            drop_schemas(&format!("SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS {schema} CASCADE"));
        }
    }
}

fn postgres_server_url(database: &str) -> String {
    let server = std::env::var("KEYWARD_TEST_POSTGRES_SERVER")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned());
    format!("{server}/{database}")
}

/// A fresh, migrated store on the backend of this test binary.
async fn fresh_store() -> (Arc<dyn Store>, TestDatabase) {
    match crate::BACKEND {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let store =
                SqliteStore::open(dir.path().join("keyward.db").to_str().expect("utf-8 path")).expect("open store");
            store.migrate().await.expect("migrate");
            (Arc::new(store), TestDatabase::Sqlite(dir))
        }
        Backend::Postgres => {
            // A schema per test: creating one is instant, where a database takes a second.
            static CLEANED: std::sync::Once = std::sync::Once::new();
            static CREATED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            CLEANED.call_once(drop_schemas_of_finished_runs);
            let n = CREATED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let schema = format!("it_{}_{n}_{}", std::process::id(), rand::random::<u32>());
            let created = std::process::Command::new("psql")
                .args([&postgres_server_url("test"), "-qc", &format!("CREATE SCHEMA {schema}")])
                .output()
                .expect("psql runs");
            assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
            let url = format!("{}?options=-csearch_path%3D{schema}", postgres_server_url("test"));
            let store = PostgresStore::connect(&url).expect("connect");
            store.migrate().await.expect("migrate");
            (Arc::new(store), TestDatabase::Postgres { schema })
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Config::default()).await
}

pub async fn spawn_app_with(config: Config) -> TestApp {
    let (store, database) = fresh_store().await;
    let master_key = MasterKey::generate(&mut rand::rngs::OsRng);
    let operator_token = format!("kwop_test_{}", keyward_core::base62::random_string(&mut rand::rngs::OsRng, 32));
    let clock = Arc::new(ManualClock::new(START));
    let keyward = Keyward::new(Deps {
        operator_token: OperatorToken::given(&master_key.clone().into(), &operator_token),
        config,
        store,
        keyring: master_key.into(),
        clock: clock.clone(),
        shared: None,
        node_id: "test".to_owned(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base_url = format!("http://{}", listener.local_addr().expect("addr"));
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(keyward_server::serve(listener, keyward.clone(), async move {
        let _ = stopped.await;
    }));
    let server = tokio::spawn(async move {
        server.await.expect("server task").expect("server");
    });
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if client.get(format!("{base_url}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    TestApp {
        base_url,
        client,
        operator_token,
        clock,
        keyward,
        shutdown: Some(shutdown),
        server: Some(server),
        _database: database,
    }
}

/// A response's status and JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub content_type: String,
    pub body: Value,
}

impl Answer {
    /// Asserts a problem+json error with this status and code.
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "{:#}", self.body);
        assert_eq!(self.body["code"], code, "{:#}", self.body);
        assert_eq!(self.body["status"], status);
        assert_eq!(self.content_type, "application/problem+json");
    }

    /// The message of the error on `field`.
    pub fn field_error(&self, field: &str) -> Option<String> {
        self.body["errors"]
            .as_array()?
            .iter()
            .find(|e| e["field"] == field)
            .and_then(|e| e["message"].as_str().map(str::to_owned))
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.expect("request");
        let status = response.status();
        let content_type =
            response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer { status, content_type, body }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(self.client.get(self.url(path)).bearer_auth(&self.operator_token)).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.send(self.client.post(self.url(path)).bearer_auth(&self.operator_token).json(body)).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Answer {
        self.send(self.client.patch(self.url(path)).bearer_auth(&self.operator_token).json(body)).await
    }

    pub async fn create_org(&self, name: &str) -> String {
        let answer = self.post("/v1/orgs", &json!({ "name": name })).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{:#}", answer.body);
        answer.body["id"].as_str().expect("org id").to_owned()
    }

    /// An org with sender `+14155550100` and `+14155550101`, channels `marketing`, `alerts`, `test-devices`.
    pub async fn create_org_with_senders(&self) -> String {
        let org = self.create_org("Acme").await;
        for number in ["+14155550100", "+14155550101"] {
            let answer = self.post(&format!("/v1/orgs/{org}/phone-numbers"), &json!({ "number": number })).await;
            assert_eq!(answer.status, StatusCode::CREATED, "{:#}", answer.body);
        }
        for slug in ["marketing", "alerts", "test-devices"] {
            let answer = self.post(&format!("/v1/orgs/{org}/channels"), &json!({ "slug": slug, "name": slug })).await;
            assert_eq!(answer.status, StatusCode::CREATED, "{:#}", answer.body);
        }
        org
    }

    /// Creates a key and returns the whole 201 body (`key`, `secret`, `signing_secret`).
    pub async fn create_key(&self, org: &str, body: &Value) -> Value {
        let answer = self.post(&format!("/v1/orgs/{org}/keys"), body).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{:#}", answer.body);
        answer.body
    }

    /// `POST /v1/verify`; asserts the HTTP status is 200 and returns the decision.
    pub async fn verify(&self, body: &Value) -> Value {
        let answer = self.post("/v1/verify", body).await;
        assert_eq!(answer.status, StatusCode::OK, "{:#}", answer.body);
        answer.body
    }

    /// Stops the server gracefully (flushing last-used times).
    pub async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server stopped");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// The password of every member the tests add.
pub const PASSWORD: &str = "correct horse battery staple";

/// How a request authenticates.
#[derive(Debug, Clone)]
pub enum Auth {
    /// `Authorization: Bearer <operator token>`.
    Operator,
    /// A console session: `Cookie: keyward_session=…` and, on every request, its `X-CSRF-Token`.
    Session { cookie: String, csrf: String },
    /// `Authorization: Bearer <key>`.
    Bearer(String),
    /// `X-API-Key: <key>`.
    ApiKey(String),
    /// No credential at all.
    Anonymous,
}

/// A successful login: the cookie pair to send back, the CSRF token, the raw `Set-Cookie` and body.
#[derive(Debug, Clone)]
pub struct Login {
    pub cookie: String,
    pub csrf: String,
    pub set_cookie: String,
    pub body: Value,
}

impl Login {
    pub fn auth(&self) -> Auth {
        Auth::Session { cookie: self.cookie.clone(), csrf: self.csrf.clone() }
    }
}

impl TestApp {
    /// Adds the credential of `auth` to a request.
    pub fn authed(&self, request: reqwest::RequestBuilder, auth: &Auth) -> reqwest::RequestBuilder {
        match auth {
            Auth::Operator => request.bearer_auth(&self.operator_token),
            Auth::Session { cookie, csrf } => request.header("cookie", cookie).header("x-csrf-token", csrf),
            Auth::Bearer(key) => request.bearer_auth(key),
            Auth::ApiKey(key) => request.header("x-api-key", key),
            Auth::Anonymous => request,
        }
    }

    /// Sends `method path` (with an optional JSON body) as `auth`.
    pub async fn call(&self, auth: &Auth, method: reqwest::Method, path: &str, body: Option<&Value>) -> Answer {
        let mut request = self.client.request(method, self.url(path));
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send(self.authed(request, auth)).await
    }

    /// Like [`TestApp::send`], also returning the response headers.
    pub async fn send_with_headers(&self, request: reqwest::RequestBuilder) -> (Answer, reqwest::header::HeaderMap) {
        let response = request.send().await.expect("request");
        let status = response.status();
        let headers = response.headers().clone();
        let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (Answer { status, content_type, body }, headers)
    }

    /// Adds a member with [`PASSWORD`] as the operator; returns its id.
    pub async fn add_member(&self, org: &str, email: &str, role: &str) -> String {
        let answer = self
            .post(&format!("/v1/orgs/{org}/members"), &json!({ "email": email, "password": PASSWORD, "role": role }))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{:#}", answer.body);
        answer.body["id"].as_str().expect("member id").to_owned()
    }

    /// `POST /v1/session` as is: the answer and its headers.
    pub async fn try_login(&self, email: &str, password: &str) -> (Answer, reqwest::header::HeaderMap) {
        self.send_with_headers(
            self.client.post(self.url("/v1/session")).json(&json!({ "email": email, "password": password })),
        )
        .await
    }

    /// Logs in with [`PASSWORD`] and asserts it worked.
    pub async fn login(&self, email: &str) -> Login {
        let (answer, headers) = self.try_login(email, PASSWORD).await;
        assert_eq!(answer.status, StatusCode::OK, "{:#}", answer.body);
        login_from(&answer, &headers)
    }

    /// Adds a member and logs it in.
    pub async fn member_session(&self, org: &str, email: &str, role: &str) -> (String, Login) {
        let id = self.add_member(org, email, role).await;
        (id, self.login(email).await)
    }

    /// Creates a key with these scopes as the operator; returns `(key id, secret)`.
    pub async fn key_with_scopes(&self, org: &str, name: &str, scopes: &[&str]) -> (String, String) {
        let created = self.create_key(org, &json!({ "name": name, "scopes": scopes })).await;
        (created["key"]["id"].as_str().expect("id").to_owned(), created["secret"].as_str().expect("secret").to_owned())
    }

    /// Every audit event of an org, newest first, as the API shows them (operator, one page of 100).
    pub async fn audit_events(&self, org: &str) -> Vec<Value> {
        let answer = self.get(&format!("/v1/orgs/{org}/audit?limit=100")).await;
        assert_eq!(answer.status, StatusCode::OK, "{:#}", answer.body);
        assert_eq!(answer.body["next_cursor"], Value::Null, "more than 100 events");
        answer.body["data"].as_array().expect("data").clone()
    }

    /// How many audit events the org's chain holds, read from the store.
    pub async fn audit_count(&self, org: &str) -> usize {
        let org = keyward_core::ids::OrgId::parse(org).expect("org id");
        self.keyward.store.org(&org).audit_chain().await.expect("audit chain").len()
    }
}

/// The cookie pair (`keyward_session=…`) and CSRF token of a successful login answer.
pub fn login_from(answer: &Answer, headers: &reqwest::header::HeaderMap) -> Login {
    let set_cookie = headers.get("set-cookie").and_then(|v| v.to_str().ok()).expect("set-cookie").to_owned();
    let cookie = set_cookie.split(';').next().expect("cookie pair").trim().to_owned();
    let csrf = answer.body["csrf_token"].as_str().expect("csrf_token").to_owned();
    Login { cookie, csrf, set_cookie, body: answer.body.clone() }
}

//! A real keyward server on 127.0.0.1:0 (keyward-server's `serve`, on a SQLite file of its own
//! or a schema of its own on the real PostgreSQL, set up as `keyward serve` sets it up: master
//! key file and check, operator token), its JSON API, and a small axum app behind the layer
//! under test, also on a real port.

#![allow(dead_code, reason = "each test binary uses part of the harness")]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use keyward_core::crypto::MasterKey;
use keyward_runtime::{Clock as _, SystemClock};
use keyward_server::config::Config;
use keyward_server::master_key::{self, KeyringFile, KeyringSource, KeyringText, OperatorToken};
use keyward_server::net::{self, ConnectionRules};
use keyward_server::tls::Tls;
use keyward_server::{secrets, Deps, Keyward};
use keyward_store::Store;
use keyward_store_postgres::PostgresStore;
use keyward_store_sqlite::SqliteStore;
use keyward_tower::{KeyChannels, KeywardLayer, VerifiedKey};
use serde_json::{json, Value};

pub struct TestKeyward {
    /// Plain HTTP, for the harness's own calls (and the layer under test when there is no TLS).
    pub base_url: String,
    /// `https://localhost:port` when started with [`TestKeyward::start_with_tls`]: the listener
    /// `keyward serve` runs with `tls_cert` / `tls_key`.
    pub https_url: Option<String>,
    pub operator_token: String,
    pub master_key_base64: String,
    /// The server's state, for what the JSON API does not do (a master key rotation).
    pub state: Arc<Keyward>,
    source: Arc<dyn KeyringSource>,
    database_url: String,
    /// The SQLite file (in a temporary directory removed with this).
    db_path: Option<PathBuf>,
    pub client: reqwest::Client,
    shutdown: Option<tokio::sync::watch::Sender<bool>>,
    server: Option<tokio::task::JoinHandle<()>>,
    _database: TestDatabase,
}

/// A server certificate chain and its key, as PEM.
pub struct TlsPair {
    pub chain_pem: String,
    pub key_pem: String,
}

/// A database of one test, removed when the test ends.
enum TestDatabase {
    Sqlite(#[allow(dead_code, reason = "kept for its Drop")] tempfile::TempDir),
    Postgres { schema: String },
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Self::Postgres { schema } = self {
            // On a thread of its own: this one may be a runtime worker the server's last tasks need.
            let sql = format!("SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS {schema} CASCADE");
            let _ = std::thread::spawn(move || psql(&sql)).join();
        }
    }
}

fn postgres_server() -> String {
    std::env::var("KEYWARD_TEST_POSTGRES_SERVER").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

fn psql(sql: &str) -> std::process::Output {
    std::process::Command::new("psql")
        .args([&format!("{}/test", postgres_server()), "-qc", sql])
        .output()
        .expect("psql runs")
}

/// Drops the schemas earlier runs left behind (a run that was killed).
fn drop_schemas_of_finished_runs() {
    let listed = std::process::Command::new("psql")
        .args([
            &format!("{}/test", postgres_server()),
            "-tAc",
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tower\\_%'",
        ])
        .output()
        .expect("psql runs");
    for schema in String::from_utf8_lossy(&listed.stdout).lines() {
        let pid = schema.split('_').nth(1).and_then(|pid| pid.parse::<u32>().ok());
        if pid.is_some_and(|pid| pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()) {
            psql(&format!("SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS {schema} CASCADE"));
        }
    }
}

impl TestKeyward {
    /// keyward on a SQLite file of its own.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db_path = dir.path().join("keyward.db");
        let database_url = format!("sqlite://{}", db_path.display());
        let store = SqliteStore::open(&database_url).expect("open store");
        Self::serve(Arc::new(store), database_url, Some(db_path), TestDatabase::Sqlite(dir), None).await
    }

    /// keyward on a SQLite file of its own, serving HTTPS with `tls` as `keyward serve` does with
    /// `tls_cert` / `tls_key` (the files written beside the database, read by the server's own
    /// TLS set-up) at [`TestKeyward::https_url`]. The same app is also served in plain HTTP on
    /// loopback at `base_url`, for the harness's calls.
    pub async fn start_with_tls(tls: &TlsPair) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db_path = dir.path().join("keyward.db");
        let database_url = format!("sqlite://{}", db_path.display());
        let store = SqliteStore::open(&database_url).expect("open store");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, &tls.chain_pem).expect("write tls_cert");
        std::fs::write(&key, &tls.key_pem).expect("write tls_key");
        let files = (cert, key);
        Self::serve(Arc::new(store), database_url, Some(db_path), TestDatabase::Sqlite(dir), Some(files)).await
    }

    /// keyward on a schema of its own on the real PostgreSQL.
    pub async fn start_on_postgres() -> Self {
        static CLEANED: std::sync::Once = std::sync::Once::new();
        CLEANED.call_once(drop_schemas_of_finished_runs);
        let schema = format!("tower_{}_{}", std::process::id(), rand::random::<u32>());
        let created = psql(&format!("CREATE SCHEMA {schema}"));
        assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
        let database_url = format!("{}/test?options=-csearch_path%3D{schema}", postgres_server());
        let store = PostgresStore::connect(&database_url).expect("connect");
        Self::serve(Arc::new(store), database_url, None, TestDatabase::Postgres { schema }, None).await
    }

    async fn serve(
        store: Arc<dyn Store>,
        database_url: String,
        db_path: Option<PathBuf>,
        database: TestDatabase,
        tls_files: Option<(PathBuf, PathBuf)>,
    ) -> Self {
        store.migrate().await.expect("migrate");
        // What `keyward serve` does on a first start: the key file beside a SQLite database (or the
        // keyring in a variable), registered as the database's first master key version.
        let master_key = MasterKey::generate(&mut rand::rngs::OsRng);
        let master_key_base64 = master_key.to_base64();
        let source: Arc<dyn KeyringSource> = match &db_path {
            Some(db_path) => {
                let path = secrets::master_key_file(db_path);
                std::fs::write(&path, &master_key_base64).expect("write master key file");
                Arc::new(KeyringFile::new(path))
            }
            None => Arc::new(KeyringText::new("KEYWARD_MASTER_KEY", master_key_base64.clone())),
        };
        let keyring = source.load().expect("keyring");
        let keyring =
            master_key::reconcile(store.as_ref(), keyring, true, SystemClock.now()).await.expect("first master key");
        let operator_token = format!("kwop_test_{}", keyward_core::base62::random_string(&mut rand::rngs::OsRng, 32));
        // No drain on shutdown: a test that stops keyward wants it gone at once.
        let toml = match &tls_files {
            Some((cert, key)) => {
                format!("shutdown_drain_seconds = 0\ntls_cert = {:?}\ntls_key = {:?}\n", cert.display(), key.display())
            }
            None => "shutdown_drain_seconds = 0\n".to_owned(),
        };
        let config = Config::from_toml(&toml).expect("config");
        let tls = config.tls.as_ref().map(|files| Arc::new(Tls::load(files).expect("keyward's TLS set-up")));
        let plain_rules = ConnectionRules::from_config(&config, None);
        let keyward = Keyward::new(Deps {
            operator_token: OperatorToken::given(&keyring, &operator_token),
            config,
            store,
            keyring,
            clock: Arc::new(SystemClock),
            shared: None,
            node_id: "tower-test".to_owned(),
        });
        keyward.master_keys.set_source(Arc::clone(&source));
        let state = Arc::clone(&keyward);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("addr");
        let (shutdown, stopped) = tokio::sync::watch::channel(false);
        let stop = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let (base_url, https_url, server) = match tls {
            // Plain HTTP: `keyward serve` without TLS.
            None => {
                let server = tokio::spawn(keyward_server::serve(listener, keyward, stop(stopped)));
                (format!("http://{address}"), None, server)
            }
            // HTTPS as `keyward serve` runs it with tls_cert / tls_key, and the same app in plain
            // HTTP on a second loopback listener for the harness (reqwest here has no TLS).
            Some(tls) => {
                let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                let base_url = format!("http://{}", plain.local_addr().expect("addr"));
                let app = keyward_server::build_app(Arc::clone(&keyward));
                // No verify door of its own: the layer under test asks the TLS listener.
                tokio::spawn(net::serve_connections(plain, app, None, plain_rules, stop(stopped.clone()), || {}));
                let server = tokio::spawn(keyward_server::serve_with_tls(listener, keyward, Some(tls), stop(stopped)));
                (base_url, Some(format!("https://localhost:{}", address.port())), server)
            }
        };
        let server = tokio::spawn(async move { server.await.expect("server task").expect("keyward serves") });
        let client = reqwest::Client::new();
        let ready = async {
            while !client.get(format!("{base_url}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), ready).await.expect("keyward became ready");
        Self {
            base_url,
            https_url,
            operator_token,
            master_key_base64,
            state,
            source,
            database_url,
            db_path,
            client,
            shutdown: Some(shutdown),
            server: Some(server),
            _database: database,
        }
    }

    /// `keyward master-key rotate`: a new key in the key file, made current in the database. The
    /// server switches to it within a second (its follower polls the versions).
    pub async fn rotate_master_key(&self) -> u32 {
        let keyring = self.state.verifier.keyring();
        let rotated = master_key::rotate(self.state.store.as_ref(), &keyring, self.source.as_ref(), SystemClock.now())
            .await
            .expect("rotate");
        rotated.to
    }

    pub fn master_key(&self) -> MasterKey {
        MasterKey::from_base64(&self.master_key_base64).expect("master key")
    }

    pub fn database_url(&self) -> String {
        self.database_url.clone()
    }

    /// The directory of the SQLite file.
    pub fn db_dir(&self) -> &Path {
        self.db_path.as_deref().and_then(Path::parent).expect("a SQLite database in a directory")
    }

    /// keyward stops serving and closes its listener.
    pub async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(true);
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(10), server).await.expect("keyward stopped").expect("server task");
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> (u16, Value) {
        let mut request =
            self.client.request(method, format!("{}{path}", self.base_url)).bearer_auth(&self.operator_token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("keyward answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn create_org(&self) -> String {
        let (status, body) = self.call(reqwest::Method::POST, "/v1/orgs", Some(&json!({ "name": "Acme" }))).await;
        assert_eq!(status, 201, "{body:#}");
        body["id"].as_str().expect("org id").to_owned()
    }

    pub async fn add_channel(&self, org: &str, slug: &str) {
        let path = format!("/v1/orgs/{org}/channels");
        let (status, body) =
            self.call(reqwest::Method::POST, &path, Some(&json!({ "slug": slug, "name": slug }))).await;
        assert_eq!(status, 201, "{body:#}");
    }

    /// A new key with these settings: its id and secret.
    pub async fn create_key(&self, org: &str, settings: &Value) -> (String, String) {
        let path = format!("/v1/orgs/{org}/keys");
        let (status, body) = self.call(reqwest::Method::POST, &path, Some(settings)).await;
        assert_eq!(status, 201, "{body:#}");
        (body["key"]["id"].as_str().expect("id").to_owned(), body["secret"].as_str().expect("secret").to_owned())
    }

    pub async fn revoke(&self, org: &str, key_id: &str) {
        let path = format!("/v1/orgs/{org}/keys/{key_id}/revoke");
        let (status, body) = self.call(reqwest::Method::POST, &path, Some(&json!({}))).await;
        assert_eq!(status, 200, "{body:#}");
        assert_eq!(body["key"]["status"], "revoked", "{body:#}");
    }

    pub async fn key(&self, org: &str, key_id: &str) -> Value {
        let (status, body) = self.call(reqwest::Method::GET, &format!("/v1/orgs/{org}/keys/{key_id}"), None).await;
        assert_eq!(status, 200, "{body:#}");
        body["key"].clone()
    }
}

impl Drop for TestKeyward {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(true);
        }
    }
}

/// What the handler saw in the request extension, echoed as JSON.
async fn whoami(key: VerifiedKey) -> Json<Value> {
    let channels = match key.channels() {
        KeyChannels::All => json!("all"),
        KeyChannels::Only(list) => json!(list),
    };
    Json(json!({
        "id": key.id(),
        "org_id": key.org_id(),
        "name": key.name(),
        "scopes": key.scopes(),
        "channels": channels,
        "environment": key.environment(),
        "prefix": key.prefix(),
        "rate_limit": key.rate_limit().limit,
    }))
}

/// The platform's own app: `/whoami` behind `layer`, `/healthz` outside it.
pub fn app(layer: KeywardLayer) -> Router {
    Router::new().route("/whoami", get(whoami)).route_layer(layer).route("/healthz", get(|| async { "ok" }))
}

/// The app served on 127.0.0.1:0 with connect info (client IPs); its base URL.
pub async fn serve_app(layer: KeywardLayer) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base_url = format!("http://{}", listener.local_addr().expect("addr"));
    let app = app(layer).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await.expect("app serves") });
    base_url
}

/// A response of the app: status, a few headers, and the JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub retry_after: Option<String>,
    pub rate_limit: Option<String>,
    pub body: Value,
}

impl Answer {
    /// Asserts keyward's problem+json refusal with this status and code.
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{self:#?}");
        assert_eq!(self.content_type, "application/problem+json", "{self:#?}");
        assert_eq!(self.body["status"], status, "{self:#?}");
        assert_eq!(self.body["code"], code, "{self:#?}");
    }
}

/// `GET {app}/whoami` with these headers.
pub async fn whoami_with(app: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = reqwest::Client::new().get(format!("{app}/whoami"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("the app answers");
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let content_type = header("content-type").unwrap_or_default();
    let retry_after = header("retry-after");
    let rate_limit = header("ratelimit-limit");
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    Answer { status, content_type, retry_after, rate_limit, body }
}

pub async fn whoami_bearer(app: &str, key: &str) -> Answer {
    whoami_with(app, &[("authorization", &format!("Bearer {key}"))]).await
}

/// A throw-away certificate authority, made at test time.
pub struct TestCa {
    pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let key = rcgen::KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        Self { pem: cert.pem(), issuer: rcgen::Issuer::new(params, key) }
    }

    /// The CA's certificate, as a client trusts it.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A server certificate for `localhost` signed by this CA, with the chain up to it.
    pub fn server_pair(&self) -> TlsPair {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("leaf params");
        params.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf certificate");
        TlsPair { chain_pem: format!("{}{}", cert.pem(), self.pem), key_pem: key.serialize_pem() }
    }
}

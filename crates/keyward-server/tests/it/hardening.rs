//! Faults and hostile input (issue 12): a locked or failing database answers 503, never 500;
//! two credentials at once, invisible names and out-of-range numbers are field errors; the HTTP
//! layer's own refusals are problem+json; slow clients are cut off; login throttling cannot lock
//! an owner out; SIGTERM drains.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward_core::crypto::MasterKey;
use keyward_runtime::ManualClock;
use keyward_server::config::Config;
use keyward_server::master_key::OperatorToken;
use keyward_server::{Deps, Keyward};
use keyward_store::Store;
use keyward_store_sqlite::SqliteStore;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::support::{spawn_app, spawn_app_with, Answer, START};

/// A server over a SQLite file this test can reach from outside (to lock it or add a trigger).
struct FileApp {
    base_url: String,
    operator_token: String,
    client: reqwest::Client,
    database: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

impl FileApp {
    async fn start(config: Config) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let database = dir.path().join("k.db");
        let store = SqliteStore::open(database.to_str().expect("utf-8 path")).expect("open store");
        store.migrate().await.expect("migrate");
        let master_key = MasterKey::generate(&mut rand::rngs::OsRng);
        let operator_token = format!("kwop_test_{}", keyward_core::base62::random_string(&mut rand::rngs::OsRng, 32));
        let keyward = Keyward::new(Deps {
            operator_token: OperatorToken::given(&master_key.clone().into(), &operator_token),
            config,
            store: Arc::new(store) as Arc<dyn Store>,
            keyring: master_key.into(),
            clock: Arc::new(ManualClock::new(START)),
            shared: None,
            node_id: "test".to_owned(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base_url = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(keyward_server::serve(listener, keyward, async move {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::new();
        wait_ready(&client, &base_url).await;
        Self { base_url, operator_token, client, database, stop: Some(stop), server, _dir: dir }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    async fn post(&self, path: &str, body: &Value) -> Answer {
        answer(self.client.post(self.url(path)).bearer_auth(&self.operator_token).json(body)).await
    }

    async fn get(&self, path: &str) -> Answer {
        answer(self.client.get(self.url(path)).bearer_auth(&self.operator_token)).await
    }

    fn address(&self) -> String {
        self.base_url.trim_start_matches("http://").to_owned()
    }
}

async fn wait_ready(client: &reqwest::Client, base_url: &str) {
    for _ in 0..200 {
        if client.get(format!("{base_url}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{base_url} never became ready");
}

async fn answer(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("request");
    let status = response.status();
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer { status, content_type, body }
}

/// Another process holding an exclusive `fcntl` lock on bytes 120–127 of `<db>-shm` (the WAL
/// index's lock bytes), as a stuck or hostile process would. Released on drop.
struct ShmLock(Child);

impl ShmLock {
    fn take(database: &Path) -> Self {
        let shm = format!("{}-shm", database.display());
        let script = "import fcntl, os, sys\n\
                      fd = os.open(sys.argv[1], os.O_RDWR)\n\
                      fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 8, 120, 0)\n\
                      print('locked', flush=True)\n\
                      sys.stdin.read()\n";
        let mut child = Command::new("python3")
            .args(["-c", script, &shm])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().expect("stdout")), &mut line)
            .expect("read");
        assert_eq!(line.trim(), "locked", "the helper could not lock {shm}");
        Self(child)
    }
}

impl Drop for ShmLock {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs SQL on the database file from outside the server (python's sqlite3, as an operator's
/// tool would).
fn sqlite_exec(database: &Path, sql: &str) {
    let script = "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\nc.executescript(sys.argv[2])\nc.close()\n";
    let output = Command::new("python3")
        .args(["-c", script, database.to_str().expect("utf-8"), sql])
        .output()
        .expect("python3 runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

#[tokio::test]
async fn a_locked_wal_index_answers_503_service_unavailable_not_500() {
    let app = FileApp::start(Config::default()).await;
    let org = app.post("/v1/orgs", &json!({ "name": "Acme" })).await.body["id"].as_str().expect("org").to_owned();
    let lock = ShmLock::take(&app.database);
    let started = Instant::now();
    let answer = app.post(&format!("/v1/orgs/{org}/keys"), &json!({ "name": "during the fault" })).await;
    let waited = started.elapsed();
    answer.assert_problem(503, "SERVICE_UNAVAILABLE");
    assert!(!answer.body.to_string().contains("locking"), "no internal detail: {}", answer.body);
    assert!(waited < Duration::from_secs(15), "the wait is bounded: {waited:?}");
    drop(lock);
    // The fault passes, the service is back, and the refused change was not applied.
    let listed = app.get(&format!("/v1/orgs/{org}/keys")).await;
    assert_eq!(listed.status, StatusCode::OK, "{:#}", listed.body);
    assert_eq!(listed.body["data"], json!([]));
}

#[tokio::test]
async fn when_the_audit_insert_fails_the_change_is_not_applied_and_the_caller_gets_503() {
    let app = FileApp::start(Config::default()).await;
    let org = app.post("/v1/orgs", &json!({ "name": "Acme" })).await.body["id"].as_str().expect("org").to_owned();
    let created = app.post(&format!("/v1/orgs/{org}/keys"), &json!({ "name": "before" })).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:#}", created.body);
    let id = created.body["key"]["id"].as_str().expect("id").to_owned();
    sqlite_exec(
        &app.database,
        "CREATE TRIGGER audit_refuses BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'audit storage refused'); END;",
    );

    let answer = app.post(&format!("/v1/orgs/{org}/keys"), &json!({ "name": "unaudited" })).await;
    answer.assert_problem(503, "SERVICE_UNAVAILABLE");
    let answer = app.post(&format!("/v1/orgs/{org}/keys/{id}/revoke"), &json!({})).await;
    answer.assert_problem(503, "SERVICE_UNAVAILABLE");
    assert!(!answer.body.to_string().contains("audit storage refused"), "{}", answer.body);

    sqlite_exec(&app.database, "DROP TRIGGER audit_refuses;");
    let listed = app.get(&format!("/v1/orgs/{org}/keys")).await;
    let names: Vec<&str> =
        listed.body["data"].as_array().expect("data").iter().filter_map(|k| k["name"].as_str()).collect();
    assert_eq!(names, ["before"], "no unaudited key");
    let got = app.get(&format!("/v1/orgs/{org}/keys/{id}")).await;
    assert_eq!(got.body["key"]["status"], "active", "the unaudited revoke was not applied");
}

#[tokio::test]
async fn two_credentials_at_once_are_refused_on_management_and_verify() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let (_, key) = app.key_with_scopes(&org, "manager", &["keys:read"]).await;
    let keys = app.url(&format!("/v1/orgs/{org}/keys"));
    let operator = format!("Bearer {}", app.operator_token);
    let key_bearer = format!("Bearer {key}");
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("operator bearer plus X-API-Key", vec![("authorization", &operator), ("x-api-key", &key)]),
        ("two Authorization headers", vec![("authorization", &operator), ("authorization", &key_bearer)]),
        (
            "key bearer plus operator X-API-Key",
            vec![("authorization", &key_bearer), ("x-api-key", &app.operator_token)],
        ),
        ("two X-API-Key headers", vec![("x-api-key", &key), ("x-api-key", &key)]),
    ];
    for (case, headers) in &cases {
        let mut list = app.client.get(&keys);
        let mut verify = app.client.post(app.url("/v1/verify")).json(&json!({ "key": key }));
        for (name, value) in headers {
            list = list.header(*name, *value);
            verify = verify.header(*name, *value);
        }
        let answer = app.send(list).await;
        answer.assert_problem(400, "VALIDATION_FAILED");
        assert!(answer.body["detail"].as_str().unwrap_or("").contains("one credential"), "{case}: {:#}", answer.body);
        app.send(verify).await.assert_problem(400, "VALIDATION_FAILED");
    }
    // One credential still works both ways.
    assert_eq!(app.send(app.client.get(&keys).header("x-api-key", &key)).await.status, StatusCode::OK);
    assert_eq!(app.send(app.client.get(&keys).bearer_auth(&key)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn names_of_invisible_characters_or_with_bidirectional_controls_are_field_errors() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let bad = [
        "\u{200B}\u{200B}",
        "\u{200B}\u{200C}\u{200D}\u{2060}\u{FEFF}",
        "\u{2800}",
        "\u{3164}\u{115F}",
        "admin\u{202E}txt.exe",
        "\u{2066}Acme\u{2069}",
        "a\u{202A}b",
    ];
    for name in bad {
        let answer = app.post(&format!("/v1/orgs/{org}/keys"), &json!({ "name": name })).await;
        answer.assert_problem(400, "VALIDATION_FAILED");
        assert!(answer.field_error("name").is_some(), "key name {name:?}: {:#}", answer.body);
        let answer = app.post("/v1/orgs", &json!({ "name": name })).await;
        answer.assert_problem(400, "VALIDATION_FAILED");
        assert!(answer.field_error("name").is_some(), "org name {name:?}: {:#}", answer.body);
        let answer = app.post(&format!("/v1/orgs/{org}/channels"), &json!({ "slug": "ok", "name": name })).await;
        answer.assert_problem(400, "VALIDATION_FAILED");
        assert!(answer.field_error("name").is_some(), "channel name {name:?}: {:#}", answer.body);
    }
    // Visible names with an inner zero-width joiner (emoji, scripts that need it) are fine.
    let created = app.create_key(&org, &json!({ "name": "deploy 👩\u{200D}💻" })).await;
    assert_eq!(created["key"]["name"], "deploy 👩\u{200D}💻");
    app.create_org("Ünïcode Org").await;
}

#[tokio::test]
async fn an_out_of_range_number_names_its_field() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    for body in [r#"{"name": "k", "rate_limit": 1e400}"#, r#"{"name": "k", "rate_limit": -1e400}"#] {
        let request = app
            .client
            .post(app.url(&format!("/v1/orgs/{org}/keys")))
            .bearer_auth(&app.operator_token)
            .header("content-type", "application/json")
            .body(body);
        let answer = app.send(request).await;
        answer.assert_problem(400, "VALIDATION_FAILED");
        assert!(answer.field_error("rate_limit").is_some(), "{body}: {:#}", answer.body);
    }
}

/// Sends raw bytes and reads the answer until the server closes or `limit` passes:
/// `(status, head, body)`; status 0 when nothing came back.
async fn raw_exchange(address: &str, request: &[u8], limit: Duration) -> (u16, String, String) {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    // The server may answer (and close) before it has read everything: ignore write errors.
    let _ = stream.write_all(request).await;
    let mut received = Vec::new();
    let _ = tokio::time::timeout(limit, async {
        let mut buffer = vec![0_u8; 16 * 1024];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    received.extend_from_slice(&buffer[..n]);
                    if response_complete(&received) {
                        break;
                    }
                }
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&received).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

fn response_complete(received: &[u8]) -> bool {
    let text = String::from_utf8_lossy(received);
    let Some((head, body)) = text.split_once("\r\n\r\n") else { return false };
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok())?
    });
    length.is_some_and(|length| body.len() >= length)
}

fn assert_problem_answer(case: &str, (status, head, body): &(u16, String, String), expected: u16) {
    assert_eq!(*status, expected, "{case}: {head}");
    assert!(head.to_ascii_lowercase().contains("content-type: application/problem+json"), "{case}: {head}");
    let body: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("{case}: not JSON: {body:?}"));
    assert_eq!(body["status"], expected, "{case}: {body}");
    assert!(body["code"].is_string() && body["detail"].is_string(), "{case}: {body}");
}

#[tokio::test]
async fn the_http_layers_own_refusals_are_problem_json() {
    let app = spawn_app().await;
    let address = app.base_url.trim_start_matches("http://").to_owned();
    let long_url = format!("GET /v1/orgs?{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(100 * 1024));
    let answer = raw_exchange(&address, long_url.as_bytes(), Duration::from_secs(5)).await;
    assert_problem_answer("100 KB URL", &answer, 414);

    let big_header = format!("GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n", "b".repeat(1024 * 1024));
    let answer = raw_exchange(&address, big_header.as_bytes(), Duration::from_secs(5)).await;
    assert_problem_answer("1 MB header", &answer, 431);

    let mut many = String::from("GET /healthz HTTP/1.1\r\nhost: x\r\n");
    for n in 0..10_000 {
        let _ = write!(many, "x-h{n}: v\r\n");
    }
    many.push_str("\r\n");
    let answer = raw_exchange(&address, many.as_bytes(), Duration::from_secs(5)).await;
    assert_problem_answer("10,000 headers", &answer, 431);

    let answer = raw_exchange(&address, b"NOT HTTP AT ALL\r\n\r\n", Duration::from_secs(5)).await;
    assert_problem_answer("garbage request line", &answer, 400);

    // The server is still fine, and an ordinary answer is untouched.
    let answer = raw_exchange(&address, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n", Duration::from_secs(5)).await;
    assert_eq!((answer.0, answer.2.as_str()), (200, "ok"));
}

fn slow_client_config() -> Config {
    Config::from_toml("header_read_timeout_seconds = 1\nmax_connections_per_ip = 20").expect("config")
}

/// Opens a connection that sends a request one byte at a time, a byte every 200 ms; returns when
/// the server closes it (or `limit` passes), with how long it was held.
async fn trickle(address: String, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(&address).await.ok()?;
    let request = b"GET /healthz HTTP/1.1\r\nhost: slow\r\nx-padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut buffer = [0_u8; 1024];
    for byte in request {
        if stream.write_all(&[*byte]).await.is_err() {
            return Some(started.elapsed());
        }
        // The request is never complete: any answer (a refusal), an end or an error means the
        // server let go; a live connection makes us wait.
        if tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buffer)).await.is_ok() {
            return Some(started.elapsed());
        }
        if started.elapsed() > limit {
            return None;
        }
    }
    None
}

#[tokio::test]
async fn trickling_connections_are_closed_and_capped_per_address_while_keep_alive_clients_work() {
    let app = spawn_app_with(slow_client_config()).await;
    let address = app.base_url.trim_start_matches("http://").to_owned();
    // A well-behaved keep-alive client, connected first.
    let client = reqwest::Client::builder().pool_max_idle_per_host(1).build().expect("client");
    assert_eq!(client.get(app.url("/healthz")).send().await.expect("healthz").status(), StatusCode::OK);

    let mut tricklers = tokio::task::JoinSet::new();
    for _ in 0..40 {
        tricklers.spawn(trickle(address.clone(), Duration::from_secs(20)));
    }
    // While they trickle, the keep-alive client keeps being served on its connection, with pauses
    // shorter than the header timeout.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let response = client.get(app.url("/healthz")).send().await.expect("keep-alive request");
        assert_eq!(response.status(), StatusCode::OK);
    }
    let mut held = Vec::new();
    while let Some(result) = tricklers.join_next().await {
        held.push(result.expect("task").expect("a trickling connection was held past 20 s"));
    }
    held.sort();
    // Past the cap (20 per address, one taken by the keep-alive client) connections close at once;
    // the rest when the 1 s header timeout passes.
    let refused = held.iter().filter(|d| **d < Duration::from_millis(900)).count();
    assert!(refused >= 21, "{refused} of 40 were refused at once: {held:?}");
    assert!(held.iter().all(|d| *d < Duration::from_secs(3)), "{held:?}");
    // Once they are gone, new connections are served again.
    let fresh = reqwest::Client::new();
    assert_eq!(fresh.get(app.url("/healthz")).send().await.expect("after").status(), StatusCode::OK);
}

fn proxy_config() -> Config {
    Config::from_toml("trusted_proxies = [\"127.0.0.1\"]").expect("config")
}

async fn login_from(app: &super::support::TestApp, ip: &str, email: &str, password: &str) -> Answer {
    app.send(
        app.client
            .post(app.url("/v1/session"))
            .header("x-forwarded-for", ip)
            .json(&json!({ "email": email, "password": password })),
    )
    .await
}

#[tokio::test]
async fn wrong_passwords_from_one_address_do_not_lock_the_owner_out_from_another() {
    let app = spawn_app_with(proxy_config()).await;
    let org = app.create_org("Acme").await;
    app.add_member(&org, "ann@example.com", "owner").await;
    for n in 0..10 {
        let answer = login_from(&app, "198.51.100.66", "ann@example.com", &format!("guess {n}")).await;
        assert!(matches!(answer.status.as_u16(), 401 | 429), "{:#}", answer.body);
    }
    login_from(&app, "198.51.100.66", "ann@example.com", super::support::PASSWORD)
        .await
        .assert_problem(429, "TOO_MANY_ATTEMPTS");
    let answer = login_from(&app, "203.0.113.7", "ann@example.com", super::support::PASSWORD).await;
    assert_eq!(answer.status, StatusCode::OK, "the owner, from their own address: {:#}", answer.body);
}

#[tokio::test]
async fn a_distributed_guesser_is_stopped_per_account_at_one_hundred_failures() {
    let app = spawn_app_with(proxy_config()).await;
    let org = app.create_org("Acme").await;
    app.add_member(&org, "ann@example.com", "owner").await;
    // Fewer than five from each address: only the per-account count can stop this.
    for n in 0..100 {
        let ip = format!("198.51.{}.{}", n / 4, n % 4 + 1);
        login_from(&app, &ip, "ann@example.com", "not the password").await.assert_problem(401, "INVALID_CREDENTIALS");
    }
    login_from(&app, "192.0.2.200", "ann@example.com", "not the password")
        .await
        .assert_problem(429, "TOO_MANY_ATTEMPTS");
}

/// Unknown emails and wrong passwords must take the same time, or the timing says which emails
/// exist: 200 of each, interleaved, medians within 10 %.
#[tokio::test]
async fn unknown_emails_and_wrong_passwords_take_the_same_time_within_ten_percent() {
    let app = spawn_app_with(proxy_config()).await;
    let org = app.create_org("Acme").await;
    let members: Vec<String> = (0..4).map(|n| format!("member{n}@example.com")).collect();
    for email in &members {
        app.add_member(&org, email, "admin").await;
    }
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for n in 0..200_usize {
        // A fresh address each time and at most 50 per account: no throttle on either side.
        let ip = format!("10.{}.{}.1", n / 250, n % 250);
        let started = Instant::now();
        login_from(&app, &ip, &members[n % 4], "wrong password").await.assert_problem(401, "INVALID_CREDENTIALS");
        known.push(started.elapsed());
        let started = Instant::now();
        login_from(&app, &ip, &format!("nobody{}@example.com", n % 4), "wrong password")
            .await
            .assert_problem(401, "INVALID_CREDENTIALS");
        unknown.push(started.elapsed());
    }
    known.sort();
    unknown.sort();
    let (known_median, unknown_median) = (known[100].as_secs_f64(), unknown[100].as_secs_f64());
    let mean = |v: &[Duration]| {
        v.iter().map(Duration::as_secs_f64).sum::<f64>() / f64::from(u32::try_from(v.len()).unwrap_or(u32::MAX))
    };
    eprintln!(
        "login timing over 200 each: wrong password median {:.2} ms mean {:.2} ms; unknown email median {:.2} ms mean {:.2} ms",
        known_median * 1e3,
        mean(&known) * 1e3,
        unknown_median * 1e3,
        mean(&unknown) * 1e3
    );
    let ratio = unknown_median / known_median;
    assert!((0.9..=1.1).contains(&ratio), "unknown/wrong = {ratio:.3}");
}

#[tokio::test]
async fn on_shutdown_readyz_turns_503_at_once_while_requests_are_still_served_for_the_drain() {
    let config = Config::from_toml("shutdown_drain_seconds = 2").expect("config");
    let mut app = FileApp::start(config).await;
    let mut stream = TcpStream::connect(app.address()).await.expect("connect");
    let started = Instant::now();
    let _ = app.stop.take().expect("stop").send(());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ready = app.client.get(app.url("/readyz")).send().await.expect("readyz");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    // New connections are still accepted and served during the drain.
    let fresh = reqwest::Client::new();
    let health = fresh.get(app.url("/healthz")).send().await.expect("healthz during drain");
    assert_eq!(health.status(), StatusCode::OK);
    let org = app.post("/v1/orgs", &json!({ "name": "during drain" })).await;
    assert_eq!(org.status, StatusCode::CREATED);
    // A request written on an already open connection just before the drain ends is answered,
    // with Connection: close.
    tokio::time::sleep(Duration::from_millis(1700).saturating_sub(started.elapsed())).await;
    stream.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("write");
    let mut received = String::new();
    stream.read_to_string(&mut received).await.expect("read until close");
    assert!(received.starts_with("HTTP/1.1 200"), "{received}");
    assert!(received.to_ascii_lowercase().contains("connection: close"), "{received}");
    tokio::time::timeout(Duration::from_secs(5), &mut app.server)
        .await
        .expect("stopped")
        .expect("task")
        .expect("serve");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(2), "it kept serving for the drain: {waited:?}");
    assert!(TcpStream::connect(app.address()).await.is_err(), "no longer accepting");
}

//! Several nodes: the real binary, three processes on loopback, one PostgreSQL and one Redis.
//! The shared services are the machine's own (a fresh database per test, random keys in Redis);
//! the tests that break a service start a throw-away one of their own.

use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const OPERATOR_TOKEN: &str = "kwop_cluster_test_token_0123456789";
const SHARED_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432";
const SHARED_REDIS: &str = "redis://127.0.0.1:6379";

/// Timing figures mean little when two load tests share two cores: one cluster test at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn postgres_base() -> String {
    std::env::var("KEYWARD_TEST_POSTGRES_SERVER").unwrap_or_else(|_| SHARED_POSTGRES.to_owned())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn psql(server: &str, database: &str, sql: &str) -> String {
    let output = Command::new("psql")
        .args([&format!("{server}/{database}"), "-v", "ON_ERROR_STOP=1", "-tAc", sql])
        .output()
        .expect("psql runs");
    assert!(output.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A database of its own on a PostgreSQL server, dropped at the end.
struct Database {
    server: String,
    name: String,
}

impl Database {
    fn create(server: &str) -> Self {
        static CREATED: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "keyward_cluster_{}_{}_{}",
            std::process::id(),
            CREATED.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        psql(server, "postgres", &format!("CREATE DATABASE {name}"));
        Self { server: server.to_owned(), name }
    }

    fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }

    fn sql(&self, sql: &str) -> String {
        psql(&self.server, &self.name, sql)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                &format!("{}/postgres", self.server),
                "-qc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

/// What every node of one cluster shares.
struct Cluster {
    database_url: String,
    redis_url: Option<String>,
    master_key: String,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn new(database_url: String, redis_url: Option<&str>, config: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("keyward.toml");
        std::fs::write(&path, config).expect("write config");
        let master_key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
        Self { database_url, redis_url: redis_url.map(str::to_owned), master_key, config: path, _dir: dir }
    }

    fn start(&self, name: &str) -> Node {
        let mut command = Command::new(env!("CARGO_BIN_EXE_keyward"));
        command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("KEYWARD_DATABASE_URL", &self.database_url)
            .env("KEYWARD_MASTER_KEY", &self.master_key)
            .env("KEYWARD_OPERATOR_TOKEN", OPERATOR_TOKEN)
            .env("KEYWARD_CONFIG", &self.config)
            .env("KEYWARD_NODE_ID", name)
            .env("KEYWARD_LOG", "info")
            .env_remove("KEYWARD_LISTEN")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        match &self.redis_url {
            Some(url) => command.env("KEYWARD_REDIS_URL", url),
            None => command.env_remove("KEYWARD_REDIS_URL"),
        };
        Node::spawn(command)
    }
}

/// A running `keyward serve`, killed on drop.
struct Node {
    child: Child,
    base_url: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Node {
    fn spawn(mut command: Command) -> Self {
        let mut child = command.spawn().expect("spawn keyward");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let deadline = Instant::now() + Duration::from_secs(30);
        let base_url = loop {
            assert!(Instant::now() < deadline, "keyward did not start: {:#?}", log.lock().unwrap());
            let Some(Ok(line)) = lines.next() else { panic!("keyward exited early: {:#?}", log.lock().unwrap()) };
            log.lock().unwrap().push(line.clone());
            if let Some(at) = line.find("address=") {
                break format!("http://{}", line[at + 8..].split_whitespace().next().expect("address"));
            }
        };
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, base_url, log }
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = client()
            .post(format!("{}{path}", self.base_url))
            .bearer_auth(OPERATOR_TOKEN)
            .json(body)
            .send()
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(Value::Null))
    }

    fn ok(&self, path: &str, body: &Value) -> Value {
        let (status, answer) = self.post(path, body);
        assert!((200..300).contains(&status), "{path}: {status} {answer}");
        answer
    }

    fn readyz(&self) -> (u16, Value) {
        match client().get(format!("{}/readyz", self.base_url)).send() {
            Ok(response) => (response.status().as_u16(), response.json().unwrap_or(Value::Null)),
            Err(_) => (0, Value::Null),
        }
    }

    /// The verification's code, or `SERVICE_UNAVAILABLE` and the like for a problem+json answer.
    fn verify(&self, body: &Value) -> String {
        let (_, answer) = self.post("/v1/verify", body);
        answer["code"].as_str().unwrap_or("NO_ANSWER").to_owned()
    }

    fn metrics(&self) -> String {
        client().get(format!("{}/metrics", self.base_url)).send().expect("metrics").text().expect("text")
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn client() -> &'static reqwest::blocking::Client {
    static CLIENT: std::sync::OnceLock<reqwest::blocking::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().expect("an HTTP client")
    })
}

fn org(node: &Node) -> String {
    node.ok("/v1/orgs", &json!({ "name": "Acme" }))["id"].as_str().expect("org id").to_owned()
}

/// A new key: its id, the key itself and its signing secret (when HMAC is required).
fn create_key(node: &Node, org: &str, settings: &Value) -> (String, String, Option<String>) {
    let mut body = json!({ "name": "cluster", "scopes": ["messages:send"] });
    for (field, value) in settings.as_object().expect("an object") {
        body[field] = value.clone();
    }
    let created = node.ok(&format!("/v1/orgs/{org}/keys"), &body);
    (
        created["key"]["id"].as_str().expect("key id").to_owned(),
        created["secret"].as_str().expect("secret").to_owned(),
        created["signing_secret"].as_str().map(str::to_owned),
    )
}

fn plain(key: &str) -> Value {
    json!({ "key": key, "scope": "messages:send" })
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if done() {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

#[test]
fn a_key_created_edited_and_revoked_on_one_node_is_seen_by_every_other_at_once() {
    let _serial = serial();
    let database = Database::create(&postgres_base());
    let cluster = Cluster::new(database.url(), Some(SHARED_REDIS), "nodes = 3\n");
    let (a, b, c) = (cluster.start("a"), cluster.start("b"), cluster.start("c"));
    let org = org(&a);

    let (id, key, _) = create_key(&a, &org, &json!({}));
    assert_eq!(b.verify(&plain(&key)), "VALID", "a key created on A verifies on B at once");
    let patched = client()
        .patch(format!("{}/v1/orgs/{org}/keys/{id}", a.base_url))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&json!({ "scopes": ["templates:read"] }))
        .send()
        .expect("patch");
    assert_eq!(patched.status(), 200);
    let seen = wait_until(Duration::from_secs(1), || b.verify(&plain(&key)) == "FORBIDDEN");
    assert!(seen.is_some(), "a patch on A (scope removed) reaches B within a second");

    let mut delays = Vec::new();
    for _ in 0..200 {
        let (id, key, _) = create_key(&a, &org, &json!({}));
        assert_eq!(b.verify(&plain(&key)), "VALID");
        assert_eq!(c.verify(&plain(&key)), "VALID");
        a.ok(&format!("/v1/orgs/{org}/keys/{id}/revoke"), &json!({}));
        let refused = |node: &Node| node.verify(&plain(&key)) == "API_KEY_INACTIVE";
        let mut b_done = false;
        let delay = wait_until(Duration::from_secs(2), || {
            b_done = b_done || refused(&b);
            b_done && refused(&c)
        })
        .expect("a revocation on A reaches B and C within 2 s");
        delays.push(delay);
    }
    delays.sort();
    let (p50, p99, max) = (percentile(&delays, 0.5), percentile(&delays, 0.99), delays[delays.len() - 1]);
    eprintln!("revocation A → B and C refuse, 200 keys: p50 {p50:?}, p99 {p99:?}, max {max:?}");
    assert!(p99 < Duration::from_millis(100), "SPEC §4: every other node within 100 ms (p99 {p99:?})");
}

#[test]
fn a_rate_limit_means_the_same_on_three_nodes_as_on_one() {
    let _serial = serial();
    let database = Database::create(&postgres_base());
    let cluster = Cluster::new(database.url(), Some(SHARED_REDIS), "nodes = 3\n");
    let nodes = [cluster.start("a"), cluster.start("b"), cluster.start("c")];
    let org = org(&nodes[0]);
    let (_, key, _) = create_key(&nodes[0], &org, &json!({ "rate_limit": 20 }));
    for node in &nodes {
        assert!(matches!(node.readyz().1["redis"].as_str(), Some("ok")), "{}", node.readyz().1);
    }

    let accepted = AtomicUsize::new(0);
    let until = Instant::now() + Duration::from_secs(5);
    std::thread::scope(|scope| {
        for node in &nodes {
            for _ in 0..2 {
                scope.spawn(|| {
                    while Instant::now() < until {
                        if node.verify(&plain(&key)) == "VALID" {
                            accepted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        }
    });
    let accepted = accepted.into_inner();
    eprintln!("limit 20/s, three nodes, 5 s: {accepted} accepted (ideal 120)");
    assert!((108..=132).contains(&accepted), "20 × 5 + 20 = 120 within 10 %, got {accepted}");
}

#[test]
fn a_dropped_listener_reconnects_and_no_revoked_key_outlives_the_staleness_bound() {
    let _serial = serial();
    let database = Database::create(&postgres_base());
    let cluster = Cluster::new(database.url(), None, "cache_max_staleness_seconds = 2\n");
    let (a, b) = (cluster.start("a"), cluster.start("b"));
    let org = org(&a);

    for round in 0..3 {
        // Both listeners must be back (the last round only waited for B's) before both are killed.
        let listening = |node: &Node| {
            wait_until(Duration::from_secs(5), || node.readyz().1["feed"]["listening"] == json!(true)).is_some()
        };
        assert!(listening(&a) && listening(&b), "round {round}: both nodes listen");
        let (id, key, _) = create_key(&a, &org, &json!({}));
        assert_eq!(b.verify(&plain(&key)), "VALID");
        let killed = database.sql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = 'keyward-listener' AND datname = current_database()",
        );
        assert_eq!(killed, "2", "round {round}: both nodes' listeners were connected");
        a.ok(&format!("/v1/orgs/{org}/keys/{id}/revoke"), &json!({}));
        let refused = wait_until(Duration::from_secs(2), || b.verify(&plain(&key)) == "API_KEY_INACTIVE");
        assert!(refused.is_some(), "round {round}: revoked on A, still valid on B past cache_max_staleness");
        let back = wait_until(Duration::from_secs(5), || b.readyz().1["feed"]["listening"] == json!(true));
        assert!(back.is_some(), "round {round}: B listens again: {}", b.readyz().1);
    }
    let warned = b.log.lock().unwrap().iter().any(|line| line.contains("change notifications lost"));
    assert!(warned, "the lost listener is logged");
    let metrics = b.metrics();
    for name in ["keyward_feed_lag_seconds", "keyward_invalidations_received_total"] {
        assert!(metrics.contains(name), "/metrics has {name}:\n{metrics}");
    }
}

/// A `redis-server` of this test's own, on a free port.
struct ThrowawayRedis {
    child: Child,
    port: u16,
}

impl ThrowawayRedis {
    fn start_on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs");
        let up = wait_until(Duration::from_secs(5), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        assert!(up.is_some(), "redis-server started on {port}");
        Self { child, port }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ThrowawayRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn signed(key: &str, secret: &str, timestamp: i64, nonce: usize) -> Value {
    let path = format!("/v1/messages?n={nonce}");
    let body_sha256 = hex::encode(Sha256::digest(b"{}"));
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{timestamp}\nPOST\n{path}\n{body_sha256}").as_bytes());
    json!({
        "key": key,
        "scope": "messages:send",
        "request": {
            "method": "POST",
            "path": path,
            "timestamp": timestamp.to_string(),
            "signature": hex::encode(mac.finalize().into_bytes()),
            "body_sha256": body_sha256,
        },
    })
}

/// The wall clock: the signatures go to real processes, which read it too.
#[allow(clippy::disallowed_methods, reason = "the nodes under test read the real clock")]
fn unix_now() -> i64 {
    i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs())
        .expect("fits")
}

/// Requests accepted in one burst from an idle key.
fn burst(node: &Node, key: &str, tries: usize) -> usize {
    (0..tries).filter(|_| node.verify(&plain(key)) == "VALID").count()
}

#[test]
fn with_redis_down_limits_fall_back_to_a_share_and_signatures_are_refused_until_it_returns() {
    let _serial = serial();
    let mut redis = ThrowawayRedis::start_on(free_port());
    let database = Database::create(&postgres_base());
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let cluster = Cluster::new(database.url(), Some(&url), "nodes = 2\nreplay_fallback = \"refuse\"\n");
    let (a, b) = (cluster.start("a"), cluster.start("b"));
    let org = org(&a);
    let (_, key, _) = create_key(&a, &org, &json!({ "rate_limit": 20 }));
    let (_, signing_key, secret) = create_key(&a, &org, &json!({ "hmac_required": true }));
    let secret = secret.expect("a signing secret");
    assert_eq!(a.verify(&signed(&signing_key, &secret, unix_now(), 0)), "VALID");
    // The budget refills at 20/s while the 30 requests are sent: a few more than 20 pass.
    let shared = burst(&a, &key, 15) + burst(&b, &key, 15);
    assert!((20..=24).contains(&shared), "shared: 20 at once on both nodes together, got {shared}");

    redis.stop();
    let fallen = wait_until(Duration::from_secs(3), || {
        a.readyz().1["redis"] == json!("fallback") && b.readyz().1["redis"] == json!("fallback")
    });
    assert!(fallen.is_some(), "readyz shows the fallback: {}", a.readyz().1);
    assert_eq!(a.readyz().0, 200, "a node on its fallback still serves");
    let metrics = a.metrics();
    assert!(metrics.contains("keyward_shared_state_fallback 1"), "{metrics}");
    assert!(metrics.contains("keyward_redis_errors_total"), "{metrics}");
    std::thread::sleep(Duration::from_millis(1_100)); // let the key's budget refill
    let alone = burst(&a, &key, 15);
    assert!((10..=12).contains(&alone), "Redis down: each of 2 nodes grants 20 / 2 at once, got {alone}");
    assert_eq!(
        a.verify(&signed(&signing_key, &secret, unix_now(), 1)),
        "SERVICE_UNAVAILABLE",
        "replay_fallback = refuse: no signature is accepted on a guess"
    );
    assert_eq!(a.verify(&plain(&key)).as_str(), "RATE_LIMITED", "plain keys keep their local limit");

    let _redis = ThrowawayRedis::start_on(redis.port);
    let back = wait_until(Duration::from_secs(5), || {
        a.readyz().1["redis"] == json!("ok") && b.readyz().1["redis"] == json!("ok")
    });
    assert!(back.is_some(), "recovery is automatic: {}", a.readyz().1);
    assert_eq!(a.verify(&signed(&signing_key, &secret, unix_now(), 2)), "VALID");
    let logged = a.log.lock().unwrap().iter().filter(|line| line.contains("WARN") && line.contains("Redis")).count();
    assert!((1..=3).contains(&logged), "the fallback is logged once per kind, not per request ({logged} lines)");
}

/// A PostgreSQL cluster of this test's own (`initdb` + `pg_ctl` under a temp dir, on a free port).
struct ThrowawayPostgres {
    dir: tempfile::TempDir,
    port: u16,
}

fn pg_bin(name: &str) -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<_> = std::fs::read_dir(root).expect("PostgreSQL is installed").flatten().collect();
    versions.sort_by_key(std::fs::DirEntry::file_name);
    versions.last().expect("a PostgreSQL version").path().join("bin").join(name)
}

/// PostgreSQL refuses to run as root: its tools run as the `postgres` user when we are root.
fn as_postgres(program: &Path) -> Command {
    let is_root = Command::new("id").arg("-u").output().is_ok_and(|out| out.stdout.starts_with(b"0\n"));
    if is_root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

impl ThrowawayPostgres {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let _ = Command::new("chown").args(["postgres", dir.path().to_str().expect("utf-8")]).status();
        let data = dir.path().join("data");
        let status = as_postgres(&pg_bin("initdb"))
            .args(["-D", data.to_str().expect("utf-8"), "-A", "trust", "-U", "postgres"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("initdb runs");
        assert!(status.success(), "initdb");
        let server = Self { dir, port: free_port() };
        server.up();
        server
    }

    fn pg_ctl(&self, args: &[&str]) {
        let data = self.dir.path().join("data");
        let status = as_postgres(&pg_bin("pg_ctl"))
            .args(["-D", data.to_str().expect("utf-8"), "-l", self.dir.path().join("log").to_str().expect("utf-8")])
            .args(args)
            .stdout(Stdio::null())
            .status()
            .expect("pg_ctl runs");
        assert!(status.success(), "pg_ctl {args:?}");
    }

    fn up(&self) {
        let options =
            format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.dir.path().display());
        self.pg_ctl(&["-w", "-o", &options, "start"]);
    }

    fn down(&self) {
        self.pg_ctl(&["-w", "-m", "immediate", "stop"]);
    }

    fn server(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }
}

impl Drop for ThrowawayPostgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = as_postgres(&pg_bin("pg_ctl"))
            .args(["-D", data.to_str().unwrap_or_default(), "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn with_postgres_down_cached_keys_verify_until_the_staleness_bound_and_then_never_valid() {
    let _serial = serial();
    let postgres = ThrowawayPostgres::start();
    let url = format!("{}/postgres", postgres.server());
    let cluster = Cluster::new(url, None, "cache_max_staleness_seconds = 2\n");
    let a = cluster.start("a");
    let org = org(&a);
    let (_, key, _) = create_key(&a, &org, &json!({}));
    // The node's own changes come back through the feed and drop the cached entry: let them
    // arrive (the follower polls every 100 ms) before caching the key for the outage.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(a.verify(&plain(&key)), "VALID");

    postgres.down();
    let stopped = Instant::now();
    assert_eq!(a.verify(&plain(&key)), "VALID", "a cached key keeps verifying while the feed is recent");
    let unready = wait_until(Duration::from_secs(2), || a.readyz().0 == 503);
    assert!(unready.is_some(), "readyz is 503 within 2 s: {}", a.readyz().1);
    std::thread::sleep(Duration::from_millis(2_300).saturating_sub(stopped.elapsed()));
    for _ in 0..20 {
        assert_ne!(a.verify(&plain(&key)), "VALID", "past cache_max_staleness a key it cannot confirm is not valid");
    }
    assert_eq!(a.verify(&plain(&key)), "SERVICE_UNAVAILABLE");

    postgres.up();
    let recovered = wait_until(Duration::from_secs(5), || a.readyz().0 == 200 && a.verify(&plain(&key)) == "VALID");
    assert!(recovered.is_some(), "recovers within 5 s of PostgreSQL's return: {}", a.readyz().1);
}

#[test]
fn a_node_killed_mid_load_loses_no_acknowledged_write() {
    let _serial = serial();
    let database = Database::create(&postgres_base());
    let cluster = Cluster::new(database.url(), Some(SHARED_REDIS), "nodes = 2\n");
    let (mut a, b) = (cluster.start("a"), cluster.start("b"));
    let org = org(&b);
    let acknowledged = Mutex::new(Vec::new());
    let base_url = a.base_url.clone();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| loop {
                let response = client()
                    .post(format!("{base_url}/v1/orgs/{org}/keys"))
                    .bearer_auth(OPERATOR_TOKEN)
                    .json(&json!({ "name": "under load", "scopes": ["messages:send"] }))
                    .send();
                match response {
                    Ok(response) if response.status() == 201 => {
                        let body: Value = response.json().expect("json");
                        acknowledged.lock().unwrap().push(body["key"]["id"].as_str().expect("id").to_owned());
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            });
        }
        std::thread::sleep(Duration::from_millis(1_500));
        a.kill();
    });
    let acknowledged = acknowledged.into_inner().unwrap();
    assert!(acknowledged.len() > 10, "the load ran ({} writes)", acknowledged.len());
    let mut stored = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let after = cursor.as_ref().map(|cursor| format!("&cursor={cursor}")).unwrap_or_default();
        let url = format!("{}/v1/orgs/{org}/keys?limit=100{after}", b.base_url);
        let page: Value = client().get(url).bearer_auth(OPERATOR_TOKEN).send().expect("list").json().expect("json");
        stored.extend(page["data"].as_array().expect("data").iter().map(|key| key["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let missing: Vec<_> = acknowledged.iter().filter(|id| !stored.contains(id)).collect();
    eprintln!("kill -9 under load: {} acknowledged, {} missing", acknowledged.len(), missing.len());
    assert!(missing.is_empty(), "acknowledged writes lost: {missing:?}");
    let verified = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["audit", "verify"])
        .env("KEYWARD_DATABASE_URL", database.url())
        .env("KEYWARD_MASTER_KEY", &cluster.master_key)
        .env("KEYWARD_OPERATOR_TOKEN", OPERATOR_TOKEN)
        .output()
        .expect("keyward audit verify");
    assert!(verified.status.success(), "audit verify: {}", String::from_utf8_lossy(&verified.stderr));
}

#[test]
fn fifty_concurrent_replays_spread_over_three_nodes_make_exactly_one_valid() {
    let _serial = serial();
    let database = Database::create(&postgres_base());
    let cluster = Cluster::new(database.url(), Some(SHARED_REDIS), "nodes = 3\n");
    let nodes = [cluster.start("a"), cluster.start("b"), cluster.start("c")];
    let org = org(&nodes[0]);
    let (_, key, secret) = create_key(&nodes[0], &org, &json!({ "hmac_required": true, "rate_limit": 1000 }));
    let request = signed(&key, &secret.expect("a signing secret"), unix_now(), 7);
    let codes = Mutex::new(Vec::new());
    let start = std::sync::Barrier::new(50);
    std::thread::scope(|scope| {
        for n in 0..50 {
            let (node, request, codes, start) = (&nodes[n % 3], &request, &codes, &start);
            scope.spawn(move || {
                start.wait();
                let code = node.verify(request);
                codes.lock().unwrap().push(code);
            });
        }
    });
    let codes = codes.into_inner().unwrap();
    assert_eq!(codes.iter().filter(|code| *code == "VALID").count(), 1, "{codes:?}");
    assert!(codes.iter().all(|code| code == "VALID" || code == "INVALID_SIGNATURE"), "{codes:?}");
}

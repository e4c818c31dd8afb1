//! Master-key rotation with the real binary: a running server, `keyward master-key` beside it on
//! the same database, and the key file they share. Every key and signed request stays VALID
//! through the rotation; new keys use the new version; the signing-secret rewrap survives a
//! kill -9 half-way; status counts what depends on each version; retire is refused, then allowed.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// A directory with a config (a slow rewrap, so a restart can land half-way) and, once a server
/// has started, the database and its key file.
struct Site {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Site {
    fn new(rewrap_per_second: u32) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("keyward.toml");
        std::fs::write(&config, format!("rewrap_per_second = {rewrap_per_second}\nshutdown_drain_seconds = 0\n"))
            .expect("config");
        Self { dir, config }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_keyward"));
        command
            .current_dir(self.path())
            .env("KEYWARD_CONFIG", &self.config)
            .env_remove("KEYWARD_MASTER_KEY")
            .env_remove("KEYWARD_MASTER_KEY_FILE")
            .env_remove("KEYWARD_DATABASE_URL")
            .env_remove("KEYWARD_LISTEN")
            .env_remove("KEYWARD_OPERATOR_TOKEN")
            .env_remove("KEYWARD_OPERATOR_TOKEN_FILE")
            .env("KEYWARD_LOG", "info");
        command
    }

    fn cli(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run keyward")
    }

    fn status(&self) -> Value {
        let output = self.cli(&["master-key", "status", "--json"]);
        assert!(output.status.success(), "status: {}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).expect("status JSON")
    }

    /// What the database stores for a key: its hash and seal versions.
    fn versions_of(&self, key_id: &str) -> (i64, i64) {
        let db = rusqlite::Connection::open(self.path().join("keyward.db")).expect("open the database");
        db.query_row("SELECT hash_version, seal_version FROM api_keys WHERE id = ?1", [key_id], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .expect("the key's row")
    }

    fn key_file_versions(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.path().join("keyward.db.master-key")).expect("key file");
        text.lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(|line| line.split_once(':').map_or("1 (bare)", |(version, _)| version).to_owned())
            .collect()
    }
}

/// One version's line of `master-key status --json`.
fn version(status: &Value, version: u64) -> Value {
    status["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .find(|v| v["version"] == version)
        .cloned()
        .unwrap_or(Value::Null)
}

/// A running `keyward serve`, killed on drop.
struct Server {
    child: Child,
    base_url: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(site: &Site) -> Self {
        let mut command = site.command();
        command.args(["serve", "--listen", "127.0.0.1:0"]).stdout(Stdio::null()).stderr(Stdio::piped());
        Self::from_command(command)
    }

    fn from_command(mut command: Command) -> Self {
        let mut child = command.spawn().expect("spawn keyward");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let deadline = Instant::now() + Duration::from_secs(30);
        let base_url = loop {
            assert!(Instant::now() < deadline, "keyward did not start: {:#?}", log.lock().unwrap());
            let line = lines.next().expect("keyward exited early").expect("read stderr");
            log.lock().unwrap().push(line.clone());
            if let Some(at) = line.find("address=") {
                let address = line[at + 8..].split_whitespace().next().expect("address");
                break format!("http://{address}");
            }
        };
        // Keep draining stderr so the child never blocks on a full pipe.
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, base_url, log }
    }

    /// The operator token printed on the database's first start.
    fn printed_token(&self) -> String {
        let log = self.log.lock().unwrap();
        log.iter().find_map(|line| line.trim().strip_prefix("kwop_").map(|rest| format!("kwop_{rest}"))).expect("token")
    }

    fn logged(&self, text: &str) -> bool {
        self.log.lock().unwrap().iter().any(|line| line.contains(text))
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A key as create answered it.
#[derive(Clone)]
struct Key {
    id: String,
    secret: String,
    signing_secret: Option<String>,
}

struct Api {
    client: reqwest::blocking::Client,
    base_url: String,
    token: String,
}

impl Api {
    fn new(server: &Server, token: &str) -> Self {
        Self { client: reqwest::blocking::Client::new(), base_url: server.base_url.clone(), token: token.to_owned() }
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base_url))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(Value::Null))
    }

    fn create_key(&self, org: &str, name: &str, hmac: bool) -> Key {
        let (status, body) = self
            .post(&format!("/v1/orgs/{org}/keys"), &json!({ "name": name, "hmac_required": hmac, "rate_limit": 1000 }));
        assert_eq!(status, 201, "{body}");
        Key {
            id: body["key"]["id"].as_str().expect("id").to_owned(),
            secret: body["secret"].as_str().expect("secret").to_owned(),
            signing_secret: body["signing_secret"].as_str().map(str::to_owned),
        }
    }

    /// The verification code, with a fresh signed request when the key signs.
    fn verify(&self, key: &Key) -> String {
        let (status, answer) = self.post("/v1/verify", &verify_body(key));
        if status == 200 {
            answer["code"].as_str().unwrap_or("?").to_owned()
        } else {
            format!("HTTP {status}")
        }
    }
}

/// A verification of `key` asking for `messages:send`, signed afresh (a path no request used
/// before, so it is never a replay) when the key signs.
fn verify_body(key: &Key) -> Value {
    static N: AtomicUsize = AtomicUsize::new(0);
    let mut body = json!({ "key": key.secret, "scope": "messages:send" });
    if let Some(secret) = &key.signing_secret {
        let timestamp = unix_now().to_string();
        let path = format!("/v1/messages?n={}", N.fetch_add(1, Ordering::Relaxed));
        let body_sha256 = hex(&Sha256::digest(b""));
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(format!("{timestamp}\nPOST\n{path}\n{body_sha256}").as_bytes());
        body["request"] = json!({
            "method": "POST",
            "path": path,
            "timestamp": timestamp,
            "body_sha256": body_sha256,
            "signature": hex(&mac.finalize().into_bytes()),
        });
    }
    body
}

/// The wall clock: the signatures go to a real process, which reads it too.
#[allow(clippy::disallowed_methods, reason = "the server under test reads the real clock")]
fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[allow(clippy::too_many_lines, reason = "one story, told in order")]
fn a_rotation_under_a_running_server_keeps_every_key_valid_and_old_versions_retire_once_unused() {
    // 30 secrets at 10 a second: the rewrap takes about 3 s, long enough to kill it half-way.
    let site = Site::new(10);
    let server = Server::start(&site);
    let api = Api::new(&server, &server.printed_token());
    let (status, org) = api.post("/v1/orgs", &json!({ "name": "Acme" }));
    assert_eq!(status, 201);
    let org = org["id"].as_str().expect("org id").to_owned();
    let signed: Vec<Key> = (0..30).map(|n| api.create_key(&org, &format!("signed {n}"), true)).collect();
    let plain: Vec<Key> = (0..10).map(|n| api.create_key(&org, &format!("plain {n}"), false)).collect();
    // Five keys nobody presents after the rotation: their hashes stay under version 1.
    let (used, idle) = plain.split_at(5);
    for key in signed.iter().chain(&plain) {
        assert_eq!(api.verify(key), "VALID");
    }
    let before = site.status();
    assert_eq!(before["current"], 1);
    assert_eq!(version(&before, 1)["key_hashes"], 40);
    assert_eq!(version(&before, 1)["signing_secrets"], 30);
    assert_eq!(version(&before, 1)["operator_token"], true, "the generated token is stored under version 1");
    assert_eq!(version(&before, 1)["retirable"], false);
    assert_eq!(site.key_file_versions(), ["1 (bare)"], "a first start writes the key as it always did");

    // Verifications run throughout the rotation: none may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let verifications = Arc::new(AtomicUsize::new(0));
    let load = {
        let (stop, failures, verifications) = (Arc::clone(&stop), Arc::clone(&failures), Arc::clone(&verifications));
        let keys: Vec<Key> = signed.iter().chain(used).cloned().collect();
        let api = Api::new(&server, &api.token);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for key in &keys {
                    let code = api.verify(key);
                    verifications.fetch_add(1, Ordering::Relaxed);
                    if code != "VALID" {
                        failures.lock().unwrap().push(format!("{}: {code}", key.id));
                    }
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let rotated = site.cli(&["master-key", "rotate"]);
    assert!(rotated.status.success(), "rotate: {}", String::from_utf8_lossy(&rotated.stderr));
    assert!(String::from_utf8_lossy(&rotated.stdout).contains("from version 1 to 2"));
    assert_eq!(site.key_file_versions(), ["2", "1"], "the key file holds the new key first, and the old one");
    wait_for("the server to switch", Duration::from_secs(10), || server.logged("master keyring updated"));
    // New keys: hashed and sealed under version 2, while the load goes on.
    let new = api.create_key(&org, "after the rotation", true);
    assert_eq!(site.versions_of(&new.id), (2, 2));
    assert_eq!(api.verify(&new), "VALID");
    // Part of the rewrap is done (and the load's old keys move to version 2 as they are verified).
    wait_for("the rewrap to be part-way", Duration::from_secs(20), || {
        let status = site.status();
        let (old, new) =
            (version(&status, 1)["signing_secrets"].as_u64(), version(&status, 2)["signing_secrets"].as_u64());
        old.is_some_and(|old| old > 0) && new.is_some_and(|new| new >= 5)
    });
    stop.store(true, Ordering::Relaxed);
    load.join().expect("the load thread");
    let done = verifications.load(Ordering::Relaxed);
    assert!(done > 100, "the load ran ({done} verifications)");
    assert_eq!(*failures.lock().unwrap(), Vec::<String>::new(), "no verification failed across the rotation");

    // kill -9 half-way through the rewrap; a restart carries on from what the rows say.
    server.kill();
    let mid = site.status();
    let left = version(&mid, 1)["signing_secrets"].as_u64().expect("count");
    assert!(left > 0, "killed before the rewrap finished: {mid}");
    assert_eq!(
        version(&mid, 1)["signing_secrets"].as_u64().unwrap() + version(&mid, 2)["signing_secrets"].as_u64().unwrap(),
        31
    );
    let server = Server::start(&site);
    let api = Api::new(&server, &api.token);
    for key in signed.iter().chain(used).chain(std::iter::once(&new)) {
        assert_eq!(api.verify(key), "VALID", "{} after the restart, secrets under mixed versions", key.id);
    }
    wait_for("the rewrap to finish after the restart", Duration::from_secs(30), || {
        version(&site.status(), 1)["signing_secrets"] == 0
    });
    wait_for("verified keys to move to version 2", Duration::from_secs(20), || {
        version(&site.status(), 1)["key_hashes"] == 5
    });
    let after = site.status();
    assert_eq!(after["current"], 2);
    assert_eq!(version(&after, 2)["signing_secrets"], 31);
    assert_eq!(version(&after, 1)["key_hashes"], 5, "the idle keys keep their version");
    assert_eq!(version(&after, 2)["key_hashes"], 36, "35 moved on use, 1 new");
    assert_eq!(version(&after, 1)["operator_token"], false, "the operator token moved on its first use");

    // Retire: refused while the idle keys' hashes need version 1, allowed once they are revoked.
    let refused = site.cli(&["master-key", "retire", "1"]);
    assert_eq!(refused.status.code(), Some(1));
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("cannot retire master key version 1") && why.contains("5 key hash(es)"), "{why}");
    let current = site.cli(&["master-key", "retire", "2"]);
    assert!(String::from_utf8_lossy(&current.stderr).contains("current master key"), "the current one never");
    for key in idle {
        let (status, _) = api.post(&format!("/v1/orgs/{org}/keys/{}/revoke", key.id), &json!({}));
        assert_eq!(status, 200);
    }
    let status = site.status();
    assert_eq!(version(&status, 1)["retirable"], true, "{status}");
    assert_eq!(version(&status, 1)["revoked_key_hashes"], 5);
    let retired = site.cli(&["master-key", "retire", "1"]);
    assert!(retired.status.success(), "retire: {}", String::from_utf8_lossy(&retired.stderr));
    assert_eq!(site.key_file_versions(), ["2"], "the key file forgets the retired key");
    assert_eq!(version(&site.status(), 1)["state"], "retired");

    // Without version 1 at all: every live key verifies, a revoked old one is refused.
    server.kill();
    let server = Server::start(&site);
    let api = Api::new(&server, &api.token);
    for key in signed.iter().chain(used).chain(std::iter::once(&new)) {
        assert_eq!(api.verify(key), "VALID", "{} with version 1 retired", key.id);
    }
    assert_ne!(api.verify(&idle[0]), "VALID");
    let audit = site.cli(&["audit", "verify"]);
    assert!(audit.status.success(), "{}", String::from_utf8_lossy(&audit.stderr));
    assert!(
        String::from_utf8_lossy(&audit.stdout).contains("and 2 operator events"),
        "the rotation and the retirement"
    );
}

#[test]
fn a_keyring_in_the_environment_rotates_to_a_key_distributed_first() {
    let site = Site::new(1000);
    let v1 = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
    let env = |command: &mut Command, keyring: &str| {
        command.env("KEYWARD_MASTER_KEY", keyring).env("KEYWARD_OPERATOR_TOKEN", "kwop_rotation_env_token_0123456789");
    };
    let start = |keyring: &str| {
        let mut command = site.command();
        env(&mut command, keyring);
        command.args(["serve", "--listen", "127.0.0.1:0"]).stdout(Stdio::null()).stderr(Stdio::piped());
        Server::from_command(command)
    };
    let server = start(&v1);
    let api = Api::new(&server, "kwop_rotation_env_token_0123456789");
    let (_, org) = api.post("/v1/orgs", &json!({ "name": "Env" }));
    let org = org["id"].as_str().expect("org").to_owned();
    let old = api.create_key(&org, "old", true);

    // An environment variable cannot be rewritten: rotate says how to proceed.
    let mut rotate = site.command();
    env(&mut rotate, &v1);
    let refused = rotate.args(["master-key", "rotate"]).output().expect("rotate");
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("keyward master-key add"));

    // `add` prints the new keyring; the node restarted with it still uses version 1.
    let mut add = site.command();
    env(&mut add, &v1);
    let added = add.args(["master-key", "add"]).output().expect("add");
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let keyring = String::from_utf8(added.stdout).expect("utf-8").trim().to_owned();
    assert!(keyring.starts_with("2:") && keyring.contains(",1:"), "one line, newest first");
    drop(server);
    let server = start(&keyring);
    let api = Api::new(&server, "kwop_rotation_env_token_0123456789");
    let pending = api.create_key(&org, "before rotate", false);
    assert_eq!(site.versions_of(&pending.id), (1, 1), "a held newer key is not used before the rotation");
    assert_eq!(version(&status_with(&site, &keyring), 2)["state"], "pending");

    let mut rotate = site.command();
    env(&mut rotate, &keyring);
    let rotated = rotate.args(["master-key", "rotate"]).output().expect("rotate");
    assert!(rotated.status.success(), "{}", String::from_utf8_lossy(&rotated.stderr));
    wait_for("the node to switch", Duration::from_secs(10), || server.logged("master keyring updated"));
    let new = api.create_key(&org, "after rotate", true);
    assert_eq!(site.versions_of(&new.id), (2, 2));
    for key in [&old, &pending, &new] {
        assert_eq!(api.verify(key), "VALID");
    }
    // A node started with the old keyring refuses to start rather than reject the new keys.
    let mut stale = site.command();
    env(&mut stale, &v1);
    let output = stale.args(["keys", "list", "--org", &org]).output().expect("keys list");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("current master key is version 2"));
}

fn status_with(site: &Site, keyring: &str) -> Value {
    let mut command = site.command();
    command.env("KEYWARD_MASTER_KEY", keyring);
    let output = command.args(["master-key", "status", "--json"]).output().expect("status");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("json")
}

/// What one load thread saw.
#[derive(Debug, Default)]
struct Tally {
    valid: u64,
    signed: u64,
    /// Anything but `VALID`: another code, another status, or no answer.
    failed: Vec<String>,
}

/// One keep-alive connection verifying `keys` in turn at `per_second`, until `stop`.
fn load_thread(address: &str, token: &str, keys: &[Key], per_second: f64, stop: &AtomicBool) -> Tally {
    use std::io::{Read as _, Write as _};
    let mut tally = Tally::default();
    let mut stream: Option<std::net::TcpStream> = None;
    let started = Instant::now();
    let mut sent = 0_u64;
    while !stop.load(Ordering::Relaxed) {
        // Paced: request n leaves at n / rate (a thread that fell behind catches up).
        #[allow(clippy::cast_precision_loss, reason = "a request count as seconds")]
        let due = Duration::from_secs_f64(sent as f64 / per_second);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
        let key = &keys[usize::try_from(sent).unwrap_or(0) % keys.len()];
        sent += 1;
        let body = verify_body(key).to_string();
        let request = format!(
            "POST /v1/verify HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.is_none() {
            let connected = std::net::TcpStream::connect(address).expect("connect");
            connected.set_nodelay(true).expect("nodelay");
            connected.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
            stream = Some(connected);
        }
        let Some(connection) = stream.as_mut() else { continue };
        let answer = connection.write_all(request.as_bytes()).ok().and_then(|()| {
            let mut received = Vec::new();
            let mut buffer = [0_u8; 4096];
            loop {
                let n = connection.read(&mut buffer).ok().filter(|n| *n > 0)?;
                received.extend_from_slice(&buffer[..n]);
                let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if received.len() >= end + 4 + length {
                    return Some(String::from_utf8_lossy(&received[end + 4..end + 4 + length]).into_owned());
                }
            }
        });
        match answer {
            Some(body) if body.contains(r#""code":"VALID""#) => {
                tally.valid += 1;
                tally.signed += u64::from(key.signing_secret.is_some());
            }
            Some(body) => tally.failed.push(format!("{}: {body}", key.id)),
            None => {
                tally.failed.push(format!("{}: no answer", key.id));
                stream = None;
            }
        }
    }
    tally
}

#[test]
fn verifications_under_load_across_a_rotation_all_pass() {
    // The default is a short, light run for `cargo test`; scripts/rotation-test.sh runs 5000/s.
    let env = |name: &str, default: u64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (rate, seconds) = (env("KEYWARD_ROTATION_RATE", 500), env("KEYWARD_ROTATION_SECONDS", 4));
    let threads = 16;
    let site = Site::new(1000);
    let token = "kwop_rotation_load_token_0123456789";
    let mut command = site.command();
    command
        .env("KEYWARD_OPERATOR_TOKEN", token)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let server = Server::from_command(command);
    let api = Api::new(&server, token);
    let (_, org) = api.post("/v1/orgs", &json!({ "name": "Load" }));
    let org = org["id"].as_str().expect("org").to_owned();
    // Half signed, half not; enough keys that none nears its rate limit (1000/s).
    let keys: Vec<Key> = (0..40).map(|n| api.create_key(&org, &format!("load {n}"), n % 2 == 0)).collect();
    let address = server.base_url.trim_start_matches("http://").to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    #[allow(clippy::cast_precision_loss, reason = "a request rate")]
    let per_thread = rate as f64 / f64::from(threads);
    let load: Vec<_> = (0..threads)
        .map(|n| {
            let (address, stop) = (address.clone(), Arc::clone(&stop));
            let mut keys = keys.clone();
            let shift = usize::try_from(n).unwrap_or(0) % keys.len();
            keys.rotate_left(shift);
            std::thread::spawn(move || load_thread(&address, token, &keys, per_thread, &stop))
        })
        .collect();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds) / 3);
    let rotate_at = started.elapsed();
    let mut rotate = site.command();
    rotate.env("KEYWARD_OPERATOR_TOKEN", token);
    let rotated = rotate.args(["master-key", "rotate"]).output().expect("rotate");
    assert!(rotated.status.success(), "rotate: {}", String::from_utf8_lossy(&rotated.stderr));
    wait_for("the server to switch", Duration::from_secs(10), || server.logged("master keyring updated"));
    let switched_at = started.elapsed();
    if let Some(rest) = Duration::from_secs(seconds).checked_sub(started.elapsed()) {
        std::thread::sleep(rest);
    }
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let mut total = Tally::default();
    for thread in load {
        let tally = thread.join().expect("load thread");
        total.valid += tally.valid;
        total.signed += tally.signed;
        total.failed.extend(tally.failed);
    }
    let mut status_command = site.command();
    status_command.env("KEYWARD_OPERATOR_TOKEN", token);
    let status: Value = serde_json::from_slice(
        &status_command.args(["master-key", "status", "--json"]).output().expect("status").stdout,
    )
    .expect("status JSON");
    let failed = total.failed.len();
    #[allow(clippy::cast_precision_loss, reason = "a request rate")]
    let achieved = (total.valid + failed as u64) as f64 / elapsed.as_secs_f64();
    eprintln!(
        "ROTATION: {} verifications in {:.1} s ({achieved:.0}/s, {} signed), {failed} failed; rotated at {:.1} s, the \
         server switched {:.0} ms later; signing secrets left under version 1: {}, key hashes left under version 1: {}",
        total.valid + failed as u64,
        elapsed.as_secs_f64(),
        total.signed,
        rotate_at.as_secs_f64(),
        switched_at.saturating_sub(rotate_at).as_secs_f64() * 1e3,
        version(&status, 1)["signing_secrets"],
        version(&status, 1)["key_hashes"],
    );
    assert_eq!(total.failed.iter().take(10).collect::<Vec<_>>(), Vec::<&String>::new(), "{failed} failed");
    assert!(total.valid > rate, "the load ran");
    assert_eq!(status["current"], 2);
}

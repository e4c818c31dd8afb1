//! The real binary as a process: first start, kill -9 durability, graceful shutdown, CLI errors.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const OPERATOR_TOKEN: &str = "kwop_process_test_token_0123456789";

fn keyward(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyward"));
    command
        .current_dir(dir)
        .env_remove("KEYWARD_MASTER_KEY")
        .env_remove("KEYWARD_CONFIG")
        .env_remove("KEYWARD_DATABASE_URL")
        .env_remove("KEYWARD_LISTEN")
        .env_remove("KEYWARD_OPERATOR_TOKEN")
        .env("KEYWARD_LOG", "info");
    command
}

/// A running `keyward serve`, killed on drop.
struct Server {
    child: Child,
    base_url: String,
    stderr: Vec<String>,
    /// Everything written to stderr after start-up.
    later_stderr: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    fn start(dir: &Path, operator_token: Option<&str>) -> Self {
        let mut command = keyward(dir);
        command.args(["serve", "--listen", "127.0.0.1:0"]).stderr(Stdio::piped()).stdout(Stdio::null());
        if let Some(token) = operator_token {
            command.env("KEYWARD_OPERATOR_TOKEN", token);
        }
        let mut child = command.spawn().expect("spawn keyward");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut stderr = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        let base_url = loop {
            assert!(Instant::now() < deadline, "keyward did not start: {stderr:#?}");
            let line = lines.next().expect("keyward exited early").expect("read stderr");
            stderr.push(line.clone());
            if let Some(at) = line.find("address=") {
                let address = line[at + 8..].split_whitespace().next().expect("address");
                break format!("http://{address}");
            }
        };
        // Keep draining stderr so the child never blocks on a full pipe.
        let later_stderr = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = later_stderr.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, base_url, stderr, later_stderr }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::new()
}

fn post(server: &Server, path: &str, body: &Value) -> Value {
    let response = client()
        .post(format!("{}{path}", server.base_url))
        .bearer_auth(OPERATOR_TOKEN)
        .json(body)
        .send()
        .expect("request");
    assert!(response.status().is_success(), "{path}: {}", response.status());
    response.json().expect("json")
}

fn get(server: &Server, path: &str) -> Value {
    client()
        .get(format!("{}{path}", server.base_url))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .expect("request")
        .json()
        .expect("json")
}

#[test]
fn first_start_prints_an_operator_token_and_writes_a_private_master_key() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    let printed =
        server.stderr.iter().find_map(|line| line.trim().strip_prefix("kwop_").map(|rest| format!("kwop_{rest}")));
    let token = printed.expect("operator token printed on first start");
    let response = client()
        .post(format!("{}/v1/orgs", server.base_url))
        .bearer_auth(&token)
        .json(&json!({ "name": "a" }))
        .send()
        .unwrap();
    assert_eq!(response.status(), 201);
    let key_file = dir.path().join("keyward.db.master-key");
    assert!(dir.path().join("keyward.db").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    drop(server);
    let again = Server::start(dir.path(), None);
    assert!(!again.stderr.iter().any(|l| l.contains("kwop_")), "the token is printed only once");
    let response = client()
        .post(format!("{}/v1/orgs", again.base_url))
        .bearer_auth(&token)
        .json(&json!({ "name": "b" }))
        .send()
        .unwrap();
    assert_eq!(response.status(), 201, "the generated token still works after a restart");
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), Some(OPERATOR_TOKEN));
    let org = post(&server, "/v1/orgs", &json!({ "name": "Acme" }))["id"].as_str().unwrap().to_owned();
    let mut keys = Vec::new();
    for i in 0..20 {
        let created = post(
            &server,
            &format!("/v1/orgs/{org}/keys"),
            &json!({ "name": format!("k{i}"), "hmac_required": i % 2 == 0 }),
        );
        keys.push(created);
    }
    let revoked = keys[3]["key"]["id"].as_str().unwrap();
    post(&server, &format!("/v1/orgs/{org}/keys/{revoked}/revoke"), &json!({}));
    let status = Command::new("kill").args(["-9", &server.pid()]).status().unwrap();
    assert!(status.success());
    drop(server);

    let server = Server::start(dir.path(), Some(OPERATOR_TOKEN));
    let listed = get(&server, &format!("/v1/orgs/{org}/keys?limit=100"));
    assert_eq!(listed["data"].as_array().unwrap().len(), 20);
    for (i, created) in keys.iter().enumerate() {
        let answer = post(&server, "/v1/verify", &json!({ "key": created["secret"] }));
        let expected = match i {
            3 => "API_KEY_INACTIVE",
            i if i % 2 == 0 => "SIGNATURE_REQUIRED",
            _ => "VALID",
        };
        assert_eq!(answer["code"], expected, "key {i} after kill -9");
    }
}

#[test]
fn sigterm_flushes_last_used_before_exit() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), Some(OPERATOR_TOKEN));
    let org = post(&server, "/v1/orgs", &json!({ "name": "Acme" }))["id"].as_str().unwrap().to_owned();
    let created = post(&server, &format!("/v1/orgs/{org}/keys"), &json!({ "name": "k" }));
    assert_eq!(post(&server, "/v1/verify", &json!({ "key": created["secret"] }))["code"], "VALID");
    Command::new("kill").args(["-TERM", &server.pid()]).status().unwrap();
    let exit = server.child.wait().unwrap();
    assert!(exit.success(), "graceful exit: {exit:?}");
    drop(server);

    let server = Server::start(dir.path(), Some(OPERATOR_TOKEN));
    let id = created["key"]["id"].as_str().unwrap();
    let key = get(&server, &format!("/v1/orgs/{org}/keys/{id}"));
    assert!(key["key"]["last_used_at"].is_string(), "{key:#}");
}

fn run(dir: &Path, args: &[&str]) -> std::process::Output {
    keyward(dir).args(args).env("KEYWARD_OPERATOR_TOKEN", OPERATOR_TOKEN).output().unwrap()
}

#[test]
fn bad_flags_and_bad_config_exit_2_with_one_line_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.toml"), "key_prefix = \"kw\"\n\ndefault_rate_limit = \"fast\"\n").unwrap();
    std::fs::write(dir.path().join("typo.toml"), "key_prefx = \"kw\"\n").unwrap();
    std::fs::write(dir.path().join("prefix.toml"), "key_prefix = \"Bad_Prefix\"\n").unwrap();
    std::fs::write(
        dir.path().join("routes.toml"),
        "[gateway]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:9000\"\n\n\
         [[gateway.routes]]\nmethod = \"POST\"\npath = \"/v1/messages\"\nscopes = [\"messages:sendd\"]\n",
    )
    .unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["serve", "--bogus"], "--bogus"),
        (vec!["serve", "--listen", "nowhere"], "nowhere"),
        (vec!["--config", "bad.toml", "serve"], "line 3"),
        (vec!["--config", "typo.toml", "serve"], "key_prefx"),
        (vec!["--config", "prefix.toml", "serve"], "key_prefix"),
        (
            vec!["--config", "routes.toml", "serve"],
            "routes.toml: line 8: gateway route POST /v1/messages: unknown scope",
        ),
        (vec!["--config", "missing.toml", "migrate"], "missing.toml"),
        (vec!["keys", "create", "--org", "org_x"], "--name"),
        (vec!["keys", "list", "--org", "org_x", "--limit", "500"], "500"),
    ];
    for (args, mentions) in cases {
        let output = run(dir.path(), &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: one line, got {stderr}");
        assert!(stderr.contains(mentions), "{args:?} should mention {mentions}: {stderr}");
    }
    let written: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(written.len(), 4, "nothing written: {written:?}");
}

#[test]
fn help_is_available_on_every_command() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["migrate", "--help"],
        vec!["org", "create", "--help"],
        vec!["keys", "create", "--help"],
        vec!["keys", "list", "--help"],
        vec!["keys", "revoke", "--help"],
        vec!["sign", "--help"],
        vec!["config", "example", "--help"],
    ] {
        let output = run(dir.path(), &args);
        assert!(output.status.success(), "{args:?}");
        assert!(String::from_utf8_lossy(&output.stdout).contains("Usage"), "{args:?}");
    }
}

#[test]
fn cli_creates_lists_and_revokes_keys() {
    let dir = tempfile::tempdir().unwrap();
    let org: Value = serde_json::from_slice(&run(dir.path(), &["org", "create", "--name", "Acme"]).stdout).unwrap();
    let org = org["id"].as_str().unwrap();
    let output = run(
        dir.path(),
        &[
            "keys",
            "create",
            "--org",
            org,
            "--name",
            "cli key",
            "--scope",
            "templates:read",
            "--hmac",
            "--rate-limit",
            "5",
        ],
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let created: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(created["secret"].as_str().unwrap().starts_with("kw_live_"));
    assert!(created["signing_secret"].is_string());
    assert_eq!(created["key"]["rate_limit"], 5);
    let id = created["key"]["id"].as_str().unwrap();

    let invalid = run(dir.path(), &["keys", "create", "--org", org, "--name", "x", "--rate-limit", "5000"]);
    assert_eq!(invalid.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&invalid.stderr).contains("Rate limit must be an integer between 1 and 1000"));

    let listed: Value = serde_json::from_slice(&run(dir.path(), &["keys", "list", "--org", org]).stdout).unwrap();
    assert_eq!(listed["data"][0]["id"], id);
    let revoked: Value =
        serde_json::from_slice(&run(dir.path(), &["keys", "revoke", "--org", org, id]).stdout).unwrap();
    assert_eq!(revoked["key"]["status"], "revoked");
    let listed: Value =
        serde_json::from_slice(&run(dir.path(), &["keys", "list", "--org", org, "--status", "revoked"]).stdout)
            .unwrap();
    assert_eq!(listed["data"][0]["id"], id);
}

#[test]
fn revoking_from_the_cli_reaches_a_running_server_within_100ms() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), Some(OPERATOR_TOKEN));
    let org = post(&server, "/v1/orgs", &json!({ "name": "Acme" }))["id"].as_str().unwrap().to_owned();
    let created = post(&server, &format!("/v1/orgs/{org}/keys"), &json!({ "name": "k" }));
    assert_eq!(post(&server, "/v1/verify", &json!({ "key": created["secret"] }))["code"], "VALID");
    let id = created["key"]["id"].as_str().unwrap();
    let output = run(dir.path(), &["keys", "revoke", "--org", &org, id]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let revoked_at = Instant::now();
    loop {
        let code = post(&server, "/v1/verify", &json!({ "key": created["secret"] }))["code"].clone();
        if code == "API_KEY_INACTIVE" {
            break;
        }
        assert!(revoked_at.elapsed() < Duration::from_millis(500), "still {code} after {:?}", revoked_at.elapsed());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The published vector of the README: `keyward sign` must reproduce it.
#[test]
fn sign_reproduces_the_published_vector() {
    let dir = tempfile::tempdir().unwrap();
    let output = keyward(dir.path())
        .args([
            "sign",
            "--method",
            "post",
            "--path",
            "/v1/messages?x=1",
            "--body",
            "{\"to\":\"+14155550100\"}",
            "--timestamp",
            "1764000000",
        ])
        .env("KEYWARD_SIGNING_SECRET", "kwsig_test_vector_secret")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("X-Keyward-Timestamp: 1764000000"), "{stdout}");
    assert!(stdout.contains(&format!("X-Keyward-Signature: {}", published_vector())), "{stdout}");
}

/// Computed independently of keyward's code.
fn published_vector() -> String {
    use hmac::Mac as _;
    use sha2::Digest as _;
    let body_hash = hex::encode(sha2::Sha256::digest(b"{\"to\":\"+14155550100\"}"));
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"kwsig_test_vector_secret").unwrap();
    mac.update(format!("1764000000\nPOST\n/v1/messages?x=1\n{body_hash}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[test]
fn secrets_never_reach_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), Some(OPERATOR_TOKEN));
    let org = post(&server, "/v1/orgs", &json!({ "name": "Acme" }))["id"].as_str().unwrap().to_owned();
    let created = post(&server, &format!("/v1/orgs/{org}/keys"), &json!({ "name": "k", "hmac_required": true }));
    let secret = created["secret"].as_str().unwrap().to_owned();
    let signing_secret = created["signing_secret"].as_str().unwrap().to_owned();
    post(&server, "/v1/verify", &json!({ "key": secret }));
    post(&server, "/v1/keys/lookup", &json!({ "key": secret }));
    let password = "a-long-enough-password-4711";
    post(
        &server,
        &format!("/v1/orgs/{org}/members"),
        &json!({ "email": "ann@acme.test", "password": password, "role": "admin" }),
    );
    let login = client()
        .post(format!("{}/v1/session", server.base_url))
        .json(&json!({ "email": "ann@acme.test", "password": password }))
        .send()
        .unwrap();
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    let session_token = cookie.split(';').next().unwrap().trim_start_matches("keyward_session=").to_owned();
    let csrf: Value = login.json().unwrap();
    let csrf = csrf["csrf_token"].as_str().unwrap().to_owned();
    // A failing request too: its 5xx cause, if any, is logged.
    client()
        .post(format!("{}/v1/session", server.base_url))
        .json(&json!({ "email": "ann@acme.test", "password": "wrong-password-123" }))
        .send()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let log = server.later_stderr.lock().unwrap().join("\n") + &server.stderr.join("\n");
    assert!(log.contains("request"), "the access log was captured: {log}");
    for (what, value) in [
        ("operator token", OPERATOR_TOKEN),
        ("key", secret.as_str()),
        ("signing secret", signing_secret.as_str()),
        ("password", password),
        ("session token", session_token.as_str()),
        ("csrf token", csrf.as_str()),
    ] {
        assert!(!log.contains(value), "the {what} reached the log");
    }
}

#[test]
fn verifications_are_counted_not_logged_and_refusals_are_sampled() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), Some(OPERATOR_TOKEN));
    let org = post(&server, "/v1/orgs", &json!({ "name": "Acme" }))["id"].as_str().unwrap().to_owned();
    let key = post(&server, &format!("/v1/orgs/{org}/keys"), &json!({ "name": "live", "rate_limit": 1000 }));
    let live = key["secret"].as_str().unwrap().to_owned();
    let revoked = post(&server, &format!("/v1/orgs/{org}/keys"), &json!({ "name": "old" }));
    let revoked_secret = revoked["secret"].as_str().unwrap().to_owned();
    post(&server, &format!("/v1/orgs/{org}/keys/{}/revoke", revoked["key"]["id"].as_str().unwrap()), &json!({}));

    let started = Instant::now();
    for _ in 0..200 {
        assert_eq!(post(&server, "/v1/verify", &json!({ "key": live }))["code"], "VALID");
        assert_eq!(post(&server, "/v1/verify", &json!({ "key": revoked_secret }))["code"], "API_KEY_INACTIVE");
        assert_eq!(
            post(&server, "/v1/verify", &json!({ "key": "sk_test_not_one_of_ours" }))["code"],
            "INVALID_API_KEY"
        );
    }
    std::thread::sleep(Duration::from_millis(200));

    let log = server.later_stderr.lock().unwrap().clone();
    let verify_lines = log.iter().filter(|line| line.contains("/v1/verify")).count();
    assert_eq!(verify_lines, 0, "no access line per verification by default: {log:#?}");
    assert!(log.iter().any(|line| line.contains("/v1/orgs")), "management calls keep their access line: {log:#?}");
    let refusals: Vec<&String> = log.iter().filter(|line| line.contains("verification refused")).collect();
    // 400 refusals, sampled at 10 a second: at most 10 for each second (or part of one) they took.
    let seconds = usize::try_from(started.elapsed().as_secs()).unwrap_or(usize::MAX).saturating_add(2);
    assert!(!refusals.is_empty() && refusals.len() <= 10 * seconds, "{} refusal lines in {seconds} s", refusals.len());
    assert!(refusals.len() < 400, "refusals are sampled, not all logged");
    let inactive = refusals.iter().find(|line| line.contains("API_KEY_INACTIVE")).expect("an inactive key's refusal");
    assert!(inactive.contains(&revoked_secret[..16]), "the key prefix is logged: {inactive}");
    assert!(refusals.iter().all(|line| line.contains("key_prefix")), "{refusals:#?}");
    let joined = log.join("\n");
    assert!(!joined.contains(&revoked_secret) && !joined.contains(&live), "a key reached the log");
    assert!(!joined.contains("sk_test_not_one_of_ours"), "a presented credential reached the log");

    let metrics = client().get(format!("{}/metrics", server.base_url)).send().unwrap().text().unwrap();
    assert!(metrics.contains(r#"keyward_verifications_total{code="VALID"} 200"#), "{metrics}");
    assert!(metrics.contains(r#"keyward_verifications_total{code="API_KEY_INACTIVE"} 200"#), "{metrics}");
}

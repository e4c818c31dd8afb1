//! A real nginx in front of an upstream, asking keyward's `GET /v1/authorize` through
//! `auth_request` (the forward-auth door), with its own config on free ports.

use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const OPERATOR_TOKEN: &str = "kwop_nginx_test_token_0123456789ab";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_keyward(dir: &Path) -> (Killed, String) {
    let config = dir.join("keyward.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nlisten = \"127.0.0.1:{}\"\nupstream = \"http://127.0.0.1:9\"\n\n\
             [[gateway.routes]]\nmethod = \"GET\"\npath = \"/v1/templates/{{id}}\"\nscopes = [\"templates:read\"]\n",
            free_port()
        ),
    )
    .expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(dir)
        .env("KEYWARD_CONFIG", &config)
        .env("KEYWARD_OPERATOR_TOKEN", OPERATOR_TOKEN)
        .env("KEYWARD_DATABASE_URL", format!("sqlite://{}", dir.join("k.db").display()))
        .env_remove("KEYWARD_MASTER_KEY")
        .env_remove("KEYWARD_REDIS_URL")
        .env("KEYWARD_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn keyward");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let address = loop {
        let line = lines.next().expect("keyward exited early").expect("stderr");
        if let Some(at) = line.find(" address=") {
            break line[at + 9..].split_whitespace().next().expect("address").to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    (Killed(child), address)
}

#[test]
fn nginx_auth_request_lets_through_a_valid_key_and_refuses_the_others() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_keyward, keyward) = start_keyward(dir.path());
    let (listen_port, upstream) = (free_port(), free_port());
    let prefix = dir.path().display();
    let conf = format!(
        r#"
daemon off;
master_process off;
worker_processes 1;
error_log {prefix}/nginx-error.log warn;
pid {prefix}/nginx.pid;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/body; proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi; uwsgi_temp_path {prefix}/uwsgi; scgi_temp_path {prefix}/scgi;
  server {{
    listen 127.0.0.1:{listen_port};
    location / {{
      auth_request /_keyward;
      auth_request_set $key_id $upstream_http_x_keyward_key_id;
      proxy_set_header X-Keyward-Key-Id $key_id;
      proxy_pass http://127.0.0.1:{upstream};
    }}
    location = /_keyward {{
      internal;
      proxy_pass http://{keyward}/v1/authorize;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Original-Method $request_method;
    }}
  }}
  server {{
    listen 127.0.0.1:{upstream};
    location / {{ return 200 "upstream saw $http_x_keyward_key_id\n"; }}
  }}
}}
"#
    );
    let conf_path = dir.path().join("nginx.conf");
    std::fs::write(&conf_path, conf).expect("write nginx.conf");
    let _nginx = Killed(
        Command::new("nginx")
            .args(["-c", conf_path.to_str().expect("utf-8"), "-p", &prefix.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx is installed (apt-get install -y nginx)"),
    );
    let base = format!("http://127.0.0.1:{listen_port}");
    let client = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.get(format!("{base}/")).send().is_err() {
        assert!(Instant::now() < deadline, "nginx did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    let post = |path: &str, body: &Value| -> Value {
        let response = client
            .post(format!("http://{keyward}{path}"))
            .bearer_auth(OPERATOR_TOKEN)
            .json(body)
            .send()
            .expect("request");
        assert!(response.status().is_success(), "{path}: {}", response.status());
        response.json().expect("json")
    };
    let org = post("/v1/orgs", &json!({ "name": "Acme" }))["id"].as_str().expect("org").to_owned();
    let created = post(&format!("/v1/orgs/{org}/keys"), &json!({ "name": "n", "scopes": ["templates:read"] }));
    let key = created["secret"].as_str().expect("secret").to_owned();
    let key_id = created["key"]["id"].as_str().expect("id").to_owned();
    let narrow = post(&format!("/v1/orgs/{org}/keys"), &json!({ "name": "n", "scopes": ["messages:send"] }));
    let narrow = narrow["secret"].as_str().expect("secret").to_owned();

    let answer = client.get(format!("{base}/v1/templates/t1")).bearer_auth(&key).send().expect("through nginx");
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().expect("body").trim(), format!("upstream saw {key_id}"));
    let status = |request: reqwest::blocking::RequestBuilder| request.send().expect("through nginx").status().as_u16();
    assert_eq!(status(client.get(format!("{base}/v1/templates/t1"))), 401, "no key");
    assert_eq!(status(client.get(format!("{base}/v1/templates/t1")).bearer_auth(&narrow)), 403, "scope");
    assert_eq!(status(client.get(format!("{base}/v1/admin")).bearer_auth(&key)), 403, "route not in the table");

    post(&format!("/v1/orgs/{org}/keys/{key_id}/revoke"), &json!({}));
    assert_eq!(status(client.get(format!("{base}/v1/templates/t1")).bearer_auth(&key)), 401, "revoked");
}

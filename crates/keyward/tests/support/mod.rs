//! What the binary's tests share: the real `keyward` started with a config file on ephemeral
//! ports, free of the caller's `KEYWARD_*` settings, with its log kept for assertions; and a small
//! upstream for the gateway to stand in front of.
#![allow(dead_code, reason = "each test file uses the part it needs")]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const OPERATOR_TOKEN: &str = "kwop_binary_test_token_0123456789";

/// Settings of the environment the binary would otherwise read instead of the test's config.
const CALLERS_SETTINGS: [&str; 7] = [
    "KEYWARD_MASTER_KEY",
    "KEYWARD_DATABASE_URL",
    "KEYWARD_LISTEN",
    "KEYWARD_CONFIG",
    "KEYWARD_TLS_CERT",
    "KEYWARD_TLS_KEY",
    "KEYWARD_REDIS_URL",
];

/// The binary in `dir`, with the test's operator token and none of the caller's settings.
pub fn command(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyward"));
    command.current_dir(dir);
    for name in CALLERS_SETTINGS {
        command.env_remove(name);
    }
    command.env("KEYWARD_OPERATOR_TOKEN", OPERATOR_TOKEN).env("KEYWARD_LOG", "info");
    command
}

/// `keyward serve` in `dir` with `config` as its `keyward.toml`; killed on drop.
pub struct Server {
    pub child: Child,
    /// The main listener's `host:port`.
    pub api: String,
    /// The gateway's `host:port`, when the config has a `[gateway]`.
    pub gateway: Option<String>,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub fn start(dir: &Path, config: &str) -> Self {
        std::fs::write(dir.join("keyward.toml"), config).expect("config");
        let mut child = command(dir)
            .args(["serve", "--listen", "127.0.0.1:0", "--config", "keyward.toml"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn keyward");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let field = |line: &str, name: &str| {
            let at = line.find(name).unwrap_or_else(|| panic!("{name} in {line}"));
            line[at + name.len()..].split_whitespace().next().expect("a value").to_owned()
        };
        // The gateway is announced before the main listener.
        let mut gateway = None;
        let api = loop {
            let line = lines.next().expect("keyward exited early").expect("stderr");
            log.lock().unwrap().push(line.clone());
            if line.contains("keyward gateway is serving") {
                gateway = Some(field(&line, "gateway_address="));
            } else if line.contains("keyward is serving") {
                break field(&line, " address=");
            }
        };
        let later = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                later.lock().unwrap().push(line);
            }
        });
        Self { child, api, gateway, log }
    }

    /// The gateway's address (the config must have a `[gateway]`).
    pub fn gateway(&self) -> &str {
        self.gateway.as_deref().expect("the config has a [gateway]")
    }

    /// Sends `kill <name>` (e.g. `-HUP`) to the server.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").args([name, &self.child.id().to_string()]).status().expect("kill");
        assert!(status.success());
    }

    /// Waits for the `n`th log line (1-based) that contains `needle`, and returns it.
    pub fn wait_for_log(&self, needle: &str, n: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(line) = self.log.lock().unwrap().iter().filter(|l| l.contains(needle)).nth(n - 1) {
                return line.clone();
            }
            assert!(Instant::now() < deadline, "no log line {needle:?}: {:#?}", self.log.lock().unwrap());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The upstream waits this long before answering a path that ends in `/slow`.
pub const SLOW_UPSTREAM: Duration = Duration::from_millis(1500);
pub const UPSTREAM_BODY: &str = "upstream says hi";

/// The platform's API behind the gateway: answers every request with `UPSTREAM_BODY` and an
/// `x-seen-proto` header (the `X-Forwarded-Proto` it was sent, or `none`), on keep-alive
/// connections. Request bodies are not expected.
pub fn start_upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the upstream");
    let port = listener.local_addr().expect("upstream address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || serve_upstream_connection(stream));
        }
    });
    port
}

fn serve_upstream_connection(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut received = Vec::new();
    let mut buffer = [0_u8; 4096];
    loop {
        while let Some(head_end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..head_end]).into_owned();
            received.drain(..head_end + 4);
            let target = head.split_whitespace().nth(1).unwrap_or_default();
            if target.ends_with("/slow") {
                std::thread::sleep(SLOW_UPSTREAM);
            }
            let proto = head.lines().find_map(|line| line.strip_prefix("x-forwarded-proto: ")).unwrap_or("none");
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-seen-proto: {proto}\r\ncontent-length: {}\r\n\r\n{UPSTREAM_BODY}",
                UPSTREAM_BODY.len()
            );
            if stream.write_all(answer.as_bytes()).is_err() {
                return;
            }
        }
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
        }
    }
}

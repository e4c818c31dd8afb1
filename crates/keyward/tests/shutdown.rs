//! SIGTERM under load (issue 12): the real binary, keep-alive clients verifying as fast as they
//! can, `kill -TERM` mid-stream. No request fully written on a keep-alive connection may go
//! unanswered. `KEYWARD_SIGTERM_TRIALS` sets the number of trials (default 2;
//! `scripts/sigterm-test.sh` runs 20 and prints the figures).

mod support;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{start_upstream, Server, OPERATOR_TOKEN};

/// Keep-alive connections sending at once (under the default per-address cap).
const CLIENTS: usize = 32;

/// One HTTP/1.1 exchange on `stream`: `Ok(Some(close))` with the answer's `Connection: close`,
/// `Ok(None)` when the server closed or reset the connection before answering in full.
fn exchange(stream: &mut TcpStream, request: &[u8]) -> std::io::Result<Option<bool>> {
    stream.write_all(request)?;
    let mut received = Vec::new();
    let mut buffer = [0_u8; 4096];
    loop {
        let Ok(n) = stream.read(&mut buffer) else {
            return Ok(None);
        };
        if n == 0 {
            return Ok(None);
        }
        received.extend_from_slice(&buffer[..n]);
        let Some(head_end) = received.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
        let head = String::from_utf8_lossy(&received[..head_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if received.len() >= head_end + 4 + length {
            // Through the gateway a key past its limit is refused with 429: still an answer.
            assert!(head.starts_with("http/1.1 200") || head.starts_with("http/1.1 429"), "{head}");
            return Ok(Some(head.contains("\r\nconnection: close")));
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    answered: u64,
    /// Written in full on an open keep-alive connection (one that had answered before), never
    /// answered.
    lost: u64,
    /// The first request of a new connection, reset unanswered: the connection sat in the
    /// kernel's accept queue when the listener closed (no server can answer those; a load
    /// balancer stops opening them once `/readyz` says 503).
    reset_in_accept_queue: u64,
}

/// Sends verifications on one keep-alive connection after another until the server is gone.
fn client(address: &str, request: &[u8], stop: &AtomicBool) -> Tally {
    let mut tally = Tally::default();
    'connections: while !stop.load(Ordering::Relaxed) {
        // Refused: the listener is closed, nothing was sent.
        let Ok(mut stream) = TcpStream::connect(address) else { break };
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let mut reused = false;
        loop {
            match exchange(&mut stream, request) {
                Ok(Some(close)) => {
                    tally.answered += 1;
                    reused = true;
                    if close {
                        continue 'connections;
                    }
                }
                Ok(None) if reused => {
                    tally.lost += 1;
                    continue 'connections;
                }
                Ok(None) => {
                    tally.reset_in_accept_queue += 1;
                    continue 'connections;
                }
                // The write failed: the server had closed before we sent, so nothing was lost.
                Err(_) => continue 'connections,
            }
            if stop.load(Ordering::Relaxed) {
                break 'connections;
            }
        }
    }
    tally
}

fn post(address: &str, path: &str, body: &str) -> serde_json::Value {
    let response = reqwest::blocking::Client::new()
        .post(format!("http://{address}{path}"))
        .bearer_auth(OPERATOR_TOKEN)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .expect("request");
    response.json().expect("json")
}

/// Where the load goes: keyward's own `/v1/verify`, or a route of its gateway (`[gateway]`, in
/// front of a small upstream), verified with the key in `Authorization`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Door {
    Verify,
    Gateway,
}

/// One trial: the load runs `warm_up`, then SIGTERM; returns the tally and how long the exit took.
fn trial(door: Door, drain_seconds: u64, warm_up: Duration) -> (Tally, Duration) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = format!("shutdown_drain_seconds = {drain_seconds}\n");
    if door == Door::Gateway {
        config = format!(
            "scopes = [\"templates:read\"]\ndefault_scopes = [\"templates:read\"]\n{config}\n\
             [gateway]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:{}\"\n\n\
             [[gateway.routes]]\nmethod = \"GET\"\npath = \"/v1/templates/{{id}}\"\nscopes = [\"templates:read\"]\n",
            start_upstream()
        );
    }
    let mut server = Server::start(dir.path(), &config);
    let org = post(&server.api, "/v1/orgs", r#"{"name": "Acme"}"#)["id"].as_str().expect("org").to_owned();
    // The highest limit a key may have; past it the gateway answers 429, which counts as answered.
    let created = post(&server.api, &format!("/v1/orgs/{org}/keys"), r#"{"name": "load", "rate_limit": 1000}"#);
    let secret = created["secret"].as_str().expect("secret");
    let (address, request) = match door {
        Door::Verify => {
            let body = format!(r#"{{"key": "{secret}"}}"#);
            let request = format!(
                "POST /v1/verify HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {OPERATOR_TOKEN}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                server.api,
                body.len()
            );
            (server.api.clone(), request)
        }
        Door::Gateway => {
            let address = server.gateway().to_owned();
            let request =
                format!("GET /v1/templates/t1 HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {secret}\r\n\r\n");
            (address, request)
        }
    };
    let request = request.into_bytes();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (address, request, stop) = (address.clone(), request.clone(), Arc::clone(&stop));
            std::thread::spawn(move || client(&address, &request, &stop))
        })
        .collect();
    std::thread::sleep(warm_up);
    let signalled = Instant::now();
    let status = Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let exit = server.child.wait().expect("wait");
    let exit_took = signalled.elapsed();
    assert!(exit.success(), "graceful exit: {exit:?}");
    stop.store(true, Ordering::Relaxed);
    let mut total = Tally::default();
    for client in clients {
        let tally = client.join().expect("client thread");
        total.answered += tally.answered;
        total.lost += tally.lost;
        total.reset_in_accept_queue += tally.reset_in_accept_queue;
    }
    (total, exit_took)
}

/// `trials` trials against `door`; returns the requests lost on keep-alive connections.
fn trials(door: Door) -> u64 {
    let trials: usize = std::env::var("KEYWARD_SIGTERM_TRIALS").ok().and_then(|n| n.parse().ok()).unwrap_or(2);
    let (mut lost, mut answered, mut queued) = (0, 0, 0);
    for n in 1..=trials {
        let (tally, exit_took) = trial(door, 0, Duration::from_millis(1500));
        eprintln!(
            "SIGTERM {door:?} trial {n}/{trials}: {} answered, {} lost on keep-alive connections, {} reset in the accept queue, exited {:.0} ms after the signal",
            tally.answered,
            tally.lost,
            tally.reset_in_accept_queue,
            exit_took.as_secs_f64() * 1e3
        );
        assert!(tally.answered > 100, "the load ran: {tally:?}");
        lost += tally.lost;
        answered += tally.answered;
        queued += tally.reset_in_accept_queue;
    }
    eprintln!(
        "SIGTERM {door:?}: {lost} requests lost on keep-alive connections in {trials} trials ({answered} answered, {queued} new connections reset in the accept queue)"
    );
    lost
}

#[test]
fn sigterm_under_load_loses_no_request_written_on_a_keep_alive_connection() {
    assert_eq!(trials(Door::Verify), 0);
}

#[test]
fn sigterm_under_load_through_the_gateway_loses_no_request_written_on_a_keep_alive_connection() {
    assert_eq!(trials(Door::Gateway), 0);
}

#[test]
fn the_drain_keeps_serving_for_its_configured_time() {
    let (tally, exit_took) = trial(Door::Verify, 2, Duration::from_millis(500));
    assert_eq!(tally.lost, 0, "{tally:?}");
    assert!(exit_took >= Duration::from_secs(2), "served through the drain: {exit_took:?}");
    assert!(exit_took < Duration::from_secs(6), "then stopped: {exit_took:?}");
}

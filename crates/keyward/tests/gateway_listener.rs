//! The gateway's listener (`[gateway] listen`) is hardened like the main one (issue 12): the real
//! binary in front of a small upstream on an ephemeral port. A client trickling headers is cut off
//! after the header read timeout while a keep-alive client goes on, connections per address are
//! capped (trusted proxies exempt), hyper's own 414 and 431 are problem+json, `tls_cert` /
//! `tls_key` serve the gateway over HTTPS too (HSTS, the same certificate, reloaded on SIGHUP),
//! and SIGTERM drains the gateway with the main listener without losing a request.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use serde_json::Value;
use support::{start_upstream, Server, OPERATOR_TOKEN, UPSTREAM_BODY};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, ClientConnection, RootCertStore, StreamOwned};

const HSTS: &str = "max-age=63072000; includeSubDomains";
/// A config with `extra` at the top and a gateway in front of `upstream_port` with two routes.
fn config(extra: &str, upstream_port: u16) -> String {
    format!(
        "scopes = [\"templates:read\"]\ndefault_scopes = [\"templates:read\"]\n{extra}\n\
         [gateway]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:{upstream_port}\"\nresponse_timeout_ms = 5000\n\n\
         [[gateway.routes]]\nmethod = \"GET\"\npath = \"/v1/templates/{{id}}\"\nscopes = [\"templates:read\"]\n"
    )
}

#[derive(Debug)]
struct Response {
    status: u16,
    head: String,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.split("\r\n").skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn closes(&self) -> bool {
        self.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }

    fn assert_problem(&self, status: u16) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.header("content-type"), Some("application/problem+json"), "{self:?}");
        let body = self.json();
        assert_eq!(body["status"], status, "{body}");
        assert!(body["code"].is_string() && body["detail"].is_string(), "{body}");
    }
}

/// Writes `request` and reads one answer; `None` when the connection ends before a whole one.
fn exchange(stream: &mut impl ReadWriteStream, request: &[u8]) -> Option<Response> {
    // The server may answer (and close) before it has read everything: read what it said.
    let _ = stream.write_all(request).and_then(|()| stream.flush());
    let mut received = Vec::new();
    let mut buffer = [0_u8; 8192];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return None,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
        }
        let Some(head_end) = received.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
        let head = String::from_utf8_lossy(&received[..head_end]).into_owned();
        let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let response = Response { status, head, body: String::new() };
        let length: usize = response.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        if received.len() >= head_end + 4 + length {
            let body = String::from_utf8_lossy(&received[head_end + 4..head_end + 4 + length]).into_owned();
            return Some(Response { body, ..response });
        }
    }
}

trait ReadWriteStream: Read + Write {}
impl<T: Read + Write> ReadWriteStream for T {}

fn get(path: &str, key: Option<&str>) -> Vec<u8> {
    let key = key.map(|key| format!("x-api-key: {key}\r\n")).unwrap_or_default();
    format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n{key}\r\n").into_bytes()
}

fn post(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {OPERATOR_TOKEN}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn connect(address: &str) -> TcpStream {
    let stream = TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    stream
}

/// An org and a key for the gateway's routes, created through the main API on `connection()`.
fn gateway_key<S: ReadWriteStream>(mut connection: impl FnMut() -> S) -> String {
    let org = exchange(&mut connection(), &post("/v1/orgs", r#"{"name": "Acme"}"#)).expect("org").json();
    let org = org["id"].as_str().expect("org id").to_owned();
    let body = r#"{"name": "gateway", "scopes": ["templates:read"]}"#;
    let created = exchange(&mut connection(), &post(&format!("/v1/orgs/{org}/keys"), body)).expect("key");
    assert_eq!(created.status, 201, "{created:?}");
    created.json()["secret"].as_str().expect("secret").to_owned()
}

fn assert_forwarded(response: Option<Response>) -> Response {
    let response = response.expect("an answer");
    assert_eq!((response.status, response.body.as_str()), (200, UPSTREAM_BODY), "{response:?}");
    response
}

/// Sends a request a byte every 200 ms without ever finishing it; returns how long the server
/// held the connection before letting go, or `None` past `limit`.
fn trickle(address: &str, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    let mut buffer = [0_u8; 1024];
    for byte in
        b"GET /v1/templates/t1 HTTP/1.1\r\nhost: slow\r\nx-padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
            .iter()
            .cycle()
    {
        if stream.write_all(&[*byte]).is_err() {
            return Some(started.elapsed());
        }
        match stream.read(&mut buffer) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            // An answer (a refusal), an end or a reset: the server let go.
            _ => return Some(started.elapsed()),
        }
        if started.elapsed() > limit {
            return None;
        }
    }
    None
}

#[test]
fn a_gateway_connection_trickling_headers_is_closed_after_the_header_read_timeout_while_keep_alive_works() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &config("header_read_timeout_seconds = 1\nshutdown_drain_seconds = 0", start_upstream()),
    );
    let key = gateway_key(|| connect(&server.api));
    let mut kept = connect(server.gateway());
    let answer = assert_forwarded(exchange(&mut kept, &get("/v1/templates/t1", Some(&key))));
    assert_eq!(answer.header("x-seen-proto"), Some("http"), "{answer:?}");

    let address = server.gateway().to_owned();
    let trickler = std::thread::spawn(move || trickle(&address, Duration::from_secs(6)));
    // Meanwhile the keep-alive client is served on its connection, pausing less than the timeout.
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(300));
        let answer = assert_forwarded(exchange(&mut kept, &get("/v1/templates/t1", Some(&key))));
        assert!(!answer.closes(), "{answer:?}");
    }
    let held = trickler.join().expect("trickler").expect("the trickling connection was held past 6 s");
    assert!(held >= Duration::from_millis(800) && held < Duration::from_secs(3), "held {held:?}");
}

#[test]
fn the_gateway_listener_caps_connections_per_address_and_exempts_trusted_proxies() {
    let upstream = start_upstream();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &config("max_connections_per_ip = 2\nshutdown_drain_seconds = 0", upstream));
    let key = gateway_key(|| connect(&server.api));
    let request = get("/v1/templates/t1", Some(&key));
    // Two connections, each answered once so the listener has counted it.
    let mut first = connect(server.gateway());
    let mut second = connect(server.gateway());
    assert_forwarded(exchange(&mut first, &request));
    assert_forwarded(exchange(&mut second, &request));
    let refused = exchange(&mut connect(server.gateway()), &request).expect("a refusal");
    refused.assert_problem(503);
    assert!(refused.closes(), "{refused:?}");
    // The cap is the gateway's own: the main listener still takes this address.
    assert_eq!(exchange(&mut connect(&server.api), &get("/healthz", None)).expect("healthz").status, 200);
    // A connection closed gives its slot back.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = exchange(&mut connect(server.gateway()), &request).expect("an answer");
        if answer.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still refused: {answer:?}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // A trusted proxy's connections are not counted.
    let dir = tempfile::tempdir().unwrap();
    let extra = "max_connections_per_ip = 1\ntrusted_proxies = [\"127.0.0.1\"]\nshutdown_drain_seconds = 0";
    let server = Server::start(dir.path(), &config(extra, upstream));
    let key = gateway_key(|| connect(&server.api));
    let request = get("/v1/templates/t1", Some(&key));
    let mut open: Vec<TcpStream> = (0..3).map(|_| connect(server.gateway())).collect();
    for stream in &mut open {
        assert_forwarded(exchange(stream, &request));
    }
}

#[test]
fn the_gateway_answers_a_100_kb_url_with_414_and_a_1_mb_header_with_431_as_problem_json() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &config("shutdown_drain_seconds = 0", start_upstream()));
    let long_url = format!("GET /v1/templates/t1?{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(100 * 1024));
    exchange(&mut connect(server.gateway()), long_url.as_bytes()).expect("an answer").assert_problem(414);
    let big_header = format!("GET /v1/templates/t1 HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n", "b".repeat(1024 * 1024));
    exchange(&mut connect(server.gateway()), big_header.as_bytes()).expect("an answer").assert_problem(431);
    exchange(&mut connect(server.gateway()), b"NOT HTTP AT ALL\r\n\r\n").expect("an answer").assert_problem(400);
}

/// A throw-away certificate authority.
struct Ca {
    cert: rcgen::Certificate,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self { cert, issuer: Issuer::new(params, key) }
    }

    /// Writes a `localhost` certificate signed by this CA as `cert.pem` and `key.pem` in `dir`.
    fn write_leaf(&self, dir: &Path) {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        std::fs::write(dir.join("cert.pem"), format!("{}{}", cert.pem(), self.cert.pem())).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    }

    fn client_config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from(self.cert.der().to_vec())).unwrap();
        let config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }
}

type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// A TLS connection to `address` trusting only `ca`, handshake done.
fn connect_tls(address: &str, ca: &Ca) -> std::io::Result<TlsStream> {
    let socket = connect(address);
    let connection = ClientConnection::new(ca.client_config(), ServerName::try_from("localhost").unwrap()).unwrap();
    let mut stream = StreamOwned::new(connection, socket);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

#[test]
fn with_tls_cert_and_key_the_gateway_serves_https_with_hsts_and_reloads_the_certificate_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let (first_ca, second_ca) = (Ca::new("first CA"), Ca::new("second CA"));
    first_ca.write_leaf(dir.path());
    let extra = "tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\nshutdown_drain_seconds = 0";
    let server = Server::start(dir.path(), &config(extra, start_upstream()));
    let key = gateway_key(|| connect_tls(&server.api, &first_ca).expect("HTTPS on the main listener"));

    let mut stream = connect_tls(server.gateway(), &first_ca).expect("HTTPS on the gateway");
    let answer = assert_forwarded(exchange(&mut stream, &get("/v1/templates/t1", Some(&key))));
    assert_eq!(answer.header("strict-transport-security"), Some(HSTS), "{answer:?}");
    assert_eq!(answer.header("x-seen-proto"), Some("https"), "the upstream is told the client used HTTPS");
    // The gateway's own refusals and hyper's carry it too.
    let refused = exchange(&mut stream, &get("/v1/templates/t1", None)).expect("a refusal");
    refused.assert_problem(401);
    assert_eq!(refused.header("strict-transport-security"), Some(HSTS), "{refused:?}");
    let long_url = format!("GET /v1/templates/t1?{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(100 * 1024));
    let too_long = exchange(&mut connect_tls(server.gateway(), &first_ca).unwrap(), long_url.as_bytes()).expect("414");
    too_long.assert_problem(414);
    assert_eq!(too_long.header("strict-transport-security"), Some(HSTS), "{too_long:?}");

    // Plain HTTP to the gateway's TLS port gets no HTTP answer.
    let plain = exchange(&mut connect(server.gateway()), &get("/v1/templates/t1", Some(&key)));
    assert!(plain.is_none(), "{plain:?}");

    // SIGHUP: the gateway serves the new certificate to new connections, like the main listener.
    second_ca.write_leaf(dir.path());
    server.signal("-HUP");
    server.wait_for_log("TLS certificate reloaded", 1);
    let mut fresh = connect_tls(server.gateway(), &second_ca).expect("the new certificate on the gateway");
    assert_forwarded(exchange(&mut fresh, &get("/v1/templates/t1", Some(&key))));
    assert!(connect_tls(server.gateway(), &first_ca).is_err(), "the old certificate is no longer served");
    // The connection opened before the reload goes on.
    assert_forwarded(exchange(&mut stream, &get("/v1/templates/t1", Some(&key))));
}

#[test]
fn on_sigterm_the_gateway_drains_with_the_main_listener_and_answers_what_it_has_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &config("shutdown_drain_seconds = 2", start_upstream()));
    let key = gateway_key(|| connect(&server.api));
    let request = get("/v1/templates/t1", Some(&key));
    let mut kept = connect(server.gateway());
    let mut slow = connect(server.gateway());
    assert_forwarded(exchange(&mut kept, &request));
    assert_forwarded(exchange(&mut slow, &request));

    let signalled = Instant::now();
    server.signal("-TERM");
    std::thread::sleep(Duration::from_millis(200));
    // During the drain new connections are served, and told to close.
    let answer = assert_forwarded(exchange(&mut connect(server.gateway()), &request));
    assert!(answer.closes(), "{answer:?}");
    // A request whose upstream answers only after the drain has ended is answered…
    std::thread::sleep(Duration::from_millis(1200).saturating_sub(signalled.elapsed()));
    let in_flight = std::thread::spawn(move || exchange(&mut slow, &get("/v1/templates/slow", Some(&key))));
    // …and so is one written on an open keep-alive connection just before the drain ends.
    std::thread::sleep(Duration::from_millis(1850).saturating_sub(signalled.elapsed()));
    let answer = assert_forwarded(exchange(&mut kept, &request));
    assert!(answer.closes(), "{answer:?}");
    let answer = assert_forwarded(in_flight.join().expect("in-flight request"));
    assert!(answer.closes(), "{answer:?}");
    assert!(signalled.elapsed() >= Duration::from_millis(2500), "the slow answer came after the drain");

    let exit = server.child.wait().expect("wait");
    let exit_took = signalled.elapsed();
    assert!(exit.success(), "graceful exit: {exit:?}");
    assert!(exit_took < Duration::from_secs(6), "then stopped: {exit_took:?}");
    assert!(TcpStream::connect(server.gateway()).is_err(), "the gateway no longer accepts");
}

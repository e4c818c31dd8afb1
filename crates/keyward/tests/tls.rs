//! TLS on the listener (issue 12): the real binary with `tls_cert` / `tls_key`, certificates made
//! by a throw-away CA at test time, a rustls client that trusts only that CA. HTTPS answers with
//! HSTS, plain HTTP on the TLS port gets no answer, SIGHUP serves a new certificate to new
//! connections (a bad file keeps the old one), the console's session cookie is `__Host-` and
//! `Secure`, a handshake is bounded by the header read timeout and counts against the per-address
//! cap, and one TLS setting without the other stops the start.

mod support;

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use serde_json::{json, Value};
use support::{Server, OPERATOR_TOKEN};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, ClientConnection, RootCertStore, StreamOwned};

const HSTS: &str = "max-age=63072000; includeSubDomains";

/// A throw-away certificate authority.
struct Ca {
    cert: rcgen::Certificate,
    issuer: Issuer<'static, KeyPair>,
}

/// A server certificate for `localhost` and 127.0.0.1: the PEM chain and key, and the leaf.
struct Leaf {
    chain_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
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

    fn leaf(&self) -> Leaf {
        let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            chain_pem: format!("{}{}", cert.pem(), self.cert.pem()),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }
}

fn write_leaf(dir: &Path, leaf: &Leaf) {
    std::fs::write(dir.join("cert.pem"), &leaf.chain_pem).unwrap();
    std::fs::write(dir.join("key.pem"), &leaf.key_pem).unwrap();
}

const TLS_CONFIG: &str = "tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\nshutdown_drain_seconds = 0\n";

type Tls = StreamOwned<ClientConnection, TcpStream>;

fn client_config(ca: &CertificateDer<'static>, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let mut config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A TLS connection to `address` trusting only `ca`, handshake done.
fn connect_with(address: &str, config: Arc<ClientConfig>) -> std::io::Result<Tls> {
    let socket = TcpStream::connect(address)?;
    socket.set_read_timeout(Some(Duration::from_secs(10)))?;
    let connection = ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut stream = StreamOwned::new(connection, socket);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

fn connect(address: &str, ca: &CertificateDer<'static>) -> std::io::Result<Tls> {
    connect_with(address, client_config(ca, &[b"h2", b"http/1.1"]))
}

fn peer_leaf(stream: &Tls) -> CertificateDer<'static> {
    stream.conn.peer_certificates().expect("a certificate")[0].clone().into_owned()
}

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// One HTTP/1.1 exchange on an open connection (kept alive unless the answer says otherwise).
fn exchange(stream: &mut impl ReadWrite, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
    let mut request = format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\n", body.len());
    for (name, value) in headers {
        let _ = write!(request, "{name}: {value}\r\n");
    }
    request.push_str("\r\n");
    request.push_str(body);
    exchange_raw(stream, request.as_bytes())
}

/// Sends `request` as it is and reads one answer.
fn exchange_raw(stream: &mut impl ReadWrite, request: &[u8]) -> Response {
    stream.write_all(request).unwrap();
    stream.flush().unwrap();
    let mut received = Vec::new();
    let mut buffer = [0_u8; 8192];
    loop {
        let n = stream.read(&mut buffer).unwrap();
        assert!(n > 0, "closed before a whole answer: {}", String::from_utf8_lossy(&received));
        received.extend_from_slice(&buffer[..n]);
        let Some(head_end) = received.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
        let head = String::from_utf8_lossy(&received[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers.iter().find(|(n, _)| n == "content-length").map_or(0, |(_, v)| v.parse().unwrap());
        if received.len() >= head_end + 4 + length {
            let body = String::from_utf8_lossy(&received[head_end + 4..head_end + 4 + length]).into_owned();
            return Response { status, headers, body };
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// A request on a fresh HTTPS connection.
fn https(server: &Server, ca: &Ca, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
    let mut stream = connect(&server.api, &ca.der()).expect("TLS connection");
    exchange(&mut stream, method, path, headers, body)
}

fn operator_post(server: &Server, ca: &Ca, path: &str, body: &Value) -> Value {
    let bearer = format!("Bearer {OPERATOR_TOKEN}");
    let headers = [("authorization", bearer.as_str()), ("content-type", "application/json")];
    let answer = https(server, ca, "POST", path, &headers, &body.to_string());
    assert!(answer.status == 200 || answer.status == 201, "{path}: {answer:?}");
    answer.json()
}

#[test]
fn https_answers_with_hsts_and_plain_http_on_the_tls_port_gets_no_answer() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("keyward test CA");
    let leaf = ca.leaf();
    write_leaf(dir.path(), &leaf);
    let server = Server::start(dir.path(), TLS_CONFIG);
    assert!(server.log.lock().unwrap().iter().any(|l| l.contains("https=true")));

    let mut stream = connect(&server.api, &ca.der()).expect("a client trusting the CA connects");
    assert_eq!(peer_leaf(&stream), leaf.der);
    assert_eq!(stream.conn.alpn_protocol(), Some(&b"http/1.1"[..]), "HTTP/1.1 is chosen over h2");
    let answer = exchange(&mut stream, "GET", "/healthz", &[], "");
    assert_eq!((answer.status, answer.body.as_str()), (200, "ok"));
    assert_eq!(answer.header("strict-transport-security"), Some(HSTS));
    // Kept alive: a second request on the same connection, HSTS again (404s too).
    let answer = exchange(&mut stream, "GET", "/nope", &[], "");
    assert_eq!(answer.status, 404);
    assert_eq!(answer.header("strict-transport-security"), Some(HSTS));
    // hyper's own answers (a 400 it writes before the app sees the request) carry it too.
    let answer = exchange_raw(&mut connect(&server.api, &ca.der()).unwrap(), b"NOT HTTP\r\n\r\n");
    assert_eq!(answer.status, 400);
    assert_eq!(answer.header("content-type"), Some("application/problem+json"), "{answer:?}");
    assert_eq!(answer.header("strict-transport-security"), Some(HSTS), "{answer:?}");

    // A client that trusts another CA is refused by its own check; one that offers only h2 by ours.
    let stranger = Ca::new("another CA");
    assert!(connect(&server.api, &stranger.der()).is_err());
    assert!(connect_with(&server.api, client_config(&ca.der(), &[b"h2"])).is_err());

    // Plain HTTP to the TLS port: no HTTP answer, and the connection ends (no hang).
    let mut plain = TcpStream::connect(&server.api).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    plain.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n").unwrap();
    let mut received = Vec::new();
    match plain.read_to_end(&mut received) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the connection was neither closed nor reset: {e}"),
    }
    assert!(!received.starts_with(b"HTTP/"), "{}", String::from_utf8_lossy(&received));

    // The listener is unharmed.
    assert_eq!(https(&server, &ca, "GET", "/healthz", &[], "").status, 200);
}

#[test]
fn sighup_serves_the_new_certificate_to_new_connections_and_a_bad_file_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let (first_ca, second_ca) = (Ca::new("first CA"), Ca::new("second CA"));
    let first = first_ca.leaf();
    write_leaf(dir.path(), &first);
    let server = Server::start(dir.path(), TLS_CONFIG);
    let mut kept = connect(&server.api, &first_ca.der()).unwrap();
    assert_eq!(exchange(&mut kept, "GET", "/healthz", &[], "").status, 200);

    let second = second_ca.leaf();
    write_leaf(dir.path(), &second);
    server.signal("-HUP");
    let line = server.wait_for_log("TLS certificate reloaded", 1);
    assert!(line.contains("cert.pem"), "{line}");
    let fresh = connect(&server.api, &second_ca.der()).expect("new connections get the new certificate");
    assert_eq!(peer_leaf(&fresh), second.der);
    assert!(connect(&server.api, &first_ca.der()).is_err(), "the old certificate is no longer served");
    // A connection opened before the reload goes on.
    assert_eq!(exchange(&mut kept, "GET", "/healthz", &[], "").status, 200);

    // A key that is not a key: logged as an error naming the file, the old certificate stays.
    let garbled = second.key_pem.replace("-----END PRIVATE KEY-----", "");
    std::fs::write(dir.path().join("key.pem"), &garbled).unwrap();
    server.signal("-HUP");
    let line = server.wait_for_log("TLS certificate not reloaded", 1);
    assert!(line.contains("ERROR") && line.contains("tls_key") && line.contains("key.pem"), "{line}");
    let body: String = garbled.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!line.contains(&body[..24]), "no key material in the log: {line}");
    let after = connect(&server.api, &second_ca.der()).expect("still served");
    assert_eq!(peer_leaf(&after), second.der);

    // A certificate whose key is missing: the same.
    let third = first_ca.leaf();
    std::fs::write(dir.path().join("cert.pem"), &third.chain_pem).unwrap();
    std::fs::remove_file(dir.path().join("key.pem")).unwrap();
    server.signal("-HUP");
    let line = server.wait_for_log("TLS certificate not reloaded", 2);
    assert!(line.contains("cannot read"), "{line}");
    assert_eq!(peer_leaf(&connect(&server.api, &second_ca.der()).unwrap()), second.der);

    // Both files fixed: served from the next connection on.
    write_leaf(dir.path(), &third);
    server.signal("-HUP");
    server.wait_for_log("TLS certificate reloaded", 2);
    assert_eq!(peer_leaf(&connect(&server.api, &first_ca.der()).unwrap()), third.der);
}

/// `(name, attributes lower-cased)` of a `Set-Cookie` value.
fn parse_cookie(set_cookie: &str) -> (String, String, Vec<String>) {
    let mut parts = set_cookie.split(';').map(str::trim);
    let (name, value) = parts.next().unwrap().split_once('=').unwrap();
    (name.to_owned(), value.to_owned(), parts.map(str::to_ascii_lowercase).collect())
}

#[test]
fn login_over_tls_sets_a_host_prefixed_secure_cookie_that_the_console_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("keyward test CA");
    write_leaf(dir.path(), &ca.leaf());
    let server = Server::start(dir.path(), TLS_CONFIG);
    let org = operator_post(&server, &ca, "/v1/orgs", &json!({ "name": "Acme" }))["id"].as_str().unwrap().to_owned();
    let password = "a-long-enough-password-4711";
    operator_post(
        &server,
        &ca,
        &format!("/v1/orgs/{org}/members"),
        &json!({ "email": "ann@acme.test", "password": password, "role": "admin" }),
    );

    let body = json!({ "email": "ann@acme.test", "password": password }).to_string();
    let login = https(&server, &ca, "POST", "/v1/session", &[("content-type", "application/json")], &body);
    assert_eq!(login.status, 200, "{login:?}");
    assert_eq!(login.header("strict-transport-security"), Some(HSTS));
    let (name, token, attributes) = parse_cookie(login.header("set-cookie").expect("set-cookie"));
    assert_eq!(name, "__Host-keyward_session", "{attributes:?}");
    for attribute in ["secure", "httponly", "samesite=strict", "path=/"] {
        assert!(attributes.iter().any(|a| a == attribute), "{attribute} missing: {attributes:?}");
    }
    assert!(!attributes.iter().any(|a| a.starts_with("domain")), "__Host- forbids Domain: {attributes:?}");
    let csrf = login.json()["csrf_token"].as_str().unwrap().to_owned();

    // The console reads the prefixed cookie back; the unprefixed name is not a session over TLS.
    let cookie = format!("__Host-keyward_session={token}");
    let page = https(&server, &ca, "GET", "/settings/api-keys", &[("cookie", &cookie)], "");
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.contains(&csrf), "the page carries the session's CSRF token");
    assert_eq!(page.header("strict-transport-security"), Some(HSTS));
    let unprefixed = format!("keyward_session={token}");
    let page = https(&server, &ca, "GET", "/settings/api-keys", &[("cookie", &unprefixed)], "");
    assert_eq!((page.status, page.header("location")), (303, Some("/login")), "{page:?}");
    let answer = https(&server, &ca, "GET", &format!("/v1/orgs/{org}/keys"), &[("cookie", &unprefixed)], "");
    assert_eq!(answer.status, 401, "{answer:?}");

    // The JSON API with the cookie and the CSRF token, then logging out clears the same cookie.
    let key = json!({ "name": "from the console" }).to_string();
    let headers = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str()), ("content-type", "application/json")];
    let created = https(&server, &ca, "POST", &format!("/v1/orgs/{org}/keys"), &headers, &key);
    assert_eq!(created.status, 201, "{created:?}");
    let headers = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];
    let logout = https(&server, &ca, "DELETE", "/v1/session", &headers, "");
    assert_eq!(logout.status, 204, "{logout:?}");
    let (name, value, attributes) = parse_cookie(logout.header("set-cookie").expect("set-cookie"));
    assert_eq!((name.as_str(), value.as_str()), ("__Host-keyward_session", ""));
    assert!(attributes.iter().any(|a| a == "secure") && attributes.iter().any(|a| a == "max-age=0"), "{attributes:?}");
    let page = https(&server, &ca, "GET", "/settings/api-keys", &[("cookie", &cookie)], "");
    assert_eq!(page.status, 303, "the session ended: {page:?}");
}

#[test]
fn a_handshake_is_bounded_by_the_header_read_timeout_and_counts_against_the_per_address_cap() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("keyward test CA");
    write_leaf(dir.path(), &ca.leaf());
    let config = format!("{TLS_CONFIG}header_read_timeout_seconds = 2\nmax_connections_per_ip = 2\n");
    let server = Server::start(dir.path(), &config);

    // A client that connects and never says hello.
    let opened = Instant::now();
    let mut silent = TcpStream::connect(&server.api).unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // It holds one slot, not the listener: another client is served meanwhile.
    let mut answered = connect(&server.api, &ca.der()).expect("served while a handshake waits");
    assert_eq!(exchange(&mut answered, "GET", "/healthz", &[], "").status, 200);
    // Two open connections from this address: a third is closed before any handshake.
    assert!(connect(&server.api, &ca.der()).is_err(), "over the per-address cap");

    // The silent one is closed once the header read timeout passes.
    let mut buffer = [0_u8; 64];
    let read = silent.read(&mut buffer);
    let waited = opened.elapsed();
    assert!(matches!(read, Ok(0)) || read.is_err(), "{read:?}");
    assert!(waited >= Duration::from_millis(1500) && waited < Duration::from_secs(8), "closed after {waited:?}");
    drop(answered);
    // Slots given back: new connections are served.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match connect(&server.api, &ca.der()) {
            Ok(mut stream) => {
                assert_eq!(exchange(&mut stream, "GET", "/healthz", &[], "").status, 200);
                break;
            }
            Err(error) => assert!(Instant::now() < deadline, "still refused: {error}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

type RefusedStart<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, &'a [&'a str]);

/// `keyward serve` that must not start: its exit code and stderr.
fn refused_start(dir: &Path, config: &str, env: &[(&str, &str)]) -> (i32, String) {
    std::fs::write(dir.join("keyward.toml"), config).unwrap();
    let mut command = support::command(dir);
    command.args(["serve", "--listen", "127.0.0.1:0", "--config", "keyward.toml"]);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let output = wait_with_timeout(output, Duration::from_secs(30));
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stderr).into_owned())
}

fn wait_with_timeout(mut child: Child, limit: Duration) -> std::process::Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("keyward started although it should have refused");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn one_tls_setting_without_the_other_or_an_unusable_file_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("keyward test CA");
    let leaf = ca.leaf();
    write_leaf(dir.path(), &leaf);
    // (case, config file, environment, what stderr must say)
    let cases: [RefusedStart<'_>; 7] = [
        ("cert only", "tls_cert = \"cert.pem\"\n", vec![], &["keyward.toml", "tls_key is missing"]),
        ("key only", "tls_key = \"key.pem\"\n", vec![], &["keyward.toml", "tls_cert is missing"]),
        ("env cert only", "", vec![("KEYWARD_TLS_CERT", "cert.pem")], &["KEYWARD_TLS_CERT", "tls_key is missing"]),
        ("env key only", "", vec![("KEYWARD_TLS_KEY", "key.pem")], &["KEYWARD_TLS_KEY", "tls_cert is missing"]),
        (
            "missing file",
            "tls_cert = \"nowhere.pem\"\ntls_key = \"key.pem\"\n",
            vec![],
            &["tls_cert nowhere.pem: cannot read"],
        ),
        (
            "a certificate as the key",
            "tls_cert = \"cert.pem\"\ntls_key = \"cert.pem\"\n",
            vec![],
            &["tls_key cert.pem"],
        ),
        (
            "another certificate's key",
            "tls_cert = \"cert.pem\"\ntls_key = \"other-key.pem\"\n",
            vec![],
            &["tls_key other-key.pem does not belong"],
        ),
    ];
    std::fs::write(dir.path().join("other-key.pem"), ca.leaf().key_pem).unwrap();
    for (case, config, env, expected) in cases {
        let (code, stderr) = refused_start(dir.path(), config, &env);
        assert_eq!(code, 2, "{case}: {stderr}");
        for part in expected {
            assert!(stderr.contains(part), "{case}: {part:?} not in {stderr}");
        }
        assert!(!stderr.contains("panicked"), "{case}: {stderr}");
        assert!(!dir.path().join("keyward.db").exists(), "{case}: nothing is written before the refusal");
    }

    // Both set in the environment: they replace the file's pair, and keyward starts.
    let config = "tls_cert = \"nowhere.pem\"\ntls_key = \"nowhere.pem\"\nshutdown_drain_seconds = 0\n";
    std::fs::write(dir.path().join("keyward.toml"), config).unwrap();
    let mut child = support::command(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--config", "keyward.toml"])
        .env("KEYWARD_TLS_CERT", "cert.pem")
        .env("KEYWARD_TLS_KEY", "key.pem")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .find(|line| line.contains("keyward is serving"));
    let _ = child.kill();
    let _ = child.wait();
    assert!(started.is_some_and(|line| line.contains("https=true")));
}

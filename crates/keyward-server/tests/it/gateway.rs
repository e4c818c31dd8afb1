//! Gateway mode through a real upstream: an HTTP server on an ephemeral port that records what
//! it received. Every refusal code, what reaches the upstream and what does not, streaming,
//! the body cap, an upstream that is down or slow, and `GET /v1/authorize`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::http::HeaderMap;
use futures_util::StreamExt as _;
use hmac::{Hmac, Mac};
use keyward_server::config::Config;
use keyward_server::gateway::proxy::{self, Gateway};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::support::{spawn_app_with, TestApp, START};

/// What the upstream saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: HeaderMap,
    body_len: usize,
}

/// The platform's API: records each request, streams bodies through without keeping them.
struct Upstream {
    address: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    async fn start() -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let app = axum::Router::new().fallback(move |request: Request| {
            let log = Arc::clone(&log);
            async move {
                let (parts, body) = request.into_parts();
                if parts.uri.path() == "/v1/slow" {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                let mut stream = body.into_data_stream();
                let mut body_len = 0;
                while let Some(Ok(chunk)) = stream.next().await {
                    body_len += chunk.len();
                }
                log.lock().unwrap().push(Seen {
                    method: parts.method.to_string(),
                    target: parts.uri.path_and_query().map(ToString::to_string).unwrap_or_default(),
                    headers: parts.headers,
                    body_len,
                });
                ([("x-upstream", "yes")], "upstream says hi")
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { address, seen }
    }

    fn last(&self) -> Seen {
        self.seen.lock().unwrap().last().cloned().expect("the upstream saw a request")
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

const ROUTES: &str = r#"
[[gateway.routes]]
method = "POST"
path = "/v1/messages"
scopes = ["messages:send"]
sender = "/from"
channels = "/target/channels"

[[gateway.routes]]
method = "GET"
path = "/v1/templates/{id}"
scopes = ["templates:read"]

[[gateway.routes]]
method = "POST"
path = "/v1/uploads"
scopes = ["library_assets:write"]

[[gateway.routes]]
method = "GET"
path = "/v1/slow"
scopes = ["templates:read"]
"#;

/// The app, its gateway on an ephemeral port in front of `upstream_port`, and the gateway's URL.
async fn gateway_in_front_of(upstream_port: u16, extra: &str) -> (TestApp, String) {
    let text = format!(
        "{extra}\n[gateway]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:{upstream_port}\"\n\
         max_body_bytes = 65536\nconnect_timeout_ms = 500\nresponse_timeout_ms = 1000\n{ROUTES}"
    );
    let config = Config::from_toml(&text).expect("a valid gateway config");
    let gateway_config = config.gateway.clone().expect("a gateway section");
    let app = spawn_app_with(config).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let gateway = Gateway::new(app.keyward.clone(), gateway_config);
    tokio::spawn(proxy::serve(listener, gateway, None, std::future::pending()));
    (app, url)
}

async fn key(app: &TestApp, org: &str, settings: Value) -> (String, Value) {
    let mut body = json!({ "name": "gateway", "scopes": ["messages:send", "templates:read", "library_assets:write"] });
    for (field, value) in settings.as_object().expect("object") {
        body[field] = value.clone();
    }
    let created = app.create_key(org, &body).await;
    (created["secret"].as_str().expect("secret").to_owned(), created)
}

fn message(from: &str, channels: &[&str]) -> Value {
    json!({ "from": from, "to": "+14155550999", "target": { "channels": channels }, "text": "hi" })
}

async fn call(request: reqwest::RequestBuilder) -> (u16, HeaderMap, Value) {
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    (status, headers, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[tokio::test]
async fn a_valid_key_is_forwarded_with_its_identity_and_without_its_secrets() {
    let upstream = Upstream::start().await;
    let (app, gateway) = gateway_in_front_of(upstream.address.port(), "").await;
    let org = app.create_org_with_senders().await;
    let (secret, created) = key(&app, &org, json!({ "channels": ["marketing", "alerts"] })).await;
    let client = reqwest::Client::new();

    let (status, headers, body) = call(
        client
            .post(format!("{gateway}/v1/messages?priority=high&b=2"))
            .bearer_auth(&secret)
            .header("x-keyward-key-id", "key_forged")
            .header("x-keyward-org-id", "org_forged")
            .header("x-keyward-channels", "*")
            .header("x-forwarded-for", "198.51.100.9")
            .header("x-forwarded-proto", "https")
            .header("x-custom", "kept as sent")
            .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .json(&message("+14155550100", &["marketing"])),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "upstream says hi");
    assert_eq!(headers["x-upstream"], "yes", "the upstream's headers come back");
    assert_eq!(headers["ratelimit-limit"], "80");
    assert_eq!(headers["ratelimit-remaining"], "79");
    assert!(headers.contains_key("ratelimit-reset"));

    let seen = upstream.last();
    assert_eq!((seen.method.as_str(), seen.target.as_str()), ("POST", "/v1/messages?priority=high&b=2"));
    assert_eq!(seen.headers["x-keyward-key-id"], created["key"]["id"].as_str().unwrap());
    assert_eq!(seen.headers["x-keyward-org-id"], org.as_str());
    assert_eq!(seen.headers["x-keyward-channels"], "marketing", "the effective channels, not the client's");
    assert!(seen.headers.get("authorization").is_none(), "the key never reaches the upstream");
    assert_eq!(seen.headers["x-custom"], "kept as sent");
    assert_eq!(seen.headers["x-forwarded-for"], "198.51.100.9, 127.0.0.1", "the peer is appended");
    assert_eq!(seen.headers["x-forwarded-proto"], "http", "an untrusted client's scheme claim is replaced");
    assert_eq!(seen.headers["traceparent"], "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    assert!(seen.body_len > 0);

    // X-API-Key works too, and is removed as well; a trace is started when none came.
    let (status, _, _) = call(client.get(format!("{gateway}/v1/templates/tpl_1")).header("x-api-key", &secret)).await;
    assert_eq!(status, 200);
    let seen = upstream.last();
    assert!(seen.headers.get("x-api-key").is_none());
    assert_eq!(seen.headers["x-keyward-channels"], "marketing,alerts");
    let trace = seen.headers["traceparent"].to_str().unwrap().to_owned();
    assert!(trace.starts_with("00-") && trace.len() == 55, "{trace}");
}

#[tokio::test]
async fn every_refusal_is_problem_json_with_the_spec_code_and_reaches_no_upstream() {
    let upstream = Upstream::start().await;
    let (app, gateway) = gateway_in_front_of(upstream.address.port(), "").await;
    let org = app.create_org_with_senders().await;
    let client = reqwest::Client::new();
    let (plain, _) = key(&app, &org, json!({})).await;
    let (revoked, created) = key(&app, &org, json!({})).await;
    let id = created["key"]["id"].as_str().unwrap();
    app.post(&format!("/v1/orgs/{org}/keys/{id}/revoke"), &json!({})).await;
    let (expiring, _) = key(&app, &org, json!({ "expires_at": "2030-01-01T00:00:10Z" })).await;
    let (allowlisted, _) = key(&app, &org, json!({ "ip_allowlist": ["10.0.0.1"] })).await;
    let (signed, _) = key(&app, &org, json!({ "hmac_required": true })).await;
    let (narrow, _) = key(&app, &org, json!({ "scopes": ["messages:send"] })).await;
    let (one_sender, _) = key(&app, &org, json!({ "phone_allowlist": ["+14155550100"] })).await;
    let (scoped, _) = key(&app, &org, json!({ "channels": ["alerts"] })).await;
    let (slow, _) = key(&app, &org, json!({ "rate_limit": 1 })).await;
    app.clock.advance(time::Duration::seconds(20));

    let send = |key: &str, body: Value| client.post(format!("{gateway}/v1/messages")).bearer_auth(key).json(&body);
    let ok = message("+14155550100", &["marketing"]);
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        ("no key", client.post(format!("{gateway}/v1/messages")).json(&ok), 401, "INVALID_API_KEY"),
        ("unknown key", send("kw_live_0123456789ABCDEFGHIJabcdefghijKL1WMpTT", ok.clone()), 401, "INVALID_API_KEY"),
        ("revoked", send(&revoked, ok.clone()), 401, "API_KEY_INACTIVE"),
        ("expired", send(&expiring, ok.clone()), 401, "API_KEY_EXPIRED"),
        (
            "spoofed X-Forwarded-For from an untrusted peer",
            send(&allowlisted, ok.clone()).header("x-forwarded-for", "10.0.0.1"),
            403,
            "IP_NOT_ALLOWED",
        ),
        ("no signature", send(&signed, ok.clone()), 401, "SIGNATURE_REQUIRED"),
        (
            "bad signature",
            send(&signed, ok.clone())
                .header("x-keyward-signature", "00")
                .header("x-keyward-timestamp", START.unix_timestamp().to_string()),
            401,
            "INVALID_SIGNATURE",
        ),
        ("route not in the table", client.get(format!("{gateway}/v1/admin")).bearer_auth(&plain), 403, "FORBIDDEN"),
        (
            "known path, other method",
            client.delete(format!("{gateway}/v1/templates/tpl_1")).bearer_auth(&plain),
            403,
            "FORBIDDEN",
        ),
        (
            "scope not granted",
            client.get(format!("{gateway}/v1/templates/tpl_1")).bearer_auth(&narrow),
            403,
            "FORBIDDEN",
        ),
        ("sender outside the allowlist", send(&one_sender, message("+14155550101", &[])), 403, "SENDER_NOT_ALLOWED"),
        (
            "channel outside the key's",
            send(&scoped, message("+14155550100", &["marketing"])),
            403,
            "CHANNEL_SCOPE_VIOLATION",
        ),
        ("two credentials", send(&plain, ok.clone()).header("x-api-key", &plain), 400, "VALIDATION_FAILED"),
        (
            "body not JSON",
            client.post(format!("{gateway}/v1/messages")).bearer_auth(&plain).body("from=+1"),
            400,
            "VALIDATION_FAILED",
        ),
        ("no sender at the pointer", send(&plain, json!({ "target": { "channels": [] } })), 400, "VALIDATION_FAILED"),
        (
            "body over max_body_bytes",
            send(&plain, json!({ "from": "+14155550100", "pad": "x".repeat(70_000), "target": { "channels": [] } })),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
    ];
    for (what, request, status, code) in cases {
        let (got, headers, body) = call(request).await;
        assert_eq!((got, body["code"].as_str()), (status, Some(code)), "{what}: {body}");
        assert_eq!(headers["content-type"], "application/problem+json", "{what}");
        assert_eq!(body["status"], status, "{what}");
    }
    // A refusal of a known key says where its budget stands; nothing was taken from it.
    let (status, headers, _) = call(client.get(format!("{gateway}/v1/templates/tpl_1")).bearer_auth(&narrow)).await;
    assert_eq!(status, 403);
    assert_eq!(
        (&headers["ratelimit-limit"], &headers["ratelimit-remaining"]),
        (&"80".parse().unwrap(), &"80".parse().unwrap())
    );
    let (_, _, body) = call(send(&plain, json!({ "target": { "channels": [] } }))).await;
    assert!(body["detail"].as_str().unwrap().contains("/from"), "the pointer is named: {body}");

    assert_eq!(call(send(&slow, ok.clone())).await.0, 200);
    let (status, headers, body) = call(send(&slow, ok.clone())).await;
    assert_eq!((status, body["code"].as_str()), (429, Some("RATE_LIMITED")), "{body}");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(
        (&headers["ratelimit-limit"], &headers["ratelimit-remaining"]),
        (&"1".parse().unwrap(), &"0".parse().unwrap())
    );
    assert_eq!(upstream.count(), 1, "only the one accepted request reached the upstream");
}

#[tokio::test]
async fn a_signed_request_is_checked_over_the_exact_body_bytes() {
    let upstream = Upstream::start().await;
    let (app, gateway) = gateway_in_front_of(upstream.address.port(), "").await;
    let org = app.create_org_with_senders().await;
    let (secret, created) = key(&app, &org, json!({ "hmac_required": true })).await;
    let signing = created["signing_secret"].as_str().unwrap().to_owned();
    let body = br#"{"from": "+14155550100",  "target": {"channels": []}}"#.to_vec();
    let timestamp = START.unix_timestamp().to_string();
    let sign = |target: &str, body: &[u8]| {
        let mut mac = Hmac::<Sha256>::new_from_slice(signing.as_bytes()).unwrap();
        mac.update(format!("{timestamp}\nPOST\n{target}\n{}", hex::encode(Sha256::digest(body))).as_bytes());
        hex::encode(mac.finalize().into_bytes())
    };
    let client = reqwest::Client::new();
    let post = |signature: String, body: Vec<u8>| {
        client
            .post(format!("{gateway}/v1/messages?x=1"))
            .bearer_auth(&secret)
            .header("content-type", "application/json")
            .header("x-keyward-signature", signature)
            .header("x-keyward-timestamp", &timestamp)
            .body(body)
    };
    // The same JSON with one space less is another body: refused.
    let mut reformatted = body.clone();
    let double_space = reformatted.windows(2).position(|pair| pair == b"  ").expect("two spaces");
    reformatted.remove(double_space);
    let (status, _, answer) = call(post(sign("/v1/messages?x=1", &body), reformatted)).await;
    assert_eq!((status, answer["code"].as_str()), (401, Some("INVALID_SIGNATURE")), "{answer}");
    let (status, _, answer) = call(post(sign("/v1/messages?x=1", &body), body.clone())).await;
    assert_eq!(status, 200, "{answer}");
    let seen = upstream.last();
    assert!(seen.headers.get("x-keyward-signature").is_none() && seen.headers.get("x-keyward-timestamp").is_none());
    assert_eq!(seen.body_len, body.len(), "the exact bytes are forwarded");
    let (status, _, answer) = call(post(sign("/v1/messages?x=1", &body), body.clone())).await;
    assert_eq!((status, answer["code"].as_str()), (401, Some("INVALID_SIGNATURE")), "a replay: {answer}");
}

#[tokio::test]
async fn a_large_upload_on_a_route_without_body_checks_streams_past_the_cap() {
    let upstream = Upstream::start().await;
    let (app, gateway) = gateway_in_front_of(upstream.address.port(), "").await;
    let org = app.create_org_with_senders().await;
    let (secret, _) = key(&app, &org, json!({})).await;
    // 20 MiB in 320 chunks, far past max_body_bytes (64 KiB): it is never buffered.
    let chunks = futures_util::stream::iter((0..320).map(|_| Ok::<_, std::io::Error>(vec![7u8; 65_536])));
    let response = reqwest::Client::new()
        .post(format!("{gateway}/v1/uploads"))
        .bearer_auth(&secret)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.last().body_len, 20 * 1024 * 1024);
}

#[tokio::test]
async fn an_upstream_that_is_down_is_502_and_one_that_is_slow_is_504() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (app, gateway) = gateway_in_front_of(closed, "").await;
    let org = app.create_org_with_senders().await;
    let (secret, _) = key(&app, &org, json!({})).await;
    let client = reqwest::Client::new();
    let (status, headers, body) = call(client.get(format!("{gateway}/v1/templates/t")).bearer_auth(&secret)).await;
    assert_eq!((status, body["code"].as_str()), (502, Some("UPSTREAM_UNAVAILABLE")), "{body}");
    assert_eq!(headers["content-type"], "application/problem+json");

    let upstream = Upstream::start().await;
    let (app, gateway) = gateway_in_front_of(upstream.address.port(), "").await;
    let org = app.create_org_with_senders().await;
    let (secret, _) = key(&app, &org, json!({})).await;
    let started = std::time::Instant::now();
    let (status, _, body) = call(client.get(format!("{gateway}/v1/slow")).bearer_auth(&secret)).await;
    assert_eq!((status, body["code"].as_str()), (504, Some("UPSTREAM_TIMEOUT")), "{body}");
    assert!(started.elapsed() < Duration::from_millis(2_500), "answered at the response timeout");
}

#[tokio::test]
async fn authorize_gives_the_same_decision_to_a_forward_auth_proxy() {
    let upstream = Upstream::start().await;
    let (app, _gateway) = gateway_in_front_of(upstream.address.port(), "").await;
    let org = app.create_org_with_senders().await;
    let (secret, created) = key(&app, &org, json!({ "channels": ["alerts"] })).await;
    let (signed, _) = key(&app, &org, json!({ "hmac_required": true })).await;
    let client = reqwest::Client::new();
    let ask = |method: &str, uri: &str, key: &str| {
        client
            .get(app.url("/v1/authorize"))
            .header("x-original-method", method)
            .header("x-original-uri", uri)
            .bearer_auth(key)
    };
    let (status, headers, _) = call(ask("GET", "/v1/templates/t1?x=1", &secret)).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-keyward-key-id"], created["key"]["id"].as_str().unwrap());
    assert_eq!(headers["x-keyward-org-id"], org.as_str());
    assert_eq!(headers["x-keyward-channels"], "alerts");
    assert_eq!(headers["ratelimit-limit"], "80");

    // Traefik's headers work the same.
    let traefik = client
        .get(app.url("/v1/authorize"))
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-uri", "/v1/templates/t1")
        .header("x-api-key", &secret);
    assert_eq!(call(traefik).await.0, 200);

    for (what, request, status, code) in [
        ("not in the table", ask("GET", "/v1/other", &secret), 403, "FORBIDDEN"),
        ("a route that reads the body", ask("POST", "/v1/messages", &secret), 403, "FORBIDDEN"),
        ("a signing key without the body's hash", ask("POST", "/v1/uploads", &signed), 403, "FORBIDDEN"),
        ("unknown key", ask("GET", "/v1/templates/t1", "kw_live_nope"), 401, "INVALID_API_KEY"),
    ] {
        let (got, headers, body) = call(request).await;
        assert_eq!((got, body["code"].as_str()), (status, Some(code)), "{what}: {body}");
        assert_eq!(headers["content-type"], "application/problem+json", "{what}");
    }
}

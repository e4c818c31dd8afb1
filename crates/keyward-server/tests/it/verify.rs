//! `POST /v1/verify` as the platform calls it (SPEC §5): one test per decision code, the check
//! order, the channel rules, request signatures computed here independently of the product's
//! own signing code, replay, rate limits, and the HTTP-level errors of the endpoint itself.

use std::time::Duration;

use hmac::{Hmac, Mac};
use keyward_core::key::{Environment, KeyFormat};
use keyward_runtime::Clock;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::support::{spawn_app, Answer, TestApp, START};

const UNREGISTERED_SENDER: &str = "+14155550199";

/// The signature of SPEC §5, written out here rather than borrowed from `keyward_core::signing`:
/// `hex(HMAC-SHA256(secret, timestamp \n METHOD \n path_and_query \n hex(sha256(body))))`.
fn sign(signing_secret: &str, timestamp: &str, method: &str, path_and_query: &str, body: &[u8]) -> String {
    let body_sha256 = hex::encode(Sha256::digest(body));
    let canonical = format!("{timestamp}\n{method}\n{path_and_query}\n{body_sha256}");
    let mut mac = Hmac::<Sha256>::new_from_slice(signing_secret.as_bytes()).expect("any key length");
    mac.update(canonical.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The `request` object of a verify body, signed with `signing_secret` at `timestamp`.
fn signed_request(signing_secret: &str, timestamp: i64, method: &str, path_and_query: &str, body: &[u8]) -> Value {
    let timestamp = timestamp.to_string();
    json!({
        "method": method,
        "path": path_and_query,
        "timestamp": timestamp,
        "signature": sign(signing_secret, &timestamp, method.to_ascii_uppercase().as_str(), path_and_query, body),
        "body_sha256": hex::encode(Sha256::digest(body)),
    })
}

/// The server's current time (its clock is the test's manual clock), in Unix seconds.
fn now_unix(app: &TestApp) -> i64 {
    app.clock.now().unix_timestamp()
}

fn advance(app: &TestApp, seconds: i64) {
    app.clock.advance(time::Duration::seconds(seconds));
}

/// A key created with `settings` (a name is added when missing): `(secret, signing_secret, id)`.
async fn new_key(app: &TestApp, org: &str, settings: Value) -> (String, String, String) {
    let mut body = settings;
    if body.get("name").is_none() {
        body["name"] = json!("test key");
    }
    let created = app.create_key(org, &body).await;
    (
        created["secret"].as_str().expect("secret").to_owned(),
        created["signing_secret"].as_str().unwrap_or_default().to_owned(),
        created["key"]["id"].as_str().expect("key id").to_owned(),
    )
}

/// `body` with `"key": secret` added.
fn with_key(secret: &str, body: Value) -> Value {
    let mut body = body;
    body["key"] = json!(secret);
    body
}

/// Asserts a `VALID` decision.
fn assert_valid(decision: &Value, case: &str) {
    assert_eq!(decision["valid"], true, "{case}: expected VALID, got {decision:#}");
    assert_eq!(decision["code"], "VALID", "{case}: {decision:#}");
}

/// Asserts a refusal with exactly the SPEC's shape: `valid`, `code`, `status`, `message`, and
/// `retry_after_ms` only for `RATE_LIMITED`.
fn assert_denied(decision: &Value, code: &str, status: u16, case: &str) {
    assert_eq!(decision["valid"], false, "{case}: expected {code}, got {decision:#}");
    assert_eq!(decision["code"], code, "{case}: {decision:#}");
    assert_eq!(decision["status"], status, "{case}: {decision:#}");
    let message = decision["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "{case}: a refusal carries a message: {decision:#}");
    let mut fields: Vec<&str> = decision.as_object().expect("object").keys().map(String::as_str).collect();
    fields.sort_unstable();
    let expected: &[&str] = if code == "RATE_LIMITED" {
        &["code", "message", "retry_after_ms", "status", "valid"]
    } else {
        &["code", "message", "status", "valid"]
    };
    assert_eq!(fields, expected, "{case}: {decision:#}");
}

/// Asserts the decision's code, with the SPEC's status for every refusal.
fn assert_code(decision: &Value, code: &str, case: &str) {
    let status = match code {
        "VALID" => return assert_valid(decision, case),
        "INVALID_API_KEY" | "API_KEY_INACTIVE" | "API_KEY_EXPIRED" | "SIGNATURE_REQUIRED" | "INVALID_SIGNATURE" => 401,
        "IP_NOT_ALLOWED" | "FORBIDDEN" | "SENDER_NOT_ALLOWED" | "CHANNEL_SCOPE_VIOLATION" => 403,
        "RATE_LIMITED" => 429,
        other => panic!("{case}: no such decision code {other}"),
    };
    assert_denied(decision, code, status, case);
}

/// `last_used_at` of a key, as the management API shows it.
async fn last_used_at(app: &TestApp, org: &str, id: &str) -> Value {
    let answer = app.get(&format!("/v1/orgs/{org}/keys/{id}")).await;
    assert_eq!(answer.status, StatusCode::OK, "{:#}", answer.body);
    answer.body["key"]["last_used_at"].clone()
}

/// Polls every 100 ms, up to 5 s, until the key's `last_used_at` is set.
async fn wait_for_last_used_at(app: &TestApp, org: &str, id: &str) -> Option<String> {
    for _ in 0..50 {
        if let Value::String(at) = last_used_at(app, org, id).await {
            return Some(at);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// A verify request with a raw body and content type (operator token included).
async fn post_verify_raw(app: &TestApp, content_type: &str, body: impl Into<reqwest::Body>) -> Answer {
    app.send(
        app.client
            .post(app.url("/v1/verify"))
            .bearer_auth(&app.operator_token)
            .header("content-type", content_type)
            .body(body),
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// VALID and INVALID_API_KEY

#[tokio::test]
async fn valid_key_answers_valid_with_the_keys_facts() {
    let app = spawn_app().await;
    let org = app.create_org_with_senders().await;
    let (secret, _, id) = new_key(
        &app,
        &org,
        json!({
            "name": "CRM Sync",
            "scopes": ["messages:send", "templates:read"],
            "environment": "test",
            "meta": { "tier": "gold" },
        }),
    )
    .await;

    let decision = app.verify(&json!({ "key": secret, "scope": "messages:send", "sender": "+14155550100" })).await;

    assert_eq!(
        decision,
        json!({
            "valid": true,
            "code": "VALID",
            "key_id": id,
            "org_id": org,
            "name": "CRM Sync",
            "scopes": ["messages:send", "templates:read"],
            "channels": "all",
            "environment": "test",
            "meta": { "tier": "gold" },
            "rate_limit": { "limit": 80, "remaining": 79, "reset_ms": decision["rate_limit"]["reset_ms"] },
        })
    );
    let reset_ms = decision["rate_limit"]["reset_ms"].as_u64().expect("reset_ms is a number");
    assert!(reset_ms > 0 && reset_ms <= 1000, "reset_ms within the one-second window: {reset_ms}");
}

/// Missing, malformed, mistyped, made-up and padded keys, and a key issued by another keyward,
/// all answer the same `INVALID_API_KEY` with the same message: nothing tells them apart.
#[tokio::test]
async fn every_unusable_key_string_is_the_same_invalid_api_key_answer() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let (real, _, _) = new_key(&app, &org, json!({})).await;

    let elsewhere = spawn_app().await;
    let elsewhere_org = elsewhere.create_org("Other").await;
    let (foreign, _, _) = new_key(&elsewhere, &elsewhere_org, json!({})).await;
    assert_valid(&elsewhere.verify(&json!({ "key": foreign })).await, "the foreign key works where it was issued");

    let unknown = KeyFormat::default().generate(Environment::Live, &mut rand::rngs::OsRng);
    let unknown = unknown.expose().to_owned();
    assert!(KeyFormat::default().parse(&unknown).is_some(), "the made-up key has a correct checksum");

    // One character changed in the random part, and one in the checksum.
    let mut mistyped = real.clone().into_bytes();
    mistyped[12] = if mistyped[12] == b'a' { b'b' } else { b'a' };
    let mistyped = String::from_utf8(mistyped).expect("ascii");
    let mut bad_checksum = real.clone().into_bytes();
    let last = bad_checksum.len() - 1;
    bad_checksum[last] = if bad_checksum[last] == b'0' { b'1' } else { b'0' };
    let bad_checksum = String::from_utf8(bad_checksum).expect("ascii");
    let test_env = real.replacen("kw_live_", "kw_test_", 1);

    let cases: Vec<(&str, Value)> = vec![
        ("no key field", json!({})),
        ("null key", json!({ "key": null })),
        ("empty key", json!({ "key": "" })),
        ("not a key at all", json!({ "key": "hello" })),
        ("operator token as a key", json!({ "key": app.operator_token })),
        ("truncated key", json!({ "key": &real[..real.len() - 1] })),
        ("one character changed in the random part", json!({ "key": mistyped })),
        ("one character changed in the checksum", json!({ "key": bad_checksum })),
        ("environment swapped", json!({ "key": test_env })),
        ("other prefix", json!({ "key": real.replacen("kw_", "kx_", 1) })),
        ("upper-cased", json!({ "key": real.to_uppercase() })),
        ("well-formed but unknown", json!({ "key": unknown })),
        ("leading space", json!({ "key": format!(" {real}") })),
        ("trailing space", json!({ "key": format!("{real} ") })),
        ("trailing newline", json!({ "key": format!("{real}\n") })),
        ("leading tab", json!({ "key": format!("\t{real}") })),
        ("issued by another keyward", json!({ "key": foreign })),
    ];
    let reference = app
        .verify(&json!({ "key": KeyFormat::default().generate(Environment::Live, &mut rand::rngs::OsRng).expose() }))
        .await;
    assert_denied(&reference, "INVALID_API_KEY", 401, "reference unknown key");
    for (case, body) in cases {
        let decision = app.verify(&body).await;
        assert_denied(&decision, "INVALID_API_KEY", 401, case);
        assert_eq!(decision, reference, "{case}: must look exactly like an unknown key");
    }
    assert_valid(&app.verify(&json!({ "key": real })).await, "the real key itself, untouched");
}

#[tokio::test]
async fn unknown_key_is_refused_before_any_other_rule_is_looked_at() {
    let app = spawn_app().await;
    let unknown = KeyFormat::default().generate(Environment::Live, &mut rand::rngs::OsRng);
    let decision = app
        .verify(&json!({
            "key": unknown.expose(),
            "scope": "keys:write",
            "client_ip": "192.0.2.1",
            "sender": UNREGISTERED_SENDER,
            "channels": ["nowhere"],
        }))
        .await;
    assert_denied(&decision, "INVALID_API_KEY", 401, "unknown key with every other rule broken");
}

// ---------------------------------------------------------------------------------------------
// API_KEY_INACTIVE, API_KEY_EXPIRED

#[tokio::test]
async fn revoked_key_is_api_key_inactive_with_status_401() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let (secret, _, id) = new_key(&app, &org, json!({})).await;
    let revoked = app.post(&format!("/v1/orgs/{org}/keys/{id}/revoke"), &json!({})).await;
    assert_eq!(revoked.status, StatusCode::OK, "{:#}", revoked.body);

    let decision = app.verify(&json!({ "key": secret })).await;

    assert_denied(&decision, "API_KEY_INACTIVE", 401, "revoked key");
}

#[tokio::test]
async fn key_past_its_expiry_is_api_key_expired() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let expires_at = (START + time::Duration::seconds(60)).format(&Rfc3339).unwrap();
    let (secret, _, _) = new_key(&app, &org, json!({ "expires_at": expires_at })).await;

    advance(&app, 59);
    assert_valid(&app.verify(&json!({ "key": secret })).await, "one second before expiry");
    advance(&app, 2);
    let decision = app.verify(&json!({ "key": secret })).await;

    assert_denied(&decision, "API_KEY_EXPIRED", 401, "61 s after creation, 1 s past expires_at");
}

// ---------------------------------------------------------------------------------------------
// IP_NOT_ALLOWED

#[tokio::test]
async fn client_ip_must_match_a_non_empty_allowlist() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let allowlist = json!(["203.0.113.7", "10.0.0.0/8", "2001:db8::1", "2001:db8:abcd::/48"]);
    let (secret, _, _) = new_key(&app, &org, json!({ "ip_allowlist": allowlist })).await;
    let (open, _, _) = new_key(&app, &org, json!({ "name": "no allowlist" })).await;

    let cases: Vec<(&str, Option<&str>, &str)> = vec![
        ("exact IPv4", Some("203.0.113.7"), "VALID"),
        ("IPv4 next to the listed one", Some("203.0.113.8"), "IP_NOT_ALLOWED"),
        ("inside the IPv4 CIDR", Some("10.200.3.4"), "VALID"),
        ("first address of the IPv4 CIDR", Some("10.0.0.0"), "VALID"),
        ("just outside the IPv4 CIDR", Some("11.0.0.0"), "IP_NOT_ALLOWED"),
        ("exact IPv6", Some("2001:db8::1"), "VALID"),
        ("exact IPv6 written in full", Some("2001:0db8:0000:0000:0000:0000:0000:0001"), "VALID"),
        ("IPv6 next to the listed one", Some("2001:db8::2"), "IP_NOT_ALLOWED"),
        ("inside the IPv6 CIDR", Some("2001:db8:abcd:12::5"), "VALID"),
        ("outside the IPv6 CIDR", Some("2001:db8:abce::1"), "IP_NOT_ALLOWED"),
        ("IPv4-mapped IPv6 inside the IPv4 CIDR", Some("::ffff:10.0.0.1"), "VALID"),
        ("client_ip missing while an allowlist is set", None, "IP_NOT_ALLOWED"),
        ("client_ip empty while an allowlist is set", Some(""), "IP_NOT_ALLOWED"),
    ];
    for (case, client_ip, code) in cases {
        let mut body = json!({ "key": secret });
        if let Some(ip) = client_ip {
            body["client_ip"] = json!(ip);
        }
        assert_code(&app.verify(&body).await, code, case);
    }
    for client_ip in [json!("192.0.2.1"), json!("2001:db8:ffff::9"), Value::Null] {
        let decision = app.verify(&json!({ "key": open, "client_ip": client_ip })).await;
        assert_valid(&decision, &format!("an empty allowlist accepts any address ({client_ip})"));
    }
}

// ---------------------------------------------------------------------------------------------
// SIGNATURE_REQUIRED, INVALID_SIGNATURE and signed requests

#[tokio::test]
async fn key_requiring_hmac_without_a_signature_is_signature_required() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let (secret, signing_secret, _) = new_key(&app, &org, json!({ "hmac_required": true })).await;
    assert!(!signing_secret.is_empty(), "an HMAC key has a signing secret");
    let now = now_unix(&app).to_string();

    let cases: Vec<(&str, Value)> = vec![
        ("no request object", json!({ "key": secret })),
        (
            "request object without a signature",
            json!({ "key": secret, "request": { "method": "GET", "path": "/v1/templates", "timestamp": now } }),
        ),
    ];
    for (case, body) in cases {
        assert_denied(&app.verify(&body).await, "SIGNATURE_REQUIRED", 401, case);
    }
}

#[tokio::test]
async fn signature_computed_by_the_client_over_an_empty_body_is_valid() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let (secret, signing_secret, _) = new_key(&app, &org, json!({ "hmac_required": true })).await;
    let now = now_unix(&app);

    let request = signed_request(&signing_secret, now, "GET", "/v1/templates/tpl_1", b"");
    assert_eq!(
        request["body_sha256"], "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "the SPEC's empty-body hash"
    );
    assert_valid(&app.verify(&json!({ "key": secret, "request": request })).await, "signed GET");

    // body_sha256 may be left out for an empty body.
    let timestamp = (now + 1).to_string();
    let without_hash = json!({
        "method": "GET",
        "path": "/v1/templates/tpl_2",
        "timestamp": timestamp,
        "signature": sign(&signing_secret, &timestamp, "GET", "/v1/templates/tpl_2", b""),
    });
    assert_valid(&app.verify(&json!({ "key": secret, "request": without_hash })).await, "no body_sha256 = empty body");
}

#[tokio::test]
async fn signature_over_a_one_kib_body_and_a_query_string_signed_as_sent_is_valid() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let (secret, signing_secret, _) = new_key(&app, &org, json!({ "hmac_required": true })).await;
    let now = now_unix(&app);
    let body: Vec<u8> = (0..1024u32).map(|i| b"{\"to\": \"+14155550100\"}"[(i % 22) as usize]).collect();
    assert_eq!(body.len(), 1024);

    let request = signed_request(&signing_secret, now, "POST", "/v1/messages?x=1&b=2", &body);
    assert_valid(&app.verify(&json!({ "key": secret, "request": request })).await, "1 KiB body, query string as sent");

    // The query is not decoded or sorted: signing `?b=2&x=1` does not cover `?x=1&b=2`.
    let timestamp = (now + 1).to_string();
    let mut sorted = signed_request(&signing_secret, now + 1, "POST", "/v1/messages?x=1&b=2", &body);
    sorted["signature"] = json!(sign(&signing_secret, &timestamp, "POST", "/v1/messages?b=2&x=1", &body));
    assert_denied(
        &app.verify(&json!({ "key": secret, "request": sorted })).await,
        "INVALID_SIGNATURE",
        401,
        "query signed in another order than sent",
    );

    // The body hash is part of what is signed.
    let mut other_body = signed_request(&signing_secret, now + 2, "POST", "/v1/messages?x=1&b=2", &body);
    other_body["body_sha256"] = json!(hex::encode(Sha256::digest(b"something else")));
    assert_denied(
        &app.verify(&json!({ "key": secret, "request": other_body })).await,
        "INVALID_SIGNATURE",
        401,
        "body_sha256 of another body",
    );
}

#[tokio::test]
async fn lowercase_method_in_the_request_is_accepted() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let (secret, signing_secret, _) = new_key(&app, &org, json!({ "hmac_required": true })).await;
    let timestamp = now_unix(&app).to_string();
    let request = json!({
        "method": "post",
        "path": "/v1/messages",
        "timestamp": timestamp,
        "signature": sign(&signing_secret, &timestamp, "POST", "/v1/messages", b"{}"),
        "body_sha256": hex::encode(Sha256::digest(b"{}")),
    });

    let decision = app.verify(&json!({ "key": secret, "request": request })).await;

    assert_valid(&decision, "method sent as `post`, signed as `POST`");
}

#[tokio::test]
async fn wrong_stale_or_malformed_signatures_are_invalid_signature() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let (secret, signing_secret, _) = new_key(&app, &org, json!({ "hmac_required": true })).await;
    let (_, other_signing_secret, _) = new_key(&app, &org, json!({ "name": "other", "hmac_required": true })).await;
    // Well after the node started, so a timestamp 301 s back is merely stale.
    advance(&app, 1000);
    let now = now_unix(&app);
    let path = "/v1/messages";

    let with_signature = |signature: &str| {
        let mut request = signed_request(&signing_secret, now, "POST", path, b"{}");
        request["signature"] = json!(signature);
        request
    };
    let with_timestamp = |timestamp: &str| {
        let mut request = signed_request(&signing_secret, now, "POST", path, b"{}");
        request["timestamp"] = json!(timestamp);
        request["signature"] = json!(sign(&signing_secret, timestamp, "POST", path, b"{}"));
        request
    };
    let good = signed_request(&signing_secret, now, "POST", path, b"{}");
    let good_signature = good["signature"].as_str().unwrap().to_owned();
    let mut other_method = good.clone();
    other_method["method"] = json!("PUT");
    let mut other_path = good.clone();
    other_path["path"] = json!("/v1/messages/");

    let cases: Vec<(&str, Value)> = vec![
        ("signed with another key's secret", signed_request(&other_signing_secret, now, "POST", path, b"{}")),
        ("signed with the API key instead of the signing secret", signed_request(&secret, now, "POST", path, b"{}")),
        ("one hex digit changed", with_signature(&flip_hex_digit(&good_signature))),
        ("upper-case hex of another signature", with_signature(&"AB".repeat(32))),
        ("method changed after signing", other_method),
        ("path changed after signing", other_path),
        ("timestamp 301 s in the past", signed_request(&signing_secret, now - 301, "POST", path, b"{}")),
        ("timestamp 301 s in the future", signed_request(&signing_secret, now + 301, "POST", path, b"{}")),
        ("timestamp a day in the past", signed_request(&signing_secret, now - 86_400, "POST", path, b"{}")),
        ("signature not hex", with_signature(&"zz".repeat(32))),
        ("signature too short", with_signature(&good_signature[..62])),
        ("signature too long", with_signature(&format!("{good_signature}00"))),
        ("signature empty", with_signature("")),
        ("timestamp not a number", with_timestamp("yesterday")),
        ("timestamp in milliseconds", with_timestamp(&(now * 1000).to_string())),
        ("timestamp negative", with_timestamp(&(-now).to_string())),
        ("timestamp empty", with_timestamp("")),
    ];
    for (case, request) in cases {
        let decision = app.verify(&json!({ "key": secret, "request": request })).await;
        assert_denied(&decision, "INVALID_SIGNATURE", 401, case);
    }
    // None of those consumed the good signature.
    assert_valid(&app.verify(&json!({ "key": secret, "request": good })).await, "the untouched signature");
}

fn flip_hex_digit(signature: &str) -> String {
    let mut bytes = signature.as_bytes().to_vec();
    bytes[0] = if bytes[0] == b'0' { b'1' } else { b'0' };
    String::from_utf8(bytes).expect("ascii")
}

#[tokio::test]
async fn timestamps_exactly_300_seconds_away_are_accepted_in_both_directions() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let (secret, signing_secret, _) = new_key(&app, &org, json!({ "hmac_required": true })).await;
    // The node started at START: move on 300 s so `now - 300` is not before it started.
    advance(&app, 300);
    let now = now_unix(&app);

    for (case, timestamp) in [("300 s in the past", now - 300), ("300 s in the future", now + 300)] {
        let request = signed_request(&signing_secret, timestamp, "GET", "/v1/templates", b"");
        assert_valid(&app.verify(&json!({ "key": secret, "request": request })).await, case);
    }
}

#[tokio::test]
async fn replayed_valid_signature_is_invalid_signature() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let (secret, signing_secret, _) = new_key(&app, &org, json!({ "hmac_required": true })).await;
    let body = json!({ "key": secret, "request": signed_request(&signing_secret, now_unix(&app), "POST", "/v1/messages", b"{}") });

    assert_valid(&app.verify(&body).await, "first use");
    assert_denied(&app.verify(&body).await, "INVALID_SIGNATURE", 401, "same signature again, same instant");
    advance(&app, 299);
    assert_denied(&app.verify(&body).await, "INVALID_SIGNATURE", 401, "same signature again, 299 s later");
}

#[tokio::test]
async fn signature_whose_first_use_was_rate_limited_can_be_resent_and_is_then_valid() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let (secret, signing_secret, _) = new_key(&app, &org, json!({ "hmac_required": true, "rate_limit": 1 })).await;
    let now = now_unix(&app);
    let first =
        json!({ "key": secret, "request": signed_request(&signing_secret, now, "GET", "/v1/templates?page=1", b"") });
    let second =
        json!({ "key": secret, "request": signed_request(&signing_secret, now, "GET", "/v1/templates?page=2", b"") });

    assert_valid(&app.verify(&first).await, "first request takes the only token");
    assert_denied(&app.verify(&second).await, "RATE_LIMITED", 429, "second request, same second");
    advance(&app, 1);
    assert_valid(&app.verify(&second).await, "the rate-limited signature re-sent unchanged");
    advance(&app, 1);
    assert_denied(&app.verify(&second).await, "INVALID_SIGNATURE", 401, "and now it has been used");
}

/// SPEC §5: without a shared replay store, a node refuses signatures timestamped before it
/// started, for one tolerance period, so a restart does not reopen the replay window.
#[tokio::test]
async fn signature_timestamped_before_the_node_started_is_invalid_signature() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let (secret, signing_secret, _) = new_key(&app, &org, json!({ "hmac_required": true })).await;
    let started = START.unix_timestamp();

    let before_start = signed_request(&signing_secret, started - 10, "GET", "/v1/templates", b"");
    let decision = app.verify(&json!({ "key": secret, "request": before_start })).await;

    assert_denied(&decision, "INVALID_SIGNATURE", 401, "timestamped 10 s before the node started");
    let at_start = signed_request(&signing_secret, started, "GET", "/v1/templates", b"");
    assert_valid(&app.verify(&json!({ "key": secret, "request": at_start })).await, "timestamped when it started");
}

/// A replay is an `INVALID_SIGNATURE`, which comes before the scope check in the SPEC's order.
#[tokio::test]
async fn replayed_signature_is_refused_before_the_scope_check() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let (secret, signing_secret, _) = new_key(&app, &org, json!({ "hmac_required": true })).await;
    let request = signed_request(&signing_secret, now_unix(&app), "GET", "/v1/templates", b"");
    assert_valid(&app.verify(&json!({ "key": secret, "request": request })).await, "first use");

    let decision = app.verify(&json!({ "key": secret, "request": request, "scope": "contacts:read" })).await;

    assert_denied(&decision, "INVALID_SIGNATURE", 401, "replay that also asks for a scope the key lacks");
}

// ---------------------------------------------------------------------------------------------
// FORBIDDEN

#[tokio::test]
async fn every_requested_scope_must_be_granted() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let (limited, _, _) = new_key(&app, &org, json!({ "scopes": ["messages:send", "templates:read"] })).await;
    let (everything, _, _) = new_key(&app, &org, json!({ "name": "all", "scopes": ["*"] })).await;

    let cases: Vec<(&str, &str, Value, &str)> = vec![
        ("a scope the key lacks", &limited, json!("contacts:read"), "FORBIDDEN"),
        ("a list where one scope is missing", &limited, json!(["messages:send", "contacts:read"]), "FORBIDDEN"),
        ("a list where the last scope is missing", &limited, json!(["templates:read", "templates:write"]), "FORBIDDEN"),
        ("a scope outside the catalogue", &limited, json!("messages:fly"), "FORBIDDEN"),
        ("`*` asked of a key without it", &limited, json!("*"), "FORBIDDEN"),
        ("keys:read is not implied", &limited, json!("keys:read"), "FORBIDDEN"),
        ("a scope prefix is not the scope", &limited, json!("messages"), "FORBIDDEN"),
        ("one granted scope", &limited, json!("templates:read"), "VALID"),
        ("every granted scope", &limited, json!(["messages:send", "templates:read"]), "VALID"),
        ("an empty list asks nothing", &limited, json!([]), "VALID"),
        ("no scope asked", &limited, Value::Null, "VALID"),
        ("`*` grants a catalogue scope", &everything, json!("contacts:write"), "VALID"),
        ("`*` grants a reserved scope", &everything, json!("keys:write"), "VALID"),
        ("`*` grants a list", &everything, json!(["blacklist:read", "library_assets:write"]), "VALID"),
    ];
    for (case, key, scope, code) in cases {
        let mut body = json!({ "key": key });
        if !scope.is_null() {
            body["scope"] = scope;
        }
        assert_code(&app.verify(&body).await, code, case);
    }
}

// ---------------------------------------------------------------------------------------------
// SENDER_NOT_ALLOWED

#[tokio::test]
async fn sender_rule_applies_only_to_messages_send() {
    let app = spawn_app().await;
    let org = app.create_org_with_senders().await;
    let scopes = json!(["messages:send", "templates:read"]);
    let (allowlisted, _, _) =
        new_key(&app, &org, json!({ "scopes": scopes, "phone_allowlist": ["+14155550100"] })).await;
    let (any_number, _, _) = new_key(&app, &org, json!({ "name": "any number", "scopes": scopes })).await;

    let send = json!("messages:send");
    let cases: Vec<(&str, &str, Value, Option<&str>, &str)> = vec![
        (
            "unregistered sender, no allowlist",
            &any_number,
            send.clone(),
            Some(UNREGISTERED_SENDER),
            "SENDER_NOT_ALLOWED",
        ),
        ("not a phone number", &any_number, send.clone(), Some("sales"), "SENDER_NOT_ALLOWED"),
        ("registered sender, no allowlist", &any_number, send.clone(), Some("+14155550101"), "VALID"),
        ("no sender, no allowlist", &any_number, send.clone(), None, "VALID"),
        (
            "registered sender outside the allowlist",
            &allowlisted,
            send.clone(),
            Some("+14155550101"),
            "SENDER_NOT_ALLOWED",
        ),
        (
            "unregistered sender with an allowlist",
            &allowlisted,
            send.clone(),
            Some(UNREGISTERED_SENDER),
            "SENDER_NOT_ALLOWED",
        ),
        ("no sender while the key has an allowlist", &allowlisted, send.clone(), None, "SENDER_NOT_ALLOWED"),
        (
            "messages:send inside a list",
            &allowlisted,
            json!(["templates:read", "messages:send"]),
            None,
            "SENDER_NOT_ALLOWED",
        ),
        ("sender in the allowlist", &allowlisted, send.clone(), Some("+14155550100"), "VALID"),
        ("ignored without a scope", &allowlisted, Value::Null, Some(UNREGISTERED_SENDER), "VALID"),
        ("ignored without a scope, no sender", &allowlisted, Value::Null, None, "VALID"),
        ("ignored for another scope", &allowlisted, json!("templates:read"), Some("+14155550101"), "VALID"),
    ];
    for (case, key, scope, sender, code) in cases {
        let mut body = json!({ "key": key });
        if !scope.is_null() {
            body["scope"] = scope;
        }
        if let Some(sender) = sender {
            body["sender"] = json!(sender);
        }
        assert_code(&app.verify(&body).await, code, case);
    }
}

// ---------------------------------------------------------------------------------------------
// Channels

#[tokio::test]
async fn the_four_channel_rules_give_the_effective_channels() {
    let app = spawn_app().await;
    let org = app.create_org_with_senders().await;
    let (all, _, _) = new_key(&app, &org, json!({ "name": "all channels" })).await;
    let (scoped, _, _) = new_key(&app, &org, json!({ "channels": ["marketing", "alerts"] })).await;

    let cases: Vec<(&str, &str, Option<Value>, Value)> = vec![
        ("key all + no channels → all", &all, None, json!("all")),
        ("key all + channels → those", &all, Some(json!(["marketing"])), json!(["marketing"])),
        ("scoped + no channels → the key's", &scoped, None, json!(["marketing", "alerts"])),
        ("scoped + a subset → the subset", &scoped, Some(json!(["alerts"])), json!(["alerts"])),
        (
            "scoped + the same set → that set",
            &scoped,
            Some(json!(["alerts", "marketing"])),
            json!(["alerts", "marketing"]),
        ),
    ];
    for (case, key, channels, effective) in cases {
        let mut body = json!({ "key": key });
        if let Some(channels) = channels {
            body["channels"] = channels;
        }
        let decision = app.verify(&body).await;
        assert_valid(&decision, case);
        assert_eq!(decision["channels"], effective, "{case}: {decision:#}");
    }
}

#[tokio::test]
async fn channels_outside_the_keys_are_a_channel_scope_violation_naming_them() {
    let app = spawn_app().await;
    let org = app.create_org_with_senders().await;
    let (scoped, _, _) = new_key(&app, &org, json!({ "channels": ["marketing", "alerts"] })).await;

    let decision = app.verify(&json!({ "key": scoped, "channels": ["marketing", "test-devices", "promo"] })).await;

    assert_denied(&decision, "CHANNEL_SCOPE_VIOLATION", 403, "scoped + not a subset");
    let message = decision["message"].as_str().unwrap();
    assert!(message.contains("test-devices") && message.contains("promo"), "names the offending slugs: {message}");
    assert!(!message.contains("marketing"), "names only the offending slugs: {message}");
}

#[tokio::test]
async fn channels_the_org_does_not_have_are_refused_even_for_a_key_on_all_channels() {
    let app = spawn_app().await;
    let org = app.create_org_with_senders().await;
    let (all, _, _) = new_key(&app, &org, json!({ "name": "all channels" })).await;

    let decision = app.verify(&json!({ "key": all, "channels": ["../admin", "marketing", "nonexistent"] })).await;

    assert_denied(&decision, "CHANNEL_SCOPE_VIOLATION", 403, "unknown slugs with a key on all channels");
    let message = decision["message"].as_str().unwrap();
    assert!(message.ends_with("../admin, nonexistent"), "names the unknown slugs only: {message}");
}

#[tokio::test]
async fn a_request_naming_more_than_100_channels_is_a_validation_error() {
    let app = spawn_app().await;
    let org = app.create_org_with_senders().await;
    let (all, _, _) = new_key(&app, &org, json!({ "name": "all channels" })).await;
    let hundred: Vec<&str> = std::iter::repeat_n("marketing", 100).collect();
    assert_valid(&app.verify(&json!({ "key": all, "channels": hundred })).await, "100 channels");

    let many: Vec<String> = (0..10_000).map(|i| format!("c{i}")).collect();
    let answer = app.post("/v1/verify", &json!({ "key": all, "channels": many })).await;

    answer.assert_problem(400, "VALIDATION_FAILED");
    assert!(answer.field_error("channels").is_some_and(|m| m.contains("100")), "{:#}", answer.body);
}

#[tokio::test]
async fn a_signed_request_that_is_not_an_object_is_a_validation_error() {
    // Found by schemathesis: serde also fills a struct from an array.
    let app = spawn_app().await;
    for request in [json!([]), json!(["GET", "/", "1"]), json!("GET /")] {
        let answer = app.post("/v1/verify", &json!({ "key": "kw_live_x", "request": request })).await;
        answer.assert_problem(400, "VALIDATION_FAILED");
        assert!(answer.field_error("request").is_some(), "{request}: {:#}", answer.body);
    }
    let unsigned = app.post("/v1/verify", &json!({ "key": "kw_live_x", "request": null })).await;
    assert_eq!(unsigned.status.as_u16(), 200, "null is no signed request: {:#}", unsigned.body);
}

// ---------------------------------------------------------------------------------------------
// RATE_LIMITED

#[tokio::test]
async fn key_over_its_rate_limit_is_rate_limited_until_the_window_passes() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let (secret, _, _) = new_key(&app, &org, json!({ "rate_limit": 5 })).await;
    let body = json!({ "key": secret });

    for expected_remaining in (0..5).rev() {
        let decision = app.verify(&body).await;
        assert_valid(&decision, &format!("request with {expected_remaining} left after it"));
        assert_eq!(decision["rate_limit"]["limit"], 5, "{decision:#}");
        assert_eq!(decision["rate_limit"]["remaining"], expected_remaining, "{decision:#}");
    }
    let limited = app.verify(&body).await;
    assert_denied(&limited, "RATE_LIMITED", 429, "sixth request in the same instant");
    let retry_after_ms = limited["retry_after_ms"].as_u64().expect("retry_after_ms is a number");
    assert!(retry_after_ms > 0 && retry_after_ms <= 1000, "retry_after_ms = {retry_after_ms}");

    advance(&app, 1);
    assert_valid(&app.verify(&body).await, "one second later");
}

#[tokio::test]
async fn default_rate_limit_accepts_a_burst_of_80_then_refuses() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let (secret, _, _) = new_key(&app, &org, json!({})).await;
    let body = json!({ "key": secret });

    for n in 1..=80 {
        let decision = app.verify(&body).await;
        assert_valid(&decision, &format!("request {n} of 80 at the same instant"));
        assert_eq!(decision["rate_limit"]["limit"], 80, "{decision:#}");
        assert_eq!(decision["rate_limit"]["remaining"], 80 - n, "{decision:#}");
    }
    assert_denied(&app.verify(&body).await, "RATE_LIMITED", 429, "request 81");
}

// ---------------------------------------------------------------------------------------------
// Check order

/// One row of the order table: a key breaking two rules and the code of the earlier one.
struct OrderCase {
    case: &'static str,
    key: Value,
    revoke: bool,
    /// Spend the key's only token with a plain valid verification first.
    spend_rate_limit: bool,
    /// The request, from the signing secret and the current Unix time.
    request: fn(&str, i64) -> Value,
    expected: &'static str,
}

#[tokio::test]
async fn when_two_rules_fail_the_earlier_check_in_the_spec_table_answers() {
    let app = spawn_app().await;
    let org = app.create_org_with_senders().await;
    let expires_at = (START + time::Duration::seconds(60)).format(&Rfc3339).unwrap();
    let cases = [
        OrderCase {
            case: "revoked + expired → API_KEY_INACTIVE",
            key: json!({ "expires_at": expires_at }),
            revoke: true,
            spend_rate_limit: false,
            request: |_, _| json!({}),
            expected: "API_KEY_INACTIVE",
        },
        OrderCase {
            case: "expired + bad IP → API_KEY_EXPIRED",
            key: json!({ "expires_at": expires_at, "ip_allowlist": ["10.0.0.0/8"] }),
            revoke: false,
            spend_rate_limit: false,
            request: |_, _| json!({ "client_ip": "192.0.2.1" }),
            expected: "API_KEY_EXPIRED",
        },
        OrderCase {
            case: "bad IP + missing signature → IP_NOT_ALLOWED",
            key: json!({ "hmac_required": true, "ip_allowlist": ["10.0.0.0/8"] }),
            revoke: false,
            spend_rate_limit: false,
            request: |_, _| json!({ "client_ip": "192.0.2.1" }),
            expected: "IP_NOT_ALLOWED",
        },
        OrderCase {
            case: "missing signature + missing scope → SIGNATURE_REQUIRED",
            key: json!({ "hmac_required": true }),
            revoke: false,
            spend_rate_limit: false,
            request: |_, _| json!({ "scope": "contacts:read" }),
            expected: "SIGNATURE_REQUIRED",
        },
        OrderCase {
            case: "bad signature + missing scope → INVALID_SIGNATURE",
            key: json!({ "hmac_required": true }),
            revoke: false,
            spend_rate_limit: false,
            request: |signing_secret, now| {
                let wrong_secret = format!("{signing_secret}x");
                json!({ "scope": "contacts:read", "request": signed_request(&wrong_secret, now, "GET", "/v1/contacts", b"") })
            },
            expected: "INVALID_SIGNATURE",
        },
        OrderCase {
            case: "missing scope + bad sender → FORBIDDEN",
            key: json!({ "scopes": ["messages:send"], "phone_allowlist": ["+14155550100"] }),
            revoke: false,
            spend_rate_limit: false,
            request: |_, _| json!({ "scope": ["messages:send", "contacts:read"], "sender": "+14155550101" }),
            expected: "FORBIDDEN",
        },
        OrderCase {
            case: "bad sender + bad channel → SENDER_NOT_ALLOWED",
            key: json!({ "scopes": ["messages:send"], "channels": ["marketing"] }),
            revoke: false,
            spend_rate_limit: false,
            request: |_, _| json!({ "scope": "messages:send", "sender": UNREGISTERED_SENDER, "channels": ["alerts"] }),
            expected: "SENDER_NOT_ALLOWED",
        },
        OrderCase {
            case: "bad channel + over the rate limit → CHANNEL_SCOPE_VIOLATION",
            key: json!({ "channels": ["marketing"], "rate_limit": 1 }),
            revoke: false,
            spend_rate_limit: true,
            request: |_, _| json!({ "channels": ["alerts"] }),
            expected: "CHANNEL_SCOPE_VIOLATION",
        },
    ];

    let mut keys = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let mut settings = case.key.clone();
        settings["name"] = json!(format!("order {i}"));
        let (secret, signing_secret, id) = new_key(&app, &org, settings).await;
        if case.revoke {
            let answer = app.post(&format!("/v1/orgs/{org}/keys/{id}/revoke"), &json!({})).await;
            assert_eq!(answer.status, StatusCode::OK, "{}: {:#}", case.case, answer.body);
        }
        keys.push((secret, signing_secret));
    }
    // Past the 60 s expiry of the rows that need it; the other keys never expire.
    advance(&app, 61);
    let now = now_unix(&app);
    for (case, (secret, signing_secret)) in cases.iter().zip(&keys) {
        if case.spend_rate_limit {
            assert_valid(&app.verify(&json!({ "key": secret })).await, &format!("{}: spending the token", case.case));
        }
        let decision = app.verify(&with_key(secret, (case.request)(signing_secret, now))).await;
        assert_code(&decision, case.expected, case.case);
    }
}

// ---------------------------------------------------------------------------------------------
// Changes take effect on the next verification

#[tokio::test]
async fn revocation_is_effective_for_the_very_next_verification() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let (secret, _, id) = new_key(&app, &org, json!({})).await;
    assert_valid(&app.verify(&json!({ "key": secret })).await, "before revocation (now cached)");

    let revoked = app.post(&format!("/v1/orgs/{org}/keys/{id}/revoke"), &json!({})).await;
    assert_eq!(revoked.status, StatusCode::OK, "{:#}", revoked.body);
    let decision = app.verify(&json!({ "key": secret })).await;

    assert_denied(&decision, "API_KEY_INACTIVE", 401, "the first verification after revoke");
}

#[tokio::test]
async fn removing_a_scope_is_effective_for_the_next_verification() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let (secret, _, id) = new_key(&app, &org, json!({ "scopes": ["messages:send", "templates:read"] })).await;
    let body = json!({ "key": secret, "scope": "templates:read" });
    assert_valid(&app.verify(&body).await, "before the edit (now cached)");

    let patched = app.patch(&format!("/v1/orgs/{org}/keys/{id}"), &json!({ "scopes": ["messages:send"] })).await;
    assert_eq!(patched.status, StatusCode::OK, "{:#}", patched.body);
    let decision = app.verify(&body).await;

    assert_denied(&decision, "FORBIDDEN", 403, "the first verification after the scope was removed");
    let valid = app.verify(&json!({ "key": secret, "scope": "messages:send" })).await;
    assert_valid(&valid, "the remaining scope");
    assert_eq!(valid["scopes"], json!(["messages:send"]), "{valid:#}");
}

// ---------------------------------------------------------------------------------------------
// last_used_at

#[tokio::test]
async fn valid_verification_sets_last_used_at_within_five_seconds() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let (secret, _, id) = new_key(&app, &org, json!({})).await;
    assert_eq!(last_used_at(&app, &org, &id).await, Value::Null, "never used yet");
    advance(&app, 7);

    assert_valid(&app.verify(&json!({ "key": secret })).await, "the use");
    let used_at = wait_for_last_used_at(&app, &org, &id).await.expect("last_used_at set within 5 s");

    let used_at = OffsetDateTime::parse(&used_at, &Rfc3339).expect("RFC 3339");
    assert_eq!(used_at, START + time::Duration::seconds(7), "the server clock's time of the verification");
}

#[tokio::test]
async fn refused_verification_leaves_last_used_at_null() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let (refused, _, refused_id) = new_key(&app, &org, json!({ "ip_allowlist": ["10.0.0.0/8"] })).await;
    let (witness, _, witness_id) = new_key(&app, &org, json!({ "name": "witness" })).await;

    let decision = app.verify(&json!({ "key": refused, "client_ip": "192.0.2.1" })).await;
    assert_denied(&decision, "IP_NOT_ALLOWED", 403, "the refused use");
    let decision = app.verify(&json!({ "key": refused, "scope": "keys:write", "client_ip": "10.0.0.1" })).await;
    assert_denied(&decision, "FORBIDDEN", 403, "another refused use");
    // A valid use of another key, made after the refused ones: once it shows, a flush has run.
    assert_valid(&app.verify(&json!({ "key": witness })).await, "the witness use");
    wait_for_last_used_at(&app, &org, &witness_id).await.expect("the witness's last_used_at within 5 s");

    assert_eq!(last_used_at(&app, &org, &refused_id).await, Value::Null, "refusals are not uses");
}

// ---------------------------------------------------------------------------------------------
// HTTP-level errors of the endpoint

#[tokio::test]
async fn verify_without_the_operator_token_is_unauthenticated() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let (secret, _, _) = new_key(&app, &org, json!({})).await;
    let body = json!({ "key": secret });

    let requests = [
        ("no credential", app.client.post(app.url("/v1/verify")).json(&body)),
        ("a wrong token", app.client.post(app.url("/v1/verify")).bearer_auth("kwop_test_wrong").json(&body)),
        (
            "the API key itself as the credential",
            app.client.post(app.url("/v1/verify")).bearer_auth(&secret).json(&body),
        ),
    ];
    for (case, request) in requests {
        let answer = app.send(request).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{case}: {:#}", answer.body);
        answer.assert_problem(401, "UNAUTHENTICATED");
    }
}

#[tokio::test]
async fn verify_body_that_is_not_json_is_415() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let (secret, _, _) = new_key(&app, &org, json!({})).await;
    let body = json!({ "key": secret }).to_string();

    let answer = post_verify_raw(&app, "text/plain", body.clone()).await;
    answer.assert_problem(415, "UNSUPPORTED_MEDIA_TYPE");
    let answer = app.send(app.client.post(app.url("/v1/verify")).bearer_auth(&app.operator_token).body(body)).await;
    answer.assert_problem(415, "UNSUPPORTED_MEDIA_TYPE");
}

#[tokio::test]
async fn malformed_json_is_validation_failed() {
    let app = spawn_app().await;

    for (case, body) in
        [("truncated", "{\"key\": \"kw_live_"), ("not an object", "[1, 2"), ("trailing garbage", "{} x")]
    {
        let answer = post_verify_raw(&app, "application/json", body).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{case}: {:#}", answer.body);
        answer.assert_problem(400, "VALIDATION_FAILED");
    }
}

#[tokio::test]
async fn unknown_field_is_a_400_naming_it() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let (secret, _, _) = new_key(&app, &org, json!({})).await;

    // `scopes` instead of `scope` must not silently mean "no scope required".
    let answer = app.post("/v1/verify", &json!({ "key": secret, "scopes": ["keys:write"] })).await;
    eprintln!("PEEK {:#}", answer.body);

    answer.assert_problem(400, "VALIDATION_FAILED");
    let message = answer.field_error("scopes").expect("an error on the field `scopes`");
    assert!(message.contains("unknown field"), "{message}");

    let answer = app
        .post(
            "/v1/verify",
            &json!({ "key": secret, "request": { "method": "GET", "path": "/", "timestamp": "1", "sig": "00" } }),
        )
        .await;
    answer.assert_problem(400, "VALIDATION_FAILED");
    assert!(answer.field_error("request.sig").is_some(), "names the unknown nested field: {:#}", answer.body);
}

#[tokio::test]
async fn body_over_one_mib_is_payload_too_large() {
    let app = spawn_app().await;
    let padding = "x".repeat(1024 * 1024);
    let body = json!({ "key": "kw_live_x", "sender": padding }).to_string();
    assert!(body.len() > 1024 * 1024);

    let answer = post_verify_raw(&app, "application/json", body).await;

    answer.assert_problem(413, "PAYLOAD_TOO_LARGE");
}

#[tokio::test]
async fn client_ip_that_is_not_an_ip_is_a_400_naming_client_ip() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let (secret, _, _) = new_key(&app, &org, json!({})).await;

    for client_ip in ["not-an-ip", "10.0.0.0/8", "203.0.113.7:443", "256.1.1.1"] {
        let answer = app.post("/v1/verify", &json!({ "key": secret, "client_ip": client_ip })).await;
        answer.assert_problem(400, "VALIDATION_FAILED");
        assert!(answer.field_error("client_ip").is_some(), "{client_ip}: names client_ip: {:#}", answer.body);
    }
}

// ---------------------------------------------------------------------------------------------
// Metrics

#[tokio::test]
async fn metrics_count_verifications_by_code_and_time_them() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let (secret, _, _) = new_key(&app, &org, json!({})).await;
    assert_valid(&app.verify(&json!({ "key": secret })).await, "a valid verification");
    assert_denied(&app.verify(&json!({ "key": "nope" })).await, "INVALID_API_KEY", 401, "an invalid one");

    let response = app.client.get(app.url("/metrics")).send().await.expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.expect("body");

    let valid_count = text
        .lines()
        .find_map(|line| line.strip_prefix("keyward_verifications_total{code=\"VALID\"} "))
        .and_then(|n| n.trim().parse::<f64>().ok());
    assert!(valid_count.is_some_and(|n| n >= 1.0), "a VALID counter ≥ 1 in:\n{text}");
    assert!(text.contains("keyward_verifications_total{code=\"INVALID_API_KEY\"}"), "{text}");
    assert!(text.contains("keyward_verify_duration_seconds"), "{text}");
}

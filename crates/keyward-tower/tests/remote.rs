//! Remote mode against a real keyward server: the layer asks `/v1/verify` for every request.

mod support;

use std::time::{Duration, Instant};

use keyward_tower::KeywardLayer;
use serde_json::json;
use support::{serve_app, whoami_bearer, whoami_with, TestKeyward};

fn layer(keyward: &TestKeyward) -> KeywardLayer {
    KeywardLayer::remote(&keyward.base_url, &keyward.operator_token).expect("layer").require_scope("messages:send")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_key_reaches_the_handler_with_its_identity() {
    let keyward = TestKeyward::start().await;
    let org = keyward.create_org().await;
    keyward.add_channel(&org, "alerts").await;
    let settings = json!({ "name": "backend", "scopes": ["messages:send", "templates:read"], "channels": ["alerts"], "rate_limit": 50 });
    let (id, secret) = keyward.create_key(&org, &settings).await;
    let app = serve_app(layer(&keyward)).await;

    let answer = whoami_bearer(&app, &secret).await;
    assert_eq!(answer.status, 200, "{answer:#?}");
    assert_eq!(answer.body["id"], id.as_str());
    assert_eq!(answer.body["org_id"], org.as_str());
    assert_eq!(answer.body["name"], "backend");
    assert_eq!(answer.body["scopes"], json!(["messages:send", "templates:read"]));
    assert_eq!(answer.body["channels"], json!(["alerts"]));
    assert_eq!(answer.body["environment"], "live");
    assert_eq!(answer.body["prefix"], &secret[..16]);
    assert_eq!(answer.body["rate_limit"], 50);
    assert_eq!(answer.rate_limit.as_deref(), Some("50"), "RateLimit-* on the passed response");

    // X-API-Key works the same, and the pooled connection is reused for it.
    let answer = whoami_with(&app, &[("x-api-key", &secret)]).await;
    assert_eq!(answer.status, 200, "{answer:#?}");
    assert_eq!(answer.body["id"], id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_unknown_and_doubled_credentials_are_refused() {
    let keyward = TestKeyward::start().await;
    let org = keyward.create_org().await;
    let (_, secret) = keyward.create_key(&org, &json!({ "name": "k", "scopes": ["messages:send"] })).await;
    let app = serve_app(layer(&keyward)).await;

    whoami_with(&app, &[]).await.assert_problem(401, "INVALID_API_KEY");
    whoami_bearer(&app, "kw_live_notakeyatall").await.assert_problem(401, "INVALID_API_KEY");
    let bearer = format!("Bearer {secret}");
    whoami_with(&app, &[("authorization", &bearer), ("x-api-key", &secret)])
        .await
        .assert_problem(400, "VALIDATION_FAILED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_and_a_missing_scope_are_refused_with_keywards_codes() {
    let keyward = TestKeyward::start().await;
    let org = keyward.create_org().await;
    let (id, secret) = keyward.create_key(&org, &json!({ "name": "k", "scopes": ["messages:send"] })).await;
    let (_, reader) = keyward.create_key(&org, &json!({ "name": "r", "scopes": ["templates:read"] })).await;
    let app = serve_app(layer(&keyward)).await;

    assert_eq!(whoami_bearer(&app, &secret).await.status, 200);
    whoami_bearer(&app, &reader).await.assert_problem(403, "FORBIDDEN");
    keyward.revoke(&org, &id).await;
    whoami_bearer(&app, &secret).await.assert_problem(401, "API_KEY_INACTIVE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_rate_limit_gets_429_with_retry_after() {
    let keyward = TestKeyward::start().await;
    let org = keyward.create_org().await;
    let (_, secret) =
        keyward.create_key(&org, &json!({ "name": "k", "scopes": ["messages:send"], "rate_limit": 1 })).await;
    let app = serve_app(layer(&keyward)).await;

    assert_eq!(whoami_bearer(&app, &secret).await.status, 200);
    let refused = whoami_bearer(&app, &secret).await;
    refused.assert_problem(429, "RATE_LIMITED");
    assert_eq!(refused.retry_after.as_deref(), Some("1"), "{refused:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyward_down_or_silent_is_503_never_a_pass() {
    let mut keyward = TestKeyward::start().await;
    let org = keyward.create_org().await;
    let (_, secret) = keyward.create_key(&org, &json!({ "name": "k", "scopes": ["messages:send"] })).await;
    let app = serve_app(layer(&keyward)).await;
    assert_eq!(whoami_bearer(&app, &secret).await.status, 200, "a pooled connection is open");

    keyward.stop().await;
    whoami_bearer(&app, &secret).await.assert_problem(503, "SERVICE_UNAVAILABLE");

    // A keyward that accepts connections and never answers: 503 once the answer timeout passes.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let silent_url = format!("http://{}", silent.local_addr().expect("addr"));
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let stuck = KeywardLayer::remote(&silent_url, &keyward.operator_token)
        .expect("layer")
        .timeouts(Duration::from_millis(200), Duration::from_millis(300));
    let app = serve_app(stuck).await;
    let started = Instant::now();
    whoami_bearer(&app, &secret).await.assert_problem(503, "SERVICE_UNAVAILABLE");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(300) && waited < Duration::from_secs(2), "answered after {waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_operator_token_is_503_for_the_caller() {
    let keyward = TestKeyward::start().await;
    let org = keyward.create_org().await;
    let (_, secret) = keyward.create_key(&org, &json!({ "name": "k", "scopes": ["messages:send"] })).await;
    let wrong = KeywardLayer::remote(&keyward.base_url, "kwop_not_the_operator_token_at_all").expect("layer");
    let app = serve_app(wrong).await;
    // The caller's key is fine; this service is misconfigured: not a 401 the caller could act on.
    whoami_bearer(&app, &secret).await.assert_problem(503, "SERVICE_UNAVAILABLE");
}

#[test]
fn a_layer_refuses_urls_and_tokens_it_cannot_use() {
    for url in ["not a url", "https://keyward.internal", "ftp://keyward"] {
        assert!(KeywardLayer::remote(url, "kwop_token_0123456789").is_err(), "{url}");
    }
    assert!(KeywardLayer::remote("http://127.0.0.1:8080", " ").is_err());
    assert!(KeywardLayer::remote("http://127.0.0.1:8080", "kwop_token\n").is_ok(), "surrounding whitespace is trimmed");
    let layer = KeywardLayer::remote("http://127.0.0.1:8080/", "kwop_secret_token_0123456789").expect("layer");
    assert!(!format!("{layer:?}").contains("kwop_secret"), "the operator token never reaches Debug output");
}

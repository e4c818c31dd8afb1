//! Remote mode against a real keyward server: the layer asks `/v1/verify` for every request, in
//! plain HTTP or over HTTPS (keyward's own TLS listener, a certificate from a throw-away CA).

mod support;

use std::time::{Duration, Instant};

use keyward_tower::KeywardLayer;
use serde_json::json;
use support::{serve_app, whoami_bearer, whoami_with, TestCa, TestKeyward};

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
    let stuck = KeywardLayer::remote_builder(&silent_url, &keyward.operator_token)
        .timeouts(Duration::from_millis(200), Duration::from_millis(300))
        .build()
        .expect("layer");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_https_a_key_is_verified_against_the_ca_given_to_the_layer() {
    let ca = TestCa::new("keyward test CA");
    let keyward = TestKeyward::start_with_tls(&ca.server_pair()).await;
    let https_url = keyward.https_url.clone().expect("an https listener");
    let org = keyward.create_org().await;
    let (id, secret) = keyward.create_key(&org, &json!({ "name": "k", "scopes": ["messages:send"] })).await;
    let (_, reader) = keyward.create_key(&org, &json!({ "name": "r", "scopes": ["templates:read"] })).await;
    let layer = KeywardLayer::remote_builder(&https_url, &keyward.operator_token)
        .add_root_certificate(ca.pem())
        .native_roots(false)
        .build()
        .expect("layer")
        .require_scope("messages:send");
    let app = serve_app(layer).await;

    let answer = whoami_bearer(&app, &secret).await;
    assert_eq!(answer.status, 200, "{answer:#?}");
    assert_eq!(answer.body["id"], id.as_str());
    // keyward's decisions come through the TLS connection as they do in plain HTTP.
    whoami_bearer(&app, &reader).await.assert_problem(403, "FORBIDDEN");
    whoami_bearer(&app, "kw_live_notakeyatall").await.assert_problem(401, "INVALID_API_KEY");
    keyward.revoke(&org, &id).await;
    whoami_bearer(&app, &secret).await.assert_problem(401, "API_KEY_INACTIVE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_https_a_certificate_from_another_ca_or_for_another_name_is_503_never_a_pass() {
    let ca = TestCa::new("keyward test CA");
    let keyward = TestKeyward::start_with_tls(&ca.server_pair()).await;
    let https_url = keyward.https_url.clone().expect("an https listener");
    let org = keyward.create_org().await;
    let (_, secret) = keyward.create_key(&org, &json!({ "name": "k", "scopes": ["messages:send"] })).await;

    // Another CA, and the system's roots: none of them signed keyward's certificate.
    let other = TestCa::new("another CA");
    let wrong_ca = KeywardLayer::remote_builder(&https_url, &keyward.operator_token)
        .add_root_certificate(other.pem())
        .build()
        .expect("layer");
    let app = serve_app(wrong_ca).await;
    whoami_bearer(&app, &secret).await.assert_problem(503, "SERVICE_UNAVAILABLE");

    // The right CA, but keyward reached by a name its certificate does not carry (127.0.0.1).
    let by_ip = https_url.replace("localhost", "127.0.0.1");
    let wrong_name = KeywardLayer::remote_builder(&by_ip, &keyward.operator_token)
        .add_root_certificate(ca.pem())
        .build()
        .expect("layer");
    let app = serve_app(wrong_name).await;
    whoami_bearer(&app, &secret).await.assert_problem(503, "SERVICE_UNAVAILABLE");

    // And the TLS port asked in plain HTTP gets no answer keyward could have given: 503 too.
    let plain = https_url.replace("https://", "http://");
    let app = serve_app(KeywardLayer::remote(&plain, &keyward.operator_token).expect("layer")).await;
    whoami_bearer(&app, &secret).await.assert_problem(503, "SERVICE_UNAVAILABLE");
}

#[test]
fn a_layer_refuses_urls_tokens_and_certificates_it_cannot_use() {
    for url in ["not a url", "ftp://keyward", "keyward.internal:8080"] {
        assert!(KeywardLayer::remote(url, "kwop_token_0123456789").is_err(), "{url}");
    }
    let ca = TestCa::new("a CA");
    let https = |builder: keyward_tower::RemoteBuilder| builder.build().map(|_| ()).map_err(|e| e.to_string());
    let builder = || KeywardLayer::remote_builder("https://keyward.internal", "kwop_token_0123456789");
    assert_eq!(https(builder().add_root_certificate(ca.pem()).native_roots(false)), Ok(()));
    let none = https(builder().native_roots(false)).expect_err("no trusted root");
    assert!(none.contains("trusted root"), "{none}");
    let garbled =
        https(builder().add_root_certificate("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"))
            .expect_err("not a certificate");
    assert!(garbled.contains("root certificate"), "{garbled}");
    let empty = https(builder().add_root_certificate("no PEM here")).expect_err("no certificate");
    assert!(empty.contains("no CERTIFICATE"), "{empty}");
    let plain = KeywardLayer::remote_builder("http://127.0.0.1:8080", "kwop_token_0123456789")
        .add_root_certificate(ca.pem())
        .build()
        .map(|_| ())
        .expect_err("a CA for plain HTTP is a mistake");
    assert!(plain.to_string().contains("https://"), "{plain}");
    assert!(KeywardLayer::remote("http://127.0.0.1:8080", " ").is_err());
    assert!(KeywardLayer::remote("http://127.0.0.1:8080", "kwop_token\n").is_ok(), "surrounding whitespace is trimmed");
    let layer = KeywardLayer::remote("http://127.0.0.1:8080/", "kwop_secret_token_0123456789").expect("layer");
    assert!(!format!("{layer:?}").contains("kwop_secret"), "the operator token never reaches Debug output");
}

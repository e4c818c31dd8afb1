//! Embedded mode: the verifier in this process, on the SQLite file a real keyward server owns
//! (opened read-only), following its change feed.

mod support;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use keyward_core::crypto::MasterKey;
use keyward_tower::{Embedded, KeywardLayer};
use serde_json::json;
use support::{serve_app, whoami_bearer, whoami_with, TestKeyward};
use tower::{Service as _, ServiceExt};

async fn embedded(keyward: &TestKeyward) -> Embedded {
    Embedded::builder()
        .database(keyward.database_url())
        .master_key(keyward.master_key())
        .start()
        .await
        .expect("embedded verifier starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_key_reaches_the_handler_and_refusals_carry_keywards_codes() {
    let keyward = TestKeyward::start().await;
    let org = keyward.create_org().await;
    let settings = json!({ "name": "backend", "scopes": ["messages:send", "templates:read"], "rate_limit": 40 });
    let (id, secret) = keyward.create_key(&org, &settings).await;
    let (_, reader) = keyward.create_key(&org, &json!({ "name": "r", "scopes": ["templates:read"] })).await;
    let verifier = embedded(&keyward).await;
    let app = serve_app(KeywardLayer::embedded(verifier.clone()).require_scope("messages:send")).await;

    let answer = whoami_bearer(&app, &secret).await;
    assert_eq!(answer.status, 200, "{answer:#?}");
    assert_eq!(answer.body["id"], id.as_str());
    assert_eq!(answer.body["org_id"], org.as_str());
    assert_eq!(answer.body["name"], "backend");
    assert_eq!(answer.body["scopes"], json!(["messages:send", "templates:read"]));
    assert_eq!(answer.body["channels"], "all");
    assert_eq!(answer.body["prefix"], &secret[..16]);
    assert_eq!(answer.body["rate_limit"], 40);
    assert_eq!(answer.rate_limit.as_deref(), Some("40"));
    assert_eq!(whoami_with(&app, &[("x-api-key", &secret)]).await.status, 200);

    whoami_with(&app, &[]).await.assert_problem(401, "INVALID_API_KEY");
    whoami_bearer(&app, "kw_live_notakeyatall").await.assert_problem(401, "INVALID_API_KEY");
    whoami_bearer(&app, &reader).await.assert_problem(403, "FORBIDDEN");
    let bearer = format!("Bearer {secret}");
    whoami_with(&app, &[("authorization", &bearer), ("x-api-key", &secret)])
        .await
        .assert_problem(400, "VALIDATION_FAILED");
    assert!(verifier.cached_keys() >= 2, "keys are cached in this process");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_rate_limit_gets_429_with_retry_after_and_its_budget() {
    let keyward = TestKeyward::start().await;
    let org = keyward.create_org().await;
    let (_, secret) =
        keyward.create_key(&org, &json!({ "name": "k", "scopes": ["messages:send"], "rate_limit": 1 })).await;
    let app = serve_app(KeywardLayer::embedded(embedded(&keyward).await)).await;

    assert_eq!(whoami_bearer(&app, &secret).await.status, 200);
    let refused = whoami_bearer(&app, &secret).await;
    refused.assert_problem(429, "RATE_LIMITED");
    assert_eq!(refused.retry_after.as_deref(), Some("1"), "{refused:#?}");
    assert_eq!(refused.rate_limit.as_deref(), Some("1"), "{refused:#?}");
}

/// The layer as a bare tower service, called in-process: no socket between the poll and the answer.
fn request(secret: &str) -> Request<Body> {
    Request::get("/whoami").header("authorization", format!("Bearer {secret}")).body(Body::empty()).expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_through_the_api_is_refused_by_the_embedded_layer_within_100_ms() {
    let keyward = TestKeyward::start().await;
    let org = keyward.create_org().await;
    let verifier = embedded(&keyward).await;
    let mut service = support::app(KeywardLayer::embedded(verifier));
    let mut seen = Vec::new();
    for round in 0..5 {
        let (id, secret) = keyward.create_key(&org, &json!({ "name": format!("k{round}") })).await;
        let answer = ServiceExt::<Request<Body>>::ready(&mut service)
            .await
            .expect("ready")
            .call(request(&secret))
            .await
            .expect("answer");
        assert_eq!(answer.status(), 200, "the key is valid and now cached");

        keyward.revoke(&org, &id).await;
        let revoked_at = Instant::now();
        loop {
            let answer = ServiceExt::<Request<Body>>::ready(&mut service)
                .await
                .expect("ready")
                .call(request(&secret))
                .await
                .expect("answer");
            if answer.status() == 401 {
                seen.push(revoked_at.elapsed());
                break;
            }
            assert_eq!(answer.status(), 200);
            assert!(revoked_at.elapsed() < Duration::from_secs(2), "the revocation was never seen");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let worst = seen.iter().max().copied().unwrap_or_default();
    println!("revocation seen by the embedded layer after {seen:?} (worst {worst:?})");
    assert!(worst < Duration::from_millis(100), "revocations seen after {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_verifier_writes_nothing_to_keywards_database() {
    let keyward = TestKeyward::start().await;
    let org = keyward.create_org().await;
    let (id, secret) = keyward.create_key(&org, &json!({ "name": "k" })).await;
    let service = support::app(KeywardLayer::embedded(embedded(&keyward).await));
    for _ in 0..3 {
        let answer = service.clone().oneshot(request(&secret)).await.expect("answer");
        assert_eq!(answer.status(), 200);
    }
    // keyward's own verifications set last_used_at within a second or so; the embedded one never does.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(keyward.key(&org, &id).await["last_used_at"], serde_json::Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_key_comes_from_the_file_beside_the_database_and_a_wrong_one_is_refused() {
    let keyward = TestKeyward::start().await;
    let org = keyward.create_org().await;
    let (_, secret) = keyward.create_key(&org, &json!({ "name": "k" })).await;

    // As `keyward serve` does without KEYWARD_MASTER_KEY: the `.master-key` file beside the database.
    if std::env::var_os("KEYWARD_MASTER_KEY").is_none() && std::env::var_os("KEYWARD_MASTER_KEY_FILE").is_none() {
        let verifier = Embedded::builder().database(keyward.database_url()).start().await.expect("starts");
        let answer = support::app(KeywardLayer::embedded(verifier)).oneshot(request(&secret)).await.expect("answer");
        assert_eq!(answer.status(), 200);
    }

    let other = MasterKey::generate(&mut rand::rngs::OsRng);
    let error =
        Embedded::builder().database(keyward.database_url()).master_key(other).start().await.expect_err("wrong key");
    assert!(error.to_string().contains("does not match"), "{error}");

    let missing = keyward.db_dir().join("missing.db");
    let error = Embedded::builder()
        .database(format!("sqlite://{}", missing.display()))
        .master_key(keyward.master_key())
        .start()
        .await
        .expect_err("no database");
    assert!(error.to_string().contains("does not exist"), "{error}");
    assert!(!missing.exists(), "the embedded verifier never creates keyward's database");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_verifier_follows_a_master_key_rotation() {
    if std::env::var_os("KEYWARD_MASTER_KEY").is_some() || std::env::var_os("KEYWARD_MASTER_KEY_FILE").is_some() {
        return; // This test reads the key file beside the database, as `keyward serve` does without them.
    }
    let keyward = TestKeyward::start().await;
    let org = keyward.create_org().await;
    let (_, before) = keyward.create_key(&org, &json!({ "name": "before" })).await;
    let verifier = Embedded::builder().database(keyward.database_url()).start().await.expect("starts");
    let service = support::app(KeywardLayer::embedded(verifier));
    assert_eq!(service.clone().oneshot(request(&before)).await.expect("answer").status(), 200);

    assert_eq!(keyward.rotate_master_key().await, 2);
    let switched = Instant::now();
    while keyward.state.verifier.current_version() != 2 {
        assert!(switched.elapsed() < Duration::from_secs(5), "keyward never switched to version 2");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Hashed under version 2: the embedded verifier must read the rewritten key file to know it.
    let (_, after) = keyward.create_key(&org, &json!({ "name": "after" })).await;
    let started = Instant::now();
    loop {
        let status = service.clone().oneshot(request(&after)).await.expect("answer").status();
        if status == 200 {
            break;
        }
        assert_eq!(status, 401);
        assert!(started.elapsed() < Duration::from_secs(5), "a key made after the rotation stayed unknown");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("a key made under the new master key passed after {:?}", started.elapsed());
    assert_eq!(service.clone().oneshot(request(&before)).await.expect("answer").status(), 200, "older keys still pass");
}

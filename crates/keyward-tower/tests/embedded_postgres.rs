//! Embedded mode on the real PostgreSQL (127.0.0.1:5432, database `test`, a schema of its own):
//! the verifier connects without migrating and is woken by keyward's `NOTIFY`.

mod support;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use keyward_tower::{Embedded, KeywardLayer};
use serde_json::json;
use support::TestKeyward;
use tower::{Service as _, ServiceExt};

fn request(secret: &str) -> Request<Body> {
    Request::get("/whoami").header("x-api-key", secret).body(Body::empty()).expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_a_revocation_through_the_api_is_refused_within_100_ms() {
    let keyward = TestKeyward::start_on_postgres().await;
    let org = keyward.create_org().await;
    let verifier = Embedded::builder()
        .database(keyward.database_url())
        .master_key(keyward.master_key())
        .start()
        .await
        .expect("embedded verifier starts");
    let mut service = support::app(KeywardLayer::embedded(verifier).require_scope("messages:send"));
    let mut seen = Vec::new();
    for round in 0..5 {
        let (id, secret) = keyward.create_key(&org, &json!({ "name": format!("k{round}") })).await;
        let answer = ServiceExt::<Request<Body>>::ready(&mut service).await.expect("ready").call(request(&secret));
        assert_eq!(answer.await.expect("answer").status(), 200, "the key is valid and now cached");

        keyward.revoke(&org, &id).await;
        let revoked_at = Instant::now();
        loop {
            let answer = ServiceExt::<Request<Body>>::ready(&mut service).await.expect("ready").call(request(&secret));
            let status = answer.await.expect("answer").status();
            if status == 401 {
                seen.push(revoked_at.elapsed());
                break;
            }
            assert_eq!(status, 200);
            assert!(revoked_at.elapsed() < Duration::from_secs(2), "the revocation was never seen");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let worst = seen.iter().max().copied().unwrap_or_default();
    println!("revocation seen by the embedded layer on PostgreSQL after {seen:?} (worst {worst:?})");
    assert!(worst < Duration::from_millis(100), "revocations seen after {seen:?}");
}

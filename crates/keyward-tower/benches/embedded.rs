//! An embedded, cached verification through the layer: a prepared request into the tower
//! service, the verifier answering from its cache, the inner service called with the
//! `VerifiedKey`, `RateLimit-*` set on its answer. No socket anywhere.
//!
//! `cargo bench -p keyward-tower --bench embedded`
//!
//! The keys are made through a real keyward server's JSON API on a SQLite file, which the
//! embedded verifiers then open read-only and follow, as in production. Every measured call
//! asserts a pass: a refusal (a key over its 1000/s limit) fails the run instead of flattering it.
//! - `one_key/*`: the same hot key each call, as `keyward-runtime`'s `verify` bench measures
//!   it: the verifier reads a `ManualClock` moved 1 ms a call, so the limit never refuses.
//!   `verify_only` is the decision without HTTP (`Embedded::verify`); the others add the layer
//!   (around a `service_fn`, and inside an axum `Router` with the `VerifiedKey` extractor, its
//!   routes built once as `axum::serve` builds them).
//! - `rotating_keys/*`: the system clock, and calls spread over enough keys that none reaches
//!   its limit: a cache of thousands of keys, which no longer sits in the CPU's caches.

#[path = "../tests/support/mod.rs"]
mod support;

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response};
use axum::routing::post;
use axum::Router;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use keyward_runtime::{Clock as _, ManualClock, SystemClock};
use keyward_server::config::Config;
use keyward_tower::{Embedded, KeywardLayer, VerifiedKey};
use serde_json::json;
use tower::{Layer as _, ServiceExt as _};

/// At up to ~5M calls a second, none of this many keys reaches its 1000/s limit.
const KEYS: usize = 8192;

fn request(key: &str) -> Request<Body> {
    Request::post("/v1/messages").header("authorization", format!("Bearer {key}")).body(Body::empty()).expect("request")
}

/// The layer around the cheapest inner service, and inside a real axum router.
fn services(
    verifier: &Embedded,
) -> (impl tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone, Router) {
    let layer = KeywardLayer::embedded(verifier.clone()).require_scope("messages:send");
    let inner = tower::service_fn(|request: Request<Body>| async move {
        assert!(request.extensions().get::<VerifiedKey>().is_some());
        Ok::<_, Infallible>(Response::new(Body::empty()))
    });
    // `with_state(())` turns the routes into services once, as `axum::serve` does (through
    // `into_make_service`): without it every `oneshot` builds the route again, axum's cost.
    let router = Router::new()
        .route("/v1/messages", post(|_key: VerifiedKey| async { "queued" }))
        .route_layer(layer.clone())
        .with_state(());
    (layer.layer(inner), router)
}

#[allow(clippy::too_many_lines, reason = "one set-up, then one block per measured case")]
fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let started = std::time::Instant::now();
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let (keyward, one_key, rotating, keys) = runtime.block_on(async {
        let keyward = support::TestKeyward::start().await;
        let org = keyward.create_org().await;
        let mut keys = Vec::with_capacity(KEYS);
        for n in 0..KEYS {
            let settings = json!({ "name": format!("bench-{n}"), "scopes": ["messages:send"], "rate_limit": 1000 });
            keys.push(keyward.create_key(&org, &settings).await.1);
        }
        // The manual clock runs ahead of the follower's confirmations: allow for it.
        let one_key = Embedded::builder()
            .database(keyward.database_url())
            .master_key(keyward.master_key())
            .config(Config::from_toml("cache_max_staleness_seconds = 3600").expect("config"))
            .clock(clock.clone())
            .start()
            .await
            .expect("embedded verifier starts");
        let rotating = Embedded::builder()
            .database(keyward.database_url())
            .master_key(keyward.master_key())
            .start()
            .await
            .expect("embedded verifier starts");
        (keyward, one_key, rotating, keys)
    });
    println!("set-up: {KEYS} keys made through the JSON API in {:?}", started.elapsed());

    let (one_service, one_router) = services(&one_key);
    let (rotating_service, _) = services(&rotating);
    // Warm the caches: the benchmark measures hits.
    runtime.block_on(async {
        let answer = one_service.clone().oneshot(request(&keys[0])).await.expect("answer");
        assert_eq!(answer.status(), 200);
        for key in &keys {
            let answer = rotating_service.clone().oneshot(request(key)).await.expect("answer");
            assert_eq!(answer.status(), 200);
        }
    });
    assert_eq!(rotating.cached_keys(), KEYS as u64);

    let mut group = c.benchmark_group("embedded_cached");
    group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    let scopes = [Cow::Borrowed("messages:send")];
    let hot = keys[0].as_str();
    group.bench_function("one_key/verify_only", |b| {
        b.to_async(&runtime).iter(|| {
            clock.advance(time::Duration::milliseconds(1));
            let (verifier, scopes) = (&one_key, &scopes);
            async move {
                if let Err(refusal) = verifier.verify(hot, scopes, None).await {
                    panic!("refused: {:?} {}", refusal.code, refusal.message);
                }
            }
        });
    });
    group.bench_function("one_key/layer_over_service_fn", |b| {
        b.to_async(&runtime).iter_batched(
            || request(hot),
            |request| {
                clock.advance(time::Duration::milliseconds(1));
                let service = one_service.clone();
                async move { assert_eq!(service.oneshot(request).await.expect("answer").status(), 200) }
            },
            BatchSize::SmallInput,
        );
    });
    group.bench_function("one_key/axum_router", |b| {
        b.to_async(&runtime).iter_batched(
            || request(hot),
            |request| {
                clock.advance(time::Duration::milliseconds(1));
                let router = one_router.clone();
                async move { assert_eq!(router.oneshot(request).await.expect("answer").status(), 200) }
            },
            BatchSize::SmallInput,
        );
    });

    let mut turn = 0;
    group.bench_function("rotating_keys/verify_only", |b| {
        b.to_async(&runtime).iter(|| {
            turn = (turn + 1) % KEYS;
            let (verifier, key, scopes) = (&rotating, &keys[turn], &scopes);
            async move {
                if let Err(refusal) = verifier.verify(key, scopes, None).await {
                    panic!("refused: {:?} {}", refusal.code, refusal.message);
                }
            }
        });
    });
    let mut next = 0;
    group.bench_function("rotating_keys/layer_over_service_fn", |b| {
        b.to_async(&runtime).iter_batched(
            || {
                next = (next + 1) % KEYS;
                request(&keys[next])
            },
            |request| {
                let service = rotating_service.clone();
                async move { assert_eq!(service.oneshot(request).await.expect("answer").status(), 200) }
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
    drop(keyward);
}

criterion_group!(benches, bench);
criterion_main!(benches);

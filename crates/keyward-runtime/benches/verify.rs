//! In-process verification of a cached key: the cost of `/v1/verify` minus HTTP and JSON.
//!
//! `cargo bench -p keyward-runtime --bench verify`

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use keyward_core::crypto::{MasterKey, SigningSecret};
use keyward_core::ids::{EventId, KeyId, OrgId};
use keyward_core::key::{Environment, KeyFormat};
use keyward_core::policy::VerifyRequest;
use keyward_core::record::{Actor, Channels, KeyRecord, KeySettings};
use keyward_core::signing::{self, SignedRequest};
use keyward_runtime::{ManualClock, Outcome, SharedState, Verifier, VerifierConfig};
use keyward_store::{NewAuditEvent, OrgRecord, Store};
use keyward_store_sqlite::SqliteStore;
use rand::SeedableRng;
use time::macros::datetime;

struct Fixture {
    verifier: Verifier,
    clock: Arc<ManualClock>,
    plain_key: String,
    signed_key: String,
    signing_secret: SigningSecret,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("bench.db").to_str().unwrap()).unwrap();
    store.migrate().await.unwrap();
    let now = datetime!(2030-01-01 00:00:00 UTC);
    let clock = Arc::new(ManualClock::new(now));
    let master = MasterKey::generate(&mut rand::rngs::OsRng);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let org = OrgRecord { id: OrgId::generate(&mut rng), name: "bench".into(), created_at: now };
    store.insert_org(&org).await.unwrap();
    let format = KeyFormat::default();
    let signing_secret = SigningSecret::generate(&mut rng);
    let mut keys = Vec::new();
    for hmac in [false, true] {
        let secret = format.generate(Environment::Live, &mut rng);
        let id = KeyId::generate(&mut rng);
        let sealed = hmac.then(|| master.secret_box().seal(&signing_secret, id.as_str(), &mut rng));
        let record = KeyRecord {
            prefix: secret.prefix_field().to_owned(),
            hash: master.pepper().hash(secret.expose()),
            hash_version: 1,
            sealed_signing_secret: sealed,
            seal_version: 1,
            settings: KeySettings {
                name: "bench".into(),
                scopes: vec!["messages:send".into(), "templates:read".into()],
                hmac_required: hmac,
                rate_limit: Some(1000),
                expires_at: None,
                ip_allowlist: vec!["10.0.0.0/8".parse().unwrap()],
                phone_allowlist: Vec::new(),
                channels: Channels::All,
                environment: Environment::Live,
                external_id: None,
                meta: None,
            },
            id: id.clone(),
            org_id: org.id.clone(),
            created_at: now,
            created_by: "operator".into(),
            revoked_at: None,
            revoked_by: None,
            last_used_at: None,
        };
        let event = NewAuditEvent {
            id: EventId::generate(&mut rng),
            at: now,
            actor: Actor::operator(),
            actor_ip: None,
            user_agent: None,
            action: "key.created".into(),
            target_type: "api_key".into(),
            target_id: id.to_string(),
            target_name: "bench".into(),
            changes: serde_json::Value::Null,
            trace_id: "0".repeat(32),
        };
        store.org(&org.id).insert_key(&record, &event).await.unwrap();
        keys.push(secret.expose().to_owned());
    }
    let verifier = Verifier::new(
        VerifierConfig {
            format,
            default_rate_limit: 80,
            signature_tolerance_seconds: 300,
            negative_ttl: Duration::from_secs(10),
            max_negative_entries: 1000,
            max_staleness: Duration::from_secs(2),
            max_cached_keys: 100_000,
            cache_max_age: Duration::from_secs(600),
            store_read_timeout: Duration::from_millis(500),
            miss_read_share_percent: 0,
            prerender: None,
        },
        master.clone().into(),
        Arc::new(store),
        clock.clone(),
        SharedState::local(now.unix_timestamp(), 300),
    );
    let signed_key = keys.pop().unwrap();
    let plain_key = keys.pop().unwrap();
    Fixture { verifier, clock, plain_key, signed_key, signing_secret, _dir: dir }
}

#[allow(clippy::needless_pass_by_value, reason = "the verifier hands its outcome over by value")]
fn is_valid(outcome: Outcome<'_, '_>) -> bool {
    matches!(outcome, Outcome::Valid { .. })
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let fixture = runtime.block_on(fixture());
    let scopes = [Cow::Borrowed("messages:send")];
    let plain =
        VerifyRequest { scopes: &scopes, client_ip: Some("10.1.2.3".parse().unwrap()), ..VerifyRequest::default() };
    // Warm the cache: the benchmark measures hits.
    assert!(runtime.block_on(fixture.verifier.verify(&fixture.plain_key, &plain, is_valid)));

    let mut group = c.benchmark_group("verify_cached");
    group.bench_function("no_signature", |b| {
        b.to_async(&runtime).iter(|| async {
            // 1000/s limit: move the clock 1 ms per call so the limiter never refuses.
            fixture.clock.advance(time::Duration::milliseconds(1));
            assert!(fixture.verifier.verify(&fixture.plain_key, &plain, is_valid).await);
        });
    });

    let body = vec![b'x'; 1024];
    let body_hash = signing::body_sha256_hex(&body);
    let mut counter = 0u64;
    group.bench_function("signature_1kib_body", |b| {
        b.to_async(&runtime).iter_batched(
            || {
                // Each request needs a fresh signature (replays are refused): a new path per call,
                // signed outside the measured section, as a client would.
                counter += 1;
                let timestamp = fixture.clock_now_unix().to_string();
                let path = format!("/v1/messages?n={counter}");
                let signature = signing::sign(&fixture.signing_secret, &timestamp, "POST", &path, &body_hash);
                (timestamp, path, signature)
            },
            |(timestamp, path, signature)| {
                let body_hash = &body_hash;
                let body = &body;
                let fixture = &fixture;
                let scopes = &scopes;
                async move {
                    fixture.clock.advance(time::Duration::milliseconds(1));
                    // The server hashes the body it received: part of the measured cost.
                    let received_hash = signing::body_sha256_hex(body);
                    assert_eq!(&received_hash, body_hash);
                    let request = VerifyRequest {
                        scopes,
                        client_ip: Some("10.1.2.3".parse().unwrap()),
                        signature: Some(SignedRequest {
                            timestamp: &timestamp,
                            method: "POST",
                            path_and_query: &path,
                            body_sha256: &received_hash,
                            signature: &signature,
                        }),
                        ..VerifyRequest::default()
                    };
                    assert!(fixture.verifier.verify(&fixture.signed_key, &request, is_valid).await);
                }
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

impl Fixture {
    fn clock_now_unix(&self) -> i64 {
        keyward_runtime::Clock::now(self.clock.as_ref()).unix_timestamp()
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

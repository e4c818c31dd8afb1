//! Verification with many keys in SQLite: set up through the store (one transaction per key, as
//! the API would make them, without the HTTP), then measured in process and printed:
//!   - start-up (opening the store and starting the verifier) against an empty store;
//!   - a cold verification (the key is not cached: one indexed read) p50/p99;
//!   - a warm one (cached) p50/p99, the same figure with few keys beside it;
//!   - the bytes one cached key costs (RSS growth over caching `SAMPLE` keys).
//!
//!   `cargo bench -p keyward-runtime --bench scale` (1,000,000 keys)
//!   `KEYWARD_BENCH_KEYS=100000 cargo bench -p keyward-runtime --bench scale`
//!
//! The store file is kept in `KEYWARD_BENCH_DIR` (default: the system temp dir) and reused when
//! it already holds the keys, since making a million keys takes minutes on a small machine.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward_core::crypto::MasterKey;
use keyward_core::ids::{EventId, KeyId, OrgId};
use keyward_core::key::{Environment, KeyFormat};
use keyward_core::policy::VerifyRequest;
use keyward_core::record::{Actor, Channels, KeyRecord, KeySettings};
use keyward_runtime::{Clock, Outcome, SharedState, SystemClock, Verifier, VerifierConfig};
use keyward_store::{NewAuditEvent, OrgRecord, Store};
use keyward_store_sqlite::SqliteStore;
use rand::SeedableRng;

/// Keys verified cold and then warm, and cached for the memory figure.
const SAMPLE: usize = 20_000;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and must stay quick.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let total: usize = std::env::var("KEYWARD_BENCH_KEYS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let dir = std::env::var("KEYWARD_BENCH_DIR").map_or_else(|_| std::env::temp_dir(), PathBuf::from);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("benchmark set-up");
    runtime.block_on(async {
        let few = Population::open(&dir, SAMPLE).await;
        let many = Population::open(&dir, total).await;
        println!("start-up with {} keys: {:?}", few.keys.len(), few.start_up().await);
        println!("start-up with {} keys: {:?}", many.keys.len(), many.start_up().await);
        for population in [&few, &many] {
            population.measure().await;
        }
    });
}

/// A store file holding `keys.len()` keys of one org, and the master key they were made under.
struct Population {
    path: PathBuf,
    master: MasterKey,
    keys: Vec<String>,
}

impl Population {
    async fn open(dir: &std::path::Path, count: usize) -> Self {
        let path = dir.join(format!("keyward-scale-{count}.db"));
        let keys_path = dir.join(format!("keyward-scale-{count}.keys"));
        let master_path = dir.join(format!("keyward-scale-{count}.master"));
        if let (Ok(keys), Ok(master)) = (std::fs::read_to_string(&keys_path), std::fs::read_to_string(&master_path)) {
            let keys: Vec<String> = keys.lines().map(str::to_owned).collect();
            if keys.len() == count {
                let master = MasterKey::from_base64(master.trim()).expect("the saved master key");
                return Self { path, master, keys };
            }
        }
        let _ = std::fs::remove_file(&path);
        let started = Instant::now();
        let store = SqliteStore::open(path.to_str().expect("benchmark set-up")).expect("benchmark set-up");
        store.migrate().await.expect("benchmark set-up");
        let master = MasterKey::generate(&mut rand::rngs::OsRng);
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let now = SystemClock.now();
        let org = OrgRecord { id: OrgId::generate(&mut rng), name: "scale".into(), created_at: now };
        store.insert_org(&org).await.expect("benchmark set-up");
        let format = KeyFormat::default();
        let mut keys = Vec::with_capacity(count);
        for _ in 0..count {
            let secret = format.generate(Environment::Live, &mut rng);
            let id = KeyId::generate(&mut rng);
            let record = KeyRecord {
                prefix: secret.prefix_field().to_owned(),
                hash: master.pepper().hash(secret.expose()),
                sealed_signing_secret: None,
                settings: KeySettings {
                    name: "scale".into(),
                    scopes: vec!["messages:send".into(), "templates:read".into()],
                    hmac_required: false,
                    rate_limit: Some(1000),
                    expires_at: None,
                    ip_allowlist: vec!["10.0.0.0/8".parse().expect("benchmark set-up")],
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
                target_name: "scale".into(),
                changes: serde_json::Value::Null,
                trace_id: "0".repeat(32),
            };
            store.org(&org.id).insert_key(&record, &event).await.expect("benchmark set-up");
            keys.push(secret.expose().to_owned());
        }
        std::fs::write(&keys_path, keys.join("\n")).expect("benchmark set-up");
        std::fs::write(&master_path, master.to_base64()).expect("benchmark set-up");
        println!("made {count} keys through the store in {:?}", started.elapsed());
        Self { path, master, keys }
    }

    fn verifier(&self, store: Arc<dyn Store>) -> Arc<Verifier> {
        Arc::new(Verifier::new(
            VerifierConfig {
                format: KeyFormat::default(),
                default_rate_limit: 80,
                signature_tolerance_seconds: 300,
                negative_ttl: Duration::from_secs(10),
                max_negative_entries: 100_000,
                max_staleness: Duration::from_secs(2),
                max_cached_keys: 1_000_000,
                cache_max_age: Duration::from_secs(600),
                store_read_timeout: Duration::from_millis(500),
            },
            self.master.pepper(),
            self.master.secret_box(),
            store,
            Arc::new(SystemClock),
            SharedState::local(0, 300),
        ))
    }

    /// Opening the store and starting the verifier's background work, as `serve` does.
    async fn start_up(&self) -> Duration {
        let started = Instant::now();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(self.path.to_str().expect("benchmark set-up")).expect("benchmark set-up"));
        store.migrate().await.expect("benchmark set-up");
        let verifier = self.verifier(store);
        let background = verifier.start_background().await.expect("benchmark set-up");
        let elapsed = started.elapsed();
        background.shutdown().await;
        elapsed
    }

    async fn measure(&self) {
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(self.path.to_str().expect("benchmark set-up")).expect("benchmark set-up"));
        let verifier = self.verifier(store);
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let picked = rand::seq::index::sample(&mut rng, self.keys.len(), SAMPLE.min(self.keys.len()));
        let sample: Vec<&str> = picked.iter().map(|i| self.keys[i].as_str()).collect();
        let scopes = [Cow::Borrowed("messages:send")];
        let request = VerifyRequest {
            scopes: &scopes,
            client_ip: Some("10.1.2.3".parse().expect("benchmark set-up")),
            ..VerifyRequest::default()
        };
        let rss_before = rss_bytes();
        let cold = timings(&verifier, &sample, &request).await;
        let cached = verifier.cached_keys();
        let rss_after = rss_bytes();
        let warm = timings(&verifier, &sample, &request).await;
        let per_key = rss_after.saturating_sub(rss_before) / cached.max(1);
        println!(
            "{} keys: cold p50 {:?} p99 {:?}; warm p50 {:?} p99 {:?}; {cached} cached keys cost {per_key} bytes each (RSS)",
            self.keys.len(),
            cold.0,
            cold.1,
            warm.0,
            warm.1
        );
    }
}

/// p50 and p99 of verifying each key once, in order.
async fn timings(verifier: &Verifier, keys: &[&str], request: &VerifyRequest<'_>) -> (Duration, Duration) {
    let mut took = Vec::with_capacity(keys.len());
    for key in keys {
        let started = Instant::now();
        let valid = verifier.verify(key, request, |outcome| matches!(outcome, Outcome::Valid { .. })).await;
        took.push(started.elapsed());
        assert!(valid, "every sampled key verifies");
    }
    took.sort_unstable();
    (took[took.len() / 2], took[took.len() * 99 / 100])
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    pages * 4096
}

//! Verification with many keys in SQLite, measured in process and printed:
//!   - the set-up: keys made through the store's bulk import (`OrgStore::import_keys`, each key
//!     with its `key.created` event and feed entry, a transaction per `IMPORT_BATCH` keys);
//!   - start-up (opening the store and starting the verifier) with few and with many keys;
//!   - a cold verification (the key is not cached: one indexed read, of a file in the OS's page
//!     cache) p50/p99, one at a time and with `IN_FLIGHT` verifications at once, each on a task
//!     of its own as a server's requests are;
//!   - a warm one (cached) p50/p99, once the cache holds every key, and the same with few keys;
//!   - the heap one cached key holds (live bytes and allocations, counted by a counting global
//!     allocator, `stats_alloc`) over caching `MEMORY_KEYS` keys, for a typical key (a few
//!     scopes, no allowlists) and a heavy one (IP and phone allowlists, channels, meta, a signing
//!     secret). Bytes as asked of the allocator: malloc adds its own few bytes to each allocation.
//!
//!   `cargo bench -p keyward-runtime --bench scale` (1,000,000 keys)
//!   `KEYWARD_BENCH_KEYS=100000 cargo bench -p keyward-runtime --bench scale`
//!
//! The store files are kept in `KEYWARD_BENCH_DIR` (default: the system temp dir) and reused
//! when they already hold the keys.

use std::alloc::System;
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward_core::crypto::{MasterKey, SigningSecret};
use keyward_core::ids::{EventId, KeyId, OrgId};
use keyward_core::key::{Environment, KeyFormat};
use keyward_core::policy::{KeyPolicy, VerifyRequest};
use keyward_core::record::{Actor, Channels, KeyRecord, KeySettings};
use keyward_runtime::{Clock, Outcome, Prerendered, SharedState, SystemClock, Verifier, VerifierConfig};
use keyward_store::{NewAuditEvent, OrgRecord, Store};
use keyward_store_sqlite::SqliteStore;
use rand::SeedableRng;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

/// Counts what the Rust heap holds (SQLite's own allocations are not Rust's and are not counted,
/// which is what the per-key figure wants).
#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The few keys the many are compared with.
const FEW: usize = 10_000;
/// Keys verified cold, one at a time and then with others in flight (each at most).
const SAMPLE: usize = 10_000;
/// Verifications at once in the concurrent cold run.
const IN_FLIGHT: usize = 8;
/// Keys per import transaction.
const IMPORT_BATCH: usize = 10_000;
/// Keys cached for each memory figure.
const MEMORY_KEYS: usize = 10_000;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and must stay quick.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let total: usize = std::env::var("KEYWARD_BENCH_KEYS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let dir = std::env::var("KEYWARD_BENCH_DIR").map_or_else(|_| std::env::temp_dir(), PathBuf::from);
    std::fs::create_dir_all(&dir).expect("the benchmark directory");
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("benchmark set-up");
    runtime.block_on(async {
        let few = Population::open(&dir, FEW, Shape::Typical).await;
        let many = Population::open(&dir, total, Shape::Typical).await;
        let heavy = Population::open(&dir, MEMORY_KEYS, Shape::Heavy).await;
        // Alternately, three times each: the first start of a process also pays for its first file opens.
        let mut starts = [Vec::new(), Vec::new()];
        for _ in 0..3 {
            for (population, took) in [&few, &many].into_iter().zip(&mut starts) {
                took.push(population.start_up().await);
            }
        }
        for (population, took) in [&few, &many].into_iter().zip(&starts) {
            println!("start-up with {} keys: {took:?}", population.keys.len());
        }
        for population in [&few, &heavy] {
            let (bytes, allocations) = population.heap_per_cached_key().await;
            let (shape, keys) = (population.shape, population.keys.len());
            println!("a cached {shape:?} key: {bytes} bytes of heap in {allocations} allocations (over {keys} keys)");
        }
        for population in [&few, &many] {
            population.measure().await;
        }
    });
}

/// What a node renders of each key it caches (the server's `verify::prerender`, which this crate
/// cannot reach): the same members, so the heap per key counts them.
fn answer_members(policy: &KeyPolicy) -> Prerendered {
    use serde_json::json;
    let before = format!(
        r#""key_id":{},"org_id":{},"name":{},"scopes":{},"channels":"#,
        json!(policy.key_id.as_str()),
        json!(policy.org_id.as_str()),
        json!(policy.name),
        json!(policy.scopes),
    );
    let after = format!(r#","environment":{},"meta":{}"#, json!(policy.environment.as_str()), json!(policy.meta));
    Prerendered::new(before.as_bytes(), after.as_bytes())
}

/// What a benchmark key looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A few scopes, no allowlists: most keys.
    Typical,
    /// Everything a key can restrict: IP and phone allowlists, channels, meta, a signing secret.
    Heavy,
}

impl Shape {
    fn settings(self, n: usize) -> KeySettings {
        let typical = KeySettings {
            name: format!("scale key {n}"),
            scopes: vec!["messages:send".into(), "templates:read".into(), "numbers:read".into()],
            hmac_required: false,
            rate_limit: Some(1000),
            expires_at: None,
            ip_allowlist: Vec::new(),
            phone_allowlist: Vec::new(),
            channels: Channels::All,
            environment: Environment::Live,
            external_id: None,
            meta: None,
        };
        match self {
            Self::Typical => typical,
            Self::Heavy => KeySettings {
                name: format!("billing service, eu-west production {n}"),
                scopes: ["messages:send", "messages:read", "templates:read", "templates:write", "numbers:read"]
                    .map(Into::into)
                    .to_vec(),
                hmac_required: true,
                ip_allowlist: ["10.0.0.0/8", "192.168.12.0/24", "203.0.113.7/32", "2001:db8::/32", "2001:db8:1::/48"]
                    .map(|net| keyward_core::validate::parse_ip_entry(net).expect("benchmark set-up"))
                    .to_vec(),
                phone_allowlist: ["+14155550100", "+14155550101", "+442071838750", "+33142685300"]
                    .map(Into::into)
                    .to_vec(),
                channels: Channels::Only(["marketing", "alerts", "billing"].map(Into::into).to_vec()),
                external_id: Some(format!("crm-{n:08}")),
                meta: serde_json::json!({"team": "billing", "region": "eu-west-1"}).as_object().cloned(),
                ..typical
            },
        }
    }
}

/// A store file holding `keys.len()` keys of one org, and the master key they were made under.
struct Population {
    path: PathBuf,
    shape: Shape,
    master: MasterKey,
    keys: Arc<Vec<String>>,
}

impl Population {
    async fn open(dir: &Path, count: usize, shape: Shape) -> Self {
        let name = format!("keyward-scale-{}-{count}", if shape == Shape::Typical { "typical" } else { "heavy" });
        let path = dir.join(format!("{name}.db"));
        let keys_path = dir.join(format!("{name}.keys"));
        let master_path = dir.join(format!("{name}.master"));
        if let (true, Ok(keys), Ok(master)) =
            (path.exists(), std::fs::read_to_string(&keys_path), std::fs::read_to_string(&master_path))
        {
            let keys: Vec<String> = keys.lines().map(str::to_owned).collect();
            if keys.len() == count {
                let master = MasterKey::from_base64(master.trim()).expect("the saved master key");
                return Self { path, shape, master, keys: Arc::new(keys) };
            }
        }
        for stale in [&path, &keys_path, &master_path] {
            let _ = std::fs::remove_file(stale);
        }
        let started = Instant::now();
        let store = SqliteStore::open(path.to_str().expect("benchmark set-up")).expect("benchmark set-up");
        store.migrate().await.expect("benchmark set-up");
        let master = MasterKey::generate(&mut rand::rngs::OsRng);
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let now = SystemClock.now();
        let org = OrgRecord { id: OrgId::generate(&mut rng), name: "scale".into(), created_at: now };
        store.insert_org(&org).await.expect("benchmark set-up");
        let (format, pepper, secret_box) = (KeyFormat::default(), master.pepper(), master.secret_box());
        let mut keys = Vec::with_capacity(count);
        let mut batch = Vec::with_capacity(IMPORT_BATCH);
        for n in 0..count {
            let secret = format.generate(Environment::Live, &mut rng);
            let id = KeyId::generate(&mut rng);
            let settings = shape.settings(n);
            let sealed_signing_secret = settings
                .hmac_required
                .then(|| secret_box.seal(&SigningSecret::generate(&mut rng), id.as_str(), &mut rng));
            let event = NewAuditEvent {
                id: EventId::generate(&mut rng),
                at: now,
                actor: Actor::operator(),
                actor_ip: None,
                user_agent: None,
                action: "key.created".into(),
                target_type: "api_key".into(),
                target_id: id.to_string(),
                target_name: settings.name.clone(),
                changes: serde_json::Value::Null,
                trace_id: "0".repeat(32),
            };
            let record = KeyRecord {
                prefix: secret.prefix_field().to_owned(),
                hash: pepper.hash(secret.expose()),
                hash_version: 1,
                sealed_signing_secret,
                seal_version: 1,
                settings,
                id,
                org_id: org.id.clone(),
                created_at: now,
                created_by: "operator".into(),
                revoked_at: None,
                revoked_by: None,
                last_used_at: None,
            };
            batch.push((record, event));
            keys.push(secret.expose().to_owned());
            if batch.len() == IMPORT_BATCH || n + 1 == count {
                store.org(&org.id).import_keys(&batch).await.expect("benchmark set-up");
                batch.clear();
            }
        }
        std::fs::write(&keys_path, keys.join("\n")).expect("benchmark set-up");
        std::fs::write(&master_path, master.to_base64()).expect("benchmark set-up");
        println!(
            "made {count} {shape:?} keys through the store's import ({} transactions) in {:?}",
            count.div_ceil(IMPORT_BATCH),
            started.elapsed()
        );
        Self { path, shape, master, keys: Arc::new(keys) }
    }

    fn store(&self) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(self.path.to_str().expect("benchmark set-up")).expect("benchmark set-up"))
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
                miss_read_share_percent: 0,
                prerender: Some(answer_members),
            },
            self.master.clone().into(),
            store,
            Arc::new(SystemClock),
            SharedState::local(0, 300),
        ))
    }

    /// Opening the store and starting the verifier's background work, as `serve` does.
    async fn start_up(&self) -> Duration {
        let started = Instant::now();
        let store = self.store();
        store.migrate().await.expect("benchmark set-up");
        let verifier = self.verifier(store);
        let background = verifier.start_background().await.expect("benchmark set-up");
        let elapsed = started.elapsed();
        background.shutdown().await;
        elapsed
    }

    async fn measure(&self) {
        // Cold means not in keyward's cache; the file is read once first, so it is in the OS's
        // page cache as a serving node's would be (this machine's kernel reclaims idle pages,
        // and a read from its disk costs milliseconds).
        std::io::copy(&mut std::fs::File::open(&self.path).expect("the store file"), &mut std::io::sink())
            .expect("the store file");
        let verifier = self.verifier(self.store());
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let sample = SAMPLE.min(self.keys.len() / 2);
        let picked = rand::seq::index::sample(&mut rng, self.keys.len(), 2 * sample).into_vec();
        let (one_by_one, together) = picked.split_at(sample);
        let cold = timings(&verifier, &self.keys, one_by_one, 1).await;
        let cold_together = timings(&verifier, &self.keys, together, IN_FLIGHT).await;
        // Then every key, so the warm figure is that of a cache holding them all.
        let started = Instant::now();
        let everything: Vec<usize> = (0..self.keys.len()).collect();
        let filled = timings(&verifier, &self.keys, &everything, IN_FLIGHT).await;
        let fill_time = started.elapsed();
        let cached = verifier.cached_keys();
        // Warm, first with keys last touched a million verifications ago (their entries are in
        // memory, not in the CPU's caches), then the same keys again, hot.
        let warm = timings(&verifier, &self.keys, one_by_one, 1).await;
        let hot = timings(&verifier, &self.keys, one_by_one, 1).await;
        let n = self.keys.len();
        println!(
            "{n} keys: cold p50 {:?} p99 {:?} (one at a time), p50 {:?} p99 {:?} ({IN_FLIGHT} in flight)",
            cold.p50, cold.p99, cold_together.p50, cold_together.p99
        );
        println!("{n} keys: cache filled with {cached} keys in {fill_time:?} (p99 {:?})", filled.p99);
        println!(
            "{n} keys: warm p50 {:?} p99 {:?}; the same {sample} keys again (hot) p50 {:?} p99 {:?}",
            warm.p50, warm.p99, hot.p50, hot.p99
        );
    }

    /// What the heap holds per cached key, live bytes and allocations: its growth over caching
    /// every key, once the first hundred paid for what is made once (statements, the org's facts).
    async fn heap_per_cached_key(&self) -> (usize, usize) {
        let verifier = self.verifier(self.store());
        let (first, rest) = self.keys.split_at(100.min(self.keys.len()));
        for key in first {
            verifier.find(key).await.expect("benchmark set-up").expect("a stored key");
        }
        let before_keys = verifier.cached_keys();
        let region = Region::new(ALLOCATOR);
        for key in rest {
            verifier.find(key).await.expect("benchmark set-up").expect("a stored key");
        }
        let cached = usize::try_from(verifier.cached_keys() - before_keys).expect("a count").max(1);
        let change = region.change();
        let bytes = change.bytes_allocated.saturating_sub(change.bytes_deallocated);
        let allocations = change.allocations.saturating_sub(change.deallocations);
        (bytes / cached, allocations / cached)
    }
}

/// Latencies of one verification each, p50 and p99.
struct Timings {
    p50: Duration,
    p99: Duration,
}

/// Verifies `keys[i]` for each `i` of `picked`, each on a task of its own (as a server runs a
/// request), at most `in_flight` at once.
async fn timings(verifier: &Arc<Verifier>, keys: &Arc<Vec<String>>, picked: &[usize], in_flight: usize) -> Timings {
    let permits = Arc::new(tokio::sync::Semaphore::new(in_flight));
    let mut tasks = tokio::task::JoinSet::new();
    let mut took = Vec::with_capacity(picked.len());
    for &index in picked {
        let permit = Arc::clone(&permits).acquire_owned().await.expect("benchmark set-up");
        let (verifier, keys) = (Arc::clone(verifier), Arc::clone(keys));
        tasks.spawn(async move {
            let scopes = [Cow::Borrowed("messages:send")];
            let request = VerifyRequest { scopes: &scopes, ..VerifyRequest::default() };
            let started = Instant::now();
            let valid =
                verifier.verify(&keys[index], &request, |outcome| matches!(outcome, Outcome::Valid { .. })).await;
            let elapsed = started.elapsed();
            drop(permit);
            assert!(valid, "every key verifies");
            elapsed
        });
        // Collect as they end, so a million keys do not wait in the set.
        while let Some(done) = tasks.try_join_next() {
            took.push(done.expect("benchmark task"));
        }
    }
    while let Some(done) = tasks.join_next().await {
        took.push(done.expect("benchmark task"));
    }
    took.sort_unstable();
    Timings { p50: took[took.len() / 2], p99: took[took.len() * 99 / 100] }
}

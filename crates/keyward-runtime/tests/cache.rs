//! The verifier's cache against a real SQLite store, counting the store reads it causes: a cache
//! hit must not read, an unknown key is read once, and a change is read again.

use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use keyward_core::crypto::MasterKey;
use keyward_core::ids::{EventId, KeyId, OrgId};
use keyward_core::key::{Environment, KeyFormat, KeyHash};
use keyward_core::policy::VerifyRequest;
use keyward_core::record::{Actor, Channels, KeyRecord, KeySettings};
use keyward_runtime::{CacheAnswer, ManualClock, Outcome, SharedState, Verifier, VerifierConfig};
use keyward_store::{keyring, Change, KeyringStore, NewAuditEvent, OrgRecord, OrgStore, Store, StoreResult};
use keyward_store_sqlite::SqliteStore;
use time::macros::datetime;
use time::OffsetDateTime;

/// The real store, with a count of key look-ups by hash (the verification read).
#[derive(Debug)]
struct CountingStore {
    inner: SqliteStore,
    key_reads: AtomicUsize,
    /// How long each key read takes on top of the real one (a slow or stuck database).
    read_delay: Duration,
}

#[async_trait]
impl Store for CountingStore {
    async fn migrate(&self) -> StoreResult<()> {
        self.inner.migrate().await
    }
    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }
    async fn setting(&self, name: &str) -> StoreResult<Option<String>> {
        self.inner.setting(name).await
    }
    async fn put_setting_if_absent(&self, name: &str, value: &str) -> StoreResult<bool> {
        self.inner.put_setting_if_absent(name, value).await
    }
    async fn insert_org(&self, org: &OrgRecord) -> StoreResult<()> {
        self.inner.insert_org(org).await
    }
    async fn find_org(&self, id: &OrgId) -> StoreResult<Option<OrgRecord>> {
        self.inner.find_org(id).await
    }
    async fn list_orgs(&self) -> StoreResult<Vec<OrgRecord>> {
        self.inner.list_orgs().await
    }
    fn org<'s>(&'s self, id: &OrgId) -> Box<dyn OrgStore + 's> {
        self.inner.org(id)
    }
    async fn find_key_by_hash(&self, hash: &KeyHash) -> StoreResult<Option<KeyRecord>> {
        self.key_reads.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.read_delay).await;
        self.inner.find_key_by_hash(hash).await
    }
    async fn record_last_used(&self, uses: &[(KeyId, OffsetDateTime)]) -> StoreResult<()> {
        self.inner.record_last_used(uses).await
    }
    async fn find_member_by_email(&self, email: &str) -> StoreResult<Option<keyward_store::MemberRecord>> {
        self.inner.find_member_by_email(email).await
    }
    async fn insert_session(&self, session: &keyward_store::SessionRecord, event: &NewAuditEvent) -> StoreResult<()> {
        self.inner.insert_session(session, event).await
    }
    async fn find_session(
        &self,
        token_hash: &KeyHash,
    ) -> StoreResult<Option<(keyward_store::SessionRecord, keyward_store::MemberRecord)>> {
        self.inner.find_session(token_hash).await
    }
    async fn delete_session(&self, token_hash: &KeyHash) -> StoreResult<()> {
        self.inner.delete_session(token_hash).await
    }
    async fn delete_expired_sessions(&self, now: OffsetDateTime) -> StoreResult<u64> {
        self.inner.delete_expired_sessions(now).await
    }
    async fn latest_change(&self) -> StoreResult<i64> {
        self.inner.latest_change().await
    }
    async fn changes_since(&self, seq: i64) -> StoreResult<(Vec<Change>, i64)> {
        self.inner.changes_since(seq).await
    }
}

#[async_trait]
impl KeyringStore for CountingStore {
    async fn master_keys(&self) -> StoreResult<Vec<keyring::MasterKeyRecord>> {
        self.inner.master_keys().await
    }
    async fn add_master_key(&self, key: &keyring::MasterKeyRecord, event: Option<&NewAuditEvent>) -> StoreResult<()> {
        self.inner.add_master_key(key, event).await
    }
    async fn retire_master_key(&self, version: u32, at: OffsetDateTime, event: &NewAuditEvent) -> StoreResult<bool> {
        self.inner.retire_master_key(version, at, event).await
    }
    async fn master_key_usage(&self) -> StoreResult<Vec<keyring::VersionUsage>> {
        self.inner.master_key_usage().await
    }
    async fn secrets_sealed_before(
        &self,
        version: u32,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<keyring::SealedSecret>> {
        self.inner.secrets_sealed_before(version, after, limit).await
    }
    async fn rewrap_secrets(&self, rewraps: &[keyring::Rewrap]) -> StoreResult<usize> {
        self.inner.rewrap_secrets(rewraps).await
    }
    async fn rehash_keys(&self, rehashes: &[keyring::Rehash], at: OffsetDateTime) -> StoreResult<usize> {
        self.inner.rehash_keys(rehashes, at).await
    }
    async fn replace_setting(&self, name: &str, old: &str, new: &str) -> StoreResult<bool> {
        self.inner.replace_setting(name, old, new).await
    }
    async fn operator_audit(&self) -> StoreResult<Vec<keyring::OperatorAuditRecord>> {
        self.inner.operator_audit().await
    }
}

const NOW: OffsetDateTime = datetime!(2030-01-01 00:00:00 UTC);

struct Fixture {
    store: Arc<CountingStore>,
    verifier: Arc<Verifier>,
    org: OrgId,
    key: String,
    key_id: KeyId,
    master: MasterKey,
    /// The verifier's clock: expiry and cache ages follow it.
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

/// What a test changes from the fixture's defaults.
struct Options {
    read_delay: Duration,
    max_cached_keys: u64,
    cache_max_age: Duration,
    store_read_timeout: Duration,
    rate_limit: u32,
    miss_read_share_percent: u8,
}

const DEFAULTS: Options = Options {
    read_delay: Duration::ZERO,
    max_cached_keys: 100_000,
    cache_max_age: Duration::from_secs(600),
    store_read_timeout: Duration::from_millis(500),
    rate_limit: 1000,
    miss_read_share_percent: 0,
};

/// 1 ms key reads, 1 % of the time for them and a 200 ms bound: the share runs out in a few reads.
const SCARCE_MISS_SHARE: Options = Options {
    read_delay: Duration::from_millis(1),
    store_read_timeout: Duration::from_millis(200),
    miss_read_share_percent: 1,
    ..DEFAULTS
};

fn event(target: &KeyId, action: &str) -> NewAuditEvent {
    NewAuditEvent {
        id: EventId::generate(&mut rand::thread_rng()),
        at: NOW,
        actor: Actor::operator(),
        actor_ip: None,
        user_agent: None,
        action: action.to_owned(),
        target_type: "api_key".to_owned(),
        target_id: target.to_string(),
        target_name: "k".to_owned(),
        changes: serde_json::Value::Null,
        trace_id: "0".repeat(32),
    }
}

async fn fixture() -> Fixture {
    fixture_with(DEFAULTS).await
}

async fn fixture_with(options: Options) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let inner = SqliteStore::open(dir.path().join("k.db").to_str().unwrap()).unwrap();
    inner.migrate().await.unwrap();
    let store = Arc::new(CountingStore { inner, key_reads: AtomicUsize::new(0), read_delay: options.read_delay });
    let master = MasterKey::generate(&mut rand::rngs::OsRng);
    let org = OrgRecord { id: OrgId::generate(&mut rand::thread_rng()), name: "o".into(), created_at: NOW };
    store.insert_org(&org).await.unwrap();
    let format = KeyFormat::default();
    let secret = format.generate(Environment::Live, &mut rand::rngs::OsRng);
    let key_id = KeyId::generate(&mut rand::thread_rng());
    let record = key_record(&master, &org.id, &key_id, &secret, options.rate_limit);
    store.org(&org.id).insert_key(&record, &event(&key_id, "key.created")).await.unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let verifier = Verifier::new(
        VerifierConfig {
            format,
            default_rate_limit: 80,
            signature_tolerance_seconds: 300,
            negative_ttl: Duration::from_secs(10),
            max_negative_entries: 1000,
            max_staleness: Duration::from_secs(2),
            max_cached_keys: options.max_cached_keys,
            cache_max_age: options.cache_max_age,
            store_read_timeout: options.store_read_timeout,
            miss_read_share_percent: options.miss_read_share_percent,
            prerender: None,
        },
        master.clone().into(),
        store.clone(),
        clock.clone(),
        SharedState::local(NOW.unix_timestamp(), 300),
    );
    Fixture {
        store,
        verifier: Arc::new(verifier),
        org: org.id,
        key: secret.expose().to_owned(),
        key_id,
        master,
        clock,
        _dir: dir,
    }
}

fn key_record(
    master: &MasterKey,
    org: &OrgId,
    key_id: &KeyId,
    secret: &keyward_core::key::KeySecret,
    rate_limit: u32,
) -> KeyRecord {
    KeyRecord {
        id: key_id.clone(),
        org_id: org.clone(),
        prefix: secret.prefix_field().to_owned(),
        hash: master.pepper().hash(secret.expose()),
        hash_version: 1,
        sealed_signing_secret: None,
        seal_version: 1,
        settings: KeySettings {
            name: "k".into(),
            scopes: vec!["messages:send".into()],
            hmac_required: false,
            rate_limit: Some(rate_limit),
            expires_at: None,
            ip_allowlist: Vec::new(),
            phone_allowlist: Vec::new(),
            channels: Channels::All,
            environment: Environment::Live,
            external_id: None,
            meta: None,
        },
        created_at: NOW,
        created_by: "operator".into(),
        revoked_at: None,
        revoked_by: None,
        last_used_at: None,
    }
}

/// Adds a key to the fixture's org; returns the key.
async fn add_key(f: &Fixture) -> String {
    let secret = KeyFormat::default().generate(Environment::Live, &mut rand::rngs::OsRng);
    let key_id = KeyId::generate(&mut rand::thread_rng());
    let record = key_record(&f.master, &f.org, &key_id, &secret, 1000);
    f.store.org(&f.org).insert_key(&record, &event(&key_id, "key.created")).await.unwrap();
    secret.expose().to_owned()
}

async fn code(verifier: &Verifier, key: &str) -> &'static str {
    let scopes = [Cow::Borrowed("messages:send")];
    let request = VerifyRequest { scopes: &scopes, ..VerifyRequest::default() };
    verifier
        .verify(key, &request, |outcome| match outcome {
            Outcome::Valid { .. } => "VALID",
            Outcome::Invalid(failure) => failure.denial.code.as_str(),
            Outcome::Unavailable => "UNAVAILABLE",
        })
        .await
}

#[tokio::test]
async fn a_cached_key_is_read_from_the_store_once() {
    let f = fixture().await;
    for _ in 0..100 {
        assert_eq!(code(&f.verifier, &f.key).await, "VALID");
    }
    assert_eq!(f.store.key_reads.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_unknown_key_is_read_once_then_remembered_as_unknown() {
    let f = fixture().await;
    let unknown = KeyFormat::default().generate(Environment::Live, &mut rand::rngs::OsRng);
    for _ in 0..100 {
        assert_eq!(code(&f.verifier, unknown.expose()).await, "INVALID_API_KEY");
    }
    assert_eq!(f.store.key_reads.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_cache_alone_answers_only_what_it_holds_and_never_reads_the_store() {
    let f = fixture().await;
    let unknown = KeyFormat::default().generate(Environment::Live, &mut rand::rngs::OsRng);
    assert!(matches!(f.verifier.find_cached(&f.key, f.verifier.now()), CacheAnswer::Uncertain));
    assert!(matches!(f.verifier.find_cached(unknown.expose(), f.verifier.now()), CacheAnswer::Uncertain));
    assert!(matches!(f.verifier.find_cached("kw_live_notakey", f.verifier.now()), CacheAnswer::Unknown));
    assert_eq!(f.store.key_reads.load(Ordering::SeqCst), 0, "a peek reads nothing");

    assert_eq!(code(&f.verifier, &f.key).await, "VALID");
    assert_eq!(code(&f.verifier, unknown.expose()).await, "INVALID_API_KEY");
    let CacheAnswer::Found(cached) = f.verifier.find_cached(&f.key, f.verifier.now()) else {
        panic!("the key is cached")
    };
    assert_eq!(cached.policy.key_id, f.key_id);
    assert!(matches!(f.verifier.find_cached(unknown.expose(), f.verifier.now()), CacheAnswer::Unknown));
    assert_eq!(f.store.key_reads.load(Ordering::SeqCst), 2, "one read per key, by the verifications");
}

#[tokio::test]
async fn a_malformed_key_never_reaches_the_store() {
    let f = fixture().await;
    let mut typo = f.key.clone();
    let last = typo.pop().unwrap();
    typo.push(if last == 'a' { 'b' } else { 'a' });
    for key in [typo.as_str(), "", " kw_live_x", "sk_live_0123456789ABCDEFGHIJabcdefghijKL1WMpTT"] {
        assert_eq!(code(&f.verifier, key).await, "INVALID_API_KEY");
    }
    assert_eq!(f.store.key_reads.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn another_process_revoking_reaches_the_cache_through_the_change_feed() {
    let f = fixture().await;
    let background = f.verifier.start_background().await.unwrap();
    assert_eq!(code(&f.verifier, &f.key).await, "VALID");
    // Revoked directly in the store, as another node or the CLI would: this verifier is not told.
    let actor = Actor::operator();
    f.store
        .org(&f.org)
        .revoke_key(&keyward_store::RevokeKey { id: &f.key_id, at: NOW, by: &actor }, &event(&f.key_id, "key.revoked"))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    while code(&f.verifier, &f.key).await == "VALID" {
        assert!(started.elapsed() < Duration::from_millis(500), "still valid after {:?}", started.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(code(&f.verifier, &f.key).await, "API_KEY_INACTIVE");
    assert!(started.elapsed() < Duration::from_millis(250), "took {:?}", started.elapsed());
    background.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_for_one_key_make_one_store_read() {
    let f = fixture_with(Options { read_delay: Duration::from_millis(50), ..DEFAULTS }).await;
    let verifications = (0..64).map(|_| code(&f.verifier, &f.key));
    let codes = futures_util::future::join_all(verifications).await;
    assert!(codes.iter().all(|code| *code == "VALID"), "{codes:?}");
    assert_eq!(f.store.key_reads.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_cache_holds_at_most_its_capacity() {
    let f = fixture_with(Options { max_cached_keys: 10, ..DEFAULTS }).await;
    let mut keys = Vec::new();
    for _ in 0..60 {
        keys.push(add_key(&f).await);
    }
    for key in &keys {
        assert_eq!(code(&f.verifier, key).await, "VALID");
    }
    let held = f.verifier.cached_keys();
    assert!(held <= 10, "{held} keys cached with a capacity of 10");
    // Evicted keys still verify, from the store.
    assert_eq!(code(&f.verifier, &keys[0]).await, "VALID");
}

#[tokio::test]
async fn a_cached_key_is_read_again_past_its_maximum_age() {
    let f = fixture_with(Options { cache_max_age: Duration::from_secs(300), ..DEFAULTS }).await;
    assert_eq!(code(&f.verifier, &f.key).await, "VALID");
    f.clock.advance(time::Duration::seconds(299));
    assert_eq!(code(&f.verifier, &f.key).await, "VALID");
    assert_eq!(f.store.key_reads.load(Ordering::SeqCst), 1);
    f.clock.advance(time::Duration::seconds(2));
    assert_eq!(code(&f.verifier, &f.key).await, "VALID");
    assert_eq!(f.store.key_reads.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_stuck_store_answers_unavailable_within_the_verify_bound() {
    let f = fixture_with(Options {
        read_delay: Duration::from_secs(5),
        store_read_timeout: Duration::from_millis(100),
        ..DEFAULTS
    })
    .await;
    let started = std::time::Instant::now();
    assert_eq!(code(&f.verifier, &f.key).await, "UNAVAILABLE");
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(1), "waited {waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unknown_keys_gets_its_share_of_store_reads_and_cached_keys_none_of_the_wait() {
    let f = fixture_with(SCARCE_MISS_SHARE).await;
    assert_eq!(code(&f.verifier, &f.key).await, "VALID");
    let reads_before = f.store.key_reads.load(Ordering::SeqCst);
    let flood: Vec<_> = (0..200)
        .map(|_| {
            let verifier = Arc::clone(&f.verifier);
            let unknown = KeyFormat::default().generate(Environment::Live, &mut rand::rngs::OsRng);
            tokio::spawn(async move { code(&verifier, unknown.expose()).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let started = std::time::Instant::now();
    assert_eq!(code(&f.verifier, &f.key).await, "VALID", "a cached key does not wait behind the flood");
    assert!(started.elapsed() < Duration::from_millis(50), "took {:?}", started.elapsed());
    let mut answers = std::collections::HashMap::new();
    for task in flood {
        *answers.entry(task.await.unwrap()).or_insert(0) += 1;
    }
    let reads = f.store.key_reads.load(Ordering::SeqCst) - reads_before;
    // 1 ms reads at 1 % of the time: the burst's few, then one per 100 ms at most. (The first
    // key's load found its key, so it gave its charge back.)
    assert!(reads < 100, "{reads} store reads for 200 unknown keys");
    let (unknown, unavailable) = (answers.get("INVALID_API_KEY"), answers.get("UNAVAILABLE"));
    assert!(unknown.copied().unwrap_or(0) <= reads, "only a read says unknown: {answers:?}");
    assert!(unavailable.is_some_and(|n| *n >= 100), "most gave up at the bound: {answers:?}");
    assert_eq!(answers.values().sum::<usize>(), 200, "nothing else: {answers:?}");
}

#[tokio::test]
async fn loading_real_keys_does_not_spend_the_share_of_unknown_ones() {
    // 1 % of the time and 1 ms reads: were found keys charged, the third would wait 200 ms.
    let f = fixture_with(SCARCE_MISS_SHARE).await;
    for _ in 0..30 {
        let key = add_key(&f).await;
        let started = std::time::Instant::now();
        assert_eq!(code(&f.verifier, &key).await, "VALID");
        assert!(started.elapsed() < Duration::from_millis(100), "a cold real key waited {:?}", started.elapsed());
    }
    // Reads have been finding their keys: a crowd of cold real keys at once is not held back on
    // charges that will all be given back.
    let mut crowd = Vec::new();
    for _ in 0..60 {
        let (verifier, key) = (Arc::clone(&f.verifier), add_key(&f).await);
        crowd.push(tokio::spawn(async move { code(&verifier, &key).await }));
    }
    let mut answers = Vec::new();
    for answer in crowd {
        answers.push(answer.await.unwrap());
    }
    assert!(answers.iter().all(|a| *a == "VALID"), "{answers:?}");
    // Unknown keys still are: a few within the burst, then they wait and give up at the bound.
    let mut answers = std::collections::HashMap::new();
    for _ in 0..200 {
        let unknown = KeyFormat::default().generate(Environment::Live, &mut rand::rngs::OsRng);
        *answers.entry(code(&f.verifier, unknown.expose()).await).or_insert(0) += 1;
        if answers.contains_key("UNAVAILABLE") {
            break;
        }
    }
    assert!(answers.contains_key("UNAVAILABLE"), "the share ran out: {answers:?}");
}

#[tokio::test]
async fn a_throttled_key_keeps_its_budget_when_its_cache_entry_is_dropped() {
    let f = fixture_with(Options { rate_limit: 3, ..DEFAULTS }).await;
    for _ in 0..3 {
        assert_eq!(code(&f.verifier, &f.key).await, "VALID");
    }
    assert_eq!(code(&f.verifier, &f.key).await, "RATE_LIMITED");
    // An edit elsewhere invalidates the entry; the reload must not hand out a fresh bucket.
    f.verifier.invalidate(&f.master.pepper().hash(&f.key));
    assert_eq!(code(&f.verifier, &f.key).await, "RATE_LIMITED");
    assert_eq!(f.store.key_reads.load(Ordering::SeqCst), 2);
}

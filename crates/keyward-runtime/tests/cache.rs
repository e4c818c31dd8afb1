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
use keyward_runtime::{ManualClock, Outcome, SharedState, Verifier, VerifierConfig};
use keyward_store::{Change, NewAuditEvent, OrgRecord, OrgStore, Store, StoreResult};
use keyward_store_sqlite::SqliteStore;
use time::macros::datetime;
use time::OffsetDateTime;

/// The real store, with a count of key look-ups by hash (the verification read).
#[derive(Debug)]
struct CountingStore {
    inner: SqliteStore,
    key_reads: AtomicUsize,
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

const NOW: OffsetDateTime = datetime!(2030-01-01 00:00:00 UTC);

struct Fixture {
    store: Arc<CountingStore>,
    verifier: Arc<Verifier>,
    org: OrgId,
    key: String,
    key_id: KeyId,
    _dir: tempfile::TempDir,
}

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
    let dir = tempfile::tempdir().unwrap();
    let inner = SqliteStore::open(dir.path().join("k.db").to_str().unwrap()).unwrap();
    inner.migrate().await.unwrap();
    let store = Arc::new(CountingStore { inner, key_reads: AtomicUsize::new(0) });
    let master = MasterKey::generate(&mut rand::rngs::OsRng);
    let org = OrgRecord { id: OrgId::generate(&mut rand::thread_rng()), name: "o".into(), created_at: NOW };
    store.insert_org(&org).await.unwrap();
    let format = KeyFormat::default();
    let secret = format.generate(Environment::Live, &mut rand::rngs::OsRng);
    let key_id = KeyId::generate(&mut rand::thread_rng());
    let record = KeyRecord {
        id: key_id.clone(),
        org_id: org.id.clone(),
        prefix: secret.prefix_field().to_owned(),
        hash: master.pepper().hash(secret.expose()),
        sealed_signing_secret: None,
        settings: KeySettings {
            name: "k".into(),
            scopes: vec!["messages:send".into()],
            hmac_required: false,
            rate_limit: Some(1000),
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
    };
    store.org(&org.id).insert_key(&record, &event(&key_id, "key.created")).await.unwrap();
    let verifier = Verifier::new(
        VerifierConfig {
            format,
            default_rate_limit: 80,
            signature_tolerance_seconds: 300,
            negative_ttl: Duration::from_secs(10),
            max_negative_entries: 1000,
            max_staleness: Duration::from_secs(2),
        },
        master.pepper(),
        master.secret_box(),
        store.clone(),
        Arc::new(ManualClock::new(NOW)),
        SharedState::local(NOW.unix_timestamp(), 300),
    );
    Fixture { store, verifier: Arc::new(verifier), org: org.id, key: secret.expose().to_owned(), key_id, _dir: dir }
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

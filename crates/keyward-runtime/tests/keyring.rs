//! The verifier across a master-key rotation, against a real SQLite store: keys hashed and
//! signing secrets sealed under an older version still verify, are cached under the hash they
//! are stored with (so a revocation still reaches them), and move to the current version after
//! their first verification; a node that has not switched yet finds keys of the new version and
//! moves nothing back.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use keyward_core::crypto::{MasterKey, SigningSecret};
use keyward_core::ids::{EventId, KeyId, OrgId};
use keyward_core::key::{Environment, KeyFormat, KeySecret};
use keyward_core::keyring::Keyring;
use keyward_core::policy::VerifyRequest;
use keyward_core::record::{Actor, Channels, KeyRecord, KeySettings};
use keyward_core::signing::{self, SignedRequest};
use keyward_runtime::{ManualClock, Outcome, SharedState, Verifier, VerifierConfig};
use keyward_store::{NewAuditEvent, OrgRecord, RevokeKey, Store};
use keyward_store_sqlite::SqliteStore;
use time::macros::datetime;
use time::OffsetDateTime;

const NOW: OffsetDateTime = datetime!(2030-01-01 00:00:00 UTC);

fn event(key: &KeyId, action: &str) -> NewAuditEvent {
    NewAuditEvent {
        id: EventId::generate(&mut rand::thread_rng()),
        at: NOW,
        actor: Actor::operator(),
        actor_ip: None,
        user_agent: None,
        action: action.to_owned(),
        target_type: "api_key".to_owned(),
        target_id: key.to_string(),
        target_name: "k".to_owned(),
        changes: serde_json::Value::Null,
        trace_id: "0".repeat(32),
    }
}

struct Fixture {
    store: Arc<SqliteStore>,
    org: OrgId,
    /// Version 1 only, as before the rotation.
    before: Keyring,
    /// Version 2 current, version 1 still held.
    after: Keyring,
    _dir: tempfile::TempDir,
}

/// A key stored as `keyring` (its current version) hashes and seals it.
struct StoredKey {
    id: KeyId,
    key: KeySecret,
    signing: Option<SigningSecret>,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join("k.db").to_str().expect("utf-8")).expect("open");
    store.migrate().await.expect("migrate");
    let org = OrgRecord { id: OrgId::generate(&mut rand::thread_rng()), name: "Acme".into(), created_at: NOW };
    store.insert_org(&org).await.expect("org");
    let before = Keyring::single(MasterKey::generate(&mut rand::rngs::OsRng));
    let after = before.with_new_key(&mut rand::rngs::OsRng);
    Fixture { store: Arc::new(store), org: org.id, before, after, _dir: dir }
}

impl Fixture {
    async fn add_key(&self, keyring: &Keyring, signed: bool) -> StoredKey {
        let key = KeyFormat::default().generate(Environment::Live, &mut rand::rngs::OsRng);
        let id = KeyId::generate(&mut rand::thread_rng());
        let signing = signed.then(|| SigningSecret::generate(&mut rand::rngs::OsRng));
        let sealed = signing.as_ref().map(|secret| keyring.seal(secret, id.as_str(), &mut rand::rngs::OsRng));
        let (hash_version, hash) = keyring.hash(key.expose());
        let record = KeyRecord {
            id: id.clone(),
            org_id: self.org.clone(),
            prefix: key.prefix_field().to_owned(),
            hash,
            hash_version,
            seal_version: sealed.as_ref().map_or(1, |(version, _)| *version),
            sealed_signing_secret: sealed.map(|(_, bytes)| bytes),
            settings: KeySettings {
                name: "k".into(),
                scopes: vec!["messages:send".into()],
                hmac_required: signed,
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
        self.store.org(&self.org).insert_key(&record, &event(&id, "key.created")).await.expect("insert key");
        StoredKey { id, key, signing }
    }

    fn verifier(&self, keyring: Keyring) -> Arc<Verifier> {
        Arc::new(Verifier::new(
            VerifierConfig {
                format: KeyFormat::default(),
                default_rate_limit: 80,
                signature_tolerance_seconds: 300,
                negative_ttl: Duration::from_secs(10),
                max_negative_entries: 1000,
                max_staleness: Duration::from_secs(2),
                max_cached_keys: 1000,
                cache_max_age: Duration::from_secs(600),
                store_read_timeout: Duration::from_secs(5),
                miss_read_share_percent: 0,
                prerender: None,
            },
            keyring,
            self.store.clone(),
            Arc::new(ManualClock::new(NOW)),
            SharedState::local(NOW.unix_timestamp() - 10, 300),
        ))
    }

    async fn stored(&self, id: &KeyId) -> KeyRecord {
        self.store.org(&self.org).find_key(id).await.expect("find_key").expect("stored")
    }
}

/// The verification code, signing the request when the key has a signing secret.
async fn code(verifier: &Verifier, key: &StoredKey) -> &'static str {
    code_of(verifier, key.key.expose(), key.signing.as_ref()).await
}

async fn code_of(verifier: &Verifier, key: &str, signing: Option<&SigningSecret>) -> &'static str {
    let scopes = [Cow::Borrowed("messages:send")];
    let timestamp = NOW.unix_timestamp().to_string();
    // A fresh path each time: the same signature twice would be a replay.
    let path = format!("/v1/messages?n={}", rand::random::<u64>());
    let body = signing::body_sha256_hex(b"");
    let signature = signing.map(|secret| signing::sign(secret, &timestamp, "POST", &path, &body));
    let request = VerifyRequest {
        scopes: &scopes,
        signature: signature.as_deref().map(|signature| SignedRequest {
            timestamp: &timestamp,
            method: "POST",
            path_and_query: &path,
            body_sha256: &body,
            signature,
        }),
        ..VerifyRequest::default()
    };
    verifier
        .verify(key, &request, |outcome| match outcome {
            Outcome::Valid { .. } => "VALID",
            Outcome::Invalid(failure) => failure.denial.code.as_str(),
            Outcome::Unavailable => "UNAVAILABLE",
        })
        .await
}

#[tokio::test]
async fn keys_made_before_a_rotation_verify_signed_and_move_to_the_current_version_once_used() {
    let f = fixture().await;
    let signed = f.add_key(&f.before, true).await;
    let plain = f.add_key(&f.before, false).await;
    let unused = f.add_key(&f.before, false).await;
    let verifier = f.verifier(f.after.clone());
    assert_eq!(code(&verifier, &signed).await, "VALID", "a signing secret sealed under version 1 still opens");
    assert_eq!(code(&verifier, &plain).await, "VALID", "a key hashed under version 1 is still found");
    assert_eq!(code(&verifier, &plain).await, "VALID", "and cached");

    assert_eq!(verifier.flush_rehashes().await.expect("flush"), 2, "both verified keys move");
    for key in [&signed, &plain] {
        let stored = f.stored(&key.id).await;
        assert_eq!((stored.hash_version, stored.hash), f.after.hash(key.key.expose()), "{}", key.id);
        assert_eq!(code(&verifier, key).await, "VALID", "found under the new hash");
    }
    assert_eq!(verifier.flush_rehashes().await.expect("flush"), 0, "nothing more to move");
    assert_eq!(f.stored(&unused.id).await.hash_version, 1, "a key nobody presented keeps its version");
    assert_eq!(f.stored(&signed.id).await.seal_version, 1, "secrets are the rewrap's, not the verifier's");

    let made_up = KeyFormat::default().generate(Environment::Live, &mut rand::rngs::OsRng);
    for _ in 0..3 {
        assert_eq!(code_of(&verifier, made_up.expose(), None).await, "INVALID_API_KEY");
    }
}

#[tokio::test]
async fn a_revocation_from_another_node_reaches_a_key_cached_under_an_older_version() {
    let f = fixture().await;
    let key = f.add_key(&f.before, true).await;
    let verifier = f.verifier(f.after.clone());
    let background = verifier.start_background().await.expect("background");
    assert_eq!(code(&verifier, &key).await, "VALID");
    // Revoked in the store, as another node would: the feed names the stored (version 1) hash.
    let revoke = RevokeKey { id: &key.id, at: NOW, by: &Actor::operator() };
    f.store.org(&f.org).revoke_key(&revoke, &event(&key.id, "key.revoked")).await.expect("revoke");
    let started = std::time::Instant::now();
    while code(&verifier, &key).await == "VALID" {
        assert!(started.elapsed() < Duration::from_secs(1), "still valid after {:?}", started.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(code(&verifier, &key).await, "API_KEY_INACTIVE");
    background.shutdown().await;
}

#[tokio::test]
async fn a_node_that_has_not_switched_yet_finds_new_keys_and_moves_nothing_back() {
    let f = fixture().await;
    let new = f.add_key(&f.after, true).await;
    let old = f.add_key(&f.before, false).await;
    // The new key is held (distributed first) but version 1 is still current here.
    let lagging = f.verifier(f.after.clone().with_current(1).expect("holds 1"));
    assert_eq!(code(&lagging, &new).await, "VALID", "a key of the newer version");
    assert_eq!(code(&lagging, &old).await, "VALID");
    assert_eq!(lagging.flush_rehashes().await.expect("flush"), 0, "no key moves to an older version");
    assert_eq!(f.stored(&new.id).await.hash_version, 2);

    // Without the new key at all, the new key is unknown; the old one is not affected.
    let unaware = f.verifier(f.before.clone());
    assert_eq!(code(&unaware, &new).await, "INVALID_API_KEY");
    assert_eq!(code(&unaware, &old).await, "VALID");
}

#[tokio::test]
async fn a_running_verifier_takes_the_new_keyring_and_keeps_its_cache() {
    let f = fixture().await;
    let key = f.add_key(&f.before, true).await;
    let verifier = f.verifier(f.before.clone());
    assert_eq!(code(&verifier, &key).await, "VALID");
    assert_eq!(verifier.current_version(), 1);
    verifier.set_keyring(f.after.clone());
    assert_eq!(verifier.current_version(), 2);
    assert_eq!(code(&verifier, &key).await, "VALID", "the cached key is found under its stored hash");
    assert_eq!(verifier.flush_rehashes().await.expect("flush"), 1, "and moves to version 2");
    assert_eq!(f.stored(&key.id).await.hash_version, 2);
    assert_eq!(code(&verifier, &key).await, "VALID");
}

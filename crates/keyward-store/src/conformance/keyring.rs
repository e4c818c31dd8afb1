//! The master-key rotation part of the story: versions known to the database, what depends on
//! each, rewraps and rehashes as compare-and-swaps, retirement only of what nothing needs, and
//! the operator's own audit chain.

use keyward_core::ids::{EventId, OrgId};
use keyward_core::key::KeyHash;
use keyward_core::record::{Actor, KeyRecord};
use serde_json::{json, Value};

use super::{at, key, org_record, Backend};
use crate::keyring::{retire_refusal, verify_operator_chain, MasterKeyRecord, Rehash, Rewrap, VersionUsage};
use crate::{Change, KeyWrite, NewAuditEvent, RevokeKey, Store, StoreError};

fn operator_event(n: u8, action: &str, version: u32) -> NewAuditEvent {
    NewAuditEvent {
        id: EventId::parse(&format!("evt_mk{n}")).expect("a valid id"),
        at: at(i64::from(n)),
        actor: Actor::operator(),
        actor_ip: Some("127.0.0.1".to_owned()),
        user_agent: None,
        action: action.to_owned(),
        target_type: "master_key".to_owned(),
        target_id: version.to_string(),
        target_name: format!("master key version {version}"),
        changes: json!({ "version": version }),
        trace_id: format!("{n:032x}"),
    }
}

fn master_key(version: u32) -> MasterKeyRecord {
    MasterKeyRecord { version, check: format!("check-{version}"), added_at: at(i64::from(version)), retired_at: None }
}

/// Key `n` hashed under `hash_version`, with a secret sealed under `seal_version` (or none).
fn versioned_key(n: u8, org: &OrgId, hash_version: u32, seal_version: Option<u32>) -> KeyRecord {
    let mut key = key(n, org, "operator");
    key.hash_version = hash_version;
    if let Some(version) = seal_version {
        key.settings.hmac_required = true;
        key.sealed_signing_secret = Some(vec![n, 1, u8::try_from(version).expect("small")]);
        key.seal_version = version;
    }
    key
}

async fn usage_of(store: &dyn Store, version: u32) -> VersionUsage {
    let usage = store.master_key_usage().await.expect("master_key_usage");
    let mut versions: Vec<u32> = usage.iter().map(|used| used.version).collect();
    versions.dedup();
    assert_eq!(versions.len(), usage.len(), "one row per version: {usage:?}");
    usage
        .into_iter()
        .find(|used| used.version == version)
        .unwrap_or(VersionUsage { version, ..VersionUsage::default() })
}

async fn changes_after(store: &dyn Store, seq: i64) -> (Vec<Change>, i64) {
    store.changes_since(seq).await.expect("changes_since")
}

pub(super) async fn master_key_rotation_story(backend: &dyn Backend) {
    let database = backend.create_database().await;
    let store = backend.open(&database).await;
    store.migrate().await.expect("migrate");
    let (org, keys) = versions_and_what_depends_on_them(store.as_ref()).await;
    swaps_retirement_and_the_operator_chain(store.as_ref(), &org, &keys).await;
}

/// Versions go only upwards; keys carry theirs through every read; usage counts them; nothing
/// still needed is retired. Returns the org and its four keys.
async fn versions_and_what_depends_on_them(store: &dyn Store) -> (OrgId, [KeyRecord; 4]) {
    assert!(store.master_keys().await.expect("master_keys").is_empty(), "a new database knows no version");
    assert!(store.master_key_usage().await.expect("usage").is_empty());

    // Versions: only upwards, each with its event on the operator chain.
    store.add_master_key(&master_key(1), None).await.expect("add 1: the first version, no event");
    let again = store.add_master_key(&master_key(1), Some(&operator_event(2, "master_key.rotated", 1))).await;
    assert!(
        matches!(again, Err(StoreError::Conflict { constraint: "master_key_version" })),
        "a version not above every known one is a conflict: {again:?}"
    );
    store.add_master_key(&master_key(2), Some(&operator_event(3, "master_key.rotated", 2))).await.expect("add 2");
    assert_eq!(store.master_keys().await.expect("master_keys"), [master_key(1), master_key(2)], "oldest first");

    // Keys carry their versions through every read.
    let org = org_record("org_rot");
    store.insert_org(&org).await.expect("insert org");
    let orgs = store.org(&org.id);
    let event = |n: u8| {
        let mut event = operator_event(100 + n, "key.created", 0);
        "api_key".clone_into(&mut event.target_type);
        event
    };
    let keys = [
        versioned_key(1, &org.id, 1, Some(1)),
        versioned_key(2, &org.id, 1, None),
        versioned_key(3, &org.id, 1, None),
        versioned_key(4, &org.id, 2, Some(2)),
    ];
    for (n, key) in (1..).zip(&keys) {
        orgs.insert_key(key, &event(n)).await.expect("insert key");
    }
    let revoke = RevokeKey { id: &keys[2].id, at: at(10), by: &Actor::operator() };
    orgs.revoke_key(&revoke, &event(9)).await.expect("revoke key 3");
    for key in &keys {
        let stored = orgs.find_key(&key.id).await.expect("find_key").expect("stored");
        assert_eq!((stored.hash_version, stored.seal_version), (key.hash_version, key.seal_version), "{}", key.id);
        let by_hash = store.find_key_by_hash(&key.hash).await.expect("find_key_by_hash").expect("stored");
        assert_eq!((by_hash.hash_version, by_hash.seal_version), (key.hash_version, key.seal_version));
    }
    assert_eq!(
        usage_of(store, 1).await,
        VersionUsage { version: 1, live_keys: 2, revoked_keys: 1, signing_secrets: 1 }
    );
    assert_eq!(
        usage_of(store, 2).await,
        VersionUsage { version: 2, live_keys: 1, revoked_keys: 0, signing_secrets: 1 }
    );

    // Nothing is retired while something needs it, nor the current version.
    let known = store.master_keys().await.expect("master_keys");
    let usage = store.master_key_usage().await.expect("usage");
    assert!(retire_refusal(1, 2, &known, &usage).is_some_and(|why| why.contains("2 key hash(es)")));
    assert!(retire_refusal(2, 2, &known, &usage).is_some_and(|why| why.contains("current")));
    assert!(retire_refusal(7, 2, &known, &usage).is_some());
    assert!(!store.retire_master_key(1, at(20), &operator_event(4, "master_key.retired", 1)).await.expect("retire"));
    assert!(!store.retire_master_key(2, at(20), &operator_event(4, "master_key.retired", 2)).await.expect("retire"));
    assert_eq!(store.operator_audit().await.expect("operator_audit").len(), 1, "a refused retire writes no event");
    (org.id, keys)
}

/// Rewraps and rehashes swap only what they read; a version is retired once nothing needs it;
/// the operator chain holds every event; settings swap only from the value they hold.
async fn swaps_retirement_and_the_operator_chain(store: &dyn Store, org_id: &OrgId, keys: &[KeyRecord; 4]) {
    let orgs = store.org(org_id);
    let event = |n: u8| {
        let mut event = operator_event(100 + n, "key.created", 0);
        "api_key".clone_into(&mut event.target_type);
        event
    };
    // The rewrap reads what is sealed elsewhere in key order, and swaps only what it read.
    let elsewhere = store.secrets_sealed_before(2, 0, 10).await.expect("secrets_sealed_before");
    assert_eq!(elsewhere.len(), 1, "{elsewhere:?}");
    let found = &elsewhere[0];
    assert_eq!((&found.key_id, &found.org_id, found.version), (&keys[0].id, org_id, 1));
    assert_eq!(Some(&found.sealed), keys[0].sealed_signing_secret.as_ref());
    assert!(store.secrets_sealed_before(2, found.seq, 10).await.expect("after").is_empty(), "resumes after seq");
    assert!(store.secrets_sealed_before(1, 0, 10).await.expect("before 1").is_empty(), "never a newer version's");
    assert_eq!(store.secrets_sealed_before(3, 0, 10).await.expect("before 3").len(), 2, "keys 1 and 4");
    assert!(store.secrets_sealed_before(2, 0, 0).await.expect("limit 0").is_empty());
    let latest = store.latest_change().await.expect("latest_change");
    let stale =
        Rewrap { key_id: keys[0].id.clone(), from_version: 1, from: vec![9, 9, 9], to_version: 2, to: vec![1, 2, 2] };
    assert_eq!(store.rewrap_secrets(std::slice::from_ref(&stale)).await.expect("rewrap"), 0, "not what is stored");
    let rewrap = Rewrap { from: found.sealed.clone(), ..stale };
    assert_eq!(store.rewrap_secrets(&[rewrap.clone(), rewrap.clone()]).await.expect("rewrap"), 1, "once");
    let rewrapped = orgs.find_key(&keys[0].id).await.expect("find_key").expect("stored");
    assert_eq!((rewrapped.sealed_signing_secret.as_deref(), rewrapped.seal_version), (Some(&[1u8, 2, 2][..]), 2));
    assert_eq!(store.latest_change().await.expect("latest_change"), latest, "a rewrap needs no feed entry");
    assert_eq!(usage_of(store, 1).await.signing_secrets, 0);
    assert_eq!(usage_of(store, 2).await.signing_secrets, 2);

    // A change decided on the row before the rewrap does not put the old secret back.
    let mut edited = keys[0].clone();
    "renamed".clone_into(&mut edited.settings.name);
    let write = KeyWrite { before: &keys[0], after: &edited, insert: None, events: &[event(20)] };
    assert!(!orgs.write_key(&write).await.expect("write_key"), "the compare-and-swap sees the rewrap");

    // A rehash swaps the hash once, and tells every node to forget the old one.
    let rehash = Rehash { key_id: keys[1].id.clone(), from: keys[1].hash, to_version: 2, to: KeyHash([42; 32]) };
    let missed = Rehash { from: KeyHash([99; 32]), ..rehash.clone() };
    assert_eq!(store.rehash_keys(&[missed], at(30)).await.expect("rehash"), 0);
    assert_eq!(store.latest_change().await.expect("latest_change"), latest, "a missed rehash logs nothing");
    assert_eq!(store.rehash_keys(&[rehash.clone(), rehash], at(30)).await.expect("rehash"), 1);
    let (changes, _) = changes_after(store, latest).await;
    assert_eq!(changes, [Change::Key(keys[1].hash)], "the old hash reaches the feed");
    assert!(store.find_key_by_hash(&keys[1].hash).await.expect("old hash").is_none());
    let moved = store.find_key_by_hash(&KeyHash([42; 32])).await.expect("new hash").expect("found");
    assert_eq!((moved.id.as_str(), moved.hash_version), (keys[1].id.as_str(), 2));

    // Key 1's hash is the last live one under version 1; the revoked key 3 does not hold it back.
    let rehash_1 = Rehash { key_id: keys[0].id.clone(), from: keys[0].hash, to_version: 2, to: KeyHash([43; 32]) };
    assert_eq!(store.rehash_keys(&[rehash_1], at(31)).await.expect("rehash"), 1);
    assert_eq!(
        usage_of(store, 1).await,
        VersionUsage { version: 1, live_keys: 0, revoked_keys: 1, signing_secrets: 0 }
    );
    let known = store.master_keys().await.expect("master_keys");
    let usage = store.master_key_usage().await.expect("usage");
    assert_eq!(retire_refusal(1, 2, &known, &usage), None);
    assert!(store.retire_master_key(1, at(40), &operator_event(5, "master_key.retired", 1)).await.expect("retire"));
    let known = store.master_keys().await.expect("master_keys");
    assert_eq!(known[0].retired_at, Some(at(40)));
    assert!(retire_refusal(1, 2, &known, &usage).is_some_and(|why| why.contains("already")));
    assert!(!store.retire_master_key(1, at(41), &operator_event(6, "master_key.retired", 1)).await.expect("again"));
    assert!(store.add_master_key(&master_key(3), Some(&operator_event(7, "master_key.rotated", 3))).await.is_ok());

    // The operator chain: every event in order, linked, round-tripping exactly.
    let chain = store.operator_audit().await.expect("operator_audit");
    let actions: Vec<&str> = chain.iter().map(|record| record.event.action.as_str()).collect();
    assert_eq!(actions, ["master_key.rotated", "master_key.retired", "master_key.rotated"]);
    assert_eq!(chain[1].event, operator_event(5, "master_key.retired", 1));
    assert_eq!(verify_operator_chain(&chain), Ok(3));
    let mut tampered = chain.clone();
    tampered[1].event.changes = Value::Null;
    assert!(verify_operator_chain(&tampered).is_err(), "an edited event breaks the chain");
    assert!(orgs.audit_chain().await.expect("org chain").iter().all(|record| record.event.target_type == "api_key"));

    // Settings swap only from the value they hold.
    assert!(store.put_setting_if_absent("rotation_test", "one").await.expect("put"));
    assert!(!store.replace_setting("rotation_test", "two", "three").await.expect("replace"));
    assert!(store.replace_setting("rotation_test", "one", "three").await.expect("replace"));
    assert_eq!(store.setting("rotation_test").await.expect("setting").as_deref(), Some("three"));
    assert!(!store.replace_setting("no_such_setting", "one", "two").await.expect("replace missing"));
    assert_eq!(store.setting("no_such_setting").await.expect("setting"), None);
}

/// Two nodes rotating at once: one version wins, the other is told it lost.
pub(super) async fn two_nodes_rotating_at_once_record_one_version(backend: &dyn Backend) {
    let database = backend.create_database().await;
    let (first, second) = (backend.open(&database).await, backend.open(&database).await);
    first.migrate().await.expect("migrate");
    first.add_master_key(&master_key(1), None).await.expect("add 1");
    let (key, event_a, event_b) =
        (master_key(2), operator_event(2, "master_key.rotated", 2), operator_event(3, "master_key.rotated", 2));
    let (a, b) = tokio::join!(first.add_master_key(&key, Some(&event_a)), second.add_master_key(&key, Some(&event_b)));
    let won = [a.is_ok(), b.is_ok()];
    assert_eq!(won.iter().filter(|won| **won).count(), 1, "exactly one rotation to version 2: {a:?} {b:?}");
    for lost in [a, b].into_iter().filter_map(Result::err) {
        assert!(matches!(lost, StoreError::Conflict { constraint: "master_key_version" }), "{lost:?}");
    }
    assert_eq!(second.master_keys().await.expect("master_keys").len(), 2);
    let chain = first.operator_audit().await.expect("operator_audit");
    assert_eq!(verify_operator_chain(&chain), Ok(1), "the loser wrote no event");
}

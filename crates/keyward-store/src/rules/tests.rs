use keyward_core::ids::{KeyId, OrgId};
use keyward_core::key::{Environment, KeyHash};
use keyward_core::record::{Actor, Channels, KeyPatch, KeyRecord, KeySettings};
use serde_json::json;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use super::{patch, revoke, roll, same_state};
use crate::StoreError;

const NOW: OffsetDateTime = datetime!(2026-06-01 12:00:00 UTC);

fn key(expires_at: Option<OffsetDateTime>) -> KeyRecord {
    KeyRecord {
        id: KeyId::parse("key_1").expect("a valid id"),
        org_id: OrgId::parse("org_1").expect("a valid id"),
        prefix: "kw_live_00000001".to_owned(),
        hash: KeyHash([1; 32]),
        hash_version: 1,
        sealed_signing_secret: None,
        seal_version: 1,
        settings: KeySettings {
            name: "Sender".to_owned(),
            scopes: vec!["messages:send".to_owned()],
            hmac_required: false,
            rate_limit: Some(50),
            expires_at,
            ip_allowlist: Vec::new(),
            phone_allowlist: Vec::new(),
            channels: Channels::All,
            environment: Environment::Live,
            external_id: None,
            meta: None,
        },
        created_at: NOW - Duration::days(1),
        created_by: "operator".to_owned(),
        revoked_at: None,
        revoked_by: None,
        last_used_at: None,
    }
}

fn alice() -> Actor {
    Actor { kind: keyward_core::record::ActorKind::Member, id: "usr_alice".to_owned(), name: "alice@x.io".to_owned() }
}

#[test]
fn revoking_records_time_and_actor_and_again_is_a_no_op() {
    let revoked = revoke(&key(None), NOW, &alice()).expect("an active key is revoked");
    assert_eq!((revoked.revoked_at, revoked.revoked_by.as_deref()), (Some(NOW), Some("usr_alice")));
    assert_eq!(revoke(&revoked, NOW + Duration::hours(1), &Actor::operator()), None);
}

#[test]
fn a_patch_lists_only_real_changes_and_an_unchanged_patch_writes_nothing() {
    let change = KeyPatch { name: Some("Renamed".to_owned()), rate_limit: Some(Some(50)), ..KeyPatch::default() };
    let (edited, diff) = patch(&key(None), &change).expect("editable").expect("a real change");
    assert_eq!(edited.settings.name, "Renamed");
    assert_eq!(diff, json!({"name": {"old": "Sender", "new": "Renamed"}}));
    let same = KeyPatch { name: Some("Sender".to_owned()), ..KeyPatch::default() };
    assert!(patch(&key(None), &same).expect("editable").is_none());
}

#[test]
fn a_revoked_key_can_be_neither_edited_nor_rolled() {
    let revoked = revoke(&key(None), NOW, &alice()).expect("revoked");
    let change = KeyPatch { name: Some("Back".to_owned()), ..KeyPatch::default() };
    assert!(matches!(patch(&revoked, &change), Err(StoreError::KeyInactive)));
    assert!(matches!(roll(&revoked, NOW, None, &alice()), Err(StoreError::KeyInactive)));
}

#[test]
fn rolling_without_grace_revokes_and_grace_never_extends() {
    let now = roll(&key(None), NOW, None, &alice()).expect("rolled");
    assert_eq!((now.revoked_at, now.settings.expires_at), (Some(NOW), None));
    let hour = NOW + Duration::hours(1);
    let graced = roll(&key(None), NOW, Some(hour), &alice()).expect("rolled");
    assert_eq!((graced.revoked_at, graced.settings.expires_at), (None, Some(hour)));
    let soon = NOW + Duration::minutes(5);
    let kept = roll(&key(Some(soon)), NOW, Some(hour), &alice()).expect("rolled");
    assert_eq!(kept.settings.expires_at, Some(soon), "an earlier expiry stays");
}

#[test]
fn same_state_ignores_last_use_but_not_settings_or_revocation() {
    let stored = key(None);
    let mut used = stored.clone();
    used.last_used_at = Some(NOW);
    assert!(same_state(&used, &stored));
    let mut renamed = stored.clone();
    renamed.settings.name = "Other".to_owned();
    assert!(!same_state(&renamed, &stored));
    let revoked = revoke(&stored, NOW, &alice()).expect("revoked");
    assert!(!same_state(&revoked, &stored));
}

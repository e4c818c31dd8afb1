//! The rules of a key change, decided once for every backend: whether a revoke is a no-op,
//! whether a revoked key may be edited, what a roll does to the old key, and which fields the
//! audit event records as changed. Pure functions over records; backends only write the result.

use keyward_core::record::{Actor, FieldChange, KeyPatch, KeyRecord};
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::{StoreError, StoreResult};

/// Revoking: `None` when the key is already revoked (idempotent: the first revocation's time
/// and actor stay, and nothing is written).
pub fn revoke(key: &KeyRecord, at: OffsetDateTime, by: &Actor) -> Option<KeyRecord> {
    if key.revoked_at.is_some() {
        return None;
    }
    let mut revoked = key.clone();
    revoked.revoked_at = Some(at);
    revoked.revoked_by = Some(by.id.clone());
    Some(revoked)
}

/// Editing: `KeyInactive` for a revoked key; `None` when nothing really changes (no event, no
/// write); otherwise the edited key and the audit diff `{field: {"old", "new"}}`.
pub fn patch(key: &KeyRecord, patch: &KeyPatch) -> StoreResult<Option<(KeyRecord, Value)>> {
    editable(key)?;
    let mut edited = key.clone();
    let changes = patch.apply(&mut edited.settings);
    if changes.is_empty() {
        return Ok(None);
    }
    Ok(Some((edited, diff(changes))))
}

/// Rolling: what becomes of the old key. `KeyInactive` for a revoked key; no grace revokes it at
/// once; a grace period moves its expiry to `min(expires_at, grace_until)`: grace never extends.
pub fn roll(
    old: &KeyRecord,
    at: OffsetDateTime,
    grace_until: Option<OffsetDateTime>,
    by: &Actor,
) -> StoreResult<KeyRecord> {
    editable(old)?;
    let mut ended = old.clone();
    match grace_until {
        None => {
            ended.revoked_at = Some(at);
            ended.revoked_by = Some(by.id.clone());
        }
        Some(until) => {
            ended.settings.expires_at = Some(old.settings.expires_at.map_or(until, |expiry| expiry.min(until)));
        }
    }
    Ok(ended)
}

fn editable(key: &KeyRecord) -> StoreResult<()> {
    if key.revoked_at.is_some() {
        Err(StoreError::KeyInactive)
    } else {
        Ok(())
    }
}

/// The audit form of a patch's changes.
pub fn diff(changes: Vec<FieldChange>) -> Value {
    Value::Object(
        changes
            .into_iter()
            .map(|change| (change.field.to_owned(), json!({"old": change.old, "new": change.new})))
            .collect::<Map<_, _>>(),
    )
}

/// The compare of a compare-and-swap: is the stored row still the one a change was decided on?
/// `last_used_at` moves on its own (batched flushes) and is not part of a key's state.
pub fn same_state(stored: &KeyRecord, decided_on: &KeyRecord) -> bool {
    stored.id == decided_on.id
        && stored.org_id == decided_on.org_id
        && stored.hash == decided_on.hash
        && stored.hash_version == decided_on.hash_version
        && stored.sealed_signing_secret == decided_on.sealed_signing_secret
        && stored.seal_version == decided_on.seal_version
        && stored.settings == decided_on.settings
        && stored.revoked_at == decided_on.revoked_at
        && stored.revoked_by == decided_on.revoked_by
}

#[cfg(test)]
mod tests;

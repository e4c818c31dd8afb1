//! What a master-key rotation needs from storage ([`KeyringStore`]): the versions the database
//! knows, how many key hashes and sealed signing secrets depend on each, moving secrets and
//! hashes to the current version one compare-and-swap at a time, and the operator's audit chain
//! (rotations and retirements belong to no org).
//!
//! The rules sit here, above the backends: a version is retired only when [`retire_refusal`]
//! finds nothing that still needs it; the backend re-checks the same conditions inside its
//! transaction, so a key written in between cannot be stranded.

use async_trait::async_trait;
use keyward_core::ids::{KeyId, OrgId};
use keyward_core::key::KeyHash;
use time::OffsetDateTime;

use crate::{NewAuditEvent, StoreResult};

/// A master key version the database knows. The key itself is never stored: `check` recognises it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterKeyRecord {
    pub version: u32,
    /// [`keyward_core::keyring::Keyring::check`] of this version's key.
    pub check: String,
    pub added_at: OffsetDateTime,
    /// Set once nothing depended on it and the operator retired it.
    pub retired_at: Option<OffsetDateTime>,
}

/// What depends on one version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VersionUsage {
    pub version: u32,
    /// Key hashes of keys not revoked (active or expired: an expired key can be given a new expiry).
    pub live_keys: u64,
    /// Key hashes of revoked keys: they only ever answer a refusal, so they do not hold a version back.
    pub revoked_keys: u64,
    /// Signing secrets sealed under this version (revoked keys' included).
    pub signing_secrets: u64,
}

/// A sealed signing secret, as the background rewrap reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSecret {
    /// The row's place in key order: the rewrap's resumable position.
    pub seq: i64,
    pub key_id: KeyId,
    pub org_id: OrgId,
    pub version: u32,
    pub sealed: Vec<u8>,
}

/// Replace a sealed secret that is still `from` (sealed under `from_version`) by `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrap {
    pub key_id: KeyId,
    pub from_version: u32,
    pub from: Vec<u8>,
    pub to_version: u32,
    pub to: Vec<u8>,
}

/// Replace a key hash that is still `from` by `to`, computed under `to_version` from the key a
/// verification just presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rehash {
    pub key_id: KeyId,
    pub from: KeyHash,
    pub to_version: u32,
    pub to: KeyHash,
}

/// An event of the operator's own chain (no org), with its link.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorAuditRecord {
    pub event: NewAuditEvent,
    pub prev_hash: String,
    pub hash: String,
}

/// Why a version cannot be retired, or `None` when it can. `current` is the newest version the
/// database knows.
pub fn retire_refusal(version: u32, current: u32, known: &[MasterKeyRecord], usage: &[VersionUsage]) -> Option<String> {
    let Some(record) = known.iter().find(|record| record.version == version) else {
        return Some(format!("the database knows no master key version {version}"));
    };
    if record.retired_at.is_some() {
        return Some(format!("version {version} is already retired"));
    }
    if version >= current {
        return Some(format!("version {version} is the current master key; rotate first"));
    }
    let used = usage.iter().find(|used| used.version == version).copied().unwrap_or_default();
    if used.live_keys > 0 || used.signing_secrets > 0 {
        return Some(format!(
            "version {version} still has {} key hash(es) of keys not revoked and {} signing secret(s); \
             secrets move to the current version in the background, key hashes when a key is next \
             verified (or roll, revoke them)",
            used.live_keys, used.signing_secrets
        ));
    }
    None
}

/// The operator chain checked oldest first, as [`crate::verify_chain`] checks an org's.
pub fn verify_operator_chain(records: &[OperatorAuditRecord]) -> Result<usize, crate::BrokenLink> {
    let mut previous = keyward_core::audit::GENESIS.to_owned();
    for (index, record) in records.iter().enumerate() {
        let broken = |reason| crate::BrokenLink { position: index + 1, event_id: record.event.id.to_string(), reason };
        if record.prev_hash != previous {
            return Err(broken("does not link to the event before it (an event was removed or reordered)"));
        }
        if record.hash != record.event.operator_chain_hash(&record.prev_hash) {
            return Err(broken("does not match its recorded hash (its content was edited)"));
        }
        previous.clone_from(&record.hash);
    }
    Ok(records.len())
}

/// The storage side of master-key rotation. Part of every [`crate::Store`].
#[async_trait]
pub trait KeyringStore: Send + Sync {
    /// Every version the database knows, oldest first.
    async fn master_keys(&self) -> StoreResult<Vec<MasterKeyRecord>>;
    /// Records a version above every known one, with its event on the operator chain (none for
    /// the first version of a database: registering is not rotating), in one transaction.
    /// `Conflict { constraint: "master_key_version" }` when it is not above them (another node
    /// rotated first).
    async fn add_master_key(&self, key: &MasterKeyRecord, event: Option<&NewAuditEvent>) -> StoreResult<()>;
    /// Marks `version` retired at `at`, with its event, unless it is not below the newest
    /// version, is already retired, or a key hash of a key not revoked or a sealed secret still
    /// uses it: then `Ok(false)` and nothing is written (decide with [`retire_refusal`] first;
    /// this is its re-check under the transaction).
    async fn retire_master_key(&self, version: u32, at: OffsetDateTime, event: &NewAuditEvent) -> StoreResult<bool>;
    /// What depends on each version that anything depends on, by version.
    async fn master_key_usage(&self) -> StoreResult<Vec<VersionUsage>>;
    /// Up to `limit` sealed secrets with `seq > after`, in `seq` order, sealed under a version
    /// below `version` (never a newer one: a node that has not switched yet must not move a
    /// secret back).
    async fn secrets_sealed_before(&self, version: u32, after: i64, limit: u32) -> StoreResult<Vec<SealedSecret>>;
    /// Each rewrap is a compare-and-swap on the sealed bytes (a roll, an edit or another node's
    /// rewrap in between wins); returns how many were written. No change-feed entry: cached
    /// policies hold the opened secret, which does not change.
    async fn rewrap_secrets(&self, rewraps: &[Rewrap]) -> StoreResult<usize>;
    /// Each rehash is a compare-and-swap on the hash, and adds the old hash to the change feed so
    /// every node drops what it cached under it; returns how many were written.
    async fn rehash_keys(&self, rehashes: &[Rehash], at: OffsetDateTime) -> StoreResult<usize>;
    /// Sets `name` to `new` only while it holds `old`; returns whether it did.
    async fn replace_setting(&self, name: &str, old: &str, new: &str) -> StoreResult<bool>;
    /// The operator chain, oldest first.
    async fn operator_audit(&self) -> StoreResult<Vec<OperatorAuditRecord>>;
}

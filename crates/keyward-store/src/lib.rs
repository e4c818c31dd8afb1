//! keyward-store: the storage contract — one [`Store`] trait with intent-named methods, the
//! org-bound [`OrgStore`] view every tenant query goes through, and [`StoreError`].
//! It holds no SQL: each backend crate (`keyward-store-sqlite`, …) implements the traits and
//! proves itself against `conformance::run` (feature `conformance`). Start at [`Store::org`].
#![forbid(unsafe_code)]

use std::fmt;

use async_trait::async_trait;
use keyward_core::ids::{ChannelId, EventId, KeyId, MemberId, OrgId, PhoneNumberId};
use keyward_core::key::KeyHash;
use keyward_core::record::{Actor, KeyPatch, KeyRecord, Role};
use time::OffsetDateTime;

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod keyring;
pub mod rules;

pub use keyring::KeyringStore;

/// How often a key change is re-decided when another writer changed the key in between.
const MAX_ATTEMPTS: usize = 5;

fn contended() -> StoreError {
    StoreError::Unavailable("the key kept changing while it was being edited".into())
}

/// What can go wrong in a backend, in terms the HTTP layer can answer with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A unique constraint: the name says which (`phone_number`, `channel_slug`, `org_name`).
    #[error("conflict on {constraint}")]
    Conflict { constraint: &'static str },
    /// The key is revoked and cannot be edited or rolled.
    #[error("key is revoked")]
    KeyInactive,
    /// The database cannot be reached or is busy; worth retrying.
    #[error("database unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("database error")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgRecord {
    pub id: OrgId,
    pub name: String,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneNumberRecord {
    pub id: PhoneNumberId,
    /// E.164.
    pub number: String,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRecord {
    pub id: ChannelId,
    pub slug: String,
    pub name: String,
    pub created_at: OffsetDateTime,
}

/// An audit event as the caller describes it; the store adds the org, the order and the chain hash.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEvent {
    pub id: EventId,
    pub at: OffsetDateTime,
    pub actor: Actor,
    pub actor_ip: Option<String>,
    /// The client's `User-Agent`, when it sent one (at most 256 characters).
    pub user_agent: Option<String>,
    /// `key.created`, `key.updated`, `key.revoked`, `key.rolled`, `phone_number.added`, …
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub target_name: String,
    /// `{field: {"old": …, "new": …}}` or other non-secret details. The store fills it for updates.
    pub changes: serde_json::Value,
    /// 32 lowercase hex characters (the W3C trace id).
    pub trace_id: String,
}

/// A stored audit event with its place in the org's hash chain.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub event: NewAuditEvent,
    pub org_id: OrgId,
    pub prev_hash: String,
    pub hash: String,
}

impl NewAuditEvent {
    /// The fixed-order text the chain hash covers. Changing it breaks every stored chain.
    pub fn canonical(&self, org_id: &OrgId) -> String {
        self.canonical_in(&serde_json::Value::from(org_id.as_str()))
    }

    /// The canonical text with `org` (an org id, or `null` on the operator's chain) in its place.
    fn canonical_in(&self, org: &serde_json::Value) -> String {
        let at = keyward_core::record::time_json(Some(self.at));
        let mut canonical = serde_json::json!([
            self.id.as_str(),
            org,
            at,
            self.actor.kind.as_str(),
            self.actor.id,
            self.actor.name,
            self.actor_ip,
            self.action,
            self.target_type,
            self.target_id,
            self.target_name,
            self.changes,
            self.trace_id,
        ]);
        // Added after the first chains were written: present only when set, so events stored
        // before it (and events without one) keep the hash they were written with.
        if let (Some(user_agent), Some(fields)) = (&self.user_agent, canonical.as_array_mut()) {
            fields.push(serde_json::Value::String(user_agent.clone()));
        }
        canonical.to_string()
    }

    /// This event's link in its org's chain, after the event whose hash is `prev_hash`
    /// ([`keyward_core::audit::GENESIS`] for the first). Backends read the chain head and call
    /// this inside the change's transaction, with the head locked.
    pub fn chain_hash(&self, org_id: &OrgId, prev_hash: &str) -> String {
        keyward_core::audit::chain_hash(prev_hash, &self.canonical(org_id))
    }

    /// This event's link in the operator's chain (events of no org: master-key rotations), whose
    /// canonical form has `null` where an org's has its id.
    pub fn operator_chain_hash(&self, prev_hash: &str) -> String {
        keyward_core::audit::chain_hash(prev_hash, &self.canonical_in(&serde_json::Value::Null))
    }
}

/// An org member. `email` is stored lower-cased and is unique across all orgs (login has no org).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    pub id: MemberId,
    pub org_id: OrgId,
    pub email: String,
    /// argon2id PHC string.
    pub password_hash: String,
    pub role: Role,
    pub created_at: OffsetDateTime,
}

/// A console session. Only hashes of the cookie token and of the CSRF token are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub token_hash: KeyHash,
    pub csrf_hash: KeyHash,
    pub member_id: MemberId,
    pub org_id: OrgId,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// Where an org's audit chain first breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit event {event_id} (#{position} of the chain) {reason}")]
pub struct BrokenLink {
    pub position: usize,
    pub event_id: String,
    pub reason: &'static str,
}

/// Checks an org's chain, oldest first: each event must link to the previous hash and hash to
/// what its content says. Returns how many events were checked.
pub fn verify_chain(records: &[AuditRecord]) -> Result<usize, BrokenLink> {
    let mut previous = keyward_core::audit::GENESIS.to_owned();
    for (index, record) in records.iter().enumerate() {
        let broken = |reason| BrokenLink { position: index + 1, event_id: record.event.id.to_string(), reason };
        if record.prev_hash != previous {
            return Err(broken("does not link to the event before it (an event was removed or reordered)"));
        }
        let expected = record.event.chain_hash(&record.org_id, &record.prev_hash);
        if record.hash != expected {
            return Err(broken("does not match its recorded hash (its content was edited)"));
        }
        previous.clone_from(&record.hash);
    }
    Ok(records.len())
}

/// Status filter of the key list. `expired` is derived against `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    Active,
    Revoked,
    Expired,
}

#[derive(Debug, Clone)]
pub struct KeyFilter {
    pub status: Option<StatusFilter>,
    /// `usr_…`, `key_…` or `operator`.
    pub created_by: Option<String>,
    /// Keys whose name contains it (ASCII case folded) or whose prefix starts with it.
    pub search: Option<String>,
    pub now: OffsetDateTime,
}

/// An opaque position in a newest-first list: the store's insertion sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor(pub i64);

impl Cursor {
    /// `c` + the sequence in base 36: short, opaque enough, and URL-safe.
    pub fn encode(self) -> String {
        format!("c{}", radix36(u64::try_from(self.0).unwrap_or(0)))
    }

    pub fn decode(text: &str) -> Option<Self> {
        let digits = text.strip_prefix('c')?;
        if digits.is_empty() || digits.len() > 13 {
            return None;
        }
        u64::from_str_radix(digits, 36).ok().and_then(|n| i64::try_from(n).ok()).map(Self)
    }
}

fn radix36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[usize::try_from(n % 36).unwrap_or(0)]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// `limit` items after `cursor` (exclusive), newest first.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub limit: u32,
    pub cursor: Option<Cursor>,
}

#[derive(Debug, Clone)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
}

/// What a backend's page query needs, decided once for every backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageBounds {
    /// Items on the page: at least one, or a client could loop forever on an empty page.
    pub limit: usize,
    /// The exclusive upper bound of the row sequence (newest first).
    pub before: i64,
    /// Rows to fetch: one more than the page, which only says that there is a next page.
    pub fetch: i64,
}

impl Page {
    pub fn bounds(self) -> PageBounds {
        let limit = self.limit.max(1);
        PageBounds {
            // u32 always fits in usize and i64 on the platforms we build for.
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            before: self.cursor.map_or(i64::MAX, |cursor| cursor.0),
            fetch: i64::from(limit) + 1,
        }
    }
}

impl<T> Paged<T> {
    /// The page from `fetch` rows of `(sequence, item)`, newest first.
    pub fn from_rows(mut rows: Vec<(i64, T)>, bounds: PageBounds) -> Self {
        let next = if rows.len() > bounds.limit {
            rows.truncate(bounds.limit);
            rows.last().map(|(seq, _)| Cursor(*seq))
        } else {
            None
        };
        Self { items: rows.into_iter().map(|(_, item)| item).collect(), next }
    }
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub action: Option<String>,
    pub target_id: Option<String>,
    pub actor_id: Option<String>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
}

/// Something that cached verification policies must forget: one key (created, edited, revoked,
/// rolled), or every key of an org (its phone numbers, channels or members changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Key(KeyHash),
    Org(OrgId),
}

/// Revoke a key (idempotent: an already revoked key stays as it was and no event is written).
#[derive(Debug, Clone)]
pub struct RevokeKey<'a> {
    pub id: &'a KeyId,
    pub at: OffsetDateTime,
    pub by: &'a Actor,
}

/// Roll a key: insert `new`, and end `old` at `old_ends_at` (now for grace 0, which revokes it).
#[derive(Debug, Clone)]
pub struct RollKey<'a> {
    pub old: &'a KeyId,
    pub new: &'a KeyRecord,
    pub at: OffsetDateTime,
    /// `None` revokes the old key at once; `Some(t)` moves its expiry to `min(expires_at, t)`.
    pub grace_until: Option<OffsetDateTime>,
    pub by: &'a Actor,
}

/// A decided key change, for [`OrgStore::write_key`].
#[derive(Debug, Clone, Copy)]
pub struct KeyWrite<'a> {
    /// The key as the change was decided on.
    pub before: &'a KeyRecord,
    /// The key as it is to be stored (same id).
    pub after: &'a KeyRecord,
    /// A key to insert in the same transaction (a roll's new key).
    pub insert: Option<&'a KeyRecord>,
    /// Appended to the org's audit chain in this order.
    pub events: &'a [NewAuditEvent],
}

/// The backend. Global methods are the ones with no tenant: orgs, settings, the verification
/// look-up by hash (the hash identifies the org), last-used batches and the change feed.
#[async_trait]
pub trait Store: KeyringStore + Send + Sync + fmt::Debug {
    /// Creates or upgrades the schema. Safe to run on every start.
    async fn migrate(&self) -> StoreResult<()>;
    /// A cheap round trip, for `/readyz`.
    async fn ping(&self) -> StoreResult<()>;

    async fn setting(&self, name: &str) -> StoreResult<Option<String>>;
    /// Stores `value` unless `name` is already set; returns whether it was stored.
    async fn put_setting_if_absent(&self, name: &str, value: &str) -> StoreResult<bool>;

    async fn insert_org(&self, org: &OrgRecord) -> StoreResult<()>;
    async fn find_org(&self, id: &OrgId) -> StoreResult<Option<OrgRecord>>;
    async fn list_orgs(&self) -> StoreResult<Vec<OrgRecord>>;

    /// The tenant view. Does not check that the org exists: a missing org simply has nothing.
    fn org<'s>(&'s self, id: &OrgId) -> Box<dyn OrgStore + 's>;

    /// Verification cache miss: the key with this hash, in any org.
    async fn find_key_by_hash(&self, hash: &KeyHash) -> StoreResult<Option<KeyRecord>>;
    /// A batch of last-used times; each only moves forward.
    async fn record_last_used(&self, uses: &[(KeyId, OffsetDateTime)]) -> StoreResult<()>;

    /// Login: the member with this (lower-cased) email, in any org.
    async fn find_member_by_email(&self, email: &str) -> StoreResult<Option<MemberRecord>>;
    /// Stores a session with its `member.login` event, in one transaction.
    async fn insert_session(&self, session: &SessionRecord, event: &NewAuditEvent) -> StoreResult<()>;
    /// The unexpired-or-not session with this token hash and its member (the caller checks expiry).
    async fn find_session(&self, token_hash: &KeyHash) -> StoreResult<Option<(SessionRecord, MemberRecord)>>;
    /// Logout (no error when already gone).
    async fn delete_session(&self, token_hash: &KeyHash) -> StoreResult<()>;
    /// Housekeeping: removes sessions whose `expires_at` is at or before `now`; returns how many.
    async fn delete_expired_sessions(&self, now: OffsetDateTime) -> StoreResult<u64>;

    /// The newest change sequence, where a node starts following the feed.
    async fn latest_change(&self) -> StoreResult<i64>;
    /// Changes after `seq`, oldest first, and the sequence to ask from next. Ordered by commit:
    /// a change that commits after one already returned always has a higher sequence, so a
    /// follower never skips one. A follower behind the pruned history gets `Change::Org` for
    /// every org.
    async fn changes_since(&self, seq: i64) -> StoreResult<(Vec<Change>, i64)>;

    /// Wake-ups sent when the change feed may have grown (PostgreSQL `LISTEN/NOTIFY`), on a
    /// connection of their own. The feed stays the truth: a wake-up only says "read it now".
    /// The channel closes when that connection drops; `Ok(None)` when the backend has no such
    /// signal and followers poll.
    async fn listen_changes(&self) -> StoreResult<Option<ChangeSignals>> {
        Ok(None)
    }
}

/// See [`Store::listen_changes`].
pub type ChangeSignals = tokio::sync::mpsc::Receiver<()>;

/// Everything that belongs to one org. Every method binds the org id in its query, so another
/// org's id is simply not found.
#[async_trait]
pub trait OrgStore: Send + Sync {
    fn org_id(&self) -> &OrgId;

    async fn add_phone_number(&self, number: &PhoneNumberRecord, event: &NewAuditEvent) -> StoreResult<()>;
    async fn phone_numbers(&self) -> StoreResult<Vec<PhoneNumberRecord>>;
    async fn add_channel(&self, channel: &ChannelRecord, event: &NewAuditEvent) -> StoreResult<()>;
    async fn channels(&self) -> StoreResult<Vec<ChannelRecord>>;

    /// Stores a new key with its `key.created` event (and a feed entry, which drops any cached
    /// "no such key" of its hash).
    async fn insert_key(&self, key: &KeyRecord, event: &NewAuditEvent) -> StoreResult<()>;
    /// A bulk import (keys moved from another system, a benchmark's million): each key as
    /// [`OrgStore::insert_key`] stores it, with its event and feed entry, but the whole batch in
    /// one transaction, all or nothing. Events join the org's audit chain in the order given.
    /// The caller picks the batch size: a few thousand keys a call keeps each transaction short.
    async fn import_keys(&self, keys: &[(KeyRecord, NewAuditEvent)]) -> StoreResult<()>;
    async fn find_key(&self, id: &KeyId) -> StoreResult<Option<KeyRecord>>;
    async fn list_keys(&self, filter: &KeyFilter, page: Page) -> StoreResult<Paged<KeyRecord>>;
    /// Writes a change decided by [`rules`] in one transaction: compare-and-swap `before` for
    /// `after`, insert `insert` (a roll's new key), append `events`, and add `after`'s hash to the
    /// change feed. `Ok(false)`, with nothing written, when the stored key no longer has
    /// `before`'s state ([`rules::same_state`]): another writer got there first.
    async fn write_key(&self, write: &KeyWrite<'_>) -> StoreResult<bool>;

    /// Applies `patch` with its `key.updated` event, whose `changes` are the fields that really
    /// changed (no event and no write when nothing did). `KeyInactive` for a revoked key.
    async fn update_key(&self, id: &KeyId, patch: &KeyPatch, event: NewAuditEvent) -> StoreResult<KeyRecord> {
        let mut event = event;
        for _ in 0..MAX_ATTEMPTS {
            let before = self.find_key(id).await?.ok_or(StoreError::NotFound)?;
            let Some((after, changes)) = rules::patch(&before, patch)? else {
                return Ok(before);
            };
            event.changes = changes;
            let write = KeyWrite { before: &before, after: &after, insert: None, events: std::slice::from_ref(&event) };
            if self.write_key(&write).await? {
                return Ok(after);
            }
        }
        Err(contended())
    }

    /// Revokes a key; again is a no-op that returns the key as first revoked, writing nothing.
    async fn revoke_key(&self, revoke: &RevokeKey<'_>, event: &NewAuditEvent) -> StoreResult<KeyRecord> {
        for _ in 0..MAX_ATTEMPTS {
            let before = self.find_key(revoke.id).await?.ok_or(StoreError::NotFound)?;
            let Some(after) = rules::revoke(&before, revoke.at, revoke.by) else {
                return Ok(before);
            };
            let write = KeyWrite { before: &before, after: &after, insert: None, events: std::slice::from_ref(event) };
            if self.write_key(&write).await? {
                return Ok(after);
            }
        }
        Err(contended())
    }

    /// Inserts the new key and ends the old one ([`rules::roll`]); returns the old key as it is
    /// after the roll.
    async fn roll_key(
        &self,
        roll: &RollKey<'_>,
        rolled: &NewAuditEvent,
        created: &NewAuditEvent,
    ) -> StoreResult<KeyRecord> {
        let events = [rolled.clone(), created.clone()];
        for _ in 0..MAX_ATTEMPTS {
            let before = self.find_key(roll.old).await?.ok_or(StoreError::NotFound)?;
            let after = rules::roll(&before, roll.at, roll.grace_until, roll.by)?;
            let write = KeyWrite { before: &before, after: &after, insert: Some(roll.new), events: &events };
            if self.write_key(&write).await? {
                return Ok(after);
            }
        }
        Err(contended())
    }

    /// `Conflict { constraint: "member_email" }` when the email exists in any org.
    async fn add_member(&self, member: &MemberRecord, event: &NewAuditEvent) -> StoreResult<()>;
    async fn members(&self) -> StoreResult<Vec<MemberRecord>>;
    async fn find_member(&self, id: &MemberId) -> StoreResult<Option<MemberRecord>>;
    /// Removes the member and ends all its sessions, with the event, in one transaction.
    async fn remove_member(&self, id: &MemberId, event: &NewAuditEvent) -> StoreResult<MemberRecord>;
    /// An event that goes with no other change (a failed login, a logout).
    async fn record_event(&self, event: &NewAuditEvent) -> StoreResult<()>;

    async fn list_audit(&self, filter: &AuditFilter, page: Page) -> StoreResult<Paged<AuditRecord>>;
    /// The whole chain, oldest first, for `keyward audit verify`.
    async fn audit_chain(&self) -> StoreResult<Vec<AuditRecord>>;
}

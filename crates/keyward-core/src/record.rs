//! What a key is, as stored and as edited: the record, its patch, and the audit actor.

use ipnet::IpNet;
use time::OffsetDateTime;

use crate::ids::{KeyId, OrgId};
use crate::key::{Environment, KeyHash};

/// `"all"` or a non-empty list of the org's channel slugs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channels {
    All,
    Only(Vec<String>),
}

/// Who did something: a member, the operator, or an API key managing its own org.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub kind: ActorKind,
    /// `usr_…`, `key_…` or `operator`.
    pub id: String,
    /// A member's email, a key's name, or `operator`.
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    Member,
    Operator,
    Key,
    /// Someone not (yet) authenticated, such as a failed login.
    Anonymous,
}

impl ActorKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::Operator => "operator",
            Self::Key => "key",
            Self::Anonymous => "anonymous",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "member" => Some(Self::Member),
            "operator" => Some(Self::Operator),
            "key" => Some(Self::Key),
            "anonymous" => Some(Self::Anonymous),
            _ => None,
        }
    }
}

impl Actor {
    pub fn operator() -> Self {
        Self { kind: ActorKind::Operator, id: "operator".to_owned(), name: "operator".to_owned() }
    }

    /// Whoever tried to log in: nobody is authenticated yet, so nobody is named.
    pub fn anonymous() -> Self {
        Self { kind: ActorKind::Anonymous, id: "anonymous".to_owned(), name: "Unauthenticated".to_owned() }
    }
}

/// A member's role in its org. Owners and admins manage keys; users and read-only members cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Owner,
    Admin,
    User,
    ReadOnly,
}

impl Role {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "owner" => Some(Self::Owner),
            "admin" => Some(Self::Admin),
            "user" => Some(Self::User),
            "readonly" => Some(Self::ReadOnly),
            _ => None,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::User => "user",
            Self::ReadOnly => "readonly",
        }
    }

    /// May see and change API keys and read the audit log.
    pub const fn manages_keys(self) -> bool {
        matches!(self, Self::Owner | Self::Admin)
    }
}

/// The reported status: `expired` is derived (active and past `expires_at`), never stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    Revoked,
    Expired,
}

impl KeyStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }
}

/// The settings of a key that policy checks read and PATCH may change.
#[derive(Debug, Clone, PartialEq)]
pub struct KeySettings {
    pub name: String,
    pub scopes: Vec<String>,
    pub hmac_required: bool,
    pub rate_limit: Option<u32>,
    pub expires_at: Option<OffsetDateTime>,
    pub ip_allowlist: Vec<IpNet>,
    pub phone_allowlist: Vec<String>,
    pub channels: Channels,
    pub environment: Environment,
    pub external_id: Option<String>,
    pub meta: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A stored key. Holds no plaintext: `hash` is the peppered HMAC, `sealed_signing_secret` the AEAD box.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    pub id: KeyId,
    pub org_id: OrgId,
    pub prefix: String,
    pub hash: KeyHash,
    /// The master key version whose pepper made `hash` ([`crate::keyring`]).
    pub hash_version: u32,
    pub sealed_signing_secret: Option<Vec<u8>>,
    /// The master key version `sealed_signing_secret` is sealed under (meaningless without one).
    pub seal_version: u32,
    pub settings: KeySettings,
    pub created_at: OffsetDateTime,
    pub created_by: String,
    pub revoked_at: Option<OffsetDateTime>,
    pub revoked_by: Option<String>,
    pub last_used_at: Option<OffsetDateTime>,
}

impl KeyRecord {
    pub fn status(&self, now: OffsetDateTime) -> KeyStatus {
        if self.revoked_at.is_some() {
            KeyStatus::Revoked
        } else if self.settings.expires_at.is_some_and(|at| at <= now) {
            KeyStatus::Expired
        } else {
            KeyStatus::Active
        }
    }
}

/// A validated PATCH: `None` leaves a field alone; `Some(None)` clears a nullable one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyPatch {
    pub name: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub channels: Option<Channels>,
    pub ip_allowlist: Option<Vec<IpNet>>,
    pub phone_allowlist: Option<Vec<String>>,
    pub rate_limit: Option<Option<u32>>,
    pub expires_at: Option<Option<OffsetDateTime>>,
    pub meta: Option<Option<serde_json::Map<String, serde_json::Value>>>,
}

/// One changed field for the audit log: its name and the old and new values (never a secret).
#[derive(Debug, Clone, PartialEq)]
pub struct FieldChange {
    pub field: &'static str,
    pub old: serde_json::Value,
    pub new: serde_json::Value,
}

impl KeyPatch {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Applies the patch and lists what actually changed. Shared by every store backend so the
    /// audit diff is computed once, inside each backend's transaction.
    pub fn apply(&self, settings: &mut KeySettings) -> Vec<FieldChange> {
        use serde_json::Value;
        let mut changes = Vec::new();
        let mut record = |field: &'static str, old: Value, new: Value| {
            if old != new {
                changes.push(FieldChange { field, old, new });
            }
        };
        if let Some(name) = &self.name {
            record("name", settings.name.clone().into(), name.clone().into());
            settings.name.clone_from(name);
        }
        if let Some(scopes) = &self.scopes {
            record("scopes", settings.scopes.clone().into(), scopes.clone().into());
            settings.scopes.clone_from(scopes);
        }
        if let Some(channels) = &self.channels {
            record("channels", channels_json(&settings.channels), channels_json(channels));
            settings.channels = channels.clone();
        }
        if let Some(list) = &self.ip_allowlist {
            record("ip_allowlist", ip_json(&settings.ip_allowlist), ip_json(list));
            settings.ip_allowlist.clone_from(list);
        }
        if let Some(list) = &self.phone_allowlist {
            record("phone_allowlist", settings.phone_allowlist.clone().into(), list.clone().into());
            settings.phone_allowlist.clone_from(list);
        }
        if let Some(limit) = self.rate_limit {
            record("rate_limit", settings.rate_limit.into(), limit.into());
            settings.rate_limit = limit;
        }
        if let Some(at) = self.expires_at {
            record("expires_at", time_json(settings.expires_at), time_json(at));
            settings.expires_at = at;
        }
        if let Some(meta) = &self.meta {
            record(
                "meta",
                settings.meta.clone().map_or(Value::Null, Value::Object),
                meta.clone().map_or(Value::Null, Value::Object),
            );
            settings.meta.clone_from(meta);
        }
        changes
    }
}

pub fn channels_json(channels: &Channels) -> serde_json::Value {
    match channels {
        Channels::All => "all".into(),
        Channels::Only(list) => list.clone().into(),
    }
}

pub fn ip_json(list: &[IpNet]) -> serde_json::Value {
    list.iter().map(|net| display_net(net).into()).collect::<Vec<serde_json::Value>>().into()
}

/// Single addresses are shown without their `/32` or `/128`, as they were entered.
pub fn display_net(net: &IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

/// Times are kept at microsecond precision on every backend (PostgreSQL's `timestamptz` holds
/// microseconds): what is stored is what is read back.
pub fn to_micros(at: OffsetDateTime) -> OffsetDateTime {
    at.replace_nanosecond(at.nanosecond() / 1_000 * 1_000).unwrap_or(at)
}

/// The first microsecond at or after `at`: an inclusive lower bound at stored precision.
pub fn ceil_to_micros(at: OffsetDateTime) -> OffsetDateTime {
    let floor = to_micros(at);
    if floor == at {
        at
    } else {
        floor + time::Duration::microseconds(1)
    }
}

pub fn time_json(at: Option<OffsetDateTime>) -> serde_json::Value {
    at.and_then(|at| at.format(&time::format_description::well_known::Rfc3339).ok())
        .map_or(serde_json::Value::Null, serde_json::Value::String)
}

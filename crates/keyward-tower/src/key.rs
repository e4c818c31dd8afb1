//! [`VerifiedKey`]: who the caller is, as the layer hands it to handlers.

use std::fmt;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::Response;
use keyward_core::key::{prefix_field, PREFIX_FIELD_LEN};
use keyward_core::record::Channels;
use keyward_core::validate::ALL_SCOPES;
use keyward_core::Code;
use keyward_runtime::{CachedKey, RateInfo};

/// The caller's verified API key: a request extension set by [`crate::KeywardLayer`], and an
/// axum extractor (`async fn handler(key: VerifiedKey)`). Cloning is cheap; an embedded
/// verification shares the cached key rather than copying it.
#[derive(Clone)]
pub struct VerifiedKey {
    facts: Facts,
    /// The effective channels are all of the org's (else the key's own list).
    all_channels: bool,
    prefix: Prefix,
    rate: RateLimit,
}

#[derive(Clone)]
enum Facts {
    Embedded(Arc<CachedKey>),
    Remote(Arc<RemoteFacts>),
}

/// What `/v1/verify` answered about a valid key.
pub(crate) struct RemoteFacts {
    pub key_id: String,
    pub org_id: String,
    pub name: String,
    pub scopes: Vec<String>,
    /// `None`: all channels.
    pub channels: Option<Vec<String>>,
    pub environment: String,
}

/// The channels a key may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyChannels<'k> {
    /// Every channel of its org.
    All,
    /// Only these slugs.
    Only(&'k [String]),
}

impl KeyChannels<'_> {
    pub fn allows(&self, slug: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(list) => list.iter().any(|s| s == slug),
        }
    }
}

/// The key's rate budget after this request, as in the `RateLimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests a second.
    pub limit: u32,
    pub remaining: u32,
    /// Milliseconds until the budget is full again.
    pub reset_ms: u64,
}

impl From<RateInfo> for RateLimit {
    fn from(rate: RateInfo) -> Self {
        Self { limit: rate.limit, remaining: rate.remaining, reset_ms: rate.reset_ms }
    }
}

impl From<RateLimit> for RateInfo {
    fn from(rate: RateLimit) -> Self {
        Self { limit: rate.limit, remaining: rate.remaining, reset_ms: rate.reset_ms }
    }
}

/// The key's first characters (its displayable `prefix` field), held inline: no allocation.
#[derive(Clone, Copy)]
struct Prefix {
    bytes: [u8; PREFIX_FIELD_LEN],
    len: u8,
}

impl Prefix {
    fn of(key: &str) -> Self {
        let text = prefix_field(key);
        let mut bytes = [0; PREFIX_FIELD_LEN];
        let len = text.len().min(PREFIX_FIELD_LEN);
        bytes[..len].copy_from_slice(&text.as_bytes()[..len]);
        Self { bytes, len: u8::try_from(len).unwrap_or(0) }
    }

    fn as_str(&self) -> &str {
        // A valid key is ASCII, so a cut at any byte is a character boundary.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl VerifiedKey {
    pub(crate) fn embedded(cached: Arc<CachedKey>, all_channels: bool, key: &str, rate: RateInfo) -> Self {
        Self { facts: Facts::Embedded(cached), all_channels, prefix: Prefix::of(key), rate: rate.into() }
    }

    pub(crate) fn remote(facts: RemoteFacts, key: &str, rate: RateLimit) -> Self {
        let all_channels = facts.channels.is_none();
        Self { facts: Facts::Remote(Arc::new(facts)), all_channels, prefix: Prefix::of(key), rate }
    }

    /// The key's id (`key_…`).
    pub fn id(&self) -> &str {
        match &self.facts {
            Facts::Embedded(cached) => cached.policy.key_id.as_str(),
            Facts::Remote(facts) => &facts.key_id,
        }
    }

    /// The org the key belongs to (`org_…`): the tenant of this request.
    pub fn org_id(&self) -> &str {
        match &self.facts {
            Facts::Embedded(cached) => cached.policy.org_id.as_str(),
            Facts::Remote(facts) => &facts.org_id,
        }
    }

    pub fn name(&self) -> &str {
        match &self.facts {
            Facts::Embedded(cached) => &cached.policy.name,
            Facts::Remote(facts) => &facts.name,
        }
    }

    /// Every scope the key holds (`*` stands for all), not only the ones the layer required.
    pub fn scopes(&self) -> &[String] {
        match &self.facts {
            Facts::Embedded(cached) => &cached.policy.scopes,
            Facts::Remote(facts) => &facts.scopes,
        }
    }

    /// Whether the key holds `scope` (or `*`): for checks a handler makes beyond the layer's.
    pub fn grants(&self, scope: &str) -> bool {
        self.scopes().iter().any(|s| s == ALL_SCOPES || s == scope)
    }

    /// The channels the key may reach (a request to the layer names none, so these are the key's).
    pub fn channels(&self) -> KeyChannels<'_> {
        if self.all_channels {
            return KeyChannels::All;
        }
        match &self.facts {
            Facts::Embedded(cached) => match &cached.policy.channels {
                Channels::All => KeyChannels::All,
                Channels::Only(list) => KeyChannels::Only(list),
            },
            Facts::Remote(facts) => facts.channels.as_deref().map_or(KeyChannels::All, KeyChannels::Only),
        }
    }

    /// `live` or `test`.
    pub fn environment(&self) -> &str {
        match &self.facts {
            Facts::Embedded(cached) => cached.policy.environment.as_str(),
            Facts::Remote(facts) => &facts.environment,
        }
    }

    /// The key's displayable prefix (its first 16 characters, as keyward lists it): safe to log.
    pub fn prefix(&self) -> &str {
        self.prefix.as_str()
    }

    /// The key's rate budget after this request.
    pub fn rate_limit(&self) -> RateLimit {
        self.rate
    }
}

impl fmt::Debug for VerifiedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedKey")
            .field("id", &self.id())
            .field("org_id", &self.org_id())
            .field("name", &self.name())
            .field("scopes", &self.scopes())
            .field("channels", &self.channels())
            .field("environment", &self.environment())
            .field("prefix", &self.prefix())
            .field("rate_limit", &self.rate)
            .finish_non_exhaustive()
    }
}

/// A handler that takes a [`VerifiedKey`] on a route the layer does not cover is a mistake in
/// the route table: it answers 500 rather than run unauthenticated.
impl<S: Send + Sync> FromRequestParts<S> for VerifiedKey {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<VerifiedKey>().cloned().ok_or_else(|| {
            tracing::error!(
                path = parts.uri.path(),
                "a handler takes VerifiedKey on a route KeywardLayer does not cover"
            );
            keyward_server::problem::problem_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                Code::Internal,
                "An internal error occurred".to_owned(),
                Vec::new(),
            )
        })
    }
}

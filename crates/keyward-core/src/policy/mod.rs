//! The verification decision: [`verify`] runs the checks of SPEC §5 in their order over a
//! cached [`KeyPolicy`]. Pure: time and the request are parameters; consuming a signature is the
//! runtime's, between [`check_key`] and [`check_request`].

mod channels;
mod sender;

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use time::OffsetDateTime;

use crate::ids::{KeyId, OrgId};
use crate::key::Environment;
use crate::ratelimit::Quota;
use crate::record::Channels;
use crate::signing::SigningKey;
use crate::signing::{self, SignatureBytes, SignedRequest};
use crate::validate::ALL_SCOPES;
use crate::Code;

pub use channels::{EffectiveChannels, MAX_REQUESTED_CHANNELS};

/// Everything verification needs to know about one key, decrypted and parsed once when cached.
#[derive(Debug)]
pub struct KeyPolicy {
    pub key_id: KeyId,
    pub org_id: OrgId,
    pub name: String,
    pub revoked: bool,
    pub expires_at: Option<OffsetDateTime>,
    pub ip_allowlist: Vec<IpNet>,
    /// Present exactly when the key requires HMAC signatures: the secret, keyed once.
    pub signing_key: Option<SigningKey>,
    pub scopes: Vec<String>,
    pub phone_allowlist: Vec<String>,
    /// The org's registered sender numbers (E.164), shared by all keys of the org.
    pub org_phone_numbers: Arc<[String]>,
    /// The org's channel slugs: a request may only name these, whatever the key's own rule.
    pub org_channels: Arc<[String]>,
    pub channels: Channels,
    pub environment: Environment,
    pub meta: Option<serde_json::Map<String, serde_json::Value>>,
    pub quota: Quota,
}

impl KeyPolicy {
    /// `*` grants every scope; otherwise an exact match. Deny by default.
    pub fn grants(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == ALL_SCOPES || s == scope)
    }

    /// Gives back the spare room parsing left in its lists, before the policy is cached: a
    /// million cached keys hold no half-empty vectors.
    #[must_use]
    pub fn compact(mut self) -> Self {
        self.ip_allowlist.shrink_to_fit();
        self.scopes.shrink_to_fit();
        self.phone_allowlist.shrink_to_fit();
        if let Channels::Only(slugs) = &mut self.channels {
            slugs.shrink_to_fit();
        }
        self
    }
}

/// One verification request, borrowed from the parsed body.
#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyRequest<'a> {
    /// All required; empty means "only check that the key is usable".
    pub scopes: &'a [Cow<'a, str>],
    pub client_ip: Option<IpAddr>,
    pub sender: Option<&'a str>,
    pub channels: Option<&'a [Cow<'a, str>]>,
    pub signature: Option<SignedRequest<'a>>,
}

/// The environment of a decision.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    pub now: OffsetDateTime,
    pub signature_tolerance_seconds: i64,
}

/// A refusal: the code and a human message for the platform's caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub code: Code,
    pub message: Cow<'static, str>,
}

impl Denial {
    pub fn new(code: Code, message: &'static str) -> Self {
        Self { code, message: Cow::Borrowed(message) }
    }
}

/// What passed: the effective channels, and the signature to consume once the answer is `VALID`.
#[derive(Debug, Clone)]
pub struct Allowed<'p, 'a> {
    pub channels: EffectiveChannels<'p, 'a>,
    pub signature: Option<(SignatureBytes, i64)>,
}

pub const SENDS_MESSAGES: &str = "messages:send";

/// The ordered checks after the key was found: [`check_key`], then [`check_request`]. Whether a
/// signature was already used is not known here: the runtime reserves the signature that
/// `check_key` returns between the two halves (and releases it when a later check refuses), so
/// a replay still answers `INVALID_SIGNATURE` in its place in the order.
pub fn verify<'p, 'a>(
    policy: &'p KeyPolicy,
    request: &VerifyRequest<'a>,
    context: &Context,
) -> Result<Allowed<'p, 'a>, Denial> {
    let signature = check_key(policy, request, context)?;
    let channels = check_request(policy, request)?;
    Ok(Allowed { channels, signature })
}

/// The checks about the key and the caller: inactive, expired, IP, signature. Returns the
/// checked signature and its timestamp, to be consumed once.
pub fn check_key(
    policy: &KeyPolicy,
    request: &VerifyRequest<'_>,
    context: &Context,
) -> Result<Option<(SignatureBytes, i64)>, Denial> {
    if policy.revoked {
        return Err(Denial::new(Code::ApiKeyInactive, "This API key has been revoked"));
    }
    if policy.expires_at.is_some_and(|at| at <= context.now) {
        return Err(Denial::new(Code::ApiKeyExpired, "This API key has expired"));
    }
    if !policy.ip_allowlist.is_empty() {
        let allowed = request.client_ip.is_some_and(|ip| policy.ip_allowlist.iter().any(|net| net_contains(net, ip)));
        if !allowed {
            return Err(Denial::new(Code::IpNotAllowed, "The client IP address is not in this key's allowlist"));
        }
    }
    match (&policy.signing_key, &request.signature) {
        (None, _) => Ok(None),
        (Some(_), None) => Err(Denial::new(Code::SignatureRequired, "This API key requires a signed request")),
        (Some(secret), Some(signed)) => {
            let now = context.now.unix_timestamp();
            signing::check(secret, signed, now, context.signature_tolerance_seconds)
                .map(Some)
                .map_err(|fault| Denial::new(Code::InvalidSignature, fault.message()))
        }
    }
}

/// The refusal of a signature already consumed.
pub fn replayed() -> Denial {
    Denial::new(Code::InvalidSignature, signing::SignatureFault::Replayed.message())
}

/// The checks about what is asked for: scopes, sender, channels. Returns the effective channels.
pub fn check_request<'p, 'a>(
    policy: &'p KeyPolicy,
    request: &VerifyRequest<'a>,
) -> Result<EffectiveChannels<'p, 'a>, Denial> {
    if let Some(missing) = request.scopes.iter().find(|scope| !policy.grants(scope)) {
        return Err(Denial {
            code: Code::Forbidden,
            message: Cow::Owned(format!("This API key does not grant the scope {missing}")),
        });
    }
    if request.scopes.iter().any(|scope| scope == SENDS_MESSAGES) {
        sender::check(policy, request.sender)?;
    }
    channels::effective(&policy.channels, &policy.org_channels, request.channels)
}

/// `IpNet::contains` that also matches IPv4-mapped IPv6 peers (`::ffff:10.0.0.1`) against IPv4 entries.
pub fn net_contains(net: &IpNet, ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or_else(|| net.contains(&ip), |v4| net.contains(&IpAddr::V4(v4))),
        IpAddr::V4(_) => net.contains(&ip),
    }
}

#[cfg(test)]
mod tests;

//! Who is calling and what they may do. Extractors authenticate once — operator token, API key
//! (Bearer or `X-API-Key`), or session cookie with `X-CSRF-Token` on unsafe methods — and hand
//! handlers a [`Caller`] or an [`OrgAccess`]. Handlers never see a raw token.

use std::collections::HashMap;
use std::net::IpAddr;

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, Method};
use keyward_core::ids::{EventId, KeyId, MemberId, OrgId};
use keyward_core::key::{ct_eq, KeyHash};
use keyward_core::policy::net_contains;
use keyward_core::record::{Actor, ActorKind, Role};
use keyward_core::validate::ALL_SCOPES;
use keyward_core::Code;
use keyward_store::{NewAuditEvent, OrgRecord, OrgStore};

use crate::app::AppState;
use crate::net;
use crate::problem::ApiError;
use crate::telemetry;

/// The console's session cookie over plain HTTP.
pub const SESSION_COOKIE: &str = "keyward_session";

/// Its name over HTTPS: the `__Host-` prefix makes browsers take it only with `Secure`,
/// `Path=/` and no `Domain` from a secure origin, so a sibling site or a plain-HTTP answer
/// cannot plant one.
pub const SECURE_SESSION_COOKIE: &str = "__Host-keyward_session";

/// The session cookie's name for a request over HTTPS (`true`) or plain HTTP.
pub fn session_cookie_name(https: bool) -> &'static str {
    if https {
        SECURE_SESSION_COOKIE
    } else {
        SESSION_COOKIE
    }
}

/// An authenticated principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The platform operator (`KEYWARD_OPERATOR_TOKEN`): every org.
    Operator,
    /// A member logged in to the console.
    Member { id: MemberId, org_id: OrgId, email: String, role: Role, session: KeyHash },
    /// An API key managing its own org (it must hold `keys:read` / `keys:write`).
    Key { id: KeyId, org_id: OrgId, name: String, scopes: Vec<String> },
}

/// What an endpoint needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    ReadKeys,
    WriteKeys,
    ReadAudit,
    ManageMembers,
}

impl Principal {
    pub fn actor(&self) -> Actor {
        match self {
            Self::Operator => Actor::operator(),
            Self::Member { id, email, .. } => {
                Actor { kind: ActorKind::Member, id: id.to_string(), name: email.clone() }
            }
            Self::Key { id, name, .. } => Actor { kind: ActorKind::Key, id: id.to_string(), name: name.clone() },
        }
    }

    /// The org this principal belongs to (`None`: the operator, who reaches every org).
    pub fn org_id(&self) -> Option<&OrgId> {
        match self {
            Self::Operator => None,
            Self::Member { org_id, .. } | Self::Key { org_id, .. } => Some(org_id),
        }
    }

    fn holds(scopes: &[String], scope: &str) -> bool {
        scopes.iter().any(|s| s == ALL_SCOPES || s == scope)
    }

    pub fn allows(&self, permission: Permission) -> bool {
        match self {
            Self::Operator => true,
            Self::Member { role, .. } => match permission {
                Permission::ReadKeys | Permission::WriteKeys | Permission::ReadAudit => role.manages_keys(),
                Permission::ManageMembers => *role == Role::Owner,
            },
            Self::Key { scopes, .. } => match permission {
                Permission::ReadKeys => Self::holds(scopes, "keys:read") || Self::holds(scopes, "keys:write"),
                Permission::WriteKeys => Self::holds(scopes, "keys:write"),
                Permission::ReadAudit | Permission::ManageMembers => false,
            },
        }
    }

    /// The scopes this principal may put on keys it creates or edits: a key cannot hand out
    /// more than it holds. `None`: no ceiling.
    pub fn scope_ceiling(&self) -> Option<&[String]> {
        match self {
            Self::Key { scopes, .. } if !scopes.iter().any(|s| s == ALL_SCOPES) => Some(scopes),
            _ => None,
        }
    }
}

/// Facts about the request every audit event records.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    pub client_ip: Option<IpAddr>,
    pub trace_id: String,
    /// The client's `User-Agent` (at most 256 characters), for the audit log.
    pub user_agent: Option<String>,
    /// Reached over TLS ([`is_https`]): the session cookie is `__Host-` and `Secure`.
    pub https: bool,
}

impl RequestMeta {
    /// For changes made outside HTTP (the CLI).
    pub fn local() -> Self {
        Self { client_ip: None, trace_id: telemetry::trace_id(&HeaderMap::new()), user_agent: None, https: false }
    }

    pub fn from_parts(parts: &Parts, state: &AppState) -> Self {
        let peer = net::peer_ip(parts);
        Self {
            client_ip: net::client_ip(peer, &parts.headers, &state.config.trusted_proxies),
            trace_id: telemetry::trace_id(&parts.headers),
            user_agent: parts
                .headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|agent| agent.chars().filter(|c| !c.is_control()).take(256).collect::<String>())
                .filter(|agent| !agent.is_empty()),
            https: is_https(parts, state),
        }
    }
}

/// The request came over the listener's TLS, or a trusted proxy says `X-Forwarded-Proto: https`.
pub fn is_https(parts: &Parts, state: &AppState) -> bool {
    if parts.extensions.get::<net::OverTls>().is_some() {
        return true;
    }
    let proxied =
        net::peer_ip(parts).is_some_and(|ip| state.config.trusted_proxies.iter().any(|net| net_contains(net, ip)));
    proxied && net::forwarded_https(&parts.headers)
}

impl FromRequestParts<AppState> for RequestMeta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Self::from_parts(parts, state))
    }
}

/// An authenticated request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub meta: RequestMeta,
}

impl Caller {
    pub fn actor(&self) -> Actor {
        self.principal.actor()
    }

    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.principal.allows(permission) {
            Ok(())
        } else {
            Err(ApiError::code(Code::Forbidden, "Your role or key does not allow this"))
        }
    }
}

/// The credential of a request: `Authorization: Bearer …` or `X-API-Key`. A request carrying
/// more than one (two `Authorization` headers, or one with `X-API-Key`) is refused with 400 rather
/// than served as either: which one wins would otherwise depend on the order of checks.
/// Made once: a name given as `&str` is parsed and checked on every look-up.
static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

pub fn credential(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let mut found: Option<Option<&str>> = None;
    let authorization = headers.get_all(header::AUTHORIZATION).iter().map(|value| {
        let text = value.to_str().ok();
        // Another scheme (Basic, …) still counts as a credential sent; it authenticates no one.
        text.and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
    });
    let api_key = headers.get_all(&X_API_KEY).iter().map(|value| value.to_str().ok());
    for candidate in authorization.chain(api_key) {
        if found.replace(candidate).is_some() {
            return Err(ApiError::code(
                Code::ValidationFailed,
                "Send one credential: Authorization: Bearer or X-API-Key, once",
            ));
        }
    }
    Ok(found.flatten())
}

/// True when the headers carry the operator token (constant-time comparison of peppered hashes);
/// an error when they carry more than one credential.
pub fn is_operator(headers: &HeaderMap, state: &AppState) -> Result<bool, ApiError> {
    Ok(credential(headers)?.is_some_and(|token| state.is_operator_token(token)))
}

/// The plain-HTTP session cookie's token, if any ([`session_token_for`] picks the name).
pub fn session_token(headers: &HeaderMap) -> Option<&str> {
    cookie(headers, SESSION_COOKIE)
}

/// The session cookie's token under the name used over HTTPS (`true`) or plain HTTP: over HTTPS
/// only the `__Host-` cookie counts.
pub fn session_token_for(headers: &HeaderMap, https: bool) -> Option<&str> {
    cookie(headers, session_cookie_name(https))
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(name)?.strip_prefix('='))
        .filter(|token| !token.is_empty())
}

impl Caller {
    /// Authenticates from headers: an explicit credential wins over a cookie.
    pub async fn authenticate(parts: &Parts, state: &AppState) -> Result<Self, ApiError> {
        let meta = RequestMeta::from_parts(parts, state);
        if let Some(token) = credential(&parts.headers)? {
            let principal = principal_from_token(token, &meta, state).await?;
            return Ok(Self { principal, meta });
        }
        if let Some(token) = session_token_for(&parts.headers, meta.https) {
            let principal = principal_from_session(token, parts, state).await?;
            return Ok(Self { principal, meta });
        }
        Err(ApiError::code(Code::Unauthenticated, "Log in, or send the operator token or an API key as a Bearer token"))
    }
}

async fn principal_from_token(token: &str, meta: &RequestMeta, state: &AppState) -> Result<Principal, ApiError> {
    if state.is_operator_token(token) {
        return Ok(Principal::Operator);
    }
    let invalid = || ApiError::code(Code::Unauthenticated, "The credential is not valid");
    let cached = state.verifier.find(token).await?.ok_or_else(invalid)?;
    let policy = &cached.policy;
    let now = state.clock.now();
    if policy.revoked || policy.expires_at.is_some_and(|at| at <= now) {
        return Err(invalid());
    }
    // A key's IP allowlist holds for management calls too.
    if !policy.ip_allowlist.is_empty()
        && !meta.client_ip.is_some_and(|ip| policy.ip_allowlist.iter().any(|net| net_contains(net, ip)))
    {
        return Err(ApiError::code(Code::Forbidden, "The client IP address is not in this key's allowlist"));
    }
    Ok(Principal::Key {
        id: policy.key_id.clone(),
        org_id: policy.org_id.clone(),
        name: policy.name.clone(),
        scopes: policy.scopes.clone(),
    })
}

async fn principal_from_session(token: &str, parts: &Parts, state: &AppState) -> Result<Principal, ApiError> {
    let expired = || ApiError::code(Code::Unauthenticated, "The session has ended; log in again");
    // Under the master key version the session was made with (sessions outlive a rotation).
    let (session, member, pepper) = state.find_session(token).await?.ok_or_else(expired)?;
    let hash = pepper.hash;
    if session.expires_at <= state.clock.now() {
        return Err(expired());
    }
    let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        let csrf = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or("");
        if csrf.is_empty() || !ct_eq(pepper.hash(csrf).as_bytes(), session.csrf_hash.as_bytes()) {
            return Err(ApiError::code(Code::CsrfFailed, "Send the X-CSRF-Token you received at login"));
        }
    }
    Ok(Principal::Member {
        id: member.id,
        org_id: member.org_id,
        email: member.email,
        role: member.role,
        session: hash,
    })
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Self::authenticate(parts, state).await
    }
}

/// Only the operator (creating orgs, verifying).
#[derive(Debug, Clone)]
pub struct OperatorCaller(pub Caller);

impl FromRequestParts<AppState> for OperatorCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if caller.principal == Principal::Operator {
            Ok(Self(caller))
        } else {
            Err(ApiError::code(Code::Forbidden, "Only the operator may do this"))
        }
    }
}

/// An org from the path that the caller belongs to (or the operator). Another org's id, a
/// malformed id and a missing org all answer 404, so ids cannot be probed; permissions are
/// checked after that, with [`OrgAccess::require`].
#[derive(Debug, Clone)]
pub struct OrgAccess {
    pub caller: Caller,
    pub org: OrgRecord,
    state: AppState,
}

impl OrgAccess {
    pub fn store(&self) -> Box<dyn OrgStore + '_> {
        self.state.store.org(&self.org.id)
    }

    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        self.caller.require(permission)
    }
}

pub fn audit_event(
    actor: &Actor,
    meta: &RequestMeta,
    at: time::OffsetDateTime,
    action: &str,
    (target_type, target_id, target_name): (&str, &str, &str),
    changes: serde_json::Value,
) -> NewAuditEvent {
    NewAuditEvent {
        id: EventId::generate(&mut rand::thread_rng()),
        at,
        actor: actor.clone(),
        actor_ip: meta.client_ip.map(|ip| ip.to_string()),
        user_agent: meta.user_agent.clone(),
        action: action.to_owned(),
        target_type: target_type.to_owned(),
        target_id: target_id.to_owned(),
        target_name: target_name.to_owned(),
        changes,
        trace_id: meta.trace_id.clone(),
    }
}

impl FromRequestParts<AppState> for OrgAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let Path(params) =
            Path::<HashMap<String, String>>::from_request_parts(parts, state).await.map_err(|_| ApiError::NotFound)?;
        let org_id = params.get("org").and_then(|text| OrgId::parse(text).ok()).ok_or(ApiError::NotFound)?;
        if caller.principal.org_id().is_some_and(|own| *own != org_id) {
            return Err(ApiError::NotFound);
        }
        let org = state.store.find_org(&org_id).await?.ok_or(ApiError::NotFound)?;
        Ok(Self { caller, org, state: state.clone() })
    }
}

//! Who is calling: extractors authenticate once and hand handlers a [`Caller`] or an
//! [`OrgAccess`] (an org the caller may act on, with its org-bound store). Handlers never see a
//! raw token.

use std::collections::HashMap;
use std::net::IpAddr;

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use keyward_core::ids::{EventId, OrgId};
use keyward_core::record::Actor;
use keyward_core::Code;
use keyward_store::{NewAuditEvent, OrgRecord, OrgStore};

use crate::app::AppState;
use crate::net;
use crate::problem::ApiError;
use crate::telemetry;

/// An authenticated principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The platform operator (`KEYWARD_OPERATOR_TOKEN`): every org.
    Operator,
}

impl Principal {
    pub fn actor(&self) -> Actor {
        match self {
            Self::Operator => Actor::operator(),
        }
    }

    fn may_access(&self, _org: &OrgId) -> bool {
        match self {
            Self::Operator => true,
        }
    }
}

/// Facts about the request every audit event records.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    pub client_ip: Option<IpAddr>,
    pub trace_id: String,
}

impl RequestMeta {
    /// For changes made outside HTTP (the CLI).
    pub fn local() -> Self {
        Self { client_ip: None, trace_id: telemetry::trace_id(&HeaderMap::new()) }
    }

    pub fn from_parts(parts: &Parts, state: &AppState) -> Self {
        Self {
            client_ip: net::client_ip(net::peer_ip(parts), &parts.headers, &state.config.trusted_proxies),
            trace_id: telemetry::trace_id(&parts.headers),
        }
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
}

/// The credential of a request: `Authorization: Bearer …` or `X-API-Key`.
pub fn credential(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    bearer.or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
}

/// True when the headers carry the operator token (constant-time comparison of peppered hashes).
pub fn is_operator(headers: &HeaderMap, state: &AppState) -> bool {
    credential(headers).is_some_and(|token| state.verifier.pepper().hash(token).ct_eq(&state.operator_token_hash))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if credential(&parts.headers).is_none() {
            return Err(ApiError::code(
                Code::Unauthenticated,
                "Send the operator token or an API key in the Authorization: Bearer header",
            ));
        }
        if !is_operator(&parts.headers, state) {
            return Err(ApiError::code(Code::Unauthenticated, "The credential is not valid"));
        }
        Ok(Self { principal: Principal::Operator, meta: RequestMeta::from_parts(parts, state) })
    }
}

/// Only the operator (e.g. creating orgs).
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

/// An org from the path that the caller may act on. Another org's id, a malformed id and a
/// missing org all answer 404, so ids cannot be probed.
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

    /// An audit event by this caller, stamped now.
    pub fn event(
        &self,
        action: &str,
        target_type: &str,
        target_id: &str,
        target_name: &str,
        changes: serde_json::Value,
    ) -> NewAuditEvent {
        audit_event(
            &self.caller.actor(),
            &self.caller.meta,
            self.state.clock.now(),
            action,
            (target_type, target_id, target_name),
            changes,
        )
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
        if !caller.principal.may_access(&org_id) {
            return Err(ApiError::NotFound);
        }
        let org = state.store.find_org(&org_id).await?.ok_or(ApiError::NotFound)?;
        Ok(Self { caller, org, state: state.clone() })
    }
}

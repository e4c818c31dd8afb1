//! `GET /v1/authorize`: the gateway's decision for a proxy the platform already runs (nginx
//! `auth_request`, Traefik `ForwardAuth`, Envoy `ext_authz`). The original method and URI come from
//! the proxy's headers; the body never does, so checks that need it are refused unless a trusted
//! proxy vouches for the body's hash.

use std::borrow::Cow;

use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use keyward_core::policy::{self, VerifyRequest};
use keyward_core::signing::{SignedRequest, EMPTY_BODY_SHA256};
use keyward_core::Code;

use super::proxy::credential;
use super::routes::RouteMatch;
use crate::answer::{self, Door, Refusal};
use crate::app::AppState;
use crate::net;

const BODY_SHA256: &str = "x-keyward-body-sha256";

/// The request the proxy asks about: nginx's `X-Original-*`, Traefik's `X-Forwarded-*`, or
/// (Envoy) this request's own method and URI.
fn original(request: &Parts) -> (Cow<'_, str>, Cow<'_, str>) {
    let header = |name: &str| request.headers.get(name).and_then(|value| value.to_str().ok());
    let method = header("x-original-method")
        .or_else(|| header("x-forwarded-method"))
        .map_or_else(|| Cow::Borrowed(request.method.as_str()), |m| Cow::Owned(m.to_ascii_uppercase()));
    let uri = header("x-original-uri")
        .or_else(|| header("x-forwarded-uri"))
        .map_or_else(|| Cow::Borrowed(request.uri.path_and_query().map_or("/", |pq| pq.as_str())), Cow::Borrowed);
    (method, uri)
}

/// The gateway's decision for a forward-auth proxy: 200 with `X-Keyward-Key-Id`, `-Org-Id` and
/// `-Channels`, or the refusal's status as problem+json. The key comes in `Authorization: Bearer`
/// or `X-API-Key`; the original request in `X-Original-Method`/`X-Original-URI` (nginx) or
/// `X-Forwarded-Method`/`X-Forwarded-Uri` (Traefik).
#[utoipa::path(get, path = "/v1/authorize", tag = "verify", security(()),
    params(
        ("X-Original-Method" = Option<String>, Header, description = "The original request's method (nginx)"),
        ("X-Original-URI" = Option<String>, Header, description = "The original request target (nginx)"),
        ("X-Forwarded-Method" = Option<String>, Header, description = "The original request's method (Traefik)"),
        ("X-Forwarded-Uri" = Option<String>, Header, description = "The original request target (Traefik)"),
        ("X-Keyward-Body-SHA256" = Option<String>, Header, description = "Hex SHA-256 of the original body, from a trusted proxy only"),
    ),
    responses((status = 200, description = "Allowed: the identity is in the X-Keyward-* headers"),
              (status = 401, body = crate::problem::Problem), (status = 403, body = crate::problem::Problem),
              (status = 429, body = crate::problem::Problem)))]
pub async fn authorize(State(state): State<AppState>, request: Request) -> Response {
    // The body is never read: only what the proxy sent in headers counts.
    let (parts, _body) = request.into_parts();
    match decide(&state, &parts).await {
        Ok(response) => response,
        Err(refusal) => refusal.into_response(),
    }
}

async fn decide(state: &AppState, request: &Parts) -> Result<Response, Refusal> {
    let Some(gateway) = &state.config.gateway else {
        return Err(Refusal::new(Code::Forbidden, "No gateway route table is configured"));
    };
    let (method, uri) = original(request);
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| Refusal::new(Code::ValidationFailed, "The original method is not an HTTP method"))?;
    let path = uri.split('?').next().unwrap_or("/");
    let route = match gateway.routes.find(&method, path) {
        RouteMatch::Found { route } => route,
        RouteMatch::OtherMethod | RouteMatch::NotFound => {
            return Err(Refusal::new(Code::Forbidden, "No route of this gateway allows this method and path"));
        }
    };
    if route.needs_body() {
        return Err(Refusal::new(
            Code::Forbidden,
            "This route checks the sender or channels in the request body: put the keyward gateway in front of it",
        ));
    }
    let headers = &request.headers;
    let key = credential(headers)?.unwrap_or_default();
    let peer = net::peer_ip(request);
    let trusted = peer.is_some_and(|ip| state.config.trusted_proxies.iter().any(|net| policy::net_contains(net, ip)));
    let body_sha256 = if trusted { header_text(headers, BODY_SHA256) } else { None };
    let verifier = &state.verifier;
    let needs_signature = match verifier.find(key).await {
        Ok(Some(cached)) => cached.policy.signing_key.is_some(),
        Ok(None) => false,
        Err(_) => {
            return Err(Refusal::new(Code::ServiceUnavailable, "The key store is unavailable; try again shortly"))
        }
    };
    if needs_signature && body_sha256.is_none() && !method_has_no_body(&method) {
        return Err(Refusal::new(
            Code::Forbidden,
            "This key signs its requests and the body is not here to check: a trusted proxy must send X-Keyward-Body-SHA256",
        ));
    }
    let signature = header_text(headers, &state.config.signature_header).map(|signature| SignedRequest {
        timestamp: header_text(headers, &state.config.timestamp_header).unwrap_or_default(),
        method: method.as_str(),
        path_and_query: &uri,
        body_sha256: body_sha256.unwrap_or(EMPTY_BODY_SHA256),
        signature,
    });
    let scopes: Vec<Cow<'_, str>> = route.scopes.iter().map(|scope| Cow::Borrowed(scope.as_str())).collect();
    let check = VerifyRequest {
        scopes: &scopes,
        client_ip: net::client_ip(peer, headers, &state.config.trusted_proxies),
        sender: None,
        channels: None,
        signature,
    };
    let started = std::time::Instant::now();
    let door = verifier
        .verify(key, &check, |outcome| {
            let code = answer::code(&outcome);
            state.verify_metrics.record(code, started);
            state.refusal_log.record(code, key, &state.config.key_format, check.client_ip, state.clock.as_ref());
            answer::door(outcome)
        })
        .await;
    match door {
        Door::Pass(identity) => {
            let mut response = StatusCode::OK.into_response();
            answer::identity_headers(response.headers_mut(), &identity);
            answer::rate_limit_headers(response.headers_mut(), identity.rate);
            Ok(response)
        }
        Door::Refuse(refusal) => Err(refusal),
    }
}

/// A GET, HEAD, OPTIONS or DELETE sent with a signature has signed the empty body.
fn method_has_no_body(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE)
}

fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

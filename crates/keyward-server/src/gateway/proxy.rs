//! The reverse proxy: each request is matched to a route (deny by default), verified with the
//! key, the caller's IP, the signature over the exact body bytes, the route's scopes and the
//! sender and channels read from the body, then forwarded to the upstream with the key and
//! signature headers removed and the `X-Keyward-*` identity set. Bodies stream both ways; a
//! request body is buffered only when a check needs it.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt as _;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use keyward_core::policy::{VerifyRequest, MAX_REQUESTED_CHANNELS};
use keyward_core::signing::{body_sha256_hex, SignedRequest, EMPTY_BODY_SHA256};
use keyward_core::Code;

use super::routes::{GatewayConfig, Route, RouteMatch};
use crate::answer::{self, Door, Identity, Refusal};
use crate::app::AppState;
use crate::net;

/// The gateway's shared state: the app (verifier, config), its route table, a pooled client.
#[derive(Debug)]
pub struct Gateway {
    state: AppState,
    config: GatewayConfig,
    client: Client<HttpConnector, Body>,
    signature_header: HeaderName,
    timestamp_header: HeaderName,
}

impl Gateway {
    pub fn new(state: AppState, config: GatewayConfig) -> Arc<Self> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(256).build(connector);
        let header = |name: &str| HeaderName::try_from(name).unwrap_or(HeaderName::from_static("x-keyward-signature"));
        Arc::new(Self {
            signature_header: header(&state.config.signature_header),
            timestamp_header: header(&state.config.timestamp_header),
            state,
            config,
            client,
        })
    }
}

/// Every method and path goes to one handler: the route table, not axum's router, decides.
pub fn router(gateway: Arc<Gateway>) -> axum::Router {
    axum::Router::new().fallback(proxy).with_state(gateway)
}

/// The header a key may come in instead of `Authorization: Bearer`.
pub const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// The key of a request: `Authorization: Bearer …` or `X-API-Key`, exactly one of them.
pub fn credential(headers: &HeaderMap) -> Result<Option<&str>, Refusal> {
    let mut found = None;
    let bearer = headers.get_all(header::AUTHORIZATION).iter().filter_map(|value| {
        let text = value.to_str().ok()?;
        text.strip_prefix("Bearer ").or_else(|| text.strip_prefix("bearer "))
    });
    for key in bearer.chain(headers.get_all(X_API_KEY).iter().filter_map(|value| value.to_str().ok())) {
        if found.replace(key).is_some() {
            return Err(Refusal::new(
                Code::ValidationFailed,
                "A request carries one credential: Authorization: Bearer or X-API-Key, once",
            ));
        }
    }
    Ok(found)
}

const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Headers that belong to one connection, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

async fn proxy(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    match forward(&gateway, request).await {
        Ok(response) => response,
        Err(refusal) => refusal.into_response(),
    }
}

async fn forward(gateway: &Gateway, request: Request) -> Result<Response, Refusal> {
    let (mut parts, body) = request.into_parts();
    let route = match gateway.config.routes.find(&parts.method, parts.uri.path()) {
        RouteMatch::Found { route } => route,
        RouteMatch::OtherMethod | RouteMatch::NotFound => {
            return Err(Refusal::new(Code::Forbidden, "No route of this gateway allows this method and path"));
        }
    };
    let verifier = &gateway.state.verifier;
    // A key that requires HMAC needs the body hashed, so find it before touching the body; the
    // verification below reuses what was found.
    let key = credential(&parts.headers)?.unwrap_or_default();
    let found = verifier.find(key).await;
    let needs_signature = matches!(&found, Ok(Some(cached)) if cached.policy.signing_key.is_some());

    let (body, buffered) = if route.needs_body() || needs_signature {
        let bytes = read_body(body, gateway.config.max_body_bytes).await?;
        (Body::from(bytes.clone()), Some(bytes))
    } else {
        (body, None)
    };
    let document = match (&buffered, route.needs_body()) {
        (Some(bytes), true) => Some(json_body(route, bytes)?),
        _ => None,
    };
    let (sender, channels) = match &document {
        Some(document) => read_pointers(route, document)?,
        None => (None, None),
    };
    let body_sha256: Cow<'_, str> =
        buffered.as_ref().map_or(Cow::Borrowed(EMPTY_BODY_SHA256), |bytes| Cow::Owned(body_sha256_hex(bytes)));
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str()).to_owned();
    let signature = header_text(&parts.headers, &gateway.signature_header).map(|signature| SignedRequest {
        timestamp: header_text(&parts.headers, &gateway.timestamp_header).unwrap_or_default(),
        method: parts.method.as_str(),
        path_and_query: &target,
        body_sha256: &body_sha256,
        signature,
    });
    let peer = net::peer_ip(&parts);
    let client_ip = net::client_ip(peer, &parts.headers, &gateway.state.config.trusted_proxies);
    let scopes: Vec<Cow<'_, str>> = route.scopes.iter().map(|scope| Cow::Borrowed(scope.as_str())).collect();
    let check = VerifyRequest {
        scopes: &scopes,
        client_ip,
        sender: sender.as_deref(),
        channels: channels.as_deref(),
        signature,
    };
    let started = std::time::Instant::now();
    let identity = verifier
        // Decided after the body arrived, not when the key was found: a key that expired, or a
        // signature that aged past its tolerance, during a slow upload does not pass.
        .verify_found(found, verifier.now(), &check, |outcome| {
            let code = answer::code(&outcome);
            gateway.state.verify_metrics.record(code, started);
            let state = &gateway.state;
            state.refusal_log.record(code, key, &state.config.key_format, client_ip, state.clock.as_ref());
            answer::door(outcome)
        })
        .await;
    let identity = match identity {
        Door::Pass(identity) => identity,
        Door::Refuse(refusal) => return Err(refusal),
    };
    drop(scopes);
    let uri = upstream_uri(&gateway.config, &target)?;
    let scheme = if parts.extensions.get::<net::OverTls>().is_some() { "https" } else { "http" };
    let hop = Hop {
        peer,
        peer_trusted: peer.is_some_and(|ip| net::is_trusted(ip, &gateway.state.config.trusted_proxies)),
        scheme,
    };
    prepare_headers(gateway, &mut parts.headers, &identity, hop);
    parts.uri = uri;
    let upstream = Request::from_parts(parts, body);
    send(gateway, upstream, &identity).await
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, Refusal> {
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(Refusal::new(
            Code::PayloadTooLarge,
            format!("The request body is larger than this gateway checks ({limit} bytes)"),
        )),
        Err(_) => Err(Refusal::new(Code::ValidationFailed, "The request body could not be read")),
    }
}

fn json_body(route: &Route, bytes: &[u8]) -> Result<serde_json::Value, Refusal> {
    serde_json::from_slice(bytes).map_err(|_| {
        let pointers: Vec<&str> = [route.sender.as_ref(), route.channels.as_ref()]
            .into_iter()
            .flatten()
            .map(super::routes::JsonPointer::as_str)
            .collect();
        Refusal::new(
            Code::ValidationFailed,
            format!("This route reads {} from the request body, which must be JSON", pointers.join(" and ")),
        )
    })
}

type Pointed<'d> = (Option<Cow<'d, str>>, Option<Vec<Cow<'d, str>>>);

/// The sender (a string) and the channels (a list of strings) at the route's pointers.
fn read_pointers<'d>(route: &Route, document: &'d serde_json::Value) -> Result<Pointed<'d>, Refusal> {
    let missing = |pointer: &str, what: &str| {
        Refusal::new(Code::ValidationFailed, format!("The request body has no {what} at {pointer}"))
    };
    let sender = match &route.sender {
        Some(pointer) => match pointer.find(document).and_then(serde_json::Value::as_str) {
            Some(sender) => Some(Cow::Borrowed(sender)),
            None => return Err(missing(pointer.as_str(), "sender (a string)")),
        },
        None => None,
    };
    let channels = match &route.channels {
        Some(pointer) => {
            let list = pointer.find(document).and_then(serde_json::Value::as_array);
            let slugs: Option<Vec<Cow<'d, str>>> =
                list.and_then(|list| list.iter().map(|v| v.as_str().map(Cow::Borrowed)).collect());
            match slugs {
                Some(slugs) if slugs.len() > MAX_REQUESTED_CHANNELS => {
                    return Err(Refusal::new(
                        Code::ValidationFailed,
                        format!("The request names more than {MAX_REQUESTED_CHANNELS} channels at {pointer}"),
                    ));
                }
                Some(slugs) => Some(slugs),
                None => return Err(missing(pointer.as_str(), "channels (a list of strings)")),
            }
        }
        None => None,
    };
    Ok((sender, channels))
}

fn header_text<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

fn upstream_uri(config: &GatewayConfig, target: &str) -> Result<Uri, Refusal> {
    let upstream = &config.upstream;
    let text = format!("http://{}{}{}", upstream.authority, upstream.base_path, target);
    text.parse().map_err(|_| Refusal::new(Code::ValidationFailed, "The request target cannot be forwarded"))
}

/// The connection the request came in on, as the upstream is told of it.
#[derive(Debug, Clone, Copy)]
struct Hop {
    peer: Option<IpAddr>,
    /// A trusted proxy's `X-Forwarded-Proto` is passed on: it saw the client's scheme.
    peer_trusted: bool,
    /// `https` when the gateway's own listener terminated TLS.
    scheme: &'static str,
}

/// Removes what must not reach the upstream (hop-by-hop headers, the key, the signature, any
/// identity the client made up) and adds the verified identity, `X-Forwarded-For`,
/// `X-Forwarded-Proto` and a trace.
fn prepare_headers(gateway: &Gateway, headers: &mut HeaderMap, identity: &Identity, hop: Hop) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|text| text.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&listed) {
        headers.remove(name);
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|text| text.starts_with("Bearer ") || text.starts_with("bearer "));
    if bearer {
        headers.remove(header::AUTHORIZATION);
    }
    for name in [
        X_API_KEY,
        gateway.signature_header.clone(),
        gateway.timestamp_header.clone(),
        answer::KEY_ID,
        answer::ORG_ID,
        answer::CHANNELS,
    ] {
        headers.remove(name);
    }
    answer::identity_headers(headers, identity);
    if !(hop.peer_trusted && headers.contains_key(X_FORWARDED_PROTO)) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(hop.scheme));
    }
    if let Some(peer) = hop.peer {
        let forwarded = match headers.get("x-forwarded-for").and_then(|value| value.to_str().ok()) {
            Some(earlier) => format!("{earlier}, {peer}"),
            None => peer.to_string(),
        };
        if let Ok(value) = HeaderValue::from_str(&forwarded) {
            headers.insert("x-forwarded-for", value);
        }
    }
    let traceparent = headers.get("traceparent").and_then(|value| value.to_str().ok()).map(str::to_owned);
    if crate::telemetry::valid_traceparent(traceparent.as_deref()).is_none() {
        let started = format!("00-{}-{}-01", crate::telemetry::trace_id(&HeaderMap::new()), span_id());
        if let Ok(value) = HeaderValue::from_str(&started) {
            headers.insert("traceparent", value);
        }
    }
}

fn span_id() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

async fn send(gateway: &Gateway, upstream: Request, identity: &Identity) -> Result<Response, Refusal> {
    let method = upstream.method().clone();
    let answer = tokio::time::timeout(gateway.config.response_timeout, gateway.client.request(upstream)).await;
    let response = match answer {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => return Err(upstream_failure(&error)),
        Err(_) => {
            return Err(Refusal::new(
                Code::UpstreamTimeout,
                format!(
                    "The upstream did not answer {method} within {} ms",
                    gateway.config.response_timeout.as_millis()
                ),
            ));
        }
    };
    let (mut parts, body) = response.into_parts();
    for name in &HOP_BY_HOP {
        parts.headers.remove(name);
    }
    answer::rate_limit_headers(&mut parts.headers, identity.rate);
    Ok(Response::from_parts(parts, Body::new(body)))
}

/// Refused or unreachable: 502; a connect that timed out: 504. The cause is logged, not sent.
fn upstream_failure(error: &hyper_util::client::legacy::Error) -> Refusal {
    let timed_out = std::iter::successors(std::error::Error::source(error), |e| e.source())
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        .any(|e| e.kind() == std::io::ErrorKind::TimedOut)
        || format!("{error:?}").contains("ConnectTimeout");
    tracing::warn!(error = %error, connect = error.is_connect(), "upstream request failed");
    if timed_out {
        Refusal::new(Code::UpstreamTimeout, "The upstream did not accept the connection in time")
    } else {
        Refusal::new(Code::UpstreamUnavailable, "The upstream is unreachable")
    }
}

/// Binds nothing: serves the gateway on `listener` until `shutdown` resolves and the drain
/// passes, on the main listener's loop and rules ([`net::serve_connections`],
/// [`net::ConnectionRules::from_config`]): the header read timeout, the per-address cap, hyper's
/// own refusals as problem+json, HTTPS with HSTS over `tls` (the main listener's, so a SIGHUP
/// reload reaches both), and the drain that answers what it has read.
pub async fn serve(
    listener: tokio::net::TcpListener,
    gateway: Arc<Gateway>,
    tls: Option<Arc<crate::tls::Tls>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let rules = net::ConnectionRules::from_config(&gateway.state.config, tls);
    // `/readyz` lives on the main listener, which turns it 503 on the same signal.
    net::serve_connections(listener, router(gateway), None, rules, shutdown, || {}).await;
}

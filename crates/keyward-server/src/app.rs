//! Application state and the route table: every route of the API is in [`build_app`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::FutureExt as _;
use keyward_core::keyring::Keyring;
use keyward_core::Code;
use keyward_runtime::shared::SharedHealth;
use keyward_runtime::{Clock, SharedState, Verifier};
use keyward_store::Store;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::api::{audit, keys, members, orgs, session};
use crate::config::Config;
use crate::extract::MAX_BODY_BYTES;
use crate::master_key::{MasterKeys, OperatorToken};
use crate::problem::{problem_response, ApiError};
use crate::telemetry::{self, RefusalLog, VerifyMetrics};
use crate::throttle::LoginThrottle;
use crate::tls::Tls;
use crate::{console, gateway, net, openapi, verify};

/// What the binary hands the server.
#[derive(Debug)]
pub struct Deps {
    pub config: Config,
    pub store: Arc<dyn Store>,
    /// The master keys, the database's current version current ([`crate::master_key::reconcile`]).
    pub keyring: Keyring,
    pub clock: Arc<dyn Clock>,
    /// The operator token's peppered hash (the token itself is never kept).
    pub operator_token: OperatorToken,
    /// Rate limits and replays shared with other nodes (Redis); `None`: this node alone.
    pub shared: Option<SharedState>,
    /// This node's name in `/readyz` (several nodes behind one load balancer).
    pub node_id: String,
}

/// Shared application state: configuration, the store, the verifier and its caches.
#[derive(Debug)]
pub struct Keyward {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub verifier: Arc<Verifier>,
    pub clock: Arc<dyn Clock>,
    pub operator_token: OperatorToken,
    /// Where the keyring is read again from, for rotations ([`crate::master_key`]).
    pub master_keys: MasterKeys,
    pub verify_metrics: VerifyMetrics,
    pub refusal_log: RefusalLog,
    pub login_throttle: LoginThrottle,
    pub node_id: String,
    /// Set on the shutdown signal: `/readyz` answers 503 while requests are still served.
    pub draining: std::sync::atomic::AtomicBool,
}

pub type AppState = Arc<Keyward>;

impl Keyward {
    pub fn new(deps: Deps) -> Arc<Self> {
        // The recorder must exist before the verifier registers its counters.
        let verify_metrics = VerifyMetrics::new();
        let verifier_config =
            keyward_runtime::VerifierConfig { prerender: Some(verify::prerender), ..deps.config.verifier_config() };
        let verifier = Verifier::new(
            verifier_config,
            deps.keyring,
            Arc::clone(&deps.store),
            Arc::clone(&deps.clock),
            deps.shared.unwrap_or_else(|| {
                SharedState::local(deps.clock.now().unix_timestamp(), deps.config.signature_tolerance_seconds)
            }),
        );
        let refusal_log = RefusalLog::new(deps.config.refusal_log_per_second);
        Arc::new(Self {
            config: deps.config,
            store: deps.store,
            verifier: Arc::new(verifier),
            clock: deps.clock,
            operator_token: deps.operator_token,
            master_keys: MasterKeys::default(),
            verify_metrics,
            refusal_log,
            login_throttle: LoginThrottle::default(),
            node_id: deps.node_id,
            draining: std::sync::atomic::AtomicBool::new(false),
        })
    }
}

pub fn build_app(state: AppState) -> Router {
    let api = Router::new()
        .route("/v1/authorize", get(gateway::authorize::authorize))
        .route("/v1/orgs", post(orgs::create))
        .route("/v1/orgs/{org}/phone-numbers", post(orgs::add_phone_number).get(orgs::list_phone_numbers))
        .route("/v1/orgs/{org}/channels", post(orgs::add_channel).get(orgs::list_channels))
        .route("/v1/orgs/{org}/keys", post(keys::create).get(keys::list))
        .route("/v1/orgs/{org}/keys/{id}", get(keys::get).patch(keys::update))
        .route("/v1/orgs/{org}/keys/{id}/revoke", post(keys::revoke))
        .route("/v1/orgs/{org}/keys/{id}/roll", post(keys::roll))
        .route("/v1/keys/lookup", post(keys::lookup))
        .route("/v1/orgs/{org}/members", post(members::add).get(members::list))
        .route("/v1/orgs/{org}/members/{id}", axum::routing::delete(members::remove))
        .route("/v1/orgs/{org}/audit", get(audit::list))
        .route("/v1/session", post(session::create).delete(session::delete))
        .layer(SetResponseHeaderLayer::overriding(header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi::serve))
        .merge(api)
        .merge(console::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(state.config.verify_access_log, telemetry::access_log))
        .layer(CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| panicked()))
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        // Added after the layers, which it does without: see `verify::route`.
        .route("/v1/verify", verify::route())
        .with_state(state)
}

/// Serves plain HTTP until `shutdown` resolves and the drain passes ([`net::serve_connections`]),
/// then stops the background work after a last flush of pending last-used times.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_with_tls(listener, state, None, shutdown).await
}

/// [`serve`], over HTTPS when `tls` is given (`tls_cert` / `tls_key`).
pub async fn serve_with_tls(
    listener: TcpListener,
    state: AppState,
    tls: Option<Arc<Tls>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_with_gateway(listener, state, tls, None, shutdown).await
}

/// [`serve_with_tls`], and the gateway (SPEC §6) on its own listener beside it when given: both
/// on the same connection rules and `tls`, both draining on the one `shutdown`. The background
/// work stops once both have finished, since a gateway request still running uses the verifier.
pub async fn serve_with_gateway(
    listener: TcpListener,
    state: AppState,
    tls: Option<Arc<Tls>>,
    gateway: Option<(TcpListener, Arc<gateway::proxy::Gateway>)>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let background = state.verifier.start_background().await?;
    let (stop_master_keys, master_keys_stopped) = tokio::sync::watch::channel(false);
    let master_keys = tokio::spawn(crate::master_key::follow(Arc::clone(&state), master_keys_stopped));
    // Histogram samples wait in the recorder until drained: drain them on a schedule, not only
    // when someone scrapes /metrics, so a node nobody scrapes does not grow without bound.
    let upkeep = tokio::spawn(async {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            telemetry::prometheus().run_upkeep();
        }
    });
    let shutdown = shutdown.shared();
    let rules = net::ConnectionRules::from_config(&state.config, tls.clone());
    let app = build_app(Arc::clone(&state));
    let draining = Arc::clone(&state);
    let verify = verify::VerifyDoor::new(Arc::clone(&state));
    let api = net::serve_connections(listener, app, Some(verify), rules, shutdown.clone(), move || {
        draining.draining.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let gateway = async move {
        if let Some((listener, gateway)) = gateway {
            gateway::proxy::serve(listener, gateway, tls, shutdown).await;
        }
    };
    tokio::join!(api, gateway);
    upkeep.abort();
    let _ = stop_master_keys.send(true);
    let _ = master_keys.await;
    background.shutdown().await;
    Ok(())
}

async fn healthz() -> &'static str {
    "ok"
}

/// Ready when the database answers and cached keys are trusted (the change feed is confirmed);
/// the JSON says which part is not, and how far behind the feed is.
async fn readyz(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    let database = matches!(tokio::time::timeout(Duration::from_secs(1), state.store.ping()).await, Ok(Ok(())));
    let feed = state.verifier.feed_status();
    let redis = match state.verifier.shared_health() {
        SharedHealth::Local => "none",
        SharedHealth::Shared => "ok",
        SharedHealth::Fallback => "fallback",
    };
    let draining = state.draining.load(std::sync::atomic::Ordering::SeqCst);
    let ready = database && feed.fresh && !draining;
    let status = match (ready, draining) {
        (true, _) => "ready",
        (false, true) => "draining",
        (false, false) => "unavailable",
    };
    let body = serde_json::json!({
        "status": status,
        "node_id": state.node_id,
        "database": if database { "ok" } else { "unreachable" },
        "redis": redis,
        "feed": { "lag_ms": feed.lag_ms, "listening": feed.listening, "fresh": feed.fresh },
    });
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, axum::Json(body)).into_response()
}

async fn metrics() -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"))], telemetry::prometheus().render())
        .into_response()
}

async fn not_found() -> Response {
    problem_response(StatusCode::NOT_FOUND, Code::NotFound, "No such endpoint".to_owned(), Vec::new())
}

/// The answer to a request whose handler panicked.
pub(crate) fn panicked() -> Response {
    ApiError::Internal(anyhow::anyhow!("handler panicked")).into_response()
}

pub(crate) async fn method_not_allowed() -> Response {
    problem_response(
        StatusCode::METHOD_NOT_ALLOWED,
        Code::NotFound,
        "This endpoint does not accept that method".to_owned(),
        Vec::new(),
    )
}

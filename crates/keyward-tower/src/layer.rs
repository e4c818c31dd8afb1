//! [`KeywardLayer`] and its [`KeywardService`]: take the credential, ask the verifier (remote or
//! embedded), then call the inner service with the [`VerifiedKey`] or answer the refusal.

use std::borrow::Cow;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::ConnectInfo;
use axum::http::{HeaderName, Request};
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;
use keyward_server::answer::{self, Refusal};
use keyward_server::gateway::proxy::credential;

use crate::embedded::Embedded;
use crate::remote::Remote;
use crate::{Error, VerifiedKey};

/// Verifies the caller's API key before the inner service runs. Build one with
/// [`KeywardLayer::remote`] or [`KeywardLayer::embedded`], then say what the routes need with
/// [`KeywardLayer::require_scope`]. Cloning is cheap (one shared verifier).
#[derive(Debug, Clone)]
pub struct KeywardLayer {
    door: Arc<Door>,
}

/// What every request through one layer is checked with.
#[derive(Debug, Clone)]
struct Door {
    mode: Mode,
    scopes: Vec<Cow<'static, str>>,
    trusted_proxies: Vec<IpNet>,
}

#[derive(Debug, Clone)]
enum Mode {
    Remote(Arc<Remote>),
    Embedded(Embedded),
}

impl KeywardLayer {
    /// Asks the keyward server at `base_url` (`http://host:port`) on every request, with the
    /// operator token. Plain HTTP only: keep keyward on the same host or a private network.
    /// Connections are pooled; a connection takes at most 1 s and an answer 2 s
    /// ([`KeywardLayer::timeouts`]), past which the caller gets 503.
    pub fn remote(base_url: &str, operator_token: &str) -> Result<Self, Error> {
        let remote = Remote::new(base_url, operator_token, Duration::from_secs(1), Duration::from_secs(2))?;
        Ok(Self::with_mode(Mode::Remote(Arc::new(remote)), Vec::new()))
    }

    /// Verifies in this process with an [`Embedded`] verifier (started once, shared by every
    /// layer made from it). Trusted proxies start as the keyward config file's.
    pub fn embedded(verifier: Embedded) -> Self {
        let trusted = verifier.trusted_proxies().to_vec();
        Self::with_mode(Mode::Embedded(verifier), trusted)
    }

    fn with_mode(mode: Mode, trusted_proxies: Vec<IpNet>) -> Self {
        Self { door: Arc::new(Door { mode, scopes: Vec::new(), trusted_proxies }) }
    }

    /// A scope every request must hold (`FORBIDDEN` otherwise); call again for more, all required.
    #[must_use]
    pub fn require_scope(mut self, scope: impl Into<Cow<'static, str>>) -> Self {
        Arc::make_mut(&mut self.door).scopes.push(scope.into());
        self
    }

    /// Peers whose `X-Forwarded-For` is believed (a load balancer in front of this service); the
    /// client IP is then the rightmost entry that is not itself a trusted proxy, as in keyward.
    #[must_use]
    pub fn trusted_proxies(mut self, proxies: impl IntoIterator<Item = IpNet>) -> Self {
        Arc::make_mut(&mut self.door).trusted_proxies = proxies.into_iter().collect();
        self
    }

    /// Remote mode: how long a connection to keyward may take, and a whole verification. Past
    /// either, the caller gets 503. No effect on an embedded layer.
    #[must_use]
    pub fn timeouts(mut self, connect: Duration, answer: Duration) -> Self {
        let door = Arc::make_mut(&mut self.door);
        if let Mode::Remote(remote) = &door.mode {
            door.mode = Mode::Remote(Arc::new(remote.with_timeouts(connect, answer)));
        }
        self
    }
}

impl<S> tower::Layer<S> for KeywardLayer {
    type Service = KeywardService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        KeywardService { inner, door: Arc::clone(&self.door) }
    }
}

/// The service [`KeywardLayer`] wraps around `S`.
#[derive(Debug, Clone)]
pub struct KeywardService<S> {
    inner: S,
    door: Arc<Door>,
}

impl Door {
    /// The decision for one request. The key and client address are read from `parts`.
    async fn check(&self, parts: &axum::http::request::Parts) -> Result<VerifiedKey, Refusal> {
        let key = credential(&parts.headers)?.unwrap_or_default();
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip());
        let client_ip: Option<IpAddr> = keyward_server::net::client_ip(peer, &parts.headers, &self.trusted_proxies);
        match &self.mode {
            Mode::Embedded(embedded) => embedded.verify(key, &self.scopes, client_ip).await,
            Mode::Remote(remote) => remote.verify(key, &self.scopes, client_ip).await,
        }
    }
}

const RATE_LIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, B, ResBody> tower::Service<Request<B>> for KeywardService<S>
where
    S: tower::Service<Request<B>, Response = axum::http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The instance polled ready goes with this request; the clone serves the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let door = Arc::clone(&self.door);
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let key = match door.check(&parts).await {
                Ok(key) => key,
                Err(refusal) => return Ok(refusal.into_response()),
            };
            let rate = key.rate_limit();
            parts.extensions.insert(key);
            let response = inner.call(Request::from_parts(parts, body)).await?;
            let mut response = response.map(Body::new);
            // The handler's own rate-limit headers, if it sets them, win.
            if !response.headers().contains_key(RATE_LIMIT_LIMIT) {
                answer::rate_limit_headers(response.headers_mut(), rate.into());
            }
            Ok(response)
        })
    }
}

//! [`KeywardLayer`] and its [`KeywardService`]: take the credential, ask the verifier (remote or
//! embedded), then call the inner service with the [`VerifiedKey`] or answer the refusal.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderMap, HeaderName, Request};
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;
use keyward_server::answer::{self, Refusal};
use keyward_server::gateway::proxy::credential;

use pin_project_lite::pin_project;

use crate::embedded::Embedded;
use crate::remote::{Remote, RemoteBuilder};
use crate::{Error, RateLimit, VerifiedKey};

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
    /// Asks the keyward server at `base_url` (`http://host:port` or `https://host`) on every
    /// request, with the operator token; over `https://`, keyward's certificate must chain to
    /// one of the system's trusted roots. Connections are pooled; a connection takes at most
    /// 1 s and an answer 2 s, past which the caller gets 503. [`KeywardLayer::remote_builder`]
    /// sets those, or a private CA.
    pub fn remote(base_url: &str, operator_token: &str) -> Result<Self, Error> {
        Self::remote_builder(base_url, operator_token).build()
    }

    /// [`KeywardLayer::remote`] with settings: timeouts, the CA that signed keyward's
    /// certificate ([`RemoteBuilder::add_root_certificate`]), whether the system's roots count.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), keyward_tower::Error> {
    /// # let operator_token = "kwop_…";
    /// let ca = std::fs::read("/etc/keyward/ca.pem").expect("the CA file");
    /// let layer = keyward_tower::KeywardLayer::remote_builder("https://keyward.internal:8443", operator_token)
    ///     .add_root_certificate(&ca)
    ///     .build()?
    ///     .require_scope("messages:send");
    /// # Ok(()) }
    /// ```
    pub fn remote_builder(base_url: &str, operator_token: &str) -> RemoteBuilder {
        RemoteBuilder::new(base_url, operator_token)
    }

    pub(crate) fn from_remote(remote: Remote) -> Self {
        Self::with_mode(Mode::Remote(Arc::new(remote)), Vec::new())
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
    /// The decision for one request when it needs no waiting (an embedded layer and a cached
    /// key); `None` when it must be awaited with [`Door::check`].
    fn check_now(&self, headers: &HeaderMap, extensions: &Extensions) -> Option<Result<VerifiedKey, Refusal>> {
        let Mode::Embedded(embedded) = &self.mode else { return None };
        let key = match credential(headers) {
            Ok(key) => key.unwrap_or_default(),
            Err(refusal) => return Some(Err(refusal)),
        };
        embedded.verify_now(key, &self.scopes, self.client_ip(headers, extensions))
    }

    /// The decision for one request. The key and client address are read from its headers and
    /// extensions.
    async fn check(&self, headers: &HeaderMap, extensions: &Extensions) -> Result<VerifiedKey, Refusal> {
        let key = credential(headers)?.unwrap_or_default();
        let client_ip = self.client_ip(headers, extensions);
        match &self.mode {
            Mode::Embedded(embedded) => embedded.verify(key, &self.scopes, client_ip).await,
            Mode::Remote(remote) => remote.verify(key, &self.scopes, client_ip).await,
        }
    }

    fn client_ip(&self, headers: &HeaderMap, extensions: &Extensions) -> Option<IpAddr> {
        let peer = extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip());
        keyward_server::net::client_ip(peer, headers, &self.trusted_proxies)
    }
}

const RATE_LIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A verification that must wait (remote mode; a key the embedded cache does not hold), with
/// the request it holds until the decision.
type Waiting<B> = Pin<Box<dyn Future<Output = (Result<VerifiedKey, Refusal>, Request<B>)> + Send>>;

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
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The instance polled ready goes with this request; the clone serves the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        // A cached embedded verification is decided here and the inner service called at once:
        // nothing is boxed on that path. Otherwise the verification is awaited in the future.
        let state = match self.door.check_now(request.headers(), request.extensions()) {
            Some(Ok(key)) => {
                let rate = key.rate_limit();
                request.extensions_mut().insert(key);
                State::Calling { future: inner.call(request), rate }
            }
            Some(Err(refusal)) => State::Refused { response: Some(refusal.into_response()) },
            None => {
                let door = Arc::clone(&self.door);
                let waiting: Waiting<B> = Box::pin(async move {
                    let verdict = door.check(request.headers(), request.extensions()).await;
                    (verdict, request)
                });
                State::Waiting { waiting, inner: Some(inner) }
            }
        };
        ResponseFuture { state }
    }
}

pin_project! {
    /// The future of [`KeywardService`]: the inner service's answer with the `RateLimit-*`
    /// headers added, or the refusal.
    pub struct ResponseFuture<S, B>
    where
        S: tower::Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: tower::Service<Request<B>>,
    {
        Waiting { waiting: Waiting<B>, inner: Option<S> },
        Calling { #[pin] future: S::Future, rate: RateLimit },
        Refused { response: Option<Response> },
    }
}

impl<S, B> fmt::Debug for ResponseFuture<S, B>
where
    S: tower::Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Waiting { .. } => "verifying",
            State::Calling { .. } => "calling the inner service",
            State::Refused { .. } => "refused",
        };
        f.debug_struct("ResponseFuture").field("state", &state).finish()
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: tower::Service<Request<B>, Response = axum::http::Response<ResBody>>,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Output = Result<Response, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let calling = match self.as_mut().project().state.project() {
                StateProj::Waiting { waiting, inner } => {
                    let (verdict, mut request) = ready!(waiting.as_mut().poll(cx));
                    let key = match verdict {
                        Ok(key) => key,
                        Err(refusal) => return Poll::Ready(Ok(refusal.into_response())),
                    };
                    let rate = key.rate_limit();
                    request.extensions_mut().insert(key);
                    let Some(mut inner) = inner.take() else { panic!("ResponseFuture polled after completion") };
                    State::Calling { future: inner.call(request), rate }
                }
                StateProj::Calling { future, rate } => {
                    let response = ready!(future.poll(cx))?;
                    let mut response = response.map(Body::new);
                    // The handler's own rate-limit headers, if it sets them, win.
                    if !response.headers().contains_key(RATE_LIMIT_LIMIT) {
                        answer::rate_limit_headers(response.headers_mut(), (*rate).into());
                    }
                    return Poll::Ready(Ok(response));
                }
                StateProj::Refused { response } => {
                    let Some(response) = response.take() else { panic!("ResponseFuture polled after completion") };
                    return Poll::Ready(Ok(response));
                }
            };
            self.as_mut().project().state.set(calling);
        }
    }
}

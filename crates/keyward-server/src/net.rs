//! Connections and the caller's address. [`serve_connections`] is the listener loop (limits, TLS,
//! HSTS, drain on shutdown); [`client_ip`] is the connection's peer, or — only when that peer is a
//! trusted proxy — the rightmost `X-Forwarded-For` entry that is not itself a trusted proxy.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::Router;
use futures_util::task::AtomicWaker;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::rt::TokioIo;
use ipnet::IpNet;
use keyward_core::policy::net_contains;
use keyward_core::Code;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt as _;

use crate::verify::VerifyDoor;

/// Whether `ip` is one of the trusted proxies.
pub fn is_trusted(ip: IpAddr, trusted_proxies: &[IpNet]) -> bool {
    trusted_proxies.iter().any(|net| net_contains(net, ip))
}

pub fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, trusted_proxies: &[IpNet]) -> Option<IpAddr> {
    let is_trusted = |ip: IpAddr| is_trusted(ip, trusted_proxies);
    let peer = peer?;
    if !is_trusted(peer) {
        return Some(peer);
    }
    let mut client = peer;
    for value in headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(text) = value.to_str() else { return Some(client) };
        for entry in text.rsplit(',') {
            match entry.trim().parse::<IpAddr>() {
                Ok(ip) if is_trusted(ip) => client = ip,
                Ok(ip) => return Some(ip),
                // A garbled entry ends the trusted chain: use what we know.
                Err(_) => return Some(client),
            }
        }
    }
    Some(client)
}

/// `X-Forwarded-Proto: https`: what a TLS-terminating proxy says (believe it only from a trusted one).
pub fn forwarded_https(headers: &HeaderMap) -> bool {
    headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// In a request's extensions when it came over the listener's own TLS.
#[derive(Debug, Clone, Copy)]
pub struct OverTls;

/// Sent on every answer over TLS (or through a trusted proxy that says it terminated TLS).
pub const HSTS: &str = "max-age=63072000; includeSubDomains";

/// The TCP peer, when the server was started with connect info (not in `Router::oneshot` tests).
pub fn peer_ip(parts: &Parts) -> Option<IpAddr> {
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip())
}

/// How the listener treats connections: see [`serve_connections`].
#[derive(Debug, Clone)]
pub struct ConnectionRules {
    /// A request's headers must arrive within this, and an idle keep-alive connection closes after it.
    pub header_read_timeout: Duration,
    /// Open connections per client address on this listener; peers in `exempt` (trusted proxies)
    /// are not counted, and their `X-Forwarded-Proto: https` is believed (the answer then carries
    /// HSTS).
    pub max_per_ip: usize,
    pub exempt: Vec<IpNet>,
    /// After the shutdown signal: how long to keep accepting and serving (`/readyz` says 503).
    pub drain: Duration,
    /// HTTPS: each connection's handshake, in its own task, must end within `header_read_timeout`.
    pub tls: Option<Arc<crate::tls::Tls>>,
}

impl ConnectionRules {
    /// The config file's rules (`header_read_timeout_seconds`, `max_connections_per_ip`,
    /// `trusted_proxies`, `shutdown_drain_seconds`) over `tls` when given: every listener
    /// (the API's and the gateway's) is served on the same ones.
    pub fn from_config(config: &crate::config::Config, tls: Option<Arc<crate::tls::Tls>>) -> Self {
        Self {
            header_read_timeout: config.header_read_timeout,
            max_per_ip: config.max_connections_per_ip,
            exempt: config.trusted_proxies.clone(),
            drain: config.shutdown_drain,
            tls,
        }
    }
}

/// How a connection reached the app, which decides the HSTS header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    /// Plain HTTP from a client: nothing added.
    Plain,
    /// Plain HTTP from a trusted proxy: HSTS when it says `X-Forwarded-Proto: https`.
    Proxied,
    /// The listener's own TLS: HSTS on every answer.
    Tls,
}

/// After the drain, how long an open connection may still send one more request (answered with
/// `Connection: close`) before it is closed: a client that wrote a request just as the drain ended
/// gets its answer instead of a reset.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Requests still running after the listener closed get this long to finish.
const FINISH_LIMIT: Duration = Duration::from_secs(30);

/// The HTTP/1 listener loop. It replaces `axum::serve` for what that cannot do: a header read
/// timeout (which bounds the TLS handshake too), a cap on connections per client address,
/// problem+json bodies on the answers hyper writes itself (400, 414, 431), and a shutdown that
/// loses no request already sent:
///
/// 1. `shutdown` resolves: `on_drain` runs (`/readyz` turns 503) and every answer from then on
///    carries `Connection: close`, while the listener keeps accepting for `rules.drain`;
/// 2. the listener closes; each open connection may send one more request for
///    `CLOSE_LINGER`, answered with `Connection: close`, then it is closed once idle;
/// 3. this returns when every connection has finished (or `FINISH_LIMIT` passed).
pub async fn serve_connections(
    listener: TcpListener,
    app: Router,
    verify: Option<VerifyDoor>,
    rules: ConnectionRules,
    shutdown: impl Future<Output = ()> + Send,
    on_drain: impl FnOnce() + Send,
) {
    // No hyper timer: the header read timeout is `Connections`' sweep (see there why).
    let http = Arc::new(hyper::server::conn::http1::Builder::new());
    let closing = Arc::new(AtomicBool::new(false));
    let per_ip = PerIp::default();
    // Every connection task holds a receiver, never read: `closed()` resolves once all of them
    // are gone. The close itself is told through `connections`.
    let (all_done, alive) = watch::channel(());
    let connections = Arc::new(Connections::new(rules.header_read_timeout));
    let mut sweeps =
        tokio::time::interval((rules.header_read_timeout / SWEEPS_PER_TIMEOUT).max(Duration::from_millis(1)));
    sweeps.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut on_drain = Some(on_drain);
    let mut drain_ends: Option<tokio::time::Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let drained = async {
            match drain_ends {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let exempt = is_trusted(peer.ip(), &rules.exempt);
                    let slot = if exempt { None } else {
                        let Some(slot) = per_ip.take(peer.ip(), rules.max_per_ip) else {
                            // Over TLS a plain-text answer would only be garbage to the client.
                            if rules.tls.is_none() {
                                tokio::spawn(refuse_connection(stream));
                            }
                            continue;
                        };
                        Some(slot)
                    };
                    let _ = stream.set_nodelay(true);
                    let connection = Connection {
                        http: Arc::clone(&http),
                        app: app.clone(),
                        verify: verify.clone(),
                        closing: Arc::clone(&closing),
                        connections: Arc::clone(&connections),
                        _alive: alive.clone(),
                        _slot: slot,
                    };
                    match &rules.tls {
                        None => {
                            let transport = if exempt { Transport::Proxied } else { Transport::Plain };
                            tokio::spawn(connection.serve(stream, peer, transport));
                        }
                        Some(tls) => {
                            let acceptor = tls.acceptor();
                            tokio::spawn(connection.serve_tls(acceptor, stream, peer, rules.header_read_timeout));
                        }
                    }
                }
                // Out of file descriptors and the like: wait a little rather than spin.
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut shutdown, if drain_ends.is_none() => {
                tracing::info!(drain_seconds = rules.drain.as_secs_f64(), "draining: /readyz answers 503");
                closing.store(true, Ordering::SeqCst);
                if let Some(on_drain) = on_drain.take() {
                    on_drain();
                }
                drain_ends = Some(tokio::time::Instant::now() + rules.drain);
            }
            () = drained => break,
            _ = sweeps.tick() => connections.sweep(),
        }
    }
    drop(listener);
    connections.close();
    drop(alive);
    if tokio::time::timeout(CLOSE_LINGER + FINISH_LIMIT, all_done.closed()).await.is_err() {
        tracing::warn!("requests still running at shutdown were cut off");
    }
}

/// One accepted connection and what it shares with the listener.
struct Connection {
    http: Arc<hyper::server::conn::http1::Builder>,
    app: Router,
    /// Answered before the router when it claims a request (`POST /v1/verify`).
    verify: Option<VerifyDoor>,
    closing: Arc<AtomicBool>,
    connections: Arc<Connections>,
    /// Dropped when the connection ends; the listener waits for every one of them.
    _alive: watch::Receiver<()>,
    _slot: Option<IpSlot>,
}

/// Sweeps of [`Connections`] per header read timeout: a connection is cut off between one and
/// 1¼ timeouts after it started waiting for a request (later only if a sweep runs late).
const SWEEPS_PER_TIMEOUT: u32 = 4;

/// The listener's open connections. Each is told when the listener closes, and cut off once it
/// has waited longer than the header read timeout for a request's headers (idle keep-alive
/// included).
///
/// Hand-rolled rather than hyper's own `header_read_timeout`: hyper arms a boxed timer in tokio's
/// wheel for every request and takes it out again, which cost a cached verification a fifth of its
/// throughput at 16 connections (0.22 context switches a request, against 0.14 without). Here a
/// request costs two atomic stores and a read of the monotonic clock, and a sweep every quarter
/// timeout reads each connection's stamp. A connection's task polls its slot on every wake-up: a flag, a stamp and its waker, no
/// shared lock (a `watch` receiver there took the channel's one waiter lock, ~480 instructions).
#[derive(Debug)]
struct Connections {
    closed: AtomicBool,
    /// What the stamps count from.
    origin: std::time::Instant,
    header_read_timeout_ns: u64,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<ConnectionSlot>>>,
}

/// One open connection: since when (nanoseconds from `origin`) it has waited for a request's
/// headers, or
/// [`ConnectionSlot::ANSWERING`], or [`ConnectionSlot::TIMED_OUT`].
#[derive(Debug)]
struct ConnectionSlot {
    waiting_since: AtomicU64,
    origin: std::time::Instant,
    waker: AtomicWaker,
}

impl ConnectionSlot {
    const ANSWERING: u64 = u64::MAX;
    const TIMED_OUT: u64 = u64::MAX - 1;

    /// A request's headers are in: nothing times out while it is answered.
    fn answering(&self) {
        self.waiting_since.store(Self::ANSWERING, Ordering::Release);
    }

    /// The answer went out: the wait for the next request's headers starts.
    fn waiting(&self) {
        self.waiting_since.store(nanos_since(self.origin), Ordering::Release);
    }
}

/// Why a connection's watch ended.
#[derive(Debug, PartialEq, Eq)]
enum Interrupted {
    ListenerClosed,
    HeaderReadTimeout,
}

impl Connections {
    fn new(header_read_timeout: Duration) -> Self {
        Self {
            closed: AtomicBool::new(false),
            origin: std::time::Instant::now(),
            header_read_timeout_ns: u64::try_from(header_read_timeout.as_nanos()).unwrap_or(u64::MAX),
            next_id: AtomicU64::new(0),
            open: Mutex::default(),
        }
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        for slot in self.open.lock().values() {
            slot.waker.wake();
        }
    }

    /// Cuts off the connections that have waited past the timeout for a request's headers.
    fn sweep(&self) {
        let now = nanos_since(self.origin);
        for slot in self.open.lock().values() {
            let since = slot.waiting_since.load(Ordering::Acquire);
            if since < ConnectionSlot::TIMED_OUT && now.saturating_sub(since) >= self.header_read_timeout_ns {
                // A request whose headers came in meanwhile wins: the stamp changed, no cut.
                let cut = slot.waiting_since.compare_exchange(
                    since,
                    ConnectionSlot::TIMED_OUT,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
                if cut.is_ok() {
                    slot.waker.wake();
                }
            }
        }
    }

    /// Registers a new connection, waiting for its first request.
    fn watch(&self) -> Watch<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(ConnectionSlot {
            waiting_since: AtomicU64::new(nanos_since(self.origin)),
            origin: self.origin,
            waker: AtomicWaker::new(),
        });
        self.open.lock().insert(id, Arc::clone(&slot));
        Watch { connections: self, id, slot }
    }
}

fn nanos_since(origin: std::time::Instant) -> u64 {
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(ConnectionSlot::TIMED_OUT - 1)
}

/// [`Connections::watch`]'s future; the connection leaves the table when it is dropped.
struct Watch<'c> {
    connections: &'c Connections,
    id: u64,
    slot: Arc<ConnectionSlot>,
}

impl Future for Watch<'_> {
    type Output = Interrupted;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Interrupted> {
        // The waker first, then the flags: a close or a cut between the two still wakes this task.
        self.slot.waker.register(cx.waker());
        if self.slot.waiting_since.load(Ordering::Acquire) == ConnectionSlot::TIMED_OUT {
            Poll::Ready(Interrupted::HeaderReadTimeout)
        } else if self.connections.closed.load(Ordering::Acquire) {
            Poll::Ready(Interrupted::ListenerClosed)
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        self.connections.open.lock().remove(&self.id);
    }
}

/// An answer's body that restarts its connection's wait for headers once hyper has sent it and
/// lets it go.
struct Answered<B> {
    body: B,
    slot: Arc<ConnectionSlot>,
}

impl<B: HttpBody + Unpin> HttpBody for Answered<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl<B> Drop for Answered<B> {
    fn drop(&mut self) {
        self.slot.waiting();
    }
}

impl Connection {
    /// The handshake runs here, in the connection's own task, so a slow client holds only its
    /// own slot; past `timeout` (the header read timeout) the connection is dropped.
    async fn serve_tls(
        self,
        acceptor: tokio_rustls::TlsAcceptor,
        stream: TcpStream,
        peer: SocketAddr,
        timeout: Duration,
    ) {
        match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => self.serve(stream, peer, Transport::Tls).await,
            Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
        }
    }

    async fn serve<S>(mut self, stream: S, peer: SocketAddr, transport: Transport)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (app, verify) = (self.app.clone(), self.verify.take());
        let closing = Arc::clone(&self.closing);
        let connections = Arc::clone(&self.connections);
        let watch = connections.watch();
        let slot = Arc::clone(&watch.slot);
        let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            slot.answering();
            let slot = Arc::clone(&slot);
            let hsts = match transport {
                Transport::Plain => false,
                Transport::Proxied => forwarded_https(request.headers()),
                Transport::Tls => true,
            };
            // A verification needs neither the peer nor the transport: no extensions for it.
            let destination = if let Some(door) = verify.as_ref().filter(|door| door.claims(&request)) {
                Destination::Verify(door.clone())
            } else {
                request.extensions_mut().insert(ConnectInfo(peer));
                if transport == Transport::Tls {
                    request.extensions_mut().insert(OverTls);
                }
                Destination::Router(app.clone())
            };
            let closing = Arc::clone(&closing);
            async move {
                let mut response = match destination {
                    Destination::Verify(door) => door.answer(request).await,
                    Destination::Router(app) => app.oneshot(request.map(axum::body::Body::new)).await?,
                };
                if closing.load(Ordering::SeqCst) {
                    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                if hsts {
                    response.headers_mut().insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(HSTS));
                }
                Ok::<_, std::convert::Infallible>(response.map(|body| Answered { body, slot }))
            }
        });
        let io = TokioIo::new(ProblemBodies::new(stream, transport == Transport::Tls));
        // No upgrades: the gateway drops `Upgrade` as hop-by-hop, and the API has no use for one.
        let connection = self.http.serve_connection(io, service);
        tokio::pin!(connection);
        let interrupted = tokio::select! {
            // Biased: the connection is what wakes the task nearly every time; no random start.
            biased;
            _ = connection.as_mut() => return,
            interrupted = watch => interrupted,
        };
        if interrupted == Interrupted::HeaderReadTimeout {
            tracing::debug!(%peer, "no request headers within the header read timeout; closing");
            return;
        }
        // The listener is closed. A request sent now is still answered (with Connection: close,
        // after which hyper closes); an idle connection is closed once the linger passes.
        if tokio::time::timeout(CLOSE_LINGER, connection.as_mut()).await.is_ok() {
            return;
        }
        connection.as_mut().graceful_shutdown();
        let _ = tokio::time::timeout(FINISH_LIMIT, connection).await;
    }
}

/// Where one request goes.
enum Destination {
    Verify(VerifyDoor),
    Router(Router),
}

/// Over the per-address cap: a short 503 and the connection closes.
async fn refuse_connection(mut stream: TcpStream) {
    let answer = canned_problem(
        StatusCode::SERVICE_UNAVAILABLE,
        Code::ServiceUnavailable,
        "Too many open connections from this address",
        false,
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&answer)).await;
}

/// Open connections per client address.
#[derive(Debug, Clone, Default)]
struct PerIp(Arc<Mutex<HashMap<IpAddr, usize>>>);

impl PerIp {
    fn take(&self, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let mut open = self.0.lock();
        let count = open.entry(ip).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(IpSlot { per_ip: self.clone(), ip })
    }
}

/// A connection's place in its address's count, given back on drop.
#[derive(Debug)]
struct IpSlot {
    per_ip: PerIp,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.per_ip.0.lock();
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// A whole HTTP/1.1 answer with a problem+json body, closing the connection (with HSTS over TLS).
fn canned_problem(status: StatusCode, code: Code, detail: &str, hsts: bool) -> Vec<u8> {
    let body = serde_json::json!({
        "status": status.as_u16(),
        "code": code.as_str(),
        "title": code.title(),
        "detail": detail,
    })
    .to_string();
    let hsts = if hsts { format!("strict-transport-security: {HSTS}\r\n") } else { String::new() };
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\nconnection: close\r\n\
         cache-control: no-store\r\nx-content-type-options: nosniff\r\n{hsts}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The body-less answers hyper writes itself when it cannot parse a request (before the app sees
/// it), each replaced by the same status with a problem+json body. The app's own answers with
/// these statuses always have a body, so an empty one is hyper's.
fn replacement_for(written: &[u8], hsts: bool) -> Option<Vec<u8>> {
    const HYPER_ANSWERS: [(&[u8], StatusCode, Code, &str); 3] = [
        (
            b"HTTP/1.1 414 ",
            StatusCode::URI_TOO_LONG,
            Code::UriTooLong,
            "The request target is longer than this server reads",
        ),
        (
            b"HTTP/1.1 431 ",
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Code::HeadersTooLarge,
            "The request headers are larger, or more, than this server reads",
        ),
        (b"HTTP/1.1 400 ", StatusCode::BAD_REQUEST, Code::ValidationFailed, "The request is not valid HTTP/1.1"),
    ];
    let (_, status, code, detail) = HYPER_ANSWERS.iter().find(|(start, ..)| written.starts_with(start))?;
    let head_end = written.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&written[..head_end]).to_ascii_lowercase();
    // The whole answer is this head, and its body is empty.
    (head_end + 4 == written.len() && head.contains("\r\ncontent-length: 0"))
        .then(|| canned_problem(*status, *code, detail, hsts))
}

/// The connection's stream, with hyper's own error answers rewritten ([`replacement_for`]).
struct ProblemBodies<S> {
    inner: S,
    /// A replacement still being written, and how much of it is out.
    pending: Option<(Vec<u8>, usize)>,
    /// Over TLS: replacements carry HSTS like every other answer.
    hsts: bool,
}

impl<S> ProblemBodies<S> {
    fn new(inner: S, hsts: bool) -> Self {
        Self { inner, pending: None, hsts }
    }
}

impl<S: AsyncWrite + Unpin> ProblemBodies<S> {
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while let Some((bytes, written)) = &mut self.pending {
            if *written == bytes.len() {
                self.pending = None;
                break;
            }
            let n = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ProblemBodies<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ProblemBodies<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        std::task::ready!(self.poll_pending(cx))?;
        if let Some(replacement) = replacement_for(buf, self.hsts) {
            self.pending = Some((replacement, 0));
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        std::task::ready!(self.poll_pending(cx))?;
        if let Some(first) = bufs.iter().find(|buf| !buf.is_empty()) {
            if let Some(replacement) = replacement_for(first, self.hsts) {
                self.pending = Some((replacement, 0));
                return Poll::Ready(Ok(first.len()));
            }
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection left idle on keep-alive when the listener closes is closed after the linger,
    /// not after the (much longer) header read timeout: the close reaches a task that is waiting
    /// on its socket.
    use tokio::io::AsyncReadExt as _;

    /// A listener on an ephemeral port with `GET /` (instant) and `GET /slow` (1.5 s); the sender
    /// shuts it down.
    async fn start(
        header_read_timeout: Duration,
    ) -> (SocketAddr, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let rules = ConnectionRules {
            header_read_timeout,
            max_per_ip: 16,
            exempt: Vec::new(),
            drain: Duration::ZERO,
            tls: None,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let slow = || async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            "late"
        };
        let app =
            Router::new().route("/", axum::routing::get(|| async { "up" })).route("/slow", axum::routing::get(slow));
        let shutdown = async move {
            let _ = stopped.await;
        };
        let server = tokio::spawn(serve_connections(listener, app, None, rules, shutdown, || {}));
        (address, stop, server)
    }

    async fn exchange(stream: &mut TcpStream, path: &str) -> String {
        let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("request");
        let mut answer = vec![0u8; 1024];
        let read = stream.read(&mut answer).await.expect("answer");
        String::from_utf8_lossy(&answer[..read]).into_owned()
    }

    /// The header read timeout bounds the wait for a request's headers, never an answer: a
    /// request slower than the timeout is answered, and the connection then left idle is closed
    /// once the timeout passes again, as is one that never sends a whole request.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_header_read_timeout_closes_idle_and_trickling_connections_not_slow_answers() {
        let timeout = Duration::from_millis(400);
        let (address, _stop, _server) = start(timeout).await;
        let mut stream = TcpStream::connect(address).await.expect("connect");
        assert!(exchange(&mut stream, "/").await.starts_with("HTTP/1.1 200"));
        let answer = exchange(&mut stream, "/slow").await;
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("late"), "{answer}");
        let idle = std::time::Instant::now();
        let mut rest = [0u8; 64];
        let end = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut rest)).await;
        assert!(matches!(end, Ok(Ok(0))), "the idle connection is closed: {end:?}");
        let held = idle.elapsed();
        assert!(held >= timeout && held < timeout * 2, "idle for {held:?}");

        let mut trickler = TcpStream::connect(address).await.expect("connect");
        let started = std::time::Instant::now();
        trickler.write_all(b"GET / HTTP/1.1\r\n").await.expect("a part");
        let end = tokio::time::timeout(Duration::from_secs(5), trickler.read(&mut rest)).await;
        assert!(matches!(end, Ok(Ok(0))), "the unfinished request's connection is closed: {end:?}");
        let held = started.elapsed();
        assert!(held >= timeout && held < timeout * 2, "held for {held:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_keep_alive_connection_is_closed_soon_after_the_listener() {
        let (address, stop, server) = start(Duration::from_secs(60)).await;
        let mut stream = TcpStream::connect(address).await.expect("connect");
        assert!(exchange(&mut stream, "/").await.starts_with("HTTP/1.1 200"));
        let mut answer = vec![0u8; 1024];

        let closing = std::time::Instant::now();
        stop.send(()).expect("the listener waits for its shutdown");
        let end = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer)).await;
        assert!(matches!(end, Ok(Ok(0))), "the idle connection is closed by the server: {end:?}");
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("serve_connections returns")
            .expect("no panic");
        let took = closing.elapsed();
        assert!(took >= CLOSE_LINGER && took < CLOSE_LINGER + Duration::from_secs(3), "took {took:?}");
    }

    #[test]
    fn only_hypers_empty_error_answers_are_replaced() {
        let hyper_431 = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 00:00:00 GMT\r\n\r\n";
        let replaced = String::from_utf8(replacement_for(hyper_431, false).expect("replaced")).expect("utf-8");
        assert!(replaced.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"), "{replaced}");
        assert!(replaced.contains("content-type: application/problem+json"), "{replaced}");
        assert!(replaced.contains(r#""code":"HEADERS_TOO_LARGE""#), "{replaced}");
        let with_body =
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\ncontent-length: 20\r\n\r\n";
        assert!(replacement_for(with_body, false).is_none());
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert!(replacement_for(ok, false).is_none());
        assert!(!replaced.contains("strict-transport-security"), "{replaced}");
        let over_tls = String::from_utf8(replacement_for(hyper_431, true).expect("replaced")).expect("utf-8");
        assert!(
            over_tls.contains("\r\nstrict-transport-security: max-age=63072000; includeSubDomains\r\n"),
            "{over_tls}"
        );
    }
}

//! Metrics (Prometheus text at `/metrics`), the access log, and trace ids.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;
use keyward_core::key::{prefix_field, KeyFormat};
use keyward_core::Code;
use keyward_runtime::Clock;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::problem::InternalCause;

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder once (tests build many apps in one process).
pub fn prometheus() -> PrometheusHandle {
    PROMETHEUS
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full("keyward_verify_duration_seconds".to_owned()),
                    &[0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.005, 0.025, 0.1],
                )
                .and_then(metrics_exporter_prometheus::PrometheusBuilder::install_recorder);
            match recorder {
                Ok(handle) => handle,
                // Another recorder is installed (embedding); keep a detached one so /metrics still answers.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}

/// Handles registered once, so the verify path does not look metrics up by name.
#[derive(Debug)]
pub struct VerifyMetrics {
    by_code: Vec<(Code, metrics::Counter)>,
    duration: metrics::Histogram,
}

impl VerifyMetrics {
    pub fn new() -> Self {
        prometheus();
        Self {
            by_code: Code::ALL
                .iter()
                .map(|code| (*code, metrics::counter!("keyward_verifications_total", "code" => code.as_str())))
                .collect(),
            duration: metrics::histogram!("keyward_verify_duration_seconds"),
        }
    }

    pub fn record(&self, code: Code, started: Instant) {
        if let Some((_, counter)) = self.by_code.iter().find(|(c, _)| *c == code) {
            counter.increment(1);
        }
        self.duration.record(started.elapsed().as_secs_f64());
    }
}

impl Default for VerifyMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Refused verifications in the log, at most `per_second` lines a second: enough to see an
/// attack or a misconfigured client, never a disk filled at full rate. A fixed one-second
/// window in one atomic (second << 32 | count) is all this needs; a GCRA crate would add a
/// clock and a lock for nothing.
#[derive(Debug)]
pub struct RefusalLog {
    per_second: u32,
    window: AtomicU64,
}

impl RefusalLog {
    pub fn new(per_second: u32) -> Self {
        Self { per_second, window: AtomicU64::new(0) }
    }

    /// Logs a refusal if this second still has room: the code, the key's displayable prefix
    /// (never the key) and the client IP.
    pub fn record(&self, code: Code, key: &str, format: &KeyFormat, client_ip: Option<IpAddr>, clock: &dyn Clock) {
        if code == Code::Valid || self.per_second == 0 || !self.take(clock.now().unix_timestamp()) {
            return;
        }
        // Only a well-formed key (right shape and checksum) has a prefix worth showing; anything
        // else may be some other secret pasted by mistake, so nothing of it is logged.
        let prefix = if format.parse(key).is_some() { prefix_field(key) } else { "-" };
        let client_ip = client_ip.map(tracing::field::display);
        tracing::info!(code = code.as_str(), key_prefix = prefix, client_ip, "verification refused");
    }

    fn take(&self, now_unix: i64) -> bool {
        let second = u64::try_from(now_unix).unwrap_or(0) & 0xFFFF_FFFF;
        let mut current = self.window.load(Ordering::Relaxed);
        loop {
            let (window, count) = (current >> 32, current & 0xFFFF_FFFF);
            let next = if window == second {
                if count >= u64::from(self.per_second) {
                    return false;
                }
                current + 1
            } else {
                (second << 32) | 1
            };
            match self.window.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }
}

/// Whether a path is a verification door, whose requests are counted rather than logged.
fn is_verification(path: &str) -> bool {
    path == "/v1/verify" || path == "/v1/authorize"
}

/// One line per request: method, path (never the query: it may carry data), status, latency,
/// and for a 5xx the internal cause the client did not see. Verifications have no line unless
/// `verbose_verifications` (they are counted in /metrics; refusals are sampled by [`RefusalLog`]),
/// but their internal failures still do.
pub async fn access_log(
    axum::extract::State(verbose_verifications): axum::extract::State<bool>,
    request: Request,
    next: Next,
) -> Response {
    if !verbose_verifications && is_verification(request.uri().path()) {
        let response = next.run(request).await;
        log_failed_verification(&response);
        return response;
    }
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    log_request(&method, &path, started, &response);
    response
}

/// The access line of one answer ([`access_log`]'s, for a door that is not behind it).
pub fn log_request(method: &Method, path: &str, started: Instant, response: &Response) {
    let status = response.status().as_u16();
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    if let Some(InternalCause(cause)) = response.extensions().get::<InternalCause>() {
        tracing::error!(%method, %path, status, micros, cause = %cause, "request failed");
    } else {
        tracing::info!(%method, %path, status, micros, "request");
    }
}

/// A verification has no access line by default, but its internal failure is always logged.
pub fn log_failed_verification(response: &Response) {
    if let Some(InternalCause(cause)) = response.extensions().get::<InternalCause>() {
        tracing::error!(status = response.status().as_u16(), cause = %cause, "verification failed");
    }
}

/// The W3C trace id of a `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`), or a new one.
pub fn trace_id(headers: &HeaderMap) -> String {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_traceparent)
        .map_or_else(new_trace_id, str::to_owned)
}

/// The trace id of a well-formed W3C `traceparent`, if it is one.
pub fn valid_traceparent(value: Option<&str>) -> Option<&str> {
    value.and_then(parse_traceparent)
}

fn parse_traceparent(value: &str) -> Option<&str> {
    let mut parts = value.trim().split('-');
    let (version, trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(parent, 16)
        && hex(flags, 2);
    valid.then_some(trace)
}

fn new_trace_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

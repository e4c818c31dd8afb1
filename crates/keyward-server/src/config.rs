//! The operator's config file (TOML, every field optional) parsed into a validated [`Config`].

use std::path::{Path, PathBuf};

use ipnet::IpNet;
use keyward_core::key::{KeyFormat, KeyPrefix};
use keyward_core::validate::Catalogue;
use serde::Deserialize;

use crate::gateway::routes::{GatewayConfig, RawGateway};

/// The file as written. Unknown fields are errors: a typo must not silently fall back to a default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    key_prefix: Option<String>,
    default_rate_limit: Option<u32>,
    max_name_length: Option<usize>,
    scopes: Option<Vec<String>>,
    default_scopes: Option<Vec<String>>,
    signature_header: Option<String>,
    timestamp_header: Option<String>,
    signature_tolerance_seconds: Option<i64>,
    trusted_proxies: Option<Vec<String>>,
    nodes: Option<u32>,
    cache_max_staleness_seconds: Option<u64>,
    replay_fallback: Option<String>,
    key_cache_capacity: Option<u64>,
    key_cache_max_age_seconds: Option<u64>,
    verify_store_timeout_ms: Option<u64>,
    cache_miss_share_percent: Option<u8>,
    verify_access_log: Option<bool>,
    refusal_log_per_second: Option<u32>,
    shutdown_drain_seconds: Option<u64>,
    header_read_timeout_seconds: Option<u64>,
    max_connections_per_ip: Option<usize>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    rewrap_per_second: Option<u32>,
    /// Gateway mode (SPEC §6); spanned so its errors can name their line.
    gateway: Option<toml::Spanned<RawGateway>>,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub key_format: KeyFormat,
    pub default_rate_limit: u32,
    pub max_name_length: usize,
    pub catalogue: Catalogue,
    pub signature_header: String,
    pub timestamp_header: String,
    pub signature_tolerance_seconds: i64,
    pub trusted_proxies: Vec<IpNet>,
    /// How many nodes share the database: with Redis down, each node grants limit / nodes.
    pub nodes: u32,
    /// A node that has not confirmed its change feed for this long stops trusting cached keys.
    pub cache_max_staleness: std::time::Duration,
    /// Redis down: refuse signed requests (503), or check replays on this node only.
    pub replay_fallback: ReplayFallback,
    /// The verification cache's bounds: how many keys, and how long one is trusted without a read.
    pub key_cache_capacity: u64,
    pub key_cache_max_age: std::time::Duration,
    /// How long a verification waits for the store on a cache miss before answering 503.
    pub verify_store_timeout: std::time::Duration,
    /// The share of one thread's time cache misses may spend reading the database for keys that
    /// turn out unknown; past it a miss waits its turn (a flood of unknown keys cannot starve cached
    /// ones). 10 by default; 0: none.
    pub cache_miss_share_percent: u8,
    /// One access-log line per verification (off by default: decisions are counted in /metrics).
    pub verify_access_log: bool,
    /// At most this many refused verifications a second are logged (code, key prefix, client IP).
    pub refusal_log_per_second: u32,
    /// On SIGTERM, how long `/readyz` answers 503 while requests are still served, so a load
    /// balancer moves traffic away before the listener closes.
    pub shutdown_drain: std::time::Duration,
    /// A request's headers must arrive within this, and an idle keep-alive connection is closed
    /// after it: a client trickling bytes cannot hold a connection.
    pub header_read_timeout: std::time::Duration,
    /// Open connections one client address may hold (trusted proxies are not limited).
    pub max_connections_per_ip: usize,
    /// `tls_cert` and `tls_key`: the listener speaks HTTPS with them (`None`: plain HTTP).
    pub tls: Option<TlsFiles>,
    /// After a master-key rotation, how many signing secrets a second the background rewrap
    /// moves to the new key (each node; a batch every 100 ms).
    pub rewrap_per_second: u32,
    /// The `[gateway]` section, when the config file has one: `serve` then also runs the gateway.
    pub gateway: Option<GatewayConfig>,
}

/// The PEM files of the listener's certificate chain and private key (read at start, and again
/// on SIGHUP: see [`crate::tls::Tls`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// Both files or neither: one alone is an error naming the one that is missing.
    pub fn pair(cert: Option<PathBuf>, key: Option<PathBuf>) -> Result<Option<Self>, String> {
        match (cert, key) {
            (Some(cert), Some(key)) => Ok(Some(Self { cert, key })),
            (None, None) => Ok(None),
            (Some(_), None) => Err("tls_key is missing: tls_cert is set, and TLS needs both (or neither)".to_owned()),
            (None, Some(_)) => Err("tls_cert is missing: tls_key is set, and TLS needs both (or neither)".to_owned()),
        }
    }
}

/// What a node does with signed requests while the shared replay store is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayFallback {
    /// 503 `SERVICE_UNAVAILABLE`: a signature is never accepted on a guess (the default).
    Refuse,
    /// Remember signatures on this node only: a replay sent to another node may pass.
    Local,
}

impl Default for Config {
    fn default() -> Self {
        Self::from_raw(RawConfig::default(), "").expect("the built-in defaults are valid")
    }
}

/// `value`, or `default` when absent, if within `range`; otherwise the error naming `name`.
fn bounded<T: PartialOrd + Copy + std::fmt::Display>(
    name: &str,
    value: Option<T>,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, String> {
    let value = value.unwrap_or(default);
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(format!("{name} must be between {} and {}", range.start(), range.end()))
    }
}

/// A config problem, rendered on one line: `file: line N: reason`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl Config {
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: cannot read config file: {e}", path.display())))?;
        Self::from_toml(&text).map_err(|e| ConfigError(format!("{}: {}", path.display(), e.0)))
    }

    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(1, |span| line_at(text, span.start));
            ConfigError(format!("line {line}: {}", e.message().trim()))
        })?;
        Self::from_raw(raw, text).map_err(ConfigError)
    }

    /// The verifier's settings: the same for a node and for a verifier embedded in another
    /// service (`keyward-tower`).
    pub fn verifier_config(&self) -> keyward_runtime::VerifierConfig {
        keyward_runtime::VerifierConfig {
            format: self.key_format.clone(),
            default_rate_limit: self.default_rate_limit,
            signature_tolerance_seconds: self.signature_tolerance_seconds,
            negative_ttl: std::time::Duration::from_secs(10),
            max_negative_entries: 100_000,
            max_staleness: self.cache_max_staleness,
            max_cached_keys: self.key_cache_capacity,
            cache_max_age: self.key_cache_max_age,
            store_read_timeout: self.verify_store_timeout,
            miss_read_share_percent: self.cache_miss_share_percent,
            // What a node's `/v1/verify` answers repeat ([`crate::app`] sets it); an embedded
            // verifier answers no JSON.
            prerender: None,
        }
    }

    /// `text` is the file `raw` was parsed from, so `[gateway]` errors can name their line.
    fn from_raw(raw: RawConfig, text: &str) -> Result<Self, String> {
        let prefix = match raw.key_prefix {
            Some(text) => KeyPrefix::parse(&text)?,
            None => KeyPrefix::default(),
        };
        let default_rate_limit = bounded("default_rate_limit", raw.default_rate_limit, 80, 1..=1000)?;
        let max_name_length = bounded("max_name_length", raw.max_name_length, 64, 1..=256)?;
        let scopes = raw
            .scopes
            .unwrap_or_else(|| keyward_core::validate::DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect());
        let defaults = raw.default_scopes.unwrap_or_else(|| vec!["messages:send".to_owned()]);
        let catalogue = Catalogue::new(&scopes, &defaults)?;
        let signature_header = header_name("signature_header", raw.signature_header, "X-Keyward-Signature")?;
        let timestamp_header = header_name("timestamp_header", raw.timestamp_header, "X-Keyward-Timestamp")?;
        let signature_tolerance_seconds =
            bounded("signature_tolerance_seconds", raw.signature_tolerance_seconds, 300, 1..=3600)?;
        let trusted_proxies = raw
            .trusted_proxies
            .unwrap_or_default()
            .iter()
            .map(|entry| {
                keyward_core::validate::parse_ip_entry(entry)
                    .ok_or_else(|| format!("trusted_proxies: {entry:?} is not an IP address or CIDR range"))
            })
            .collect::<Result<_, _>>()?;
        let gateway = raw.gateway.map(|section| GatewayConfig::from_raw(section, &catalogue, text)).transpose()?;
        let nodes = bounded("nodes", raw.nodes, 1, 1..=1000)?;
        let staleness = bounded("cache_max_staleness_seconds", raw.cache_max_staleness_seconds, 2, 1..=3600)?;
        let replay_fallback = match raw.replay_fallback.as_deref() {
            None | Some("refuse") => ReplayFallback::Refuse,
            Some("local") => ReplayFallback::Local,
            Some(other) => return Err(format!("replay_fallback must be \"refuse\" or \"local\", not {other:?}")),
        };
        let key_cache_capacity = bounded("key_cache_capacity", raw.key_cache_capacity, 1_000_000, 1..=100_000_000)?;
        let key_cache_max_age = bounded("key_cache_max_age_seconds", raw.key_cache_max_age_seconds, 600, 1..=86_400)?;
        let verify_store_timeout = bounded("verify_store_timeout_ms", raw.verify_store_timeout_ms, 500, 10..=60_000)?;
        let cache_miss_share_percent = bounded("cache_miss_share_percent", raw.cache_miss_share_percent, 10, 0..=100)?;
        let refusal_log_per_second = bounded("refusal_log_per_second", raw.refusal_log_per_second, 10, 0..=10_000)?;
        let shutdown_drain_seconds = bounded("shutdown_drain_seconds", raw.shutdown_drain_seconds, 5, 0..=3600)?;
        let header_read_timeout_seconds =
            bounded("header_read_timeout_seconds", raw.header_read_timeout_seconds, 10, 1..=300)?;
        let max_connections_per_ip = bounded("max_connections_per_ip", raw.max_connections_per_ip, 1024, 1..=100_000)?;
        let tls = TlsFiles::pair(raw.tls_cert, raw.tls_key)?;
        Ok(Self {
            key_format: KeyFormat::new(prefix),
            default_rate_limit,
            max_name_length,
            catalogue,
            signature_header,
            timestamp_header,
            signature_tolerance_seconds,
            trusted_proxies,
            nodes,
            cache_max_staleness: std::time::Duration::from_secs(staleness),
            replay_fallback,
            key_cache_capacity,
            key_cache_max_age: std::time::Duration::from_secs(key_cache_max_age),
            verify_store_timeout: std::time::Duration::from_millis(verify_store_timeout),
            cache_miss_share_percent,
            verify_access_log: raw.verify_access_log.unwrap_or(false),
            refusal_log_per_second,
            shutdown_drain: std::time::Duration::from_secs(shutdown_drain_seconds),
            header_read_timeout: std::time::Duration::from_secs(header_read_timeout_seconds),
            max_connections_per_ip,
            tls,
            rewrap_per_second: rewrap_per_second(raw.rewrap_per_second)?,
            gateway,
        })
    }
}

/// `rewrap_per_second`: 10 to a million signing secrets a second (default 1000).
fn rewrap_per_second(value: Option<u32>) -> Result<u32, String> {
    let rate = value.unwrap_or(1000);
    if (10..=1_000_000).contains(&rate) {
        Ok(rate)
    } else {
        Err("rewrap_per_second must be between 10 and 1000000".to_owned())
    }
}

/// The 1-based line of a byte offset into `text` (an offset at a line's start is on that line).
pub(crate) fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    // n newlines before the offset split the text before it into n + 1 lines.
    text.as_bytes()[..end].split(|&b| b == b'\n').count()
}

fn header_name(field: &str, value: Option<String>, default: &str) -> Result<String, String> {
    let name = value.unwrap_or_else(|| default.to_owned());
    if axum::http::HeaderName::from_bytes(name.as_bytes()).is_ok() {
        Ok(name)
    } else {
        Err(format!("{field}: {name:?} is not a valid HTTP header name"))
    }
}

/// The commented example printed by `keyward config example`.
pub const EXAMPLE: &str = include_str!("../config.example.toml");

//! keyward-fuzz-targets: one function per fuzz target, each feeding arbitrary bytes to one of
//! keyward's parsers and asserting what must hold (no panic, round-trips, refusals stay refusals).
//! It is not a test suite of its own: `fuzz/` (cargo-fuzz, nightly) runs these functions, and
//! `tests/corpus.rs` replays the committed corpus through them on stable. Start at [`TARGETS`].
#![forbid(unsafe_code)]

pub mod config;
pub mod cursor;
pub mod gateway_routes;
pub mod headers;
pub mod ip_allowlist;
pub mod json_pointer;
pub mod key_string;
pub mod phone;
pub mod session_cookie;
pub mod signature;
pub mod traceparent;
pub mod verify_body;

/// A target's body: panics when a property does not hold.
pub type Target = fn(&[u8]);

/// Every target: its name (= `fuzz/fuzz_targets/<name>.rs` = `fuzz/corpus/<name>/`) and its body.
pub const TARGETS: &[(&str, Target)] = &[
    ("config", config::run),
    ("cursor", cursor::run),
    ("gateway_routes", gateway_routes::run),
    ("headers", headers::run),
    ("ip_allowlist", ip_allowlist::run),
    ("json_pointer", json_pointer::run),
    ("key_string", key_string::run),
    ("phone", phone::run),
    ("session_cookie", session_cookie::run),
    ("signature", signature::run),
    ("traceparent", traceparent::run),
    ("verify_body", verify_body::run),
];

/// Builds a header map from `name: value` lines, skipping lines that are not a valid header.
/// Values are kept as raw bytes, so non-UTF-8 and obs-text values reach the parsers too.
pub(crate) fn header_map(data: &[u8]) -> axum::http::HeaderMap {
    use axum::http::{HeaderName, HeaderValue};
    let mut headers = axum::http::HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            headers.append(name, value);
        }
    }
    headers
}

//! W3C `traceparent` headers: the trace id kept for logs and forwarded by the gateway.

use keyward_server::telemetry::valid_traceparent;

pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Some(trace) = valid_traceparent(Some(&text)) {
        assert_eq!(trace.len(), 32, "{text:?}");
        assert!(trace.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{text:?}");
        assert!(trace.bytes().any(|b| b != b'0'), "an all-zero trace id is invalid: {text:?}");
        assert!(text.contains(trace));
    }
    let headers = crate::header_map(data);
    let id = keyward_server::telemetry::trace_id(&headers);
    assert_eq!(id.len(), 32, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{id}");
}

//! The console's session cookie, read from any number of `Cookie` headers.

use axum::http::{header, HeaderMap, HeaderValue};
use keyward_server::auth::{session_token, SESSION_COOKIE};

pub fn run(data: &[u8]) {
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append(header::COOKIE, value);
        }
    }
    if let Some(token) = session_token(&headers) {
        assert!(!token.is_empty());
        assert!(!token.contains(';'), "{token:?} runs into the next cookie");
        // The token is the value of a pair named exactly `keyward_session`.
        let pair = format!("{SESSION_COOKIE}={token}");
        let found = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .any(|p| p.trim() == pair);
        assert!(found, "{token:?} is not the value of a {SESSION_COOKIE} pair");
    }
    // A session token (base62) set among other cookies is found again.
    let token: String = data.iter().filter(|b| b.is_ascii_alphanumeric()).map(|&b| char::from(b)).take(43).collect();
    if !token.is_empty() {
        let mut headers = HeaderMap::new();
        let cookie = format!("theme=dark; {SESSION_COOKIE}={token}; other=1");
        headers.insert(header::COOKIE, HeaderValue::from_str(&cookie).expect("a plain ASCII cookie header"));
        assert_eq!(session_token(&headers), Some(token.as_str()));
    }
}

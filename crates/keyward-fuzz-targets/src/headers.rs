//! Request headers as the server reads them: the credential (`Authorization: Bearer`,
//! `X-API-Key`), the session cookie, `traceparent`, `X-Forwarded-For` behind a trusted proxy,
//! and the signature and timestamp headers of a signed request. Input: `name: value` lines.

use std::net::{IpAddr, Ipv4Addr};

use axum::http::header;
use ipnet::IpNet;
use keyward_core::crypto::SigningSecret;
use keyward_core::signing::{check, sign, SignedRequest, SigningKey, EMPTY_BODY_SHA256};
use keyward_server::{auth, net, telemetry};

pub fn run(data: &[u8]) {
    let headers = crate::header_map(data);

    // One credential header at most: two are refused, never served as either.
    let sent = headers.get_all(header::AUTHORIZATION).iter().count() + headers.get_all("x-api-key").iter().count();
    match auth::credential(&headers) {
        Err(_) => assert!(sent > 1, "one credential header refused"),
        Ok(found) => {
            assert!(sent <= 1, "{sent} credential headers accepted");
            if let Some(token) = found {
                let from_bearer = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")) == Some(token));
                let from_api_key = headers.get("x-api-key").and_then(|v| v.to_str().ok()) == Some(token);
                assert!(from_bearer || from_api_key, "credential {token:?} is in no credential header");
            }
        }
    }
    let _ = auth::session_token(&headers);
    assert_eq!(telemetry::trace_id(&headers).len(), 32);

    // X-Forwarded-For counts only behind a trusted proxy, and names an address it carries.
    let trusted: [IpNet; 2] = ["10.0.0.0/8".parse().expect("a CIDR"), "fd00::/8".parse().expect("a CIDR")];
    let outsider = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
    assert_eq!(net::client_ip(Some(outsider), &headers, &trusted), Some(outsider));
    assert_eq!(net::client_ip(None, &headers, &trusted), None);
    let proxy = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let client = net::client_ip(Some(proxy), &headers, &trusted).expect("a peer gives an address");
    if client != proxy {
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|entry| entry.trim().parse::<IpAddr>().ok() == Some(client));
        assert!(forwarded, "{client} is not in X-Forwarded-For");
    }

    // The signature headers of a signed GET, checked as the gateway checks them.
    let signature_header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(signature) = signature_header("x-keyward-signature") {
        let secret = SigningSecret::from_plaintext("kwsig_fuzz".to_owned());
        let request = SignedRequest {
            timestamp: signature_header("x-keyward-timestamp").unwrap_or_default(),
            method: "GET",
            path_and_query: "/v1/templates?page=2",
            body_sha256: EMPTY_BODY_SHA256,
            signature,
        };
        if check(&SigningKey::new(&secret), &request, 1_700_000_000, 300).is_ok() {
            let expected = sign(&secret, request.timestamp, request.method, request.path_and_query, EMPTY_BODY_SHA256);
            assert!(signature.eq_ignore_ascii_case(&expected), "{signature:?} accepted");
        }
    }
}

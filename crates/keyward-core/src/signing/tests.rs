use hmac::{Hmac, Mac};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

use super::*;

const SECRET: &str = "kwsig_test";
const NOW: i64 = 1_764_000_000;
const TOLERANCE: i64 = 300;
const PATH: &str = "/v1/messages?x=1";
const BODY: &[u8] = br#"{"from":"+14155550100"}"#;

/// The SPEC §5 formula, written out here with `hmac`/`sha2`/`hex` directly rather than through
/// the code under test.
fn reference_signature(secret: &str, timestamp: &str, method: &str, path_and_query: &str, body: &[u8]) -> String {
    let body_hash = hex::encode(Sha256::digest(body));
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}\n{method}\n{path_and_query}\n{body_hash}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn secret() -> SigningSecret {
    SigningSecret::from_plaintext(SECRET.to_owned())
}

#[test]
fn empty_body_hash_constant_is_sha256_of_nothing() {
    assert_eq!(EMPTY_BODY_SHA256, hex::encode(Sha256::digest(b"")));
    assert_eq!(body_sha256_hex(b""), EMPTY_BODY_SHA256);
    assert_eq!(body_sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

#[test]
fn sign_matches_published_vectors_computed_independently() {
    // (timestamp, method, path_and_query, body, signature): the signatures were computed with
    // Python's hmac/hashlib and are repeated by `reference_signature`.
    let vectors: [(&str, &str, &str, &[u8], &str); 2] = [
        (
            "1764000000",
            "POST",
            "/v1/messages?x=1",
            br#"{"from":"+14155550100"}"#,
            "3eede27dcc34e48aeb39ae7ae7e091a12eaf7b6da046fe186dfd94295345ee4a",
        ),
        (
            "1764000000",
            "GET",
            "/v1/templates/abc",
            b"",
            "5ad85dfd20a1df549e1b4ba919ccf5f23c1be24927a2d4ea84f2751e3b20a0a4",
        ),
    ];
    for (timestamp, method, path, body, expected) in vectors {
        assert_eq!(reference_signature(SECRET, timestamp, method, path, body), expected);
        assert_eq!(sign(&secret(), timestamp, method, path, &body_sha256_hex(body)), expected);
    }
}

/// Which signature a row sends.
#[derive(Clone, Copy)]
enum Sent {
    /// The reference signature over the row's own parts.
    Correct,
    /// The reference signature over other parts (or another secret).
    SignedOver {
        secret: &'static str,
        method: &'static str,
        path: &'static str,
        body: &'static [u8],
    },
    Literal(&'static str),
    /// The correct signature with its last hex digit changed.
    LastDigitChanged,
}

#[derive(Clone, Copy)]
struct Case {
    rule: &'static str,
    timestamp: &'static str,
    method: &'static str,
    path: &'static str,
    body: &'static [u8],
    sent: Sent,
    now: i64,
    tolerance: i64,
    expected: Result<i64, SignatureFault>,
}

/// A correctly signed `POST /v1/messages?x=1` at `NOW`, checked at `NOW`; rows change what they test.
const BASE: Case = Case {
    rule: "",
    timestamp: "1764000000",
    method: "POST",
    path: PATH,
    body: BODY,
    sent: Sent::Correct,
    now: NOW,
    tolerance: TOLERANCE,
    expected: Ok(NOW),
};

fn check(case: &Case) {
    let signature = match case.sent {
        Sent::Correct => reference_signature(SECRET, case.timestamp, case.method, case.path, case.body),
        Sent::SignedOver { secret, method, path, body } => {
            reference_signature(secret, case.timestamp, method, path, body)
        }
        Sent::Literal(text) => text.to_owned(),
        Sent::LastDigitChanged => {
            let mut text = reference_signature(SECRET, case.timestamp, case.method, case.path, case.body);
            let last = if text.ends_with('0') { "1" } else { "0" };
            text.replace_range(63.., last);
            text
        }
    };
    let body_sha256 = body_sha256_hex(case.body);
    let request = SignedRequest {
        timestamp: case.timestamp,
        method: case.method,
        path_and_query: case.path,
        body_sha256: &body_sha256,
        signature: &signature,
    };
    let result = super::check(&super::SigningKey::new(&secret()), &request, case.now, case.tolerance);
    match (result, case.expected) {
        (Ok((bytes, timestamp)), Ok(expected)) => {
            assert_eq!(timestamp, expected, "{}", case.rule);
            assert_eq!(hex::encode(bytes), signature, "{}: the consumed bytes are the signature", case.rule);
        }
        (result, expected) => {
            assert_eq!(result.map(|(_, timestamp)| timestamp), expected, "{}", case.rule);
        }
    }
}

#[test]
fn timestamps_within_the_tolerance_are_accepted_and_beyond_it_refused() {
    let cases = [
        Case { rule: "a correct signature at the same second is accepted", ..BASE },
        Case {
            rule: "a timestamp exactly the tolerance in the past is accepted",
            timestamp: "1763999700",
            expected: Ok(NOW - TOLERANCE),
            ..BASE
        },
        Case {
            rule: "a timestamp exactly the tolerance in the future is accepted",
            timestamp: "1764000300",
            expected: Ok(NOW + TOLERANCE),
            ..BASE
        },
        Case {
            rule: "a timestamp one second past the tolerance is outside the window",
            timestamp: "1763999699",
            expected: Err(SignatureFault::OutsideWindow),
            ..BASE
        },
        Case {
            rule: "a timestamp one second beyond the future tolerance is outside the window",
            timestamp: "1764000301",
            expected: Err(SignatureFault::OutsideWindow),
            ..BASE
        },
        Case { rule: "a zero tolerance accepts only the same second", tolerance: 0, ..BASE },
        Case {
            rule: "a zero tolerance refuses the next second",
            timestamp: "1764000001",
            tolerance: 0,
            expected: Err(SignatureFault::OutsideWindow),
            ..BASE
        },
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn signatures_cover_secret_method_path_and_body_exactly_as_sent() {
    let cases = [
        Case {
            rule: "an empty body signs the empty-body hash",
            method: "GET",
            path: "/v1/templates/abc",
            body: b"",
            ..BASE
        },
        Case {
            rule: "a signature over another body does not match",
            sent: Sent::SignedOver { secret: SECRET, method: "POST", path: PATH, body: b"{}" },
            expected: Err(SignatureFault::Mismatch),
            ..BASE
        },
        Case {
            rule: "the query is signed exactly as sent, not sorted",
            path: "/v1/messages?b=2&a=1",
            sent: Sent::SignedOver { secret: SECRET, method: "POST", path: "/v1/messages?a=1&b=2", body: BODY },
            expected: Err(SignatureFault::Mismatch),
            ..BASE
        },
        Case {
            rule: "the path is signed exactly as sent, not decoded",
            path: "/v1/messages/a%20b",
            sent: Sent::SignedOver { secret: SECRET, method: "POST", path: "/v1/messages/a b", body: BODY },
            expected: Err(SignatureFault::Mismatch),
            ..BASE
        },
        Case {
            rule: "a signature over another method does not match",
            sent: Sent::SignedOver { secret: SECRET, method: "PUT", path: PATH, body: BODY },
            expected: Err(SignatureFault::Mismatch),
            ..BASE
        },
        Case {
            rule: "a signature with another secret does not match",
            sent: Sent::SignedOver { secret: "kwsig_other", method: "POST", path: PATH, body: BODY },
            expected: Err(SignatureFault::Mismatch),
            ..BASE
        },
        Case {
            rule: "a signature wrong only in its last digit does not match",
            sent: Sent::LastDigitChanged,
            expected: Err(SignatureFault::Mismatch),
            ..BASE
        },
        Case {
            rule: "a well-formed but wrong signature does not match",
            sent: Sent::Literal("0000000000000000000000000000000000000000000000000000000000000000"),
            expected: Err(SignatureFault::Mismatch),
            ..BASE
        },
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn malformed_signatures_and_timestamps_are_refused() {
    let cases = [
        Case {
            rule: "63 hex digits are malformed",
            sent: Sent::Literal("000000000000000000000000000000000000000000000000000000000000000"),
            expected: Err(SignatureFault::Malformed),
            ..BASE
        },
        Case {
            rule: "66 hex digits are malformed",
            sent: Sent::Literal("000000000000000000000000000000000000000000000000000000000000000000"),
            expected: Err(SignatureFault::Malformed),
            ..BASE
        },
        Case {
            rule: "non-hex characters are malformed",
            sent: Sent::Literal("zz00000000000000000000000000000000000000000000000000000000000000"),
            expected: Err(SignatureFault::Malformed),
            ..BASE
        },
        Case {
            rule: "an empty signature is malformed",
            sent: Sent::Literal(""),
            expected: Err(SignatureFault::Malformed),
            ..BASE
        },
        Case {
            rule: "an empty timestamp is malformed",
            timestamp: "",
            expected: Err(SignatureFault::Malformed),
            ..BASE
        },
        Case {
            rule: "a negative timestamp is malformed",
            timestamp: "-1764000000",
            expected: Err(SignatureFault::Malformed),
            ..BASE
        },
        Case {
            rule: "a timestamp with a plus sign is malformed",
            timestamp: "+1764000000",
            expected: Err(SignatureFault::Malformed),
            ..BASE
        },
        Case {
            rule: "a fractional timestamp is malformed",
            timestamp: "1764000000.5",
            expected: Err(SignatureFault::Malformed),
            ..BASE
        },
        Case {
            rule: "a timestamp with whitespace is malformed",
            timestamp: " 1764000000",
            expected: Err(SignatureFault::Malformed),
            ..BASE
        },
        Case {
            rule: "a timestamp in milliseconds is malformed",
            timestamp: "1764000000000",
            expected: Err(SignatureFault::Malformed),
            ..BASE
        },
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn faults_are_reported_malformed_first_then_window_then_mismatch() {
    let cases = [
        Case {
            rule: "a malformed signature is reported before the window",
            timestamp: "1",
            sent: Sent::Literal("not hex"),
            expected: Err(SignatureFault::Malformed),
            ..BASE
        },
        Case {
            rule: "a stale timestamp is reported before a mismatch",
            timestamp: "1",
            sent: Sent::Literal("0000000000000000000000000000000000000000000000000000000000000000"),
            expected: Err(SignatureFault::OutsideWindow),
            ..BASE
        },
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn every_fault_has_its_own_message() {
    let faults =
        [SignatureFault::Malformed, SignatureFault::OutsideWindow, SignatureFault::Mismatch, SignatureFault::Replayed];
    for (i, a) in faults.iter().enumerate() {
        assert!(!a.message().is_empty());
        for b in &faults[i + 1..] {
            assert_ne!(a.message(), b.message());
        }
    }
}

proptest! {
    #[test]
    fn sign_agrees_with_the_reference_and_check_accepts_it(
        secret_text in "[ -~]{1,64}",
        offset in -TOLERANCE..=TOLERANCE,
        method in "(GET|POST|PUT|PATCH|DELETE)",
        path in "/[ -~]{0,80}",
        body in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let secret = SigningSecret::from_plaintext(secret_text.clone());
        let timestamp = (NOW + offset).to_string();
        let body_sha256 = body_sha256_hex(&body);
        let signature = sign(&secret, &timestamp, &method, &path, &body_sha256);
        prop_assert_eq!(&signature, &reference_signature(&secret_text, &timestamp, &method, &path, &body));
        let request = SignedRequest {
            timestamp: &timestamp,
            method: &method,
            path_and_query: &path,
            body_sha256: &body_sha256,
            signature: &signature,
        };
        let (bytes, at) = super::check(&super::SigningKey::new(&secret), &request, NOW, TOLERANCE).unwrap();
        prop_assert_eq!(at, NOW + offset);
        prop_assert_eq!(hex::encode(bytes), signature);
    }
}

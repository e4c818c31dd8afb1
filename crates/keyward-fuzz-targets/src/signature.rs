//! Request signatures: the canonical string (`timestamp \n METHOD \n path \n body-sha256`), its
//! HMAC, and `check`'s parsing of the timestamp and hex signature as a client sends them.
//! Input lines: secret, timestamp, method, path, body hash, and optionally a signature to try.

use keyward_core::crypto::SigningSecret;
use keyward_core::signing::{body_sha256_hex, check, sign, SignatureFault, SignedRequest, SigningKey};

const NOW: i64 = 1_700_000_000;
const TOLERANCE: i64 = 300;

pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.splitn(6, '\n');
    let mut next = || lines.next().unwrap_or("");
    let (secret, timestamp, method, path, body_sha256) = (next(), next(), next(), next(), next());
    let tried = lines.next();
    let secret = SigningSecret::from_plaintext(secret.to_owned());
    let key = SigningKey::new(&secret);
    let signature = sign(&secret, timestamp, method, path, body_sha256);
    assert_eq!(signature.len(), 64);
    assert_eq!(body_sha256_hex(data).len(), 64);

    let request = SignedRequest { timestamp, method, path_and_query: path, body_sha256, signature: &signature };
    let well_formed = !timestamp.is_empty() && timestamp.len() <= 12 && timestamp.bytes().all(|b| b.is_ascii_digit());
    match check(&key, &request, NOW, TOLERANCE) {
        Ok((bytes, at)) => {
            assert!(well_formed, "timestamp {timestamp:?} accepted");
            assert_eq!(hex::encode(bytes), signature);
            assert!((NOW - at).abs() <= TOLERANCE);
        }
        Err(SignatureFault::Mismatch) => panic!("a request's own signature does not match it"),
        Err(SignatureFault::Malformed) => assert!(!well_formed, "timestamp {timestamp:?} refused as malformed"),
        Err(SignatureFault::OutsideWindow | SignatureFault::Replayed) => {}
    }
    // At its own time a well-formed request always passes.
    if well_formed {
        let at: i64 = timestamp.parse().expect("at most 12 digits");
        assert!(check(&key, &request, at, TOLERANCE).is_ok(), "{request:?}");
        // Any other signature is refused.
        let mut changed = signature.clone().into_bytes();
        changed[0] = if changed[0] == b'0' { b'1' } else { b'0' };
        let changed = String::from_utf8(changed).expect("hex is ASCII");
        let forged = SignedRequest { signature: &changed, ..request };
        assert_eq!(check(&key, &forged, at, TOLERANCE), Err(SignatureFault::Mismatch));
    }
    // A signature as a client might send it: accepted only when it is the right one.
    if let Some(tried) = tried {
        let attempt = SignedRequest { signature: tried, ..request };
        if check(&key, &attempt, NOW, TOLERANCE).is_ok() {
            assert!(tried.eq_ignore_ascii_case(&signature), "{tried:?} accepted for {signature}");
        }
    }
}

//! Request signatures: `hex(HMAC-SHA256(secret, timestamp \n METHOD \n path_and_query \n hex(sha256(body))))`.
//! Replay protection needs state, so it is a parameter of the caller, not kept here.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::crypto::SigningSecret;

/// SHA-256 of an empty body, the value to sign for GET requests.
pub const EMPTY_BODY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Lowercase hex SHA-256 of a request body.
pub fn body_sha256_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// A signing secret keyed into HMAC once. A check clones the keyed state (two SHA-256 states)
/// instead of hashing the secret into the key schedule again on every request. The state is
/// boxed: a cached key that does not sign pays for an empty pointer, not 152 bytes.
#[derive(Clone)]
pub struct SigningKey {
    keyed: Box<Hmac<Sha256>>,
}

impl SigningKey {
    pub fn new(secret: &SigningSecret) -> Self {
        let keyed = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("HMAC accepts any key length");
        Self { keyed: Box::new(keyed) }
    }
}

impl Drop for SigningKey {
    fn drop(&mut self) {
        crate::key::overwrite_keyed_hmac(&mut self.keyed);
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

fn mac(key: &SigningKey, timestamp: &str, method: &str, path_and_query: &str, body_sha256: &str) -> Hmac<Sha256> {
    // The state, not the box: a check copies it on the stack and allocates nothing.
    let mut mac = Hmac::clone(&key.keyed);
    for (i, part) in [timestamp, method, path_and_query, body_sha256].into_iter().enumerate() {
        if i > 0 {
            mac.update(b"\n");
        }
        mac.update(part.as_bytes());
    }
    mac
}

/// The signature a client sends, lowercase hex. `method` is upper-cased by the caller.
pub fn sign(secret: &SigningSecret, timestamp: &str, method: &str, path_and_query: &str, body_sha256: &str) -> String {
    hex::encode(mac(&SigningKey::new(secret), timestamp, method, path_and_query, body_sha256).finalize().into_bytes())
}

/// The signed parts of a request, as received.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    pub timestamp: &'a str,
    pub method: &'a str,
    pub path_and_query: &'a str,
    pub body_sha256: &'a str,
    pub signature: &'a str,
}

/// Why a signature was refused; all of them answer `INVALID_SIGNATURE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureFault {
    Malformed,
    OutsideWindow,
    Mismatch,
    Replayed,
}

impl SignatureFault {
    pub const fn message(self) -> &'static str {
        match self {
            Self::Malformed => "The signature or timestamp is malformed",
            Self::OutsideWindow => "The request timestamp is outside the accepted window",
            Self::Mismatch => "The signature does not match the request",
            Self::Replayed => "This signature has already been used",
        }
    }
}

/// The 32 signature bytes: what a replay store remembers.
pub type SignatureBytes = [u8; 32];

/// Checks timestamp window and MAC (constant time). On success returns the signature bytes
/// and its Unix timestamp, for the caller's replay store.
pub fn check(
    key: &SigningKey,
    request: &SignedRequest<'_>,
    now_unix: i64,
    tolerance_seconds: i64,
) -> Result<(SignatureBytes, i64), SignatureFault> {
    let timestamp: i64 = if request.timestamp.is_empty()
        || request.timestamp.len() > 12
        || !request.timestamp.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(SignatureFault::Malformed);
    } else {
        request.timestamp.parse().map_err(|_| SignatureFault::Malformed)?
    };
    let mut given = [0u8; 32];
    hex::decode_to_slice(request.signature, &mut given).map_err(|_| SignatureFault::Malformed)?;
    if (now_unix - timestamp).abs() > tolerance_seconds {
        return Err(SignatureFault::OutsideWindow);
    }
    let method_upper: &str = request.method;
    let mac = mac(key, request.timestamp, method_upper, request.path_and_query, request.body_sha256);
    mac.verify_slice(&given).map_err(|_| SignatureFault::Mismatch)?;
    Ok((given, timestamp))
}

#[cfg(test)]
mod tests;

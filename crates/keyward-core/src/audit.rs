//! The audit chain: each event's hash covers the previous event's hash and its own canonical
//! content, so an edited or deleted row breaks every link after it.

use sha2::{Digest, Sha256};

/// `sha256(prev_hash || 0x00 || canonical)`, hex. `canonical` is the event's fields joined in a
/// fixed order by the store (see `keyward_store::AuditEvent::canonical`).
pub fn chain_hash(prev_hash: &str, canonical: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update([0u8]);
    hasher.update(canonical.as_bytes());
    hex::encode(hasher.finalize())
}

/// The hash the first event of an org chains from.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

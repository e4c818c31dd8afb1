//! Base62 with the alphabet `0-9A-Za-z`, as the key checksum and random part use it.

pub const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Writes `value` in base62, most significant digit first, left-padded with `0` to `N` digits.
/// Values that need more than `N` digits keep only the low `N` digits (never the case for a CRC32 in 6).
pub fn encode_fixed<const N: usize>(mut value: u64) -> [u8; N] {
    let mut out = [b'0'; N];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[usize::try_from(value % 62).unwrap_or(0)];
        value /= 62;
    }
    out
}

pub fn is_base62(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
}

/// Draws `n` uniformly distributed base62 characters (rejection sampling, no modulo bias).
pub fn random_string(rng: &mut impl rand::RngCore, n: usize) -> String {
    let mut out = String::with_capacity(n);
    while out.len() < n {
        let mut byte = [0u8; 1];
        rng.fill_bytes(&mut byte);
        // 62 * 4 = 248: bytes at or above it would favour the first characters.
        if byte[0] < 248 {
            out.push(char::from(ALPHABET[usize::from(byte[0] % 62)]));
        }
    }
    out
}

//! Secret-bearing types. None has `Display`; each `Debug` is redacted so a stray `{:?}` in a log
//! line cannot leak one.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Constant-time equality for secrets and their hashes: the one comparison keyward uses.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// A plaintext API key, as returned once by create and roll. Zeroed on drop.
#[derive(Clone)]
pub struct KeySecret(String);

impl Drop for KeySecret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ZeroizeOnDrop for KeySecret {}

impl KeySecret {
    pub(crate) fn new(text: String) -> Self {
        Self(text)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The displayable first 16 characters (`kw_live_a1b2c3d4`).
    pub fn prefix_field(&self) -> &str {
        super::format::prefix_field(&self.0)
    }
}

impl fmt::Debug for KeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeySecret({}…)", self.prefix_field())
    }
}

/// HMAC-SHA256 of a key under the server pepper: what the database stores and the cache is keyed by.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// Constant-time comparison, for confirming a map hit.
    pub fn ct_eq(&self, other: &KeyHash) -> bool {
        ct_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({:02x}{:02x}…)", self.0[0], self.0[1])
    }
}

/// The server-side secret that keys are hashed with, so a stolen database alone cannot be
/// brute-forced offline. Derived from the master key.
#[derive(Clone)]
pub struct Pepper(Hmac<Sha256>);

impl Pepper {
    pub fn new(bytes: &[u8; 32]) -> Self {
        Self(Hmac::new_from_slice(bytes).expect("HMAC accepts any key length"))
    }

    /// Hashes a key string (or an operator token). Keys carry ≈190 random bits, so one keyed
    /// hash is enough; a slow password hash would only slow every verification down.
    pub fn hash(&self, secret: &str) -> KeyHash {
        let mut mac = self.0.clone();
        mac.update(secret.as_bytes());
        KeyHash(mac.finalize().into_bytes().into())
    }
}

impl Drop for Pepper {
    fn drop(&mut self) {
        overwrite_keyed_hmac(&mut self.0);
    }
}

/// `hmac` 0.12 offers no zeroize support and safe code cannot reach into its state, so a keyed
/// state (as good as the key for computing MACs) is overwritten on drop by one keyed with zeros;
/// `black_box` keeps that store from being optimised away as dead. Best effort: the `zeroize`
/// crate's volatile writes are the stronger guarantee.
pub(crate) fn overwrite_keyed_hmac(mac: &mut Hmac<Sha256>) {
    *mac = Hmac::new_from_slice(&[0u8; 32]).expect("HMAC accepts any key length");
    std::hint::black_box(mac);
}

impl fmt::Debug for Pepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pepper(<redacted>)")
    }
}

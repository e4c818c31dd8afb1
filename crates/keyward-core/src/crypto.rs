//! The master key and what hangs off it: the key-hashing pepper and the AEAD that keeps signing
//! secrets encrypted at rest. Nodes sharing a database must share the master key.

use std::fmt;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use sha2::Sha256;

use crate::key::Pepper;

/// 32 bytes from `KEYWARD_MASTER_KEY` (base64) or the generated key file.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MasterKeyError {
    #[error("master key is not valid base64")]
    NotBase64,
    #[error("master key must be 32 bytes, got {0}")]
    WrongLength(usize),
}

impl MasterKey {
    pub fn generate(rng: &mut (impl rand::RngCore + rand::CryptoRng)) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    pub fn from_base64(text: &str) -> Result<Self, MasterKeyError> {
        let bytes =
            base64::engine::general_purpose::STANDARD.decode(text.trim()).map_err(|_| MasterKeyError::NotBase64)?;
        let len = bytes.len();
        bytes.try_into().map(Self).map_err(|_| MasterKeyError::WrongLength(len))
    }

    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    /// Independent subkeys per purpose (HKDF-SHA256), so the pepper and the AEAD key never coincide.
    fn derive(&self, purpose: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        Hkdf::<Sha256>::new(Some(b"keyward/v1"), &self.0)
            .expand(purpose.as_bytes(), &mut out)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        out
    }

    pub fn pepper(&self) -> Pepper {
        Pepper::new(&self.derive("key-hash-pepper"))
    }

    pub fn secret_box(&self) -> SecretBox {
        SecretBox { cipher: XChaCha20Poly1305::new(&self.derive("signing-secret-aead").into()) }
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// A key's HMAC signing secret. The server must use it, so it is encrypted, not hashed.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(String);

impl SigningSecret {
    /// `whsec_`-style text: a readable tag and 43 base62 characters (≈256 bits).
    pub fn generate(rng: &mut (impl rand::RngCore + rand::CryptoRng)) -> Self {
        Self(format!("kwsig_{}", crate::base62::random_string(rng, 43)))
    }

    /// For clients and tests holding a secret they were shown.
    pub fn from_plaintext(text: String) -> Self {
        Self(text)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(<redacted>)")
    }
}

/// Decryption failed: wrong master key, or a tampered row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signing secret could not be decrypted (is KEYWARD_MASTER_KEY the one it was sealed with?)")]
pub struct OpenError;

/// XChaCha20-Poly1305: a random 24-byte nonce per message is safe without a counter.
#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl SecretBox {
    /// `nonce || ciphertext`, bound to `context` (the key id) so a row's secret cannot be moved to another key.
    pub fn seal(
        &self,
        secret: &SigningSecret,
        context: &str,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
    ) -> Vec<u8> {
        let mut nonce = [0u8; 24];
        rng.fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: secret.0.as_bytes(), aad: context.as_bytes() })
            .expect("XChaCha20-Poly1305 encryption of a short message cannot fail");
        let mut out = Vec::with_capacity(24 + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    pub fn open(&self, sealed: &[u8], context: &str) -> Result<SigningSecret, OpenError> {
        if sealed.len() < 24 {
            return Err(OpenError);
        }
        let (nonce, ciphertext) = sealed.split_at(24);
        let plain = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ciphertext, aad: context.as_bytes() })
            .map_err(|_| OpenError)?;
        String::from_utf8(plain).map(SigningSecret).map_err(|_| OpenError)
    }
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBox(<redacted>)")
    }
}

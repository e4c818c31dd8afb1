//! The master key and what hangs off it: the key-hashing pepper and the AEAD that keeps signing
//! secrets encrypted at rest. Nodes sharing a database must share the master key.

use std::fmt;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::key::Pepper;

/// 32 bytes from `KEYWARD_MASTER_KEY` (base64) or the generated key file. Zeroed on drop.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ZeroizeOnDrop for MasterKey {}

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
        // The decoded buffer is a copy of the key too: zeroed when it goes out of scope.
        let bytes = Zeroizing::new(
            base64::engine::general_purpose::STANDARD.decode(text.trim()).map_err(|_| MasterKeyError::NotBase64)?,
        );
        <[u8; 32]>::try_from(bytes.as_slice()).map(Self).map_err(|_| MasterKeyError::WrongLength(bytes.len()))
    }

    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    /// Independent subkeys per purpose (HKDF-SHA256), so the pepper and the AEAD key never coincide.
    fn derive(&self, purpose: &str) -> Zeroizing<[u8; 32]> {
        let mut out = Zeroizing::new([0u8; 32]);
        Hkdf::<Sha256>::new(Some(b"keyward/v1"), &self.0)
            .expand(purpose.as_bytes(), out.as_mut_slice())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        out
    }

    pub fn pepper(&self) -> Pepper {
        Pepper::new(&self.derive("key-hash-pepper"))
    }

    pub fn secret_box(&self) -> SecretBox {
        // The cipher zeroes its own copy of the key on drop (chacha20poly1305 does so by design).
        SecretBox { cipher: XChaCha20Poly1305::new(&(*self.derive("signing-secret-aead")).into()) }
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// A key's HMAC signing secret. The server must use it, so it is encrypted, not hashed. Zeroed on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(String);

impl Drop for SigningSecret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ZeroizeOnDrop for SigningSecret {}

impl SigningSecret {
    /// `whsec_`-style text: a readable tag and 43 base62 characters (≈256 bits).
    pub fn generate(rng: &mut (impl rand::RngCore + rand::CryptoRng)) -> Self {
        let random = Zeroizing::new(crate::base62::random_string(rng, 43));
        // Sized up front, so no reallocation leaves a copy of the secret behind.
        let mut text = String::with_capacity(6 + random.len());
        text.push_str("kwsig_");
        text.push_str(&random);
        Self(text)
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
        // Not UTF-8: the error still owns the plaintext, zeroed before it is dropped.
        String::from_utf8(plain).map(SigningSecret).map_err(|e| {
            e.into_bytes().zeroize();
            OpenError
        })
    }
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBox(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use zeroize::ZeroizeOnDrop;

    use super::{MasterKey, MasterKeyError, SigningSecret};
    use crate::key::KeySecret;

    /// Compiles only while every plaintext secret type zeroes itself on drop.
    fn zeroized_on_drop<T: ZeroizeOnDrop>() {}

    #[test]
    fn plaintext_secret_types_are_zeroized_on_drop() {
        zeroized_on_drop::<MasterKey>();
        zeroized_on_drop::<SigningSecret>();
        zeroized_on_drop::<KeySecret>();
    }

    #[test]
    fn a_master_key_round_trips_through_base64_and_a_short_one_names_its_length() {
        let key = MasterKey::generate(&mut rand::rngs::OsRng);
        let again = MasterKey::from_base64(&format!(" {}\n", key.to_base64())).expect("its own base64");
        assert_eq!(again.to_base64(), key.to_base64());
        assert_eq!(MasterKey::from_base64("AAAA").map(|_| ()), Err(MasterKeyError::WrongLength(3)));
        assert_eq!(MasterKey::from_base64("not base64!").map(|_| ()), Err(MasterKeyError::NotBase64));
    }

    #[test]
    fn a_sealed_signing_secret_opens_only_in_its_context() {
        let key = MasterKey::generate(&mut rand::rngs::OsRng);
        let secret = SigningSecret::generate(&mut rand::rngs::OsRng);
        assert!(secret.expose().starts_with("kwsig_") && secret.expose().len() == 49, "{}", secret.expose().len());
        let sealed = key.secret_box().seal(&secret, "key_a", &mut rand::rngs::OsRng);
        assert_eq!(key.secret_box().open(&sealed, "key_a").as_ref().map(SigningSecret::expose), Ok(secret.expose()));
        assert!(key.secret_box().open(&sealed, "key_b").is_err());
    }
}

//! `{prefix}_{environment}_{random}{checksum}`: 32 random base62 characters and a 6-character
//! base62 CRC32 of everything before it, so a typo is caught without a database look-up.

use std::fmt;

use crate::base62;

use super::KeySecret;

const RANDOM_LEN: usize = 32;
const CHECKSUM_LEN: usize = 6;
/// The stored, displayable `prefix` field of a key is its first 16 characters.
pub const PREFIX_FIELD_LEN: usize = 16;

/// The operator's key prefix: `[a-z][a-z0-9]{0,7}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPrefix(String);

impl KeyPrefix {
    pub fn parse(text: &str) -> Result<Self, String> {
        let bytes = text.as_bytes();
        let shaped = !bytes.is_empty()
            && bytes.len() <= 8
            && bytes[0].is_ascii_lowercase()
            && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if shaped {
            Ok(Self(text.to_owned()))
        } else {
            Err(format!("key_prefix {text:?} must match [a-z][a-z0-9]{{0,7}}"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for KeyPrefix {
    fn default() -> Self {
        Self("kw".to_owned())
    }
}

/// `live` or `test`: part of the key string, so a test key can never pass for a live one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Environment {
    Live,
    Test,
}

impl Environment {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "live" => Some(Self::Live),
            "test" => Some(Self::Test),
            _ => None,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Test => "test",
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key string that passed the format and checksum checks. Borrowed: parsing never allocates.
#[derive(Debug, Clone, Copy)]
pub struct ParsedKey<'a> {
    pub environment: Environment,
    text: &'a str,
}

impl<'a> ParsedKey<'a> {
    /// The whole key string (a secret: never log it).
    pub fn expose(&self) -> &'a str {
        self.text
    }
}

/// Parses and generates key strings for one operator prefix.
#[derive(Debug, Clone, Default)]
pub struct KeyFormat {
    prefix: KeyPrefix,
}

impl KeyFormat {
    pub fn new(prefix: KeyPrefix) -> Self {
        Self { prefix }
    }

    pub fn prefix(&self) -> &KeyPrefix {
        &self.prefix
    }

    /// Checks shape and checksum. Anything else — whitespace, another prefix, a changed
    /// character — is `None`, which verification reports as `INVALID_API_KEY`.
    pub fn parse<'a>(&self, text: &'a str) -> Option<ParsedKey<'a>> {
        let rest = text.strip_prefix(self.prefix.as_str())?.strip_prefix('_')?;
        let (environment, rest) = if let Some(rest) = rest.strip_prefix("live_") {
            (Environment::Live, rest)
        } else {
            (Environment::Test, rest.strip_prefix("test_")?)
        };
        if rest.len() != RANDOM_LEN + CHECKSUM_LEN || !rest.bytes().all(base62::is_base62) {
            return None;
        }
        let (body, checksum) = text.split_at(text.len() - CHECKSUM_LEN);
        if checksum_of(body) != checksum.as_bytes() {
            return None;
        }
        Some(ParsedKey { environment, text })
    }

    /// A fresh key: 32 CSPRNG base62 characters (≈190 bits) and the checksum.
    pub fn generate(&self, environment: Environment, rng: &mut (impl rand::RngCore + rand::CryptoRng)) -> KeySecret {
        let mut text = String::with_capacity(self.prefix.as_str().len() + 6 + RANDOM_LEN + CHECKSUM_LEN);
        text.push_str(self.prefix.as_str());
        text.push('_');
        text.push_str(environment.as_str());
        text.push('_');
        // The random part alone is most of the secret: its temporary buffer is zeroed too.
        text.push_str(&zeroize::Zeroizing::new(base62::random_string(rng, RANDOM_LEN)));
        let checksum = checksum_of(&text);
        text.extend(checksum.iter().map(|&b| char::from(b)));
        KeySecret::new(text)
    }
}

/// CRC32 (IEEE, as zlib) of `body`, in 6 base62 digits.
pub fn checksum_of(body: &str) -> [u8; CHECKSUM_LEN] {
    base62::encode_fixed::<CHECKSUM_LEN>(u64::from(crc32fast::hash(body.as_bytes())))
}

/// The displayable `prefix` field: the first 16 characters of a key.
pub fn prefix_field(key: &str) -> &str {
    key.get(..PREFIX_FIELD_LEN).unwrap_or(key)
}

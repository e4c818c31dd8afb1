//! The master keyring: the current master key and the older ones still needed, each with a
//! version. Key hashes and sealed signing secrets are stored with the version they were made
//! under, so a rotation never has to recompute what it cannot (a key hash without the key):
//! new hashes and seals use the current version, look-ups and unseals use any version held.
//!
//! The text form (the `.master-key` file, `KEYWARD_MASTER_KEY`) is one `version:base64` entry per
//! line (or separated by commas), newest first, `#` comments allowed. A lone bare base64 key, the
//! form keyward wrote before keyrings existed, is version 1.

use std::fmt;

use crate::crypto::{MasterKey, MasterKeyError, OpenError, SecretBox, SigningSecret};
use crate::key::{KeyHash, Pepper};

/// What the master-key check hashes: a value stored per version lets a node refuse to start with
/// a key that is not the one the database knows under that version.
const CHECK_TEXT: &str = "keyward master key check";

/// A keyring that cannot be used as given. Never names key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    #[error("the keyring holds no master key")]
    Empty,
    #[error("entry {entry}: {problem}")]
    Entry { entry: usize, problem: EntryProblem },
    #[error("version {0} appears more than once")]
    Duplicate(u32),
    #[error("the keyring does not hold master key version {0}")]
    Missing(u32),
    #[error("version {0} is the current master key and cannot be removed")]
    Current(u32),
}

/// What is wrong with one entry of the text form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryProblem {
    #[error("the version must be an integer from 1 to {max}, as in 2:<base64>", max = u32::MAX)]
    Version,
    #[error("give each key its version, as in 2:<base64> (only a keyring of one key may omit it)")]
    Unversioned,
    #[error("{0}")]
    Key(MasterKeyError),
}

struct Entry {
    version: u32,
    key: MasterKey,
    pepper: Pepper,
    secret_box: SecretBox,
}

impl Entry {
    fn new(version: u32, key: MasterKey) -> Self {
        Self { version, pepper: key.pepper(), secret_box: key.secret_box(), key }
    }
}

impl Clone for Entry {
    fn clone(&self) -> Self {
        Self::new(self.version, self.key.clone())
    }
}

/// Master keys by version, newest first, and which one is current (new hashes and seals). Every
/// key and the subkeys derived from it are zeroed on drop.
#[derive(Clone)]
pub struct Keyring {
    /// Newest first; never empty.
    entries: Vec<Entry>,
    /// Index into `entries` of the current version.
    current: usize,
}

impl Keyring {
    /// A keyring of one key, version 1: a database from before rotation, or a test.
    pub fn single(key: MasterKey) -> Self {
        Self { entries: vec![Entry::new(1, key)], current: 0 }
    }

    /// Keys by version (any order); the newest is current.
    pub fn new(keys: Vec<(u32, MasterKey)>) -> Result<Self, KeyringError> {
        let mut entries: Vec<Entry> = Vec::with_capacity(keys.len());
        for (version, key) in keys {
            if version == 0 {
                return Err(KeyringError::Entry { entry: entries.len() + 1, problem: EntryProblem::Version });
            }
            if entries.iter().any(|entry| entry.version == version) {
                return Err(KeyringError::Duplicate(version));
            }
            entries.push(Entry::new(version, key));
        }
        if entries.is_empty() {
            return Err(KeyringError::Empty);
        }
        entries.sort_by_key(|entry| std::cmp::Reverse(entry.version));
        Ok(Self { entries, current: 0 })
    }

    /// The text form: `version:base64` entries separated by newlines or commas, `#` comments.
    pub fn parse(text: &str) -> Result<Self, KeyringError> {
        let items: Vec<&str> = text
            .lines()
            .map(|line| line.split('#').next().unwrap_or_default())
            .flat_map(|line| line.split(','))
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .collect();
        let lone = items.len() == 1;
        let mut keys = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let entry = index + 1;
            let fail = |problem| KeyringError::Entry { entry, problem };
            let (version, key) = match item.split_once(':') {
                Some((version, key)) => {
                    let version = version.trim().parse::<u32>().ok().filter(|v| *v > 0);
                    (version.ok_or_else(|| fail(EntryProblem::Version))?, key)
                }
                None if lone => (1, *item),
                None => return Err(fail(EntryProblem::Unversioned)),
            };
            keys.push((version, MasterKey::from_base64(key).map_err(|e| fail(EntryProblem::Key(e)))?));
        }
        Self::new(keys)
    }

    /// The text form, newest first, for the key file. It holds every key: write it only to a
    /// private file (or show it to the operator who asked for it).
    pub fn to_text(&self) -> zeroize::Zeroizing<String> {
        let mut text = zeroize::Zeroizing::new(String::from(
            "# keyward master keyring: one version:base64 line per master key, newest first.\n\
             # Nodes sharing a database need the same keys. Do not edit while keyward rotates.\n",
        ));
        for entry in &self.entries {
            let encoded = zeroize::Zeroizing::new(entry.key.to_base64());
            text.push_str(&entry.version.to_string());
            text.push(':');
            text.push_str(&encoded);
            text.push('\n');
        }
        text
    }

    /// This keyring with `version` current: the one the database says new hashes and seals use.
    pub fn with_current(mut self, version: u32) -> Result<Self, KeyringError> {
        self.current = self.index(version).ok_or(KeyringError::Missing(version))?;
        Ok(self)
    }

    /// This keyring plus a new key, one version above the newest, made current.
    #[must_use]
    pub fn with_new_key(&self, rng: &mut (impl rand::RngCore + rand::CryptoRng)) -> Self {
        let version = self.newest_version().saturating_add(1);
        let mut entries = Vec::with_capacity(self.entries.len() + 1);
        entries.push(Entry::new(version, MasterKey::generate(rng)));
        entries.extend(self.entries.iter().cloned());
        Self { entries, current: 0 }
    }

    /// This keyring without `version` (retired). The current version cannot be removed.
    pub fn without(&self, version: u32) -> Result<Self, KeyringError> {
        let index = self.index(version).ok_or(KeyringError::Missing(version))?;
        if index == self.current {
            return Err(KeyringError::Current(version));
        }
        let current = self.current_version();
        let entries: Vec<Entry> = self.entries.iter().filter(|entry| entry.version != version).cloned().collect();
        let current = entries.iter().position(|entry| entry.version == current).unwrap_or(0);
        Ok(Self { entries, current })
    }

    fn index(&self, version: u32) -> Option<usize> {
        self.entries.iter().position(|entry| entry.version == version)
    }

    pub fn current_version(&self) -> u32 {
        self.entries[self.current].version
    }

    /// The highest version held (current, or one distributed ahead of a rotation).
    pub fn newest_version(&self) -> u32 {
        self.entries[0].version
    }

    /// Every version held, newest first.
    pub fn versions(&self) -> impl Iterator<Item = u32> + '_ {
        self.entries.iter().map(|entry| entry.version)
    }

    pub fn holds(&self, version: u32) -> bool {
        self.index(version).is_some()
    }

    pub fn master_key(&self, version: u32) -> Option<&MasterKey> {
        self.index(version).map(|index| &self.entries[index].key)
    }

    /// The pepper of `version`, if held.
    pub fn pepper(&self, version: u32) -> Option<&Pepper> {
        self.index(version).map(|index| &self.entries[index].pepper)
    }

    /// The pepper new hashes use.
    pub fn current_pepper(&self) -> &Pepper {
        &self.entries[self.current].pepper
    }

    /// A key (or token) hashed under the current version: what a new key is stored as.
    pub fn hash(&self, secret: &str) -> (u32, KeyHash) {
        (self.current_version(), self.current_pepper().hash(secret))
    }

    /// The hashes a stored secret may have, current version first, then every other version held,
    /// newest first; each computed only when the iterator reaches it (one HMAC per version).
    pub fn hashes<'k>(&'k self, secret: &'k str) -> impl Iterator<Item = (u32, KeyHash)> + 'k {
        let current = self.current;
        std::iter::once(current)
            .chain((0..self.entries.len()).filter(move |index| *index != current))
            .map(move |index| (self.entries[index].version, self.entries[index].pepper.hash(secret)))
    }

    /// Seals a signing secret under the current version, bound to `context` (the key id).
    pub fn seal(
        &self,
        secret: &SigningSecret,
        context: &str,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
    ) -> (u32, Vec<u8>) {
        let entry = &self.entries[self.current];
        (entry.version, entry.secret_box.seal(secret, context, rng))
    }

    /// Opens a secret sealed under `version`. A version this keyring does not hold fails as a
    /// wrong key does.
    pub fn open(&self, version: u32, sealed: &[u8], context: &str) -> Result<SigningSecret, OpenError> {
        let index = self.index(version).ok_or(OpenError)?;
        self.entries[index].secret_box.open(sealed, context)
    }

    /// The value stored per version to recognise its key later (hex of a hash of a fixed text
    /// under that version's pepper; version 1's is the value keyward always stored).
    pub fn check(&self, version: u32) -> Option<String> {
        self.pepper(version).map(|pepper| hex::encode(pepper.hash(CHECK_TEXT).as_bytes()))
    }
}

impl From<MasterKey> for Keyring {
    fn from(key: MasterKey) -> Self {
        Self::single(key)
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let versions: Vec<u32> = self.versions().collect();
        f.debug_struct("Keyring")
            .field("versions", &versions)
            .field("current", &self.current_version())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;

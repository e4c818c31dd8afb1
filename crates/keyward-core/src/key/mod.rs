//! API key strings: their format and checksum, generation, and the keyed hash they are stored as.

mod format;
mod secret;

pub use format::{checksum_of, prefix_field, Environment, KeyFormat, KeyPrefix, ParsedKey, PREFIX_FIELD_LEN};
pub(crate) use secret::overwrite_keyed_hmac;
pub use secret::{ct_eq, KeyHash, KeySecret, Pepper};

#[cfg(test)]
mod tests;

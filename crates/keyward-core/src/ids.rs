//! Typed, prefixed identifiers (`org_…`, `key_…`, `usr_…`, `evt_…`, `pn_…`, `ch_…`).

use std::fmt;

/// The id could not be parsed: wrong prefix or characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed id")]
pub struct MalformedId;

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A fresh id: the prefix and 20 random base62 characters (≈119 bits).
            pub fn generate(rng: &mut impl rand::RngCore) -> Self {
                let mut id = String::with_capacity(Self::PREFIX.len() + 20);
                id.push_str(Self::PREFIX);
                id.push_str(&crate::base62::random_string(rng, 20));
                Self(id)
            }

            /// Accepts `prefix` followed by 1–64 base62 characters.
            pub fn parse(text: &str) -> Result<Self, MalformedId> {
                let rest = text.strip_prefix(Self::PREFIX).ok_or(MalformedId)?;
                if rest.is_empty() || rest.len() > 64 || !rest.bytes().all(crate::base62::is_base62) {
                    return Err(MalformedId);
                }
                Ok(Self(text.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

prefixed_id!(/// An organization (tenant).
    OrgId, "org_");
prefixed_id!(/// An API key's public id (not its secret).
    KeyId, "key_");
prefixed_id!(/// An organization member.
    MemberId, "usr_");
prefixed_id!(/// An audit event.
    EventId, "evt_");
prefixed_id!(/// A registered sender phone number.
    PhoneNumberId, "pn_");
prefixed_id!(/// A channel.
    ChannelId, "ch_");

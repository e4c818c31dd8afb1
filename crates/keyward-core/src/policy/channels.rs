//! The four channel rules: key `all`/scoped × request with/without `target.channels`.

use std::borrow::Cow;

use super::Denial;
use crate::record::Channels;
use crate::Code;

/// The channels a request may reach, borrowed from the key or the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EffectiveChannels<'p, 'a> {
    All,
    Key(&'p [String]),
    Requested(&'a [Cow<'a, str>]),
}

impl EffectiveChannels<'_, '_> {
    pub fn for_each(&self, mut f: impl FnMut(&str)) {
        match self {
            Self::All => {}
            Self::Key(list) => list.iter().for_each(|s| f(s)),
            Self::Requested(list) => list.iter().for_each(|s| f(s)),
        }
    }
}

pub(super) fn effective<'p, 'a>(
    key: &'p Channels,
    requested: Option<&'a [Cow<'a, str>]>,
) -> Result<EffectiveChannels<'p, 'a>, Denial> {
    // An empty list targets nothing in particular: read it as "not given".
    let requested = requested.filter(|list| !list.is_empty());
    match (key, requested) {
        (Channels::All, None) => Ok(EffectiveChannels::All),
        (Channels::All, Some(requested)) => Ok(EffectiveChannels::Requested(requested)),
        (Channels::Only(own), None) => Ok(EffectiveChannels::Key(own)),
        (Channels::Only(own), Some(requested)) => {
            let outside: Vec<&str> =
                requested.iter().map(AsRef::as_ref).filter(|slug| !own.iter().any(|o| o == slug)).collect();
            if outside.is_empty() {
                Ok(EffectiveChannels::Requested(requested))
            } else {
                Err(Denial {
                    code: Code::ChannelScopeViolation,
                    message: Cow::Owned(format!("This API key may not target the channels: {}", outside.join(", "))),
                })
            }
        }
    }
}

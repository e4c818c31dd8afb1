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

/// The most channels one request may name (the HTTP layers refuse more with a 400).
pub const MAX_REQUESTED_CHANNELS: usize = 100;

pub(super) fn effective<'p, 'a>(
    key: &'p Channels,
    org_channels: &[String],
    requested: Option<&'a [Cow<'a, str>]>,
) -> Result<EffectiveChannels<'p, 'a>, Denial> {
    // An empty list targets nothing in particular: read it as "not given".
    let requested = requested.filter(|list| !list.is_empty());
    // A slug the org does not have is refused whatever the key's rule: `all` must not echo
    // made-up channels back as the effective set.
    let permitted = |slug: &str| {
        org_channels.iter().any(|c| c == slug) && !matches!(key, Channels::Only(own) if !own.iter().any(|o| o == slug))
    };
    if let Some(requested) = requested {
        if !requested.iter().all(|slug| permitted(slug)) {
            let outside: Vec<&str> = requested.iter().map(AsRef::as_ref).filter(|slug| !permitted(slug)).collect();
            return Err(Denial {
                code: Code::ChannelScopeViolation,
                message: Cow::Owned(format!("This API key may not target the channels: {}", outside.join(", "))),
            });
        }
    }
    Ok(match (key, requested) {
        (Channels::All, None) => EffectiveChannels::All,
        (Channels::Only(own), None) => EffectiveChannels::Key(own),
        (_, Some(requested)) => EffectiveChannels::Requested(requested),
    })
}

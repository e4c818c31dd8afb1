//! The sender rule, applied only when `messages:send` is asked for.

use super::{Denial, KeyPolicy};
use crate::phone;
use crate::Code;

pub(super) fn check(policy: &KeyPolicy, sender: Option<&str>) -> Result<(), Denial> {
    let Some(sender) = sender else {
        return if policy.phone_allowlist.is_empty() {
            Ok(())
        } else {
            Err(Denial::new(Code::SenderNotAllowed, "This API key requires a sender from its phone number allowlist"))
        };
    };
    // The common case is already E.164 and compares as is; anything else is normalized first.
    let normalized;
    let sender = if phone::is_e164_shaped(sender) {
        sender
    } else {
        normalized = phone::normalize_e164(sender)
            .ok_or_else(|| Denial::new(Code::SenderNotAllowed, "The sender is not a valid phone number"))?;
        normalized.as_str()
    };
    if !policy.org_phone_numbers.iter().any(|n| n == sender) {
        return Err(Denial::new(
            Code::SenderNotAllowed,
            "The sender is not a registered phone number of this organization",
        ));
    }
    if !policy.phone_allowlist.is_empty() && !policy.phone_allowlist.iter().any(|n| n == sender) {
        return Err(Denial::new(Code::SenderNotAllowed, "The sender is not in this API key's phone number allowlist"));
    }
    Ok(())
}

//! Sender phone numbers, normalized to E.164 with the `phonenumber` crate (libphonenumber's data).

/// Parses a phone number written in international form (`+14155550100`, `+1 (415) 555-0100`)
/// and returns it in E.164, or `None` when it is not a valid number.
pub fn normalize_e164(input: &str) -> Option<String> {
    let trimmed = input.trim();
    if trimmed.is_empty() || trimmed.len() > 32 || !trimmed.starts_with('+') {
        return None;
    }
    let number = phonenumber::parse(None, trimmed).ok()?;
    if !phonenumber::is_valid(&number) {
        return None;
    }
    // libphonenumber accepts some numbers longer than E.164's 15 digits (found by fuzzing:
    // `+49 (0) 30 1231-FLOWER456`); they are not E.164, so they are refused.
    let e164 = number.format().mode(phonenumber::Mode::E164).to_string();
    is_e164_shaped(&e164).then_some(e164)
}

/// True when `text` already looks like E.164 (`+` and 2–15 digits), so it can be compared as is.
pub fn is_e164_shaped(text: &str) -> bool {
    text.strip_prefix('+')
        .is_some_and(|digits| (2..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::normalize_e164;

    #[test]
    fn numbers_normalize_to_e164_and_longer_ones_are_refused() {
        assert_eq!(normalize_e164("+1 (415) 555-0100").as_deref(), Some("+14155550100"));
        assert_eq!(normalize_e164("+44 20 7946 0958").as_deref(), Some("+442079460958"));
        // libphonenumber calls this valid; as E.164 it would have 17 digits.
        assert_eq!(normalize_e164("+49 (0) 30 1231-FLOWER456"), None);
        assert_eq!(normalize_e164("+49301231356937456"), None);
    }
}

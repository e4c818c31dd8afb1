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
    Some(number.format().mode(phonenumber::Mode::E164).to_string())
}

/// True when `text` already looks like E.164 (`+` and 2–15 digits), so it can be compared as is.
pub fn is_e164_shaped(text: &str) -> bool {
    text.strip_prefix('+')
        .is_some_and(|digits| (2..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()))
}

//! Member passwords: argon2id with the OWASP-recommended parameters (19 MiB, 2 passes, 1 lane,
//! which are the `argon2` crate's defaults), as PHC strings.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

pub const MIN_LENGTH: usize = 10;
pub const MAX_LENGTH: usize = 1024;

/// Checks length only: long passphrases beat composition rules (NIST SP 800-63B).
pub fn check_strength(password: &str) -> Result<(), String> {
    let len = password.chars().count();
    if len < MIN_LENGTH {
        Err(format!("Password must be at least {MIN_LENGTH} characters"))
    } else if len > MAX_LENGTH {
        Err(format!("Password must be at most {MAX_LENGTH} characters"))
    } else {
        Ok(())
    }
}

pub fn hash(password: &str, rng: &mut (impl rand::RngCore + rand::CryptoRng)) -> String {
    let salt = SaltString::generate(rng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .expect("argon2id with default parameters and a generated salt cannot fail")
}

/// Constant-time verification; a malformed stored hash simply does not match.
pub fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// A hash no password matches, verified for unknown emails so a login takes as long whether or
/// not the email exists.
pub const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0Yq0TSWXhWmCO3Dk0C2pwC8bWeGt2Y2AdJt3F7XHdyc";

/// `name@domain`, at most 254 characters as sent (surrounding white space counts, as in the
/// OpenAPI schema's `maxLength`), no spaces inside; returned trimmed and lower-cased.
pub fn normalize_email(sent: &str) -> Option<String> {
    if sent.chars().count() > 254 {
        return None;
    }
    let email = sent.trim();
    let (local, domain) = email.rsplit_once('@')?;
    let shaped = !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    shaped.then(|| email.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hashed_password_verifies_and_another_does_not() {
        let stored = hash("correct horse battery", &mut rand::rngs::OsRng);
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{stored}");
        assert!(verify("correct horse battery", &stored));
        assert!(!verify("correct horse batterx", &stored));
        assert!(!verify("anything", "not a phc string"));
        assert!(!verify("anything", DUMMY_HASH));
    }

    #[test]
    fn emails_are_lower_cased_and_checked_for_shape() {
        assert_eq!(normalize_email(" Ann@Example.COM ").as_deref(), Some("ann@example.com"));
        for bad in ["", "ann", "@example.com", "ann@", "ann@localhost", "a b@example.com", "ann@.com"] {
            assert_eq!(normalize_email(bad), None, "{bad}");
        }
        // The schema's maxLength counts characters of what was sent, white space included.
        let long = format!("{}@ö.example", "±".repeat(244));
        assert_eq!(long.chars().count(), 254);
        assert!(normalize_email(&long).is_some(), "254 characters, more bytes, is fine");
        assert_eq!(normalize_email(&format!("\u{2029}{long}")), None, "255 as sent");
    }

    #[test]
    fn short_and_absurdly_long_passwords_are_refused() {
        assert!(check_strength("123456789").is_err());
        assert!(check_strength("1234567890").is_ok());
        assert!(check_strength(&"x".repeat(1025)).is_err());
    }
}

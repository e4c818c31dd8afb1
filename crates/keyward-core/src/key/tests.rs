use hmac::{Hmac, Mac};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use sha2::Sha256;

use super::format::checksum_of;
use super::*;

/// SPEC §2 test vector: the body, its CRC32 and its checksum.
const VECTOR_BODY: &str = "kw_live_0123456789ABCDEFGHIJabcdefghijKL";
const VECTOR_CRC32: u32 = 0x531d_1c1f;
const VECTOR_CHECKSUM: &str = "1WMpTT";
const VECTOR_KEY: &str = "kw_live_0123456789ABCDEFGHIJabcdefghijKL1WMpTT";
const BASE62: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Reads a base62 checksum back into a number, independently of the encoder under test.
fn decode_base62(text: &str) -> u64 {
    text.chars().fold(0, |acc, c| {
        let digit = BASE62.find(c).expect("a base62 digit");
        acc * 62 + u64::try_from(digit).unwrap()
    })
}

/// Appends the checksum the SPEC prescribes, so a row can build a key with a correct checksum but
/// some other fault.
fn with_checksum(body: &str) -> String {
    let checksum = checksum_of(body);
    format!("{body}{}", std::str::from_utf8(&checksum).unwrap())
}

fn sflo() -> KeyFormat {
    KeyFormat::new(KeyPrefix::parse("sflo").unwrap())
}

struct Case {
    rule: &'static str,
    format: KeyFormat,
    text: String,
    /// `None`: the key is refused (verification answers `INVALID_API_KEY`).
    expected: Option<Environment>,
}

fn case(rule: &'static str, text: impl Into<String>, expected: Option<Environment>) -> Case {
    Case { rule, format: KeyFormat::default(), text: text.into(), expected }
}

fn check(case: &Case) {
    let parsed = case.format.parse(&case.text);
    assert_eq!(parsed.map(|p| p.environment), case.expected, "{}: {:?}", case.rule, case.text);
    if let Some(parsed) = parsed {
        assert_eq!(parsed.expose(), case.text, "{}: the parsed key is the whole string", case.rule);
    }
}

#[test]
fn spec_test_vector_has_the_published_crc32_and_checksum() {
    assert_eq!(crc32fast::hash(VECTOR_BODY.as_bytes()), VECTOR_CRC32);
    assert_eq!(&checksum_of(VECTOR_BODY), VECTOR_CHECKSUM.as_bytes());
    assert_eq!(decode_base62(VECTOR_CHECKSUM), u64::from(VECTOR_CRC32));
    assert_eq!(format!("{VECTOR_BODY}{VECTOR_CHECKSUM}"), VECTOR_KEY);
}

#[test]
fn the_test_vector_parses_and_whitespace_or_another_prefix_fails() {
    let cases = [
        case("the SPEC test vector is a valid live key", VECTOR_KEY, Some(Environment::Live)),
        case(
            "a test key carries the test environment",
            with_checksum("kw_test_0123456789ABCDEFGHIJabcdefghijKL"),
            Some(Environment::Test),
        ),
        case("a leading space is refused, never trimmed", format!(" {VECTOR_KEY}"), None),
        case("a trailing space is refused, never trimmed", format!("{VECTOR_KEY} "), None),
        case("a trailing newline is refused", format!("{VECTOR_KEY}\n"), None),
        case("a leading tab is refused", format!("\t{VECTOR_KEY}"), None),
        case(
            "another operator's prefix is refused even with a correct checksum",
            with_checksum("sk_live_0123456789ABCDEFGHIJabcdefghijKL"),
            None,
        ),
        case("an upper-case prefix is refused", with_checksum("KW_live_0123456789ABCDEFGHIJabcdefghijKL"), None),
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn environment_and_random_part_must_have_the_spec_shape() {
    let cases = [
        case("an unknown environment is refused", with_checksum("kw_prod_0123456789ABCDEFGHIJabcdefghijKL"), None),
        case("an upper-case environment is refused", with_checksum("kw_LIVE_0123456789ABCDEFGHIJabcdefghijKL"), None),
        case(
            "a random part of 31 characters is refused",
            with_checksum("kw_live_0123456789ABCDEFGHIJabcdefghijK"),
            None,
        ),
        case(
            "a random part of 33 characters is refused",
            with_checksum("kw_live_0123456789ABCDEFGHIJabcdefghijKLM"),
            None,
        ),
        case(
            "a non-base62 character in the random part is refused",
            with_checksum("kw_live_0123456789ABCDEFGHIJabcdefghij-L"),
            None,
        ),
        case(
            "a non-ASCII character in the random part is refused",
            with_checksum("kw_live_0123456789ABCDEFGHIJabcdefghijé"),
            None,
        ),
        case("a checksum in the wrong case is refused", "kw_live_0123456789ABCDEFGHIJabcdefghijKL1wmPtt", None),
        case("a missing checksum is refused", VECTOR_BODY, None),
        case("a missing separator is refused", with_checksum("kwlive_0123456789ABCDEFGHIJabcdefghijKL"), None),
        case("the empty string is refused", "", None),
        case("the prefix alone is refused", "kw_live_", None),
        case(
            "a key with the prefix repeated is refused",
            with_checksum("kw_kw_live_0123456789ABCDEFGHIJabcdefghij"),
            None,
        ),
        Case {
            rule: "an operator prefix accepts its own keys",
            format: sflo(),
            text: with_checksum("sflo_live_0123456789ABCDEFGHIJabcdefghijKL"),
            expected: Some(Environment::Live),
        },
        Case {
            rule: "an operator prefix refuses the default prefix",
            format: sflo(),
            text: VECTOR_KEY.to_owned(),
            expected: None,
        },
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn every_one_character_substitution_of_the_test_vector_is_rejected() {
    let replacements: Vec<char> = BASE62.chars().chain(['_', '-', ' ', '\0', 'é', '€']).collect();
    for (position, original) in VECTOR_KEY.char_indices() {
        for &replacement in replacements.iter().filter(|&&c| c != original) {
            let mut text = VECTOR_KEY.to_owned();
            text.replace_range(position..=position, replacement.encode_utf8(&mut [0; 4]));
            check(&Case {
                rule: "every one-character change fails the checksum or the shape",
                format: KeyFormat::default(),
                text,
                expected: None,
            });
        }
    }
}

#[test]
fn every_one_character_deletion_or_insertion_in_the_test_vector_is_rejected() {
    for position in 0..=VECTOR_KEY.len() {
        if position < VECTOR_KEY.len() {
            let mut deleted = VECTOR_KEY.to_owned();
            deleted.remove(position);
            check(&case("a deleted character is refused", deleted, None));
        }
        for inserted in ['0', 'a', 'Z', '_'] {
            let mut text = VECTOR_KEY.to_owned();
            text.insert(position, inserted);
            check(&case("an inserted character is refused", text, None));
        }
    }
}

#[test]
fn generated_keys_parse_and_show_a_16_character_prefix_field() {
    let mut rng = StdRng::seed_from_u64(7);
    for (format, environment, starts) in [
        (KeyFormat::default(), Environment::Live, "kw_live_"),
        (KeyFormat::default(), Environment::Test, "kw_test_"),
        (sflo(), Environment::Live, "sflo_live_"),
    ] {
        let secret = format.generate(environment, &mut rng);
        let text = secret.expose();
        assert!(text.starts_with(starts), "{text}");
        assert_eq!(text.len(), starts.len() + 32 + 6);
        assert_eq!(format.parse(text).map(|p| p.environment), Some(environment));
        assert_eq!(secret.prefix_field().len(), PREFIX_FIELD_LEN);
        assert_eq!(PREFIX_FIELD_LEN, 16);
        assert_eq!(secret.prefix_field(), &text[..16]);
    }
}

#[test]
fn generated_keys_differ_between_draws() {
    let mut rng = StdRng::seed_from_u64(1);
    let first = KeyFormat::default().generate(Environment::Live, &mut rng);
    let second = KeyFormat::default().generate(Environment::Live, &mut rng);
    assert_ne!(first.expose(), second.expose());
}

#[test]
fn a_generated_key_of_one_prefix_is_refused_by_another() {
    let mut rng = StdRng::seed_from_u64(3);
    let secret = sflo().generate(Environment::Live, &mut rng);
    assert!(KeyFormat::default().parse(secret.expose()).is_none());
}

#[test]
fn key_prefix_follows_the_config_rule() {
    let rows: [(&str, &str, bool); 10] = [
        ("the default prefix", "kw", true),
        ("one letter", "a", true),
        ("letters then digits", "sflo2", true),
        ("eight characters is the maximum", "abcdefgh", true),
        ("nine characters is too long", "abcdefghi", false),
        ("empty", "", false),
        ("a leading digit", "1kw", false),
        ("an upper-case letter", "Kw", false),
        ("an underscore", "k_w", false),
        ("a hyphen", "k-w", false),
    ];
    for (rule, text, ok) in rows {
        let parsed = KeyPrefix::parse(text);
        assert_eq!(parsed.is_ok(), ok, "{rule}: {text:?}");
        if let Ok(prefix) = parsed {
            assert_eq!(prefix.as_str(), text);
        }
    }
    assert_eq!(KeyPrefix::default().as_str(), "kw");
    assert_eq!(KeyFormat::default().prefix().as_str(), "kw");
}

#[test]
fn environment_parses_its_two_spellings_only() {
    assert_eq!(Environment::parse("live"), Some(Environment::Live));
    assert_eq!(Environment::parse("test"), Some(Environment::Test));
    assert_eq!(Environment::parse("Live"), None);
    assert_eq!(Environment::parse(""), None);
    assert_eq!(Environment::Live.to_string(), "live");
    assert_eq!(Environment::Test.as_str(), "test");
}

#[test]
fn key_secret_debug_does_not_contain_the_full_key() {
    let mut rng = StdRng::seed_from_u64(11);
    let secret = KeyFormat::default().generate(Environment::Live, &mut rng);
    let debug = format!("{secret:?}");
    assert!(!debug.contains(secret.expose()), "{debug}");
    assert!(!debug.contains(&secret.expose()[16..]), "{debug}");
    assert!(debug.contains(secret.prefix_field()), "{debug}");
}

#[test]
fn pepper_hash_is_deterministic_and_differs_per_pepper() {
    let pepper = Pepper::new(&[1; 32]);
    let same = Pepper::new(&[1; 32]);
    let other = Pepper::new(&[2; 32]);
    assert_eq!(pepper.hash(VECTOR_KEY), pepper.hash(VECTOR_KEY));
    assert_eq!(pepper.hash(VECTOR_KEY), same.hash(VECTOR_KEY));
    assert_ne!(pepper.hash(VECTOR_KEY), other.hash(VECTOR_KEY));
    assert_ne!(pepper.hash(VECTOR_KEY), pepper.hash(&with_checksum("kw_test_0123456789ABCDEFGHIJabcdefghijKL")));
}

#[test]
fn pepper_hash_is_hmac_sha256_of_the_key_under_the_pepper() {
    let mut mac = Hmac::<Sha256>::new_from_slice(&[9; 32]).unwrap();
    mac.update(VECTOR_KEY.as_bytes());
    let expected: [u8; 32] = mac.finalize().into_bytes().into();
    assert_eq!(Pepper::new(&[9; 32]).hash(VECTOR_KEY).as_bytes(), &expected);
}

#[test]
fn secret_debug_output_is_redacted() {
    let pepper = Pepper::new(&[5; 32]);
    assert_eq!(format!("{pepper:?}"), "Pepper(<redacted>)");
    let hash = pepper.hash(VECTOR_KEY);
    let full_hex = hex::encode(hash.as_bytes());
    let debug = format!("{hash:?}");
    assert!(!debug.contains(&full_hex), "{debug}");
}

#[test]
fn key_hashes_compare_in_constant_time_by_value() {
    let pepper = Pepper::new(&[5; 32]);
    let hash = pepper.hash(VECTOR_KEY);
    assert!(hash.ct_eq(&pepper.hash(VECTOR_KEY)));
    assert!(!hash.ct_eq(&pepper.hash("kw_live_other")));
    assert_eq!(KeyHash::from_slice(hash.as_bytes()), Some(hash));
    assert_eq!(KeyHash::from_slice(&[0; 31]), None);
    assert_eq!(KeyHash::from_slice(&[0; 33]), None);
}

#[test]
fn ct_eq_is_true_only_for_equal_bytes_of_equal_length() {
    assert!(ct_eq(b"abc", b"abc"));
    assert!(ct_eq(b"", b""));
    assert!(!ct_eq(b"abc", b"abd"));
    assert!(!ct_eq(b"abc", b"abcd"));
    assert!(!ct_eq(b"abc", b""));
}

fn environment_strategy() -> impl Strategy<Value = Environment> {
    prop_oneof![Just(Environment::Live), Just(Environment::Test)]
}

proptest! {
    #[test]
    fn generated_keys_round_trip_with_any_seed(seed in any::<u64>(), environment in environment_strategy()) {
        let secret = KeyFormat::default().generate(environment, &mut StdRng::seed_from_u64(seed));
        let parsed = KeyFormat::default().parse(secret.expose());
        prop_assert_eq!(parsed.map(|p| p.environment), Some(environment));
        prop_assert_eq!(parsed.map(|p| p.expose()), Some(secret.expose()));
        prop_assert_eq!(secret.prefix_field().len(), PREFIX_FIELD_LEN);
    }

    #[test]
    fn random_single_character_mutations_are_rejected(
        seed in any::<u64>(),
        environment in environment_strategy(),
        position in any::<prop::sample::Index>(),
        replacement in any::<char>(),
    ) {
        let secret = KeyFormat::default().generate(environment, &mut StdRng::seed_from_u64(seed));
        let original = secret.expose();
        let at = position.index(original.len());
        prop_assume!(!original[at..].starts_with(replacement));
        let mut mutated = original.to_owned();
        mutated.replace_range(at..=at, replacement.encode_utf8(&mut [0; 4]));
        prop_assert!(KeyFormat::default().parse(&mutated).is_none(), "{:?} was accepted", mutated);
    }

    #[test]
    fn checksum_is_the_crc32_of_the_body_in_six_base62_digits(body in ".{0,64}") {
        let checksum = checksum_of(&body);
        let text = std::str::from_utf8(&checksum).unwrap();
        prop_assert_eq!(text.len(), 6);
        prop_assert!(text.chars().all(|c| BASE62.contains(c)));
        prop_assert_eq!(decode_base62(text), u64::from(crc32fast::hash(body.as_bytes())));
    }

    #[test]
    fn any_base62_random_part_with_its_checksum_parses(random in "[0-9A-Za-z]{32}", environment in environment_strategy()) {
        let key = with_checksum(&format!("kw_{environment}_{random}"));
        prop_assert_eq!(KeyFormat::default().parse(&key).map(|p| p.environment), Some(environment));
    }
}

//! API key strings: `KeyFormat::parse` (shape and checksum), `KeyPrefix::parse`, and generation.

use keyward_core::base62::ALPHABET;
use keyward_core::key::{checksum_of, prefix_field, Environment, KeyFormat, KeyPrefix, PREFIX_FIELD_LEN};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// Checksum digits at the end of every key.
const CHECKSUM_LEN: usize = 6;

pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let default = KeyFormat::default();
    check_parse(&default, &text);
    // An operator prefix taken from the input's first word, when it is one.
    if let Some(prefix) = text.split_once('_').and_then(|(word, _)| KeyPrefix::parse(word).ok()) {
        assert_eq!(prefix.as_str(), text.split_once('_').map_or("", |(word, _)| word));
        check_parse(&KeyFormat::new(prefix), &text);
    }

    // A generated key parses back, and no single-character change survives the checksum.
    let mut seed = [0u8; 32];
    let n = data.len().min(32);
    seed[..n].copy_from_slice(&data[..n]);
    let environment = if data.first().is_some_and(|b| b & 1 == 1) { Environment::Live } else { Environment::Test };
    let secret = default.generate(environment, &mut StdRng::from_seed(seed));
    let key = secret.expose();
    let parsed = default.parse(key).expect("a generated key parses");
    assert_eq!(parsed.environment, environment);
    assert_eq!(parsed.expose(), key);
    assert_eq!(secret.prefix_field(), &key[..PREFIX_FIELD_LEN]);
    if let [.., at, with] = data {
        let at = usize::from(*at) % key.len();
        let with = ALPHABET[usize::from(*with) % ALPHABET.len()];
        if key.as_bytes()[at] != with {
            let mut changed = key.as_bytes().to_vec();
            changed[at] = with;
            let changed = String::from_utf8(changed).expect("ASCII in, ASCII out");
            assert!(default.parse(&changed).is_none(), "{key} changed at {at} still parses");
        }
    }
}

fn check_parse(format: &KeyFormat, text: &str) {
    let Some(parsed) = format.parse(text) else { return };
    assert_eq!(parsed.expose(), text);
    assert!(text.is_ascii(), "{text:?}");
    let rest = text.strip_prefix(format.prefix().as_str()).and_then(|r| r.strip_prefix('_')).expect("prefix_");
    assert!(rest.starts_with(parsed.environment.as_str()), "{text:?}");
    let (body, checksum) = text.split_at(text.len() - CHECKSUM_LEN);
    assert_eq!(&checksum_of(body)[..], checksum.as_bytes());
    assert_eq!(prefix_field(text).len(), PREFIX_FIELD_LEN.min(text.len()));
}

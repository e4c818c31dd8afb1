use super::{EntryProblem, Keyring, KeyringError};
use crate::crypto::{MasterKey, MasterKeyError, SigningSecret};

fn key(byte: u8) -> MasterKey {
    MasterKey::from_base64(&base64_of(&[byte; 32])).expect("32 bytes")
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn ring(versions: &[u32]) -> Keyring {
    Keyring::new(versions.iter().map(|v| (*v, key(u8::try_from(*v).expect("small")))).collect()).expect("a keyring")
}

#[test]
fn a_lone_bare_key_is_version_one_and_hashes_as_its_master_key_always_did() {
    let legacy = key(7);
    let ring = Keyring::parse(&format!("{}\n", legacy.to_base64())).expect("the pre-keyring file form");
    assert_eq!(ring.current_version(), 1);
    assert_eq!(ring.versions().collect::<Vec<_>>(), [1]);
    // Keys hashed before keyrings existed must still be found.
    assert_eq!(ring.hash("kw_live_x").1, legacy.pepper().hash("kw_live_x"));
    assert_eq!(ring.check(1), Some(hex::encode(legacy.pepper().hash("keyward master key check").as_bytes())));
}

#[test]
fn the_text_form_round_trips_newest_first_with_comments_and_commas() {
    let ring = ring(&[1, 3, 2]);
    assert_eq!(ring.versions().collect::<Vec<_>>(), [3, 2, 1], "newest first");
    assert_eq!(ring.current_version(), 3, "the newest is current unless told otherwise");
    let text = ring.to_text();
    assert!(text.starts_with("# keyward master keyring"), "{}", text.lines().next().unwrap_or_default());
    let again = Keyring::parse(&text).expect("its own text");
    assert_eq!(again.versions().collect::<Vec<_>>(), [3, 2, 1]);
    for version in [1, 2, 3] {
        assert_eq!(again.check(version), ring.check(version), "version {version} keeps its key");
    }
    // One line for an environment variable.
    let env = format!("2:{} , 1:{}", key(2).to_base64(), key(1).to_base64());
    assert_eq!(Keyring::parse(&env).expect("comma separated").versions().collect::<Vec<_>>(), [2, 1]);
}

#[test]
fn a_bad_keyring_names_the_entry_and_never_the_key() {
    let secret_looking = key(9).to_base64();
    let cases: Vec<(String, KeyringError)> = vec![
        (String::new(), KeyringError::Empty),
        ("# only a comment\n".to_owned(), KeyringError::Empty),
        (
            format!("2:{secret_looking}\n{secret_looking}"),
            KeyringError::Entry { entry: 2, problem: EntryProblem::Unversioned },
        ),
        (format!("0:{secret_looking}"), KeyringError::Entry { entry: 1, problem: EntryProblem::Version }),
        (format!("two:{secret_looking}"), KeyringError::Entry { entry: 1, problem: EntryProblem::Version }),
        (
            "1:AAAA".to_owned(),
            KeyringError::Entry { entry: 1, problem: EntryProblem::Key(MasterKeyError::WrongLength(3)) },
        ),
        (format!("1:{secret_looking}\n1:{}", key(8).to_base64()), KeyringError::Duplicate(1)),
    ];
    for (text, expected) in cases {
        let error = Keyring::parse(&text).map(|_| ()).expect_err(&text);
        assert_eq!(error, expected, "{text:?}");
        assert!(!error.to_string().contains(&secret_looking), "{error}");
    }
    assert!(!format!("{:?}", ring(&[2, 1])).contains(&key(2).to_base64()));
}

#[test]
fn hashes_come_current_first_then_every_other_version_newest_first() {
    // Version 3 distributed ahead of the rotation: held, but 2 is still current.
    let ring = ring(&[1, 2, 3]).with_current(2).expect("holds 2");
    let hashes: Vec<_> = ring.hashes("kw_live_y").collect();
    assert_eq!(hashes.iter().map(|(v, _)| *v).collect::<Vec<_>>(), [2, 3, 1]);
    for (version, hash) in hashes {
        assert_eq!(hash, ring.pepper(version).expect("held").hash("kw_live_y"));
    }
    assert_eq!(ring.hash("kw_live_y"), (2, key(2).pepper().hash("kw_live_y")));
    assert_ne!(key(1).pepper().hash("kw_live_y"), key(2).pepper().hash("kw_live_y"), "peppers differ per version");
    assert_eq!(ring.clone().with_current(4).map(|_| ()), Err(KeyringError::Missing(4)));
}

#[test]
fn a_secret_sealed_under_any_held_version_opens_and_new_seals_use_the_current_one() {
    let old = ring(&[1]);
    let secret = SigningSecret::generate(&mut rand::rngs::OsRng);
    let (version, sealed_old) = old.seal(&secret, "key_a", &mut rand::rngs::OsRng);
    assert_eq!(version, 1);
    let rotated = old.with_new_key(&mut rand::rngs::OsRng);
    assert_eq!((rotated.current_version(), rotated.versions().collect::<Vec<_>>()), (2, vec![2, 1]));
    assert_eq!(rotated.open(1, &sealed_old, "key_a").as_ref().map(SigningSecret::expose), Ok(secret.expose()));
    let (version, sealed_new) = rotated.seal(&secret, "key_a", &mut rand::rngs::OsRng);
    assert_eq!(version, 2);
    assert_eq!(rotated.open(2, &sealed_new, "key_a").as_ref().map(SigningSecret::expose), Ok(secret.expose()));
    // The version is part of the secret's identity: another version's key does not open it.
    assert!(rotated.open(1, &sealed_new, "key_a").is_err());
    assert!(rotated.open(3, &sealed_new, "key_a").is_err(), "a version not held");
    assert!(old.open(2, &sealed_new, "key_a").is_err(), "a node without the new key cannot open it");
}

#[test]
fn a_retired_version_leaves_the_keyring_but_the_current_one_cannot() {
    let ring = ring(&[1, 2]);
    let retired = ring.without(1).expect("1 is not current");
    assert_eq!(retired.versions().collect::<Vec<_>>(), [2]);
    assert_eq!(retired.current_version(), 2);
    assert_eq!(ring.without(2).map(|_| ()), Err(KeyringError::Current(2)));
    assert_eq!(ring.without(5).map(|_| ()), Err(KeyringError::Missing(5)));
    // Removing a newer, not yet current, version keeps the current one current.
    let ahead = ring.with_current(1).expect("holds 1").without(2).expect("2 is not current");
    assert_eq!((ahead.current_version(), ahead.versions().collect::<Vec<_>>()), (1, vec![1]));
}

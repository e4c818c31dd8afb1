//! What packagers take from the binary: its version, shell completions and the man page, all
//! generated from the clap definitions.

use std::process::Command;

fn keyward(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_keyward")).args(args).output().expect("run keyward");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn version_names_the_package_version() {
    let (ok, stdout, _) = keyward(&["--version"]);
    assert!(ok);
    assert_eq!(stdout.trim(), format!("keyward {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn completions_cover_every_subcommand() {
    for shell in ["bash", "zsh", "fish"] {
        let (ok, stdout, stderr) = keyward(&["completions", shell]);
        assert!(ok, "{shell}: {stderr}");
        for subcommand in ["serve", "keys", "sign", "audit", "completions"] {
            assert!(stdout.contains(subcommand), "{shell} completion lacks {subcommand}");
        }
    }
    let (ok, _, stderr) = keyward(&["completions", "tcsh"]);
    assert!(!ok && stderr.contains("tcsh"), "an unknown shell is a usage error naming it: {stderr}");
}

#[test]
fn man_page_is_roff_with_the_commands() {
    let (ok, stdout, stderr) = keyward(&["man"]);
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with(".ie") || stdout.contains(".TH keyward"), "{}", &stdout[..stdout.len().min(200)]);
    assert!(stdout.contains("serve") && stdout.contains("keys"));
}

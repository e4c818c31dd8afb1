//! `keyward master-key status|rotate|add|retire`: rotating the master key under running servers.

use keyward_runtime::{Clock as _, SystemClock};
use keyward_server::master_key::{self, KeyringStatus, VersionStatus};
use serde_json::json;

use crate::boot::{self, GlobalArgs};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Show the current master key version and, for each version, how many key hashes and signing
    /// secrets depend on it, and whether it can be retired.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Make a new master key current: new keys and every signing secret move to it (secrets in
    /// the background), while keys hashed before still verify. Uses the newer key the keyring
    /// already holds, or adds one to the key file. Running servers switch within a second.
    Rotate,
    /// Add a new master key to the keyring without making it current (for several nodes: give
    /// every node the new keyring first, then rotate). Writes the key file, or prints the
    /// keyring for `KEYWARD_MASTER_KEY`.
    Add,
    /// Retire an older master key version once no key hash or signing secret depends on it
    /// (refused, with what still does, otherwise); the key file forgets it.
    Retire {
        /// The version to retire.
        #[arg(value_name = "VERSION")]
        number: u32,
    },
}

pub async fn run(global: &GlobalArgs, command: Command) -> anyhow::Result<()> {
    boot::load_config(global)?;
    let (store, path) = boot::open_store(global).await?;
    let source = boot::keyring_source(path.as_deref())?;
    let keyring = boot::keyring(store.as_ref(), source.as_ref()).await?;
    let token_version = master_key::stored_operator_token_version(store.as_ref(), boot::operator_token_given()).await?;
    let now = SystemClock.now();
    match command {
        Command::Status { json } => {
            let status = master_key::status(store.as_ref(), &keyring, token_version).await?;
            if json {
                println!("{}", status_json(&status));
            } else {
                print!("{}", status_text(&status));
            }
        }
        Command::Rotate => {
            let rotated = master_key::rotate(store.as_ref(), &keyring, source.as_ref(), now).await?;
            if let Some(path) = &rotated.wrote {
                eprintln!("keyward: added master key version {} to {}", rotated.to, path.display());
            }
            println!(
                "master key rotated from version {} to {}: new keys and signing secrets use version {}; running \
                 servers switch within a second and rewrap signing secrets in the background; keys hashed under \
                 version {} keep verifying (see `keyward master-key status`)",
                rotated.from, rotated.to, rotated.to, rotated.from
            );
        }
        Command::Add => {
            let (added, wrote) = master_key::add(&keyring, source.as_ref())?;
            let version = added.newest_version();
            if let Some(path) = wrote {
                println!(
                    "added master key version {version} to {} (not current yet): give every node this file and send \
                     it SIGHUP (or restart it), then run `keyward master-key rotate`",
                    path.display()
                );
            } else {
                // The keyring for an environment variable: one line, newest first.
                let text = added.to_text();
                let line: Vec<&str> = text.lines().filter(|line| !line.starts_with('#')).collect();
                eprintln!(
                    "keyward: a keyring with master key version {version} (not current yet); put it in {} on every \
                     node and restart them, then run `keyward master-key rotate`:",
                    source.describe()
                );
                println!("{}", line.join(","));
            }
        }
        Command::Retire { number: version } => {
            let wrote =
                master_key::retire(store.as_ref(), &keyring, source.as_ref(), version, token_version, now).await?;
            if let Some(path) = wrote {
                println!("master key version {version} retired and removed from {}", path.display());
            } else {
                println!("master key version {version} retired; remove it from {} on every node", source.describe());
            }
        }
    }
    Ok(())
}

fn state(status: &KeyringStatus, version: &VersionStatus) -> &'static str {
    match &version.record {
        None => "pending",
        Some(record) if record.retired_at.is_some() => "retired",
        Some(_) if version.version == status.current => "current",
        Some(_) => "older",
    }
}

fn status_json(status: &KeyringStatus) -> serde_json::Value {
    let versions: Vec<serde_json::Value> = status
        .versions
        .iter()
        .map(|version| {
            json!({
                "version": version.version,
                "state": state(status, version),
                "held": version.held,
                "added_at": keyward_core::record::time_json(version.record.as_ref().map(|record| record.added_at)),
                "retired_at": keyward_core::record::time_json(version.record.as_ref().and_then(|record| record.retired_at)),
                "key_hashes": version.usage.live_keys,
                "revoked_key_hashes": version.usage.revoked_keys,
                "signing_secrets": version.usage.signing_secrets,
                "operator_token": version.operator_token,
                "retirable": version.retire_refusal.is_none(),
                "retire_refusal": version.retire_refusal,
            })
        })
        .collect();
    json!({ "current": status.current, "versions": versions })
}

fn status_text(status: &KeyringStatus) -> String {
    use std::fmt::Write as _;
    let mut out = format!("current master key version: {}\n", status.current);
    for version in &status.versions {
        let _ = write!(
            out,
            "version {} ({}{}): {} key hash(es) of keys not revoked, {} of revoked keys, {} signing secret(s)",
            version.version,
            state(status, version),
            if version.held { "" } else { ", not in this keyring" },
            version.usage.live_keys,
            version.usage.revoked_keys,
            version.usage.signing_secrets,
        );
        if version.operator_token {
            out.push_str(", the stored operator token");
        }
        match (&version.retire_refusal, state(status, version)) {
            (None, _) => out.push_str("; can be retired"),
            (Some(_), "current" | "retired" | "pending") => {}
            (Some(why), _) => {
                let _ = write!(out, "; not retirable yet: {why}");
            }
        }
        out.push('\n');
    }
    out
}

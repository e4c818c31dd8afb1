//! `keyward sign`: prints the two signature headers for a request, exactly as the server checks them.

use std::io::Read as _;
use std::path::PathBuf;

use keyward_core::crypto::SigningSecret;
use keyward_core::signing;

use crate::boot::{self, GlobalArgs, UsageError};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// HTTP method, e.g. POST.
    #[arg(long)]
    method: String,
    /// The request target exactly as sent: path and query, e.g. /v1/messages?x=1.
    #[arg(long)]
    path: String,
    /// The request body (default: empty). Use --body-file for binary or large bodies.
    #[arg(long, conflicts_with = "body_file")]
    body: Option<String>,
    /// Read the body from a file (`-` for standard input).
    #[arg(long)]
    body_file: Option<PathBuf>,
    /// The signing secret. Prefer `KEYWARD_SIGNING_SECRET`: a flag ends up in shell history.
    #[arg(long, env = "KEYWARD_SIGNING_SECRET", hide_env_values = true)]
    secret: String,
    /// Unix seconds to sign with (default: now).
    #[arg(long)]
    timestamp: Option<u64>,
}

pub fn run(global: &GlobalArgs, args: &Args) -> anyhow::Result<()> {
    let config = boot::load_config(global)?;
    let body = match (&args.body, &args.body_file) {
        (Some(text), _) => text.clone().into_bytes(),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut bytes = Vec::new();
            std::io::stdin().read_to_end(&mut bytes)?;
            bytes
        }
        (None, Some(path)) => {
            std::fs::read(path).map_err(|e| UsageError(format!("--body-file {}: {e}", path.display())))?
        }
        (None, None) => Vec::new(),
    };
    let timestamp = match args.timestamp {
        Some(ts) => ts,
        None => u64::try_from(keyward_runtime::clock::Clock::now(&keyward_runtime::SystemClock).unix_timestamp())
            .unwrap_or(0),
    }
    .to_string();
    let method = args.method.to_ascii_uppercase();
    let secret = SigningSecret::from_plaintext(args.secret.clone());
    let signature = signing::sign(&secret, &timestamp, &method, &args.path, &signing::body_sha256_hex(&body));
    println!("{}: {timestamp}", config.timestamp_header);
    println!("{}: {signature}", config.signature_header);
    Ok(())
}

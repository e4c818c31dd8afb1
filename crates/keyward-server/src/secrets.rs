//! The secrets every process on one keyward database resolves alike: the binary at boot, and a
//! verifier embedded in another service (`keyward-tower`). One place for the variable names, the
//! master keyring's source (the variable, or the key file beside a SQLite database), and the
//! Redis that nodes share (its URL may hold a password).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use keyward_runtime::redis::{RedisShared, ReplayFallback};
use keyward_runtime::SharedState;

use crate::config::{self, Config};
use crate::master_key::{KeyringFile, KeyringSource, KeyringText};

/// A secret that cannot be read as given. Never holds the secret itself.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SecretError(pub String);

/// A secret from `NAME`, or from the file named by `NAME_FILE` (for Docker/Kubernetes secrets).
pub fn secret_env(name: &str) -> Result<Option<String>, SecretError> {
    if let Ok(value) = std::env::var(name) {
        return Ok(Some(value));
    }
    match std::env::var(format!("{name}_FILE")) {
        Ok(path) => std::fs::read_to_string(&path)
            .map(|text| Some(text.trim().to_owned()))
            .map_err(|e| SecretError(format!("{name}_FILE: cannot read {path}: {e}"))),
        Err(_) => Ok(None),
    }
}

/// Where the master key of a SQLite database lives when `KEYWARD_MASTER_KEY` is not set:
/// `keyward.db` → `keyward.db.master-key`.
pub fn master_key_file(db_path: &Path) -> PathBuf {
    let mut file_name = db_path.file_name().unwrap_or_default().to_os_string();
    file_name.push(".master-key");
    db_path.with_file_name(file_name)
}

/// Where the master keyring comes from: `KEYWARD_MASTER_KEY`, the file `KEYWARD_MASTER_KEY_FILE`
/// names, or the key file beside the SQLite database ([`master_key_file`], which may not exist
/// yet). `None`: none of them (a PostgreSQL database without the variables).
pub fn keyring_source(db_path: Option<&Path>) -> Option<Arc<dyn KeyringSource>> {
    if let Ok(text) = std::env::var("KEYWARD_MASTER_KEY") {
        return Some(Arc::new(KeyringText::new("KEYWARD_MASTER_KEY", text)));
    }
    if let Ok(path) = std::env::var("KEYWARD_MASTER_KEY_FILE") {
        return Some(Arc::new(KeyringFile::new(path)));
    }
    db_path.map(|db_path| Arc::new(KeyringFile::new(master_key_file(db_path))) as Arc<dyn KeyringSource>)
}

/// Rate limits and replays shared through `KEYWARD_REDIS_URL`, or `None` for this process alone.
/// A Redis that is down at start is not an error: the process starts on its fallback and recovers.
pub async fn shared_state(config: &Config) -> Result<Option<SharedState>, SecretError> {
    let Some(url) = secret_env("KEYWARD_REDIS_URL")? else { return Ok(None) };
    let redis = RedisShared::connect(&url).await.map_err(|e| SecretError(format!("KEYWARD_REDIS_URL: {e}")))?;
    let fallback = match config.replay_fallback {
        config::ReplayFallback::Refuse => ReplayFallback::Refuse,
        config::ReplayFallback::Local => ReplayFallback::Local,
    };
    Ok(Some(SharedState {
        limiter: Arc::new(redis.rate_limiter(config.nodes)),
        replay: Arc::new(redis.replay_store(config.signature_tolerance_seconds, fallback)),
    }))
}

//! Start-up shared by every command: global flags, config, store, master key, operator token.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use keyward_core::crypto::MasterKey;
use keyward_core::keyring::Keyring;
use keyward_runtime::{Clock as _, SharedState, SystemClock};
use keyward_server::config::Config;
use keyward_server::master_key::{self, KeyringSource, OperatorToken};
use keyward_server::secrets;
use keyward_server::{Deps, Keyward};
use keyward_store::Store;
use keyward_store_postgres::PostgresStore;
use keyward_store_sqlite::SqliteStore;

#[derive(Debug, clap::Args)]
pub struct GlobalArgs {
    /// Database URL: <sqlite://path> (embedded, the default) or postgres://…
    #[arg(long = "database", env = "KEYWARD_DATABASE_URL", default_value = "sqlite://keyward.db", global = true)]
    pub database_url: String,
    /// Config file (TOML): scope catalogue, key prefix, default rate limit, header names, …
    #[arg(long, env = "KEYWARD_CONFIG", global = true)]
    pub config: Option<PathBuf>,
}

/// A problem with how keyward was invoked (flags, config): one line on stderr, exit code 2,
/// nothing written.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

pub fn usage_error(error: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = error.print();
        return if error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    // clap explains over several lines; keep what comes before the usage, on one line.
    let rendered = error.render().to_string();
    let explanation: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|line| !line.starts_with("Usage:") && !line.starts_with("For more information"))
        .filter(|line| !line.is_empty())
        .collect();
    eprintln!("keyward: {} (try --help)", explanation.join(" ").trim_start_matches("error: "));
    ExitCode::from(2)
}

pub fn report(error: &anyhow::Error) -> ExitCode {
    if let Some(usage) = error.downcast_ref::<UsageError>() {
        eprintln!("keyward: {usage}");
        return ExitCode::from(2);
    }
    eprintln!("keyward: {error:#}");
    ExitCode::FAILURE
}

pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEYWARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = std::env::var("KEYWARD_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

pub fn load_config(global: &GlobalArgs) -> anyhow::Result<Config> {
    match &global.config {
        Some(path) => Config::from_file(path).map_err(|e| UsageError(e.to_string()).into()),
        None => Ok(Config::default()),
    }
}

/// Opens (creating if needed) and migrates the database named by the URL.
pub async fn open_store(global: &GlobalArgs) -> anyhow::Result<(Arc<dyn Store>, Option<PathBuf>)> {
    let url = global.database_url.as_str();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        // The URL may hold a password: errors name the database by scheme only.
        let store = PostgresStore::connect(url)
            .map_err(|e| UsageError(format!("KEYWARD_DATABASE_URL: {:#}", anyhow::Error::from(e))))?;
        store.migrate().await.context("cannot migrate the PostgreSQL database")?;
        return Ok((Arc::new(store), None));
    }
    let store = SqliteStore::open(url).with_context(|| format!("cannot open the SQLite database {url}"))?;
    let path = store.path().to_path_buf();
    store.migrate().await.context("cannot migrate the database")?;
    Ok((Arc::new(store), Some(path)))
}

/// A secret from `NAME`, or from the file named by `NAME_FILE` (for Docker/Kubernetes secrets).
fn secret_env(name: &str) -> anyhow::Result<Option<String>> {
    secrets::secret_env(name).map_err(|e| UsageError(e.0).into())
}

/// Where the master keyring comes from: `KEYWARD_MASTER_KEY`, the file `KEYWARD_MASTER_KEY_FILE`
/// names, or the key file beside the SQLite database (generated, with one key, on first start).
pub fn keyring_source(db_path: Option<&Path>) -> anyhow::Result<Arc<dyn KeyringSource>> {
    let source = secrets::keyring_source(db_path)
        .ok_or_else(|| UsageError("set KEYWARD_MASTER_KEY (32 bytes, base64)".to_owned()))?;
    let beside_database = db_path.map(secrets::master_key_file);
    let Some(path) = source.file().filter(|path| Some(*path) == beside_database.as_deref()) else {
        return Ok(source);
    };
    if !path.exists() {
        let key = MasterKey::generate(&mut rand::rngs::OsRng);
        // A keyring of one key is written as the bare key, as before versions existed.
        match write_private(path, &key.to_base64()) {
            Ok(()) => tracing::warn!(
                path = %path.display(),
                "generated a new master key file; back it up, and set KEYWARD_MASTER_KEY on every node that shares this database"
            ),
            // Another process made it first: read theirs.
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(error).with_context(|| format!("cannot write {}", path.display())),
        }
    }
    Ok(source)
}

/// The keyring from `source`, checked against the versions the database knows and with its
/// current version current. A database that knows none learns the keyring's (a new database,
/// or one made before master keys had versions). A key that is not the one the database knows
/// under its version refuses to start: it would reject every key.
pub async fn keyring(store: &dyn Store, source: &dyn KeyringSource) -> anyhow::Result<Keyring> {
    let keyring = source.load().map_err(|e| UsageError(e.0))?;
    master_key::reconcile(store, keyring, true, SystemClock.now()).await.map_err(|e| anyhow::anyhow!(e))
}

/// Creates the file with mode 0600 (the master key must not be world-readable).
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

/// Whether the operator token is given (`KEYWARD_OPERATOR_TOKEN`), not the stored generated one.
pub fn operator_token_given() -> bool {
    std::env::var_os("KEYWARD_OPERATOR_TOKEN").is_some() || std::env::var_os("KEYWARD_OPERATOR_TOKEN_FILE").is_some()
}

/// `KEYWARD_OPERATOR_TOKEN`, or the stored hash of a token generated (and printed) on first start.
pub async fn operator_token(store: &dyn Store, keyring: &Keyring, announce: bool) -> anyhow::Result<OperatorToken> {
    if let Some(token) = secret_env("KEYWARD_OPERATOR_TOKEN")? {
        if token.trim().len() < 16 {
            return Err(UsageError("KEYWARD_OPERATOR_TOKEN must be at least 16 characters".to_owned()).into());
        }
        return Ok(OperatorToken::given(keyring, token.trim()));
    }
    if let Some(stored) = store.setting(master_key::OPERATOR_TOKEN_HASH).await? {
        let (version, hash) = master_key::parse_stored_operator_token(&stored)
            .ok_or_else(|| anyhow::anyhow!("the stored operator token hash is corrupt"))?;
        return Ok(OperatorToken::stored(keyring, version, hash)?);
    }
    let token = format!("kwop_{}", keyward_core::base62::random_string(&mut rand::rngs::OsRng, 40));
    let (version, hash) = keyring.hash(&token);
    let stored = master_key::stored_operator_token(version, &hash);
    if store.put_setting_if_absent(master_key::OPERATOR_TOKEN_HASH, &stored).await? {
        if announce {
            // Printed once, on purpose, outside the log stream: it is never shown again.
            eprintln!("\n  keyward operator token (shown once, stored hashed; keep it safe):\n\n    {token}\n");
        }
        Ok(OperatorToken::stored(keyring, version, hash)?)
    } else {
        // Another process generated it first.
        Box::pin(operator_token(store, keyring, announce)).await
    }
}

/// Everything a command needs to act like the server.
pub async fn keyward(global: &GlobalArgs, announce_token: bool) -> anyhow::Result<Arc<Keyward>> {
    keyward_with(global, load_config(global)?, announce_token).await
}

/// [`keyward`] with a config already loaded (and completed by the command's flags).
pub async fn keyward_with(global: &GlobalArgs, config: Config, announce_token: bool) -> anyhow::Result<Arc<Keyward>> {
    let (store, path) = open_store(global).await?;
    let source = keyring_source(path.as_deref())?;
    let keyring = keyring(store.as_ref(), source.as_ref()).await?;
    let operator_token = operator_token(store.as_ref(), &keyring, announce_token).await?;
    let shared = shared_state(&config).await?;
    let keyward = Keyward::new(Deps {
        config,
        store,
        keyring,
        clock: Arc::new(SystemClock),
        operator_token,
        shared,
        node_id: node_id(),
    });
    keyward.master_keys.set_source(source);
    Ok(keyward)
}

/// `KEYWARD_NODE_ID`, or this host's name and process id: what `/readyz` calls this node.
fn node_id() -> String {
    std::env::var("KEYWARD_NODE_ID").unwrap_or_else(|_| {
        let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
        format!("{}-{}", if host.is_empty() { "node" } else { &host }, std::process::id())
    })
}

/// Rate limits and replays shared through `KEYWARD_REDIS_URL`, or `None` for this node alone.
/// A Redis that is down at start is not an error: the node starts on its fallback and recovers.
async fn shared_state(config: &Config) -> anyhow::Result<Option<SharedState>> {
    secrets::shared_state(config).await.map_err(|e| UsageError(e.0).into())
}

/// The database URL without its password, for logs and messages.
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((credentials, host)) if credentials.contains(':') => {
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{path}")
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redacted_url;

    #[test]
    fn a_database_password_never_reaches_a_log_line() {
        assert_eq!(redacted_url("postgres://app:s3cret@db:5432/keyward"), "postgres://app:***@db:5432/keyward");
        assert_eq!(redacted_url("postgres://app@db/keyward"), "postgres://app@db/keyward");
        assert_eq!(redacted_url("sqlite://keyward.db"), "sqlite://keyward.db");
    }
}

//! Embedded mode: keyward's own [`Verifier`] in this process, on keyward's database opened
//! read-only, following the change feed and master-key rotations like a keyward node, and
//! writing nothing (no migration, no settings, no last-used times, no key rehashes).

use std::borrow::Cow;
use std::fmt;
use std::future::Future as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use ipnet::IpNet;
use keyward_core::crypto::MasterKey;
use keyward_core::keyring::Keyring;
use keyward_core::policy::{EffectiveChannels, VerifyRequest};
use keyward_runtime::shared::SharedHealth;
use keyward_runtime::{
    Background, BackgroundOptions, CacheAnswer, CachedKey, Clock, Outcome, RateInfo, SharedState, SystemClock, Verifier,
};
use keyward_server::answer::Refusal;
use keyward_server::config::Config;
use keyward_server::master_key::{self, KeyringProblem, KeyringSource};
use keyward_server::secrets;
use keyward_store::Store;
use keyward_store_postgres::PostgresStore;
use keyward_store_sqlite::SqliteStore;

use crate::{Error, VerifiedKey};

/// How often the change feed is read on SQLite, which has no wake-ups across processes: a
/// revocation is seen within this (plus one read), well inside keyward's 100 ms promise.
const SQLITE_FEED_POLL: Duration = Duration::from_millis(25);
/// PostgreSQL's `NOTIFY` wakes the follower at once; this poll only backs it up.
const POSTGRES_FEED_POLL: Duration = Duration::from_millis(100);

/// A verifier running in this process against keyward's database: start one with
/// [`Embedded::from_env`] or [`Embedded::builder`], hand it to [`crate::KeywardLayer::embedded`].
/// Cloning is cheap and shares the verifier, its cache and its follower.
#[derive(Clone)]
pub struct Embedded {
    inner: Arc<Inner>,
}

struct Inner {
    verifier: Arc<Verifier>,
    /// Rate limits and replays live in this process (no Redis): a cached key's decision never
    /// waits, and [`Embedded::verify_now`] makes it.
    decides_now: bool,
    trusted_proxies: Vec<IpNet>,
    background: parking_lot::Mutex<Option<Background>>,
    /// Follows the database's master key versions.
    rotations: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for Embedded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Embedded")
            .field("cached_keys", &self.inner.verifier.cached_keys())
            .field("feed", &self.inner.verifier.feed_status())
            .finish_non_exhaustive()
    }
}

/// The settings of an [`Embedded`] verifier; whatever is not set is read as the keyward server
/// reads it: `KEYWARD_DATABASE_URL` (default `sqlite://keyward.db`), `KEYWARD_CONFIG`,
/// `KEYWARD_MASTER_KEY` / `KEYWARD_MASTER_KEY_FILE` (or the `.master-key` file beside the SQLite
/// database) and `KEYWARD_REDIS_URL`.
#[derive(Default)]
pub struct EmbeddedBuilder {
    database_url: Option<String>,
    config: Option<Config>,
    config_file: Option<PathBuf>,
    keyring: Option<Keyring>,
    shared: Option<SharedState>,
    feed_poll: Option<Duration>,
    clock: Option<Arc<dyn Clock>>,
}

impl fmt::Debug for EmbeddedBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The database URL may hold a password and the master key is a secret: neither is shown.
        f.debug_struct("EmbeddedBuilder")
            .field("config_file", &self.config_file)
            .field("keyring", &self.keyring.as_ref().map(|_| "…"))
            .field("feed_poll", &self.feed_poll)
            .finish_non_exhaustive()
    }
}

impl Embedded {
    pub fn builder() -> EmbeddedBuilder {
        EmbeddedBuilder::default()
    }

    /// Everything from the environment, as `keyward serve` reads it.
    pub async fn from_env() -> Result<Self, Error> {
        Self::builder().start().await
    }

    pub(crate) fn trusted_proxies(&self) -> &[IpNet] {
        &self.inner.trusted_proxies
    }

    /// How many keys are cached in this process.
    pub fn cached_keys(&self) -> u64 {
        self.inner.verifier.cached_keys()
    }

    /// Milliseconds since the change feed was last confirmed, and whether cached keys are
    /// trusted (past the config's `cache_max_staleness` they are not: each request reads the
    /// database, and fails closed when it cannot). For the service's own readiness check.
    pub fn feed_lag(&self) -> (Option<u64>, bool) {
        let status = self.inner.verifier.feed_status();
        (status.lag_ms, status.fresh)
    }

    /// Stops following the change feed. Verifications still answer, each reading the database
    /// once its cached keys go stale.
    pub async fn shutdown(&self) {
        self.inner.rotations.abort();
        let background = self.inner.background.lock().take();
        if let Some(background) = background {
            background.shutdown().await;
        }
    }

    /// The layer's decision without HTTP (a gRPC interceptor, a WebSocket handshake): `key` as
    /// sent, every scope in `scopes` required, `client_ip` for keys with an IP allowlist. A
    /// refusal renders as keyward's problem+json answer with `IntoResponse`.
    pub async fn verify(
        &self,
        key: &str,
        scopes: &[Cow<'_, str>],
        client_ip: Option<IpAddr>,
    ) -> Result<VerifiedKey, Refusal> {
        let verifier = &self.inner.verifier;
        let request = VerifyRequest { scopes, client_ip, sender: None, channels: None, signature: None };
        // Looked up first so the extension can share the cached key instead of copying it.
        let now = verifier.now();
        let found = verifier.find_at(key, now).await;
        let cached = found.as_ref().ok().and_then(Option::clone);
        let decided = verifier.verify_found(found, now, &request, decision).await;
        verified(decided, cached, key)
    }

    /// [`Embedded::verify`] when it can answer without waiting: a key the cache holds (or knows
    /// to be unknown) under a fresh change feed, and rate limits in this process. `None` when
    /// the store or Redis must be asked; the layer then awaits [`Embedded::verify`].
    pub(crate) fn verify_now(
        &self,
        key: &str,
        scopes: &[Cow<'_, str>],
        client_ip: Option<IpAddr>,
    ) -> Option<Result<VerifiedKey, Refusal>> {
        if !self.inner.decides_now {
            return None;
        }
        let verifier = &self.inner.verifier;
        let now = verifier.now();
        let cached = match verifier.find_cached(key, now) {
            CacheAnswer::Found(cached) => Some(cached),
            CacheAnswer::Unknown => None,
            CacheAnswer::Uncertain => return None,
        };
        let request = VerifyRequest { scopes, client_ip, sender: None, channels: None, signature: None };
        // With the key in hand and the limiter in this process, the decision has nothing to
        // wait for (no store read, no Redis; the layer sends no signature to reserve): it is
        // ready on its first poll. Were it not, it would be dropped before it took anything,
        // as when a caller hangs up, and the layer would ask again on the waiting path.
        let decided = std::pin::pin!(verifier.verify_found(Ok(cached.clone()), now, &request, decision));
        match decided.poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(decided) => Some(verified(decided, cached, key)),
            Poll::Pending => None,
        }
    }
}

/// What the layer takes from the verifier's outcome: whether the key reaches all channels, and
/// its budget; or the refusal.
fn decision(outcome: Outcome<'_, '_>) -> Result<(bool, RateInfo), Refusal> {
    match outcome {
        Outcome::Valid { channels, rate, .. } => Ok((channels == EffectiveChannels::All, rate)),
        Outcome::Invalid(failure) => Err(Refusal::from(failure)),
        Outcome::Unavailable => Err(Refusal::unavailable()),
    }
}

/// The [`VerifiedKey`] of a pass, sharing the cached key.
fn verified(
    decided: Result<(bool, RateInfo), Refusal>,
    cached: Option<Arc<CachedKey>>,
    key: &str,
) -> Result<VerifiedKey, Refusal> {
    let (all_channels, rate) = decided?;
    let cached = cached.ok_or_else(Refusal::unavailable)?;
    Ok(VerifiedKey::embedded(cached, all_channels, key, rate))
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The followers hold the verifier, not this: stop them once the last layer is gone.
        self.rotations.abort();
        if let Some(background) = self.background.get_mut().take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(background.shutdown());
            }
        }
    }
}

impl EmbeddedBuilder {
    /// keyward's database: `sqlite://path` (opened read-only: keyward must have created it) or
    /// `postgres://…` (a normal connection; nothing is written through it).
    #[must_use]
    pub fn database(mut self, url: impl Into<String>) -> Self {
        self.database_url = Some(url.into());
        self
    }

    /// The config keyward runs with (key prefix, default rate limit, staleness bound, trusted proxies).
    #[must_use]
    pub fn config(mut self, config: Config) -> Self {
        self.config = Some(config);
        self
    }

    /// keyward's config file, read as the server reads it.
    #[must_use]
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_file = Some(path.into());
        self
    }

    /// The database's master key (a keyring of one, version 1). It is still checked against the
    /// one the database knows. Given in code, it is not read again after a rotation.
    #[must_use]
    pub fn master_key(mut self, key: MasterKey) -> Self {
        self.keyring = Some(key.into());
        self
    }

    /// The database's master keyring (`keyward master-key`), checked as [`Self::master_key`] is.
    #[must_use]
    pub fn keyring(mut self, keyring: Keyring) -> Self {
        self.keyring = Some(keyring);
        self
    }

    /// Rate limits and replays shared with keyward's nodes (by default: `KEYWARD_REDIS_URL`, or
    /// this process alone).
    #[must_use]
    pub fn shared_state(mut self, shared: SharedState) -> Self {
        self.shared = Some(shared);
        self
    }

    /// How often the change feed is read without a wake-up (25 ms on SQLite, 100 ms on PostgreSQL).
    #[must_use]
    pub fn feed_poll(mut self, every: Duration) -> Self {
        self.feed_poll = Some(every);
        self
    }

    /// The clock the verifier reads (`SystemClock`; a test or benchmark may hand it a
    /// `keyward_runtime::ManualClock`).
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Opens the database, checks the master key, and starts following the change feed.
    pub async fn start(self) -> Result<Embedded, Error> {
        let config =
            match (self.config, self.config_file.or_else(|| std::env::var_os("KEYWARD_CONFIG").map(Into::into))) {
                (Some(config), _) => config,
                (None, Some(path)) => Config::from_file(&path).map_err(|e| Error::Config(e.to_string()))?,
                (None, None) => Config::default(),
            };
        let url = match self.database_url {
            Some(url) => url,
            None => std::env::var("KEYWARD_DATABASE_URL").unwrap_or_else(|_| "sqlite://keyward.db".to_owned()),
        };
        let Opened { store, db_path, poll } = open_store(&url)?;
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        // Given in code, or read where `keyward serve` reads it, and read again after a rotation.
        let (keyring, source) = if let Some(keyring) = self.keyring {
            (keyring, None)
        } else {
            let source = secrets::keyring_source(db_path.as_deref()).ok_or_else(|| {
                Error::Config("set KEYWARD_MASTER_KEY to the keyward database's master keyring".to_owned())
            })?;
            (source.load().map_err(|e| Error::Config(e.0))?, Some(source))
        };
        // Checked against the versions the database knows, registering none: a key that is not
        // the database's would make every key look unknown.
        let keyring =
            master_key::reconcile(store.as_ref(), keyring, false, clock.now()).await.map_err(|e| Error::Config(e.0))?;
        let shared = match self.shared {
            Some(shared) => shared,
            None => match secrets::shared_state(&config).await.map_err(|e| Error::Config(e.0))? {
                Some(shared) => shared,
                None => SharedState::local(clock.now().unix_timestamp(), config.signature_tolerance_seconds),
            },
        };
        let verifier =
            Arc::new(Verifier::new(config.verifier_config(), keyring, Arc::clone(&store), Arc::clone(&clock), shared));
        let options = BackgroundOptions { feed_poll: self.feed_poll.unwrap_or(poll), record_last_used: false };
        let background = verifier.start_background_with(options).await?;
        let rotations = tokio::spawn(follow_rotations(store, Arc::clone(&verifier), source, clock));
        let decides_now = verifier.shared_health() == SharedHealth::Local;
        Ok(Embedded {
            inner: Arc::new(Inner {
                verifier,
                decides_now,
                trusted_proxies: config.trusted_proxies,
                background: parking_lot::Mutex::new(Some(background)),
                rotations,
            }),
        })
    }
}

/// keyward's database, opened for reading.
struct Opened {
    store: Arc<dyn Store>,
    /// The SQLite file, beside which keyward keeps its master key file.
    db_path: Option<PathBuf>,
    /// The feed poll that suits the backend.
    poll: Duration,
}

fn open_store(url: &str) -> Result<Opened, Error> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        // The URL may hold a password: the error names the variable, not the URL.
        let store = PostgresStore::connect(url).map_err(|e| Error::Config(format!("KEYWARD_DATABASE_URL: {e}")))?;
        return Ok(Opened { store: Arc::new(store), db_path: None, poll: POSTGRES_FEED_POLL });
    }
    let store = SqliteStore::open_read_only(url)?;
    let db_path = Some(store.path().to_path_buf());
    Ok(Opened { store: Arc::new(store), db_path, poll: SQLITE_FEED_POLL })
}

/// As a keyward node follows the master key rotation, every [`master_key::KEYRING_POLL`]: a new
/// current version is taken up (the keyring read again from `source` when it lacks it), retired
/// ones dropped. Keys made after a rotation are hashed under the new version: without it they
/// would look unknown here.
async fn follow_rotations(
    store: Arc<dyn Store>,
    verifier: Arc<Verifier>,
    source: Option<Arc<dyn KeyringSource>>,
    clock: Arc<dyn Clock>,
) {
    let mut every = tokio::time::interval(master_key::KEYRING_POLL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_problem: Option<KeyringProblem> = None;
    loop {
        every.tick().await;
        match master_key::refresh_keyring(store.as_ref(), &verifier, source.as_ref(), false, clock.now()).await {
            Ok(()) => last_problem = None,
            // Said once per problem, not once a second.
            Err(problem) if last_problem.as_ref() != Some(&problem) => {
                tracing::error!(%problem, "cannot follow keyward's master key rotation; keeping the keyring held");
                last_problem = Some(problem);
            }
            Err(_) => {}
        }
    }
}

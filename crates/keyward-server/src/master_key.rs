//! Master-key rotation in a running keyward, and the operations `keyward master-key` shares with
//! it: where the keyring comes from (a key file, or an environment variable), how it is
//! reconciled with the versions the database knows, the operator token across versions, the
//! background rewrap of signing secrets, and status, rotate and retire.
//!
//! The database says which version is current (the newest it knows); a keyring says which keys a
//! node holds. A node follows the database: it polls the known versions every
//! [`KEYRING_POLL`] (and re-reads its key file on SIGHUP), and switches to a new current version
//! once it holds that key. Several nodes: give every node the new keyring first, then rotate.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption, Guard};
use keyward_core::ids::EventId;
use keyward_core::key::{KeyHash, Pepper};
use keyward_core::keyring::Keyring;
use keyward_core::record::Actor;
use keyward_runtime::Verifier;
use keyward_store::keyring::{retire_refusal, MasterKeyRecord, Rewrap, VersionUsage};
use keyward_store::{NewAuditEvent, Store, StoreError};
use serde_json::json;
use subtle::ConstantTimeEq as _;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::app::Keyward;

/// The setting holding the stored operator token's hash: hex under version 1 (as keyward always
/// stored it), `version:hex` under a later version.
pub const OPERATOR_TOKEN_HASH: &str = "operator_token_hash";

/// The setting keyward stored the single master key's check in before versions existed.
const LEGACY_CHECK: &str = "master_key_check";

/// How often a node asks the database whether the master key rotated.
pub const KEYRING_POLL: Duration = Duration::from_secs(1);

/// How often the rewrap looks again for secrets sealed under an older version once it found
/// none (a node that had not switched yet may have sealed one since).
const REWRAP_RECHECK: Duration = Duration::from_secs(600);

/// The rewrap's pace: one batch per tick.
const REWRAP_TICK: Duration = Duration::from_millis(100);

/// A keyring problem, in one line for the operator. Never holds key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyringProblem(pub String);

impl From<StoreError> for KeyringProblem {
    fn from(error: StoreError) -> Self {
        Self(format!("the database: {error}"))
    }
}

fn problem(message: impl Into<String>) -> KeyringProblem {
    KeyringProblem(message.into())
}

/// Where a node's master keys come from, read again on SIGHUP and when the database names a
/// version the node does not hold yet.
pub trait KeyringSource: Send + Sync + fmt::Debug {
    fn load(&self) -> Result<Keyring, KeyringProblem>;
    /// The file keyward may write a new keyring to; `None` for an environment variable.
    fn file(&self) -> Option<&Path>;
    /// What to call the source in messages (a path, or the variable's name).
    fn describe(&self) -> String;
}

/// A keyring file (`<database>.master-key`, or the file `KEYWARD_MASTER_KEY_FILE` names).
#[derive(Debug, Clone)]
pub struct KeyringFile {
    path: PathBuf,
}

impl KeyringFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl KeyringSource for KeyringFile {
    fn load(&self) -> Result<Keyring, KeyringProblem> {
        let text = Zeroizing::new(
            std::fs::read_to_string(&self.path)
                .map_err(|e| problem(format!("{}: cannot read the master keyring: {e}", self.path.display())))?,
        );
        Keyring::parse(&text).map_err(|e| problem(format!("{}: {e}", self.path.display())))
    }

    fn file(&self) -> Option<&Path> {
        Some(&self.path)
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// A keyring given as text (`KEYWARD_MASTER_KEY`): fixed for the life of the process.
pub struct KeyringText {
    name: String,
    text: Zeroizing<String>,
}

impl KeyringText {
    pub fn new(name: impl Into<String>, text: String) -> Self {
        Self { name: name.into(), text: Zeroizing::new(text) }
    }
}

impl fmt::Debug for KeyringText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyringText").field("name", &self.name).finish_non_exhaustive()
    }
}

impl KeyringSource for KeyringText {
    fn load(&self) -> Result<Keyring, KeyringProblem> {
        Keyring::parse(&self.text).map_err(|e| problem(format!("{}: {e}", self.name)))
    }

    fn file(&self) -> Option<&Path> {
        None
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}

/// Replaces `path` with `keyring`'s text, atomically (a temporary file in the same directory,
/// mode 0600, synced, then renamed over it): a crash leaves the old file or the new one.
pub fn write_keyring_file(path: &Path, keyring: &Keyring) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".{}.tmp", std::process::id()));
    let temporary = PathBuf::from(temporary);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = (|| {
        let mut file = options.open(&temporary)?;
        file.write_all(keyring.to_text().as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

/// `keyring` with the database's current version made current, once its keys are recognised:
/// every version both know must have the check the database stored, and the current one must be
/// held. Retired versions are left out. With `register`, a database that knows no version yet
/// learns one (the newest held; version 1 with the check stored before versions existed).
pub async fn reconcile(
    store: &dyn Store,
    keyring: Keyring,
    register: bool,
    now: OffsetDateTime,
) -> Result<Keyring, KeyringProblem> {
    let mut known = store.master_keys().await?;
    if known.is_empty() {
        if !register {
            return Err(problem("the database knows no master key yet: start `keyward serve` on it once"));
        }
        register_first(store, &keyring, now).await?;
        known = store.master_keys().await?;
    }
    for record in &known {
        if let Some(check) = keyring.check(record.version) {
            if check != record.check {
                return Err(problem(format!(
                    "master key version {} does not match the one this database knows (KEYWARD_MASTER_KEY or the \
                     master key file)",
                    record.version
                )));
            }
        }
    }
    let current = known.iter().map(|record| record.version).max().unwrap_or(1);
    let held: Vec<String> = keyring.versions().map(|v| v.to_string()).collect();
    let mut keyring = keyring.with_current(current).map_err(|_| {
        problem(format!(
            "the database's current master key is version {current}, and this keyring holds version(s) {}: give this \
             node the keyring the rotation wrote",
            held.join(", ")
        ))
    })?;
    for record in known.iter().filter(|record| record.retired_at.is_some()) {
        if let Ok(without) = keyring.without(record.version) {
            keyring = without;
        }
    }
    Ok(keyring)
}

async fn register_first(store: &dyn Store, keyring: &Keyring, now: OffsetDateTime) -> Result<(), KeyringProblem> {
    let legacy = store.setting(LEGACY_CHECK).await?;
    let version = match &legacy {
        // Made before versions existed: its one key is version 1.
        Some(stored) => {
            if keyring.check(1).as_deref() != Some(stored.as_str()) {
                return Err(problem(
                    "the master key does not match the one this database was created with (KEYWARD_MASTER_KEY or \
                     the .master-key file)",
                ));
            }
            1
        }
        None => keyring.newest_version(),
    };
    let check = keyring.check(version).unwrap_or_default();
    if version == 1 && legacy.is_none() {
        // What processes that know a single master key check (older builds) read.
        store.put_setting_if_absent(LEGACY_CHECK, &check).await?;
    }
    let record = MasterKeyRecord { version, check, added_at: now, retired_at: None };
    match store.add_master_key(&record, None).await {
        // Another node registered first: reconcile checks against what it stored.
        Ok(()) | Err(StoreError::Conflict { .. }) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// The stored operator token hash's setting value for `version`.
pub fn stored_operator_token(version: u32, hash: &KeyHash) -> String {
    if version == 1 {
        hex::encode(hash.as_bytes())
    } else {
        format!("{version}:{}", hex::encode(hash.as_bytes()))
    }
}

/// The version and hash of a stored operator token setting value.
pub fn parse_stored_operator_token(text: &str) -> Option<(u32, KeyHash)> {
    let (version, hex_hash) = match text.split_once(':') {
        Some((version, hash)) => (version.parse().ok().filter(|v| *v > 0)?, hash),
        None => (1, text),
    };
    Some((version, KeyHash::from_slice(&hex::decode(hex_hash).ok()?)?))
}

struct TokenHash {
    version: u32,
    /// The pepper it was hashed with, kept with it: a retired version's key may leave the
    /// keyring while this process still checks the token it hashed at start.
    pepper: Pepper,
    hash: KeyHash,
}

struct MatchedToken {
    token: Zeroizing<Box<[u8]>>,
    matched: Arc<TokenHash>,
}

/// The operator token's hash, as checked on every operator request. One hashed under an older
/// master key version is hashed again under the current one on its first use (and, when it is
/// the stored one, written back), so the older version does not stay needed for it.
pub struct OperatorToken {
    current: ArcSwap<TokenHash>,
    /// The token that last matched `current`, so the next operator request compares bytes
    /// instead of computing an HMAC (callgrind: the token's HMAC was a sixth of a verification).
    /// Only a token that matched is kept, so no caller can fill it, and it counts only while
    /// `current` is the hash it matched.
    last_match: ArcSwapOption<MatchedToken>,
    /// Whether the hash is the stored one (a generated token), not one of `KEYWARD_OPERATOR_TOKEN`.
    stored: bool,
    /// The newest version the hash was (or is being) moved to: each move happens once.
    upgraded_to: AtomicU32,
}

impl fmt::Debug for OperatorToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OperatorToken")
            .field("version", &self.current.load().version)
            .field("stored", &self.stored)
            .finish_non_exhaustive()
    }
}

impl OperatorToken {
    /// A token the process was given: hashed under the keyring's current version.
    pub fn given(keyring: &Keyring, token: &str) -> Self {
        let (version, hash) = keyring.hash(token);
        Self::new(version, keyring.current_pepper().clone(), hash, false)
    }

    /// The stored hash of a generated token, made under `version` (which the keyring must hold).
    pub fn stored(keyring: &Keyring, version: u32, hash: KeyHash) -> Result<Self, KeyringProblem> {
        let pepper = keyring.pepper(version).ok_or_else(|| {
            problem(format!(
                "the stored operator token is hashed under master key version {version}, which this keyring does not \
                 hold: set KEYWARD_OPERATOR_TOKEN, or give this node that version"
            ))
        })?;
        Ok(Self::new(version, pepper.clone(), hash, true))
    }

    /// A hash made with the pepper of `keyring`'s current version (tests, embedders).
    pub fn hashed(keyring: &Keyring, hash: KeyHash) -> Self {
        Self::new(keyring.current_version(), keyring.current_pepper().clone(), hash, false)
    }

    fn new(version: u32, pepper: Pepper, hash: KeyHash, stored: bool) -> Self {
        Self {
            current: ArcSwap::from_pointee(TokenHash { version, pepper, hash }),
            last_match: ArcSwapOption::empty(),
            stored,
            upgraded_to: AtomicU32::new(version),
        }
    }

    /// The version the token is hashed under now.
    pub fn version(&self) -> u32 {
        self.current.load().version
    }

    /// Constant-time comparison of the token (or its hash) with the operator's.
    pub fn matches(&self, token: &str) -> bool {
        self.matched_version(token).is_some()
    }

    /// The version of the hash `token` matched, if it is the operator's.
    fn matched_version(&self, token: &str) -> Option<u32> {
        let current = self.current.load();
        if let Some(last) = &*self.last_match.load() {
            if Arc::ptr_eq(&last.matched, &current) && bool::from(last.token.as_ref().ct_eq(token.as_bytes())) {
                return Some(current.version);
            }
        }
        if !current.pepper.hash(token).ct_eq(&current.hash) {
            return None;
        }
        let version = current.version;
        let token = Zeroizing::new(Box::from(token.as_bytes()));
        self.last_match.store(Some(Arc::new(MatchedToken { token, matched: Guard::into_inner(current) })));
        Some(version)
    }
}

impl Keyward {
    /// Whether `token` is the operator token. After a rotation its first use hashes it under the
    /// current version (once), off the request's path for the write.
    pub fn is_operator_token(&self, token: &str) -> bool {
        let Some(matched) = self.operator_token.matched_version(token) else {
            return false;
        };
        // The common case reads atomics: no reference count moves on this path.
        let current = self.verifier.current_version();
        if matched < current && self.operator_token.upgraded_to.fetch_max(current, Ordering::AcqRel) < current {
            let old = self.operator_token.current.load();
            let keyring = self.verifier.keyring();
            let (version, hash) = keyring.hash(token);
            let old_text = stored_operator_token(old.version, &old.hash);
            self.operator_token.current.store(Arc::new(TokenHash {
                version,
                pepper: keyring.current_pepper().clone(),
                hash,
            }));
            if self.operator_token.stored {
                let store = Arc::clone(&self.store);
                tokio::spawn(async move {
                    let new_text = stored_operator_token(version, &hash);
                    match store.replace_setting(OPERATOR_TOKEN_HASH, &old_text, &new_text).await {
                        Ok(true) => {
                            tracing::info!(version, "the stored operator token is now hashed under version {version}");
                        }
                        // Another node moved it first.
                        Ok(false) => {}
                        Err(error) => {
                            tracing::warn!(%error, "could not store the operator token's new hash; it is kept for this process");
                        }
                    }
                });
            }
        }
        true
    }

    /// The session a console cookie names, found under whichever master key version it was
    /// hashed with (sessions made before a rotation live on), with that version's hashes of the
    /// token.
    pub async fn find_session(
        &self,
        token: &str,
    ) -> Result<Option<(keyward_store::SessionRecord, keyward_store::MemberRecord, SessionPepper)>, StoreError> {
        let keyring = self.verifier.keyring();
        for (version, hash) in keyring.hashes(token) {
            if let Some((session, member)) = self.store.find_session(&hash).await? {
                if session.token_hash.ct_eq(&hash) {
                    let pepper = keyring.pepper(version).cloned().unwrap_or_else(|| keyring.current_pepper().clone());
                    return Ok(Some((session, member, SessionPepper { pepper, hash })));
                }
            }
        }
        Ok(None)
    }

    /// A key's stored record by its value, under whichever version it was hashed with.
    pub async fn find_key_by_value(
        &self,
        key: &keyward_core::key::ParsedKey<'_>,
    ) -> Result<Option<keyward_core::record::KeyRecord>, StoreError> {
        let keyring = self.verifier.keyring();
        for (_, hash) in keyring.hashes(key.expose()) {
            if let Some(record) = self.store.find_key_by_hash(&hash).await? {
                return Ok(Some(record));
            }
        }
        Ok(None)
    }
}

/// The pepper a session was made with, and its token's hash under it.
#[derive(Clone)]
pub struct SessionPepper {
    pepper: Pepper,
    pub hash: KeyHash,
}

impl fmt::Debug for SessionPepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionPepper").field("hash", &self.hash).finish_non_exhaustive()
    }
}

impl SessionPepper {
    pub fn hash(&self, text: &str) -> KeyHash {
        self.pepper.hash(text)
    }

    /// The session's CSRF token, derived from its cookie token under the session's pepper.
    pub fn csrf_token(&self, session_token: &str) -> String {
        csrf_token(&self.pepper, session_token)
    }
}

/// The CSRF token of a session token: derived, so the console can put it in its pages without
/// the server storing it (only its hash is stored, for the check).
pub fn csrf_token(pepper: &Pepper, session_token: &str) -> String {
    let derived = pepper.hash(&format!("csrf\u{0}{session_token}"));
    hex::encode(&derived.as_bytes()[..16])
}

/// The master-key state of a running node: where its keyring comes from, and a reload request.
#[derive(Debug, Default)]
pub struct MasterKeys {
    source: OnceLock<Arc<dyn KeyringSource>>,
    reload: tokio::sync::Notify,
}

impl MasterKeys {
    /// Where the keyring is read again from (once, at boot). Without one, a node keeps the
    /// keyring it was built with and follows rotations only to versions it already holds.
    pub fn set_source(&self, source: Arc<dyn KeyringSource>) {
        let _ = self.source.set(source);
    }

    pub fn source(&self) -> Option<&Arc<dyn KeyringSource>> {
        self.source.get()
    }

    /// Re-read the keyring now (SIGHUP).
    pub fn request_reload(&self) {
        self.reload.notify_one();
    }
}

/// Follows the database's master key versions, and rewraps signing secrets sealed under older
/// versions, until `stopped` turns true. Started by `serve`.
pub async fn follow(state: Arc<Keyward>, mut stopped: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(REWRAP_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_poll = tokio::time::Instant::now();
    let mut rewrap = RewrapPass::new(state.config.rewrap_per_second);
    let mut last_problem: Option<KeyringProblem> = None;
    loop {
        let mut reread = false;
        tokio::select! {
            _ = tick.tick() => {}
            () = state.master_keys.reload.notified() => reread = true,
            _ = stopped.changed() => break,
        }
        if reread || tokio::time::Instant::now() >= next_poll {
            next_poll = tokio::time::Instant::now() + KEYRING_POLL;
            match refresh(&state, reread).await {
                Ok(()) => last_problem = None,
                // Said once per problem, not once a second.
                Err(problem) if last_problem.as_ref() != Some(&problem) => {
                    tracing::error!(%problem, "cannot follow the master key rotation; keeping the keyring this node has");
                    last_problem = Some(problem);
                }
                Err(_) => {}
            }
        }
        if let Err(error) = rewrap.step(&state).await {
            tracing::warn!(%error, "signing secret rewrap paused; retrying");
        }
    }
}

/// Takes the database's current version (and the key file again when asked, or when it names a
/// version this node lacks).
async fn refresh(state: &Keyward, reread: bool) -> Result<(), KeyringProblem> {
    refresh_keyring(state.store.as_ref(), &state.verifier, state.master_keys.source(), reread, state.clock.now()).await
}

/// What [`follow`] does each [`KEYRING_POLL`] for a node, for any verifier on the database (one
/// embedded in another service too): the database's current version made current, reading
/// `source` again when asked or when the database names a version the verifier lacks. Writes
/// nothing.
pub async fn refresh_keyring(
    store: &dyn Store,
    verifier: &Verifier,
    source: Option<&Arc<dyn KeyringSource>>,
    reread: bool,
    now: OffsetDateTime,
) -> Result<(), KeyringProblem> {
    let known = store.master_keys().await?;
    let held = verifier.keyring();
    let current = known.iter().map(|record| record.version).max().unwrap_or(held.current_version());
    let retired = known.iter().any(|record| record.retired_at.is_some() && held.holds(record.version));
    if !reread && !retired && current == held.current_version() {
        return Ok(());
    }
    let base = match source {
        Some(source) if reread || !held.holds(current) => source.load()?,
        _ => (*held).clone(),
    };
    let next = reconcile(store, base, false, now).await?;
    let changed = next.current_version() != held.current_version()
        || next.versions().collect::<Vec<_>>() != held.versions().collect::<Vec<_>>();
    if changed {
        tracing::info!(
            from = held.current_version(),
            to = next.current_version(),
            versions = ?next.versions().collect::<Vec<_>>(),
            "master keyring updated: new keys and signing secrets use version {}",
            next.current_version()
        );
        verifier.set_keyring(next);
    }
    Ok(())
}

/// One pass over the sealed signing secrets, in key order, moving each to the current version.
/// Resumable by design: rows say their version, so a pass after a restart finds what is left.
struct RewrapPass {
    /// Secrets per tick.
    batch: u32,
    /// The version the pass moves secrets to; a new current version starts a new pass.
    version: u32,
    /// The last key (by `seq`) the pass looked at.
    after: i64,
    running: bool,
    moved: u64,
    unopenable: u64,
    next_check: tokio::time::Instant,
}

impl RewrapPass {
    fn new(per_second: u32) -> Self {
        let ticks_per_second = (Duration::from_secs(1).as_millis() / REWRAP_TICK.as_millis()).max(1);
        Self {
            batch: u32::try_from(u128::from(per_second) / ticks_per_second).unwrap_or(u32::MAX).max(1),
            version: 0,
            after: 0,
            running: false,
            moved: 0,
            unopenable: 0,
            next_check: tokio::time::Instant::now(),
        }
    }

    fn restart(&mut self, version: u32) {
        (self.version, self.after, self.running, self.moved, self.unopenable) = (version, 0, true, 0, 0);
    }

    async fn step(&mut self, state: &Keyward) -> Result<(), StoreError> {
        let keyring = state.verifier.keyring();
        let current = keyring.current_version();
        if current != self.version || (!self.running && tokio::time::Instant::now() >= self.next_check) {
            // A rotation (or the start, or a while since the last pass): look at every secret again.
            self.restart(current);
        }
        if !self.running {
            return Ok(());
        }
        let rows = state.store.secrets_sealed_before(current, self.after, self.batch).await?;
        let mut rewraps = Vec::with_capacity(rows.len());
        for row in &rows {
            match keyring.open(row.version, &row.sealed, row.key_id.as_str()) {
                Ok(secret) => {
                    let (version, sealed) = keyring.seal(&secret, row.key_id.as_str(), &mut rand::rngs::OsRng);
                    rewraps.push(Rewrap {
                        key_id: row.key_id.clone(),
                        from_version: row.version,
                        from: row.sealed.clone(),
                        to_version: version,
                        to: sealed,
                    });
                }
                Err(_) => self.unopenable += 1,
            }
        }
        self.moved += u64::try_from(state.store.rewrap_secrets(&rewraps).await?).unwrap_or(u64::MAX);
        if let Some(last) = rows.last() {
            self.after = last.seq;
        }
        if rows.len() < usize::try_from(self.batch).unwrap_or(usize::MAX) {
            if self.moved > 0 {
                tracing::info!(
                    version = current,
                    moved = self.moved,
                    "signing secrets rewrapped under master key version {current}"
                );
            }
            if self.unopenable > 0 {
                tracing::warn!(
                    unopenable = self.unopenable,
                    "signing secrets sealed under a master key version this node does not hold were left as they are"
                );
            }
            self.running = false;
            self.next_check = tokio::time::Instant::now() + REWRAP_RECHECK;
        }
        Ok(())
    }
}

/// One version as `keyward master-key status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionStatus {
    pub version: u32,
    /// What the database recorded (`None`: held by this keyring, not rotated to yet).
    pub record: Option<MasterKeyRecord>,
    /// Whether this node's keyring holds the key.
    pub held: bool,
    pub usage: VersionUsage,
    /// Whether the stored operator token is hashed under it.
    pub operator_token: bool,
    /// Why it cannot be retired, or `None` when it can.
    pub retire_refusal: Option<String>,
}

/// What `keyward master-key status` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyringStatus {
    pub current: u32,
    /// Newest first.
    pub versions: Vec<VersionStatus>,
}

/// The stored operator token's version, when a generated token is in use (not one given in
/// `KEYWARD_OPERATOR_TOKEN`, whose hash is never stored).
pub async fn stored_operator_token_version(store: &dyn Store, given: bool) -> Result<Option<u32>, StoreError> {
    if given {
        return Ok(None);
    }
    Ok(store.setting(OPERATOR_TOKEN_HASH).await?.as_deref().and_then(parse_stored_operator_token).map(|(v, _)| v))
}

/// Every version the database knows or the keyring holds, with what depends on it.
pub async fn status(
    store: &dyn Store,
    keyring: &Keyring,
    operator_token_version: Option<u32>,
) -> Result<KeyringStatus, StoreError> {
    let known = store.master_keys().await?;
    let usage = store.master_key_usage().await?;
    let current = known.iter().map(|record| record.version).max().unwrap_or(keyring.current_version());
    let mut versions: Vec<u32> = known.iter().map(|record| record.version).chain(keyring.versions()).collect();
    versions.extend(usage.iter().map(|used| used.version));
    versions.sort_unstable_by(|a, b| b.cmp(a));
    versions.dedup();
    let versions = versions
        .into_iter()
        .map(|version| {
            let operator_token = operator_token_version == Some(version);
            let mut refusal = retire_refusal(version, current, &known, &usage);
            if refusal.is_none() && operator_token {
                refusal = Some(operator_token_refusal(version));
            }
            VersionStatus {
                version,
                record: known.iter().find(|record| record.version == version).cloned(),
                held: keyring.holds(version),
                usage: usage
                    .iter()
                    .find(|used| used.version == version)
                    .copied()
                    .unwrap_or(VersionUsage { version, ..VersionUsage::default() }),
                operator_token,
                retire_refusal: refusal,
            }
        })
        .collect();
    Ok(KeyringStatus { current, versions })
}

fn operator_token_refusal(version: u32) -> String {
    format!(
        "the stored operator token is hashed under version {version}: send one request with it to a keyward that \
         runs the current version (it is hashed again then), or set KEYWARD_OPERATOR_TOKEN"
    )
}

/// An event of the operator's own chain.
pub fn operator_event(action: &str, version: u32, changes: serde_json::Value, at: OffsetDateTime) -> NewAuditEvent {
    NewAuditEvent {
        id: EventId::generate(&mut rand::thread_rng()),
        at,
        actor: Actor::operator(),
        actor_ip: None,
        user_agent: None,
        action: action.to_owned(),
        target_type: "master_key".to_owned(),
        target_id: version.to_string(),
        target_name: format!("master key version {version}"),
        changes,
        trace_id: crate::telemetry::trace_id(&axum::http::HeaderMap::new()),
    }
}

/// What a rotation did.
#[derive(Debug)]
pub struct Rotated {
    pub from: u32,
    pub to: u32,
    /// The keyring with the new version current.
    pub keyring: Keyring,
    /// The key file written with the new key (`None`: the keyring already held it).
    pub wrote: Option<PathBuf>,
}

/// Makes a newer version current. If the keyring already holds one (distributed to every node
/// first), that one; otherwise a new key, written to the key file first (so no process is ever
/// told about a version its file lacks). Then the database records it, with its audit event;
/// running nodes switch within [`KEYRING_POLL`].
pub async fn rotate(
    store: &dyn Store,
    keyring: &Keyring,
    source: &dyn KeyringSource,
    now: OffsetDateTime,
) -> Result<Rotated, KeyringProblem> {
    let from = keyring.current_version();
    let (next, wrote) = if keyring.newest_version() > from {
        (keyring.clone().with_current(keyring.newest_version()).map_err(|e| problem(e.to_string()))?, None)
    } else {
        let Some(path) = source.file() else {
            return Err(problem(format!(
                "{} holds no version newer than the current {from}: run `keyward master-key add` to get a keyring \
                 with a new key, put it in {} on every node and restart them, then rotate",
                source.describe(),
                source.describe()
            )));
        };
        let next = keyring.with_new_key(&mut rand::rngs::OsRng);
        write_keyring_file(path, &next).map_err(|e| problem(format!("cannot write {}: {e}", path.display())))?;
        (next, Some(path.to_path_buf()))
    };
    let to = next.current_version();
    let record =
        MasterKeyRecord { version: to, check: next.check(to).unwrap_or_default(), added_at: now, retired_at: None };
    let event = operator_event("master_key.rotated", to, json!({ "version": { "old": from, "new": to } }), now);
    match store.add_master_key(&record, Some(&event)).await {
        Ok(()) => Ok(Rotated { from, to, keyring: next, wrote }),
        Err(StoreError::Conflict { .. }) => Err(problem(format!(
            "another process rotated first: the database already knows version {to} or a later one; run `keyward \
             master-key status`"
        ))),
        Err(error) => Err(error.into()),
    }
}

/// Adds a new key to the keyring without making it current: the first step of a rotation over
/// several nodes. Writes the key file when there is one; returns the new keyring either way.
pub fn add(keyring: &Keyring, source: &dyn KeyringSource) -> Result<(Keyring, Option<PathBuf>), KeyringProblem> {
    let current = keyring.current_version();
    let next =
        keyring.with_new_key(&mut rand::rngs::OsRng).with_current(current).map_err(|e| problem(e.to_string()))?;
    match source.file() {
        Some(path) => {
            write_keyring_file(path, &next).map_err(|e| problem(format!("cannot write {}: {e}", path.display())))?;
            Ok((next, Some(path.to_path_buf())))
        }
        None => Ok((next, None)),
    }
}

/// Retires `version` once nothing needs it: the database records it (with its event), and the
/// key file, when there is one, forgets the key. Refused, naming what still depends on it.
pub async fn retire(
    store: &dyn Store,
    keyring: &Keyring,
    source: &dyn KeyringSource,
    version: u32,
    operator_token_version: Option<u32>,
    now: OffsetDateTime,
) -> Result<Option<PathBuf>, KeyringProblem> {
    let explain = || async {
        let known = store.master_keys().await?;
        let usage = store.master_key_usage().await?;
        let current = known.iter().map(|record| record.version).max().unwrap_or(1);
        Ok::<_, KeyringProblem>(retire_refusal(version, current, &known, &usage))
    };
    if let Some(refusal) = explain().await? {
        return Err(problem(format!("cannot retire master key version {version}: {refusal}")));
    }
    if operator_token_version == Some(version) {
        return Err(problem(format!(
            "cannot retire master key version {version}: {}",
            operator_token_refusal(version)
        )));
    }
    let usage = store.master_key_usage().await?;
    let revoked = usage.iter().find(|used| used.version == version).map_or(0, |used| used.revoked_keys);
    let event = operator_event("master_key.retired", version, json!({ "revoked_keys": revoked }), now);
    if !store.retire_master_key(version, now, &event).await? {
        let why = explain().await?.unwrap_or_else(|| "something came to depend on it meanwhile".to_owned());
        return Err(problem(format!("cannot retire master key version {version}: {why}")));
    }
    match (source.file(), keyring.without(version)) {
        (Some(path), Ok(without)) => {
            write_keyring_file(path, &without).map_err(|e| problem(format!("cannot write {}: {e}", path.display())))?;
            Ok(Some(path.to_path_buf()))
        }
        _ => Ok(None),
    }
}

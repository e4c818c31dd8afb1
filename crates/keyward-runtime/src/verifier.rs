//! [`Verifier`]: checksum → cache (or one store read on a miss) → key checks → reserve the
//! signature → request checks → rate limit → mark used. A cache hit touches no database and
//! allocates nothing; the cache is trusted only while the change feed is confirmed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use keyward_core::key::{KeyFormat, KeyHash};
use keyward_core::keyring::Keyring;
use keyward_core::policy::{self, Context, Denial, EffectiveChannels, KeyPolicy, VerifyRequest};
use keyward_core::ratelimit::Quota;
use keyward_core::record::KeyRecord;
use keyward_core::signing::SigningKey;
use keyward_core::Code;
use keyward_store::keyring::Rehash;
use keyward_store::{Change, ChangeSignals, Store, StoreError};
use time::OffsetDateTime;

use crate::budget::MissBudget;
use crate::cache::{CacheLimits, CachedKey, KeyCache, Lookup, OrgFacts, Prerendered};
use crate::clock::{unix_nanos, Clock};
use crate::shared::{LocalRateLimiter, LocalReplayStore, RateLimiter, ReplayStore, SharedHealth};

/// How often last-used times are written: SPEC §5 says visible within 5 s.
const LAST_USED_FLUSH_EVERY: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
pub struct VerifierConfig {
    pub format: KeyFormat,
    pub default_rate_limit: u32,
    pub signature_tolerance_seconds: i64,
    /// How long an unknown key is remembered as unknown.
    pub negative_ttl: Duration,
    pub max_negative_entries: u64,
    /// At most this many keys are cached (least recently and least frequently used go first).
    pub max_cached_keys: u64,
    /// A cached key is read again after this long even if no change said so.
    pub cache_max_age: Duration,
    /// A verification that must read the store answers `Unavailable` past this bound, so a
    /// stuck database costs callers a short wait, not the store's own timeout.
    pub store_read_timeout: Duration,
    /// The share of one thread's time (1–100 %) that cache misses may spend reading the store,
    /// so a flood of unknown keys cannot take the cores from cached ones (past it a miss waits its
    /// turn); 0: no share. Only reads that find nothing are charged (their wall time): loading
    /// real keys, however many or slow, never uses it up (in a flood they wait their turn too).
    pub miss_read_share_percent: u8,
    /// Once the change feed has not been confirmed for this long, cached keys are not trusted:
    /// each verification reads the store (and fails closed when it cannot).
    pub max_staleness: Duration,
    /// Renders what the caller's answers repeat for a key, once, as the key is cached
    /// ([`CachedKey::prerendered`]); `None`: nothing is.
    pub prerender: Option<fn(&KeyPolicy) -> Prerendered>,
}

/// The state several nodes share, chosen once at boot.
#[derive(Debug, Clone)]
pub struct SharedState {
    pub limiter: Arc<dyn RateLimiter>,
    pub replay: Arc<dyn ReplayStore>,
}

impl SharedState {
    /// A node on its own: in-process limits, and a replay store that refuses signatures
    /// timestamped before `started_at_unix`.
    pub fn local(started_at_unix: i64, signature_tolerance_seconds: i64) -> Self {
        Self {
            limiter: Arc::new(LocalRateLimiter::new()),
            replay: Arc::new(LocalReplayStore::new(started_at_unix, signature_tolerance_seconds)),
        }
    }
}

/// The rate-limit figures of an accepted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateInfo {
    pub limit: u32,
    pub remaining: u32,
    pub reset_ms: u64,
}

/// A refusal, with `retry_after_ms` and the key's budget for `RATE_LIMITED`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyFailure {
    pub denial: Denial,
    pub retry_after_ms: Option<u64>,
    pub rate: Option<RateInfo>,
}

impl From<Denial> for VerifyFailure {
    fn from(denial: Denial) -> Self {
        Self { denial, retry_after_ms: None, rate: None }
    }
}

/// What verification decided. `Valid` borrows the cached policy: the caller renders its answer
/// inside the callback given to [`Verifier::verify`], so nothing is copied.
#[derive(Debug)]
pub enum Outcome<'p, 'a> {
    Valid {
        policy: &'p KeyPolicy,
        prerendered: &'p Prerendered,
        channels: EffectiveChannels<'p, 'a>,
        rate: RateInfo,
    },
    Invalid(VerifyFailure),
    /// The store could not be reached on a cache miss (or to confirm a key while the change feed
    /// is stale), or the shared replay store could not check a signature.
    Unavailable,
}

#[derive(Debug)]
pub struct Verifier {
    config: VerifierConfig,
    /// The master keys: new hashes use the current version, look-ups try every version held.
    /// Swapped whole when a rotation is learnt ([`Verifier::set_keyring`]).
    keyring: ArcSwap<Keyring>,
    /// Keys found under an older version, to be stored under the current one (keyed by the
    /// old hash); written in batches by the flusher, off the verification path.
    rehashes: parking_lot::Mutex<HashMap<KeyHash, Rehash>>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    cache: KeyCache,
    /// `None` when misses have no share of time (the default).
    miss_budget: Option<MissBudget>,
    shared: SharedState,
    feed: FeedState,
    counters: Counters,
}

/// How current this node's view of the change feed is.
#[derive(Debug, Default)]
struct FeedState {
    /// Whether a follower runs; without one (tests, one-shot CLI commands) nothing else can
    /// change the store behind the cache's back, and staleness does not apply.
    followed: AtomicBool,
    /// When the feed was last read successfully, Unix nanoseconds.
    confirmed_ns: AtomicU64,
    /// Whether wake-ups (`LISTEN`) are connected.
    listening: AtomicBool,
}

#[derive(Debug)]
struct Counters {
    hits: metrics::Counter,
    misses: metrics::Counter,
    stale_reads: metrics::Counter,
    invalidations: metrics::Counter,
    feed_lag: metrics::Gauge,
}

/// What `/readyz` reports about the verifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedStatus {
    /// Milliseconds since the change feed was last confirmed; `None` when no follower runs.
    pub lag_ms: Option<u64>,
    /// Whether cached keys are trusted right now.
    pub fresh: bool,
    pub listening: bool,
}

const UNKNOWN_KEY: &str = "The API key is missing, malformed or unknown";

/// Rehashes waiting for the next flush at most; past it, more wait for a later verification.
const MAX_PENDING_REHASHES: usize = 10_000;

/// Where a key's look-up goes after the cache: the hashes to read from the store (the current
/// version's first), or an answer already.
enum CacheStep {
    Answer(Option<Arc<CachedKey>>),
    /// The store must be read: a miss (`may_share`), or a stale feed's confirmation. Counted
    /// by the caller that reads, so a caller that only peeks counts nothing.
    Load {
        candidates: Vec<(u32, KeyHash)>,
        may_share: bool,
    },
}

/// What the cache alone says of a key ([`Verifier::find_cached`]).
#[derive(Debug, Clone)]
pub enum CacheAnswer {
    /// The key's cached policy: [`Verifier::verify_found`] decides without reading the store.
    Found(Arc<CachedKey>),
    /// Not a well-formed key, or cached as unknown.
    Unknown,
    /// Not cached, or the change feed is too stale to trust what is: only
    /// [`Verifier::find`] can say.
    Uncertain,
}

/// A key loaded from the store, with the version and hash it was found under.
struct Loaded {
    cached: Arc<CachedKey>,
    version: u32,
    hash: KeyHash,
}

impl Verifier {
    pub fn new(
        config: VerifierConfig,
        keyring: Keyring,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        shared: SharedState,
    ) -> Self {
        Self {
            shared,
            feed: FeedState::default(),
            cache: KeyCache::new(
                CacheLimits {
                    max_keys: config.max_cached_keys,
                    max_age: config.cache_max_age,
                    max_missing: config.max_negative_entries,
                    missing_ttl: config.negative_ttl,
                },
                Arc::clone(&clock),
            ),
            miss_budget: (config.miss_read_share_percent > 0).then(|| MissBudget::new(config.miss_read_share_percent)),
            counters: Counters {
                hits: metrics::counter!("keyward_key_cache_hits_total"),
                misses: metrics::counter!("keyward_key_cache_misses_total"),
                stale_reads: metrics::counter!("keyward_key_cache_stale_reads_total"),
                invalidations: metrics::counter!("keyward_invalidations_received_total"),
                feed_lag: metrics::gauge!("keyward_feed_lag_seconds"),
            },
            config,
            keyring: ArcSwap::from_pointee(keyring),
            rehashes: parking_lot::Mutex::new(HashMap::new()),
            store,
            clock,
        }
    }

    /// The master keys as this node knows them now.
    pub fn keyring(&self) -> Arc<Keyring> {
        self.keyring.load_full()
    }

    /// The version new hashes and seals use.
    pub fn current_version(&self) -> u32 {
        self.keyring.load().current_version()
    }

    /// Takes a new keyring (a rotation, a key added or retired). Cached keys stay: they are
    /// cached under the hash they are stored with, whatever the version.
    pub fn set_keyring(&self, keyring: Keyring) {
        self.keyring.store(Arc::new(keyring));
    }

    /// Checks `key` and the request against every rule, in the SPEC's order, and hands the
    /// outcome to `answer`.
    pub async fn verify<R>(
        &self,
        key: &str,
        request: &VerifyRequest<'_>,
        answer: impl FnOnce(Outcome<'_, '_>) -> R,
    ) -> R {
        let now = self.clock.now();
        let found = self.find_at(key, now).await;
        self.decide(found, now, request, answer).await
    }

    /// [`Verifier::verify`] for a key the caller has already looked up with [`Verifier::find_at`]
    /// (the gateway does, to know whether the key signs before it reads the body), decided at
    /// `now`, the reading the look-up was made at ([`Verifier::now`]): one clock read a request.
    pub async fn verify_found<R>(
        &self,
        found: Result<Option<Arc<CachedKey>>, StoreError>,
        now: OffsetDateTime,
        request: &VerifyRequest<'_>,
        answer: impl FnOnce(Outcome<'_, '_>) -> R,
    ) -> R {
        self.decide(found, now, request, answer).await
    }

    /// The verifier's clock, for a caller that looks a key up and decides in two steps.
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    async fn decide<R>(
        &self,
        found: Result<Option<Arc<CachedKey>>, StoreError>,
        now: OffsetDateTime,
        request: &VerifyRequest<'_>,
        answer: impl FnOnce(Outcome<'_, '_>) -> R,
    ) -> R {
        let cached = match found {
            Ok(Some(cached)) => cached,
            Ok(None) => return answer(Outcome::Invalid(Denial::new(Code::InvalidApiKey, UNKNOWN_KEY).into())),
            Err(_) => return answer(Outcome::Unavailable),
        };
        let context = Context { now, signature_tolerance_seconds: self.config.signature_tolerance_seconds };
        let policy = &cached.policy;
        let now_ns = unix_nanos(now);
        // A refusal of a known key still tells the caller where its budget stands (RateLimit-*).
        let refused = |denial: Denial| {
            Outcome::Invalid(VerifyFailure { denial, retry_after_ms: None, rate: Some(peek(&cached, now_ns)) })
        };
        let signature = match policy::check_key(policy, request, &context) {
            Ok(signature) => signature,
            Err(denial) => return answer(refused(denial)),
        };
        // Consume the signature in its place in the order, atomically (two concurrent copies
        // cannot both pass, on any node), and give it back if a later check refuses, so the
        // caller may re-send it.
        if let Some((bytes, timestamp)) = &signature {
            match self.shared.replay.reserve(bytes, *timestamp).await {
                Ok(true) => {}
                Ok(false) => return answer(refused(policy::replayed())),
                Err(_) => return answer(Outcome::Unavailable),
            }
        }
        let channels = match policy::check_request(policy, request) {
            Ok(channels) => channels,
            Err(denial) => {
                self.release(signature.as_ref()).await;
                return answer(refused(denial));
            }
        };
        let cells = &cached.cells;
        let budget = self.shared.limiter.take(&policy.key_id, &cells.tat_ns, policy.quota, now_ns).await;
        if !budget.allowed {
            self.release(signature.as_ref()).await;
            return answer(Outcome::Invalid(VerifyFailure {
                denial: Denial::new(Code::RateLimited, "This API key is over its rate limit"),
                retry_after_ms: Some(budget.retry_after_ms),
                rate: Some(RateInfo { limit: budget.limit, remaining: 0, reset_ms: budget.reset_ms }),
            }));
        }
        let rate = RateInfo { limit: budget.limit, remaining: budget.remaining, reset_ms: budget.reset_ms };
        self.cache.mark_used(cells, now_ns);
        answer(Outcome::Valid { policy, prerendered: &cached.prerendered, channels, rate })
    }

    async fn release(&self, signature: Option<&(keyward_core::signing::SignatureBytes, i64)>) {
        if let Some((bytes, _)) = signature {
            self.shared.replay.release(bytes).await;
        }
    }

    /// The cached policy of a well-formed key, loading it on a miss; `None` for an unknown or
    /// malformed key. Also used to authenticate keys that manage their own org.
    pub async fn find(&self, key: &str) -> Result<Option<Arc<CachedKey>>, StoreError> {
        self.find_at(key, self.clock.now()).await
    }

    /// The cache's answer for a key, without waiting and without reading the store: for a
    /// caller that decides synchronously when it can (an embedded layer) and calls
    /// [`Verifier::find`] only on [`CacheAnswer::Uncertain`].
    pub fn find_cached(&self, key: &str, now: OffsetDateTime) -> CacheAnswer {
        let Some(parsed) = self.config.format.parse(key) else {
            return CacheAnswer::Unknown;
        };
        match self.look_in_cache(parsed.expose(), unix_nanos(now)) {
            CacheStep::Answer(Some(cached)) => CacheAnswer::Found(cached),
            CacheStep::Answer(None) => CacheAnswer::Unknown,
            CacheStep::Load { .. } => CacheAnswer::Uncertain,
        }
    }

    /// [`Verifier::find`] at the caller's reading of the clock ([`Verifier::now`]).
    pub async fn find_at(&self, key: &str, now: OffsetDateTime) -> Result<Option<Arc<CachedKey>>, StoreError> {
        let Some(parsed) = self.config.format.parse(key) else {
            return Ok(None);
        };
        let (candidates, may_share) = match self.look_in_cache(parsed.expose(), unix_nanos(now)) {
            CacheStep::Answer(answer) => return Ok(answer),
            CacheStep::Load { candidates, may_share } => (candidates, may_share),
        };
        // A stale feed's confirmation does not share a load; a miss does.
        if may_share {
            self.counters.misses.increment(1);
        } else {
            self.counters.stale_reads.increment(1);
        }
        let current = candidates[0];
        let Some(loaded) = self.load_bounded(candidates, may_share).await? else { return Ok(None) };
        if loaded.version < current.0 {
            self.queue_rehash(&loaded.cached, loaded.hash, current);
        }
        Ok(Some(loaded.cached))
    }

    /// The cache's answer for a key, without waiting: a key is cached under the hash it is
    /// stored with, so the current version's hash is tried first (one HMAC, the common case),
    /// then the other versions held (keys hashed before a rotation, or after one this node has
    /// not learnt yet). An unknown key is remembered under the current version's hash only.
    fn look_in_cache(&self, key: &str, now_ns: u64) -> CacheStep {
        let keyring = self.keyring.load();
        let (version, hash) = keyring.hash(key);
        if !self.feed_is_fresh(now_ns) {
            // Another node may have revoked this key and this node would not know: confirm it.
            return CacheStep::Load { candidates: keyring.hashes(key).collect(), may_share: false };
        }
        match self.cache.get(&hash, now_ns) {
            Lookup::Found(cached) => {
                self.counters.hits.increment(1);
                return CacheStep::Answer(Some(cached));
            }
            Lookup::Missing => {
                self.counters.hits.increment(1);
                return CacheStep::Answer(None);
            }
            Lookup::Unknown => {}
        }
        let mut candidates = vec![(version, hash)];
        for (other_version, other) in keyring.hashes(key).skip(1) {
            if let Lookup::Found(cached) = self.cache.get(&other, now_ns) {
                self.counters.hits.increment(1);
                if other_version < version {
                    self.queue_rehash(&cached, other, (version, hash));
                }
                return CacheStep::Answer(Some(cached));
            }
            candidates.push((other_version, other));
        }
        CacheStep::Load { candidates, may_share: true }
    }

    /// Remembers that the key cached as `cached` under `old` is to be stored as `current`
    /// (version, hash): the flusher writes it, so the older version can drain and be retired.
    fn queue_rehash(&self, cached: &CachedKey, old: KeyHash, current: (u32, KeyHash)) {
        let mut pending = self.rehashes.lock();
        if pending.len() < MAX_PENDING_REHASHES {
            pending.entry(old).or_insert_with(|| Rehash {
                key_id: cached.policy.key_id.clone(),
                from: old,
                to_version: current.0,
                to: current.1,
            });
        }
    }

    /// Writes pending rehashes in one batch and forgets the old hashes here (the change feed
    /// tells the other nodes). A failed batch is dropped: the next verification queues it again.
    pub async fn flush_rehashes(&self) -> Result<usize, StoreError> {
        let pending: Vec<Rehash> = std::mem::take(&mut *self.rehashes.lock()).into_values().collect();
        if pending.is_empty() {
            return Ok(0);
        }
        let written = self.store.rehash_keys(&pending, self.clock.now()).await?;
        for rehash in &pending {
            self.cache.invalidate_key(&rehash.from);
        }
        Ok(written)
    }

    /// [`Verifier::load`] within the configured bound: a database that hangs (a lock held by
    /// another process, a stalled network) answers `Unavailable` quickly.
    async fn load_bounded(
        &self,
        candidates: Vec<(u32, KeyHash)>,
        may_share: bool,
    ) -> Result<Option<Loaded>, StoreError> {
        match tokio::time::timeout(self.config.store_read_timeout, self.load(candidates, may_share)).await {
            Ok(loaded) => loaded,
            Err(_) => Err(StoreError::Unavailable("the key store did not answer in time".into())),
        }
    }

    /// One load per key at a time: concurrent misses for the same key wait for the first and,
    /// when `may_share`, take what it cached. (A stale-feed confirmation reads again.) Reads the
    /// store by each candidate hash in turn, the current version's first: an unknown key costs
    /// one read per version held, and is then remembered as unknown.
    async fn load(&self, candidates: Vec<(u32, KeyHash)>, may_share: bool) -> Result<Option<Loaded>, StoreError> {
        let lookup = candidates[0].1;
        let _load_turn = self.cache.load_turn(lookup).await;
        if may_share {
            // The turn may have been a wait: the clock is read again.
            let now_ns = unix_nanos(self.clock.now());
            for (version, hash) in &candidates {
                match self.cache.get(hash, now_ns) {
                    Lookup::Found(cached) => return Ok(Some(Loaded { cached, version: *version, hash: *hash })),
                    Lookup::Missing if *hash == lookup => return Ok(None),
                    Lookup::Missing | Lookup::Unknown => {}
                }
            }
        }
        // A stale feed's confirmation is not a miss: it stands for a cached key, and is bounded by
        // the verifications themselves.
        let mut read_turn = match self.miss_budget.as_ref().filter(|_| may_share) {
            Some(budget) => Some(
                budget
                    .admit(self.config.store_read_timeout)
                    .await
                    .ok_or_else(|| StoreError::Unavailable("too many uncached keys at once".into()))?,
            ),
            None => None,
        };
        // An invalidation racing the read makes the read stale: read again (rarely more than once).
        for _ in 0..3 {
            let epoch = self.cache.epoch();
            let mut found = None;
            for (version, hash) in &candidates {
                if let Some(record) = self.store.find_key_by_hash(hash).await? {
                    found = Some((*version, *hash, record));
                    break;
                }
            }
            let Some((version, hash, record)) = found else {
                self.cache.insert_missing(lookup, epoch);
                return Ok(None);
            };
            if let Some(turn) = read_turn.as_mut() {
                turn.found();
            }
            // The map hit was on the hash; confirm it in constant time anyway.
            if !record.hash.ct_eq(&hash) {
                return Ok(None);
            }
            let facts = self.org_facts(&record, epoch).await?;
            let cells = self.cache.cells_for(hash, &record.id);
            let policy = self.compile(record, &facts)?.compact();
            let prerendered = self.config.prerender.map(|render| render(&policy)).unwrap_or_default();
            let cached = Arc::new(CachedKey { policy, prerendered, cells });
            if self.cache.insert_found(hash, Arc::clone(&cached), epoch) {
                return Ok(Some(Loaded { cached, version, hash }));
            }
        }
        Err(StoreError::Unavailable("the key kept changing while it was being loaded".into()))
    }

    async fn org_facts(&self, record: &KeyRecord, epoch: u64) -> Result<Arc<OrgFacts>, StoreError> {
        if let Some(facts) = self.cache.org_facts(&record.org_id) {
            return Ok(facts);
        }
        let org = self.store.org(&record.org_id);
        let numbers = org.phone_numbers().await?.into_iter().map(|n| n.number).collect();
        let channels = org.channels().await?.into_iter().map(|c| c.slug).collect();
        let facts = Arc::new(OrgFacts { numbers, channels });
        self.cache.put_org_facts(record.org_id.clone(), Arc::clone(&facts), epoch);
        Ok(facts)
    }

    /// How many keys this node holds in its cache (approximate).
    pub fn cached_keys(&self) -> u64 {
        self.cache.len()
    }

    fn compile(&self, record: KeyRecord, org: &OrgFacts) -> Result<KeyPolicy, StoreError> {
        let signing_key = match (&record.sealed_signing_secret, record.settings.hmac_required) {
            (Some(sealed), true) => {
                // Sealed under the version the row says: a rewrap in progress mixes versions.
                let secret = self
                    .keyring
                    .load()
                    .open(record.seal_version, sealed, record.id.as_str())
                    .map_err(|e| StoreError::Other(Box::new(e)))?;
                Some(SigningKey::new(&secret))
            }
            (None, true) => return Err(StoreError::Other("key requires HMAC but has no signing secret".into())),
            (_, false) => None,
        };
        let settings = record.settings;
        Ok(KeyPolicy {
            key_id: record.id,
            org_id: record.org_id,
            name: settings.name,
            revoked: record.revoked_at.is_some(),
            expires_at: settings.expires_at,
            ip_allowlist: settings.ip_allowlist,
            signing_key,
            scopes: settings.scopes,
            phone_allowlist: settings.phone_allowlist,
            org_phone_numbers: Arc::clone(&org.numbers),
            org_channels: Arc::clone(&org.channels),
            channels: settings.channels,
            environment: settings.environment,
            meta: settings.meta,
            quota: Quota::per_second(settings.rate_limit.unwrap_or(self.config.default_rate_limit)),
        })
    }

    /// Forgets a key on this node, before the change that called it returns to its caller.
    pub fn invalidate(&self, hash: &KeyHash) {
        self.cache.invalidate_key(hash);
    }

    pub fn invalidate_org(&self, org: &keyward_core::ids::OrgId) {
        self.cache.invalidate_org(org);
    }

    /// Writes pending last-used times in one batch.
    pub async fn flush_last_used(&self) -> Result<usize, StoreError> {
        let pending = self.cache.take_last_used();
        if pending.is_empty() {
            return Ok(0);
        }
        let uses: Vec<_> = pending
            .iter()
            .map(|cells| {
                let ns = cells.last_used_ns.load(Ordering::Acquire);
                let at =
                    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns)).unwrap_or(OffsetDateTime::UNIX_EPOCH);
                (cells.key_id.clone(), at)
            })
            .collect();
        if let Err(error) = self.store.record_last_used(&uses).await {
            self.cache.restore_last_used(pending);
            return Err(error);
        }
        Ok(uses.len())
    }

    fn feed_is_fresh(&self, now_ns: u64) -> bool {
        if !self.feed.followed.load(Ordering::Acquire) {
            return true;
        }
        let confirmed = self.feed.confirmed_ns.load(Ordering::Acquire);
        now_ns.saturating_sub(confirmed) <= u64::try_from(self.config.max_staleness.as_nanos()).unwrap_or(u64::MAX)
    }

    /// The change feed's state, for `/readyz`.
    pub fn feed_status(&self) -> FeedStatus {
        let now_ns = unix_nanos(self.clock.now());
        let followed = self.feed.followed.load(Ordering::Acquire);
        let lag_ms =
            followed.then(|| now_ns.saturating_sub(self.feed.confirmed_ns.load(Ordering::Acquire)) / 1_000_000);
        FeedStatus { lag_ms, fresh: self.feed_is_fresh(now_ns), listening: self.feed.listening.load(Ordering::Acquire) }
    }

    /// Whether rate limits and replays are shared, local, or fallen back to local.
    pub fn shared_health(&self) -> SharedHealth {
        match (self.shared.limiter.health(), self.shared.replay.health()) {
            (SharedHealth::Fallback, _) | (_, SharedHealth::Fallback) => SharedHealth::Fallback,
            (SharedHealth::Shared, _) | (_, SharedHealth::Shared) => SharedHealth::Shared,
            _ => SharedHealth::Local,
        }
    }

    /// Starts the background work, as two tasks so that neither waits behind the other: one
    /// follows the store's change feed (woken by the store's signals, and polling every 100 ms
    /// anyway), the other flushes last-used times every second and sweeps expired entries.
    pub async fn start_background(self: &Arc<Self>) -> Result<Background, StoreError> {
        self.start_background_with(BackgroundOptions::default()).await
    }

    /// [`Verifier::start_background`] with another poll interval, or as a read-only follower
    /// that writes nothing (a verifier embedded in another service).
    pub async fn start_background_with(self: &Arc<Self>, options: BackgroundOptions) -> Result<Background, StoreError> {
        let seq = self.store.latest_change().await?;
        self.feed.confirmed_ns.store(unix_nanos(self.clock.now()), Ordering::Release);
        self.feed.followed.store(true, Ordering::Release);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let follower = tokio::spawn(Arc::clone(self).follow(seq, options.feed_poll, stopped.clone()));
        let flusher = tokio::spawn(Arc::clone(self).flush_loop(options.record_last_used, stopped));
        Ok(Background { stop, tasks: vec![follower, flusher] })
    }

    async fn follow(self: Arc<Self>, mut seq: i64, every: Duration, mut stopped: tokio::sync::watch::Receiver<bool>) {
        let mut poll = tokio::time::interval(every);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut signals: Option<ChangeSignals> = None;
        let mut next_listen = tokio::time::Instant::now();
        loop {
            if signals.is_none() && tokio::time::Instant::now() >= next_listen {
                signals = self.listen().await;
                next_listen = tokio::time::Instant::now() + LISTEN_RETRY;
            }
            tokio::select! {
                _ = poll.tick() => {}
                signal = recv(&mut signals) => {
                    if signal.is_none() {
                        // The listening connection dropped: re-read the feed from where it was
                        // now, and listen again on the next round.
                        tracing::warn!("change notifications lost; reconnecting and re-reading the change feed");
                        signals = None;
                        self.feed.listening.store(false, Ordering::Release);
                    }
                }
                _ = stopped.changed() => break,
            }
            seq = self.follow_changes(seq).await;
        }
    }

    async fn listen(&self) -> Option<ChangeSignals> {
        match self.store.listen_changes().await {
            Ok(Some(signals)) => {
                self.feed.listening.store(true, Ordering::Release);
                Some(signals)
            }
            Ok(None) => None,
            Err(error) => {
                tracing::debug!(%error, "cannot listen for change notifications yet; polling");
                None
            }
        }
    }

    async fn flush_loop(self: Arc<Self>, record_last_used: bool, mut stopped: tokio::sync::watch::Receiver<bool>) {
        let mut upkeep = tokio::time::interval(Duration::from_secs(1));
        let mut last_flush = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = upkeep.tick() => {
                    if !record_last_used {
                        // A read-only follower: the marks are dropped, never written.
                        drop(self.cache.take_last_used());
                    } else if last_flush.elapsed() >= LAST_USED_FLUSH_EVERY {
                        // Each flush writes every key used since the last: with many keys in use
                        // that is the node's largest write load, so it runs as seldom as SPEC §5 allows.
                        last_flush = tokio::time::Instant::now();
                        if let Err(error) = self.flush_last_used().await {
                            tracing::warn!(%error, "last-used flush failed; will retry");
                        }
                    }
                    // Keys found under an older master key move to the current one; a
                    // read-only follower never writes them.
                    if !record_last_used {
                        self.rehashes.lock().clear();
                    } else if let Err(error) = self.flush_rehashes().await {
                        tracing::warn!(%error, "key rehash batch failed; each key is queued again when next verified");
                    }
                    let now = self.clock.now();
                    self.cache.run_upkeep();
                    self.shared.replay.sweep(now.unix_timestamp());
                }
                _ = stopped.changed() => break,
            }
        }
        if record_last_used {
            if let Err(error) = self.flush_last_used().await {
                tracing::error!(%error, "final last-used flush failed");
            }
            if let Err(error) = self.flush_rehashes().await {
                tracing::warn!(%error, "final key rehash batch failed; keys are queued again when next verified");
            }
        }
    }

    async fn follow_changes(&self, seq: i64) -> i64 {
        let started_ns = unix_nanos(self.clock.now());
        match self.store.changes_since(seq).await {
            Ok((changes, next)) => {
                for change in &changes {
                    match change {
                        Change::Key(hash) => self.cache.invalidate_key(hash),
                        Change::Org(org) => self.cache.invalidate_org(org),
                    }
                }
                self.counters.invalidations.increment(changes.len() as u64);
                // Confirmed as of when the read started: anything committed before then is seen.
                self.feed.confirmed_ns.fetch_max(started_ns, Ordering::AcqRel);
                self.counters.feed_lag.set(0.0);
                next
            }
            Err(error) => {
                let lag = started_ns.saturating_sub(self.feed.confirmed_ns.load(Ordering::Acquire));
                #[allow(clippy::cast_precision_loss, reason = "a lag in seconds as a gauge")]
                self.counters.feed_lag.set(lag as f64 / 1e9);
                tracing::warn!(%error, "could not read the change feed; cached keys stop being trusted past the staleness bound");
                seq
            }
        }
    }
}

/// The key's budget as this node last saw it, without taking from it.
fn peek(cached: &CachedKey, now_ns: u64) -> RateInfo {
    let quota = cached.policy.quota;
    let step = keyward_core::ratelimit::check(quota, cached.cells.tat_ns.load(Ordering::Acquire), now_ns);
    let remaining = if step.allowed { step.remaining.saturating_add(1).min(quota.limit()) } else { 0 };
    let full_in_ns = cached.cells.tat_ns.load(Ordering::Acquire).saturating_sub(now_ns);
    RateInfo { limit: quota.limit(), remaining, reset_ms: full_in_ns.div_ceil(1_000_000) }
}

/// How often the feed is read when no wake-up came.
const FEED_POLL: Duration = Duration::from_millis(100);

/// How [`Verifier::start_background_with`] runs the background work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackgroundOptions {
    /// How often the change feed is read when no wake-up came (100 ms by default).
    pub feed_poll: Duration,
    /// Whether last-used times and key rehashes (after a master-key rotation) are written to the
    /// store; off, the background work never writes (a read-only follower).
    pub record_last_used: bool,
}

impl Default for BackgroundOptions {
    fn default() -> Self {
        Self { feed_poll: FEED_POLL, record_last_used: true }
    }
}

/// How long to wait before listening again after the listening connection dropped.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

/// The next wake-up, or never when there is no listener.
async fn recv(signals: &mut Option<ChangeSignals>) -> Option<()> {
    match signals {
        Some(signals) => signals.recv().await,
        None => std::future::pending().await,
    }
}

/// The background tasks; [`Background::shutdown`] stops them after a final last-used flush.
#[derive(Debug)]
pub struct Background {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Background {
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

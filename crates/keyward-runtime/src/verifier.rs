//! [`Verifier`]: checksum → cache (or one store read on a miss) → `policy::verify` → replay →
//! rate limit → mark used. A cache hit touches no database and allocates nothing.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use keyward_core::crypto::SecretBox;
use keyward_core::key::{KeyFormat, KeyHash, Pepper};
use keyward_core::policy::{self, Context, Denial, EffectiveChannels, KeyPolicy, VerifyRequest};
use keyward_core::ratelimit::{self, Quota};
use keyward_core::record::KeyRecord;
use keyward_core::signing::SignatureFault;
use keyward_core::Code;
use keyward_store::{Change, Store, StoreError};
use time::OffsetDateTime;

use crate::cache::{CachedKey, KeyCache, Lookup};
use crate::clock::{unix_nanos, Clock};
use crate::replay::ReplayStore;

#[derive(Debug, Clone)]
pub struct VerifierConfig {
    pub format: KeyFormat,
    pub default_rate_limit: u32,
    pub signature_tolerance_seconds: i64,
    /// How long an unknown key is remembered as unknown.
    pub negative_ttl: Duration,
    pub max_negative_entries: u64,
}

/// The rate-limit figures of an accepted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateInfo {
    pub limit: u32,
    pub remaining: u32,
    pub reset_ms: u64,
}

/// A refusal, with `retry_after_ms` for `RATE_LIMITED`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyFailure {
    pub denial: Denial,
    pub retry_after_ms: Option<u64>,
}

impl From<Denial> for VerifyFailure {
    fn from(denial: Denial) -> Self {
        Self { denial, retry_after_ms: None }
    }
}

/// What verification decided. `Valid` borrows the cached policy: the caller renders its answer
/// inside the callback given to [`Verifier::verify`], so nothing is copied.
#[derive(Debug)]
pub enum Outcome<'p, 'a> {
    Valid {
        policy: &'p KeyPolicy,
        channels: EffectiveChannels<'p, 'a>,
        rate: RateInfo,
    },
    Invalid(VerifyFailure),
    /// The store could not be reached on a cache miss.
    Unavailable,
}

#[derive(Debug)]
pub struct Verifier {
    config: VerifierConfig,
    pepper: Pepper,
    secret_box: SecretBox,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    cache: KeyCache,
    replay: ReplayStore,
    counters: Counters,
}

#[derive(Debug)]
struct Counters {
    hits: metrics::Counter,
    misses: metrics::Counter,
}

const UNKNOWN_KEY: &str = "The API key is missing, malformed or unknown";

impl Verifier {
    pub fn new(
        config: VerifierConfig,
        pepper: Pepper,
        secret_box: SecretBox,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let started = clock.now().unix_timestamp();
        Self {
            replay: ReplayStore::new(started, config.signature_tolerance_seconds),
            cache: KeyCache::new(config.max_negative_entries),
            counters: Counters {
                hits: metrics::counter!("keyward_key_cache_hits_total"),
                misses: metrics::counter!("keyward_key_cache_misses_total"),
            },
            config,
            pepper,
            secret_box,
            store,
            clock,
        }
    }

    pub fn pepper(&self) -> &Pepper {
        &self.pepper
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
        let cached = match self.find_at(key, now).await {
            Ok(Some(cached)) => cached,
            Ok(None) => return answer(Outcome::Invalid(Denial::new(Code::InvalidApiKey, UNKNOWN_KEY).into())),
            Err(_) => return answer(Outcome::Unavailable),
        };
        let context = Context { now, signature_tolerance_seconds: self.config.signature_tolerance_seconds };
        let allowed = match policy::verify(&cached.policy, request, &context, &self.replay) {
            Ok(allowed) => allowed,
            Err(denial) => return answer(Outcome::Invalid(denial.into())),
        };
        // Consume the signature before the rate limit, atomically, so two concurrent copies
        // cannot both pass; give it back if the limit refuses, so the caller may re-send it.
        if let Some((signature, timestamp)) = &allowed.signature {
            if !self.replay.consume(signature, *timestamp) {
                let denial = Denial::new(Code::InvalidSignature, SignatureFault::Replayed.message());
                return answer(Outcome::Invalid(denial.into()));
            }
        }
        let now_ns = unix_nanos(now);
        let rate = match take_token(&cached, now_ns) {
            Ok(rate) => rate,
            Err(failure) => {
                if let Some((signature, _)) = &allowed.signature {
                    self.replay.release(signature);
                }
                return answer(Outcome::Invalid(failure));
            }
        };
        let cells = &cached.cells;
        cells.last_used_ns.fetch_max(i64::try_from(now_ns).unwrap_or(i64::MAX), Ordering::AcqRel);
        cells.last_used_dirty.store(true, Ordering::Release);
        answer(Outcome::Valid { policy: &cached.policy, channels: allowed.channels, rate })
    }

    /// The cached policy of a well-formed key, loading it on a miss; `None` for an unknown or
    /// malformed key. Also used to authenticate keys that manage their own org.
    pub async fn find(&self, key: &str) -> Result<Option<Arc<CachedKey>>, StoreError> {
        self.find_at(key, self.clock.now()).await
    }

    async fn find_at(&self, key: &str, now: OffsetDateTime) -> Result<Option<Arc<CachedKey>>, StoreError> {
        let Some(parsed) = self.config.format.parse(key) else {
            return Ok(None);
        };
        let hash = self.pepper.hash(parsed.expose());
        let now_ns = unix_nanos(now);
        match self.cache.get(&hash, now_ns) {
            Lookup::Found(cached) => {
                self.counters.hits.increment(1);
                Ok(Some(cached))
            }
            Lookup::Missing => {
                self.counters.hits.increment(1);
                Ok(None)
            }
            Lookup::Unknown => {
                self.counters.misses.increment(1);
                self.load(hash, now_ns).await
            }
        }
    }

    async fn load(&self, hash: KeyHash, now_ns: u64) -> Result<Option<Arc<CachedKey>>, StoreError> {
        // An invalidation racing the read makes the read stale: read again (rarely more than once).
        for _ in 0..3 {
            let epoch = self.cache.epoch();
            let Some(record) = self.store.find_key_by_hash(&hash).await? else {
                let ttl = u64::try_from(self.config.negative_ttl.as_nanos()).unwrap_or(u64::MAX);
                self.cache.insert_missing(hash, now_ns.saturating_add(ttl), epoch);
                return Ok(None);
            };
            // The map hit was on the hash; confirm it in constant time anyway.
            if !record.hash.ct_eq(&hash) {
                return Ok(None);
            }
            let numbers = self.org_numbers(&record, epoch).await?;
            let cached = Arc::new(CachedKey {
                cells: self.cache.cells_for(hash, &record.id),
                policy: self.compile(record, numbers)?,
            });
            if self.cache.insert_found(hash, Arc::clone(&cached), epoch) {
                return Ok(Some(cached));
            }
        }
        Err(StoreError::Unavailable("the key kept changing while it was being loaded".into()))
    }

    async fn org_numbers(&self, record: &KeyRecord, epoch: u64) -> Result<Arc<[String]>, StoreError> {
        if let Some(numbers) = self.cache.org_numbers(&record.org_id) {
            return Ok(numbers);
        }
        let numbers: Arc<[String]> =
            self.store.org(&record.org_id).phone_numbers().await?.into_iter().map(|n| n.number).collect();
        self.cache.put_org_numbers(record.org_id.clone(), Arc::clone(&numbers), epoch);
        Ok(numbers)
    }

    fn compile(&self, record: KeyRecord, org_phone_numbers: Arc<[String]>) -> Result<KeyPolicy, StoreError> {
        let signing_secret = match (&record.sealed_signing_secret, record.settings.hmac_required) {
            (Some(sealed), true) => {
                Some(self.secret_box.open(sealed, record.id.as_str()).map_err(|e| StoreError::Other(Box::new(e)))?)
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
            signing_secret,
            scopes: settings.scopes,
            phone_allowlist: settings.phone_allowlist,
            org_phone_numbers,
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
            .map(|(id, ns)| {
                (
                    id.clone(),
                    OffsetDateTime::from_unix_timestamp_nanos(i128::from(*ns)).unwrap_or(OffsetDateTime::UNIX_EPOCH),
                )
            })
            .collect();
        if let Err(error) = self.store.record_last_used(&uses).await {
            self.cache.restore_last_used(&pending);
            return Err(error);
        }
        Ok(uses.len())
    }

    /// Starts the background work: following the store's change feed (other nodes, the CLI) every
    /// 100 ms, flushing last-used times every second, and sweeping expired entries.
    pub async fn start_background(self: &Arc<Self>) -> Result<Background, StoreError> {
        let mut seq = self.store.latest_change().await?;
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let verifier = Arc::clone(self);
        let task = tokio::spawn(async move {
            let mut follow = tokio::time::interval(Duration::from_millis(100));
            let mut flush = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = follow.tick() => seq = verifier.follow_changes(seq).await,
                    _ = flush.tick() => {
                        if let Err(error) = verifier.flush_last_used().await {
                            tracing::warn!(%error, "last-used flush failed; will retry");
                        }
                        let now = verifier.clock.now();
                        verifier.cache.sweep(unix_nanos(now));
                        verifier.replay.sweep(now.unix_timestamp());
                    }
                    _ = stopped.changed() => break,
                }
            }
            if let Err(error) = verifier.flush_last_used().await {
                tracing::error!(%error, "final last-used flush failed");
            }
        });
        Ok(Background { stop, task })
    }

    async fn follow_changes(&self, seq: i64) -> i64 {
        match self.store.changes_since(seq).await {
            Ok((changes, next)) => {
                for change in &changes {
                    match change {
                        Change::Key(hash) => self.cache.invalidate_key(hash),
                        Change::Org(org) => self.cache.invalidate_org(org),
                    }
                }
                next
            }
            Err(error) => {
                tracing::warn!(%error, "could not read the change feed; cached keys may be stale until it recovers");
                seq
            }
        }
    }
}

/// One GCRA step on the key's shared cell (lock-free compare-and-swap).
fn take_token(cached: &CachedKey, now_ns: u64) -> Result<RateInfo, VerifyFailure> {
    let quota = cached.policy.quota;
    let cell = &cached.cells.tat_ns;
    let mut tat = cell.load(Ordering::Acquire);
    loop {
        let step = ratelimit::check(quota, tat, now_ns);
        if !step.allowed {
            return Err(VerifyFailure {
                denial: Denial::new(Code::RateLimited, "This API key is over its rate limit"),
                retry_after_ms: Some(step.retry_after_ms),
            });
        }
        match cell.compare_exchange_weak(tat, step.new_tat_ns, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Ok(RateInfo { limit: quota.limit(), remaining: step.remaining, reset_ms: step.reset_ms }),
            Err(current) => tat = current,
        }
    }
}

/// The background task; [`Background::shutdown`] stops it after a final last-used flush.
#[derive(Debug)]
pub struct Background {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Background {
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

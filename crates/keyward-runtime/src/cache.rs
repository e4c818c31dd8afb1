//! The verification cache: key hash → compiled policy (or a short-lived "no such key"), the
//! org facts policies share, and the per-key cells (rate-limit state, last use).
//!
//! Every map is a bounded `quick_cache` cache whose entries carry the time they were cached, so
//! neither many keys nor a flood of made-up ones can grow the process without bound, and an
//! entry past its maximum age reads as absent. `quick_cache` was chosen over moka for the hit:
//! moka logs every read for its eviction policy and replays the log later, which perf counted as
//! a sixth of a verification's own work; `quick_cache`'s read takes a shard's read lock and sets a
//! bit. Reads take no lock of ours; writes and invalidations are serialised by one mutex (misses
//! are rare), which is what lets a load that raced an invalidation be refused instead of caching
//! a stale row.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keyward_core::ids::{KeyId, OrgId};
use keyward_core::key::KeyHash;
use keyward_core::policy::KeyPolicy;
use parking_lot::Mutex;
use quick_cache::sync::{Cache, DefaultLifecycle};
use quick_cache::{Lifecycle, UnitWeighter};

use crate::clock::{unix_nanos, Clock};

/// How long the cells of a key that left the cache are kept for its reload: an edit or an
/// eviction must not hand a throttled key a fresh bucket. Past a second of idleness a GCRA
/// bucket is full anyway, so a few seconds is plenty.
const RETIRED_CELLS_TTL: Duration = Duration::from_secs(5);

/// Mutable per-key state, shared by successive cached versions of the same key.
#[derive(Debug)]
pub(crate) struct KeyCells {
    pub(crate) key_id: KeyId,
    /// GCRA theoretical arrival time, Unix nanoseconds.
    pub(crate) tat_ns: AtomicU64,
    /// Last successful verification, Unix nanoseconds, and whether it waits for the next flush.
    pub(crate) last_used_ns: AtomicI64,
    pub(crate) last_used_dirty: AtomicBool,
}

#[derive(Debug)]
pub struct CachedKey {
    pub policy: KeyPolicy,
    /// What the verifier's caller renders of this key once ([`crate::VerifierConfig::prerender`]).
    pub prerendered: Prerendered,
    pub(crate) cells: Arc<KeyCells>,
}

/// What a caller's answers repeat for one key, rendered once when the key is cached: two runs of
/// bytes that go before and after what varies by request (for the server, the members of a
/// `VALID` answer before and after `channels`). Copying them is what a hit costs, where
/// escaping each string of the key again was a sixteenth of a verification (callgrind).
#[derive(Debug, Default)]
pub struct Prerendered {
    bytes: Box<[u8]>,
    split: usize,
}

impl Prerendered {
    pub fn new(before: &[u8], after: &[u8]) -> Self {
        Self { bytes: [before, after].concat().into_boxed_slice(), split: before.len() }
    }

    pub fn before(&self) -> &[u8] {
        &self.bytes[..self.split]
    }

    pub fn after(&self) -> &[u8] {
        &self.bytes[self.split..]
    }

    /// Whether nothing was rendered (no `prerender` configured).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// What every key of an org shares: its sender numbers and channel slugs.
#[derive(Debug)]
pub(crate) struct OrgFacts {
    pub(crate) numbers: Arc<[String]>,
    pub(crate) channels: Arc<[String]>,
}

pub(crate) enum Lookup {
    Found(Arc<CachedKey>),
    Missing,
    Unknown,
}

/// The cache's bounds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CacheLimits {
    pub(crate) max_keys: u64,
    pub(crate) max_age: Duration,
    pub(crate) max_missing: u64,
    pub(crate) missing_ttl: Duration,
}

/// Hashes a [`KeyHash`] for the caches by folding its words. A key hash is an HMAC output that
/// nobody can steer without the pepper, so it is already uniform: `SipHash` over it again (the
/// caches' usual default) was most of a cache hit's cost (perf, `scripts/callgrind-verify.sh`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct KeyHashBuild;

impl BuildHasher for KeyHashBuild {
    type Hasher = KeyHashHasher;
    fn build_hasher(&self) -> KeyHashHasher {
        KeyHashHasher(0)
    }
}

#[derive(Debug)]
pub(crate) struct KeyHashHasher(u64);

impl Hasher for KeyHashHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(23) ^ u64::from_le_bytes(word);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A cached value and when it was cached, in Unix nanoseconds of the verifier's clock:
/// `quick_cache` has no expiry of its own. The verifier's clock, not `Instant`: a hit is aged
/// by the reading the verification already made (a second clock read was a tenth of a hit over
/// many keys, perf), and tests that move a `ManualClock` move the ages with it.
#[derive(Debug, Clone)]
struct Aged<V> {
    value: V,
    cached_at: u64,
}

impl<V> Aged<V> {
    fn fresh_at(&self, now_ns: u64, max_age: Duration) -> bool {
        u128::from(now_ns.saturating_sub(self.cached_at)) < max_age.as_nanos()
    }
}

type ByHash<V, L = DefaultLifecycle<KeyHash, Aged<V>>> = Cache<KeyHash, Aged<V>, UnitWeighter, KeyHashBuild, L>;

/// Collects the cells of keys pushed out for room during an insert, so the insert's caller
/// retires them (outside the cache's lock) like those of keys dropped for any other reason.
#[derive(Debug, Clone, Copy, Default)]
struct CollectEvicted;

impl Lifecycle<KeyHash, Aged<Arc<CachedKey>>> for CollectEvicted {
    type RequestState = Vec<(KeyHash, Arc<KeyCells>)>;

    fn on_evict(&self, evicted: &mut Self::RequestState, hash: KeyHash, key: Aged<Arc<CachedKey>>) {
        evicted.push((hash, Arc::clone(&key.value.cells)));
    }
}

/// How often [`KeyCache::run_upkeep`] walks the caches for entries past their age: expired
/// entries already read as absent, so the walk only hands their memory back.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub(crate) struct KeyCache {
    limits: CacheLimits,
    found: ByHash<Arc<CachedKey>, CollectEvicted>,
    /// Unknown keys, remembered briefly so a repeated made-up key stays off the database.
    missing: ByHash<()>,
    retired: ByHash<Arc<KeyCells>>,
    orgs: Cache<OrgId, Aged<Arc<OrgFacts>>>,
    /// The ages' clock (the verifier's), read here only off the hit path.
    clock: Arc<dyn Clock>,
    /// When the last sweep ran, Unix nanoseconds.
    last_sweep: Mutex<u64>,
    /// Taken by every insert and invalidation, never by a read.
    writes: Mutex<()>,
    /// Bumped by every invalidation; a load that saw it move retries, so it cannot cache a stale row.
    epoch: AtomicU64,
    /// Cells used since the last flush: the flush visits only them, not every cached key.
    used: Mutex<Vec<Arc<KeyCells>>>,
    /// One load per key at a time: concurrent misses for a key wait for the first one's read.
    loading: Mutex<HashMap<KeyHash, Arc<tokio::sync::Mutex<()>>>>,
}

fn capacity(items: u64) -> usize {
    usize::try_from(items.max(1)).unwrap_or(usize::MAX)
}

fn by_hash<V: Clone>(items: u64) -> ByHash<V> {
    Cache::with(capacity(items), items.max(1), UnitWeighter, KeyHashBuild, DefaultLifecycle::default())
}

impl KeyCache {
    pub(crate) fn new(limits: CacheLimits, clock: Arc<dyn Clock>) -> Self {
        let keys = limits.max_keys.max(1);
        Self {
            limits,
            found: Cache::with(capacity(keys), keys, UnitWeighter, KeyHashBuild, CollectEvicted),
            missing: by_hash(limits.max_missing),
            retired: by_hash(keys),
            orgs: Cache::new(capacity(keys)),
            clock,
            last_sweep: Mutex::new(0),
            writes: Mutex::new(()),
            epoch: AtomicU64::new(0),
            used: Mutex::new(Vec::new()),
            loading: Mutex::new(HashMap::new()),
        }
    }

    fn now_ns(&self) -> u64 {
        unix_nanos(self.clock.now())
    }

    /// The key cached under `hash`, aged at `now_ns` (the verification's own clock reading).
    pub(crate) fn get(&self, hash: &KeyHash, now_ns: u64) -> Lookup {
        let now = now_ns;
        if let Some(key) = self.found.get(hash) {
            if key.fresh_at(now, self.limits.max_age) {
                return Lookup::Found(key.value);
            }
            // Past its age: dropped (its cells retired for the reload) and read again.
            if let Some((hash, old)) = self.found.remove_if(hash, |entry| entry.cached_at == key.cached_at) {
                self.retire(hash, Arc::clone(&old.value.cells), now);
            }
            return Lookup::Unknown;
        }
        if self.missing.get(hash).is_some_and(|entry| entry.fresh_at(now, self.limits.missing_ttl)) {
            return Lookup::Missing;
        }
        Lookup::Unknown
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Caches a loaded policy unless an invalidation happened since `epoch` was read.
    pub(crate) fn insert_found(&self, hash: KeyHash, key: Arc<CachedKey>, epoch: u64) -> bool {
        let now = self.now_ns();
        let mut evicted = Vec::new();
        {
            let _writes = self.writes.lock();
            if self.epoch() != epoch {
                return false;
            }
            // A replaced entry's cells live on in its replacement (the load took them).
            self.found.insert_with_lifecycle(hash, Aged { value: key, cached_at: now }, &mut evicted);
        }
        for (hash, cells) in evicted {
            self.retire(hash, cells, now);
        }
        true
    }

    pub(crate) fn insert_missing(&self, hash: KeyHash, epoch: u64) {
        let _writes = self.writes.lock();
        if self.epoch() == epoch {
            self.missing.insert(hash, Aged { value: (), cached_at: self.now_ns() });
        }
    }

    pub(crate) fn invalidate_key(&self, hash: &KeyHash) {
        let _writes = self.writes.lock();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Some((hash, key)) = self.found.remove(hash) {
            self.retire(hash, Arc::clone(&key.value.cells), self.now_ns());
        }
        self.missing.remove(hash);
    }

    /// Forgets every cached key of an org and its facts (they changed).
    pub(crate) fn invalidate_org(&self, org: &OrgId) {
        let _writes = self.writes.lock();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.orgs.remove(org);
        // A walk over the cache: org changes (numbers, channels, members) are rare administrative acts.
        // The matches are collected first: removing while iterating may skip entries.
        let now = self.now_ns();
        let of_org: Vec<KeyHash> =
            self.found.iter().filter(|(_, key)| key.value.policy.org_id == *org).map(|(hash, _)| hash).collect();
        for hash in of_org {
            if let Some((hash, key)) = self.found.remove(&hash) {
                self.retire(hash, Arc::clone(&key.value.cells), now);
            }
        }
    }

    /// Keeps a dropped key's cells for its reload: an edit or an eviction must not hand a
    /// throttled key a fresh bucket.
    fn retire(&self, hash: KeyHash, cells: Arc<KeyCells>, now: u64) {
        self.retired.insert(hash, Aged { value: cells, cached_at: now });
    }

    /// Hands back the memory of entries past their age (every `SWEEP_EVERY`), so a node that no
    /// longer sees a key does not hold it until the cache fills.
    pub(crate) fn run_upkeep(&self) {
        let now = self.now_ns();
        {
            let mut last = self.last_sweep.lock();
            if u128::from(now.saturating_sub(*last)) < SWEEP_EVERY.as_nanos() {
                return;
            }
            *last = now;
        }
        let max_age = self.limits.max_age;
        let expired: Vec<KeyHash> =
            self.found.iter().filter(|(_, key)| !key.fresh_at(now, max_age)).map(|(hash, _)| hash).collect();
        for hash in expired {
            if let Some((hash, key)) = self.found.remove_if(&hash, |key| !key.fresh_at(now, max_age)) {
                self.retire(hash, Arc::clone(&key.value.cells), now);
            }
        }
        self.missing.retain(|_, entry| entry.fresh_at(now, self.limits.missing_ttl));
        self.retired.retain(|_, entry| entry.fresh_at(now, RETIRED_CELLS_TTL));
        self.orgs.retain(|_, entry| entry.fresh_at(now, max_age));
    }

    /// The cells of a key being loaded: those of its cached or recently dropped version, or new.
    pub(crate) fn cells_for(&self, hash: KeyHash, key_id: &KeyId) -> Arc<KeyCells> {
        if let Some(key) = self.found.get(&hash) {
            return Arc::clone(&key.value.cells);
        }
        let now = self.now_ns();
        if let Some((_, cells)) = self.retired.remove(&hash) {
            if cells.fresh_at(now, RETIRED_CELLS_TTL) {
                return cells.value;
            }
        }
        Arc::new(KeyCells {
            key_id: key_id.clone(),
            tat_ns: AtomicU64::new(0),
            last_used_ns: AtomicI64::new(0),
            last_used_dirty: AtomicBool::new(false),
        })
    }

    /// Marks a key used at `now_ns`; the first use since a flush queues its cells for the next.
    pub(crate) fn mark_used(&self, cells: &Arc<KeyCells>, now_ns: u64) {
        cells.last_used_ns.fetch_max(i64::try_from(now_ns).unwrap_or(i64::MAX), Ordering::AcqRel);
        if !cells.last_used_dirty.swap(true, Ordering::AcqRel) {
            self.used.lock().push(Arc::clone(cells));
        }
    }

    /// Every key used since the last call (and clears the marks).
    pub(crate) fn take_last_used(&self) -> Vec<Arc<KeyCells>> {
        let used = std::mem::take(&mut *self.used.lock());
        for cells in &used {
            cells.last_used_dirty.store(false, Ordering::Release);
        }
        used
    }

    /// Puts marks back after a failed flush, so the next one retries.
    pub(crate) fn restore_last_used(&self, cells: Vec<Arc<KeyCells>>) {
        let mut used = self.used.lock();
        for cell in cells {
            if !cell.last_used_dirty.swap(true, Ordering::AcqRel) {
                used.push(cell);
            }
        }
    }

    pub(crate) fn org_facts(&self, org: &OrgId) -> Option<Arc<OrgFacts>> {
        let entry = self.orgs.get(org)?;
        entry.fresh_at(self.now_ns(), self.limits.max_age).then_some(entry.value)
    }

    pub(crate) fn put_org_facts(&self, org: OrgId, facts: Arc<OrgFacts>, epoch: u64) {
        let _writes = self.writes.lock();
        if self.epoch() == epoch {
            self.orgs.insert(org, Aged { value: facts, cached_at: self.now_ns() });
        }
    }

    /// Waits for this key's turn to load; the guard hands the turn on when dropped.
    pub(crate) async fn load_turn(&self, hash: KeyHash) -> LoadTurn<'_> {
        let gate = Arc::clone(self.loading.lock().entry(hash).or_default());
        let guard = Arc::clone(&gate).lock_owned().await;
        LoadTurn { cache: self, hash, gate, _guard: guard }
    }

    /// Keys held right now.
    pub(crate) fn len(&self) -> u64 {
        u64::try_from(self.found.len()).unwrap_or(u64::MAX)
    }
}

/// One loader's turn for one key (single flight).
pub(crate) struct LoadTurn<'c> {
    cache: &'c KeyCache,
    hash: KeyHash,
    gate: Arc<tokio::sync::Mutex<()>>,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for LoadTurn<'_> {
    fn drop(&mut self) {
        let mut loading = self.cache.loading.lock();
        // Ours, the guard's and the map's: nobody else waits, so the gate can go.
        if Arc::strong_count(&self.gate) <= 3 {
            loading.remove(&self.hash);
        }
    }
}

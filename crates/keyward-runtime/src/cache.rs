//! The verification cache: key hash → compiled policy (or a short-lived "no such key"), the
//! org facts policies share, and the per-key cells (rate-limit state, last use).
//!
//! Every map is a bounded `moka` cache with a maximum age, so neither many keys nor a flood of
//! made-up ones can grow the process without bound. Reads take no lock of ours; writes and
//! invalidations are serialised by one mutex (misses are rare), which is what lets a load that
//! raced an invalidation be refused instead of caching a stale row.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keyward_core::ids::{KeyId, OrgId};
use keyward_core::key::KeyHash;
use keyward_core::policy::KeyPolicy;
use moka::notification::RemovalCause;
use moka::sync::Cache;
use parking_lot::Mutex;

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
    pub(crate) cells: Arc<KeyCells>,
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
/// nobody can steer without the pepper, so it is already uniform: `SipHash` over it again (moka's
/// default) was most of a cache hit's cost (perf, `scripts/callgrind-verify.sh`).
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

#[derive(Debug)]
pub(crate) struct KeyCache {
    found: Cache<KeyHash, Arc<CachedKey>, KeyHashBuild>,
    /// Unknown keys, remembered briefly so a repeated made-up key stays off the database.
    missing: Cache<KeyHash, (), KeyHashBuild>,
    retired: Cache<KeyHash, Arc<KeyCells>, KeyHashBuild>,
    orgs: Cache<OrgId, Arc<OrgFacts>>,
    /// Taken by every insert and invalidation, never by a read.
    writes: Mutex<()>,
    /// Bumped by every invalidation; a load that saw it move retries, so it cannot cache a stale row.
    epoch: AtomicU64,
    /// Cells used since the last flush: the flush visits only them, not every cached key.
    used: Mutex<Vec<Arc<KeyCells>>>,
    /// One load per key at a time: concurrent misses for a key wait for the first one's read.
    loading: Mutex<HashMap<KeyHash, Arc<tokio::sync::Mutex<()>>>>,
}

impl KeyCache {
    pub(crate) fn new(limits: CacheLimits) -> Self {
        let retired: Cache<KeyHash, Arc<KeyCells>, KeyHashBuild> = Cache::builder()
            .max_capacity(limits.max_keys.max(1))
            .time_to_live(RETIRED_CELLS_TTL)
            .build_with_hasher(KeyHashBuild);
        let keep = retired.clone();
        let found = Cache::builder()
            .max_capacity(limits.max_keys.max(1))
            .time_to_live(limits.max_age)
            .eviction_listener(move |hash: Arc<KeyHash>, key: Arc<CachedKey>, cause| {
                // A replaced entry's cells live on in its replacement.
                if cause != RemovalCause::Replaced {
                    keep.insert(*hash, Arc::clone(&key.cells));
                }
            })
            .build_with_hasher(KeyHashBuild);
        Self {
            found,
            missing: Cache::builder()
                .max_capacity(limits.max_missing.max(1))
                .time_to_live(limits.missing_ttl)
                .build_with_hasher(KeyHashBuild),
            retired,
            orgs: Cache::builder().max_capacity(limits.max_keys.max(1)).time_to_live(limits.max_age).build(),
            writes: Mutex::new(()),
            epoch: AtomicU64::new(0),
            used: Mutex::new(Vec::new()),
            loading: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn get(&self, hash: &KeyHash) -> Lookup {
        if let Some(key) = self.found.get(hash) {
            return Lookup::Found(key);
        }
        if self.missing.contains_key(hash) {
            return Lookup::Missing;
        }
        Lookup::Unknown
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Caches a loaded policy unless an invalidation happened since `epoch` was read.
    pub(crate) fn insert_found(&self, hash: KeyHash, key: Arc<CachedKey>, epoch: u64) -> bool {
        let _writes = self.writes.lock();
        if self.epoch() != epoch {
            return false;
        }
        self.found.insert(hash, key);
        true
    }

    pub(crate) fn insert_missing(&self, hash: KeyHash, epoch: u64) {
        let _writes = self.writes.lock();
        if self.epoch() == epoch {
            self.missing.insert(hash, ());
        }
    }

    pub(crate) fn invalidate_key(&self, hash: &KeyHash) {
        let _writes = self.writes.lock();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.found.invalidate(hash);
        self.missing.invalidate(hash);
    }

    /// Forgets every cached key of an org and its facts (they changed).
    pub(crate) fn invalidate_org(&self, org: &OrgId) {
        let _writes = self.writes.lock();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.orgs.invalidate(org);
        // A walk over the cache, not moka's invalidation predicates: those also hide entries
        // inserted right after them (same clock tick), and org changes (numbers, channels,
        // members) are rare administrative acts.
        for (hash, key) in &self.found {
            if key.policy.org_id == *org {
                self.found.invalidate(&*hash);
            }
        }
    }

    /// Applies pending evictions and expiries now, so memory is handed back without traffic.
    pub(crate) fn run_upkeep(&self) {
        self.found.run_pending_tasks();
        self.missing.run_pending_tasks();
        self.retired.run_pending_tasks();
        self.orgs.run_pending_tasks();
    }

    /// The cells of a key being loaded: those of its cached or recently dropped version, or new.
    pub(crate) fn cells_for(&self, hash: KeyHash, key_id: &KeyId) -> Arc<KeyCells> {
        if let Some(key) = self.found.get(&hash) {
            return Arc::clone(&key.cells);
        }
        if let Some(cells) = self.retired.remove(&hash) {
            return cells;
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
        self.orgs.get(org)
    }

    pub(crate) fn put_org_facts(&self, org: OrgId, facts: Arc<OrgFacts>, epoch: u64) {
        let _writes = self.writes.lock();
        if self.epoch() == epoch {
            self.orgs.insert(org, facts);
        }
    }

    /// Waits for this key's turn to load; the guard hands the turn on when dropped.
    pub(crate) async fn load_turn(&self, hash: KeyHash) -> LoadTurn<'_> {
        let gate = Arc::clone(self.loading.lock().entry(hash).or_default());
        let guard = Arc::clone(&gate).lock_owned().await;
        LoadTurn { cache: self, hash, gate, _guard: guard }
    }

    /// Keys held right now, once pending evictions are applied.
    pub(crate) fn len(&self) -> u64 {
        self.found.run_pending_tasks();
        self.found.entry_count()
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

//! The verification cache: key hash → compiled policy (or a short-lived "no such key"), and the
//! per-key cells (rate-limit state, last use) that outlive any one cached policy.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use keyward_core::ids::{KeyId, OrgId};
use keyward_core::key::KeyHash;
use keyward_core::policy::KeyPolicy;
use parking_lot::RwLock;

const SHARDS: usize = 16;

/// Mutable per-key state, shared by successive cached versions of the same key, so an edit does
/// not hand a throttled key a fresh bucket.
#[derive(Debug)]
pub(crate) struct KeyCells {
    pub(crate) key_id: KeyId,
    /// GCRA theoretical arrival time, Unix nanoseconds.
    pub(crate) tat_ns: AtomicU64,
    /// Last successful verification, Unix nanoseconds, and whether the store has seen it yet.
    pub(crate) last_used_ns: AtomicI64,
    pub(crate) last_used_dirty: AtomicBool,
}

#[derive(Debug)]
pub struct CachedKey {
    pub policy: KeyPolicy,
    pub(crate) cells: Arc<KeyCells>,
}

#[derive(Debug, Clone)]
enum Entry {
    Found(Arc<CachedKey>),
    /// Unknown key, remembered until this Unix nanosecond so a flood of made-up keys stays off the database.
    Missing {
        until_ns: u64,
    },
}

pub(crate) enum Lookup {
    Found(Arc<CachedKey>),
    Missing,
    Unknown,
}

type Shard = RwLock<HashMap<KeyHash, Entry>>;

#[derive(Debug)]
pub(crate) struct KeyCache {
    shards: [Shard; SHARDS],
    cells: RwLock<HashMap<KeyHash, Arc<KeyCells>>>,
    org_numbers: RwLock<HashMap<OrgId, Arc<[String]>>>,
    /// Bumped by every invalidation; a load that saw it move retries, so it cannot cache a stale row.
    epoch: AtomicU64,
    negative_len: AtomicU64,
    max_negative: u64,
}

impl KeyCache {
    pub(crate) fn new(max_negative: u64) -> Self {
        Self {
            shards: std::array::from_fn(|_| RwLock::new(HashMap::new())),
            cells: RwLock::new(HashMap::new()),
            org_numbers: RwLock::new(HashMap::new()),
            epoch: AtomicU64::new(0),
            negative_len: AtomicU64::new(0),
            max_negative,
        }
    }

    fn shard(&self, hash: &KeyHash) -> &Shard {
        &self.shards[usize::from(hash.0[0]) % SHARDS]
    }

    pub(crate) fn get(&self, hash: &KeyHash, now_ns: u64) -> Lookup {
        match self.shard(hash).read().get(hash) {
            Some(Entry::Found(key)) => Lookup::Found(Arc::clone(key)),
            Some(Entry::Missing { until_ns }) if *until_ns > now_ns => Lookup::Missing,
            _ => Lookup::Unknown,
        }
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Caches a loaded policy unless an invalidation happened since `epoch` was read.
    pub(crate) fn insert_found(&self, hash: KeyHash, key: Arc<CachedKey>, epoch: u64) -> bool {
        let mut shard = self.shard(&hash).write();
        if self.epoch() != epoch {
            return false;
        }
        shard.insert(hash, Entry::Found(key));
        true
    }

    pub(crate) fn insert_missing(&self, hash: KeyHash, until_ns: u64, epoch: u64) {
        // Bounded: past the cap, unknown keys just go to the database (still behind the checksum).
        if self.negative_len.load(Ordering::Relaxed) >= self.max_negative {
            return;
        }
        let mut shard = self.shard(&hash).write();
        if self.epoch() == epoch && shard.insert(hash, Entry::Missing { until_ns }).is_none() {
            self.negative_len.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn invalidate_key(&self, hash: &KeyHash) {
        let mut shard = self.shard(hash).write();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Some(Entry::Missing { .. }) = shard.remove(hash) {
            self.negative_len.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Forgets every cached key of an org and its phone numbers (they changed).
    pub(crate) fn invalidate_org(&self, org: &OrgId) {
        self.org_numbers.write().remove(org);
        for shard in &self.shards {
            let mut shard = shard.write();
            self.epoch.fetch_add(1, Ordering::AcqRel);
            shard.retain(|_, entry| !matches!(entry, Entry::Found(key) if key.policy.org_id == *org));
        }
    }

    /// Drops expired negative entries.
    pub(crate) fn sweep(&self, now_ns: u64) {
        for shard in &self.shards {
            let mut removed = 0;
            shard.write().retain(|_, entry| match entry {
                Entry::Missing { until_ns } if *until_ns <= now_ns => {
                    removed += 1;
                    false
                }
                _ => true,
            });
            self.negative_len.fetch_sub(removed, Ordering::Relaxed);
        }
    }

    pub(crate) fn cells_for(&self, hash: KeyHash, key_id: &KeyId) -> Arc<KeyCells> {
        if let Some(cells) = self.cells.read().get(&hash) {
            return Arc::clone(cells);
        }
        Arc::clone(self.cells.write().entry(hash).or_insert_with(|| {
            Arc::new(KeyCells {
                key_id: key_id.clone(),
                tat_ns: AtomicU64::new(0),
                last_used_ns: AtomicI64::new(0),
                last_used_dirty: AtomicBool::new(false),
            })
        }))
    }

    /// Every key used since the last call (and clears the marks).
    pub(crate) fn take_last_used(&self) -> Vec<(KeyId, i64)> {
        self.cells
            .read()
            .values()
            .filter(|cells| cells.last_used_dirty.swap(false, Ordering::AcqRel))
            .map(|cells| (cells.key_id.clone(), cells.last_used_ns.load(Ordering::Acquire)))
            .collect()
    }

    /// Puts marks back after a failed flush, so the next one retries.
    pub(crate) fn restore_last_used(&self, ids: &[(KeyId, i64)]) {
        let cells = self.cells.read();
        for cell in cells.values() {
            if ids.iter().any(|(id, _)| *id == cell.key_id) {
                cell.last_used_dirty.store(true, Ordering::Release);
            }
        }
    }

    pub(crate) fn org_numbers(&self, org: &OrgId) -> Option<Arc<[String]>> {
        self.org_numbers.read().get(org).cloned()
    }

    pub(crate) fn put_org_numbers(&self, org: OrgId, numbers: Arc<[String]>, epoch: u64) {
        let mut map = self.org_numbers.write();
        if self.epoch() == epoch {
            map.insert(org, numbers);
        }
    }
}

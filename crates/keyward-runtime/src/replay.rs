//! In-process replay store: remembers each consumed signature until it leaves the window.
//! Without a shared store a restarted node cannot know what it accepted before, so it refuses
//! every signature timestamped before it started (they all leave the window within one tolerance).

use std::collections::HashMap;

use keyward_core::policy::ReplayGuard;
use keyward_core::signing::SignatureBytes;
use parking_lot::Mutex;

const SHARDS: usize = 16;

#[derive(Debug)]
pub(crate) struct ReplayStore {
    started_at_unix: i64,
    tolerance_seconds: i64,
    /// Signature → the Unix second after which it may be forgotten.
    shards: [Mutex<HashMap<SignatureBytes, i64>>; SHARDS],
}

impl ReplayStore {
    pub(crate) fn new(started_at_unix: i64, tolerance_seconds: i64) -> Self {
        Self { started_at_unix, tolerance_seconds, shards: std::array::from_fn(|_| Mutex::new(HashMap::new())) }
    }

    fn shard(&self, signature: &SignatureBytes) -> &Mutex<HashMap<SignatureBytes, i64>> {
        &self.shards[usize::from(signature[0]) % SHARDS]
    }

    /// Marks the signature used; false when it already was (a concurrent twin won).
    pub(crate) fn consume(&self, signature: &SignatureBytes, timestamp: i64) -> bool {
        let forget_after = timestamp + self.tolerance_seconds;
        let mut shard = self.shard(signature).lock();
        if shard.contains_key(signature) {
            return false;
        }
        shard.insert(*signature, forget_after);
        true
    }

    /// Gives a consumed signature back, when the request was refused after all (rate limited).
    pub(crate) fn release(&self, signature: &SignatureBytes) {
        self.shard(signature).lock().remove(signature);
    }

    /// Drops signatures whose timestamp has left the window: they are refused as stale anyway.
    pub(crate) fn sweep(&self, now_unix: i64) {
        for shard in &self.shards {
            shard.lock().retain(|_, forget_after| *forget_after >= now_unix);
        }
    }
}

impl ReplayGuard for ReplayStore {
    fn is_replay(&self, signature: &SignatureBytes, timestamp: i64) -> bool {
        timestamp < self.started_at_unix || self.shard(signature).lock().contains_key(signature)
    }
}

//! State that several nodes must agree on — per-key rate limits and consumed signatures — behind
//! two small traits, each with an in-process implementation here and a Redis one in
//! [`crate::redis`]. The verifier is given one of each at boot and never asks which it holds.
//!
//! The methods return [`Pending`] rather than being `async fn`s: an in-process answer is ready at
//! once and must not box a future on every verification (the hot path allocates nothing), while
//! a Redis answer needs a round trip, where one boxed future is noise.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use keyward_core::ids::KeyId;
use keyward_core::ratelimit::{self, Quota};
use keyward_core::signing::SignatureBytes;
use parking_lot::Mutex;

/// An answer that is either here already or on its way.
pub enum Pending<'a, T> {
    Ready(Option<T>),
    Wait(Pin<Box<dyn Future<Output = T> + Send + 'a>>),
}

impl<T> Pending<'_, T> {
    pub fn ready(value: T) -> Self {
        Self::Ready(Some(value))
    }
}

impl<T: Unpin> Future for Pending<'_, T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match self.get_mut() {
            Self::Ready(value) => Poll::Ready(value.take().expect("a Pending is not polled after it completed")),
            Self::Wait(future) => future.as_mut().poll(cx),
        }
    }
}

impl<T> fmt::Debug for Pending<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ready(_) => "Pending::Ready",
            Self::Wait(_) => "Pending::Wait",
        })
    }
}

/// The rate-limit figures of one request against a key's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Milliseconds until the budget is full again.
    pub reset_ms: u64,
    /// When refused: milliseconds until one request is accepted.
    pub retry_after_ms: u64,
}

impl Budget {
    pub fn from_step(quota: Quota, step: &ratelimit::Outcome) -> Self {
        Self {
            allowed: step.allowed,
            limit: quota.limit(),
            remaining: step.remaining,
            reset_ms: step.reset_ms,
            retry_after_ms: step.retry_after_ms,
        }
    }
}

/// Whether shared state is really shared right now, for `/readyz` and `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedHealth {
    /// In-process by configuration: there is nothing to share with.
    Local,
    /// Shared through Redis.
    Shared,
    /// Redis is unreachable: rate limits fall back to local ones (limit / nodes) and signed
    /// requests follow `replay_fallback`.
    Fallback,
}

/// A per-key request budget (GCRA, one second of burst).
pub trait RateLimiter: Send + Sync + fmt::Debug {
    /// Takes one request of `key` at `now_ns` (Unix nanoseconds). `cell` is this node's GCRA
    /// state for the key, kept with the cached key: the in-process limiter uses it, a shared
    /// one may use it as its fallback.
    fn take<'a>(&'a self, key: &'a KeyId, cell: &'a AtomicU64, quota: Quota, now_ns: u64) -> Pending<'a, Budget>;

    fn health(&self) -> SharedHealth {
        SharedHealth::Local
    }
}

/// The replay store could not answer; the request must not pass on a guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the replay store is unavailable")]
pub struct ReplayUnavailable;

/// Signatures consumed by `VALID` answers, remembered while their timestamp is in the window.
pub trait ReplayStore: Send + Sync + fmt::Debug {
    /// Reserves a signature whose timestamp is `timestamp` (Unix seconds): `Ok(true)` when it
    /// was free (now taken, atomically), `Ok(false)` when it was already consumed (a replay).
    fn reserve<'a>(
        &'a self,
        signature: &'a SignatureBytes,
        timestamp: i64,
    ) -> Pending<'a, Result<bool, ReplayUnavailable>>;

    /// Gives a reserved signature back, when the request was refused by a later check.
    fn release<'a>(&'a self, signature: &'a SignatureBytes) -> Pending<'a, ()>;

    /// Drops what has left the window (called every second by the background task).
    fn sweep(&self, _now_unix: i64) {}

    fn health(&self) -> SharedHealth {
        SharedHealth::Local
    }
}

/// GCRA on the key's cell in this process: a lock-free compare-and-swap loop.
#[derive(Debug, Default)]
pub struct LocalRateLimiter {
    /// Divides every key's limit: a node's share when it stands in for a shared limiter.
    share_of: u32,
}

impl LocalRateLimiter {
    pub fn new() -> Self {
        Self { share_of: 1 }
    }

    /// A limiter that grants each key `limit / nodes` (at least 1) on this node.
    pub fn share(nodes: u32) -> Self {
        Self { share_of: nodes.max(1) }
    }

    pub fn take_now(&self, cell: &AtomicU64, quota: Quota, now_ns: u64) -> Budget {
        let quota = if self.share_of > 1 { Quota::per_second((quota.limit() / self.share_of).max(1)) } else { quota };
        let mut tat = cell.load(Ordering::Acquire);
        loop {
            let step = ratelimit::check(quota, tat, now_ns);
            if !step.allowed {
                return Budget::from_step(quota, &step);
            }
            match cell.compare_exchange_weak(tat, step.new_tat_ns, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Budget::from_step(quota, &step),
                Err(current) => tat = current,
            }
        }
    }
}

impl RateLimiter for LocalRateLimiter {
    fn take<'a>(&'a self, _key: &'a KeyId, cell: &'a AtomicU64, quota: Quota, now_ns: u64) -> Pending<'a, Budget> {
        Pending::ready(self.take_now(cell, quota, now_ns))
    }
}

const SHARDS: usize = 16;

/// In-process replay store. Without a shared store a restarted node cannot know what it
/// accepted before, so it refuses every signature timestamped before it started (they all
/// leave the window within one tolerance period).
#[derive(Debug)]
pub struct LocalReplayStore {
    /// Signatures timestamped before this Unix second are refused (`i64::MIN`: none are).
    refuse_before_unix: i64,
    tolerance_seconds: i64,
    /// Signature → the Unix second after which it may be forgotten.
    shards: [Mutex<HashMap<SignatureBytes, i64>>; SHARDS],
}

impl LocalReplayStore {
    /// The store of a node on its own, started at `started_at_unix`.
    pub fn new(started_at_unix: i64, tolerance_seconds: i64) -> Self {
        Self {
            refuse_before_unix: started_at_unix,
            tolerance_seconds,
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
        }
    }

    /// A stand-in for a shared store that is down (`replay_fallback = "local"`): it remembers
    /// from now on, without refusing what came before (the shared store saw that).
    pub fn fallback(tolerance_seconds: i64) -> Self {
        Self::new(i64::MIN, tolerance_seconds)
    }

    fn shard(&self, signature: &SignatureBytes) -> &Mutex<HashMap<SignatureBytes, i64>> {
        &self.shards[usize::from(signature[0]) % SHARDS]
    }

    pub fn reserve_now(&self, signature: &SignatureBytes, timestamp: i64) -> bool {
        if timestamp < self.refuse_before_unix {
            return false;
        }
        let mut shard = self.shard(signature).lock();
        if shard.contains_key(signature) {
            return false;
        }
        shard.insert(*signature, timestamp.saturating_add(self.tolerance_seconds));
        true
    }

    /// Whether the signature is remembered here (consumed and still in the window).
    pub fn contains_now(&self, signature: &SignatureBytes) -> bool {
        self.shard(signature).lock().contains_key(signature)
    }

    pub fn release_now(&self, signature: &SignatureBytes) {
        self.shard(signature).lock().remove(signature);
    }

    pub fn sweep_now(&self, now_unix: i64) {
        for shard in &self.shards {
            shard.lock().retain(|_, forget_after| *forget_after >= now_unix);
        }
    }
}

impl ReplayStore for LocalReplayStore {
    fn reserve<'a>(
        &'a self,
        signature: &'a SignatureBytes,
        timestamp: i64,
    ) -> Pending<'a, Result<bool, ReplayUnavailable>> {
        Pending::ready(Ok(self.reserve_now(signature, timestamp)))
    }

    fn release<'a>(&'a self, signature: &'a SignatureBytes) -> Pending<'a, ()> {
        self.release_now(signature);
        Pending::ready(())
    }

    fn sweep(&self, now_unix: i64) {
        self.sweep_now(now_unix);
    }
}

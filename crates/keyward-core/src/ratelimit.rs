//! GCRA (generic cell rate algorithm) arithmetic: one `u64` of state per key.
//!
//! Hand-rolled rather than `governor` because every key has its own quota, changed at run time,
//! and its state must live in one atomic word that the runtime can compare-and-swap (and later
//! mirror in Redis). The maths is a few lines; the tests pin it.

/// Nanoseconds in one second: the burst window. An idle key with limit `n` accepts `n` at once.
const WINDOW_NS: u64 = 1_000_000_000;

/// A key's limit in requests per second, held to 1–1000 (the interval must stay above zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    per_second: u32,
}

impl Quota {
    pub fn per_second(limit: u32) -> Self {
        Self { per_second: limit.clamp(1, 1000) }
    }

    pub fn limit(self) -> u32 {
        self.per_second
    }

    fn emission_interval_ns(self) -> u64 {
        WINDOW_NS / u64::from(self.per_second)
    }
}

/// The outcome of one request against the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub allowed: bool,
    /// Theoretical arrival time to store (unchanged when refused).
    pub new_tat_ns: u64,
    /// Requests still accepted right now.
    pub remaining: u32,
    /// Milliseconds until the bucket is full again.
    pub reset_ms: u64,
    /// When refused: milliseconds until one request is accepted.
    pub retry_after_ms: u64,
}

/// One GCRA step. `tat_ns` is the stored theoretical arrival time (0 for a new key), `now_ns` any
/// monotonic nanosecond clock shared by all callers.
pub fn check(quota: Quota, tat_ns: u64, now_ns: u64) -> Outcome {
    let interval = quota.emission_interval_ns();
    let tat = tat_ns.max(now_ns);
    let new_tat = tat + interval;
    let allow_at = new_tat.saturating_sub(WINDOW_NS);
    if allow_at > now_ns {
        let used = tat - now_ns;
        return Outcome {
            allowed: false,
            new_tat_ns: tat_ns,
            remaining: 0,
            reset_ms: used.div_ceil(1_000_000),
            retry_after_ms: (allow_at - now_ns).div_ceil(1_000_000),
        };
    }
    let used = new_tat - now_ns;
    let remaining = (WINDOW_NS - used) / interval;
    Outcome {
        allowed: true,
        new_tat_ns: new_tat,
        remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
        reset_ms: used.div_ceil(1_000_000),
        retry_after_ms: 0,
    }
}

/// Time-shared work (the store reads of cache misses) scheduled like GCRA cells whose cost is a
/// duration: work may use `percent` % of one thread's wall time, and run up to `burst_ns` of
/// charges ahead. Each caller is given its own start instant, so waiters do not wake together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkShare {
    /// 1–100.
    pub percent: u64,
    pub burst_ns: u64,
}

/// When one piece of work may start, and the theoretical arrival time to store for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkSlot {
    pub start_ns: u64,
    pub new_tat_ns: u64,
}

impl WorkShare {
    /// Schedules work expected to take `cost_ns`; `None` when it could not start within
    /// `horizon_ns` of `now_ns` (nothing is reserved then, so a flood that gives up waiting
    /// does not push later work further away).
    pub fn schedule(self, tat_ns: u64, now_ns: u64, cost_ns: u64, horizon_ns: u64) -> Option<WorkSlot> {
        let tat = tat_ns.max(now_ns);
        let start = tat.saturating_sub(self.burst_ns).max(now_ns);
        if start - now_ns > horizon_ns {
            return None;
        }
        Some(WorkSlot { start_ns: start, new_tat_ns: tat + self.charge(cost_ns) })
    }

    /// What work of `cost_ns` takes from the share.
    pub fn charge(self, cost_ns: u64) -> u64 {
        cost_ns.saturating_mul(100) / self.percent.clamp(1, 100)
    }
}

#[cfg(test)]
mod tests;

//! The time cache misses may spend reading the store for keys that do not exist.
//!
//! A cached verification costs a few microseconds; a miss costs a database read several times
//! that. A flood of made-up keys (each one a miss) would otherwise take the cores from every
//! cached key: a share of time for reads that find nothing keeps them. Past the share a miss
//! waits for its turn (its caller's connection waits too, which is what slows a flood down); one
//! whose turn is beyond the store-read bound waits out the bound and answers unavailable, as if
//! the store were slow, rather than at once, which would let a flood's callers come straight back.
//!
//! A read that finds its key is given its charge back: a cold start, a rotation or a slow remote
//! database loading real keys never spends the share, only unknown keys do. (A read's cost is its
//! wall time, so a slow database also slows how many unknown keys an idle node reads a second.)
//!
//! The scheduling maths is `keyward_core::ratelimit::WorkShare`: `governor` counts cells,
//! and here each read's cost is its measured duration, known only once it is done.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use keyward_core::ratelimit::WorkShare;
use tokio::time::Instant;

/// Charges ahead that run at once: after a restart, a burst of cold keys does not queue.
const BURST: Duration = Duration::from_millis(100);

/// What a miss is expected to cost before any was measured.
const FIRST_GUESS: Duration = Duration::from_micros(30);

/// [`MissBudget::unknown_share`]'s whole: every recent read found nothing.
const ALL_UNKNOWN: u64 = 1024;

#[derive(Debug)]
pub(crate) struct MissBudget {
    share: WorkShare,
    origin: Instant,
    /// Theoretical arrival time of the share's next work, nanoseconds since `origin`.
    tat_ns: AtomicU64,
    /// A moving average of a miss's cost, charged when it is admitted and corrected after.
    expected_ns: AtomicU64,
    /// A moving average of how many reads find nothing, out of [`ALL_UNKNOWN`]: a miss is charged
    /// ahead only that part of its expected cost, so real keys loading (a cold start: all found,
    /// all refunded) do not wait on charges that will be given back.
    unknown_share: AtomicU64,
    waited: metrics::Counter,
    refused: metrics::Counter,
}

/// An admitted miss: dropping it charges what the work really took, unless it [found](Turn::found)
/// its key.
#[derive(Debug)]
pub(crate) struct Turn<'b> {
    budget: &'b MissBudget,
    charged_ns: u64,
    started: Instant,
    found: bool,
}

impl MissBudget {
    /// `percent` of one thread's time, 1–100.
    pub(crate) fn new(percent: u8) -> Self {
        Self {
            share: WorkShare { percent: u64::from(percent), burst_ns: nanos(BURST) },
            origin: Instant::now(),
            tat_ns: AtomicU64::new(0),
            expected_ns: AtomicU64::new(nanos(FIRST_GUESS)),
            unknown_share: AtomicU64::new(ALL_UNKNOWN),
            waited: metrics::counter!("keyward_miss_reads_waited_total"),
            refused: metrics::counter!("keyward_miss_reads_refused_total"),
        }
    }

    /// Waits for this miss's turn; `None` (after waiting `horizon`) when the turn is further.
    pub(crate) async fn admit(&self, horizon: Duration) -> Option<Turn<'_>> {
        let expected = self.expected_ns.load(Ordering::Relaxed);
        let cost = expected.saturating_mul(self.unknown_share.load(Ordering::Relaxed)) / ALL_UNKNOWN;
        let now = self.now_ns();
        let mut tat = self.tat_ns.load(Ordering::Acquire);
        let slot = loop {
            let Some(slot) = self.share.schedule(tat, now, cost, nanos(horizon)) else {
                self.refused.increment(1);
                tokio::time::sleep(horizon).await;
                return None;
            };
            match self.tat_ns.compare_exchange_weak(tat, slot.new_tat_ns, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break slot,
                Err(seen) => tat = seen,
            }
        };
        if slot.start_ns > now {
            self.waited.increment(1);
            tokio::time::sleep_until(self.origin + Duration::from_nanos(slot.start_ns)).await;
        }
        Some(Turn { budget: self, charged_ns: cost, started: Instant::now(), found: false })
    }

    fn now_ns(&self) -> u64 {
        nanos(self.origin.elapsed())
    }
}

impl Turn<'_> {
    /// The read found a key: its charge is given back when the turn ends.
    pub(crate) fn found(&mut self) {
        self.found = true;
    }

    fn refund(&self, ns: u64) {
        let refund = self.budget.share.charge(ns);
        let _ = self
            .budget
            .tat_ns
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| Some(tat.saturating_sub(refund)));
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let budget = self.budget;
        let actual = nanos(self.started.elapsed());
        if self.found {
            self.refund(self.charged_ns);
        } else {
            let (more, less) = (actual.saturating_sub(self.charged_ns), self.charged_ns.saturating_sub(actual));
            if more > 0 {
                budget.tat_ns.fetch_add(budget.share.charge(more), Ordering::AcqRel);
            } else if less > 0 {
                self.refund(less);
            }
        }
        // Every read teaches what a read costs, found or not: a flood's first misses are admitted
        // on this guess. Racing updates may lose a sample; the averages only need to be about right.
        let expected = budget.expected_ns.load(Ordering::Relaxed);
        budget.expected_ns.store(expected - expected / 8 + actual / 8, Ordering::Relaxed);
        let unknown = budget.unknown_share.load(Ordering::Relaxed);
        let this = if self.found { 0 } else { ALL_UNKNOWN };
        budget.unknown_share.store(unknown - unknown / 8 + this / 8, Ordering::Relaxed);
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn misses_past_the_share_wait_their_turn_and_past_the_horizon_give_up() {
        let budget = MissBudget::new(10);
        let horizon = Duration::from_millis(500);
        // Each miss "takes" 1 ms of paused time: 10 ms of share each, so the 100 ms burst lets
        // about ten go at once; the next ones wait about 10 ms each.
        let started = Instant::now();
        let mut starts = Vec::new();
        for _ in 0..16 {
            let turn = budget.admit(horizon).await.expect("within the horizon");
            starts.push(started.elapsed());
            tokio::time::advance(Duration::from_millis(1)).await;
            drop(turn);
        }
        assert_eq!(starts[0], Duration::ZERO);
        let waited = starts.windows(2).filter(|w| w[1].saturating_sub(w[0]) > Duration::from_millis(2)).count();
        assert!((3..=5).contains(&waited), "the last few waited for their turn: {starts:?}");
        // A backlog beyond the horizon: the miss waits the horizon out and is refused.
        budget.tat_ns.fetch_add(nanos(Duration::from_secs(5)), Ordering::AcqRel);
        let before = Instant::now();
        assert!(budget.admit(horizon).await.is_none());
        assert_eq!(before.elapsed(), horizon);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_budget_is_whole_again() {
        let budget = MissBudget::new(10);
        for _ in 0..50 {
            let turn = budget.admit(Duration::from_secs(10)).await;
            tokio::time::advance(Duration::from_millis(1)).await;
            drop(turn);
        }
        tokio::time::advance(Duration::from_secs(10)).await;
        let before = Instant::now();
        assert!(budget.admit(Duration::ZERO).await.is_some(), "no backlog after an idle spell");
        assert_eq!(before.elapsed(), Duration::ZERO);
    }
}

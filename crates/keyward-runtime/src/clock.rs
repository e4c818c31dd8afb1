//! The one place keyward reads the wall clock; everything else takes a [`Clock`].

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};

use time::OffsetDateTime;

pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> OffsetDateTime;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods, reason = "the clock module is where the wall clock is read")]
    fn now(&self) -> OffsetDateTime {
        keyward_core::record::to_micros(OffsetDateTime::now_utc())
    }
}

/// A clock tests move by hand, so expiry, windows and rate limits are exact.
#[derive(Debug)]
pub struct ManualClock {
    unix_nanos: AtomicI64,
}

impl ManualClock {
    pub fn new(start: OffsetDateTime) -> Self {
        Self { unix_nanos: AtomicI64::new(to_nanos(start)) }
    }

    pub fn set(&self, at: OffsetDateTime) {
        self.unix_nanos.store(to_nanos(at), Ordering::SeqCst);
    }

    pub fn advance(&self, by: time::Duration) {
        self.unix_nanos.fetch_add(i64::try_from(by.whole_nanoseconds()).unwrap_or(i64::MAX), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.unix_nanos.load(Ordering::SeqCst)))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

fn to_nanos(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

/// Nanoseconds since the Unix epoch as `u64`, the rate limiter's time axis.
pub fn unix_nanos(at: OffsetDateTime) -> u64 {
    u64::try_from(at.unix_timestamp_nanos()).unwrap_or(0)
}

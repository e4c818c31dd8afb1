//! Login throttling: failures are counted per email and per client IP in a sliding window; past
//! the limit, logins answer 429 `TOO_MANY_ATTEMPTS` with `Retry-After` until the window passes.

use std::collections::HashMap;

use parking_lot::Mutex;
use time::{Duration, OffsetDateTime};

const WINDOW: Duration = Duration::minutes(15);
const PER_EMAIL: usize = 5;
const PER_IP: usize = 20;
/// Bounds memory under a spray of made-up emails: the oldest records go first.
const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<String, Vec<OffsetDateTime>>>,
}

impl LoginThrottle {
    /// `Some(seconds to wait)` when the email or the IP is over its limit.
    pub fn retry_after(&self, email: &str, ip: Option<&str>, now: OffsetDateTime) -> Option<u64> {
        let mut failures = self.failures.lock();
        let mut wait = None;
        for (key, limit) in keys(email, ip) {
            if let Some(times) = failures.get_mut(&key) {
                times.retain(|at| *at + WINDOW > now);
                if times.len() >= limit {
                    let oldest = times.first().copied().unwrap_or(now);
                    let seconds = u64::try_from((oldest + WINDOW - now).whole_seconds().max(1)).unwrap_or(1);
                    wait = Some(wait.map_or(seconds, |w: u64| w.max(seconds)));
                }
            }
        }
        wait
    }

    pub fn record_failure(&self, email: &str, ip: Option<&str>, now: OffsetDateTime) {
        let mut failures = self.failures.lock();
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, times| times.last().is_some_and(|at| *at + WINDOW > now));
            if failures.len() >= MAX_TRACKED {
                failures.clear();
            }
        }
        for (key, _) in keys(email, ip) {
            failures.entry(key).or_default().push(now);
        }
    }

    /// A successful login clears the email's failures (not the IP's).
    pub fn record_success(&self, email: &str) {
        self.failures.lock().remove(&format!("email:{email}"));
    }
}

fn keys(email: &str, ip: Option<&str>) -> impl Iterator<Item = (String, usize)> {
    std::iter::once((format!("email:{email}"), PER_EMAIL)).chain(ip.map(|ip| (format!("ip:{ip}"), PER_IP)))
}

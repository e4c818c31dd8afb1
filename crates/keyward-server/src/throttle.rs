//! Login throttling: attempts are counted per email and per client IP in a sliding window (a
//! successful one is taken back); past the limit, logins answer 429 `TOO_MANY_ATTEMPTS` with
//! `Retry-After` until the window passes.

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
    /// Counts one attempt for the email and the IP before the password is checked, so that
    /// concurrent guesses cannot all slip in before the first failure is recorded. `Err(seconds)`
    /// when either is over its limit (the attempt is then not counted).
    pub fn begin(&self, email: &str, ip: Option<&str>, now: OffsetDateTime) -> Result<(), u64> {
        let mut failures = self.failures.lock();
        let mut wait: Option<u64> = None;
        for (key, limit) in keys(email, ip) {
            if let Some(times) = failures.get_mut(&key) {
                times.retain(|at| *at + WINDOW > now);
                if times.len() >= limit {
                    let oldest = times.first().copied().unwrap_or(now);
                    let seconds = u64::try_from((oldest + WINDOW - now).whole_seconds().max(1)).unwrap_or(1);
                    wait = Some(wait.map_or(seconds, |w| w.max(seconds)));
                }
            }
        }
        if let Some(seconds) = wait {
            return Err(seconds);
        }
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, times| times.last().is_some_and(|at| *at + WINDOW > now));
            if failures.len() >= MAX_TRACKED {
                failures.clear();
            }
        }
        for (key, _) in keys(email, ip) {
            failures.entry(key).or_default().push(now);
        }
        Ok(())
    }

    /// A successful login: the email's failures are forgiven, and this attempt no longer
    /// counts against the IP.
    pub fn succeeded(&self, email: &str, ip: Option<&str>, started: OffsetDateTime) {
        let mut failures = self.failures.lock();
        failures.remove(&format!("email:{email}"));
        if let Some(times) = ip.and_then(|ip| failures.get_mut(&format!("ip:{ip}"))) {
            if let Some(position) = times.iter().rposition(|at| *at == started) {
                times.remove(position);
            }
        }
    }
}

fn keys(email: &str, ip: Option<&str>) -> impl Iterator<Item = (String, usize)> {
    std::iter::once((format!("email:{email}"), PER_EMAIL)).chain(ip.map(|ip| (format!("ip:{ip}"), PER_IP)))
}

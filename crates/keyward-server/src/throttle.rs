//! Login throttling: attempts are counted in a sliding window per (email, client IP), per client
//! IP, and per email at a much higher count (a successful one is taken back); past a limit, logins
//! answer 429 `TOO_MANY_ATTEMPTS` with `Retry-After` until the window passes. A guesser at one
//! address stops after 5 tries at an account without locking its owner out elsewhere; a guesser
//! spread over many addresses stops after 100 (NIST SP 800-63B §5.2.2 allows up to 100).

use std::collections::{HashMap, VecDeque};

use parking_lot::Mutex;
use time::{Duration, OffsetDateTime};

const WINDOW: Duration = Duration::minutes(15);
const PER_EMAIL_AND_IP: usize = 5;
const PER_IP: usize = 20;
const PER_EMAIL: usize = 100;
/// Bounds memory under a spray of made-up emails: the oldest records go first.
const MAX_TRACKED: usize = 100_000;

/// Wrong-password failures remembered to time unknown-email failures by.
const TIMING_SAMPLES: usize = 31;
/// An unknown-email failure is never held longer than this, whatever the samples say.
const MAX_PAD: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Debug, Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<String, Vec<OffsetDateTime>>>,
    /// How long recent wrong-password failures took to answer (hash check and audit event).
    wrong_password_times: Mutex<VecDeque<std::time::Duration>>,
}

impl LoginThrottle {
    /// Counts one attempt for the email, the IP and the pair before the password is checked, so
    /// that concurrent guesses cannot all slip in before the first failure is recorded.
    /// `Err(seconds)` when any is over its limit (the attempt is then not counted).
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
            make_room(&mut failures, now);
        }
        for (key, _) in keys(email, ip) {
            failures.entry(key).or_default().push(now);
        }
        Ok(())
    }

    /// Makes a failed login take as long whether or not the email exists. Both check a password
    /// hash, but a wrong password on a real account also writes its audit event, which an unknown
    /// email has no org to write to. So every failure, of either kind, answers no sooner than the
    /// 90th percentile of recent wrong-password failures (measured from `started`, before the
    /// member look-up): nearly all answers of both kinds then take that same time.
    pub async fn even_out_failure(&self, known_account: bool, started: std::time::Instant) {
        let elapsed = started.elapsed();
        let target = {
            let mut times = self.wrong_password_times.lock();
            if known_account {
                if times.len() == TIMING_SAMPLES {
                    times.pop_front();
                }
                times.push_back(elapsed);
            }
            let mut sorted: Vec<_> = times.iter().copied().collect();
            sorted.sort_unstable();
            sorted.get(sorted.len() * 9 / 10).copied()
        };
        if let Some(wait) = target.and_then(|target| target.checked_sub(elapsed)) {
            tokio::time::sleep(wait.min(MAX_PAD)).await;
        }
    }

    /// A successful login: the failures of this email from this IP are forgiven, and this attempt
    /// no longer counts against the IP nor the email.
    pub fn succeeded(&self, email: &str, ip: Option<&str>, started: OffsetDateTime) {
        let mut failures = self.failures.lock();
        let mut keys = keys(email, ip);
        if let Some((pair, _)) = keys.next() {
            failures.remove(&pair);
        }
        for (key, _) in keys {
            if let Some(times) = failures.get_mut(&key) {
                if let Some(position) = times.iter().rposition(|at| *at == started) {
                    times.remove(position);
                }
            }
        }
    }
}

/// Frees a tenth of the table: first what the window has passed, then the records with the
/// fewest failures (the oldest among equals). A spray of made-up emails makes records of one
/// failure each, so it evicts only its own kind: to push out a counter at k failures, an
/// attacker would have to fill the whole table with records above k.
fn make_room(failures: &mut HashMap<String, Vec<OffsetDateTime>>, now: OffsetDateTime) {
    failures.retain(|_, times| {
        times.retain(|at| *at + WINDOW > now);
        !times.is_empty()
    });
    let target = MAX_TRACKED - MAX_TRACKED / 10;
    if failures.len() <= target {
        return;
    }
    let mut weights: Vec<(usize, OffsetDateTime)> =
        failures.values().map(|times| (times.len(), times.last().copied().unwrap_or(now))).collect();
    let excess = failures.len() - target;
    let (_, threshold, _) = weights.select_nth_unstable(excess - 1);
    let threshold = *threshold;
    let mut evicted = 0;
    failures.retain(|_, times| {
        let weight = (times.len(), times.last().copied().unwrap_or(now));
        if evicted < excess && weight <= threshold {
            evicted += 1;
            false
        } else {
            true
        }
    });
}

/// The pair first, then the IP (when known) and the email.
fn keys(email: &str, ip: Option<&str>) -> impl Iterator<Item = (String, usize)> {
    let pair = (format!("pair:{}|{email}", ip.unwrap_or("-")), PER_EMAIL_AND_IP);
    let per_ip = ip.map(|ip| (format!("ip:{ip}"), PER_IP));
    std::iter::once(pair).chain(per_ip).chain(std::iter::once((format!("email:{email}"), PER_EMAIL)))
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2030-01-01 00:00:00 UTC);

    #[test]
    fn five_failures_from_one_address_do_not_throttle_the_account_elsewhere() {
        let throttle = LoginThrottle::default();
        for _ in 0..5 {
            throttle.begin("ann@example.com", Some("198.51.100.1"), NOW).unwrap();
        }
        assert_eq!(throttle.begin("ann@example.com", Some("198.51.100.1"), NOW), Err(900));
        assert_eq!(throttle.begin("ann@example.com", Some("203.0.113.9"), NOW), Ok(()));
    }

    #[test]
    fn the_account_is_throttled_after_one_hundred_failures_from_anywhere() {
        let throttle = LoginThrottle::default();
        for n in 0..100 {
            throttle.begin("ann@example.com", Some(&format!("10.0.{}.{}", n / 200, n % 200)), NOW).unwrap();
        }
        assert_eq!(throttle.begin("ann@example.com", Some("192.0.2.1"), NOW), Err(900));
        assert_eq!(throttle.begin("bob@example.com", Some("192.0.2.1"), NOW), Ok(()));
    }

    #[test]
    fn an_address_is_throttled_after_twenty_failures_on_any_accounts() {
        let throttle = LoginThrottle::default();
        for n in 0..20 {
            throttle.begin(&format!("spray{n}@example.com"), Some("198.51.100.1"), NOW).unwrap();
        }
        assert!(throttle.begin("ann@example.com", Some("198.51.100.1"), NOW).is_err());
    }

    #[test]
    fn a_flood_of_made_up_accounts_does_not_reset_the_counters_of_others() {
        let throttle = LoginThrottle::default();
        for _ in 0..5 {
            throttle.begin("ann@example.com", Some("198.51.100.1"), NOW).unwrap();
        }
        // Far more one-off attempts than the table holds, each from its own address.
        for n in 0..u32::try_from(MAX_TRACKED).unwrap() {
            let ip = format!("10.{}.{}.{}", n >> 16, (n >> 8) & 255, n & 255);
            let _ = throttle.begin(&format!("spray{n}@example.com"), Some(&ip), NOW + Duration::seconds(1));
        }
        assert!(throttle.failures.lock().len() <= MAX_TRACKED, "the table stays bounded");
        assert_eq!(throttle.begin("ann@example.com", Some("198.51.100.1"), NOW + Duration::seconds(2)), Err(898));
    }

    #[test]
    fn a_success_forgives_the_pair_and_takes_back_its_own_attempt() {
        let throttle = LoginThrottle::default();
        for n in 0..4 {
            throttle.begin("ann@example.com", Some("198.51.100.1"), NOW + Duration::seconds(n)).unwrap();
        }
        let started = NOW + Duration::seconds(10);
        throttle.begin("ann@example.com", Some("198.51.100.1"), started).unwrap();
        throttle.succeeded("ann@example.com", Some("198.51.100.1"), started);
        for n in 0..5 {
            throttle.begin("ann@example.com", Some("198.51.100.1"), started + Duration::seconds(n)).unwrap();
        }
        let failures = throttle.failures.lock();
        assert_eq!(failures["ip:198.51.100.1"].len(), 9, "4 failures before the success, 5 after");
        assert_eq!(failures["email:ann@example.com"].len(), 9);
    }
}

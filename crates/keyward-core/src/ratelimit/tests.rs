use proptest::prelude::*;

use super::*;

const MS: u64 = 1_000_000;
const SECOND: u64 = 1_000_000_000;
/// An arbitrary monotonic instant: the clock does not start at the Unix epoch.
const T0: u64 = 5 * SECOND;

/// Offers `offered` requests at the same instant `at_ns`.
struct Burst {
    at_ns: u64,
    offered: u32,
    accepted: u32,
    /// `retry_after_ms` of the first refusal, when one is expected.
    retry_after_ms: Option<u64>,
}

struct Case {
    rule: &'static str,
    limit: u32,
    bursts: Vec<Burst>,
}

fn burst(at_ns: u64, offered: u32, accepted: u32, retry_after_ms: Option<u64>) -> Burst {
    Burst { at_ns, offered, accepted, retry_after_ms }
}

fn check(case: &Case) {
    let quota = Quota::per_second(case.limit);
    let mut tat = 0;
    for (i, step) in case.bursts.iter().enumerate() {
        let outcomes: Vec<Outcome> = (0..step.offered)
            .map(|_| {
                let outcome = check_one(quota, &mut tat, step.at_ns);
                assert_eq!(outcome.allowed, outcome.retry_after_ms == 0, "{}: retry_after only on refusal", case.rule);
                outcome
            })
            .collect();
        let accepted = outcomes.iter().take_while(|o| o.allowed).count();
        assert!(
            outcomes[accepted..].iter().all(|o| !o.allowed),
            "{} (burst {i}): once refused at an instant, refused for the rest of it",
            case.rule
        );
        assert_eq!(u32::try_from(accepted).unwrap(), step.accepted, "{} (burst {i}): accepted", case.rule);
        let first_refusal = outcomes.get(accepted).map(|o| o.retry_after_ms);
        assert_eq!(first_refusal, step.retry_after_ms, "{} (burst {i}): retry_after_ms", case.rule);
    }
}

/// One request, carrying the stored state as the runtime does.
fn check_one(quota: Quota, tat: &mut u64, now_ns: u64) -> Outcome {
    let outcome = super::check(quota, *tat, now_ns);
    if outcome.allowed {
        *tat = outcome.new_tat_ns;
    } else {
        assert_eq!(outcome.new_tat_ns, *tat, "a refusal leaves the state unchanged");
    }
    outcome
}

#[test]
fn rate_limits_follow_the_spec_burst_rule() {
    let cases = [
        Case {
            rule: "an idle key with limit 80 accepts 80 at once, then refuses for 12.5 ms rounded up",
            limit: 80,
            bursts: vec![burst(T0, 81, 80, Some(13))],
        },
        Case {
            rule: "after one second the same key accepts 80 again",
            limit: 80,
            bursts: vec![burst(T0, 81, 80, Some(13)), burst(T0 + SECOND, 81, 80, Some(13))],
        },
        Case {
            rule: "half a second refills half the burst",
            limit: 80,
            bursts: vec![burst(T0, 80, 80, None), burst(T0 + 500 * MS, 41, 40, Some(13))],
        },
        Case {
            rule: "one emission interval refills one request",
            limit: 80,
            bursts: vec![burst(T0, 80, 80, None), burst(T0 + 12_500_000, 2, 1, Some(13))],
        },
        Case {
            rule: "just before one emission interval nothing is refilled",
            limit: 80,
            bursts: vec![burst(T0, 80, 80, None), burst(T0 + 12_499_999, 1, 0, Some(1))],
        },
        Case {
            rule: "an idle key is full even when the monotonic clock is at zero",
            limit: 80,
            bursts: vec![burst(0, 81, 80, Some(13))],
        },
        Case {
            rule: "a long idle key does not bank more than one second",
            limit: 80,
            bursts: vec![burst(T0, 1, 1, None), burst(T0 + 3600 * SECOND, 81, 80, Some(13))],
        },
        Case {
            rule: "limit 1 accepts one, then one a second later",
            limit: 1,
            bursts: vec![
                burst(T0, 2, 1, Some(1000)),
                burst(T0 + 999 * MS, 1, 0, Some(1)),
                burst(T0 + SECOND, 2, 1, Some(1000)),
            ],
        },
        Case {
            rule: "limit 1000 accepts 1000 at once, then one per millisecond",
            limit: 1000,
            bursts: vec![burst(T0, 1001, 1000, Some(1)), burst(T0 + MS, 2, 1, Some(1))],
        },
        Case {
            rule: "a limit that does not divide a second still accepts exactly the limit at once",
            limit: 7,
            bursts: vec![burst(T0, 8, 7, Some(143)), burst(T0 + SECOND, 8, 7, Some(143))],
        },
        Case { rule: "a zero quota is treated as one per second", limit: 0, bursts: vec![burst(T0, 2, 1, Some(1000))] },
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn remaining_counts_down_to_zero_and_reset_grows_to_one_second() {
    let quota = Quota::per_second(80);
    assert_eq!(quota.limit(), 80);
    let mut tat = 0;
    for expected_remaining in (0..80).rev() {
        let outcome = check_one(quota, &mut tat, T0);
        assert!(outcome.allowed);
        assert_eq!(outcome.remaining, expected_remaining);
    }
    let first = super::check(quota, 0, T0);
    assert_eq!(first.reset_ms, 13, "one request uses 12.5 ms of the bucket, rounded up");
    let refused = check_one(quota, &mut tat, T0);
    assert!(!refused.allowed);
    assert_eq!(refused.remaining, 0);
    assert_eq!(refused.reset_ms, 1000, "a drained bucket is full again in one second");
    assert_eq!(refused.retry_after_ms, 13);
}

#[test]
fn waiting_retry_after_is_enough_and_one_millisecond_less_is_not() {
    for limit in [1, 3, 7, 80, 333, 1000] {
        let quota = Quota::per_second(limit);
        let mut tat = 0;
        while check_one(quota, &mut tat, T0).allowed {}
        let retry = super::check(quota, tat, T0).retry_after_ms;
        assert!(retry > 0, "limit {limit}");
        assert!(super::check(quota, tat, T0 + retry * MS).allowed, "limit {limit}: after {retry} ms");
        assert!(!super::check(quota, tat, T0 + (retry - 1) * MS).allowed, "limit {limit}: after {} ms", retry - 1);
    }
}

/// Offers requests at `times` (non-decreasing) and returns the instants that were accepted.
fn accepted_times(limit: u32, times: impl IntoIterator<Item = u64>) -> Vec<u64> {
    let quota = Quota::per_second(limit);
    let mut tat = 0;
    times.into_iter().filter(|&now| check_one(quota, &mut tat, now).allowed).collect()
}

/// The most accepted requests in any closed one-second window.
fn busiest_second(accepted: &[u64]) -> usize {
    let mut end = 0;
    let mut busiest = 0;
    for (start, &from) in accepted.iter().enumerate() {
        while end < accepted.len() && accepted[end] <= from + SECOND {
            end += 1;
        }
        busiest = busiest.max(end - start);
    }
    busiest
}

fn offered_times() -> impl Strategy<Value = Vec<u64>> {
    // Gaps from zero (a burst) to 50 ms, starting anywhere.
    (0..10 * SECOND, prop::collection::vec(prop_oneof![Just(0u64), 0..50 * MS], 1..3000)).prop_map(|(start, gaps)| {
        gaps.iter()
            .scan(start, |now, gap| {
                *now += gap;
                Some(*now)
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn no_one_second_window_accepts_more_than_twice_the_limit(limit in 1u32..=1000, times in offered_times()) {
        let accepted = accepted_times(limit, times);
        let busiest = busiest_second(&accepted);
        prop_assert!(busiest <= 2 * usize::try_from(limit).unwrap(), "limit {}: {} in one second", limit, busiest);
    }

    #[test]
    fn a_long_steady_flood_is_held_to_the_limit_per_second(limit in 1u32..=1000) {
        // A request every 250 µs for 20 s: at least 4× any limit.
        let times = (0..80_000u64).map(|i| T0 + i * 250_000);
        let accepted = accepted_times(limit, times);
        let limit = u64::from(limit);
        // The first second's burst, then the limit per second.
        let total = u64::try_from(accepted.len()).unwrap();
        prop_assert!(total >= 21 * limit - 1 && total <= 21 * limit + 21, "limit {}: {} accepted in 20 s", limit, total);
        // The last ten seconds, once the burst is spent.
        let steady = u64::try_from(accepted.iter().filter(|&&t| t >= T0 + 10 * SECOND).count()).unwrap();
        prop_assert!(steady.abs_diff(10 * limit) <= 10 * limit / 100 + 2, "limit {}: {} accepted in 10 s", limit, steady);
    }
}

const SHARE: WorkShare = WorkShare { percent: 25, burst_ns: 10 * MS };

#[test]
fn work_within_the_burst_starts_at_once_then_each_waits_its_own_turn() {
    let (mut tat, cost) = (0, MS);
    // 10 ms of burst at 4 ms per 1 ms of work: three start now (0, 4, 8 ms of charges ahead).
    for _ in 0..3 {
        let slot = SHARE.schedule(tat, T0, cost, SECOND).unwrap();
        assert_eq!(slot.start_ns, T0);
        tat = slot.new_tat_ns;
    }
    let starts: Vec<u64> = (0..3)
        .map(|_| {
            let slot = SHARE.schedule(tat, T0, cost, SECOND).unwrap();
            tat = slot.new_tat_ns;
            slot.start_ns - T0
        })
        .collect();
    assert_eq!(starts, [2 * MS, 6 * MS, 10 * MS], "one 1 ms read per 4 ms once the burst is spent");
}

#[test]
fn work_past_the_horizon_is_refused_without_reserving() {
    let tat = T0 + 100 * MS;
    assert_eq!(SHARE.schedule(tat, T0, MS, 50 * MS), None);
    assert_eq!(SHARE.schedule(tat, T0, MS, 90 * MS).map(|s| s.start_ns), Some(T0 + 90 * MS));
    // Idle long enough, the share is whole again.
    assert_eq!(SHARE.schedule(tat, T0 + SECOND, MS, 0).map(|s| s.start_ns), Some(T0 + SECOND));
}

proptest! {
    #[test]
    fn scheduled_work_never_exceeds_its_share(costs in proptest::collection::vec(1u64..5 * MS, 1..200)) {
        let mut tat = 0;
        let mut last_start = T0;
        let mut charged = 0;
        for cost in costs {
            let slot = SHARE.schedule(tat, T0, cost, u64::MAX / 4).unwrap();
            prop_assert!(slot.start_ns >= last_start, "starts are in order");
            last_start = slot.start_ns;
            tat = slot.new_tat_ns;
            charged += cost;
            // Work started by `start` fits in (start - T0 + burst) / divisor, plus the one started.
            prop_assert!(SHARE.charge(charged - cost) <= slot.start_ns - T0 + SHARE.burst_ns);
        }
    }
}

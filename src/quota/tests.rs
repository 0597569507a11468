//! Quota behaviour on a virtual clock: limits in every sliding window, atomic reservation,
//! settle, calibration from headers and pause.

use super::*;
use proptest::prelude::*;
use std::time::Duration;
use tokio::time::Instant;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn config(rpm: u64, rburst: u64, tpm: u64, tburst: u64) -> QuotaConfig {
    QuotaConfig::default()
        .with_margin(Duration::ZERO)
        .with(
            Dimension::Requests,
            LimitSpec {
                per_minute: rpm,
                burst: Some(rburst),
            },
        )
        .with(
            Dimension::Tokens,
            LimitSpec {
                per_minute: tpm,
                burst: Some(tburst),
            },
        )
}

/// A quota whose key has answered once (past the probe schedule).
fn answered(config: QuotaConfig, now: Instant) -> Quota {
    let quota = Quota::new(config, now);
    quota.observe(None, &LimitSnapshot::default(), now);
    quota
}

/// Every window [g_i, g_j] of admitted requests holds at most burst + elapsed × rate units.
fn assert_within_limit(admitted: &[(Instant, u64)], per_minute: u64, burst: u64) {
    let mut sorted = admitted.to_vec();
    sorted.sort_by_key(|(t, _)| *t);
    let interval = 60e9 / per_minute as f64;
    for i in 0..sorted.len() {
        let mut sum = 0u64;
        for j in i..sorted.len() {
            sum += sorted[j].1;
            let elapsed = (sorted[j].0 - sorted[i].0).as_nanos() as f64;
            let allowed = burst as f64 + elapsed / interval;
            assert!(
                sum as f64 <= allowed + 1e-6,
                "window {i}..={j}: {sum} units admitted, only {allowed:.3} allowed"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn never_exceeds_any_dimension_in_any_window(
        rpm in 60u64..6000,
        rburst in 1u64..20,
        tpm in 10_000u64..200_000,
        arrivals in prop::collection::vec((0u64..2000, 1u64..3000), 1..120),
    ) {
        let start = Instant::now();
        let tburst = 5000;
        let quota = answered(config(rpm, rburst, tpm, tburst), start);
        let mut now = start;
        let mut requests = Vec::new();
        let mut tokens = Vec::new();
        for (gap_ms, cost) in arrivals {
            now += ms(gap_ms);
            let r = quota.reserve(Cost::request(cost), now).expect("fits");
            prop_assert!(r.go_at >= now);
            requests.push((r.go_at, 1));
            tokens.push((r.go_at, cost));
        }
        assert_within_limit(&requests, rpm, rburst.min(rpm));
        assert_within_limit(&tokens, tpm, tburst);
    }
}

#[test]
fn reservation_commits_all_dimensions_at_one_time() {
    let t0 = Instant::now();
    // requests: 1/s, burst 1; tokens: 10/s, burst 100.
    let quota = answered(config(60, 1, 600, 100), t0);
    let a = quota.reserve(Cost::request(100), t0).unwrap();
    assert_eq!(a.go_at, t0);
    // tokens bind: 50 more tokens fit only at 5 s, although a request slot is free at 1 s.
    let b = quota.reserve(Cost::request(50), t0).unwrap();
    assert_eq!(b.go_at, t0 + ms(5000));
    // the request slot was committed at 5 s too: a token-free request goes at 6 s, not 2 s.
    let c = quota.reserve(Cost::request(0), t0).unwrap();
    assert_eq!(c.go_at, t0 + ms(6000));
}

#[test]
fn cost_over_the_limit_never_fits() {
    let t0 = Instant::now();
    let quota = answered(config(60, 1, 1000, 1000), t0);
    let err = quota.reserve(Cost::request(1001), t0).unwrap_err();
    assert_eq!(
        err,
        QuotaError::NeverFits {
            dimension: Dimension::Tokens,
            cost: 1001,
            limit: 1000
        }
    );
    assert!(err.to_string().contains("1001 tokens"));
}

#[test]
fn settle_refunds_and_charges() {
    let t0 = Instant::now();
    let quota = answered(config(60_000, 1000, 6000, 1000), t0); // 100 tokens/s
    let r = quota.reserve(Cost::request(1000), t0).unwrap();
    // bucket now empty: 100 tokens wait 1 s.
    assert_eq!(
        quota.earliest(&Cost::request(100), t0).unwrap(),
        t0 + ms(1000)
    );
    // the request used only 400: 600 come back.
    quota.settle(&r, Cost::request(400), t0);
    assert_eq!(quota.earliest(&Cost::request(600), t0).unwrap(), t0);
    assert_eq!(
        quota.earliest(&Cost::request(700), t0).unwrap(),
        t0 + ms(1000)
    );
}

#[test]
fn settle_charges_what_was_underestimated() {
    let t0 = Instant::now();
    let quota = answered(config(60_000, 1000, 6000, 1000), t0); // 100 tokens/s
    let r = quota.reserve(Cost::request(400), t0).unwrap();
    assert_eq!(quota.earliest(&Cost::request(600), t0).unwrap(), t0);
    // the provider charged 900: 500 more, so 600 tokens now wait 5 s.
    quota.settle(&r, Cost::request(900), t0);
    assert_eq!(
        quota.earliest(&Cost::request(600), t0).unwrap(),
        t0 + ms(5000)
    );
}

#[test]
fn cancel_gives_everything_back() {
    let t0 = Instant::now();
    let quota = answered(config(60, 1, 6000, 1000), t0);
    let r = quota.reserve(Cost::request(10), t0).unwrap();
    assert_eq!(
        quota.earliest(&Cost::request(10), t0).unwrap(),
        t0 + ms(1000)
    );
    quota.cancel(&r, t0);
    assert_eq!(quota.earliest(&Cost::request(10), t0).unwrap(), t0);
}

fn reading(limit: u64, remaining: u64, reset: Duration) -> DimensionReading {
    DimensionReading {
        limit: Some(limit),
        remaining: Some(remaining),
        reset: Some(reset),
        reset_resolution: Some(Duration::from_millis(1)),
    }
}

#[test]
fn learns_limits_and_burst_from_headers() {
    let t0 = Instant::now();
    let quota = Quota::new(QuotaConfig::default().with_margin(Duration::ZERO), t0);
    assert!(!quota.is_known());
    let probe = quota.reserve(Cost::request(1), t0).unwrap();
    // 6000 rpm = 100/s; 9 left and 10 ms to full → a burst of 10.
    let snapshot = LimitSnapshot {
        requests: reading(6000, 9, ms(10)),
        tokens: reading(1_000_000, 999_000, ms(60)),
        ..Default::default()
    };
    quota.observe(Some(&probe), &snapshot, t0);
    assert!(quota.is_known());
    let limits = quota.limits();
    assert_eq!(limits[0], Some((6000, 10)));
    // 999,000 left and 60 ms (± 1 ms) to full at 16,667/s: at least 999,984.
    assert_eq!(limits[1], Some((1_000_000, 999_984)));
    // 9 may go at once, the 10th 10 ms later.
    for _ in 0..9 {
        assert_eq!(quota.reserve(Cost::request(1), t0).unwrap().go_at, t0);
    }
    assert_eq!(
        quota.reserve(Cost::request(1), t0).unwrap().go_at,
        t0 + ms(10)
    );
}

#[test]
fn burst_estimate_is_steady_although_remaining_is_floored() {
    // The provider's bucket holds 4 at 1200 rpm (20/s) and floors its level: the readings of
    // a bucket at levels 3.0, 2.24, 1.6, 0.6 and 0.0 say 4.0, 3.76, 3.6, 3.4 and 4.0 units.
    let t0 = Instant::now();
    let quota = answered(QuotaConfig::default(), t0);
    for (remaining, reset) in [(3, 50), (2, 88), (1, 120), (0, 170), (0, 200), (3, 51)] {
        let snapshot = LimitSnapshot {
            requests: reading(1200, remaining, ms(reset)),
            ..Default::default()
        };
        quota.observe(None, &snapshot, t0);
        assert_eq!(
            quota.limits()[0],
            Some((1200, 4)),
            "after {remaining}, {reset} ms"
        );
    }
    // A real change of capacity is followed: under 1 left and 100 ms (± 1 ms) to full at
    // 20/s is at most 3.
    let snapshot = LimitSnapshot {
        requests: reading(1200, 0, ms(100)),
        ..Default::default()
    };
    quota.observe(None, &snapshot, t0);
    assert_eq!(quota.limits()[0], Some((1200, 3)));
}

#[test]
fn first_reading_counts_the_probes_still_out() {
    let t0 = Instant::now();
    let quota = Quota::new(QuotaConfig::default().with_margin(Duration::ZERO), t0);
    let first = quota.reserve(Cost::request(10), t0).unwrap();
    // two more probes leave before the first answer arrives.
    quota.reserve(Cost::request(10), t0).unwrap();
    quota.reserve(Cost::request(10), t0).unwrap();
    // the first answer: 9 requests left after it (the other two probes are not in that).
    let snapshot = LimitSnapshot {
        requests: reading(600, 9, ms(100)),
        ..Default::default()
    };
    quota.observe(Some(&first), &snapshot, t0 + ms(100));
    let mut free_now = 0;
    while quota.reserve(Cost::request(1), t0 + ms(100)).unwrap().go_at == t0 + ms(100) {
        free_now += 1;
    }
    assert_eq!(free_now, 7);
}

#[test]
fn configured_limit_wins_when_lower() {
    let t0 = Instant::now();
    let quota = answered(config(60, 1, 600, 10), t0);
    let snapshot = LimitSnapshot {
        requests: reading(6000, 5999, ms(10)),
        ..Default::default()
    };
    quota.observe(None, &snapshot, t0);
    assert_eq!(quota.limits()[0], Some((60, 1)));
}

#[test]
fn provider_reporting_less_remaining_pushes_back_once() {
    let t0 = Instant::now();
    // 600 rpm = 10/s, burst 100.
    let quota = answered(config(600, 100, 1_000_000, 1_000_000), t0);
    let a = quota.reserve(Cost::request(1), t0).unwrap();
    let b = quota.reserve(Cost::request(1), t0).unwrap();
    // we think 99 and 98 were left; the provider says 59 and 58: 40 used by someone else.
    let said = |remaining| LimitSnapshot {
        requests: reading(600, remaining, ms(4000)),
        ..Default::default()
    };
    quota.observe(Some(&a), &said(59), t0);
    quota.observe(Some(&b), &said(58), t0);
    // the correction is applied once, not once per response: about 58 (minus slack) left.
    let mut free_now = 0;
    while quota.reserve(Cost::request(1), t0).unwrap().go_at == t0 {
        free_now += 1;
    }
    assert!((57..=61).contains(&free_now), "{free_now} free");
}

#[test]
fn provider_reporting_more_remaining_changes_nothing() {
    let t0 = Instant::now();
    let quota = answered(config(600, 10, 1_000_000, 1_000_000), t0);
    let a = quota.reserve(Cost::request(1), t0).unwrap();
    let snapshot = LimitSnapshot {
        requests: reading(600, 10, ms(0)),
        ..Default::default()
    };
    quota.observe(Some(&a), &snapshot, t0);
    let mut free_now = 0;
    while quota.reserve(Cost::request(1), t0).unwrap().go_at == t0 {
        free_now += 1;
    }
    assert_eq!(free_now, 9);
}

#[test]
fn provider_reporting_more_remaining_gives_back_what_it_did_not_charge() {
    // 1/s, burst 10: ten requests 100 ms apart leave our bucket at 0.9. Four of them failed
    // (503s) and the provider did not count them: after the last it says 4 are left.
    let t0 = Instant::now();
    let quota = answered(config(60, 10, 1_000_000, 1_000_000), t0);
    let sent: Vec<_> = (0..10)
        .map(|k| quota.reserve(Cost::request(1), t0 + ms(100 * k)).unwrap())
        .collect();
    let last = t0 + ms(900);
    assert_eq!(quota.available(last)[0], Some(0));
    let snapshot = LimitSnapshot {
        requests: reading(60, 4, ms(6000)),
        ..Default::default()
    };
    // Without a failure of ours to explain it, more left moves nothing.
    quota.observe(sent.last(), &snapshot, last);
    assert_eq!(quota.available(last)[0], Some(0));
    for failed in &sent[..4] {
        quota.maybe_uncounted(failed);
    }
    // Now the difference comes back, less the flooring's unit: from 0.9 to 3.0.
    quota.observe(sent.last(), &snapshot, last);
    assert_eq!(quota.available(last + ms(1))[0], Some(3));
    // Once: the same reading seen again moves nothing more.
    quota.observe(sent.last(), &snapshot, last + ms(1));
    assert_eq!(quota.available(last + ms(1))[0], Some(3));
    // Requests admitted after the reading stay charged.
    quota.reserve(Cost::request(1), last + ms(1)).unwrap();
    quota.observe(sent.last(), &snapshot, last + ms(1));
    assert_eq!(quota.available(last + ms(1))[0], Some(2));
}

#[test]
fn pause_holds_every_request_then_paces() {
    let t0 = Instant::now();
    let quota = answered(config(600, 10, 1_000_000, 1_000_000), t0); // 10/s
    let until = t0 + ms(1500);
    // The engine's order on a 429: the refused request's unit comes back, then the pause.
    let refused = quota.reserve(Cost::request(1), t0).unwrap();
    quota.cancel(&refused, t0);
    quota.pause(
        until,
        Some(Dimension::Requests),
        &Cost::request(1),
        &refused,
    );
    assert_eq!(quota.paused_until(t0), Some(until));
    // the retried request goes once the pause is over and the jitter margin (widened by the
    // refusal from 25 ms to one interval, 100 ms) has passed; the next ones at the sustained
    // rate.
    let go: Vec<_> = (0..3)
        .map(|_| quota.reserve(Cost::request(1), t0).unwrap().go_at - t0)
        .collect();
    assert_eq!(go, vec![ms(1600), ms(1700), ms(1800)]);
    assert_eq!(quota.paused_until(until), None);
}

#[test]
fn configured_limits_also_wait_for_the_probe_schedule() {
    let t0 = Instant::now();
    let quota = Quota::new(config(60_000, 1000, 1_000_000, 1_000_000), t0);
    let second = {
        quota.reserve(Cost::request(1), t0).unwrap();
        quota.reserve(Cost::request(1), t0).unwrap().go_at
    };
    assert_eq!(second, t0 + ms(50));
}

#[test]
fn unknown_limits_probe_on_a_doubling_schedule_then_admit_immediately() {
    let t0 = Instant::now();
    let quota = Quota::new(QuotaConfig::default(), t0);
    // k-th request at 50 ms × log2(k): 0, 50, 79.2, 100, ... ms.
    let go: Vec<Duration> = (0..4)
        .map(|_| quota.reserve(Cost::request(5000), t0).unwrap().go_at - t0)
        .collect();
    assert_eq!(go[0], ms(0));
    assert_eq!(go[1], ms(50));
    assert!(go[2] > ms(79) && go[2] < ms(80), "{:?}", go[2]);
    assert_eq!(go[3], ms(100));
    for _ in 4..256 {
        quota.reserve(Cost::request(1), t0).unwrap();
    }
    // At most 256 before the first answer.
    assert_eq!(
        quota.reserve(Cost::request(1), t0).unwrap_err(),
        QuotaError::Probing
    );
    // One got no answer at all: it no longer counts.
    quota.no_answer();
    let probe = quota.reserve(Cost::request(1), t0).unwrap();
    // The first answer carried no limit headers: nothing to learn, so requests go freely.
    quota.observe(Some(&probe), &LimitSnapshot::default(), t0);
    for _ in 0..1000 {
        assert_eq!(quota.reserve(Cost::request(5000), t0).unwrap().go_at, t0);
    }
}

#[test]
fn a_connection_that_opens_fast_shortens_the_probe_step_from_the_latest_probe_on() {
    let t0 = Instant::now();
    let quota = Quota::new(QuotaConfig::default(), t0);
    let go = |at: Instant| quota.reserve(Cost::request(1), at).unwrap().go_at - t0;
    assert_eq!(go(t0), ms(0));
    assert_eq!(go(t0), ms(50));
    // A loopback connection (0.3 ms): the step becomes the shortest, 25 ms. The probe booked
    // at 50 ms keeps its time; the next ones follow it at the new step (the k-th at
    // 25 ms × log2(k) after the schedule's moved start), not all at once to catch up.
    quota.connected_in(Duration::from_micros(300));
    assert_eq!(quota.probe_step(), Some(ms(25)));
    let third = go(t0 + ms(50));
    assert!(third > ms(64) && third < ms(65), "{third:?}"); // 50 + 25 × log2(3/2)
    assert_eq!(go(t0 + ms(50)), ms(75)); // 50 + 25 × log2(4/2)
    // A slower connection later changes nothing: the shortest is kept.
    quota.connected_in(ms(30));
    assert_eq!(quota.probe_step(), Some(ms(25)));
    // A connection slower than the default step leaves the default.
    let distant = Quota::new(QuotaConfig::default(), t0);
    distant.connected_in(ms(120));
    assert_eq!(distant.probe_step(), Some(ms(50)));
}

#[test]
fn a_refusal_widens_the_margin_shared_admissions_use() {
    let t0 = Instant::now();
    let quota = answered(config(600, 10, 1_000_000, 1_000_000), t0); // 10/s: 100 ms apart
    assert_eq!(quota.admission_margin(), 0);
    let refuse = |at: Instant| {
        let sent = quota.reserve(Cost::request(1), at).unwrap();
        quota.cancel(&sent, at);
        sent
    };
    let pause = |until: Instant, sent: &Reservation| {
        quota.pause(until, Some(Dimension::Requests), &Cost::request(1), sent);
    };
    let first = refuse(t0);
    let storm = refuse(t0);
    pause(t0 + ms(1000), &first);
    // One request interval, then doubled: the same room the local cell now leaves.
    assert_eq!(quota.admission_margin(), ms(100).as_nanos() as u64);
    // A request sent before the margin widened and refused after is the same event.
    pause(t0 + ms(1000), &storm);
    assert_eq!(quota.admission_margin(), ms(100).as_nanos() as u64);
    // One sent under the wider margin and refused all the same widens it again.
    let later = refuse(t0 + ms(1000));
    pause(t0 + ms(2000), &later);
    assert_eq!(quota.admission_margin(), ms(200).as_nanos() as u64);
}

#[test]
fn a_storm_of_refused_probes_widens_the_margin_once() {
    // Probes sent before the first refusal came back (it takes a round trip) are refused in a
    // row: one event, which widens the margin by one unit, not by one doubling per refusal (a
    // margin of 2^k units cost each retry k units of refill).
    let t0 = Instant::now();
    let quota = Quota::new(QuotaConfig::default(), t0);
    let probes: Vec<_> = (0..4)
        .map(|_| quota.reserve(Cost::request(1), t0).unwrap())
        .collect();
    let snapshot = LimitSnapshot {
        requests: reading(600, 0, ms(100)),
        ..Default::default()
    };
    for probe in &probes {
        quota.observe(None, &snapshot, t0 + ms(40));
        quota.cancel(probe, t0 + ms(40));
        quota.pause(
            t0 + ms(100),
            Some(Dimension::Requests),
            &Cost::request(1),
            probe,
        );
    }
    // 600 rpm: one unit is 100 ms.
    assert_eq!(quota.admission_margin(), ms(100).as_nanos() as u64);
}

//! The physical bound of a run: the makespan of a client that knows every limit and every
//! latency in advance.
//!
//! The attempts the provider admitted are replayed in their order through fresh buckets of the
//! same shape (the sustained rate less what a second client takes, lowered when the scenario
//! lowers it), each at the earliest moment the buckets hold it and not before the previous
//! attempt of the same request has ended; a server with slots starts each when a slot frees.
//! The bound is when the last successful attempt would end. A real client pays beside it the
//! time its first answer takes (until then no limit is known). Faults the provider did not
//! charge are left out, except against a provider that sends no rate-limit headers: no
//! client can learn there that they were free.
//!
//! It must not know the client: it replays what the simulated provider admitted.

use super::bucket::Bucket;
use super::provider::Admitted;
use super::scenario::{HeaderStyle, Limit, Scenario};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;
use tokio::time::Instant;

/// The ideal makespan for the attempts `admitted` (as [`super::SimStats::admitted`] lists
/// them) against `scenario`, measured from `start`.
pub fn ideal(scenario: &Scenario, admitted: &[Admitted], start: Instant) -> Duration {
    let share = scenario.second_client.map_or(0.0, |c| c.share);
    let scaled = |l: Limit, factor: f64| Limit {
        per_minute: ((l.per_minute as f64) * factor).round().max(1.0) as u64,
        capacity: l.capacity,
    };
    let mut dims: Vec<(usize, Bucket)> = Vec::new();
    if let Some(l) = scenario.requests {
        dims.push((
            0,
            Bucket::new(scaled(l, 1.0 - share).per_minute, l.capacity, start),
        ));
    }
    if let Some(l) = scenario.tokens {
        if scenario.headers == HeaderStyle::Anthropic {
            dims.push((2, Bucket::new(l.per_minute, l.capacity, start)));
            dims.push((3, Bucket::new(l.per_minute, l.capacity, start)));
        } else {
            dims.push((1, Bucket::new(l.per_minute, l.capacity, start)));
        }
    }
    let mut lowered = false;
    let mut slots: Option<BinaryHeap<Reverse<Instant>>> = scenario
        .slots
        .map(|n| (0..n).map(|_| Reverse(start)).collect());
    let mut ready: HashMap<&str, Instant> = HashMap::new();
    let mut refunds: Vec<(Instant, u64)> = Vec::new();
    let mut clock = start;
    let mut end = start;
    // Without rate-limit headers nothing tells a client that a fault went uncharged: it must
    // count it, so the bound does too.
    let counts_free_faults = scenario.headers == HeaderStyle::None;
    for attempt in admitted {
        if !attempt.charged && !counts_free_faults {
            continue;
        }
        let mut at = clock.max(
            ready
                .get(attempt.request.as_str())
                .copied()
                .unwrap_or(start),
        );
        loop {
            if let Some((when, factor)) = scenario.lower_limit
                && !lowered
                && at >= start + when
            {
                lowered = true;
                for (_, b) in dims.iter_mut() {
                    let lower = (b.per_minute() as f64 * factor).round() as u64;
                    b.lower_to(lower, start + when);
                }
            }
            // Output tokens given back by attempts that ended by now.
            refunds.retain(|(when, units)| {
                if *when <= at {
                    for (d, b) in dims.iter_mut() {
                        if *d == 3 {
                            b.give(*units, *when);
                        }
                    }
                    false
                } else {
                    true
                }
            });
            let wait = dims
                .iter_mut()
                .map(|(d, b)| b.wait_for(attempt.cost[*d], at))
                .max()
                .unwrap_or_default();
            if wait.is_zero() {
                break;
            }
            at += wait.max(Duration::from_micros(1));
        }
        for (d, b) in dims.iter_mut() {
            b.take(attempt.cost[*d], at);
        }
        // In arrival order: nobody overtakes an attempt the provider saw earlier.
        clock = at;
        let begins = match &mut slots {
            Some(free) => {
                let Reverse(slot) = free.pop().unwrap_or(Reverse(at));
                slot.max(at)
            }
            None => at,
        };
        let finished = begins + attempt.service;
        if let Some(free) = &mut slots {
            free.push(Reverse(finished));
        }
        if attempt.refund > 0 {
            refunds.push((finished, attempt.refund));
        }
        ready.insert(attempt.request.as_str(), finished);
        if attempt.succeeded {
            end = end.max(finished);
        }
    }
    end.saturating_duration_since(start)
}

//! The other direction of a pacing test: besides "never beyond the limit", "not much slower
//! than the limit allows". A run is held to [`FACTOR`] × its ideal makespan.
//!
//! The ideal is what a client that knows the limit gets: the bucket's burst at once, the rest
//! at the sustained rate, plus one answer's latency: `(N − burst) / rate + latency`, in the
//! unit that binds (requests, or tokens). A pacer at half the rate needs at least twice that
//! (load on the machine only slows it further), so any factor under 2 fails it: a quota
//! halved on purpose measured ×2.01–2.26 on every run below. A correct pacer measures
//! ×1.01–1.11 (its jitter margin, its first answer, loopback HTTP, a debug build), ×1.23 at
//! worst with three test binaries run at once on 2 cores. [`FACTOR`] = 1.6 leaves 0.4 × the
//! ideal — at least 0.45 s on the runs that use it — for a loaded machine, and still fails any
//! pacer slower than 1 / 1.6 = 62 % of the rate.
//!
//! Wall time, not virtual time: these runs cross real processes. The makespan of a `paceline
//! run` is read from its attempt log ([`attempt_span`]), so the process's start (the
//! tokenizer's tables, the store) and its close are not counted.

use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// How much slower than ideal a run may be. See the module documentation.
pub const FACTOR: f64 = 1.6;

/// The ideal makespan of `units` of work (requests or tokens) against a bucket holding `burst`
/// of them that refills at `per_second`, answered after `latency`.
pub fn ideal(units: f64, burst: f64, per_second: f64, latency: Duration) -> Duration {
    Duration::from_secs_f64((units - burst).max(0.0) / per_second) + latency
}

/// Time from the first to the last attempt event of the JSON attempt log at `path` (written
/// with `--log-file`; each event's `timestamp` is when its answer was handled).
pub fn attempt_span(path: &Path) -> Duration {
    let text = std::fs::read_to_string(path).expect("read the attempt log");
    let micros: Vec<i64> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["message"] == "attempt")
        .map(|event| {
            let stamp = event["timestamp"].as_str().expect("an event's timestamp");
            chrono::DateTime::parse_from_rfc3339(stamp)
                .expect("an RFC 3339 timestamp")
                .timestamp_micros()
        })
        .collect();
    assert!(
        micros.len() >= 2,
        "{} attempt events in the log",
        micros.len()
    );
    let (first, last) = (micros.iter().min(), micros.iter().max());
    let span = last.zip(first).map_or(0, |(l, f)| l - f);
    Duration::from_micros(u64::try_from(span).unwrap_or(0))
}

/// Assert that `makespan` is within [`FACTOR`] × `ideal`, and print the ratio.
pub fn assert_near_ideal(what: &str, makespan: Duration, ideal: Duration) {
    let ratio = makespan.as_secs_f64() / ideal.as_secs_f64().max(1e-9);
    eprintln!(
        "{what}: makespan {:.3}s, ideal {:.3}s (×{ratio:.2}, at most ×{FACTOR})",
        makespan.as_secs_f64(),
        ideal.as_secs_f64()
    );
    assert!(
        ratio <= FACTOR,
        "{what}: makespan {:.3}s is ×{ratio:.2} the ideal {:.3}s (at most ×{FACTOR}): the pacer \
         left the limit unused",
        makespan.as_secs_f64(),
        ideal.as_secs_f64()
    );
}

//! Where a server's latency starts to grow with what is in flight: the knee of a queue.
//!
//! A server with a fixed number of slots and a queue behind them answers a request sent with
//! `n` requests in flight after about `n / slots` service times once `n` passes its slots:
//! latency rises in step with what was in flight when each request was sent. A provider
//! whose latency only spreads (a heavy tail, long answers) shows no such order. [`knee`]
//! looks for that order in a round of answers — the rank correlation between what was in
//! flight at each send and the latency — and, when it is plain, reads the knee off the slope:
//! with nothing queued a request takes about `floor`, and each request in flight adds
//! `slope` (one service time shared by the slots), so the server works on `floor / slope` at
//! once. Latency, not latency per unit of work: a request's wait is the work of those ahead
//! of it, not its own.
//!
//! Pure arithmetic on the samples it is given; [`crate::engine::concurrency`] decides when
//! to ask and what to do with the answer.

/// One answer: what was in flight when its request was sent (itself included), and its
/// latency.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Requests in flight when it was sent, itself included.
    pub sent_with: f64,
    /// Seconds from sending to the answer.
    pub latency: f64,
}

/// Rank correlation above which latency is taken to follow what is in flight. With 16
/// samples and no relation at all, a correlation this high comes by chance about once in a
/// thousand rounds; the caller asks for two rounds in a row.
const PLAIN_ORDER: f64 = 0.8;

/// The least spread of what was in flight across a round for its order to mean anything.
const LEAST_SPREAD: f64 = 4.0;

/// Requests the server works on at once, when `samples` show a queue: latency rising with
/// what was in flight (rank correlation ≥ 0.8 over a spread of at least 4 requests) to over
/// twice `floor`, the least latency seen. `None` when they do not.
///
/// ```
/// use paceline::engine::knee::{knee, Sample};
/// // 4 slots, 0.2 s per request: the request sent with n in flight waits n / 4 turns.
/// let queued: Vec<Sample> = (1..=16)
///     .map(|n| Sample { sent_with: n as f64, latency: 0.2 * (n as f64 / 4.0).ceil() })
///     .collect();
/// let k = knee(&queued, 0.2).unwrap();
/// assert!((3.0..=6.0).contains(&k), "{k}");
/// // the same latencies in no order with what was in flight: no queue to read.
/// let spread: Vec<Sample> = queued
///     .iter()
///     .enumerate()
///     .map(|(i, s)| Sample { sent_with: ((i * 7) % 16 + 1) as f64, ..*s })
///     .collect();
/// assert_eq!(knee(&spread, 0.2), None);
/// ```
pub fn knee(samples: &[Sample], floor: f64) -> Option<f64> {
    let n = samples.len();
    if n < 3 || floor.is_nan() || floor <= 0.0 {
        return None;
    }
    let (least, most) = samples.iter().fold((f64::INFINITY, 0.0_f64), |(l, m), s| {
        (l.min(s.sent_with), m.max(s.sent_with))
    });
    if most - least < LEAST_SPREAD {
        return None;
    }
    let xs: Vec<f64> = samples.iter().map(|s| s.sent_with).collect();
    let ys: Vec<f64> = samples.iter().map(|s| s.latency).collect();
    if correlation(&ranks(&xs), &ranks(&ys)) < PLAIN_ORDER {
        return None;
    }
    let slope = slope(&xs, &ys)?;
    let highest = ys.iter().copied().fold(0.0, f64::max);
    (slope > 0.0 && highest > 2.0 * floor).then(|| floor / slope)
}

/// Each value's rank (1-based; ties share their mean rank).
fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = mean;
        }
        i = j + 1;
    }
    ranks
}

/// The sums of cross products and squares of `xs` and `ys` about their means.
fn moments(xs: &[f64], ys: &[f64]) -> (f64, f64, f64) {
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (mx, my) = (mean(xs), mean(ys));
    xs.iter()
        .zip(ys)
        .fold((0.0, 0.0, 0.0), |(sxy, sxx, syy), (x, y)| {
            let (dx, dy) = (x - mx, y - my);
            (sxy + dx * dy, sxx + dx * dx, syy + dy * dy)
        })
}

/// Pearson's correlation of `xs` and `ys` (0 when either does not vary).
fn correlation(xs: &[f64], ys: &[f64]) -> f64 {
    let (sxy, sxx, syy) = moments(xs, ys);
    let scale = (sxx * syy).sqrt();
    if scale > 0.0 { sxy / scale } else { 0.0 }
}

/// The least-squares slope of `ys` on `xs`.
fn slope(xs: &[f64], ys: &[f64]) -> Option<f64> {
    let (sxy, sxx, _) = moments(xs, ys);
    (sxx > 0.0).then(|| sxy / sxx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(sent_with: f64, latency: f64) -> Sample {
        Sample { sent_with, latency }
    }

    #[test]
    fn ties_share_their_mean_rank() {
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
    }

    #[test]
    fn one_slot_shows_its_knee_at_one() {
        // each request waits for every one sent before it.
        let samples: Vec<Sample> = (1..=16).map(|n| sample(n as f64, 0.1 * n as f64)).collect();
        let k = knee(&samples, 0.1).unwrap();
        assert!((k - 1.0).abs() < 1e-9, "{k}");
    }

    #[test]
    fn a_steady_in_flight_count_or_a_small_rise_says_nothing() {
        // all sent with 30 ± 1 in flight: the order is noise.
        let steady: Vec<Sample> = (0..16)
            .map(|i| sample(30.0 + (i % 3) as f64, 0.1 + 0.01 * i as f64))
            .collect();
        assert_eq!(knee(&steady, 0.1), None);
        // in order, but latency never doubles: requests do not wait.
        let mild: Vec<Sample> = (1..=16)
            .map(|n| sample(n as f64, 0.1 + 0.005 * n as f64))
            .collect();
        assert_eq!(knee(&mild, 0.1), None);
    }
}

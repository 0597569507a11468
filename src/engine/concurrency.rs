//! How many requests may be in flight at once, adapted so that nobody tunes a worker count.
//!
//! Three regimes:
//!
//! * **fixed** (`--concurrency N`): exactly N.
//! * **rate known** (a quota has limits): Little's law — in flight = rate × latency. The bound is
//!   `2 × target rate × smoothed latency + headroom + 2`, where the headroom is what the quotas'
//!   buckets could admit at once right now, so the quota, not the bound, paces requests — a
//!   bucket that holds a whole minute is spent at once, not at the sustained rate — and the
//!   bound only stops a pile-up when latency balloons. Timeouts and server errors halve a
//!   back-off factor on it; successes restore it slowly. When the limits are far above what
//!   the server can work on (a self-hosted server with configured limits, a mock sharing the
//!   CPU), the bound is capped at the server's knee ([`super::knee`]: latency rising in step
//!   with what was in flight at each send, two rounds in a row) — but only while the quotas
//!   have room and answers come at under half the rate they allow, so that a run the quota
//!   paces is never capped; latency's own spread shows no such order, so it caps nothing.
//! * **probing** (before the first answer): no bound of its own — the quota's probe schedule
//!   ([`crate::quota`]) spaces the first requests while their answers are awaited.
//! * **rate unknown** (the provider sent no limit headers, none configured): a window starting
//!   from what was in flight when the first answer came: slow start (+1 per success, doubling
//!   per round trip) until a queue is first seen, then a latency gradient: once per round the
//!   median latency per unit of work against the least seen holds the window at the knee
//!   where a server with fixed slots stops answering faster ([`Concurrency::record_work`]);
//!   any overload signal (429, 5xx, timeout) halves the window, at most once per round trip.
//!
//! It imports nothing of paceline beyond [`super::knee`] and must not know keys, quotas or
//! providers: the engine tells it the target rate and headroom, latencies and overload signals.

use super::knee::{Sample, knee};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The adaptive in-flight bound.
#[derive(Debug)]
pub struct Concurrency {
    state: Mutex<State>,
    notify: Notify,
}

#[derive(Debug)]
struct State {
    fixed: Option<usize>,
    /// No answer has arrived yet.
    probing: bool,
    max: usize,
    in_flight: usize,
    /// Requests per second the quotas allow, when known.
    target_rate: Option<f64>,
    /// Requests the quotas could admit at once right now (their buckets' level).
    headroom: f64,
    /// The provider counts what is left (so the quota holds requests back) though no rate is
    /// known yet: the bound stays out of the way, as while probing.
    metered: bool,
    /// Smoothed latency in seconds.
    latency: Option<f64>,
    /// Rate-known regime: multiplier in (0, 1] cut by overload.
    factor: f64,
    /// Rate-unknown regime: the AIMD window and its slow-start threshold.
    window: f64,
    threshold: f64,
    last_cut: Option<Instant>,
    /// Both adaptive regimes: the latency gradient (see [`Concurrency::record_work`]).
    gradient: Gradient,
    /// Rate-known regime: the cap the latency gradient put on the bound, once a queue at the
    /// server was seen while the quotas had room.
    cap: Option<f64>,
    /// When the bound was made: the in-flight requests' start times count from it.
    epoch: Instant,
    /// The sum of the in-flight requests' start times (seconds since `epoch`): their mean age.
    started_sum: f64,
}

/// Seconds per unit of work (an answer's output tokens plus [`WORK_OVERHEAD`]) of the answers
/// of the current round, and the least seen: a queue in front of the server shows as the
/// round's median rising above that least while throughput does not.
#[derive(Debug, Default)]
struct Gradient {
    samples: Vec<f64>,
    /// Rate-known regime: the same answers' latencies with what was in flight at each send.
    sends: Vec<Sample>,
    /// Answers in the current round (the window when it began, at least 4).
    round: usize,
    /// When the window was last cut: answers to requests sent before describe the old window.
    cut_at: Option<Instant>,
    /// When the current round's first answer came.
    began: Option<Instant>,
    /// Rate-known regime: the least latency seen (drifting up as the baseline does), and
    /// whether the last round already showed a queue.
    floor: Option<f64>,
    suspect: bool,
    baseline: Option<f64>,
}

/// Work an answer stands for beyond its output tokens (reading the prompt, the round trip),
/// in output tokens: an answer of 1 token is not 1/64 of the work of one of 64.
pub(super) const WORK_OVERHEAD: f64 = 8.0;

/// How much the least latency per unit of work seen may rise per round, so that a server that
/// became slower for good (longer prompts, a busier host) is not taken for a queue forever.
const BASELINE_DRIFT: f64 = 1.02;

/// The median latency per unit of work below this fraction of the least seen means requests
/// wait at the server (above it, the spread of the work's own latency).
const QUEUE_SEEN: f64 = 0.8;

/// How far above a round's quickest answer the cost of a request with nothing ahead of it may
/// lie: the spread of the work's own latency.
const QUICKEST_SLACK: f64 = 1.25;

/// Less than this much more latency per answer than the least seen is no queue: a server
/// answering in microseconds (or a loopback mock) varies by that much on its own.
const QUEUE_NOISE: f64 = 0.002;

/// Rate-known regime: less than this much more latency per answer is no queue worth a cap.
/// The cap is there to keep a server's queue from holding requests (and connections) for
/// seconds; a server answering in a millisecond, sharing the CPU with the client, works
/// faster with a few milliseconds' worth of requests waiting than with none.
const KNOWN_QUEUE_NOISE: f64 = 0.010;

/// Requests a window may keep queued at the server beyond what the gradient says fits.
const QUEUE_ALLOWANCE: f64 = 0.5;

/// Rate-known regime: answers per round.
const KNOWN_ROUND: usize = 16;

/// Rate-known regime: the gradient judges only while answers come at under this fraction of
/// the rate the quotas allow.
const SHORT_OF_TARGET: f64 = 0.5;

impl State {
    fn limit(&self) -> usize {
        if let Some(n) = self.fixed {
            return n.max(1);
        }
        if self.probing || (self.metered && self.target_rate.is_none()) {
            return self.max;
        }
        let limit = match (self.target_rate, self.latency) {
            (Some(_), _) => self.littles_law().min(self.cap.unwrap_or(f64::INFINITY)),
            (None, _) => self.window.floor(),
        };
        (limit as usize).clamp(1, self.max)
    }

    /// Rate-known regime: a round of answers, its latency gradient `ratio` (least / median)
    /// and the rate its answers came at, against the cap (see [`Concurrency::record_work`]).
    fn judge_known(&mut self, sends: &[Sample], ratio: f64, answer_rate: f64, now: Instant) {
        let quickest = sends
            .iter()
            .map(|s| s.latency)
            .fold(f64::INFINITY, f64::min);
        let floor = self
            .gradient
            .floor
            .map_or(quickest, |f| (f * BASELINE_DRIFT).min(quickest));
        self.gradient.floor = Some(floor);
        let target = self.target_rate.unwrap_or(f64::INFINITY);
        let held_back = self.headroom >= 1.0 && answer_rate < SHORT_OF_TARGET * target;
        match self.cap {
            // Until a queue is plain, the spread of what was in flight says whether there is one.
            None => match knee(sends, floor).filter(|_| held_back) {
                Some(knee) if self.gradient.suspect => {
                    self.cap = Some((knee + QUEUE_ALLOWANCE).max(1.0));
                    self.gradient.cut_at = Some(now);
                    self.gradient.suspect = false;
                }
                found => self.gradient.suspect = found.is_some(),
            },
            // Once capped, the cap follows the gradient as the rate-unknown window does.
            Some(cap) => {
                if ratio >= QUEUE_SEEN {
                    let max = self.max as f64;
                    self.cap = Some(cap + 1.0).filter(|cap| *cap < max);
                } else if held_back {
                    // At most halved at once: a stall of a few milliseconds (the host, the
                    // store) looks like a queue for a round, and the knee is already near.
                    let kept = ratio.max(0.5);
                    self.cap = Some((cap * kept + QUEUE_ALLOWANCE).max(1.0));
                    self.gradient.cut_at = Some(now);
                }
            }
        }
    }

    /// The rate-known regime's bound before the gradient's cap (callers check the rate). The
    /// latency is the smoothed one, or the mean age of what is in flight when that is longer:
    /// the first answers of a heavy-tailed latency are its quick ones, and the slow ones still
    /// out say nothing to the average until they come back.
    fn littles_law(&self) -> f64 {
        let rate = self.target_rate.unwrap_or(0.0);
        match self.latency {
            Some(latency) => {
                let latency = latency.max(self.mean_age());
                ((2.0 * rate * latency + self.headroom) * self.factor).ceil() + 2.0
            }
            None => (rate * self.factor).ceil().max(1.0),
        }
    }

    /// Seconds since `epoch`.
    fn clock(&self) -> f64 {
        Instant::now()
            .saturating_duration_since(self.epoch)
            .as_secs_f64()
    }

    /// The mean age of the requests in flight, in seconds.
    fn mean_age(&self) -> f64 {
        if self.in_flight == 0 {
            return 0.0;
        }
        (self.clock() - self.started_sum / self.in_flight as f64).max(0.0)
    }

    /// Take a slot: returns its start time.
    fn take(&mut self) -> f64 {
        let started = self.clock();
        self.in_flight += 1;
        self.started_sum += started;
        started
    }
}

/// What an attempt's outcome says about load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Answered (success or a final error): latency is meaningful.
    Answered,
    /// Rate limited (429): only the rate-unknown regime reacts; a known quota pauses instead.
    RateLimited,
    /// Timeout, connection failure or 5xx: the upstream is struggling.
    Overloaded,
}

/// An in-flight slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Permit {
    owner: Arc<Concurrency>,
    in_flight: usize,
    /// When it was taken (seconds since the bound's epoch).
    started: f64,
}

impl Permit {
    /// Requests in flight when this slot was taken, itself included.
    pub fn in_flight_at_start(&self) -> usize {
        self.in_flight
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut state = self.owner.lock();
        state.in_flight -= 1;
        state.started_sum = if state.in_flight == 0 {
            0.0
        } else {
            state.started_sum - self.started
        };
        drop(state);
        self.owner.notify.notify_one();
    }
}

impl Concurrency {
    /// A bound fixed at `fixed` when given, else adaptive up to `max`.
    pub fn new(fixed: Option<usize>, max: usize) -> Arc<Self> {
        Arc::new(Concurrency {
            state: Mutex::new(State {
                probing: fixed.is_none(),
                fixed,
                max: max.max(1),
                in_flight: 0,
                target_rate: None,
                headroom: 0.0,
                metered: false,
                latency: None,
                factor: 1.0,
                window: 1.0,
                threshold: f64::INFINITY,
                last_cut: None,
                gradient: Gradient::default(),
                cap: None,
                epoch: Instant::now(),
                started_sum: 0.0,
            }),
            notify: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Wait for a free slot.
    pub async fn acquire(self: &Arc<Self>) -> Permit {
        loop {
            let notified = self.notify.notified();
            {
                let mut state = self.lock();
                if state.in_flight < state.limit() {
                    let started = state.take();
                    return Permit {
                        owner: Arc::clone(self),
                        in_flight: state.in_flight,
                        started,
                    };
                }
            }
            notified.await;
        }
    }

    /// A free slot now, if there is one.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let mut state = self.lock();
        (state.in_flight < state.limit()).then(|| {
            let started = state.take();
            Permit {
                owner: Arc::clone(self),
                in_flight: state.in_flight,
                started,
            }
        })
    }

    /// The current bound.
    pub fn limit(&self) -> usize {
        self.lock().limit()
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    /// The first answer arrived: leave the probing regime, starting the window from what is
    /// in flight (all of it was admitted, or an overload signal will cut it) — or, when the
    /// answer shows a server with no limits to learn (`called_back`: the requests sent while
    /// probing are called back), from one, in slow start. Returns whether probing ended now.
    pub fn end_probe(&self, called_back: bool) -> bool {
        let mut state = self.lock();
        if !state.probing {
            return false;
        }
        state.probing = false;
        state.window = if called_back {
            1.0
        } else {
            state.window.max(state.in_flight as f64)
        };
        true
    }

    /// Whether no answer has arrived yet.
    pub fn probing(&self) -> bool {
        self.lock().probing
    }

    /// Tell the bound what rate the quotas allow (requests per second), once known, and how
    /// many requests they could admit at once right now: a bucket that holds more than the
    /// sustained rate's share (a provider whose bucket holds a whole minute) is spent as fast
    /// as the quota admits it, and the bound shrinks back as the bucket drains.
    pub fn set_target_rate(&self, rate: Option<f64>, headroom: f64) {
        self.set_target(rate, headroom, false);
    }

    /// [`Concurrency::set_target_rate`], saying too whether a provider's counts of what is left
    /// hold requests back in the quota while no rate is known (then the bound stays open).
    pub fn set_target(&self, rate: Option<f64>, headroom: f64, metered: bool) {
        let mut state = self.lock();
        state.metered = metered;
        state.target_rate = rate.filter(|r| r.is_finite() && *r > 0.0);
        state.headroom = if headroom.is_finite() {
            headroom.max(0.0)
        } else {
            0.0
        };
        drop(state);
        self.notify.notify_waiters();
    }

    /// Feed back an answer's latency with the work it took (its output tokens). A server with
    /// a fixed number of slots and a queue behind them (a self-hosted vLLM, llama.cpp, TGI or
    /// Ollama: no limit headers, no errors) answers more slowly as more requests wait, while
    /// its throughput stays the same. Once per round (as many answers as the window, at least
    /// 4), the median latency per unit of work is set against the least seen (the least of a
    /// round's median and 1.25 × its quickest answer; a gradient-style limit, as in Netflix's
    /// concurrency-limits): below 1.25 × the least, nothing waits and the window grows by one
    /// (slow start grows it per answer until the first queue is seen); above it, the window is
    /// scaled by `least / median` plus half a request, which holds it at the knee where
    /// throughput stops growing and latency starts to.
    ///
    /// With a rate known, rounds are 16 answers, and they cap the bound only while the quotas
    /// have room and the answers came at under half the quotas' rate (the server, not the
    /// quota, is what holds requests back). The cap begins at the knee [`super::knee`] reads
    /// off two rounds in a row of latency rising with what was in flight at each send;
    /// from there it follows the gradient above (the least is the least of the round's median
    /// and 1.25 × its quickest answer; a cut at most halves it; a queue worth less than 10 ms
    /// per answer is none). `sent_with` is what was in flight when the request was sent,
    /// itself included ([`Permit::in_flight_at_start`]).
    pub fn record_work(
        &self,
        latency: Duration,
        output_tokens: u64,
        sent_with: usize,
        now: Instant,
    ) {
        let mut state = self.lock();
        if state.fixed.is_some() || state.probing {
            return;
        }
        let known = state.target_rate.is_some();
        let per_work = latency.as_secs_f64() / (output_tokens as f64 + WORK_OVERHEAD);
        // Answers to requests sent before the last cut describe the queue the larger window
        // made, already acted on.
        let sent = now.checked_sub(latency).unwrap_or(now);
        if state.gradient.cut_at.is_some_and(|cut| sent < cut) {
            return;
        }
        if state.gradient.samples.is_empty() {
            // In slow start a round is short, so that the first queue is seen early.
            let slow_start = state.window < state.threshold;
            state.gradient.round = if known {
                KNOWN_ROUND
            } else if slow_start {
                4
            } else {
                (state.window.floor() as usize).max(4)
            };
            state.gradient.began = Some(now);
        }
        state.gradient.samples.push(per_work);
        if known {
            state.gradient.sends.push(Sample {
                sent_with: sent_with as f64,
                latency: latency.as_secs_f64(),
            });
        }
        if state.gradient.samples.len() < state.gradient.round {
            return;
        }
        let mut samples = std::mem::take(&mut state.gradient.samples);
        samples.sort_by(f64::total_cmp);
        let median = samples[samples.len() / 2];
        // What a request costs with nothing ahead of it: the round's median when nothing
        // waited, or a little above its quickest answer (which waited least) when some did.
        // With a rate known and no queue seen yet, the median alone: a heavy-tailed latency's
        // quickest answer is far below its median with nothing waiting at all.
        let quickest = samples[0] * QUICKEST_SLACK;
        let least = if known && state.cap.is_none() {
            median
        } else {
            median.min(quickest)
        };
        let baseline = state
            .gradient
            .baseline
            .map_or(least, |b| (b * BASELINE_DRIFT).min(least));
        state.gradient.baseline = Some(baseline);
        // A queue shows as time: below a millisecond per answer, a spread is noise.
        let seconds_more = (median - baseline) * (output_tokens as f64 + WORK_OVERHEAD);
        let noise = if known {
            KNOWN_QUEUE_NOISE
        } else {
            QUEUE_NOISE
        };
        let ratio = if seconds_more < noise {
            1.0
        } else {
            baseline / median.max(f64::MIN_POSITIVE)
        };
        if known {
            let answers = samples.len() as f64;
            let elapsed = state.gradient.began.map_or(0.0, |began| {
                now.saturating_duration_since(began).as_secs_f64()
            });
            let rate = answers / elapsed.max(f64::MIN_POSITIVE);
            let mut sends = std::mem::take(&mut state.gradient.sends);
            state.judge_known(&sends, ratio, rate, now);
            sends.clear();
            state.gradient.sends = sends;
        } else if ratio >= QUEUE_SEEN {
            if state.window >= state.threshold {
                state.window += 1.0;
            }
        } else {
            state.window = (state.window * ratio + QUEUE_ALLOWANCE).max(1.0);
            state.threshold = state.window;
            state.gradient.cut_at = Some(now);
        }
        state.window = state.window.min(state.max as f64);
        samples.clear();
        state.gradient.samples = samples;
        drop(state);
        self.notify.notify_waiters();
    }

    /// Feed back one attempt's outcome and latency.
    pub fn record(&self, signal: Signal, latency: Duration, now: Instant) {
        let mut state = self.lock();
        let seconds = latency.as_secs_f64();
        if signal == Signal::Answered {
            state.latency = Some(match state.latency {
                Some(l) => l * 0.9 + seconds * 0.1,
                None => seconds,
            });
        }
        let round_trip = Duration::from_secs_f64(state.latency.unwrap_or(seconds).max(0.001));
        let may_cut = state
            .last_cut
            .is_none_or(|at| now.saturating_duration_since(at) >= round_trip);
        match signal {
            Signal::Answered => {
                state.factor = (state.factor + 0.02).min(1.0);
                // Slow start; beyond it, the latency gradient's rounds grow the window.
                if state.window < state.threshold {
                    state.window += 1.0;
                }
                state.window = state.window.min(state.max as f64);
            }
            Signal::RateLimited if state.target_rate.is_none() && may_cut => {
                state.threshold = (state.window / 2.0).max(1.0);
                state.window = state.threshold;
                state.last_cut = Some(now);
            }
            Signal::Overloaded if may_cut => {
                state.factor = (state.factor / 2.0).max(0.05);
                state.threshold = (state.window / 2.0).max(1.0);
                state.window = state.threshold;
                state.last_cut = Some(now);
            }
            _ => {}
        }
        drop(state);
        self.notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(100);

    #[test]
    fn fixed_stays_fixed() {
        let c = Concurrency::new(Some(7), 100);
        c.record(Signal::Overloaded, MS, Instant::now());
        assert_eq!(c.limit(), 7);
    }

    #[test]
    fn unknown_rate_probes_then_slow_starts_then_halves() {
        let c = Concurrency::new(None, 1000);
        let t = Instant::now();
        assert_eq!(c.limit(), 1000);
        c.end_probe(false);
        assert_eq!(c.limit(), 1);
        for _ in 0..15 {
            c.record(Signal::Answered, MS, t);
        }
        assert_eq!(c.limit(), 16);
        c.record(Signal::RateLimited, MS, t);
        assert_eq!(c.limit(), 8);
        // a second 429 within the same round trip does not cut again.
        c.record(Signal::RateLimited, MS, t);
        assert_eq!(c.limit(), 8);
        // beyond the threshold, answers alone do not grow it: a round of answers whose latency
        // per unit of work has not risen does, by one.
        for _ in 0..10 {
            c.record(Signal::Answered, MS, t);
        }
        assert_eq!(c.limit(), 8);
        for _ in 0..8 {
            c.record_work(MS, 10, 8, t);
        }
        assert_eq!(c.limit(), 9);
    }

    #[test]
    fn a_queue_at_the_server_cuts_the_window_once_per_queue() {
        // One slot, 250 ms a request: 16 were sent at once, each answer waited for the ones
        // ahead of it.
        let c = Concurrency::new(None, 1000);
        let t = Instant::now();
        c.end_probe(false);
        for _ in 0..15 {
            c.record(Signal::Answered, MS, t);
        }
        assert_eq!(c.limit(), 16);
        let answer = |i: u32| Duration::from_millis(250) * i;
        // slow start judges every 4 answers: median 750 ms against 1.25 × the quickest 250 ms:
        // 16 × 312.5 / 750 + 0.5 = 7.2.
        for i in 1..=4 {
            c.record_work(answer(i), 24, i as usize, t + answer(i));
        }
        assert_eq!(c.limit(), 7);
        // the other twelve were sent before that cut: they say nothing new.
        for i in 5..=16 {
            c.record_work(answer(i), 24, i as usize, t + answer(i));
        }
        assert_eq!(c.limit(), 7);
        // requests sent after the cut come back at the least latency: the window grows by one
        // per round.
        let later = t + Duration::from_secs(10);
        for _ in 0..7 {
            c.record_work(Duration::from_millis(250), 24, 7, later);
        }
        assert_eq!(c.limit(), 8);
    }

    #[test]
    fn known_rate_follows_littles_law() {
        let c = Concurrency::new(None, 1000);
        c.end_probe(false);
        c.set_target_rate(Some(100.0), 0.0);
        c.record(Signal::Answered, Duration::from_millis(800), Instant::now());
        // 2 × 100/s × 0.8 s + 2
        assert_eq!(c.limit(), 162);
        // a bucket holding 500 requests right now: they may all be in flight at once.
        c.set_target_rate(Some(100.0), 500.0);
        assert_eq!(c.limit(), 662);
        c.set_target_rate(Some(100.0), 0.0);
        c.record(
            Signal::Overloaded,
            Duration::from_millis(800),
            Instant::now(),
        );
        assert!(c.limit() < 100);
    }

    /// Rate known (100 requests a second), limits far above reach (room for 500 more now):
    /// rounds of 16 answers, each `(latency, spacing, sent_with)`: the answer to the request
    /// sent with `sent_with(i)` in flight takes `latency(i)` and comes `spacing` after the one
    /// before. Returns the bound afterwards.
    fn known_rate(
        headroom: f64,
        answers: impl Iterator<Item = (Duration, Duration, usize)>,
    ) -> usize {
        let c = Concurrency::new(None, 1000);
        c.end_probe(false);
        c.set_target_rate(Some(100.0), headroom);
        c.record(Signal::Answered, Duration::ZERO, Instant::now());
        let mut t = Instant::now();
        for (latency, spacing, sent_with) in answers {
            t += spacing;
            c.record_work(latency, 24, sent_with, t);
        }
        c.limit()
    }

    /// A server with 4 slots, 250 ms a request: the request sent with `n` in flight waits
    /// `n / 4` turns; its answer comes 62.5 ms after the one before (16/s).
    fn four_slots(n: usize) -> (Duration, Duration, usize) {
        let turns = n.div_ceil(4) as u32;
        (
            Duration::from_millis(250) * turns,
            Duration::from_micros(62_500),
            n,
        )
    }

    #[test]
    fn known_rate_caps_the_bound_at_the_knee_of_a_queue_the_quota_does_not_explain() {
        // 2 × 100/s × 0 s + 500 + 2 before any answer says more.
        assert_eq!(known_rate(500.0, std::iter::empty()), 502);
        // one round in send order says "maybe"; two say "a queue of 4 slots": the knee plus one.
        assert_eq!(known_rate(500.0, (1..=16).map(four_slots)), 502);
        let cut = known_rate(500.0, (1..=32).map(four_slots));
        assert!((4..=7).contains(&cut), "{cut}");
        // rounds of answers sent after the cut without a queue raise it by one each (the
        // first two answers after it were sent before it, and do not count).
        let later = (1..=32)
            .map(four_slots)
            .chain((0..50).map(|_| (Duration::from_millis(250), Duration::from_millis(100), 4)));
        assert_eq!(known_rate(500.0, later), cut + 3);
    }

    #[test]
    fn known_rate_is_never_capped_by_latency_spread_or_while_the_quota_paces() {
        // the latencies of the four-slot queue, in no order with what was in flight.
        let shuffled = (1..=64).map(|i| {
            let (latency, spacing, _) = four_slots(i);
            (latency, spacing, (i * 37) % 64 + 1)
        });
        assert_eq!(known_rate(500.0, shuffled), 502);
        // in order, but the answers come at the quotas' 100/s: the quota paces the run.
        let paced = (1..=64).map(|n| (four_slots(n).0, Duration::from_millis(10), n));
        assert_eq!(known_rate(500.0, paced), 502);
        // in order, but the bucket has no room: requests wait in the quota, not for the bound.
        assert_eq!(known_rate(0.0, (1..=64).map(four_slots)), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn known_rate_reads_the_age_of_what_is_in_flight_as_latency_too() {
        let c = Concurrency::new(None, 1000);
        c.end_probe(false);
        c.set_target_rate(Some(10.0), 0.0);
        // the first answers were quick ones: 2 × 10/s × 0.2 s + 2.
        c.record(Signal::Answered, Duration::from_millis(200), Instant::now());
        assert_eq!(c.limit(), 6);
        let permits: Vec<Permit> = (0..6).filter_map(|_| c.try_acquire()).collect();
        assert_eq!(permits.len(), 6);
        assert!(c.try_acquire().is_none());
        // the six are still out after 2 s: latency is at least that, 2 × 10/s × 2 s + 2.
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(c.limit(), 42);
        drop(permits);
        assert_eq!(c.limit(), 6);
    }

    #[tokio::test]
    async fn permits_bound_in_flight() {
        let c = Concurrency::new(Some(2), 10);
        let a = c.acquire().await;
        let _b = c.acquire().await;
        assert_eq!(c.in_flight(), 2);
        let waiter = {
            let c = Arc::clone(&c);
            tokio::spawn(async move { c.acquire().await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(a);
        let _c = waiter.await.unwrap();
        assert_eq!(c.in_flight(), 2);
    }
}

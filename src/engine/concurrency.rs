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
//!   back-off factor on it; successes restore it slowly.
//! * **probing** (before the first answer): no bound of its own — the quota's probe schedule
//!   ([`crate::quota`]) spaces the first requests while their answers are awaited.
//! * **rate unknown** (the provider sent no limit headers, none configured): AIMD starting from
//!   what was in flight when the first answer came: slow start (+1 per success, doubling per
//!   round trip) up to a threshold and +1/limit per success beyond it; any overload signal
//!   (429, 5xx, timeout) halves the limit, at most once per round trip.

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
    /// Smoothed latency in seconds.
    latency: Option<f64>,
    /// Rate-known regime: multiplier in (0, 1] cut by overload.
    factor: f64,
    /// Rate-unknown regime: the AIMD window and its slow-start threshold.
    window: f64,
    threshold: f64,
    last_cut: Option<Instant>,
}

impl State {
    fn limit(&self) -> usize {
        if let Some(n) = self.fixed {
            return n.max(1);
        }
        if self.probing {
            return self.max;
        }
        let limit = match (self.target_rate, self.latency) {
            (Some(rate), Some(latency)) => {
                ((2.0 * rate * latency + self.headroom) * self.factor).ceil() + 2.0
            }
            (Some(rate), None) => (rate * self.factor).ceil().max(1.0),
            (None, _) => self.window.floor(),
        };
        (limit as usize).clamp(1, self.max)
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
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.owner.lock().in_flight -= 1;
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
                latency: None,
                factor: 1.0,
                window: 1.0,
                threshold: f64::INFINITY,
                last_cut: None,
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
                    state.in_flight += 1;
                    return Permit {
                        owner: Arc::clone(self),
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
            state.in_flight += 1;
            Permit {
                owner: Arc::clone(self),
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

    /// The first answer arrived: leave the probing regime, starting the AIMD window from what
    /// is in flight (all of it was admitted, or an overload signal will cut it).
    pub fn end_probe(&self) {
        let mut state = self.lock();
        if state.probing {
            state.probing = false;
            state.window = state.window.max(state.in_flight as f64);
        }
    }

    /// Tell the bound what rate the quotas allow (requests per second), once known, and how
    /// many requests they could admit at once right now: a bucket that holds more than the
    /// sustained rate's share (a provider whose bucket holds a whole minute) is spent as fast
    /// as the quota admits it, and the bound shrinks back as the bucket drains.
    pub fn set_target_rate(&self, rate: Option<f64>, headroom: f64) {
        let mut state = self.lock();
        state.target_rate = rate.filter(|r| r.is_finite() && *r > 0.0);
        state.headroom = if headroom.is_finite() {
            headroom.max(0.0)
        } else {
            0.0
        };
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
                if state.window < state.threshold {
                    state.window += 1.0;
                } else {
                    state.window += 1.0 / state.window.max(1.0);
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
        c.end_probe();
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
        // beyond the threshold growth is additive: about +1 per window of successes.
        for _ in 0..7 {
            c.record(Signal::Answered, MS, t);
        }
        assert_eq!(c.limit(), 8);
        for _ in 0..3 {
            c.record(Signal::Answered, MS, t);
        }
        assert_eq!(c.limit(), 9);
    }

    #[test]
    fn known_rate_follows_littles_law() {
        let c = Concurrency::new(None, 1000);
        c.end_probe();
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

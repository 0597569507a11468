//! [`Quota`]: the multi-dimension, reservation-based, header-calibrated limit of one upstream
//! key (and model). See the module documentation of [`crate::quota`] for the design.
//!
//! It must not know HTTP, providers' headers, Redis or the engine: answers arrive as
//! [`LimitSnapshot`]s, costs as [`Cost`]s, and time as an [`Instant`] its caller reads.

use super::dimension::{Cost, Dimension};
use super::gcra::{Gcra, Nanos};
use super::learn::Learner;
use super::snapshot::{DimensionReading, LimitSnapshot};
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

/// A configured limit for one dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSpec {
    /// Units per minute.
    pub per_minute: u64,
    /// Most units at once; `None` lets the quota infer it (or use one second's worth).
    pub burst: Option<u64>,
}

/// Jitter allowance: how much earlier (relative to the others) a request may reach the
/// provider than planned and still be admitted. See [`crate::quota::gcra::Gcra::with_margin`].
pub const DEFAULT_MARGIN: Duration = Duration::from_millis(25);

/// The limits a quota starts with; dimensions left `None` are learned from response headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaConfig {
    limits: [Option<LimitSpec>; 4],
    margin_ns: u64,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        QuotaConfig {
            limits: [None; 4],
            margin_ns: DEFAULT_MARGIN.as_nanos() as u64,
        }
    }
}

impl QuotaConfig {
    /// Use another jitter margin (zero makes the quota exactly the provider's bucket).
    pub fn with_margin(mut self, margin: Duration) -> Self {
        self.margin_ns = u64::try_from(margin.as_nanos()).unwrap_or(u64::MAX);
        self
    }

    /// Configure one dimension.
    pub fn with(mut self, dimension: Dimension, spec: LimitSpec) -> Self {
        self.limits[dimension.index()] = Some(spec);
        self
    }

    /// The configured limit of one dimension.
    pub fn get(&self, dimension: Dimension) -> Option<LimitSpec> {
        self.limits[dimension.index()]
    }
}

/// Why a reservation cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    /// No limit is known yet and the most probe requests allowed are out: ask again once one
    /// of them has answered.
    #[error("limits unknown until a probe request answers")]
    Probing,
    /// The cost exceeds the whole per-minute limit: it can never be admitted.
    #[error("request needs {cost} {unit} but the limit is {limit} {unit} per minute: it can never fit", unit = dimension.unit())]
    NeverFits {
        /// The dimension that cannot hold it.
        dimension: Dimension,
        /// The request's cost there.
        cost: u64,
        /// The per-minute limit there.
        limit: u64,
    },
}

/// A committed reservation: the request may go at `go_at`. Keep it to settle the real cost.
#[derive(Debug, Clone)]
pub struct Reservation {
    /// When the request may be sent.
    pub go_at: Instant,
    /// What was reserved.
    pub cost: Cost,
    go: Nanos,
    tat_after: [Option<Nanos>; 4],
    corrections_at: [i64; 4],
    frames_at: [i64; 4],
    /// The number of each dimension's last unit (see [`Learner::admit`]).
    through: [u64; 4],
}

#[derive(Debug, Default)]
struct DimState {
    margin_ns: u64,
    configured: Option<LimitSpec>,
    learned_limit: Option<u64>,
    learned_burst: Option<u64>,
    cell: Option<Gcra>,
    /// How far the tat was moved to keep the level when the burst changed: a reservation's
    /// `tat_after` is read in the frame of its time, shifted by what moved since.
    frame: i64,
    /// Net nanoseconds the provider's counts moved our state: pushed back for use we did not
    /// make (positive), brought forward for capacity it did not charge (negative).
    corrections: i64,
    /// The rate and burst of a dimension whose provider tells only what is left.
    learner: Learner,
    /// Units charged for requests that failed without an answer of their own (a 5xx, a reset):
    /// the provider may not have counted them. Only these come back when its `remaining`
    /// says there is more room than we think.
    uncounted: u64,
    /// Recent reservations as (go, the number of their last unit): how many units went close
    /// enough to a given one to reach the provider before it or after it.
    recent: VecDeque<(Nanos, u64, u64)>,
    /// Units reserved while this dimension had no limit (no cell) and not yet accounted for:
    /// when the first reading creates the cell, these requests are out but are not in the
    /// provider's `remaining` for the request it reports on.
    unmetered: u64,
    /// The last unit admitted when a refusal last widened the jitter margin: a refusal of a
    /// request admitted up to it went under the narrower margin, which the widening answered.
    widened_through: u64,
}

/// How long reservations are remembered for the reordering allowance.
const RECENT_SPAN: Nanos = 30_000_000_000;

/// At most this many reservations are remembered per dimension.
const RECENT_MAX: usize = 65_536;

impl DimState {
    fn remember(&mut self, go: Nanos, through: u64, cost: u64) {
        // Make room before adding, so the queue never grows past RECENT_MAX (a VecDeque full
        // at 65,536 would double to 131,072 places, 3 MB, for one entry).
        while self.recent.len() >= RECENT_MAX {
            self.recent.pop_front();
        }
        self.recent.push_back((go, through, cost));
        while self
            .recent
            .front()
            .is_some_and(|(at, _, _)| go.saturating_sub(*at) > RECENT_SPAN)
        {
            self.recent.pop_front();
        }
    }

    /// Units other than its own (`own`) that were admitted within `window` of a reservation
    /// going at `go`: they may have reached the provider before or after it, whatever our
    /// order. `None` when that stretch is no longer remembered.
    fn reordered(&self, go: Nanos, own: u64, window: Nanos) -> Option<u64> {
        let &(oldest, _, _) = self.recent.front()?;
        let from = go.saturating_sub(window);
        if from < oldest {
            return None;
        }
        let first = self.recent.partition_point(|(at, _, _)| *at < from);
        let after = self
            .recent
            .partition_point(|(at, _, _)| *at <= go.saturating_add(window));
        if after <= first {
            return Some(0);
        }
        let (_, first_through, first_cost) = self.recent[first];
        let (_, last_through, _) = self.recent[after - 1];
        let units = last_through.saturating_sub(first_through.saturating_sub(first_cost));
        Some(units.saturating_sub(own))
    }

    /// The limit in force: the lower of the configured and the learned one.
    fn effective(&self) -> Option<(u64, u64)> {
        let per_minute = match (self.configured.map(|c| c.per_minute), self.learned_limit) {
            (Some(c), Some(l)) => c.min(l),
            (Some(c), None) => c,
            (None, Some(l)) => l,
            (None, None) => return None,
        };
        let one_second = per_minute.div_ceil(60).max(1);
        let burst = match (self.configured.and_then(|c| c.burst), self.learned_burst) {
            (Some(c), Some(l)) => c.min(l),
            (Some(c), None) => c,
            (None, Some(l)) => l,
            (None, None) => one_second,
        };
        Some((per_minute, burst.clamp(1, per_minute)))
    }

    /// Bring the cell in line with the limit in force. A new cell, or one whose rate changed,
    /// starts from the provider's `remaining` when it is known (never above our own level).
    fn refresh_cell(&mut self, now: Nanos, remaining: Option<u64>) {
        let Some((per_minute, burst)) = self.effective() else {
            return;
        };
        let (cell, rebase) = match &mut self.cell {
            Some(cell) => {
                // A burst learned larger (or a margin widened) changes how much the bucket
                // holds, not what is in it now: the level is kept.
                let level = cell.level_at(cell.tat(), now);
                let changed = cell.set_rate(per_minute, burst, self.margin_ns);
                if !changed {
                    self.frame += cell.keep_level(level, now);
                }
                (cell, changed)
            }
            None => {
                let cell = self
                    .cell
                    .insert(Gcra::with_margin(per_minute, burst, self.margin_ns));
                // A rate just learned from what is left: the learner's replay of the answers
                // and what went since is a finer level than the floored count less all that
                // went before the cell (each request's refill since is in it).
                if let Some(level) = self.learner.level_at(now) {
                    cell.drain_to_level(level, now);
                    return;
                }
                (cell, true)
            }
        };
        if let (true, Some(left)) = (rebase, remaining) {
            cell.drain_to(left.min(burst), now);
        }
    }
}

/// Spacing of the probe schedule: the k-th request before the first answer goes at
/// `start + step × log2(k)`, a send rate that doubles every step. The step is this long until
/// a connection to the provider is known to open faster (see [`Quota::connected_in`]).
const PROBE_STEP: Duration = Duration::from_millis(50);

/// The shortest probe step, however fast connections open: a refusal takes the provider some
/// time of its own to send, and on a busy machine a loopback answer is not instant either. At
/// 10 ms, `paceline mock` on the same two cores refused two more of S1's probes than at the
/// default step (its 429 took 1-2 ms to come back while probes went 1 ms apart); at 25 ms
/// one, as at the default.
const PROBE_STEP_MIN: Duration = Duration::from_millis(25);

/// Most requests sent before the first answer arrives.
const PROBE_MAX: u32 = 256;

/// Until the key's first answer, requests probe: the first goes at once, the following ones on
/// a schedule whose rate doubles every step ([`PROBE_STEP`], or the time a connection took to
/// open when that is shorter; never faster than configured limits allow), so the provider's
/// first informative answer — a quick 429 once the rate outgrows its bucket, or any answer's
/// headers — comes early without idling while the first request is still being generated, and
/// a configured limit that is too high is corrected before it can cause a burst of refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// No request sent yet.
    Ready,
    /// `sent` requests went out from `started` on; none has answered yet.
    Out {
        /// When the first went (moved when the step changes, so that the latest keeps its
        /// time and only what follows goes faster).
        started: Nanos,
        /// How many are out.
        sent: u32,
    },
    /// A response arrived (limits learned, or the provider sends none).
    Done,
}

#[derive(Debug)]
struct State {
    dims: [DimState; 4],
    paused_until: Nanos,
    probe: Probe,
    /// The probe schedule's step.
    probe_step: Duration,
}

impl State {
    fn known(&self) -> bool {
        self.dims.iter().any(|d| d.cell.is_some())
    }
}

/// The quota of one upstream key (per model): reserve → settle → observe → pause.
///
/// All methods take `now` explicitly so the arithmetic is testable on any clock; the engine
/// passes `tokio::time::Instant::now()`, which `tokio::time::pause` makes virtual in tests.
#[derive(Debug)]
pub struct Quota {
    epoch: Instant,
    margin_ns: u64,
    state: Mutex<State>,
    /// Whether the key's level is also kept by a quota shared with other processes.
    level_shared: bool,
}

/// How far below a whole unit a burst estimate may fall and still round up to it: the provider
/// rounds `reset` (to milliseconds or tenths of a second), which can push `remaining + refill`
/// a little past the true capacity.
const BURST_ROUNDING: f64 = 0.05;

/// Rounding slack when comparing the provider's `remaining` with ours: reordering of requests in
/// flight and the provider's flooring of its level.
fn drift_slack(burst: u64) -> f64 {
    1.0f64.max(burst as f64 * 0.02)
}

impl Quota {
    /// A quota starting from `config`, whose clock starts at `now`.
    pub fn new(config: QuotaConfig, now: Instant) -> Self {
        let mut dims: [DimState; 4] = Default::default();
        for d in Dimension::ALL {
            let state = &mut dims[d.index()];
            state.configured = config.get(d);
            state.margin_ns = config.margin_ns;
            state.refresh_cell(0, None);
        }
        Quota {
            epoch: now,
            margin_ns: config.margin_ns,
            state: Mutex::new(State {
                probe: Probe::Ready,
                probe_step: PROBE_STEP,
                dims,
                paused_until: 0,
            }),
            level_shared: false,
        }
    }

    /// This quota's key is also paced by a quota shared with other processes, which holds
    /// their use of it: the provider's `remaining` then no longer corrects this quota's level
    /// (it would count the others' use twice), in either direction.
    pub fn level_shared(mut self) -> Self {
        self.level_shared = true;
        self
    }

    /// While no answer has come: the probe schedule's step (the send rate doubles every step).
    /// A quota shared with other processes probes on one schedule with them.
    pub fn probe_step(&self) -> Option<Duration> {
        let state = self.lock();
        (state.probe != Probe::Done).then_some(state.probe_step)
    }

    /// A connection to the provider opened in `took` (name lookup, TCP, TLS: at least one
    /// network round trip, two or three over TLS). A refusal cannot come back sooner than a
    /// round trip, so the probe schedule's rate may double about that often: its step becomes
    /// `took` when that is shorter than the default 50 ms (down to 25 ms). A nearby
    /// provider's whole-minute bucket is then spent in 0.2 s where the default step took 0.4 s
    /// to send 200 requests; a distant one's probe is as before.
    ///
    /// ```
    /// use paceline::quota::{Quota, QuotaConfig};
    /// use std::time::Duration;
    /// use tokio::time::Instant;
    ///
    /// let t0 = Instant::now();
    /// let quota = Quota::new(QuotaConfig::default(), t0);
    /// assert_eq!(quota.probe_step(), Some(Duration::from_millis(50)));
    /// quota.connected_in(Duration::from_millis(40));
    /// assert_eq!(quota.probe_step(), Some(Duration::from_millis(40)));
    /// quota.connected_in(Duration::from_micros(300)); // loopback
    /// assert_eq!(quota.probe_step(), Some(Duration::from_millis(25)));
    /// ```
    pub fn connected_in(&self, took: Duration) {
        let mut state = self.lock();
        let step = state.probe_step.min(took.max(PROBE_STEP_MIN));
        let shorter = state.probe_step.saturating_sub(step).as_nanos() as f64;
        if let Probe::Out { started, sent } = &mut state.probe {
            // The latest probe keeps its time (`started + step × log2(sent)`); the ones after
            // it follow at the new step, with no burst to catch up.
            *started = started.saturating_add((shorter * f64::from(*sent).log2()) as u64);
        }
        state.probe_step = step;
    }

    /// The jitter margin sent with each shared operation: the widest of the dimensions' own. The
    /// script takes one margin for all dimensions; after a refusal widened one dimension's
    /// margin here (see [`Quota::pause`]), the other processes' admissions through the shared
    /// quota must leave that room too. On the dimensions that did not refuse it costs a few units of
    /// burst, never rate.
    pub fn admission_margin(&self) -> u64 {
        self.lock()
            .dims
            .iter()
            .map(|dim| dim.margin_ns)
            .fold(self.margin_ns, u64::max)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn ns(&self, t: Instant) -> Nanos {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    fn instant(&self, ns: Nanos) -> Instant {
        self.epoch + Duration::from_nanos(ns)
    }

    /// Whether any dimension has a known limit (configured or learned).
    pub fn is_known(&self) -> bool {
        self.lock().known()
    }

    /// Whether the provider's answers say what is left of some dimension whose limit is not
    /// known yet (the quota then holds requests to what was left, see [`Learner::budget`]).
    pub fn is_metered(&self) -> bool {
        self.lock()
            .dims
            .iter()
            .any(|d| d.cell.is_none() && d.learner.has_readings())
    }

    /// The limit in force per dimension as (per minute, burst), if known.
    pub fn limits(&self) -> [Option<(u64, u64)>; 4] {
        let state = self.lock();
        Dimension::ALL.map(|d| state.dims[d.index()].effective())
    }

    /// Units each dimension could admit at `now` (between 0 and its burst), where a limit is
    /// known: what the `remaining` rate-limit headers would say.
    pub fn available(&self, now: Instant) -> [Option<u64>; 4] {
        let now = self.ns(now);
        let state = self.lock();
        Dimension::ALL.map(|d| {
            let cell = state.dims[d.index()].cell.as_ref()?;
            let level = cell
                .level_at(cell.tat(), now)
                .clamp(0.0, cell.burst() as f64);
            Some(level.floor() as u64)
        })
    }

    /// How long `units` of `dimension` take to refill at its sustained rate, if its limit is
    /// known.
    pub fn refill_time(&self, dimension: Dimension, units: u64) -> Option<Duration> {
        let (per_minute, _) = self.lock().dims[dimension.index()].effective()?;
        let nanos = u128::from(units) * 60_000_000_000 / u128::from(per_minute.max(1));
        Some(Duration::from_nanos(
            u64::try_from(nanos).unwrap_or(u64::MAX),
        ))
    }

    /// When the quota's pause ends, if it is paused at `now`.
    pub fn paused_until(&self, now: Instant) -> Option<Instant> {
        let state = self.lock();
        (state.paused_until > self.ns(now)).then(|| self.instant(state.paused_until))
    }

    /// When the next request may go under the probe schedule (`None`: no schedule applies).
    fn probe_go(state: &State, now: Nanos) -> Result<Option<Nanos>, QuotaError> {
        match state.probe {
            Probe::Done => Ok(None),
            Probe::Ready => Ok(Some(now)),
            Probe::Out { sent, .. } if sent >= PROBE_MAX => Err(QuotaError::Probing),
            Probe::Out { started, sent } => {
                let step = state.probe_step.as_nanos() as f64 * f64::from(sent + 1).log2();
                Ok(Some(now.max(started.saturating_add(step as u64))))
            }
        }
    }

    fn check_fits(state: &State, cost: &Cost) -> Result<(), QuotaError> {
        for d in Dimension::ALL {
            if let Some((limit, _)) = state.dims[d.index()].effective() {
                let c = cost.get(d);
                if c > limit {
                    return Err(QuotaError::NeverFits {
                        dimension: d,
                        cost: c,
                        limit,
                    });
                }
            }
        }
        Ok(())
    }

    fn earliest_ns(state: &State, cost: &Cost, now: Nanos) -> Result<Nanos, QuotaError> {
        Self::check_fits(state, cost)?;
        let mut go = now.max(state.paused_until);
        if let Some(probe) = Self::probe_go(state, now)? {
            go = go.max(probe);
        }
        for d in Dimension::ALL {
            let dim = &state.dims[d.index()];
            if let Some(cell) = &dim.cell {
                go = go.max(cell.earliest(cost.get(d), now));
            } else if dim.learner.has_readings() {
                // Only what is left is known: no more than that goes before the next answer,
                // or before the refill the readings show so far can have brought more.
                let units = cost.get(d);
                if let Some(refilled) = dim.learner.refilled_at(units) {
                    go = go.max(refilled);
                } else if dim.learner.budget() < i64::try_from(units).unwrap_or(i64::MAX) {
                    return Err(QuotaError::Probing);
                }
            }
        }
        Ok(go)
    }

    /// Earliest time `cost` could go, without reserving.
    pub fn earliest(&self, cost: &Cost, now: Instant) -> Result<Instant, QuotaError> {
        let state = self.lock();
        Ok(self.instant(Self::earliest_ns(&state, cost, self.ns(now))?))
    }

    /// Reserve `cost` in every dimension at once, at the earliest time all of them allow.
    pub fn reserve(&self, cost: Cost, now: Instant) -> Result<Reservation, QuotaError> {
        let mut state = self.lock();
        let go = Self::earliest_ns(&state, &cost, self.ns(now))?;
        state.probe = match state.probe {
            Probe::Ready => Probe::Out {
                started: go,
                sent: 1,
            },
            Probe::Out { started, sent } => Probe::Out {
                started,
                sent: sent + 1,
            },
            Probe::Done => Probe::Done,
        };
        let mut tat_after = [None; 4];
        let mut corrections_at = [0; 4];
        let mut frames_at = [0; 4];
        let mut through = [0; 4];
        for d in Dimension::ALL {
            let dim = &mut state.dims[d.index()];
            corrections_at[d.index()] = dim.corrections;
            frames_at[d.index()] = dim.frame;
            through[d.index()] = dim.learner.admit(cost.get(d), go);
            if cost.get(d) > 0 {
                dim.remember(go, through[d.index()], cost.get(d));
            }
            match &mut dim.cell {
                Some(cell) => tat_after[d.index()] = Some(cell.commit(cost.get(d), go)),
                None => dim.unmetered = dim.unmetered.saturating_add(cost.get(d)),
            }
        }
        Ok(Reservation {
            go_at: self.instant(go),
            cost,
            go,
            tat_after,
            corrections_at,
            frames_at,
            through,
        })
    }

    /// Give a reservation back whole (the request was not sent, or got no answer).
    pub fn cancel(&self, reservation: &Reservation, now: Instant) {
        self.settle(reservation, Cost::default(), now);
        {
            let mut state = self.lock();
            for d in Dimension::ALL {
                let dim = &mut state.dims[d.index()];
                dim.learner
                    .cancel(reservation.cost.get(d), reservation.through[d.index()]);
                if dim.cell.is_none() && reservation.tat_after[d.index()].is_none() {
                    dim.unmetered = dim.unmetered.saturating_sub(reservation.cost.get(d));
                }
            }
        }
        self.no_answer();
    }

    /// A request was sent and failed without being answered for itself (a 5xx, a reset, a
    /// body cut short): it stays charged here, but the provider may not have counted it. Its
    /// cost may come back when the provider's `remaining` says so ([`Quota::observe`]).
    pub fn maybe_uncounted(&self, reservation: &Reservation) {
        let mut state = self.lock();
        for d in Dimension::ALL {
            let dim = &mut state.dims[d.index()];
            dim.learner
                .uncertain(reservation.through[d.index()], reservation.cost.get(d));
            dim.uncounted = dim.uncounted.saturating_add(reservation.cost.get(d));
        }
    }

    /// A request got no HTTP answer: if it was a probe, it no longer counts as one out.
    pub fn no_answer(&self) {
        let mut state = self.lock();
        if let Probe::Out { started, sent } = state.probe {
            state.probe = if sent <= 1 {
                Probe::Ready
            } else {
                Probe::Out {
                    started,
                    sent: sent - 1,
                }
            };
        }
    }

    /// Replace the reserved cost with what the provider actually charged: refund or charge
    /// the difference in every dimension.
    pub fn settle(&self, reservation: &Reservation, actual: Cost, now: Instant) {
        let now = self.ns(now);
        let mut state = self.lock();
        for d in Dimension::ALL {
            if let Some(cell) = &mut state.dims[d.index()].cell {
                let (reserved, used) = (reservation.cost.get(d), actual.get(d));
                if used < reserved {
                    cell.refund(reserved - used, now);
                } else if used > reserved {
                    cell.charge(used - reserved, now);
                }
            }
        }
    }

    /// Calibrate from what one response's headers said. `reservation` is the one the response
    /// belongs to, so the provider's `remaining` is compared with our level at the same moment.
    pub fn observe(
        &self,
        reservation: Option<&Reservation>,
        snapshot: &LimitSnapshot,
        now: Instant,
    ) {
        let now = self.ns(now);
        let mut state = self.lock();
        state.probe = Probe::Done;
        for d in Dimension::ALL {
            let dim = &mut state.dims[d.index()];
            if let Some(r) = reservation {
                dim.learner.answered(r.through[d.index()]);
            }
            let reading: DimensionReading = snapshot.reading(d);
            if let Some(limit) = reading.limit.filter(|l| *l > 0) {
                if dim.learned_limit != Some(limit) {
                    // A new limit: what was learned of the old bucket's capacity is void.
                    dim.learned_burst = None;
                }
                dim.learned_limit = Some(limit);
                if let Some(remaining) = reading.remaining {
                    // Each reading bounds the capacity from below and, with a reset, from above
                    // (the reset is allowed its resolution either way): the largest lower bound
                    // seen is the estimate, unless a reading proves the capacity smaller.
                    let (low, high) = burst_bounds(reading, remaining, limit, reservation, d);
                    let known = dim.learned_burst.map_or(low, |known| known.max(low));
                    dim.learned_burst = Some(high.map_or(known, |high| known.min(high)));
                }
            }
            if let (None, None, Some(left), Some(r)) = (
                reading.limit,
                dim.configured,
                reading.remaining,
                reservation,
            ) {
                dim.learner
                    .observe(r.go, left, r.through[d.index()], r.cost.get(d));
                let shown = dim.learner.shown(dim.learned_limit);
                if let Some(per_minute) = shown.or_else(|| dim.learner.per_minute()) {
                    // A new estimate moves the limit only when it differs by more than 2 %:
                    // every change of rate rebases the cell.
                    let moved = dim
                        .learned_limit
                        .is_none_or(|known| known.abs_diff(per_minute) * 50 > known);
                    if moved {
                        dim.learned_limit = Some(per_minute);
                    }
                    dim.learned_burst = Some(dim.learner.burst().min(per_minute));
                }
            }
            let remaining_now = match (dim.cell.is_none(), reading.remaining) {
                (true, Some(left)) => {
                    let own = reservation
                        .filter(|r| r.tat_after[d.index()].is_none())
                        .map_or(0, |r| r.cost.get(d));
                    Some(left.saturating_sub(dim.unmetered.saturating_sub(own)))
                }
                (_, left) => left,
            };
            dim.refresh_cell(now, remaining_now);
            if dim.cell.is_some() {
                dim.unmetered = 0;
            }
            // Network jitter: the default margin, not one widened by refusals.
            let window = DEFAULT_MARGIN.as_nanos() as u64;
            let reordered = reservation.and_then(|r| dim.reordered(r.go, r.cost.get(d), window));
            let (Some(cell), Some(remaining), Some(r)) =
                (&mut dim.cell, reading.remaining, reservation)
            else {
                continue;
            };
            let Some(tat_after) = r.tat_after[d.index()] else {
                continue;
            };
            if self.level_shared {
                // Other paceline processes' use is in the shared state already.
                continue;
            }
            // Our level right after this request was admitted, on the provider's scale (its
            // whole burst, without our jitter margin), against what the provider said. Both
            // describe the same moment, so requests admitted since are owed either way; what
            // the provider's counts already moved since this reservation is not moved again.
            let shifted = i64::try_from(tat_after)
                .unwrap_or(i64::MAX)
                .saturating_add(dim.frame - r.frames_at[d.index()]);
            let ours = cell.provider_level_at(u64::try_from(shifted).unwrap_or(0), r.go);
            // Requests admitted close to this one may have reached the provider before it or
            // after it: its count may include some admitted after it, or miss some admitted
            // before. Beyond them, less left than we think allows for the provider's flooring
            // and rounding (2 % of the burst); more left allows for the flooring and for the
            // refill while the request travelled (the jitter margin), so that capacity it did
            // not charge comes back nearly whole and the schedule never gets ahead of the
            // provider's bucket.
            let Some(reordered) = reordered else {
                continue;
            };
            let reordered = reordered as f64;
            let slack = drift_slack(cell.burst()) + reordered;
            // The provider counted at the request's arrival, up to the jitter margin after we
            // let it go: it may have refilled that much more in between.
            let slack_up = 1.0 + reordered + dim.margin_ns as f64 / cell.interval() as f64;
            let gap = ours - remaining as f64;
            let target = if gap > slack {
                ((gap - slack) * cell.interval() as f64) as i64
            } else if gap < -slack_up {
                ((gap + slack_up) * cell.interval() as f64) as i64
            } else {
                continue;
            };
            let already = dim.corrections - r.corrections_at[d.index()];
            if target > 0 && target > already {
                let extra = target - already;
                cell.push_back(extra.unsigned_abs(), now);
                dim.corrections += extra;
            } else if target < 0 && target < already {
                // Only what may not have been counted comes back: a provider that answers a
                // request without charging it says so only through `remaining`.
                // Where the rate is our own estimate (no limit stated), the provider's count
                // corrects the estimate itself, both ways.
                let estimated = reading.limit.is_none() && dim.configured.is_none();
                let credit = if estimated {
                    u64::MAX
                } else {
                    dim.uncounted.saturating_mul(cell.interval())
                };
                let extra = (already - target).unsigned_abs().min(credit);
                let moved = cell.bring_forward(extra, now);
                dim.uncounted = dim
                    .uncounted
                    .saturating_sub(moved.div_ceil(cell.interval()));
                dim.corrections -= i64::try_from(moved).unwrap_or(i64::MAX);
            }
        }
    }

    /// The provider refused `reservation` for want of `dimension` and said the `retry` cost
    /// would be there `after` the request arrived, written to within `resolution`. Where only
    /// what is left is known, that is an exact level, newer than the readings: with the
    /// answer to the request admitted before it, or with the refusal before it, it may show
    /// the rate exactly (a bucket too small for its readings to show its rate, a lowered
    /// limit). Times are taken on the requests' send times, as the readings are: the provider
    /// counted each at its arrival, a constant way after. Call it before [`Quota::pause`].
    pub fn refused(
        &self,
        reservation: &Reservation,
        dimension: Dimension,
        after: Duration,
        resolution: Duration,
        retry: &Cost,
        now: Instant,
    ) {
        let mut state = self.lock();
        let d = dimension;
        let dim = &mut state.dims[d.index()];
        let after = u64::try_from(after.as_nanos()).unwrap_or(u64::MAX);
        let at = reservation.go.saturating_add(after);
        let resolution = u64::try_from(resolution.as_nanos()).unwrap_or(u64::MAX);
        if let Some(cell) = dim.cell.as_mut().filter(|c| resolution < c.interval()) {
            // The retry's cost is there at `at`, with nothing admitted after the refused
            // request: what was reserved to go after it (already in the cell) comes out of it.
            let learner = &dim.learner;
            let later = dim
                .recent
                .partition_point(|(go, _, _)| *go <= reservation.go);
            let owed: u64 = dim
                .recent
                .range(later..)
                .filter(|(_, through, _)| !learner.gave_back(*through))
                .map(|(_, _, units)| *units)
                .sum();
            cell.drain_to_owing(retry.get(d).max(1), owed, at.saturating_add(resolution));
        }
        if dim.configured.is_some() {
            return;
        }
        let before = reservation.through[d.index()].saturating_sub(reservation.cost.get(d));
        let held = self.ns(now).saturating_add(after);
        dim.learner
            .refused(at, held, resolution, before, retry.get(d).max(1));
        if let Some(per_minute) = dim.learner.shown(dim.learned_limit) {
            dim.learned_limit = Some(per_minute);
            dim.learned_burst = Some(dim.learner.burst().min(per_minute));
        }
    }

    /// Pause the whole quota until `until` (a rate-limit answer from the provider to the
    /// request that `sent` admitted). The dimension that refused (all known ones when `None`)
    /// is taken as empty then, except for the `retry` cost that the refused request will need
    /// when it goes again, and its jitter margin widens unless the refused request was
    /// admitted before the last widening (see below).
    pub fn pause(
        &self,
        until: Instant,
        refused: Option<Dimension>,
        retry: &Cost,
        sent: &Reservation,
    ) {
        let until_ns = self.ns(until);
        let mut state = self.lock();
        state.paused_until = state.paused_until.max(until_ns);
        for d in Dimension::ALL {
            if refused.is_some_and(|r| r != d) {
                continue;
            }
            let dim = &mut state.dims[d.index()];
            // A refusal means requests reached the provider closer together than our model
            // allowed for, or that the key is used beyond what our level shows (another
            // client). Requests admitted before the margin last widened were spaced under the
            // narrower one, which that widening answered: a storm of refusals to requests
            // already on their way (the probe's, when a refusal takes a round trip to come
            // back) is one event, not one per refusal.
            let paced = sent.through[d.index()] > dim.widened_through;
            if let (Some(interval), true) = (dim.cell.as_ref().map(Gcra::interval), paced) {
                // Widen the jitter margin, which costs burst, never rate (the cell keeps at
                // least one unit). It starts at one unit, then doubles: a provider's
                // `remaining` floors its level, so at the bottom of the bucket its readings
                // show no error smaller than a unit, and the room a wider margin leaves is
                // what lets them show the rest.
                dim.margin_ns = dim.margin_ns.max(interval / 2).saturating_mul(2);
                dim.widened_through = dim.learner.admitted();
                dim.refresh_cell(until_ns, None);
            }
            if let Some(cell) = &mut dim.cell {
                cell.drain_to(retry.get(d), until_ns);
            }
        }
    }
}

/// The capacity one reading allows, as (least, most when the reset is known). The level was
/// between `remaining` and `remaining + 1` (providers floor it) and refills to the capacity
/// over `reset`, which is known to within its resolution either way; and the level was at
/// least `remaining` plus this request's own charge before it was admitted (counted for the
/// requests dimension only, where the charge is known exactly). The least bound
/// is rounded up, less a little, so that a reset rounded up does not inflate it.
fn burst_bounds(
    reading: DimensionReading,
    remaining: u64,
    limit: u64,
    reservation: Option<&Reservation>,
    d: Dimension,
) -> (u64, Option<u64>) {
    // A request costs exactly one request; its tokens are our estimate, which may exceed what
    // the provider charged, so they bound nothing.
    let own = match d {
        Dimension::Requests => reservation.map_or(0, |r| r.cost.get(d)),
        _ => 0,
    };
    let per_second = limit as f64 / 60.0;
    let resolution = reading.reset_resolution.unwrap_or_default();
    let low_refill = reading.reset.map_or(0.0, |reset| {
        reset.saturating_sub(resolution).as_secs_f64() * per_second
    });
    let from_reset = ((remaining as f64 + low_refill - BURST_ROUNDING)
        .ceil()
        .max(1.0)) as u64;
    let low = from_reset
        .max(remaining.saturating_add(own))
        .clamp(1, limit);
    let high = reading.reset.map(|reset| {
        let most = remaining as f64 + 1.0 + (reset + resolution).as_secs_f64() * per_second;
        (most.floor() as u64).clamp(low, limit)
    });
    (low, high)
}

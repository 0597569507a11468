//! Learning a limit nobody states: a provider that tells only what is left of a dimension
//! (Azure OpenAI says what is left, never the limit or when it resets; the provider module reads
//! that into the same neutral snapshot as every other answer, with no limit in it).
//!
//! Between two answers the provider's bucket refilled by what it reports more (or less) left
//! plus what was admitted in between: `refill = left_j − left_i + admitted(i, j]`. A bucket
//! stops refilling when full, so that refill divided by the span bounds the sustained rate
//! from below whether or not the bucket was ever full (exactly the rate over spans in which it
//! never was, and at least what was sent over spans in which it always was); the most ever
//! left (with the request's own charge) bounds the burst from below. Until a rate is known, what the provider last said was left, less what
//! was sent since, is all that may go before the next answer ([`Learner::budget`]).
//!
//! It must not know any provider or header: it is told what was admitted and what each answer said
//! was left.

use super::gcra::Nanos;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The least span of a rate estimate, in nanoseconds.
const MIN_SPAN: Nanos = 1_000_000_000;

/// The least refill a rate estimate counts (each reading is floored: two units of error).
const MIN_REFILL: f64 = 2.0;

/// A rate two refusals show is taken over the pacing's own only below this share of it:
/// nearer, it is as likely the noise of another client's use of the key as a change.
const LOWERED: f64 = 0.9;

/// A refusal's time shows a rate with the reading before it only when it was written finely
/// enough: to within this fraction of the span between them.
const RESOLVED: Nanos = 50;

/// How long readings are kept.
const KEEP: Nanos = 60_000_000_000;

/// One answer's reading: at `at`, `left` units were left after the request, which was the
/// `through`-th unit admitted and cost `own`.
#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Nanos,
    left: u64,
    through: u64,
    own: u64,
}

/// A rate a refusal showed exactly.
#[derive(Debug, Clone, Copy)]
struct Shown {
    per_ns: f64,
    from: Nanos,
    raises: bool,
}

/// What is known of a dimension whose provider reports only what is left.
#[derive(Debug, Default, Clone)]
pub struct Learner {
    admitted: u64,
    readings: VecDeque<Reading>,
    most: u64,
    /// The last unit's number of each admitted request whose answer has not come yet.
    pending: BTreeSet<u64>,
    /// The latest refusal's word (see [`Learner::refused`]), as a reading.
    refusal: Option<Reading>,
    /// Until when the latest refusal holds every request (its word, on the time its answer
    /// came): what goes after it is replayed from then.
    refusal_held: Nanos,
    /// The refusal before it, until the two have shown a rate or could not.
    earlier_refusal: Option<Reading>,
    /// Until the answer to the request admitted just before the latest refusal has shown a
    /// rate with it or could not: how finely the refusal's time was written.
    refusal_unread: Option<Nanos>,
    /// The rate a refusal showed exactly, with the refusal or the reading before it (see
    /// [`Learner::refused`]), in units per nanosecond, from when, and whether it may raise
    /// the estimate, until [`Learner::shown`] looks at it.
    shown: Option<Shown>,
    /// A shown rate taken as the estimate: it holds until the readings since bound it higher.
    exact: Option<f64>,
    /// Units of requests that failed without an answer that says (a 5xx, a reset), by their
    /// last unit's number: the provider may not have counted them.
    uncertain: BTreeMap<u64, u64>,
    /// Units of reservations given back (see [`Learner::cancel`]), by their last unit's number.
    void: BTreeMap<u64, u64>,
    /// Requests admitted after the newest reading, as (last unit's number, when, units), in
    /// the order they were admitted: [`Learner::refilled_at`] replays them on the bucket.
    sent: VecDeque<(u64, Nanos, u64)>,
}

/// Most admissions [`Learner::refilled_at`] keeps to replay (when no answer says anything for
/// long, the oldest are dropped: they have long refilled).
const SENT_MAX: usize = 4096;

impl Learner {
    /// The number of the last unit admitted so far.
    pub fn admitted(&self) -> u64 {
        self.admitted
    }

    /// Units admitted so far (after committing a reservation: its last unit's number, which
    /// names the request until its answer comes, see [`Learner::answered`]).
    /// `at` is when it goes.
    pub fn admit(&mut self, units: u64, at: Nanos) -> u64 {
        self.admitted = self.admitted.saturating_add(units);
        // Where no answer says what is left (the readings prune these), keep the newest only.
        for numbers in [&mut self.void, &mut self.uncertain] {
            if numbers.len() >= SENT_MAX {
                numbers.pop_first();
            }
        }
        if units > 0 {
            self.pending.insert(self.admitted);
            if self.sent.len() >= SENT_MAX {
                self.sent.pop_front();
            }
            self.sent.push_back((self.admitted, at, units));
        }
        self.admitted
    }

    /// A reservation through unit `through` was given back (not sent, or refused). Its units
    /// keep their numbers (later requests may hold the numbers after them) and count as never
    /// admitted.
    pub fn cancel(&mut self, units: u64, through: u64) {
        self.pending.remove(&through);
        self.sent.retain(|(t, _, _)| *t != through);
        if units > 0 {
            self.void.insert(through, units);
        }
    }

    /// Whether the reservation through unit `through` was given back.
    pub fn gave_back(&self, through: u64) -> bool {
        self.void.contains_key(&through)
    }

    /// Units admitted after unit `from` through unit `to`, less those given back.
    fn admitted_between(&self, from: u64, to: u64) -> u64 {
        if to <= from {
            return 0;
        }
        let void: u64 = self.void.range(from + 1..=to).map(|(_, u)| *u).sum();
        to.saturating_sub(from).saturating_sub(void)
    }

    /// The request through unit `through` was answered, whether or not the answer said what is
    /// left (a failure the provider may not have counted says nothing).
    pub fn answered(&mut self, through: u64) {
        self.pending.remove(&through);
    }

    /// The provider refused a request for want of this dimension, and said when `cost` units
    /// will be there: at `at` (on the requests' send times, as the readings are, written to
    /// within `resolution`), with nothing admitted after unit `after` (the last admitted
    /// before the refused request). That is newer word of the level than the readings (which
    /// only ever said it was higher); [`Learner::refilled_at`] counts from it, from `held`
    /// (the same word on the time its answer came: the quota's pause holds every request
    /// until then) until a later answer says more.
    ///
    /// A refusal can show the rate exactly ([`Learner::shown`]):
    /// - with the answer to the request admitted just before it, when that answer found the
    ///   bucket full (what it left plus its own charge is the most ever seen, once every
    ///   earlier answer has come): the level after it was what it said, exactly, and nothing
    ///   was admitted until the refusal's time. That is a small bucket's rate, which its
    ///   readings cannot show (a bucket of one unit always reads 0 left).
    /// - with the refusal before it: two exact levels (no floor in them), between which the
    ///   bucket refilled by the second's cost less the first's, plus what was charged in
    ///   between — exactly, when it never filled meanwhile: every reading in between shows it
    ///   below full, and either all of them have come or the whole refill on top of the first
    ///   level stays below the most ever seen. A limit lowered without notice shows so.
    pub fn refused(&mut self, at: Nanos, held: Nanos, resolution: Nanos, after: u64, cost: u64) {
        self.refusal_held = held;
        self.earlier_refusal = self.refusal;
        self.refusal = Some(Reading {
            at,
            left: cost,
            through: after,
            own: 0,
        });
        self.refusal_unread = Some(resolution);
        self.rate_from_refusals();
        self.rate_from_reading();
    }

    /// The rate the latest refusal shows with the answer to the request admitted just before
    /// the refused one, once that answer has come (see [`Learner::refused`]).
    fn rate_from_reading(&mut self) {
        let (Some(word), Some(resolution)) = (self.refusal, self.refusal_unread) else {
            return;
        };
        let Some(read) = self
            .readings
            .iter()
            .rev()
            .find(|r| r.through == word.through && r.at <= word.at)
        else {
            return;
        };
        self.refusal_unread = None;
        let span = word.at.saturating_sub(read.at);
        // The most ever seen is the bucket's size only once every earlier answer has come.
        let settled = self.pending.range(..read.through).next().is_none();
        let full = settled && read.left.saturating_add(read.own) >= self.most;
        if !full || span == 0 || resolution.saturating_mul(RESOLVED) > span {
            return;
        }
        let Some(refill) = word.left.checked_sub(read.left).filter(|r| *r > 0) else {
            return;
        };
        // The refusal's time was written to within `resolution`: the refill may have taken
        // that much longer, never less (the estimate stays on the low side).
        self.shown = Some(Shown {
            per_ns: refill as f64 / span.saturating_add(resolution) as f64,
            from: read.at,
            raises: true,
        });
    }

    /// The rate the last two refusals show, once it is known that the bucket never filled
    /// between them (see [`Learner::refused`]).
    fn rate_from_refusals(&mut self) {
        let (Some(prev), Some(word)) = (self.earlier_refusal, self.refusal) else {
            return;
        };
        let span = word.at.saturating_sub(prev.at);
        if span == 0 || word.through <= prev.through {
            return;
        }
        let refill = self.refill(&prev, &word);
        // The bucket never filled between them when every answer in between showed it below
        // full and either all of them have come, or even all of the refill on top of the
        // first refusal's level stays below the most ever seen (it cannot have filled).
        let below = prev.left as f64 + refill < self.most as f64;
        let answered = self
            .pending
            .range(prev.through.saturating_add(1)..=word.through)
            .next()
            .is_none();
        let mut between = self
            .readings
            .iter()
            .filter(|r| r.through > prev.through && r.through <= word.through)
            .peekable();
        let seen = between.peek().is_some();
        let stayed_low = between.all(|r| r.left + r.own < self.most);
        let shown_low = stayed_low && (below || (answered && seen));
        if !below && !answered {
            return;
        }
        self.earlier_refusal = None;
        if shown_low && refill > 0.0 {
            self.shown = Some(Shown {
                per_ns: refill / span as f64,
                from: prev.at,
                raises: false,
            });
        }
    }

    /// The rate a refusal showed (see [`Learner::refused`]), when the quota should take it
    /// over the limit `known` (units per minute) it paces at, if any. Two refusals show it
    /// only when it is well below: the limit was lowered (or another client took a share);
    /// nearer, it is as likely the noise of another client's use. A refusal and the reading
    /// before it show it either way, when it differs from `known` by more than 2 %. The
    /// readings from before the span that showed it are dropped, and the shown rate is the
    /// estimate until the readings since bound it higher.
    pub fn shown(&mut self, known: Option<u64>) -> Option<u64> {
        let shown = self.shown.take()?;
        let per_minute = shown.per_ns * 60e9;
        let take = known.is_none_or(|known| {
            let known = known as f64;
            if shown.raises {
                (per_minute - known).abs() * 50.0 > known
            } else {
                per_minute < known * LOWERED
            }
        });
        if !take {
            return None;
        }
        self.exact = Some(shown.per_ns);
        while self.readings.len() > 1 && self.readings.front().is_some_and(|r| r.at < shown.from) {
            self.readings.pop_front();
        }
        self.per_minute()
    }

    /// The request through unit `through` failed without an answer for itself (a 5xx, a
    /// reset): the provider may or may not have counted its `units`. The refill between two
    /// readings leaves them out (were they counted, the refill was larger: the estimate stays
    /// on the low side).
    pub fn uncertain(&mut self, through: u64, units: u64) {
        self.answered(through);
        if units > 0 {
            self.uncertain.insert(through, units);
        }
    }

    /// What the provider's bucket refilled between two readings as they read it (before any
    /// allowance for their floors): what `to` says more was left, plus the units admitted
    /// in between, less those the provider may not have counted.
    fn refill(&self, from: &Reading, to: &Reading) -> f64 {
        let unsure: u64 = if to.through > from.through {
            self.uncertain
                .range(from.through + 1..=to.through)
                .map(|(_, u)| *u)
                .sum()
        } else {
            0
        };
        let admitted = self
            .admitted_between(from.through, to.through)
            .saturating_sub(unsure);
        to.left as f64 - from.left as f64 + admitted as f64
    }

    /// Whether any answer has said what is left.
    pub fn has_readings(&self) -> bool {
        !self.readings.is_empty()
    }

    /// An answer to the request admitted at `at` (through unit `through`, costing `own`) said
    /// `left` units were left.
    pub fn observe(&mut self, at: Nanos, left: u64, through: u64, own: u64) {
        self.answered(through);
        self.most = self.most.max(left.saturating_add(own));
        let position = self.readings.partition_point(|r| r.at <= at);
        self.readings.insert(
            position,
            Reading {
                at,
                left,
                through,
                own,
            },
        );
        let newest = self.readings.back().map_or(at, |r| r.at);
        while self
            .readings
            .front()
            .is_some_and(|r| newest.saturating_sub(r.at) > KEEP)
        {
            self.readings.pop_front();
        }
        if let Some(first) = self.readings.iter().map(|r| r.through).min() {
            self.uncertain = self.uncertain.split_off(&first);
            self.void = self.void.split_off(&first);
        }
        self.rate_from_refusals();
        self.rate_from_reading();
        let replayed_from = self.readings.iter().map(|r| r.through).max().unwrap_or(0);
        while self
            .sent
            .front()
            .is_some_and(|(t, _, _)| *t <= replayed_from)
        {
            self.sent.pop_front();
        }
    }

    /// The most units seen at once: a lower bound of the burst.
    pub fn burst(&self) -> u64 {
        self.most.max(1)
    }

    /// Units that may still go before the next answer: what was last said to be left, less
    /// what was admitted after that request. When no answer is coming that could say more
    /// (nothing admitted since, or everything admitted since was answered without saying what
    /// was left), one request may go: its answer says more.
    pub fn budget(&self) -> i64 {
        let Some(last) = self.readings.iter().max_by_key(|r| r.through) else {
            return i64::MAX;
        };
        let awaited = self.pending.range(last.through.saturating_add(1)..).next();
        if self.admitted <= last.through || awaited.is_none() {
            return i64::MAX;
        }
        let since = self.admitted_between(last.through, self.admitted);
        i64::try_from(last.left).unwrap_or(i64::MAX) - i64::try_from(since).unwrap_or(i64::MAX)
    }

    /// When `cost` more units can be expected to be there, if the last answer's reading, less
    /// what went since, does not cover them: once the provider's refill, as the readings show
    /// it so far, has had time to bring them. Without it each request beyond what was left
    /// would wait for an answer to say more (one request in flight at a time), or, when none
    /// is awaited, go at once and be refused. The refill here is the readings' central
    /// estimate (what they say refilled over their whole span, no allowance for the floors),
    /// which errs either way by at most a unit over the span; [`Learner::per_minute`] is the
    /// bound the quota's cell takes once there is one. What went after the last reading is
    /// replayed, each request at the time it went, on a bucket that refills at that rate and
    /// holds no more than the most units ever seen at once: answers that take long to come
    /// must not let a burst go that the provider's bucket could never have held. `None`: no
    /// estimate yet, or nothing to wait for.
    pub fn refilled_at(&self, cost: u64) -> Option<Nanos> {
        let last = self.last_word()?;
        let awaited = self.pending.range(last.through.saturating_add(1)..).next();
        let since = if awaited.is_some() {
            self.admitted_between(last.through, self.admitted)
        } else {
            0
        };
        if cost.saturating_add(since) <= last.left {
            return None;
        }
        let per_ns = self.refill_rate()?;
        let (level, at) = self.replay(&last, per_ns, self.most.max(cost) as f64);
        let need = cost as f64 - level;
        if need <= 0.0 {
            return Some(at);
        }
        Some(at.saturating_add((need / per_ns) as Nanos))
    }

    /// The level at `now` the last word and what went since show, on a bucket that refills at
    /// the estimate ([`Learner::per_minute`], the low side) and holds no more than the most
    /// ever seen: where a bucket whose rate was just learned starts. `None` until a rate is
    /// known.
    pub fn level_at(&self, now: Nanos) -> Option<f64> {
        let last = self.last_word()?;
        let per_ns = self.per_minute()? as f64 / 60e9;
        let capacity = self.most.max(1) as f64;
        let (level, at) = self.replay(&last, per_ns, capacity);
        Some((level + per_ns * now.saturating_sub(at) as f64).min(capacity))
    }

    /// The newest word of the level: the answer to the latest request admitted, or a refusal
    /// after it.
    fn last_word(&self) -> Option<Reading> {
        let read = self.readings.iter().max_by_key(|r| r.through)?;
        Some(match self.refusal {
            Some(refusal) if refusal.through >= read.through => Reading {
                at: refusal.at.max(self.refusal_held),
                ..refusal
            },
            _ => *read,
        })
    }

    /// The refill the readings show over their whole span (their central estimate, no
    /// allowance for the floors), or the rate a refusal showed when that is higher, in units
    /// per nanosecond.
    fn refill_rate(&self) -> Option<f64> {
        match (self.central_rate(), self.exact) {
            (Some(c), Some(e)) => Some(c.max(e)),
            (c, e) => c.or(e),
        }
    }

    /// What the readings show refilled from the oldest to the newest, per nanosecond.
    fn central_rate(&self) -> Option<f64> {
        let oldest = self.readings.front()?;
        let newest = self.readings.back()?;
        let span = newest.at.checked_sub(oldest.at).filter(|s| *s > 0)?;
        let refill = self.refill(oldest, newest);
        (refill > 0.0).then(|| refill / span as f64)
    }

    /// The level right after the last request that went since `last` (while its answer is
    /// awaited), and when that was: each request at the time it went, on a bucket refilling
    /// at `per_ns` that holds no more than `capacity`.
    fn replay(&self, last: &Reading, per_ns: f64, capacity: f64) -> (f64, Nanos) {
        let mut level = last.left as f64;
        let mut at = last.at;
        let awaited = self.pending.range(last.through.saturating_add(1)..).next();
        if awaited.is_some() {
            for &(_, went, units) in self.sent.iter().filter(|(t, _, _)| *t > last.through) {
                let went = went.max(at);
                level = (level + per_ns * went.saturating_sub(at) as f64).min(capacity);
                level -= units as f64;
                at = went;
            }
        }
        (level, at)
    }

    /// Units per minute, once readings over a long enough span allow an estimate: the least
    /// rate the readings allow. Between two readings the bucket refilled by at least what the
    /// later one says more was left, plus what was admitted in between, less the two floors'
    /// unit each; a bucket that was full for part of the span refilled less than its rate, so
    /// the bound holds whether or not it ever was. Of all pairs ending at the newest reading,
    /// the highest bound is the estimate.
    pub fn per_minute(&self) -> Option<u64> {
        let mut best = self.exact.map(|per_ns| per_ns * 60e9);
        let Some(&newest) = self.readings.back() else {
            return best.map(|per_minute| per_minute.floor().max(1.0) as u64);
        };
        for r in self.readings.iter().rev().skip(1) {
            let span = newest.at.saturating_sub(r.at);
            let refill = self.refill(r, &newest);
            if span >= MIN_SPAN && refill - 2.0 >= MIN_REFILL {
                let per_minute = (refill - 2.0) * 60e9 / span as f64;
                best = Some(best.map_or(per_minute, |b| b.max(per_minute)));
            }
        }
        best.map(|per_minute| per_minute.floor().max(1.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Nanos = 1_000_000;

    /// A bucket of 5 that five requests at 0 ms emptied, each answer reading what was left.
    fn emptied_at_zero() -> Learner {
        let mut learner = Learner::default();
        for left in (0..5).rev() {
            let through = learner.admit(1, 0);
            learner.observe(0, left, through, 1);
        }
        learner
    }

    #[test]
    fn learns_the_rate_from_what_is_left_and_what_was_sent() {
        // A bucket of 5 refilling at 10/s: five requests empty it, then one every 100 ms
        // keeps it near empty.
        let mut learner = emptied_at_zero();
        assert_eq!(learner.budget(), i64::MAX);
        for k in 1..=40u64 {
            let through = learner.admit(1, 0);
            learner.observe(k * 100 * MS, 0, through, 1);
        }
        let per_minute = learner.per_minute().expect("an estimate");
        // 40 units over 4 s, less the two floors' unit each: 38 / 4 s.
        assert_eq!(per_minute, 570);
        assert_eq!(learner.burst(), 5);
    }

    #[test]
    fn an_answer_that_says_nothing_leaves_no_one_waiting_for_it() {
        let mut learner = Learner::default();
        let first = learner.admit(1, 0);
        learner.observe(0, 0, first, 1);
        // Two more went on an empty bucket: nothing may go until an answer says more.
        let second = learner.admit(1, 0);
        let third = learner.admit(1, 0);
        assert_eq!(learner.budget(), -2);
        // Both failed without a reading (a 503 the provider did not count): no answer is
        // coming, so one may go and ask.
        learner.answered(second);
        assert_eq!(learner.budget(), -2);
        learner.answered(third);
        assert_eq!(learner.budget(), i64::MAX);
        // The asker is out: the others wait for its answer.
        learner.admit(1, 0);
        assert_eq!(learner.budget(), -3);
    }

    #[test]
    fn a_request_beyond_what_was_left_waits_for_the_refill_the_readings_show() {
        // A bucket of 5 refilling at 10/s: five requests at 0 ms empty it (the last reads 0
        // left), one more goes at 100 ms and reads 0 left again: 1 unit refilled in 100 ms.
        let mut learner = emptied_at_zero();
        // One reading span only: no estimate, the budget decides.
        assert_eq!(learner.refilled_at(1), None);
        let through = learner.admit(1, 0);
        learner.observe(100 * MS, 0, through, 1);
        // Nothing in flight: the next unit is due 100 ms after the last request.
        assert_eq!(learner.refilled_at(1), Some(200 * MS));
        // One more in flight: two units must refill first.
        learner.admit(1, 0);
        assert_eq!(learner.refilled_at(1), Some(300 * MS));
        // What was left covers the cost: no wait.
        let mut full = Learner::default();
        let through = full.admit(1, 0);
        full.observe(0, 3, through, 1);
        assert_eq!(full.refilled_at(1), None);
    }

    #[test]
    fn what_went_since_the_last_reading_is_replayed_on_a_bucket_no_larger_than_ever_seen() {
        // A bucket of 5 refilling at 10/s: five requests at 0 ms empty it, one more at 100 ms
        // reads 0 left again. Then no answer comes for 10 s, and 20 requests go at 10 s:
        // a bucket that never held more than 5 had 5 for them, not the 99 that 10/s over
        // 9.9 s would bring, so the next waits for 16 units' refill after them (1.6 s).
        let mut learner = emptied_at_zero();
        let through = learner.admit(1, 100 * MS);
        learner.observe(100 * MS, 0, through, 1);
        for _ in 0..20 {
            learner.admit(1, 10_000 * MS);
        }
        assert_eq!(learner.refilled_at(1), Some(11_600 * MS));
        // Two requests that went 50 ms apart after the reading at 100 ms each took the half
        // unit refilled before it and half a unit more: one unit is owed at 200 ms, and the
        // next is due once two units have refilled, at 400 ms.
        let mut learner = emptied_at_zero();
        let through = learner.admit(1, 100 * MS);
        learner.observe(100 * MS, 0, through, 1);
        learner.admit(1, 150 * MS);
        learner.admit(1, 200 * MS);
        assert_eq!(learner.refilled_at(1), Some(400 * MS));
    }

    #[test]
    fn a_refusal_after_a_full_reading_shows_a_bucket_of_one_exactly() {
        // A bucket of 1 at 10/s: every answer reads 0 left, whether requests go every 100 ms
        // or every 150 ms, so the readings bound the rate only by what was sent.
        let mut learner = Learner::default();
        for k in 0..10u64 {
            let through = learner.admit(1, k * 150 * MS);
            learner.observe(k * 150 * MS, 0, through, 1);
        }
        let sent_rate = learner.per_minute().expect("an estimate");
        assert!(sent_rate <= 400, "{sent_rate}");
        // One goes 50 ms after the last and is refused: the unit is back 100 ms after the
        // last request, which found the bucket full (0 left after its own unit, the most ever
        // seen), written to the millisecond: 1 unit in 101 ms at most, 594/min.
        let refused = learner.admit(1, 1_400 * MS);
        learner.cancel(1, refused);
        learner.refused(1_450 * MS, 1_455 * MS, MS, refused - 1, 1);
        assert_eq!(learner.shown(Some(sent_rate)), Some(594));
        // Not while an earlier answer is awaited: the most seen may not be the bucket's size.
        let mut learner = Learner::default();
        let first = learner.admit(1, 0);
        let second = learner.admit(1, 100 * MS);
        learner.observe(100 * MS, 0, second, 1);
        let refused = learner.admit(1, 150 * MS);
        learner.cancel(1, refused);
        learner.refused(200 * MS, 205 * MS, MS, second, 1);
        assert_eq!(learner.shown(None), None);
        learner.observe(0, 4, first, 1);
        assert_eq!(learner.shown(None), None);
    }

    #[test]
    fn a_refused_request_keeps_its_numbers() {
        // Three go, the second is refused: the next request takes a new number, and the
        // refill between two readings counts the two that were charged, not three.
        let mut learner = Learner::default();
        let first = learner.admit(1, 0);
        let second = learner.admit(1, 0);
        let third = learner.admit(1, 0);
        learner.cancel(1, second);
        let fourth = learner.admit(1, 0);
        assert!(fourth > third);
        learner.observe(0, 3, first, 1);
        learner.observe(2_000 * MS, 2, fourth, 1);
        // 2 − 3 + 2 charged (the third and fourth), less the two floors' unit each: no
        // estimate (under the least refill counted); with the refused one counted it was 2.
        assert_eq!(
            learner.refill(&learner.readings[0], &learner.readings[1]),
            1.0
        );
        assert_eq!(learner.budget(), i64::MAX);
    }

    #[test]
    fn a_refusal_is_newer_word_than_the_readings() {
        let mut learner = emptied_at_zero();
        let through = learner.admit(1, 0);
        learner.observe(100 * MS, 0, through, 1);
        // The provider refused one and said a unit is back at 250 ms (the quota's pause
        // holds the next until then): the one after it waits for one more unit's refill.
        learner.refused(250 * MS, 250 * MS, MS, 6, 1);
        assert_eq!(learner.refilled_at(1), None);
        learner.admit(1, 0);
        assert_eq!(learner.refilled_at(1), Some(350 * MS));
    }

    #[test]
    fn two_refusals_show_a_lowered_limit_exactly() {
        // A bucket of 5 at 10/s kept near empty (one request every 100 ms, each reading 0
        // left) is paced at the 570/min its readings bound. Then the limit halves: a refusal
        // says one unit is back at 1,000 ms; one request goes then, and the next refusal says
        // a unit is back at 1,200 ms: one unit refilled in 200 ms, 300/min.
        let mut learner = emptied_at_zero();
        for k in 1..=9u64 {
            let through = learner.admit(1, k * 100 * MS);
            learner.observe(k * 100 * MS, 0, through, 1);
        }
        assert_eq!(learner.shown(Some(570)), None);
        learner.refused(1_000 * MS, 1_000 * MS, MS, 14, 1);
        let through = learner.admit(1, 1_000 * MS);
        learner.refused(1_200 * MS, 1_200 * MS, MS, through, 1);
        // The request in between has not answered, but one unit of refill on top of the one
        // unit there at 1,000 ms never filled a bucket seen to hold 5: the rate is shown.
        assert_eq!(learner.shown(Some(570)), Some(300));
        learner.observe(1_000 * MS, 0, through, 1);
        // The readings from before the change no longer raise the estimate.
        assert_eq!(learner.per_minute(), Some(300));

        // A bucket of 5 emptied, a refusal, one request that reads `left`, a refusal.
        let refused_around = |left: u64| {
            let mut learner = emptied_at_zero();
            learner.refused(1_000 * MS, 1_000 * MS, MS, 5, 1);
            let through = learner.admit(1, 1_000 * MS);
            learner.observe(1_000 * MS, left, through, 1);
            learner.refused(1_200 * MS, 1_200 * MS, MS, through, 1);
            learner
        };
        // The same two refusals while the pace is already near 300/min say nothing new.
        assert_eq!(refused_around(0).shown(Some(310)), None);
        // A reading in between shows the bucket may have filled: the refill is no rate.
        assert_eq!(refused_around(4).shown(Some(570)), None);
        assert_eq!(refused_around(0).shown(Some(570)), Some(300));
    }

    #[test]
    fn failures_the_provider_may_not_have_counted_do_not_raise_the_rate() {
        // A bucket at 10/s kept empty: one request every 100 ms, each reading 0 left, but
        // every fifth fails with a 503 the provider did not count (it says nothing). Counted
        // as admitted they would make the refill 12.5/s; left out, the estimate stays under
        // the true 10/s.
        let mut learner = Learner::default();
        for k in 0..50u64 {
            let through = learner.admit(1, 0);
            if k % 5 == 4 {
                learner.uncertain(through, 1);
            } else {
                learner.observe(k * 80 * MS, 0, through, 1);
            }
        }
        let per_minute = learner.per_minute().expect("an estimate");
        assert!(per_minute <= 600, "{per_minute}");
        assert!(per_minute >= 500, "{per_minute}");
    }

    #[test]
    fn a_bucket_never_drained_still_bounds_the_rate_from_below() {
        // A bucket of 5 refilling at 10/s, one request every 200 ms: every answer says the
        // bucket was full (4 left after the request). The readings only prove that 5/s
        // refilled; the estimate stays below the true 600/min and near what went.
        let mut learner = Learner::default();
        for k in 0..=15u64 {
            let through = learner.admit(1, 0);
            learner.observe(k * 200 * MS, 4, through, 1);
        }
        let per_minute = learner.per_minute().expect("an estimate");
        // 15 units over 3 s, less the two floors' unit each: 13 / 3 s.
        assert_eq!(per_minute, 260);
        assert!(per_minute < 600);
    }

    #[test]
    fn budget_is_what_was_left_less_what_went_since() {
        let mut learner = Learner::default();
        let first = learner.admit(1, 0);
        learner.admit(1, 0);
        learner.admit(1, 0);
        learner.observe(0, 4, first, 1);
        assert_eq!(learner.budget(), 2);
        // nothing went after the latest answer's request: one more may go and ask.
        let last = learner.admit(0, 1);
        learner.observe(1, 0, last, 1);
        assert_eq!(learner.budget(), i64::MAX);
        assert_eq!(learner.per_minute(), None);
    }
}

//! Counters of the simulated provider, per key and in total (`GET /_mock/stats`).
//!
//! It counts what it is told: it knows no HTTP, buckets or answers.

use crate::faults::Fault;
use crate::slots::SlotStats;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// How many seconds of per-second admission counts are kept.
pub const PER_SECOND_WINDOW: u64 = 600;

/// How many of a key's admissions beyond the limit are kept with their time.
pub const BEYOND_KEPT: usize = 32;

/// Faults injected, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultCounts {
    /// HTTP 500 answers.
    pub fail_500: u64,
    /// HTTP 503 answers.
    pub fail_503: u64,
    /// HTTP 529 answers.
    pub fail_529: u64,
    /// Connections closed without a response.
    pub reset: u64,
    /// Bodies cut short.
    pub truncate: u64,
    /// Responses held.
    pub stall: u64,
}

impl FaultCounts {
    fn add(&mut self, other: &Self) {
        self.fail_500 += other.fail_500;
        self.fail_503 += other.fail_503;
        self.fail_529 += other.fail_529;
        self.reset += other.reset;
        self.truncate += other.truncate;
        self.stall += other.stall;
    }
}

/// Counters of one key (or the totals over all keys).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyStats {
    /// Requests that reached this key (any outcome).
    pub requests: u64,
    /// Complete successful answers.
    pub ok: u64,
    /// 429 rate-limit refusals (including "Request too large").
    pub rate_limited: u64,
    /// 429 / 400 out-of-credit refusals.
    pub insufficient_quota: u64,
    /// 401 refusals.
    pub unauthorized: u64,
    /// Injected faults.
    pub faults: FaultCounts,
    /// Tokens charged to the token bucket (admission charge, less refunds).
    pub tokens_charged: u64,
    /// Prompt tokens of answered requests.
    pub prompt_tokens: u64,
    /// Completion tokens of answered requests.
    pub completion_tokens: u64,
    /// Requests admitted although the limits would have refused them (`--soft-limits`).
    pub admitted_beyond_limit: u64,
    /// The first [`BEYOND_KEPT`] of those: `[unix_millisecond, early_by_microseconds]`, how long
    /// before the limits would have admitted it each one came (which request overshot, and by
    /// how much).
    #[serde(default)]
    pub beyond_limit: Vec<[u64; 2]>,
    /// `[unix_second, admitted]` for the last 600 seconds with admissions.
    pub per_second: VecDeque<(u64, u64)>,
}

impl KeyStats {
    /// Count one injected fault.
    pub fn fault(&mut self, fault: Fault) {
        let f = &mut self.faults;
        match fault {
            Fault::Fail500 => f.fail_500 += 1,
            Fault::Fail503 => f.fail_503 += 1,
            Fault::Fail529 => f.fail_529 += 1,
            Fault::Reset => f.reset += 1,
            Fault::Truncate => f.truncate += 1,
            Fault::Stall => f.stall += 1,
        }
    }

    /// Count one admission beyond the limits, at `unix_ms`, `early_us` before they allowed it.
    pub fn beyond(&mut self, unix_ms: u64, early_us: u64) {
        self.admitted_beyond_limit += 1;
        if self.beyond_limit.len() < BEYOND_KEPT {
            self.beyond_limit.push([unix_ms, early_us]);
        }
        self.admitted_at(unix_ms / 1000);
    }

    /// Count one admission in `unix_second`, keeping only the last [`PER_SECOND_WINDOW`] seconds.
    pub fn admitted_at(&mut self, unix_second: u64) {
        match self.per_second.back_mut() {
            Some((sec, n)) if *sec == unix_second => *n += 1,
            Some((sec, _)) if *sec > unix_second => {
                // The clock stepped back: count it in the latest second.
                if let Some((_, n)) = self.per_second.back_mut() {
                    *n += 1;
                }
            }
            _ => self.per_second.push_back((unix_second, 1)),
        }
        let oldest = unix_second.saturating_sub(PER_SECOND_WINDOW - 1);
        while self
            .per_second
            .front()
            .is_some_and(|(sec, _)| *sec < oldest)
        {
            self.per_second.pop_front();
        }
    }

    fn add(&mut self, other: &Self) {
        self.requests += other.requests;
        self.ok += other.ok;
        self.rate_limited += other.rate_limited;
        self.insufficient_quota += other.insufficient_quota;
        self.unauthorized += other.unauthorized;
        self.faults.add(&other.faults);
        self.tokens_charged += other.tokens_charged;
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.admitted_beyond_limit += other.admitted_beyond_limit;
        self.beyond_limit.extend_from_slice(&other.beyond_limit);
        self.beyond_limit.sort_unstable();
        self.beyond_limit.truncate(BEYOND_KEPT);
        let mut merged: BTreeMap<u64, u64> = self.per_second.iter().copied().collect();
        for (sec, n) in &other.per_second {
            *merged.entry(*sec).or_default() += n;
        }
        self.per_second = merged.into_iter().collect();
    }
}

/// What `GET /_mock/stats` returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    /// Per key: the declared name, or the first 8 hex digits of the key's SHA-256, or
    /// `anonymous` (no key sent), or `unknown` (401s for undeclared keys).
    pub keys: BTreeMap<String, KeyStats>,
    /// All keys summed.
    pub totals: KeyStats,
    /// The slots and their queue (`--slots`; absent without).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<SlotStats>,
    /// The Batch APIs' counters.
    #[serde(default)]
    pub batches: BatchStats,
}

/// Counters of the Batch APIs (`GET /_mock/stats`, under `batches`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchStats {
    /// Files uploaded.
    pub files_uploaded: u64,
    /// Batches created (OpenAI and Anthropic; refused ones included).
    pub batches_created: u64,
    /// OpenAI batches that failed for the enqueued-token limit.
    pub refused_enqueued: u64,
    /// Anthropic creations refused (429) for the processing queue.
    pub refused_queue: u64,
    /// Batches cancelled.
    pub cancelled: u64,
}

impl StatsSnapshot {
    /// Build a snapshot (with totals) from per-key counters.
    pub fn from_keys(keys: BTreeMap<String, KeyStats>) -> Self {
        let mut totals = KeyStats::default();
        for stats in keys.values() {
            totals.add(stats);
        }
        let oldest = totals
            .per_second
            .back()
            .map_or(0, |(sec, _)| sec.saturating_sub(PER_SECOND_WINDOW - 1));
        totals.per_second.retain(|(sec, _)| *sec >= oldest);
        Self {
            keys,
            totals,
            slots: None,
            batches: BatchStats::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_second_window_is_bounded() {
        let mut s = KeyStats::default();
        for sec in 1_000..3_000 {
            s.admitted_at(sec);
            s.admitted_at(sec);
        }
        assert_eq!(s.per_second.len() as u64, PER_SECOND_WINDOW);
        assert_eq!(s.per_second.back(), Some(&(2_999, 2)));
        assert_eq!(s.per_second.front(), Some(&(2_400, 2)));
        s.admitted_at(2_998);
        assert_eq!(s.per_second.back(), Some(&(2_999, 3)));
    }

    #[test]
    fn totals_sum_keys() {
        let mut a = KeyStats {
            requests: 2,
            ok: 1,
            ..KeyStats::default()
        };
        a.admitted_at(10);
        let mut b = KeyStats {
            requests: 3,
            ..KeyStats::default()
        };
        b.admitted_at(10);
        b.admitted_at(11);
        b.fault(Fault::Reset);
        let snap = StatsSnapshot::from_keys([("a".into(), a), ("b".into(), b)].into());
        assert_eq!(snap.totals.requests, 5);
        assert_eq!(snap.totals.faults.reset, 1);
        assert_eq!(snap.totals.per_second, VecDeque::from([(10, 2), (11, 1)]));
    }
}

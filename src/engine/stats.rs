//! Live counters of a run, read by the progress display and the final summary.
//!
//! It counts what it is told (codes and causes as labels) and must not know who shows the counts.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters shared by the engine and whoever displays its progress.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests known to the run (set by the input side).
    pub total: AtomicU64,
    /// Requests that succeeded.
    pub succeeded: AtomicU64,
    /// Requests that failed for good.
    pub failed: AtomicU64,
    /// Attempts sent.
    pub attempts: AtomicU64,
    /// Attempts that will be retried.
    pub retries: AtomicU64,
    /// 429 answers received, whatever their body says (rate limit or `insufficient_quota`).
    pub rate_limited: AtomicU64,
    /// Prompt tokens the provider reported.
    pub prompt_tokens: AtomicU64,
    /// Completion tokens the provider reported.
    pub completion_tokens: AtomicU64,
    /// Tokens admitted (what the quota was charged) for completed attempts.
    pub tokens_charged: AtomicU64,
    failures: Mutex<BTreeMap<String, u64>>,
    causes: Mutex<BTreeMap<String, u64>>,
}

fn bump(map: &Mutex<BTreeMap<String, u64>>, key: &str) {
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    *map.entry(key.to_string()).or_default() += 1;
}

impl Stats {
    /// Add one to a counter.
    pub fn incr(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Read a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Count a final failure by its error code.
    pub fn record_failure(&self, code: &str) {
        Self::incr(&self.failed);
        bump(&self.failures, code);
    }

    /// Count a retry by its cause label.
    pub fn record_retry(&self, cause: &str) {
        Self::incr(&self.retries);
        bump(&self.causes, cause);
    }

    /// Final failures by error code.
    pub fn failures_by_code(&self) -> BTreeMap<String, u64> {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Retries by cause.
    pub fn retries_by_cause(&self) -> BTreeMap<String, u64> {
        self.causes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Requests finished either way.
    pub fn finished(&self) -> u64 {
        Self::get(&self.succeeded) + Self::get(&self.failed)
    }
}

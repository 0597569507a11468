//! The report's figures, read from a job's state into one serializable model. The HTML page
//! draws it and embeds it whole as JSON, so tests (and scripts) read the figures, not pixels.
//!
//! It reads the state and never writes it, and must not know how the model is drawn.

use crate::retry::Failure;
use crate::store::keys::{self, KeyLimit, KeyRemoval};
use crate::store::report::{self, JobStatus};
use crate::store::results;
use crate::store::state::RequestState;
use crate::store::{Store, StoreError};
use rusqlite::params;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Version of the embedded data's shape.
pub const DATA_VERSION: u32 = 1;

/// At most this many time bins per chart.
const MAX_BINS: i64 = 240;

/// Bin widths to choose from, in milliseconds.
const BIN_WIDTHS_MS: &[i64] = &[
    1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 900_000,
    1_800_000, 3_600_000, 7_200_000, 21_600_000, 43_200_000, 86_400_000,
];

/// Upper edges of the latency histogram's buckets, in milliseconds (the last bucket is open).
pub const LATENCY_EDGES_MS: &[u64] = &[
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000,
];

/// Rows kept in the failures table.
pub const MAX_FAILURES: usize = 500;

/// Rows kept in the slowest-requests table.
pub const MAX_SLOWEST: usize = 20;

/// Everything the report shows.
#[derive(Debug, Clone, Serialize)]
pub struct ReportData {
    /// [`DATA_VERSION`].
    pub version: u32,
    /// The job's progress and totals, as `paceline status --json` shows them.
    pub job: JobStatus,
    /// Totals over every attempt of every run.
    pub totals: Totals,
    /// Figures over time.
    pub series: Series,
    /// The limits in force at the end of the latest run that recorded any, summed over keys.
    pub limits: Limits,
    /// Attempt latency histogram.
    pub latency_histogram: Histogram,
    /// Per key: traffic, 429s, pauses, removal, limits.
    pub keys: Vec<KeyFigures>,
    /// Final failures, in input order (at most [`MAX_FAILURES`]).
    pub failures: Vec<FailureRow>,
    /// Final failures in all (the table may hold fewer).
    pub failures_total: u64,
    /// Final failures of requests never sent (refused before any attempt: too large for the
    /// limit, no route, past their deadline), by code: no attempt puts them in the series.
    pub unsent_failures: BTreeMap<String, u64>,
    /// The slowest attempts (at most [`MAX_SLOWEST`]).
    pub slowest: Vec<SlowRow>,
}

/// Totals over every attempt.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    /// Attempts sent.
    pub attempts: u64,
    /// 429 answers.
    pub rate_limited: u64,
    /// Attempts followed by a retry (on the same or another key).
    pub retries: u64,
    /// Attempts that ended their request in failure.
    pub final_failures: u64,
    /// Attempts that succeeded.
    pub succeeded: u64,
    /// Tokens the quota was charged, when the state records them.
    pub tokens: Option<u64>,
    /// First attempt sent (ms since the epoch).
    pub start_ms: Option<i64>,
    /// Last attempt ended (ms since the epoch).
    pub end_ms: Option<i64>,
    /// Latency percentiles over all attempts (ms).
    pub latency_p50_ms: Option<u64>,
    /// 90th percentile.
    pub latency_p90_ms: Option<u64>,
    /// 99th percentile.
    pub latency_p99_ms: Option<u64>,
    /// Most attempts in flight at once.
    pub peak_in_flight: u64,
}

/// Figures over time, one value per bin; bin `i` starts `i × bin_ms` after `start_ms`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Series {
    /// Start of the first bin (ms since the epoch).
    pub start_ms: i64,
    /// Width of a bin.
    pub bin_ms: i64,
    /// Attempts sent per second.
    pub requests_per_s: Vec<f64>,
    /// Attempts sent per second, per key fingerprint.
    pub requests_per_s_by_key: BTreeMap<String, Vec<f64>>,
    /// Tokens charged per minute (`None` for states that do not record them).
    pub tokens_per_min: Option<Vec<f64>>,
    /// 429 answers received per bin (counted when they arrived).
    pub rate_limited: Vec<u64>,
    /// Retries per bin, by cause.
    pub retries_by_cause: BTreeMap<String, Vec<u64>>,
    /// Final failures per bin, by error code.
    pub failures_by_code: BTreeMap<String, Vec<u64>>,
    /// Median latency of the attempts that ended in the bin (ms).
    pub latency_p50_ms: Vec<Option<u64>>,
    /// 90th percentile.
    pub latency_p90_ms: Vec<Option<u64>>,
    /// 99th percentile.
    pub latency_p99_ms: Vec<Option<u64>>,
    /// Mean attempts in flight over the bin.
    pub in_flight: Vec<f64>,
}

/// Limits summed over keys (each key at its largest per-model limit).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Limits {
    /// Requests per minute.
    pub requests_per_min: Option<u64>,
    /// Tokens per minute.
    pub tokens_per_min: Option<u64>,
    /// Whether every summed limit was configured (else some were learned).
    pub configured: bool,
}

/// A histogram: `counts[i]` attempts took at most `edges_ms[i]` (and more than the edge
/// before); the last count is above the last edge.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Histogram {
    /// Upper edges (ms).
    pub edges_ms: Vec<u64>,
    /// Counts, one more than the edges.
    pub counts: Vec<u64>,
}

/// One key's figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KeyFigures {
    /// Fingerprint (`ENV#1a2b3c4d`); never the key.
    pub key: String,
    /// Attempts sent with it.
    pub attempts: u64,
    /// Its share of all attempts (0–1).
    pub share: f64,
    /// 429s it received (each paused its quota).
    pub rate_limited: u64,
    /// Attempts that waited for a pause of its quota.
    pub paused_attempts: u64,
    /// Tokens the quota reserved on it for its attempts (the admission charge).
    pub tokens: Option<u64>,
    /// Tokens used through it: the provider's usage of the requests it answered.
    pub tokens_used: u64,
    /// Requests per minute in force at the end of its latest run.
    pub requests_per_min: Option<u64>,
    /// Tokens per minute in force at the end of its latest run.
    pub tokens_per_min: Option<u64>,
    /// Whether those limits were configured (else learned).
    pub configured: bool,
    /// Why it was taken out of rotation, if it was.
    pub removed: Option<String>,
    /// When (its last attempt's end, ms since the epoch).
    pub removed_at: Option<i64>,
}

/// A request that failed for good.
#[derive(Debug, Clone, Serialize)]
pub struct FailureRow {
    /// Its id.
    pub custom_id: String,
    /// How it failed (serialized as its code).
    pub code: Failure,
    /// The error message.
    pub message: String,
    /// Attempts made.
    pub attempts: u64,
}

/// One of the slowest attempts.
#[derive(Debug, Clone, Serialize)]
pub struct SlowRow {
    /// The request.
    pub custom_id: String,
    /// Which attempt.
    pub attempt: u32,
    /// Latency (ms).
    pub latency_ms: u64,
    /// HTTP status, if an answer came.
    pub status: Option<u16>,
    /// Key fingerprint.
    pub key: String,
    /// When it was sent (ms since the epoch).
    pub sent_at: i64,
}

/// One attempt as the report needs it.
struct Row {
    sent: i64,
    ended: i64,
    key: usize,
    status: Option<u16>,
    latency: u64,
    paused: bool,
    cause: Option<Arc<str>>,
    decision: Decided,
    tokens: Option<u64>,
}

/// An attempt's stored decision, as the report counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decided {
    Succeeded,
    /// `retry` or `retry_other_key`.
    Retry,
    /// Ended the request in failure (`failed`).
    Failed,
    /// Attempts ran out (`give_up`).
    GaveUp,
    Other,
}

impl Decided {
    fn of(stored: &str) -> Self {
        match stored {
            "succeeded" => Decided::Succeeded,
            "retry" | "retry_other_key" => Decided::Retry,
            "failed" => Decided::Failed,
            "give_up" => Decided::GaveUp,
            _ => Decided::Other,
        }
    }

    fn is_final_failure(self) -> bool {
        matches!(self, Decided::Failed | Decided::GaveUp)
    }
}

/// Whether the attempts table has the `tokens` column (states before schema 2 do not).
fn has_tokens(store: &Store) -> Result<bool, StoreError> {
    store
        .conn()
        .query_row(
            "SELECT count(*) FROM pragma_table_info('attempts') WHERE name = 'tokens'",
            [],
            |row| row.get::<_, i64>(0),
        )
        .map(|n| n > 0)
        .map_err(|e| store.err("read", e))
}

/// Read every attempt; key fingerprints are interned into `keys`.
fn attempts(store: &Store, keys: &mut Vec<String>) -> Result<Vec<Row>, StoreError> {
    let read = |e| store.err("read", e);
    let tokens = if has_tokens(store)? { "tokens" } else { "NULL" };
    let sql = format!(
        "SELECT ended_at, latency_ms, key, status, paused, cause, decision, {tokens}
         FROM attempts ORDER BY ended_at"
    );
    let mut stmt = store.conn().prepare(&sql).map_err(read)?;
    let mut rows = stmt.query([]).map_err(read)?;
    let mut out = Vec::new();
    let mut causes: HashMap<String, Arc<str>> = HashMap::new();
    while let Some(row) = rows.next().map_err(read)? {
        let ended: i64 = row.get(0).map_err(read)?;
        let latency: i64 = row.get(1).map_err(read)?;
        let key = row
            .get_ref(2)
            .map_err(read)?
            .as_str()
            .map_err(|e| read(e.into()))?;
        let key = match keys.iter().position(|k| k == key) {
            Some(i) => i,
            None => {
                keys.push(key.to_string());
                keys.len() - 1
            }
        };
        out.push(Row {
            sent: ended - latency,
            ended,
            key,
            status: row
                .get::<_, Option<i64>>(3)
                .map_err(read)?
                .map(|s| s as u16),
            latency: latency.max(0) as u64,
            paused: row.get(4).map_err(read)?,
            cause: row
                .get_ref(5)
                .map_err(read)?
                .as_str_or_null()
                .map_err(|e| read(e.into()))?
                .map(|c| intern(&mut causes, c)),
            decision: Decided::of(
                row.get_ref(6)
                    .map_err(read)?
                    .as_str()
                    .map_err(|e| read(e.into()))?,
            ),
            tokens: row
                .get::<_, Option<i64>>(7)
                .map_err(read)?
                .map(|t| t.max(0) as u64),
        });
    }
    Ok(out)
}

/// The shared copy of a cause label.
fn intern(causes: &mut HashMap<String, Arc<str>>, cause: &str) -> Arc<str> {
    if let Some(shared) = causes.get(cause) {
        return Arc::clone(shared);
    }
    let shared: Arc<str> = cause.into();
    causes.insert(cause.to_string(), Arc::clone(&shared));
    shared
}

/// The `p`-th percentile (0–100) of sorted values.
fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// The bin width for a span: the smallest that needs at most [`MAX_BINS`] bins.
fn bin_width(span_ms: i64) -> i64 {
    BIN_WIDTHS_MS
        .iter()
        .copied()
        .find(|w| span_ms / w < MAX_BINS)
        .unwrap_or_else(|| span_ms / MAX_BINS + 1)
}

/// Read the report's figures from the state in `store`.
pub fn load(store: &Store) -> Result<ReportData, StoreError> {
    let job = report::job_status(store)?;
    let mut key_names = Vec::new();
    let rows = attempts(store, &mut key_names)?;
    let (limits, removals) = keys::load(store)?;
    let token_data = rows.iter().any(|r| r.tokens.is_some());

    let start = rows.iter().map(|r| r.sent).min();
    let end = rows.iter().map(|r| r.ended).max();
    let mut totals = Totals {
        start_ms: start,
        end_ms: end,
        ..Totals::default()
    };
    let series = match (start, end) {
        (Some(start), Some(end)) => series(&rows, &key_names, start, end, token_data),
        _ => Series {
            bin_ms: 1_000,
            ..Series::default()
        },
    };
    let mut latencies: Vec<u64> = rows.iter().map(|r| r.latency).collect();
    latencies.sort_unstable();
    totals.latency_p50_ms = percentile(&latencies, 50.0);
    totals.latency_p90_ms = percentile(&latencies, 90.0);
    totals.latency_p99_ms = percentile(&latencies, 99.0);
    let mut histogram = Histogram {
        edges_ms: LATENCY_EDGES_MS.to_vec(),
        counts: vec![0; LATENCY_EDGES_MS.len() + 1],
    };
    for r in &rows {
        let bucket = LATENCY_EDGES_MS.partition_point(|edge| *edge < r.latency);
        histogram.counts[bucket] += 1;
        totals.attempts += 1;
        totals.rate_limited += u64::from(r.status == Some(429));
        totals.retries += u64::from(r.decision == Decided::Retry);
        totals.final_failures += u64::from(r.decision.is_final_failure());
        totals.succeeded += u64::from(r.decision == Decided::Succeeded);
        if let Some(t) = r.tokens {
            *totals.tokens.get_or_insert(0) += t;
        }
    }
    totals.peak_in_flight = peak_in_flight(&rows);
    let mut key_figures = key_figures(&rows, &key_names, &limits, &removals, token_data);
    let used = tokens_used_by_key(store)?;
    for k in &mut key_figures {
        k.tokens_used = used.get(&k.key).copied().unwrap_or(0);
    }
    let limits = total_limits(&limits);
    let (failures, failures_total) = failures(store)?;
    let unsent_failures = unsent_failures(store)?;
    let slowest = slowest(store)?;
    Ok(ReportData {
        version: DATA_VERSION,
        job,
        totals,
        series,
        limits,
        latency_histogram: histogram,
        keys: key_figures,
        failures,
        failures_total,
        unsent_failures,
        slowest,
    })
}

/// Tokens used per key: the provider's usage of each request, on the key of the attempt that
/// succeeded.
fn tokens_used_by_key(store: &Store) -> Result<BTreeMap<String, u64>, StoreError> {
    let read = |e| store.err("read", e);
    let conn = store.conn();
    let mut stmt = conn
        .prepare(
            "SELECT a.key, sum(r.prompt_tokens + r.completion_tokens)
             FROM attempts a JOIN requests r ON r.id = a.request_id
             WHERE a.decision = 'succeeded' GROUP BY a.key",
        )
        .map_err(read)?;
    let rows = stmt
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })
        .map_err(read)?;
    let mut out = BTreeMap::new();
    for row in rows {
        let (key, tokens) = row.map_err(read)?;
        out.insert(key, tokens.max(0) as u64);
    }
    Ok(out)
}

fn series(rows: &[Row], keys: &[String], start: i64, end: i64, token_data: bool) -> Series {
    let bin = bin_width(end - start);
    let n = ((end - start) / bin + 1) as usize;
    let index = |t: i64| (((t - start) / bin).max(0) as usize).min(n - 1);
    let secs = bin as f64 / 1000.0;
    let mut sent = vec![0u64; n];
    let mut sent_by_key = vec![vec![0u64; n]; keys.len()];
    let mut tokens = vec![0u64; n];
    let mut rate_limited = vec![0u64; n];
    let mut retries: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut failures: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut latencies: Vec<Vec<u64>> = vec![Vec::new(); n];
    let mut busy_ms = vec![0f64; n];
    for r in rows {
        let s = index(r.sent);
        sent[s] += 1;
        sent_by_key[r.key][s] += 1;
        tokens[s] += r.tokens.unwrap_or(0);
        let e = index(r.ended);
        rate_limited[e] += u64::from(r.status == Some(429));
        let cause = || r.cause.as_deref().unwrap_or("unknown").to_string();
        if r.decision == Decided::Retry {
            retries.entry(cause()).or_insert_with(|| vec![0; n])[e] += 1;
        } else if r.decision.is_final_failure() {
            let code = if r.decision == Decided::GaveUp {
                Failure::MaxAttemptsExceeded.to_string()
            } else {
                cause()
            };
            failures.entry(code).or_insert_with(|| vec![0; n])[e] += 1;
        }
        latencies[e].push(r.latency);
        // Spread the attempt's time in flight over the bins it covers.
        for (b, busy) in busy_ms.iter_mut().enumerate().take(e + 1).skip(s) {
            let lo = start + b as i64 * bin;
            let overlap = r.ended.min(lo + bin) - r.sent.max(lo);
            *busy += overlap.max(0) as f64;
        }
    }
    let mut p50 = Vec::with_capacity(n);
    let mut p90 = Vec::with_capacity(n);
    let mut p99 = Vec::with_capacity(n);
    for mut l in latencies {
        l.sort_unstable();
        p50.push(percentile(&l, 50.0));
        p90.push(percentile(&l, 90.0));
        p99.push(percentile(&l, 99.0));
    }
    let per_s = |v: &[u64]| {
        v.iter()
            .map(|c| round2(*c as f64 / secs))
            .collect::<Vec<_>>()
    };
    Series {
        start_ms: start,
        bin_ms: bin,
        requests_per_s: per_s(&sent),
        requests_per_s_by_key: keys
            .iter()
            .cloned()
            .zip(sent_by_key.iter().map(|v| per_s(v)))
            .collect(),
        tokens_per_min: token_data.then(|| {
            tokens
                .iter()
                .map(|t| round2(*t as f64 / secs * 60.0))
                .collect()
        }),
        rate_limited,
        retries_by_cause: retries,
        failures_by_code: failures,
        latency_p50_ms: p50,
        latency_p90_ms: p90,
        latency_p99_ms: p99,
        in_flight: busy_ms.iter().map(|b| round2(b / bin as f64)).collect(),
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Most attempts in flight at once (an attempt ending at the instant another starts does not
/// overlap it).
fn peak_in_flight(rows: &[Row]) -> u64 {
    let mut edges: Vec<(i64, i64)> = Vec::with_capacity(rows.len() * 2);
    for r in rows {
        edges.push((r.sent, 1));
        edges.push((r.ended.max(r.sent), -1));
    }
    edges.sort_unstable();
    let (mut now, mut peak) = (0i64, 0i64);
    for (_, delta) in edges {
        now += delta;
        peak = peak.max(now);
    }
    peak as u64
}

/// The limits of each key in its latest recorded run: (requests/min, tokens/min, configured),
/// each dimension at its largest per-model limit.
fn latest_limits(limits: &[KeyLimit]) -> BTreeMap<String, (Option<u64>, Option<u64>, bool)> {
    let mut latest_run: BTreeMap<&str, i64> = BTreeMap::new();
    for l in limits {
        let run = latest_run.entry(&l.key).or_insert(l.run);
        *run = (*run).max(l.run);
    }
    let mut out: BTreeMap<String, (Option<u64>, Option<u64>, bool)> = BTreeMap::new();
    for l in limits
        .iter()
        .filter(|l| latest_run.get(l.key.as_str()) == Some(&l.run))
    {
        let entry = out.entry(l.key.clone()).or_insert((None, None, true));
        let slot = match l.dimension.as_str() {
            "requests" => &mut entry.0,
            "tokens" => &mut entry.1,
            _ => continue,
        };
        *slot = Some(slot.map_or(l.per_minute, |v| v.max(l.per_minute)));
        entry.2 &= l.configured;
    }
    out
}

fn total_limits(limits: &[KeyLimit]) -> Limits {
    let mut total = Limits {
        configured: true,
        ..Limits::default()
    };
    let mut any = false;
    for (rpm, tpm, configured) in latest_limits(limits).into_values() {
        any = true;
        if let Some(r) = rpm {
            *total.requests_per_min.get_or_insert(0) += r;
        }
        if let Some(t) = tpm {
            *total.tokens_per_min.get_or_insert(0) += t;
        }
        total.configured &= configured;
    }
    total.configured &= any;
    total
}

fn key_figures(
    rows: &[Row],
    names: &[String],
    limits: &[KeyLimit],
    removals: &[KeyRemoval],
    token_data: bool,
) -> Vec<KeyFigures> {
    let mut figures: Vec<KeyFigures> = names
        .iter()
        .map(|key| KeyFigures {
            key: key.clone(),
            tokens: token_data.then_some(0),
            tokens_used: 0,
            ..KeyFigures::default()
        })
        .collect();
    let mut last_end = vec![0i64; names.len()];
    for r in rows {
        let f = &mut figures[r.key];
        f.attempts += 1;
        f.rate_limited += u64::from(r.status == Some(429));
        f.paused_attempts += u64::from(r.paused);
        if let (Some(total), Some(t)) = (f.tokens.as_mut(), r.tokens) {
            *total += t;
        }
        last_end[r.key] = last_end[r.key].max(r.ended);
    }
    let all = rows.len().max(1) as f64;
    let latest = latest_limits(limits);
    for (i, f) in figures.iter_mut().enumerate() {
        f.share = f.attempts as f64 / all;
        if let Some((rpm, tpm, configured)) = latest.get(&f.key) {
            f.requests_per_min = *rpm;
            f.tokens_per_min = *tpm;
            f.configured = *configured;
        }
        if let Some(removal) = removals.iter().rev().find(|r| r.key == f.key) {
            f.removed = Some(removal.reason.clone());
            f.removed_at = Some(last_end[i]);
        }
    }
    // Keys known only from the limits or removals (they sent nothing).
    for key in latest.keys() {
        if !figures.iter().any(|f| f.key == *key) {
            let (rpm, tpm, configured) = latest[key];
            figures.push(KeyFigures {
                key: key.clone(),
                requests_per_min: rpm,
                tokens_per_min: tpm,
                configured,
                removed: removals
                    .iter()
                    .rev()
                    .find(|r| r.key == *key)
                    .map(|r| r.reason.clone()),
                ..KeyFigures::default()
            });
        }
    }
    figures.sort_by(|a, b| b.attempts.cmp(&a.attempts).then(a.key.cmp(&b.key)));
    figures
}

/// The final failures in input order, with the message from each one's output line.
/// Failed requests that never had an attempt, counted by code.
fn unsent_failures(store: &Store) -> Result<BTreeMap<String, u64>, StoreError> {
    let read = |e| store.err("read", e);
    let conn = store.conn();
    let mut stmt = conn
        .prepare(
            "SELECT coalesce(error_code, 'unknown'), count(*) FROM requests
             WHERE state = ?1 AND attempts = 0 GROUP BY 1",
        )
        .map_err(read)?;
    let rows = stmt
        .query_map(params![RequestState::Failed.code()], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })
        .map_err(read)?;
    let mut out = BTreeMap::new();
    for row in rows {
        let (code, count) = row.map_err(read)?;
        out.insert(code, u64::try_from(count).unwrap_or(0));
    }
    Ok(out)
}

fn failures(store: &Store) -> Result<(Vec<FailureRow>, u64), StoreError> {
    let read = |e| store.err("read", e);
    let conn = store.conn();
    let total: i64 = conn
        .query_row(
            "SELECT count(*) FROM requests WHERE state = ?1",
            params![RequestState::Failed.code()],
            |row| row.get(0),
        )
        .map_err(read)?;
    let mut stmt = conn
        .prepare(
            "SELECT custom_id, coalesce(error_code, 'unknown'), attempts, result_seq
             FROM requests WHERE state = ?1 ORDER BY line LIMIT ?2",
        )
        .map_err(read)?;
    let rows = stmt
        .query_map(
            params![RequestState::Failed.code(), MAX_FAILURES as i64],
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, Option<i64>>(3)?,
                ))
            },
        )
        .map_err(read)?;
    let mut out = Vec::new();
    for row in rows {
        let (custom_id, code, attempts, seq) = row.map_err(read)?;
        let line = match seq {
            Some(seq) => results::line(store, seq)?,
            None => None,
        };
        let message = line
            .and_then(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
            .and_then(|v| {
                v.pointer("/error/message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_default();
        out.push(FailureRow {
            custom_id,
            code: Failure::from(code.as_str()),
            message,
            attempts: attempts.max(0) as u64,
        });
    }
    Ok((out, total.max(0) as u64))
}

/// The slowest attempts, slowest first.
fn slowest(store: &Store) -> Result<Vec<SlowRow>, StoreError> {
    let read = |e| store.err("read", e);
    let mut stmt = store
        .conn()
        .prepare(
            "SELECT r.custom_id, a.attempt, a.latency_ms, a.status, a.key, a.ended_at
             FROM attempts a JOIN requests r ON r.id = a.request_id
             ORDER BY a.latency_ms DESC, a.ended_at LIMIT ?1",
        )
        .map_err(read)?;
    let rows = stmt
        .query_map(params![MAX_SLOWEST as i64], |row| {
            let latency: i64 = row.get(2)?;
            Ok(SlowRow {
                custom_id: row.get(0)?,
                attempt: row.get::<_, i64>(1)? as u32,
                latency_ms: latency.max(0) as u64,
                status: row.get::<_, Option<i64>>(3)?.map(|s| s as u16),
                key: row.get(4)?,
                sent_at: row.get::<_, i64>(5)? - latency,
            })
        })
        .map_err(read)?;
    rows.collect::<Result<_, _>>().map_err(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&[7], 90.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn bins_stay_few() {
        assert_eq!(bin_width(10_000), 1_000);
        assert_eq!(bin_width(600_000), 5_000);
        assert!(86_400_000 * 30 / bin_width(86_400_000 * 30) <= MAX_BINS);
    }

    #[test]
    fn peak_counts_overlaps() {
        let row = |sent, ended| Row {
            sent,
            ended,
            key: 0,
            status: Some(200),
            latency: (ended - sent) as u64,
            paused: false,
            cause: None,
            decision: Decided::Succeeded,
            tokens: None,
        };
        assert_eq!(
            peak_in_flight(&[row(0, 10), row(5, 15), row(10, 20), row(12, 13)]),
            3
        );
    }
}

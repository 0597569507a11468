//! A run's achieved rate and the share of its limits' budget it used, read from the state: the
//! one computation behind the figures of the run's closing summary, `paceline status` and
//! `paceline report`, which agree because they read the same rows through [`of_run`] and print
//! them through [`RunFigures::rate_text`] and [`RunFigures::budget_text`] (or their numbers).
//!
//! The definitions ([`crate::quota::budget`]): the rate is the run's attempts over the span from
//! its first send to its last answer; tokens are what the provider reported using (not what
//! admission reserved); the budget of a limit over that span is a full bucket plus its refill,
//! summed over the run's keys (each key at its largest per-model limit).
//!
//! It reads and never writes, and must not know who shows the figures.

use super::keys::dimension_name;
use super::{Store, StoreError};
use crate::numbers::{compact, per_second, percent};
use crate::quota::Dimension;
use crate::quota::budget::{Budget, Throughput};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// One run's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunFigures {
    /// The run (1 for the first).
    pub run: i64,
    /// Attempts sent.
    pub requests: u64,
    /// Input tokens used, as the provider reported them.
    pub input_tokens: u64,
    /// Output tokens used, as the provider reported them.
    pub output_tokens: u64,
    /// First send to last answer, in ms.
    pub span_ms: u64,
    /// Attempts per second over the span.
    pub requests_per_s: f64,
    /// Tokens used per minute over the span.
    pub tokens_per_min: f64,
    /// Each budgeted dimension's use (none when no limit is known).
    pub budget: Vec<BudgetUse>,
}

/// The use of one dimension's budget.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetUse {
    /// `requests`, `tokens`, `input_tokens` or `output_tokens`.
    pub dimension: &'static str,
    /// What was used.
    pub used: u64,
    /// What the budget allowed over the span.
    pub allowed: f64,
    /// `used / allowed`, in percent.
    pub percent: f64,
    /// The limit per minute (the refill).
    pub per_minute: u64,
    /// The bucket's size.
    pub burst: u64,
}

impl BudgetUse {
    /// The dimension for people: `input tokens`.
    pub fn name(&self) -> String {
        self.dimension.replace('_', " ")
    }

    /// What the budget allowed and why: `205 (a bucket of 10 + 1.2k/min)`.
    pub fn allowance_text(&self) -> String {
        format!(
            "{} (a bucket of {} + {}/min)",
            compact(self.allowed.floor()),
            compact(self.burst as f64),
            compact(self.per_minute as f64)
        )
    }
}

impl RunFigures {
    /// The figures of `throughput` against `budgets`.
    pub fn new(run: i64, throughput: Throughput, budgets: &BTreeMap<Dimension, Budget>) -> Self {
        let t = throughput;
        let budget = budgets
            .iter()
            .map(|(dimension, budget)| {
                let used = match dimension {
                    Dimension::Requests => t.requests,
                    Dimension::Tokens => t.tokens(),
                    Dimension::InputTokens => t.input_tokens,
                    Dimension::OutputTokens => t.output_tokens,
                };
                BudgetUse {
                    dimension: dimension_name(*dimension),
                    used,
                    allowed: budget.allowance(t.span),
                    percent: budget.used_percent(used, t.span),
                    per_minute: budget.per_minute,
                    burst: budget.burst,
                }
            })
            .collect();
        RunFigures {
            run,
            requests: t.requests,
            input_tokens: t.input_tokens,
            output_tokens: t.output_tokens,
            span_ms: t.span.as_millis() as u64,
            requests_per_s: t.requests_per_s(),
            tokens_per_min: t.tokens_per_min(),
            budget,
        }
    }

    /// The rate as the summary and `status` print it:
    /// `19.1 req/s, 12k tok/min used (over 10.5 s, first send to last answer)`.
    pub fn rate_text(&self) -> String {
        format!(
            "{}, {} tok/min used (over {:.1} s, first send to last answer)",
            per_second(self.requests_per_s),
            compact(self.tokens_per_min),
            self.span_ms as f64 / 1000.0
        )
    }

    /// The budget use as the summary and `status` print it:
    /// `requests 97% of 205 (a bucket of 10 + 1.2k/min), tokens 3% of 4.1M (…)`.
    pub fn budget_text(&self) -> String {
        if self.budget.is_empty() {
            return "no limits known (none configured, none in the answers)".to_string();
        }
        let parts: Vec<String> = self
            .budget
            .iter()
            .map(|u| {
                format!(
                    "{} {} of {}",
                    u.name(),
                    percent(u.percent),
                    u.allowance_text()
                )
            })
            .collect();
        parts.join(", ")
    }
}

/// The figures of run `run`; `None` when it sent nothing.
pub fn of_run(store: &Store, run: i64) -> Result<Option<RunFigures>, StoreError> {
    let read = |e| store.err("read", e);
    let conn = store.conn();
    // The live limits' figures: attempts sent in a provider's batch are not theirs.
    let live = super::attempts::live_only(store)?;
    let (requests, first, last): (i64, Option<i64>, Option<i64>) = conn
        .query_row(
            &format!(
                "SELECT count(*), min(a.ended_at - a.latency_ms), max(a.ended_at)
                 FROM attempts a WHERE a.run = ?1 AND {live}"
            ),
            params![run],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .map_err(read)?;
    let (Some(first), Some(last)) = (first, last) else {
        return Ok(None);
    };
    // The tokens of the requests this run finished with a success: the provider's usage.
    let (input, output): (i64, i64) = conn
        .query_row(
            &format!(
                "SELECT coalesce(sum(r.prompt_tokens), 0), coalesce(sum(r.completion_tokens), 0)
                 FROM attempts a JOIN requests r ON r.id = a.request_id
                 WHERE a.run = ?1 AND a.decision = 'succeeded' AND {live}"
            ),
            params![run],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .map_err(read)?;
    let throughput = Throughput {
        requests: requests.max(0) as u64,
        input_tokens: input.max(0) as u64,
        output_tokens: output.max(0) as u64,
        span: Duration::from_millis((last - first).max(0) as u64),
    };
    Ok(Some(RunFigures::new(
        run,
        throughput,
        &budgets(store, run)?,
    )))
}

/// The figures of the latest run that sent something, if any.
pub fn latest(store: &Store) -> Result<Option<RunFigures>, StoreError> {
    let run: Option<i64> = store
        .conn()
        .query_row("SELECT max(run) FROM attempts", [], |row| row.get(0))
        .optional()
        .map_err(|e| store.err("read", e))?
        .flatten();
    match run {
        Some(run) => of_run(store, run),
        None => Ok(None),
    }
}

/// The budgets of run `run`'s keys per dimension: each key at its largest per-model limit
/// (with that limit's bucket), summed over keys. Limits the run did not record (it crashed
/// before its end) are the latest recorded before it.
fn budgets(store: &Store, run: i64) -> Result<BTreeMap<Dimension, Budget>, StoreError> {
    if !super::keys::present(store)? {
        return Ok(BTreeMap::new());
    }
    let read = |e| store.err("read", e);
    let conn = store.conn();
    let recorded: Option<i64> = conn
        .query_row(
            "SELECT max(run) FROM key_limits WHERE run <= ?1",
            params![run],
            |row| row.get(0),
        )
        .map_err(read)?;
    let Some(recorded) = recorded else {
        return Ok(BTreeMap::new());
    };
    let mut stmt = conn
        .prepare("SELECT key, dimension, per_minute, burst FROM key_limits WHERE run = ?1")
        .map_err(read)?;
    let rows = stmt
        .query_map(params![recorded], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, i64>(3)?,
            ))
        })
        .map_err(read)?;
    let mut per_key: BTreeMap<(String, Dimension), Budget> = BTreeMap::new();
    for row in rows {
        let (key, dimension, per_minute, burst) = row.map_err(read)?;
        let Some(dimension) = Dimension::ALL
            .into_iter()
            .find(|d| dimension_name(*d) == dimension)
        else {
            continue;
        };
        let budget = Budget {
            per_minute: per_minute.max(0) as u64,
            burst: burst.max(0) as u64,
        };
        per_key
            .entry((key, dimension))
            .and_modify(|b| {
                if budget.per_minute > b.per_minute {
                    *b = budget;
                }
            })
            .or_insert(budget);
    }
    let mut total: BTreeMap<Dimension, Budget> = BTreeMap::new();
    for ((_, dimension), budget) in per_key {
        total
            .entry(dimension)
            .and_modify(|b| *b = b.plus(budget))
            .or_insert(budget);
    }
    Ok(total)
}

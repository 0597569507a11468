//! `paceline plan`: what a job will cost and take, sending nothing — per model and endpoint,
//! the requests, the prompt tokens (the same tokenizer and estimate as the live path's
//! admission), the output tokens assumed (`max_tokens`, or an expected average), the cost live
//! and through the Batch API from the price table ([`prices`]), the live time at the key's
//! limits, and the batch path's constraints (shards, enqueued-token limit, 24 h window).
//!
//! **Live time** is the quota's own arithmetic: a limit paceline is given starts with one
//! second's worth at once (the quota learns the provider's larger burst from its headers but
//! keeps its level, so a run never spends a bucket it cannot see), then its rate; the job takes
//! as long as its slowest dimension, `max(0, total − per_minute ÷ 60) ÷ (per_minute ÷ 60)`.
//! Latency is not counted (it overlaps the pacing).
//!
//! It reads the input and must not send anything, touch the store or know HTTP. Two uses of
//! the same arithmetic live beside it: `deadline` (when `--via auto` hands the rest of a job to
//! live requests) and `spent` (what a finished job cost by the way its requests went).

pub mod deadline;
pub mod prices;
pub mod spent;

use crate::api::Endpoint;
use crate::batch::{InputError, InputReader, InputSpec};
use crate::offline::cut::{self, ShardLimits};
use crate::store::keys::KeyLimit;
use crate::tokens;
use prices::{Price, PriceTable};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// The limits of one model for the live path, per minute, all keys together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct LiveLimits {
    /// Requests per minute.
    pub rpm: Option<u64>,
    /// Tokens per minute.
    pub tpm: Option<u64>,
}

/// Where a model's live limits came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitSource {
    /// `--rpm` / `--tpm`, or the config's keys.
    Configured,
    /// Learned and stored by an earlier run of the job.
    Learned,
}

/// What `plan` is told.
#[derive(Debug, Clone)]
pub struct PlanInputs {
    /// The input.
    pub input: InputSpec,
    /// Output tokens assumed for a request with no cap.
    pub default_max_tokens: u64,
    /// Average output tokens to price with, instead of each request's cap.
    pub expect_output_tokens: Option<u64>,
    /// Limits given for every model.
    pub configured: LiveLimits,
    /// Limits an earlier run learned, per model.
    pub learned: HashMap<String, LiveLimits>,
    /// The prices.
    pub prices: PriceTable,
    /// The batch path's shard limits, when the provider has a Batch API.
    pub batch: Option<ShardLimits>,
}

/// The batch path for one model and endpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchPlan {
    /// Shards the requests would be cut into.
    pub shards: u64,
    /// The enqueued-token limit the shards respect, when known.
    pub enqueued_limit: Option<u64>,
    /// Enqueued tokens of the whole group (prompt + output cap).
    pub enqueued_tokens: u64,
    /// The completion window of each batch, in hours.
    pub window_hours: u64,
}

/// One model and endpoint of the job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupPlan {
    /// The model.
    pub model: String,
    /// The endpoint.
    pub endpoint: Endpoint,
    /// Requests.
    pub requests: u64,
    /// Prompt tokens, counted with the tokenizer.
    pub prompt_tokens: u64,
    /// Output tokens assumed.
    pub output_tokens: u64,
    /// How they were assumed: `max_tokens` or `expected`.
    pub output_basis: &'static str,
    /// What admission charges the tokens-per-minute limit (prompt + cap).
    pub admission_tokens: u64,
    /// The price used, if the table has one.
    pub price: Option<Price>,
    /// Live cost in dollars (`None`: unpriced).
    pub live_cost: Option<f64>,
    /// Batch cost in dollars (`None`: unpriced).
    pub batch_cost: Option<f64>,
    /// Live limits used, and where they came from.
    pub limits: Option<(LiveLimits, LimitSource)>,
    /// Live time in seconds at those limits (`None`: no limit known).
    pub live_seconds: Option<f64>,
    /// The batch path (`None`: the provider has no Batch API, or not for this endpoint).
    pub batch: Option<BatchPlan>,
}

/// The whole job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobPlan {
    /// Valid requests.
    pub requests: u64,
    /// Invalid input lines (not counted).
    pub invalid: u64,
    /// Per model and endpoint, in order of first appearance.
    pub groups: Vec<GroupPlan>,
    /// Live cost of the priced groups.
    pub live_cost: f64,
    /// Batch cost of the priced groups.
    pub batch_cost: f64,
    /// Models the table has no price for, with their requests (never priced at 0).
    pub unpriced: Vec<(String, u64)>,
}

/// Dollars for `tokens` at `per_million`.
fn dollars(tokens: u64, per_million: f64) -> f64 {
    tokens as f64 * per_million / 1e6
}

/// Seconds to let `total` units through a limit of `per_minute` that starts with one
/// second's worth.
pub fn drain_seconds(total: u64, per_minute: u64) -> f64 {
    if per_minute == 0 {
        return 0.0;
    }
    total.saturating_sub(per_minute.div_ceil(60)) as f64 * 60.0 / per_minute as f64
}

/// The limits per model a run stored (`store::keys`: the latest run's, all keys together).
pub fn learned(limits: &[KeyLimit]) -> HashMap<String, LiveLimits> {
    let mut out: HashMap<String, LiveLimits> = HashMap::new();
    let last = limits.iter().map(|l| l.run).max();
    for l in limits.iter().filter(|l| Some(l.run) == last) {
        let e = out.entry(l.model.clone()).or_default();
        let add = |v: &mut Option<u64>| *v = Some(v.unwrap_or(0) + l.per_minute);
        match l.dimension.as_str() {
            "requests" => add(&mut e.rpm),
            "tokens" => add(&mut e.tpm),
            _ => {}
        }
    }
    out
}

/// Plan the job: read the input once (and again to cut shards), send nothing.
pub fn plan(inputs: &PlanInputs) -> Result<JobPlan, InputError> {
    let mut groups: Vec<GroupPlan> = Vec::new();
    let mut index: HashMap<(String, Endpoint), usize> = HashMap::new();
    let mut lines: HashMap<u64, i64> = HashMap::new();
    let mut invalid = 0u64;
    let mut reader = InputReader::open(&inputs.input)?;
    for item in reader.by_ref() {
        let request = match item {
            Ok(r) => r,
            Err(_) => {
                invalid += 1;
                continue;
            }
        };
        lines.insert(request.line, request.line as i64);
        let model = request
            .body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let estimate = tokens::estimate(request.endpoint, &request.body, inputs.default_max_tokens);
        let key = (model.clone(), request.endpoint);
        let i = *index.entry(key).or_insert_with(|| {
            groups.push(GroupPlan {
                model,
                endpoint: request.endpoint,
                requests: 0,
                prompt_tokens: 0,
                output_tokens: 0,
                output_basis: if inputs.expect_output_tokens.is_some() {
                    "expected"
                } else {
                    "max_tokens"
                },
                admission_tokens: 0,
                price: None,
                live_cost: None,
                batch_cost: None,
                limits: None,
                live_seconds: None,
                batch: None,
            });
            groups.len() - 1
        });
        let g = &mut groups[i];
        g.requests += 1;
        g.prompt_tokens += estimate.prompt_tokens;
        g.output_tokens += match (request.endpoint, inputs.expect_output_tokens) {
            (Endpoint::Embeddings, _) => 0,
            (_, Some(n)) => n,
            (_, None) => estimate.max_output_tokens,
        };
        g.admission_tokens += estimate.total();
    }
    reader.finish()?;

    let shards: BTreeMap<(String, &'static str), (u64, u64)> = match &inputs.batch {
        Some(limits) => {
            let (cuts, _) = cut::cut(&inputs.input, &lines, limits)?;
            let mut m = BTreeMap::new();
            for c in cuts {
                let e = m.entry((c.model, c.endpoint.path())).or_insert((0, 0));
                e.0 += 1;
                e.1 += c.tokens;
            }
            m
        }
        None => BTreeMap::new(),
    };
    let (mut live_cost, mut batch_cost, mut unpriced) = (0.0, 0.0, Vec::new());
    for g in &mut groups {
        if let Some(p) = inputs.prices.find(&g.model) {
            let live = dollars(g.prompt_tokens, p.input) + dollars(g.output_tokens, p.output);
            let batch =
                dollars(g.prompt_tokens, p.batch_input) + dollars(g.output_tokens, p.batch_output);
            live_cost += live;
            batch_cost += batch;
            g.live_cost = Some(live);
            g.batch_cost = Some(batch);
            g.price = Some(p.clone());
        } else {
            unpriced.push((g.model.clone(), g.requests));
        }
        let limits = match inputs.learned.get(&g.model) {
            _ if inputs.configured != LiveLimits::default() => {
                Some((inputs.configured, LimitSource::Configured))
            }
            Some(learned) => Some((*learned, LimitSource::Learned)),
            None => None,
        };
        g.live_seconds = limits.map(|(l, _)| {
            let requests = l.rpm.map_or(0.0, |rpm| drain_seconds(g.requests, rpm));
            let tokens = l
                .tpm
                .map_or(0.0, |tpm| drain_seconds(g.admission_tokens, tpm));
            requests.max(tokens)
        });
        g.limits = limits;
        if let Some(limits) = &inputs.batch
            && let Some(&(count, tokens)) = shards.get(&(g.model.clone(), g.endpoint.path()))
        {
            g.batch = Some(BatchPlan {
                shards: count,
                enqueued_limit: limits.enqueued_for(&g.model),
                enqueued_tokens: tokens,
                window_hours: 24,
            });
        }
    }
    Ok(JobPlan {
        requests: groups.iter().map(|g| g.requests).sum(),
        invalid,
        groups,
        live_cost,
        batch_cost,
        unpriced,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_at_once_then_the_rate() {
        assert_eq!(drain_seconds(10, 600), 0.0);
        assert_eq!(drain_seconds(11, 600), 0.1);
        assert_eq!(drain_seconds(1_010, 600), 100.0);
        assert_eq!(drain_seconds(5, 0), 0.0);
    }
}

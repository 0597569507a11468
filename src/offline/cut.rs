//! Cutting a job's pending requests into shards that respect every limit of one batch: one
//! model and one endpoint per shard, the provider's most requests (and, for embeddings, most
//! inputs) and most bytes per batch, and the model's enqueued-token limit when one is known (a
//! shard larger than it could never be accepted).
//!
//! It reads the input (a pass over the file, keeping only the requests it is asked for) and
//! must not know the store, HTTP or the provider's answers.

use crate::api::Endpoint;
use crate::batch::{BatchRequest, InputError, InputReader, InputSpec};
use crate::provider::{BatchApi, BatchSpec};
use crate::tokens;
use serde_json::{Value, json};
use std::collections::HashMap;

/// The limits one shard must keep within.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardLimits {
    /// The provider's Batch API and its per-batch limits.
    pub spec: BatchSpec,
    /// A lower cap on requests per shard (`--batch-max-requests`).
    pub max_requests: Option<u64>,
    /// Enqueued tokens per model: configured for every model, or learned for one.
    pub enqueued: HashMap<String, u64>,
    /// Configured enqueued tokens for models with none learned.
    pub enqueued_default: Option<u64>,
    /// Output tokens assumed for a request with no cap.
    pub default_max_tokens: u64,
}

impl ShardLimits {
    /// The enqueued-token limit known for `model`.
    pub fn enqueued_for(&self, model: &str) -> Option<u64> {
        self.enqueued.get(model).copied().or(self.enqueued_default)
    }
}

/// One request as it goes into a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// Its line of the batch: the OpenAI input file's line, or one Message Batches request.
    pub line: String,
    /// Its enqueued tokens (prompt + output cap).
    pub tokens: u64,
    /// Embedding inputs it carries (0 for other endpoints).
    pub inputs: u64,
}

/// A request's line in the provider's batch format, with its cost.
pub fn prepare(request: &BatchRequest, spec: &BatchSpec, default_max_tokens: u64) -> Prepared {
    let line = match spec.api {
        BatchApi::OpenAi => json!({"custom_id": request.custom_id, "method": "POST",
            "url": spec.endpoint_name(request.endpoint.path()), "body": request.body}),
        BatchApi::Anthropic => json!({"custom_id": request.custom_id, "params": request.body}),
    }
    .to_string();
    let tokens = tokens::estimate(request.endpoint, &request.body, default_max_tokens).total();
    let inputs = match (request.endpoint, request.body.get("input")) {
        (Endpoint::Embeddings, Some(Value::Array(items))) => items.len() as u64,
        (Endpoint::Embeddings, Some(_)) => 1,
        _ => 0,
    };
    Prepared {
        line,
        tokens,
        inputs,
    }
}

/// A shard as cut: its model, endpoint, enqueued tokens and requests (row ids, input order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// The model.
    pub model: String,
    /// The endpoint.
    pub endpoint: Endpoint,
    /// Enqueued tokens.
    pub tokens: u64,
    /// Row ids.
    pub requests: Vec<i64>,
}

struct Open {
    cut: Cut,
    bytes: u64,
    inputs: u64,
}

/// A request the batch path cannot take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unfit {
    /// Its endpoint has no batch at this provider.
    Endpoint(Endpoint),
    /// It alone passes a per-batch limit (bytes, or the enqueued tokens).
    TooLarge(String),
}

/// The shards cut, and the requests no shard can hold (row id, why).
pub type Shards = (Vec<Cut>, Vec<(i64, Unfit)>);

/// Cut the requests `wanted` (input line → row id) into shards, reading them from the input.
/// Returns the shards and the requests no shard can hold (row id, why).
pub fn cut(
    spec: &InputSpec,
    wanted: &HashMap<u64, i64>,
    limits: &ShardLimits,
) -> Result<Shards, InputError> {
    let max_requests = limits
        .max_requests
        .map_or(limits.spec.max_requests, |m| {
            m.min(limits.spec.max_requests)
        })
        .max(1);
    let mut open: HashMap<(String, Endpoint), Open> = HashMap::new();
    let mut done = Vec::new();
    let mut unfit = Vec::new();
    let mut reader = InputReader::open(spec)?;
    for item in reader.by_ref() {
        let Ok(request) = item else { continue };
        let Some(&id) = wanted.get(&request.line) else {
            continue;
        };
        if !limits.spec.endpoints.contains(&request.endpoint) {
            unfit.push((id, Unfit::Endpoint(request.endpoint)));
            continue;
        }
        let model = request
            .body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let p = prepare(&request, &limits.spec, limits.default_max_tokens);
        let bytes = p.line.len() as u64 + 1;
        let enqueued = limits.enqueued_for(&model);
        if bytes > limits.spec.max_bytes {
            unfit.push((
                id,
                Unfit::TooLarge(format!(
                    "{bytes} bytes, over a batch's {}",
                    limits.spec.max_bytes
                )),
            ));
            continue;
        }
        if let Some(cap) = enqueued
            && p.tokens > cap
        {
            unfit.push((
                id,
                Unfit::TooLarge(format!(
                    "{} enqueued tokens, over {model}'s limit of {cap}",
                    p.tokens
                )),
            ));
            continue;
        }
        let key = (model.clone(), request.endpoint);
        let fits = |o: &Open| {
            (o.cut.requests.len() as u64) < max_requests
                && o.bytes + bytes <= limits.spec.max_bytes
                && (p.inputs == 0 || o.inputs + p.inputs <= limits.spec.max_requests)
                && enqueued.is_none_or(|cap| o.cut.tokens + p.tokens <= cap)
        };
        if let Some(o) = open.get(&key)
            && !fits(o)
            && let Some(full) = open.remove(&key)
        {
            done.push(full.cut);
        }
        let o = open.entry(key).or_insert_with(|| Open {
            cut: Cut {
                model,
                endpoint: request.endpoint,
                tokens: 0,
                requests: Vec::new(),
            },
            bytes: 0,
            inputs: 0,
        });
        o.cut.tokens += p.tokens;
        o.cut.requests.push(id);
        o.bytes += bytes;
        o.inputs += p.inputs;
    }
    reader.finish()?;
    let mut rest: Vec<Cut> = open.into_values().map(|o| o.cut).collect();
    rest.sort_by_key(|c| c.requests.first().copied());
    done.extend(rest);
    Ok((done, unfit))
}

/// The prepared lines of the requests on `lines` (input line numbers), keyed by line.
pub fn read_lines(
    spec: &InputSpec,
    lines: &HashMap<u64, i64>,
    batch: &BatchSpec,
    default_max_tokens: u64,
) -> Result<HashMap<u64, Prepared>, InputError> {
    let mut found = HashMap::with_capacity(lines.len());
    let mut reader = InputReader::open(spec)?;
    for item in reader.by_ref() {
        let Ok(request) = item else { continue };
        if lines.contains_key(&request.line) {
            found.insert(request.line, prepare(&request, batch, default_max_tokens));
            if found.len() == lines.len() {
                break;
            }
        }
    }
    Ok(found)
}

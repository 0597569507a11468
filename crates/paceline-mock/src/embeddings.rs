//! `POST /v1/embeddings`: deterministic unit vectors seeded from the input, as floats or as
//! base64 of little-endian f32 (`encoding_format: "base64"`).
//!
//! It builds the answer only: it knows no HTTP, keys or buckets ([`crate::server`] admits, charges
//! and delivers).

use crate::api::{self, Answer, AnswerCtx, Endpoint, Payload};
use crate::completions::count_text_or_ids;
use crate::config::MockConfig;
use crate::errors::{ApiError, Flavor};
use base64::Engine;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// Largest `dimensions` accepted.
const MAX_DIMENSIONS: u64 = 3072;

/// A parsed embeddings request.
#[derive(Debug)]
pub struct EmbeddingRequest {
    model: String,
    prompt_tokens: u64,
    /// One seed per input item.
    seeds: Vec<u64>,
    dimensions: usize,
    base64: bool,
}

/// FNV-1a, stable across runs and platforms.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The default width of a model's vectors.
fn default_dimensions(model: &str) -> usize {
    if model.contains("-large") { 3072 } else { 1536 }
}

/// The input items, each as the bytes its vector is seeded from.
fn item_seeds(input: &Value) -> Option<Vec<u64>> {
    match input {
        Value::String(s) => Some(vec![fnv1a(s.as_bytes())]),
        Value::Array(items) if items.iter().all(Value::is_number) => Some(vec![fnv1a(
            Value::Array(items.clone()).to_string().as_bytes(),
        )]),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Some(fnv1a(s.as_bytes())),
                Value::Array(ids) if ids.iter().all(Value::is_number) => {
                    Some(fnv1a(item.to_string().as_bytes()))
                }
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// A deterministic unit vector for `seed`.
pub fn vector(seed: u64, dimensions: usize) -> Vec<f32> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut v: Vec<f32> = (0..dimensions)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

impl Endpoint for EmbeddingRequest {
    const FLAVOR: Flavor = Flavor::OpenAi;

    fn parse(body: &[u8], _config: &MockConfig) -> Result<Self, ApiError> {
        let flavor = Self::FLAVOR;
        let obj = api::json_object(body, flavor)?;
        let model = api::model(&obj, flavor)?;
        let input = match obj.get("input") {
            None | Some(Value::Null) => return Err(ApiError::missing(flavor, "input")),
            Some(v) => v,
        };
        let bad_input = || {
            ApiError::invalid_param(
                flavor,
                "input",
                "'input' must be a non-empty string, array of strings, or array of token ids."
                    .to_owned(),
            )
        };
        let seeds = item_seeds(input)
            .filter(|s| !s.is_empty())
            .ok_or_else(bad_input)?;
        let prompt_tokens = count_text_or_ids(input, &model).ok_or_else(bad_input)?;
        let dimensions = match api::positive_int(&obj, "dimensions", flavor)? {
            Some(d) if d > MAX_DIMENSIONS => {
                return Err(ApiError::invalid_param(
                    flavor,
                    "dimensions",
                    format!("Invalid 'dimensions': at most {MAX_DIMENSIONS}, got {d}."),
                ));
            }
            Some(d) => d as usize,
            None => default_dimensions(&model),
        };
        let base64 = match obj.get("encoding_format") {
            None | Some(Value::Null) => false,
            Some(Value::String(f)) if f == "float" => false,
            Some(Value::String(f)) if f == "base64" => true,
            Some(other) => {
                return Err(ApiError::invalid_param(
                    flavor,
                    "encoding_format",
                    format!(
                        "Invalid 'encoding_format': expected 'float' or 'base64', got {other}."
                    ),
                ));
            }
        };
        Ok(Self {
            model,
            prompt_tokens,
            seeds,
            dimensions,
            base64,
        })
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn prompt_tokens(&self) -> u64 {
        self.prompt_tokens
    }

    fn reserved_output(&self) -> u64 {
        0
    }

    fn answer(&self, _ctx: &mut AnswerCtx<'_>) -> Answer {
        let data: Vec<Value> = self
            .seeds
            .iter()
            .enumerate()
            .map(|(index, seed)| {
                let v = vector(*seed, self.dimensions);
                let embedding = if self.base64 {
                    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
                } else {
                    json!(v)
                };
                json!({"object": "embedding", "index": index, "embedding": embedding})
            })
            .collect();
        let body = json!({
            "object": "list",
            "data": data,
            "model": self.model,
            "usage": {"prompt_tokens": self.prompt_tokens, "total_tokens": self.prompt_tokens}
        });
        Answer {
            payload: Payload::Json(body.to_string().into_bytes()),
            completion_tokens: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_deterministic_unit_vectors() {
        let a = vector(fnv1a(b"hello"), 16);
        assert_eq!(a, vector(fnv1a(b"hello"), 16));
        assert_ne!(a, vector(fnv1a(b"hellp"), 16));
        let norm: f32 = a.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-4);
    }

    #[test]
    fn defaults() {
        assert_eq!(default_dimensions("text-embedding-3-large"), 3072);
        assert_eq!(default_dimensions("text-embedding-3-small"), 1536);
        assert_eq!(default_dimensions("text-embedding-ada-002"), 1536);
        assert_eq!(item_seeds(&json!([1, 2, 3])).map(|s| s.len()), Some(1));
        assert_eq!(item_seeds(&json!(["a", "b"])).map(|s| s.len()), Some(2));
        assert_eq!(item_seeds(&json!([{"x": 1}])), None);
    }
}

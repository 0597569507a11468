//! Providers: everything paceline knows about one upstream API, and the reading of answers
//! into the neutral types the quota, the engine and the gateway use.
//!
//! # Design
//!
//! Every provider paceline talks to speaks HTTP + JSON with the same shape of problem (limits
//! per key, usage in the answer, rate-limit headers, error bodies), and they differ in a small
//! number of facts. Each provider's facts are one [`Spec`] value in its own file ([`openai`],
//! [`anthropic`], [`azure`], [`compatible`]); the closed [`Provider`] enum names them and
//! [`Provider::spec`] is the only place that maps a provider to its file:
//!
//! | | auth | URL | limit headers | usage |
//! | --- | --- | --- | --- | --- |
//! | OpenAI | `Authorization: Bearer` | `{base}/chat/completions` | `x-ratelimit-*` (Go durations) | `usage.prompt_tokens` |
//! | Anthropic | `x-api-key` + `anthropic-version` | `{base}/messages` | `anthropic-ratelimit-*` (RFC 3339) | `usage.input_tokens`; stream: `message_start` + `message_delta` |
//! | Azure OpenAI | `api-key` | `{base}/openai/deployments/{deployment}/chat/completions?api-version=V` | `x-ratelimit-remaining-*` only, `-1` = not enforced; `retry-after-ms`, `x-ms-retry-after-ms` | as OpenAI |
//! | OpenAI-compatible | `Authorization: Bearer` | as OpenAI | whatever subset it sends, often none | as OpenAI |
//!
//! The reading rules the providers share live beside them, driven by the specs: [`headers`]
//! (limit headers into the quota's [`LimitSnapshot`](crate::quota::LimitSnapshot), retry hints,
//! request ids, `x-should-retry`), [`usage`] (the `usage` object and stream events into a
//! [`usage::Usage`], and the [`usage::Charge`] that settles it) and [`values`] (how durations,
//! instants and counts are written). An answer is read against every provider's names, not
//! only its upstream's: each provider sends only its own, and servers copying a provider's API
//! copy its headers and bodies. The tables in each provider file's tests pin what each
//! provider's documented answers mean.
//!
//! The provider is chosen per upstream: `provider = "openai" | "anthropic" | "azure" |
//! "openai-compatible"` in the configuration, or inferred from the base URL
//! ([`Provider::infer`]). This module must not know the quota's arithmetic, the engine or any
//! HTTP crate.

pub mod anthropic;
pub mod azure;
pub mod compatible;
pub mod error_body;
pub mod headers;
pub mod openai;
pub mod usage;
pub mod values;

use crate::api::Endpoint;
use headers::LimitHeader;
use std::fmt;
use std::str::FromStr;
use usage::{StreamUsageEvent, UsageFields};

/// Everything paceline knows about one provider, as data: one `static` in the provider's file.
#[derive(Debug)]
pub struct Spec {
    /// The configuration name (`provider = "…"`, `--provider`).
    pub name: &'static str,
    /// Its name in OpenTelemetry's generative-AI conventions (`gen_ai.provider.name`).
    pub semconv_name: &'static str,
    /// One line for `--help`.
    pub summary: &'static str,
    /// The environment variable holding the key when none is named (the SDK's own default).
    pub default_key_env: &'static str,
    /// The public API's base URL, for providers that have one.
    pub default_base_url: Option<&'static str>,
    /// What a base URL for it looks like, for a message about a wrong one.
    pub base_url_example: &'static str,
    /// Whether a base URL (and its host) belongs to this provider; the first provider in
    /// [`Provider::ALL`] to claim a URL is inferred for it.
    pub claims: fn(host: &str, base_url: &str) -> bool,
    /// Whether its API has an endpoint.
    pub speaks: fn(Endpoint) -> bool,
    /// The request headers that authenticate a secret.
    pub auth_headers: fn(secret: &str) -> Vec<(&'static str, String)>,
    /// Where an API path for a model goes, from a base URL (no trailing slash) and an API
    /// version (Azure's `api-version`; the others ignore it).
    pub url: fn(base_url: &str, path: &str, model: &str, api_version: &str) -> String,
    /// The headers that state its limits.
    pub limit_headers: &'static [LimitHeader],
    /// Its retry hint headers in milliseconds, preferred first (`retry-after`, in seconds, is
    /// read for every provider).
    pub retry_hints_ms: &'static [&'static str],
    /// The header carrying its id for an answer.
    pub request_id_header: &'static str,
    /// Where its `usage` object keeps the counts.
    pub usage_fields: UsageFields,
    /// Its stream events that carry usage their own way.
    pub stream_usage_events: &'static [StreamUsageEvent],
    /// Whether it corrects the output admitted (`max_tokens`) to the output produced once the
    /// answer is complete, so that the output settles to what `usage` reports.
    pub output_at_completion: bool,
    /// Its Batch API, if it has one paceline speaks (`run --via batch`).
    pub batch: Option<BatchSpec>,
}

/// Which Batch API shape a provider follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchApi {
    /// OpenAI's: a JSONL input file uploaded through the Files API (`purpose=batch`), a batch
    /// created from it (`completion_window=24h`, `metadata`), output and error files.
    OpenAi,
    /// Anthropic's Message Batches: requests inline, results as JSONL, no metadata.
    Anthropic,
}

/// A provider's Batch API and the limits of one batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchSpec {
    /// Its shape.
    pub api: BatchApi,
    /// Most requests in one batch (for embeddings, also most inputs).
    pub max_requests: u64,
    /// Largest batch: the input file (OpenAI) or the request body (Anthropic), in bytes.
    pub max_bytes: u64,
    /// The endpoints a batch may carry.
    pub endpoints: &'static [Endpoint],
    /// The discount of a batched request against the live price, as the multiplier of the
    /// live price (every provider: 0.5).
    pub price_factor: f64,
    /// Whether a batch names its endpoint by the operation (`/chat/completions`: Azure OpenAI)
    /// rather than by OpenAI's `/v1` path.
    pub bare_paths: bool,
}

impl BatchSpec {
    /// How a batch (its `endpoint`, its lines' `url`) names `path` (`/v1/chat/completions`).
    pub fn endpoint_name<'a>(&self, path: &'a str) -> &'a str {
        if self.bare_paths {
            path.strip_prefix("/v1").unwrap_or(path)
        } else {
            path
        }
    }
}

/// The API family of one upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Provider {
    /// OpenAI's own API.
    #[default]
    OpenAi,
    /// Anthropic's Messages API.
    Anthropic,
    /// Azure OpenAI: deployment URLs, `api-version`, the `api-key` header.
    Azure,
    /// Any server speaking OpenAI's API (vLLM, llama.cpp, Groq, Together, …).
    Compatible,
}

/// An unknown `provider` name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown provider {0:?} ({names})", names = Provider::names())]
pub struct UnknownProvider(pub String);

impl Provider {
    /// Every provider, in the order messages list them; also the order in which an answer is
    /// read against the providers' names (request ids, retry hints, usage fields) and in which
    /// they claim a base URL ([`Provider::infer`]).
    pub const ALL: [Provider; 4] = [
        Provider::OpenAi,
        Provider::Anthropic,
        Provider::Azure,
        Provider::Compatible,
    ];

    /// What paceline knows about this provider.
    pub fn spec(self) -> &'static Spec {
        match self {
            Provider::OpenAi => &openai::SPEC,
            Provider::Anthropic => &anthropic::SPEC,
            Provider::Azure => &azure::SPEC,
            Provider::Compatible => &compatible::SPEC,
        }
    }

    /// The configuration name: `openai`, `anthropic`, `azure`, `openai-compatible`.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// Every configuration name, comma-separated, in the order of [`Provider::ALL`].
    pub fn names() -> String {
        Provider::ALL.map(Provider::name).join(", ")
    }

    /// One line about the provider, for `--help`.
    pub fn summary(self) -> &'static str {
        self.spec().summary
    }

    /// Whether this provider's API has `endpoint`: Anthropic has the Messages API only, the
    /// others every OpenAI endpoint but it.
    pub fn speaks(self, endpoint: Endpoint) -> bool {
        (self.spec().speaks)(endpoint)
    }

    /// `" (it serves /v1/chat/completions, …)"`: the endpoints it does serve, for a message
    /// refusing one it does not.
    pub fn endpoints_hint(self) -> String {
        let served: Vec<&str> = Endpoint::ALL
            .into_iter()
            .filter(|e| self.speaks(*e))
            .map(|e| e.path())
            .collect();
        format!(" (it serves {})", served.join(", "))
    }

    /// The environment variable holding the key when none is named: `OPENAI_API_KEY`,
    /// `ANTHROPIC_API_KEY` or `AZURE_OPENAI_API_KEY` (the SDKs' own defaults).
    pub fn default_key_env(self) -> &'static str {
        self.spec().default_key_env
    }

    /// The public API's base URL, for providers that have one (Azure and compatible servers
    /// are wherever they were deployed).
    pub fn default_base_url(self) -> Option<&'static str> {
        self.spec().default_base_url
    }

    /// What a base URL for this provider looks like (for a message about a wrong one).
    pub fn base_url_example(self) -> &'static str {
        self.spec().base_url_example
    }

    /// The provider a base URL belongs to: the first in [`Provider::ALL`] that claims it
    /// (Anthropic's and Azure's hosts, OpenAI's), else any other server speaking OpenAI's API.
    pub fn infer(base_url: &str) -> Provider {
        let host = host_of(base_url);
        Provider::ALL
            .into_iter()
            .find(|p| (p.spec().claims)(host, base_url))
            .unwrap_or(Provider::Compatible)
    }

    /// The request headers that authenticate `secret` (and, for Anthropic, pin the API
    /// version).
    pub fn auth_headers(self, secret: &str) -> Vec<(&'static str, String)> {
        (self.spec().auth_headers)(secret)
    }

    /// Where an API `path` (`/v1/chat/completions`, `/v1/messages`) for `model` goes, given
    /// the upstream's `base_url` (no trailing slash) and, for Azure, its `api_version`.
    pub fn url(self, base_url: &str, path: &str, model: &str, api_version: &str) -> String {
        (self.spec().url)(base_url, path, model, api_version)
    }

    /// Its Batch API, if paceline speaks one for it.
    pub fn batch(self) -> Option<BatchSpec> {
        self.spec().batch
    }
}

/// The host of an http(s) URL (empty when there is none).
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    authority.split(':').next().unwrap_or("")
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Provider {
    type Err = UnknownProvider;

    /// Parses a configuration name (see [`Provider::name`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Provider::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownProvider(s.to_string()))
    }
}

/// Times shared by the provider files' tests.
#[cfg(test)]
mod test_time {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    /// `n` milliseconds.
    pub fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// `n` seconds.
    pub fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// The answers' time: 2024-01-15T14:23:00Z.
    pub fn now() -> SystemTime {
        UNIX_EPOCH + secs(1_705_328_580)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_choices() {
        for provider in Provider::ALL {
            assert_eq!(provider.name().parse::<Provider>(), Ok(provider));
        }
        let err = "bedrock".parse::<Provider>().unwrap_err().to_string();
        assert!(
            err.contains("bedrock") && err.contains("openai-compatible"),
            "{err}"
        );
    }

    #[test]
    fn infers_the_provider_from_the_base_url() {
        let cases = [
            ("https://api.openai.com/v1", Provider::OpenAi),
            ("https://api.anthropic.com/v1", Provider::Anthropic),
            ("https://res.openai.azure.com", Provider::Azure),
            ("https://res.cognitiveservices.azure.com/", Provider::Azure),
            ("http://127.0.0.1:9/openai/deployments", Provider::Azure),
            ("https://api.groq.com/openai/v1", Provider::Compatible),
            ("http://127.0.0.1:8000/v1", Provider::Compatible),
            ("http://user@localhost:8080", Provider::Compatible),
        ];
        for (url, provider) in cases {
            assert_eq!(Provider::infer(url), provider, "{url}");
        }
    }
}

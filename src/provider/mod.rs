//! Providers: how each upstream API authenticates, where a request goes, and what its answers
//! mean for the pacing core.
//!
//! # Design
//!
//! Every provider paceline talks to speaks HTTP + JSON with the same shape of problem (limits
//! per key, usage in the answer, rate-limit headers, error bodies), and they differ in a small
//! number of places. A closed [`Provider`] enum captures those places; each provider's facts
//! live in its own file ([`openai`], [`anthropic`], [`azure`], [`compatible`]):
//!
//! | | auth | URL | limit headers | usage |
//! | --- | --- | --- | --- | --- |
//! | OpenAI | `Authorization: Bearer` | `{base}/chat/completions` | `x-ratelimit-*` (Go durations) | `usage.prompt_tokens` |
//! | Anthropic | `x-api-key` + `anthropic-version` | `{base}/messages` | `anthropic-ratelimit-*` (RFC 3339) | `usage.input_tokens`; stream: `message_start` + `message_delta` |
//! | Azure OpenAI | `api-key` | `{base}/openai/deployments/{deployment}/chat/completions?api-version=V` | `x-ratelimit-remaining-*` only, `-1` = not enforced; `retry-after-ms`, `x-ms-retry-after-ms` | as OpenAI |
//! | OpenAI-compatible | `Authorization: Bearer` | as OpenAI | whatever subset it sends, often none | as OpenAI |
//!
//! What stays shared, because the providers agree on it: header parsing
//! ([`crate::quota::headers`] reads every provider's names; a provider only ever sends its own)
//! and outcome classification ([`crate::retry`] reads both error body shapes; 529 is overload,
//! not quota, whoever sends it). The tables in each provider file's tests pin what each
//! provider's documented answers classify as.
//!
//! The provider is chosen per upstream: `provider = "openai" | "anthropic" | "azure" |
//! "openai-compatible"` in the configuration, or inferred from the base URL
//! ([`Provider::infer`]).

pub mod anthropic;
pub mod azure;
pub mod compatible;
pub mod error_body;
pub mod openai;

use crate::batch::Endpoint;
use std::fmt;
use std::str::FromStr;

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
#[error("unknown provider {0:?} (openai, anthropic, azure, openai-compatible)")]
pub struct UnknownProvider(pub String);

impl Provider {
    /// Every provider, in the order messages list them.
    pub const ALL: [Provider; 4] = [
        Provider::OpenAi,
        Provider::Anthropic,
        Provider::Azure,
        Provider::Compatible,
    ];

    /// The configuration name: `openai`, `anthropic`, `azure`, `openai-compatible`.
    pub fn name(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
            Provider::Azure => "azure",
            Provider::Compatible => "openai-compatible",
        }
    }

    /// Whether this provider's API has `endpoint`: Anthropic has the Messages API only, the
    /// others every OpenAI endpoint but it.
    pub fn speaks(self, endpoint: Endpoint) -> bool {
        (self == Provider::Anthropic) == (endpoint == Endpoint::Messages)
    }

    /// The environment variable holding the key when none is named: `OPENAI_API_KEY`,
    /// `ANTHROPIC_API_KEY` or `AZURE_OPENAI_API_KEY` (the SDKs' own defaults).
    pub fn default_key_env(self) -> &'static str {
        match self {
            Provider::Anthropic => "ANTHROPIC_API_KEY",
            Provider::Azure => "AZURE_OPENAI_API_KEY",
            Provider::OpenAi | Provider::Compatible => "OPENAI_API_KEY",
        }
    }

    /// The public API's base URL, for providers that have one (Azure and compatible servers
    /// are wherever they were deployed).
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            Provider::OpenAi => Some("https://api.openai.com/v1"),
            Provider::Anthropic => Some("https://api.anthropic.com/v1"),
            Provider::Azure | Provider::Compatible => None,
        }
    }

    /// The provider a base URL belongs to: Anthropic's and Azure's hosts, OpenAI's, else any
    /// other server speaking OpenAI's API.
    pub fn infer(base_url: &str) -> Provider {
        let host = host_of(base_url);
        if host == "api.anthropic.com" {
            Provider::Anthropic
        } else if azure::is_azure_host(host) || base_url.contains("/openai/deployments") {
            Provider::Azure
        } else if host == "api.openai.com" {
            Provider::OpenAi
        } else {
            Provider::Compatible
        }
    }

    /// The request headers that authenticate `secret` (and, for Anthropic, pin the API
    /// version).
    pub fn auth_headers(self, secret: &str) -> Vec<(&'static str, String)> {
        match self {
            Provider::OpenAi | Provider::Compatible => openai::auth_headers(secret),
            Provider::Anthropic => anthropic::auth_headers(secret),
            Provider::Azure => azure::auth_headers(secret),
        }
    }

    /// Where an API `path` (`/v1/chat/completions`, `/v1/messages`) for `model` goes, given
    /// the upstream's `base_url` (no trailing slash) and, for Azure, its `api_version`.
    pub fn url(self, base_url: &str, path: &str, model: &str, api_version: &str) -> String {
        match self {
            Provider::Azure => azure::url(base_url, path, model, api_version),
            Provider::Anthropic => anthropic::url(base_url, path),
            _ => openai::url(base_url, path),
        }
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

//! Token cost estimation: what a provider will charge a request at admission.
//!
//! Providers admit a request against tokens/min by its prompt tokens plus the output it may
//! produce (`max_tokens × n`), and correct afterwards. paceline reserves the same estimate:
//! prompt tokens counted with a real tokenizer (the `tiktoken` crate, whose BPE tables are
//! embedded, so this works offline; the encoders are built once per process and shared) plus
//! `max_tokens`/`max_completion_tokens`/`max_output_tokens` × `n`. When a request sets no output
//! cap, [`DEFAULT_MAX_TOKENS`] is assumed (the caller can choose another default).
//!
//! Anthropic Messages are counted the same way (plus the top-level `system`), with cl100k: no
//! Claude tokenizer is public, and the estimate is settled from `usage` anyway.
//!
//! Chat messages are counted the way OpenAI documents it: 3 tokens per message for the framing,
//! the role, the content, 1 more (plus the name) when a message has a `name`, and 3 to prime the
//! reply. Parts that are not text (images, audio) are not counted.
//!
//! Why `tiktoken` and not `tiktoken-rs` (which the simulated provider uses, so the two sides
//! count independently): this runs on every request a gateway admits, and its o200k tables
//! cost ~24 MB resident against ~54 MB, its counting allocates nothing, and it counts a short
//! prompt ~30× faster. A test holds the two to the same counts.
//!
//! It owns the estimate and nothing after it: it must not know the quota, the providers or what was
//! really charged (settling is [`crate::provider::usage`]'s); of a request it knows only its
//! [`Endpoint`] and its body.

use crate::api::Endpoint;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use tiktoken::CoreBpe;

/// Output tokens assumed for a request that sets no output cap.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// A request's admission cost estimate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Estimate {
    /// Tokens in the prompt (input).
    pub prompt_tokens: u64,
    /// Output tokens the request may produce: the cap × the number of choices.
    pub max_output_tokens: u64,
}

impl Estimate {
    /// Prompt and output together: what tokens/min is charged at admission.
    pub fn total(&self) -> u64 {
        self.prompt_tokens + self.max_output_tokens
    }
}

/// The tokenizers paceline knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `o200k_base`: the GPT-4o/4.1/4.5/5 and o-series families.
    O200k,
    /// `cl100k_base`: GPT-4, GPT-3.5 and the embedding models, and any model not known.
    Cl100k,
}

/// Which encodings have been built in this process (index: `Encoding as usize`).
static LOADED: [AtomicBool; 2] = [AtomicBool::new(false), AtomicBool::new(false)];
/// Which encodings a background build has been started for.
static BUILDING: [AtomicBool; 2] = [AtomicBool::new(false), AtomicBool::new(false)];

impl Encoding {
    /// The encoding `model` uses.
    pub fn for_model(model: &str) -> Encoding {
        const O200K: [&str; 7] = ["gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4"];
        if O200K.iter().any(|prefix| model.starts_with(prefix)) {
            Encoding::O200k
        } else {
            Encoding::Cl100k
        }
    }

    /// The encoding's name in tiktoken.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::O200k => "o200k_base",
            Encoding::Cl100k => "cl100k_base",
        }
    }

    /// The encoder, built on first use (the caller waits for the build). Building takes
    /// ~80 ms and its tables some 10–25 MB, so a process builds only the encodings it meets;
    /// see [`Encoding::ready`] for the caller that must not wait.
    pub fn bpe(self) -> &'static CoreBpe {
        // Both vocabularies are compiled in (the crate's features in Cargo.toml).
        let bpe = tiktoken::get_encoding(self.name())
            .expect("the o200k and cl100k vocabularies are compiled in");
        LOADED[self as usize].store(true, Ordering::Release);
        bpe
    }

    /// Whether the encoder is built already (using it now will not block for its build).
    pub fn is_loaded(self) -> bool {
        LOADED[self as usize].load(Ordering::Acquire)
    }

    /// The encoder if it is built; else `None`, with its build started in the background.
    pub fn ready(self) -> Option<&'static CoreBpe> {
        if self.is_loaded() {
            return Some(self.bpe());
        }
        self.prepare();
        None
    }

    /// Start building the encoder on a thread of its own, unless it is built or being built;
    /// returns at once. The gateway calls it at start for the families its config names.
    pub fn prepare(self) {
        if self.is_loaded() || BUILDING[self as usize].swap(true, Ordering::AcqRel) {
            return;
        }
        let spawned = std::thread::Builder::new()
            .name(format!("tokenizer {}", self.name()))
            .spawn(move || {
                self.bpe();
            });
        if spawned.is_err() {
            // No thread to build it on now: the next caller tries again.
            BUILDING[self as usize].store(false, Ordering::Release);
        }
    }
}

/// How a count is made when the model family's tokenizer is not built yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counting {
    /// Build it and wait (`paceline run`: its feeder thread waits once, ~100 ms).
    Exact,
    /// Never wait (the gateway): until the tokenizer is built, count with [`bytes_bound`], and
    /// have it built in the background.
    NoWait,
    /// Always [`bytes_bound`] (what [`Counting::NoWait`] counts before the build is done).
    Bound,
}

/// An upper bound of the tokens of `text` in any of paceline's encodings: its length in bytes.
/// Both are byte-level BPE: a text starts as one token per byte and every merge joins two
/// tokens into one, so no text has more tokens than bytes.
pub fn bytes_bound(text: &str) -> u64 {
    text.len() as u64
}

/// Tokens in `text` for `model` (special tokens such as `<|endoftext|>` count as text, as
/// they do when a provider tokenizes a prompt).
pub fn count(model: &str, text: &str) -> u64 {
    count_by(Counting::Exact, model, text)
}

/// [`count`], or [`bytes_bound`] when `counting` is [`Counting::NoWait`] and the tokenizer is
/// not built yet.
pub fn count_by(counting: Counting, model: &str, text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    let encoding = Encoding::for_model(model);
    let bpe = match counting {
        Counting::Exact => Some(encoding.bpe()),
        Counting::NoWait => encoding.ready(),
        Counting::Bound => None,
    };
    bpe.map_or_else(|| bytes_bound(text), |bpe| bpe.count(text) as u64)
}

/// The text of a message `content`: a string, or the text parts of an array of parts.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .concat(),
        _ => String::new(),
    }
}

/// Prompt tokens of a list of chat messages (OpenAI's counting).
pub fn chat_prompt_tokens(counting: Counting, model: &str, messages: &[Value]) -> u64 {
    let mut total = 3;
    for message in messages {
        total += 3;
        if let Some(role) = message.get("role").and_then(Value::as_str) {
            total += count_by(counting, model, role);
        }
        if let Some(content) = message.get("content") {
            total += count_by(counting, model, &content_text(content));
        }
        if let Some(name) = message.get("name").and_then(Value::as_str) {
            total += 1 + count_by(counting, model, name);
        }
    }
    total
}

/// Tokens of a prompt or embedding `input`: a string, an array of strings, or token ids.
pub fn input_tokens(counting: Counting, model: &str, input: &Value) -> u64 {
    match input {
        Value::String(s) => count_by(counting, model, s),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::Number(_) => 1,
                Value::Array(ids) => ids.len() as u64,
                other => input_tokens(counting, model, other),
            })
            .sum(),
        _ => 0,
    }
}

fn u64_field(body: &Value, names: &[&str]) -> Option<u64> {
    names
        .iter()
        .find_map(|name| body.get(*name).and_then(Value::as_u64))
}

/// Estimate the admission cost of `body` sent to `endpoint`, waiting for the tokenizer if it
/// is not built yet.
pub fn estimate(endpoint: Endpoint, body: &Value, default_max_tokens: u64) -> Estimate {
    estimate_by(Counting::Exact, endpoint, body, default_max_tokens)
}

/// [`estimate`], counting as `counting` says: with [`Counting::NoWait`] it never waits, and
/// before the tokenizer is built its prompt count is never below the exact one.
pub fn estimate_by(
    counting: Counting,
    endpoint: Endpoint,
    body: &Value,
    default_max_tokens: u64,
) -> Estimate {
    let model = body.get("model").and_then(Value::as_str).unwrap_or("");
    let choices = u64_field(body, &["n"]).unwrap_or(1).max(1);
    let output_cap =
        |names: &[&str]| u64_field(body, names).unwrap_or(default_max_tokens) * choices;
    match endpoint {
        Endpoint::ChatCompletions => {
            let messages = body
                .get("messages")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            Estimate {
                prompt_tokens: chat_prompt_tokens(counting, model, messages),
                max_output_tokens: output_cap(&["max_completion_tokens", "max_tokens"]),
            }
        }
        Endpoint::Completions => Estimate {
            prompt_tokens: body
                .get("prompt")
                .map_or(0, |p| input_tokens(counting, model, p)),
            max_output_tokens: output_cap(&["max_tokens"]),
        },
        Endpoint::Embeddings => Estimate {
            prompt_tokens: body
                .get("input")
                .map_or(0, |i| input_tokens(counting, model, i)),
            max_output_tokens: 0,
        },
        Endpoint::Messages => {
            let messages = body
                .get("messages")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let system = body
                .get("system")
                .map_or(0, |s| count_by(counting, model, &content_text(s)));
            Estimate {
                prompt_tokens: chat_prompt_tokens(counting, model, messages) + system,
                max_output_tokens: u64_field(body, &["max_tokens"]).unwrap_or(default_max_tokens),
            }
        }
        Endpoint::Responses => {
            let prompt_tokens = match body.get("input") {
                Some(Value::Array(items)) => chat_prompt_tokens(counting, model, items),
                Some(other) => input_tokens(counting, model, other),
                None => 0,
            } + body
                .get("instructions")
                .and_then(Value::as_str)
                .map_or(0, |s| count_by(counting, model, s));
            Estimate {
                prompt_tokens,
                max_output_tokens: u64_field(body, &["max_output_tokens"])
                    .unwrap_or(default_max_tokens),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_with_the_model_tokenizer() {
        assert_eq!(count("gpt-4o-mini", "hello world"), 2);
        assert_eq!(count("gpt-3.5-turbo", "hello world"), 2);
        assert_eq!(count("gpt-4o", ""), 0);
    }

    /// Text that exercises the pre-tokenizer: letters in several scripts and cases,
    /// contractions, digits, punctuation runs, whitespace and newlines, emoji, special-token text.
    fn sample_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            "[a-zA-Z]{1,12}",
            "[ \t\n\r]{1,4}",
            "[0-9]{1,7}",
            "[.,;:!?()\\[\\]{}'\"/\\-]{1,3}",
            Just("'s".to_string()),
            Just("'LL".to_string()),
            Just("<|endoftext|>".to_string()),
            "[äöüßéèçñ]{1,4}",
            "[\\p{Han}]{1,6}",
            "[\\p{Hiragana}\\p{Katakana}]{1,6}",
            "[\\p{Cyrillic}]{1,8}",
            "[😀-🙏]{1,2}",
            any::<String>(),
        ];
        proptest::collection::vec(piece, 0..24).prop_map(|parts| parts.concat())
    }

    proptest::proptest! {
        /// paceline's estimator and the simulated provider count with different
        /// implementations of the same encodings; they must agree token for token.
        #[test]
        fn counts_match_the_reference_implementation(text in sample_text()) {
            for model in ["gpt-4o-mini", "gpt-4"] {
                let reference = paceline_mock::tokens::count(paceline_mock::tokens::encoding_for(model), &text);
                proptest::prop_assert_eq!(count(model, &text), reference, "{} {:?}", model, text);
            }
        }
    }

    /// A chat body of sampled texts: a system and a user message, one with a name.
    fn sample_chat() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        (sample_text(), sample_text(), sample_text()).prop_map(|(system, user, name)| {
            json!({
                "model": "gpt-4o-mini",
                "messages": [
                    {"role": "system", "content": system},
                    {"role": "user", "content": [{"type": "text", "text": user}], "name": name}
                ],
                "max_tokens": 16
            })
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// What admission counts before a family's tokenizer is built is never below the exact
        /// count, in either family.
        #[test]
        fn the_bytes_bound_is_never_below_the_count(text in sample_text()) {
            for model in ["gpt-4o-mini", "gpt-4"] {
                proptest::prop_assert!(bytes_bound(&text) >= count(model, &text), "{} {:?}", model, text);
            }
        }

        /// The same holds for a whole request's estimate, on every endpoint that counts text.
        #[test]
        fn an_estimate_without_the_tokenizer_is_never_below_the_exact_one(body in sample_chat()) {
            for model in ["gpt-4o-mini", "gpt-4", "claude-3-5-haiku-latest"] {
                let mut body = body.clone();
                body["model"] = json!(model);
                for endpoint in [Endpoint::ChatCompletions, Endpoint::Messages, Endpoint::Responses] {
                    let exact = estimate_by(Counting::Exact, endpoint, &body, 64);
                    let bound = estimate_by(Counting::Bound, endpoint, &body, 64);
                    proptest::prop_assert!(bound.prompt_tokens >= exact.prompt_tokens, "{:?} {}", endpoint, body);
                    proptest::prop_assert_eq!(bound.max_output_tokens, exact.max_output_tokens);
                }
            }
        }
    }

    #[test]
    fn the_bound_meets_the_count_on_one_byte_and_exceeds_it_on_words() {
        assert_eq!(count("gpt-4o-mini", "a"), bytes_bound("a"));
        assert_eq!(bytes_bound("hello world"), 11);
        assert_eq!(count("gpt-4o-mini", "hello world"), 2);
    }

    #[test]
    fn without_waiting_a_family_counts_exactly_once_its_tokenizer_is_built() {
        let text = "Größenwahn, tokens/min";
        let encoding = Encoding::for_model("gpt-4");
        encoding.prepare();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !encoding.is_loaded() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(encoding.is_loaded());
        assert_eq!(
            count_by(Counting::NoWait, "gpt-4", text),
            count("gpt-4", text)
        );
    }

    /// The simulated provider chooses each model's encoding from its own table: on a text the
    /// two encodings count differently, both sides must agree for every family.
    #[test]
    fn model_encodings_match_the_reference_implementation() {
        let text = "Größenwahn 東京タワー здравствуйте — rate limits, tokens/min, requests/min.";
        let o200k = Encoding::O200k.bpe().count(text);
        let cl100k = Encoding::Cl100k.bpe().count(text);
        assert_ne!(o200k, cl100k, "the text must tell the encodings apart");
        for model in [
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4.1-nano",
            "gpt-4.5-preview",
            "gpt-5",
            "o1-mini",
            "o3",
            "o4-mini",
            "gpt-4",
            "gpt-3.5-turbo",
            "text-embedding-3-small",
            "claude-3-5-haiku-latest",
        ] {
            let reference =
                paceline_mock::tokens::count(paceline_mock::tokens::encoding_for(model), text);
            assert_eq!(count(model, text), reference, "{model}");
        }
    }

    #[test]
    fn chat_estimate_adds_framing_and_output_cap() {
        let body = json!({
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "hello world"}],
            "max_tokens": 100,
            "n": 2
        });
        let e = estimate(Endpoint::ChatCompletions, &body, DEFAULT_MAX_TOKENS);
        // 3 (priming) + 3 (message) + 1 ("user") + 2 ("hello world")
        assert_eq!(e.prompt_tokens, 9);
        assert_eq!(e.max_output_tokens, 200);
        assert_eq!(e.total(), 209);
    }

    #[test]
    fn absent_cap_uses_the_default() {
        let body = json!({"model": "gpt-4o-mini", "messages": []});
        let e = estimate(Endpoint::ChatCompletions, &body, 256);
        assert_eq!(
            e,
            Estimate {
                prompt_tokens: 3,
                max_output_tokens: 256
            }
        );
    }

    #[test]
    fn embeddings_count_input_only() {
        let body = json!({"model": "text-embedding-3-small", "input": ["hello world", "hi"]});
        let e = estimate(Endpoint::Embeddings, &body, DEFAULT_MAX_TOKENS);
        assert_eq!(
            e,
            Estimate {
                prompt_tokens: 3,
                max_output_tokens: 0
            }
        );
        let ids = json!({"model": "text-embedding-3-small", "input": [[1, 2, 3], [4]]});
        assert_eq!(estimate(Endpoint::Embeddings, &ids, 0).prompt_tokens, 4);
    }

    #[test]
    fn messages_count_system_and_reserve_max_tokens() {
        let body = json!({
            "model": "claude-3-5-haiku-latest",
            "system": "hello world",
            "messages": [{"role": "user", "content": "hello world"}],
            "max_tokens": 64
        });
        let e = estimate(Endpoint::Messages, &body, DEFAULT_MAX_TOKENS);
        assert_eq!(e.prompt_tokens, 11);
        assert_eq!(e.max_output_tokens, 64);
    }

    #[test]
    fn content_parts_count_their_text() {
        let body = json!({
            "model": "gpt-4o",
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "hello"},
                {"type": "image_url", "image_url": {"url": "data:"}},
                {"type": "text", "text": " world"}
            ]}],
            "max_completion_tokens": 10
        });
        let e = estimate(Endpoint::ChatCompletions, &body, DEFAULT_MAX_TOKENS);
        assert_eq!(e.prompt_tokens, 9);
        assert_eq!(e.max_output_tokens, 10);
    }
}

//! Prompt token counting with real tokenizers (tiktoken-rs), independent of the client side
//! (which counts with the `tiktoken` crate: two implementations held to the same counts).
//! Which model uses which encoding is decided here too, from this crate's own table: the mock
//! must not know the client's tokenizer module, so a wrong mapping on either side shows as a
//! difference in counts.
//!
//! The formulas are the contract the client's estimator follows, so that admission charges match:
//! - chat: Σ over messages (3 + tokens(role) + tokens(content as text) + (if `name`: 1 + tokens(name))) + 3,
//!   where a content array counts its text parts concatenated;
//! - completions: tokens(prompt), an array of strings summed;
//! - embeddings: tokens(input), an array of strings summed, arrays of token ids by their length.

use serde_json::Value;
use tiktoken_rs::CoreBPE;

/// Model families tokenized with o200k_base (a model name starting with one of these); every
/// other model, known or not, is counted with cl100k_base.
const O200K_FAMILIES: [&str; 7] = ["gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4"];

/// The tokenizer for a model: o200k_base for the gpt-4o / gpt-4.1 / gpt-4.5 / gpt-5 / o1 / o3 /
/// o4 families, cl100k_base otherwise.
pub fn encoding_for(model: &str) -> &'static CoreBPE {
    if O200K_FAMILIES
        .iter()
        .any(|family| model.starts_with(family))
    {
        tiktoken_rs::o200k_base_singleton()
    } else {
        tiktoken_rs::cl100k_base_singleton()
    }
}

/// Build both encoders now (each takes ~100 ms the first time) so no request pays for it.
pub fn warm_up() {
    tiktoken_rs::o200k_base_singleton();
    tiktoken_rs::cl100k_base_singleton();
}

/// Tokens in `text` (ordinary encoding: special tokens count as text).
pub fn count(bpe: &CoreBPE, text: &str) -> u64 {
    if text.is_empty() {
        0
    } else {
        bpe.encode_ordinary(text).len() as u64
    }
}

/// A message's content as text: a string as is, an array's text parts concatenated.
pub fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p {
                Value::String(s) => Some(s.as_str()),
                Value::Object(o) => o.get("text").and_then(Value::as_str),
                _ => None,
            })
            .collect(),
        _ => String::new(),
    }
}

/// One chat message as the counting formula sees it.
pub struct ChatMessage<'a> {
    /// `role`.
    pub role: &'a str,
    /// `content` flattened to text.
    pub content: String,
    /// `name`, if any.
    pub name: Option<&'a str>,
}

/// Prompt tokens of a chat request.
pub fn chat_prompt(bpe: &CoreBPE, messages: &[ChatMessage<'_>]) -> u64 {
    let per_message: u64 = messages
        .iter()
        .map(|m| {
            3 + count(bpe, m.role)
                + count(bpe, &m.content)
                + m.name.map_or(0, |n| 1 + count(bpe, n))
        })
        .sum();
    per_message + 3
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn encoding_choice() {
        let o200k = tiktoken_rs::o200k_base_singleton() as *const CoreBPE;
        let cl100k = tiktoken_rs::cl100k_base_singleton() as *const CoreBPE;
        for m in [
            "gpt-4o-mini",
            "gpt-4.1",
            "gpt-4.5-preview",
            "gpt-5",
            "o1-mini",
            "o3",
            "o4-mini",
        ] {
            assert_eq!(encoding_for(m) as *const CoreBPE, o200k, "{m}");
        }
        for m in [
            "gpt-4",
            "gpt-3.5-turbo",
            "text-embedding-3-small",
            "claude-3-5-haiku",
        ] {
            assert_eq!(encoding_for(m) as *const CoreBPE, cl100k, "{m}");
        }
    }

    #[test]
    fn chat_formula() {
        let bpe = encoding_for("gpt-4o-mini");
        let msgs = [
            ChatMessage {
                role: "system",
                content: "You are terse.".into(),
                name: None,
            },
            ChatMessage {
                role: "user",
                content: "Hello there".into(),
                name: Some("bob"),
            },
        ];
        let want = (3 + 1 + count(bpe, "You are terse.")) + (3 + 1 + 2 + 1 + 1) + 3;
        assert_eq!(count(bpe, "Hello there"), 2);
        assert_eq!(chat_prompt(bpe, &msgs), want);
    }

    #[test]
    fn content_arrays_concatenate_text_parts() {
        let c = json!([{"type":"text","text":"ab"},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"cd"}]);
        assert_eq!(content_text(&c), "abcd");
        assert_eq!(content_text(&json!(null)), "");
    }
}

//! Key redaction: anything in a provider's message that looks like an API key is replaced
//! before the message is recorded, logged or answered ([`redact_keys`]).
//!
//! Owns the shape of a key in prose (OpenAI `sk-…`, `sk-proj-…`; Anthropic `sk-ant-…`). It must
//! not know where messages come from or go.

/// Characters that may continue an API key (OpenAI masks the middle of a quoted key with `*`).
fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '*')
}

/// Replaces every token starting with `sk-` (OpenAI `sk-…`, `sk-proj-…`; Anthropic
/// `sk-ant-…`) with `sk-…`. A `sk-` inside a word (`task-`, `disk-`) is left alone; after
/// punctuation, even a hyphen, it is redacted: better too much than a leaked key.
pub fn redact_keys(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut previous: Option<char> = None;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("sk-") && !previous.is_some_and(|p| p.is_alphanumeric() || p == '_') {
            out.push_str("sk-…");
            let key_len = rest[3..]
                .find(|c: char| !is_key_char(c))
                .map_or(rest.len(), |len| len + 3);
            rest = &rest[key_len..];
            previous = Some('…');
            continue;
        }
        out.push(c);
        previous = Some(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_redacted() {
        let cases = [
            ("key sk-abc123 here", "key sk-… here"),
            ("sk-proj-AbC_d-9**********xYz.", "sk-…."),
            (
                "Incorrect key: sk-ant-api03-AAAA-BBBB_cc",
                "Incorrect key: sk-…",
            ),
            ("(sk-1234)", "(sk-…)"),
            ("'sk-1234'", "'sk-…'"),
            ("two sk-a sk-b", "two sk-… sk-…"),
            ("task-sk-1 disk-5 mask-x", "task-sk-… disk-5 mask-x"),
            ("Gr\u{fc}\u{df}esk-1", "Gr\u{fc}\u{df}esk-1"),
            ("sk-", "sk-…"),
            ("no keys here", "no keys here"),
            ("Gr\u{fc}\u{df}e sk-x\u{e9}", "Gr\u{fc}\u{df}e sk-…\u{e9}"),
        ];
        for (input, expected) in cases {
            assert_eq!(redact_keys(input), expected, "input {input:?}");
        }
    }
}

//! Generated answer text: words that are one token each in both cl100k_base and o200k_base, so
//! an answer drawn as `k` words is `k` tokens (usage is still counted on the real text).
//!
//! It knows nothing of requests or endpoints.

use rand::Rng;
use rand::rngs::SmallRng;

/// First word of every answer.
const FIRST: &str = "The";

/// Common words, each a single token (with its leading space) in both encodings.
const WORDS: [&str; 32] = [
    " the", " of", " and", " to", " in", " is", " that", " for", " it", " with", " as", " on",
    " was", " be", " at", " by", " this", " are", " from", " or", " an", " which", " can", " more",
    " time", " rate", " limit", " model", " data", " work", " request", " answer",
];

/// An answer of `tokens` pieces (one token each), split the way a stream sends it.
pub fn pieces(rng: &mut SmallRng, tokens: u32) -> Vec<&'static str> {
    let mut out = Vec::with_capacity(tokens as usize);
    if tokens == 0 {
        return out;
    }
    out.push(FIRST);
    for _ in 1..tokens {
        out.push(WORDS[rng.random_range(0..WORDS.len())]);
    }
    out
}

/// Answer length: uniform in `[1, 2·mean]`, then capped at `max_tokens`. Returns the length and
/// whether the cap applied (finish reason "length").
pub fn answer_length(rng: &mut SmallRng, mean: u32, max_tokens: u64) -> (u32, bool) {
    let drawn = rng.random_range(1..=mean.max(1).saturating_mul(2));
    if u64::from(drawn) > max_tokens {
        (u32::try_from(max_tokens).unwrap_or(u32::MAX), true)
    } else {
        (drawn, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::count;
    use rand::SeedableRng;

    #[test]
    fn every_word_is_one_token_in_both_encodings() {
        for bpe in [
            tiktoken_rs::o200k_base_singleton(),
            tiktoken_rs::cl100k_base_singleton(),
        ] {
            assert_eq!(count(bpe, FIRST), 1);
            for w in WORDS {
                assert_eq!(count(bpe, w), 1, "{w:?}");
            }
            let mut rng = SmallRng::seed_from_u64(7);
            for k in [1, 2, 17, 200] {
                let text: String = pieces(&mut rng, k).concat();
                assert_eq!(count(bpe, &text), u64::from(k), "{text}");
            }
        }
    }

    #[test]
    fn lengths_stay_in_range_and_cap() {
        let mut rng = SmallRng::seed_from_u64(1);
        for _ in 0..1000 {
            let (n, capped) = answer_length(&mut rng, 64, 4096);
            assert!((1..=128).contains(&n) && !capped);
        }
        assert_eq!(answer_length(&mut rng, 64, 0), (0, true));
        let (n, _) = answer_length(&mut rng, 64, 5);
        assert!(n <= 5);
    }
}

//! What a job's finished requests cost, by the way they went (`--via batch` and `--via auto`'s
//! summary): the tokens the provider reported for each, priced from the table at the batch or
//! the live price, against the same tokens all at the live price.
//!
//! It reads the input for each request's model and is given the rest (which request went which
//! way, with its tokens); it must not read the store or send anything.

use super::prices::PriceTable;
use crate::batch::{InputError, InputReader, InputSpec};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// A finished request's usage and the way it went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Used {
    /// Prompt tokens the provider reported.
    pub prompt: u64,
    /// Completion tokens the provider reported.
    pub completion: u64,
    /// Whether a batch finished it (else a live request).
    pub by_batch: bool,
}

/// One way's share.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Way {
    /// Requests finished that way.
    pub requests: u64,
    /// What they cost, priced models only.
    pub cost: f64,
}

/// The job's finished requests, by way.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Spent {
    /// Finished by a batch.
    pub batch: Way,
    /// Finished live.
    pub live: Way,
    /// What the priced requests would have cost all live.
    pub all_live: f64,
    /// Models without a price, with their finished requests (not in the costs).
    pub unpriced: Vec<(String, u64)>,
}

impl Spent {
    /// The summary's two lines, for people.
    pub fn lines(&self) -> String {
        let mut out = format!(
            "  via             {} by batch, {} live\n",
            self.batch.requests, self.live.requests
        );
        let cost = self.batch.cost + self.live.cost;
        let saved = if self.all_live > 0.0 {
            format!(", {:.0}% less", (1.0 - cost / self.all_live) * 100.0)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "  cost            ${cost:.6} (all live: ${:.6}{saved}){}\n",
            self.all_live,
            if self.unpriced.is_empty() {
                String::new()
            } else {
                let models: Vec<String> = self
                    .unpriced
                    .iter()
                    .map(|(m, n)| format!("{m} ({n})"))
                    .collect();
                format!("; unpriced, not counted: {}", models.join(", "))
            }
        ));
        out
    }
}

/// Price the finished requests `used` (input line → usage and way), reading each one's model
/// from the input.
pub fn spent(
    input: &InputSpec,
    used: &HashMap<u64, Used>,
    prices: &PriceTable,
) -> Result<Spent, InputError> {
    let mut out = Spent::default();
    let mut unpriced: BTreeMap<String, u64> = BTreeMap::new();
    let mut reader = InputReader::open(input)?;
    for item in reader.by_ref() {
        let Ok(request) = item else { continue };
        let Some(u) = used.get(&request.line) else {
            continue;
        };
        let way = if u.by_batch {
            &mut out.batch
        } else {
            &mut out.live
        };
        way.requests += 1;
        let model = request
            .body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("");
        let Some(p) = prices.find(model) else {
            *unpriced.entry(model.to_string()).or_default() += 1;
            continue;
        };
        let at = |input: f64, output: f64| {
            (u.prompt as f64 * input + u.completion as f64 * output) / 1e6
        };
        let live = at(p.input, p.output);
        way.cost += if u.by_batch {
            at(p.batch_input, p.batch_output)
        } else {
            live
        };
        out.all_live += live;
    }
    reader.finish()?;
    out.unpriced = unpriced.into_iter().collect();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::InputFormat;

    #[test]
    fn each_way_at_its_price_against_all_live() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        let line = |id: &str, model: &str| {
            format!(
                r#"{{"custom_id":"{id}","method":"POST","url":"/v1/chat/completions","body":{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}}}"#
            )
        };
        let text = [
            line("a", "gpt-4o-mini"),
            line("b", "gpt-4o-mini"),
            line("c", "llama-local"),
            line("d", "gpt-4o-mini"),
        ]
        .join("\n");
        std::fs::write(&path, text).unwrap();
        let input = InputSpec {
            path,
            format: InputFormat::BatchJsonl,
            ..InputSpec::default()
        };
        let used = HashMap::from([
            (
                1,
                Used {
                    prompt: 1_000_000,
                    completion: 0,
                    by_batch: true,
                },
            ),
            (
                2,
                Used {
                    prompt: 0,
                    completion: 1_000_000,
                    by_batch: false,
                },
            ),
            (
                3,
                Used {
                    prompt: 5,
                    completion: 5,
                    by_batch: false,
                },
            ),
        ]);
        let prices = PriceTable::shipped().unwrap();
        let p = prices.find("gpt-4o-mini").unwrap().clone();
        let s = spent(&input, &used, &prices).unwrap();
        assert_eq!(s.batch.requests, 1);
        assert_eq!(s.live.requests, 2);
        assert!((s.batch.cost - p.batch_input).abs() < 1e-12);
        assert!((s.live.cost - p.output).abs() < 1e-12);
        assert!((s.all_live - (p.input + p.output)).abs() < 1e-12);
        assert_eq!(s.unpriced, vec![("llama-local".to_string(), 1)]);
        let text = s.lines();
        assert!(text.contains("1 by batch, 2 live"), "{text}");
        assert!(
            text.contains("unpriced, not counted: llama-local (1)"),
            "{text}"
        );
    }
}

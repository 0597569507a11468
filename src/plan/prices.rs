//! The price table: US dollars per million tokens, live and batched, per model — shipped as
//! `data/prices.toml` (each entry with the page and the day it was read), overridden or
//! extended by the config's `[[prices]]` (only the prices that differ, for a model the table
//! has) and then by a file of the table's format (`--prices FILE`).
//!
//! It knows prices only: no request, no provider's API.

use crate::config::PriceEntry;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The table shipped with paceline.
const SHIPPED: &str = include_str!("../../data/prices.toml");
/// Where a config entry's prices were read, unless it says.
pub const CONFIG_PAGE: &str = "the config's [[prices]]";

/// One model's prices.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
pub struct Price {
    /// The provider (for people; matching is by model).
    pub provider: String,
    /// The model, matched exactly or as the longest prefix of a request's model.
    pub model: String,
    /// Live input, $ per million tokens.
    pub input: f64,
    /// Live output, $ per million tokens.
    pub output: f64,
    /// Batched input, $ per million tokens.
    pub batch_input: f64,
    /// Batched output, $ per million tokens.
    pub batch_output: f64,
    /// The day the price was read.
    pub read_on: String,
    /// The page it was read from.
    pub page: String,
}

#[derive(Debug, Deserialize)]
struct File {
    #[serde(default)]
    price: Vec<Price>,
}

/// A price file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PriceError {
    /// It cannot be read.
    #[error("cannot read price file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not the table's format.
    #[error("price file {}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What TOML said (with the line).
        message: String,
    },
    /// A config `[[prices]]` entry for a model the table lacks leaves a price out.
    #[error(
        "config prices[{index}] (model {model:?}): the price table has no such model, so all \
         four prices are needed; {missing} missing"
    )]
    Incomplete {
        /// Its place among the entries.
        index: usize,
        /// Its model.
        model: String,
        /// The prices it lacks.
        missing: String,
    },
}

/// The prices known, later entries over earlier ones for the same model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceTable {
    prices: Vec<Price>,
}

fn parse(text: &str, path: &Path) -> Result<Vec<Price>, PriceError> {
    let file: File = toml::from_str(text).map_err(|e| PriceError::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    for p in &file.price {
        let all = [p.input, p.output, p.batch_input, p.batch_output];
        if all.iter().any(|v| !v.is_finite() || *v < 0.0) {
            return Err(PriceError::Format {
                path: path.to_path_buf(),
                message: format!("model {:?}: a price must be a number ≥ 0", p.model),
            });
        }
    }
    Ok(file.price)
}

impl PriceTable {
    /// The shipped table.
    pub fn shipped() -> Result<PriceTable, PriceError> {
        Ok(PriceTable {
            prices: parse(SHIPPED, Path::new("data/prices.toml"))?,
        })
    }

    /// This table with the entries of `path` over it.
    pub fn with_file(mut self, path: &Path) -> Result<PriceTable, PriceError> {
        let text = std::fs::read_to_string(path).map_err(|source| PriceError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        for p in parse(&text, path)? {
            self.prices.retain(|q| q.model != p.model);
            self.prices.push(p);
        }
        Ok(self)
    }

    /// This table with the config's `[[prices]]` over it: an entry for a model the table has
    /// replaces the prices it gives; one for a model it lacks must give all four.
    pub fn with_config(mut self, entries: &[PriceEntry]) -> Result<PriceTable, PriceError> {
        for (index, e) in entries.iter().enumerate() {
            let base = self.prices.iter().find(|p| p.model == e.model).cloned();
            let missing: Vec<&str> = e
                .given()
                .iter()
                .filter(|(_, v)| v.is_none())
                .map(|(name, _)| *name)
                .collect();
            let base = match base {
                Some(base) => base,
                None if missing.is_empty() => Price {
                    provider: String::new(),
                    model: e.model.clone(),
                    input: 0.0,
                    output: 0.0,
                    batch_input: 0.0,
                    batch_output: 0.0,
                    read_on: String::new(),
                    page: String::new(),
                },
                None => {
                    return Err(PriceError::Incomplete {
                        index,
                        model: e.model.clone(),
                        missing: missing.join(", "),
                    });
                }
            };
            let price = Price {
                provider: e.provider.clone().unwrap_or(base.provider),
                model: e.model.clone(),
                input: e.input.unwrap_or(base.input),
                output: e.output.unwrap_or(base.output),
                batch_input: e.batch_input.unwrap_or(base.batch_input),
                batch_output: e.batch_output.unwrap_or(base.batch_output),
                read_on: e.read_on.clone().unwrap_or_default(),
                page: e.page.clone().unwrap_or_else(|| CONFIG_PAGE.to_string()),
            };
            self.prices.retain(|q| q.model != price.model);
            self.prices.push(price);
        }
        Ok(self)
    }

    /// The price of `model`: its own entry, else the entry whose model is its longest prefix.
    pub fn find(&self, model: &str) -> Option<&Price> {
        self.prices
            .iter()
            .filter(|p| model.starts_with(p.model.as_str()))
            .max_by_key(|p| p.model.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_table_reads_and_names_its_sources() {
        let table = PriceTable::shipped().unwrap();
        let mini = table.find("gpt-4o-mini-2024-07-18").unwrap();
        assert_eq!(mini.model, "gpt-4o-mini");
        assert_eq!(table.find("gpt-4o-2024-08-06").unwrap().model, "gpt-4o");
        assert_eq!(table.find("claude-3-5-haiku-latest").unwrap().input, 0.80);
        assert!(table.find("llama-3-70b").is_none());
        for p in &table.prices {
            assert!(!p.page.is_empty() && p.read_on.len() == 10, "{p:?}");
            assert!(
                p.batch_input <= p.input && p.batch_output <= p.output,
                "{p:?}"
            );
        }
    }

    #[test]
    fn the_config_overrides_a_price_and_adds_a_model() {
        let shipped = PriceTable::shipped().unwrap();
        let mini = shipped.find("gpt-4o-mini").unwrap().clone();
        let entries = [
            PriceEntry {
                model: "gpt-4o-mini".into(),
                input: Some(0.12),
                ..PriceEntry::default()
            },
            PriceEntry {
                model: "llama".into(),
                provider: Some("openai-compatible".into()),
                input: Some(1.0),
                output: Some(2.0),
                batch_input: Some(0.5),
                batch_output: Some(1.0),
                ..PriceEntry::default()
            },
        ];
        let table = shipped.clone().with_config(&entries).unwrap();
        let over = table.find("gpt-4o-mini-2024-07-18").unwrap();
        assert_eq!(over.input, 0.12);
        assert_eq!(over.output, mini.output);
        assert_eq!(over.batch_output, mini.batch_output);
        assert_eq!(over.provider, mini.provider);
        assert_eq!(over.page, CONFIG_PAGE);
        let added = table.find("llama-3.1-70b").unwrap();
        assert_eq!((added.input, added.batch_output), (1.0, 1.0));
        let err = shipped
            .with_config(&[PriceEntry {
                model: "mistral".into(),
                input: Some(1.0),
                ..PriceEntry::default()
            }])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("prices[0]") && err.contains("output, batch_input, batch_output missing"),
            "{err}"
        );
    }

    #[test]
    fn a_file_overrides_and_extends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(
            &path,
            "[[price]]\nprovider='x'\nmodel='gpt-4o-mini'\ninput=1\noutput=2\nbatch_input=0.5\nbatch_output=1\nread_on='2026-01-01'\npage='mine'\n\
             [[price]]\nprovider='x'\nmodel='llama'\ninput=1\noutput=1\nbatch_input=1\nbatch_output=1\nread_on='2026-01-01'\npage='mine'\n",
        )
        .unwrap();
        let table = PriceTable::shipped().unwrap().with_file(&path).unwrap();
        assert_eq!(table.find("gpt-4o-mini").unwrap().input, 1.0);
        assert!(table.find("llama-3").is_some());
        std::fs::write(&path, "[[price]]\nmodel='m'\n").unwrap();
        let err = PriceTable::shipped().unwrap().with_file(&path).unwrap_err();
        assert!(err.to_string().contains("p.toml"), "{err}");
    }
}

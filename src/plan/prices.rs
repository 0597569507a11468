//! The price table: US dollars per million tokens, live and batched, per model — shipped as
//! `data/prices.toml` (each entry with the page and the day it was read), overridden or
//! extended by a file of the same format.
//!
//! It knows prices only: no request, no provider's API.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The table shipped with paceline.
const SHIPPED: &str = include_str!("../../data/prices.toml");

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

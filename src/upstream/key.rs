//! An upstream API key: the secret, and the short fingerprint that stands for it everywhere a
//! key must be named (logs, progress, errors, metrics).
//!
//! It must not know providers, quotas or where a key is sent.

use sha2::{Digest, Sha256};
use std::fmt;

/// A secret API key. `Debug` and `Display` show only its fingerprint.
#[derive(Clone)]
pub struct ApiKey {
    secret: String,
    label: String,
}

impl ApiKey {
    /// A key read from the environment variable `source` (used in its label).
    pub fn new(secret: String, source: &str) -> Self {
        let digest = Sha256::digest(secret.as_bytes());
        let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
        ApiKey {
            label: format!("{source}#{hex}"),
            secret,
        }
    }

    /// Read a key from the environment variable `name`.
    pub fn from_env(name: &str) -> Result<Self, KeyError> {
        match std::env::var(name) {
            Ok(value) if !value.trim().is_empty() => {
                Ok(ApiKey::new(value.trim().to_string(), name))
            }
            Ok(_) => Err(KeyError::Empty(name.to_string())),
            Err(_) => Err(KeyError::Missing(name.to_string())),
        }
    }

    /// The secret itself: only for the `Authorization` header.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// `SOURCE#1a2b3c4d`: the environment variable and a hash prefix, safe to show.
    pub fn label(&self) -> &str {
        &self.label
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({})", self.label)
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

/// A key that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The variable is not set.
    #[error("environment variable {0} is not set")]
    Missing(String),
    /// The variable is set but empty.
    #[error("environment variable {0} is empty")]
    Empty(String),
}

impl KeyError {
    /// This error followed by what to do about it (`fix` names where the variable comes from).
    pub fn with_fix(self, fix: impl Into<String>) -> KeyProblem {
        KeyProblem {
            error: self,
            fix: fix.into(),
        }
    }
}

/// A [`KeyError`] and what to do about it: the cause first, then the fix.
#[derive(Debug, thiserror::Error)]
#[error("{error}; {fix}")]
pub struct KeyProblem {
    /// What is wrong with the variable.
    pub error: KeyError,
    /// What to do, naming the flag or config entry that names the variable.
    pub fix: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shows_the_secret() {
        let key = ApiKey::new("sk-very-secret-value".into(), "OPENAI_API_KEY");
        let shown = format!("{key} {key:?}");
        assert!(!shown.contains("secret-value"));
        assert!(shown.starts_with("OPENAI_API_KEY#"));
        assert_eq!(key.label().len(), "OPENAI_API_KEY#".len() + 8);
    }
}

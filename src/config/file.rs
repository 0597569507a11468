//! Where a configuration's values were written, and the one error that points there: a config
//! file ([`ConfigFile`]: its path, and its text, to find the line of a key), the command-line
//! flags written over it ([`Provenance`]), and [`ConfigError`], whose messages name the file,
//! the line, the key (or the flag) and what to do.
//!
//! It must not know which keys exist or what they mean: keys are paths such as
//! `models[0].deployments[1].env`, handed in by the validation that found a problem.

use serde::de::DeserializeOwned;
use std::fmt;
use std::path::{Path, PathBuf};
use toml::de::{DeTable, DeValue};

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not TOML of the expected shape (a syntax error, an unknown key, a value of
    /// the wrong type).
    #[error("config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message: the line and column, the line itself, and what is wrong.
        message: String,
    },
    /// A value is out of range or contradicts another.
    #[error("{}", describe(.place, .key, .message))]
    Invalid {
        /// Where the value was written.
        place: Place,
        /// The key (`max_wait`, `clients[1].key_env`, ...).
        key: String,
        /// What is wrong, and what to write instead.
        message: String,
    },
}

/// Where a value was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// In a config file, at a line when the key (or the table holding it) is written there.
    File {
        /// The file.
        path: PathBuf,
        /// The line (1-based).
        line: Option<usize>,
    },
    /// On the command line, by this flag.
    Flag(&'static str),
    /// Nowhere: a default, or a value derived from others.
    Unwritten,
}

/// `config FILE:LINE: KEY: WHAT`, `--flag: WHAT`, or `KEY: WHAT`.
fn describe(place: &Place, key: &str, message: &str) -> String {
    match place {
        Place::File {
            path,
            line: Some(line),
        } => format!("config {}:{line}: {key}: {message}", path.display()),
        Place::File { path, line: None } => {
            format!("config {}: {key}: {message}", path.display())
        }
        Place::Flag(flag) => format!("{flag}: {message}"),
        Place::Unwritten => format!("{key}: {message}"),
    }
}

/// A config file's path and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    path: PathBuf,
    text: String,
}

impl ConfigFile {
    /// Read the file at `path`.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self::new(path, text))
    }

    /// A file's text, already read; `path` names it in errors.
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        ConfigFile {
            path: path.into(),
            text: text.into(),
        }
    }

    /// The file deserialized as written.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        toml::from_str(&self.text).map_err(|e| ConfigError::Parse {
            path: self.path.clone(),
            message: e.to_string().trim_end().to_string(),
        })
    }

    /// The line (1-based) where `key` is written, else where the nearest table or array
    /// holding it is; `None` when not even its top-level key is in the file.
    fn line_of(&self, key: &str) -> Option<usize> {
        let document = DeTable::parse(&self.text).ok()?;
        let mut table = document.get_ref();
        let mut found = None;
        for segment in key.split('.') {
            let (name, indices) = split_indices(segment);
            let Some((written, value)) = table.iter().find(|(k, _)| k.get_ref() == name) else {
                break;
            };
            found = Some(written.span().start);
            let mut value = value;
            for index in indices {
                let DeValue::Array(items) = value.get_ref() else {
                    break;
                };
                let Some(item) = items.get(index) else {
                    break;
                };
                found = Some(item.span().start);
                value = item;
            }
            match value.get_ref() {
                DeValue::Table(inner) => table = inner,
                _ => break,
            }
        }
        found.map(|offset| line_at(&self.text, offset))
    }
}

/// `deployments[1]` → (`deployments`, `[1]`); `env` → (`env`, `[]`).
fn split_indices(segment: &str) -> (&str, Vec<usize>) {
    let name_end = segment.find('[').unwrap_or(segment.len());
    let indices = segment[name_end..]
        .split(['[', ']'])
        .filter_map(|n| n.parse().ok())
        .collect();
    (&segment[..name_end], indices)
}

/// The 1-based line holding byte `offset` of `text`.
fn line_at(text: &str, offset: usize) -> usize {
    let before = text.get(..offset).unwrap_or(text);
    before.bytes().filter(|b| *b == b'\n').count() + 1
}

/// A configuration as written: deserialized from a file, remembering where it came from so
/// that its validation (`TryFrom`, into the settings) can point at the values it refuses.
pub trait RawConfig: DeserializeOwned {
    /// Where the values were written.
    fn provenance_mut(&mut self) -> &mut Provenance;

    /// Read a file as written.
    fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::from_file(ConfigFile::read(path)?)
    }

    /// A file's text as written.
    fn from_file(file: ConfigFile) -> Result<Self, ConfigError> {
        let mut raw: Self = file.deserialize()?;
        *raw.provenance_mut() = Provenance::file(file);
        Ok(raw)
    }
}

/// Where a raw configuration's values were written: the config file, if any, and the keys that
/// command-line flags wrote over it. Validation asks it for the error of a key
/// ([`Provenance::invalid`]), which then points at the right place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provenance {
    file: Option<ConfigFile>,
    flags: Vec<(&'static str, &'static str)>,
}

impl Provenance {
    /// Values read from `file`.
    pub fn file(file: ConfigFile) -> Self {
        Provenance {
            file: Some(file),
            flags: Vec::new(),
        }
    }

    /// Record that `flag` wrote `key` (and everything under it, such as `keys[0].env` under
    /// `keys`).
    pub fn set_by_flag(&mut self, key: &'static str, flag: &'static str) {
        self.flags.retain(|(k, _)| *k != key);
        self.flags.push((key, flag));
    }

    /// Where the value of `key` was written.
    pub fn place(&self, key: &str) -> Place {
        let under = |written: &str| {
            key.strip_prefix(written)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
        };
        if let Some((_, flag)) = self.flags.iter().find(|(k, _)| under(k)) {
            return Place::Flag(flag);
        }
        match &self.file {
            Some(file) => Place::File {
                path: file.path.clone(),
                line: file.line_of(key),
            },
            None => Place::Unwritten,
        }
    }

    /// The error for the value of `key`: `message` says what is wrong and what to do.
    pub fn invalid(&self, key: impl Into<String>, message: impl fmt::Display) -> ConfigError {
        let key = key.into();
        ConfigError::Invalid {
            place: self.place(&key),
            key,
            message: message.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
listen = \"127.0.0.1:0\"
max_wait = \"soon\"

[[keys]]
env = \"A\"

[[keys]]
env = \"sk-live\"
rpm = 5

[[models]]
name = \"fast\"
[[models.deployments]]
env = \"B\"
[[models.deployments]]
provider = \"bedrock\"
env = \"C\"

[redis]
url = \"redis://x\"
";

    fn line(key: &str) -> Option<usize> {
        ConfigFile::new("t.toml", TEXT).line_of(key)
    }

    #[test]
    fn keys_are_found_on_their_lines() {
        assert_eq!(line("max_wait"), Some(2));
        assert_eq!(line("keys[1].env"), Some(8));
        assert_eq!(line("keys[1].rpm"), Some(9));
        assert_eq!(line("models[0].deployments[1].provider"), Some(16));
        assert_eq!(line("redis.url"), Some(20));
    }

    #[test]
    fn a_missing_key_points_at_what_holds_it() {
        let holder = line("keys[1]").expect("keys[1] is written");
        assert_eq!(line("keys[1].tpm"), Some(holder));
        assert!(holder == 7 || holder == 8, "{holder}");
        assert_eq!(line("upstream"), None);
        assert_eq!(line("max_wait.x"), Some(2));
    }

    #[test]
    fn errors_name_the_file_line_key_or_flag() {
        let mut at = Provenance::file(ConfigFile::new("t.toml", TEXT));
        let err = at.invalid("max_wait", "is not a duration").to_string();
        assert_eq!(err, "config t.toml:2: max_wait: is not a duration");
        let err = at.invalid("upstream", "is required").to_string();
        assert_eq!(err, "config t.toml: upstream: is required");
        at.set_by_flag("keys", "--api-key-env");
        let err = at.invalid("keys[1].env", "looks like a key").to_string();
        assert_eq!(err, "--api-key-env: looks like a key");
        assert_eq!(at.place("keysets"), at.place("upstream"));
        let err = Provenance::default().invalid("workers", "must be at least 1");
        assert_eq!(err.to_string(), "workers: must be at least 1");
    }

    #[test]
    fn parse_errors_name_the_file_and_line() {
        let err = ConfigFile::new("t.toml", "env = \"A\"\nenvv = 1\n")
            .deserialize::<crate::config::RawKey>()
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("config t.toml: TOML parse error at line 2"),
            "{err}"
        );
        assert!(err.contains("envv"), "{err}");
    }
}

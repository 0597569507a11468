//! The job record: which input (path, size and SHA-256 of its bytes), which settings shape its
//! requests, where its output goes, and how many requests it holds.
//!
//! It reads the input's bytes only for their digest and must not know its requests or anything
//! sent.

use super::{Store, StoreError, now_ms};
use crate::batch::{InputSpec, OutputFormat};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};

/// What identifies an input's content: its size and the SHA-256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputIdentity {
    /// Lowercase hex SHA-256 of the whole file.
    pub sha256: String,
    /// Its size in bytes.
    pub bytes: u64,
}

impl InputIdentity {
    /// Hash `path`, streaming it in 256 KiB chunks (never the whole file in memory).
    pub fn of_file(path: &Path) -> Result<InputIdentity, StoreError> {
        let io_err = |source| StoreError::Io {
            path: path.to_path_buf(),
            action: "read input",
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io_err)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut bytes = 0u64;
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(e)),
            };
            hasher.update(&buf[..n]);
            bytes += n as u64;
        }
        let mut sha256 = String::with_capacity(64);
        for byte in hasher.finalize() {
            let _ = write!(sha256, "{byte:02x}");
        }
        Ok(InputIdentity { sha256, bytes })
    }

    /// The first 12 hex digits, for messages.
    pub fn short(&self) -> &str {
        self.sha256.get(..12).unwrap_or(&self.sha256)
    }
}

/// The options that decide what the requests are (the input format and the template mode's
/// options). Pacing options are not part of it: they may change between runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSettings {
    /// The input format, resolved (`batch-jsonl`, `lines`, ...).
    pub format: String,
    /// `--template`.
    pub template: Option<String>,
    /// `--model`.
    pub model: Option<String>,
    /// `--system`.
    pub system: Option<String>,
    /// `--max-tokens`.
    pub max_tokens: Option<u64>,
    /// `--id-field`.
    pub id_field: Option<String>,
    /// `--endpoint` (a URL path).
    pub endpoint: String,
    /// `--output-format` (`openai`, `anthropic`): the output's lines must all have one format.
    /// Jobs begun before the option existed wrote OpenAI's.
    #[serde(default = "openai_output")]
    pub output_format: String,
}

fn openai_output() -> String {
    OutputFormat::OpenAi.name().to_string()
}

impl JobSettings {
    /// The settings of an input spec.
    pub fn of(spec: &InputSpec) -> JobSettings {
        let format = spec.format.resolve(&spec.path, spec.template.is_some());
        JobSettings {
            format: format.name().to_string(),
            template: spec.template.clone(),
            model: spec.model.clone(),
            system: spec.system.clone(),
            max_tokens: spec.max_tokens,
            id_field: spec.id_field.clone(),
            endpoint: if spec.template.is_some() {
                spec.endpoint.path().to_string()
            } else {
                String::new()
            },
            output_format: openai_output(),
        }
    }

    /// These settings with the output written in `format`.
    pub fn with_output_format(mut self, format: OutputFormat) -> JobSettings {
        self.output_format = format.name().to_string();
        self
    }

    /// The first setting that differs from `other`, as (flag, was, now).
    fn difference(&self, now: &JobSettings) -> Option<(String, String, String)> {
        fn show<T: std::fmt::Debug>(v: &Option<T>) -> String {
            v.as_ref()
                .map_or_else(|| "not given".to_string(), |v| format!("{v:?}"))
        }
        let pairs = [
            (
                "--format",
                format!("{:?}", self.format),
                format!("{:?}", now.format),
            ),
            ("--template", show(&self.template), show(&now.template)),
            ("--model", show(&self.model), show(&now.model)),
            ("--system", show(&self.system), show(&now.system)),
            (
                "--max-tokens",
                show(&self.max_tokens),
                show(&now.max_tokens),
            ),
            ("--id-field", show(&self.id_field), show(&now.id_field)),
            (
                "--endpoint",
                format!("{:?}", self.endpoint),
                format!("{:?}", now.endpoint),
            ),
            (
                "--output-format",
                self.output_format.clone(),
                now.output_format.clone(),
            ),
        ];
        pairs
            .into_iter()
            .find(|(_, was, now)| was != now)
            .map(|(flag, was, now)| (flag.to_string(), was, now))
    }
}

/// The job a state holds.
#[derive(Debug, Clone)]
pub struct JobRecord {
    /// The input file as given when the job began.
    pub input_path: PathBuf,
    /// Its identity then.
    pub identity: InputIdentity,
    /// The request settings.
    pub settings: JobSettings,
    /// The output file of the latest run.
    pub output_path: PathBuf,
    /// Requests in the job.
    pub total: u64,
    /// Invalid input lines skipped with `--skip-invalid`.
    pub skipped: u64,
    /// When the job began (ms since the epoch).
    pub created_at: i64,
}

impl JobRecord {
    /// Refuse to resume with a different input or different request settings.
    pub fn check_same(
        &self,
        state: &Path,
        input: &Path,
        identity: &InputIdentity,
        settings: &JobSettings,
    ) -> Result<(), StoreError> {
        if &self.identity != identity {
            return Err(StoreError::InputChanged {
                input: input.to_path_buf(),
                state: state.to_path_buf(),
                was: self.identity.clone(),
                now: identity.clone(),
            });
        }
        if let Some((what, was, now)) = self.settings.difference(settings) {
            return Err(StoreError::SettingsChanged {
                state: state.to_path_buf(),
                what,
                was,
                now,
            });
        }
        Ok(())
    }
}

/// The job in `store`, if one has begun.
pub fn load(store: &Store) -> Result<Option<JobRecord>, StoreError> {
    let row = store
        .conn()
        .query_row(
            "SELECT input_path, input_sha256, input_bytes, settings, output_path, total, skipped,
                    created_at
             FROM job WHERE id = 1",
            [],
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, i64>(5)?,
                    row.get::<_, i64>(6)?,
                    row.get::<_, i64>(7)?,
                ))
            },
        )
        .optional()
        .map_err(|e| store.err("read", e))?;
    let Some((input, sha256, bytes, settings, output, total, skipped, created_at)) = row else {
        return Ok(None);
    };
    let settings = serde_json::from_str(&settings).map_err(|e| StoreError::NotState {
        path: store.path().to_path_buf(),
        detail: format!(": its job settings are unreadable ({e})"),
    })?;
    Ok(Some(JobRecord {
        input_path: PathBuf::from(input),
        identity: InputIdentity {
            sha256,
            bytes: bytes as u64,
        },
        settings,
        output_path: PathBuf::from(output),
        total: total as u64,
        skipped: skipped as u64,
        created_at,
    }))
}

/// Record a new job (inside the transaction that inserts its requests).
pub fn create(tx: &rusqlite::Transaction<'_>, job: &JobRecord) -> rusqlite::Result<()> {
    let settings = serde_json::to_string(&job.settings)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    tx.execute(
        "INSERT INTO job (id, input_path, input_sha256, input_bytes, settings, output_path, total,
                          skipped, created_at)
         VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            job.input_path.to_string_lossy(),
            job.identity.sha256,
            job.identity.bytes as i64,
            settings,
            job.output_path.to_string_lossy(),
            job.total as i64,
            job.skipped as i64,
            job.created_at,
        ],
    )?;
    Ok(())
}

/// Remember the output file of the latest run.
pub fn set_output(store: &Store, output: &Path) -> Result<(), StoreError> {
    store
        .conn()
        .execute(
            "UPDATE job SET output_path = ?1 WHERE id = 1",
            params![output.to_string_lossy()],
        )
        .map_err(|e| store.err("write", e))?;
    Ok(())
}

/// A new job record for `input` (counts filled in once the requests are inserted).
pub fn new_record(
    input: &Path,
    identity: InputIdentity,
    settings: JobSettings,
    output: &Path,
) -> JobRecord {
    JobRecord {
        input_path: input.to_path_buf(),
        identity,
        settings,
        output_path: output.to_path_buf(),
        total: 0,
        skipped: 0,
        created_at: now_ms(),
    }
}

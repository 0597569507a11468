//! The providers' Batch APIs, as state: OpenAI's Files and Batches and Anthropic's Message
//! Batches, in memory, on a clock a test can move forward.
//!
//! A batch is decided from its creation time, its size and the configured speed, so its status
//! at any instant is computed, never stepped: it validates for [`BatchConfig::validation`]
//! (OpenAI; Anthropic starts processing at once), then processes [`BatchConfig::speed`] requests
//! per second, finalizes for the validation time again and completes — or expires when its
//! completion window (24 h) ends first, or is cancelled (`cancelling` for the validation time,
//! then `cancelled`). Requests processed before the end have results; a share
//! ([`BatchConfig::fail_rate`], drawn from the seed) fail with a server error.
//!
//! **Enqueued limits.** OpenAI accepts a batch at creation and refuses it when validation ends
//! if the model's enqueued tokens (prompt + `max_tokens` of every request of its batches still
//! validating, in progress or finalizing) would pass [`BatchConfig::enqueued_tokens`]: the batch
//! goes to `failed` with the error `token_limit_exceeded` and OpenAI's message. Anthropic
//! refuses the creation itself with a 429 `rate_limit_error` when the requests in its processing
//! queue would pass [`BatchConfig::queued_requests`].
//!
//! It knows no HTTP ([`crate::batch_routes`] maps the paths here) and no client.

use crate::anthropic::MessagesRequest;
use crate::api::{AnswerCtx, Endpoint, Payload};
use crate::chat::ChatRequest;
use crate::completions::CompletionRequest;
use crate::config::{BatchConfig, MockConfig};
use crate::embeddings::EmbeddingRequest;
use crate::errors::{ApiError, Flavor};
use crate::responses::ResponsesRequest;
use crate::seed::splitmix;
use crate::stats::BatchStats;
use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Most requests in one OpenAI batch.
pub const OPENAI_MAX_REQUESTS: usize = 50_000;
/// Most requests in one Azure OpenAI global batch input file.
pub const AZURE_MAX_REQUESTS: usize = 100_000;
/// Largest OpenAI batch input file.
pub const OPENAI_MAX_FILE_BYTES: usize = 200 * 1024 * 1024;
/// Most requests in one Anthropic Message Batch.
pub const ANTHROPIC_MAX_REQUESTS: usize = 100_000;
/// Largest Anthropic Message Batch request body.
pub const ANTHROPIC_MAX_BYTES: usize = 256 * 1024 * 1024;

/// An uploaded file.
#[derive(Debug, Clone)]
struct StoredFile {
    filename: String,
    purpose: String,
    bytes: Vec<u8>,
    created_at: i64,
}

/// One request of a batch.
#[derive(Debug, Clone)]
struct Item {
    custom_id: String,
    /// The API path (`/v1/chat/completions`, ...; `/v1/messages` for Anthropic).
    url: String,
    body: Vec<u8>,
    /// Refused by the endpoint's own checks (a 400 result line).
    invalid: Option<ApiError>,
}

/// Which API a batch belongs to.
#[derive(Debug, Clone)]
enum Kind {
    OpenAi {
        endpoint: String,
        input_file_id: String,
        metadata: Value,
        output_file_id: Option<String>,
        error_file_id: Option<String>,
    },
    Anthropic,
}

#[derive(Debug, Clone)]
struct Batch {
    id: String,
    seq: u64,
    kind: Kind,
    model: String,
    items: Vec<Item>,
    tokens: u64,
    /// Mock-clock seconds.
    created: f64,
    cancel_at: Option<f64>,
    /// Whether the enqueued-limit decision is made, and the refusal if refused.
    decided: bool,
    refused: Option<String>,
    /// The whole batch failed validation (OpenAI `errors`).
    invalid: Option<Value>,
}

/// Where a batch is at an instant.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Validating,
    InProgress,
    Finalizing,
    Completed,
    Failed,
    Expired,
    Cancelling,
    Cancelled,
}

impl Phase {
    fn openai(self) -> &'static str {
        match self {
            Phase::Validating => "validating",
            Phase::InProgress => "in_progress",
            Phase::Finalizing => "finalizing",
            Phase::Completed => "completed",
            Phase::Failed => "failed",
            Phase::Expired => "expired",
            Phase::Cancelling => "cancelling",
            Phase::Cancelled => "cancelled",
        }
    }

    fn anthropic(self) -> &'static str {
        match self {
            Phase::Validating | Phase::InProgress | Phase::Finalizing => "in_progress",
            Phase::Cancelling => "canceling",
            _ => "ended",
        }
    }

    fn terminal(self) -> bool {
        matches!(
            self,
            Phase::Completed | Phase::Failed | Phase::Expired | Phase::Cancelled
        )
    }
}

/// A batch's timeline, computed from its facts.
#[derive(Debug, Clone, Copy)]
struct Timeline {
    phase: Phase,
    /// Requests processed so far (frozen at the end).
    processed: usize,
    start: f64,
    done: f64,
    end: f64,
    expires: f64,
}

/// Everything the Batch APIs hold, behind one lock.
#[derive(Debug, Default)]
struct Book {
    files: HashMap<String, StoredFile>,
    batches: Vec<Batch>,
    stats: BatchStats,
    next: u64,
}

/// The Batch APIs' state and clock.
#[derive(Debug)]
pub struct Batches {
    config: BatchConfig,
    seed: u64,
    started: Instant,
    started_unix: f64,
    advanced: Mutex<Duration>,
    book: Mutex<Book>,
}

/// Unix seconds now.
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// An error the Batch APIs answer with.
pub type BatchResult<T> = Result<T, ApiError>;

impl Batches {
    /// Empty state for `config`, seeded with `seed`.
    pub fn new(config: BatchConfig, seed: u64) -> Self {
        Self {
            config,
            seed,
            started: Instant::now(),
            started_unix: unix_now(),
            advanced: Mutex::new(Duration::ZERO),
            book: Mutex::new(Book::default()),
        }
    }

    /// Seconds on the mock's clock (wall time since start, plus every fast-forward).
    fn now(&self) -> f64 {
        (self.started.elapsed() + *self.advanced.lock()).as_secs_f64()
    }

    /// Unix seconds of a mock-clock instant.
    fn unix(&self, at: f64) -> i64 {
        (self.started_unix + at) as i64
    }

    fn rfc3339(&self, at: f64) -> String {
        let secs = self.started_unix + at;
        chrono::DateTime::from_timestamp(secs as i64, ((secs.fract()) * 1e9) as u32)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
            .unwrap_or_default()
    }

    /// Move the clock forward by `by` (batches progress as if that time had passed).
    pub fn advance(&self, by: Duration) {
        *self.advanced.lock() += by;
    }

    /// The counters.
    pub fn stats(&self) -> BatchStats {
        self.book.lock().stats.clone()
    }

    /// Forget every file and batch.
    pub fn reset(&self) {
        *self.book.lock() = Book::default();
    }

    fn timeline(&self, batch: &Batch, now: f64) -> Timeline {
        let n = batch.items.len();
        let validation = match batch.kind {
            Kind::OpenAi { .. } => self.config.validation.as_secs_f64(),
            Kind::Anthropic => 0.0,
        };
        let finalize = self.config.validation.as_secs_f64();
        let speed = self.config.speed.max(1e-9);
        let start = batch.created + validation;
        let expires = batch.created + self.config.window.as_secs_f64();
        let done = start + n as f64 / speed;
        let processed_at = |t: f64| -> usize {
            if t <= start {
                0
            } else {
                // The epsilon keeps a whole number of requests whole through the subtraction.
                (((t - start) * speed + 1e-6).floor() as usize).min(n)
            }
        };
        let mut line = Timeline {
            phase: Phase::Validating,
            processed: 0,
            start,
            done,
            end: (done + finalize).min(expires),
            expires,
        };
        if batch.invalid.is_some() || batch.refused.is_some() {
            line.phase = if now >= start {
                Phase::Failed
            } else {
                Phase::Validating
            };
            line.end = start;
            return line;
        }
        if let Some(cancel) = batch.cancel_at
            && cancel < line.end
        {
            line.end = cancel + finalize;
            line.processed = processed_at(cancel);
            line.phase = if now >= line.end {
                Phase::Cancelled
            } else {
                Phase::Cancelling
            };
            return line;
        }
        if done > expires {
            line.end = expires;
            if now >= expires {
                line.processed = processed_at(expires);
                line.phase = Phase::Expired;
                return line;
            }
        }
        line.processed = processed_at(now);
        line.phase = if now < start {
            Phase::Validating
        } else if now < done {
            Phase::InProgress
        } else if now < line.end {
            Phase::Finalizing
        } else {
            Phase::Completed
        };
        line
    }

    /// Make the enqueued-limit decision of every OpenAI batch whose validation has ended, in
    /// creation order.
    fn decide(&self, book: &mut Book, now: f64) {
        let Some(limit) = self.config.enqueued_tokens else {
            return;
        };
        for i in 0..book.batches.len() {
            let batch = &book.batches[i];
            if batch.decided || !matches!(batch.kind, Kind::OpenAi { .. }) {
                continue;
            }
            let line = self.timeline(batch, now);
            if now < line.start {
                continue;
            }
            let at = line.start;
            let model = batch.model.clone();
            let enqueued: u64 = book.batches[..i]
                .iter()
                .filter(|b| {
                    b.model == model && b.refused.is_none() && matches!(b.kind, Kind::OpenAi { .. })
                })
                .filter(|b| self.timeline(b, at).end > at)
                .map(|b| b.tokens)
                .sum();
            let tokens = book.batches[i].tokens;
            let batch = &mut book.batches[i];
            batch.decided = true;
            if enqueued.saturating_add(tokens) > limit {
                batch.refused = Some(format!(
                    "Enqueued token limit reached for {model} in organization org-mock. Limit: \
                     {} enqueued tokens. Please try submitting your batch again later.",
                    thousands(limit)
                ));
                book.stats.refused_enqueued += 1;
            }
        }
    }

    // ---- Files ----

    /// Store an uploaded file; its object.
    pub fn upload(&self, filename: String, purpose: String, bytes: Vec<u8>) -> BatchResult<Value> {
        if purpose != "batch" {
            return Err(ApiError::invalid_param(
                Flavor::OpenAi,
                "purpose",
                format!(
                    "'{purpose}' is not one of ['assistants', 'batch', 'fine-tune', 'vision', 'user_data', 'evals'] - 'purpose'"
                ),
            ));
        }
        if bytes.len() > OPENAI_MAX_FILE_BYTES {
            return Err(ApiError::invalid_param(
                Flavor::OpenAi,
                "file",
                format!(
                    "File is too large ({} bytes); a batch input file may hold at most {OPENAI_MAX_FILE_BYTES} bytes.",
                    bytes.len()
                ),
            ));
        }
        let now = self.now();
        let mut book = self.book.lock();
        book.next += 1;
        let id = format!(
            "file-{:024x}",
            u128::from(splitmix(self.seed ^ book.next)) << 32 | u128::from(book.next)
        );
        let file = StoredFile {
            filename,
            purpose,
            bytes,
            created_at: self.unix(now),
        };
        let object = file_object(&id, &file);
        book.files.insert(id, file);
        book.stats.files_uploaded += 1;
        Ok(object)
    }

    /// A file's object.
    pub fn file(&self, id: &str) -> BatchResult<Value> {
        let book = self.book.lock();
        book.files
            .get(id)
            .map(|f| file_object(id, f))
            .ok_or_else(|| no_such(Flavor::OpenAi, "file", id))
    }

    /// A file's content.
    pub fn file_content(&self, id: &str) -> BatchResult<Vec<u8>> {
        let book = self.book.lock();
        book.files
            .get(id)
            .map(|f| f.bytes.clone())
            .ok_or_else(|| no_such(Flavor::OpenAi, "file", id))
    }

    /// Delete a file.
    pub fn delete_file(&self, id: &str) -> BatchResult<Value> {
        let mut book = self.book.lock();
        book.files
            .remove(id)
            .map(|_| json!({"id": id, "object": "file", "deleted": true}))
            .ok_or_else(|| no_such(Flavor::OpenAi, "file", id))
    }

    // ---- OpenAI batches ----

    /// `POST /v1/batches`; with `bare`, Azure OpenAI's `POST /openai/batches`, whose endpoint
    /// and lines name the operation without `/v1` (`/chat/completions`).
    pub fn create_openai(
        &self,
        body: &[u8],
        config: &MockConfig,
        bare: bool,
    ) -> BatchResult<Value> {
        let flavor = Flavor::OpenAi;
        let obj = crate::api::json_object(body, flavor)?;
        let text = |name: &str| -> BatchResult<String> {
            match obj.get(name) {
                Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                None | Some(Value::Null) => Err(ApiError::missing(flavor, name)),
                Some(_) => Err(ApiError::invalid_param(
                    flavor,
                    name,
                    format!("'{name}' must be a string."),
                )),
            }
        };
        let input_file_id = text("input_file_id")?;
        let endpoint = text("endpoint")?;
        let window = text("completion_window")?;
        if window != "24h" {
            return Err(ApiError::invalid_param(
                flavor,
                "completion_window",
                format!("Invalid value: '{window}'. Supported values are: '24h'."),
            ));
        }
        let path = if bare {
            format!("/v1{endpoint}")
        } else {
            endpoint.clone()
        };
        let supported = if bare {
            matches!(path.as_str(), "/v1/chat/completions")
        } else {
            matches!(
                path.as_str(),
                "/v1/chat/completions" | "/v1/completions" | "/v1/embeddings" | "/v1/responses"
            )
        };
        if !supported {
            let names = if bare {
                "'/chat/completions'"
            } else {
                "'/v1/chat/completions', '/v1/completions', '/v1/embeddings' and '/v1/responses'"
            };
            return Err(ApiError::invalid_param(
                flavor,
                "endpoint",
                format!("Invalid value: '{endpoint}'. Supported values are: {names}."),
            ));
        }
        let metadata = match obj.get("metadata") {
            None | Some(Value::Null) => Value::Null,
            Some(Value::Object(m)) if m.len() <= 16 && m.values().all(Value::is_string) => {
                Value::Object(m.clone())
            }
            Some(_) => {
                return Err(ApiError::invalid_param(
                    flavor,
                    "metadata",
                    "'metadata' must be an object of at most 16 string values.".to_owned(),
                ));
            }
        };
        let content = {
            let book = self.book.lock();
            let file = book
                .files
                .get(&input_file_id)
                .ok_or_else(|| no_such(flavor, "file", &input_file_id))?;
            if file.purpose != "batch" {
                return Err(ApiError::invalid_param(
                    flavor,
                    "input_file_id",
                    format!("File {input_file_id} was not uploaded with purpose 'batch'."),
                ));
            }
            file.bytes.clone()
        };
        let (items, model, tokens, invalid) = parse_jsonl(&content, &endpoint, &path, config);
        let now = self.now();
        let mut book = self.book.lock();
        self.decide(&mut book, now);
        book.next += 1;
        let seq = book.next;
        let batch = Batch {
            id: format!(
                "batch_{:032x}",
                u128::from(splitmix(self.seed ^ seq)) << 64 | u128::from(seq)
            ),
            seq,
            kind: Kind::OpenAi {
                endpoint,
                input_file_id,
                metadata,
                output_file_id: None,
                error_file_id: None,
            },
            model,
            items,
            tokens,
            created: now,
            cancel_at: None,
            decided: false,
            refused: None,
            invalid,
        };
        book.stats.batches_created += 1;
        let object = self.openai_object(&batch, now);
        book.batches.push(batch);
        Ok(object)
    }

    fn find(book: &Book, id: &str, flavor: Flavor) -> BatchResult<usize> {
        book.batches
            .iter()
            .position(|b| {
                b.id == id && matches!(b.kind, Kind::Anthropic) == (flavor == Flavor::Anthropic)
            })
            .ok_or_else(|| no_such(flavor, "batch", id))
    }

    /// `GET /v1/batches/{id}`.
    pub fn retrieve_openai(&self, id: &str, config: &MockConfig) -> BatchResult<Value> {
        let now = self.now();
        let mut book = self.book.lock();
        self.decide(&mut book, now);
        let i = Self::find(&book, id, Flavor::OpenAi)?;
        self.write_files(&mut book, i, now, config);
        Ok(self.openai_object(&book.batches[i], now))
    }

    /// `POST /v1/batches/{id}/cancel`.
    pub fn cancel_openai(&self, id: &str, config: &MockConfig) -> BatchResult<Value> {
        let now = self.now();
        let mut book = self.book.lock();
        self.decide(&mut book, now);
        let i = Self::find(&book, id, Flavor::OpenAi)?;
        let phase = self.timeline(&book.batches[i], now).phase;
        if phase.terminal() && phase != Phase::Cancelled {
            return Err(ApiError::invalid_param(
                Flavor::OpenAi,
                "batch_id",
                format!("Cannot cancel a batch with status '{}'.", phase.openai()),
            ));
        }
        if book.batches[i].cancel_at.is_none() {
            book.batches[i].cancel_at = Some(now);
            book.stats.cancelled += 1;
        }
        self.write_files(&mut book, i, now, config);
        Ok(self.openai_object(&book.batches[i], now))
    }

    /// `GET /v1/batches?after=&limit=`: newest first.
    pub fn list_openai(&self, after: Option<&str>, limit: usize, config: &MockConfig) -> Value {
        let now = self.now();
        let mut book = self.book.lock();
        self.decide(&mut book, now);
        let order: Vec<usize> = (0..book.batches.len())
            .rev()
            .filter(|&i| matches!(book.batches[i].kind, Kind::OpenAi { .. }))
            .collect();
        let skip = after
            .and_then(|a| order.iter().position(|&i| book.batches[i].id == a))
            .map_or(0, |p| p + 1);
        let page: Vec<usize> = order.iter().skip(skip).take(limit).copied().collect();
        let has_more = skip + page.len() < order.len();
        for &i in &page {
            self.write_files(&mut book, i, now, config);
        }
        let data: Vec<Value> = page
            .iter()
            .map(|&i| self.openai_object(&book.batches[i], now))
            .collect();
        json!({
            "object": "list",
            "data": data,
            "first_id": page.first().map(|&i| book.batches[i].id.clone()),
            "last_id": page.last().map(|&i| book.batches[i].id.clone()),
            "has_more": has_more,
        })
    }

    fn openai_object(&self, batch: &Batch, now: f64) -> Value {
        let line = self.timeline(batch, now);
        let Kind::OpenAi {
            endpoint,
            input_file_id,
            metadata,
            output_file_id,
            error_file_id,
        } = &batch.kind
        else {
            return Value::Null;
        };
        let at = |reached: bool, t: f64| {
            if reached {
                json!(self.unix(t))
            } else {
                Value::Null
            }
        };
        let phase = line.phase;
        let failed = phase == Phase::Failed;
        let errors = match (&batch.invalid, &batch.refused) {
            (Some(errors), _) if failed => json!({"object": "list", "data": errors}),
            (_, Some(message)) if failed => json!({"object": "list", "data": [{
                "code": "token_limit_exceeded", "message": message, "param": null, "line": null
            }]}),
            _ => Value::Null,
        };
        let (completed, failed_count) = self.counts(batch, &line);
        let total = if failed { 0 } else { batch.items.len() };
        let cancelling = batch
            .cancel_at
            .filter(|_| matches!(phase, Phase::Cancelling | Phase::Cancelled));
        json!({
            "id": batch.id,
            "object": "batch",
            "endpoint": endpoint,
            "model": batch.model,
            "errors": errors,
            "input_file_id": input_file_id,
            "completion_window": "24h",
            "status": phase.openai(),
            "output_file_id": output_file_id,
            "error_file_id": error_file_id,
            "created_at": self.unix(batch.created),
            "in_progress_at": at(!failed && now >= line.start && cancelling.is_none_or(|c| c > line.start), line.start),
            "expires_at": self.unix(line.expires),
            "finalizing_at": at(matches!(phase, Phase::Finalizing | Phase::Completed), line.done),
            "completed_at": at(phase == Phase::Completed, line.end),
            "failed_at": at(failed, line.start),
            "expired_at": at(phase == Phase::Expired, line.expires),
            "cancelling_at": cancelling.map_or(Value::Null, |c| json!(self.unix(c))),
            "cancelled_at": at(phase == Phase::Cancelled, line.end),
            "request_counts": {"total": total, "completed": completed, "failed": failed_count},
            "metadata": metadata,
        })
    }

    /// (succeeded, failed) so far: processed requests by outcome, plus (after expiry) the
    /// requests that never ran.
    fn counts(&self, batch: &Batch, line: &Timeline) -> (usize, usize) {
        let mut ok = 0;
        let mut failed = 0;
        for i in 0..line.processed {
            if self.fails(batch, i) {
                failed += 1;
            } else {
                ok += 1;
            }
        }
        if line.phase == Phase::Expired {
            failed += batch.items.len() - line.processed;
        }
        (ok, failed)
    }

    /// Whether request `i` of `batch` fails (an invalid request, or a drawn server error).
    fn fails(&self, batch: &Batch, i: usize) -> bool {
        batch.items[i].invalid.is_some() || self.drawn_failure(batch, i)
    }

    fn drawn_failure(&self, batch: &Batch, i: usize) -> bool {
        self.config.fail_rate > 0.0 && self.rng(batch, i).random::<f64>() < self.config.fail_rate
    }

    fn rng(&self, batch: &Batch, i: usize) -> SmallRng {
        SmallRng::seed_from_u64(splitmix(self.seed ^ splitmix(batch.seq << 24 ^ i as u64)))
    }

    /// Once a batch has ended, write its output and error files (once).
    fn write_files(&self, book: &mut Book, i: usize, now: f64, config: &MockConfig) {
        let batch = &book.batches[i];
        let line = self.timeline(batch, now);
        let Kind::OpenAi { output_file_id, .. } = &batch.kind else {
            return;
        };
        if !line.phase.terminal() || line.phase == Phase::Failed || output_file_id.is_some() {
            return;
        }
        let (mut output, mut errors) = (Vec::new(), Vec::new());
        for (k, item) in batch.items.iter().enumerate() {
            let record = if k < line.processed {
                let (status, body) = self.result(batch, k, config);
                let target = if status == 200 {
                    &mut output
                } else {
                    &mut errors
                };
                target.push(json!({
                    "id": format!("batch_req_{:024x}", splitmix(batch.seq << 24 ^ k as u64) as u128),
                    "custom_id": item.custom_id,
                    "response": {
                        "status_code": status,
                        "request_id": format!("req_{:032x}", splitmix(self.seed ^ batch.seq << 24 ^ k as u64) as u128),
                        "body": body,
                    },
                    "error": null,
                }));
                continue;
            } else if line.phase == Phase::Expired {
                json!({
                    "id": format!("batch_req_{:024x}", splitmix(batch.seq << 24 ^ k as u64) as u128),
                    "custom_id": item.custom_id,
                    "response": null,
                    "error": {
                        "code": "batch_expired",
                        "message": "This request could not be executed before the completion window expired."
                    },
                })
            } else {
                continue;
            };
            errors.push(record);
        }
        let created_at = self.unix(now);
        let batch_id = batch.id.clone();
        let mut store = |lines: Vec<Value>, name: String| -> String {
            book.next += 1;
            let id = format!(
                "file-{:024x}",
                u128::from(splitmix(self.seed ^ book.next)) << 32 | u128::from(book.next)
            );
            let mut bytes = Vec::new();
            for line in lines {
                bytes.extend_from_slice(line.to_string().as_bytes());
                bytes.push(b'\n');
            }
            let file = StoredFile {
                filename: name,
                purpose: "batch_output".to_owned(),
                bytes,
                created_at,
            };
            book.files.insert(id.clone(), file);
            id
        };
        // The output file exists (perhaps empty) once the batch has ended; the error file only
        // when some request failed.
        let out = store(output, format!("{batch_id}_output.jsonl"));
        let err = (!errors.is_empty()).then(|| store(errors, format!("{batch_id}_error.jsonl")));
        if let Kind::OpenAi {
            output_file_id,
            error_file_id,
            ..
        } = &mut book.batches[i].kind
        {
            *output_file_id = Some(out);
            *error_file_id = err;
        }
    }

    /// The answer to request `k` of `batch`: its status and body.
    fn result(&self, batch: &Batch, k: usize, config: &MockConfig) -> (u16, Value) {
        let item = &batch.items[k];
        let flavor = match batch.kind {
            Kind::OpenAi { .. } => Flavor::OpenAi,
            Kind::Anthropic => Flavor::Anthropic,
        };
        if let Some(err) = &item.invalid {
            return (err.status.as_u16(), body_json(&err.body()));
        }
        let mut rng = self.rng(batch, k);
        if self.config.fail_rate > 0.0 && rng.random::<f64>() < self.config.fail_rate {
            let err = ApiError::server_error(flavor);
            return (err.status.as_u16(), body_json(&err.body()));
        }
        let id = format!("{:016x}", splitmix(self.seed ^ batch.seq << 24 ^ k as u64));
        let created = self.unix(batch.created);
        let mut ctx = AnswerCtx {
            rng: &mut rng,
            config,
            id: &id,
            created,
        };
        let answer = match item.url.as_str() {
            "/v1/chat/completions" => answer_of::<ChatRequest>(&item.body, &mut ctx),
            "/v1/completions" => answer_of::<CompletionRequest>(&item.body, &mut ctx),
            "/v1/embeddings" => answer_of::<EmbeddingRequest>(&item.body, &mut ctx),
            "/v1/responses" => answer_of::<ResponsesRequest>(&item.body, &mut ctx),
            _ => answer_of::<MessagesRequest>(&item.body, &mut ctx),
        };
        match answer {
            Ok(body) => (200, body),
            Err(err) => (err.status.as_u16(), body_json(&err.body())),
        }
    }

    // ---- Anthropic Message Batches ----

    /// `POST /v1/messages/batches`.
    pub fn create_anthropic(&self, body: &[u8], config: &MockConfig) -> BatchResult<Value> {
        let flavor = Flavor::Anthropic;
        if body.len() > ANTHROPIC_MAX_BYTES {
            return Err(ApiError::body_too_large(flavor, ANTHROPIC_MAX_BYTES));
        }
        let obj = crate::api::json_object(body, flavor)?;
        let Some(Value::Array(requests)) = obj.get("requests") else {
            return Err(ApiError::missing(flavor, "requests"));
        };
        if requests.is_empty() || requests.len() > ANTHROPIC_MAX_REQUESTS {
            return Err(ApiError::invalid_param(
                flavor,
                "requests",
                format!(
                    "requests: a Message Batch holds between 1 and {ANTHROPIC_MAX_REQUESTS} requests, got {}",
                    requests.len()
                ),
            ));
        }
        let mut items = Vec::with_capacity(requests.len());
        let mut seen = std::collections::HashSet::new();
        let mut tokens = 0u64;
        let mut model = String::new();
        for (i, request) in requests.iter().enumerate() {
            let custom_id = request
                .get("custom_id")
                .and_then(Value::as_str)
                .unwrap_or("");
            if custom_id.is_empty() || !seen.insert(custom_id.to_owned()) {
                return Err(ApiError::invalid_param(
                    flavor,
                    "custom_id",
                    format!("requests.{i}.custom_id: must be a unique, non-empty string"),
                ));
            }
            let Some(params @ Value::Object(_)) = request.get("params") else {
                return Err(ApiError::missing(flavor, &format!("requests.{i}.params")));
            };
            let body = params.to_string().into_bytes();
            let invalid = match MessagesRequest::parse(&body, config) {
                Ok(parsed) => {
                    tokens += parsed.prompt_tokens() + parsed.reserved_output();
                    if model.is_empty() {
                        model = parsed.model().to_owned();
                    }
                    None
                }
                Err(err) => Some(err),
            };
            items.push(Item {
                custom_id: custom_id.to_owned(),
                url: "/v1/messages".to_owned(),
                body,
                invalid,
            });
        }
        let now = self.now();
        let mut book = self.book.lock();
        if let Some(limit) = self.config.queued_requests {
            let queued: usize = book
                .batches
                .iter()
                .filter(|b| matches!(b.kind, Kind::Anthropic))
                .map(|b| {
                    let line = self.timeline(b, now);
                    if line.phase.terminal() {
                        0
                    } else {
                        b.items.len() - line.processed
                    }
                })
                .sum();
            if (queued + items.len()) as u64 > limit {
                book.stats.refused_queue += 1;
                let mut err = ApiError::rate_limited_batch_queue(limit);
                err.retry_after = Some(Duration::from_secs(60));
                return Err(err);
            }
        }
        book.next += 1;
        let seq = book.next;
        let batch = Batch {
            id: format!(
                "msgbatch_{:024x}",
                u128::from(splitmix(self.seed ^ seq)) << 32 | u128::from(seq)
            ),
            seq,
            kind: Kind::Anthropic,
            model,
            items,
            tokens,
            created: now,
            cancel_at: None,
            decided: true,
            refused: None,
            invalid: None,
        };
        book.stats.batches_created += 1;
        let object = self.anthropic_object(&batch, now);
        book.batches.push(batch);
        Ok(object)
    }

    /// `GET /v1/messages/batches/{id}`.
    pub fn retrieve_anthropic(&self, id: &str, base: &str) -> BatchResult<Value> {
        let now = self.now();
        let book = self.book.lock();
        let i = Self::find(&book, id, Flavor::Anthropic)?;
        Ok(self.anthropic_object_at(&book.batches[i], now, base))
    }

    /// `POST /v1/messages/batches/{id}/cancel`.
    pub fn cancel_anthropic(&self, id: &str, base: &str) -> BatchResult<Value> {
        let now = self.now();
        let mut book = self.book.lock();
        let i = Self::find(&book, id, Flavor::Anthropic)?;
        let phase = self.timeline(&book.batches[i], now).phase;
        if !phase.terminal() && book.batches[i].cancel_at.is_none() {
            book.batches[i].cancel_at = Some(now);
            book.stats.cancelled += 1;
        }
        Ok(self.anthropic_object_at(&book.batches[i], now, base))
    }

    /// `GET /v1/messages/batches?limit=&after_id=&before_id=`: newest first.
    pub fn list_anthropic(
        &self,
        after_id: Option<&str>,
        before_id: Option<&str>,
        limit: usize,
        base: &str,
    ) -> Value {
        let now = self.now();
        let book = self.book.lock();
        let order: Vec<&Batch> = book
            .batches
            .iter()
            .rev()
            .filter(|b| matches!(b.kind, Kind::Anthropic))
            .collect();
        let (from, to) = match (after_id, before_id) {
            (Some(a), _) => (
                order
                    .iter()
                    .position(|b| b.id == a)
                    .map_or(order.len(), |p| p + 1),
                order.len(),
            ),
            (None, Some(b)) => {
                let end = order.iter().position(|x| x.id == b).unwrap_or(0);
                (end.saturating_sub(limit), end)
            }
            (None, None) => (0, order.len()),
        };
        let page: Vec<&Batch> = order[from..to].iter().take(limit).copied().collect();
        let has_more = match before_id {
            Some(_) if after_id.is_none() => from > 0,
            _ => from + page.len() < order.len(),
        };
        json!({
            "data": page.iter().map(|b| self.anthropic_object_at(b, now, base)).collect::<Vec<_>>(),
            "has_more": has_more,
            "first_id": page.first().map(|b| b.id.clone()),
            "last_id": page.last().map(|b| b.id.clone()),
        })
    }

    /// `GET /v1/messages/batches/{id}/results`: JSONL, once the batch has ended.
    pub fn results_anthropic(&self, id: &str, config: &MockConfig) -> BatchResult<Vec<u8>> {
        let now = self.now();
        let book = self.book.lock();
        let i = Self::find(&book, id, Flavor::Anthropic)?;
        let batch = &book.batches[i];
        let line = self.timeline(batch, now);
        if !line.phase.terminal() {
            return Err(ApiError::invalid_param(
                Flavor::Anthropic,
                "message_batch_id",
                format!(
                    "Batch {id} has not ended: results are available once processing_status is 'ended'."
                ),
            ));
        }
        let mut out = Vec::new();
        for (k, item) in batch.items.iter().enumerate() {
            let result = if k < line.processed {
                let (status, body) = self.result(batch, k, config);
                if status == 200 {
                    json!({"type": "succeeded", "message": body})
                } else {
                    json!({"type": "errored", "error": body})
                }
            } else if line.phase == Phase::Expired {
                json!({"type": "expired"})
            } else {
                json!({"type": "canceled"})
            };
            out.extend_from_slice(
                json!({"custom_id": item.custom_id, "result": result})
                    .to_string()
                    .as_bytes(),
            );
            out.push(b'\n');
        }
        Ok(out)
    }

    fn anthropic_object(&self, batch: &Batch, now: f64) -> Value {
        self.anthropic_object_at(batch, now, "")
    }

    fn anthropic_object_at(&self, batch: &Batch, now: f64, base: &str) -> Value {
        let line = self.timeline(batch, now);
        let ended = line.phase.terminal();
        let (mut succeeded, mut errored, mut canceled, mut expired) = (0, 0, 0, 0);
        for k in 0..line.processed {
            if self.fails(batch, k) {
                errored += 1;
            } else {
                succeeded += 1;
            }
        }
        let rest = batch.items.len() - line.processed;
        match line.phase {
            Phase::Expired => expired = rest,
            Phase::Cancelled => canceled = rest,
            _ => {}
        }
        let processing = if ended { 0 } else { rest };
        json!({
            "id": batch.id,
            "type": "message_batch",
            "processing_status": line.phase.anthropic(),
            "request_counts": {
                "processing": processing,
                "succeeded": succeeded,
                "errored": errored,
                "canceled": canceled,
                "expired": expired,
            },
            "ended_at": if ended { json!(self.rfc3339(line.end)) } else { Value::Null },
            "created_at": self.rfc3339(batch.created),
            "expires_at": self.rfc3339(line.expires),
            "archived_at": null,
            "cancel_initiated_at": batch.cancel_at.map_or(Value::Null, |c| json!(self.rfc3339(c))),
            "results_url": if ended {
                json!(format!("{base}/v1/messages/batches/{}/results", batch.id))
            } else {
                Value::Null
            },
        })
    }
}

/// The answer body of endpoint `E` to `body`.
fn answer_of<E: Endpoint>(body: &[u8], ctx: &mut AnswerCtx<'_>) -> Result<Value, ApiError> {
    let request = E::parse(body, ctx.config)?;
    match request.answer(ctx).payload {
        Payload::Json(bytes) => Ok(body_json(&bytes)),
        Payload::Sse(_) => Err(ApiError::invalid_param(
            E::FLAVOR,
            "stream",
            "Streaming is not supported in a batch.".to_owned(),
        )),
    }
}

fn body_json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or(Value::Null)
}

/// Parse an OpenAI batch input file: its items, model, enqueued tokens, and (if the file as a
/// whole is refused) the validation errors.
/// The lines of a batch input file for `endpoint` as the batch names it, which is API `path`.
fn parse_jsonl(
    content: &[u8],
    endpoint: &str,
    path: &str,
    config: &MockConfig,
) -> (Vec<Item>, String, u64, Option<Value>) {
    let mut items = Vec::new();
    let mut errors = Vec::new();
    let mut model = String::new();
    let mut tokens = 0u64;
    let mut seen = std::collections::HashSet::new();
    let error = |code: &str, message: String, line: usize| json!({"code": code, "message": message, "param": null, "line": line});
    for (n, raw) in content.split(|&b| b == b'\n').enumerate() {
        let line_no = n + 1;
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let obj: Map<String, Value> = match serde_json::from_slice(raw) {
            Ok(Value::Object(obj)) => obj,
            _ => {
                errors.push(error(
                    "invalid_json_line",
                    "This line is not parseable as valid JSON.".to_owned(),
                    line_no,
                ));
                continue;
            }
        };
        let custom_id = obj.get("custom_id").and_then(Value::as_str).unwrap_or("");
        if custom_id.is_empty() || !seen.insert(custom_id.to_owned()) {
            errors.push(error(
                "duplicate_custom_id",
                "The custom_id for this request is missing or a duplicate of another request."
                    .to_owned(),
                line_no,
            ));
            continue;
        }
        if obj.get("url").and_then(Value::as_str) != Some(endpoint) {
            errors.push(error(
                "mismatched_endpoint",
                format!(
                    "The endpoint of this request does not match the batch's endpoint {endpoint}."
                ),
                line_no,
            ));
            continue;
        }
        let Some(body @ Value::Object(_)) = obj.get("body") else {
            errors.push(error(
                "missing_required_parameter",
                "This line is missing the required parameter 'body'.".to_owned(),
                line_no,
            ));
            continue;
        };
        let line_model = body.get("model").and_then(Value::as_str).unwrap_or("");
        if model.is_empty() {
            model = line_model.to_owned();
        } else if line_model != model {
            errors.push(error("mismatched_model", format!("All requests of a batch must use the same model; this line uses '{line_model}', the batch '{model}'."), line_no));
            continue;
        }
        let bytes = body.to_string().into_bytes();
        let counted = match path {
            "/v1/chat/completions" => cost_of::<ChatRequest>(&bytes, config),
            "/v1/completions" => cost_of::<CompletionRequest>(&bytes, config),
            "/v1/embeddings" => cost_of::<EmbeddingRequest>(&bytes, config),
            _ => cost_of::<ResponsesRequest>(&bytes, config),
        };
        let invalid = match counted {
            Ok(cost) => {
                tokens += cost;
                None
            }
            Err(err) => Some(err),
        };
        items.push(Item {
            custom_id: custom_id.to_owned(),
            url: path.to_owned(),
            body: bytes,
            invalid,
        });
    }
    // Azure's names differ from the paths: its own limit.
    let most = if path == endpoint {
        OPENAI_MAX_REQUESTS
    } else {
        AZURE_MAX_REQUESTS
    };
    if items.len() > most {
        errors.push(json!({"code": "too_many_requests", "message": format!("The batch input file holds {} requests; a batch may hold at most {most}.", items.len()), "param": null, "line": null}));
    }
    if items.is_empty() && errors.is_empty() {
        errors.push(json!({"code": "empty_file", "message": "The batch input file is empty.", "param": null, "line": null}));
    }
    let invalid = (!errors.is_empty()).then_some(Value::Array(errors));
    (items, model, tokens, invalid)
}

fn cost_of<E: Endpoint>(body: &[u8], config: &MockConfig) -> Result<u64, ApiError> {
    let request = E::parse(body, config)?;
    Ok(request.prompt_tokens() + request.reserved_output())
}

fn file_object(id: &str, file: &StoredFile) -> Value {
    json!({
        "id": id,
        "object": "file",
        "bytes": file.bytes.len(),
        "created_at": file.created_at,
        "filename": file.filename,
        "purpose": file.purpose,
        "status": "processed",
        "status_details": null,
    })
}

fn no_such(flavor: Flavor, what: &str, id: &str) -> ApiError {
    let mut err = ApiError::not_found(flavor, "GET", id);
    err.message = match flavor {
        Flavor::OpenAi => format!("No such {what}: {id}"),
        Flavor::Anthropic => format!("{what} {id} not found"),
    };
    err
}

/// `2000000` → `2,000,000`, as OpenAI writes limits.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

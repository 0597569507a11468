//! `run --via batch`: a job sent through the providers' Batch APIs instead of live requests —
//! cut into shards, submitted as the batch queue has room, polled, and its results handed to
//! the same store writer (and so the same output lines) as live results.
//!
//! # Design
//!
//! - **One request model.** Requests come from the same input reader, are the same
//!   [`BatchRequest`](crate::batch::BatchRequest)s, and their results leave as the engine's own
//!   [`Event::Finished`] — so the store's writer writes exactly the lines a live run writes, in
//!   `--output-format`, once per `custom_id`.
//! - **Shards** ([`cut`]): one model and endpoint each, within the provider's per-batch limits
//!   ([`crate::provider::BatchSpec`]) and the model's enqueued-token limit when one is known.
//!   Shards and their requests are in the store ([`crate::store::shards`]) before anything is
//!   sent, so a resumed run sends the same shards.
//! - **Pacing the queue.** A shard is submitted when the model's enqueued tokens of our
//!   submitted, unfinished shards plus its own fit the limit (configured with
//!   `--batch-enqueued-tokens`, or learned from OpenAI's `token_limit_exceeded` refusal and
//!   kept in the state per key fingerprint and model for the next run and `plan`). A
//!   refusal (that failure, or Anthropic's 429) puts the shard back to `planned` and pauses
//!   submissions until one of our batches ends (or a backoff passes): it never fails the job.
//! - **Crash safety.** Every batch is tagged with the job and shard in its `metadata`
//!   (`paceline_job`, `paceline_shard`); a shard is marked `creating` before the create call and
//!   `submitted` with the provider's id after it. A run that finds a shard `creating` lists the
//!   provider's batches and adopts the one with its tag before creating any. Anthropic's
//!   batches carry no metadata: there the batch adopted is the one created after the shard went
//!   `creating`, with the shard's number of requests, that no other shard holds (shards are
//!   created one at a time, so at most one is `creating`). Results are handed on only for
//!   requests the store still has without one, so collecting a shard twice (a crash between the
//!   hand-over and the writer's commit) writes nothing twice.
//! - **Retries.** A request a batch returns with a retryable failure (the same rules as live:
//!   [`crate::retry::classify`]), or not at all (expired, cancelled), is released from its shard
//!   and goes into a later one, until `--max-attempts` batches; a final failure is written as
//!   live writes it.
//! - **Polling** backs off from `--batch-poll-min` (1 s) by half again each poll up to
//!   `--batch-poll-max` (60 s); progress lines show each shard's counts.
//! - **Handing over** (`--via auto --deadline`, a [`Handover`]): each turn of the loop asks
//!   when what is left (per model: the requests of the unfinished shards and their tokens) must
//!   go live. Once that instant passes, the shards not yet given to the provider are forgotten,
//!   the provider's batches are cancelled, and their results are collected for as long as the
//!   [`Handover::cancel_wait`] allows (what a cancelled batch did not run is released, never
//!   failed); the drive then ends and the runner sends the rest live. A request no batch can
//!   take (its endpoint, its size) is left for the live path instead of failed. The question is
//!   asked again from the state on every run, so a resumed job decides anew.
//! - **Attempts**: each request a batch returns (answered, failed, expired or cancelled) is an
//!   attempt row like a live one — the batch's key, sent when the batch was created, its
//!   status or cause and what was decided — so `status`, `inspect` and the report count it.
//!
//! It must not know the engine's pacing or the writer's work: it reads the input and the
//! store, talks to the provider through [`client`], and hands on finished requests.

pub mod client;
pub mod cut;
pub mod handover;

use crate::batch::InputSpec;
use crate::engine::{AttemptRecord, Decision, Event, Finished, ProviderAnswer, Verdict};
use crate::provider::BatchApi;
use crate::provider::usage::usage_of_body;
use crate::retry::{AttemptResult, Failure, Outcome, classify};
use crate::store::shards::{self, Member, Shard, ShardState};
use crate::store::{Store, StoreError};
use client::{BatchApiError, BatchClient, BatchStatus, LineOutcome};
use cut::{ShardLimits, Unfit};
use handover::{Handover, Remainder};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// What to do with the provider's batches when the run is interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnInterrupt {
    /// Leave them running: the same command collects them later.
    #[default]
    Leave,
    /// Cancel them (what they finished is still collected on the next run).
    Cancel,
}

/// How the batch path sends a job (`run --via batch`'s settings).
#[derive(Debug, Clone)]
pub struct BatchSettings {
    /// The provider's Batch API.
    pub client: BatchClient,
    /// Shard limits.
    pub limits: ShardLimits,
    /// Batches a request may be in before it fails with `max_attempts_exceeded`.
    pub max_attempts: u32,
    /// First poll interval.
    pub poll_min: Duration,
    /// Longest poll interval.
    pub poll_max: Duration,
    /// What an interrupt does to the provider's batches (`None`: ask on a terminal, else
    /// leave them).
    pub on_interrupt: Option<OnInterrupt>,
}

/// Everything a batch-path run needs.
#[derive(Debug, Clone)]
pub struct OfflinePlan {
    /// The input.
    pub input: InputSpec,
    /// The job's state.
    pub state: PathBuf,
    /// Print a line per shard event.
    pub verbose: bool,
    /// The settings.
    pub via: BatchSettings,
}

/// What a batch-path run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OfflineReport {
    /// Batches created by this run.
    pub created: u64,
    /// Batches found at the provider and adopted (created by an earlier run).
    pub adopted: u64,
    /// Refusals for the enqueued / queue limit.
    pub refusals: u64,
    /// Shards whose results were collected by this run.
    pub collected: u64,
    /// Requests handed on with a result.
    pub finished: u64,
    /// Batches cancelled on interrupt.
    pub cancelled: u64,
    /// Whether the run stopped for an interrupt.
    pub interrupted: bool,
}

/// Why the batch path could not go on.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The input could not be read.
    #[error(transparent)]
    Input(#[from] crate::batch::InputError),
    /// The provider's Batch API refused in a way no wait cures.
    #[error("{0}")]
    Api(#[from] BatchApiError),
    /// The job has no record in the state (setup did not run).
    #[error("no job in the state {0}")]
    NoJob(PathBuf),
    /// The writer is gone.
    #[error("the store's writer stopped")]
    WriterGone,
}

struct Poll {
    due: Instant,
    every: Duration,
    last: Option<(String, u64, u64)>,
}

/// The driver's state for one run.
struct Driver {
    plan: OfflinePlan,
    store: Store,
    tag: String,
    events: mpsc::Sender<Event>,
    polls: HashMap<i64, Poll>,
    collected: HashSet<i64>,
    paused_until: Option<Instant>,
    pause_backoff: Duration,
    wait_for_end: bool,
    report: OfflineReport,
    handover: Option<Arc<dyn Handover>>,
    /// `--via auto`: requests no batch can take, left for the live path.
    left_for_live: HashSet<i64>,
}

/// Send the job's pending requests through the provider's Batch API until every one has a
/// result, handing results to `events` (the store's writer). Stops early when `stop` says what
/// to do with the provider's batches, or, with a `handover`, when what is left must go live.
pub async fn drive(
    plan: OfflinePlan,
    events: mpsc::Sender<Event>,
    mut stop: watch::Receiver<Option<OnInterrupt>>,
    handover: Option<Arc<dyn Handover>>,
) -> Result<OfflineReport, OfflineError> {
    let store = Store::open(&plan.state)?;
    let job =
        crate::store::job::load(&store)?.ok_or_else(|| OfflineError::NoJob(plan.state.clone()))?;
    let tag = format!(
        "{}-{}",
        job.identity
            .sha256
            .get(..16)
            .unwrap_or(&job.identity.sha256),
        job.created_at
    );
    let mut plan = plan;
    // What earlier runs learned of the key's enqueued limits holds from the start.
    for (model, limit) in crate::store::enqueued::learned(&store, plan.via.client.key_label())? {
        let known = plan.via.limits.enqueued.entry(model).or_insert(limit);
        *known = (*known).min(limit);
    }
    let mut d = Driver {
        plan,
        store,
        tag,
        events,
        polls: HashMap::new(),
        collected: HashSet::new(),
        paused_until: None,
        pause_backoff: Duration::from_secs(1),
        wait_for_end: false,
        report: OfflineReport::default(),
        handover,
        left_for_live: HashSet::new(),
    };
    // Shards a crashed run ended without its results committed: collect them again.
    for shard in shards::all(&d.store)? {
        if shard.state == ShardState::Ended
            && shards::members(&d.store, shard.id)?
                .iter()
                .any(|m| m.pending)
            && let Some(id) = shard.provider_id.clone()
        {
            let status = d.plan.via.client.retrieve(&id).await?;
            d.collect(&shard, &status, false).await?;
        }
    }
    let mut need_plan = true;
    loop {
        let stopping = *stop.borrow();
        if let Some(choice) = stopping {
            d.interrupt(choice).await;
            break;
        }
        if need_plan {
            d.plan_shards().await?;
            need_plan = false;
        }
        let all = shards::all(&d.store)?;
        let open: Vec<&Shard> = all
            .iter()
            .filter(|s| s.state != ShardState::Ended)
            .collect();
        if open.is_empty() {
            if d.plannable()?.is_empty() {
                break;
            }
            need_plan = true;
            continue;
        }
        for shard in open.iter().filter(|s| s.state == ShardState::Creating) {
            d.resume_creating(shard).await?;
        }
        let due = match &d.handover {
            Some(h) => Some(h.due(&remainder(&shards::all(&d.store)?))),
            None => None,
        };
        if due.is_some_and(|due| Instant::now() >= due) {
            d.hand_over().await?;
            break;
        }
        d.submit_ready(&all).await?;
        if d.poll_due(&all).await? {
            need_plan = true;
            continue;
        }
        let next = d
            .polls
            .values()
            .map(|p| p.due)
            .chain(d.paused_until)
            .chain(due)
            .min()
            .unwrap_or_else(|| Instant::now() + d.plan.via.poll_min);
        let next = next.max(Instant::now() + Duration::from_millis(20));
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stop.changed() => {}
        }
    }
    Ok(d.report)
}

/// What the unfinished shards hold, per model (a shard's requests are all without a result until
/// its batch is collected).
fn remainder(all: &[Shard]) -> Vec<Remainder> {
    let mut by_model: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for s in all.iter().filter(|s| s.state != ShardState::Ended) {
        let e = by_model.entry(&s.model).or_default();
        e.0 += s.requests;
        e.1 += s.tokens;
    }
    by_model
        .into_iter()
        .map(|(model, (requests, tokens))| Remainder {
            model: model.to_string(),
            requests,
            tokens,
        })
        .collect()
}

fn ms_since_epoch(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

impl Driver {
    fn say(&self, line: String) {
        if self.plan.verbose {
            eprintln!("paceline: {line}");
        }
    }

    fn metadata(&self, shard: i64) -> Value {
        json!({"paceline_job": self.tag, "paceline_shard": shard.to_string()})
    }

    /// Cut the pending requests in no shard into new shards; fail those no batch can hold.
    async fn plan_shards(&mut self) -> Result<(), OfflineError> {
        let unassigned = self.plannable()?;
        if unassigned.is_empty() {
            return Ok(());
        }
        let mut wanted = HashMap::with_capacity(unassigned.len());
        let mut by_id = HashMap::with_capacity(unassigned.len());
        for u in &unassigned {
            wanted.insert(u.line, u.id);
            by_id.insert(u.id, u);
        }
        let (spec, limits) = (self.plan.input.clone(), self.plan.via.limits.clone());
        let (cuts, unfit) = tokio::task::spawn_blocking(move || cut::cut(&spec, &wanted, &limits))
            .await
            .map_err(|e| StoreError::NotState {
                path: self.plan.state.clone(),
                detail: format!(": the shard planner stopped: {e}"),
            })??;
        for (id, why) in unfit {
            let Some(u) = by_id.get(&id) else { continue };
            if self.handover.is_some() {
                self.left_for_live.insert(id);
                continue;
            }
            let (code, message) = match why {
                Unfit::Endpoint(e) => (
                    Failure::NoRoute,
                    format!(
                        "{} has no batch at this provider; send it with --via live",
                        e.path()
                    ),
                ),
                Unfit::TooLarge(why) => (
                    Failure::RequestTooLarge,
                    format!("too large for a batch: {why}"),
                ),
            };
            self.finish(
                &u.custom_id,
                u.tries.max(1),
                Verdict::Failed {
                    answer: None,
                    code,
                    message,
                },
            )
            .await?;
        }
        for c in cuts {
            let id = shards::plan(
                &mut self.store,
                &c.model,
                c.endpoint.path(),
                c.tokens,
                &c.requests,
            )?;
            self.say(format!(
                "shard {id}: {} requests of {} to {} ({} enqueued tokens)",
                c.requests.len(),
                c.model,
                c.endpoint.path(),
                c.tokens
            ));
        }
        Ok(())
    }

    /// Pending requests in no active shard that a batch may take.
    fn plannable(&self) -> Result<Vec<shards::Unassigned>, OfflineError> {
        let mut all = shards::unassigned(&self.store)?;
        all.retain(|u| !self.left_for_live.contains(&u.id));
        Ok(all)
    }

    async fn finish(
        &mut self,
        custom_id: &str,
        attempts: u32,
        verdict: Verdict,
    ) -> Result<(), OfflineError> {
        let finished = Finished {
            custom_id: custom_id.to_string(),
            attempts,
            verdict,
            waited: Duration::ZERO,
            retry_after: None,
            last_retry: None,
        };
        self.report.finished += 1;
        self.events
            .send(Event::Finished(finished))
            .await
            .map_err(|_| OfflineError::WriterGone)
    }

    /// Enqueued tokens of our submitted, unfinished shards of `model`.
    fn in_flight(all: &[Shard], model: &str) -> u64 {
        all.iter()
            .filter(|s| {
                s.model == model && matches!(s.state, ShardState::Submitted | ShardState::Creating)
            })
            .map(|s| s.tokens)
            .sum()
    }

    /// Submit planned shards, in order, while the queue has room and nothing pauses it.
    async fn submit_ready(&mut self, all: &[Shard]) -> Result<(), OfflineError> {
        if self.wait_for_end || self.paused_until.is_some_and(|t| Instant::now() < t) {
            return Ok(());
        }
        self.paused_until = None;
        let mut flying: HashMap<String, u64> = HashMap::new();
        for shard in all.iter().filter(|s| s.state == ShardState::Planned) {
            let used = *flying
                .entry(shard.model.clone())
                .or_insert_with(|| Self::in_flight(all, &shard.model));
            if let Some(cap) = self.plan.via.limits.enqueued_for(&shard.model) {
                if shard.tokens > cap {
                    // Cut before the limit was learned: give its requests back to be cut again.
                    let ids: Vec<i64> = shards::members(&self.store, shard.id)?
                        .iter()
                        .map(|m| m.id)
                        .collect();
                    shards::end(&mut self.store, shard.id, &ids)?;
                    self.say(format!(
                        "shard {}: larger than {}'s enqueued limit {cap}: cut again",
                        shard.id, shard.model
                    ));
                    continue;
                }
                if used + shard.tokens > cap {
                    continue;
                }
            }
            match self.create(shard).await? {
                true => {
                    *flying.entry(shard.model.clone()).or_default() += shard.tokens;
                }
                false => return Ok(()),
            }
        }
        Ok(())
    }

    /// The lines of a shard's pending members, in input order.
    async fn lines(&mut self, members: &[Member]) -> Result<Vec<String>, OfflineError> {
        let wanted: HashMap<u64, i64> = members.iter().map(|m| (m.line, m.id)).collect();
        let (spec, batch, max) = (
            self.plan.input.clone(),
            self.plan.via.limits.spec,
            self.plan.via.limits.default_max_tokens,
        );
        let mut found =
            tokio::task::spawn_blocking(move || cut::read_lines(&spec, &wanted, &batch, max))
                .await
                .map_err(|e| StoreError::NotState {
                    path: self.plan.state.clone(),
                    detail: format!(": reading the shard's requests stopped: {e}"),
                })??;
        Ok(members
            .iter()
            .filter_map(|m| found.remove(&m.line).map(|p| p.line))
            .collect())
    }

    /// Create a shard's batch; `false` when the provider refused it for now (submissions pause).
    async fn create(&mut self, shard: &Shard) -> Result<bool, OfflineError> {
        let members: Vec<Member> = shards::members(&self.store, shard.id)?
            .into_iter()
            .filter(|m| m.pending)
            .collect();
        if members.is_empty() {
            shards::end(&mut self.store, shard.id, &[])?;
            return Ok(true);
        }
        let lines = self.lines(&members).await?;
        let result = match self.plan.via.client.api() {
            BatchApi::OpenAi => {
                let file_id = match &shard.file_id {
                    Some(id) => id.clone(),
                    None => {
                        let mut content = Vec::new();
                        for line in &lines {
                            content.extend_from_slice(line.as_bytes());
                            content.push(b'\n');
                        }
                        let name = format!("paceline-{}-shard-{}.jsonl", self.tag, shard.id);
                        let id = self.plan.via.client.upload(&name, content).await?;
                        shards::set_file(&self.store, shard.id, &id)?;
                        id
                    }
                };
                shards::set_creating(&self.store, shard.id)?;
                self.plan
                    .via
                    .client
                    .create_openai(&file_id, &shard.endpoint, &self.metadata(shard.id))
                    .await
            }
            BatchApi::Anthropic => {
                shards::set_creating(&self.store, shard.id)?;
                self.plan.via.client.create_anthropic(&lines).await
            }
        };
        match result {
            Ok(status) => {
                shards::set_submitted(&self.store, shard.id, &status.id, &status.status)?;
                self.report.created += 1;
                self.pause_backoff = Duration::from_secs(1);
                self.say(format!(
                    "shard {}: batch {} {}",
                    shard.id, status.id, status.status
                ));
                self.polls.insert(
                    shard.id,
                    Poll {
                        due: Instant::now() + self.plan.via.poll_min,
                        every: self.plan.via.poll_min,
                        last: None,
                    },
                );
                Ok(true)
            }
            Err(e) if e.is_rate_limited() || e.is_transient() => {
                shards::refused(&self.store, shard.id, "refused")?;
                if e.is_rate_limited() {
                    self.report.refusals += 1;
                }
                let wait = e
                    .retry_after()
                    .unwrap_or(self.pause_backoff)
                    .min(self.plan.via.poll_max.max(Duration::from_secs(1)));
                self.pause_backoff = (self.pause_backoff * 2)
                    .min(self.plan.via.poll_max.max(Duration::from_secs(1)));
                self.paused_until = Some(Instant::now() + wait);
                self.say(format!(
                    "shard {}: not accepted now ({e}); submissions pause {:.0}s",
                    shard.id,
                    wait.as_secs_f64()
                ));
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A shard left `creating` by an earlier run: adopt its batch if the provider has it, else
    /// create it.
    async fn resume_creating(&mut self, shard: &Shard) -> Result<(), OfflineError> {
        if let Some(found) = self.find(shard).await? {
            shards::set_submitted(&self.store, shard.id, &found.id, &found.status)?;
            self.report.adopted += 1;
            self.say(format!(
                "shard {}: found its batch {} ({})",
                shard.id, found.id, found.status
            ));
            self.polls.insert(
                shard.id,
                Poll {
                    due: Instant::now(),
                    every: self.plan.via.poll_min,
                    last: None,
                },
            );
            return Ok(());
        }
        shards::refused(&self.store, shard.id, "not created")?;
        Ok(())
    }

    async fn find(&mut self, shard: &Shard) -> Result<Option<BatchStatus>, OfflineError> {
        let known: HashSet<String> = shards::provider_ids(&self.store)?.into_iter().collect();
        let want_members = shards::members(&self.store, shard.id)?
            .iter()
            .filter(|m| m.pending)
            .count() as u64;
        let since = shard.creating_at.unwrap_or(0) - 60_000;
        let mut after: Option<String> = None;
        let mut candidates = Vec::new();
        for _ in 0..100 {
            let (page, more) = self.plan.via.client.list(after.as_deref()).await?;
            let mut older = false;
            for b in &page {
                match self.plan.via.client.api() {
                    BatchApi::OpenAi => {
                        if b.metadata.get("paceline_job").and_then(Value::as_str)
                            == Some(self.tag.as_str())
                            && b.metadata.get("paceline_shard").and_then(Value::as_str)
                                == Some(shard.id.to_string().as_str())
                            && b.status != "failed"
                        {
                            return Ok(Some(b.clone()));
                        }
                    }
                    BatchApi::Anthropic => {
                        if b.created_ms.is_some_and(|t| t < since) {
                            older = true;
                        } else if !known.contains(&b.id) && b.total == want_members {
                            candidates.push(b.clone());
                        }
                    }
                }
            }
            after = page.last().map(|b| b.id.clone());
            if !more || older || after.is_none() {
                break;
            }
        }
        // Newest first: the oldest candidate is the first created after the shard went `creating`.
        Ok(candidates.pop())
    }

    /// Poll the shards that are due; `true` when some request was released (to be cut again).
    async fn poll_due(&mut self, all: &[Shard]) -> Result<bool, OfflineError> {
        let mut released = false;
        for shard in all.iter().filter(|s| s.state == ShardState::Submitted) {
            let Some(id) = shard.provider_id.clone() else {
                continue;
            };
            let now = Instant::now();
            let poll = self.polls.entry(shard.id).or_insert(Poll {
                due: now,
                every: self.plan.via.poll_min,
                last: None,
            });
            if poll.due > now {
                continue;
            }
            let status = match self.plan.via.client.retrieve(&id).await {
                Ok(status) => status,
                Err(e) if e.is_transient() => {
                    let poll = self.polls.entry(shard.id).or_insert(Poll {
                        due: now,
                        every: self.plan.via.poll_min,
                        last: None,
                    });
                    poll.due = Instant::now() + poll.every;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let seen = (status.status.clone(), status.completed, status.failed);
            if let Some(poll) = self.polls.get_mut(&shard.id) {
                if poll.last.as_ref() != Some(&seen) {
                    shards::set_status(
                        &self.store,
                        shard.id,
                        &status.status,
                        status.completed,
                        status.failed,
                    )?;
                    if self.plan.verbose {
                        eprintln!(
                            "paceline: shard {}: batch {} {} ({} of {} done, {} failed)",
                            shard.id,
                            status.id,
                            status.status,
                            status.completed,
                            status.total,
                            status.failed
                        );
                    }
                    poll.last = Some(seen);
                }
                poll.every = (poll.every.mul_f64(1.5)).min(self.plan.via.poll_max);
                poll.due = Instant::now() + poll.every;
            }
            if let Some(limit) = status.enqueued_refusal {
                self.report.refusals += 1;
                if let Some(limit) = limit {
                    crate::store::enqueued::record(
                        &self.store,
                        self.plan.via.client.key_label(),
                        &shard.model,
                        limit,
                    )?;
                    let learned = self
                        .plan
                        .via
                        .limits
                        .enqueued
                        .entry(shard.model.clone())
                        .or_insert(limit);
                    *learned = (*learned).min(limit);
                }
                shards::refused(&self.store, shard.id, "token_limit_exceeded")?;
                self.polls.remove(&shard.id);
                // Wait for one of our batches of the model to end before submitting again.
                self.wait_for_end = all.iter().any(|s| {
                    s.id != shard.id && s.model == shard.model && s.state == ShardState::Submitted
                });
                if !self.wait_for_end {
                    self.paused_until = Some(Instant::now() + self.pause_backoff);
                    self.pause_backoff = (self.pause_backoff * 2)
                        .min(self.plan.via.poll_max.max(Duration::from_secs(1)));
                }
                self.say(format!(
                    "shard {}: refused for {}'s enqueued-token limit{}; submissions pause",
                    shard.id,
                    shard.model,
                    limit.map_or(String::new(), |l| format!(" ({l})"))
                ));
                continue;
            }
            if status.ended {
                self.polls.remove(&shard.id);
                self.wait_for_end = false;
                released |= self.collect(shard, &status, false).await?;
            }
        }
        Ok(released)
    }

    /// Hand on the results of an ended batch; `true` when some request was released. With
    /// `handing_over`, what the batch left without a final answer is released whatever its
    /// count of batches (the live path takes it).
    async fn collect(
        &mut self,
        shard: &Shard,
        status: &BatchStatus,
        handing_over: bool,
    ) -> Result<bool, OfflineError> {
        if !self.collected.insert(shard.id) {
            return Ok(false);
        }
        let members = shards::members(&self.store, shard.id)?;
        let lines = if status.invalid.is_some() {
            Vec::new()
        } else {
            self.plan.via.client.results(status).await?
        };
        let mut by_id: HashMap<String, LineOutcome> = lines
            .into_iter()
            .map(|l| (l.custom_id, l.outcome))
            .collect();
        let sent_at = shard
            .creating_at
            .map_or_else(SystemTime::now, ms_since_epoch);
        let mut release = Vec::new();
        for m in members.iter().filter(|m| m.pending) {
            let out_of_tries = m.tries >= self.plan.via.max_attempts && !handing_over;
            let (verdict, cause) = if let Some((code, message)) = &status.invalid {
                let verdict = Verdict::Failed {
                    answer: None,
                    code: Failure::Provider(code.clone()),
                    message: message.clone(),
                };
                (Some(verdict), Some(code.clone()))
            } else {
                match by_id.remove(&m.custom_id) {
                    Some(LineOutcome::Answer {
                        status,
                        request_id,
                        body,
                    }) => self.answered(status, request_id, body, m.tries, out_of_tries),
                    outcome => {
                        let cause = match outcome {
                            Some(LineOutcome::Expired) => "batch_expired".to_string(),
                            Some(LineOutcome::Cancelled) => "batch_cancelled".to_string(),
                            Some(LineOutcome::Error { code, .. }) => code,
                            _ => "no_result".to_string(),
                        };
                        let verdict = out_of_tries.then(|| Verdict::Failed {
                            answer: None,
                            code: Failure::MaxAttemptsExceeded,
                            message: format!(
                                "{} batches ended without running it (the last: {cause})",
                                m.tries
                            ),
                        });
                        (verdict, Some(cause))
                    }
                }
            };
            self.attempt(m, sent_at, verdict.as_ref(), cause).await?;
            match verdict {
                Some(verdict) => self.finish(&m.custom_id, m.tries, verdict).await?,
                None => release.push(m.id),
            }
        }
        shards::end(&mut self.store, shard.id, &release)?;
        self.report.collected += 1;
        if !release.is_empty() {
            self.say(format!(
                "shard {}: {} requests to send again{}",
                shard.id,
                release.len(),
                if handing_over {
                    " live"
                } else {
                    " in a later shard"
                }
            ));
        }
        if self.plan.via.client.api() == BatchApi::OpenAi
            && let Some(file) = &shard.file_id
        {
            // Only tidies the provider's storage; the output and error files stay.
            let _ = self.plan.via.client.delete_file(file).await;
        }
        Ok(!release.is_empty())
    }

    /// What a request a batch answered comes to (`None`: send it again), with the attempt's
    /// cause when it is not a success.
    fn answered(
        &self,
        status: u16,
        request_id: Option<String>,
        body: bytes::Bytes,
        tries: u32,
        out_of_tries: bool,
    ) -> (Option<Verdict>, Option<String>) {
        let answer = ProviderAnswer {
            status,
            request_id,
            usage: usage_of_body(&body).ok().flatten(),
            body,
        };
        if (200..300).contains(&status) {
            return (Some(Verdict::Succeeded(answer)), None);
        }
        match classify(&AttemptResult::Response {
            status,
            body: &answer.body,
            headers_say_retry: None,
        }) {
            Outcome::Final { failure, message } => {
                let cause = Some(failure.code().to_string());
                let verdict = Verdict::Failed {
                    answer: Some(answer),
                    code: failure,
                    message,
                };
                (Some(verdict), cause)
            }
            Outcome::Retry { cause, .. } => {
                let verdict = out_of_tries.then(|| Verdict::Failed {
                    message: format!("{tries} batches failed it; the last answered {status}"),
                    answer: Some(answer),
                    code: Failure::MaxAttemptsExceeded,
                });
                (verdict, Some(cause.label().to_string()))
            }
            Outcome::Success => (Some(Verdict::Succeeded(answer)), None),
        }
    }

    /// The attempt row of a request a batch returned: its shard's key, sent when the batch was
    /// created, and what was decided (`verdict`; `None`: sent again).
    async fn attempt(
        &mut self,
        m: &Member,
        sent_at: SystemTime,
        verdict: Option<&Verdict>,
        cause: Option<String>,
    ) -> Result<(), OfflineError> {
        let (status, tokens, decision) = match verdict {
            Some(Verdict::Succeeded(a)) => (
                Some(a.status),
                a.usage.map_or(0, |u| u.prompt + u.completion),
                Decision::Succeeded,
            ),
            Some(Verdict::Failed { answer, code, .. }) => (
                answer.as_ref().map(|a| a.status),
                0,
                if *code == Failure::MaxAttemptsExceeded {
                    Decision::GaveUp
                } else {
                    Decision::Failed
                },
            ),
            None => (None, 0, Decision::Retry),
        };
        let record = AttemptRecord {
            custom_id: m.custom_id.clone(),
            attempt: m.tries,
            key: self.plan.via.client.key_label().to_string(),
            sent_at,
            tokens,
            status,
            latency: SystemTime::now()
                .duration_since(sent_at)
                .unwrap_or_default(),
            waited_quota: Duration::ZERO,
            paused: false,
            waited_backoff: Duration::ZERO,
            cause,
            decision,
            retry_in: Duration::ZERO,
            via_batch: true,
        };
        self.events
            .send(Event::Attempt(record))
            .await
            .map_err(|_| OfflineError::WriterGone)
    }

    /// Hand what is left to the live path: forget the shards not yet given to the provider,
    /// cancel its batches, and collect them as they end, for at most the handover's
    /// `cancel_wait`.
    async fn hand_over(&mut self) -> Result<(), OfflineError> {
        let Some(handover) = self.handover.clone() else {
            return Ok(());
        };
        shards::discard_planned(&mut self.store)?;
        let running: Vec<Shard> = shards::all(&self.store)?
            .into_iter()
            .filter(|s| s.state == ShardState::Submitted)
            .collect();
        for shard in &running {
            if let Some(id) = &shard.provider_id
                && self.plan.via.client.cancel(id).await.is_ok()
            {
                self.report.cancelled += 1;
            }
        }
        let until = Instant::now() + handover.cancel_wait();
        let mut every = self.plan.via.poll_min;
        let mut waiting = running;
        while !waiting.is_empty() {
            let mut still = Vec::new();
            for shard in waiting {
                let Some(id) = shard.provider_id.clone() else {
                    continue;
                };
                match self.plan.via.client.retrieve(&id).await {
                    Ok(status) if status.ended => {
                        self.collect(&shard, &status, true).await?;
                    }
                    Ok(_) => still.push(shard),
                    Err(e) if e.is_transient() => still.push(shard),
                    Err(e) => return Err(e.into()),
                }
            }
            waiting = still;
            if waiting.is_empty() || Instant::now() + every > until {
                break;
            }
            tokio::time::sleep(every).await;
            every = every.mul_f64(1.5).min(self.plan.via.poll_max);
        }
        for shard in &waiting {
            // Not ended in time: its requests go live, and what it still finishes is not used.
            let pending: Vec<i64> = shards::members(&self.store, shard.id)?
                .iter()
                .filter(|m| m.pending)
                .map(|m| m.id)
                .collect();
            shards::end(&mut self.store, shard.id, &pending)?;
        }
        self.say(format!(
            "handing the rest to live requests for the deadline (batches cancelled: {}{})",
            self.report.cancelled,
            if waiting.is_empty() {
                String::new()
            } else {
                format!(
                    ", {} not ended in time: what they still finish is not used",
                    waiting.len()
                )
            }
        ));
        Ok(())
    }

    async fn interrupt(&mut self, choice: OnInterrupt) {
        self.report.interrupted = true;
        if choice == OnInterrupt::Leave {
            return;
        }
        let Ok(all) = shards::all(&self.store) else {
            return;
        };
        for shard in all.iter().filter(|s| s.state == ShardState::Submitted) {
            if let Some(id) = &shard.provider_id
                && self.plan.via.client.cancel(id).await.is_ok()
            {
                self.report.cancelled += 1;
            }
        }
    }
}

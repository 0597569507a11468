//! The dispatcher: one task takes the next job (a due retry first, interactive before
//! batch), waits for an in-flight slot, books it ([`super::booking`]) and hands it to an
//! attempt task ([`super::attempt`]).
//!
//! It must not know how an attempt is sent or what its answer means ([`super::react`]).

use super::booking::Unbookable;
use super::concurrency::Permit;
use super::lanes::{Lanes, recv_lane};
use super::{Engine, EngineExit, Event, Job, Priority, TARGET_REFRESH, Verdict, lock};
use crate::retry::Failure;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Engine {
    /// A free in-flight slot. While every slot is taken, the target rate and the quotas'
    /// headroom are recomputed every [`TARGET_REFRESH`]: no answer may come for a while to do
    /// it, and meanwhile the buckets refill.
    async fn slot(&self) -> Permit {
        if let Some(permit) = self.concurrency.try_acquire() {
            return permit;
        }
        loop {
            tokio::select! {
                biased;
                permit = self.concurrency.acquire() => return permit,
                () = tokio::time::sleep(TARGET_REFRESH) => {
                    self.refresh_target_rate(Instant::now());
                }
            }
        }
    }

    pub(super) async fn run_lanes(
        self: Arc<Self>,
        mut lanes: Lanes,
        sink: mpsc::Sender<Event>,
    ) -> EngineExit {
        loop {
            let permit = self.slot().await;
            let job = match self.next_job(&mut lanes).await {
                _ if self.stopping() => None,
                next => next,
            };
            let Some(mut job) = job else {
                drop(permit);
                if self.stopping() {
                    self.wait_in_flight().await;
                    let pending = self.delayed.iter().map(|d| lock(d).len() as u64).sum();
                    return EngineExit::Stopped { pending };
                }
                return EngineExit::Completed;
            };
            loop {
                match self.book(&job, &mut lanes).await {
                    Ok((pick, waits)) => {
                        // The attempt's own future, not one wrapped around it: a wrapper
                        // would hold its arguments a second time for the whole attempt.
                        tokio::spawn(Arc::clone(&self).attempt(
                            job,
                            pick,
                            waits,
                            permit,
                            sink.clone(),
                        ));
                    }
                    Err(Unbookable::Preempted(urgent)) => {
                        self.retry_later(job, Instant::now());
                        job = *urgent;
                        continue;
                    }
                    Err(Unbookable::Abandoned) => {
                        drop(permit);
                        self.forget(job);
                    }
                    Err(Unbookable::PastDeadline(retry_after)) => {
                        drop(permit);
                        let verdict = Verdict::Failed {
                            answer: None,
                            code: Failure::DeadlineExceeded,
                            message: format!(
                                "no upstream capacity before the request's deadline; capacity expected in {:.1}s",
                                retry_after.as_secs_f64()
                            ),
                        };
                        self.finish(job, verdict, Some(retry_after), &sink).await;
                    }
                    Err(Unbookable::NeverFits(err)) => {
                        drop(permit);
                        let verdict = Verdict::Failed {
                            answer: None,
                            code: Failure::RequestTooLarge,
                            message: err.to_string(),
                        };
                        self.finish(job, verdict, None, &sink).await;
                    }
                    Err(Unbookable::NoRoute(message)) => {
                        drop(permit);
                        let verdict = Verdict::Failed {
                            answer: None,
                            code: Failure::NoRoute,
                            message,
                        };
                        self.finish(job, verdict, None, &sink).await;
                    }
                    Err(Unbookable::NoKeys(reason)) => {
                        drop(permit);
                        return self.stop_without_keys(job, reason, lanes).await;
                    }
                }
                break;
            }
        }
    }

    /// The next job: a due interactive retry, else interactive input, else a due batch retry,
    /// else batch input, else wait for any of them.
    async fn next_job(&self, lanes: &mut Lanes) -> Option<Job> {
        loop {
            let now = Instant::now();
            if let Some(job) = lock(&self.delayed[Priority::Interactive.index()]).pop_due(now) {
                return Some(job);
            }
            if self.stopping() {
                return None;
            }
            if let Some(rx) = &mut lanes.interactive {
                match rx.try_recv() {
                    Ok(job) => return Some(self.admitted(job)),
                    Err(mpsc::error::TryRecvError::Disconnected) => lanes.interactive = None,
                    Err(mpsc::error::TryRecvError::Empty) => {}
                }
            }
            if let Some(job) = lock(&self.delayed[Priority::Batch.index()]).pop_due(now) {
                return Some(job);
            }
            let next_due = self.delayed.iter().filter_map(|d| lock(d).next_due()).min();
            let woken = self.wake.notified();
            if !lanes.open() && self.outstanding.load(Ordering::SeqCst) == 0 {
                return None;
            }
            tokio::select! {
                biased;
                received = recv_lane(&mut lanes.interactive) => match received {
                    Some(job) => return Some(self.admitted(job)),
                    None => lanes.interactive = None,
                },
                received = recv_lane(&mut lanes.batch) => match received {
                    Some(job) => return Some(self.admitted(job)),
                    None => lanes.batch = None,
                },
                _ = woken => {}
                _ = sleep_until_opt(next_due) => {}
            }
        }
    }

    /// Count a job taken from an input lane as outstanding.
    fn admitted(&self, job: Job) -> Job {
        self.outstanding.fetch_add(1, Ordering::SeqCst);
        job
    }

    /// No key is left: wait for what is in flight, then count what never got a result.
    async fn stop_without_keys(&self, job: Job, reason: String, lanes: Lanes) -> EngineExit {
        tracing::error!(reason = %reason, "no usable API key left; stopping");
        self.retry_later(job, Instant::now());
        self.wait_in_flight().await;
        let mut unsent = 0;
        for delayed in &self.delayed {
            unsent += lock(delayed).drain().len() as u64;
        }
        for mut input in [lanes.interactive, lanes.batch].into_iter().flatten() {
            input.close();
            while input.recv().await.is_some() {
                unsent += 1;
            }
        }
        EngineExit::NoKeys { reason, unsent }
    }

    /// Wait until no attempt is in flight.
    async fn wait_in_flight(&self) {
        while self.concurrency.in_flight() > 0 {
            let woken = self.wake.notified();
            tokio::select! {
                biased;
                _ = woken => {}
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    }
}

//! Booking: reserve a job's cost on the key that can send it soonest, and wait until the
//! reservation's time. [`Engine::send_now`] and the dispatcher's [`Engine::book`] share one
//! admission check ([`Engine::reserve`]). In distributed mode the booking composes the two
//! quotas: the local one reserves (synchronously), then the key's shared quota says how much
//! longer to wait ([`crate::upstream::SharedQuota::admit`], asynchronously); only the
//! dispatcher's booking awaits it, so [`Engine::send_now`] leaves a shared key's jobs to it.
//!
//! It must not know Redis (a shared quota is only the [`crate::upstream::SharedQuota`] seam) nor
//! how an attempt is sent.

use super::lanes::{Lanes, recv_lane};
use super::{Engine, Event, Job, Priority, Waits, lock};
use crate::upstream::{Pick, PickError};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Why a job cannot be booked on any key.
pub(super) enum Unbookable {
    /// It exceeds a limit outright.
    NeverFits(crate::quota::QuotaError),
    /// No key is left.
    NoKeys(String),
    /// No key in rotation serves its model and endpoint.
    NoRoute(String),
    /// It could not go before its deadline; capacity is expected after this long.
    PastDeadline(Duration),
    /// Its caller has gone.
    Abandoned,
    /// An interactive job arrived while this batch job waited for its reservation.
    Preempted(Box<Job>),
}

/// Why [`Engine::reserve`] made no reservation.
enum Refusal {
    /// Every key's probe is out: ask again once an answer arrives.
    Busy,
    /// The job cannot be booked at all.
    Unbookable(Unbookable),
}

impl Engine {
    /// Send an interactive job at once from the caller's task, when nothing can be ahead of
    /// it: no interactive retry is due, an in-flight slot is free and a key's (unshared) quota
    /// admits it now. The attempt then runs exactly as the dispatcher would run it, minus the hand-offs
    /// through the input lane and the dispatcher (the gateway's latency on an idle path).
    /// Otherwise the job comes back untouched (`Some`), to be queued. The caller makes sure no
    /// interactive job waits in its own queue.
    pub fn send_now(self: &Arc<Self>, job: Job, sink: &mpsc::Sender<Event>) -> Option<Job> {
        let now = Instant::now();
        if job.priority != Priority::Interactive
            || self.stopping()
            || lock(&self.delayed[Priority::Interactive.index()])
                .next_due()
                .is_some_and(|due| due <= now)
        {
            return Some(job);
        }
        let Some(permit) = self.concurrency.try_acquire() else {
            return Some(job);
        };
        let Ok(pick) = self.reserve(&job, now) else {
            return Some(job);
        };
        // A shared quota's admission is awaited: that is the dispatcher's way.
        if pick.reservation.go_at > now || pick.shared.is_some() {
            pick.cancel(now);
            return Some(job);
        }
        self.outstanding.fetch_add(1, Ordering::SeqCst);
        let waits = Waits {
            quota: Duration::ZERO,
            paused: false,
            backoff: job.backoff,
            queued: now.saturating_duration_since(job.ready_at),
        };
        let engine = Arc::clone(self);
        let sink = sink.clone();
        tokio::spawn(async move {
            engine.attempt(job, pick, waits, permit, sink).await;
        });
        None
    }

    /// The admission check shared by [`Engine::send_now`] and [`Engine::book`]: reserve `job`'s
    /// cost on the key that can send it soonest, unless it would have to wait past its deadline
    /// (one that can go now goes, however late: a zero max wait means "now if there is
    /// capacity"; with every probe out, a job at its deadline is refused).
    fn reserve(&self, job: &Job, now: Instant) -> Result<Pick, Refusal> {
        let refuse = |why| Err(Refusal::Unbookable(why));
        if let Some(took) = self.upstream.connect_time() {
            self.pool.connected_in(took);
        }
        let pick = match self.pool.pick_for(job.want(), job.cost(), now) {
            Ok(pick) => pick,
            Err(PickError::Busy) if job.deadline.is_some_and(|d| d <= now) => {
                return refuse(Unbookable::PastDeadline(Duration::from_secs(1)));
            }
            Err(PickError::Busy) => return Err(Refusal::Busy),
            Err(PickError::NoKeys(reason)) => return refuse(Unbookable::NoKeys(reason)),
            Err(PickError::NeverFits(err)) => return refuse(Unbookable::NeverFits(err)),
            Err(err @ PickError::NoRoute { .. }) => {
                return refuse(Unbookable::NoRoute(err.to_string()));
            }
        };
        let go_at = pick.reservation.go_at;
        if job.misses_deadline(go_at, now) {
            pick.cancel(now);
            return refuse(Unbookable::PastDeadline(
                go_at.saturating_duration_since(now),
            ));
        }
        Ok(pick)
    }

    /// Reserve a job's cost and wait until it may go. A quota paused by a 429 while we waited
    /// gives the reservation back and books again after the pause. A batch job's wait gives way
    /// to an interactive job arriving on `lanes`.
    pub(super) async fn book(
        &self,
        job: &Job,
        lanes: &mut Lanes,
    ) -> Result<(Pick, Waits), Unbookable> {
        let booked_at = Instant::now();
        let mut paused = false;
        loop {
            if job.abandoned() {
                return Err(Unbookable::Abandoned);
            }
            let now = Instant::now();
            let mut pick = match self.reserve(job, now) {
                Ok(pick) => pick,
                Err(Refusal::Unbookable(why)) => return Err(why),
                Err(Refusal::Busy) => {
                    // Every key's probe is out: wait for an answer (any attempt ending wakes us).
                    let woken = self.wake.notified();
                    tokio::select! {
                        biased;
                        _ = woken => {}
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                    continue;
                }
            };
            let go_at = pick.reservation.go_at;
            paused |= pick.quota.paused_until(now).is_some();
            if go_at > now {
                let urgent = if job.priority == Priority::Batch {
                    tokio::select! {
                        biased;
                        _ = tokio::time::sleep_until(go_at) => None,
                        urgent = recv_lane(&mut lanes.interactive) => match urgent {
                            Some(urgent) => Some(urgent),
                            None => {
                                lanes.interactive = None;
                                tokio::time::sleep_until(go_at).await;
                                None
                            }
                        },
                    }
                } else {
                    tokio::time::sleep_until(go_at).await;
                    None
                };
                if let Some(urgent) = urgent {
                    self.outstanding.fetch_add(1, Ordering::SeqCst);
                    pick.cancel(Instant::now());
                    return Err(Unbookable::Preempted(Box::new(urgent)));
                }
            }
            let now = Instant::now();
            if pick.quota.paused_until(now).is_some() {
                pick.cancel(now);
                paused = true;
                continue;
            }
            if job.abandoned() {
                pick.cancel(now);
                return Err(Unbookable::Abandoned);
            }
            // A shared quota has the last word: it says when, across every process.
            let wait = match &pick.shared {
                Some(shared) => {
                    let admission = shared.admit(&pick.quota, &pick.reservation.cost, now).await;
                    pick.shared_holds = admission.holds;
                    admission.wait
                }
                None => Duration::ZERO,
            };
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
                let now = Instant::now();
                if pick.quota.paused_until(now).is_some() {
                    pick.cancel(now);
                    paused = true;
                    continue;
                }
            }
            let now = Instant::now();
            let waits = Waits {
                quota: now.saturating_duration_since(booked_at),
                paused,
                backoff: job.backoff,
                queued: booked_at.saturating_duration_since(job.ready_at),
            };
            return Ok((pick, waits));
        }
    }
}

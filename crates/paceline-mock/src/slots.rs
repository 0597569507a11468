//! Slots and a queue (`--slots N`): the mock as a self-hosted inference server.
//!
//! A server such as llama.cpp, vLLM, TGI or Ollama processes at most N requests at once (its
//! slots, or its batch); the requests beyond wait in a first-in, first-out queue, with no error
//! and no rate-limit headers. With slots, the latency model (`--latency-ms`, `--latency-sd`,
//! `--ms-per-token`) is the *service* time, counted once a slot is taken, so throughput
//! flattens at `N ÷ service time` while latency grows with what is queued (Little's law: a client
//! sending C at once waits about `(C − N) ÷ N` service times in the queue).
//!
//! The queue is tokio's [`Semaphore`], which is fair: permits go to waiters in the order they
//! asked. A request whose client disconnects while queued has its handler dropped, which drops
//! its place in the semaphore's queue (acquiring is cancel-safe); [`SlotStats::left_queue`]
//! counts those. A slot is held until the answer's last byte is handed over (a stream keeps it
//! for its whole generation) or the client hangs up.
//!
//! It knows nothing of requests or answers: a slot is held by whoever took it.

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
// tokio's clock, so waits are measured on a paused test clock too.
use tokio::time::Instant;

/// The most slots `--slots` accepts.
pub const MAX_SLOTS: usize = 1_000_000;

/// The slots and queue as `GET /_mock/stats` shows them (`slots` there; absent without
/// `--slots`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotStats {
    /// Slots (`--slots`).
    pub slots: u64,
    /// Requests in service now.
    pub in_service: u64,
    /// Requests waiting for a slot now (a request that finds a slot free never queues).
    pub queued: u64,
    /// Most requests in service at once.
    pub peak_in_service: u64,
    /// Most requests waiting at once.
    pub peak_queued: u64,
    /// Requests that took a slot.
    pub served: u64,
    /// Requests that waited and went (the client disconnected, or the server stopped) before a
    /// slot was free.
    pub left_queue: u64,
    /// Sum of the waits for a slot of the requests served, in milliseconds.
    pub wait_ms_total: u64,
    /// Longest wait for a slot, in milliseconds.
    pub wait_ms_max: u64,
}

/// A fixed number of slots with a FIFO queue in front of them.
#[derive(Debug)]
pub struct Slots {
    semaphore: Arc<Semaphore>,
    counts: Mutex<SlotStats>,
}

/// A slot held: released when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    _permit: OwnedSemaphorePermit,
}

/// A place in the queue: when dropped before it became a slot, the request left the queue.
struct Waiting<'a> {
    slots: &'a Slots,
    served: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut c = self.slots.counts.lock();
        c.queued = c.queued.saturating_sub(1);
        if !self.served {
            c.left_queue += 1;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.slots.counts.lock();
        c.in_service = c.in_service.saturating_sub(1);
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Slots {
    /// `n` free slots (at least 1).
    pub fn new(n: usize) -> Self {
        let n = n.clamp(1, MAX_SLOTS);
        Self {
            semaphore: Arc::new(Semaphore::new(n)),
            counts: Mutex::new(SlotStats {
                slots: n as u64,
                ..SlotStats::default()
            }),
        }
    }

    /// Wait (first come, first served) for a free slot. `None` only if the semaphore was closed,
    /// which nothing does. Dropping the future leaves the queue.
    pub async fn acquire(self: &Arc<Self>) -> Option<Slot> {
        // A free slot is taken at once: the semaphore hands released permits to its waiters
        // first, so this never passes anyone queued.
        if let Ok(permit) = Arc::clone(&self.semaphore).try_acquire_owned() {
            self.start(Duration::ZERO);
            return Some(Slot {
                slots: Arc::clone(self),
                _permit: permit,
            });
        }
        let asked = Instant::now();
        let mut waiting = Waiting {
            slots: self,
            served: false,
        };
        {
            let mut c = self.counts.lock();
            c.queued += 1;
            c.peak_queued = c.peak_queued.max(c.queued);
        }
        let permit = Arc::clone(&self.semaphore).acquire_owned().await.ok()?;
        waiting.served = true;
        self.start(asked.elapsed());
        // A request that took a slot is no longer queued (counted by `waiting`'s drop).
        drop(waiting);
        Some(Slot {
            slots: Arc::clone(self),
            _permit: permit,
        })
    }

    /// Count a request entering service after waiting `waited`.
    fn start(&self, waited: Duration) {
        let wait = millis(waited);
        let mut c = self.counts.lock();
        c.in_service += 1;
        c.peak_in_service = c.peak_in_service.max(c.in_service);
        c.served += 1;
        c.wait_ms_total = c.wait_ms_total.saturating_add(wait);
        c.wait_ms_max = c.wait_ms_max.max(wait);
    }

    /// The counters now. A request that has just taken a slot may show as in service and queued
    /// for an instant.
    pub fn stats(&self) -> SlotStats {
        *self.counts.lock()
    }

    /// Clear the totals; the peaks restart from what is in service and queued now.
    pub fn reset(&self) {
        let mut c = self.counts.lock();
        *c = SlotStats {
            slots: c.slots,
            in_service: c.in_service,
            queued: c.queued,
            peak_in_service: c.in_service,
            peak_queued: c.queued,
            ..SlotStats::default()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::sleep;

    /// `clients` requests arrive at once, each served for `service`; when each one finished.
    async fn finish_times(
        slots: usize,
        clients: usize,
        service: Duration,
    ) -> (Vec<u128>, SlotStats) {
        let q = Arc::new(Slots::new(slots));
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let q = Arc::clone(&q);
            tasks.push(tokio::spawn(async move {
                let slot = q.acquire().await;
                sleep(service).await;
                drop(slot);
                t0.elapsed().as_millis()
            }));
            // Arrival order is the spawn order.
            tokio::task::yield_now().await;
        }
        let mut done = Vec::new();
        for task in tasks {
            done.push(task.await.unwrap_or_default());
        }
        (done, q.stats())
    }

    #[tokio::test(start_paused = true)]
    async fn throughput_is_slots_over_service_time_and_the_queue_is_fifo() {
        let (done, stats) = finish_times(2, 8, Duration::from_millis(100)).await;
        // First come, first served: the k-th arrival finishes in round ⌈k ÷ 2⌉.
        assert_eq!(done, [100, 100, 200, 200, 300, 300, 400, 400]);
        assert_eq!(
            (stats.peak_in_service, stats.peak_queued, stats.served),
            (2, 6, 8)
        );
        assert_eq!(
            (stats.in_service, stats.queued, stats.left_queue),
            (0, 0, 0)
        );
        // Waits: 0, 0, 100, 100, 200, 200, 300, 300.
        assert_eq!((stats.wait_ms_total, stats.wait_ms_max), (1_200, 300));
        // One slot: 8 ÷ (1 per 100 ms) = 800 ms; latency grows by a service time per place.
        let (done, _) = finish_times(1, 8, Duration::from_millis(100)).await;
        assert_eq!(done, [100, 200, 300, 400, 500, 600, 700, 800]);
        // As many slots as clients: no queue, every request takes one service time.
        let (done, stats) = finish_times(8, 8, Duration::from_millis(100)).await;
        assert_eq!(done, [100; 8]);
        assert_eq!((stats.wait_ms_total, stats.peak_queued), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_goes_leaves_the_queue() {
        let q = Arc::new(Slots::new(1));
        let held = q.acquire().await;
        let gone = tokio::spawn({
            let q = Arc::clone(&q);
            async move { q.acquire().await.is_some() }
        });
        let next = tokio::spawn({
            let q = Arc::clone(&q);
            async move {
                let slot = q.acquire().await;
                slot.is_some()
            }
        });
        sleep(Duration::from_millis(10)).await;
        assert_eq!((q.stats().in_service, q.stats().queued), (1, 2));
        assert_eq!(q.stats().peak_queued, 2);
        // The first waiter's client hangs up: its place goes, the one behind it moves up.
        gone.abort();
        assert!(gone.await.is_err());
        assert_eq!((q.stats().queued, q.stats().left_queue), (1, 1));
        drop(held);
        assert!(next.await.unwrap_or(false));
        let s = q.stats();
        assert_eq!(
            (s.served, s.left_queue, s.queued, s.in_service),
            (2, 1, 0, 0)
        );
        q.reset();
        assert_eq!(
            q.stats(),
            SlotStats {
                slots: 1,
                ..SlotStats::default()
            }
        );
    }
}

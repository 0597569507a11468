//! The delayed queue: requests waiting to be retried, each with its not-before time. A request
//! waiting here holds no worker and no in-flight slot.
//!
//! It must not know why a job waits or what happens when it is due.

use super::job::Job;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use tokio::time::Instant;

struct Entry {
    due: Instant,
    seq: u64,
    job: Job,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        // BinaryHeap is a max-heap: the earliest due (then the first queued) on top.
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

/// Jobs ordered by the time they may go again.
#[derive(Default)]
pub struct DelayedQueue {
    heap: BinaryHeap<Entry>,
    seq: u64,
}

impl DelayedQueue {
    /// Queue `job` to go no earlier than `due`.
    pub fn push(&mut self, due: Instant, job: Job) {
        self.seq += 1;
        self.heap.push(Entry {
            due,
            seq: self.seq,
            job,
        });
    }

    /// The earliest job due at `now`, if any.
    pub fn pop_due(&mut self, now: Instant) -> Option<Job> {
        if self.heap.peek().is_some_and(|e| e.due <= now) {
            self.heap.pop().map(|e| e.job)
        } else {
            None
        }
    }

    /// When the next job is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.due)
    }

    /// Jobs waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no job waits.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Take every waiting job out (for a stop).
    pub fn drain(&mut self) -> Vec<Job> {
        std::mem::take(&mut self.heap)
            .into_vec()
            .into_iter()
            .map(|e| e.job)
            .collect()
    }
}

//! The weighted fair queue in front of the engine: where requests wait while upstream capacity
//! is short, one FIFO per client and priority.
//!
//! Design: start-time fair queuing (SFQ). Each priority class keeps a virtual time `V`. A job
//! of client `c` with cost `w` (its estimated tokens, at least 1) arriving gets the start tag
//! `max(V, last finish tag of c)` and the finish tag `start + w / weight(c)`; the next job out
//! is the head with the smallest start tag, and `V` becomes that tag. Clients that keep the
//! queue busy therefore share what the upstream admits in proportion to their weights (in
//! tokens), an idle client returns with no backlog of credit, and within a client order is
//! FIFO.
//!
//! A feeder task per priority moves jobs into the engine's input lane of that priority, and
//! only when the lane has room ([`feed`]): the lanes hold one job each, so the order in which
//! jobs reach the upstream is decided here, as late as possible.
//!
//! It must not know HTTP, client keys or quotas: it orders engine [`Job`]s by flow, weight and
//! cost.

use crate::engine::{Job, Priority};
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use tokio::sync::{Notify, mpsc};

/// A job waiting, with its tags.
#[derive(Debug)]
struct Entry {
    start: f64,
    job: Job,
}

#[derive(Debug, Default)]
struct Flow {
    queue: VecDeque<Entry>,
    last_finish: f64,
}

#[derive(Debug, Default)]
struct Class {
    virtual_time: f64,
    flows: Vec<Flow>,
    len: usize,
}

#[derive(Debug)]
struct State {
    classes: [Class; 2],
    closed: bool,
}

/// The queue is closed: the gateway is stopping, or the engine has stopped. The job is dropped.
#[derive(Debug, thiserror::Error)]
#[error("the gateway is not taking requests")]
pub struct Closed;

/// Per-client FIFOs shared fairly, per priority.
#[derive(Debug)]
pub struct FairQueue {
    state: Mutex<State>,
    ready: [Notify; 2],
}

impl FairQueue {
    /// A queue for `flows` clients.
    pub fn new(flows: usize) -> Self {
        let class = || Class {
            virtual_time: 0.0,
            flows: (0..flows.max(1)).map(|_| Flow::default()).collect(),
            len: 0,
        };
        FairQueue {
            state: Mutex::new(State {
                classes: [class(), class()],
                closed: false,
            }),
            ready: [Notify::new(), Notify::new()],
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue `job` for client `flow` with `weight`.
    pub fn push(&self, job: Job, flow: usize, weight: u32) -> Result<(), Closed> {
        let priority = job.priority;
        {
            let mut state = self.lock();
            if state.closed {
                return Err(Closed);
            }
            let class = &mut state.classes[priority.index()];
            let cost = job.estimate.total().max(1) as f64;
            let virtual_time = class.virtual_time;
            let Some(f) = class.flows.get_mut(flow) else {
                return Err(Closed);
            };
            let start = virtual_time.max(f.last_finish);
            f.last_finish = start + cost / f64::from(weight.max(1));
            f.queue.push_back(Entry { start, job });
            class.len += 1;
        }
        self.ready[priority.index()].notify_one();
        Ok(())
    }

    fn pop_now(&self, priority: Priority) -> Option<Job> {
        let mut state = self.lock();
        let class = &mut state.classes[priority.index()];
        let (index, start) = class
            .flows
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.queue.front().map(|e| (i, e.start)))
            .min_by(|a, b| a.1.total_cmp(&b.1))?;
        let entry = class.flows[index].queue.pop_front()?;
        class.virtual_time = start;
        class.len -= 1;
        Some(entry.job)
    }

    /// The next job of `priority`, waiting for one; `None` once closed.
    pub async fn pop(&self, priority: Priority) -> Option<Job> {
        loop {
            let notified = self.ready[priority.index()].notified();
            if let Some(job) = self.pop_now(priority) {
                return Some(job);
            }
            if self.lock().closed {
                return None;
            }
            notified.await;
        }
    }

    /// Jobs waiting at `priority`.
    pub fn len(&self, priority: Priority) -> usize {
        self.lock().classes[priority.index()].len
    }

    /// Whether nothing waits at all.
    pub fn is_empty(&self) -> bool {
        Priority::ALL.iter().all(|p| self.len(*p) == 0)
    }

    /// Refuse new jobs; jobs already queued still come out.
    pub fn close(&self) {
        self.lock().closed = true;
        for ready in &self.ready {
            ready.notify_waiters();
        }
    }

    /// Take every queued job out (when the engine has stopped: their callers get an error as
    /// the jobs drop).
    pub fn drain(&self) -> usize {
        let mut state = self.lock();
        let mut dropped = 0;
        for class in &mut state.classes {
            for flow in &mut class.flows {
                dropped += flow.queue.drain(..).count();
            }
            class.len = 0;
        }
        dropped
    }
}

/// Move jobs of `priority` from `queue` into the engine's lane, one at a time and only when
/// the lane has room; ends when the queue is closed and empty or the engine has stopped.
pub async fn feed(queue: std::sync::Arc<FairQueue>, priority: Priority, lane: mpsc::Sender<Job>) {
    loop {
        let Ok(permit) = lane.reserve().await else {
            return;
        };
        let Some(job) = queue.pop(priority).await else {
            return;
        };
        permit.send(job);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Endpoint;
    use serde_json::json;

    fn job(id: &str) -> Job {
        let mut job = Job::new(
            id.into(),
            Endpoint::Embeddings,
            &json!({"model": "m", "input": "x"}),
            0,
        );
        job.priority = Priority::Interactive;
        job
    }

    #[test]
    fn weights_share_in_proportion_and_fifo_within_a_client() {
        let q = FairQueue::new(2);
        for i in 0..30 {
            q.push(job(&format!("a{i}")), 0, 3).unwrap();
            q.push(job(&format!("b{i}")), 1, 1).unwrap();
        }
        let first: Vec<String> = (0..20)
            .map(|_| q.pop_now(Priority::Interactive).unwrap().custom_id)
            .collect();
        let a = first.iter().filter(|id| id.starts_with('a')).count();
        assert_eq!(a, 15, "{first:?}");
        let a_order: Vec<&String> = first.iter().filter(|id| id.starts_with('a')).collect();
        assert_eq!(a_order[0], "a0");
        assert_eq!(a_order[1], "a1");
        assert_eq!(q.len(Priority::Interactive), 40);
        assert!(q.pop_now(Priority::Batch).is_none());
    }

    #[tokio::test]
    async fn close_refuses_and_ends_pop() {
        let q = FairQueue::new(1);
        q.close();
        assert!(q.push(job("x"), 0, 1).is_err());
        assert!(q.pop(Priority::Interactive).await.is_none());
    }
}

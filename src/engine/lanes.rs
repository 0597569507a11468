//! The engine's input lanes: interactive jobs and batch jobs arrive on two channels, and a
//! job on the interactive one never waits behind the batch one.
//!
//! It must not know what is in a job or where it goes next: it only keeps the two kinds of arrival
//! apart.

use super::Job;
use tokio::sync::mpsc;

/// The input lanes; `None` once closed.
pub(super) struct Lanes {
    pub(super) interactive: Option<mpsc::Receiver<Job>>,
    pub(super) batch: Option<mpsc::Receiver<Job>>,
}

impl Lanes {
    pub(super) fn open(&self) -> bool {
        self.interactive.is_some() || self.batch.is_some()
    }
}

/// Receive from a lane that may be closed (a closed lane never yields).
pub(super) async fn recv_lane(lane: &mut Option<mpsc::Receiver<Job>>) -> Option<Job> {
    match lane {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

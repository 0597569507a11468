//! The shortest of some durations, kept lock-free: the time a connection to the provider took
//! to open, recorded by the transport's connector layer on every connection and read by the
//! key pool on every booking.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The shortest duration noted so far (none at first).
///
/// ```
/// use paceline::upstream::shortest::Shortest;
/// use std::time::Duration;
///
/// let shortest = Shortest::default();
/// assert_eq!(shortest.get(), None);
/// assert!(shortest.note(Duration::from_millis(3)));
/// assert!(!shortest.note(Duration::from_millis(5))); // no news
/// assert_eq!(shortest.get(), Some(Duration::from_millis(3)));
/// ```
#[derive(Debug)]
pub struct Shortest {
    /// Nanoseconds; `u64::MAX` until one was noted.
    nanos: AtomicU64,
}

impl Default for Shortest {
    fn default() -> Self {
        Shortest {
            nanos: AtomicU64::new(u64::MAX),
        }
    }
}

impl Shortest {
    /// Note `took`; whether it is shorter than all noted before. A plain load first keeps the
    /// usual case (no news) from writing the shared cache line.
    pub fn note(&self, took: Duration) -> bool {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX - 1);
        self.nanos.load(Ordering::Relaxed) > nanos
            && self.nanos.fetch_min(nanos, Ordering::Relaxed) > nanos
    }

    /// The shortest noted, if any.
    pub fn get(&self) -> Option<Duration> {
        match self.nanos.load(Ordering::Relaxed) {
            u64::MAX => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }
}

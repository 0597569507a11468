//! The local share: a shared quota's fallback, pacing on a fraction of every limit in this
//! process only. Plain arithmetic on the quota's GCRA cell; it must not know where the shared
//! state lives nor when the fallback applies ([`super::admission`] decides).

use crate::quota::gcra::Gcra;
use crate::quota::{Cost, Dimension};

/// The local stand-in while Redis is unreachable: a share of each limit, in this process only.
#[derive(Debug, Default)]
pub struct LocalShare {
    cells: [Option<(u64, u64, Gcra)>; 4],
}

impl LocalShare {
    /// Reserve `cost` now under `share` of `limits`; returns the nanoseconds to wait. `now` is
    /// nanoseconds on any monotonic clock the caller keeps using.
    pub fn admit(
        &mut self,
        share: f64,
        margin_ns: u64,
        limits: [Option<(u64, u64)>; 4],
        cost: &Cost,
        now: u64,
    ) -> u64 {
        let mut go = now;
        for d in Dimension::ALL {
            let slot = &mut self.cells[d.index()];
            let Some((per_minute, burst)) = limits[d.index()] else {
                *slot = None;
                continue;
            };
            let scaled = ((per_minute as f64 * share).floor() as u64).max(1);
            let scaled_burst = ((burst as f64 * share).floor() as u64).max(1);
            let fresh = !matches!(slot, Some((p, b, _)) if *p == scaled && *b == scaled_burst);
            if fresh {
                let mut cell = Gcra::with_margin(scaled, scaled_burst, margin_ns);
                // Start empty: the other processes may have used the bucket just now.
                cell.drain_to(0, now);
                *slot = Some((scaled, scaled_burst, cell));
            }
            if let Some((_, _, cell)) = slot {
                go = go.max(cell.earliest(cost.get(d).min(scaled), now));
            }
        }
        for d in Dimension::ALL {
            if let Some((scaled, _, cell)) = &mut self.cells[d.index()] {
                cell.commit(cost.get(d).min(*scaled), go);
            }
        }
        go - now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_share_paces_at_its_fraction() {
        let mut share = LocalShare::default();
        let limits = [Some((600, 10)), None, None, None];
        let cost = Cost::request(0);
        // a quarter of 600/min = 150/min: one every 400 ms once the (empty) bucket refills.
        let waits: Vec<u64> = (0..3)
            .map(|_| share.admit(0.25, 0, limits, &cost, 0))
            .collect();
        assert_eq!(waits, vec![400_000_000, 800_000_000, 1_200_000_000]);
    }
}

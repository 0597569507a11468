//! Fault injection: one draw per admitted request decides whether (and how) it fails.
//!
//! By default (`faults_charge`, `--faults-charge true`) faults are drawn after admission, so a
//! faulted request has consumed its rate-limit charge, as a real provider's failures after
//! admission do. With `--faults-charge false` the server draws first and a faulted request never
//! reaches the buckets (see the module docs of [`crate`] for why charging is the default).
//!
//! It draws only; what a fault does to the answer is [`crate::server`]'s and [`crate::delivery`]'s.

use crate::config::FaultRates;
use rand::Rng;
use rand::rngs::SmallRng;

/// An injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 500.
    Fail500,
    /// HTTP 503.
    Fail503,
    /// HTTP 529 (Anthropic endpoint only).
    Fail529,
    /// Connection closed before a complete response.
    Reset,
    /// Status 200 and part of the body, then the connection closes.
    Truncate,
    /// The response is held (until the stall duration passes or the server shuts down).
    Stall,
}

/// Draw at most one fault. `allow_529` is false on OpenAI-shaped endpoints, where its
/// probability mass means "no fault".
pub fn draw(rates: &FaultRates, allow_529: bool, rng: &mut SmallRng) -> Option<Fault> {
    let u: f64 = rng.random();
    let table = [
        (Fault::Fail500, rates.fail_500),
        (Fault::Fail503, rates.fail_503),
        (Fault::Fail529, rates.fail_529),
        (Fault::Reset, rates.reset),
        (Fault::Truncate, rates.truncate),
        (Fault::Stall, rates.stall),
    ];
    let mut acc = 0.0;
    for (fault, p) in table {
        acc += p;
        if u < acc {
            return (fault != Fault::Fail529 || allow_529).then_some(fault);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn certain_and_impossible() {
        let mut rng = SmallRng::seed_from_u64(3);
        let none = FaultRates::default();
        let all_reset = FaultRates {
            reset: 1.0,
            ..FaultRates::default()
        };
        let all_529 = FaultRates {
            fail_529: 1.0,
            ..FaultRates::default()
        };
        for _ in 0..100 {
            assert_eq!(draw(&none, true, &mut rng), None);
            assert_eq!(draw(&all_reset, false, &mut rng), Some(Fault::Reset));
            assert_eq!(draw(&all_529, false, &mut rng), None);
            assert_eq!(draw(&all_529, true, &mut rng), Some(Fault::Fail529));
        }
    }

    #[test]
    fn frequencies_follow_rates() {
        let mut rng = SmallRng::seed_from_u64(9);
        let rates = FaultRates {
            fail_500: 0.25,
            truncate: 0.25,
            ..FaultRates::default()
        };
        let n = 10_000;
        let hits = (0..n)
            .filter(|_| draw(&rates, false, &mut rng) == Some(Fault::Fail500))
            .count();
        assert!((2_200..2_800).contains(&hits), "{hits}");
    }
}

//! Duration formats providers use in headers and messages.
//!
//! Formatting and rounding only: it reads no clock and knows no headers.

use std::time::Duration;

/// Whole milliseconds in `d`, rounded up (a hint must never be early).
pub fn ceil_millis(d: Duration) -> u64 {
    let nanos = d.as_nanos();
    u64::try_from(nanos.div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

/// Whole seconds in `d`, rounded up (the `retry-after` header).
pub fn ceil_secs(d: Duration) -> u64 {
    ceil_millis(d).div_ceil(1000)
}

/// Go's `time.Duration.String()` at millisecond precision, as OpenAI's
/// `x-ratelimit-reset-*` headers use it: `0s`, `120ms`, `1s`, `1.5s`, `6m0s`, `1m30.5s`, `1h2m3s`.
pub fn go_duration(d: Duration) -> String {
    let ms = ceil_millis(d);
    if ms == 0 {
        return "0s".to_owned();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let hours = ms / 3_600_000;
    let minutes = (ms / 60_000) % 60;
    let secs = (ms / 1000) % 60;
    let frac = ms % 1000;
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    if frac == 0 {
        out.push_str(&format!("{secs}s"));
    } else {
        let digits = format!("{frac:03}");
        out.push_str(&format!("{secs}.{}s", digits.trim_end_matches('0')));
    }
    out
}

/// Seconds with millisecond precision, as in OpenAI's "Please try again in 1.234s.".
pub fn seconds_3(d: Duration) -> String {
    let ms = ceil_millis(d);
    format!("{}.{:03}s", ms / 1000, ms % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style() {
        let cases = [
            (0, "0s"),
            (1, "1ms"),
            (120, "120ms"),
            (999, "999ms"),
            (1000, "1s"),
            (1500, "1.5s"),
            (1234, "1.234s"),
            (60_000, "1m0s"),
            (90_500, "1m30.5s"),
            (360_000, "6m0s"),
            (3_723_000, "1h2m3s"),
            (3_600_000, "1h0m0s"),
        ];
        for (ms, want) in cases {
            assert_eq!(go_duration(Duration::from_millis(ms)), want, "{ms} ms");
        }
    }

    #[test]
    fn rounding_is_upwards() {
        assert_eq!(go_duration(Duration::from_micros(1)), "1ms");
        assert_eq!(ceil_millis(Duration::from_micros(1001)), 2);
        assert_eq!(ceil_secs(Duration::from_millis(1001)), 2);
        assert_eq!(ceil_secs(Duration::from_millis(300)), 1);
        assert_eq!(ceil_secs(Duration::ZERO), 0);
        assert_eq!(seconds_3(Duration::from_millis(1234)), "1.234s");
        assert_eq!(seconds_3(Duration::from_millis(20)), "0.020s");
    }
}

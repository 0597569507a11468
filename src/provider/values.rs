//! How time and count values are written in providers' answers, whatever header or body
//! carries them: Go `time.Duration` strings (`6m0s`, `4m12.172s`), bare decimals of seconds or
//! milliseconds, Unix timestamps, RFC 3339 instants, HTTP dates, non-negative counts, and the
//! resolution each was written with (the unit of its last digit).
//!
//! It knows no header name and no provider: which value form a header carries is the provider
//! files' and [`super::headers`]' business. Every parser returns `None` for what it does not
//! accept (signs, exponents, garbage, values beyond [`Duration::MAX`]); none panics.
//!
//! Hand-written: the resolution of a value (which bounds a provider's burst from below) is read
//! from the same digits, which no duration crate reports, and only Go's own syntax passes as a
//! Go duration.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Bare reset numbers at or above this are Unix timestamps, not relative seconds.
const UNIX_TIMESTAMP_THRESHOLD_SECS: u64 = 1_000_000_000;

/// The unit of the last digit of a time value: `1.25` or `…T14:23:01.25Z` → 10 ms, `30` or
/// `…T14:23:30Z` or an HTTP date → 1 s, `20ms` → 1 ms, `6m0s` → 1 s, `1h` → 1 h (seconds for
/// bare numbers; a caller scales a millisecond count).
pub fn resolution(value: &str) -> Duration {
    let scaled = |unit_nanos: u64, digits: usize| {
        let divisor = 10u64.saturating_pow(u32::try_from(digits).unwrap_or(u32::MAX));
        Duration::from_nanos((unit_nanos / divisor).max(1))
    };
    let fraction_digits = |number: &str| {
        number
            .split_once('.')
            .map_or(0, |(_, f)| f.bytes().take_while(u8::is_ascii_digit).count())
    };
    const SECOND: u64 = 1_000_000_000;
    if value.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return scaled(SECOND, fraction_digits(value));
    }
    if chrono::DateTime::parse_from_rfc3339(value).is_ok() {
        let seconds = value.rsplit_once(':').map_or("", |(_, s)| s);
        return scaled(SECOND, fraction_digits(seconds));
    }
    // A Go duration: the unit of its last component, scaled by that component's fraction.
    let unit_start = value
        .rfind(|c: char| c.is_ascii_digit() || c == '.')
        .map_or(0, |i| i + 1);
    let number_start = value[..unit_start]
        .rfind(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or(0, |i| i + c_len(value, i));
    let unit_nanos = match &value[unit_start..] {
        "ns" => 1,
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "m" => 60 * SECOND,
        "h" => 3600 * SECOND,
        _ => SECOND,
    };
    scaled(
        unit_nanos,
        fraction_digits(&value[number_start..unit_start]),
    )
}

/// The length in bytes of the character at byte `i` of `s`.
fn c_len(s: &str, i: usize) -> usize {
    s[i..].chars().next().map_or(1, char::len_utf8)
}

/// Parses a Go `time.Duration` string: a sequence of decimal numbers, each with an optional
/// fraction and a unit (`ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h`), as in `1s`, `6m0s`,
/// `120ms`, `1h2m3.5s`, `1.5s`, `2us`; or `0` alone. An optional leading `+` is accepted.
///
/// Negative durations, a number without a unit (other than `0`), unknown units, an empty string
/// and values beyond [`Duration::MAX`] give `None`. Bare seconds such as `0.5` are not Go
/// durations; [`parse_reset`] accepts them separately.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Some(Duration::ZERO);
    }
    if s.is_empty() {
        return None;
    }
    let mut rest = s;
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        total_nanos = total_nanos.checked_add(decimal_to_nanos(number, unit_nanos)?)?;
        rest = after;
    }
    nanos_to_duration(total_nanos)
}

/// A count: a non-negative integer. `-1` (a limit not enforced) and anything else give
/// `None`.
pub fn parse_count(value: &str) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// A reset: a Go duration, a bare number of seconds (or a Unix timestamp when that large), or an
/// RFC 3339 instant, taken relative to `now` (zero if already past).
pub fn parse_reset(value: &str, now: SystemTime) -> Option<Duration> {
    if let Some(secs) = decimal_to_nanos(value, 1_000_000_000).and_then(nanos_to_duration) {
        if secs.as_secs() >= UNIX_TIMESTAMP_THRESHOLD_SECS {
            return Some(time_until(UNIX_EPOCH.checked_add(secs)?, now));
        }
        return Some(secs);
    }
    if let Some(duration) = parse_go_duration(value) {
        return Some(duration);
    }
    let at = chrono::DateTime::parse_from_rfc3339(value).ok()?;
    Some(time_until(SystemTime::from(at), now))
}

/// A millisecond count, fractional allowed.
pub fn parse_millis(value: &str) -> Option<Duration> {
    decimal_to_nanos(value, 1_000_000).and_then(nanos_to_duration)
}

/// Seconds (fractional allowed, as the SDKs accept) or an HTTP date (RFC 9110 §5.6.7), taken
/// relative to `now`.
pub fn parse_seconds_or_http_date(value: &str, now: SystemTime) -> Option<Duration> {
    if let Some(delay) = decimal_to_nanos(value, 1_000_000_000).and_then(nanos_to_duration) {
        return Some(delay);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(time_until(at, now))
}

/// Time from `now` until `at`, zero when `at` is already past.
fn time_until(at: SystemTime, now: SystemTime) -> Duration {
    at.duration_since(now).unwrap_or(Duration::ZERO)
}

/// Parses an unsigned decimal (`12`, `1.5`, `.5`, `1.`) scaled by `unit_nanos` into nanoseconds,
/// truncating below a nanosecond. Signs, exponents and anything else give `None`.
fn decimal_to_nanos(s: &str, unit_nanos: u128) -> Option<u128> {
    let (int_part, frac_part) = s.split_once('.').unwrap_or((s, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    if !int_part
        .bytes()
        .chain(frac_part.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mut nanos: u128 = 0;
    for digit in int_part.bytes() {
        nanos = nanos
            .checked_mul(10)?
            .checked_add(u128::from(digit - b'0'))?;
    }
    nanos = nanos.checked_mul(unit_nanos)?;
    // Units are at most an hour (3.6e12 ns), so 13 fraction digits reach below a nanosecond.
    let mut scale = unit_nanos;
    for digit in frac_part.bytes().take(13) {
        scale /= 10;
        nanos = nanos.checked_add(u128::from(digit - b'0') * scale)?;
    }
    Some(nanos)
}

/// Converts nanoseconds to a [`Duration`], `None` when beyond [`Duration::MAX`].
fn nanos_to_duration(nanos: u128) -> Option<Duration> {
    let secs = u64::try_from(nanos / 1_000_000_000).ok()?;
    let subsec = u32::try_from(nanos % 1_000_000_000).ok()?;
    Some(Duration::new(secs, subsec))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::test_time::{ms, secs};

    #[test]
    fn go_durations() {
        let cases: &[(&str, Option<Duration>)] = &[
            ("1s", Some(secs(1))),
            ("6m0s", Some(secs(360))),
            ("1m0s", Some(secs(60))),
            ("120ms", Some(ms(120))),
            ("20ms", Some(ms(20))),
            ("0s", Some(Duration::ZERO)),
            ("0", Some(Duration::ZERO)),
            ("1.5s", Some(ms(1500))),
            ("1h2m3.5s", Some(ms(3_723_500))),
            ("4m12.172s", Some(ms(252_172))),
            ("23h18m29.144s", Some(ms(83_909_144))),
            ("2us", Some(Duration::from_micros(2))),
            ("2\u{b5}s", Some(Duration::from_micros(2))),
            ("2\u{3bc}s", Some(Duration::from_micros(2))),
            ("7ns", Some(Duration::from_nanos(7))),
            ("1.000000001s", Some(Duration::new(1, 1))),
            (".5s", Some(ms(500))),
            ("+1s", Some(secs(1))),
            ("1h", Some(secs(3600))),
            ("", None),
            ("s", None),
            ("1", None),
            ("0.5", None),
            ("60", None),
            ("-1s", None),
            ("-1", None),
            ("1x", None),
            ("1 s", None),
            ("1s ", None),
            ("1..5s", None),
            ("1e3s", None),
            ("ms", None),
            ("1S", None),
            ("garbage", None),
            ("99999999999999999999999h", None),
        ];
        for &(input, expected) in cases {
            assert_eq!(parse_go_duration(input), expected, "input {input:?}");
        }
    }
}

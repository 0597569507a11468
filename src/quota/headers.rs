//! Rate-limit header parsing: what one response's headers say about the provider's limits.
//!
//! The quota is calibrated from these readings (learned limits, remaining budget, reset times)
//! and a 429 pauses it until the server's `retry-after`. This module knows nothing of any HTTP
//! crate: headers come in as `(name, value)` string pairs, names matched case-insensitively.
//!
//! # Forms accepted, and where they come from
//!
//! - OpenAI (and Groq, Azure OpenAI, which reuse the names):
//!   `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`. Limits and remaining counts are
//!   integers; resets are Go `time.Duration` strings relative to the response, e.g. `1s`, `6m0s`,
//!   `120ms`, `4m12.172s`, `23h18m29.144s` (OpenAI rate-limit guide and values seen in the field).
//!   Near-miss names such as `x-ratelimit-limit-tokens_usage_based` are not the per-minute token
//!   limit and are ignored.
//! - Anthropic: `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}`;
//!   resets are RFC 3339 timestamps, turned into the time left from `now` (zero if already past).
//! - A reset that is a bare decimal number is taken as seconds from now (some OpenAI-compatible
//!   servers send that); a bare number of 10⁹ or more cannot be a relative reset (31 years) and is
//!   read as a Unix timestamp, the other common meaning of `x-ratelimit-reset`.
//! - Retry hints, in the order the official OpenAI and Anthropic SDKs read them: `retry-after-ms`
//!   (milliseconds, fractional allowed), then Azure's `x-ms-retry-after-ms`, then `retry-after`
//!   (seconds, fractional allowed, or an HTTP date, RFC 9110 §10.2.3, taken relative to `now`).
//!   A header that does not parse is skipped and the next one is tried, as the SDKs do.
//!   The value is reported as the server said it, uncapped: what to do with a long wait is the
//!   caller's decision.
//!
//! Anything else (`-1`, which Azure sends for limits it does not enforce, negative numbers,
//! garbage, values too large to represent) leaves that one field `None`; parsing never panics.

use super::dimension::Dimension;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What one response's headers said about the limits. Every field optional: providers send subsets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LimitSnapshot {
    /// Requests dimension: `x-ratelimit-*-requests`, `anthropic-ratelimit-requests-*`.
    pub requests: DimensionReading,
    /// Tokens dimension: `x-ratelimit-*-tokens`, `anthropic-ratelimit-tokens-*` (for Anthropic,
    /// the most restrictive token limit currently in effect).
    pub tokens: DimensionReading,
    /// Input tokens dimension: `anthropic-ratelimit-input-tokens-*`.
    pub input_tokens: DimensionReading,
    /// Output tokens dimension: `anthropic-ratelimit-output-tokens-*`.
    pub output_tokens: DimensionReading,
    /// The server's retry hint: `retry-after-ms`, then `x-ms-retry-after-ms`, then `retry-after`
    /// (seconds or HTTP date relative to `now`).
    pub retry_after: Option<Duration>,
    /// How finely the retry hint was written (whole seconds for an integer `retry-after`).
    pub retry_after_resolution: Option<Duration>,
}

impl LimitSnapshot {
    /// True when the headers said nothing this module understands.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The reading of one dimension.
    pub fn reading(&self, dimension: Dimension) -> DimensionReading {
        match dimension {
            Dimension::Requests => self.requests,
            Dimension::Tokens => self.tokens,
            Dimension::InputTokens => self.input_tokens,
            Dimension::OutputTokens => self.output_tokens,
        }
    }

    /// True when no dimension's limit or remaining count was stated (a retry hint may be).
    pub fn states_no_limit(&self) -> bool {
        Dimension::ALL.iter().all(|&d| {
            let r = self.reading(d);
            r.limit.is_none() && r.remaining.is_none()
        })
    }
}

/// One dimension's reading: the limit, what is left of it, and when it resets.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DimensionReading {
    /// The limit for the window (`*-limit`).
    pub limit: Option<u64>,
    /// What is left of the limit (`*-remaining`).
    pub remaining: Option<u64>,
    /// Time until the dimension is back to its full limit, relative to the response time.
    pub reset: Option<Duration>,
    /// How finely the provider wrote `reset`: the unit of its last digit (Anthropic's RFC 3339
    /// instants with whole seconds: 1 s; OpenAI's `20ms`: 1 ms). The true reset lies within
    /// this of the value read, either way; a burst inferred from it must allow for that.
    pub reset_resolution: Option<Duration>,
}

/// Which dimension a header belongs to.
#[derive(Clone, Copy)]
enum Dim {
    Requests,
    Tokens,
    InputTokens,
    OutputTokens,
}

/// Which field of a dimension a header sets.
#[derive(Clone, Copy)]
enum Field {
    Limit,
    Remaining,
    Reset,
}

/// Which retry hint header a value came from; lower ranks win.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum RetryHeader {
    RetryAfterMs = 0,
    MsRetryAfterMs = 1,
    RetryAfter = 2,
}

/// Every limit header understood, with the dimension and field it sets.
const LIMIT_HEADERS: [(&str, Dim, Field); 18] = [
    ("x-ratelimit-limit-requests", Dim::Requests, Field::Limit),
    (
        "x-ratelimit-remaining-requests",
        Dim::Requests,
        Field::Remaining,
    ),
    ("x-ratelimit-reset-requests", Dim::Requests, Field::Reset),
    ("x-ratelimit-limit-tokens", Dim::Tokens, Field::Limit),
    (
        "x-ratelimit-remaining-tokens",
        Dim::Tokens,
        Field::Remaining,
    ),
    ("x-ratelimit-reset-tokens", Dim::Tokens, Field::Reset),
    (
        "anthropic-ratelimit-requests-limit",
        Dim::Requests,
        Field::Limit,
    ),
    (
        "anthropic-ratelimit-requests-remaining",
        Dim::Requests,
        Field::Remaining,
    ),
    (
        "anthropic-ratelimit-requests-reset",
        Dim::Requests,
        Field::Reset,
    ),
    (
        "anthropic-ratelimit-tokens-limit",
        Dim::Tokens,
        Field::Limit,
    ),
    (
        "anthropic-ratelimit-tokens-remaining",
        Dim::Tokens,
        Field::Remaining,
    ),
    (
        "anthropic-ratelimit-tokens-reset",
        Dim::Tokens,
        Field::Reset,
    ),
    (
        "anthropic-ratelimit-input-tokens-limit",
        Dim::InputTokens,
        Field::Limit,
    ),
    (
        "anthropic-ratelimit-input-tokens-remaining",
        Dim::InputTokens,
        Field::Remaining,
    ),
    (
        "anthropic-ratelimit-input-tokens-reset",
        Dim::InputTokens,
        Field::Reset,
    ),
    (
        "anthropic-ratelimit-output-tokens-limit",
        Dim::OutputTokens,
        Field::Limit,
    ),
    (
        "anthropic-ratelimit-output-tokens-remaining",
        Dim::OutputTokens,
        Field::Remaining,
    ),
    (
        "anthropic-ratelimit-output-tokens-reset",
        Dim::OutputTokens,
        Field::Reset,
    ),
];

/// Bare reset numbers at or above this are Unix timestamps, not relative seconds.
const UNIX_TIMESTAMP_THRESHOLD_SECS: u64 = 1_000_000_000;

/// Parses the rate-limit headers of one response received at `now`.
///
/// Names are matched case-insensitively; a header that appears twice keeps its first value that
/// parses. Unknown headers are ignored.
pub fn parse_limit_headers<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    now: SystemTime,
) -> LimitSnapshot {
    let mut snapshot = LimitSnapshot::default();
    let mut retry_source: Option<RetryHeader> = None;
    for (name, value) in headers {
        let name = name.trim();
        let value = value.trim();
        if let Some(&(_, dim, field)) = LIMIT_HEADERS
            .iter()
            .find(|(known, _, _)| known.eq_ignore_ascii_case(name))
        {
            let reading = match dim {
                Dim::Requests => &mut snapshot.requests,
                Dim::Tokens => &mut snapshot.tokens,
                Dim::InputTokens => &mut snapshot.input_tokens,
                Dim::OutputTokens => &mut snapshot.output_tokens,
            };
            match field {
                Field::Limit => set_once(&mut reading.limit, parse_count(value)),
                Field::Remaining => set_once(&mut reading.remaining, parse_count(value)),
                Field::Reset => {
                    if reading.reset.is_none() {
                        reading.reset = parse_reset(value, now);
                        reading.reset_resolution = reading.reset.map(|_| resolution(value));
                    }
                }
            }
            continue;
        }
        let (source, parsed) = if name.eq_ignore_ascii_case("retry-after-ms") {
            (RetryHeader::RetryAfterMs, parse_millis(value))
        } else if name.eq_ignore_ascii_case("x-ms-retry-after-ms") {
            (RetryHeader::MsRetryAfterMs, parse_millis(value))
        } else if name.eq_ignore_ascii_case("retry-after") {
            (RetryHeader::RetryAfter, parse_retry_after(value, now))
        } else {
            continue;
        };
        if let Some(delay) = parsed {
            if retry_source.is_none_or(|current| source < current) {
                snapshot.retry_after = Some(delay);
                snapshot.retry_after_resolution = Some(match source {
                    RetryHeader::RetryAfter => resolution(value),
                    RetryHeader::RetryAfterMs | RetryHeader::MsRetryAfterMs => {
                        resolution(value) / 1000
                    }
                });
                retry_source = Some(source);
            }
        }
    }
    snapshot
}

/// The unit of the last digit of a time value: `1.25` or `…T14:23:01.25Z` → 10 ms, `30` or
/// `…T14:23:30Z` or an HTTP date → 1 s, `20ms` → 1 ms, `6m0s` → 1 s, `1h` → 1 h (seconds for
/// bare numbers; a caller scales a millisecond count).
fn resolution(value: &str) -> Duration {
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
/// durations (OpenAI sends Go durations); [`parse_limit_headers`] accepts them separately for
/// resets.
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

/// Sets `slot` to `value` unless it already holds a value.
fn set_once<T>(slot: &mut Option<T>, value: Option<T>) {
    if slot.is_none() {
        *slot = value;
    }
}

/// A count header: a non-negative integer. `-1` (Azure: not enforced) and anything else give `None`.
fn parse_count(value: &str) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// A reset header: a Go duration (OpenAI), a bare number of seconds (or a Unix timestamp when
/// that large), or an RFC 3339 timestamp (Anthropic).
fn parse_reset(value: &str, now: SystemTime) -> Option<Duration> {
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

/// A millisecond count, fractional allowed (`retry-after-ms`, `x-ms-retry-after-ms`).
fn parse_millis(value: &str) -> Option<Duration> {
    decimal_to_nanos(value, 1_000_000).and_then(nanos_to_duration)
}

/// `retry-after`: seconds (fractional allowed, as the SDKs accept) or an HTTP date.
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
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

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// 2024-01-15T14:23:00Z.
    fn now() -> SystemTime {
        UNIX_EPOCH + secs(1_705_328_580)
    }

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

    #[test]
    fn openai_headers() {
        let headers = [
            ("x-ratelimit-limit-requests", "5000"),
            ("x-ratelimit-limit-tokens", "1500000"),
            ("x-ratelimit-limit-tokens_usage_based", "1500000"),
            ("x-ratelimit-remaining-requests", "4999"),
            ("x-ratelimit-remaining-tokens", "1495621"),
            ("x-ratelimit-remaining-tokens_usage_based", "1"),
            ("x-ratelimit-reset-requests", "12ms"),
            ("x-ratelimit-reset-tokens", "6m0s"),
            ("x-ratelimit-reset-tokens_usage_based", "1h"),
            ("content-type", "application/json"),
        ];
        let snapshot = parse_limit_headers(headers, now());
        assert_eq!(
            snapshot,
            LimitSnapshot {
                requests: DimensionReading {
                    limit: Some(5000),
                    remaining: Some(4999),
                    reset: Some(ms(12)),
                    reset_resolution: Some(ms(1)),
                },
                tokens: DimensionReading {
                    limit: Some(1_500_000),
                    remaining: Some(1_495_621),
                    reset: Some(secs(360)),
                    reset_resolution: Some(secs(1)),
                },
                ..LimitSnapshot::default()
            }
        );
    }

    #[test]
    fn anthropic_headers() {
        let headers = [
            ("anthropic-ratelimit-requests-limit", "50"),
            ("anthropic-ratelimit-requests-remaining", "0"),
            ("anthropic-ratelimit-requests-reset", "2024-01-15T14:23:30Z"),
            ("anthropic-ratelimit-tokens-limit", "40000"),
            ("anthropic-ratelimit-tokens-remaining", "12000"),
            (
                "anthropic-ratelimit-tokens-reset",
                "2024-01-15T14:23:01.250Z",
            ),
            ("anthropic-ratelimit-input-tokens-limit", "40000"),
            ("anthropic-ratelimit-input-tokens-remaining", "39000"),
            (
                "anthropic-ratelimit-input-tokens-reset",
                "2024-01-15T15:24:00+01:00",
            ),
            ("anthropic-ratelimit-output-tokens-limit", "8000"),
            ("anthropic-ratelimit-output-tokens-remaining", "8000"),
            (
                "anthropic-ratelimit-output-tokens-reset",
                "2024-01-15T14:22:00Z",
            ),
            ("retry-after", "30"),
        ];
        let snapshot = parse_limit_headers(headers, now());
        assert_eq!(
            snapshot,
            LimitSnapshot {
                requests: DimensionReading {
                    limit: Some(50),
                    remaining: Some(0),
                    reset: Some(secs(30)),
                    reset_resolution: Some(secs(1)),
                },
                tokens: DimensionReading {
                    limit: Some(40_000),
                    remaining: Some(12_000),
                    reset: Some(ms(1250)),
                    reset_resolution: Some(ms(1)),
                },
                input_tokens: DimensionReading {
                    limit: Some(40_000),
                    remaining: Some(39_000),
                    reset: Some(secs(60)),
                    reset_resolution: Some(secs(1)),
                },
                output_tokens: DimensionReading {
                    limit: Some(8000),
                    remaining: Some(8000),
                    reset: Some(Duration::ZERO),
                    reset_resolution: Some(secs(1)),
                },
                retry_after: Some(secs(30)),
                retry_after_resolution: Some(secs(1)),
            }
        );
    }

    /// Each reset value form, through `x-ratelimit-reset-tokens`.
    #[test]
    fn reset_forms() {
        let cases: &[(&str, Option<Duration>)] = &[
            ("6m0s", Some(secs(360))),
            ("1m0s", Some(secs(60))),
            ("1h2m3.5s", Some(ms(3_723_500))),
            ("120ms", Some(ms(120))),
            ("0s", Some(Duration::ZERO)),
            ("0.5", Some(ms(500))),
            ("60", Some(secs(60))),
            ("  7s  ", Some(secs(7))),
            // Unix timestamp 90 s after `now`, and one in the past.
            ("1705328670", Some(secs(90))),
            ("1705328000", Some(Duration::ZERO)),
            ("2024-01-15T14:23:10Z", Some(secs(10))),
            ("2024-01-15T14:23:10.5Z", Some(ms(10_500))),
            (
                "2024-01-15T14:23:10.123456789Z",
                Some(Duration::new(10, 123_456_789)),
            ),
            ("2024-01-15T09:23:10-05:00", Some(secs(10))),
            ("2024-01-15T20:08:10+05:45", Some(secs(10))),
            ("2024-01-15t14:23:10z", Some(secs(10))),
            ("2024-01-15T14:22:10Z", Some(Duration::ZERO)),
            ("-1", None),
            ("-1s", None),
            ("", None),
            ("soon", None),
            ("NaN", None),
            ("inf", None),
            ("1e3", None),
            ("2024-01-15", None),
            ("2024-13-45T99:00:00Z", None),
            ("Mon, 15 Jan 2024 14:23:10 GMT", None),
        ];
        for &(value, expected) in cases {
            let snapshot = parse_limit_headers([("x-ratelimit-reset-tokens", value)], now());
            assert_eq!(snapshot.tokens.reset, expected, "value {value:?}");
        }
    }

    /// Each count value form, through `x-ratelimit-limit-requests`.
    #[test]
    fn count_forms() {
        let cases: &[(&str, Option<u64>)] = &[
            ("60", Some(60)),
            ("0", Some(0)),
            (" 150000 ", Some(150_000)),
            ("18446744073709551615", Some(u64::MAX)),
            ("18446744073709551616", None),
            ("-1", None),
            ("+5", None),
            ("1.5", None),
            ("1e3", None),
            ("", None),
            ("unlimited", None),
        ];
        for &(value, expected) in cases {
            let snapshot = parse_limit_headers([("x-ratelimit-limit-requests", value)], now());
            assert_eq!(snapshot.requests.limit, expected, "value {value:?}");
        }
    }

    #[test]
    fn retry_after_forms() {
        type Case = (&'static [(&'static str, &'static str)], Option<Duration>);
        let cases: &[Case] = &[
            (&[("retry-after-ms", "1500")], Some(ms(1500))),
            (
                &[("retry-after-ms", "1500.5")],
                Some(Duration::from_micros(1_500_500)),
            ),
            (&[("x-ms-retry-after-ms", "250")], Some(ms(250))),
            (&[("retry-after", "20")], Some(secs(20))),
            (&[("retry-after", "0.25")], Some(ms(250))),
            (&[("retry-after", "0")], Some(Duration::ZERO)),
            (
                &[("retry-after", "Mon, 15 Jan 2024 14:23:45 GMT")],
                Some(secs(45)),
            ),
            (
                &[("retry-after", "Monday, 15-Jan-24 14:23:45 GMT")],
                Some(secs(45)),
            ),
            (
                &[("retry-after", "Mon Jan 15 14:23:45 2024")],
                Some(secs(45)),
            ),
            (
                &[("retry-after", "Mon, 15 Jan 2024 14:00:00 GMT")],
                Some(Duration::ZERO),
            ),
            // Uncapped: a day is reported as a day.
            (&[("retry-after", "86400")], Some(secs(86_400))),
            (&[("retry-after", "-5")], None),
            (&[("retry-after", "-1")], None),
            (&[("retry-after", "soon")], None),
            (&[("retry-after", "")], None),
            (&[("retry-after", "1e9")], None),
            (&[("retry-after", "99999999999999999999999")], None),
            (&[("retry-after-ms", "NaN")], None),
            // Precedence: retry-after-ms, then x-ms-retry-after-ms, then retry-after, in any order.
            (
                &[
                    ("retry-after", "2"),
                    ("x-ms-retry-after-ms", "900"),
                    ("retry-after-ms", "1500"),
                ],
                Some(ms(1500)),
            ),
            (
                &[("retry-after", "2"), ("x-ms-retry-after-ms", "900")],
                Some(ms(900)),
            ),
            // An unparsable preferred header falls through to the next, as in the SDKs.
            (
                &[("retry-after-ms", "garbage"), ("retry-after", "3")],
                Some(secs(3)),
            ),
            (
                &[("retry-after-ms", "-1"), ("retry-after", "3")],
                Some(secs(3)),
            ),
        ];
        for &(headers, expected) in cases {
            let snapshot = parse_limit_headers(headers.iter().copied(), now());
            assert_eq!(snapshot.retry_after, expected, "headers {headers:?}");
        }
    }

    #[test]
    fn names_are_case_insensitive() {
        let headers = [
            ("X-RateLimit-Limit-Requests", "60"),
            ("X-RATELIMIT-REMAINING-TOKENS", "149984"),
            (
                "Anthropic-RateLimit-Output-Tokens-Reset",
                "2024-01-15T14:23:05Z",
            ),
            ("Retry-After-Ms", "750"),
        ];
        let snapshot = parse_limit_headers(headers, now());
        assert_eq!(snapshot.requests.limit, Some(60));
        assert_eq!(snapshot.tokens.remaining, Some(149_984));
        assert_eq!(snapshot.output_tokens.reset, Some(secs(5)));
        assert_eq!(snapshot.retry_after, Some(ms(750)));
    }

    #[test]
    fn azure_minus_one_and_garbage_leave_fields_empty() {
        let headers = [
            ("x-ratelimit-limit-requests", "-1"),
            ("x-ratelimit-remaining-requests", "-1"),
            ("x-ratelimit-reset-requests", "-1"),
            ("x-ratelimit-limit-tokens", "lots"),
            ("x-ratelimit-remaining-tokens", "12.5"),
            ("x-ratelimit-reset-tokens", "\u{fffd}\u{fffd}"),
            ("anthropic-ratelimit-requests-reset", "tomorrow"),
        ];
        let snapshot = parse_limit_headers(headers, now());
        assert!(snapshot.is_empty(), "{snapshot:?}");
    }

    #[test]
    fn first_parseable_value_wins() {
        let headers = [
            ("x-ratelimit-limit-requests", "-1"),
            ("x-ratelimit-limit-requests", "60"),
            ("x-ratelimit-limit-requests", "70"),
        ];
        let snapshot = parse_limit_headers(headers, now());
        assert_eq!(snapshot.requests.limit, Some(60));
    }

    #[test]
    fn no_headers_is_empty() {
        let snapshot = parse_limit_headers(std::iter::empty(), now());
        assert!(snapshot.is_empty());
    }
}

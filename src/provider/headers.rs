//! Reading one answer's headers: what they say about the key's limits, as the quota's neutral
//! [`LimitSnapshot`]; the provider's request id; and `x-should-retry`.
//!
//! Which header carries what is each provider's fact, declared in its file's [`Spec`]
//! (`limit_headers`, `retry_hints_ms`, `request_id_header`); this module holds the reading rules
//! they share. An answer is read against every provider's names, not only its upstream's: each
//! provider sends only its own, and servers copying a provider's API copy its headers. It knows
//! nothing of any HTTP crate: headers come in as `(name, value)` text pairs (or a lookup by
//! lower-case name), names matched case-insensitively. It must not know how the quota uses
//! the report.
//!
//! # Rules
//!
//! - A limit header sets one field of one dimension: the limit and what is left are counts;
//!   a reset is any form [`values::parse_reset`] reads (a Go duration, bare seconds, a Unix
//!   timestamp, an RFC 3339 instant), kept with the resolution it was written with. A header
//!   that appears twice keeps its first value that parses. Near-miss names (OpenAI's
//!   `x-ratelimit-limit-tokens_usage_based`) are not limit headers and are ignored.
//! - Retry hints, in the order the official OpenAI and Anthropic SDKs read them: the
//!   providers' millisecond hints (`retry-after-ms`, then Azure's `x-ms-retry-after-ms`: the
//!   order of [`Provider::ALL`], then each provider's own), then the standard `retry-after`
//!   (RFC 9110 §10.2.3: seconds, fractional allowed, or an HTTP date taken relative to `now`).
//!   A hint that does not parse is skipped and the next one is tried, as the SDKs do. The
//!   value is reported as the server said it, uncapped: what to do with a long wait is the
//!   caller's decision.
//! - Anything else (`-1`, which Azure sends for limits it does not enforce, negative numbers,
//!   garbage, values too large to represent) leaves that one field `None`; reading never
//!   panics.

use super::Provider;
use super::values::{
    parse_count, parse_millis, parse_reset, parse_seconds_or_http_date, resolution,
};
use crate::quota::{Dimension, LimitSnapshot};
use std::time::SystemTime;

#[cfg(doc)]
use super::{Spec, values};

/// The standard retry hint every provider may send (RFC 9110 §10.2.3).
const RETRY_AFTER: &str = "retry-after";

/// The header with which a server tells the official SDKs (OpenAI's and Anthropic's) to retry
/// or not, whatever the status says.
const SHOULD_RETRY: &str = "x-should-retry";

/// One limit header: its name (matched case-insensitively), the dimension it reports on, and
/// what it says about that dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitHeader {
    /// The header's name, lower-case.
    pub name: &'static str,
    /// The dimension it reports on.
    pub dimension: Dimension,
    /// What it says about it.
    pub field: Field,
}

impl LimitHeader {
    /// The header `name` stating `field` of `dimension`.
    pub const fn new(name: &'static str, dimension: Dimension, field: Field) -> Self {
        LimitHeader {
            name,
            dimension,
            field,
        }
    }
}

/// What a limit header says about its dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The limit for the window (a count).
    Limit,
    /// What is left of it (a count).
    Remaining,
    /// When it is whole again (a reset, see [`values::parse_reset`]).
    Reset,
}

/// Reads the rate-limit headers of one answer received at `now` into the neutral report.
///
/// Names are matched case-insensitively; a header that appears twice keeps its first value that
/// parses. Unknown headers are ignored.
pub fn parse_limit_headers<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    now: SystemTime,
) -> LimitSnapshot {
    let mut snapshot = LimitSnapshot::default();
    let mut retry_rank: Option<usize> = None;
    for (name, value) in headers {
        let name = name.trim();
        let value = value.trim();
        if let Some(header) = limit_header(name) {
            let reading = snapshot.reading_mut(header.dimension);
            match header.field {
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
        let Some(rank) = retry_hint_rank(name) else {
            continue;
        };
        let in_seconds = rank == RETRY_AFTER_RANK;
        let parsed = if in_seconds {
            parse_seconds_or_http_date(value, now)
        } else {
            parse_millis(value)
        };
        if let Some(delay) = parsed
            && retry_rank.is_none_or(|current| rank < current)
        {
            snapshot.retry_after = Some(delay);
            snapshot.retry_after_resolution = Some(if in_seconds {
                resolution(value)
            } else {
                resolution(value) / 1000
            });
            retry_rank = Some(rank);
        }
    }
    snapshot
}

/// The provider's id for one answer, read through `header` (a lookup by lower-case name): the
/// first provider's request-id header present, in the order of [`Provider::ALL`] (OpenAI and
/// Azure send `x-request-id`, Anthropic `request-id`).
pub fn request_id<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Option<&'a str> {
    Provider::ALL
        .iter()
        .find_map(|p| header(p.spec().request_id_header))
}

/// What `x-should-retry`, read through `header` (a lookup by lower-case name), says:
/// `Some(true)` for `true`, `Some(false)` for `false`, `None` when absent or anything else.
pub fn should_retry<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Option<bool> {
    match header(SHOULD_RETRY)? {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// The rank of `retry-after`: after every provider's millisecond hint.
const RETRY_AFTER_RANK: usize = usize::MAX;

/// The limit header named `name`, among every provider's.
fn limit_header(name: &str) -> Option<&'static LimitHeader> {
    Provider::ALL
        .iter()
        .flat_map(|p| p.spec().limit_headers)
        .find(|h| h.name.eq_ignore_ascii_case(name))
}

/// Where `name` stands among the retry hints (lower wins), if it is one.
fn retry_hint_rank(name: &str) -> Option<usize> {
    if name.eq_ignore_ascii_case(RETRY_AFTER) {
        return Some(RETRY_AFTER_RANK);
    }
    Provider::ALL
        .iter()
        .flat_map(|p| p.spec().retry_hints_ms)
        .position(|h| h.eq_ignore_ascii_case(name))
}

/// Sets `slot` to `value` unless it already holds a value.
fn set_once<T>(slot: &mut Option<T>, value: Option<T>) {
    if slot.is_none() {
        *slot = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::test_time::{ms, now, secs};
    use std::time::Duration;

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

    #[test]
    fn request_ids_are_read_in_the_providers_order() {
        let both = |name: &str| match name {
            "x-request-id" => Some("req_openai"),
            "request-id" => Some("req_anthropic"),
            _ => None,
        };
        assert_eq!(request_id(both), Some("req_openai"));
        let anthropic = |name: &str| (name == "request-id").then_some("req_01");
        assert_eq!(request_id(anthropic), Some("req_01"));
        assert_eq!(request_id(|_| None), None);
    }

    #[test]
    fn should_retry_is_true_false_or_unsaid() {
        let said =
            |value: &'static str| move |name: &str| (name == "x-should-retry").then_some(value);
        assert_eq!(should_retry(said("true")), Some(true));
        assert_eq!(should_retry(said("false")), Some(false));
        assert_eq!(should_retry(said("yes")), None);
        assert_eq!(should_retry(said("TRUE")), None);
        assert_eq!(should_retry(|_| None), None);
    }
}

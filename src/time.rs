//! Durations and instants as people type and read them: the one parser of durations given on
//! the command line, in config files and in the gateway's `x-paceline-max-wait` header, and the
//! one format of local times in `status`, `inspect`, the report and the state lock's note.
//!
//! The bottom of the crate: it imports nothing of paceline. It must not know providers' header
//! formats (those are read where provider answers are read) nor where a value came from (its
//! callers name the flag, key or header in their errors).

use std::time::Duration;

/// Parses a duration as users write it: a number and a unit (`600s`, `2m`, `1500ms`, `1h`,
/// `1.5s`, `1m30s`, `250us`, and `humantime`'s longer forms such as `2 min` or `1h 30m`), or a
/// bare number of seconds (`2.5`). The error says what was wrong and gives examples.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bare_seconds = text
        .parse::<f64>()
        .ok()
        .filter(|secs| *secs >= 0.0)
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok());
    match bare_seconds {
        Some(duration) => Ok(duration),
        None => humantime::parse_duration(text)
            .map_err(|_| format!("{text:?} is not a duration (examples: 30s, 2m, 1500ms)")),
    }
}

/// An instant given in milliseconds since the Unix epoch, in local time
/// (`2026-03-01 14:05:09`); a value out of range is shown as the number itself.
pub fn local_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format(LOCAL_FORMAT)
                .to_string()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// The present moment in local time, formatted as [`local_time`] formats an instant.
pub fn local_time_now() -> String {
    chrono::Local::now().format(LOCAL_FORMAT).to_string()
}

/// How a local time is written: to the second, date first, no zone.
const LOCAL_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_users_type_is_read_as_before() {
        let ms = Duration::from_millis;
        let cases = [
            ("600s", ms(600_000)),
            ("2m", ms(120_000)),
            ("1500ms", ms(1500)),
            ("1h", ms(3_600_000)),
            ("2.5", ms(2500)),
            ("30", ms(30_000)),
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("1.5s", ms(1500)),
            ("1m30s", ms(90_000)),
            ("6m0s", ms(360_000)),
            ("1h2m3.5s", ms(3_723_500)),
            ("250us", Duration::from_micros(250)),
            ("2\u{b5}s", Duration::from_micros(2)),
            ("1.5\u{b5}s", Duration::from_nanos(1500)),
            ("20ns", Duration::from_nanos(20)),
            (" 5s ", ms(5000)),
            ("1e3", ms(1_000_000)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text), Ok(expected), "{text:?}");
        }
    }

    #[test]
    fn what_is_not_a_duration_is_refused_with_examples() {
        for text in ["soon", "", "-1", "-1s", "5x", "inf", "NaN", "1e400", "s"] {
            let err = parse_duration(text).expect_err(text);
            assert!(err.contains("examples: 30s"), "{text:?}: {err}");
        }
    }

    #[test]
    fn local_times_are_to_the_second() {
        let text = local_time(0);
        assert_eq!(text.len(), "1970-01-01 00:00:00".len(), "{text}");
        assert_eq!(local_time(i64::MAX), i64::MAX.to_string());
        assert_eq!(local_time_now().len(), text.len());
    }
}

//! Numbers for people, in few characters: one rule for every surface that prints a figure (the
//! run's summary and progress line, `paceline status`, the report), so that the same figure
//! reads the same everywhere.

/// `n` in at most five characters or so: `0.25`, `19.1`, `842`, `3.4k`, `64k`, `1.2M`.
///
/// ```
/// use paceline::numbers::compact;
/// assert_eq!(compact(19.14), "19.1");
/// assert_eq!(compact(0.25), "0.25");
/// assert_eq!(compact(842.0), "842");
/// assert_eq!(compact(3_972.0), "4.0k");
/// assert_eq!(compact(64_210.0), "64k");
/// assert_eq!(compact(1_250_000.0), "1.2M");
/// ```
pub fn compact(n: f64) -> String {
    let a = n.abs();
    if a >= 1e6 {
        format!("{:.1}M", n / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", n / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", n / 1e3)
    } else if a >= 100.0 || n.fract() == 0.0 {
        format!("{n:.0}")
    } else if a >= 10.0 {
        format!("{n:.1}")
    } else {
        format!("{n:.2}")
    }
}

/// A rate of requests per second, with one decimal: `19.1 req/s`.
pub fn per_second(n: f64) -> String {
    format!("{n:.1} req/s")
}

/// A share in percent, whole: `97%` (`<1%` for a small non-zero share).
pub fn percent(n: f64) -> String {
    if n > 0.0 && n < 0.5 {
        "<1%".to_string()
    } else if n.is_infinite() {
        "∞%".to_string()
    } else {
        format!("{n:.0}%")
    }
}

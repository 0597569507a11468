//! The demo job's rate and budget use read the same in the run's summary, `paceline status` and
//! `paceline report`: one definition (`store::figures`), computed from the same rows, printed
//! to the same precision.

use std::process::Command;

fn paceline(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_paceline"))
        .args(args)
        .env_remove("PACELINE_LOG")
        .output()
        .expect("run paceline")
}

/// The text after `marker` up to the first of `ends`.
fn after<'a>(text: &'a str, marker: &str, ends: &[char]) -> &'a str {
    let start = text
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker:?} in:\n{text}"))
        + marker.len();
    let rest = &text[start..];
    let end = rest.find(ends).unwrap_or(rest.len());
    rest[..end].trim()
}

#[test]
fn summary_status_and_report_agree_on_the_demo_job() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = dir.path().join("demo.jsonl");
    let output = output.to_str().expect("utf-8 path");
    let demo = paceline(&[
        "demo",
        "-q",
        "-o",
        output,
        "--rpm",
        "3000",
        "--latency-ms",
        "100",
    ]);
    let summary = String::from_utf8_lossy(&demo.stderr).to_string();
    assert!(demo.status.success(), "{summary}");
    let status = paceline(&["status", output]);
    let status = String::from_utf8_lossy(&status.stdout).to_string();
    let report_path = dir.path().join("report.html");
    let report = paceline(&["report", output, "-o", report_path.to_str().expect("utf-8")]);
    assert!(report.status.success(), "{report:?}");
    let html = std::fs::read_to_string(&report_path).expect("report");

    // The rate: `19.1 req/s` in the text, the tile's value before "req/s achieved".
    let rate_summary = after(&summary, "achieved rate   ", &[' ']);
    let rate_status = after(&status, "  rate      ", &[' ']);
    let tile = html.find("req/s achieved").expect("the report's rate tile");
    let value_start = html[..tile].rfind("<div class=\"v\">").expect("tile value") + 15;
    let rate_report = after(&html[value_start..], "", &['<']);
    assert_eq!(rate_summary, rate_status, "{summary}\n{status}");
    assert_eq!(rate_summary, rate_report, "{summary}\n{rate_report}");
    let rate: f64 = rate_summary.parse().expect("a rate");
    assert!(rate > 10.0, "the demo ran at {rate} req/s:\n{summary}");

    // The budget use of requests and tokens (learned from the simulated provider's headers).
    for dimension in ["requests", "tokens"] {
        let marker = format!("{dimension} ");
        let text_summary = after(
            after(&summary, "budget used     ", &['\n']),
            &marker,
            &[' '],
        );
        let text_status = after(after(&status, "  budget    ", &['\n']), &marker, &[' ']);
        let label = format!("of the {dimension} budget");
        let at = html
            .find(&label)
            .unwrap_or_else(|| panic!("no {label} tile"));
        let v = html[..at].rfind("<div class=\"v\">").expect("tile value") + 15;
        let text_report = after(&html[v..], "", &['<']).replace("&lt;", "<");
        assert_eq!(
            text_summary, text_status,
            "{dimension}:\n{summary}\n{status}"
        );
        assert_eq!(text_summary, text_report, "{dimension}: {text_report}");
        assert!(text_summary.ends_with('%'), "{text_summary}");
    }
    // Requests: the run used most of what the provider's bucket allowed, never more.
    let requests: f64 = after(
        after(&summary, "budget used     ", &['\n']),
        "requests ",
        &['%'],
    )
    .parse()
    .expect("a percent");
    assert!((50.0..=101.0).contains(&requests), "{summary}");
}

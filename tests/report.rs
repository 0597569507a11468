//! `paceline report`: a seeded run against the mock, then the report; its embedded figures
//! must match what the mock and the output file say, and the page must render in a real
//! headless browser with no JavaScript error.

mod common;

use common::browser;
use common::job::{KEY, Workdir, s, stderr};
use common::mock::MockProcess;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};

/// A custom_id that must be escaped everywhere it appears.
const NASTY_ID: &str = "<b>\"bad\" & 'worse'</b></script>";

fn paceline(args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_paceline"))
        .args(args)
        .env("OPENAI_API_KEY", KEY)
        .env_remove("PACELINE_LOG")
        .envs(envs.iter().copied())
        .output()
        .expect("run paceline")
}

/// 60 small chat requests, and one the provider refuses for good (a message without a role)
/// under an id full of markup.
fn input(w: &Workdir) -> std::path::PathBuf {
    let mut text = common::job::batch_text(60);
    text.push_str(
        &json!({
            "custom_id": NASTY_ID,
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "messages": [{"content": "no role"}], "max_tokens": 8}
        })
        .to_string(),
    );
    text.push('\n');
    w.write("in.jsonl", &text)
}

fn embedded_data(html: &str) -> Value {
    let open = "<script type=\"application/json\" id=\"paceline-data\">";
    let start = html.find(open).expect("data block") + open.len();
    let end = start + html[start..].find("</script>").expect("end of data block");
    serde_json::from_str(&html[start..end]).expect("data block is JSON")
}

fn sum(v: &Value) -> f64 {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().unwrap_or(0.0))
        .sum()
}

fn run_and_report(w: &Workdir, mock: &MockProcess) -> (Value, String, HashMap<String, Value>) {
    let input = input(w);
    let out = w.path("out.jsonl");
    let run = paceline(
        &[
            "run",
            s(&input),
            "-o",
            s(&out),
            "--base-url",
            &mock.base_url(),
            "--api-key-env",
            "K_BAD,K_GOOD",
            // Ten times the mock's real limit: the 429s teach the real one.
            "--rpm",
            "12000",
            "--max-attempts",
            "2",
            "--seed",
            "3",
            "-q",
        ],
        &[("K_BAD", "sk-unknown-to-the-mock"), ("K_GOOD", "good-key")],
    );
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    let (data, html) = report_of(w, &out);
    let results: HashMap<String, Value> = std::fs::read_to_string(&out)
        .expect("output")
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("output line");
            (v["custom_id"].as_str().expect("custom_id").to_string(), v)
        })
        .collect();
    (data, html, results)
}

/// `paceline report` of the run whose output is `out`: its embedded data and its HTML.
fn report_of(w: &Workdir, out: &Path) -> (Value, String) {
    let report = w.path("report.html");
    let made = paceline(&["report", s(out), "-o", s(&report)], &[]);
    assert!(made.status.success(), "{}", stderr(&made));
    let html = std::fs::read_to_string(&report).expect("report written");
    (embedded_data(&html), html)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_report_of_a_seeded_run_holds_its_figures_and_renders_cleanly() {
    let mock = MockProcess::start(&[
        "--key",
        "good-key",
        "--rpm",
        "1200",
        // A bucket of one: the probe before the first answer outgrows it, so the run surely
        // draws the 429s the report must show.
        "--burst",
        "1",
        "--seed",
        "5",
        "--fail-500",
        "0.15",
        "--latency-ms",
        "150",
    ]);
    let w = Workdir::new();
    let (data, html, results) = run_and_report(&w, &mock);
    let stats = mock.stats().await;
    let mock_totals = &stats["totals"];

    // Counts: every request of the job, every attempt the mock saw, every 429 it sent.
    assert_eq!(data["version"], 1);
    assert_eq!(data["job"]["total"], 61);
    let failed: Vec<&Value> = results.values().filter(|r| !r["error"].is_null()).collect();
    assert_eq!(data["job"]["failed"], failed.len());
    assert_eq!(data["job"]["done"], 61 - failed.len());
    let t = &data["totals"];
    assert_eq!(t["attempts"], mock_totals["requests"], "{stats}");
    assert!(mock_totals["rate_limited"].as_u64().expect("429 count") > 0);
    assert_eq!(t["rate_limited"], mock_totals["rate_limited"], "{stats}");
    assert_eq!(t["final_failures"], failed.len());

    // The series add up to the totals.
    let series = &data["series"];
    let bin_secs = series["bin_ms"].as_f64().expect("bin") / 1000.0;
    let sent = sum(&series["requests_per_s"]) * bin_secs;
    assert!(
        (sent - t["attempts"].as_f64().expect("attempts")).abs() < 0.5,
        "{sent}"
    );
    assert_eq!(
        sum(&series["rate_limited"]),
        t["rate_limited"].as_f64().expect("429s")
    );
    let by_code = series["failures_by_code"].as_object().expect("by code");
    let failures_in_series: f64 = by_code.values().map(sum).sum();
    assert_eq!(failures_in_series as usize, failed.len());
    let retries: f64 = series["retries_by_cause"]
        .as_object()
        .expect("by cause")
        .values()
        .map(sum)
        .sum();
    assert_eq!(retries, t["retries"].as_f64().expect("retries"));
    let histogram: f64 = sum(&data["latency_histogram"]["counts"]);
    assert_eq!(histogram, t["attempts"].as_f64().expect("attempts"));
    assert!(t["peak_in_flight"].as_u64().expect("peak") >= 1);

    // The learned limit is the mock's, not the configured ten-times one.
    assert_eq!(
        data["limits"]["requests_per_min"], 1200,
        "{}",
        data["limits"]
    );

    // Keys: the refused one was removed with the reason, the good one carried the traffic.
    let keys = data["keys"].as_array().expect("keys");
    let key = |prefix: &str| {
        keys.iter()
            .find(|k| k["key"].as_str().unwrap_or("").starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} key in {keys:?}"))
    };
    let bad = key("K_BAD#");
    let good = key("K_GOOD#");
    assert!(
        bad["removed"]
            .as_str()
            .expect("removed")
            .contains("authentication_error"),
        "{bad}"
    );
    assert!(good["removed"].is_null());
    assert_eq!(good["rate_limited"], mock_totals["rate_limited"]);
    let shares: f64 = keys
        .iter()
        .map(|k| k["share"].as_f64().unwrap_or(0.0))
        .sum();
    assert!((shares - 1.0).abs() < 1e-9);
    assert_eq!(good["requests_per_min"], 1200);
    assert_eq!(good["configured"], false);

    // The failures table: one row per failed request, with the output's code and message.
    let table = data["failures"].as_array().expect("failures");
    assert_eq!(table.len(), failed.len());
    assert_eq!(data["failures_total"], failed.len());
    for row in table {
        let id = row["custom_id"].as_str().expect("id");
        let result = &results[id];
        assert_eq!(row["code"], result["error"]["code"]);
        assert_eq!(row["message"], result["error"]["message"]);
        assert!(row["attempts"].as_u64().expect("attempts") >= 1);
    }
    let nasty = table
        .iter()
        .find(|r| r["custom_id"] == NASTY_ID)
        .expect("the refused request is in the table");
    assert_eq!(nasty["attempts"], 1);
    assert!(nasty["message"].as_str().expect("message").contains("role"));
    let slowest = data["slowest"].as_array().expect("slowest");
    assert!(!slowest.is_empty() && slowest.len() <= 20);
    let latencies: Vec<u64> = slowest
        .iter()
        .map(|r| r["latency_ms"].as_u64().expect("latency"))
        .collect();
    assert!(latencies.windows(2).all(|p| p[0] >= p[1]), "{latencies:?}");

    // Escaped: the id appears only escaped in the markup; no key anywhere.
    assert!(!html.contains(NASTY_ID));
    assert!(html.contains("&lt;b&gt;&quot;bad&quot; &amp; &#39;worse&#39;&lt;/b&gt;"));
    assert_eq!(
        html.matches("</script>").count(),
        3,
        "only the page's own scripts end"
    );
    assert!(!html.contains("sk-unknown-to-the-mock") && !html.contains("good-key\""));
    assert!(!html.contains(KEY));
    // Self-contained: nothing to fetch.
    for fetching in [
        "src=",
        "href=",
        "<link",
        "fetch(",
        "XMLHttpRequest",
        "@import",
    ] {
        assert!(
            !html.contains(fetching),
            "the page fetches something: {fetching}"
        );
    }

    // A real browser renders it with no JavaScript error; the screenshot is kept.
    let shot = browser::artifacts().join("report.png");
    let report = w.path("report.html");
    let visit = browser::visit(&format!("file://{}", s(&report)), 2_000, &shot, 3400);
    assert_eq!(visit.js_errors(), Vec::<String>::new(), "{}", visit.log);
    assert!(
        visit.dom.contains("data-ready=\"1\""),
        "the page's script did not run"
    );
    assert!(std::fs::metadata(&shot).expect("screenshot").len() > 10_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_never_sent_are_named_beside_the_chart_they_cannot_be_in() {
    // One request needs more tokens than the whole configured limit: it fails
    // `request_too_large` before any attempt, so no attempt marks its time in the series.
    let mock = MockProcess::start(&["--seed", "2"]);
    let w = Workdir::new();
    let mut text = common::job::batch_text(3);
    text.push_str(
        &json!({
            "custom_id": "huge",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50000}
        })
        .to_string(),
    );
    text.push('\n');
    let input = w.write("in.jsonl", &text);
    let out = w.path("out.jsonl");
    let run = paceline(
        &[
            "run",
            s(&input),
            "-o",
            s(&out),
            "--base-url",
            &mock.base_url(),
            "--tpm",
            "10000",
            "-q",
        ],
        &[],
    );
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    let (data, html) = report_of(&w, &out);
    assert_eq!(data["failures_total"], 1);
    assert_eq!(data["unsent_failures"]["request_too_large"], 1, "{data}");
    assert!(
        data["series"]["failures_by_code"]
            .as_object()
            .expect("by code")
            .is_empty()
    );
    assert!(
        html.contains("not in this chart: 1 failed before being sent (request_too_large × 1)"),
        "the chart's note names the unsent failure"
    );
}

#[test]
fn a_report_needs_a_state() {
    let w = Workdir::new();
    let missing = w.path("nothing.jsonl");
    let out = paceline(&["report", s(&missing), "-o", s(&w.path("r.html"))], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no paceline state"),
        "{}",
        stderr(&out)
    );
    assert!(!Path::new(&w.path("r.html")).exists());
}

#[test]
fn the_browser_check_catches_a_throwing_page() {
    let w = Workdir::new();
    let page = w.write(
        "bad.html",
        &format!(
            "<!DOCTYPE html><html><head><script>{}</script></head><body>\
             <script>undefinedFunction();</script></body></html>",
            paceline::report::html::ERROR_CATCHER
        ),
    );
    let shot = w.path("bad.png");
    let visit = browser::visit(&format!("file://{}", s(&page)), 500, &shot, 400);
    let errors = visit.js_errors();
    assert!(
        errors.iter().any(|e| e.contains("undefinedFunction")),
        "{errors:?}"
    );
}

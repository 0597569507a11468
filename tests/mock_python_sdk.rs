//! The official `openai` Python SDK against the mock (completion, stream, embeddings, 429 retry).
//! Requires `python3` with the `openai` package (`pip install openai`); never skipped.

mod common;

use common::mock::MockProcess;
use std::process::Command;

#[tokio::test]
async fn official_python_sdk_works_against_the_mock() {
    let probe = Command::new("python3")
        .args(["-c", "import openai"])
        .output();
    match probe {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "the `openai` Python package is missing: run `pip install openai` ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(err) => panic!("python3 is missing ({err}): install it, then run `pip install openai`"),
    }
    let open = MockProcess::start(&["--seed", "1"]);
    let limited = MockProcess::start(&["--rpm", "20", "--burst", "1"]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/openai_sdk_check.py"
    );
    let (a, b) = (open.base_url(), limited.base_url());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3").arg(script).args([a, b]).output()
    })
    .await
    .unwrap()
    .expect("run python3");
    assert!(
        out.status.success(),
        "SDK check failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stats = limited.stats().await;
    // First call, the refused call without retries, then the SDK's 429 and its successful retry.
    assert_eq!(stats["totals"]["requests"], 4, "{stats}");
    assert_eq!(stats["totals"]["rate_limited"], 2, "{stats}");
    assert_eq!(stats["totals"]["ok"], 2, "{stats}");
    let open_stats = open.stats().await;
    assert_eq!(open_stats["totals"]["ok"], 4, "{open_stats}");
}

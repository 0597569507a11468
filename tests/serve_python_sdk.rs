//! The official `openai` Python SDK against `paceline serve` in front of `paceline mock`:
//! completion, stream timing, embeddings (float and base64), errors as the SDK's exception
//! types (401, 400, 429 past the deadline), and 50 concurrent clients at 3× the limit with no
//! 429. Requires `python3` with `openai` (`pip install openai`); never skipped.

mod common;

use common::mock::MockProcess;
use common::serve::ServeProcess;
use std::process::Command;

#[tokio::test]
async fn official_python_sdk_works_through_the_gateway() {
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
    let mock = MockProcess::start(&[
        "--rpm",
        "600",
        "--burst",
        "5",
        "--soft-limits",
        "--ms-per-token",
        "20",
        "--completion-tokens",
        "1000",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("paceline.toml");
    std::fs::write(
        &config,
        format!(
            "base_url = \"{}\"\nmax_wait = \"15s\"\n[[keys]]\nenv = \"UPSTREAM_KEY\"\n\
             [[clients]]\nname = \"sdk\"\nkey_env = \"CLIENT_SDK\"\n\
             [[clients]]\nname = \"tight\"\nkey_env = \"CLIENT_TIGHT\"\nrpm = 60\n",
            mock.base_url()
        ),
    )
    .unwrap();
    let config = config.to_string_lossy().to_string();
    let serve = ServeProcess::start(
        &["--config", &config],
        &[
            ("UPSTREAM_KEY", "sk-upstream-python"),
            ("CLIENT_SDK", "client-key-sdk"),
            ("CLIENT_TIGHT", "client-key-tight"),
        ],
    );
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/gateway_sdk_check.py"
    );
    let base = serve.base_url();
    let out =
        tokio::task::spawn_blocking(move || Command::new("python3").arg(script).arg(base).output())
            .await
            .unwrap()
            .expect("run python3");
    assert!(
        out.status.success(),
        "SDK check failed:\nstdout: {}\nstderr: {}\ngateway log: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        serve.log().join("\n")
    );
    let stats = mock.stats().await;
    assert_eq!(stats["totals"]["admitted_beyond_limit"], 0, "{stats}");
    assert_eq!(stats["totals"]["rate_limited"], 0, "{stats}");
}

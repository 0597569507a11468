//! `paceline serve`'s live status page: `/status.json` counts what went through per key and
//! per client, names keys by fingerprint only, and `/status` renders and refreshes itself in a
//! real headless browser with no JavaScript error.

mod common;

use common::browser;
use common::mock::{MockProcess, chat_body};
use common::serve::ServeProcess;
use serde_json::Value;

const KEY_A: &str = "sk-upstream-secret-a";
const KEY_B: &str = "sk-upstream-secret-b";
const CLIENT_WEB: &str = "client-secret-web";
const CLIENT_EVALS: &str = "client-secret-evals";

fn sum(v: &Value) -> u64 {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().unwrap_or(0))
        .sum()
}

async fn send(url: &str, key: &str, n: usize, max_wait: &str) -> Vec<u16> {
    let client = reqwest::Client::new();
    let body = chat_body("gpt-4o-mini", "hello", 8);
    let sends = (0..n).map(|_| {
        client
            .post(url)
            .bearer_auth(key)
            .header("x-paceline-max-wait", max_wait)
            .json(&body)
            .send()
    });
    futures::future::join_all(sends)
        .await
        .into_iter()
        .map(|r| r.expect("request to the gateway").status().as_u16())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_live_page_counts_per_key_and_client_and_renders_cleanly() {
    let mock = MockProcess::start(&[
        "--key",
        &format!("{KEY_A}:600"),
        "--key",
        &format!("{KEY_B}:600"),
        "--latency-ms",
        "20",
    ]);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("paceline.toml");
    std::fs::write(
        &config,
        format!(
            "base_url = \"{}\"\n[[keys]]\nenv = \"KEY_A\"\n[[keys]]\nenv = \"KEY_B\"\n\
             [[clients]]\nname = \"web <ui>\"\nkey_env = \"CLIENT_WEB\"\nrpm = 60\n\
             [[clients]]\nname = \"evals\"\nkey_env = \"CLIENT_EVALS\"\n",
            mock.base_url()
        ),
    )
    .expect("write config");
    // A gateway with clients serves its status page on `admin_listen` (here without an admin
    // key: the address is meant to stay on loopback), not on the address its clients reach.
    let mut serve = ServeProcess::start(
        &[
            "--config",
            config.to_str().expect("utf-8 path"),
            "--admin-listen",
            "127.0.0.1:0",
        ],
        &[
            ("KEY_A", KEY_A),
            ("KEY_B", KEY_B),
            ("CLIENT_WEB", CLIENT_WEB),
            ("CLIENT_EVALS", CLIENT_EVALS),
        ],
    );
    let admin_line = serve.stdout_line();
    let admin = admin_line
        .strip_prefix("status page and /metrics on ")
        .unwrap_or_else(|| panic!("no admin address: {admin_line:?}"))
        .to_string();
    let closed = reqwest::get(serve.url("/status.json"))
        .await
        .expect("GET /status.json on listen");
    assert_eq!(closed.status(), 403);
    let url = serve.url("/v1/chat/completions");
    let evals = send(&url, CLIENT_EVALS, 30, "30s").await;
    let web = send(&url, CLIENT_WEB, 10, "20ms").await;
    assert!(evals.iter().all(|s| *s == 200), "{evals:?}");
    let web_ok = web.iter().filter(|s| **s == 200).count() as u64;
    let web_refused = web.iter().filter(|s| **s == 429).count() as u64;
    assert_eq!(web_ok + web_refused, 10, "{web:?}");
    assert!(
        web_refused > 0,
        "the web client's own 60 rpm refuses some: {web:?}"
    );

    let text = reqwest::get(format!("{admin}/status.json"))
        .await
        .expect("status.json")
        .text()
        .await
        .expect("body");
    for secret in [KEY_A, KEY_B, CLIENT_WEB, CLIENT_EVALS] {
        assert!(!text.contains(secret), "a secret on the status: {text}");
    }
    let status: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(status["version"], 1);
    let seconds = status["t"].as_array().expect("t").len();
    assert!((1..=300).contains(&seconds));
    let keys = status["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 2, "{keys:?}");
    let mock_stats = mock.stats().await;
    let attempts: u64 = keys.iter().map(|k| sum(&k["rate"])).sum();
    assert_eq!(
        attempts,
        mock_stats["totals"]["requests"].as_u64().expect("requests")
    );
    for k in keys {
        let name = k["name"].as_str().expect("name");
        assert!(
            name.starts_with("KEY_A#") || name.starts_with("KEY_B#"),
            "{name}"
        );
        assert_eq!(k["rate"].as_array().expect("rate").len(), seconds);
        assert_eq!(k["requests_per_min"], 600, "learned from the mock: {k}");
    }
    let client = |name: &str| {
        status["clients"]
            .as_array()
            .expect("clients")
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no client {name}: {status}"))
    };
    let (web_c, evals_c) = (client("web <ui>"), client("evals"));
    assert_eq!(sum(&evals_c["rate"]), 30);
    assert_eq!(sum(&web_c["rate"]), web_ok);
    assert_eq!(sum(&web_c["rate_limited"]), web_refused);
    assert_eq!(web_c["requests_per_min"], 60);
    assert!(evals_c["requests_per_min"].is_null());

    // `/` is the same page as `/status`.
    let root = reqwest::get(format!("{admin}/")).await.expect("GET /");
    assert_eq!(root.status(), 200);
    let page = root.text().await.expect("page");
    assert!(page.contains("live status") && page.contains("/status.json"));

    // A real browser: it fetches the JSON, draws, refreshes, and throws nothing.
    let shot = browser::artifacts().join("status.png");
    let visit = browser::visit(&format!("{admin}/status"), 5_000, &shot, 1600);
    assert_eq!(visit.js_errors(), Vec::<String>::new(), "{}", visit.log);
    let refreshes = visit
        .dom
        .split("data-refreshes=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(0);
    assert!(
        refreshes >= 2,
        "the page did not refresh itself: {}",
        visit.dom
    );
    assert!(
        visit.dom.contains("web &lt;ui&gt;"),
        "client names drawn as text"
    );
    assert!(
        !visit.dom.contains("<span id=\"updated\" class=\"error\""),
        "a refresh failed"
    );
}

/// An idle gateway: its key is listed (in rotation, nothing sent), nothing is being sent, and
/// a `[[models]]` deployment's key says which model it serves.
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_gateway_lists_its_keys_and_sends_nothing() {
    let mock = MockProcess::start(&["--key", &format!("{KEY_A}:600")]);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("paceline.toml");
    std::fs::write(
        &config,
        format!(
            "base_url = \"{url}\"\n[[keys]]\nenv = \"KEY_A\"\n\
             [[models]]\nname = \"fast\"\n[[models.deployments]]\nprovider = \"openai\"\n\
             base_url = \"{url}\"\nmodel = \"gpt-4o-mini\"\nenv = \"KEY_B\"\n",
            url = mock.base_url()
        ),
    )
    .expect("write config");
    let serve = ServeProcess::start(
        &["--config", config.to_str().expect("utf-8 path")],
        &[("KEY_A", KEY_A), ("KEY_B", KEY_B)],
    );
    // Let the sampler record a few seconds.
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    let status: Value = reqwest::get(serve.url("/status.json"))
        .await
        .expect("GET /status.json")
        .json()
        .await
        .expect("JSON");
    assert_eq!(status["in_flight_now"], 0, "{status}");
    assert!(
        status["in_flight"]
            .as_array()
            .expect("in_flight")
            .iter()
            .all(|v| v.is_null() || v == 0),
        "{status}"
    );
    let keys = status["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 2, "{status}");
    assert!(
        keys.iter()
            .all(|k| k["removed"].is_null() && k["sending_now"] == 0)
    );
    let served: Vec<&str> = keys.iter().filter_map(|k| k["serves"].as_str()).collect();
    assert_eq!(served, ["fast → gpt-4o-mini (openai)"], "{status}");
}

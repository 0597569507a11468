//! Rate limits, keys, credit and the soft-limit oracle, over real HTTP.

mod common;

use common::mock::{MockProcess, chat_body, header, post};
use serde_json::{Value, json};
use std::time::Duration;

fn is_go_duration(s: &str) -> bool {
    // e.g. 0s, 120ms, 1s, 1.5s, 6m0s, 1m30.5s, 1h2m3s
    let re_like = |s: &str| {
        let mut rest = s;
        if let Some(ms) = rest.strip_suffix("ms") {
            return !ms.is_empty() && ms.chars().all(|c| c.is_ascii_digit());
        }
        for unit in ['h', 'm'] {
            if let Some(i) = rest.find(unit) {
                if !rest[..i].chars().all(|c| c.is_ascii_digit()) || i == 0 {
                    return false;
                }
                rest = &rest[i + 1..];
            }
        }
        let Some(secs) = rest.strip_suffix('s') else {
            return false;
        };
        !secs.is_empty() && secs.chars().all(|c| c.is_ascii_digit() || c == '.')
    };
    re_like(s)
}

#[tokio::test]
async fn rpm_boundary_n_pass_then_429_with_body_and_headers() {
    let mock = MockProcess::start(&["--rpm", "10"]);
    let url = format!("{}/chat/completions", mock.base_url());
    let body = chat_body("gpt-4o-mini", "hello", 5);
    for i in 0..10 {
        let resp = post(&url, Some("sk-one"), &body).await;
        assert_eq!(resp.status(), 200, "request {i}");
        assert_eq!(header(&resp, "x-ratelimit-limit-requests"), "10");
        assert_eq!(
            header(&resp, "x-ratelimit-remaining-requests"),
            (9 - i).to_string()
        );
        assert!(is_go_duration(&header(&resp, "x-ratelimit-reset-requests")));
        // Unlimited tokens: no token headers.
        assert!(resp.headers().get("x-ratelimit-limit-tokens").is_none());
        assert!(header(&resp, "x-request-id").starts_with("req_"));
    }
    let resp = post(&url, Some("sk-one"), &body).await;
    assert_eq!(resp.status(), 429);
    let ms: u64 = header(&resp, "retry-after-ms").parse().unwrap();
    let secs: u64 = header(&resp, "retry-after").parse().unwrap();
    // One request refills in 6 s.
    assert!(ms > 0 && ms <= 6_000, "{ms}");
    assert_eq!(secs, ms.div_ceil(1000));
    assert_eq!(header(&resp, "x-ratelimit-remaining-requests"), "0");
    assert_eq!(header(&resp, "content-type"), "application/json");
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["type"], "requests");
    assert_eq!(err["error"]["code"], "rate_limit_exceeded");
    assert!(err["error"]["param"].is_null());
    let msg = err["error"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("Rate limit reached for gpt-4o-mini"),
        "{msg}"
    );
    let hint = format!("Please try again in {}.{:03}s.", ms / 1000, ms % 1000);
    assert!(msg.contains(&hint), "{msg} lacks {hint}");

    // Another key has its own buckets.
    assert_eq!(post(&url, Some("sk-two"), &body).await.status(), 200);

    let stats = mock.stats().await;
    let keys = stats["keys"].as_object().unwrap();
    assert_eq!(keys.len(), 2);
    for name in keys.keys() {
        assert_eq!(
            name.len(),
            8,
            "keys are shown as fingerprints, not in full: {name}"
        );
        assert!(!name.contains("sk-"));
    }
    assert_eq!(stats["totals"]["requests"], 12);
    assert_eq!(stats["totals"]["ok"], 11);
    assert_eq!(stats["totals"]["rate_limited"], 1);
    let per_second: u64 = stats["totals"]["per_second"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_u64().unwrap())
        .sum();
    assert_eq!(per_second, 11);
}

#[tokio::test]
async fn capacity_returns_when_the_hint_says() {
    // 60 RPM with a burst of 1: one request per second.
    let mock = MockProcess::start(&["--rpm", "60", "--burst", "1"]);
    let url = format!("{}/chat/completions", mock.base_url());
    let body = chat_body("gpt-4o-mini", "hi", 1);
    assert_eq!(post(&url, None, &body).await.status(), 200);
    let refused = post(&url, None, &body).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "x-ratelimit-limit-requests"), "60");
    let wait: u64 = header(&refused, "retry-after-ms").parse().unwrap();
    assert!(wait <= 1_000, "{wait}");
    tokio::time::sleep(Duration::from_millis(wait)).await;
    assert_eq!(post(&url, None, &body).await.status(), 200);
}

#[tokio::test]
async fn tpm_charges_prompt_plus_max_tokens_times_n() {
    // 6,000 TPM refills 100 tokens/s; each request costs 1,000 (8 prompt + 992 × 1).
    let mock = MockProcess::start(&["--tpm", "6000"]);
    let url = format!("{}/chat/completions", mock.base_url());
    let body = chat_body("gpt-4o-mini", "hi", 992);
    for i in 0..6 {
        let resp = post(&url, None, &body).await;
        assert_eq!(resp.status(), 200, "request {i}");
        assert_eq!(header(&resp, "x-ratelimit-limit-tokens"), "6000");
        let remaining: u64 = header(&resp, "x-ratelimit-remaining-tokens")
            .parse()
            .unwrap();
        let floor = 6_000 - 1_000 * (i + 1);
        assert!(
            remaining >= floor && remaining < floor + 1_000,
            "{remaining}"
        );
        assert!(resp.headers().get("x-ratelimit-limit-requests").is_none());
    }
    let resp = post(&url, None, &body).await;
    assert_eq!(resp.status(), 429);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["type"], "tokens");
    assert_eq!(err["error"]["code"], "rate_limit_exceeded");
    let stats = mock.stats().await;
    assert_eq!(stats["totals"]["tokens_charged"], 6_000);
    assert_eq!(stats["totals"]["prompt_tokens"], 48);
}

#[tokio::test]
async fn n_multiplies_the_reservation_and_default_max_tokens_applies() {
    let mock = MockProcess::start(&["--tpm", "1000000", "--default-max-tokens", "100"]);
    let url = format!("{}/chat/completions", mock.base_url());
    let mut body = chat_body("gpt-4o-mini", "hi", 50);
    body["n"] = json!(3);
    let resp = post(&url, None, &body).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["choices"].as_array().unwrap().len(), 3);
    let no_max = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(post(&url, None, &no_max).await.status(), 200);
    let stats = mock.stats().await;
    // (8 + 50 × 3) + (8 + 100)
    assert_eq!(stats["totals"]["tokens_charged"], 158 + 108);
}

#[tokio::test]
async fn request_above_tpm_is_too_large_and_final() {
    let mock = MockProcess::start(&["--tpm", "1000"]);
    let url = format!("{}/chat/completions", mock.base_url());
    let resp = post(&url, None, &chat_body("gpt-4o-mini", "hi", 993)).await;
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().get("retry-after").is_none());
    assert!(resp.headers().get("retry-after-ms").is_none());
    let err: Value = resp.json().await.unwrap();
    let msg = err["error"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("Request too large for gpt-4o-mini"),
        "{msg}"
    );
    assert!(msg.contains("Limit 1000, Requested 1001"), "{msg}");
    assert_eq!(err["error"]["type"], "tokens");
    assert_eq!(err["error"]["code"], "rate_limit_exceeded");
    // Exactly the limit fits.
    assert_eq!(
        post(&url, None, &chat_body("gpt-4o-mini", "hi", 992))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn token_burst_admits_big_requests_only_when_full_then_debt() {
    let mock = MockProcess::start(&["--tpm", "6000", "--token-burst", "500"]);
    let url = format!("{}/chat/completions", mock.base_url());
    let big = chat_body("gpt-4o-mini", "hi", 992);
    let resp = post(&url, None, &big).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-ratelimit-remaining-tokens"), "0");
    let resp = post(&url, None, &chat_body("gpt-4o-mini", "hi", 1)).await;
    assert_eq!(resp.status(), 429);
    // In debt by 500: a 9-token request waits for 509 tokens at 100/s.
    let ms: u64 = header(&resp, "retry-after-ms").parse().unwrap();
    assert!(ms > 5_000 && ms <= 5_090, "{ms}");
}

#[tokio::test]
async fn insufficient_quota_is_final() {
    let mock = MockProcess::start(&["--quota-tokens", "20"]);
    let url = format!("{}/chat/completions", mock.base_url());
    let body = chat_body("gpt-4o-mini", "hi", 5);
    assert_eq!(post(&url, None, &body).await.status(), 200);
    assert_eq!(post(&url, None, &body).await.status(), 200);
    let resp = post(&url, None, &body).await;
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().get("retry-after").is_none());
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["type"], "insufficient_quota");
    assert_eq!(err["error"]["code"], "insufficient_quota");
    assert!(err["error"]["param"].is_null());
    assert!(err["error"]["message"].as_str().unwrap().starts_with(
        "You exceeded your current quota, please check your plan and billing details"
    ));
    assert_eq!(mock.stats().await["totals"]["insufficient_quota"], 1);
}

#[tokio::test]
async fn declared_keys_only_with_their_own_limits() {
    let mock = MockProcess::start(&[
        "--rpm",
        "100",
        "--key",
        "sk-alpha-123456:2",
        "--key",
        "sk-beta-1234567",
    ]);
    let url = format!("{}/chat/completions", mock.base_url());
    let body = chat_body("gpt-4o-mini", "hi", 5);
    for _ in 0..2 {
        let resp = post(&url, Some("sk-alpha-123456"), &body).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "x-ratelimit-limit-requests"), "2");
    }
    assert_eq!(
        post(&url, Some("sk-alpha-123456"), &body).await.status(),
        429
    );
    let resp = post(&url, Some("sk-beta-1234567"), &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-ratelimit-limit-requests"), "100");

    let resp = post(&url, Some("sk-wrong-9876543"), &body).await;
    assert_eq!(resp.status(), 401);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "invalid_api_key");
    assert_eq!(err["error"]["type"], "invalid_request_error");
    let msg = err["error"]["message"].as_str().unwrap();
    assert!(
        !msg.contains("sk-wrong-9876543"),
        "the key is never shown in full: {msg}"
    );
    assert_eq!(post(&url, None, &body).await.status(), 401);

    let stats = mock.stats().await;
    assert_eq!(stats["keys"]["sk-alpha-123456"]["ok"], 2);
    assert_eq!(stats["keys"]["sk-alpha-123456"]["rate_limited"], 1);
    assert_eq!(stats["keys"]["sk-beta-1234567"]["ok"], 1);
    assert_eq!(stats["keys"]["unknown"]["unauthorized"], 2);
    assert_eq!(stats["totals"]["unauthorized"], 2);
}

#[tokio::test]
async fn soft_limits_admit_everything_and_count_the_overshoot() {
    let mock = MockProcess::start(&["--rpm", "3", "--soft-limits"]);
    let url = format!("{}/chat/completions", mock.base_url());
    let body = chat_body("gpt-4o-mini", "hi", 5);
    for _ in 0..5 {
        assert_eq!(post(&url, None, &body).await.status(), 200);
    }
    let stats = mock.stats().await;
    assert_eq!(stats["totals"]["ok"], 5);
    assert_eq!(stats["totals"]["rate_limited"], 0);
    assert_eq!(stats["totals"]["admitted_beyond_limit"], 2);
    // Each overshoot is kept with its time and how early it came: 3 per minute refill one
    // request every 20 s and an overshoot is not charged, so the 4th and 5th each came ~20 s
    // too early.
    let beyond = stats["totals"]["beyond_limit"].as_array().unwrap();
    assert_eq!(beyond.len(), 2, "{stats}");
    let early_s: Vec<f64> = beyond
        .iter()
        .map(|b| b[1].as_u64().unwrap() as f64 / 1e6)
        .collect();
    assert!((19.0..=20.0).contains(&early_s[0]), "{early_s:?}");
    assert!((19.0..=20.0).contains(&early_s[1]), "{early_s:?}");
    assert!(beyond[0][0].as_u64().unwrap() <= beyond[1][0].as_u64().unwrap());
}

#[tokio::test]
async fn refund_unused_gives_back_output_tokens() {
    let mock = MockProcess::start(&[
        "--tpm",
        "60000",
        "--refund-unused",
        "--completion-tokens",
        "4",
    ]);
    let url = format!("{}/chat/completions", mock.base_url());
    let resp = post(&url, None, &chat_body("gpt-4o-mini", "hi", 1000)).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    let used = v["usage"]["total_tokens"].as_u64().unwrap();
    let stats = mock.stats().await;
    assert_eq!(stats["totals"]["tokens_charged"].as_u64().unwrap(), used);
}

#[tokio::test]
async fn reset_clears_counters_and_refills() {
    let mock = MockProcess::start(&["--rpm", "1"]);
    let url = format!("{}/chat/completions", mock.base_url());
    let body = chat_body("gpt-4o-mini", "hi", 5);
    assert_eq!(post(&url, Some("k"), &body).await.status(), 200);
    assert_eq!(post(&url, Some("k"), &body).await.status(), 429);
    mock.reset().await;
    assert_eq!(mock.stats().await["totals"]["requests"], 0);
    assert_eq!(post(&url, Some("k"), &body).await.status(), 200);
}

#[test]
fn go_duration_checker_accepts_openai_examples() {
    for ok in ["1s", "6m0s", "120ms", "1m30.5s", "1h2m3s", "0s", "59.976s"] {
        assert!(is_go_duration(ok), "{ok}");
    }
    for bad in ["", "s", "1", "1.5", "m0s", "1x"] {
        assert!(!is_go_duration(bad), "{bad}");
    }
}

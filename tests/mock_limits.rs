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

/// Ten requests, about half 503s (seeded), at 12 RPM (one request back every 5 s): each answer as
/// (status, `x-ratelimit-remaining-requests`), and the seconds the exchange took.
async fn faulted_sequence(charge: &str) -> (Vec<(u16, Option<u64>)>, f64) {
    let mock = MockProcess::start(&[
        "--rpm",
        "12",
        "--fail-503",
        "0.5",
        "--seed",
        "11",
        "--faults-charge",
        charge,
    ]);
    let url = format!("{}/chat/completions", mock.base_url());
    let body = chat_body("gpt-4o-mini", "hi", 5);
    let started = std::time::Instant::now();
    let mut seen = Vec::new();
    for _ in 0..10 {
        let resp = post(&url, Some("sk-faults"), &body).await;
        let remaining = header(&resp, "x-ratelimit-remaining-requests").parse().ok();
        seen.push((resp.status().as_u16(), remaining));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stats = mock.stats().await;
    let fail_503 = seen.iter().filter(|s| s.0 == 503).count();
    assert_eq!(stats["totals"]["faults"]["fail_503"], fail_503, "{seen:?}");
    assert_eq!(stats["totals"]["requests"], 10);
    (seen, elapsed)
}

#[tokio::test]
async fn a_charged_503_lowers_the_remaining_requests_an_uncharged_one_does_not() {
    // The bucket's level only rises by whole requests every 5 s, so within a quick exchange the
    // counts are exact; `tick` allows for a slow machine.
    let (charged, elapsed) = faulted_sequence("true").await;
    let tick = (elapsed / 5.0).floor() as u64;
    for (i, (status, remaining)) in charged.iter().enumerate() {
        let floor = 12 - (i as u64 + 1);
        assert!(matches!(status, 200 | 503), "{charged:?}");
        let r = remaining.unwrap_or_else(|| panic!("answer {i} has no limit header"));
        assert!((floor..=floor + tick).contains(&r), "{i}: {charged:?}");
    }
    let first_503 = charged.iter().position(|s| s.0 == 503);
    let after = first_503.and_then(|f| charged.iter().skip(f).position(|s| s.0 == 200));
    assert!(
        after.is_some(),
        "the seed gives a 200 after a 503: {charged:?}"
    );

    let (uncharged, elapsed) = faulted_sequence("false").await;
    let tick = (elapsed / 5.0).floor() as u64;
    let mut admitted = 0;
    for (i, (status, remaining)) in uncharged.iter().enumerate() {
        match status {
            // Answered before the rate limiter: nothing claims it was charged.
            503 => assert_eq!(*remaining, None, "{i}: {uncharged:?}"),
            200 => {
                admitted += 1;
                let floor = 12 - admitted;
                let r = remaining.unwrap_or_else(|| panic!("answer {i} has no limit header"));
                assert!((floor..=floor + tick).contains(&r), "{i}: {uncharged:?}");
                // Every 503 before it would have lowered it, had it been charged.
                let before = i as u64 + 1 - admitted;
                if before > tick {
                    assert!(r > 12 - (i as u64 + 1) + tick, "{i}: {uncharged:?}");
                }
            }
            other => panic!("{i}: {other} in {uncharged:?}"),
        }
    }
    // The seed faults the same requests whichever comes first.
    let statuses = |s: &[(u16, Option<u64>)]| s.iter().map(|x| x.0).collect::<Vec<_>>();
    assert_eq!(statuses(&charged), statuses(&uncharged));
}

#[tokio::test]
async fn an_uncharged_503_is_answered_with_the_bucket_empty() {
    let body = chat_body("gpt-4o-mini", "hi", 5);
    let mock = MockProcess::start(&["--rpm", "2", "--fail-503", "1", "--faults-charge", "false"]);
    let url = format!("{}/chat/completions", mock.base_url());
    for i in 0..5 {
        let resp = post(&url, None, &body).await;
        assert_eq!(resp.status(), 503, "request {i}");
        assert!(resp.headers().get("x-ratelimit-limit-requests").is_none());
        assert!(header(&resp, "x-request-id").starts_with("req_"));
    }
    let stats = mock.stats().await;
    assert_eq!(stats["totals"]["faults"]["fail_503"], 5);
    assert_eq!(stats["totals"]["rate_limited"], 0);
    assert_eq!(stats["totals"]["requests"], 5);
    // Charged (the default), the third request finds the bucket empty.
    let mock = MockProcess::start(&["--rpm", "2", "--fail-503", "1"]);
    let url = format!("{}/chat/completions", mock.base_url());
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(post(&url, None, &body).await.status().as_u16());
    }
    assert_eq!(statuses, [503, 503, 429, 429]);
}

#[tokio::test]
async fn azure_says_nothing_of_limits_on_an_uncharged_fault() {
    for (charge, remaining) in [("true", "9"), ("false", "")] {
        let mock =
            MockProcess::start(&["--rpm", "10", "--fail-503", "1", "--faults-charge", charge]);
        let url =
            mock.url("/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21");
        let resp = reqwest::Client::new()
            .post(&url)
            .header("api-key", "sk-azure")
            .json(&chat_body("gpt-4o-mini", "hi", 5))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 503);
        // Charged: the request dimension as admitted, tokens "-1" (not limited). Not charged: no
        // limit was consulted, so not even "-1" is claimed.
        assert_eq!(
            header(&resp, "x-ratelimit-remaining-requests"),
            remaining,
            "{charge}"
        );
        let tokens = if charge == "true" { "-1" } else { "" };
        assert_eq!(
            header(&resp, "x-ratelimit-remaining-tokens"),
            tokens,
            "{charge}"
        );
    }
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

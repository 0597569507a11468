//! `--slots`: the mock as a self-hosted inference server, over real HTTP.
//!
//! The timing assertions are lower bounds the queue must enforce (a loaded machine can only make
//! things slower) plus loose upper bounds; the exact arithmetic is unit-tested on a paused clock
//! in `crates/paceline-mock/src/slots.rs`.

mod common;

use common::mock::{MockProcess, chat_body};
use serde_json::Value;
use std::time::{Duration, Instant};

/// `clients` chat requests sent at once; each one's latency in seconds (sorted) and the makespan.
async fn burst_of(mock: &MockProcess, clients: usize) -> (Vec<f64>, f64) {
    let url = format!("{}/chat/completions", mock.base_url());
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..clients {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let resp = client
                .post(&url)
                .json(&chat_body("gpt-4o-mini", &format!("hi {i}"), 8))
                .send()
                .await
                .expect("request to the mock");
            assert_eq!(resp.status(), 200);
            assert!(
                resp.headers()
                    .keys()
                    .all(|h| !h.as_str().contains("ratelimit")),
                "no limits configured: no rate-limit headers"
            );
            resp.bytes().await.expect("the answer's body");
            sent.elapsed().as_secs_f64()
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.push(task.await.expect("client task"));
    }
    latencies.sort_by(f64::total_cmp);
    (latencies, started.elapsed().as_secs_f64())
}

fn median(sorted: &[f64]) -> f64 {
    sorted[sorted.len() / 2]
}

#[tokio::test]
async fn throughput_flattens_at_slots_over_service_time_and_latency_grows_with_the_queue() {
    // Two slots, 150 ms of service: at most 2 answers per 150 ms, however many clients.
    let mock = MockProcess::start(&["--slots", "2", "--latency-ms", "150", "--seed", "3"]);
    let (alone, _) = burst_of(&mock, 2).await;
    let (queued, makespan) = burst_of(&mock, 10).await;
    // 10 requests through 2 slots: 5 rounds of 150 ms, at least.
    assert!(makespan >= 0.75 - 0.01, "makespan {makespan:.3}s");
    assert!(
        makespan < 3.0,
        "makespan {makespan:.3}s on a loaded machine?"
    );
    // Within the slots every request takes one service time; beyond, the queue adds rounds: the
    // median waits at least two of them and the last one five.
    assert!(alone.iter().all(|l| *l >= 0.15 - 0.01), "{alone:?}");
    assert!(median(&queued) >= 0.45 - 0.01, "{queued:?}");
    assert!(queued[9] >= 0.75 - 0.01, "{queued:?}");
    assert!(
        median(&queued) > median(&alone) * 2.0,
        "{alone:?} {queued:?}"
    );
    let stats = mock.stats().await;
    let slots = &stats["slots"];
    assert_eq!(slots["slots"], 2);
    assert_eq!(slots["peak_in_service"], 2, "{slots}");
    assert_eq!(slots["served"], 12);
    assert_eq!(
        (slots["in_service"].as_u64(), slots["queued"].as_u64()),
        (Some(0), Some(0))
    );
    let peak = slots["peak_queued"].as_u64().unwrap_or(0);
    assert!((1..=8).contains(&peak), "{slots}");
    assert!(slots["wait_ms_max"].as_u64().unwrap_or(0) >= 590, "{slots}");
    assert_eq!(stats["totals"]["ok"], 12);
}

#[tokio::test]
async fn a_client_that_gives_up_while_queued_leaves_the_queue() {
    let mock = MockProcess::start(&["--slots", "1", "--latency-ms", "600"]);
    let url = format!("{}/chat/completions", mock.base_url());
    let body = chat_body("gpt-4o-mini", "hi", 8);
    let first = tokio::spawn({
        let (url, body) = (url.clone(), body.clone());
        async move {
            reqwest::Client::new()
                .post(&url)
                .json(&body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Queued behind the first, it gives up after 150 ms and closes its connection.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(150))
        .build()
        .expect("client");
    assert!(impatient.post(&url).json(&body).send().await.is_err());
    drop(impatient);
    let mut left = Value::Null;
    for _ in 0..50 {
        left = mock.stats().await["slots"].clone();
        if left["left_queue"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(left["left_queue"], 1, "{left}");
    assert_eq!(left["queued"], 0, "{left}");
    assert_eq!(first.await.ok().and_then(Result::ok), Some(200));
    // The slot is free again and nobody is ahead: one service time.
    let started = Instant::now();
    let resp = reqwest::Client::new()
        .post(&url)
        .json(&body)
        .send()
        .await
        .expect("request to the mock");
    assert_eq!(resp.status(), 200);
    let took = started.elapsed().as_secs_f64();
    assert!((0.59..2.0).contains(&took), "{took:.3}s");
    let slots = mock.stats().await["slots"].clone();
    assert_eq!(
        (slots["served"].as_u64(), slots["left_queue"].as_u64()),
        (Some(2), Some(1))
    );
}

#[tokio::test]
async fn a_stream_holds_its_slot_until_its_last_chunk() {
    // 100 ms to the first token, then 20 ms per token: a stream of 8 tokens keeps the only slot
    // ~240 ms, so a plain request sent right after it waits that long before its own 100 ms+.
    let mock = MockProcess::start(&[
        "--slots",
        "1",
        "--latency-ms",
        "100",
        "--ms-per-token",
        "20",
        "--completion-tokens",
        "4",
    ]);
    let url = format!("{}/chat/completions", mock.base_url());
    let mut streamed = chat_body("gpt-4o-mini", "hi", 8);
    streamed["stream"] = Value::Bool(true);
    let client = reqwest::Client::new();
    let started = Instant::now();
    let stream = tokio::spawn({
        let (client, url) = (client.clone(), url.clone());
        async move {
            let resp = client.post(&url).json(&streamed).send().await?;
            resp.text().await
        }
    });
    tokio::time::sleep(Duration::from_millis(30)).await;
    let plain = client
        .post(&url)
        .json(&chat_body("gpt-4o-mini", "hi", 1))
        .send()
        .await
        .expect("request to the mock");
    assert_eq!(plain.status(), 200);
    let plain_done = started.elapsed().as_secs_f64();
    let text = stream.await.ok().and_then(Result::ok).unwrap_or_default();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let stats = mock.stats().await;
    let stream_tokens = stats["totals"]["completion_tokens"].as_u64().unwrap_or(0) - 1;
    // The stream's service: 100 ms to its first chunk, then 20 ms per token until its last.
    let stream_service = 0.1 + 0.02 * stream_tokens as f64;
    assert!(
        plain_done >= stream_service + 0.1 + 0.02 - 0.01,
        "plain request done at {plain_done:.3}s, the stream took {stream_service:.3}s"
    );
}

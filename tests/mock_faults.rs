//! Injected faults, each made certain (probability 1) and seeded.

mod common;

use common::mock::{MockProcess, chat_body, header, post};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[tokio::test]
async fn fail_500_and_503_are_openai_server_errors_after_admission() {
    for (flag, status) in [("--fail-500", 500), ("--fail-503", 503)] {
        let mock = MockProcess::start(&[flag, "1", "--seed", "1", "--rpm", "100"]);
        let url = format!("{}/chat/completions", mock.base_url());
        let resp = post(&url, None, &chat_body("gpt-4o-mini", "hi", 5)).await;
        assert_eq!(resp.status(), status);
        // Admission happened: the request was charged.
        assert_eq!(header(&resp, "x-ratelimit-remaining-requests"), "99");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["type"], "server_error");
        let stats = mock.stats().await;
        let key = flag.trim_start_matches("--").replace('-', "_");
        assert_eq!(stats["totals"]["faults"][key.as_str()], 1, "{flag}");
        assert_eq!(stats["totals"]["ok"], 0);
    }
}

/// Send a raw HTTP/1.1 request and read until the server closes.
fn raw_exchange(addr: std::net::SocketAddr, body: &str) -> (Vec<u8>, std::io::Result<usize>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
        body.len(),
        body
    );
    stream.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let result = stream.read_to_end(&mut out);
    (out, result)
}

#[tokio::test]
async fn reset_closes_the_connection_without_a_complete_response() {
    let mock = MockProcess::start(&["--reset", "1", "--seed", "5"]);
    let url = format!("{}/chat/completions", mock.base_url());
    let outcome = reqwest::Client::new()
        .post(&url)
        .json(&chat_body("gpt-4o-mini", "hi", 5))
        .send()
        .await;
    match outcome {
        Err(_) => {}
        Ok(resp) => assert!(resp.bytes().await.is_err(), "the body must fail"),
    }
    let addr = mock.addr();
    let body = chat_body("gpt-4o-mini", "hi", 5).to_string();
    let (bytes, _) = tokio::task::spawn_blocking(move || raw_exchange(addr, &body))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        !text.contains("chat.completion"),
        "no body may arrive: {text}"
    );
    assert_eq!(mock.stats().await["totals"]["faults"]["reset"], 2);
}

#[tokio::test]
async fn truncate_cuts_json_short_of_its_content_length() {
    let mock = MockProcess::start(&["--truncate", "1", "--seed", "6"]);
    let addr = mock.addr();
    let body = chat_body("gpt-4o-mini", "hi", 5).to_string();
    let (bytes, _) = tokio::task::spawn_blocking(move || raw_exchange(addr, &body))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&bytes);
    let (head, body) = text.split_once("\r\n\r\n").expect("headers arrive");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let declared: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_owned)
        })
        .expect("content-length")
        .parse()
        .unwrap();
    assert!(
        !body.is_empty() && body.len() < declared,
        "{} of {declared}",
        body.len()
    );
    assert!(serde_json::from_str::<Value>(body).is_err());

    // Through an HTTP client: the body read fails.
    let url = format!("{}/chat/completions", mock.base_url());
    let resp = post(&url, None, &chat_body("gpt-4o-mini", "hi", 5)).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.is_err());
    assert_eq!(mock.stats().await["totals"]["faults"]["truncate"], 2);
}

#[tokio::test]
async fn truncate_cuts_a_stream_before_done() {
    let mock = MockProcess::start(&["--truncate", "1", "--seed", "7"]);
    let url = format!("{}/chat/completions", mock.base_url());
    let mut body = chat_body("gpt-4o-mini", "hi", 20);
    body["stream"] = json!(true);
    let mut resp = post(&url, None, &body).await;
    assert_eq!(resp.status(), 200);
    let mut received = Vec::new();
    let failed = loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => received.extend_from_slice(&chunk),
            Ok(None) => break false,
            Err(_) => break true,
        }
    };
    assert!(failed, "the stream must end in an error");
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("data: {"), "{text}");
    assert!(!text.contains("[DONE]"));
}

#[tokio::test]
async fn stall_holds_the_response() {
    let mock = MockProcess::start(&["--stall", "1", "--seed", "8"]);
    let url = format!("{}/chat/completions", mock.base_url());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(700))
        .build()
        .unwrap();
    let outcome = client
        .post(&url)
        .json(&chat_body("gpt-4o-mini", "hi", 5))
        .send()
        .await;
    let err = outcome.expect_err("a stalled response never arrives");
    assert!(err.is_timeout(), "{err}");
    assert_eq!(mock.stats().await["totals"]["faults"]["stall"], 1);
}

#[tokio::test]
async fn seeded_fault_mix_is_reproducible() {
    let run = || async {
        let mock = MockProcess::start(&[
            "--seed",
            "11",
            "--fail-500",
            "0.2",
            "--fail-503",
            "0.2",
            "--reset",
            "0.2",
        ]);
        let url = format!("{}/chat/completions", mock.base_url());
        let mut outcomes = Vec::new();
        for _ in 0..20 {
            let resp = reqwest::Client::new()
                .post(&url)
                .json(&chat_body("gpt-4o-mini", "hi", 5))
                .send()
                .await;
            let outcome = match resp {
                Err(_) => 0,
                Ok(r) => {
                    let status = r.status().as_u16();
                    if r.bytes().await.is_err() { 0 } else { status }
                }
            };
            outcomes.push(outcome);
        }
        outcomes
    };
    let first = run().await;
    assert_eq!(first, run().await);
    for status in [0, 200, 500, 503] {
        assert!(first.contains(&status), "{status} missing from {first:?}");
    }
}

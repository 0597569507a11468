//! The library API: start the mock in-process, read stats from the handle, shut it down.

use paceline_mock::{self as mock, KeySpec, MockConfig};
use serde_json::{Value, json};

#[tokio::test]
async fn start_serve_stats_shutdown() {
    let config = MockConfig {
        keys: vec!["sk-in-process".parse::<KeySpec>().unwrap()],
        rpm: 2,
        ..MockConfig::default()
    };
    let handle = mock::start(config).await.unwrap();
    assert!(handle.base_url().starts_with("http://127.0.0.1:"));
    assert!(handle.base_url().ends_with("/v1"));
    let client = reqwest::Client::new();
    let url = format!("{}/chat/completions", handle.base_url());
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3});
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let resp = client
            .post(&url)
            .bearer_auth("sk-in-process")
            .json(&body)
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429]);
    let snapshot = handle.stats();
    let key = &snapshot.keys["sk-in-process"];
    assert_eq!((key.requests, key.ok, key.rate_limited), (3, 2, 1));
    // The handle's snapshot is the JSON the endpoint serves.
    let served: Value = client
        .get(format!("http://{}/_mock/stats", handle.addr()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(served, serde_json::to_value(&snapshot).unwrap());
    let addr = handle.addr();
    handle.shutdown().await;
    assert!(
        reqwest::Client::new()
            .get(format!("http://{addr}/v1/models"))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn bad_config_is_refused_with_the_flag_named() {
    let config = MockConfig {
        faults: mock::FaultRates {
            truncate: 2.0,
            ..Default::default()
        },
        ..MockConfig::default()
    };
    let err = mock::start(config)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("--truncate"), "{err}");
}

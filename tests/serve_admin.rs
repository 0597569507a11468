//! The admin surface (the live page, `/status.json`, `/metrics`) of a gateway with clients on
//! an address others reach (`0.0.0.0`): refused without the admin credential, served with it
//! (as a bearer token or HTTP Basic's password, what a browser sends), served without one on a
//! separate `admin_listen`; the API and `/healthz` unchanged.

mod common;

use base64::Engine as _;
use common::mock::MockProcess;
use common::serve::ServeProcess;
use serde_json::{Value, json};

const UPSTREAM_KEY: &str = "sk-upstream-admin-test";
const CLIENT_KEY: &str = "client-key-web";
const ADMIN_KEY: &str = "admin-key-secret";
const ADMIN_PATHS: [&str; 4] = ["/", "/status", "/status.json", "/metrics"];

fn config(mock: &MockProcess, admin: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("paceline.toml"),
        format!(
            "listen = \"0.0.0.0:0\"\nbase_url = \"{}\"\n{admin}[[keys]]\nenv = \"UPSTREAM_KEY\"\n\
             [[clients]]\nname = \"web-frontend\"\nkey_env = \"CLIENT_WEB\"\n",
            mock.base_url()
        ),
    )
    .expect("write config");
    dir
}

async fn get(url: &str, auth: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(url);
    if let Some(value) = auth {
        request = request.header("authorization", value);
    }
    request.send().await.expect("GET")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_surface_asks_for_the_admin_key() {
    let mock = MockProcess::start(&["--key", &format!("{UPSTREAM_KEY}:600")]);
    let dir = config(&mock, "admin_key_env = \"PACELINE_ADMIN_KEY\"\n");
    let path = dir.path().join("paceline.toml");
    let serve = ServeProcess::start_on(
        "0.0.0.0:0",
        &["--config", path.to_str().expect("utf-8 path")],
        &[
            ("UPSTREAM_KEY", UPSTREAM_KEY),
            ("CLIENT_WEB", CLIENT_KEY),
            ("PACELINE_ADMIN_KEY", ADMIN_KEY),
        ],
    );
    // The API answers its clients as before.
    let chat = reqwest::Client::new()
        .post(serve.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}))
        .send()
        .await
        .expect("chat");
    assert_eq!(chat.status(), 200);
    assert_eq!(get(&serve.url("/healthz"), None).await.status(), 200);

    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("ops:{ADMIN_KEY}"))
    );
    for path in ADMIN_PATHS {
        let url = serve.url(path);
        for (auth, why) in [
            (None, "no credential"),
            (Some(format!("Bearer {CLIENT_KEY}")), "a client's key"),
            (Some("Bearer wrong".to_string()), "a wrong key"),
        ] {
            let refused = get(&url, auth.as_deref()).await;
            assert_eq!(refused.status(), 401, "{path} with {why}");
            assert!(
                refused.headers().contains_key("www-authenticate"),
                "{path}: a browser is asked for the key"
            );
            let body = refused.text().await.expect("body");
            assert!(
                !body.contains("web-frontend") && !body.contains(CLIENT_KEY),
                "{path} with {why} leaked: {body}"
            );
            let error: Value = serde_json::from_str(&body).expect("an OpenAI-shaped error");
            assert!(error["error"]["message"].is_string(), "{body}");
        }
        let bearer = get(&url, Some(&format!("Bearer {ADMIN_KEY}"))).await;
        assert_eq!(bearer.status(), 200, "{path} with the admin key");
        assert_eq!(
            get(&url, Some(&basic)).await.status(),
            200,
            "{path} by Basic"
        );
    }
    let status: Value = get(
        &serve.url("/status.json"),
        Some(&format!("Bearer {ADMIN_KEY}")),
    )
    .await
    .json()
    .await
    .expect("status JSON");
    let text = status.to_string();
    assert!(text.contains("web-frontend"), "{text}");
    for secret in [UPSTREAM_KEY, CLIENT_KEY, ADMIN_KEY] {
        assert!(!text.contains(secret), "a secret on the status: {text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_admin_key_the_surface_is_closed_on_listen_and_open_on_admin_listen() {
    let mock = MockProcess::start(&["--key", &format!("{UPSTREAM_KEY}:600")]);
    let dir = config(&mock, "");
    let path = dir.path().join("paceline.toml");
    let mut serve = ServeProcess::start_on(
        "0.0.0.0:0",
        &[
            "--config",
            path.to_str().expect("utf-8 path"),
            "--admin-listen",
            "127.0.0.1:0",
        ],
        &[("UPSTREAM_KEY", UPSTREAM_KEY), ("CLIENT_WEB", CLIENT_KEY)],
    );
    let line = serve.stdout_line();
    let admin = line
        .strip_prefix("status page and /metrics on ")
        .unwrap_or_else(|| panic!("no admin address: {line:?}"))
        .to_string();
    for path in ADMIN_PATHS {
        let closed = get(&serve.url(path), Some(&format!("Bearer {CLIENT_KEY}"))).await;
        assert_eq!(closed.status(), 403, "{path} on listen");
        let body: Value = closed.json().await.expect("error JSON");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("admin_key_env") && message.contains("admin_listen"),
            "{message}"
        );
        let open = get(&format!("{admin}{path}"), None).await;
        assert_eq!(open.status(), 200, "{path} on admin_listen");
    }
    // The admin address serves nothing of the API.
    let api = reqwest::Client::new()
        .post(format!("{admin}/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .json(&json!({"model": "m", "messages": []}))
        .send()
        .await
        .expect("POST");
    assert_eq!(api.status(), 404);
}

//! `MockProcess`: the real `paceline mock` binary on a free loopback port, killed on drop.

use super::listening::spawn;
use std::io::BufReader;
use std::net::SocketAddr;
use std::process::{Child, ChildStdout, Command};

/// A running `paceline mock --listen 127.0.0.1:0 ARGS...`.
pub struct MockProcess {
    child: Child,
    addr: SocketAddr,
    // Held so the mock's stdout stays open for as long as it runs.
    _stdout: BufReader<ChildStdout>,
}

impl MockProcess {
    /// Spawn the mock with extra arguments and wait for its `listening on http://ADDR` line.
    pub fn start(args: &[&str]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_paceline"));
        command.args(["mock", "--listen", "127.0.0.1:0"]).args(args);
        let server = spawn(command, &format!("paceline mock {args:?}"));
        Self {
            child: server.child,
            addr: server.addr,
            _stdout: server.stdout,
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// `http://ADDR` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `GET /_mock/stats`.
    pub async fn stats(&self) -> serde_json::Value {
        reqwest::get(self.url("/_mock/stats"))
            .await
            .expect("GET /_mock/stats")
            .json()
            .await
            .expect("stats JSON")
    }

    /// `POST /_mock/reset`.
    pub async fn reset(&self) {
        let status = reqwest::Client::new()
            .post(self.url("/_mock/reset"))
            .send()
            .await
            .expect("POST /_mock/reset")
            .status();
        assert!(status.is_success(), "reset answered {status}");
    }
}

impl Drop for MockProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small chat request body.
pub fn chat_body(model: &str, content: &str, max_tokens: u64) -> serde_json::Value {
    serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens
    })
}

/// POST `body` as JSON to `url` with an optional bearer key.
pub async fn post(url: &str, key: Option<&str>, body: &serde_json::Value) -> reqwest::Response {
    let mut req = reqwest::Client::new().post(url).json(body);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    req.send().await.expect("request to the mock")
}

/// A header as a string ("" when absent).
pub fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

//! `ServeProcess`: the real `paceline serve` binary on a free loopback port, killed on drop.
//! Its stderr (the JSON access log) is collected for assertions.

use super::listening::spawn;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdout, Command, ExitStatus};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `paceline serve --listen 127.0.0.1:0 ARGS...`.
pub struct ServeProcess {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    stdout: BufReader<ChildStdout>,
    admin_key: Option<String>,
}

impl ServeProcess {
    /// Spawn the gateway with `args` and environment `envs`, and wait for its
    /// `listening on http://ADDR` line.
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Self {
        Self::start_on("127.0.0.1:0", args, envs)
    }

    /// [`ServeProcess::start`] listening on `listen` (an unspecified address such as
    /// `0.0.0.0:0` is reached on loopback).
    pub fn start_on(listen: &str, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_paceline"));
        command
            .args(["serve", "--listen", listen])
            .args(args)
            .env_remove("PACELINE_LOG")
            .envs(envs.iter().copied());
        let server = spawn(command, &format!("paceline serve {args:?}"));
        let (mut child, mut addr, stdout) = (server.child, server.addr, server.stdout);
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("serve stderr");
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self {
            child,
            addr,
            log,
            stdout,
            admin_key: None,
        }
    }

    /// Send `key` as the admin credential when reading `/metrics` (for a gateway started with
    /// `admin_key_env` naming a variable that holds it).
    pub fn with_admin_key(mut self, key: &str) -> Self {
        self.admin_key = Some(key.to_string());
        self
    }

    /// The next line the gateway printed on stdout after `listening on`.
    pub fn stdout_line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read serve stdout");
        line.trim_end().to_string()
    }

    /// `http://ADDR/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// `http://ADDR` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the process (`VmRSS` in `/proc/PID/status`), in KiB.
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.child.id())
    }

    /// The log lines written so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// `GET /metrics`.
    pub async fn metrics(&self) -> String {
        let mut request = reqwest::Client::new().get(self.url("/metrics"));
        if let Some(key) = &self.admin_key {
            request = request.bearer_auth(key);
        }
        request
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Send SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Wait for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let until = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < until,
                "the gateway did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of metric line `name{labels}` (exact prefix up to the value), if present.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

/// Resident memory of process `pid` (`VmRSS` in `/proc/PID/status`), in KiB; 0 once it is gone.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix("VmRSS:")?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0)
}

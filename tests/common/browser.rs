//! Debian's headless `chromium` on loopback or `file://` pages: the DOM after the page's
//! scripts ran (with the errors they recorded) and a screenshot artifact.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Where screenshots go: `target/test-artifacts/`.
pub fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/test-artifacts");
    dir
}

/// The chromium binary; the test fails when it is missing (`.ci/run` installs it).
fn binary() -> PathBuf {
    for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!("chromium is not installed (apt-get install -y chromium; .ci/run does it)");
}

/// What one headless visit produced.
pub struct Visit {
    /// The DOM after the scripts ran.
    pub dom: String,
    /// Chromium's log (console messages appear as `CONSOLE` / `Uncaught` lines).
    pub log: String,
}

impl Visit {
    /// JavaScript errors: recorded by the page on its root element, or logged by chromium.
    pub fn js_errors(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if let Some(at) = self.dom.find("data-js-errors=\"") {
            let rest = &self.dom[at + 16..];
            errors.push(rest[..rest.find('"').unwrap_or(rest.len())].to_string());
        }
        errors.extend(
            self.log
                .lines()
                .filter(|l| l.contains("Uncaught") || l.contains(":ERROR:CONSOLE"))
                .map(str::to_string),
        );
        errors
    }
}

fn run(url: &str, extra: &[String], budget_ms: u64) -> (String, String) {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut cmd = Command::new(binary());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .arg(format!("--virtual-time-budget={budget_ms}"))
    .args(extra)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let child = cmd.spawn().expect("start chromium");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(90)) {
        Ok(out) => out.expect("chromium output"),
        Err(_) => {
            // SAFETY: kill(2) on the chromium process this test started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("chromium did not finish within 90 s on {url}");
        }
    };
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Load `url`, let its scripts run for `budget_ms` of virtual time, and return the DOM; then
/// save a 1280×`height` screenshot to `screenshot`.
pub fn visit(url: &str, budget_ms: u64, screenshot: &Path, height: u32) -> Visit {
    let (dom, log) = run(url, &["--dump-dom".to_string()], budget_ms);
    let (_, shot_log) = run(
        url,
        &[
            format!("--screenshot={}", screenshot.display()),
            format!("--window-size=1280,{height}"),
        ],
        budget_ms,
    );
    assert!(
        screenshot.exists(),
        "no screenshot at {}: {shot_log}",
        screenshot.display()
    );
    Visit {
        dom,
        log: log + &shot_log,
    }
}

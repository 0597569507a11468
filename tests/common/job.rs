//! Running the real `paceline` binary on real files: inputs, outputs, processes, signals.

use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The API key the tests use.
pub const KEY: &str = "sk-test-very-secret-key-0001";

/// A temporary directory for one test's files.
pub struct Workdir {
    dir: TempDir,
}

impl Workdir {
    /// A fresh directory.
    pub fn new() -> Self {
        Workdir {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// A path inside it.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Write a file and return its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).expect("write file");
        path
    }

    /// Batch API JSONL of `n` small chat requests with ids `r0..`.
    pub fn batch(&self, name: &str, n: usize) -> PathBuf {
        self.write(name, &batch_text(n))
    }
}

/// Batch API JSONL text of `n` small chat requests with ids `r0..`.
pub fn batch_text(n: usize) -> String {
    (0..n)
        .map(|i| {
            json!({
                "custom_id": format!("r{i}"),
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {
                    "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": format!("Say hello number {i}")}],
                    "max_tokens": 8
                }
            })
            .to_string()
                + "\n"
        })
        .collect()
}

/// A path as `&str`.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_paceline"));
    cmd.args(args)
        .env("OPENAI_API_KEY", KEY)
        .env_remove("PACELINE_LOG");
    cmd
}

/// Run `paceline ARGS` to its end.
pub fn paceline(args: &[&str]) -> Output {
    command(args).output().expect("run paceline")
}

/// Start `paceline ARGS` in the background (stdout and stderr discarded).
pub fn spawn(args: &[&str]) -> Child {
    command(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn paceline")
}

/// Its stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Its stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Send `signal` (a libc signal number) to a child.
pub fn signal(child: &Child, signal: i32) {
    let pid = i32::try_from(child.id()).expect("pid fits");
    // SAFETY: kill(2) with a pid we own and a valid signal number has no memory effects.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
}

/// Wait for a child to exit, for at most `limit`.
pub fn wait_for(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let until = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The custom_ids of the complete lines of an output, in order (a torn last line is ignored).
pub fn output_ids(path: &Path) -> Vec<String> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    complete
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("output line is JSON");
            v["custom_id"].as_str().expect("custom_id").to_string()
        })
        .collect()
}

/// Complete output lines so far.
pub fn output_lines(path: &Path) -> usize {
    std::fs::read(path)
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}

/// Panic if any custom_id appears twice; return them as a set.
pub fn unique(ids: &[String]) -> HashSet<String> {
    let mut set = HashSet::new();
    for id in ids {
        assert!(set.insert(id.clone()), "{id} is in the output twice");
    }
    set
}

/// The ids `r0..r{n-1}`.
pub fn all_ids(n: usize) -> HashSet<String> {
    (0..n).map(|i| format!("r{i}")).collect()
}

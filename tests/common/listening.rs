//! Spawning a `paceline` server process and waiting for its `listening on http://ADDR` line.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, ChildStdout, Command, Stdio};

/// A spawned server: the child (stderr still piped), its address, and its stdout, which must be
/// held so the server's stdout stays open for as long as it runs.
pub struct Listening {
    /// The process.
    pub child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its stdout, past the first line.
    pub stdout: BufReader<ChildStdout>,
}

/// Spawn `command` (stdout and stderr piped) and wait for its first line, `listening on
/// http://ADDR`; `what` names it in panics.
pub fn spawn(mut command: Command, what: &str) -> Listening {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    let read = stdout
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("read the first line of {what}: {e}"));
    if read == 0 {
        let mut err = String::new();
        if let Some(mut stderr) = child.stderr.take() {
            let _ = stderr.read_to_string(&mut err);
        }
        let _ = child.wait();
        panic!("{what} exited before listening: {err}");
    }
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("{what}: unexpected first line {line:?}"))
        .parse()
        .expect("a socket address");
    Listening {
        child,
        addr,
        stdout,
    }
}

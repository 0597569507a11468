//! The background log writer: each line is formatted on the thread that logs it and copied
//! into a shared buffer; a thread of its own writes the buffer out every [`FLUSH_EVERY`] while
//! lines come, and sleeps while none do.
//!
//! Why not `tracing-appender`'s non-blocking writer: it hands each line to its thread through a
//! channel, so a gateway busy at 2,000 requests/s woke that thread (which spins on
//! `sched_yield` before it sleeps) and wrote the file once per request: 1.5 context switches and
//! some 3 system calls per request, a sixth of the gateway's CPU. Here a line costs a short
//! lock and a copy; the thread wakes at most once per interval.
//!
//! Bounded: past [`MAX_BUFFERED`] bytes waiting, new lines are dropped and counted, and a line
//! saying how many is written once the writer catches up (the log must never hold up a request).
//!
//! Closing ([`FlushGuard`]'s drop, or [`close_all`] before an exit that skips destructors)
//! writes what is buffered, and the thread hands the output back: a line logged after that is
//! written at once by the thread that logs it, so an exit loses no line logged before it.
//!
//! It must not know what a line says or which subscriber formatted it: it moves bytes to a writer.

use parking_lot::{Condvar, Mutex};
use std::io::Write;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How long lines may wait before they reach the file.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);

/// Bytes that may wait for the writer before new lines are dropped.
pub const MAX_BUFFERED: usize = 8 << 20;

/// A spare buffer larger than this after a burst is freed rather than kept.
const KEEP_CAPACITY: usize = 256 << 10;

#[derive(Default)]
struct State {
    lines: Vec<u8>,
    dropped: u64,
    closed: bool,
    /// The thread wrote its last lines and stopped.
    finished: bool,
    /// The output, handed back by the stopped thread: a line that comes later is written at
    /// once (the process is exiting; nothing is left to batch for).
    parked: Option<Box<dyn Write + Send>>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the writer thread (lines came, or a close).
    wake: Condvar,
    /// Wakes [`close_all`] when the thread has finished.
    finished: Condvar,
}

impl Shared {
    /// Stop taking lines and ask the thread to write what it holds.
    fn close(&self) {
        self.state.lock().closed = true;
        self.wake.notify_one();
    }
}

/// Writers that can be closed together; the process's own is [`WRITERS`].
struct Registry {
    writers: Mutex<Vec<std::sync::Weak<Shared>>>,
}

impl Registry {
    const fn new() -> Self {
        Registry {
            writers: Mutex::new(Vec::new()),
        }
    }

    fn add(&self, shared: &Arc<Shared>) {
        let mut writers = self.writers.lock();
        writers.retain(|w| w.strong_count() > 0);
        writers.push(Arc::downgrade(shared));
    }

    fn close_all(&self, within: Duration) {
        let deadline = std::time::Instant::now() + within;
        let writers: Vec<Arc<Shared>> = self
            .writers
            .lock()
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .collect();
        for shared in &writers {
            shared.close();
        }
        for shared in &writers {
            let mut state = shared.state.lock();
            while !state.finished {
                if shared.finished.wait_until(&mut state, deadline).timed_out() {
                    return;
                }
            }
        }
    }
}

/// Every writer started in this process, for [`close_all`].
static WRITERS: Registry = Registry::new();

/// Close every writer of the process and wait (at most `within`) until each has written what
/// it held: for an exit that skips destructors (`std::process::exit`). Lines logged afterwards
/// are written at once, by the thread that logs them.
pub fn close_all(within: Duration) {
    WRITERS.close_all(within);
}

/// Where log lines go: a [`tracing_subscriber::fmt::MakeWriter`]. Cheap to clone.
#[derive(Clone)]
pub struct LineWriter {
    shared: Arc<Shared>,
}

/// Keeps the writer thread running; dropping it writes what is buffered and stops the thread
/// (a line logged later is written at once).
pub struct FlushGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Start the writer thread for `out`.
pub fn spawn<W: Write + Send + 'static>(out: W) -> std::io::Result<(LineWriter, FlushGuard)> {
    spawn_in(&WRITERS, out)
}

fn spawn_in<W: Write + Send + 'static>(
    registry: &Registry,
    out: W,
) -> std::io::Result<(LineWriter, FlushGuard)> {
    let shared = Arc::new(Shared::default());
    registry.add(&shared);
    let thread = std::thread::Builder::new()
        .name("paceline-log".into())
        .spawn({
            let shared = Arc::clone(&shared);
            move || run(&shared, out)
        })?;
    Ok((
        LineWriter {
            shared: Arc::clone(&shared),
        },
        FlushGuard {
            shared,
            thread: Some(thread),
        },
    ))
}

fn run<W: Write + Send + 'static>(shared: &Shared, mut out: W) {
    let mut spare = Vec::new();
    let mut failing = false;
    loop {
        let (dropped, closed) = {
            let mut state = shared.state.lock();
            while state.lines.is_empty() && state.dropped == 0 && !state.closed {
                shared.wake.wait(&mut state);
            }
            if !state.closed {
                // Let lines gather for one interval (a close ends the wait early).
                shared.wake.wait_for(&mut state, FLUSH_EVERY);
            }
            std::mem::swap(&mut state.lines, &mut spare);
            (std::mem::take(&mut state.dropped), state.closed)
        };
        if dropped > 0 {
            let note = serde_json::json!({
                "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "level": "WARN",
                "message": format!("{dropped} log lines were dropped: the log could not be written as fast as they came"),
                "target": "paceline::log",
            });
            spare.extend_from_slice(note.to_string().as_bytes());
            spare.push(b'\n');
        }
        let written = out.write_all(&spare).and_then(|()| out.flush());
        match written {
            Err(err) if !failing => {
                failing = true;
                eprintln!(
                    "paceline: writing the log failed ({err}); lines are lost until it works again"
                );
            }
            Err(_) => {}
            Ok(()) => failing = false,
        }
        spare.clear();
        if spare.capacity() > KEEP_CAPACITY {
            spare = Vec::new();
        }
        // Once closed, no line is taken any more: the last swap took them all.
        if closed {
            // Lines that came after the last swap, then the output goes back for later ones.
            let mut state = shared.state.lock();
            let late = std::mem::take(&mut state.lines);
            let _ = out.write_all(&late).and_then(|()| out.flush());
            state.parked = Some(Box::new(out));
            state.finished = true;
            drop(state);
            shared.finished.notify_all();
            return;
        }
    }
}

impl LineWriter {
    fn push(&self, line: &[u8]) {
        let mut state = self.shared.state.lock();
        if let Some(out) = state.parked.as_mut() {
            let _ = out.write_all(line).and_then(|()| out.flush());
            return;
        }
        if state.lines.len() + line.len() > MAX_BUFFERED {
            state.dropped += 1;
            return;
        }
        let was_empty = state.lines.is_empty();
        state.lines.extend_from_slice(line);
        if was_empty {
            self.shared.wake.notify_one();
        }
    }
}

impl Write for &LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LineWriter {
    type Writer = &'a LineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` into shared memory that counts its writes.
    #[derive(Clone, Default)]
    struct Sink {
        bytes: Arc<Mutex<Vec<u8>>>,
        writes: Arc<Mutex<usize>>,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.bytes.lock().extend_from_slice(buf);
            *self.writes.lock() += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_arrive_in_order_and_together_and_all_by_the_drop() {
        let sink = Sink::default();
        let (writer, guard) = spawn(sink.clone()).unwrap();
        for i in 0..1000 {
            (&writer)
                .write_all(format!("line {i}\n").as_bytes())
                .unwrap();
        }
        drop(guard);
        let text = String::from_utf8(sink.bytes.lock().clone()).unwrap();
        let want: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(text, want);
        // Written in a few large writes, not one per line.
        assert!(*sink.writes.lock() < 10, "{} writes", sink.writes.lock());
    }

    #[test]
    fn close_all_writes_what_every_writer_holds_without_the_guards() {
        let registry = Registry::new();
        let sinks = [Sink::default(), Sink::default()];
        let started: Vec<_> = sinks
            .iter()
            .map(|sink| spawn_in(&registry, sink.clone()).unwrap())
            .collect();
        for (writer, _) in &started {
            for i in 0..100 {
                writer.push(format!("line {i}\n").as_bytes());
            }
        }
        // Well inside the flush interval: nothing would have been written yet on its own.
        registry.close_all(Duration::from_secs(5));
        let want: String = (0..100).map(|i| format!("line {i}\n")).collect();
        for sink in &sinks {
            assert_eq!(String::from_utf8(sink.bytes.lock().clone()).unwrap(), want);
        }
        // A line logged after the close is written at once; the guards still stop cleanly.
        started[0].0.push(b"late\n");
        let text = String::from_utf8(sinks[0].bytes.lock().clone()).unwrap();
        assert!(text.ends_with("line 99\nlate\n"), "{text}");
        drop(started);
    }

    #[test]
    fn a_line_reaches_the_output_within_the_interval() {
        let sink = Sink::default();
        let (writer, _guard) = spawn(sink.clone()).unwrap();
        (&writer).write_all(b"hello\n").unwrap();
        let deadline = std::time::Instant::now() + FLUSH_EVERY * 40;
        while sink.bytes.lock().is_empty() {
            assert!(std::time::Instant::now() < deadline, "never written");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(sink.bytes.lock().as_slice(), b"hello\n");
    }

    #[test]
    fn an_overfull_buffer_drops_lines_and_says_how_many() {
        /// An output that blocks until released, so lines pile up.
        struct Gate(Arc<(Mutex<bool>, Condvar)>, Sink);
        impl Write for Gate {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                let mut open = self.0.0.lock();
                while !*open {
                    self.0.1.wait(&mut open);
                }
                self.1.write(buf)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let sink = Sink::default();
        let (writer, guard) = spawn(Gate(Arc::clone(&gate), sink.clone())).unwrap();
        // The first line goes to the (blocked) output; the rest fill the buffer and overflow.
        (&writer).write_all(b"first\n").unwrap();
        std::thread::sleep(FLUSH_EVERY * 3);
        let mut line = vec![b'x'; 1023];
        line.push(b'\n');
        let lines = MAX_BUFFERED / 1024 + 10;
        for _ in 0..lines {
            (&writer).write_all(&line).unwrap();
        }
        *gate.0.lock() = true;
        gate.1.notify_all();
        drop(guard);
        let text = String::from_utf8(sink.bytes.lock().clone()).unwrap();
        assert!(text.starts_with("first\n"));
        let kept = text.lines().filter(|l| l.starts_with('x')).count();
        assert!(
            kept < lines && kept >= MAX_BUFFERED / 1024 - 1,
            "kept {kept}"
        );
        let note = text.lines().last().unwrap();
        let note: serde_json::Value = serde_json::from_str(note).unwrap();
        assert_eq!(note["level"], "WARN");
        assert!(
            note["message"]
                .as_str()
                .unwrap()
                .contains("log lines were dropped")
        );
    }
}

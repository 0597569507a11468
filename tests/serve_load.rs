//! `paceline serve` under connection load, over real loopback HTTP in front of `paceline mock`:
//! 1,000 concurrent streams with slow readers and clients that hang up mid-stream, and slow
//! readers of large streams (the relay must apply backpressure, not buffer the stream).
//!
//! The clients are raw HTTP/1.1 over `TcpStream`, so "slow" means what it says: bytes stay in
//! the kernel's socket buffers until the client reads them, and once those are full the
//! gateway's writes wait.

mod common;

use common::mock::MockProcess;
use common::serve::ServeProcess;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const UPSTREAM_KEY: &str = "sk-upstream-secret-0123456789";

/// The mock's mean answer length: drawn uniformly up to twice this, so every answer is as long
/// as its `max_tokens` allows (short only with odds of about one in a million).
const LONG_ANSWERS: &str = "2000000000";

/// File descriptors this test needs: the test process holds one socket per client, the gateway
/// two (client and upstream) and the mock one; the children inherit the limit set here.
const FDS_NEEDED: u64 = 4096;

/// Raise the soft limit on open files to at least `want` (within the hard limit). Returns the
/// soft limit in force afterwards.
fn raise_fd_limit(want: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < want {
            limit.rlim_cur = want.min(limit.rlim_max);
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
            }
        }
    }
    limit.rlim_cur
}

fn gateway(mock: &MockProcess) -> ServeProcess {
    let upstream = mock.base_url();
    ServeProcess::start(
        &[
            "--base-url",
            upstream.as_str(),
            "--api-key-env",
            "UPSTREAM_KEY",
        ],
        &[("UPSTREAM_KEY", UPSTREAM_KEY)],
    )
}

/// One small request through the gateway, so that its idle figure includes what every
/// running gateway holds (the tokenizer is built on a model family's first request).
async fn warm_up(serve: &ServeProcess) {
    let reply = reqwest::Client::new()
        .post(serve.url("/v1/chat/completions"))
        .json(&json!({
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 2
        }))
        .send()
        .await
        .expect("the warm-up request");
    assert_eq!(reply.status(), 200);
    // The gateway builds the model family's tokenizer in the background (requests do not
    // wait for it): idle is once its resident memory has stopped growing.
    let mut last = serve.rss_kib();
    let mut still = 0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = serve.rss_kib();
        still = if now == last { still + 1 } else { 0 };
        last = now;
        if still >= 5 {
            break;
        }
    }
}

/// How a client reads its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reader {
    /// Reads as fast as the bytes come.
    Normal,
    /// Reads `chunk` bytes, then sleeps `pause`, until the end.
    Slow { chunk: usize, pause: Duration },
    /// Hangs up once the first event has arrived.
    HangsUp,
    /// Reads the headers, stops reading for `pause`, then reads the rest at once.
    Stalls { pause: Duration },
}

/// What a client got: the status and the decoded body (empty for one that hung up).
struct Got {
    status: u16,
    body: Vec<u8>,
}

/// POST `body` to the gateway's chat route over a fresh connection and read the answer as
/// `reader` says.
async fn stream_chat(addr: SocketAddr, body: &Value, reader: Reader) -> Got {
    let payload = body.to_string();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{payload}",
        payload.len()
    );
    let mut socket = TcpStream::connect(addr).await.expect("connect");
    socket
        .write_all(request.as_bytes())
        .await
        .expect("send the request");
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    // Headers first (any reader reads them promptly).
    let head_end = loop {
        if let Some(at) = find(&raw, b"\r\n\r\n") {
            break at + 4;
        }
        let n = socket.read(&mut buf).await.expect("read the headers");
        assert!(n > 0, "the gateway closed before the headers");
        raw.extend_from_slice(&buf[..n]);
    };
    let status: u16 = std::str::from_utf8(&raw[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    match reader {
        Reader::HangsUp => {
            while !contains(&raw[head_end..], b"\n\n") {
                let n = socket.read(&mut buf).await.expect("read the first event");
                assert!(n > 0, "the stream ended before its first event");
                raw.extend_from_slice(&buf[..n]);
            }
            drop(socket);
            return Got {
                status,
                body: Vec::new(),
            };
        }
        Reader::Normal => {
            socket.read_to_end(&mut raw).await.expect("read the stream");
        }
        Reader::Slow { chunk, pause } => loop {
            let n = socket
                .read(&mut buf[..chunk])
                .await
                .expect("read the stream slowly");
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
            tokio::time::sleep(pause).await;
        },
        Reader::Stalls { pause } => {
            tokio::time::sleep(pause).await;
            socket.read_to_end(&mut raw).await.expect("read the stream");
        }
    }
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(&raw[head_end..])
    } else {
        raw[head_end..].to_vec()
    };
    Got { status, body }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

/// Decode an HTTP/1.1 chunked body; panics on a malformed or unterminated one.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(line) = find(raw, b"\r\n") else {
            panic!(
                "no chunk size line in {:?}",
                String::from_utf8_lossy(&raw[..raw.len().min(300)])
            );
        };
        let size = std::str::from_utf8(&raw[..line])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
            .expect("a hexadecimal chunk size");
        raw = &raw[line + 2..];
        if size == 0 {
            return out;
        }
        assert!(raw.len() >= size + 2, "the body was cut inside a chunk");
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// The events of an SSE body.
fn events(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(str::to_string)
        .collect()
}

/// Sample `pid`'s resident memory every 20 ms until `stop`; the peak, in KiB.
fn watch_rss(pid: u32, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    let peak = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        while !stop.load(Ordering::SeqCst) {
            peak.fetch_max(common::serve::rss_kib(pid), Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        peak.load(Ordering::SeqCst)
    })
}

async fn mock_totals(mock: &MockProcess) -> (u64, u64) {
    let stats = mock.stats().await;
    let totals = &stats["totals"];
    (
        totals["requests"].as_u64().unwrap_or(0),
        totals["ok"].as_u64().unwrap_or(0),
    )
}

/// What the gateway may grow by per open stream, over its idle resident memory. Each stream
/// holds two HTTP/1 connections (the client's and the upstream one), and hyper gives each an
/// 8 KiB read buffer and an 8 KiB write buffer; add the connection tasks, the relay and the
/// engine's bookkeeping: 47–49 KiB per stream measured (release build). 64 KiB leaves room for
/// the allocator's slack; anything that buffered a stream's body would show as more.
const RSS_PER_STREAM_KIB: u64 = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_streams_with_slow_readers_and_hang_ups() {
    let fds = raise_fd_limit(FDS_NEEDED);
    assert!(
        fds >= 3000,
        "this test needs about 3,000 open files per process; the hard limit allows {fds} \
         (raise it with `ulimit -Hn`)"
    );
    // 20 tokens, 100 ms apart: every stream lasts about two seconds.
    let mock = MockProcess::start(&[
        "--ms-per-token",
        "100",
        "--completion-tokens",
        LONG_ANSWERS,
        "--seed",
        "11",
    ]);
    let serve = gateway(&mock);
    let addr: SocketAddr = serve
        .url("")
        .trim_start_matches("http://")
        .parse()
        .expect("the gateway's address");
    warm_up(&serve).await;
    let idle_kib = serve.rss_kib();

    let mut body = json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Tell me a story"}],
        "max_tokens": 20,
        "stream": true
    });
    let stop = Arc::new(AtomicBool::new(false));
    let peak = watch_rss(serve.pid(), Arc::clone(&stop));
    let started = Instant::now();
    let clients: Vec<_> = (0..1000)
        .map(|i| {
            let reader = match i % 10 {
                0 | 1 => Reader::Slow {
                    chunk: 256,
                    pause: Duration::from_millis(100),
                },
                2 | 3 => Reader::HangsUp,
                _ => Reader::Normal,
            };
            let body = body.clone();
            tokio::spawn(async move { (reader, stream_chat(addr, &body, reader).await) })
        })
        .collect();
    let mut complete = 0;
    let mut hung_up = 0;
    for client in clients {
        let (reader, got) = client.await.expect("a client task");
        assert_eq!(got.status, 200, "{reader:?}");
        if reader == Reader::HangsUp {
            hung_up += 1;
            continue;
        }
        let events = events(&got.body);
        assert_eq!(events.len(), 20 + 3, "{reader:?}: {events:?}");
        assert_eq!(events.last().map(String::as_str), Some("data: [DONE]"));
        complete += 1;
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let peak_kib = peak.await.expect("the RSS sampler");
    eprintln!(
        "1,000 streams in {elapsed:?}; gateway RSS idle {} MiB, peak {} MiB",
        idle_kib / 1024,
        peak_kib / 1024
    );
    assert_eq!((complete, hung_up), (800, 200));
    let bound_kib = idle_kib + 1000 * RSS_PER_STREAM_KIB;
    assert!(
        peak_kib <= bound_kib,
        "the gateway reached {peak_kib} KiB with 1,000 streams (idle {idle_kib} KiB, bound \
         {bound_kib} KiB)"
    );

    // Still up: healthy, and a normal request is answered.
    let health = reqwest::get(serve.url("/healthz")).await.expect("/healthz");
    assert_eq!(health.status(), 200);
    body["stream"] = json!(false);
    body["max_tokens"] = json!(2);
    let resp = reqwest::Client::new()
        .post(serve.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .expect("a normal request");
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.expect("a chat completion");
    assert_eq!(answer["object"], "chat.completion");

    // The hang-ups reached the mock as cancelled streams: it did not finish them, though
    // their streams would have ended with the others' by now. (Beside the 800: the warm-up
    // request and this last one.) On a loaded machine a few hang-ups can be noticed only
    // after their 2-second stream has ended; nearly all must have been cut.
    let (requests, ok) = mock_totals(&mock).await;
    assert_eq!(requests, 1002);
    assert!(
        (802..=812).contains(&ok),
        "the mock finished {} streams whose client had hung up",
        ok.saturating_sub(802)
    );
    let gone = serve
        .log()
        .iter()
        .filter(|l| l.contains("\"outcome\":\"client_gone\""))
        .count();
    assert_eq!(gone, 200);
}

/// Slow readers of large streams: the gateway reads from the provider only as fast as the
/// client takes the bytes, so what it holds per stream stays small whatever the stream's size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_readers_of_large_streams_do_not_make_the_gateway_buffer() {
    raise_fd_limit(FDS_NEEDED);
    // No pacing: the mock writes each stream as fast as it can be taken.
    let mock = MockProcess::start(&["--completion-tokens", LONG_ANSWERS, "--seed", "12"]);
    let serve = gateway(&mock);
    let addr: SocketAddr = serve
        .url("")
        .trim_start_matches("http://")
        .parse()
        .expect("the gateway's address");
    // 8 choices × 3,000 tokens: about 24,000 events, 5–6 MB per stream.
    let body = json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Tell me a long story"}],
        "max_tokens": 3000,
        "n": 8,
        "stream": true
    });
    const CLIENTS: usize = 8;
    const STALL: Duration = Duration::from_secs(3);
    warm_up(&serve).await;
    let idle_kib = serve.rss_kib();
    let stop = Arc::new(AtomicBool::new(false));
    let peak = watch_rss(serve.pid(), Arc::clone(&stop));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let body = body.clone();
            tokio::spawn(
                async move { stream_chat(addr, &body, Reader::Stalls { pause: STALL }).await },
            )
        })
        .collect();
    let mut total = 0;
    for client in clients {
        let got = client.await.expect("a client task");
        assert_eq!(got.status, 200);
        let events = events(&got.body);
        assert_eq!(events.last().map(String::as_str), Some("data: [DONE]"));
        assert_eq!(events.len(), 8 * (3000 + 2) + 1);
        total += got.body.len();
    }
    stop.store(true, Ordering::SeqCst);
    let peak_kib = peak.await.expect("the RSS sampler");
    let grew_kib = peak_kib.saturating_sub(idle_kib);
    eprintln!(
        "{CLIENTS} stalled readers of {} MiB in all: gateway RSS idle {} MiB, peak {} MiB",
        total / (1024 * 1024),
        idle_kib / 1024,
        peak_kib / 1024
    );
    // Buffering the streams would have cost `total` bytes; backpressure leaves hyper's buffers
    // and one upstream chunk per stream.
    assert!(
        (grew_kib as usize) * 1024 < total / 4,
        "the gateway grew by {grew_kib} KiB while {total} bytes waited for slow readers"
    );
}

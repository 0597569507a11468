//! Gateway benchmark (issue 5): what `paceline serve` adds in front of a provider, measured with
//! real HTTP on loopback against `paceline mock` (zero latency, no limits to speak of).
//!
//! ```text
//! cargo bench --bench gateway -- [latency|start|throughput|streams|tracing|spans|all] [--rate N] [--secs S] [--rounds N]
//! ```
//!
//! * **latency**: an open-loop load generator sends non-streaming chat requests at a fixed rate
//!   (default 2,000 req/s for 10 s, after 2 s of warm-up), first straight to the mock, then
//!   through the gateway. A dispatcher thread schedules request *i* at `start + i / rate` and
//!   each latency is measured from that scheduled time, not from when the request actually went
//!   out, so a stall delays every request behind it in the figures too (no coordinated
//!   omission). Reported: p50, p90, p99, p99.9 and max of each, and the gateway's added p50 and
//!   p99 (the difference of the percentiles). The pair runs `--rounds` times (default 5)
//!   alternately, and the median of the rounds' differences is the figure: on a small shared
//!   machine one round's p99 swings by milliseconds with whatever else is scheduled. The
//!   gateway's CPU time and context switches per request (from `/proc`) are printed too: they
//!   do not depend on what else runs.
//! * **start**: the same open loop at 500 req/s from the moment a new gateway (and a new mock
//!   behind it) says it listens, for `--secs` (default 10), then for as long again ("later");
//!   beside it, the same two periods straight to a new mock. Reported: p99 and p99.9 of each
//!   period and the gateway's added p99 / p99.9 in each (a request must not wait for a model
//!   family's tokenizer to be built); `--rounds` rounds (default 1 for this mode unless given).
//! * **throughput**: a closed loop of 64 connections sends back to back for the same duration;
//!   completed requests per second, direct and through the gateway.
//! * **streams**: 1,000 concurrent streaming requests through the gateway (the mock spreads 20
//!   tokens over 2 s), read to the end; the gateway's peak resident memory (`VmRSS`), sampled
//!   every 20 ms, beside its idle figure.
//! * **tracing**: what exporting traces (`--otlp-endpoint`) costs, side by side in one run,
//!   `--rounds` rounds (default 3) alternating: the latency mode's open loop straight to the
//!   mock, through a gateway without traces and through one exporting to an OTLP receiver in
//!   this process (the added p50 / p99 of each, their CPU time per request); closed loops at
//!   the same time (so that both share the machine's moments) through a gateway without traces
//!   and through one whose collector is down (nothing listens on its port); and `paceline run`
//!   over 20,000 requests without traces, exporting them, and with the collector down (CPU
//!   time per request of the run's process, from `getrusage`); then (alone: **spans**) a
//!   request's tracing work in this process, with the collector taking spans and once an
//!   export failed; (alone: **dead-collector**) the closed-loop pairing only, `--rounds`
//!   rounds (default 16), each followed by the same pairing of two gateways without traces.
//!
//! Both processes are the release binary (`CARGO_BIN_EXE_paceline`, or `PACELINE_BIN` when set:
//! a copy keeps a shared target directory's rebuilds out of a run); the gateway writes its
//! access log to a temporary file as a deployment would. The load generator shares the machine,
//! so on a small one it competes with what it measures: the 1-minute load average is printed
//! with every figure.

use bytes::Bytes;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const UPSTREAM_KEY: &str = "sk-bench-upstream";

/// A `paceline` subcommand on a free loopback port, killed on drop.
struct Process {
    child: Child,
    addr: SocketAddr,
    _stdout: BufReader<ChildStdout>,
}

impl Process {
    fn start(args: &[&str]) -> Process {
        let bin = std::env::var_os("PACELINE_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_paceline").into());
        let mut child = Command::new(bin)
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .env("UPSTREAM_KEY", UPSTREAM_KEY)
            .env_remove("PACELINE_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn paceline");
        let mut stdout = BufReader::new(child.stdout.take().expect("its stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("its first line");
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("paceline {args:?} did not start: {line:?}"))
            .parse()
            .expect("a socket address");
        Process {
            child,
            addr,
            _stdout: stdout,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// CPU time used so far (user + system) and context switches (voluntary + involuntary,
    /// all threads): what each request costs the process, whatever else the machine runs.
    fn cpu_and_switches(&self) -> (Duration, u64) {
        let pid = self.child.id();
        let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                // Fields after the command name, which is in parentheses.
                let rest = stat.rsplit_once(')')?.1;
                let fields: Vec<&str> = rest.split_whitespace().collect();
                let utime: u64 = fields.get(11)?.parse().ok()?;
                let stime: u64 = fields.get(12)?.parse().ok()?;
                Some(utime + stime)
            })
            .unwrap_or(0);
        // SAFETY: sysconf only reads a configuration value.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        let mut switches = 0;
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for task in tasks.flatten() {
                let status =
                    std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
                switches += status
                    .lines()
                    .filter(|l| l.contains("ctxt_switches:"))
                    .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                    .sum::<u64>();
            }
        }
        (Duration::from_micros(ticks * 1_000_000 / hz), switches)
    }

    fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
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
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The mock, with limits far above anything sent and `extra` arguments.
fn mock(extra: &[&str]) -> Process {
    let mut args = vec!["mock", "--rpm", "100000000", "--tpm", "100000000000"];
    args.extend_from_slice(extra);
    Process::start(&args)
}

/// The gateway in front of `mock`, logging to `log`.
fn gateway(mock: &Process, log: &std::path::Path) -> Process {
    gateway_with(mock, log, &[])
}

/// [`gateway`] with `extra` arguments.
fn gateway_with(mock: &Process, log: &std::path::Path, extra: &[&str]) -> Process {
    let upstream = format!("http://{}/v1", mock.addr);
    let log = log.display().to_string();
    let mut args = vec![
        "serve",
        "--base-url",
        &upstream,
        "--api-key-env",
        "UPSTREAM_KEY",
        "--log-file",
        &log,
    ];
    args.extend_from_slice(extra);
    Process::start(&args)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn chat_body(stream: bool, max_tokens: u64) -> Bytes {
    Bytes::from(
        serde_json::json!({
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
            "max_tokens": max_tokens,
            "stream": stream
        })
        .to_string(),
    )
}

/// Percentiles of latencies in microseconds.
struct Summary {
    sent: usize,
    failed: usize,
    p: [u64; 5],
}

const QUANTILES: [f64; 5] = [0.50, 0.90, 0.99, 0.999, 1.0];

fn summarize(mut micros: Vec<u64>, failed: usize) -> Summary {
    micros.sort_unstable();
    let at = |q: f64| {
        if micros.is_empty() {
            return 0;
        }
        let i = ((micros.len() as f64 * q).ceil() as usize).clamp(1, micros.len()) - 1;
        micros[i]
    };
    Summary {
        sent: micros.len() + failed,
        failed,
        p: QUANTILES.map(at),
    }
}

fn ms(micros: u64) -> String {
    format!("{:.3}", micros as f64 / 1000.0)
}

/// Send one request; `Ok` when the whole 200 answer was read.
async fn send(client: &reqwest::Client, url: &str, body: Bytes) -> Result<(), String> {
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    resp.bytes().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("status {status}"))
    }
}

/// Open loop at `rate` per second for `secs` (plus `warmup`, not counted): latencies from the
/// scheduled send time.
fn open_loop(
    rt: &tokio::runtime::Runtime,
    url: &str,
    rate: f64,
    warmup: Duration,
    secs: Duration,
) -> Summary {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()
        .expect("a reqwest client");
    let body = chat_body(false, 16);
    let total = ((warmup + secs).as_secs_f64() * rate) as usize;
    let counted_from = (warmup.as_secs_f64() * rate) as usize;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Result<u64, String>)>();
    let handle = rt.handle().clone();
    let url: Arc<str> = url.into();
    let start = Instant::now() + Duration::from_millis(50);
    // The dispatcher: a plain thread sleeping to each scheduled instant, so the schedule does
    // not depend on the runtime it loads.
    let dispatcher = std::thread::spawn(move || {
        for i in 0..total {
            let scheduled = start + Duration::from_secs_f64(i as f64 / rate);
            let now = Instant::now();
            if scheduled > now {
                std::thread::sleep(scheduled - now);
            }
            let (client, url, body, tx) =
                (client.clone(), Arc::clone(&url), body.clone(), tx.clone());
            handle.spawn(async move {
                let result = send(&client, &url, body)
                    .await
                    .map(|()| scheduled.elapsed().as_micros() as u64);
                let _ = tx.send((i, result));
            });
        }
    });
    let mut micros = Vec::with_capacity(total);
    let mut failed = 0;
    let mut errors = std::collections::BTreeMap::<String, usize>::new();
    rt.block_on(async {
        for _ in 0..total {
            let Some((i, result)) = rx.recv().await else {
                break;
            };
            if i < counted_from {
                continue;
            }
            match result {
                Ok(us) => micros.push(us),
                Err(err) => {
                    failed += 1;
                    *errors.entry(err).or_default() += 1;
                }
            }
        }
    });
    let _ = dispatcher.join();
    for (err, n) in errors {
        eprintln!("  {n} × {err}");
    }
    summarize(micros, failed)
}

/// Closed loop: `workers` connections sending back to back for `secs`; completed per second,
/// and completed in all (warm-up included).
fn closed_loop(
    rt: &tokio::runtime::Runtime,
    url: &str,
    workers: usize,
    secs: Duration,
) -> (f64, u64) {
    closed_loops(rt, &[url], workers, secs)[0]
}

/// [`closed_loop`] against each of `urls` at the same time, `workers` connections each: the
/// targets share the machine's moments, so a drift of the machine does not favour one.
fn closed_loops(
    rt: &tokio::runtime::Runtime,
    urls: &[&str],
    workers: usize,
    secs: Duration,
) -> Vec<(f64, u64)> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(workers)
        .build()
        .expect("a reqwest client");
    let body = chat_body(false, 16);
    let counts: Vec<(Arc<AtomicU64>, Arc<AtomicU64>)> = urls
        .iter()
        .map(|_| (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0))))
        .collect();
    rt.block_on(async {
        // Warm the connections up first.
        let warm_until = Instant::now() + Duration::from_secs(1);
        let until = warm_until + secs;
        let tasks: Vec<_> = urls
            .iter()
            .zip(&counts)
            .flat_map(|(url, (done, all))| {
                (0..workers).map(|_| {
                    let (client, url, body, done, all) = (
                        client.clone(),
                        url.to_string(),
                        body.clone(),
                        Arc::clone(done),
                        Arc::clone(all),
                    );
                    tokio::spawn(async move {
                        loop {
                            let now = Instant::now();
                            if now >= until {
                                break;
                            }
                            if send(&client, &url, body.clone()).await.is_ok() {
                                all.fetch_add(1, Ordering::Relaxed);
                                if now >= warm_until {
                                    done.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                    })
                })
            })
            .collect();
        for task in tasks {
            let _ = task.await;
        }
    });
    counts
        .iter()
        .map(|(done, all)| {
            (
                done.load(Ordering::Relaxed) as f64 / secs.as_secs_f64(),
                all.load(Ordering::Relaxed),
            )
        })
        .collect()
}

fn latency(
    rt: &tokio::runtime::Runtime,
    rate: f64,
    secs: Duration,
    rounds: usize,
    dir: &std::path::Path,
) {
    let mock = mock(&[]);
    let serve = gateway(&mock, &dir.join("latency.log"));
    let warmup = Duration::from_secs(2);
    let path = "/v1/chat/completions";
    println!(
        "latency: open loop, {rate} req/s for {secs:?} (after {warmup:?} of warm-up), non-streaming chat, {rounds} rounds of direct then gateway"
    );
    println!(
        "  {:<10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>7}  load avg",
        "", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "requests", "failed"
    );
    let mut added_p50 = Vec::new();
    let mut added_p99 = Vec::new();
    let mut cpu = Vec::new();
    let mut switches = Vec::new();
    for round in 1..=rounds {
        let mut rows = Vec::new();
        for (name, url) in [("direct", mock.url(path)), ("gateway", serve.url(path))] {
            let before = serve.cpu_and_switches();
            let s = open_loop(rt, &url, rate, warmup, secs);
            if name == "gateway" {
                let after = serve.cpu_and_switches();
                let requests = ((warmup + secs).as_secs_f64() * rate).max(1.0);
                cpu.push((after.0 - before.0).as_secs_f64() * 1e6 / requests);
                switches.push((after.1 - before.1) as f64 / requests);
            }
            println!(
                "  {:<10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>7}  {}",
                format!("{name} {round}"),
                ms(s.p[0]),
                ms(s.p[1]),
                ms(s.p[2]),
                ms(s.p[3]),
                ms(s.p[4]),
                s.sent,
                s.failed,
                load_average()
            );
            rows.push(s);
        }
        let added = |i: usize| (rows[1].p[i] as f64 - rows[0].p[i] as f64) / 1000.0;
        added_p50.push(added(0));
        added_p99.push(added(2));
    }
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:+.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "  added by the gateway (median of {rounds} rounds): p50 {:+.3} ms ({}), p99 {:+.3} ms ({})",
        median(&added_p50),
        list(&added_p50),
        median(&added_p99),
        list(&added_p99)
    );
    println!(
        "  gateway cost (median): {:.0} µs CPU and {:.2} context switches per request",
        median(&cpu),
        median(&switches)
    );
}

/// The first `secs` after a new gateway starts, and the `secs` after them, at 500 req/s, beside
/// the direct path's same two periods after a new mock starts.
fn start(rt: &tokio::runtime::Runtime, secs: Duration, rounds: usize, dir: &std::path::Path) {
    let rate = 500.0;
    let path = "/v1/chat/completions";
    println!(
        "start: open loop, {rate} req/s from the moment a new process listens: the first {secs:?}, then {secs:?} later; {rounds} rounds"
    );
    println!(
        "  {:<18} {:>8} {:>8} {:>9} {:>8} {:>9} {:>7}  load avg",
        "", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "requests", "failed"
    );
    let row = |name: String, s: &Summary| {
        println!(
            "  {:<18} {:>8} {:>8} {:>9} {:>8} {:>9} {:>7}  {}",
            name,
            ms(s.p[0]),
            ms(s.p[2]),
            ms(s.p[3]),
            ms(s.p[4]),
            s.sent,
            s.failed,
            load_average()
        );
    };
    let mut added = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    for round in 1..=rounds {
        let direct_mock = mock(&[]);
        let direct_first = open_loop(rt, &direct_mock.url(path), rate, Duration::ZERO, secs);
        let direct_later = open_loop(rt, &direct_mock.url(path), rate, Duration::ZERO, secs);
        drop(direct_mock);
        let upstream = mock(&[]);
        let serve = gateway(&upstream, &dir.join(format!("start-{round}.log")));
        let gateway_first = open_loop(rt, &serve.url(path), rate, Duration::ZERO, secs);
        let gateway_later = open_loop(rt, &serve.url(path), rate, Duration::ZERO, secs);
        row(format!("direct first {round}"), &direct_first);
        row(format!("gateway first {round}"), &gateway_first);
        row(format!("direct later {round}"), &direct_later);
        row(format!("gateway later {round}"), &gateway_later);
        let diff = |g: &Summary, d: &Summary, i: usize| (g.p[i] as f64 - d.p[i] as f64) / 1000.0;
        added[0].push(diff(&gateway_first, &direct_first, 2));
        added[1].push(diff(&gateway_first, &direct_first, 3));
        added[2].push(diff(&gateway_later, &direct_later, 2));
        added[3].push(diff(&gateway_later, &direct_later, 3));
    }
    println!(
        "  added by the gateway (median of {rounds} rounds): first {secs:?}: p99 {:+.3} ms, p99.9 {:+.3} ms; later: p99 {:+.3} ms, p99.9 {:+.3} ms",
        median(&added[0]),
        median(&added[1]),
        median(&added[2]),
        median(&added[3])
    );
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn throughput(rt: &tokio::runtime::Runtime, secs: Duration, dir: &std::path::Path) {
    let mock = mock(&[]);
    let serve = gateway(&mock, &dir.join("throughput.log"));
    let path = "/v1/chat/completions";
    let workers = 64;
    println!("throughput: closed loop, {workers} connections for {secs:?}, non-streaming chat");
    for (name, url) in [("direct", mock.url(path)), ("gateway", serve.url(path))] {
        let (rate, _) = closed_loop(rt, &url, workers, secs);
        println!("  {name:<8} {rate:>8.0} req/s  load avg {}", load_average());
    }
}

fn streams(rt: &tokio::runtime::Runtime, dir: &std::path::Path) {
    // 20 tokens over 2 s per stream; answers always as long as max_tokens allows.
    let mock = mock(&["--ms-per-token", "100", "--completion-tokens", "2000000000"]);
    let serve = gateway(&mock, &dir.join("streams.log"));
    let url = serve.url("/v1/chat/completions");
    let idle = serve.rss_kib();
    let clients = 1000;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .expect("a reqwest client");
    let body = chat_body(true, 20);
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(idle));
    let started = Instant::now();
    let (complete, elapsed) = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                peak.fetch_max(serve.rss_kib(), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let complete = rt.block_on(async {
            let tasks: Vec<_> = (0..clients)
                .map(|_| {
                    let (client, url, body) = (client.clone(), url.clone(), body.clone());
                    tokio::spawn(async move {
                        let resp = client
                            .post(&url)
                            .header("content-type", "application/json")
                            .body(body)
                            .send()
                            .await
                            .ok()?;
                        let text = resp.text().await.ok()?;
                        text.contains("data: [DONE]").then_some(())
                    })
                })
                .collect();
            let mut complete = 0;
            for task in tasks {
                if let Ok(Some(())) = task.await {
                    complete += 1;
                }
            }
            complete
        });
        let elapsed = started.elapsed();
        stop.store(true, Ordering::SeqCst);
        (complete, elapsed)
    });
    println!(
        "streams: {clients} concurrent streaming requests (20 tokens over 2 s each): {complete} complete in {:.1} s",
        elapsed.as_secs_f64()
    );
    println!(
        "  gateway RSS idle {:.1} MiB, peak {:.1} MiB  load avg {}",
        idle as f64 / 1024.0,
        peak.load(Ordering::SeqCst) as f64 / 1024.0,
        load_average()
    );
}

/// An OTLP/HTTP receiver on loopback that accepts every export (`POST /v1/traces`) and counts
/// the bytes; its base URL.
async fn otlp_sink(received: Arc<AtomicU64>) -> String {
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| async move {
            received.fetch_add(body.len() as u64, Ordering::Relaxed);
            [("content-type", "application/x-protobuf")]
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the OTLP receiver");
    let url = format!("http://{}", listener.local_addr().expect("its address"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

/// A loopback port nothing listens on: a collector that is down.
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// CPU time (user + system) of the waited-for children of this process so far.
fn children_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct passed by pointer.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// `paceline run` over `input` against `mock` with `extra` arguments: CPU time per request of
/// its process, in µs, and its wall time.
fn run_cost(mock: &Process, input: &std::path::Path, n: usize, extra: &[&str]) -> (f64, Duration) {
    let bin =
        std::env::var_os("PACELINE_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_paceline").into());
    let output = input.with_extension("out.jsonl");
    let before = children_cpu();
    let started = Instant::now();
    let status = Command::new(bin)
        .args(["run", &input.display().to_string(), "-o"])
        .arg(&output)
        .args([
            "--restart",
            "--quiet",
            "--base-url",
            &format!("http://{}/v1", mock.addr),
        ])
        .args(extra)
        .env("OPENAI_API_KEY", UPSTREAM_KEY)
        .env_remove("PACELINE_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run paceline run");
    let wall = started.elapsed();
    assert!(status.success(), "paceline run {extra:?} failed: {status}");
    let cpu = children_cpu() - before;
    (cpu.as_secs_f64() * 1e6 / n as f64, wall)
}

/// What a request's tracing costs the thread that does it (in this process, no HTTP): with the
/// collector taking the spans, and once an export to a collector that is down has failed.
fn span_cost(rt: &tokio::runtime::Runtime, sink: &str, dead: &str) {
    use opentelemetry::KeyValue;
    use opentelemetry::trace::SpanKind;
    use paceline::telemetry::otlp::{Endpoint, Record, Tracer};
    use std::time::SystemTime;
    let record = || Record {
        name: "chat gpt-4o-mini".into(),
        kind: SpanKind::Client,
        start: SystemTime::now(),
        end: SystemTime::now(),
        attributes: (0..20)
            .map(|i| KeyValue::new(format!("paceline.attribute.{i}"), i64::from(i)))
            .collect(),
        error: None,
    };
    let n = 200_000;
    // What a gateway request does with a tracer: its span, its attempt's child span, the
    // attempt's `traceparent` for the upstream, and both spans recorded.
    let per_request = |tracer: &Tracer| {
        let started = Instant::now();
        for _ in 0..n {
            let request = tracer.span(None);
            let attempt = request.child();
            std::hint::black_box(attempt.headers());
            attempt.record(record);
            request.record(record);
        }
        started.elapsed().as_secs_f64() * 1e9 / f64::from(n)
    };
    let _guard = rt.enter();
    let up = Tracer::start(Endpoint::base(sink, "bench").expect("the sink's URL")).expect("tracer");
    let down = Tracer::start(Endpoint::base(dead, "bench").expect("a URL")).expect("tracer");
    // Fill a batch (512 spans) so that the processor sends it and the send fails.
    let until = Instant::now() + Duration::from_secs(10);
    while down.dropped() == 0 && Instant::now() < until {
        for _ in 0..600 {
            down.span(None).record(record);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (taking, refused) = (per_request(&up), per_request(&down));
    println!(
        "tracing: a request's tracing work (its span and its attempt's, 20 attributes each, and the attempt's traceparent), {n} in a row on one thread: {taking:.0} ns while the collector takes the spans, {refused:.0} ns once an export failed"
    );
    up.shutdown();
    down.shutdown();
}

fn tracing_cost(
    rt: &tokio::runtime::Runtime,
    rate: f64,
    secs: Duration,
    rounds: usize,
    dir: &std::path::Path,
) {
    let received = Arc::new(AtomicU64::new(0));
    let sink = rt.block_on(otlp_sink(Arc::clone(&received)));
    let dead = format!("http://127.0.0.1:{}", dead_port());
    let mock = mock(&[]);
    let off = gateway(&mock, &dir.join("tracing-off.log"));
    let on = gateway_with(
        &mock,
        &dir.join("tracing-on.log"),
        &["--otlp-endpoint", &sink],
    );
    let down = gateway_with(
        &mock,
        &dir.join("tracing-down.log"),
        &["--otlp-endpoint", &dead],
    );
    let warmup = Duration::from_secs(2);
    let path = "/v1/chat/completions";
    println!(
        "tracing: latency, open loop, {rate} req/s for {secs:?} (after {warmup:?} of warm-up); {rounds} rounds of direct, gateway without traces, gateway exporting them"
    );
    println!(
        "  {:<14} {:>8} {:>8} {:>8} {:>9} {:>7} {:>9}  load avg",
        "", "p50 ms", "p99 ms", "p99.9 ms", "requests", "failed", "CPU µs/req"
    );
    let mut added = [[Vec::new(), Vec::new()], [Vec::new(), Vec::new()]];
    let mut cpu = [Vec::new(), Vec::new()];
    for round in 1..=rounds {
        let direct = open_loop(rt, &mock.url(path), rate, warmup, secs);
        println!(
            "  {:<14} {:>8} {:>8} {:>8} {:>9} {:>7} {:>9}  {}",
            format!("direct {round}"),
            ms(direct.p[0]),
            ms(direct.p[2]),
            ms(direct.p[3]),
            direct.sent,
            direct.failed,
            "",
            load_average()
        );
        for (i, (name, serve)) in [("traces off", &off), ("traces on", &on)]
            .into_iter()
            .enumerate()
        {
            let before = serve.cpu_and_switches();
            let s = open_loop(rt, &serve.url(path), rate, warmup, secs);
            let after = serve.cpu_and_switches();
            let requests = ((warmup + secs).as_secs_f64() * rate).max(1.0);
            let per_request = (after.0 - before.0).as_secs_f64() * 1e6 / requests;
            cpu[i].push(per_request);
            added[i][0].push((s.p[0] as f64 - direct.p[0] as f64) / 1000.0);
            added[i][1].push((s.p[2] as f64 - direct.p[2] as f64) / 1000.0);
            println!(
                "  {:<14} {:>8} {:>8} {:>8} {:>9} {:>7} {:>9.0}  {}",
                format!("{name} {round}"),
                ms(s.p[0]),
                ms(s.p[2]),
                ms(s.p[3]),
                s.sent,
                s.failed,
                per_request,
                load_average()
            );
        }
    }
    for (i, name) in ["traces off", "traces on"].into_iter().enumerate() {
        println!(
            "  {name}: added p50 {:+.3} ms, added p99 {:+.3} ms, {:.0} µs CPU per request (medians of {rounds} rounds)",
            median(&added[i][0]),
            median(&added[i][1]),
            median(&cpu[i])
        );
    }
    println!(
        "  the receiver took {:.1} MB of spans",
        received.load(Ordering::Relaxed) as f64 / 1e6
    );

    paired_throughput(rt, &off, (&down, "collector down"), secs, rounds);
    drop((off, on, down));

    span_cost(rt, &sink, &dead);

    let n = 20_000;
    let input = dir.join("tracing-run.jsonl");
    let lines: String = (0..n)
        .map(|i| {
            serde_json::json!({
                "custom_id": format!("r{i}"),
                "method": "POST",
                "url": path,
                "body": {
                    "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": format!("Say hello number {i}")}],
                    "max_tokens": 16
                }
            })
            .to_string()
                + "\n"
        })
        .collect();
    std::fs::write(&input, lines).expect("write the run's input");
    println!(
        "tracing: paceline run over {n} requests; {rounds} rounds of without traces, exporting them, collector down"
    );
    let mut run_cpu = [Vec::new(), Vec::new(), Vec::new()];
    for round in 1..=rounds {
        let cases: [(&str, Vec<&str>); 3] = [
            ("without traces", vec![]),
            ("exporting", vec!["--otlp-endpoint", &sink]),
            ("collector down", vec!["--otlp-endpoint", &dead]),
        ];
        for (i, (name, extra)) in cases.iter().enumerate() {
            let (per_request, wall) = run_cost(&mock, &input, n, extra);
            run_cpu[i].push(per_request);
            println!(
                "  {name:<15} {round}: {per_request:>6.1} µs CPU per request, {:.2} s  load avg {}",
                wall.as_secs_f64(),
                load_average()
            );
        }
    }
    println!(
        "  run CPU per request (median of {rounds} rounds): {:.1} µs without traces, {:.1} µs exporting, {:.1} µs collector down",
        median(&run_cpu[0]),
        median(&run_cpu[1]),
        median(&run_cpu[2])
    );
}

/// Closed loops of 32 connections each to `without` (no traces) and to `down` (named `label`:
/// traces to a dead collector, or a twin without them) at the same time, `rounds` times: the
/// medians of the rounds' throughput and CPU-per-request changes in %, each round printed.
fn paired_throughput(
    rt: &tokio::runtime::Runtime,
    without: &Process,
    (down, label): (&Process, &str),
    secs: Duration,
    rounds: usize,
) -> (f64, f64) {
    let workers = 32;
    let path = "/v1/chat/completions";
    println!(
        "tracing: throughput, closed loops at the same time, {workers} connections each for {secs:?}, to a gateway without traces and to {label}; {rounds} rounds, with each gateway's CPU per request"
    );
    let mut ratios = Vec::new();
    let mut cpu_ratios = Vec::new();
    for round in 1..=rounds {
        let before = [without.cpu_and_switches().0, down.cpu_and_switches().0];
        let measured = closed_loops(rt, &[&without.url(path), &down.url(path)], workers, secs);
        let cpu = |i: usize, serve: &Process| {
            (serve.cpu_and_switches().0 - before[i]).as_secs_f64() * 1e6
                / measured[i].1.max(1) as f64
        };
        let (plain, plain_cpu) = (measured[0].0, cpu(0, without));
        let (dead_collector, dead_cpu) = (measured[1].0, cpu(1, down));
        ratios.push(dead_collector / plain);
        cpu_ratios.push(dead_cpu / plain_cpu);
        println!(
            "  round {round}: {plain:>8.0} req/s ({plain_cpu:.0} µs CPU/req) without traces, {dead_collector:>8.0} req/s ({dead_cpu:.0} µs) {label} ({:+.1} % req/s, {:+.1} % CPU)  load avg {}",
            (dead_collector / plain - 1.0) * 100.0,
            (dead_cpu / plain_cpu - 1.0) * 100.0,
            load_average()
        );
    }
    let result = (
        (median(&ratios) - 1.0) * 100.0,
        (median(&cpu_ratios) - 1.0) * 100.0,
    );
    println!(
        "  {label} against no traces (medians of {rounds} rounds): {:+.1} % throughput, {:+.1} % gateway CPU per request",
        result.0, result.1
    );
    result
}

/// The dead collector's cost alone, with its control in the same sitting: rounds of the paired
/// throughput of a gateway without traces against one whose collector is down, alternating
/// with the same pairing of two gateways without traces (an A/A control: what the pairing
/// itself reads when there is no difference).
fn dead_collector(
    rt: &tokio::runtime::Runtime,
    secs: Duration,
    rounds: usize,
    dir: &std::path::Path,
) {
    let dead = format!("http://127.0.0.1:{}", dead_port());
    let mock = mock(&[]);
    let off = gateway(&mock, &dir.join("dead-off.log"));
    let twin = gateway(&mock, &dir.join("dead-twin.log"));
    let down = gateway_with(
        &mock,
        &dir.join("dead-down.log"),
        &["--otlp-endpoint", &dead],
    );
    let (mut cost, mut control) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        println!("dead collector, round {round} of {rounds}:");
        cost.push(paired_throughput(
            rt,
            &off,
            (&down, "collector down"),
            secs,
            1,
        ));
        println!("control (both without traces), round {round} of {rounds}:");
        control.push(paired_throughput(rt, &off, (&twin, "its twin"), secs, 1));
    }
    for (name, pairs) in [("collector down", cost), ("control (A/A)", control)] {
        let (throughput, cpu): (Vec<f64>, Vec<f64>) = pairs.into_iter().unzip();
        let low = throughput.iter().copied().fold(f64::INFINITY, f64::min);
        let high = throughput.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        println!(
            "  {name}: {:+.1} % throughput (rounds {low:+.1} … {high:+.1} %), {:+.1} % gateway CPU per request (medians of {rounds} rounds)",
            median(&throughput),
            median(&cpu)
        );
    }
}

fn raise_fd_limit(want: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < want {
            limit.rlim_cur = want.min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn main() {
    let mut what = "all".to_string();
    let mut rate = 2000.0;
    let mut secs = 10.0;
    let mut rounds = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rate" => rate = args.next().and_then(|v| v.parse().ok()).expect("--rate N"),
            "--secs" => secs = args.next().and_then(|v| v.parse().ok()).expect("--secs S"),
            "--rounds" => {
                rounds = Some(
                    args.next()
                        .and_then(|v| v.parse().ok())
                        .filter(|&n| n > 0)
                        .expect("--rounds N"),
                )
            }
            "--bench" => {}
            "latency" | "start" | "throughput" | "streams" | "tracing" | "dead-collector"
            | "spans" | "all" => {
                what = arg;
            }
            other => panic!("unknown argument {other:?}"),
        }
    }
    raise_fd_limit(8192);
    let secs = Duration::from_secs_f64(secs);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    if matches!(what.as_str(), "latency" | "all") {
        latency(&rt, rate, secs, rounds.unwrap_or(5), dir.path());
    }
    if matches!(what.as_str(), "start" | "all") {
        start(&rt, secs, rounds.unwrap_or(1), dir.path());
    }
    if matches!(what.as_str(), "throughput" | "all") {
        throughput(&rt, secs, dir.path());
    }
    if matches!(what.as_str(), "streams" | "all") {
        streams(&rt, dir.path());
    }
    if matches!(what.as_str(), "tracing" | "all") {
        tracing_cost(&rt, rate, secs, rounds.unwrap_or(3), dir.path());
    }
    if what == "dead-collector" {
        dead_collector(&rt, secs, rounds.unwrap_or(16), dir.path());
    }
    if what == "spans" {
        let received = Arc::new(AtomicU64::new(0));
        let sink = rt.block_on(otlp_sink(received));
        span_cost(&rt, &sink, &format!("http://127.0.0.1:{}", dead_port()));
    }
}

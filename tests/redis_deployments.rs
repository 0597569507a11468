//! Distributed mode on the Redis deployments teams run: a plain `redis-server`, one speaking
//! only TLS (a CA made in the test) with an ACL user holding exactly
//! [`paceline::distributed::MINIMAL_ACL`] and its password in an environment variable, and a
//! 3-primary / 3-replica Redis Cluster. On each: four processes share one key, and three
//! workers share one job while one of them is SIGKILLed. Then what happens when Redis goes
//! away: a restart (AOF on) and a primary killed in the cluster, in the middle of a job of
//! 3,000 requests. The real binary, the mock over loopback HTTP, servers on free ports.

mod common;

use common::job::{KEY, Workdir, paceline, s, signal, stderr, stdout, wait_for};
use common::mock::MockProcess;
use common::redis::{RedisCluster, RedisServer, TestCa};
use paceline::distributed::MINIMAL_ACL;
use serde_json::Value;
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The tests run many processes and measure rates: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// How paceline is pointed at one deployment: `--redis` and its companions, and the
/// environment they read.
struct Deployment {
    flags: Vec<String>,
    env: Vec<(String, String)>,
}

impl Deployment {
    fn plain(url: String) -> Self {
        Deployment {
            flags: vec!["--redis".into(), url],
            env: Vec::new(),
        }
    }

    /// A command of the binary with these flags after `args`.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_paceline"));
        command
            .args(args)
            .args(&self.flags)
            .env("OPENAI_API_KEY", KEY)
            .env_remove("PACELINE_LOG")
            .stdin(Stdio::null());
        for (name, value) in &self.env {
            command.env(name, value);
        }
        command
    }

    fn output(&self, args: &[&str]) -> std::process::Output {
        self.command(args).output().expect("run paceline")
    }
}

/// Admissions per second over the whole seconds strictly inside the run.
fn mean_rate(stats: &Value) -> f64 {
    let counts: Vec<u64> = stats["totals"]["per_second"]
        .as_array()
        .expect("per_second")
        .iter()
        .map(|pair| pair[1].as_u64().expect("a count"))
        .collect();
    assert!(counts.len() >= 4, "run too short to measure: {counts:?}");
    let inner = &counts[1..counts.len() - 1];
    inner.iter().sum::<u64>() as f64 / inner.len() as f64
}

/// Four `paceline run`s of 150 requests share one key of 6,000 requests/min (burst 20) on a
/// mock that refuses what is beyond the limit: together they use ≥ 97 % of it, no request is
/// admitted beyond it, and each process gets at most one 429.
fn four_processes_share_one_key(deployment: &Deployment) {
    const RPM: u64 = 6000;
    let mock = MockProcess::start(&["--rpm", &RPM.to_string(), "--burst", "20"]);
    let w = Workdir::new();
    let outs: Vec<_> = (0..4).map(|i| w.path(&format!("out{i}.jsonl"))).collect();
    let children: Vec<Child> = outs
        .iter()
        .enumerate()
        .map(|(i, out)| {
            let input = w.batch(&format!("in{i}.jsonl"), 150);
            deployment
                .command(&["run", s(&input), "-o", s(out), "-q"])
                .args(["--base-url", &mock.base_url(), "--processes", "4"])
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn paceline")
        })
        .collect();
    for child in children {
        let run = child.wait_with_output().expect("wait");
        assert!(run.status.success(), "{}", stderr(&run));
    }
    let stats = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(mock.stats());
    let totals = &stats["totals"];
    assert_eq!(totals["admitted_beyond_limit"], 0, "{stats}");
    let limit = RPM as f64 / 60.0;
    let rate = mean_rate(&stats);
    assert!(rate >= 0.97 * limit, "{rate}/s of {limit}/s: {stats}");
    assert!(rate <= limit + 20.0 / 4.0, "{rate}/s of {limit}/s: {stats}");
    for out in &outs {
        assert_eq!(common::job::output_lines(out), 150);
        let status = paceline(&["status", s(out), "--json"]);
        let status: Value = serde_json::from_str(&stdout(&status)).expect("status JSON");
        assert!(
            status["rate_limited"].as_u64().expect("rate_limited") <= 1,
            "{status}"
        );
    }
}

/// A worker of job `job`.
fn worker(
    deployment: &Deployment,
    input: &str,
    job: &str,
    mock: &MockProcess,
    out: &str,
    concurrency: &str,
) -> Child {
    deployment
        .command(&["run", input, "-q", "-o", out, "--job", job])
        .args(["--base-url", &mock.base_url(), "--processes", "3"])
        .args(["--claim-idle", "1s", "--concurrency", concurrency])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn paceline")
}

/// The requests the mock has answered so far.
fn answered(runtime: &tokio::runtime::Runtime, mock: &MockProcess) -> u64 {
    runtime.block_on(mock.stats())["totals"]["requests"]
        .as_u64()
        .expect("requests")
}

fn wait_answered(runtime: &tokio::runtime::Runtime, mock: &MockProcess, n: u64) {
    let until = Instant::now() + Duration::from_secs(60);
    while answered(runtime, mock) < n {
        assert!(
            Instant::now() < until,
            "the mock never reached {n} requests"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `paceline export` of `job`: every custom_id `r0..rN` exactly once, each a success.
fn assert_exported_once(deployment: &Deployment, w: &Workdir, job: &str, n: usize) {
    let export = w.path(&format!("{job}.export.jsonl"));
    let run = deployment.output(&["export", "--job", job, "-o", s(&export)]);
    assert!(run.status.success(), "{}", stderr(&run));
    let mut seen: HashMap<String, Value> = HashMap::new();
    let text = std::fs::read_to_string(&export).expect("the export");
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).expect("a JSON line");
        let id = v["custom_id"].as_str().expect("custom_id").to_string();
        assert!(seen.insert(id.clone(), v).is_none(), "{id} exported twice");
    }
    assert_eq!(seen.len(), n, "{} of {n} ids exported", seen.len());
    for i in 0..n {
        let r = &seen[&format!("r{i}")];
        assert_eq!(r["response"]["status_code"], 200, "{r}");
    }
}

/// Three workers share a job of 90 requests; one is SIGKILLed after 20 answers: the others
/// finish it, and the export holds every custom_id once.
fn three_workers_one_killed(deployment: &Deployment) {
    const N: usize = 90;
    let mock = MockProcess::start(&["--rpm", "1200", "--burst", "5", "--latency-ms", "50"]);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let w = Workdir::new();
    let input = w.batch("in.jsonl", N);
    let mut workers: Vec<Child> = (0..3)
        .map(|i| {
            let out = w.path(&format!("out{i}.jsonl"));
            worker(deployment, s(&input), "killed", &mock, s(&out), "8")
        })
        .collect();
    wait_answered(&runtime, &mock, 20);
    signal(&workers[0], libc::SIGKILL);
    let _ = wait_for(&mut workers[0], Duration::from_secs(5));
    for child in workers.drain(1..) {
        let run = child.wait_with_output().expect("wait");
        assert!(run.status.success(), "{}", stderr(&run));
    }
    assert_exported_once(deployment, &w, "killed", N);
    let status = deployment.output(&["status", "--job", "killed"]);
    assert!(stdout(&status).contains("finished"), "{}", stderr(&status));
}

/// A shared job of 3,000 requests across three workers; `outage` runs once 600 are answered
/// (kills Redis, or a primary, and brings it back). Every worker finishes, and the export holds
/// every custom_id exactly once.
fn job_outlives(deployment: &Deployment, job: &str, outage: impl FnOnce()) -> Vec<String> {
    const N: usize = 3000;
    let mock = MockProcess::start(&["--rpm", "60000", "--burst", "100", "--latency-ms", "30"]);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let w = Workdir::new();
    let input = w.batch("in.jsonl", N);
    let workers: Vec<Child> = (0..3)
        .map(|i| {
            let out = w.path(&format!("out{i}.jsonl"));
            worker(deployment, s(&input), job, &mock, s(&out), "32")
        })
        .collect();
    wait_answered(&runtime, &mock, 600);
    outage();
    let mut logs = Vec::new();
    for child in workers {
        let run = child.wait_with_output().expect("wait");
        let err = stderr(&run);
        assert!(run.status.success(), "{err}");
        logs.push(err);
    }
    assert_exported_once(deployment, &w, job, N);
    logs
}

#[test]
fn plain_redis() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let redis = RedisServer::start();
    let deployment = Deployment::plain(redis.url());
    four_processes_share_one_key(&deployment);
    three_workers_one_killed(&deployment);
}

#[test]
fn tls_with_an_acl_user() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let ca = TestCa::new();
    let redis = RedisServer::tls(&ca);
    const PASSWORD: &str = "correct-horse-battery";
    redis.add_user("paceline", PASSWORD, MINIMAL_ACL);
    // Nobody else gets in: the default user is off.
    assert_eq!(
        redis.cli(&["ACL", "SETUSER", "default", "off"]).trim(),
        "OK"
    );
    let url = redis.url().replace("rediss://", "rediss://paceline@");
    let deployment = Deployment {
        flags: vec![
            "--redis".into(),
            url.clone(),
            "--redis-ca".into(),
            s(&ca.ca()).into(),
            "--redis-password-env".into(),
            "REDIS_PASSWORD".into(),
        ],
        env: vec![("REDIS_PASSWORD".into(), PASSWORD.into())],
    };

    // What a wrong setup says: each names the flag or the URL, never the password.
    let w = Workdir::new();
    let input = w.batch("in.jsonl", 1);
    let attempt = |flags: &[&str], env: &[(&str, &str)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_paceline"));
        command
            .args(["run", s(&input), "-q", "-o", s(&w.path("out.jsonl"))])
            .args(["--base-url", "http://127.0.0.1:9/v1"])
            .args(flags)
            .env("OPENAI_API_KEY", KEY)
            .env_remove("PACELINE_LOG")
            .env_remove("REDIS_PASSWORD");
        for (name, value) in env {
            command.env(name, value);
        }
        let out = command.output().expect("run paceline");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(!err.contains(PASSWORD), "{err}");
        err
    };
    // The system's trust store does not know the test's CA: refused, no plain-text fallback.
    let err = attempt(
        &["--redis", &url, "--redis-password-env", "REDIS_PASSWORD"],
        &[("REDIS_PASSWORD", PASSWORD)],
    );
    assert!(err.contains("certificate does not verify"), "{err}");
    assert!(err.contains("--redis-ca"), "{err}");
    // The password variable is not set.
    let err = attempt(
        &[
            "--redis",
            &url,
            "--redis-ca",
            s(&ca.ca()),
            "--redis-password-env",
            "REDIS_PASSWORD",
        ],
        &[],
    );
    assert!(
        err.contains("--redis-password-env REDIS_PASSWORD: the variable is not set"),
        "{err}"
    );
    // A wrong password: refused by Redis, the URL shown without it.
    let err = attempt(
        &[
            "--redis",
            &url.replace("paceline@", &format!("paceline:{PASSWORD}@")),
            "--redis-ca",
            s(&ca.ca()),
            "--redis-password-env",
            "REDIS_PASSWORD",
        ],
        &[("REDIS_PASSWORD", "wrong-password")],
    );
    assert!(err.contains("paceline:***@localhost"), "{err}");
    // A CA with a plain-text URL is refused rather than ignored.
    let plain = url.replace("rediss://", "redis://");
    let err = attempt(&["--redis", &plain, "--redis-ca", s(&ca.ca())], &[]);
    assert!(err.contains("use a rediss:// URL"), "{err}");

    four_processes_share_one_key(&deployment);
    three_workers_one_killed(&deployment);
}

#[test]
fn a_job_outlives_a_redis_restart_with_aof() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().expect("temp dir");
    let mut redis = RedisServer::with_aof(dir.path());
    let deployment = Deployment::plain(redis.url());
    let logs = job_outlives(&deployment, "restart", || {
        redis.kill();
        std::thread::sleep(Duration::from_secs(2));
        redis.restart_killed();
    });
    assert!(
        logs.iter().any(|log| log.contains("Redis unreachable")),
        "{logs:?}"
    );
}

#[test]
fn redis_cluster() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut cluster = RedisCluster::start();
    // As a managed cluster is used: an ACL user with exactly the documented rules on every
    // node, its password in the environment (the default user stays on for the test's own
    // `redis-cli` calls).
    const PASSWORD: &str = "cluster-horse-battery";
    cluster.add_user("paceline", PASSWORD, MINIMAL_ACL);
    let deployment = Deployment {
        flags: vec![
            "--redis".into(),
            cluster.url().replace("redis://", "redis://paceline@"),
            "--redis-password-env".into(),
            "REDIS_PASSWORD".into(),
        ],
        env: vec![("REDIS_PASSWORD".into(), PASSWORD.into())],
    };
    four_processes_share_one_key(&deployment);
    three_workers_one_killed(&deployment);
    // Every command the scripts' keys need went to the one primary holding their slot.
    assert!(cluster.command_calls("evalsha") > 0);

    // A primary killed in the middle of a job: its replica takes over.
    let primary = cluster.primary_of("{paceline:job:failover}");
    job_outlives(&deployment, "failover", || {
        cluster.node(primary).kill();
    });
    cluster.wait_ok();
    // The job's slot is served by the replica now.
    assert_ne!(cluster.primary_of("{paceline:job:failover}"), primary);
}

//! Real `redis-server`s on free loopback ports, killed on drop: a plain one ([`RedisServer`]),
//! one speaking only TLS with a CA made in the test ([`TestCa`], [`RedisServer::tls`]), one
//! with AOF on ([`RedisServer::with_aof`]), and a 3-primary / 3-replica Redis Cluster
//! ([`RedisCluster`]). The tests never use the machine's own Redis on 6379.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server` on a loopback port.
pub struct RedisServer {
    child: Child,
    port: u16,
    /// The arguments it was started with (a restart reuses them).
    args: Vec<String>,
    /// What `redis-cli` needs before its own arguments (`--tls --cacert ...`).
    cli_prefix: Vec<String>,
    scheme: &'static str,
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

fn s(path: &Path) -> String {
    path.to_str().expect("a UTF-8 path").to_string()
}

/// A private CA made in the test, and a server certificate it signed for `localhost` and
/// `127.0.0.1`, as PEM files in a temporary directory.
pub struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    /// Generate the CA and the server's certificate and key.
    pub fn new() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "paceline test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().expect("server key");
        let mut params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "paceline test redis");
        let cert = params
            .signed_by(&server_key, &issuer)
            .expect("server certificate");
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).expect("write ca.pem");
        std::fs::write(dir.path().join("server.pem"), cert.pem()).expect("write server.pem");
        std::fs::write(dir.path().join("server.key"), server_key.serialize_pem())
            .expect("write server.key");
        TestCa { dir }
    }

    /// The CA's certificate (what `--redis-ca` is given).
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn server_cert(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    fn server_key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }
}

/// `--port PORT`, no snapshots, and AOF in `aof` if given (else none).
fn persistence(port: u16, aof: Option<&Path>) -> Vec<String> {
    let mut args = vec![
        "--port".into(),
        port.to_string(),
        "--save".into(),
        String::new(),
        "--appendonly".into(),
        if aof.is_some() { "yes" } else { "no" }.into(),
    ];
    if let Some(dir) = aof {
        args.extend(["--dir".into(), s(dir)]);
    }
    args
}

impl RedisServer {
    /// A plain one on a free port, without persistence.
    pub fn start() -> Self {
        Self::on_port(free_port())
    }

    /// A plain one on `port` (a restart on the same port), without persistence.
    pub fn on_port(port: u16) -> Self {
        Self::spawn(port, persistence(port, None), Vec::new(), "redis")
    }

    /// A plain one with AOF on (fsync every second), its files in `dir`: a restart on the same
    /// port ([`RedisServer::restart`]) comes back with what it held.
    pub fn with_aof(dir: &Path) -> Self {
        let port = free_port();
        Self::spawn(port, persistence(port, Some(dir)), Vec::new(), "redis")
    }

    /// One speaking only TLS, with the certificate `ca` signed (clients need no certificate).
    pub fn tls(ca: &TestCa) -> Self {
        let port = free_port();
        let args = vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            s(&ca.server_cert()),
            "--tls-key-file".into(),
            s(&ca.server_key()),
            "--tls-ca-cert-file".into(),
            s(&ca.ca()),
            "--tls-auth-clients".into(),
            "no".into(),
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "no".into(),
        ];
        let cli = vec!["--tls".into(), "--cacert".into(), s(&ca.ca())];
        Self::spawn(port, args, cli, "rediss")
    }

    fn spawn(
        port: u16,
        mut args: Vec<String>,
        cli_prefix: Vec<String>,
        scheme: &'static str,
    ) -> Self {
        args.extend(["--bind".into(), "127.0.0.1".into()]);
        let child = Command::new("redis-server")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server (apt-get install redis-server)");
        let server = RedisServer {
            child,
            port,
            args,
            cli_prefix,
            scheme,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let until = Instant::now() + Duration::from_secs(10);
        // A server loading its AOF answers LOADING until it is done.
        while self.cli(&["PING"]).trim() != "PONG" {
            assert!(
                Instant::now() < until,
                "redis-server on {} never answered PING",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kill it (SIGKILL) and start it again on the same port with the same arguments.
    pub fn restart(&mut self) {
        self.kill();
        self.restart_killed();
    }

    /// Start it again after [`RedisServer::kill`], on the same port with the same arguments.
    pub fn restart_killed(&mut self) {
        self.child = Command::new("redis-server")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.wait_ready();
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT` (`rediss://localhost:PORT` for TLS: the name its certificate
    /// carries).
    pub fn url(&self) -> String {
        match self.scheme {
            "rediss" => format!("rediss://localhost:{}", self.port),
            _ => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// Run `redis-cli -p PORT ARGS` and return its output ("" when it cannot connect).
    pub fn cli(&self, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(&self.cli_prefix)
            .args(["-p", &self.port.to_string()])
            .args(args)
            .stderr(Stdio::null())
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
            .unwrap_or_default()
    }

    /// Add the ACL user `name` with `password` and exactly the rules `rules` (for example
    /// [`paceline::distributed::MINIMAL_ACL`]).
    pub fn add_user(&self, name: &str, password: &str, rules: &str) {
        let mut args = vec!["ACL", "SETUSER", name, "reset", "on"];
        let secret = format!(">{password}");
        args.push(&secret);
        args.extend(rules.split_whitespace());
        let answer = self.cli(&args);
        assert_eq!(answer.trim(), "OK", "ACL SETUSER {name}: {answer}");
    }

    /// Calls of one command from `INFO commandstats` (e.g. `evalsha`).
    pub fn command_calls(&self, command: &str) -> u64 {
        command_calls(&self.cli(&["INFO", "commandstats"]), command)
    }

    /// Kill it at once (SIGKILL) and wait for it to exit.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Calls of `command` in an `INFO commandstats` answer.
fn command_calls(info: &str, command: &str) -> u64 {
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .and_then(|calls| calls.trim().parse().ok())
        .unwrap_or(0)
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster of 3 primaries and 3 replicas on loopback, AOF on, made with
/// `redis-server --cluster-enabled yes` and `redis-cli --cluster create`; a replica takes over
/// 1 s after its primary stops answering.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Start the six nodes and join them; wait until every node says the cluster is ok.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let nodes: Vec<RedisServer> = (0..6)
            .map(|i| {
                let port = free_port();
                let node_dir = dir.path().join(format!("node{i}"));
                std::fs::create_dir_all(&node_dir).expect("node dir");
                let args = vec![
                    "--port".into(),
                    port.to_string(),
                    "--cluster-enabled".into(),
                    "yes".into(),
                    "--cluster-config-file".into(),
                    s(&node_dir.join("nodes.conf")),
                    "--cluster-node-timeout".into(),
                    "1000".into(),
                    "--dir".into(),
                    s(&node_dir),
                    "--save".into(),
                    String::new(),
                    "--appendonly".into(),
                    "yes".into(),
                ];
                RedisServer::spawn(port, args, Vec::new(), "redis")
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            created.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        let cluster = RedisCluster { nodes, _dir: dir };
        cluster.wait_ok();
        cluster
    }

    /// Wait until every running node answers `cluster_state:ok` and agrees on the primaries.
    pub fn wait_ok(&self) {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = self
                .nodes
                .iter()
                .filter(|n| n.cli(&["PING"]).trim() == "PONG")
                .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"));
            if ok {
                return;
            }
            assert!(Instant::now() < until, "the cluster never became ok");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The URL of one node (paceline finds the others: it may be the one killed later).
    pub fn url(&self) -> String {
        self.nodes[0].url()
    }

    /// The node that holds `key`'s slot as primary.
    pub fn primary_of(&self, key: &str) -> usize {
        let live = self
            .nodes
            .iter()
            .find(|n| n.cli(&["PING"]).trim() == "PONG")
            .expect("a live node");
        let slot = live.cli(&["CLUSTER", "KEYSLOT", key]);
        let slot: u16 = slot.trim().parse().expect("a slot");
        let shards = live.cli(&["CLUSTER", "SLOTS"]);
        // `redis-cli` prints CLUSTER SLOTS flat: start, end, then each node's ip, port, id.
        let lines: Vec<&str> = shards.lines().map(str::trim).collect();
        let mut i = 0;
        while i + 3 < lines.len() {
            if let (Ok(start), Ok(end)) = (lines[i].parse::<u16>(), lines[i + 1].parse::<u16>())
                && lines[i + 2] == "127.0.0.1"
                && (start..=end).contains(&slot)
            {
                let port: u16 = lines[i + 3].parse().expect("a port");
                return self
                    .nodes
                    .iter()
                    .position(|n| n.port == port)
                    .expect("a node of this cluster");
            }
            i += 1;
        }
        panic!("no primary for slot {slot}: {shards}");
    }

    /// Add an ACL user on every node (each node keeps its own users).
    pub fn add_user(&self, name: &str, password: &str, rules: &str) {
        for node in &self.nodes {
            node.add_user(name, password, rules);
        }
    }

    /// Node `i`.
    pub fn node(&mut self, i: usize) -> &mut RedisServer {
        &mut self.nodes[i]
    }

    /// Calls of one command summed over every node.
    pub fn command_calls(&self, command: &str) -> u64 {
        self.nodes
            .iter()
            .map(|n| command_calls(&n.cli(&["INFO", "commandstats"]), command))
            .sum()
    }
}

//! Real etcd servers as child processes.
//!
//! Each member listens on free loopback ports and keeps its data in the
//! cluster's temporary directory, so tests can run side by side. A member can
//! be stopped (SIGKILL, as a crash would), paused (SIGSTOP: the process holds
//! its sockets but answers nothing, which is what a hung or partitioned node
//! looks like to a client), resumed (SIGCONT) and restarted on its data.
//!
//! Starting waits until every member answers and the cluster has a leader,
//! and panics with the tail of the member's log when it does not: a test that
//! cannot get etcd should fail loudly, not hang.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::ports::free_port;

/// How long a start or restart may take before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// One etcd node: a single-member cluster.
pub struct EtcdServer {
    cluster: EtcdCluster,
}

impl EtcdServer {
    /// Starts one etcd node and waits until it is leader of itself.
    pub async fn start() -> EtcdServer {
        EtcdServer {
            cluster: EtcdCluster::start(1).await,
        }
    }

    /// The client URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        self.cluster.members[0].endpoint()
    }

    /// The client URL as a one-element list, for APIs that take several.
    pub fn endpoints(&self) -> Vec<String> {
        self.cluster.endpoints()
    }

    /// A client connected to this node; panics when it cannot connect.
    pub async fn client(&self) -> etcd_client::Client {
        self.cluster.client().await
    }

    /// The node, to stop, pause, resume or restart it.
    pub fn member(&mut self) -> &mut EtcdMember {
        &mut self.cluster.members[0]
    }

    /// Kills the node (SIGKILL).
    pub fn stop(&mut self) {
        self.member().stop();
    }

    /// Freezes the node (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&mut self) {
        self.member().pause();
    }

    /// Thaws a paused node (SIGCONT).
    pub fn resume(&mut self) {
        self.member().resume();
    }

    /// Kills the node if it runs, starts it again on the same data and
    /// waits until it leads again.
    pub async fn restart(&mut self) {
        self.member().restart();
        self.cluster.wait_healthy().await;
    }

    /// The text of `/metrics` on the client port.
    pub fn metrics(&self) -> String {
        self.cluster.members[0].metrics()
    }

    /// `etcd_server_proposals_committed_total` from `/metrics`: the raft
    /// writes this node committed so far.
    pub fn proposals_committed(&self) -> u64 {
        self.metrics()
            .lines()
            .find_map(|line| line.strip_prefix("etcd_server_proposals_committed_total "))
            .and_then(|value| value.trim().parse::<f64>().ok())
            .expect("etcd_server_proposals_committed_total in /metrics") as u64
    }
}

/// Several etcd members forming one cluster.
pub struct EtcdCluster {
    members: Vec<EtcdMember>,
    _dir: TempDir,
}

impl EtcdCluster {
    /// Starts `size` members as one new cluster and waits until each answers
    /// and a leader is elected.
    pub async fn start(size: usize) -> EtcdCluster {
        assert!(size > 0, "a cluster needs at least one member");
        let dir = tempfile::Builder::new()
            .prefix("tusd-etcd-")
            .tempdir()
            .expect("cannot create a temporary directory for etcd");
        let ports: Vec<(u16, u16)> = (0..size).map(|_| (free_port(), free_port())).collect();
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("tusd-test-{}", ports[0].0);
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, &(client_port, peer_port))| {
                let mut member = EtcdMember {
                    name: format!("m{i}"),
                    client_port,
                    peer_port,
                    data_dir: dir.path().join(format!("m{i}.etcd")),
                    log_path: dir.path().join(format!("m{i}.log")),
                    args: member_args(i, client_port, peer_port, &initial_cluster, &token),
                    child: None,
                    paused: false,
                };
                member.spawn();
                member
            })
            .collect();
        let cluster = EtcdCluster { members, _dir: dir };
        cluster.wait_healthy().await;
        cluster
    }

    /// The client URLs of all members, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(EtcdMember::endpoint).collect()
    }

    /// Member `index`, to stop, pause, resume or restart it.
    pub fn member(&mut self, index: usize) -> &mut EtcdMember {
        &mut self.members[index]
    }

    /// How many members the cluster was started with.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Always false: a cluster has at least one member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The index of the member that reports itself leader
    /// (`etcd_server_is_leader 1` in its `/metrics`), asking only running,
    /// unpaused members; `None` while there is none (an election).
    pub fn leader(&self) -> Option<usize> {
        self.members
            .iter()
            .position(|m| m.is_running() && !m.paused && m.is_leader())
    }

    /// Waits until a member reports itself leader and returns its index;
    /// panics after the start-up timeout (30 s).
    pub async fn wait_leader(&self) -> usize {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(index) = self.leader() {
                return index;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no etcd member became leader within {START_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A client connected to every member; panics when it cannot connect.
    pub async fn client(&self) -> etcd_client::Client {
        let options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(10));
        etcd_client::Client::connect(self.endpoints(), Some(options))
            .await
            .unwrap_or_else(|e| panic!("cannot connect to etcd {:?}: {e}", self.endpoints()))
    }

    /// Waits until every running, unpaused member answers and reports a
    /// leader; panics with the members' logs after the start-up timeout (30 s).
    pub async fn wait_healthy(&self) {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        for member in self.members.iter().filter(|m| m.is_running() && !m.paused) {
            loop {
                if member.has_leader().await {
                    break;
                }
                if let Some(status) = member.exited() {
                    panic!(
                        "etcd member {} exited with {status} during start-up; log:\n{}",
                        member.name,
                        member.log_tail()
                    );
                }
                if tokio::time::Instant::now() > deadline {
                    panic!(
                        "etcd member {} did not become healthy within {START_TIMEOUT:?}; log:\n{}",
                        member.name,
                        member.log_tail()
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One member process of an [`EtcdCluster`].
pub struct EtcdMember {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    paused: bool,
}

impl EtcdMember {
    /// The member's name in the cluster (`m0`, `m1`, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The client URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The process id while the member runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process was started and not stopped.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The member's client and peer ports, e.g. to keep them from other
    /// processes while the member is stopped.
    pub fn ports(&self) -> [u16; 2] {
        [self.client_port, self.peer_port]
    }

    /// Whether the member is frozen by [`EtcdMember::pause`].
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Whether the member says it leads the cluster (`etcd_server_is_leader`
    /// in `/metrics`); false when it does not answer. Blocks for up to a
    /// second: ask only a running, unpaused member.
    pub fn is_leader(&self) -> bool {
        http_get_within(self.client_port, "/metrics", Duration::from_secs(1))
            .map(|text| {
                text.lines().any(|line| {
                    line.strip_prefix("etcd_server_is_leader ")
                        .and_then(|value| value.trim().parse::<f64>().ok())
                        == Some(1.0)
                })
            })
            .unwrap_or(false)
    }

    /// Where the member's output goes; worth reading when a test fails.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Kills the member (SIGKILL) and reaps it. Its data stays for a restart.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused = false;
    }

    /// Freezes the member with SIGSTOP.
    pub fn pause(&mut self) {
        let pid = self
            .pid()
            .unwrap_or_else(|| panic!("etcd member {} is not running", self.name));
        crate::freeze::freeze(pid, &format!("etcd member {}", self.name));
        self.paused = true;
    }

    /// Thaws the member with SIGCONT.
    pub fn resume(&mut self) {
        if let Some(pid) = self.pid() {
            crate::freeze::thaw(pid);
        }
        self.paused = false;
    }

    /// Kills the member if it runs and starts it again on the same data and
    /// ports. Returns without waiting: in a cluster, a member alone may not
    /// be healthy until its peers answer (see [`EtcdCluster::wait_healthy`]).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// The text of `/metrics` on the client port; panics when unreachable.
    pub fn metrics(&self) -> String {
        http_get(self.client_port, "/metrics")
            .unwrap_or_else(|e| panic!("GET /metrics from etcd {}: {e}", self.name))
    }

    fn spawn(&mut self) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("cannot open the etcd log file");
        let mut command = Command::new(etcd_bin());
        command
            .args(&self.args)
            .arg(format!("--data-dir={}", self.data_dir.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cannot clone the log file handle"))
            .stderr(log);
        if let Some(arch) = unsupported_arch() {
            command.env("ETCD_UNSUPPORTED_ARCH", arch);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", etcd_bin().display()));
        self.child = Some(child);
    }

    fn exited(&self) -> Option<String> {
        // A `Child` needs `&mut` for try_wait; peek through /proc instead so
        // the caller can keep a shared borrow.
        let pid = self.pid()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let state = stat.rsplit(')').next()?.split_whitespace().next()?;
        (state == "Z").then(|| "an exit (zombie process)".to_owned())
    }

    async fn has_leader(&self) -> bool {
        let connect = async {
            let options = etcd_client::ConnectOptions::new()
                .with_connect_timeout(Duration::from_millis(500))
                .with_timeout(Duration::from_secs(1));
            let mut client = etcd_client::Client::connect([self.endpoint()], Some(options)).await?;
            client.status().await
        };
        match tokio::time::timeout(Duration::from_secs(2), connect).await {
            Ok(Ok(status)) => status.leader() != 0,
            _ => false,
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for EtcdMember {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `etcdctl lock name`, running and holding the lock: returns once etcdctl
/// printed its key (`name/{lease hex}`). It holds until it gets SIGTERM (then
/// it unlocks) or is killed (then its lease expires).
pub fn etcdctl_lock(endpoints: &[String], name: &str) -> Child {
    use std::io::{BufRead, BufReader};

    let mut holder = etcdctl(endpoints)
        .args(["lock", name])
        .stdout(Stdio::piped())
        .spawn()
        .expect("etcdctl starts");
    let mut line = String::new();
    BufReader::new(holder.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("etcdctl prints its key");
    assert!(
        line.starts_with(&format!("{name}/")),
        "etcdctl lock {name} printed {line:?}"
    );
    holder
}

/// A command running `etcdctl` (API v3) against `endpoints`.
pub fn etcdctl(endpoints: &[String]) -> Command {
    let mut command = Command::new(etcdctl_bin());
    command
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", endpoints.join(",")));
    command
}

/// The etcd binary: `ETCD_BIN`, else `etcd` on `PATH`.
pub fn etcd_bin() -> PathBuf {
    find_binary("ETCD_BIN", "etcd")
}

/// The etcdctl binary: `ETCDCTL_BIN`, else `etcdctl` on `PATH`.
pub fn etcdctl_bin() -> PathBuf {
    find_binary("ETCDCTL_BIN", "etcdctl")
}

/// The version line `etcd --version` prints, e.g. `etcd Version: 3.5.1`.
pub fn etcd_version() -> String {
    let output = Command::new(etcd_bin())
        .arg("--version")
        .env("ETCD_UNSUPPORTED_ARCH", unsupported_arch().unwrap_or(""))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} --version: {e}", etcd_bin().display()));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .next()
        .unwrap_or("etcd Version: unknown")
        .to_owned()
}

fn find_binary(variable: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(variable).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{variable}={} does not name a file; run scripts/install-etcd.sh",
            path.display()
        );
        return path;
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} not found: set {variable} or put {name} on PATH \
                 (scripts/install-etcd.sh installs etcd 3.4 and 3.5)"
            )
        })
}

fn member_args(
    index: usize,
    client_port: u16,
    peer_port: u16,
    initial_cluster: &str,
    token: &str,
) -> Vec<String> {
    vec![
        format!("--name=m{index}"),
        format!("--listen-client-urls=http://127.0.0.1:{client_port}"),
        format!("--advertise-client-urls=http://127.0.0.1:{client_port}"),
        format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
        format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
        format!("--initial-cluster={initial_cluster}"),
        format!("--initial-cluster-token={token}"),
        "--initial-cluster-state=new".to_owned(),
        "--logger=zap".to_owned(),
        "--log-level=warn".to_owned(),
    ]
}

/// Debian's etcd refuses to start off amd64 (and arm64 in newer releases)
/// unless `ETCD_UNSUPPORTED_ARCH` names the architecture.
fn unsupported_arch() -> Option<&'static str> {
    match std::env::consts::ARCH {
        "x86_64" => None,
        "aarch64" => Some("arm64"),
        other => Some(other),
    }
}

/// A minimal HTTP/1.0 GET on loopback: enough for `/metrics` and `/health`,
/// without pulling an HTTP client into every test.
fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    http_get_within(port, path, Duration::from_secs(10))
}

/// [`http_get`] with its own connect and read timeout.
fn http_get_within(port: u16, path: &str, timeout: Duration) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = std::net::TcpStream::connect_timeout(&address, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    match response.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.") && head.contains(" 200 ") => {
            Ok(body.to_owned())
        }
        _ => Err(std::io::Error::other(format!(
            "unexpected answer to GET {path}: {}",
            response.lines().next().unwrap_or("")
        ))),
    }
}

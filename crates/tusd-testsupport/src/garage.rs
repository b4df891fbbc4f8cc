//! A real Garage, the S3-compatible object store written in Rust, as a child
//! process on loopback: what the S3 store's tests run against (no mock S3).
//!
//! [`GarageServer::start`] writes a configuration for one node (replication
//! factor 1, sqlite metadata, a random RPC secret, free loopback ports for
//! RPC, S3 and admin) into a temporary directory, starts `garage server`,
//! and then sets the node up with Garage's own command-line client, as an
//! operator would: read the node id, `layout assign` it, `layout apply`,
//! `key import` a fixed access key, `bucket create`, `bucket allow --read
//! --write --owner`. It returns once the S3 port answers, and panics with
//! the tail of Garage's log when any step fails, so a test that cannot get
//! Garage fails loudly instead of hanging. [`GarageCluster::start`] does the
//! same for several nodes (replication factor = node count), connected with
//! `garage node connect`, for tests that stop a node.
//!
//! The binary is found through `GARAGE_BIN`, then the `.tools/garage.env`
//! that `scripts/install-garage.sh` writes at the workspace root, then
//! `garage` on `PATH`. The process is killed when the handle drops, and its
//! data lives in the temporary directory removed with it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::ports::free_port;

/// How long start-up (the server, then each set-up step) may take.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The S3 region the node is configured with (Garage's default name).
pub const GARAGE_REGION: &str = "garage";

/// The bucket every node is started with.
pub const GARAGE_BUCKET: &str = "tusd";

/// The access key imported into every node: Garage key ids are `GK` and 24
/// hex digits, secrets 64 hex digits. Fixed, since the node lives only for
/// one test on loopback.
pub const GARAGE_ACCESS_KEY_ID: &str = "GK0123456789abcdef01234567";

/// The secret of [`GARAGE_ACCESS_KEY_ID`].
pub const GARAGE_SECRET_ACCESS_KEY: &str =
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// The name the access key is imported under.
const KEY_NAME: &str = "tusd-test";

/// One Garage node with a bucket and an access key allowed to use it.
pub struct GarageServer {
    child: Option<Child>,
    config: PathBuf,
    log_path: PathBuf,
    rpc_port: u16,
    s3_port: u16,
    admin_port: u16,
    _dir: TempDir,
}

impl GarageServer {
    /// Starts a single-node Garage and sets up [`GARAGE_BUCKET`] and the
    /// access key; panics (with Garage's log) when that fails.
    pub async fn start() -> GarageServer {
        tokio::task::spawn_blocking(GarageServer::start_blocking)
            .await
            .expect("starting Garage panicked")
    }

    /// [`GarageServer::start`] for callers outside an async runtime.
    pub fn start_blocking() -> GarageServer {
        let mut server = GarageServer::spawn_node(1, &rpc_secret());
        server.set_up();
        server
    }

    /// Writes a node's configuration into a temporary directory of its own
    /// and starts it, without any set-up.
    fn spawn_node(replication_factor: usize, secret: &str) -> GarageServer {
        let dir = tempfile::Builder::new()
            .prefix("tusd-garage-")
            .tempdir()
            .expect("cannot create a temporary directory for Garage");
        let ports = Ports {
            rpc: free_port(),
            s3: free_port(),
            admin: free_port(),
        };
        let config = dir.path().join("garage.toml");
        std::fs::write(
            &config,
            config_text(dir.path(), ports, replication_factor, secret),
        )
        .expect("cannot write Garage's configuration");
        let log_path = dir.path().join("garage.log");
        let mut server = GarageServer {
            child: None,
            config,
            log_path,
            rpc_port: ports.rpc,
            s3_port: ports.s3,
            admin_port: ports.admin,
            _dir: dir,
        };
        server.spawn();
        server
    }

    /// The S3 endpoint, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// The S3 region the node answers to.
    pub fn region(&self) -> &'static str {
        GARAGE_REGION
    }

    /// The bucket created at start-up.
    pub fn bucket(&self) -> &'static str {
        GARAGE_BUCKET
    }

    /// The access key id allowed to read, write and own the bucket.
    pub fn access_key_id(&self) -> &'static str {
        GARAGE_ACCESS_KEY_ID
    }

    /// The secret of [`GarageServer::access_key_id`].
    pub fn secret_access_key(&self) -> &'static str {
        GARAGE_SECRET_ACCESS_KEY
    }

    /// The admin API's port (health: `GET /health`).
    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// Where Garage's output goes; worth reading when a test fails.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Runs Garage's command-line client against this node and returns its
    /// standard output; panics (with the log) when it fails.
    pub fn cli(&self, args: &[&str]) -> String {
        match self.try_cli(args) {
            Ok(out) => out,
            Err(e) => panic!(
                "garage {}: {e}\nGarage's log:\n{}",
                args.join(" "),
                self.log_tail()
            ),
        }
    }

    /// Creates another bucket the test key may read, write and own.
    pub fn create_bucket(&self, name: &str) {
        self.cli(&["bucket", "create", name]);
        self.cli(&[
            "bucket", "allow", "--read", "--write", "--owner", name, "--key", KEY_NAME,
        ]);
    }

    fn try_cli(&self, args: &[&str]) -> Result<String, String> {
        let output = Command::new(garage_bin())
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", garage_bin().display()))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(format!(
                "exited with {}: {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    fn spawn(&mut self) {
        let log = File::create(&self.log_path).expect("cannot create Garage's log file");
        let child = Command::new(garage_bin())
            .arg("-c")
            .arg(&self.config)
            .arg("server")
            .env("RUST_LOG", "garage=info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cannot share Garage's log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", garage_bin().display()));
        self.child = Some(child);
    }

    /// Lays the node out, imports the key, creates and allows the bucket,
    /// then waits for the S3 port.
    fn set_up(&mut self) {
        let node_id = self.node_id();
        self.retry(
            "layout assign",
            &["layout", "assign", "-z", "dc1", "-c", "1G", &node_id],
        );
        self.cli(&["layout", "apply", "--version", "1"]);
        self.create_key_and_bucket();
        self.wait_s3();
    }

    /// The node's id, once its RPC port answers: `node id` only reads the
    /// node's key file; `status` goes through the server, so once it
    /// succeeds the server is up.
    fn node_id(&mut self) -> String {
        let node = self.retry("node id", &["node", "id", "-q"]);
        self.retry("status", &["status"]);
        node.trim()
            .split('@')
            .next()
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| panic!("garage node id -q printed {node:?}"))
            .to_owned()
    }

    fn create_key_and_bucket(&mut self) {
        self.retry(
            "key import",
            &[
                "key",
                "import",
                "--yes",
                "-n",
                KEY_NAME,
                GARAGE_ACCESS_KEY_ID,
                GARAGE_SECRET_ACCESS_KEY,
            ],
        );
        self.create_bucket(GARAGE_BUCKET);
    }

    fn wait_s3(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        while s3_answer(self.s3_port).is_err() {
            self.check_running();
            assert!(
                Instant::now() < deadline,
                "Garage's S3 port {} did not answer within {START_TIMEOUT:?}; log:\n{}",
                self.s3_port,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs a client command until it succeeds (the server may still be
    /// starting, or the layout still settling); panics at the deadline.
    fn retry(&mut self, what: &str, args: &[&str]) -> String {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.try_cli(args) {
                Ok(out) => return out,
                Err(e) => {
                    self.check_running();
                    if Instant::now() > deadline {
                        panic!(
                            "garage {what} did not succeed within {START_TIMEOUT:?}: {e}\nlog:\n{}",
                            self.log_tail()
                        );
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    fn check_running(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "Garage exited with {status} during start-up; log:\n{}",
                    self.log_tail()
                );
            }
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Freezes the node (SIGSTOP): its connections stay open and nothing
    /// answers, as when its disk or VM hangs.
    pub fn pause(&self) {
        let pid = self.child.as_ref().expect("Garage is not running").id();
        crate::freeze::freeze(pid, "Garage");
    }

    /// Thaws a paused node (SIGCONT).
    pub fn resume(&self) {
        let pid = self.child.as_ref().expect("Garage is not running").id();
        crate::freeze::thaw(pid);
    }

    /// Kills the node (SIGKILL) and reaps it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for GarageServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Several Garage nodes forming one cluster (every node a zone of its own
/// with the same capacity), with the bucket and key of [`GarageServer`],
/// for tests that stop a node. Each node serves S3 on its own port.
pub struct GarageCluster {
    nodes: Vec<GarageServer>,
}

impl GarageCluster {
    /// Starts `size` nodes with replication factor `size`, connects them,
    /// lays them out, and sets up the bucket and key through node 0.
    pub async fn start(size: usize) -> GarageCluster {
        assert!(size > 0, "a cluster needs at least one node");
        tokio::task::spawn_blocking(move || {
            let secret = rpc_secret();
            let mut nodes: Vec<GarageServer> = (0..size)
                .map(|_| GarageServer::spawn_node(size, &secret))
                .collect();
            let ids: Vec<String> = nodes.iter_mut().map(GarageServer::node_id).collect();
            let (first, others) = nodes.split_first_mut().expect("size > 0");
            for (node, id) in others.iter().zip(&ids[1..]) {
                let peer = format!("{id}@127.0.0.1:{}", node.rpc_port);
                first.retry("node connect", &["node", "connect", &peer]);
            }
            for (i, id) in ids.iter().enumerate() {
                let zone = format!("dc{i}");
                first.retry(
                    "layout assign",
                    &["layout", "assign", "-z", &zone, "-c", "1G", id],
                );
            }
            first.cli(&["layout", "apply", "--version", "1"]);
            first.create_key_and_bucket();
            for node in nodes.iter_mut() {
                node.wait_s3();
            }
            GarageCluster { nodes }
        })
        .await
        .expect("starting the Garage cluster panicked")
    }

    /// Node `index`: its endpoint, CLI, or to stop it.
    pub fn node(&mut self, index: usize) -> &mut GarageServer {
        &mut self.nodes[index]
    }

    /// The S3 endpoint of node `index`.
    pub fn endpoint(&self, index: usize) -> String {
        self.nodes[index].endpoint()
    }

    /// How many nodes the cluster was started with.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: a cluster has at least one node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

/// A fresh RPC secret: 32 random bytes in hex, shared by a cluster's nodes.
fn rpc_secret() -> String {
    format!(
        "{:032x}{:032x}",
        rand::random::<u128>(),
        rand::random::<u128>()
    )
}

#[derive(Clone, Copy)]
struct Ports {
    rpc: u16,
    s3: u16,
    admin: u16,
}

fn config_text(dir: &Path, ports: Ports, replication_factor: usize, secret: &str) -> String {
    let Ports {
        rpc: rpc_port,
        s3: s3_port,
        admin: admin_port,
    } = ports;
    let admin_token = format!("{:032x}", rand::random::<u128>());
    format!(
        r#"metadata_dir = "{meta}"
data_dir = "{data}"
db_engine = "sqlite"
replication_factor = {replication_factor}
rpc_bind_addr = "127.0.0.1:{rpc_port}"
rpc_public_addr = "127.0.0.1:{rpc_port}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "{GARAGE_REGION}"
api_bind_addr = "127.0.0.1:{s3_port}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin_port}"
admin_token = "{admin_token}"
"#,
        meta = dir.join("meta").display(),
        data = dir.join("data").display(),
    )
}

/// The status line of an anonymous `GET /` on the S3 port: any HTTP answer
/// (Garage refuses it with 403) shows the S3 API is serving.
fn s3_answer(port: u16) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let timeout = Duration::from_secs(2);
    let mut stream = std::net::TcpStream::connect_timeout(&address, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    write!(stream, "GET / HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    match response.lines().next() {
        Some(line) if line.starts_with("HTTP/1.") => Ok(line.to_owned()),
        _ => Err(std::io::Error::other("not an HTTP answer")),
    }
}

/// The Garage binary: `GARAGE_BIN`, else the path in the workspace's
/// `.tools/garage.env` (written by `scripts/install-garage.sh`), else
/// `garage` on `PATH`.
pub fn garage_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("GARAGE_BIN").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "GARAGE_BIN={} does not name a file; run scripts/install-garage.sh",
            path.display()
        );
        return path;
    }
    let env_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/garage.env");
    if let Ok(text) = std::fs::read_to_string(&env_file) {
        let named = text
            .lines()
            .find_map(|line| line.trim().strip_prefix("GARAGE_BIN="))
            .map(PathBuf::from);
        if let Some(path) = named.filter(|p| p.is_file()) {
            return path;
        }
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("garage"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "garage not found: set GARAGE_BIN or run scripts/install-garage.sh \
                 (it builds Garage once and records its path in .tools/garage.env)"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_garage_node_starts_with_its_bucket_and_answers_s3() {
        let garage = GarageServer::start().await;
        let status = s3_answer(garage.s3_port).expect("the S3 port answers");
        // Anonymous requests are refused: the API is up and checks access.
        assert!(status.contains(" 403 "), "{status}");
        let info = garage.cli(&["bucket", "info", GARAGE_BUCKET]);
        assert!(info.contains(GARAGE_ACCESS_KEY_ID), "{info}");
        assert!(garage.endpoint().starts_with("http://127.0.0.1:"));
    }
}

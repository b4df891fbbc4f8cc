//! A tusd-rs node for the chaos suite: a real process on a port fixed for
//! its whole life, so that it can be killed and started again behind the
//! same nginx upstream line. (`tusd_testsupport::TusServer` always asks for
//! `--port 0`, a new port on every start.)
//!
//! Every incarnation's output goes into one log, each start marked, and the
//! lines the suite counts (the store's fence refusals, lost etcd leases)
//! are also kept with
//! the moment they were read, so that they can be put next to the fault
//! that caused them.
//!
//! [`PortHold`] keeps a dead process's port from other processes until it
//! is started again: test processes running side by side pick free ports
//! by binding them, and a port left free for the seconds of a fault can be
//! gone when the node or etcd member comes back.

use std::io::{BufRead, BufReader};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// What a node logs when the file store refused a write of a holder whose
/// lock had already passed on (`tusd-handler/src/error.rs`).
pub const FENCE_REFUSAL: &str = "store refused a stale lock holder";

/// What a node logs when its etcd lease could not be kept alive and every
/// lock under it was given up (`etcd3locker/src/lease.rs`).
pub const LEASE_LOST: &str = "etcd lease lost";

/// How long a start may take before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Output {
    text: String,
    refusals: Vec<Instant>,
    lease_losses: Vec<Instant>,
}

pub struct Node {
    name: String,
    bin: PathBuf,
    port: u16,
    args: Vec<String>,
    child: Option<Child>,
    output: Arc<Mutex<Output>>,
    starts: u32,
}

impl Node {
    /// Starts `bin` on 127.0.0.1:`port` serving `upload_dir`, with `args`
    /// appended, and waits until it listens.
    pub fn start(name: &str, bin: &Path, port: u16, upload_dir: &Path, args: &[String]) -> Node {
        let mut all = vec![
            "--host".to_owned(),
            "127.0.0.1".to_owned(),
            "--port".to_owned(),
            port.to_string(),
            "--upload-dir".to_owned(),
            upload_dir.display().to_string(),
        ];
        all.extend_from_slice(args);
        let mut node = Node {
            name: name.to_owned(),
            bin: bin.to_owned(),
            port,
            args: all,
            child: None,
            output: Arc::default(),
            starts: 0,
        };
        node.spawn();
        node
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The output of every incarnation so far.
    pub fn log(&self) -> String {
        self.output.lock().unwrap().text.clone()
    }

    /// When each fence refusal was logged, over every incarnation.
    pub fn refusals(&self) -> Vec<Instant> {
        self.output.lock().unwrap().refusals.clone()
    }

    /// When each etcd lease loss was logged, over every incarnation.
    pub fn lease_losses(&self) -> Vec<Instant> {
        self.output.lock().unwrap().lease_losses.clone()
    }

    /// Sends `signal` (SIGSTOP, SIGCONT, ...) to the running process.
    pub fn signal(&self, signal: libc::c_int) {
        let child = self
            .child
            .as_ref()
            .unwrap_or_else(|| panic!("node {} is not running", self.name));
        // SAFETY: kill(2) has no memory effects; the pid is our own child,
        // not yet reaped, so it cannot name another process.
        let rc = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({}, {signal}) failed", child.id());
    }

    /// SIGKILL, like a crash, and reap the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the node again on the same port, directory and flags (after
    /// [`Node::kill`]), and waits until it listens.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let marker = format!("==== {} start {} ====\n", self.name, self.starts);
        self.output.lock().unwrap().text.push_str(&marker);
        // The port was just given up by the previous incarnation (or handed
        // out free); a socket lingering in the kernel can refuse it for a
        // moment, so a start that fails on the address is tried again.
        let started = Instant::now();
        loop {
            match self.try_spawn() {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(reason) if started.elapsed() < START_TIMEOUT => {
                    if !reason.contains("cannot listen") {
                        panic!("node {} did not start: {reason}", self.name);
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(reason) => panic!("node {} did not start: {reason}", self.name),
            }
        }
    }

    fn try_spawn(&self) -> Result<Child, String> {
        let mut child = Command::new(&self.bin)
            .args(&self.args)
            .env("TUSD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        let (tx, rx) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().expect("piped")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("piped")),
        ] {
            let output = self.output.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if line.contains("listening on http://") {
                        let _ = tx.send(Ok(()));
                    }
                    if line.contains("tusd-rs: ") {
                        let _ = tx.send(Err(line.clone()));
                    }
                    let mut output = output.lock().unwrap();
                    if line.contains(FENCE_REFUSAL) {
                        output.refusals.push(Instant::now());
                    }
                    if line.contains(LEASE_LOST) {
                        output.lease_losses.push(Instant::now());
                    }
                    output.text.push_str(&line);
                    output.text.push('\n');
                }
            });
        }
        drop(tx);
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(())) => Ok(child),
            Ok(Err(line)) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(line)
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!(
                    "no 'listening on' within {START_TIMEOUT:?}; log:\n{}",
                    self.log()
                ))
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port kept from other processes while its owner is down;
/// dropping it gives the port back (just before the owner restarts).
///
/// Preferably a socket bound without `SO_REUSEADDR` and not listening:
/// every other bind of the port fails, and a connection to it is refused,
/// exactly as with nobody there. When the dead process's connections still
/// linger on the port (`TIME_WAIT`), that bind is refused too, and a
/// listener takes its place that resets every connection it accepts at
/// once: a peer sees a connection reset before any answer.
pub enum PortHold {
    Bound(#[allow(dead_code)] OwnedFd),
    Listening {
        stop: Arc<AtomicBool>,
        thread: Option<std::thread::JoinHandle<()>>,
    },
    /// Someone took the port in the moment between the kill and the hold.
    Lost,
}

impl PortHold {
    pub fn new(port: u16) -> PortHold {
        let hold = PortHold::take(port);
        if !matches!(hold, PortHold::Bound(_)) {
            eprintln!("chaos: port {port} held as {}", hold.kind());
        }
        hold
    }

    pub fn kind(&self) -> &'static str {
        match self {
            PortHold::Bound(_) => "a bound socket (connections refused)",
            PortHold::Listening { .. } => "a listener resetting every connection",
            PortHold::Lost => "nothing: another process took it",
        }
    }

    fn take(port: u16) -> PortHold {
        if let Some(fd) = bind_only(port) {
            return PortHold::Bound(fd);
        }
        let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) else {
            return PortHold::Lost;
        };
        listener
            .set_nonblocking(true)
            .expect("non-blocking placeholder listener");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((connection, _)) => reset(connection),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        PortHold::Listening {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for PortHold {
    fn drop(&mut self) {
        if let PortHold::Listening { stop, thread } = self {
            stop.store(true, Ordering::SeqCst);
            if let Some(thread) = thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// Closes `connection` with a reset, as a port nobody listens on answers a
/// connection attempt.
fn reset(connection: std::net::TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a descriptor owned by `connection`, which
    // outlives the call; the option struct lives across it.
    unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&connection),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(connection);
}

/// A TCP socket bound to 127.0.0.1:`port`, without `SO_REUSEADDR`, not
/// listening.
fn bind_only(port: u16) -> Option<OwnedFd> {
    // SAFETY: plain socket calls on a descriptor this function owns; the
    // address struct lives across the bind call.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let address = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            (&address as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        (rc == 0).then_some(fd)
    }
}

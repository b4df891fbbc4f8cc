//! A real `tusd-rs` process on a free loopback port, for tests that drive
//! the server over HTTP.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// A running `tusd-rs`. Killed when dropped; its log is kept for messages.
pub struct TusServer {
    child: Child,
    port: u16,
    base_path: String,
    upload_dir: PathBuf,
    log: Arc<Mutex<String>>,
    _tmp: Option<tempfile::TempDir>,
}

impl TusServer {
    /// Starts `bin` on 127.0.0.1 with a fresh temporary upload directory
    /// and `args` appended (which may override `--upload-dir`).
    pub fn start(bin: impl AsRef<Path>, args: &[&str]) -> TusServer {
        let tmp = tempfile::tempdir().expect("temporary upload directory");
        let dir = tmp.path().join("uploads");
        let mut server = TusServer::start_in(bin, &dir, args);
        server._tmp = Some(tmp);
        server
    }

    /// Starts `bin` serving `upload_dir`, which several servers may share.
    pub fn start_in(bin: impl AsRef<Path>, upload_dir: &Path, args: &[&str]) -> TusServer {
        TusServer::start_in_at(bin, upload_dir, 0, args)
    }

    /// Like [`TusServer::start_in`], on `port` (0: one the kernel picks): a
    /// server restarted on its old port is found again at the upload URLs
    /// its clients kept.
    pub fn start_in_at(
        bin: impl AsRef<Path>,
        upload_dir: &Path,
        port: u16,
        args: &[&str],
    ) -> TusServer {
        let mut command = Command::new(bin.as_ref());
        command
            .args(["--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .arg("--upload-dir")
            .arg(upload_dir)
            .args(args)
            .env("TUSD_LOG", "info")
            // With the S3 store: a request Garage leaves unanswered fails
            // after this long instead of stalling the suite.
            .env("TUSD_S3_REQUEST_TIMEOUT", "60")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        crate::test_store::apply_to_command(&mut command, upload_dir, args);
        TusServer::spawn(command, upload_dir)
    }

    fn spawn(mut command: Command, upload_dir: &Path) -> TusServer {
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start tusd-rs ({command:?}): {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().expect("piped")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("piped")),
        ] {
            let log = log.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(rest) = line.split("listening on http://").nth(1) {
                        let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
                    }
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let url = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                panic!("tusd-rs did not start; its log:\n{}", log.lock().unwrap());
            }
        };
        // url is "127.0.0.1:PORT/base/"
        let (addr, path) = url.split_at(url.find('/').unwrap_or(url.len()));
        let port = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port in log line");
        TusServer {
            child,
            port,
            base_path: path.to_owned(),
            upload_dir: upload_dir.to_owned(),
            log,
            _tmp: None,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The creation URL, e.g. `http://127.0.0.1:PORT/files/`.
    pub fn files_url(&self) -> String {
        format!("{}{}", self.origin(), self.base_path)
    }

    pub fn upload_dir(&self) -> &Path {
        &self.upload_dir
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the server.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.child.wait().expect("waiting for tusd-rs")
    }

    /// Kills the server at once (SIGKILL), like a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TusServer {
    fn drop(&mut self) {
        self.kill();
    }
}

impl crate::Server for TusServer {
    fn port(&self) -> u16 {
        self.port
    }

    fn files_url(&self) -> String {
        TusServer::files_url(self)
    }

    fn upload_dir(&self) -> &Path {
        &self.upload_dir
    }
}

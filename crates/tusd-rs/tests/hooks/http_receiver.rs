//! The Python HTTP hook receiver (tests/hooks/receiver.py) as a process,
//! shared by the hook tests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// The Python receiver, killed on drop; its log is one JSON line per call.
pub struct Receiver {
    child: Child,
    port: u16,
    https: bool,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Receiver {
    pub fn start() -> Receiver {
        Receiver::start_with(&[])
    }

    /// The receiver serving HTTPS with this certificate and key (PEM).
    pub fn start_https(cert: &Path, key: &Path) -> Receiver {
        Receiver::start_with(&[cert, key])
    }

    fn start_with(tls: &[&Path]) -> Receiver {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("hooks.log");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hooks/receiver.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(&log)
            .args(tls)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the hook receiver");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("receiver prints its port");
        Receiver {
            child,
            port,
            https: !tls.is_empty(),
            log,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}/hooks", self.port)
    }

    /// Every hook request received so far.
    pub fn calls(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub fn calls_of(&self, kind: &str, id: &str) -> Vec<Value> {
        self.calls()
            .into_iter()
            .filter(|c| c["Type"] == kind && c["Event"]["Upload"]["ID"] == id)
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! The real tus clients the tests drive, tus-js-client (under Node) and
//! tuspy, through the scripts in tests/clients/: starting one as a child
//! process with the arguments both scripts take, and reading the JSON events
//! it prints, killing it at a chosen event. Used by the file-store and the
//! S3 client tests alike.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use super::child_output::{read_output, ChildOutput};

/// Safety net against a hung client; no test expects to come near it.
const LINE_TIMEOUT: Duration = Duration::from_secs(120);
const INSTALL_HINT: &str = "run scripts/install-clients.sh (from the repository root)";

pub fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients")
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `node tests/clients/js/upload.mjs <endpoint> <file> <mode> <args...>`
pub fn js(endpoint: &str, file: &Path, mode: &str, args: &[&str]) -> Command {
    let dir = clients_dir().join("js");
    let installed = dir.join("node_modules/tus-js-client/package.json");
    assert!(
        installed.is_file(),
        "tus-js-client is not installed ({} is missing): {INSTALL_HINT}",
        installed.display()
    );
    let mut command = Command::new("node");
    command.current_dir(&dir).arg(dir.join("upload.mjs"));
    with_upload_args(command, endpoint, file, mode, args)
}

/// `<repo>/.venv/bin/python tests/clients/python/upload.py <endpoint> <file> <mode> <args...>`
pub fn py(endpoint: &str, file: &Path, mode: &str, args: &[&str]) -> Command {
    let python = repo_root().join(".venv/bin/python");
    assert!(
        python.is_file(),
        "the client venv is missing ({} does not exist): {INSTALL_HINT}",
        python.display()
    );
    let probe = Command::new(&python)
        .args(["-c", "import tusclient"])
        .output()
        .expect("running the venv's python");
    assert!(
        probe.status.success(),
        "tuspy is not installed in {}: {INSTALL_HINT}\n{}",
        python.display(),
        String::from_utf8_lossy(&probe.stderr)
    );
    let dir = clients_dir().join("python");
    let mut command = Command::new(python);
    command
        .current_dir(&dir)
        .arg("-u")
        .arg(dir.join("upload.py"));
    with_upload_args(command, endpoint, file, mode, args)
}

/// The arguments both client scripts take: `<endpoint> <file> <mode> <args...>`.
fn with_upload_args(
    mut command: Command,
    endpoint: &str,
    file: &Path,
    mode: &str,
    args: &[&str],
) -> Command {
    command.arg(endpoint).arg(file).arg(mode).args(args);
    command
}

/// What one client process did: its exit status and its JSON event lines.
pub struct Run {
    pub status: ExitStatus,
    pub events: Vec<Value>,
    pub stderr: String,
    pub killed: bool,
}

impl Run {
    pub fn of(&self, kind: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["event"] == kind).collect()
    }

    pub fn requests(&self, method: &str) -> Vec<&Value> {
        self.of("request")
            .into_iter()
            .filter(|e| e["method"] == method)
            .collect()
    }

    pub fn success_url(&self) -> String {
        let success = self.of("success");
        assert!(
            self.status.success() && success.len() == 1,
            "the client did not succeed: {self:?}"
        );
        success[0]["url"].as_str().expect("url").to_owned()
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "status {:?}, killed {}", self.status, self.killed)?;
        for event in &self.events {
            writeln!(f, "  {event}")?;
        }
        write!(f, "stderr:\n{}", self.stderr)
    }
}

/// Runs `command` to the end, or until an event satisfies `kill_when`, at
/// which point the process gets SIGKILL.
pub fn drive(mut command: Command, kill_when: Option<&dyn Fn(&Value) -> bool>) -> Run {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e} ({INSTALL_HINT}?)"));
    let ChildOutput {
        lines: rx,
        stderr: stderr_thread,
    } = read_output(&mut child);
    let mut events = Vec::new();
    let mut killed = false;
    loop {
        match rx.recv_timeout(LINE_TIMEOUT) {
            Ok(line) => {
                let event: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not a JSON event ({e}): {line}"));
                let kill = kill_when.is_some_and(|f| f(&event));
                events.push(event);
                if kill {
                    child.kill().expect("SIGKILL the client");
                    killed = true;
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{command:?} printed nothing for {LINE_TIMEOUT:?}; events: {events:#?}");
            }
        }
    }
    let status = child.wait().expect("waiting for the client");
    let stderr = stderr_thread.join().unwrap_or_default();
    Run {
        status,
        events,
        stderr,
        killed,
    }
}

/// An offset in a client event: a number, or a string holding one.
pub fn offset_of(event: &Value, key: &str) -> u64 {
    match &event[key] {
        Value::Number(n) => n.as_u64().expect("u64"),
        Value::String(s) => s.parse().expect("offset"),
        other => panic!("no {key} in {event} ({other})"),
    }
}

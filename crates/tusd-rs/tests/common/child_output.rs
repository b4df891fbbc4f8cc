//! A child process's output, read while it runs: its stdout line by line,
//! so that a test can act on an event the moment it is printed (kill the
//! child, answer on its stdin), and its stderr whole, for a failure message
//! once the child has ended. Both are read on threads of their own so that
//! neither pipe fills and stalls the child.

use std::io::{BufRead, BufReader, Read};
use std::process::Child;
use std::sync::mpsc;
use std::thread::JoinHandle;

/// The readers of a spawned child's piped stdout and stderr.
pub struct ChildOutput {
    /// Its stdout lines as they come; disconnected when stdout closes.
    pub lines: mpsc::Receiver<String>,
    /// Its stderr, complete when the child has closed it.
    pub stderr: JoinHandle<String>,
}

/// Takes `child`'s stdout and stderr (both must be `Stdio::piped()`).
pub fn read_output(child: &mut Child) -> ChildOutput {
    let (tx, lines) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut stderr_pipe = child.stderr.take().expect("stderr piped");
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr_pipe.read_to_string(&mut s);
        s
    });
    ChildOutput { lines, stderr }
}

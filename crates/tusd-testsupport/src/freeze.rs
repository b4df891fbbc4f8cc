//! Freezing and thawing a child process (SIGSTOP / SIGCONT), the fault of a
//! server that keeps its connections open and answers nothing: a GC pause,
//! a frozen VM, a disk that hangs.

use std::time::Duration;

/// Stops the process `pid` (our own child, not yet reaped) and returns once
/// every one of its threads has stopped; panics naming `what` otherwise.
pub(crate) fn freeze(pid: u32, what: &str) {
    signal(pid, libc::SIGSTOP);
    // kill(2) only queues the stop: every thread must notice it, and a
    // thread busy on the other core may first answer a request sent right
    // after. So wait until /proc shows the process stopped.
    let stat = format!("/proc/{pid}/stat");
    for _ in 0..400 {
        let state = std::fs::read_to_string(&stat).unwrap_or_default();
        let stopped = state
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('T'));
        if stopped {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("{what} did not stop after SIGSTOP");
}

/// Lets a frozen process run again.
pub(crate) fn thaw(pid: u32) {
    signal(pid, libc::SIGCONT);
}

fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) has no memory effects; the pid is the caller's own
    // child, not yet reaped, so it cannot name another process.
    let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
}

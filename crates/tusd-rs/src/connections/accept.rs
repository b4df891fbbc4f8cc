//! The accept loop: one task that accepts, refuses past the connection
//! limit, and survives accept errors without a busy loop or a log flood.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::{conn, Shared};

/// At most one log line per this interval for a repeating condition
/// (accept errors, refusals).
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Refusals answered at once; more are closed without an answer (each
/// answer holds a descriptor for up to [`REFUSAL_LINGER`]).
const MAX_REFUSING: usize = 64;
/// How long a refused connection is read on after its answer, so that the
/// client receives the answer instead of a reset (see `refuse`).
const REFUSAL_LINGER: Duration = Duration::from_secs(1);
const REFUSAL_BODY: &str = "too many connections to this server; retry later\n";

/// Exponential backoff after accept errors: 5 ms doubling to 1 s, back to
/// 5 ms after the next successful accept.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_secs(1);

    pub fn new() -> Backoff {
        Backoff { next: Self::FIRST }
    }

    /// The wait before the next attempt; each call doubles the one after.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        wait
    }

    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// Lets one log line through per interval; counts the ones held back so
/// the next line can say how many there were.
#[derive(Debug)]
pub struct LogLimiter {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    pub fn new(interval: Duration) -> LogLimiter {
        LogLimiter {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// One occurrence at `now`: `Some(n)` when it is to be logged, `n`
    /// being the occurrences held back since the last line; `None` when it
    /// is held back.
    pub fn occurred(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// Errors that concern only the connection being accepted (it was reset
/// or aborted while queued): the next accept can follow at once.
fn concerns_one_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    ) || e.raw_os_error() == Some(libc::EPROTO)
}

/// Accepts until `stop` is cancelled; then drops the listener, so that new
/// connections are refused by the kernel.
pub async fn run(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    let mut backoff = Backoff::new();
    let mut error_log = LogLimiter::new(LOG_INTERVAL);
    let mut refusal_log = LogLimiter::new(LOG_INTERVAL);
    let refusing = Arc::new(AtomicUsize::new(0));
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff.reset();
                let _ = stream.set_nodelay(true);
                match shared.open() {
                    Some(open) => {
                        let shared = shared.clone();
                        tokio::spawn(conn::serve(stream, peer, shared, open));
                    }
                    None => {
                        shared.metrics.refused.inc();
                        if let Some(held_back) = refusal_log.occurred(Instant::now()) {
                            tracing::warn!(
                                limit = shared.tracker.limit(),
                                held_back,
                                "connection limit reached: new connections are answered 503 and closed (--max-connections); {held_back} refusals since the last line"
                            );
                        }
                        if refusing.load(Ordering::Relaxed) < MAX_REFUSING {
                            refusing.fetch_add(1, Ordering::Relaxed);
                            let refusing = refusing.clone();
                            tokio::spawn(async move {
                                refuse(stream).await;
                                refusing.fetch_sub(1, Ordering::Relaxed);
                            });
                        }
                        // else: dropped, closed at once.
                    }
                }
            }
            Err(e) if concerns_one_connection(&e) => {
                tracing::debug!(error = %e, "accept: connection gone before it was accepted");
            }
            Err(e) => {
                // Out of file descriptors (EMFILE, ENFILE), buffers or
                // memory: the queued connection stays queued and the listener
                // stays readable, so retrying at once would spin. Wait,
                // longer each time, and say so once per interval.
                shared.metrics.accept_errors.inc();
                let wait = backoff.next_wait();
                if let Some(held_back) = error_log.occurred(Instant::now()) {
                    tracing::warn!(
                        error = %e,
                        held_back,
                        "accept failed: {e}; retrying in {wait:?}, backing off up to 1s ({held_back} more failures since the last line)"
                    );
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// The answer to a connection past the limit: 503, `Retry-After`, one line
/// of text, `Connection: close`. It is written before the request is read;
/// then the write side is shut and the request read and dropped for a
/// moment, because closing a socket with unread bytes sends a reset that
/// can destroy the answer before the client reads it.
fn refusal() -> Vec<u8> {
    format!(
        "HTTP/1.1 503 Service Unavailable\r\n\
         content-type: text/plain; charset=utf-8\r\n\
         retry-after: 1\r\n\
         tus-resumable: 1.0.0\r\n\
         connection: close\r\n\
         content-length: {}\r\n\r\n{REFUSAL_BODY}",
        REFUSAL_BODY.len()
    )
    .into_bytes()
}

async fn refuse(mut stream: TcpStream) {
    let answered = tokio::time::timeout(REFUSAL_LINGER, async {
        stream.write_all(&refusal()).await?;
        stream.shutdown().await
    })
    .await;
    if !matches!(answered, Ok(Ok(()))) {
        return;
    }
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        let mut sink = [0u8; 4096];
        let mut read = 0usize;
        while read < 64 << 10 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_counting_the_rest() {
        let mut log = LogLimiter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(log.occurred(t0), Some(0));
        // A burst: an accept error every 5 ms for 25 s.
        let mut lines = vec![];
        for i in 1..5000u64 {
            let now = t0 + Duration::from_millis(5 * i);
            if let Some(held) = log.occurred(now) {
                lines.push((now - t0, held));
            }
        }
        assert_eq!(
            lines,
            vec![
                (Duration::from_secs(10), 1999),
                (Duration::from_secs(20), 1999),
            ]
        );
        // Quiet for a while: the next one is logged at once.
        assert_eq!(log.occurred(t0 + Duration::from_secs(60)), Some(999));
        assert_eq!(log.occurred(t0 + Duration::from_secs(61)), None);
    }

    #[test]
    fn backoff_doubles_to_a_second_and_resets() {
        let mut b = Backoff::new();
        let waits: Vec<u64> = (0..10).map(|_| b.next_wait().as_millis() as u64).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_wait(), Duration::from_millis(5));
    }

    #[test]
    fn resource_errors_back_off_and_vanished_peers_do_not() {
        assert!(!concerns_one_connection(&io::Error::from_raw_os_error(
            libc::EMFILE
        )));
        assert!(!concerns_one_connection(&io::Error::from_raw_os_error(
            libc::ENFILE
        )));
        assert!(!concerns_one_connection(&io::Error::from_raw_os_error(
            libc::ENOBUFS
        )));
        assert!(concerns_one_connection(&io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
    }

    #[test]
    fn the_refusal_is_a_complete_http_response() {
        let bytes = refusal();
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut response = httparse::Response::new(&mut headers);
        let head = match response.parse(&bytes).unwrap() {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => panic!("incomplete head"),
        };
        assert_eq!(response.code, Some(503));
        let header = |name: &str| {
            response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| std::str::from_utf8(h.value).unwrap().to_owned())
        };
        assert_eq!(header("retry-after").as_deref(), Some("1"));
        assert_eq!(header("connection").as_deref(), Some("close"));
        let length: usize = header("content-length").unwrap().parse().unwrap();
        assert_eq!(bytes.len() - head, length);
        assert_eq!(&bytes[head..], REFUSAL_BODY.as_bytes());
    }
}

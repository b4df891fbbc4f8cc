//! Connections: our own accept loop and hyper connections serving the app,
//! with the limits no client may exceed (docs/security.md, "Connections").
//!
//! - `accept`: the accept loop; the connection limit (503 past it); accept
//!   errors (out of file descriptors) with backoff and one log line per
//!   interval.
//! - `conn`: one connection: hyper's HTTP/1 (or HTTP/2 with `--enable-h2c`)
//!   with a bounded read buffer and head size, and a watchdog for the
//!   header, idle and write timeouts.
//!
//! Shutdown: cancelling [`Shared::stop`] ends the accept loop (the listener
//! closes) and asks every connection to finish gracefully (idle ones close
//! at once, busy ones after their request); [`Tracker::all_closed`] tells
//! when none is left; [`Shared::force`] drops those still open.

mod accept;
mod conn;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use accept::run as accept_loop;

/// Descriptors kept for everything but client connections: the listener,
/// the runtime, logs, etcd, refusals in progress (64), files being read.
const FD_RESERVE: u64 = 128;
/// Descriptors one client connection may hold at once: its socket and the
/// upload's data file (the `.info` and fence files are opened briefly).
const FDS_PER_CONNECTION: u64 = 2;
/// `--max-connections` unless given, if the descriptor limit allows it.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// HTTP/2 streams one connection may have open at once.
const H2_MAX_STREAMS: u32 = 100;

/// The per-connection deadlines; `None` is off.
#[derive(Clone, Debug)]
pub struct Timeouts {
    pub header: Option<Duration>,
    pub idle: Option<Duration>,
    pub write: Option<Duration>,
}

/// What the connection limits are, from the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    pub timeouts: Timeouts,
    pub max_connections: usize,
    pub max_header_size: usize,
    pub max_read_buffer: usize,
    pub h2c: bool,
}

/// Why a connection was closed by the server.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum TimeoutReason {
    Header,
    Idle,
    Write,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Counters of the connection layer, exposed next to the handler's.
#[derive(Clone, Default)]
pub struct Metrics {
    refused: Counter,
    accept_errors: Counter,
    timed_out: Family<ReasonLabel, Counter>,
}

impl Metrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("tusd");
        r.register(
            "connections_refused",
            "Connections answered 503 and closed because --max-connections were open",
            self.refused.clone(),
        );
        r.register(
            "accept_errors",
            "Failed accepts (such as out of file descriptors), retried with backoff",
            self.accept_errors.clone(),
        );
        r.register(
            "connections_timed_out",
            "Connections closed by the server, by timeout: header, idle or write",
            self.timed_out.clone(),
        );
    }

    fn timed_out(&self, reason: TimeoutReason) {
        let reason = match reason {
            TimeoutReason::Header => "header",
            TimeoutReason::Idle => "idle",
            TimeoutReason::Write => "write",
        };
        self.timed_out.get_or_create(&ReasonLabel { reason }).inc();
    }
}

/// Counts open connections against the limit and in the gauge.
pub struct Tracker {
    open: AtomicUsize,
    limit: usize,
    gauge: Gauge,
    closed: Notify,
}

/// One open connection; closing it is dropping this.
pub struct Open(Arc<Shared>);

impl Drop for Open {
    fn drop(&mut self) {
        let tracker = &self.0.tracker;
        tracker.gauge.dec();
        if tracker.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            tracker.closed.notify_waiters();
        }
    }
}

impl Tracker {
    fn new(limit: usize, gauge: Gauge) -> Tracker {
        Tracker {
            open: AtomicUsize::new(0),
            limit,
            gauge,
            closed: Notify::new(),
        }
    }

    /// Whether one more connection may open (only the accept loop opens).
    fn has_room(&self) -> bool {
        self.open.load(Ordering::Acquire) < self.limit
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Waits until no connection is open.
    pub async fn all_closed(&self) {
        loop {
            let closed = self.closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if self.open.load(Ordering::Acquire) == 0 {
                return;
            }
            closed.await;
        }
    }
}

/// What the accept loop and every connection share.
pub struct Shared {
    router: Router,
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    h2c: bool,
    timeouts: Timeouts,
    pub tracker: Tracker,
    pub metrics: Metrics,
    /// Cancelled at shutdown: no more accepts, connections finish gracefully.
    pub stop: CancellationToken,
    /// Cancelled when connections still open are to be dropped.
    pub force: CancellationToken,
}

impl Shared {
    pub fn new(router: Router, settings: &Settings, gauge: Gauge, metrics: Metrics) -> Arc<Shared> {
        // A whole head always fits the read buffer, so the head limit is
        // --max-header-size even if it is the larger of the two.
        let read_buffer = settings.max_read_buffer.max(settings.max_header_size);
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            // Ours, in conn.rs: hyper's would close idle connections too.
            .header_read_timeout(None)
            .max_header_size(settings.max_header_size)
            .max_buf_size(read_buffer);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_header_list_size(settings.max_header_size.min(u32::MAX as usize) as u32)
            .max_concurrent_streams(H2_MAX_STREAMS)
            .max_send_buf_size(read_buffer);
        Arc::new(Shared {
            router,
            http1: h1,
            http2: h2,
            h2c: settings.h2c,
            timeouts: settings.timeouts.clone(),
            tracker: Tracker::new(settings.max_connections, gauge),
            metrics,
            stop: CancellationToken::new(),
            force: CancellationToken::new(),
        })
    }

    /// Counts a new connection, or `None` at the limit.
    fn open(self: &Arc<Shared>) -> Option<Open> {
        if !self.tracker.has_room() {
            return None;
        }
        self.tracker.open.fetch_add(1, Ordering::AcqRel);
        self.tracker.gauge.inc();
        Some(Open(self.clone()))
    }
}

/// Raises the soft limit of open files to the hard limit (as Go programs,
/// tusd included, do at start-up) and returns the soft limit then in force.
pub fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        let target = if limit.rlim_max == libc::RLIM_INFINITY {
            limit.rlim_cur.max(1 << 20)
        } else {
            limit.rlim_max
        };
        if target > limit.rlim_cur {
            let raised = libc::rlimit {
                rlim_cur: target,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return target;
            }
        }
    }
    limit.rlim_cur
}

/// The most connections `fd_limit` descriptors allow.
pub fn connections_for(fd_limit: u64) -> usize {
    (fd_limit.saturating_sub(FD_RESERVE) / FDS_PER_CONNECTION).max(1) as usize
}

/// Starts the accept loop on `listener`.
pub fn spawn(listener: TcpListener, shared: Arc<Shared>) -> tokio::task::JoinHandle<()> {
    let stop = shared.stop.clone();
    tokio::spawn(accept_loop(listener, shared, stop))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_limit_leaves_descriptors_for_the_rest() {
        assert_eq!(connections_for(1024), 448);
        assert_eq!(connections_for(20_000), 9936);
        assert_eq!(connections_for(100), 1);
    }
}

//! One connection: hyper serving the app, watched by a deadline.
//!
//! hyper's own header-read timeout is not used: it starts whenever the
//! connection waits for a head, idle keep-alive included, so it cannot tell
//! an idle connection from a slow head, and it does not exist for HTTP/2.
//! Instead the socket and the requests report to a [`ConnState`], and the
//! connection's task closes the connection at the earliest of:
//! - **header timeout**: no request was dispatched within `header` of the
//!   connection's start, or of the first byte that arrived while no request
//!   was in progress (the head's first byte);
//! - **idle timeout**: no byte arrived within `idle` of the last request's
//!   end (its request and response bodies both gone);
//! - **write timeout**: a write has been blocked (the client reads nothing)
//!   for `write`.
//!
//! While a request is in progress only the write timeout applies: request
//! bodies have the handler's `--network-timeout`.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tower::ServiceExt;

use super::{Open, Shared, TimeoutReason};

/// "Not set" for the millisecond marks of [`ConnState`].
const UNSET: u64 = u64::MAX;
/// After a header or idle timeout an HTTP/2 connection gets a GOAWAY and
/// this long to close by itself before it is dropped.
const GOAWAY_GRACE: Duration = Duration::from_secs(1);
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the socket and the requests tell the connection's watchdog.
/// Times are milliseconds since `born`.
pub struct ConnState {
    born: Instant,
    /// Requests whose request or response body is still alive.
    active: AtomicUsize,
    /// When the last request ended (or the connection started).
    idle_since: AtomicU64,
    /// When the first byte of the next head arrived, `UNSET` if none has.
    head_started: AtomicU64,
    /// Since when a write has been blocked, `UNSET` if none is.
    write_blocked: AtomicU64,
    /// Woken when a deadline may have moved earlier.
    changed: tokio::sync::Notify,
}

impl ConnState {
    fn new() -> ConnState {
        ConnState {
            born: Instant::now(),
            active: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            // A new connection is expected to send its first head at once:
            // the header timeout runs from the start.
            head_started: AtomicU64::new(0),
            write_blocked: AtomicU64::new(UNSET),
            changed: tokio::sync::Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }

    fn at(&self, ms: u64) -> Instant {
        self.born + Duration::from_millis(ms)
    }

    fn bytes_read(&self) {
        if self.active.load(Ordering::Acquire) == 0
            && self.head_started.load(Ordering::Relaxed) == UNSET
        {
            self.head_started.store(self.now(), Ordering::Relaxed);
            self.changed.notify_one();
        }
    }

    fn write_blocked(&self) {
        if self.write_blocked.load(Ordering::Relaxed) == UNSET {
            self.write_blocked.store(self.now(), Ordering::Relaxed);
            self.changed.notify_one();
        }
    }

    fn wrote(&self) {
        if self.write_blocked.load(Ordering::Relaxed) != UNSET {
            self.write_blocked.store(UNSET, Ordering::Relaxed);
        }
    }

    fn request_started(&self) {
        self.head_started.store(UNSET, Ordering::Relaxed);
        self.active.fetch_add(1, Ordering::AcqRel);
    }

    fn request_ended(&self) {
        self.idle_since.store(self.now(), Ordering::Relaxed);
        if self.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.changed.notify_one();
        }
    }

    /// The earliest deadline that applies now, and what it is for.
    fn deadline(&self, limits: &super::Timeouts) -> Option<(Instant, TimeoutReason)> {
        let mut earliest: Option<(Instant, TimeoutReason)> = None;
        let mut consider = |at: Instant, reason| {
            if earliest.is_none_or(|(e, _)| at < e) {
                earliest = Some((at, reason));
            }
        };
        let blocked = self.write_blocked.load(Ordering::Relaxed);
        if let (Some(write), true) = (limits.write, blocked != UNSET) {
            consider(self.at(blocked) + write, TimeoutReason::Write);
        }
        if self.active.load(Ordering::Acquire) == 0 {
            let head = self.head_started.load(Ordering::Relaxed);
            match (limits.header, limits.idle) {
                (Some(header), _) if head != UNSET => {
                    consider(self.at(head) + header, TimeoutReason::Header);
                }
                // Waiting for a head's first byte, or header timeout off.
                (_, Some(idle)) => {
                    let since = self.idle_since.load(Ordering::Relaxed);
                    consider(self.at(since) + idle, TimeoutReason::Idle);
                }
                _ => {}
            }
        }
        earliest
    }
}

/// Keeps a request counted as in progress while either body is alive.
struct Busy(Arc<ConnState>);

impl Busy {
    fn start(state: &Arc<ConnState>) -> Arc<Busy> {
        state.request_started();
        Arc::new(Busy(state.clone()))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// A body that keeps its request counted as in progress until dropped.
struct Guarded<B> {
    inner: B,
    _busy: Arc<Busy>,
}

impl<B> hyper::body::Body for Guarded<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The app as hyper calls it on one connection: each request carries the
/// peer's address (`ConnectInfo`) and is counted while in progress.
#[derive(Clone)]
struct ConnService {
    router: Router,
    peer: SocketAddr,
    state: Arc<ConnState>,
}

type ServiceFuture =
    Pin<Box<dyn Future<Output = Result<Response<Guarded<Body>>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<Guarded<Body>>;
    type Error = Infallible;
    type Future = ServiceFuture;

    fn call(&self, mut req: Request<Incoming>) -> ServiceFuture {
        let busy = Busy::start(&self.state);
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let req = req.map(|inner| {
            Body::new(Guarded {
                inner,
                _busy: busy.clone(),
            })
        });
        let router = self.router.clone();
        Box::pin(async move {
            let response = router.oneshot(req).await.unwrap_or_else(|e| match e {});
            Ok(response.map(|inner| Guarded { inner, _busy: busy }))
        })
    }
}

/// The socket, reporting reads and blocked writes to the [`ConnState`], with
/// the bytes read while telling HTTP/1 from HTTP/2 put back in front.
struct Watched {
    stream: TcpStream,
    prefix: Bytes,
    state: Arc<ConnState>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let head = self.prefix.split_to(n);
            buf.put_slice(&head);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.bytes_read();
        }
        polled
    }
}

impl Watched {
    fn written(&self, polled: &Poll<io::Result<usize>>) {
        match polled {
            Poll::Pending => self.state.write_blocked(),
            Poll::Ready(Ok(n)) if *n > 0 => self.state.wrote(),
            _ => {}
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.written(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.written(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

type Io = TokioIo<Watched>;

/// A hyper connection of either protocol.
trait Served: Future<Output = Result<(), hyper::Error>> + Send {
    fn graceful(self: Pin<&mut Self>);
}

impl Served for hyper::server::conn::http1::Connection<Io, ConnService> {
    fn graceful(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl Served for hyper::server::conn::http2::Connection<Io, ConnService, TokioExecutor> {
    fn graceful(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Reads until the bytes can no longer be HTTP/2's preface (HTTP/1), or are
/// all of it; returns whether it is HTTP/2 and the bytes read.
async fn sniff(stream: &mut TcpStream, state: &ConnState) -> io::Result<(bool, Vec<u8>)> {
    let mut read = Vec::with_capacity(H2_PREFACE.len());
    let mut chunk = [0u8; 24];
    while read.len() < H2_PREFACE.len() {
        let n = stream
            .read(&mut chunk[..H2_PREFACE.len() - read.len()])
            .await?;
        if n == 0 {
            return Ok((false, read));
        }
        state.bytes_read();
        read.extend_from_slice(&chunk[..n]);
        if !H2_PREFACE.starts_with(&read) {
            return Ok((false, read));
        }
    }
    Ok((true, read))
}

/// Sleeps until `deadline`, or forever without one.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Serves one accepted connection until it ends, a deadline passes, or the
/// server is forced to stop.
pub async fn serve(mut stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>, open: Open) {
    let state = Arc::new(ConnState::new());
    let limits = &shared.timeouts;
    let (stop, force) = (&shared.stop, &shared.force);

    // HTTP/2 is told apart by its preface, within the header timeout.
    let (h2, prefix) = if shared.h2c {
        let deadline = state.deadline(limits).map(|(at, _)| at);
        tokio::select! {
            sniffed = sniff(&mut stream, &state) => match sniffed {
                Ok(found) => found,
                Err(_) => return,
            },
            _ = until(deadline) => {
                shared.metrics.timed_out(TimeoutReason::Header);
                return;
            }
            _ = stop.cancelled() => return,
        }
    } else {
        (false, Vec::new())
    };
    let io = TokioIo::new(Watched {
        stream,
        prefix: Bytes::from(prefix),
        state: state.clone(),
    });
    let service = ConnService {
        router: shared.router.clone(),
        peer,
        state: state.clone(),
    };
    let mut conn: Pin<Box<dyn Served>> = if h2 {
        Box::pin(shared.http2.serve_connection(io, service))
    } else {
        Box::pin(shared.http1.serve_connection(io, service))
    };

    let mut graceful = false;
    // After a GOAWAY for a timeout: when the connection is dropped anyway.
    let mut hard_stop: Option<Instant> = None;
    loop {
        let changed = state.changed.notified();
        // After a GOAWAY only the hard stop is left to wait for.
        let wake = hard_stop.or_else(|| state.deadline(limits).map(|(at, _)| at));
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                break;
            }
            _ = changed => {}
            _ = until(wake) => {
                let now = Instant::now();
                if let Some(at) = hard_stop {
                    if at <= now {
                        break;
                    }
                    continue;
                }
                // Deadlines only move later without a notification (a
                // request started, a write went through): look again.
                match state.deadline(limits) {
                    Some((at, reason)) if at <= now => {
                        shared.metrics.timed_out(reason);
                        tracing::debug!(%peer, ?reason, "closing connection: timeout");
                        if h2 && reason != TimeoutReason::Write {
                            // GOAWAY tells the client which streams were
                            // not served, so it can retry them elsewhere.
                            conn.as_mut().graceful();
                            graceful = true;
                            hard_stop = Some(now + GOAWAY_GRACE);
                        } else {
                            break;
                        }
                    }
                    _ => {}
                }
            }
            _ = stop.cancelled(), if !graceful => {
                // Shutdown: an HTTP/1 connection with no request in
                // progress (idle, or a head still arriving) has nothing to
                // finish; the others finish their request first.
                if !h2 && state.active.load(Ordering::Acquire) == 0 {
                    break;
                }
                conn.as_mut().graceful();
                graceful = true;
            }
            _ = force.cancelled() => break,
        }
    }
    drop(conn);
    drop(open);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connections::Timeouts;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_follows_the_connection_state() {
        let limits = Timeouts {
            header: Some(secs(10)),
            idle: Some(secs(75)),
            write: Some(secs(60)),
        };
        let state = ConnState::new();
        let t0 = state.born;
        // A new connection owes its first head from the start.
        assert_eq!(
            state.deadline(&limits),
            Some((t0 + secs(10), TimeoutReason::Header))
        );
        // A request in progress has no deadline but the write timeout.
        state.request_started();
        tokio::time::advance(secs(30)).await;
        state.bytes_read();
        assert_eq!(state.deadline(&limits), None);
        state.write_blocked();
        assert_eq!(
            state.deadline(&limits),
            Some((t0 + secs(90), TimeoutReason::Write))
        );
        state.wrote();
        assert_eq!(state.deadline(&limits), None);
        // Its end starts the idle timeout ...
        state.request_ended();
        assert_eq!(
            state.deadline(&limits),
            Some((t0 + secs(105), TimeoutReason::Idle))
        );
        // ... and the next head's first byte the header timeout.
        tokio::time::advance(secs(20)).await;
        state.bytes_read();
        assert_eq!(
            state.deadline(&limits),
            Some((t0 + secs(60), TimeoutReason::Header))
        );
        // With the header timeout off, the idle timeout still applies.
        let no_header = Timeouts {
            header: None,
            ..limits.clone()
        };
        assert_eq!(
            state.deadline(&no_header),
            Some((t0 + secs(105), TimeoutReason::Idle))
        );
        let nothing = Timeouts {
            header: None,
            idle: None,
            write: None,
        };
        assert_eq!(state.deadline(&nothing), None);
    }
}

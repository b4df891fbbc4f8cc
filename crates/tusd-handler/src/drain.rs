//! Reading, after an early answer, the rest of a request body nobody wants.
//!
//! A PATCH may be answered before its body ends: 409 for a wrong offset, 423
//! when the lock does not come, 413, or 204 when a release request stopped
//! the body. When the handler then drops the body, hyper stops reading the
//! connection and closes it once the answer is written; the kernel answers a
//! close with unread bytes in the receive buffer with a TCP reset, and a
//! reset can destroy the answer before the peer read it. A client sending
//! directly sees "connection reset" instead of its status; nginx streaming
//! the body (`proxy_request_buffering off`) fails its write with EPIPE or
//! ECONNRESET, answers its client 502 and counts the node as failed
//! (`max_fails`), taking it out of rotation.
//!
//! So every HTTP/1 request body is wrapped in a [`DrainOnDrop`]: when it is
//! dropped before its end, a task keeps reading it and throws the bytes
//! away, while hyper writes the answer on the same connection. When the body
//! ends within the bounds, the connection stays usable for the next request
//! (keep-alive, also for nginx's upstream connections); when it does not,
//! the task drops the body, hyper closes the connection, and by then the peer
//! has long had the answer (this is nginx's own "lingering close").
//!
//! Bounds, whichever comes first:
//! - [`MAX_DRAIN_BYTES`] (64 MiB) read after the drop; a body whose
//!   remaining `Content-Length` is larger still gets the drain, which gives
//!   the peer time to read its answer, but is then cut;
//! - [`MAX_DRAIN_TIME`] (10 s), or the handler's network timeout if shorter;
//! - server shutdown.
//!
//! Not drained: bodies that ended or failed, HTTP/2 bodies (HTTP/2 ends a
//! stream with `RST_STREAM` and keeps the connection), and a body that waits
//! for `100 Continue` and was never read: reading it would ask the client to
//! send what nobody wants, while not reading it makes hyper skip the
//! `100 Continue`.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures::StreamExt;
use http::{header, Request, Version};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio_util::sync::CancellationToken;

/// At most this many bytes are read from a body after it was dropped.
pub const MAX_DRAIN_BYTES: u64 = 64 << 20;
/// At most this long is a dropped body read (less if the network timeout is
/// shorter).
pub const MAX_DRAIN_TIME: Duration = Duration::from_secs(10);

/// How much of a dropped body is read, and until when.
#[derive(Clone, Debug)]
pub struct Limits {
    pub bytes: u64,
    pub time: Duration,
    /// Cancelled at server shutdown: drains stop then.
    pub shutdown: CancellationToken,
}

impl Limits {
    /// The default bounds, with the time capped by `network_timeout`.
    pub fn new(network_timeout: Duration, shutdown: CancellationToken) -> Limits {
        Limits {
            bytes: MAX_DRAIN_BYTES,
            time: MAX_DRAIN_TIME.min(network_timeout),
            shutdown,
        }
    }
}

/// Wraps the body of an HTTP/1 `req` so that it is drained if dropped early.
pub fn wrap_request(req: Request<Body>, limits: Limits) -> Request<Body> {
    if !matches!(req.version(), Version::HTTP_10 | Version::HTTP_11) {
        return req;
    }
    let awaits_continue = req
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    req.map(|body| {
        Body::new(DrainOnDrop {
            inner: Some(body),
            ended: false,
            polled: false,
            awaits_continue,
            limits,
        })
    })
}

/// A request body that, dropped before its end, is read on by a task of its
/// own within [`Limits`].
pub struct DrainOnDrop {
    inner: Option<Body>,
    /// The body reported its end or an error: nothing left to read.
    ended: bool,
    polled: bool,
    awaits_continue: bool,
    limits: Limits,
}

impl HttpBody for DrainOnDrop {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.polled = true;
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            self.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl Drop for DrainOnDrop {
    fn drop(&mut self) {
        let Some(body) = self.inner.take() else {
            return;
        };
        if self.ended || body.is_end_stream() || (self.awaits_continue && !self.polled) {
            return;
        }
        // Outside a runtime (a body dropped after the server stopped) there
        // is no connection left to save.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let limits = self.limits.clone();
            runtime.spawn(async move {
                let (bytes, end) = drain(body, &limits).await;
                tracing::debug!(bytes, end = ?end, "drained the rest of a request body");
            });
        }
    }
}

/// How a drain ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrainEnd {
    /// The body ended: the connection can serve the next request.
    Complete,
    /// The peer closed or broke the connection.
    Broken,
    /// The byte limit was reached first.
    TooLong,
    /// The time limit was reached first.
    TimedOut,
    /// The server is shutting down.
    Shutdown,
}

/// Reads and discards `body` within `limits`; returns the bytes read and
/// why it stopped. The body is dropped on return.
pub async fn drain(body: Body, limits: &Limits) -> (u64, DrainEnd) {
    let mut data = body.into_data_stream();
    let mut read = 0u64;
    let deadline = tokio::time::sleep(limits.time);
    tokio::pin!(deadline);
    loop {
        let next = tokio::select! {
            biased;
            _ = limits.shutdown.cancelled() => return (read, DrainEnd::Shutdown),
            _ = &mut deadline => return (read, DrainEnd::TimedOut),
            next = data.next() => next,
        };
        match next {
            None => return (read, DrainEnd::Complete),
            Some(Err(_)) => return (read, DrainEnd::Broken),
            Some(Ok(chunk)) => {
                read += chunk.len() as u64;
                if read >= limits.bytes {
                    return (read, DrainEnd::TooLong);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use axum::response::IntoResponse;
    use axum::Router;
    use futures::SinkExt;
    use http::StatusCode;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    fn limits(bytes: u64, time: Duration) -> Limits {
        Limits {
            bytes,
            time,
            shutdown: CancellationToken::new(),
        }
    }

    /// A body fed by the test through the returned sender.
    fn channel_body() -> (
        futures::channel::mpsc::Sender<Result<Bytes, std::io::Error>>,
        Body,
    ) {
        let (tx, rx) = futures::channel::mpsc::channel(4);
        (tx, Body::from_stream(rx))
    }

    #[tokio::test]
    async fn drain_stops_at_the_end_the_byte_limit_the_time_limit_or_shutdown() {
        let l = limits(10, Duration::from_secs(30));
        assert_eq!(
            drain(Body::from("hello"), &l).await,
            (5, DrainEnd::Complete)
        );
        assert_eq!(
            drain(Body::from("hello world!"), &l).await,
            (12, DrainEnd::TooLong)
        );

        let (mut tx, body) = channel_body();
        tx.try_send(Ok(Bytes::from_static(b"abc"))).unwrap();
        let l = limits(10, Duration::from_millis(50));
        assert_eq!(drain(body, &l).await, (3, DrainEnd::TimedOut));

        let (mut tx, body) = channel_body();
        tx.try_send(Err(std::io::Error::other("reset"))).unwrap();
        assert_eq!(drain(body, &l).await, (0, DrainEnd::Broken));

        let (_tx, body) = channel_body();
        let l = limits(10, Duration::from_secs(30));
        l.shutdown.cancel();
        assert_eq!(drain(body, &l).await, (0, DrainEnd::Shutdown));
    }

    fn request(version: Version, expect: bool, body: Body) -> Request<Body> {
        let mut builder = Request::builder().method("PATCH").uri("/").version(version);
        if expect {
            builder = builder.header("expect", "100-continue");
        }
        builder.body(body).unwrap()
    }

    /// Whether dropping the wrapped body unread makes someone read on.
    async fn drained_after_drop(version: Version, expect: bool) -> bool {
        let (mut tx, body) = channel_body();
        let req = wrap_request(
            request(version, expect, body),
            limits(1 << 20, Duration::from_secs(30)),
        );
        drop(req);
        // Someone reads on exactly when the channel keeps taking chunks
        // after its buffer (4 + 1 slots) is full.
        for _ in 0..20 {
            match tokio::time::timeout(
                Duration::from_secs(2),
                tx.send(Ok(Bytes::from_static(b"x"))),
            )
            .await
            {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return false, // the body was dropped
                Err(_) => return false,     // kept, but nobody reads
            }
        }
        true
    }

    #[tokio::test]
    async fn only_unfinished_http1_bodies_are_drained() {
        assert!(drained_after_drop(Version::HTTP_11, false).await);
        assert!(drained_after_drop(Version::HTTP_10, false).await);
        assert!(!drained_after_drop(Version::HTTP_2, false).await);
        // Waiting for 100 Continue and never read: the client is not asked
        // to send the body at all.
        assert!(!drained_after_drop(Version::HTTP_11, true).await);
    }

    /// A server whose handler answers 409 at once, without reading the
    /// body, after counting the request.
    async fn early_answer_server(limits: Limits) -> (u16, Arc<AtomicUsize>) {
        let served = Arc::new(AtomicUsize::new(0));
        let counter = served.clone();
        let app = Router::new().fallback(move |req: Request<Body>| {
            let counter = counter.clone();
            let limits = limits.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                drop(wrap_request(req, limits));
                StatusCode::CONFLICT.into_response()
            }
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (port, served)
    }

    /// Reads one response head (status line and headers) from `stream`.
    async fn read_head(stream: &mut TcpStream) -> String {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                other => panic!("connection ended before the response head: {other:?}"),
            }
        }
        String::from_utf8(head).unwrap()
    }

    fn patch_head(length: usize) -> String {
        format!("PATCH /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n\r\n")
    }

    #[tokio::test]
    async fn the_answer_is_sent_while_the_body_is_drained_and_the_connection_kept() {
        let (port, served) =
            early_answer_server(limits(MAX_DRAIN_BYTES, Duration::from_secs(30))).await;
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let body = vec![b'x'; 4 << 20];
        stream
            .write_all(patch_head(body.len()).as_bytes())
            .await
            .unwrap();
        stream.write_all(&body[..64 << 10]).await.unwrap();
        // The answer comes before the client sent most of its body ...
        assert!(read_head(&mut stream).await.starts_with("HTTP/1.1 409 "));
        // ... the rest is read (more than any socket buffer holds) ...
        stream.write_all(&body[64 << 10..]).await.unwrap();
        // ... and the same connection serves the next request.
        stream.write_all(patch_head(3).as_bytes()).await.unwrap();
        stream.write_all(b"abc").await.unwrap();
        assert!(read_head(&mut stream).await.starts_with("HTTP/1.1 409 "));
        assert_eq!(served.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn past_the_byte_limit_the_connection_closes() {
        let (port, _) = early_answer_server(limits(1 << 20, Duration::from_secs(30))).await;
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream
            .write_all(patch_head(64 << 20).as_bytes())
            .await
            .unwrap();
        assert!(read_head(&mut stream).await.starts_with("HTTP/1.1 409 "));
        // The server reads 1 MiB more and then closes: writing 64 MiB
        // fails before the end (a reset, or a broken pipe).
        let chunk = vec![b'x'; 64 << 10];
        let mut sent = 0usize;
        while sent < 64 << 20 {
            match stream.write_all(&chunk).await {
                Ok(()) => sent += chunk.len(),
                Err(_) => break,
            }
        }
        assert!(sent < 64 << 20, "the server read the whole body");
    }
}

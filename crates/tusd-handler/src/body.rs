//! The request body as the store sees it: a chunk stream that stops when
//! the lock says so.
//!
//! This is where a PATCH honours its lock. Before each chunk goes to the
//! store the stream checks, in this order: was the lock lost (end with an
//! error, so the store writes nothing more), was a release requested or is
//! the server shutting down (end cleanly: the bytes already passed on stay
//! stored and count in the offset, and so do chunks the server has already
//! received, up to a bound, so that a client that vanished right after
//! sending loses nothing that reached the server), would the chunk run past
//! the upload's length (cut it there). It also feeds the checksum and counts bytes, so the
//! handler knows afterwards why and where the body ended.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures::{FutureExt, Stream, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::protocol::checksum::Hasher;
use crate::ChunkStream;
use crate::LockSignals;

/// Why the body stopped flowing into the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyEnd {
    /// The client sent its whole body.
    Complete,
    /// A release request or server shutdown cut the body short.
    Stopped,
    /// A hook stopped the upload (tusd's `StopUpload`); the upload is to be
    /// terminated.
    StoppedByHook,
    /// The lock was lost; nothing after that point reached the store.
    LockLost,
    /// The body was longer than the upload has room for; the excess was dropped.
    TooLong,
    /// The client went away or sent nothing for the network timeout.
    Broken,
    /// The store stopped reading before the body ended: it failed (or
    /// refused a stale lock holder), which is the store's error, not the
    /// client's.
    Abandoned,
}

/// What the handler learns once the store is done with the stream.
#[derive(Debug)]
pub struct BodyOutcome {
    pub received: u64,
    pub end: BodyEnd,
    pub digest: Option<Vec<u8>>,
}

struct Shared {
    received: u64,
    end: Option<BodyEnd>,
    hasher: Option<Hasher>,
}

/// Reads the outcome after the stream was consumed or dropped.
pub struct BodyReport(Arc<Mutex<Shared>>);

impl BodyReport {
    /// Bytes passed on to the store so far.
    pub fn received(&self) -> u64 {
        self.0.lock().unwrap().received
    }

    pub fn outcome(&self) -> BodyOutcome {
        let mut shared = self.0.lock().unwrap();
        BodyOutcome {
            received: shared.received,
            end: shared.end.unwrap_or(BodyEnd::Abandoned),
            digest: shared.hasher.take().map(Hasher::finish),
        }
    }
}

/// Limits and signals for one body.
pub struct BodyRules {
    /// Room left in the upload; bytes beyond it are never passed on.
    pub limit: u64,
    pub signals: LockSignals,
    pub shutdown: CancellationToken,
    /// Cancelled when a hook stops the upload.
    pub stop: CancellationToken,
    pub idle_timeout: Duration,
    pub hasher: Option<Hasher>,
}

struct State<S> {
    data: S,
    remaining: u64,
    signals: LockSignals,
    shutdown: CancellationToken,
    stop: CancellationToken,
    idle_timeout: Duration,
    shared: Arc<Mutex<Shared>>,
    /// Set once a release request or shutdown stops the body: from then on
    /// only chunks the server already holds are passed on, up to
    /// [`STOP_GRACE_BYTES`], then it ends.
    stopping: Option<BodyEnd>,
    /// Bytes passed on since the body was told to stop.
    after_stop: u64,
}

/// Wraps `body` into the stream a store consumes, plus the report to read
/// afterwards.
pub fn chunk_stream(body: Body, rules: BodyRules) -> (ChunkStream, BodyReport) {
    let shared = Arc::new(Mutex::new(Shared {
        received: 0,
        end: None,
        hasher: rules.hasher,
    }));
    let state = State {
        data: body.into_data_stream(),
        remaining: rules.limit,
        signals: rules.signals,
        shutdown: rules.shutdown,
        stop: rules.stop,
        idle_timeout: rules.idle_timeout,
        shared: shared.clone(),
        stopping: None,
        after_stop: 0,
    };
    (
        futures::stream::unfold(state, step).boxed(),
        BodyReport(shared),
    )
}

fn finish<S>(state: &State<S>, end: BodyEnd) {
    state.shared.lock().unwrap().end.get_or_insert(end);
}

/// Bytes a stopped body may still pass on when the server already holds
/// them. Bounded because a fast client keeps refilling what the server
/// holds while the store writes: a release must not wait on it for ever.
const STOP_GRACE_BYTES: u64 = 256 * 1024;

/// When the body must stop: the next chunk if the server already holds it
/// (it reached the server, so it is stored rather than sent again) and the
/// grace allows, else `None` after recording `end`. Waits for nothing.
fn ready_chunk<S>(state: &mut State<S>, end: BodyEnd) -> Option<Option<Result<Bytes, axum::Error>>>
where
    S: Stream<Item = Result<Bytes, axum::Error>> + Unpin + Send,
{
    let ready = if state.after_stop < STOP_GRACE_BYTES {
        state.data.next().now_or_never()
    } else {
        None
    };
    match ready {
        Some(next) => {
            if let Some(Ok(chunk)) = &next {
                state.after_stop += chunk.len() as u64;
            }
            Some(next)
        }
        None => {
            finish(state, end);
            None
        }
    }
}

async fn step<S>(mut state: State<S>) -> Option<(Result<Bytes, std::io::Error>, State<S>)>
where
    S: Stream<Item = Result<Bytes, axum::Error>> + Unpin + Send,
{
    if state.shared.lock().unwrap().end.is_some() {
        return None;
    }
    let signals = state.signals.clone();
    let next = match state.stopping {
        Some(end) => Ok(ready_chunk(&mut state, end)?),
        None => tokio::select! {
            biased;
            _ = signals.lost() => {
                finish(&state, BodyEnd::LockLost);
                return Some((Err(std::io::Error::other("upload lock was lost")), state));
            }
            _ = signals.release_requested() => {
                state.stopping = Some(BodyEnd::Stopped);
                Ok(ready_chunk(&mut state, BodyEnd::Stopped)?)
            }
            _ = state.shutdown.cancelled() => {
                state.stopping = Some(BodyEnd::Stopped);
                Ok(ready_chunk(&mut state, BodyEnd::Stopped)?)
            }
            _ = state.stop.cancelled() => {
                finish(&state, BodyEnd::StoppedByHook);
                return None;
            }
            next = tokio::time::timeout(state.idle_timeout, state.data.next()) => next,
        },
    };
    let mut chunk = match next {
        Ok(Some(Ok(chunk))) => chunk,
        Ok(None) => {
            finish(&state, BodyEnd::Complete);
            return None;
        }
        Ok(Some(Err(e))) => {
            finish(&state, BodyEnd::Broken);
            return Some((Err(std::io::Error::other(e)), state));
        }
        Err(_) => {
            finish(&state, BodyEnd::Broken);
            let e = std::io::Error::new(std::io::ErrorKind::TimedOut, "network timeout");
            return Some((Err(e), state));
        }
    };
    // The lock may have been lost while this chunk was in flight.
    if signals.is_lost() {
        finish(&state, BodyEnd::LockLost);
        return Some((Err(std::io::Error::other("upload lock was lost")), state));
    }
    if chunk.len() as u64 > state.remaining {
        chunk.truncate(state.remaining as usize);
        finish(&state, BodyEnd::TooLong);
    }
    state.remaining -= chunk.len() as u64;
    {
        let mut shared = state.shared.lock().unwrap();
        shared.received += chunk.len() as u64;
        if let Some(hasher) = shared.hasher.as_mut() {
            hasher.update(&chunk);
        }
    }
    Some((Ok(chunk), state))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(limit: u64, signals: &LockSignals) -> BodyRules {
        BodyRules {
            limit,
            signals: signals.clone(),
            shutdown: CancellationToken::new(),
            stop: CancellationToken::new(),
            idle_timeout: Duration::from_secs(5),
            hasher: None,
        }
    }

    async fn drain(mut s: ChunkStream) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        let mut errored = false;
        while let Some(item) = s.next().await {
            match item {
                Ok(b) => out.extend_from_slice(&b),
                Err(_) => errored = true,
            }
        }
        (out, errored)
    }

    #[tokio::test]
    async fn passes_whole_body_and_reports_complete() {
        let signals = LockSignals::new();
        let (s, report) = chunk_stream(Body::from("hello"), rules(10, &signals));
        assert_eq!(drain(s).await, (b"hello".to_vec(), false));
        let outcome = report.outcome();
        assert_eq!((outcome.received, outcome.end), (5, BodyEnd::Complete));
    }

    #[tokio::test]
    async fn never_passes_bytes_beyond_the_limit() {
        let signals = LockSignals::new();
        let (s, report) = chunk_stream(Body::from("hello world"), rules(5, &signals));
        assert_eq!(drain(s).await.0, b"hello");
        assert_eq!(report.outcome().end, BodyEnd::TooLong);
    }

    #[tokio::test]
    async fn release_request_ends_cleanly_and_loss_ends_with_error() {
        // Bytes the server already holds are passed on before the stop.
        let signals = LockSignals::new();
        signals.request_release();
        let (s, report) = chunk_stream(Body::from("hello"), rules(10, &signals));
        assert_eq!(drain(s).await, (b"hello".to_vec(), false));
        assert_eq!(report.outcome().end, BodyEnd::Complete);

        // Nothing held: the body stops at once, cleanly.
        let signals = LockSignals::new();
        signals.request_release();
        let (tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        let (s, report) = chunk_stream(Body::from_stream(rx), rules(10, &signals));
        assert_eq!(drain(s).await, (Vec::new(), false));
        assert_eq!(report.outcome().end, BodyEnd::Stopped);
        drop(tx);

        // A body that never runs dry stops after the grace.
        let signals = LockSignals::new();
        signals.request_release();
        let endless =
            futures::stream::repeat_with(|| Ok::<_, std::io::Error>(Bytes::from(vec![7u8; 4096])));
        let (s, report) = chunk_stream(Body::from_stream(endless), rules(u64::MAX, &signals));
        let (passed, errored) = drain(s).await;
        assert!(!errored);
        assert!(passed.len() as u64 >= STOP_GRACE_BYTES);
        assert!(passed.len() as u64 <= STOP_GRACE_BYTES + 4096);
        assert_eq!(report.outcome().end, BodyEnd::Stopped);

        let signals = LockSignals::new();
        signals.mark_lost();
        let (s, report) = chunk_stream(Body::from("hello"), rules(10, &signals));
        assert_eq!(drain(s).await, (Vec::new(), true));
        assert_eq!(report.outcome().end, BodyEnd::LockLost);
    }
}

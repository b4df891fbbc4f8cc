//! The lock interface: one writer per upload, across every process that
//! serves the same store.
//!
//! Why locks exist: a tus client that loses its connection retries, often
//! before the server noticed the old connection died, and a load balancer
//! may send the retry to another process. Without a lock, two requests could
//! append to the same upload at once and interleave bytes. Every request that
//! reads or changes an unfinished upload holds that upload's lock.
//!
//! Why release requests exist: the old request is usually a zombie whose
//! client is gone. A request that finds the lock held asks the holder to let
//! go ([`LockSignals::request_release`]); the holder stops reading its body,
//! keeps what it already stored, answers and unlocks, so the retry proceeds
//! at once instead of waiting for a network timeout.
//!
//! Why loss exists: a distributed locker can lose a lock it handed out (its
//! lease expired while the network was down). The holder is told
//! ([`LockSignals::lost`]) and must stop writing before another byte lands,
//! because someone else may own the upload now.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::UploadId;

/// Why a lock could not be taken or kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    /// Another holder kept the lock past the caller's deadline.
    #[error("upload is locked by another request")]
    Timeout,
    /// The lock was lost while held.
    #[error("lock was lost while held")]
    Lost,
    /// Unlock of a lock this locker does not hold.
    #[error("Lock not held")]
    NotHeld,
    /// The lock service could not be reached in time.
    #[error("lock service unavailable: {0}")]
    Unavailable(String),
}

/// The two signals a locker can send to the holder of a lock. Cheap to
/// clone; the locker keeps one clone, the [`Lock`] the other.
#[derive(Clone, Debug, Default)]
pub struct LockSignals {
    release_requested: CancellationToken,
    lost: CancellationToken,
}

impl LockSignals {
    pub fn new() -> LockSignals {
        LockSignals::default()
    }

    /// Asks the holder to finish up and unlock. Idempotent.
    pub fn request_release(&self) {
        self.release_requested.cancel();
    }

    /// Tells the holder its lock is gone. Idempotent. Implies a release request,
    /// so a holder that only watches release requests still stops.
    pub fn mark_lost(&self) {
        self.lost.cancel();
        self.release_requested.cancel();
    }

    pub fn is_release_requested(&self) -> bool {
        self.release_requested.is_cancelled()
    }

    pub fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }

    /// Resolves once someone asked for the lock (or it was lost).
    pub async fn release_requested(&self) {
        self.release_requested.cancelled().await
    }

    /// Resolves once the lock is lost.
    pub async fn lost(&self) {
        self.lost.cancelled().await
    }
}

/// Which lock a store call is made under, so that the store itself can
/// refuse a holder that lost its lock without knowing it yet (a process
/// paused past its lease, a late network packet).
///
/// Values from one issuer strictly increase from one holder of an upload to
/// the next. Values from different issuers are not comparable: `issuer`
/// names the locker instance that counts them (an etcd cluster and key
/// prefix, or one memory locker's lifetime), and a store treats a new
/// issuer as taking over from the old one for good (see the file store's
/// `fence` module for the exact rule).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FencingToken {
    issuer: Arc<str>,
    value: i64,
}

impl FencingToken {
    pub fn new(issuer: impl Into<Arc<str>>, value: i64) -> FencingToken {
        FencingToken {
            issuer: issuer.into(),
            value,
        }
    }

    /// The locker instance whose counter `value` comes from.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Position in the issuer's order of holders: higher is later.
    pub fn value(&self) -> i64 {
        self.value
    }
}

impl std::fmt::Display for FencingToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}#{}", self.issuer, self.value)
    }
}

/// The locker-specific half of a held lock: how to give it back.
#[async_trait]
pub trait Release: Send + Sync + 'static {
    /// Gives the lock back. Called exactly once per lock.
    async fn release(self: Box<Self>) -> Result<(), LockError>;
}

/// A held lock on one upload. Unlock it with [`Lock::unlock`]; a lock that is
/// dropped instead (the request future was cancelled) is released by a
/// spawned task, so a vanished client never keeps an upload locked.
pub struct Lock {
    signals: LockSignals,
    fencing_token: Option<FencingToken>,
    release: Option<Box<dyn Release>>,
}

impl Lock {
    /// Built by lockers. `fencing_token`, when the locker has one, strictly
    /// increases from one holder of the same upload to the next.
    pub fn new(
        signals: LockSignals,
        fencing_token: Option<FencingToken>,
        release: Box<dyn Release>,
    ) -> Lock {
        Lock {
            signals,
            fencing_token,
            release: Some(release),
        }
    }

    pub fn signals(&self) -> &LockSignals {
        &self.signals
    }

    /// The token to hand to every store call that changes the upload.
    pub fn fencing_token(&self) -> Option<&FencingToken> {
        self.fencing_token.as_ref()
    }

    /// Gives the lock back and reports whether the locker still held it.
    pub async fn unlock(mut self) -> Result<(), LockError> {
        match self.release.take() {
            Some(release) => release.release().await,
            None => Ok(()),
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = release.release().await;
                });
            }
        }
    }
}

impl std::fmt::Debug for Lock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lock")
            .field("fencing_token", &self.fencing_token)
            .field("release_requested", &self.signals.is_release_requested())
            .field("lost", &self.signals.is_lost())
            .finish()
    }
}

/// Hands out per-upload locks. Implementations: `tusd-memorylocker` (one
/// process) and `etcd3locker` (a cluster).
#[async_trait]
pub trait Locker: Send + Sync + 'static {
    /// Takes the lock on `id`, waiting until `deadline`. While it waits, it
    /// asks the current holder to release. Fails with [`LockError::Timeout`]
    /// when the deadline passes, and then leaves nothing behind.
    async fn lock(&self, id: &UploadId, deadline: Instant) -> Result<Lock, LockError>;

    /// Releases every lock this locker holds; called once at server shutdown.
    async fn shutdown(&self) {}
}

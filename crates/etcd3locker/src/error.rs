//! The crate's one error type, and how it maps onto the handler's [`LockError`].

use tusd_core::LockError;

/// Why a lock, an unlock or a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another holder kept the lock past the caller's deadline (tusd's
    /// `ErrFileLocked`, answered with HTTP 423).
    #[error("file currently locked")]
    FileLocked,
    /// Unlock of an id this locker does not hold.
    #[error("Lock not held")]
    LockNotHeld,
    /// The lock was lost while held: the locker's lease could not be renewed
    /// in time, so another process may own the upload now.
    #[error("lock lost: the etcd lease could not be renewed in time")]
    LockLost,
    /// The id cannot be a lock name: it is empty or contains `/`, which
    /// would nest it inside another id's key range.
    #[error("invalid upload id {0:?}: lock ids must be non-empty and must not contain '/'")]
    InvalidId(String),
    /// etcd did not answer in time, even after retries.
    #[error("etcd unavailable: {0}")]
    Unavailable(String),
    /// [`crate::connect()`] could not reach any of the endpoints.
    #[error("cannot connect to etcd at {endpoints}: {reason}")]
    Connect {
        /// The endpoints tried, comma-separated.
        endpoints: String,
        /// What went wrong.
        reason: String,
    },
    /// etcd refused a request for a reason retrying cannot fix.
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    /// The locker was shut down; it takes no new locks.
    #[error("the locker was shut down")]
    ShutDown,
}

impl From<Error> for LockError {
    fn from(error: Error) -> LockError {
        match error {
            Error::FileLocked => LockError::Timeout,
            Error::LockNotHeld => LockError::NotHeld,
            Error::LockLost => LockError::Lost,
            other => LockError::Unavailable(other.to_string()),
        }
    }
}

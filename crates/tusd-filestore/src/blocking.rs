//! Running file system calls off the async worker threads.
//!
//! `std::fs` calls block; each store operation runs its whole sequence of
//! calls in one `spawn_blocking` closure rather than paying a thread hop per
//! call as `tokio::fs` would.

use std::io;

use tusd_core::StoreError;

/// Runs `f` on the blocking pool. The closure runs to completion even if
/// the caller stops waiting, so a multi-step operation is never cut short.
pub(crate) async fn run<T, F>(f: F) -> Result<T, StoreError>
where
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(join_error)?
}

/// A task that panicked or was cancelled, reported as an I/O failure.
pub(crate) fn join_error(e: tokio::task::JoinError) -> StoreError {
    StoreError::Io(io::Error::other(e))
}

/// Maps an error on an upload's own files: a missing file means the upload
/// does not exist.
pub(crate) fn upload_io(e: io::Error) -> StoreError {
    if e.kind() == io::ErrorKind::NotFound {
        StoreError::NotFound
    } else {
        StoreError::Io(e)
    }
}

//! The data store interface: where upload bytes and their state live.
//!
//! The handler owns the protocol; a store owns persistence. A store never
//! sees HTTP and never takes locks: the handler holds the upload's lock around
//! every call that changes an upload, so a store only has to be safe for one
//! writer per upload at a time (and for any number of readers of finished
//! uploads).
//!
//! As in tusd, the interface is a minimum plus optional capabilities. Every
//! store implements [`DataStore`]: create, read state, append, read back,
//! finish. What not every storage can do is a trait of its own, which a
//! store implements only if it can, and which the composer records with its
//! own `use_*` call:
//!
//! | trait | tus extension it enables | tusd's name |
//! |---|---|---|
//! | [`Terminater`] | termination (DELETE) | `TerminaterDataStore` |
//! | [`Concater`] | concatenation | `ConcaterDataStore` |
//! | [`LengthDeferrer`] | creation-defer-length | `LengthDeferrerDataStore` |
//! | [`Truncater`] | checksum (a mismatching chunk is cut off again) | none |
//! | [`ChunkStager`] | checksum (a chunk is kept aside until verified) | none |
//! | [`Lister`] | expiration (with [`Terminater`]: the sweep) | none |
//!
//! The handler advertises in `Tus-Extension` only what the composed store
//! offers and answers a request that needs a missing one with 501, as tusd
//! does.

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use tokio::io::AsyncRead;

use crate::{FencingToken, NewUpload, UploadId, UploadInfo};

/// A request body as the store receives it: chunks in order. The stream
/// ends early (cleanly) when the handler wants the store to stop, e.g. on a
/// release request; it yields an error when the client went away or the lock
/// was lost.
pub type ChunkStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// A reader over a byte range of a stored upload.
pub type UploadReader = Box<dyn AsyncRead + Send + Unpin>;

/// Failures a store reports; the handler maps each to one status code.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("upload not found")]
    NotFound,
    #[error("upload's stored state is unreadable: {0}")]
    Corrupt(String),
    #[error("storage I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// The call's fencing token is older than one the upload has already
    /// seen: its holder lost the lock (perhaps without knowing yet) and
    /// someone else has written since. Nothing was changed.
    #[error("refused a stale lock holder: {0}")]
    Fenced(String),
    /// The upload does not hold `expected` bytes, so a write meant for that
    /// offset would land elsewhere. Nothing was written.
    #[error("the upload holds {actual} bytes, not the {expected} this write expected")]
    OffsetMoved { expected: u64, actual: u64 },
}

/// The minimum every store offers. Implementations: `tusd-filestore`.
///
/// Contracts every implementation keeps (and every capability trait too):
/// - `get_info` reports the offset as the number of bytes durably handed to
///   the storage, so after any failure the handler re-reads it rather than
///   trusting its own count.
/// - `write_chunk` writes every byte the stream yields before it returns,
///   including when the stream ends in an error, and holds only a bounded
///   number of bytes in memory.
/// - Several processes may share one store's backing storage (a cluster);
///   the store keeps no state about an upload in memory between calls.
/// - Every call that changes an upload carries the caller's lock's
///   [`FencingToken`] (`None` only for a locker without tokens, or an upload
///   nobody else can know yet). A store that can, refuses with
///   [`StoreError::Fenced`] a token older than one that already changed the
///   upload, checked atomically with the change itself, so a holder that
///   lost its lock while paused can never write after its successor. The
///   file store does; see its `fence` module for the rule across issuers.
#[async_trait]
pub trait DataStore: Send + Sync + 'static {
    /// Creates an upload with a fresh id and zero bytes.
    async fn create_upload(&self, upload: NewUpload) -> Result<UploadInfo, StoreError>;

    /// Reads an upload's current state; `NotFound` for an id it never created.
    async fn get_info(&self, id: &UploadId) -> Result<UploadInfo, StoreError>;

    /// Brings `info`, read earlier by [`DataStore::get_info`], up to date
    /// with the bytes stored since: its `offset` and `modified`. An upload
    /// whose length is known and that is not a final upload changes nothing
    /// else after creation, so a caller that read its state before taking
    /// its lock (a HEAD) needs only this under the lock. The default reads
    /// the whole state again; a store that keeps the bytes apart from the
    /// rest looks at the bytes alone.
    async fn refresh_progress(
        &self,
        id: &UploadId,
        info: UploadInfo,
    ) -> Result<UploadInfo, StoreError> {
        let _ = info;
        self.get_info(id).await
    }

    /// Appends the stream's bytes at `offset` and returns how many bytes it
    /// wrote. Each piece is written only if the upload then holds exactly
    /// the bytes before it ([`StoreError::OffsetMoved`] otherwise) and
    /// `fence` is not stale. On error, bytes already written stay written.
    async fn write_chunk(
        &self,
        id: &UploadId,
        offset: u64,
        fence: Option<&FencingToken>,
        chunk: ChunkStream,
    ) -> Result<u64, StoreError>;

    /// Called exactly once per upload, under its lock, when its last byte is
    /// stored (or a final upload's concatenation is done) and before the
    /// client is told: where a store commits what it staged (an object
    /// store completes its multipart upload). When it fails, the upload
    /// stays unfinished as far as the handler is concerned and the call is
    /// made again by the next request that finds every byte stored. The
    /// default does nothing, for stores whose bytes are final as written.
    async fn finish_upload(
        &self,
        id: &UploadId,
        fence: Option<&FencingToken>,
    ) -> Result<(), StoreError> {
        let _ = (id, fence);
        Ok(())
    }

    /// A reader over `len` bytes starting at `start`.
    async fn read_range(
        &self,
        id: &UploadId,
        start: u64,
        len: u64,
    ) -> Result<UploadReader, StoreError>;
}

/// Deletes uploads: the termination extension.
#[async_trait]
pub trait Terminater: Send + Sync + 'static {
    /// Deletes the upload's bytes and state.
    async fn terminate(
        &self,
        id: &UploadId,
        fence: Option<&FencingToken>,
    ) -> Result<(), StoreError>;
}

/// Builds a final upload from partial ones: the concatenation extension.
#[async_trait]
pub trait Concater: Send + Sync + 'static {
    /// Fills the final upload `id` with the bytes of `partials`, in order, and
    /// marks it complete. The partials are complete and stay as they are.
    async fn concat(
        &self,
        id: &UploadId,
        partials: &[UploadId],
        fence: Option<&FencingToken>,
    ) -> Result<(), StoreError>;
}

/// Fixes a length declared late: the creation-defer-length extension.
#[async_trait]
pub trait LengthDeferrer: Send + Sync + 'static {
    /// Fixes the length of an upload created with a deferred length.
    async fn declare_length(
        &self,
        id: &UploadId,
        size: u64,
        fence: Option<&FencingToken>,
    ) -> Result<(), StoreError>;
}

/// Cuts an upload back: what the checksum extension needs to discard a
/// chunk whose checksum did not match, so that it leaves no trace.
#[async_trait]
pub trait Truncater: Send + Sync + 'static {
    /// Cuts the upload back to `offset` bytes, which is never less than the
    /// offset before the chunk being discarded.
    async fn truncate(
        &self,
        id: &UploadId,
        offset: u64,
        fence: Option<&FencingToken>,
    ) -> Result<(), StoreError>;
}

/// Keeps a chunk aside until its checksum is verified: the checksum
/// extension for a store that cannot take stored bytes back (an object
/// store cannot shorten a part it has uploaded), where [`Truncater`] is not
/// possible. The handler stages a body that carries a checksum, compares
/// the digest, then commits the chunk or drops it; a dropped chunk never
/// touched the upload, so a mismatch leaves no trace even if the server
/// dies in between.
#[async_trait]
pub trait ChunkStager: Send + Sync + 'static {
    /// Receives the whole stream into a staging area of the store's own
    /// (bounded memory, as [`DataStore::write_chunk`]) without changing the
    /// upload. [`StoreError::OffsetMoved`] when the upload does not hold
    /// `offset` bytes. When the stream ends in an error nothing is staged
    /// and the error is returned: a body that did not arrive whole cannot
    /// be verified.
    async fn stage_chunk(
        &self,
        id: &UploadId,
        offset: u64,
        chunk: ChunkStream,
    ) -> Result<Box<dyn StagedChunk>, StoreError>;
}

/// A chunk received but not yet part of its upload. Dropping it discards
/// it (its staging area is freed); nothing else is needed.
#[async_trait]
pub trait StagedChunk: Send {
    /// How many bytes were staged.
    fn len(&self) -> u64;

    /// Whether no byte was staged.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the staged bytes to the upload at the offset they were
    /// staged for, under [`DataStore::write_chunk`]'s contract (offset
    /// checked again, `fence` honoured, bytes stored before a failure stay
    /// stored), and returns how many it stored.
    async fn commit(self: Box<Self>, fence: Option<&FencingToken>) -> Result<u64, StoreError>;
}

/// Enumerates uploads: what the expiration sweep needs to find old ones.
#[async_trait]
pub trait Lister: Send + Sync + 'static {
    /// Every upload id the store holds.
    async fn list_uploads(&self) -> Result<Vec<UploadId>, StoreError>;
}

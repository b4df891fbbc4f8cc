//! The data store interface: where upload bytes and their state live.
//!
//! The handler owns the protocol; a store owns persistence. A store never
//! sees HTTP and never takes locks: the handler holds the upload's lock around
//! every call that changes an upload, so a store only has to be safe for one
//! writer per upload at a time (and for any number of readers of finished
//! uploads).

use std::collections::BTreeMap;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncRead;

use crate::{FencingToken, UploadId};

/// The state of one upload, serialised with the same field names as tusd's
/// `FileInfo` so that a tusd upload directory can be served as it is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UploadInfo {
    #[serde(rename = "ID")]
    pub id: String,
    /// Total length in bytes; meaningless while `size_is_deferred`.
    pub size: u64,
    pub size_is_deferred: bool,
    /// Bytes stored so far.
    pub offset: u64,
    #[serde(rename = "MetaData", default, deserialize_with = "null_as_default")]
    pub metadata: BTreeMap<String, String>,
    pub is_partial: bool,
    pub is_final: bool,
    /// Ids of the partial uploads a final upload is made of, in order.
    #[serde(default, deserialize_with = "null_as_default")]
    pub partial_uploads: Vec<String>,
    /// Store-specific details (tusd's filestore writes Type, Path, InfoPath).
    #[serde(default, deserialize_with = "null_as_default")]
    pub storage: BTreeMap<String, String>,
    /// Last time bytes or state changed; drives expiration. Not serialised:
    /// stores derive it (the file store from the data file's mtime).
    #[serde(skip)]
    pub modified: Option<SystemTime>,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl UploadInfo {
    /// True once every declared byte is stored (never while the length is deferred).
    pub fn is_complete(&self) -> bool {
        !self.size_is_deferred && self.offset == self.size
    }
}

/// What the handler asks a store to create; the store chooses the id.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NewUpload {
    pub size: Option<u64>,
    pub metadata: BTreeMap<String, String>,
    pub is_partial: bool,
    pub is_final: bool,
    pub partial_uploads: Vec<UploadId>,
}

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

/// Persistence for uploads. Implementations: `tusd-filestore`.
///
/// Contracts every implementation keeps:
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

    /// Cuts the upload back to `offset` bytes; used to discard a chunk whose
    /// checksum did not match.
    async fn truncate(
        &self,
        id: &UploadId,
        offset: u64,
        fence: Option<&FencingToken>,
    ) -> Result<(), StoreError>;

    /// Fixes the length of an upload created with a deferred length.
    async fn declare_length(
        &self,
        id: &UploadId,
        size: u64,
        fence: Option<&FencingToken>,
    ) -> Result<(), StoreError>;

    /// Deletes the upload's bytes and state.
    async fn terminate(
        &self,
        id: &UploadId,
        fence: Option<&FencingToken>,
    ) -> Result<(), StoreError>;

    /// Fills the final upload `id` with the bytes of `partials`, in order, and
    /// marks it complete. The partials are complete and stay as they are.
    async fn concat(
        &self,
        id: &UploadId,
        partials: &[UploadId],
        fence: Option<&FencingToken>,
    ) -> Result<(), StoreError>;

    /// A reader over `len` bytes starting at `start`.
    async fn read_range(
        &self,
        id: &UploadId,
        start: u64,
        len: u64,
    ) -> Result<UploadReader, StoreError>;

    /// Every upload id the store holds; used by the expiration sweep.
    async fn list_uploads(&self) -> Result<Vec<UploadId>, StoreError>;
}

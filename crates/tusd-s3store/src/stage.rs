//! Checksums on S3: a chunk is kept on local disk until the handler has
//! verified its digest, and only then cut into parts.
//!
//! A part once uploaded cannot be taken back or shortened, so the file
//! store's way (write, then truncate on a mismatch) is not open to S3. The
//! staged chunk is a temporary file in the same place parts wait
//! (`S3StoreOptions::temp_dir`); committing it replays the file through
//! `write`, exactly as if the body had come then, and dropping it deletes
//! the file. Until the commit nothing in the bucket changes, so a mismatch,
//! a broken body or a crash leaves no trace there.
//!
//! The price is one more local write and read of the chunk's bytes, paid
//! only by requests that carry `Upload-Checksum`.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use tempfile::NamedTempFile;
use tokio::io::AsyncWriteExt;
use tusd_core::{ChunkStream, FencingToken, StagedChunk, StoreError};

use crate::keys::UploadKeys;
use crate::state::{load, Multipart};
use crate::write::{temp_file, write};
use crate::Inner;

/// How much of the staged file is read into memory at a time on commit.
const READ_BUFFER: usize = 256 * 1024;

/// A chunk on local disk, meant for `keys`' upload at `offset`.
pub(crate) struct S3StagedChunk {
    inner: Arc<Inner>,
    keys: UploadKeys,
    offset: u64,
    file: NamedTempFile,
    len: u64,
}

/// Receives `chunk` into a temporary file, after checking that the upload
/// holds `offset` bytes and can still take more.
pub(crate) async fn stage(
    inner: &Arc<Inner>,
    keys: UploadKeys,
    offset: u64,
    mut chunk: ChunkStream,
) -> Result<S3StagedChunk, StoreError> {
    let state = load(inner, &keys).await?;
    if state.info.offset != offset {
        return Err(StoreError::OffsetMoved {
            expected: offset,
            actual: state.info.offset,
        });
    }
    if let Multipart::Completed = state.multipart {
        return Err(StoreError::Io(std::io::Error::other(
            "the upload is finished: its multipart upload is completed",
        )));
    }
    let file = temp_file(inner)?;
    let mut writer = tokio::fs::File::from_std(file.reopen()?);
    let mut len = 0;
    while let Some(bytes) = chunk.next().await {
        let bytes = bytes?;
        writer.write_all(&bytes).await?;
        len += bytes.len() as u64;
    }
    writer.flush().await?;
    Ok(S3StagedChunk {
        inner: inner.clone(),
        keys,
        offset,
        file,
        len,
    })
}

#[async_trait]
impl StagedChunk for S3StagedChunk {
    fn len(&self) -> u64 {
        self.len
    }

    /// Loads the state again (another request may have written since the
    /// chunk was staged) and writes the file as a body would be written.
    async fn commit(self: Box<Self>, fence: Option<&FencingToken>) -> Result<u64, StoreError> {
        let state = load(&self.inner, &self.keys).await?;
        if state.info.offset != self.offset {
            return Err(StoreError::OffsetMoved {
                expected: self.offset,
                actual: state.info.offset,
            });
        }
        let reader = tokio::fs::File::from_std(self.file.reopen()?);
        let body: ChunkStream =
            tokio_util::io::ReaderStream::with_capacity(reader, READ_BUFFER).boxed();
        write(&self.inner, &self.keys, state, fence, body).await
    }
}

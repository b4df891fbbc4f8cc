//! `read_range` on S3: a ranged GET of the finished object.
//!
//! S3 cannot read the parts of a multipart upload before it is completed,
//! so an unfinished upload can be read only while all its bytes sit in the
//! `.part` object (it has no parts yet). A complete upload whose multipart
//! upload was not completed yet (`finish_upload` failed, or has not run) is
//! completed first: its bytes can no longer change, and completing is what
//! `finish_upload` will find done. Anything else is refused with an error
//! that says why, as tusd refuses to stream an unfinished S3 upload.

use tokio::io::AsyncRead;
use tusd_core::{StoreError, UploadReader};

use crate::complete::complete;
use crate::error::io;
use crate::keys::UploadKeys;
use crate::state::{load, Multipart};
use crate::Inner;

pub(crate) async fn read_range(
    inner: &Inner,
    keys: &UploadKeys,
    start: u64,
    len: u64,
) -> Result<UploadReader, StoreError> {
    let state = load(inner, keys).await?;
    let end = start.saturating_add(len).min(state.info.offset);
    if start >= end {
        return Ok(Box::new(tokio::io::empty()));
    }
    let key = match &state.multipart {
        Multipart::Completed => &keys.object,
        Multipart::Open(_) if state.info.is_complete() => {
            complete(inner, keys, &state).await?;
            &keys.object
        }
        Multipart::Open(_) if state.bytes_in_parts() == 0 => &keys.part,
        Multipart::Open(_) => return Err(StoreError::Io(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "S3 cannot read an unfinished upload's bytes before its multipart upload is completed",
        ))),
    };
    get_range(inner, key, start, end).await
}

/// A reader over bytes `start..end` of the object `key`.
pub(crate) async fn get_range(
    inner: &Inner,
    key: &str,
    start: u64,
    end: u64,
) -> Result<UploadReader, StoreError> {
    let got = inner
        .client
        .get_object()
        .bucket(&inner.bucket)
        .key(key)
        .range(format!("bytes={start}-{}", end - 1))
        .send()
        .await
        .map_err(|e| io("GetObject", key, e))?;
    let reader: std::pin::Pin<Box<dyn AsyncRead + Send>> = Box::pin(got.body.into_async_read());
    Ok(Box::new(reader))
}

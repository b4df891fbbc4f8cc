//! Sending one part from a file on local disk, and sending it again when an
//! attempt fails.
//!
//! The store makes the attempts itself rather than leaving them to the
//! SDK, because of what a server may still do with an attempt the client
//! gave up on. An attempt that timed out is not necessarily dead: its
//! request can sit in the socket buffers of a server that was paused or
//! overloaded, and the server reads it when it wakes. Garage (2.5.0) then
//! records that abandoned attempt as the part's newest version, unfinished,
//! and from then on refuses to complete the multipart upload
//! (`InvalidPart`) although ListParts still shows the finished version.
//! The SDK would send the next attempt as soon as the timeout fires, while
//! the server is still asleep, so the stale attempt and the good one reach
//! it together and which one counts as newer is luck (a CI run lost that
//! race). So, before sending a part again, the store waits until the
//! server answers a request (HeadBucket), which it can only do once it
//! runs again and has read what was queued for it, then pauses a little
//! more. AWS S3 keeps the newest *finished* attempt, so there this costs
//! only the wait.

use std::path::Path;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use tusd_core::StoreError;

use crate::error::{io, HttpStatus};
use crate::state::Part;
use crate::write::file_body;
use crate::Inner;

/// Pauses before the second, third and fourth attempt at a part, after the
/// server has answered again.
const PAUSES: [std::time::Duration; 3] = [
    std::time::Duration::from_millis(500),
    std::time::Duration::from_secs(1),
    std::time::Duration::from_secs(2),
];

/// HeadBucket requests (each with the SDK's own retries) made while
/// waiting for a server to answer again, before sending anyway.
const PROBES: usize = 3;

/// Sends the `len` bytes of the file at `path` as part `number`, streamed
/// from disk, with their CRC32 when the caller has it (else the SDK
/// computes one, unless content hashes are disabled).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn upload_part(
    inner: &Inner,
    key: &str,
    multipart_id: &str,
    number: i32,
    path: &Path,
    len: u64,
    crc32: Option<&str>,
) -> Result<Part, StoreError> {
    upload_part_at(inner, key, multipart_id, number, path, 0, len, crc32).await
}

/// Sends `len` bytes of the file at `path` from `offset` on as part
/// `number`, with their CRC32 if known; a failure that may pass (no
/// answer, a 5xx, throttling) is tried again as the module describes.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn upload_part_at(
    inner: &Inner,
    key: &str,
    multipart_id: &str,
    number: i32,
    path: &Path,
    offset: u64,
    len: u64,
    crc32: Option<&str>,
) -> Result<Part, StoreError> {
    let _slot = inner
        .upload_slots
        .acquire()
        .await
        .expect("the semaphore is never closed");
    let mut pauses = PAUSES.iter();
    loop {
        let body = file_body(path, offset, len).await?;
        let sent = inner
            .client
            .upload_part()
            .bucket(&inner.bucket)
            .key(key)
            .upload_id(multipart_id)
            .part_number(number)
            .content_length(len as i64)
            .set_checksum_crc32(crc32.map(str::to_owned))
            .body(body)
            .customize()
            .config_override(
                aws_sdk_s3::config::Builder::default().retry_config(RetryConfig::disabled()),
            )
            .send()
            .await;
        let err = match sent {
            Ok(sent) => {
                return Ok(Part {
                    number,
                    size: len,
                    etag: sent.e_tag().unwrap_or_default().to_owned(),
                })
            }
            Err(err) => err,
        };
        let pause = match pauses.next() {
            Some(pause) if may_pass(&err) => pause,
            _ => return Err(io("UploadPart", key, err)),
        };
        tracing::debug!(%key, part = number, error = %aws_sdk_s3::error::DisplayErrorContext(&err), "a part attempt failed; sending it again once the server answers");
        wait_until_answering(inner).await;
        tokio::time::sleep(*pause).await;
    }
}

/// Whether a failed attempt is worth making again: no answer (timeout,
/// connection lost), a server error, or a request to slow down.
fn may_pass<E: ProvideErrorMetadata, R: HttpStatus>(err: &SdkError<E, R>) -> bool {
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(_) => {
            matches!(
                err.raw_response().map(HttpStatus::status),
                Some(429 | 500..)
            ) || matches!(err.code(), Some("SlowDown" | "RequestTimeout"))
        }
        _ => false,
    }
}

/// Returns once the server answers a HeadBucket (whatever the answer), or
/// after [`PROBES`] requests that got none.
pub(crate) async fn wait_until_answering(inner: &Inner) {
    for _ in 0..PROBES {
        match inner
            .client
            .head_bucket()
            .bucket(&inner.bucket)
            .send()
            .await
        {
            Ok(_) | Err(SdkError::ServiceError(_) | SdkError::ResponseError(_)) => return,
            Err(_) => continue,
        }
    }
}

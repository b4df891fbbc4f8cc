//! The body-receiving path PATCH and creation-with-upload share: a request
//! body streamed into the store under the upload's lock, obeying the lock's
//! signals, the upload's remaining length and the checksum the client sent.

use axum::body::Body;
use http::HeaderMap;

use crate::body::{chunk_stream, BodyEnd, BodyRules};
use crate::error::HandlerError;
use crate::events::ResponseChange;
use crate::headers::{self, MAX_LENGTH};
use crate::protocol::checksum::Checksum;
use crate::state::{Origin, Progress, State, Written};
use crate::{Lock, Rejection, UploadId, UploadInfo};

/// Streams a request body into the upload at `info.offset` while `lock` is
/// held, and returns the upload's state after it, with the pre-finish
/// hook's change to the answer if the body finished the upload. Shared by
/// PATCH and creation-with-upload.
///
/// Bytes that reached the store stay stored whatever happens after, except
/// a chunk whose checksum does not match, which the store staged and is
/// dropped (or, on a store that cannot stage, is cut off again), and an
/// upload a hook stopped, which is terminated (tusd's `StopUpload`).
#[allow(clippy::too_many_arguments)]
pub async fn receive(
    state: &State,
    id: &UploadId,
    lock: &Lock,
    mut info: UploadInfo,
    headers: &HeaderMap,
    checksum: Option<Checksum>,
    body: Body,
    origin: &Origin,
) -> Result<(UploadInfo, ResponseChange), HandlerError> {
    let room = if info.size_is_deferred {
        match state.config().max_size {
            0 => MAX_LENGTH,
            max => max,
        }
        .saturating_sub(info.offset)
    } else {
        info.size - info.offset
    };
    if let Some(length) = headers::content_length(headers)? {
        if length > room {
            return Err(HandlerError::TooLarge(format!(
                "body of {length} bytes exceeds the {room} bytes left in the upload"
            )));
        }
    }
    let start = info.offset;
    let mut progress = Progress::new(start);
    let (chunks, report) = chunk_stream(
        body,
        BodyRules {
            limit: room,
            signals: match state.config().fault_ignore_lock_signals {
                false => lock.signals().clone(),
                true => crate::LockSignals::new(),
            },
            shutdown: state.shutdown().clone(),
            stop: progress.stopper.token().clone(),
            idle_timeout: state.config().network_timeout,
            hasher: checksum.as_ref().map(|c| c.algorithm.hasher()),
        },
    );
    let written = state
        .write(
            &info,
            lock,
            chunks,
            checksum.is_some(),
            || report.received(),
            &mut progress,
            origin,
        )
        .await;
    let outcome = report.outcome();
    state.metrics().bytes_received(outcome.received);

    if outcome.end == BodyEnd::LockLost {
        return Err(HandlerError::Locked(
            "the upload's lock was lost; bytes stored before that are kept".into(),
        ));
    }
    let mut staged = None;
    info.offset = match written {
        Ok(Written::Stored(n)) => {
            if n > 0 {
                info.modified = Some(std::time::SystemTime::now());
            }
            start + n
        }
        Ok(Written::Staged(chunk)) => {
            staged = Some(chunk);
            start
        }
        // A client that went away is no server error: keep what arrived.
        Err(_) if outcome.end == BodyEnd::Broken => state.info(id).await?.offset,
        Err(e) => return Err(e.into()),
    };
    if outcome.end == BodyEnd::StoppedByHook {
        state.stopped_by_hook(&info, lock, origin).await;
        let rejection = progress.stopper.take_response().unwrap_or_else(|| {
            Rejection::new(
                http::StatusCode::BAD_REQUEST,
                "ERR_UPLOAD_STOPPED: upload has been stopped by server",
            )
        });
        return Err(HandlerError::Rejected(Box::new(rejection)));
    }
    if let (Some(checksum), Some(digest)) = (checksum, outcome.digest) {
        if digest != checksum.expected {
            if staged.is_none() {
                state.discard_chunk(id, start, lock).await?;
            }
            return Err(HandlerError::ChecksumMismatch);
        }
    }
    if let Some(chunk) = staged {
        let n = state.commit_chunk(chunk, lock).await?;
        if n > 0 {
            info.modified = Some(std::time::SystemTime::now());
        }
        info.offset = start + n;
    }
    let change = state
        .received(&info, info.offset - start, lock, origin, &mut progress)
        .await?;
    if outcome.end == BodyEnd::TooLong {
        return Err(HandlerError::TooLarge(
            "body is longer than the upload's remaining length; the excess was not stored".into(),
        ));
    }
    Ok((info, change))
}

/// 413 when `length` is above the server's limit.
pub fn check_max_size(state: &State, length: u64) -> Result<(), HandlerError> {
    let max = state.config().max_size;
    if max > 0 && length > max {
        return Err(HandlerError::TooLarge(format!(
            "upload length {length} exceeds the maximum size {max}"
        )));
    }
    Ok(())
}

//! Core protocol: OPTIONS, HEAD and PATCH.

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, HeaderValue, StatusCode};

use crate::error::HandlerError;
use crate::headers::{self, TUS_VERSION};
use crate::protocol::checksum::ALGORITHMS;
use crate::protocol::receive::{check_max_size, receive};
use crate::protocol::{concatenation, expiration};
use crate::request_log::BytesStored;
use crate::state::{Origin, State};
use crate::{Lock, UploadId, UploadInfo};

/// OPTIONS: what this server supports.
pub fn options(state: &State) -> Response {
    let config = state.config();
    let extensions = state.extensions();
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    h.insert("tus-version", HeaderValue::from_static(TUS_VERSION));
    h.insert(
        "tus-extension",
        HeaderValue::from_str(&extensions.join(",")).expect("ascii"),
    );
    if state.checks_checksums() {
        h.insert(
            "tus-checksum-algorithm",
            HeaderValue::from_static(ALGORITHMS),
        );
    }
    if config.max_size > 0 {
        h.insert("tus-max-size", HeaderValue::from(config.max_size));
    }
    response
}

/// Reads an upload's state the way a client may rely on: a finished upload
/// as it is, an unfinished one under its lock (which also asks a zombie
/// PATCH on it to stop, so the client's resume proceeds at once).
pub async fn settled_info(
    state: &State,
    id: &UploadId,
    origin: &Origin,
) -> Result<UploadInfo, HandlerError> {
    let info = state.info(id).await?;
    if info.is_complete() {
        return Ok(info);
    }
    let lock = state.lock(id).await?;
    // While this waited for the lock, the holder may have stored bytes; it
    // changed nothing else unless the length was deferred (it may have
    // been declared) or the upload is a final one (its partials may have
    // completed it): then the whole state is read again.
    let info = if info.size_is_deferred || info.is_final {
        state.info(id).await?
    } else {
        state.refresh_progress(id, info).await?
    };
    let info = concatenation::finish_if_ready(state, id, info, &lock, origin).await?;
    let _ = lock.unlock().await;
    expiration::check(state, &info)?;
    Ok(info)
}

/// HEAD: where the upload stands.
pub async fn head(
    state: &State,
    id: &UploadId,
    request: &HeaderMap,
    origin: &Origin,
) -> Result<Response, HandlerError> {
    let info = settled_info(state, id, origin).await?;
    let mut response = StatusCode::OK.into_response();
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // A final upload still waiting for its partials has neither offset nor
    // length yet (concatenation-unfinished).
    let waiting_final = info.is_final && !info.is_complete();
    if !waiting_final {
        h.insert("upload-offset", HeaderValue::from(info.offset));
        if info.size_is_deferred {
            h.insert("upload-defer-length", HeaderValue::from_static("1"));
        } else {
            h.insert("upload-length", HeaderValue::from(info.size));
        }
    }
    if !info.metadata.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&headers::encode_metadata(&info.metadata)) {
            h.insert("upload-metadata", v);
        }
    }
    if let Some(concat) = concatenation::header_value(state, request, &info) {
        h.insert("upload-concat", concat);
    }
    expiration::add_header(state, &info, h);
    Ok(response)
}

/// PATCH: append the body at the client's offset.
pub async fn patch(
    state: &State,
    id: &UploadId,
    req: Request,
    origin: &Origin,
) -> Result<Response, HandlerError> {
    let (parts, body) = req.into_parts();
    if !headers::is_offset_octet_stream(&parts.headers) {
        return Err(HandlerError::UnsupportedMediaType);
    }
    let offset = headers::upload_offset(&parts.headers)?;
    let declared_length = headers::upload_length(&parts.headers)?;
    let checksum = headers::upload_checksum(&parts.headers)?;
    if checksum.is_some() && !state.checks_checksums() {
        return Err(HandlerError::NotImplemented(
            "this server's store does not support the checksum extension".into(),
        ));
    }

    let lock = state.lock(id).await?;
    let mut info = state.info(id).await?;
    expiration::check(state, &info)?;
    if info.is_final {
        return Err(HandlerError::Forbidden("a final upload cannot be patched"));
    }
    if offset != info.offset {
        return Err(HandlerError::OffsetMismatch {
            expected: info.offset,
            got: offset,
        });
    }
    if let Some(length) = declared_length {
        declare_length(state, &lock, &mut info, length, origin).await?;
    }
    let before = info.offset;
    let (info, change) = receive(
        state,
        id,
        &lock,
        info,
        &parts.headers,
        checksum,
        body,
        origin,
    )
    .await?;
    let _ = lock.unlock().await;

    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert("upload-offset", HeaderValue::from(info.offset));
    expiration::add_header(state, &info, response.headers_mut());
    response
        .extensions_mut()
        .insert(BytesStored(info.offset - before));
    Ok(change.apply(response))
}

/// Fixes a deferred length (creation-defer-length), or checks a repeated one.
async fn declare_length(
    state: &State,
    lock: &Lock,
    info: &mut UploadInfo,
    length: u64,
    origin: &Origin,
) -> Result<(), HandlerError> {
    if !info.size_is_deferred {
        return match length == info.size {
            true => Ok(()),
            false => Err(HandlerError::bad_request(
                "Upload-Length differs from the upload's length",
            )),
        };
    }
    if length < info.offset {
        return Err(HandlerError::bad_request(
            "Upload-Length is smaller than the upload's offset",
        ));
    }
    check_max_size(state, length)?;
    state.declare_length(info, length, lock, origin).await
}

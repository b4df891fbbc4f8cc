//! Creation, creation-with-upload and creation-defer-length: POST.

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};

use crate::error::HandlerError;
use crate::events::ResponseChange;
use crate::headers::{self, Concat};
use crate::location::upload_url;
use crate::protocol::receive::{check_max_size, receive};
use crate::protocol::{concatenation, expiration};
use crate::rate_limit::client_address;
use crate::request_log::BytesStored;
use crate::state::{Origin, State};
use crate::{NewUpload, UploadId};

/// POST: creates an upload, and stores the body too when it is upload bytes.
pub async fn post(state: &State, req: Request, origin: &Origin) -> Result<Response, HandlerError> {
    if let Some(client) = client_address(&req, state.config().behind_proxy) {
        state
            .creations()
            .admit(client, std::time::Instant::now())
            .map_err(|retry_after| HandlerError::TooManyRequests { retry_after })?;
    }
    let (parts, body) = req.into_parts();
    let headers = &parts.headers;
    let concat = headers::upload_concat(headers, &state.config().base_path)?;
    let metadata = headers::upload_metadata(headers)?;
    let deferred = headers::upload_defer_length(headers)?;
    let length = headers::upload_length(headers)?;
    let with_upload = headers::is_offset_octet_stream(headers);
    let checksum = match with_upload {
        true => headers::upload_checksum(headers)?,
        false => None,
    };

    let mut upload = NewUpload {
        metadata,
        ..NewUpload::default()
    };
    let mut final_ready = false;
    match concat {
        Concat::Final(partials) => {
            concatenation::check_partials(state, &partials)?;
            if length.is_some() || deferred {
                return Err(HandlerError::bad_request(
                    "a final upload takes its length from its partial uploads",
                ));
            }
            upload.size = concatenation::final_size(state, &partials).await?;
            final_ready = upload.size.is_some();
            upload.is_final = true;
            upload.partial_uploads = partials;
        }
        other => {
            upload.is_partial = other == Concat::Partial;
            upload.size = match (length, deferred) {
                (Some(length), false) => Some(length),
                (None, true) => None,
                (Some(_), true) => {
                    return Err(HandlerError::bad_request(
                        "Upload-Length and Upload-Defer-Length are mutually exclusive",
                    ))
                }
                (None, false) => {
                    return Err(HandlerError::bad_request(
                        "missing Upload-Length or Upload-Defer-Length header",
                    ))
                }
            };
        }
    }
    if let Some(size) = upload.size {
        check_max_size(state, size)?;
        // Refuse an oversized creation-with-upload body before anything exists.
        if with_upload && !upload.is_final {
            if let Some(body_length) = headers::content_length(headers)? {
                if body_length > size {
                    return Err(HandlerError::TooLarge(format!(
                        "body of {body_length} bytes exceeds Upload-Length {size}"
                    )));
                }
            }
        }
    }

    let created = state.pre_create(origin, &mut upload).await?;
    let partials = upload.partial_uploads.clone();
    let mut info = state.create(upload, origin).await?;
    let id = UploadId::parse(&info.id).ok_or_else(|| {
        HandlerError::Internal(format!("store generated invalid id {:?}", info.id))
    })?;
    if final_ready {
        // Nobody else knows the new id yet, so there is no lock to fence with.
        info = state.concat(&id, &partials, None, origin).await?;
    }

    let location = upload_url(
        headers,
        state.config().behind_proxy,
        &state.config().base_path,
        &id,
    );
    let mut response = StatusCode::CREATED.into_response();
    let mut stored = 0;
    let mut change = ResponseChange::default();
    if with_upload && !info.is_final {
        let lock = state.lock(&id).await?;
        let before = info.offset;
        let result = receive(state, &id, &lock, info, headers, checksum, body, origin).await;
        let _ = lock.unlock().await;
        // The upload exists either way: a failed first chunk must still tell
        // the client where to resume.
        let after = match result {
            Ok((after, finished)) => {
                change = finished;
                after
            }
            Err(e) => {
                let mut response = e.into_response();
                response.headers_mut().insert(
                    header::LOCATION,
                    HeaderValue::from_str(&location).expect("built from checked parts"),
                );
                return Ok(response);
            }
        };
        stored = after.offset - before;
        response
            .headers_mut()
            .insert("upload-offset", HeaderValue::from(after.offset));
        info = after;
    }
    let h = response.headers_mut();
    h.insert(
        header::LOCATION,
        HeaderValue::from_str(&location).expect("built from checked parts"),
    );
    expiration::add_header(state, &info, h);
    response.extensions_mut().insert(BytesStored(stored));
    Ok(change.apply(created.apply(response)))
}

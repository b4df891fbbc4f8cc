//! Every way a request can fail, and the one place each maps to a status.

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};

use crate::{LockError, StoreError};

/// A failed request. The message becomes the one-line response body.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("{0}")]
    BadRequest(String),
    #[error("upload not found")]
    NotFound,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("Upload-Offset {got} does not match the upload's offset {expected}")]
    OffsetMismatch { expected: u64, got: u64 },
    #[error("upload has expired")]
    Gone,
    /// 410 for another reason than expiry.
    #[error("{0}")]
    GoneFor(String),
    #[error("unsupported version: this server speaks tus 1.0.0")]
    UnsupportedVersion,
    #[error("{0}")]
    TooLarge(String),
    #[error("Content-Type must be application/offset+octet-stream")]
    UnsupportedMediaType,
    #[error("requested range not satisfiable")]
    RangeNotSatisfiable { size: u64 },
    #[error("checksum mismatch: the chunk was discarded")]
    ChecksumMismatch,
    #[error("{0}")]
    Locked(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    NotImplemented(String),
    #[error("{0}")]
    InsufficientStorage(String),
    #[error("too many uploads created from this address; retry in {retry_after} s")]
    TooManyRequests { retry_after: u64 },
    #[error("{0}")]
    Internal(String),
    /// A hook's own answer: any status, headers and body, sent as given.
    #[error("rejected with status {}", .0.status)]
    Rejected(Box<crate::Rejection>),
}

impl HandlerError {
    pub fn status(&self) -> StatusCode {
        match self {
            HandlerError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HandlerError::NotFound => StatusCode::NOT_FOUND,
            HandlerError::Forbidden(_) => StatusCode::FORBIDDEN,
            HandlerError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            HandlerError::OffsetMismatch { .. } => StatusCode::CONFLICT,
            HandlerError::Gone | HandlerError::GoneFor(_) => StatusCode::GONE,
            HandlerError::UnsupportedVersion => StatusCode::PRECONDITION_FAILED,
            HandlerError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            HandlerError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            HandlerError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            HandlerError::ChecksumMismatch => StatusCode::from_u16(460).expect("valid status"),
            HandlerError::Locked(_) => StatusCode::LOCKED,
            HandlerError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            HandlerError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            HandlerError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            HandlerError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            HandlerError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            HandlerError::Rejected(r) => r.status,
        }
    }

    pub fn bad_request(reason: impl Into<String>) -> HandlerError {
        HandlerError::BadRequest(reason.into())
    }
}

impl From<StoreError> for HandlerError {
    fn from(e: StoreError) -> HandlerError {
        match e {
            StoreError::NotFound => HandlerError::NotFound,
            StoreError::Fenced(reason) => {
                tracing::warn!(%reason, "store refused a stale lock holder");
                HandlerError::Locked(
                    "another request has taken over this upload; nothing more was written".into(),
                )
            }
            StoreError::OffsetMoved { expected, actual } => HandlerError::OffsetMismatch {
                expected: actual,
                got: expected,
            },
            StoreError::Io(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
                ) =>
            {
                HandlerError::InsufficientStorage(format!(
                    "the server's storage is full ({e}); the bytes before it are kept"
                ))
            }
            other => HandlerError::Internal(other.to_string()),
        }
    }
}

impl From<LockError> for HandlerError {
    fn from(e: LockError) -> HandlerError {
        match e {
            LockError::Timeout | LockError::Lost | LockError::NotHeld => {
                HandlerError::Locked(e.to_string())
            }
            // The reason names etcd endpoints and gRPC internals: the log
            // gets it, the client gets one line it can act on.
            LockError::Unavailable(reason) => {
                tracing::warn!(%reason, "lock service unavailable");
                HandlerError::Unavailable(
                    "the lock service is unavailable; retry the request later".into(),
                )
            }
        }
    }
}

impl IntoResponse for HandlerError {
    fn into_response(self) -> Response {
        if let HandlerError::Rejected(rejection) = self {
            let crate::Rejection {
                status,
                headers,
                body,
            } = *rejection;
            let mut response = (status, body).into_response();
            response.headers_mut().extend(headers);
            return response;
        }
        let status = self.status();
        let mut response = (status, format!("{self}\n")).into_response();
        if status.is_server_error() {
            // Logged once, by the dispatcher, together with the upload id.
            response
                .extensions_mut()
                .insert(crate::request_log::FailureReason(self.to_string()));
        }
        if let HandlerError::ChecksumMismatch = self {
            // 460 has no standard reason phrase; give it tusd's.
            response
                .extensions_mut()
                .insert(hyper::ext::ReasonPhrase::from_static(b"Checksum Mismatch"));
        }
        let headers = response.headers_mut();
        match &self {
            HandlerError::Locked(_) | HandlerError::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            HandlerError::TooManyRequests { retry_after } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            HandlerError::UnsupportedVersion => {
                headers.insert("tus-version", HeaderValue::from_static("1.0.0"));
            }
            HandlerError::RangeNotSatisfiable { size } => {
                let value = format!("bytes */{size}");
                headers.insert(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&value).expect("ascii"),
                );
            }
            _ => {}
        }
        response
    }
}

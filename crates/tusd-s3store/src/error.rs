//! Turning S3's answers into [`StoreError`]s: by the error code S3 sends
//! (and the status, for HEAD answers that carry no body), never by message.

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use tusd_core::StoreError;

/// The error code S3 answered with, or `NotFound` for a bodiless 404.
pub(crate) fn code<E: ProvideErrorMetadata, R: HttpStatus>(err: &SdkError<E, R>) -> Option<String> {
    if let Some(code) = err.code() {
        return Some(code.to_owned());
    }
    match err.raw_response().map(HttpStatus::status) {
        Some(404) => Some("NotFound".to_owned()),
        Some(403) => Some("AccessDenied".to_owned()),
        _ => None,
    }
}

/// Whether the error says the key (or multipart upload) does not exist.
pub(crate) fn is_missing<E: ProvideErrorMetadata, R: HttpStatus>(err: &SdkError<E, R>) -> bool {
    matches!(
        code(err).as_deref(),
        Some("NoSuchKey" | "NotFound" | "NoSuchUpload")
    )
}

/// Whether the error says the multipart upload does not exist (completed
/// or aborted).
pub(crate) fn is_no_such_upload<E: ProvideErrorMetadata, R: HttpStatus>(
    err: &SdkError<E, R>,
) -> bool {
    matches!(code(err).as_deref(), Some("NoSuchUpload" | "NotFound"))
}

/// Whether the server refused a conditional request's condition.
pub(crate) fn is_precondition_failed<E: ProvideErrorMetadata, R: HttpStatus>(
    err: &SdkError<E, R>,
) -> bool {
    matches!(
        code(err).as_deref(),
        Some("PreconditionFailed" | "ConditionalRequestConflict")
    ) || matches!(err.raw_response().map(HttpStatus::status), Some(412 | 409))
}

/// Any other failure, as storage I/O naming the operation and key.
pub(crate) fn io<E, R>(what: &str, key: &str, err: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    StoreError::Io(std::io::Error::other(format!(
        "S3 {what} {key}: {}",
        DisplayErrorContext(err)
    )))
}

/// The status code of a raw response, whatever its type.
pub(crate) trait HttpStatus {
    fn status(&self) -> u16;
}

impl HttpStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status(&self) -> u16 {
        self.status().as_u16()
    }
}

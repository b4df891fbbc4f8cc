//! Termination: DELETE removes an upload for good.

use axum::response::{IntoResponse, Response};
use http::StatusCode;

use crate::error::HandlerError;
use crate::handler::Inner;
use crate::UploadId;

/// DELETE: under the lock, so no PATCH is mid-write when the files go.
pub async fn delete(inner: &Inner, id: &UploadId) -> Result<Response, HandlerError> {
    if inner.config.disable_termination {
        return Err(HandlerError::MethodNotAllowed);
    }
    let lock = inner.lock(id).await?;
    inner.store.get_info(id).await?;
    inner.store.terminate(id, lock.fencing_token()).await?;
    let _ = lock.unlock().await;
    inner.metrics.upload_terminated();
    Ok(StatusCode::NO_CONTENT.into_response())
}

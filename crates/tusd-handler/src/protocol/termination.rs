//! Termination: DELETE removes an upload for good.

use axum::response::{IntoResponse, Response};
use http::StatusCode;

use crate::error::HandlerError;
use crate::state::{Origin, State};
use crate::UploadId;

/// DELETE: under the lock, so no PATCH is mid-write when the files go; the
/// pre-terminate hook decides first.
pub async fn delete(
    state: &State,
    id: &UploadId,
    origin: &Origin,
) -> Result<Response, HandlerError> {
    if state.config().disable_termination {
        return Err(HandlerError::MethodNotAllowed);
    }
    let lock = state.lock(id).await?;
    let info = state.info(id).await?;
    let change = state.pre_terminate(&info, origin).await?;
    state.terminate(&info, lock.fencing_token(), origin).await?;
    let _ = lock.unlock().await;
    Ok(change.apply(StatusCode::NO_CONTENT.into_response()))
}

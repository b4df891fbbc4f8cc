//! Expiration: unfinished uploads that nobody touched for the configured
//! time answer 410 and are removed by a periodic sweep.
//!
//! Only unfinished uploads expire: a finished upload is the user's data,
//! and deleting it is the operator's decision, not the protocol's.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue};

use crate::error::HandlerError;
use crate::state::State;
use crate::UploadInfo;

/// When `info` expires, if expiration is on and the upload is unfinished.
pub fn expires_at(state: &State, info: &UploadInfo) -> Option<SystemTime> {
    let after = state.config().expire_after?;
    if info.is_complete() || !state.expires() {
        return None;
    }
    Some(info.modified? + after)
}

/// 410 for an expired upload.
pub fn check(state: &State, info: &UploadInfo) -> Result<(), HandlerError> {
    match expires_at(state, info) {
        Some(at) if at <= SystemTime::now() => Err(HandlerError::Gone),
        _ => Ok(()),
    }
}

/// Adds `Upload-Expires` when the upload will expire.
pub fn add_header(state: &State, info: &UploadInfo, headers: &mut HeaderMap) {
    let Some(at) = expires_at(state, info) else {
        return;
    };
    if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(at)) {
        headers.insert("upload-expires", v);
    }
}

/// Removes every expired upload once; returns how many went.
pub async fn sweep(state: &State) -> usize {
    if !state.expires() {
        return 0;
    }
    let ids = match state.list_uploads().await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!(error = %e, "expiration sweep could not list uploads");
            return 0;
        }
    };
    let mut removed = 0;
    for id in ids {
        let Ok(info) = state.info(&id).await else {
            continue;
        };
        if check(state, &info).is_ok() {
            continue;
        }
        // Under the lock, and re-checked: a PATCH may have revived it.
        let Ok(lock) = state.lock(&id).await else {
            continue;
        };
        let still_expired = match state.info(&id).await {
            Ok(info) if check(state, &info).is_err() => Some(info),
            _ => None,
        };
        let terminated = match still_expired {
            Some(info) => state
                .terminate(&info, lock.fencing_token(), &None)
                .await
                .is_ok(),
            None => false,
        };
        if terminated {
            removed += 1;
            tracing::info!(id = %id, "removed expired upload");
        }
        let _ = lock.unlock().await;
    }
    removed
}

/// Sweeps every `interval` until the handler shuts down.
pub async fn sweep_forever(state: &State, interval: Duration) {
    if !state.expires() {
        return;
    }
    loop {
        tokio::select! {
            _ = state.shutdown().cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        sweep(state).await;
    }
}

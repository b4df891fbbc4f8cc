//! Expiration: unfinished uploads that nobody touched for the configured
//! time answer 410 and are removed by a periodic sweep.
//!
//! Only unfinished uploads expire: a finished upload is the user's data,
//! and deleting it is the operator's decision, not the protocol's.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue};

use crate::error::HandlerError;
use crate::handler::Inner;
use crate::UploadInfo;

/// When `info` expires, if expiration is on and the upload is unfinished.
pub fn expires_at(inner: &Inner, info: &UploadInfo) -> Option<SystemTime> {
    let after = inner.config.expire_after?;
    if info.is_complete() {
        return None;
    }
    Some(info.modified? + after)
}

/// 410 for an expired upload.
pub fn check(inner: &Inner, info: &UploadInfo) -> Result<(), HandlerError> {
    match expires_at(inner, info) {
        Some(at) if at <= SystemTime::now() => Err(HandlerError::Gone),
        _ => Ok(()),
    }
}

/// Adds `Upload-Expires` when the upload will expire.
pub fn add_header(inner: &Inner, info: &UploadInfo, headers: &mut HeaderMap) {
    let Some(at) = expires_at(inner, info) else {
        return;
    };
    if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(at)) {
        headers.insert("upload-expires", v);
    }
}

/// Removes every expired upload once; returns how many went.
pub async fn sweep(inner: &Inner) -> usize {
    if inner.config.expire_after.is_none() {
        return 0;
    }
    let ids = match inner.store.list_uploads().await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!(error = %e, "expiration sweep could not list uploads");
            return 0;
        }
    };
    let mut removed = 0;
    for id in ids {
        let Ok(info) = inner.store.get_info(&id).await else {
            continue;
        };
        if check(inner, &info).is_ok() {
            continue;
        }
        // Under the lock, and re-checked: a PATCH may have revived it.
        let Ok(lock) = inner.lock(&id).await else {
            continue;
        };
        let still_expired = match inner.store.get_info(&id).await {
            Ok(info) => check(inner, &info).is_err(),
            Err(_) => false,
        };
        if still_expired
            && inner
                .store
                .terminate(&id, lock.fencing_token())
                .await
                .is_ok()
        {
            inner.metrics.upload_terminated();
            removed += 1;
            tracing::info!(id = %id, "removed expired upload");
        }
        let _ = lock.unlock().await;
    }
    removed
}

/// Sweeps every `interval` until the handler shuts down.
pub async fn sweep_forever(inner: &Inner, interval: Duration) {
    if inner.config.expire_after.is_none() {
        return;
    }
    loop {
        tokio::select! {
            _ = inner.shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        sweep(inner).await;
    }
}

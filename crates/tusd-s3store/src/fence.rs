//! Fencing on S3: the `{metadata prefix}{object id}.fence` object records the newest
//! lock token that changed the upload, and a call with an older token is
//! refused with `Fenced` before it touches anything.
//!
//! The record and its rule are the file store's (`tusd-filestore`'s `fence`
//! module): JSON `{"Issuer", "Token", "Retired"}`; a token is admitted when
//! there is no record, when it is at least the recorded one of the same
//! issuer, or when its issuer is new (which then takes over, and the old
//! issuer is retired for this upload).
//!
//! # What this does not close
//! The file store checks the token and makes the change inside one `flock`
//! critical section, so a stale holder can never write after its successor.
//! S3 has no such section: the record is raised with a conditional PUT
//! (`If-Match` on its ETag, `If-None-Match: *` when new), which makes two
//! raises exclusive where the server honours those headers, but the part
//! uploads that follow are separate requests no record can guard. A holder
//! that passes the check and then pauses (GC, a frozen VM) can still land a
//! part after its successor's check. Checking again before each part (a
//! read-only [`check`]) shrinks that window from "a whole paused request"
//! to "the parts already in flight"; it does not close it. docs/s3.md says
//! which servers honour the headers.

use aws_sdk_s3::primitives::ByteStream;
use tusd_core::fence_record::{admit as admit_token, FenceRecord as Record};
use tusd_core::{FencingToken, StoreError};

use crate::error::{io, is_precondition_failed};
use crate::keys::UploadKeys;
use crate::Inner;

/// How often a raise is retried when another one raced it.
const ATTEMPTS: usize = 5;

/// Admits `token` for a change to the upload, raising the record when the
/// token is newer; `Fenced` when it is stale. No token: nothing checked.
pub(crate) async fn admit(
    inner: &Inner,
    keys: &UploadKeys,
    token: Option<&FencingToken>,
) -> Result<(), StoreError> {
    let Some(token) = token else {
        return Ok(());
    };
    for _ in 0..ATTEMPTS {
        let (record, etag) = read(inner, keys).await?;
        let Some(new) = admit_token(record.as_ref(), token).map_err(StoreError::Fenced)? else {
            return Ok(());
        };
        let json = serde_json::to_vec(&new).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let put = inner
            .client
            .put_object()
            .bucket(&inner.bucket)
            .key(&keys.fence)
            .body(ByteStream::from(json));
        let put = match etag {
            Some(etag) => put.if_match(etag),
            None => put.if_none_match("*"),
        };
        match put.send().await {
            Ok(_) => return Ok(()),
            Err(e) if is_precondition_failed(&e) => continue,
            Err(e) => return Err(io("PutObject", &keys.fence, e)),
        }
    }
    Err(StoreError::Fenced(format!(
        "the fencing record {} kept changing under token {token}",
        keys.fence
    )))
}

/// Refuses `token` (`Fenced`) when the record names a newer holder; reads
/// only. A write checks again before each part it sends: a holder paused
/// after its first check, whose lock passed to another node meanwhile, then
/// stops at its next part instead of sending every part of its body.
pub(crate) async fn check(
    inner: &Inner,
    keys: &UploadKeys,
    token: Option<&FencingToken>,
) -> Result<(), StoreError> {
    let Some(token) = token else {
        return Ok(());
    };
    let (record, _) = read(inner, keys).await?;
    admit_token(record.as_ref(), token).map_err(StoreError::Fenced)?;
    Ok(())
}

/// The record and its ETag; an unreadable record counts as none, as in the
/// file store (refusing every holder would lock the upload out for good).
async fn read(
    inner: &Inner,
    keys: &UploadKeys,
) -> Result<(Option<Record>, Option<String>), StoreError> {
    let Some(got) = crate::write::get_small(inner, &keys.fence).await? else {
        return Ok((None, None));
    };
    let (body, etag) = (got.bytes, got.etag);
    match serde_json::from_slice(&body) {
        Ok(record) => Ok((Some(record), etag)),
        Err(e) => {
            tracing::warn!(key = %keys.fence, error = %e, "unreadable fencing record, treated as absent");
            Ok((None, etag))
        }
    }
}

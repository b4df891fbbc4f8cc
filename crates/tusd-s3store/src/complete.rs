//! Completing an upload's multipart upload: what `finish_upload` does, and
//! what reading a complete upload does first if nobody has yet.
//!
//! Completion lists the non-empty parts (see `write` for why some may be
//! empty). A `.part` object still there (an upload whose length was declared
//! after its last bytes arrived) is first sent as the last part. An upload
//! of no bytes is put as an empty object instead. Completing is
//! idempotent: a multipart upload S3 no longer knows, with the object
//! present, was completed already (by another request or server).

use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use tusd_core::StoreError;

use crate::error::{io, is_missing, is_no_such_upload};
use crate::keys::UploadKeys;
use crate::part::upload_part;
use crate::state::{Multipart, Part, UploadState};
use crate::write::{delete, download_into, temp_file};
use crate::Inner;

/// Completes the multipart upload of a complete upload (nothing when it is
/// completed already).
pub(crate) async fn complete(
    inner: &Inner,
    keys: &UploadKeys,
    state: &UploadState,
) -> Result<(), StoreError> {
    let Multipart::Open(parts) = &state.multipart else {
        return Ok(());
    };
    let mut parts: Vec<Part> = parts.iter().filter(|p| p.size > 0).cloned().collect();
    if state.tail > 0 {
        let temp = temp_file(inner)?;
        let mut file = tokio::fs::File::from_std(temp.reopen()?);
        let len = download_into(inner, &keys.part, &mut file).await?;
        delete(inner, &keys.part).await?;
        let part = upload_part(
            inner,
            &keys.object,
            &keys.multipart_id,
            state.next_part_number(),
            temp.path(),
            len,
            None,
        )
        .await?;
        parts.push(part);
    }
    if parts.is_empty() {
        return complete_empty(inner, keys).await;
    }
    complete_with(inner, keys, &parts).await
}

/// Finishes an upload of no bytes: S3 needs a part to complete a multipart
/// upload and Garage refuses an empty one, so the empty object is put
/// directly and the multipart upload aborted (which reads as completed).
pub(crate) async fn complete_empty(inner: &Inner, keys: &UploadKeys) -> Result<(), StoreError> {
    inner
        .client
        .put_object()
        .bucket(&inner.bucket)
        .key(&keys.object)
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b""))
        .send()
        .await
        .map_err(|e| io("PutObject", &keys.object, e))?;
    abort(inner, &keys.object, &keys.multipart_id).await
}

/// Aborts a multipart upload; one S3 no longer knows is fine.
pub(crate) async fn abort(
    inner: &Inner,
    object: &str,
    multipart_id: &str,
) -> Result<(), StoreError> {
    match inner
        .client
        .abort_multipart_upload()
        .bucket(&inner.bucket)
        .key(object)
        .upload_id(multipart_id)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_missing(&e) => Ok(()),
        Err(e) => Err(io("AbortMultipartUpload", object, e)),
    }
}

/// Completes the multipart upload with exactly `parts`, in order.
pub(crate) async fn complete_with(
    inner: &Inner,
    keys: &UploadKeys,
    parts: &[Part],
) -> Result<(), StoreError> {
    let completed = CompletedMultipartUpload::builder()
        .set_parts(Some(
            parts
                .iter()
                .map(|p| {
                    CompletedPart::builder()
                        .part_number(p.number)
                        .e_tag(&p.etag)
                        .build()
                })
                .collect(),
        ))
        .build();
    let result = inner
        .client
        .complete_multipart_upload()
        .bucket(&inner.bucket)
        .key(&keys.object)
        .upload_id(&keys.multipart_id)
        .multipart_upload(completed)
        .send()
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_no_such_upload(&e) && object_exists(inner, &keys.object).await? => Ok(()),
        Err(e) => Err(io("CompleteMultipartUpload", &keys.object, e)),
    }
}

pub(crate) async fn object_exists(inner: &Inner, key: &str) -> Result<bool, StoreError> {
    match inner
        .client
        .head_object()
        .bucket(&inner.bucket)
        .key(key)
        .send()
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if is_missing(&e) => Ok(false),
        Err(e) => Err(io("HeadObject", key, e)),
    }
}

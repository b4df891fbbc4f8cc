//! An upload's state as S3 holds it, read fresh on every call (the store
//! keeps nothing in memory, so any number of servers share the bucket).
//!
//! The offset is not recorded anywhere: it is the sum of the sizes of the
//! multipart upload's parts (ListParts) plus the size of the `.part` object,
//! as tusd computes it, so it can never disagree with the bytes stored. A
//! multipart upload S3 no longer knows (completed) means every byte is
//! stored.

use std::time::SystemTime;

use aws_sdk_s3::primitives::ByteStream;
use tusd_core::{StoreError, UploadInfo};

use crate::error::{io, is_missing, is_no_such_upload};
use crate::keys::UploadKeys;
use crate::Inner;

/// One part of an open multipart upload.
#[derive(Clone, Debug)]
pub(crate) struct Part {
    pub(crate) number: i32,
    pub(crate) size: u64,
    pub(crate) etag: String,
}

/// Whether the multipart upload is still open, and its parts if so.
#[derive(Clone, Debug)]
pub(crate) enum Multipart {
    Open(Vec<Part>),
    /// S3 no longer knows it: completed (or aborted by a concatenation
    /// that wrote the object another way).
    Completed,
}

/// What an upload is, read from its objects.
#[derive(Clone, Debug)]
pub(crate) struct UploadState {
    /// With `offset` and `modified` filled in.
    pub(crate) info: UploadInfo,
    pub(crate) multipart: Multipart,
    /// The size of the `.part` object (0 when there is none).
    pub(crate) tail: u64,
}

impl UploadState {
    /// The part number after the highest one used so far.
    pub(crate) fn next_part_number(&self) -> i32 {
        match &self.multipart {
            Multipart::Open(parts) => parts.iter().map(|p| p.number).max().unwrap_or(0) + 1,
            Multipart::Completed => 1,
        }
    }

    /// Bytes in parts (not in the `.part` object).
    pub(crate) fn bytes_in_parts(&self) -> u64 {
        match &self.multipart {
            Multipart::Open(parts) => parts.iter().map(|p| p.size).sum(),
            Multipart::Completed => self.info.size,
        }
    }
}

/// Reads the `.info`, the parts and the `.part` object's size at once.
/// `NotFound` when the `.info` is missing or names another id (a forged
/// multipart upload id must not make an upload look finished).
pub(crate) async fn load(inner: &Inner, keys: &UploadKeys) -> Result<UploadState, StoreError> {
    let (info, parts, tail) = tokio::join!(
        read_info(inner, keys),
        list_parts(inner, keys),
        head_tail(inner, keys)
    );
    let (mut info, info_modified) = info?;
    if info.id != keys.id.as_str() {
        return Err(StoreError::NotFound);
    }
    let (tail, tail_modified) = tail?;
    let (multipart, parts_modified) = match parts? {
        Some((parts, modified)) => (Multipart::Open(parts), modified),
        None => (Multipart::Completed, None),
    };
    info.modified = [info_modified, parts_modified, tail_modified]
        .into_iter()
        .flatten()
        .max();
    let mut state = UploadState {
        info,
        multipart,
        tail,
    };
    state.info.offset = match state.multipart {
        Multipart::Completed => state.info.size,
        Multipart::Open(_) => state.bytes_in_parts() + tail,
    };
    Ok(state)
}

async fn read_info(
    inner: &Inner,
    keys: &UploadKeys,
) -> Result<(UploadInfo, Option<SystemTime>), StoreError> {
    let got = crate::write::get_small(inner, &keys.info)
        .await?
        .ok_or(StoreError::NotFound)?;
    let (body, modified) = (got.bytes, got.modified);
    let info: UploadInfo = serde_json::from_slice(&body)
        .map_err(|e| StoreError::Corrupt(format!("{}: {e}", keys.info)))?;
    Ok((info, modified))
}

/// Replaces the `.info` object. S3 replaces an object atomically, so a
/// reader sees the old or the new state, never half of one.
pub(crate) async fn write_info(
    inner: &Inner,
    keys: &UploadKeys,
    info: &UploadInfo,
) -> Result<(), StoreError> {
    let json = serde_json::to_vec(info).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    inner
        .client
        .put_object()
        .bucket(&inner.bucket)
        .key(&keys.info)
        .content_type("application/json")
        .body(ByteStream::from(json))
        .send()
        .await
        .map_err(|e| io("PutObject", &keys.info, e))?;
    Ok(())
}

/// Every part of the multipart upload, or `None` when S3 no longer knows it.
pub(crate) async fn list_parts(
    inner: &Inner,
    keys: &UploadKeys,
) -> Result<Option<(Vec<Part>, Option<SystemTime>)>, StoreError> {
    let mut parts = Vec::new();
    let mut modified = None;
    let mut marker: Option<String> = None;
    loop {
        let listed = inner
            .client
            .list_parts()
            .bucket(&inner.bucket)
            .key(&keys.object)
            .upload_id(&keys.multipart_id)
            .set_part_number_marker(marker.take())
            .send()
            .await;
        let listed = match listed {
            Ok(listed) => listed,
            Err(e) if is_no_such_upload(&e) => return Ok(None),
            Err(e) => return Err(io("ListParts", &keys.object, e)),
        };
        for part in listed.parts() {
            let time = part
                .last_modified()
                .and_then(|t| SystemTime::try_from(*t).ok());
            modified = modified.max(time);
            parts.push(Part {
                number: part.part_number().unwrap_or(0),
                size: part.size().unwrap_or(0).max(0) as u64,
                etag: part.e_tag().unwrap_or_default().to_owned(),
            });
        }
        match listed.next_part_number_marker() {
            Some(next) if listed.is_truncated() == Some(true) => marker = Some(next.to_owned()),
            _ => break,
        }
    }
    parts.sort_by_key(|p| p.number);
    Ok(Some((parts, modified)))
}

async fn head_tail(
    inner: &Inner,
    keys: &UploadKeys,
) -> Result<(u64, Option<SystemTime>), StoreError> {
    match inner
        .client
        .head_object()
        .bucket(&inner.bucket)
        .key(&keys.part)
        .send()
        .await
    {
        Ok(head) => Ok((
            head.content_length().unwrap_or(0).max(0) as u64,
            head.last_modified()
                .and_then(|t| SystemTime::try_from(*t).ok()),
        )),
        Err(e) if is_missing(&e) => Ok((0, None)),
        Err(e) => Err(io("HeadObject", &keys.part, e)),
    }
}

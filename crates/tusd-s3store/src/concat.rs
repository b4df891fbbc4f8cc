//! Concatenation on S3: the final upload's multipart upload is filled from
//! the partial uploads' objects and completed.
//!
//! As in tusd: when every partial is at least S3's minimum part size, each
//! becomes one or more parts of the final upload by UploadPartCopy, inside
//! S3, without a byte passing through this server (a partial over 5 GiB is
//! copied in equal ranges of at most 5 GiB). Otherwise a part would be too
//! small, so the partials are downloaded to a local temporary file and sent
//! again as parts of the configured size. Unlike tusd, which writes the
//! small case with one PutObject (at most 5 GiB) and aborts the multipart
//! upload, both ways finish through the final upload's own multipart
//! upload, so the layout is the same whichever way was taken.
//!
//! The final `.info` gets the total size first; a concatenation that fails
//! halfway leaves an open multipart upload with an offset below the size,
//! which the handler's next request concatenates again from the start (the
//! part numbers are the same each time and completion lists exactly the
//! parts of the attempt that completes).

use tokio::io::AsyncWriteExt;
use tusd_core::{StoreError, UploadId};

use crate::complete::{complete, complete_empty, complete_with};
use crate::error::io;
use crate::keys::UploadKeys;
use crate::options::{MAX_PART_SIZE, MIN_PART_SIZE};
use crate::part::upload_part_at;
use crate::read::get_range;
use crate::state::{load, write_info, Multipart, Part};
use crate::write::temp_file;
use crate::Inner;

pub(crate) async fn concat(
    inner: &Inner,
    keys: &UploadKeys,
    partials: &[UploadId],
) -> Result<(), StoreError> {
    let state = load(inner, keys).await?;
    if let Multipart::Completed = state.multipart {
        return Ok(());
    }
    let mut sources = Vec::with_capacity(partials.len());
    for id in partials {
        let keys = UploadKeys::new(&inner.prefixes, id)?;
        let partial = load(inner, &keys).await?;
        if !partial.info.is_complete() {
            return Err(StoreError::Io(std::io::Error::other(format!(
                "partial upload {id} is not complete"
            ))));
        }
        // Its object must exist to be copied or read.
        complete(inner, &keys, &partial).await?;
        sources.push((keys, partial.info.size));
    }
    let total: u64 = sources.iter().map(|(_, size)| size).sum();
    let mut info = state.info.clone();
    info.size = total;
    info.size_is_deferred = false;
    info.offset = 0;
    info.modified = None;
    write_info(inner, keys, &info).await?;

    let parts = if sources.iter().all(|(_, size)| *size >= MIN_PART_SIZE) {
        copy_parts(inner, keys, &sources).await?
    } else {
        download_and_send(inner, keys, &sources, total).await?
    };
    if parts.is_empty() {
        return complete_empty(inner, keys).await;
    }
    complete_with(inner, keys, &parts).await
}

/// One or more UploadPartCopy per partial, inside S3.
async fn copy_parts(
    inner: &Inner,
    keys: &UploadKeys,
    sources: &[(UploadKeys, u64)],
) -> Result<Vec<Part>, StoreError> {
    let mut jobs = Vec::new();
    let mut number = 1;
    for (source, size) in sources {
        let pieces = size.div_ceil(MAX_PART_SIZE).max(1);
        let piece = size.div_ceil(pieces);
        let mut start = 0;
        while start < *size {
            let end = (start + piece).min(*size);
            jobs.push((number, source.object.clone(), start, end));
            number += 1;
            start = end;
        }
    }
    let copies = jobs
        .into_iter()
        .map(|(number, source, start, end)| async move {
            let _slot = inner
                .upload_slots
                .acquire()
                .await
                .expect("the semaphore is never closed");
            let copied = inner
                .client
                .upload_part_copy()
                .bucket(&inner.bucket)
                .key(&keys.object)
                .upload_id(&keys.multipart_id)
                .part_number(number)
                .copy_source(format!("{}/{}", inner.bucket, source))
                .copy_source_range(format!("bytes={start}-{}", end - 1))
                .send()
                .await
                .map_err(|e| io("UploadPartCopy", &source, e))?;
            let etag = copied
                .copy_part_result()
                .and_then(|r| r.e_tag())
                .unwrap_or_default()
                .to_owned();
            Ok::<Part, StoreError>(Part {
                number,
                size: end - start,
                etag,
            })
        });
    futures::future::try_join_all(copies).await
}

/// The partials' bytes through one local temporary file, sent again in
/// parts of the configured size (the last may be smaller), each streamed
/// from its range of the file.
async fn download_and_send(
    inner: &Inner,
    keys: &UploadKeys,
    sources: &[(UploadKeys, u64)],
    total: u64,
) -> Result<Vec<Part>, StoreError> {
    let temp = temp_file(inner)?;
    let mut file = tokio::fs::File::from_std(temp.reopen()?);
    for (source, size) in sources {
        if *size == 0 {
            continue;
        }
        let mut reader = get_range(inner, &source.object, 0, *size).await?;
        let copied = tokio::io::copy(&mut reader, &mut file).await?;
        if copied != *size {
            return Err(StoreError::Io(std::io::Error::other(format!(
                "{} held {copied} bytes, its upload {size}",
                source.object
            ))));
        }
    }
    file.flush().await?;
    drop(file);
    let part_size = inner.options.part_size_for(Some(total));
    let mut parts = Vec::new();
    let mut start = 0;
    let mut number = 1;
    while start < total {
        let len = part_size.min(total - start);
        parts.push(
            upload_part_at(
                inner,
                &keys.object,
                &keys.multipart_id,
                number,
                temp.path(),
                start,
                len,
                None,
            )
            .await?,
        );
        number += 1;
        start += len;
    }
    Ok(parts)
}

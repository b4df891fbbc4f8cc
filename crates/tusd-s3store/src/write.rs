//! `write_chunk` on S3: the request body is cut into parts on local disk,
//! and each full part is sent with UploadPart while the next one fills.
//!
//! Memory per upload stays bounded whatever the part size: every chunk of
//! the body goes to a temporary file as it arrives, and a part is sent
//! streamed from its file.
//!
//! The CPU a byte costs on its way is what limits throughput on a small
//! machine, so the path is kept short (see docs/s3.md, Throughput): chunks
//! that are already received are written to the part file together, on the
//! blocking pool, while the next ones arrive (`PartWriter`), and the part's
//! CRC32 is computed there as the bytes are written, then sent as the
//! part's `x-amz-checksum-crc32` header. S3 checks it against the bytes it
//! receives, as it would the SDK's own checksum, but the SDK then neither
//! reads the part a second time to compute one nor frames the body as
//! `aws-chunked` to carry it as a trailer; and the check now also covers the
//! bytes' round trip through the local disk. At most `max_buffered_parts` parts of one upload
//! wait on disk or are being sent; when that many are, the body is not read
//! further (backpressure to the client). At most `concurrent_part_uploads`
//! parts are sent at once by the whole store.
//!
//! The piece left at the end of a body is sent as a part when it is at
//! least S3's minimum part size or the upload's last piece; otherwise it is
//! kept in the `.part` object, and the next write starts its first part
//! with it. As in tusd, the `.part` object is deleted *before* the part
//! that takes its bytes is sent: if the process dies in between, those
//! bytes are lost (the offset goes back and the client resends them),
//! whereas the other order could count them twice.
//!
//! A part that fails after later ones were stored would leave a hole the
//! offset (a plain sum) cannot see. Its file is kept and it is sent again a
//! few times; if it still fails, the later parts are overwritten with empty
//! bodies, so the sum is again the bytes before the hole, and completion
//! lists only non-empty parts. AWS accepts empty parts; Garage refuses
//! them, and there the hole stays (logged as an error; see docs/s3.md).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use base64::Engine as _;
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use tempfile::NamedTempFile;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tusd_core::{ChunkStream, FencingToken, StoreError};

use crate::error::io;
use crate::fence;
use crate::keys::UploadKeys;
use crate::options::MIN_PART_SIZE;
use crate::part::{upload_part, wait_until_answering};
use crate::state::{Multipart, Part, UploadState};
use crate::Inner;

/// Pauses before each extra round of attempts at a part that failed (after
/// `part`'s own attempts), made once the write's other parts are done.
const RETRY_PAUSES: [std::time::Duration; 3] = [
    std::time::Duration::from_millis(500),
    std::time::Duration::from_secs(2),
    std::time::Duration::from_secs(5),
];

/// How much of a part file the SDK reads into memory at a time: each read
/// is one trip to the blocking pool.
const READ_BUFFER: usize = 1024 * 1024;

/// Received bytes gathered for one write to a part file, at most: one trip
/// to the blocking pool per this many bytes instead of one per body chunk
/// (64 KiB or less), while no more bytes than this wait in memory.
const WRITE_BATCH: usize = 1024 * 1024;

/// Appends `chunk` to an upload whose state is `state`, which the caller
/// read under the upload's lock and checked against the expected offset.
pub(crate) async fn write(
    inner: &Arc<Inner>,
    keys: &UploadKeys,
    state: UploadState,
    fence: Option<&FencingToken>,
    mut chunk: ChunkStream,
) -> Result<u64, StoreError> {
    // Nothing is touched until the body has a byte: an empty PATCH changes
    // nothing, not even the `.part` object.
    let first = loop {
        match chunk.next().await {
            None => return Ok(0),
            Some(Err(e)) => return Err(StoreError::Io(e)),
            Some(Ok(bytes)) if bytes.is_empty() => continue,
            Some(Ok(bytes)) => break bytes,
        }
    };
    if let Multipart::Completed = state.multipart {
        return Err(StoreError::Io(std::io::Error::other(
            "the upload is finished: its multipart upload is completed",
        )));
    }
    // The S3 calls are boxed, here and below, so that their large futures
    // (the SDK's, tens of KiB) take memory only while they run, not for as
    // long as the body trickles in: an async fn's frame is as large as the
    // largest state it awaits in.
    Box::pin(fence::admit(inner, keys, fence)).await?;

    let size = (!state.info.size_is_deferred).then_some(state.info.size);
    let mut staging = Staging::new(inner, keys, &state, size, fence)?;
    if state.tail > 0 {
        Box::pin(staging.start_with_tail()).await?;
    }
    let mut received: u64 = 0;
    let mut stream_error = None;
    let mut next = Some(Ok(first));
    while let Some(item) = next {
        match item {
            Ok(bytes) => {
                received += bytes.len() as u64;
                match staging.push(bytes).await {
                    Ok(()) => {}
                    // A newer holder changed the upload: store nothing more.
                    // The parts in flight passed the check before it, and
                    // are waited for rather than cancelled: a cancelled
                    // request whose bytes the server already holds can
                    // still land after the write returns, and change the
                    // offset the newer holder has read (seen in a test).
                    Err(e @ StoreError::Fenced(_)) => {
                        Box::pin(staging.settle()).await;
                        return Err(e);
                    }
                    Err(e) => {
                        stream_error = Some(e);
                        break;
                    }
                }
            }
            Err(e) => {
                stream_error = Some(StoreError::Io(e));
                break;
            }
        }
        if staging.has_failed() {
            break;
        }
        // What has arrived is written while the body waits for more; a
        // trickling client's bytes do not sit in memory.
        next = match chunk.next().now_or_never() {
            Some(item) => item,
            None => {
                if let Err(e) = staging.write_gathered().await {
                    stream_error = Some(e);
                    break;
                }
                chunk.next().await
            }
        };
    }
    Box::pin(staging.finish()).await?;
    match stream_error {
        Some(e) => Err(e),
        None => Ok(received),
    }
}

/// The parts of one write: the file filling now, the parts being sent.
struct Staging<'a> {
    inner: &'a Arc<Inner>,
    keys: &'a UploadKeys,
    /// Checked again before each part: see [`fence::check`].
    fence: Option<&'a FencingToken>,
    part_size: u64,
    size: Option<u64>,
    /// Bytes stored in parts before this write, plus those sealed into
    /// parts by it so far.
    before_current: u64,
    current: Option<PartFile>,
    next_number: i32,
    /// The `.part` object's bytes open the current file and the object
    /// must go before they are sent in a part.
    tail_to_delete: bool,
    buffered: Arc<Semaphore>,
    uploads: JoinSet<Result<Part, Failed>>,
    done: Vec<Part>,
    failed: Vec<Failed>,
}

/// A part whose upload failed, with its file, to be sent again.
struct Failed {
    number: i32,
    error: StoreError,
    file: Option<PartFile>,
}

struct PartFile {
    temp: NamedTempFile,
    writer: PartWriter,
    len: u64,
    /// The CRC32 of all `len` bytes (S3's base64), once the file is
    /// complete; `None` with content hashes disabled.
    checksum: Option<String>,
}

/// A part file and the CRC32 of what it holds so far (`None`: no content
/// hashes).
type FileAndCrc = (std::fs::File, Option<crc_fast::Digest>);

/// Writes one part's file on the blocking pool a batch at a time, the
/// batch before the one gathering now still in flight, and computes the
/// part's CRC32 there, as the bytes go to disk.
struct PartWriter {
    /// The file and the CRC so far, when no batch is being written.
    idle: Option<FileAndCrc>,
    busy: Option<JoinHandle<std::io::Result<FileAndCrc>>>,
    batch: Vec<Bytes>,
    batched: usize,
}

impl PartWriter {
    fn new(file: std::fs::File, with_checksum: bool) -> PartWriter {
        let crc =
            with_checksum.then(|| crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32IsoHdlc));
        PartWriter {
            idle: Some((file, crc)),
            busy: None,
            batch: Vec::new(),
            batched: 0,
        }
    }

    async fn push(&mut self, bytes: Bytes) -> std::io::Result<()> {
        self.batched += bytes.len();
        self.batch.push(bytes);
        if self.batched >= WRITE_BATCH {
            self.write_batch().await?;
        }
        Ok(())
    }

    /// Hands the gathered bytes to the blocking pool, once the batch before
    /// is written.
    async fn write_batch(&mut self) -> std::io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let (mut file, mut crc) = self.settle().await?;
        let batch = std::mem::take(&mut self.batch);
        self.batched = 0;
        self.busy = Some(tokio::task::spawn_blocking(move || {
            for bytes in &batch {
                file.write_all(bytes)?;
                if let Some(crc) = crc.as_mut() {
                    crc.update(bytes);
                }
            }
            Ok((file, crc))
        }));
        Ok(())
    }

    /// Waits for the batch in flight; the file and CRC are then idle.
    async fn settle(&mut self) -> std::io::Result<FileAndCrc> {
        match (self.busy.take(), self.idle.take()) {
            (Some(busy), _) => busy.await.map_err(std::io::Error::other)?,
            (None, Some(idle)) => Ok(idle),
            (None, None) => Err(std::io::Error::other(
                "the part file was lost to an earlier error",
            )),
        }
    }

    /// Writes everything pushed and waits for it; returns the CRC32 of the
    /// whole file as S3 writes it (base64 of the big-endian value).
    async fn complete(&mut self) -> std::io::Result<Option<String>> {
        self.write_batch().await?;
        let (file, crc) = self.settle().await?;
        let checksum = crc.map(|crc| {
            let value = crc.finalize() as u32;
            base64::engine::general_purpose::STANDARD.encode(value.to_be_bytes())
        });
        self.idle = Some((file, crc));
        Ok(checksum)
    }
}

impl<'a> Staging<'a> {
    fn new(
        inner: &'a Arc<Inner>,
        keys: &'a UploadKeys,
        state: &UploadState,
        size: Option<u64>,
        fence: Option<&'a FencingToken>,
    ) -> Result<Staging<'a>, StoreError> {
        Ok(Staging {
            inner,
            keys,
            fence,
            part_size: inner.options.part_size_for(size),
            size,
            before_current: state.bytes_in_parts(),
            current: None,
            next_number: state.next_part_number(),
            tail_to_delete: false,
            buffered: Arc::new(Semaphore::new(inner.options.max_buffered_parts.max(1))),
            uploads: JoinSet::new(),
            done: Vec::new(),
            failed: Vec::new(),
        })
    }

    /// Opens the first part file with the `.part` object's bytes.
    async fn start_with_tail(&mut self) -> Result<(), StoreError> {
        let mut file = self.new_file()?;
        let key = &self.keys.part;
        let got = self
            .inner
            .client
            .get_object()
            .bucket(&self.inner.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| io("GetObject", key, e))?;
        let mut body = got.body;
        while let Some(bytes) = body
            .try_next()
            .await
            .map_err(|e| StoreError::Io(std::io::Error::other(e)))?
        {
            file.len += bytes.len() as u64;
            file.writer.push(bytes).await?;
        }
        self.current = Some(file);
        self.tail_to_delete = true;
        Ok(())
    }

    fn new_file(&self) -> Result<PartFile, StoreError> {
        let temp = temp_file(self.inner)?;
        let writer = PartWriter::new(temp.reopen()?, !self.inner.options.disable_content_hashes);
        Ok(PartFile {
            temp,
            writer,
            len: 0,
            checksum: None,
        })
    }

    /// Starts writing the bytes gathered for the current part file.
    async fn write_gathered(&mut self) -> Result<(), StoreError> {
        if let Some(current) = self.current.as_mut() {
            current.writer.write_batch().await?;
        }
        Ok(())
    }

    async fn push(&mut self, mut bytes: Bytes) -> Result<(), StoreError> {
        while !bytes.is_empty() {
            if self.current.is_none() {
                self.current = Some(self.new_file()?);
            }
            let current = self.current.as_mut().expect("just set");
            let room = (self.part_size - current.len).min(bytes.len() as u64) as usize;
            let piece = bytes.split_to(room);
            current.len += piece.len() as u64;
            current.writer.push(piece).await?;
            if current.len == self.part_size {
                self.seal().await?;
            }
        }
        Ok(())
    }

    /// Sends the current file as the next part, in the background, once
    /// fewer than `max_buffered_parts` parts of this write are pending.
    async fn seal(&mut self) -> Result<(), StoreError> {
        let Some(mut part) = self.current.take() else {
            return Ok(());
        };
        part.checksum = part.writer.complete().await?;
        Box::pin(fence::check(self.inner, self.keys, self.fence)).await?;
        Box::pin(self.delete_tail_if_taken()).await?;
        let permit = self
            .buffered
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let number = self.next_number;
        self.next_number += 1;
        self.before_current += part.len;
        let inner = self.inner.clone();
        let key = self.keys.object.clone();
        let multipart_id = self.keys.multipart_id.clone();
        self.uploads.spawn(async move {
            let result = upload_part(
                &inner,
                &key,
                &multipart_id,
                number,
                part.temp.path(),
                part.len,
                part.checksum.as_deref(),
            )
            .await;
            drop(permit);
            if let Err(error) = &result {
                tracing::warn!(%key, part = number, %error, "a part upload failed; it is sent again when the write ends");
            }
            result.map_err(|error| Failed {
                number,
                error,
                file: Some(part),
            })
        });
        self.collect_finished();
        Ok(())
    }

    fn collect_finished(&mut self) {
        while let Some(joined) = self.uploads.try_join_next() {
            self.record(joined);
        }
    }

    fn record(&mut self, joined: Result<Result<Part, Failed>, tokio::task::JoinError>) {
        match joined {
            Ok(Ok(part)) => self.done.push(part),
            Ok(Err(failed)) => self.failed.push(failed),
            Err(e) => self.failed.push(Failed {
                number: i32::MAX,
                error: StoreError::Io(std::io::Error::other(e)),
                file: None,
            }),
        }
    }

    /// Waits until every part this write sent has been answered (or has
    /// failed), sending nothing more.
    async fn settle(&mut self) {
        while let Some(joined) = self.uploads.join_next().await {
            self.record(joined);
        }
    }

    fn has_failed(&self) -> bool {
        !self.failed.is_empty()
    }

    /// Sends the failed parts again from their files, a few times with a
    /// pause: a part stored after a failed one makes a hole unless the
    /// failed one gets in. Returns the first part that still failed.
    async fn retry_failed(&mut self) -> Option<Failed> {
        self.failed.sort_by_key(|f| f.number);
        let mut still = None;
        for mut failed in std::mem::take(&mut self.failed) {
            if still.is_some() {
                continue; // the body is cut at the first hole anyway
            }
            let Some(file) = failed.file.take() else {
                still = Some(failed);
                continue;
            };
            let mut retried = None;
            for pause in RETRY_PAUSES {
                // The last attempt may have gone unanswered (see `part`).
                wait_until_answering(self.inner).await;
                tokio::time::sleep(pause).await;
                let sent = upload_part(
                    self.inner,
                    &self.keys.object,
                    &self.keys.multipart_id,
                    failed.number,
                    file.temp.path(),
                    file.len,
                    file.checksum.as_deref(),
                )
                .await;
                match sent {
                    Ok(part) => {
                        retried = Some(part);
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(key = %self.keys.object, part = failed.number, error = %e, "a part upload failed again");
                        failed.error = e
                    }
                }
            }
            match retried {
                Some(part) => self.done.push(part),
                None => still = Some(failed),
            }
        }
        still
    }

    async fn delete_tail_if_taken(&mut self) -> Result<(), StoreError> {
        if std::mem::take(&mut self.tail_to_delete) {
            delete(self.inner, &self.keys.part).await?;
        }
        Ok(())
    }

    /// Waits for every part, then stores the piece left over: as a part
    /// when it is big enough or the upload's last, else as `.part`.
    async fn finish(mut self) -> Result<(), StoreError> {
        self.settle().await;
        if self.has_failed() {
            if let Some(failed) = self.retry_failed().await {
                self.empty_parts_after(failed.number).await;
                return Err(failed.error);
            }
        }
        let Some(mut rest) = self.current.take() else {
            return Ok(());
        };
        let checksum = rest.writer.complete().await?;
        fence::check(self.inner, self.keys, self.fence).await?;
        let last = self.size == Some(self.before_current + rest.len);
        if rest.len >= MIN_PART_SIZE || last {
            self.delete_tail_if_taken().await?;
            let number = self.next_number;
            upload_part(
                self.inner,
                &self.keys.object,
                &self.keys.multipart_id,
                number,
                rest.temp.path(),
                rest.len,
                checksum.as_deref(),
            )
            .await?;
        } else {
            // Replaces the old `.part` (whose bytes open this file) at once.
            put_file(
                self.inner,
                &self.keys.part,
                rest.temp.path(),
                rest.len,
                checksum.as_deref(),
            )
            .await?;
        }
        Ok(())
    }

    /// Overwrites with empty bodies the parts stored after the one that
    /// failed, so the offset (the sum of part sizes) does not count bytes
    /// that sit after a hole. Best effort: a failure here is logged.
    async fn empty_parts_after(&self, failed: i32) {
        for part in self.done.iter().filter(|p| p.number > failed) {
            let emptied = self
                .inner
                .client
                .upload_part()
                .bucket(&self.inner.bucket)
                .key(&self.keys.object)
                .upload_id(&self.keys.multipart_id)
                .part_number(part.number)
                .body(ByteStream::from_static(b""))
                .send()
                .await;
            if let Err(e) = emptied {
                tracing::error!(
                    key = %self.keys.object,
                    part = part.number,
                    error = %aws_sdk_s3::error::DisplayErrorContext(e),
                    "could not empty a part stored after a failed one: the upload's offset now counts bytes after a hole"
                );
            }
        }
    }
}

/// A temporary file for a part, in the configured directory.
pub(crate) fn temp_file(inner: &Inner) -> Result<NamedTempFile, StoreError> {
    let builder = {
        let mut b = tempfile::Builder::new();
        b.prefix("tusd-s3-part-");
        b
    };
    let temp = match &inner.options.temp_dir {
        Some(dir) => builder.tempfile_in(dir)?,
        None => builder.tempfile()?,
    };
    Ok(temp)
}

/// Puts `len` bytes from `path` as the object `key`, with their CRC32 if
/// known.
pub(crate) async fn put_file(
    inner: &Inner,
    key: &str,
    path: &Path,
    len: u64,
    crc32: Option<&str>,
) -> Result<(), StoreError> {
    let body = file_body(path, 0, len).await?;
    inner
        .client
        .put_object()
        .bucket(&inner.bucket)
        .key(key)
        .content_length(len as i64)
        .set_checksum_crc32(crc32.map(str::to_owned))
        .body(body)
        .send()
        .await
        .map_err(|e| io("PutObject", key, e))?;
    Ok(())
}

pub(crate) async fn file_body(
    path: &Path,
    offset: u64,
    len: u64,
) -> Result<ByteStream, StoreError> {
    let path: PathBuf = path.to_owned();
    ByteStream::read_from()
        .path(path)
        .offset(offset)
        .length(aws_sdk_s3::primitives::Length::Exact(len))
        .buffer_size(READ_BUFFER)
        .build()
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e)))
}

/// A small object read whole (an `.info` or `.fence`).
pub(crate) struct SmallObject {
    pub(crate) bytes: Bytes,
    pub(crate) etag: Option<String>,
    pub(crate) modified: Option<std::time::SystemTime>,
}

/// Reads the object `key` whole; `None` when it does not exist.
pub(crate) async fn get_small(inner: &Inner, key: &str) -> Result<Option<SmallObject>, StoreError> {
    let got = match inner
        .client
        .get_object()
        .bucket(&inner.bucket)
        .key(key)
        .send()
        .await
    {
        Ok(got) => got,
        Err(e) if crate::error::is_missing(&e) => return Ok(None),
        Err(e) => return Err(io("GetObject", key, e)),
    };
    let etag = got.e_tag().map(str::to_owned);
    let modified = got
        .last_modified()
        .and_then(|t| std::time::SystemTime::try_from(*t).ok());
    let bytes = got
        .body
        .collect()
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e)))?
        .into_bytes();
    Ok(Some(SmallObject {
        bytes,
        etag,
        modified,
    }))
}

/// Copies the object `key` into `file`; returns its length.
pub(crate) async fn download_into(
    inner: &Inner,
    key: &str,
    file: &mut tokio::fs::File,
) -> Result<u64, StoreError> {
    let got = inner
        .client
        .get_object()
        .bucket(&inner.bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| io("GetObject", key, e))?;
    let mut reader = got.body.into_async_read();
    let copied = tokio::io::copy(&mut reader, file).await?;
    file.flush().await?;
    Ok(copied)
}

/// Deletes the object `key` (S3 answers success when it is missing).
pub(crate) async fn delete(inner: &Inner, key: &str) -> Result<(), StoreError> {
    inner
        .client
        .delete_object()
        .bucket(&inner.bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| io("DeleteObject", key, e))?;
    Ok(())
}

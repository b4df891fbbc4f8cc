//! Streaming a request body onto the end of an upload's data file.
//!
//! Four promises shape this module:
//! - **No received byte is lost.** The whole write runs in a task spawned on
//!   the runtime that owns the body stream and the file; the caller only
//!   awaits its `JoinHandle`. If the request's future is dropped midway, the
//!   task still writes everything the stream yields until the stream ends.
//!   When the stream ends in an error, the bytes before the error are
//!   written first and the error is returned after.
//! - **Bounded memory.** At most two batches are held: one being written
//!   (on the blocking pool, when writes go there; see [`crate::file_io`])
//!   while the next is gathered from the stream. A batch
//!   stops growing at [`BATCH_BYTES`] (or [`BATCH_CHUNKS`] chunks).
//! - **Plain-file speed.** Chunks are never copied: a batch is written with
//!   one vectored `write` of the chunks as received. A batch only takes
//!   chunks the stream has ready *now* (the first one after giving the
//!   connection one turn to read what the kernel already holds, so a small
//!   body is one write), so data is never held back waiting for the
//!   network; otherwise coalescing happens only when the disk is behind.
//!   There is no fsync per chunk (tusd does none either).
//! - **No write by a stale holder, none at a shifted position.** Each batch
//!   is written inside the upload's fenced critical section (see
//!   [`crate::fence`]), which re-checks the caller's fencing token and the
//!   data file's length just before the write.

use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use tokio::task::JoinHandle;
use tusd_core::{ChunkStream, FencingToken, StoreError};

use crate::blocking::join_error;
use crate::data_file::{self, Access};
use crate::fence::Fence;
use crate::file_io::FileIo;
use crate::paths::UploadPaths;

/// The most bytes a batch gathers before it is written.
pub(crate) const BATCH_BYTES: usize = 1 << 20;
/// The most chunks a batch gathers (the kernel takes at most 1024 per write).
pub(crate) const BATCH_CHUNKS: usize = 1024;
/// Below this many bytes, the first batch gives the connection a turn to
/// read more before it is written (see `next_batch`).
const COALESCE_BYTES: usize = 256 * 1024;

/// A batch write on the blocking pool; it hands the fence back for the next.
type BatchWrite = JoinHandle<(Fence, Result<u64, StoreError>)>;

/// Appends every byte `body` yields to the upload's data file, whose length
/// must be `offset`, under `token`, and returns how many bytes were appended.
pub(crate) async fn append(
    paths: UploadPaths,
    offset: u64,
    token: Option<&FencingToken>,
    body: ChunkStream,
    io: FileIo,
) -> Result<u64, StoreError> {
    let fence = Fence::new(paths.fence, token);
    tokio::spawn(append_owned(paths.data, offset, fence, body, io))
        .await
        .map_err(join_error)?
}

async fn append_owned(
    path: PathBuf,
    offset: u64,
    fence: Fence,
    mut body: ChunkStream,
    io: FileIo,
) -> Result<u64, StoreError> {
    // The first batch is gathered before the file is opened, so that opening
    // and writing it is one trip to the blocking pool (when writes go
    // there): a small upload's body usually arrives with its head.
    let (first, mut end) = next_batch(&mut body, true).await;
    let open_and_write = move || {
        let mut fence = fence;
        let file = open_at(&path, offset);
        let written = match &file {
            Ok(file) if !first.is_empty() => write_fenced(file, &mut fence, offset, &first),
            _ => Ok(0),
        };
        (file, fence, written)
    };
    let (file, returned, written) = match io {
        FileIo::Inline => open_and_write(),
        FileIo::BlockingPool => tokio::task::spawn_blocking(open_and_write)
            .await
            .map_err(join_error)?,
    };
    let file = file?;
    let mut appended = written?;
    let mut fence = Some(returned);
    let mut in_flight: Option<BatchWrite> = None;
    let end = loop {
        if let Some(end) = end.take() {
            break end;
        }
        let (batch, next_end) = next_batch(&mut body, false).await;
        end = next_end;
        if let Some(write) = in_flight.take() {
            let (returned, written) = write.await.map_err(join_error)?;
            fence = Some(returned);
            appended += written?;
        }
        if batch.is_empty() {
            continue;
        }
        let expected = offset + appended;
        let batch_fence = fence.as_mut().expect("returned by the last write");
        match io {
            FileIo::Inline => appended += write_fenced(&file, batch_fence, expected, &batch)?,
            FileIo::BlockingPool => {
                // Written while the next batch is gathered.
                let file = Arc::clone(&file);
                let mut batch_fence = fence.take().expect("returned by the last write");
                in_flight = Some(tokio::task::spawn_blocking(move || {
                    let written = write_fenced(&file, &mut batch_fence, expected, &batch);
                    (batch_fence, written)
                }));
            }
        }
    };
    if let Some(write) = in_flight {
        appended += write.await.map_err(join_error)?.1?;
    }
    end.map(|()| appended).map_err(StoreError::Io)
}

/// Opens the data file for appending after checking that it holds exactly
/// `offset` bytes, so a request that cannot be written fails before its
/// body is read. The check that counts is repeated for every batch.
fn open_at(path: &std::path::Path, offset: u64) -> Result<Arc<File>, StoreError> {
    let (file, metadata) = data_file::open_with_metadata(path, Access::Append)?;
    let len = metadata.len();
    if len != offset {
        return Err(StoreError::OffsetMoved {
            expected: offset,
            actual: len,
        });
    }
    Ok(Arc::new(file))
}

/// Writes `batch` inside the fenced critical section, where the file must
/// hold `expected` bytes. Appending mode then writes exactly there: every
/// writer of this store changes the file only inside the section.
fn write_fenced(
    file: &File,
    fence: &mut Fence,
    expected: u64,
    batch: &[Bytes],
) -> Result<u64, StoreError> {
    let _entered = fence.enter(file, Some(expected))?;
    Ok(write_batch(file, batch)?)
}

/// Waits for the next chunk, then takes whatever further chunks are ready
/// without waiting, up to the batch limits. The second value is `Some` once
/// the stream has ended, cleanly or with an error.
async fn next_batch(body: &mut ChunkStream, first: bool) -> (Vec<Bytes>, Option<io::Result<()>>) {
    let mut batch = Vec::new();
    let mut len = 0;
    let mut next = body.next().await;
    loop {
        match next {
            None => return (batch, Some(Ok(()))),
            Some(Err(e)) => return (batch, Some(Err(e))),
            Some(Ok(chunk)) if chunk.is_empty() => {}
            Some(Ok(chunk)) => {
                len += chunk.len();
                batch.push(chunk);
            }
        }
        if len >= BATCH_BYTES || batch.len() >= BATCH_CHUNKS {
            return (batch, None);
        }
        match body.next().now_or_never() {
            Some(ready) => next = ready,
            None if first && len < COALESCE_BYTES => {
                // The connection reads a body one chunk per demand (hyper
                // starts at 8 KiB and doubles), so a 64 KiB body already in
                // the socket would otherwise be four batches, each paying
                // for the lock, the checks and a wake-up. Giving the reader
                // one turn lets it hand over what the kernel holds; nothing
                // waits for the network: an empty turn ends the batch. Only
                // the first batch does this: a small upload is one batch,
                // and a long stream does not pay a turn per batch.
                tokio::task::yield_now().await;
                match body.next().now_or_never() {
                    Some(ready) => next = ready,
                    None => return (batch, None),
                }
            }
            None => return (batch, None),
        }
    }
}

/// Writes all of `batch` with as few vectored writes as the kernel allows.
fn write_batch(mut file: &File, batch: &[Bytes]) -> io::Result<u64> {
    let (mut first, mut skip) = (0, 0);
    while first < batch.len() {
        let slices: Vec<IoSlice<'_>> = std::iter::once(&batch[first][skip..])
            .chain(batch[first + 1..].iter().map(|chunk| &chunk[..]))
            .map(IoSlice::new)
            .collect();
        let mut n = match file.write_vectored(&slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        while n > 0 {
            let left = batch[first].len() - skip;
            if n < left {
                skip += n;
                break;
            }
            n -= left;
            first += 1;
            skip = 0;
        }
    }
    Ok(batch.iter().map(|chunk| chunk.len() as u64).sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;

    fn body(items: Vec<io::Result<&'static [u8]>>) -> ChunkStream {
        stream::iter(items.into_iter().map(|r| r.map(Bytes::from_static))).boxed()
    }

    #[tokio::test]
    async fn ready_chunks_are_coalesced_up_to_the_limit() {
        let chunk = Bytes::from(vec![7u8; BATCH_BYTES / 4]);
        let mut s: ChunkStream = stream::iter((0..6).map(move |_| Ok(chunk.clone()))).boxed();
        let (first, end) = next_batch(&mut s, false).await;
        assert_eq!(first.len(), 4);
        assert!(end.is_none());
        let (rest, end) = next_batch(&mut s, false).await;
        assert_eq!(rest.len(), 2);
        assert!(matches!(end, Some(Ok(()))));
    }

    #[tokio::test]
    async fn a_batch_does_not_wait_for_chunks_that_are_not_ready() {
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
        let mut s: ChunkStream = tokio_stream_from(rx);
        tx.send(Ok(Bytes::from_static(b"ab"))).await.unwrap();
        for first in [true, false] {
            let (batch, end) = next_batch(&mut s, first).await;
            assert_eq!(batch, [Bytes::from_static(b"ab")]);
            assert!(end.is_none());
            tx.send(Ok(Bytes::from_static(b"ab"))).await.unwrap();
        }
    }

    #[tokio::test]
    async fn the_first_batch_takes_what_the_reader_hands_over_in_one_turn() {
        for first in [true, false] {
            let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
            let mut s: ChunkStream = tokio_stream_from(rx);
            tx.send(Ok(Bytes::from_static(b"ab"))).await.unwrap();
            // A reader that runs only when this task lets it.
            tokio::spawn(async move { tx.send(Ok(Bytes::from_static(b"cd"))).await });
            let (batch, _) = next_batch(&mut s, first).await;
            let expected: &[&[u8]] = if first { &[b"ab", b"cd"] } else { &[b"ab"] };
            assert_eq!(batch, expected, "first batch: {first}");
        }
    }

    fn tokio_stream_from(mut rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>) -> ChunkStream {
        stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
    }

    #[tokio::test]
    async fn bytes_before_an_error_are_written_and_the_error_returned() {
        for io in BOTH {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("u");
            std::fs::write(&path, b"x").unwrap();
            let s = body(vec![
                Ok(b"ab"),
                Ok(b""),
                Ok(b"cd"),
                Err(io::Error::other("client gone")),
                Ok(b"never"),
            ]);
            let err = append(paths_of(&path), 1, None, s, io).await.unwrap_err();
            assert!(err.to_string().contains("client gone"));
            assert_eq!(std::fs::read(&path).unwrap(), b"xabcd");
        }
    }

    #[tokio::test]
    async fn a_wrong_offset_writes_nothing() {
        for io in BOTH {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("u");
            std::fs::write(&path, b"xyz").unwrap();
            assert!(matches!(
                append(paths_of(&path), 1, None, body(vec![Ok(b"ab")]), io).await,
                Err(StoreError::OffsetMoved {
                    expected: 1,
                    actual: 3
                })
            ));
            assert_eq!(std::fs::read(&path).unwrap(), b"xyz");
        }
    }

    #[tokio::test]
    async fn a_stale_token_writes_nothing_and_a_newer_one_writes() {
        for io in BOTH {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("u");
            std::fs::write(&path, b"").unwrap();
            let newer = FencingToken::new("etcd:1/tusd", 7);
            let older = FencingToken::new("etcd:1/tusd", 6);
            append(paths_of(&path), 0, Some(&newer), body(vec![Ok(b"ab")]), io)
                .await
                .unwrap();
            assert!(matches!(
                append(paths_of(&path), 2, Some(&older), body(vec![Ok(b"cd")]), io).await,
                Err(StoreError::Fenced(_))
            ));
            assert_eq!(std::fs::read(&path).unwrap(), b"ab");
        }
    }

    const BOTH: [FileIo; 2] = [FileIo::Inline, FileIo::BlockingPool];

    fn paths_of(data: &std::path::Path) -> UploadPaths {
        let id = tusd_core::UploadId::parse(data.file_name().unwrap().to_str().unwrap());
        UploadPaths::new(data.parent().unwrap(), &id.unwrap()).unwrap()
    }

    #[test]
    fn batches_with_more_chunks_than_one_write_takes_are_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u");
        let file = File::create(&path).unwrap();
        let batch: Vec<Bytes> = (0..3000u32)
            .map(|i| Bytes::from(i.to_le_bytes().to_vec()))
            .collect();
        assert_eq!(write_batch(&file, &batch).unwrap(), 12000);
        let expected: Vec<u8> = (0..3000u32).flat_map(|i| i.to_le_bytes()).collect();
        assert_eq!(std::fs::read(&path).unwrap(), expected);
    }
}

//! The conformance suite every data store runs: the [`DataStore`] contracts
//! and every optional capability the store registers with the composer.
//!
//! A store's test calls [`check_store`] with a function that makes a fresh
//! [`StoreComposer`] holding the store (as its `use_in` registers it) and
//! says whether the store fences; the suite decides from
//! [`StoreComposer::capabilities`] which capability checks apply, so a store
//! is held to exactly what it advertises:
//!
//! ```ignore
//! let dir = tempfile::tempdir().unwrap();
//! let mut n = 0;
//! let make = || {
//!     n += 1;
//!     let mut composer = StoreComposer::new();
//!     FileStore::new(dir.path().join(n.to_string())).unwrap().use_in(&mut composer);
//!     composer
//! };
//! check_store(make, StoreClaims { fencing: true }).await.assert_passed();
//! ```
//!
//! Each check uses only the store's interface, never its backing storage,
//! so the suite runs unchanged against any store.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{stream, StreamExt};
use tokio::io::AsyncReadExt;
use tusd_core::{
    ChunkStream, DataStore, FencingToken, NewUpload, StoreComposer, StoreError, UploadId,
    UploadInfo,
};

use crate::conformance::{ensure, fresh_id, CheckResult, Context, Report, Verdict};

/// How long one check may take before it counts as hanging.
const CHECK_LIMIT: Duration = Duration::from_secs(60);

/// What a store claims beyond the capabilities the composer records.
#[derive(Clone, Copy, Debug, Default)]
pub struct StoreClaims {
    /// The store refuses, with [`StoreError::Fenced`], a change whose fencing
    /// token is older (same issuer, lower value) than one that already
    /// changed the upload, and treats a new issuer as taking over for good.
    pub fencing: bool,
}

/// The store contracts, by the names a [`Report`] lists them under.
pub mod contracts {
    pub const CREATE_AND_GET_INFO: &str = "create_upload/get_info: a new upload's state reads back";
    pub const WRITE_AT_OFFSET: &str =
        "write_chunk: appends at the stored offset (and refresh_progress sees it)";
    pub const WRONG_OFFSET: &str = "write_chunk: a wrong offset is refused with OffsetMoved";
    pub const STREAM_ERROR: &str = "write_chunk: bytes before a stream error stay written";
    pub const READ_RANGE: &str = "read_range: reads back the requested bytes";
    pub const NOT_FOUND: &str = "unknown ids: NotFound, nothing created";
    pub const FINISH: &str = "finish_upload: callable on a complete upload, changes nothing";
    pub const TERMINATION: &str = "termination: a terminated upload is gone, others stay";
    pub const CONCATENATION: &str =
        "concatenation: the final upload holds the partials' bytes in order";
    pub const DEFER_LENGTH: &str = "creation-defer-length: a declared length completes the upload";
    pub const TRUNCATE: &str = "truncate: cuts back to the offset, writing resumes there";
    pub const STAGING: &str =
        "stage_chunk: a staged chunk changes nothing until committed; dropped, it leaves no trace";
    pub const LISTING: &str = "listing: lists every upload, not terminated ones";
    pub const FENCING: &str = "fencing: a stale token changes nothing and gets Fenced";
}

/// Runs every store contract against composers made by `make_composer`
/// (a fresh one per check) and returns the report; call
/// [`Report::assert_passed`] on it in a test.
pub async fn check_store<F>(mut make_composer: F, claims: StoreClaims) -> Report
where
    F: FnMut() -> StoreComposer,
{
    use contracts::*;
    let mut report = Report::new("DataStore");
    macro_rules! check {
        ($name:expr, $check:ident) => {
            let composer = make_composer();
            report.run($name, CHECK_LIMIT, $check(&composer)).await;
        };
    }
    check!(CREATE_AND_GET_INFO, create_and_get_info);
    check!(WRITE_AT_OFFSET, write_at_offset);
    check!(WRONG_OFFSET, wrong_offset);
    check!(STREAM_ERROR, stream_error);
    check!(READ_RANGE, read_range);
    check!(NOT_FOUND, not_found);
    check!(FINISH, finish);

    let capabilities = make_composer().capabilities();
    let probe = make_composer();
    let optional: [(bool, &'static str, &str); 6] = [
        (capabilities.termination, TERMINATION, "no Terminater"),
        (capabilities.concatenation, CONCATENATION, "no Concater"),
        (capabilities.defer_length, DEFER_LENGTH, "no LengthDeferrer"),
        (probe.truncater().is_some(), TRUNCATE, "no Truncater"),
        (probe.chunk_stager().is_some(), STAGING, "no ChunkStager"),
        (capabilities.listing, LISTING, "no Lister"),
    ];
    drop(probe);
    for (claimed, name, why) in optional {
        if !claimed {
            report.skip(name, &format!("the composer registers {why}"));
            continue;
        }
        let composer = make_composer();
        let check = async {
            match name {
                TERMINATION => termination(&composer).await,
                CONCATENATION => concatenation(&composer).await,
                DEFER_LENGTH => defer_length(&composer).await,
                TRUNCATE => truncate(&composer).await,
                STAGING => staging(&composer).await,
                _ => listing(&composer).await,
            }
        };
        report.run(name, CHECK_LIMIT, check).await;
    }
    if claims.fencing {
        check!(FENCING, fencing);
    } else {
        report.skip(FENCING, "the store does not claim to fence");
    }
    report
}

/// Fencing tokens of one issuer that no other run shares.
struct Issuer(Arc<str>);

impl Issuer {
    fn new() -> Issuer {
        Issuer(format!("conformance:{:016x}", rand::random::<u64>()).into())
    }

    fn token(&self, value: i64) -> FencingToken {
        FencingToken::new(self.0.clone(), value)
    }
}

fn core(composer: &StoreComposer) -> Result<&Arc<dyn DataStore>, String> {
    composer
        .core()
        .ok_or_else(|| "the composer has no core store (use_core was not called)".to_owned())
}

fn body(parts: &[&[u8]]) -> ChunkStream {
    let chunks: Vec<io::Result<Bytes>> = parts
        .iter()
        .map(|p| Ok(Bytes::copy_from_slice(p)))
        .collect();
    stream::iter(chunks).boxed()
}

fn sized(size: u64) -> NewUpload {
    NewUpload {
        size: Some(size),
        ..NewUpload::default()
    }
}

async fn create(
    store: &dyn DataStore,
    upload: NewUpload,
) -> Result<(UploadId, UploadInfo), String> {
    let info = store.create_upload(upload).await.context("create_upload")?;
    let id = UploadId::parse(&info.id).ok_or_else(|| {
        format!(
            "create_upload gave the id {:?}, not a valid upload id",
            info.id
        )
    })?;
    Ok((id, info))
}

async fn read(
    store: &dyn DataStore,
    id: &UploadId,
    start: u64,
    len: u64,
) -> Result<Vec<u8>, String> {
    let mut reader = store
        .read_range(id, start, len)
        .await
        .context(&format!("read_range({start}, {len})"))?;
    let mut out = Vec::new();
    reader
        .read_to_end(&mut out)
        .await
        .context(&format!("reading read_range({start}, {len})"))?;
    Ok(out)
}

async fn offset(store: &dyn DataStore, id: &UploadId) -> Result<u64, String> {
    Ok(store.get_info(id).await.context("get_info")?.offset)
}

/// Creates an upload of `size` holding `bytes`, written under `fence`.
async fn upload_with(
    store: &dyn DataStore,
    upload: NewUpload,
    bytes: &[u8],
    fence: Option<&FencingToken>,
) -> Result<UploadId, String> {
    let (id, _) = create(store, upload).await?;
    let written = store
        .write_chunk(&id, 0, fence, body(&[bytes]))
        .await
        .context("write_chunk at offset 0 of a new upload")?;
    ensure!(
        written == bytes.len() as u64,
        "write_chunk of {} bytes reported {written}",
        bytes.len()
    );
    Ok(id)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn create_and_get_info(composer: &StoreComposer) -> CheckResult {
    let store = &**core(composer)?;
    let metadata = BTreeMap::from([
        ("filename".to_owned(), "a.txt".to_owned()),
        ("empty".to_owned(), String::new()),
    ]);
    let (id, created) = create(
        store,
        NewUpload {
            size: Some(11),
            metadata: metadata.clone(),
            ..NewUpload::default()
        },
    )
    .await?;
    ensure!(
        (created.size, created.offset, created.size_is_deferred) == (11, 0, false),
        "a new upload of 11 bytes reports size 11, offset 0, length not deferred; got {created:?}"
    );
    ensure!(
        created.metadata == metadata,
        "create_upload keeps the metadata: sent {metadata:?}, got {:?}",
        created.metadata
    );
    ensure!(
        !created.is_partial && !created.is_final && !created.is_complete(),
        "a plain new upload is neither partial, final nor complete; got {created:?}"
    );
    let read = store
        .get_info(&id)
        .await
        .context("get_info of a new upload")?;
    ensure!(
        (
            &read.id,
            read.size,
            read.offset,
            read.size_is_deferred,
            &read.metadata
        ) == (&created.id, 11, 0, false, &metadata)
            && !read.is_partial
            && !read.is_final,
        "get_info reads back what create_upload reported: created {created:?}, read {read:?}"
    );

    let (partial_id, partial) = create(
        store,
        NewUpload {
            size: Some(3),
            is_partial: true,
            ..NewUpload::default()
        },
    )
    .await?;
    ensure!(
        partial_id != id,
        "two creations get distinct ids; both got {id}"
    );
    let read = store.get_info(&partial_id).await.context("get_info")?;
    ensure!(
        partial.is_partial && read.is_partial && !read.is_final,
        "a partial upload is recorded as partial; created {partial:?}, read {read:?}"
    );

    let (empty, _) = create(store, sized(0)).await?;
    let read = store.get_info(&empty).await.context("get_info")?;
    ensure!(
        read.size == 0 && read.offset == 0 && read.is_complete(),
        "an upload of 0 bytes is complete at once; got {read:?}"
    );
    Ok(Verdict::Passed)
}

async fn write_at_offset(composer: &StoreComposer) -> CheckResult {
    let store = &**core(composer)?;
    let issuer = Issuer::new();
    let token = issuer.token(1);
    let (id, _) = create(store, sized(11)).await?;
    let written = store
        .write_chunk(&id, 0, Some(&token), body(&[b"hello", b" "]))
        .await
        .context("write_chunk at offset 0")?;
    ensure!(
        written == 6,
        "write_chunk of 6 bytes in 2 chunks reported {written}"
    );
    let info = store.get_info(&id).await.context("get_info")?;
    ensure!(
        info.offset == 6 && !info.is_complete(),
        "after 6 of 11 bytes get_info reports offset 6, not complete; got {info:?}"
    );
    let written = store
        .write_chunk(&id, 6, Some(&token), body(&[]))
        .await
        .context("write_chunk of an empty body")?;
    ensure!(
        written == 0,
        "an empty body writes 0 bytes, reported {written}"
    );
    let written = store
        .write_chunk(&id, 6, Some(&token), body(&[b"world"]))
        .await
        .context("write_chunk at offset 6")?;
    ensure!(written == 5, "write_chunk of 5 bytes reported {written}");
    let earlier = info;
    let info = store.get_info(&id).await.context("get_info")?;
    ensure!(
        info.offset == 11 && info.is_complete(),
        "after all 11 bytes get_info reports offset 11, complete; got {info:?}"
    );
    let refreshed = store
        .refresh_progress(&id, earlier)
        .await
        .context("refresh_progress")?;
    ensure!(
        refreshed == info,
        "refresh_progress of the state read after 6 bytes gives what get_info gives now: {info:?}; got {refreshed:?}"
    );
    let bytes = read(store, &id, 0, 11).await?;
    ensure!(
        bytes == b"hello world",
        "the bytes read back are the bytes written in order; got {:?}",
        text(&bytes)
    );
    Ok(Verdict::Passed)
}

async fn wrong_offset(composer: &StoreComposer) -> CheckResult {
    let store = &**core(composer)?;
    let id = upload_with(store, sized(10), b"abcdef", None).await?;
    for wrong in [3, 7, 0] {
        let result = store.write_chunk(&id, wrong, None, body(&[b"xyz"])).await;
        ensure!(
            matches!(
                result,
                Err(StoreError::OffsetMoved { expected, actual: 6 }) if expected == wrong
            ),
            "write_chunk at offset {wrong} of an upload holding 6 bytes is refused with \
             OffsetMoved {{ expected: {wrong}, actual: 6 }}; got {result:?}"
        );
    }
    let info = store.get_info(&id).await.context("get_info")?;
    let bytes = read(store, &id, 0, 10).await?;
    ensure!(
        info.offset == 6 && bytes == b"abcdef",
        "refused writes change nothing: offset {} (want 6), bytes {:?} (want \"abcdef\")",
        info.offset,
        text(&bytes)
    );
    Ok(Verdict::Passed)
}

async fn stream_error(composer: &StoreComposer) -> CheckResult {
    let store = &**core(composer)?;
    let (id, _) = create(store, sized(10)).await?;
    let chunks: Vec<io::Result<Bytes>> = vec![
        Ok(Bytes::from_static(b"abc")),
        Ok(Bytes::from_static(b"def")),
        Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "client went away",
        )),
        Ok(Bytes::from_static(b"never")),
    ];
    // Yield between chunks, so the error arrives after the store has had a
    // chance to write, as a dropped connection's does.
    let chunked = stream::iter(chunks)
        .then(|chunk| async move {
            tokio::task::yield_now().await;
            chunk
        })
        .boxed();
    let result = store.write_chunk(&id, 0, None, chunked).await;
    if let Ok(written) = result {
        ensure!(
            written == 6,
            "write_chunk of a stream failing after 6 bytes reported {written} bytes written"
        );
    }
    let stored = offset(store, &id).await?;
    let bytes = read(store, &id, 0, 10).await?;
    ensure!(
        stored == 6 && bytes == b"abcdef",
        "the 6 bytes before the stream's error are stored and nothing after it: offset {stored}, \
         bytes {:?} (write_chunk returned {result:?})",
        text(&bytes)
    );
    Ok(Verdict::Passed)
}

async fn read_range(composer: &StoreComposer) -> CheckResult {
    let store = &**core(composer)?;
    let id = upload_with(store, sized(11), b"hello world", None).await?;
    for (start, len, want) in [
        (0, 11, &b"hello world"[..]),
        (6, 5, b"world"),
        (2, 3, b"llo"),
        (10, 1, b"d"),
        (4, 0, b""),
    ] {
        let got = read(store, &id, start, len).await?;
        ensure!(
            got == want,
            "read_range({start}, {len}) of \"hello world\" gives {:?}, got {:?}",
            text(want),
            text(&got)
        );
    }
    Ok(Verdict::Passed)
}

async fn not_found(composer: &StoreComposer) -> CheckResult {
    let store = &**core(composer)?;
    let unknown = fresh_id("never-created");
    let result = store.get_info(&unknown).await;
    ensure!(
        matches!(result, Err(StoreError::NotFound)),
        "get_info of an id the store never created is NotFound; got {result:?}"
    );
    let result = store.read_range(&unknown, 0, 1).await.map(|_| ());
    ensure!(
        result.is_err(),
        "read_range of an id the store never created fails; it succeeded"
    );
    let result = store.write_chunk(&unknown, 0, None, body(&[b"x"])).await;
    ensure!(
        result.is_err(),
        "write_chunk to an id the store never created fails; got {result:?}"
    );
    let result = store.get_info(&unknown).await;
    ensure!(
        matches!(result, Err(StoreError::NotFound)),
        "a refused write_chunk does not create the upload: get_info gives {result:?}"
    );
    Ok(Verdict::Passed)
}

async fn finish(composer: &StoreComposer) -> CheckResult {
    let store = &**core(composer)?;
    let token = Issuer::new().token(1);
    let id = upload_with(store, sized(5), b"12345", Some(&token)).await?;
    store
        .finish_upload(&id, Some(&token))
        .await
        .context("finish_upload of a complete upload")?;
    let info = store
        .get_info(&id)
        .await
        .context("get_info after finish_upload")?;
    let bytes = read(store, &id, 0, 5).await?;
    ensure!(
        info.is_complete() && info.offset == 5 && bytes == b"12345",
        "a finished upload keeps its state and bytes; got {info:?}, bytes {:?}",
        text(&bytes)
    );
    let (empty, _) = create(store, sized(0)).await?;
    store
        .finish_upload(&empty, None)
        .await
        .context("finish_upload of an upload of 0 bytes, without a token")?;
    Ok(Verdict::Passed)
}

async fn termination(composer: &StoreComposer) -> CheckResult {
    let store = &**core(composer)?;
    let terminater = composer.terminater().ok_or("no terminater")?;
    let token = Issuer::new().token(1);
    let gone = upload_with(store, sized(10), b"abc", Some(&token)).await?;
    let kept = upload_with(store, sized(3), b"xyz", Some(&token)).await?;
    terminater
        .terminate(&gone, Some(&token))
        .await
        .context("terminate of an unfinished upload")?;
    let result = store.get_info(&gone).await;
    ensure!(
        matches!(result, Err(StoreError::NotFound)),
        "get_info of a terminated upload is NotFound; got {result:?}"
    );
    let result = store.read_range(&gone, 0, 3).await.map(|_| ());
    ensure!(
        result.is_err(),
        "read_range of a terminated upload fails; it succeeded"
    );
    let result = store.write_chunk(&gone, 3, None, body(&[b"d"])).await;
    ensure!(
        result.is_err(),
        "write_chunk to a terminated upload fails; got {result:?}"
    );
    let info = store
        .get_info(&kept)
        .await
        .context("get_info of another upload")?;
    let bytes = read(store, &kept, 0, 3).await?;
    ensure!(
        info.offset == 3 && bytes == b"xyz",
        "terminating one upload leaves another as it was; got {info:?}, bytes {:?}",
        text(&bytes)
    );
    Ok(Verdict::Passed)
}

async fn concatenation(composer: &StoreComposer) -> CheckResult {
    let store = &**core(composer)?;
    let concater = composer.concater().ok_or("no concater")?;
    let partial = |size| NewUpload {
        size: Some(size),
        is_partial: true,
        ..NewUpload::default()
    };
    let first = upload_with(store, partial(3), b"abc", None).await?;
    let second = upload_with(store, partial(4), b"defg", None).await?;
    let before = [
        store
            .get_info(&first)
            .await
            .context("get_info of a partial")?,
        store
            .get_info(&second)
            .await
            .context("get_info of a partial")?,
    ];

    // Both ways a handler makes a final upload: with the partials' total
    // known at creation, and with the length left open (partials that were
    // unfinished when the final was created).
    for (order, size, want) in [
        ([&first, &second], Some(7), &b"abcdefg"[..]),
        ([&second, &first], None, b"defgabc"),
    ] {
        let partials: Vec<UploadId> = order.iter().map(|id| (*id).clone()).collect();
        let (id, _) = create(
            store,
            NewUpload {
                size,
                is_final: true,
                partial_uploads: partials.clone(),
                ..NewUpload::default()
            },
        )
        .await?;
        concater
            .concat(&id, &partials, None)
            .await
            .context("concat of two complete partials")?;
        let info = store
            .get_info(&id)
            .await
            .context("get_info of the final upload")?;
        let names: Vec<String> = partials.iter().map(|p| p.to_string()).collect();
        ensure!(
            info.is_final && info.is_complete() && info.size == 7 && info.offset == 7,
            "after concat the final upload is final and complete with 7 bytes \
             (created with size {size:?}); got {info:?}"
        );
        ensure!(
            info.partial_uploads == names,
            "the final upload lists its partials in order: want {names:?}, got {:?}",
            info.partial_uploads
        );
        let bytes = read(store, &id, 0, 7).await?;
        ensure!(
            bytes == want,
            "the final upload holds the partials' bytes in the order given: want {:?}, got {:?}",
            text(want),
            text(&bytes)
        );
    }

    for (id, (before, want)) in [&first, &second]
        .into_iter()
        .zip(before.iter().zip([&b"abc"[..], b"defg"]))
    {
        let after = store.get_info(id).await.context("get_info of a partial")?;
        let bytes = read(store, id, 0, before.size).await?;
        ensure!(
            (after.size, after.offset, after.is_partial) == (before.size, before.offset, true)
                && bytes == want,
            "a partial upload stays as it was after concat: before {before:?}, after {after:?}, \
             bytes {:?}",
            text(&bytes)
        );
    }
    Ok(Verdict::Passed)
}

async fn defer_length(composer: &StoreComposer) -> CheckResult {
    let store = &**core(composer)?;
    let deferrer = composer.length_deferrer().ok_or("no length deferrer")?;
    let token = Issuer::new().token(1);
    let (id, created) = create(store, NewUpload::default()).await?;
    ensure!(
        created.size_is_deferred && !created.is_complete(),
        "an upload created without a size has its length deferred; got {created:?}"
    );
    store
        .write_chunk(&id, 0, Some(&token), body(&[b"abc"]))
        .await
        .context("write_chunk to an upload whose length is deferred")?;
    let info = store.get_info(&id).await.context("get_info")?;
    ensure!(
        info.size_is_deferred && info.offset == 3 && !info.is_complete(),
        "bytes written while the length is deferred leave it deferred, not complete; got {info:?}"
    );
    deferrer
        .declare_length(&id, 5, Some(&token))
        .await
        .context("declare_length")?;
    let info = store.get_info(&id).await.context("get_info")?;
    ensure!(
        !info.size_is_deferred && info.size == 5 && info.offset == 3 && !info.is_complete(),
        "declare_length(5) after 3 bytes: size 5, not deferred, offset 3; got {info:?}"
    );
    store
        .write_chunk(&id, 3, Some(&token), body(&[b"de"]))
        .await
        .context("write_chunk after declare_length")?;
    let info = store.get_info(&id).await.context("get_info")?;
    let bytes = read(store, &id, 0, 5).await?;
    ensure!(
        info.is_complete() && bytes == b"abcde",
        "the last bytes after a declared length complete the upload; got {info:?}, bytes {:?}",
        text(&bytes)
    );
    Ok(Verdict::Passed)
}

async fn truncate(composer: &StoreComposer) -> CheckResult {
    let store = &**core(composer)?;
    let truncater = composer.truncater().ok_or("no truncater")?;
    let token = Issuer::new().token(1);
    let id = upload_with(store, sized(11), b"hello ", Some(&token)).await?;
    store
        .write_chunk(&id, 6, Some(&token), body(&[b"world"]))
        .await
        .context("write_chunk at offset 6")?;
    truncater
        .truncate(&id, 6, Some(&token))
        .await
        .context("truncate to 6")?;
    let info = store
        .get_info(&id)
        .await
        .context("get_info after truncate")?;
    let bytes = read(store, &id, 0, 11).await?;
    ensure!(
        info.offset == 6 && !info.is_complete() && bytes == b"hello ",
        "truncate(6) leaves the first 6 bytes and offset 6; got {info:?}, bytes {:?}",
        text(&bytes)
    );
    truncater
        .truncate(&id, 6, Some(&token))
        .await
        .context("truncate to the current offset")?;
    ensure!(
        offset(store, &id).await? == 6,
        "truncate to the current offset changes nothing"
    );
    store
        .write_chunk(&id, 6, Some(&token), body(&[b"there"]))
        .await
        .context("write_chunk at the truncated offset")?;
    let bytes = read(store, &id, 0, 11).await?;
    ensure!(
        bytes == b"hello there",
        "writing resumes at the truncated offset; got {:?}",
        text(&bytes)
    );
    Ok(Verdict::Passed)
}

async fn staging(composer: &StoreComposer) -> CheckResult {
    let store = &**core(composer)?;
    let stager = composer.chunk_stager().ok_or("no chunk stager")?;
    let token = Issuer::new().token(1);
    let id = upload_with(store, sized(11), b"hello ", Some(&token)).await?;

    let staged = stager
        .stage_chunk(&id, 6, body(&[b"wor", b"ld"]))
        .await
        .context("stage_chunk at offset 6")?;
    ensure!(
        staged.len() == 5,
        "a staged chunk of 5 bytes reports len {}",
        staged.len()
    );
    let bytes = read(store, &id, 0, 6).await?;
    ensure!(
        offset(store, &id).await? == 6 && bytes == b"hello ",
        "a staged chunk is not part of the upload before commit; bytes {:?}",
        text(&bytes)
    );
    drop(staged);
    ensure!(
        offset(store, &id).await? == 6,
        "a dropped staged chunk leaves the offset where it was"
    );

    let moved = stager.stage_chunk(&id, 3, body(&[b"x"])).await;
    ensure!(
        matches!(moved, Err(StoreError::OffsetMoved { .. })),
        "stage_chunk at a wrong offset is refused with OffsetMoved; got {:?}",
        moved.map(|s| s.len())
    );
    let broken: ChunkStream = stream::iter(vec![
        Ok(Bytes::from_static(b"wo")),
        Err(io::Error::new(io::ErrorKind::ConnectionReset, "gone")),
    ])
    .boxed();
    ensure!(
        stager.stage_chunk(&id, 6, broken).await.is_err(),
        "stage_chunk of a stream that fails returns the error"
    );
    ensure!(
        offset(store, &id).await? == 6,
        "a failed staging leaves the offset where it was"
    );

    let staged = stager
        .stage_chunk(&id, 6, body(&[b"world"]))
        .await
        .context("stage_chunk again")?;
    let written = staged
        .commit(Some(&token))
        .await
        .context("commit of a staged chunk")?;
    let info = store.get_info(&id).await.context("get_info after commit")?;
    let bytes = read(store, &id, 0, 11).await?;
    ensure!(
        written == 5 && info.offset == 11 && bytes == b"hello world",
        "a committed chunk is appended at its offset; wrote {written}, {info:?}, bytes {:?}",
        text(&bytes)
    );
    Ok(Verdict::Passed)
}

async fn listing(composer: &StoreComposer) -> CheckResult {
    let store = &**core(composer)?;
    let lister = composer.lister().ok_or("no lister")?;
    let (unfinished, _) = create(store, sized(10)).await?;
    let complete = upload_with(store, sized(2), b"ok", None).await?;
    let (deferred, _) = create(store, NewUpload::default()).await?;
    let listed = lister.list_uploads().await.context("list_uploads")?;
    for id in [&unfinished, &complete, &deferred] {
        ensure!(
            listed.contains(id),
            "list_uploads lists every upload (unfinished, complete, deferred); {id} is missing \
             from {listed:?}"
        );
    }
    let mut unique = listed.clone();
    unique.sort();
    unique.dedup();
    ensure!(
        unique.len() == listed.len(),
        "list_uploads names each upload once; got {listed:?}"
    );
    if let Some(terminater) = composer.terminater() {
        terminater
            .terminate(&unfinished, None)
            .await
            .context("terminate")?;
        let listed = lister.list_uploads().await.context("list_uploads")?;
        ensure!(
            !listed.contains(&unfinished) && listed.contains(&complete),
            "a terminated upload is no longer listed, the others still are; got {listed:?}"
        );
    }
    Ok(Verdict::Passed)
}

async fn fencing(composer: &StoreComposer) -> CheckResult {
    let store = &**core(composer)?;
    let issuer = Issuer::new();
    let (old, new, newest) = (issuer.token(1), issuer.token(2), issuer.token(3));
    let (id, _) = create(store, sized(12)).await?;
    store
        .write_chunk(&id, 0, Some(&new), body(&[b"abc"]))
        .await
        .context("write_chunk with a first token")?;
    let result = store.write_chunk(&id, 3, Some(&old), body(&[b"XYZ"])).await;
    ensure!(
        matches!(result, Err(StoreError::Fenced(_))),
        "write_chunk with token {old} after {new} wrote is refused with Fenced; got {result:?}"
    );
    let bytes = read(store, &id, 0, 12).await?;
    ensure!(
        bytes == b"abc",
        "a refused stale write_chunk changes nothing; the upload holds {:?}",
        text(&bytes)
    );
    store
        .write_chunk(&id, 3, Some(&new), body(&[b"def"]))
        .await
        .context("write_chunk again with the current token (the holder is not locked out)")?;
    store
        .write_chunk(&id, 6, Some(&newest), body(&[b"ghi"]))
        .await
        .context("write_chunk with a newer token of the same issuer")?;
    let result = store.write_chunk(&id, 9, Some(&new), body(&[b"XYZ"])).await;
    ensure!(
        matches!(result, Err(StoreError::Fenced(_))),
        "write_chunk with token {new} after {newest} wrote is refused with Fenced; got {result:?}"
    );

    // A new issuer (a restarted memory locker, a switch of locker) takes
    // over for good: admitted, and the old issuer is refused from then on.
    let successor = Issuer::new().token(1);
    store
        .write_chunk(&id, 9, Some(&successor), body(&[b"jk"]))
        .await
        .context("write_chunk with a token of a new issuer (it takes over)")?;
    let result = store
        .write_chunk(&id, 11, Some(&newest), body(&[b"X"]))
        .await;
    ensure!(
        matches!(result, Err(StoreError::Fenced(_))),
        "after a new issuer took over, the old issuer's token {newest} is refused with Fenced; \
         got {result:?}"
    );
    let bytes = read(store, &id, 0, 12).await?;
    ensure!(
        bytes == b"abcdefghijk",
        "only admitted writes landed; the upload holds {:?}",
        text(&bytes)
    );

    // Every claimed capability that changes an upload is fenced the same way.
    if let Some(truncater) = composer.truncater() {
        let result = truncater.truncate(&id, 9, Some(&newest)).await;
        ensure!(
            matches!(result, Err(StoreError::Fenced(_))),
            "truncate with a stale token is refused with Fenced; got {result:?}"
        );
        ensure!(
            offset(store, &id).await? == 11,
            "a refused stale truncate changes nothing"
        );
    }
    if let Some(stager) = composer.chunk_stager() {
        let staged = stager
            .stage_chunk(&id, 11, body(&[b"X"]))
            .await
            .context("stage_chunk (no token needed: it changes nothing)")?;
        let result = staged.commit(Some(&newest)).await;
        ensure!(
            matches!(result, Err(StoreError::Fenced(_))),
            "commit of a staged chunk with a stale token is refused with Fenced; got {result:?}"
        );
        ensure!(
            offset(store, &id).await? == 11,
            "a refused stale commit changes nothing"
        );
    }
    if let Some(deferrer) = composer.length_deferrer() {
        let (deferred, _) = create(store, NewUpload::default()).await?;
        store
            .write_chunk(&deferred, 0, Some(&new), body(&[b"a"]))
            .await
            .context("write_chunk to a deferred-length upload")?;
        let result = deferrer.declare_length(&deferred, 5, Some(&old)).await;
        ensure!(
            matches!(result, Err(StoreError::Fenced(_))),
            "declare_length with a stale token is refused with Fenced; got {result:?}"
        );
        let info = store.get_info(&deferred).await.context("get_info")?;
        ensure!(
            info.size_is_deferred,
            "a refused stale declare_length changes nothing; got {info:?}"
        );
    }
    if let Some(concater) = composer.concater() {
        let partial = NewUpload {
            size: Some(1),
            is_partial: true,
            ..NewUpload::default()
        };
        let a = upload_with(store, partial.clone(), b"a", None).await?;
        let b = upload_with(store, partial, b"b", None).await?;
        let (target, _) = create(
            store,
            NewUpload {
                is_final: true,
                partial_uploads: vec![a.clone()],
                ..NewUpload::default()
            },
        )
        .await?;
        concater
            .concat(&target, std::slice::from_ref(&a), Some(&new))
            .await
            .context("concat with a token")?;
        let result = concater.concat(&target, &[b], Some(&old)).await;
        ensure!(
            matches!(result, Err(StoreError::Fenced(_))),
            "concat with a stale token is refused with Fenced; got {result:?}"
        );
        let bytes = read(store, &target, 0, 1).await?;
        ensure!(
            bytes == b"a",
            "a refused stale concat changes nothing; the final upload holds {:?}",
            text(&bytes)
        );
    }
    if let Some(terminater) = composer.terminater() {
        let result = terminater.terminate(&id, Some(&newest)).await;
        ensure!(
            matches!(result, Err(StoreError::Fenced(_))),
            "terminate with a stale token is refused with Fenced; got {result:?}"
        );
        ensure!(
            offset(store, &id).await? == 11,
            "a refused stale terminate leaves the upload in place"
        );
    }
    Ok(Verdict::Passed)
}

/// The suite rejects stores that break a contract, each for the contract
/// it breaks: a suite that passes everything proves nothing.
#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use tusd_core::{Terminater, UploadReader};
    use tusd_filestore::FileStore;

    use super::contracts::*;
    use super::*;

    #[derive(Clone, Copy, PartialEq)]
    enum Flaw {
        /// Appends wherever the upload ends, whatever offset it is given.
        AppendsAnywhere,
        /// Says it terminated, deletes nothing.
        KeepsTerminated,
        /// Claims to fence, but never hands the token on.
        DropsFencingToken,
    }

    /// The file store with one flaw, as core store and terminater.
    struct Broken {
        inner: FileStore,
        flaw: Flaw,
    }

    #[async_trait]
    impl DataStore for Broken {
        async fn create_upload(&self, upload: NewUpload) -> Result<UploadInfo, StoreError> {
            self.inner.create_upload(upload).await
        }

        async fn get_info(&self, id: &UploadId) -> Result<UploadInfo, StoreError> {
            self.inner.get_info(id).await
        }

        async fn write_chunk(
            &self,
            id: &UploadId,
            offset: u64,
            fence: Option<&FencingToken>,
            chunk: ChunkStream,
        ) -> Result<u64, StoreError> {
            match self.flaw {
                Flaw::AppendsAnywhere => {
                    let end = self.inner.get_info(id).await?.offset;
                    self.inner.write_chunk(id, end, fence, chunk).await
                }
                Flaw::DropsFencingToken => self.inner.write_chunk(id, offset, None, chunk).await,
                Flaw::KeepsTerminated => self.inner.write_chunk(id, offset, fence, chunk).await,
            }
        }

        async fn read_range(
            &self,
            id: &UploadId,
            start: u64,
            len: u64,
        ) -> Result<UploadReader, StoreError> {
            self.inner.read_range(id, start, len).await
        }
    }

    #[async_trait]
    impl Terminater for Broken {
        async fn terminate(
            &self,
            id: &UploadId,
            fence: Option<&FencingToken>,
        ) -> Result<(), StoreError> {
            match self.flaw {
                Flaw::KeepsTerminated => Ok(()),
                _ => self.inner.terminate(id, fence).await,
            }
        }
    }

    async fn check_broken(flaw: Flaw) -> Report {
        let dir = tempfile::tempdir().unwrap();
        let mut stores = 0;
        let make = || {
            stores += 1;
            let inner = FileStore::new(dir.path().join(stores.to_string())).unwrap();
            let mut composer = StoreComposer::new();
            inner.clone().use_in(&mut composer);
            let broken = Arc::new(Broken { inner, flaw });
            composer.use_core(broken.clone());
            composer.use_terminater(broken);
            composer
        };
        check_store(make, StoreClaims { fencing: true }).await
    }

    #[tokio::test]
    async fn a_store_that_ignores_the_offset_fails_the_offset_contract_only() {
        let report = check_broken(Flaw::AppendsAnywhere).await;
        assert_eq!(report.failed(), [WRONG_OFFSET], "{report}");
    }

    #[tokio::test]
    async fn a_store_that_keeps_terminated_uploads_fails_termination() {
        let report = check_broken(Flaw::KeepsTerminated).await;
        assert_eq!(report.failed(), [TERMINATION, LISTING, FENCING], "{report}");
    }

    #[tokio::test]
    async fn a_store_that_claims_fencing_without_fencing_fails_fencing_only() {
        let report = check_broken(Flaw::DropsFencingToken).await;
        assert_eq!(report.failed(), [FENCING], "{report}");
    }

    #[tokio::test]
    async fn a_composer_without_capabilities_skips_their_checks() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path()).unwrap();
        let make = || {
            let mut composer = StoreComposer::new();
            composer.use_core(Arc::new(store.clone()));
            composer
        };
        let report = check_store(make, StoreClaims::default()).await;
        report.assert_passed();
        for name in [
            TERMINATION,
            CONCATENATION,
            DEFER_LENGTH,
            TRUNCATE,
            LISTING,
            FENCING,
        ] {
            assert!(
                matches!(report.outcome(name), Some(crate::Outcome::Skipped(_))),
                "{report}"
            );
        }
    }
}

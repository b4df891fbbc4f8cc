//! The file store against a real temporary directory, through the
//! `DataStore` interface only, plus compatibility with tusd's `.info` files.

use std::collections::BTreeMap;
use std::io;

use bytes::Bytes;
use futures::{stream, StreamExt};
use tokio::io::AsyncReadExt;
use tusd_core::{
    ChunkStream, Concater, DataStore, FencingToken, LengthDeferrer, Lister, NewUpload,
    StoreComposer, StoreError, Terminater, Truncater, UploadId,
};
use tusd_filestore::FileStore;

fn body(parts: &[&'static [u8]]) -> ChunkStream {
    let chunks: Vec<io::Result<Bytes>> = parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
    stream::iter(chunks).boxed()
}

fn id(s: &str) -> UploadId {
    UploadId::parse(s).unwrap()
}

async fn read_all(store: &FileStore, upload: &UploadId, start: u64, len: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut reader = store.read_range(upload, start, len).await.unwrap();
    reader.read_to_end(&mut out).await.unwrap();
    out
}

fn sized(size: u64) -> NewUpload {
    NewUpload {
        size: Some(size),
        ..NewUpload::default()
    }
}

#[tokio::test]
async fn create_write_resume_and_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path().join("nested/uploads")).unwrap();
    let created = store
        .create_upload(NewUpload {
            size: Some(11),
            metadata: BTreeMap::from([("filename".into(), "a.txt".into())]),
            ..NewUpload::default()
        })
        .await
        .unwrap();
    assert_eq!(created.id.len(), 32);
    assert_eq!((created.size, created.offset), (11, 0));
    assert!(!created.size_is_deferred);
    assert_eq!(created.storage["Type"], "filestore");
    let upload = id(&created.id);
    let data_path = store.dir().join(&created.id);
    assert_eq!(created.storage["Path"], data_path.to_string_lossy());
    assert!(data_path.is_file());

    assert_eq!(
        store
            .write_chunk(&upload, 0, None, body(&[b"hello", b" "]))
            .await
            .unwrap(),
        6
    );
    let info = store.get_info(&upload).await.unwrap();
    assert_eq!(info.offset, 6);
    assert!(!info.is_complete());
    assert_eq!(info.metadata["filename"], "a.txt");

    assert_eq!(
        store
            .write_chunk(&upload, 6, None, body(&[b"world"]))
            .await
            .unwrap(),
        5
    );
    let info = store.get_info(&upload).await.unwrap();
    assert!(info.is_complete());
    assert!(info.modified.is_some());
    assert_eq!(read_all(&store, &upload, 0, 11).await, b"hello world");
    assert_eq!(read_all(&store, &upload, 6, 3).await, b"wor");
    assert_eq!(read_all(&store, &upload, 6, 100).await, b"world");
}

#[tokio::test]
async fn a_stream_error_keeps_and_counts_the_bytes_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path()).unwrap();
    let upload = id(&store.create_upload(sized(100)).await.unwrap().id);
    let failing: ChunkStream = stream::iter(vec![
        Ok(Bytes::from_static(b"abc")),
        Ok(Bytes::from_static(b"def")),
        Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "client gone",
        )),
    ])
    .boxed();
    let err = store
        .write_chunk(&upload, 0, None, failing)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Io(e) if e.kind() == io::ErrorKind::ConnectionReset));
    assert_eq!(store.get_info(&upload).await.unwrap().offset, 6);
    assert_eq!(
        store
            .write_chunk(&upload, 6, None, body(&[b"g"]))
            .await
            .unwrap(),
        1
    );
    assert_eq!(read_all(&store, &upload, 0, 100).await, b"abcdefg");
}

#[tokio::test]
async fn a_dropped_caller_does_not_lose_received_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path()).unwrap();
    let upload = id(&store.create_upload(sized(100)).await.unwrap().id);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
    let live: ChunkStream = stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed();
    tx.send(Ok(Bytes::from_static(b"first"))).await.unwrap();
    {
        let write = store.write_chunk(&upload, 0, None, live);
        // Poll once so the write starts, then drop the caller's future.
        let _ = tokio::time::timeout(std::time::Duration::from_millis(50), write).await;
    }
    tx.send(Ok(Bytes::from_static(b"second"))).await.unwrap();
    drop(tx);
    for _ in 0..100 {
        if store.get_info(&upload).await.unwrap().offset == 11 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(read_all(&store, &upload, 0, 100).await, b"firstsecond");
}

#[tokio::test]
async fn large_bodies_arrive_intact() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path()).unwrap();
    let upload = id(&store.create_upload(sized(5 << 20)).await.unwrap().id);
    let expected: Vec<u8> = (0..5u32 << 20).map(|i| (i % 251) as u8).collect();
    let chunks: Vec<io::Result<Bytes>> = expected
        .chunks(7919)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let n = store
        .write_chunk(&upload, 0, None, stream::iter(chunks).boxed())
        .await
        .unwrap();
    assert_eq!(n, 5 << 20);
    assert_eq!(read_all(&store, &upload, 0, 5 << 20).await, expected);
}

#[tokio::test]
async fn a_write_at_the_wrong_offset_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path()).unwrap();
    let upload = id(&store.create_upload(sized(10)).await.unwrap().id);
    store
        .write_chunk(&upload, 0, None, body(&[b"abc"]))
        .await
        .unwrap();
    assert!(store
        .write_chunk(&upload, 1, None, body(&[b"x"]))
        .await
        .is_err());
    assert_eq!(read_all(&store, &upload, 0, 10).await, b"abc");
}

#[tokio::test]
async fn truncate_cuts_back_to_an_offset() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path()).unwrap();
    let upload = id(&store.create_upload(sized(10)).await.unwrap().id);
    store
        .write_chunk(&upload, 0, None, body(&[b"abcdef"]))
        .await
        .unwrap();
    store.truncate(&upload, 2, None).await.unwrap();
    assert_eq!(store.get_info(&upload).await.unwrap().offset, 2);
    store
        .write_chunk(&upload, 2, None, body(&[b"X"]))
        .await
        .unwrap();
    assert_eq!(read_all(&store, &upload, 0, 10).await, b"abX");
}

#[tokio::test]
async fn a_deferred_length_is_declared_later() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path()).unwrap();
    let created = store.create_upload(NewUpload::default()).await.unwrap();
    assert!(created.size_is_deferred);
    assert_eq!(created.size, 0);
    let upload = id(&created.id);
    store
        .write_chunk(&upload, 0, None, body(&[b"abcd"]))
        .await
        .unwrap();
    assert!(!store.get_info(&upload).await.unwrap().is_complete());
    store.declare_length(&upload, 4, None).await.unwrap();
    let info = store.get_info(&upload).await.unwrap();
    assert!(!info.size_is_deferred);
    assert_eq!(info.size, 4);
    assert!(info.is_complete());
}

#[tokio::test]
async fn concat_joins_partials_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path()).unwrap();
    let mut partials = Vec::new();
    for part in [&b"one,"[..], b"two,", b"three"] {
        let created = store
            .create_upload(NewUpload {
                size: Some(part.len() as u64),
                is_partial: true,
                ..NewUpload::default()
            })
            .await
            .unwrap();
        assert!(created.is_partial);
        let upload = id(&created.id);
        let chunk: ChunkStream = stream::iter([Ok(Bytes::copy_from_slice(part))]).boxed();
        store.write_chunk(&upload, 0, None, chunk).await.unwrap();
        partials.push(upload);
    }
    let final_info = store
        .create_upload(NewUpload {
            size: None,
            is_final: true,
            partial_uploads: partials.clone(),
            ..NewUpload::default()
        })
        .await
        .unwrap();
    let ids: Vec<String> = partials.iter().map(|p| p.to_string()).collect();
    assert_eq!(final_info.partial_uploads, ids);
    let upload = id(&final_info.id);
    store.concat(&upload, &partials, None).await.unwrap();
    // A retried concat must not duplicate bytes.
    store.concat(&upload, &partials, None).await.unwrap();
    let info = store.get_info(&upload).await.unwrap();
    assert_eq!((info.size, info.offset), (13, 13));
    assert!(info.is_final && info.is_complete());
    assert_eq!(read_all(&store, &upload, 0, 13).await, b"one,two,three");
    for partial in &partials {
        assert!(store.get_info(partial).await.unwrap().is_complete());
    }
    let missing = [id("doesnotexist")];
    assert!(matches!(
        store.concat(&upload, &missing, None).await,
        Err(StoreError::NotFound)
    ));
}

#[tokio::test]
async fn terminate_removes_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path()).unwrap();
    let created = store.create_upload(sized(3)).await.unwrap();
    let upload = id(&created.id);
    store.terminate(&upload, None).await.unwrap();
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
    assert!(matches!(
        store.get_info(&upload).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.terminate(&upload, None).await,
        Err(StoreError::NotFound)
    ));
}

#[tokio::test]
async fn unknown_ids_are_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path()).unwrap();
    let ghost = id("ghost");
    assert!(matches!(
        store.get_info(&ghost).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.write_chunk(&ghost, 0, None, body(&[b"x"])).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.truncate(&ghost, 0, None).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.declare_length(&ghost, 1, None).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.read_range(&ghost, 0, 1).await,
        Err(StoreError::NotFound)
    ));
    assert!(!dir.path().join("ghost").exists());
}

#[tokio::test]
async fn list_uploads_names_every_info_file_with_a_valid_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path()).unwrap();
    let a = store.create_upload(sized(1)).await.unwrap().id;
    let b = store.create_upload(sized(1)).await.unwrap().id;
    std::fs::write(dir.path().join("orphan.info"), b"{}").unwrap();
    std::fs::write(dir.path().join("not-an-upload"), b"").unwrap();
    std::fs::write(dir.path().join("bad name.info"), b"{}").unwrap();
    std::fs::write(dir.path().join(".x.info.0a.tmp"), b"{}").unwrap();
    let mut expected = vec![a, b, "orphan".to_owned()];
    expected.sort();
    let listed: Vec<String> = store
        .list_uploads()
        .await
        .unwrap()
        .iter()
        .map(|u| u.to_string())
        .collect();
    assert_eq!(listed, expected);
}

#[tokio::test]
async fn an_upload_written_by_tusd_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path()).unwrap();
    let tusd_id = "1f3e9b6c0a6d4e2f8b7c5d4e3f2a1b0c";
    // Exactly what tusd v2's filestore writes: nulls for empty maps/slices,
    // and an Offset that tusd never updates after creation.
    let tusd_info = format!(
        r#"{{"ID":"{tusd_id}","Size":10,"SizeIsDeferred":false,"Offset":0,"MetaData":null,"IsPartial":false,"IsFinal":false,"PartialUploads":null,"Storage":{{"InfoPath":"{0}/{tusd_id}.info","Path":"{0}/{tusd_id}","Type":"filestore"}}}}"#,
        dir.path().display()
    );
    std::fs::write(dir.path().join(format!("{tusd_id}.info")), tusd_info).unwrap();
    std::fs::write(dir.path().join(tusd_id), b"tusd").unwrap();

    let upload = id(tusd_id);
    let info = store.get_info(&upload).await.unwrap();
    assert_eq!(info.id, tusd_id);
    assert_eq!((info.size, info.offset), (10, 4));
    assert!(info.metadata.is_empty() && info.partial_uploads.is_empty());
    store
        .write_chunk(&upload, 4, None, body(&[b"-rust"]))
        .await
        .unwrap();
    assert_eq!(read_all(&store, &upload, 0, 10).await, b"tusd-rust");
    assert_eq!(store.list_uploads().await.unwrap(), [upload]);
}

#[tokio::test]
async fn our_info_files_carry_exactly_tusds_field_names() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path()).unwrap();
    let created = store.create_upload(NewUpload::default()).await.unwrap();
    let raw = std::fs::read(dir.path().join(format!("{}.info", created.id))).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let mut fields: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "ID",
            "IsFinal",
            "IsPartial",
            "MetaData",
            "Offset",
            "PartialUploads",
            "Size",
            "SizeIsDeferred",
            "Storage"
        ]
    );
    let mut storage: Vec<&str> = json["Storage"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    storage.sort();
    assert_eq!(storage, ["InfoPath", "Path", "Type"]);
    assert_eq!(json["SizeIsDeferred"], true);
    assert_eq!(json["ID"], created.id.as_str());
}

#[tokio::test]
async fn use_in_installs_the_store_with_every_capability() {
    let dir = tempfile::tempdir().unwrap();
    let mut composer = StoreComposer::new();
    FileStore::new(dir.path()).unwrap().use_in(&mut composer);
    let c = composer.capabilities();
    assert!(c.termination && c.concatenation && c.defer_length && c.checksum && c.listing);
    let store = composer.core().unwrap();
    let created = store.create_upload(sized(1)).await.unwrap();
    assert!(store.get_info(&id(&created.id)).await.is_ok());
}

/// A holder that lost its lock without knowing it, handed to the store
/// directly: every change it tries is refused and nothing changes.
#[tokio::test]
async fn a_stale_fencing_token_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path()).unwrap();
    let upload = id(&store.create_upload(NewUpload::default()).await.unwrap().id);
    let successor = FencingToken::new("etcd:00000000000000aa/tusd", 41);
    let stale = FencingToken::new("etcd:00000000000000aa/tusd", 40);
    store
        .write_chunk(&upload, 0, Some(&successor), body(&[b"new"]))
        .await
        .unwrap();
    let before = std::fs::read(dir.path().join(upload.as_str())).unwrap();
    let info_before = std::fs::read(dir.path().join(format!("{upload}.info"))).unwrap();

    fn fenced<T>(result: Result<T, StoreError>) -> bool {
        matches!(result, Err(StoreError::Fenced(_)))
    }
    assert!(fenced(
        store
            .write_chunk(&upload, 3, Some(&stale), body(&[b"old"]))
            .await
    ));
    assert!(fenced(store.truncate(&upload, 0, Some(&stale)).await));
    assert!(fenced(store.declare_length(&upload, 3, Some(&stale)).await));
    assert!(fenced(store.concat(&upload, &[], Some(&stale)).await));
    assert!(fenced(store.terminate(&upload, Some(&stale)).await));

    assert_eq!(
        std::fs::read(dir.path().join(upload.as_str())).unwrap(),
        before
    );
    assert_eq!(
        std::fs::read(dir.path().join(format!("{upload}.info"))).unwrap(),
        info_before
    );
    let record = tusd_filestore::fence_record(dir.path(), upload.as_str())
        .unwrap()
        .expect("a fence record");
    assert!(record.contains("\"Token\":41"), "{record}");
    // The record is the data file's attribute (this directory's file system
    // keeps user attributes, as ext4 does): two files, no `.fence`.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, [upload.to_string(), format!("{upload}.info")]);
    // The successor itself goes on.
    store
        .write_chunk(&upload, 3, Some(&successor), body(&[b"!"]))
        .await
        .unwrap();
    store.terminate(&upload, Some(&successor)).await.unwrap();
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
}

/// A new locker (a restarted memory locker counting from 1, or a switch to
/// etcd) takes over an upload without being locked out, and from then on the
/// old one is refused, whatever its counter says.
#[tokio::test]
async fn a_new_issuer_takes_over_and_the_old_one_stays_out() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path()).unwrap();
    let upload = id(&store.create_upload(sized(9)).await.unwrap().id);
    let before_restart = FencingToken::new("memory:0000000000000001", 900);
    let after_restart = FencingToken::new("memory:0000000000000002", 1);
    let etcd = FencingToken::new("etcd:00000000000000aa/tusd", 7);

    store
        .write_chunk(&upload, 0, Some(&before_restart), body(&[b"abc"]))
        .await
        .unwrap();
    store
        .write_chunk(&upload, 3, Some(&after_restart), body(&[b"def"]))
        .await
        .unwrap();
    assert!(matches!(
        store
            .write_chunk(&upload, 6, Some(&before_restart.clone()), body(&[b"x"]))
            .await,
        Err(StoreError::Fenced(_))
    ));
    store
        .write_chunk(&upload, 6, Some(&etcd), body(&[b"ghi"]))
        .await
        .unwrap();
    assert!(matches!(
        store
            .write_chunk(
                &upload,
                9,
                Some(&FencingToken::new("memory:0000000000000002", 2)),
                body(&[b"x"])
            )
            .await,
        Err(StoreError::Fenced(_))
    ));
    assert_eq!(read_all(&store, &upload, 0, 9).await, b"abcdefghi");
}

/// A pre-create hook may choose the id (tusd's ChangeFileInfo.ID): the store
/// uses it, refuses it when taken (keeping the existing upload as it was),
/// and refuses one its file names cannot carry.
#[tokio::test]
async fn a_chosen_id_is_used_once_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path()).unwrap();
    let chosen = NewUpload {
        id: Some(id("my-chosen_id")),
        ..sized(4)
    };
    let created = store.create_upload(chosen.clone()).await.unwrap();
    assert_eq!(created.id, "my-chosen_id");
    store
        .write_chunk(&id("my-chosen_id"), 0, None, body(&[b"ab"]))
        .await
        .unwrap();

    let again = store.create_upload(chosen).await;
    assert!(
        matches!(again, Err(StoreError::Io(ref e)) if e.kind() == std::io::ErrorKind::AlreadyExists),
        "{again:?}"
    );
    let kept = store.get_info(&id("my-chosen_id")).await.unwrap();
    assert_eq!((kept.offset, kept.size), (2, 4));

    let foreign = NewUpload {
        id: Some(id("a+b")),
        ..sized(4)
    };
    assert!(store.create_upload(foreign).await.is_err());
    assert!(!dir.path().join("a+b").exists());
}

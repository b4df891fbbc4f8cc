//! Ids other stores make (S3's `{object id}+{multipart id}`, with `.`, `~`,
//! `=`) are valid `UploadId`s, but the file store never made one: each
//! operation answers `NotFound` and touches no file, even for an id that
//! names another upload's `.info` or `.fence`.

use bytes::Bytes;
use futures::{stream, StreamExt};
use tusd_core::{
    Concater, DataStore, LengthDeferrer, NewUpload, StoreError, Terminater, Truncater, UploadId,
};
use tusd_filestore::FileStore;

#[tokio::test]
async fn ids_outside_the_file_store_alphabet_are_not_found_and_touch_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path()).unwrap();
    let info = store
        .create_upload(NewUpload {
            size: Some(3),
            ..NewUpload::default()
        })
        .await
        .unwrap();
    let files_before = files(dir.path());
    let own = UploadId::parse(&info.id).unwrap();
    for foreign in [
        format!("{}.info", info.id),
        format!("{}.fence", info.id),
        format!("{}+abc", info.id),
        "a~b".to_owned(),
        "a=b".to_owned(),
    ] {
        let id = UploadId::parse(&foreign).expect("a valid UploadId");
        let not_found = |r: Result<(), StoreError>| matches!(r, Err(StoreError::NotFound));
        assert!(
            not_found(store.get_info(&id).await.map(|_| ())),
            "{foreign}"
        );
        assert!(
            not_found(store.read_range(&id, 0, 1).await.map(|_| ())),
            "{foreign}"
        );
        let body = stream::iter([Ok(Bytes::from_static(b"pwn"))]).boxed();
        assert!(
            not_found(store.write_chunk(&id, 0, None, body).await.map(|_| ())),
            "{foreign}"
        );
        assert!(not_found(store.truncate(&id, 0, None).await), "{foreign}");
        assert!(
            not_found(store.declare_length(&id, 1, None).await),
            "{foreign}"
        );
        assert!(not_found(store.terminate(&id, None).await), "{foreign}");
        assert!(
            not_found(store.concat(&id, std::slice::from_ref(&own), None).await),
            "{foreign}"
        );
        assert!(
            not_found(store.concat(&own, std::slice::from_ref(&id), None).await),
            "{foreign}"
        );
    }
    assert_eq!(files(dir.path()), files_before);
    assert_eq!(store.get_info(&own).await.unwrap().offset, 0);
}

fn files(dir: &std::path::Path) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    out.sort();
    out
}

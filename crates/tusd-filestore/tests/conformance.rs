//! The file store against the data store conformance suite in
//! `tusd-testsupport`: every `DataStore` contract, every capability it
//! registers with `use_in`, and fencing.

use tusd_core::StoreComposer;
use tusd_filestore::FileStore;
use tusd_testsupport::{check_store, StoreClaims};

#[tokio::test]
async fn the_file_store_passes_the_store_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let mut stores = 0;
    let make = || {
        stores += 1;
        let mut composer = StoreComposer::new();
        FileStore::new(dir.path().join(stores.to_string()))
            .unwrap()
            .use_in(&mut composer);
        composer
    };
    check_store(make, StoreClaims { fencing: true })
        .await
        .assert_passed();
}

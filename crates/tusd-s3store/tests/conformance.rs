//! The S3 store on a real Garage against the data store conformance suite
//! in `tusd-testsupport`: every `DataStore` contract, every capability its
//! `use_in` registers (termination, concatenation, defer-length, listing;
//! not truncation), and fencing.

mod common;

use tusd_core::StoreComposer;
use tusd_s3store::{S3Store, S3StoreOptions};
use tusd_testsupport::{check_store, GarageServer, StoreClaims};

#[tokio::test]
async fn the_s3_store_passes_the_store_conformance_suite() {
    let garage = GarageServer::start().await;
    let client = common::client_for(&garage).await;
    let mut stores = 0;
    let make = || {
        stores += 1;
        let mut options = S3StoreOptions::new(garage.bucket());
        // A prefix per check, so listing sees only its own uploads.
        options.object_prefix = format!("conformance-{stores}");
        let mut composer = StoreComposer::new();
        S3Store::new(client.clone(), options).use_in(&mut composer);
        composer
    };
    check_store(make, StoreClaims { fencing: true })
        .await
        .assert_passed();
}

//! What the S3 store's tests share: a client for a test Garage.

#![allow(dead_code)]

use aws_sdk_s3::Client;
use tokio::io::AsyncReadExt;
use tusd_core::{DataStore, NewUpload, UploadId, UploadInfo};
use tusd_s3store::{s3_client, S3ClientConfig, S3Store, S3StoreOptions};
use tusd_testsupport::GarageServer;

/// The client configuration for `garage`'s endpoint, region and key.
pub fn config_for(garage: &GarageServer) -> S3ClientConfig {
    S3ClientConfig {
        endpoint: Some(garage.endpoint()),
        region: Some(garage.region().to_owned()),
        credentials: Some((
            garage.access_key_id().to_owned(),
            garage.secret_access_key().to_owned(),
        )),
        disable_content_hashes: false,
        // Garage on loopback answers in milliseconds: a request it leaves
        // unanswered fails the test instead of stalling the suite.
        request_timeout: Some(std::time::Duration::from_secs(30)),
    }
}

pub async fn client_for(garage: &GarageServer) -> Client {
    s3_client(&config_for(garage)).await
}

/// A store on `garage`'s bucket under `prefix`, with its own client (as
/// another server would have).
pub async fn store_for(garage: &GarageServer, prefix: &str) -> S3Store {
    let mut options = S3StoreOptions::new(garage.bucket());
    options.object_prefix = prefix.to_owned();
    S3Store::connect(&config_for(garage), options)
        .await
        .expect("the test store connects to Garage")
}

/// A new upload of `len` bytes in `store`: its info and its id.
pub async fn create_sized(store: &S3Store, len: usize) -> (UploadInfo, UploadId) {
    let info = store
        .create_upload(NewUpload {
            size: Some(len as u64),
            ..NewUpload::default()
        })
        .await
        .expect("create_upload");
    let id = UploadId::parse(&info.id).expect("the store's id parses");
    (info, id)
}

/// The keys in the bucket under `prefix`, sorted.
pub async fn keys_under(client: &Client, bucket: &str, prefix: &str) -> Vec<String> {
    let listed = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .send()
        .await
        .expect("ListObjectsV2");
    let mut keys: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    keys.sort();
    keys
}

/// Deterministic bytes that differ at every offset within a part.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

/// The whole of an upload's `len` bytes, read back through the store.
pub async fn read_all(store: &S3Store, id: &UploadId, len: u64) -> Vec<u8> {
    let mut out = Vec::new();
    store
        .read_range(id, 0, len)
        .await
        .expect("read_range")
        .read_to_end(&mut out)
        .await
        .expect("reading");
    out
}

/// The sizes of the parts S3 holds for the upload `id` (tusd's
/// `{object id}+{multipart id}`), its object under `prefix`, in order.
pub async fn part_sizes(client: &Client, bucket: &str, prefix: &str, id: &str) -> Vec<i64> {
    let (object, multipart_id) = id.split_once('+').expect("{object id}+{multipart id}");
    let parts = client
        .list_parts()
        .bucket(bucket)
        .key(format!("{prefix}{object}"))
        .upload_id(multipart_id)
        .send()
        .await
        .expect("ListParts");
    parts.parts().iter().filter_map(|p| p.size()).collect()
}

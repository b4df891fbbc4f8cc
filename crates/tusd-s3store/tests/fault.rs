//! The S3 store on a three-node Garage (replication factor 3): one node is
//! killed in the middle of an upload, and the upload goes on and finishes
//! byte for byte through the nodes that remain (Garage needs a quorum of
//! two of three).

mod common;

use bytes::Bytes;
use futures::{stream, StreamExt};
use tokio::io::AsyncReadExt;
use tusd_core::DataStore;
use tusd_s3store::{S3ClientConfig, S3Store, S3StoreOptions, MIN_PART_SIZE};
use tusd_testsupport::GarageCluster;

const MIB: usize = 1024 * 1024;

fn body(bytes: &[u8]) -> tusd_core::ChunkStream {
    let chunks: Vec<std::io::Result<Bytes>> = bytes
        .chunks(256 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    stream::iter(chunks).boxed()
}

#[tokio::test]
async fn an_upload_survives_one_garage_node_of_three_killed() {
    let mut cluster = GarageCluster::start(3).await;
    let node = cluster.node(0);
    let config = S3ClientConfig {
        endpoint: Some(node.endpoint()),
        region: Some(node.region().to_owned()),
        credentials: Some((
            node.access_key_id().to_owned(),
            node.secret_access_key().to_owned(),
        )),
        disable_content_hashes: false,
    };
    let mut options = S3StoreOptions::new(node.bucket());
    options.part_size = MIN_PART_SIZE;
    let store = S3Store::connect(&config, options).await.unwrap();

    let data = common::pattern(16 * MIB + 9, 3);
    let (_, id) = common::create_sized(&store, data.len()).await;
    let cut = 6 * MIB;
    store
        .write_chunk(&id, 0, None, body(&data[..cut]))
        .await
        .unwrap();

    cluster.node(2).stop();

    let offset = store.get_info(&id).await.unwrap().offset;
    assert_eq!(offset, cut as u64, "the offset survives the node");
    store
        .write_chunk(&id, offset, None, body(&data[cut..]))
        .await
        .unwrap();
    store.finish_upload(&id, None).await.unwrap();
    let mut got = Vec::new();
    store
        .read_range(&id, 0, data.len() as u64)
        .await
        .unwrap()
        .read_to_end(&mut got)
        .await
        .unwrap();
    assert!(
        got == data,
        "the finished object is the upload, byte for byte"
    );
}

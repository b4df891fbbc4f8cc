//! Faults of the S3 server during a write. On a three-node Garage
//! (replication factor 3) one node is killed in the middle of an upload,
//! and the upload goes on and finishes byte for byte through the nodes that
//! remain (Garage needs a quorum of two of three). On one node, Garage is
//! frozen while parts are in flight: the requests it leaves unanswered time
//! out and are sent again, and the write ends, with every byte stored once.

mod common;

use bytes::Bytes;
use futures::{stream, StreamExt};
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
        request_timeout: None,
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
    let got = common::read_all(&store, &id, data.len() as u64).await;
    assert!(
        got == data,
        "the finished object is the upload, byte for byte"
    );
}

/// Garage frozen (SIGSTOP) for a few request timeouts while parts are in
/// flight: no request may wait for ever (a write once hung on an unanswered
/// part), the parts that timed out are sent again once Garage answers, and
/// the upload holds exactly the bytes written.
#[tokio::test]
async fn parts_left_unanswered_by_a_frozen_server_are_sent_again() {
    let garage = std::sync::Arc::new(tusd_testsupport::GarageServer::start().await);
    let mut config = common::config_for(&garage);
    config.request_timeout = Some(std::time::Duration::from_secs(2));
    let mut options = S3StoreOptions::new(garage.bucket());
    options.part_size = MIN_PART_SIZE;
    options.max_buffered_parts = 2;
    options.concurrent_part_uploads = 2;
    let store = S3Store::connect(&config, options).await.unwrap();
    let data = common::pattern(23 * MIB + 3, 5);
    let (info, id) = common::create_sized(&store, data.len()).await;

    // The body freezes Garage once two parts are sealed (their uploads are
    // in flight or done), waits past the request timeout, thaws it, and
    // goes on.
    let freeze_at = 2 * MIN_PART_SIZE as usize + 1;
    let chunks: Vec<Bytes> = data
        .chunks(256 * 1024)
        .map(Bytes::copy_from_slice)
        .collect();
    let frozen = garage.clone();
    let mut sent = 0;
    let body = stream::iter(chunks)
        .then(move |chunk| {
            let garage = frozen.clone();
            let before = sent;
            sent += chunk.len();
            async move {
                if before < freeze_at && freeze_at <= before + chunk.len() {
                    garage.pause();
                    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                    garage.resume();
                }
                Ok::<_, std::io::Error>(chunk)
            }
        })
        .boxed();
    let written = store.write_chunk(&id, 0, None, body).await.unwrap();
    assert_eq!(written, data.len() as u64);
    assert_eq!(store.get_info(&id).await.unwrap().offset, written);

    let client = common::client_for(&garage).await;
    let sizes = common::part_sizes(&client, garage.bucket(), "", &info.id).await;
    let part = MIN_PART_SIZE as i64;
    assert_eq!(
        sizes,
        [part, part, part, part, 3 * MIB as i64 + 3],
        "every part once, whole"
    );
    store.finish_upload(&id, None).await.unwrap();
    let got = common::read_all(&store, &id, data.len() as u64).await;
    assert!(got == data, "the object is the upload, byte for byte");
}

/// A holder whose lock passed to another node while its body streamed (a
/// paused process, its lease lost) is refused at its next part: the newer
/// holder's raise of `.fence` (made here with the S3 client, as another
/// node's store would) stops the write with `Fenced`, no part after the
/// raise reaches the multipart upload, and the newer holder finishes the
/// upload from the offset the store reports.
#[tokio::test]
async fn a_holder_superseded_mid_write_sends_no_further_part() {
    let garage = std::sync::Arc::new(tusd_testsupport::GarageServer::start().await);
    let mut options = S3StoreOptions::new(garage.bucket());
    options.part_size = MIN_PART_SIZE;
    options.max_buffered_parts = 1;
    options.concurrent_part_uploads = 1;
    let store = S3Store::connect(&common::config_for(&garage), options)
        .await
        .unwrap();
    let data = common::pattern(23 * MIB, 8);
    let (info, id) = common::create_sized(&store, data.len()).await;
    let object = info.id.split_once('+').unwrap().0.to_owned();
    let client = common::client_for(&garage).await;
    let holder = tusd_core::FencingToken::new("etcd:test", 10);

    // One MiB into the second part, another holder takes over.
    let raise_at = MIN_PART_SIZE as usize + MIB;
    let chunks: Vec<Bytes> = data
        .chunks(256 * 1024)
        .map(Bytes::copy_from_slice)
        .collect();
    let (raiser, bucket, fence_key) = (client.clone(), garage.bucket(), format!("{object}.fence"));
    let mut sent = 0;
    let body = stream::iter(chunks)
        .then(move |chunk| {
            let (raiser, fence_key) = (raiser.clone(), fence_key.clone());
            let before = sent;
            sent += chunk.len();
            async move {
                if before < raise_at && raise_at <= before + chunk.len() {
                    raiser
                        .put_object()
                        .bucket(bucket)
                        .key(fence_key)
                        .body(br#"{"Issuer":"etcd:test","Token":11,"Retired":[]}"#.to_vec().into())
                        .send()
                        .await
                        .unwrap();
                }
                Ok::<_, std::io::Error>(chunk)
            }
        })
        .boxed();
    let refused = store.write_chunk(&id, 0, Some(&holder), body).await;
    assert!(
        matches!(refused, Err(tusd_core::StoreError::Fenced(_))),
        "the superseded holder is refused: {refused:?}"
    );
    let sizes = common::part_sizes(&client, garage.bucket(), "", &info.id).await;
    // The part sealed before the raise may have been cut off in flight when
    // the write was refused; none after it was sent.
    assert!(
        sizes.is_empty() || sizes == [MIN_PART_SIZE as i64],
        "at most the part sealed before the raise: {sizes:?}"
    );
    let newer = tusd_core::FencingToken::new("etcd:test", 11);
    let offset = store.get_info(&id).await.unwrap().offset;
    assert_eq!(offset, sizes.iter().sum::<i64>() as u64);
    let rest = stream::iter(vec![Ok(Bytes::copy_from_slice(&data[offset as usize..]))]).boxed();
    let written = store
        .write_chunk(&id, offset, Some(&newer), rest)
        .await
        .unwrap();
    assert_eq!(offset + written, data.len() as u64);
    store.finish_upload(&id, Some(&newer)).await.unwrap();
    let got = common::read_all(&store, &id, data.len() as u64).await;
    assert!(got == data, "the newer holder's upload is whole");
}

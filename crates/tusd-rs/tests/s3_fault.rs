//! tusd-rs on a three-node Garage (replication factor 3): one node is
//! killed while uploads are in flight through tusd-rs, and every upload
//! goes on (a client resumes from the offset HEAD reports when a PATCH
//! fails) and finishes byte for byte, read back through tusd-rs and
//! through another surviving node. Garage needs a quorum of two of three.
//!
//! One test function: the credentials go into the process environment.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::*;
use tusd_s3store::{s3_client, S3ClientConfig};
use tusd_testsupport::{GarageCluster, InProcessServer};

const MIB: usize = 1024 * 1024;
const UPLOADS: usize = 3;
const CHUNK: usize = 2 * MIB;

/// Uploads `data` in `CHUNK`-sized PATCHes, resuming from HEAD's offset
/// after a failed one; returns how many PATCHes failed.
async fn upload(url: String, data: Arc<Vec<u8>>, progress: Arc<AtomicU64>) -> usize {
    let mut failures = 0;
    let mut at = 0usize;
    while at < data.len() {
        let end = (at + CHUNK).min(data.len());
        let sent = patch_request(&url, at as u64, data[at..end].to_vec())
            .send()
            .await;
        match sent {
            Ok(r) if r.status() == 204 => at = header_u64(&r, "upload-offset") as usize,
            _ => {
                failures += 1;
                assert!(failures < 20, "{url}: 20 PATCHes failed");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                at = offset(&url).await as usize;
            }
        }
        progress.store(at as u64, Ordering::SeqCst);
    }
    failures
}

#[tokio::test]
async fn uploads_through_tusd_rs_survive_one_garage_node_of_three_killed() {
    let mut cluster = GarageCluster::start(3).await;
    let node = cluster.node(0);
    std::env::set_var("AWS_ACCESS_KEY_ID", node.access_key_id());
    std::env::set_var("AWS_SECRET_ACCESS_KEY", node.secret_access_key());
    std::env::set_var("AWS_REGION", node.region());
    let bucket = node.bucket().to_owned();
    let endpoint = cluster.endpoint(0);
    let part_size = (5 * MIB).to_string();
    let server = InProcessServer::with_args(&[
        "--s3-bucket",
        &bucket,
        "--s3-endpoint",
        &endpoint,
        "--s3-part-size",
        &part_size,
    ])
    .await;

    let mut tasks = Vec::new();
    let mut progress = Vec::new();
    for i in 0..UPLOADS {
        let data: Arc<Vec<u8>> = Arc::new(
            (0..12 * MIB + 5 + i)
                .map(|b| ((b * 7 + i) % 253) as u8)
                .collect(),
        );
        let url = create(&server, data.len() as u64).await;
        let done = Arc::new(AtomicU64::new(0));
        progress.push(done.clone());
        let task = tokio::spawn(upload(url.clone(), data.clone(), done));
        tasks.push((url, data, task));
    }
    let first = progress[0].clone();
    eventually("the first upload is under way", 3000, || {
        let first = first.clone();
        async move { first.load(Ordering::SeqCst) >= 4 * MIB as u64 }
    })
    .await;
    cluster.node(2).stop();
    let killed_at: Vec<u64> = progress.iter().map(|p| p.load(Ordering::SeqCst)).collect();
    assert!(
        killed_at.iter().any(|&at| at < 12 * MIB as u64),
        "the node was killed while uploads were in flight: {killed_at:?}"
    );

    let other = s3_client(&S3ClientConfig {
        endpoint: Some(cluster.endpoint(1)),
        ..S3ClientConfig::default()
    })
    .await;
    for (url, data, task) in tasks {
        let failures = task.await.expect("the upload task panicked");
        let (status, got) = get_bytes(&url).await;
        assert!(
            status == 200 && got == *data,
            "{url}: GET gives the upload byte for byte ({failures} PATCHes failed on the way)"
        );
        let object = id_of(&url).split_once('+').unwrap().0.to_owned();
        let stored = other
            .get_object()
            .bucket(&bucket)
            .key(&object)
            .send()
            .await
            .expect("the finished object, read through another node")
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        assert!(
            stored == data[..],
            "{url}: the object on node 1 is the upload"
        );
    }
    server.shutdown().await.expect("a clean stop");
}

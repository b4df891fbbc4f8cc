//! Two tusd-rs processes sharing one upload directory and one etcd: the
//! cluster mode. Proves the handler and the etcd locker together: a request
//! on one node makes the other node's zombie PATCH let go at once, and a
//! node whose lease cannot be renewed stops writing.

use std::time::Duration;

use bytes::Bytes;
use futures::channel::mpsc;
use futures::SinkExt;
use tusd_testsupport::{EtcdServer, TusServer};

const BIN: &str = env!("CARGO_BIN_EXE_tusd-rs");
const CHUNK: usize = 64 * 1024;

fn node(dir: &std::path::Path, etcd: &EtcdServer, extra: &[&str]) -> TusServer {
    let endpoint = etcd.endpoint();
    let mut args = vec!["--etcd-endpoints", endpoint.as_str()];
    args.extend_from_slice(extra);
    TusServer::start_in(BIN, dir, &args)
}

async fn create(server: &TusServer, length: usize) -> String {
    let r = reqwest::Client::new()
        .post(server.files_url())
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", length.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let url = r.headers()["location"].to_str().unwrap();
    url.rsplit('/').next().unwrap().to_owned()
}

/// Starts a PATCH whose body arrives only as chunks are pushed into the
/// returned sender.
fn slow_patch(
    url: String,
    offset: usize,
) -> (
    mpsc::Sender<Result<Bytes, std::io::Error>>,
    tokio::task::JoinHandle<reqwest::Response>,
) {
    let (tx, rx) = mpsc::channel(1);
    let task = tokio::spawn(async move {
        reqwest::Client::new()
            .patch(url)
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Offset", offset.to_string())
            .header("Content-Type", "application/offset+octet-stream")
            .body(reqwest::Body::wrap_stream(rx))
            .send()
            .await
            .unwrap()
    });
    (tx, task)
}

/// Waits, in a bounded loop, until the data file holds `len` bytes.
async fn wait_for_file_len(path: &std::path::Path, len: u64) {
    for _ in 0..600 {
        if std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) >= len {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} never reached {len} bytes", path.display());
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[tokio::test]
async fn head_on_one_node_stops_a_zombie_patch_on_the_other() {
    let etcd = EtcdServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let a = node(dir.path(), &etcd, &[]);
    let b = node(dir.path(), &etcd, &[]);
    let total = 16 * CHUNK;
    let data = pattern(total);
    let id = create(&a, total).await;
    let data_file = dir.path().join(&id);

    // The client's first PATCH goes to node A and stalls after 4 chunks,
    // as when a mobile connection drops without a FIN.
    let (mut tx, zombie) = slow_patch(format!("{}{id}", a.files_url()), 0);
    for chunk in data[..4 * CHUNK].chunks(CHUNK) {
        tx.send(Ok(Bytes::copy_from_slice(chunk))).await.unwrap();
    }
    wait_for_file_len(&data_file, 4 * CHUNK as u64).await;

    // The client retries through the load balancer and lands on node B.
    let head = reqwest::Client::new()
        .head(format!("{}{id}", b.files_url()))
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200, "node B log:\n{}", b.log());
    assert_eq!(head.headers()["upload-offset"], (4 * CHUNK).to_string());

    // Node A let go of the upload and told its (zombie) client where it stopped.
    let zombie = zombie.await.unwrap();
    assert_eq!(zombie.status(), 204);
    assert_eq!(zombie.headers()["upload-offset"], (4 * CHUNK).to_string());
    drop(tx);

    // The retry finishes the upload on node B.
    let rest = reqwest::Client::new()
        .patch(format!("{}{id}", b.files_url()))
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", (4 * CHUNK).to_string())
        .header("Content-Type", "application/offset+octet-stream")
        .body(data[4 * CHUNK..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), 204, "node B log:\n{}", b.log());
    let stored = reqwest::get(format!("{}{id}", a.files_url()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(
        stored[..] == data[..],
        "stored bytes differ from the upload"
    );
}

#[tokio::test]
async fn a_node_that_loses_its_lease_stops_the_patch_with_423() {
    let mut etcd = EtcdServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let a = node(dir.path(), &etcd, &["--etcd-ttl", "3"]);
    let total = 16 * CHUNK;
    let data = pattern(total);
    let id = create(&a, total).await;
    let data_file = dir.path().join(&id);

    let (mut tx, patch) = slow_patch(format!("{}{id}", a.files_url()), 0);
    tx.send(Ok(Bytes::copy_from_slice(&data[..CHUNK])))
        .await
        .unwrap();
    wait_for_file_len(&data_file, CHUNK as u64).await;

    // etcd stops answering: node A can no longer renew its lease and must
    // give the lock up rather than keep writing.
    etcd.member().pause();
    let response = tokio::time::timeout(Duration::from_secs(60), patch)
        .await
        .expect("the PATCH never ended after the lease was lost")
        .unwrap();
    etcd.member().resume();
    assert_eq!(response.status(), 423, "node A log:\n{}", a.log());
    assert!(response.headers().contains_key("retry-after"));
    let reason = response.text().await.unwrap();
    assert!(reason.contains("lost"), "{reason}");
    assert_eq!(reason.lines().count(), 1);
    // Nothing was written after the body stopped, and what was written counts.
    let _ = tx
        .send(Ok(Bytes::copy_from_slice(&data[CHUNK..2 * CHUNK])))
        .await;
    let stored = std::fs::read(&data_file).unwrap();
    assert_eq!(&stored[..], &data[..stored.len()]);
    assert!(stored.len() < 2 * CHUNK);
}

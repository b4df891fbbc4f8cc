//! Two tusd-rs processes sharing one upload directory and one etcd: the
//! cluster mode. Proves the handler and the etcd locker together: a request
//! on one node makes the other node's zombie PATCH let go at once, a node
//! whose lease cannot be renewed stops writing, and a holder that never lets
//! go (here `etcdctl lock`) makes requests end in 423 after the lock wait.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::AsyncWriteExt;
use tusd_testsupport::{EtcdServer, TusServer};

const CHUNK: usize = 64 * 1024;

fn node(dir: &std::path::Path, etcd: &EtcdServer, extra: &[&str]) -> TusServer {
    let endpoint = etcd.endpoint();
    let mut args = vec!["--etcd-endpoints", endpoint.as_str()];
    args.extend_from_slice(extra);
    TusServer::start_in(BIN, dir, &args)
}

/// The same upload as seen through another node.
fn on(server: &TusServer, url: &str) -> String {
    format!("{}{}", server.files_url(), id_of(url))
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
    let url = create(&a, total as u64).await;

    // The client's first PATCH goes to node A and stalls after 4 chunks,
    // as when a mobile connection drops without a FIN.
    let (writer, zombie) = stalled_patch(&a, &url, &data[..4 * CHUNK]).await;

    // The client retries through the load balancer and lands on node B.
    assert_eq!(
        offset(&on(&b, &url)).await,
        4 * CHUNK as u64,
        "node B log:\n{}",
        b.log()
    );

    // Node A let go of the upload and told its (zombie) client where it stopped.
    let zombie = zombie.await.unwrap();
    assert_eq!(zombie.status(), 204);
    assert_eq!(header_u64(&zombie, "upload-offset"), 4 * CHUNK as u64);
    drop(writer);

    // The retry finishes the upload on node B.
    let rest = patch(&on(&b, &url), 4 * CHUNK as u64, data[4 * CHUNK..].to_vec()).await;
    assert_eq!(rest.status(), 204, "node B log:\n{}", b.log());
    let (status, stored) = get_bytes(&url).await;
    assert_eq!(status, 200);
    assert!(stored == data, "stored bytes differ from the upload");
}

#[tokio::test]
async fn a_node_that_loses_its_lease_stops_the_patch_with_423() {
    let mut etcd = EtcdServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let a = node(dir.path(), &etcd, &["--etcd-ttl", "3"]);
    let total = 16 * CHUNK;
    let data = pattern(total);
    let url = create(&a, total as u64).await;

    let (mut writer, patching) = stalled_patch(&a, &url, &data[..CHUNK]).await;

    // etcd stops answering: node A can no longer renew its lease and must
    // give the lock up rather than keep writing.
    etcd.member().pause();
    let response = tokio::time::timeout(Duration::from_secs(60), patching)
        .await
        .expect("the PATCH never ended after the lease was lost")
        .unwrap();
    etcd.member().resume();
    assert_eq!(response.status(), 423, "node A log:\n{}", a.log());
    assert!(response.headers().contains_key("retry-after"));
    let reason = response.text().await.unwrap();
    assert!(reason.contains("lost"), "{reason}");
    assert_eq!(reason.lines().count(), 1);

    // Bytes sent after the loss are not written; what was written is intact.
    let _ = writer.write_all(&data[CHUNK..2 * CHUNK]).await;
    let stored = std::fs::read(dir.path().join(id_of(&url))).unwrap();
    assert_eq!(stored.len(), CHUNK);
    assert_eq!(&stored[..], &data[..CHUNK]);
}

#[tokio::test]
async fn a_holder_that_never_lets_go_gets_other_requests_423() {
    let etcd = EtcdServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let a = node(dir.path(), &etcd, &["--acquire-lock-timeout", "1s"]);
    let url = create(&a, 10).await;
    assert_eq!(patch(&url, 0, &b"hello"[..]).await.status(), 204);

    // `etcdctl lock` on the upload's lock name: a holder outside tusd-rs that
    // ignores release requests, as a stuck Go tusd node would.
    let name = format!("/tusd{}", id_of(&url));
    let mut holder = tusd_testsupport::etcdctl_lock(&etcd.endpoints(), &name);

    let refused = head(&url).await;
    assert_eq!(refused.status(), 423, "node log:\n{}", a.log());
    assert!(refused.headers().contains_key("retry-after"));
    let refused = patch(&url, 5, &b"world"[..]).await;
    assert_eq!(refused.status(), 423, "node log:\n{}", a.log());
    assert!(refused.headers().contains_key("retry-after"));
    let reason = refused.text().await.unwrap();
    assert_eq!(
        reason.trim().lines().count(),
        1,
        "one-line reason: {reason:?}"
    );
    assert_eq!(data_len(&a, &url), 5, "the refused PATCH wrote nothing");

    // Once etcdctl lets go (SIGTERM: it unlocks), the upload is usable again.
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &holder.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    holder.wait().unwrap();
    // (etcdctl 3.4 may leave its key to the lease's expiry instead.)
    eventually("the upload is usable again", 1500, || async {
        head(&url).await.status() == 200
    })
    .await;
    assert_eq!(offset(&url).await, 5);
    assert_eq!(patch(&url, 5, &b"world"[..]).await.status(), 204);
    assert_eq!(get_bytes(&url).await, (200, b"helloworld".to_vec()));
}

#[test]
fn an_unreachable_etcd_stops_start_up_with_the_endpoints_named() {
    let endpoint = format!("http://127.0.0.1:{}", tusd_testsupport::ports::free_port());
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(BIN)
        .args(["--host", "127.0.0.1", "--port", "0", "--upload-dir"])
        .arg(dir.path())
        .args([
            "--etcd-endpoints",
            &endpoint,
            "--etcd-connect-timeout",
            "1s",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&endpoint), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one-line error: {stderr}");
}

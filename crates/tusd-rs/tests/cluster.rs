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

/// A node frozen (`SIGSTOP`: a GC pause, a stalled VM) past its lease while
/// it streams a PATCH. Another node takes the upload over and writes; when
/// the frozen node wakes, its client's next bytes are already in its socket,
/// and its own loss timer and its write race. Whichever wins, the stale
/// bytes never reach the file: the lease-loss signal stops the body, or the
/// file store's fence refuses the write.
#[tokio::test]
async fn a_node_paused_past_its_ttl_never_writes_after_its_successor() {
    let (zombie, a) = paused_past_ttl_then_woken(&[]).await;
    assert_eq!(zombie.status(), 423, "node A log:\n{}", a.log());
}

/// The same pause, with node A's request bodies deaf to lock loss and
/// release requests (a fault-injection switch): the file store's fence alone
/// must refuse the stale write, before A's own signals could have helped.
#[tokio::test]
async fn the_store_alone_refuses_a_node_that_wakes_after_its_successor() {
    let (zombie, a) = paused_past_ttl_then_woken(&["--fault-ignore-lock-signals"]).await;
    assert_eq!(zombie.status(), 423, "node A log:\n{}", a.log());
    let reason = zombie.text().await.unwrap();
    assert!(reason.contains("taken over"), "{reason}");
    assert!(
        a.log().contains("store refused a stale lock holder"),
        "node A log:\n{}",
        a.log()
    );
}

/// Node A streams a PATCH and is frozen past its 2 s lease; node B takes the
/// upload over and stores 3 more chunks; A's client sends bytes of its own
/// meanwhile and A is woken. Checks that the file holds exactly what B's
/// client was told is stored and that B can finish the upload; returns A's
/// answer and A itself.
async fn paused_past_ttl_then_woken(a_args: &[&str]) -> (reqwest::Response, TusServer) {
    let etcd = EtcdServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["--etcd-ttl", "2"];
    args.extend_from_slice(a_args);
    let a = node(dir.path(), &etcd, &args);
    let b = node(dir.path(), &etcd, &[]);
    let total = 8 * CHUNK;
    let data = pattern(total);
    let url = create(&a, total as u64).await;
    let (mut writer, zombie) = stalled_patch(&a, &url, &data[..2 * CHUNK]).await;

    a.signal(libc::SIGSTOP);
    // The lock goes to node B once A's lease expires in etcd.
    assert_eq!(offset(&on(&b, &url)).await, 2 * CHUNK as u64);
    let taken = patch(
        &on(&b, &url),
        2 * CHUNK as u64,
        data[2 * CHUNK..5 * CHUNK].to_vec(),
    )
    .await;
    assert_eq!(taken.status(), 204, "node B log:\n{}", b.log());
    // A's client goes on sending what it believes belongs at 2 chunks; the
    // bytes wait in A's socket for A to wake.
    writer.write_all(&vec![0xEE; CHUNK]).await.unwrap();
    writer.flush().await.unwrap();
    a.signal(libc::SIGCONT);

    let zombie = tokio::time::timeout(Duration::from_secs(30), zombie)
        .await
        .expect("node A's PATCH never ended after it woke")
        .unwrap();
    drop(writer);
    let stored = std::fs::read(dir.path().join(id_of(&url))).unwrap();
    assert!(
        stored == data[..5 * CHUNK],
        "the file holds {} bytes, not the {} node B stored (node A log:\n{})",
        stored.len(),
        5 * CHUNK,
        a.log()
    );
    let record = tusd_filestore::fence_record(dir.path(), id_of(&url))
        .unwrap()
        .expect("a fence record");
    assert!(record.contains("\"Issuer\":\"etcd:"), "{record}");

    let rest = patch(&on(&b, &url), 5 * CHUNK as u64, data[5 * CHUNK..].to_vec()).await;
    assert_eq!(rest.status(), 204);
    assert!(get_bytes(&on(&b, &url)).await.1 == data);
    (zombie, a)
}

/// Fencing tokens of different lockers are not comparable, so the fence
/// record names its issuer. A restarted node (a fresh memory locker, counting
/// from 1 again) and a switch to the etcd locker each take the upload over
/// instead of being refused as stale, and each retires the issuer before it.
#[tokio::test]
async fn a_restart_or_a_switch_of_locker_never_locks_an_upload_out() {
    let etcd = EtcdServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let fence = |url: &str| -> serde_json::Value {
        let record = tusd_filestore::fence_record(dir.path(), id_of(url))
            .unwrap()
            .expect("a fence record");
        serde_json::from_str(&record).unwrap()
    };

    let mut first = TusServer::start_in(BIN, dir.path(), &[]);
    let url = create(&first, 9).await;
    assert_eq!(patch(&url, 0, &b"abc"[..]).await.status(), 204);
    let before = fence(&url);
    assert!(before["Issuer"].as_str().unwrap().starts_with("memory:"));
    first.terminate();

    let mut restarted = TusServer::start_in(BIN, dir.path(), &[]);
    let url = on(&restarted, &url);
    assert_eq!(patch(&url, 3, &b"def"[..]).await.status(), 204);
    let after = fence(&url);
    assert_ne!(after["Issuer"], before["Issuer"]);
    assert_eq!(after["Retired"], serde_json::json!([before["Issuer"]]));
    restarted.terminate();

    let clustered = node(dir.path(), &etcd, &[]);
    let url = on(&clustered, &url);
    assert_eq!(patch(&url, 6, &b"ghi"[..]).await.status(), 204);
    let switched = fence(&url);
    assert!(switched["Issuer"].as_str().unwrap().starts_with("etcd:"));
    assert_eq!(
        switched["Retired"],
        serde_json::json!([before["Issuer"], after["Issuer"]])
    );
    assert_eq!(get_bytes(&url).await, (200, b"abcdefghi".to_vec()));
}

/// Real etcd fencing tokens handed straight to the file store: a holder
/// whose lease went (revoked here, as expiry would) is refused by the store
/// after its successor wrote, whether or not it has heard of the loss.
#[tokio::test]
async fn the_file_store_refuses_a_holder_whose_etcd_lease_is_gone() {
    use tusd_handler::{DataStore, NewUpload, UploadId};

    let etcd = EtcdServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = tusd_filestore::FileStore::new(dir.path()).unwrap();
    let created = store
        .create_upload(NewUpload {
            size: Some(6),
            ..NewUpload::default()
        })
        .await
        .unwrap();
    let id = UploadId::parse(&created.id).unwrap();
    let first = etcd3locker::Etcd3Locker::new(etcd.client().await);
    let second = etcd3locker::Etcd3Locker::new(etcd.client().await);
    let deadline = || tokio::time::Instant::now() + Duration::from_secs(10);
    let stale = tusd_handler::Locker::lock(&first, &id, deadline())
        .await
        .unwrap();

    // The first holder's lease disappears behind its back.
    let keys = tusd_testsupport::etcdctl(&etcd.endpoints())
        .args(["get", "--prefix", "--keys-only", &format!("/tusd{id}/")])
        .output()
        .unwrap();
    let key = String::from_utf8(keys.stdout).unwrap();
    let lease = key.trim().rsplit('/').next().unwrap().to_owned();
    let revoked = tusd_testsupport::etcdctl(&etcd.endpoints())
        .args(["lease", "revoke", &lease])
        .status()
        .unwrap();
    assert!(revoked.success());

    let successor = tusd_handler::Locker::lock(&second, &id, deadline())
        .await
        .unwrap();
    let (old, new) = (
        stale.fencing_token().unwrap().clone(),
        successor.fencing_token().unwrap().clone(),
    );
    assert_eq!(old.issuer(), new.issuer());
    assert!(new.value() > old.value());
    let body = |b: &'static [u8]| -> tusd_handler::ChunkStream {
        Box::pin(futures::stream::iter([Ok(bytes::Bytes::from_static(b))]))
    };
    store
        .write_chunk(&id, 0, Some(&new), body(b"new"))
        .await
        .unwrap();
    let refused = store.write_chunk(&id, 3, Some(&old), body(b"old")).await;
    assert!(
        matches!(refused, Err(tusd_handler::StoreError::Fenced(_))),
        "{refused:?}"
    );
    assert_eq!(std::fs::read(dir.path().join(id.as_str())).unwrap(), b"new");
    successor.unlock().await.unwrap();
    drop(stale);
}

/// While etcd does not answer, requests that need a lock get a 503 the
/// client can act on: one line, `Retry-After`, no etcd addresses or gRPC
/// internals (those go to the log).
#[tokio::test]
async fn an_etcd_outage_is_a_one_line_503_without_internal_addresses() {
    let mut etcd = EtcdServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Long enough for at least one whole etcd attempt (2 s) to fail: a lock
    // request whose only attempt is cut off by the caller's deadline counts
    // as "still held" (423), which a loaded machine produced once at 3 s.
    let a = node(dir.path(), &etcd, &["--acquire-lock-timeout", "6s"]);
    let url = create(&a, 10).await;
    etcd.member().stop();
    let answer = patch(&url, 0, &b"hello"[..]).await;
    assert_eq!(answer.status(), 503, "node log:\n{}", a.log());
    assert!(answer.headers().contains_key("retry-after"));
    let text = answer.text().await.unwrap();
    assert_eq!(text.trim_end().lines().count(), 1, "{text:?}");
    for internal in ["127.0.0.1", "http://", "tonic", "status:", "transport"] {
        assert!(!text.contains(internal), "{internal:?} in {text:?}");
    }
    assert_eq!(data_len(&a, &url), 0);
    assert!(a.log().contains("lock service unavailable"), "{}", a.log());
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

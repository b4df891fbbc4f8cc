//! Hooks in a cluster: two tusd-rs processes sharing one upload directory
//! and one etcd, one HTTP hook receiver. Each event fires once, on the node
//! that did the work.
#![cfg(feature = "etcd")]

mod common;
#[path = "hooks/http_receiver.rs"]
mod http_receiver;

use std::time::Duration;

use common::*;
use http_receiver::Receiver;
use tusd_testsupport::{EtcdServer, TusServer};

const CHUNK: usize = 64 * 1024;

#[tokio::test]
async fn an_upload_resumed_on_the_other_node_gets_one_post_finish_from_that_node() {
    let etcd = EtcdServer::start().await;
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let endpoint = etcd.endpoint();
    let hooks = receiver.url();
    let args = [
        "--etcd-endpoints",
        endpoint.as_str(),
        "--hooks-http",
        hooks.as_str(),
        "--hooks-enabled-events",
        "",
    ];
    let a = TusServer::start_in(BIN, dir.path(), &args);
    let b = TusServer::start_in(BIN, dir.path(), &args);
    let total = 8 * CHUNK;
    let data: Vec<u8> = (0..total).map(|i| (i * 7 % 251) as u8).collect();
    let url = create(&a, total as u64).await;
    let id = id_of(&url).to_owned();
    let on_b = format!("{}{}", b.files_url(), id);

    // The first PATCH stalls on node A; the client resumes on node B, whose
    // HEAD makes A let go, and finishes there.
    let (writer, zombie) = stalled_patch(&a, &url, &data[..3 * CHUNK]).await;
    let resumed_at = offset(&on_b).await;
    assert_eq!(zombie.await.unwrap().status(), 204);
    drop(writer);
    let last = patch(&on_b, resumed_at, data[resumed_at as usize..].to_vec()).await;
    assert_eq!(last.status(), 204, "node B log:\n{}", b.log());
    assert_eq!(get_bytes(&url).await.1, data);

    eventually("post-finish", 250, || {
        let found = !receiver.calls_of("post-finish", &id).is_empty();
        async move { found }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let finished = receiver.calls_of("post-finish", &id);
    assert_eq!(finished.len(), 1, "{finished:?}");
    let host = finished[0]["Event"]["HTTPRequest"]["Header"]["Host"][0]
        .as_str()
        .unwrap();
    assert!(
        host.ends_with(&format!(":{}", b.port())),
        "post-finish came from {host}"
    );
    assert_eq!(finished[0]["Event"]["Upload"]["Offset"], total);
    assert_eq!(receiver.calls_of("pre-finish", &id).len(), 1);
    assert_eq!(receiver.calls_of("post-create", &id).len(), 1);
}

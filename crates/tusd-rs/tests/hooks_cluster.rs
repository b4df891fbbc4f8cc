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
use tokio::io::AsyncWriteExt;
use tusd_testsupport::{EtcdServer, TusServer};

const CHUNK: usize = 64 * 1024;

/// Two tusd-rs processes sharing an upload directory and an etcd, both
/// sending every tusd hook to one receiver; the first value keeps the
/// directory and etcd alive (bound first, it is dropped last).
async fn two_nodes() -> (
    (tempfile::TempDir, EtcdServer),
    Receiver,
    TusServer,
    TusServer,
) {
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
    ((dir, etcd), receiver, a, b)
}

#[tokio::test]
async fn an_upload_resumed_on_the_other_node_gets_one_post_finish_from_that_node() {
    let (_shared, receiver, a, b) = two_nodes().await;
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

/// The race the completion point is built for: node A's PATCH carrying an
/// upload's last bytes is in flight when node B, asked by the client, sends
/// A a release request. Either A stores the last byte first (and finishes
/// the upload under its lock, B then seeing it complete) or A lets go first
/// (and the client finishes on B); never both, never neither. Every round
/// shifts the release request against the last bytes by a little, to land
/// at different points of A's PATCH. Each upload must end complete, with
/// exactly one `pre-finish` and one `post-finish`.
#[tokio::test]
async fn post_finish_fires_once_when_the_last_patch_races_a_release_request() {
    let (_shared, receiver, a, b) = two_nodes().await;
    let total = 4 * CHUNK;
    let data: Vec<u8> = (0..total).map(|i| (i * 13 % 251) as u8).collect();
    let mut uploads = Vec::new();
    for round in 0..20u64 {
        let url = create(&a, total as u64).await;
        let on_b = format!("{}{}", b.files_url(), id_of(&url));
        let (mut writer, last_patch) = stalled_patch(&a, &url, &data[..3 * CHUNK]).await;
        // The release request leaves first, the last bytes 0 to 152 ms
        // later: B's lock attempt, its release request and A's letting go
        // take tens of milliseconds, so the rounds cross from A storing the
        // last byte first to A letting go first (where exactly depends on
        // the machine's load).
        let bytes_wait = Duration::from_millis(round * 8);
        let release_wait = Duration::ZERO;
        let last_bytes = async {
            tokio::time::sleep(bytes_wait).await;
            let _ = writer.write_all(&data[3 * CHUNK..]).await;
            let _ = writer.flush().await;
            drop(writer);
        };
        let release = async {
            tokio::time::sleep(release_wait).await;
            head(&on_b).await.status()
        };
        let ((), head_status) = tokio::join!(last_bytes, release);
        assert_eq!(head_status, 200, "round {round}; node B log:\n{}", b.log());
        let answered = last_patch.await.unwrap();
        assert_eq!(
            answered.status(),
            204,
            "round {round}; node A log:\n{}",
            a.log()
        );
        // The client goes on from where the cluster says the upload is.
        let at = offset(&on_b).await;
        let finished_on_a = at == total as u64;
        if !finished_on_a {
            let rest = patch(&on_b, at, data[at as usize..].to_vec()).await;
            assert_eq!(
                rest.status(),
                204,
                "round {round}; node B log:\n{}",
                b.log()
            );
        }
        uploads.push((url, finished_on_a));
    }

    tokio::time::sleep(Duration::from_millis(500)).await;
    let outcomes: Vec<_> = uploads
        .iter()
        .map(|(_, on_a)| if *on_a { "A" } else { "B" })
        .collect();
    for (url, finished_on_a) in &uploads {
        let id = id_of(url);
        assert_eq!(get_bytes(url).await, (200, data.clone()), "{id}");
        eventually("post-finish", 250, || {
            let found = !receiver.calls_of("post-finish", id).is_empty();
            async move { found }
        })
        .await;
        let finished = receiver.calls_of("post-finish", id);
        assert_eq!(
            finished.len(),
            1,
            "{id} (outcomes {outcomes:?}): {finished:?}"
        );
        assert_eq!(finished[0]["Event"]["Upload"]["Offset"], total);
        assert_eq!(receiver.calls_of("pre-finish", id).len(), 1, "{id}");
        let host = finished[0]["Event"]["HTTPRequest"]["Header"]["Host"][0]
            .as_str()
            .unwrap();
        let node = if *finished_on_a { &a } else { &b };
        assert!(
            host.ends_with(&format!(":{}", node.port())),
            "{id}: post-finish came from {host}"
        );
    }
    eprintln!("finished on node: {outcomes:?}");
}

//! SIGTERM: an idle server exits 0; one with a slow PATCH in flight stops
//! that body after `--shutdown-timeout`, keeps its bytes and exits 0.

mod common;

use common::*;
use tokio::io::AsyncWriteExt;
use tusd_testsupport::TusServer;

const SIGTERM: i32 = 15;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_server_exits_0_on_sigterm() {
    let mut server = TusServer::start(BIN, &[]);
    let url = create(&server, 3).await;
    assert_eq!(patch(&url, 0, &b"abc"[..]).await.status(), 204);
    let status = tokio::task::block_in_place(|| server.terminate());
    assert!(status.success(), "{status:?}\n{}", server.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_patch_is_stopped_and_kept_at_shutdown() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("uploads");
    let mut server = TusServer::start_in(BIN, &dir, &["--shutdown-timeout", "1s"]);
    let url = create(&server, 100).await;
    let (mut writer, body) = slow_body();
    let patching = tokio::spawn({
        let url = url.clone();
        async move {
            let r = patch(&url, 0, body).await;
            (
                r.status().as_u16(),
                r.headers().get("upload-offset").cloned(),
            )
        }
    });
    writer.write_all(b"0123456789").await.unwrap();
    let (s, u) = (&server, &url);
    eventually("bytes on disk", 500, || async move { data_len(s, u) >= 10 }).await;

    server.signal(SIGTERM);
    // The body stays open: only the shutdown timeout can end it.
    let (status, offset_header) = patching.await.unwrap();
    assert_eq!(status, 204, "{}", server.log());
    assert_eq!(offset_header.unwrap(), "10");
    let exit = tokio::task::block_in_place(|| server.terminate());
    assert!(exit.success(), "{exit:?}\n{}", server.log());
    drop(writer);

    // A new server on the same directory resumes from what was kept.
    let again = TusServer::start_in(BIN, &dir, &[]);
    let url = format!("{}{}", again.files_url(), id_of(&url));
    assert_eq!(offset(&url).await, 10);
    assert_eq!(get_bytes(&url).await.1, b"0123456789");
}

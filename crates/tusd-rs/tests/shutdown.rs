//! SIGTERM: an idle server exits 0; one with a slow PATCH in flight stops
//! that body after `--shutdown-timeout`, keeps its bytes and exits 0.

mod common;

use common::*;
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
    let (writer, patching) = stalled_patch(&server, &url, b"0123456789").await;

    server.signal(SIGTERM);
    // The body stays open: only the shutdown timeout can end it.
    let patched = patching.await.unwrap();
    assert_eq!(patched.status(), 204, "{}", server.log());
    assert_eq!(header_u64(&patched, "upload-offset"), 10);
    let exit = tokio::task::block_in_place(|| server.terminate());
    assert!(exit.success(), "{exit:?}\n{}", server.log());
    drop(writer);

    // A new server on the same directory resumes from what was kept.
    let again = TusServer::start_in(BIN, &dir, &[]);
    let url = format!("{}{}", again.files_url(), id_of(&url));
    assert_eq!(offset(&url).await, 10);
    assert_eq!(get_bytes(&url).await.1, b"0123456789");
}

//! `--network-timeout`: a body that stops arriving is ended by the server,
//! which keeps what arrived and frees the upload for the client's retry.

mod common;

use common::*;
use tusd_testsupport::TusServer;

#[tokio::test]
async fn a_stalled_body_is_ended_and_its_bytes_kept() {
    let server = TusServer::start(BIN, &["--network-timeout", "300ms"]);
    let url = create(&server, 100).await;
    let (writer, patching) = stalled_patch(&server, &url, b"0123456789").await;
    // The writer stays open and silent: only the server's timeout can end
    // the request.
    let response = tokio::time::timeout(std::time::Duration::from_secs(60), patching)
        .await
        .expect("the stalled PATCH was never ended")
        .unwrap();
    drop(writer);
    assert_eq!(data_len(&server, &url), 10);
    assert_eq!(offset(&url).await, 10);
    assert_eq!(get_bytes(&url).await.1, b"0123456789");
    // The client, if it is still there, learns where to resume.
    assert_eq!(response.status(), 204);
    assert_eq!(header_u64(&response, "upload-offset"), 10);
}

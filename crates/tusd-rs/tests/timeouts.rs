//! `--network-timeout`: a body that stops arriving is ended by the server,
//! which keeps what arrived and frees the upload for the client's retry.

mod common;

use common::*;
use tokio::io::AsyncWriteExt;
use tusd_testsupport::TusServer;

#[tokio::test]
async fn a_stalled_body_is_ended_and_its_bytes_kept() {
    let server = TusServer::start(BIN, &["--network-timeout", "300ms"]);
    let url = create(&server, 100).await;
    let (mut writer, body) = slow_body();
    let patching = tokio::spawn({
        let url = url.clone();
        async move { patch(&url, 0, body).await }
    });
    writer.write_all(b"0123456789").await.unwrap();
    writer.flush().await.unwrap();
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

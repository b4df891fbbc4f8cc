//! The server as a library: [`tusd_rs::run`] serves until its shutdown
//! future completes and returns start-up failures instead of serving.

mod common;

use common::*;
use tusd_testsupport::InProcessServer;

#[tokio::test]
async fn run_serves_until_shutdown_then_returns_ok() {
    let server = InProcessServer::with_args(&[]).await;
    let url = create(&server, 3).await;
    assert_eq!(patch(&url, 0, &b"abc"[..]).await.status(), 204);
    let port = server.port();
    server.shutdown().await.expect("a clean stop");
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "the listener is closed after run returns"
    );
}

#[tokio::test]
async fn a_bad_setting_is_returned_naming_its_flag() {
    let server = InProcessServer::with_args(&["--cors-allow-origin", "("]).await;
    let error = server.shutdown().await.unwrap_err().to_string();
    assert!(
        error.starts_with("--cors-allow-origin is not a valid regular expression"),
        "{error}"
    );
}

#[tokio::test]
async fn an_unusable_upload_dir_is_returned() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let dir = file.path().join("uploads");
    let server = InProcessServer::with_args_in(&dir, &[]).await;
    let error = server.shutdown().await.unwrap_err();
    assert!(matches!(error, tusd_rs::Error::UploadDir { .. }), "{error}");
}

#[cfg(not(feature = "etcd"))]
#[tokio::test]
async fn without_the_etcd_feature_etcd_endpoints_are_a_clear_error() {
    let server = InProcessServer::with_args(&["--etcd-endpoints", "http://127.0.0.1:2379"]).await;
    let error = server.shutdown().await.unwrap_err().to_string();
    assert!(error.contains("without the etcd locker"), "{error}");
}

#[cfg(not(feature = "s3"))]
#[tokio::test]
async fn without_the_s3_feature_an_s3_bucket_is_a_clear_error() {
    let server = InProcessServer::with_args(&["--s3-bucket", "uploads"]).await;
    let error = server.shutdown().await.unwrap_err().to_string();
    assert!(error.contains("without the S3 store"), "{error}");
}

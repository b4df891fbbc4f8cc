//! Termination over real HTTP.

mod common;

use common::*;
use reqwest::Method;
use tusd_testsupport::InProcessServer;

#[tokio::test]
async fn delete_removes_the_upload_and_its_files() {
    let server = InProcessServer::with_args(&[]).await;
    let url = create(&server, 10).await;
    assert_eq!(patch(&url, 0, &b"abc"[..]).await.status(), 204);
    let r = tus(Method::DELETE, &url).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(head(&url).await.status(), 404);
    assert_eq!(patch(&url, 3, &b"d"[..]).await.status(), 404);
    assert_eq!(
        tus(Method::DELETE, &url).send().await.unwrap().status(),
        404
    );
    assert!(stored_names(server.upload_dir()).is_empty());
}

#[tokio::test]
async fn finished_uploads_can_be_deleted_too() {
    let server = InProcessServer::with_args(&[]).await;
    let url = create(&server, 3).await;
    assert_eq!(patch(&url, 0, &b"abc"[..]).await.status(), 204);
    assert_eq!(
        tus(Method::DELETE, &url).send().await.unwrap().status(),
        204
    );
    assert_eq!(get_bytes(&url).await.0, 404);
}

#[tokio::test]
async fn disable_termination_refuses_delete_and_keeps_the_upload() {
    let server = InProcessServer::with_args(&["--disable-termination"]).await;
    let options = client()
        .request(Method::OPTIONS, server.files_url())
        .send()
        .await
        .unwrap();
    let extensions = options.headers()["tus-extension"].to_str().unwrap();
    assert!(!extensions.contains("termination"), "{extensions}");

    let url = create(&server, 3).await;
    let r = tus(Method::DELETE, &url).send().await.unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    assert_eq!(offset(&url).await, 0);
    assert_eq!(uploads_in(server.upload_dir()).len(), 1);
}

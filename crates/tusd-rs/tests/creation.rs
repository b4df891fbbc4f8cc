//! Creation, creation-with-upload, creation-defer-length and
//! `Upload-Metadata` over real HTTP.

mod common;

use common::*;
use reqwest::Method;
use tusd_testsupport::InProcessServer;

#[tokio::test]
async fn post_creates_an_empty_upload_with_its_metadata() {
    let server = InProcessServer::with_args(&[]).await;
    let url = create_with(
        &server,
        &[
            ("Upload-Length", "5"),
            ("Upload-Metadata", "filename aGkudHh0,empty"),
        ],
    )
    .await;
    let id = id_of(&url);
    assert_eq!(uploads_in(server.upload_dir()), [storage_name(id)]);
    let r = head(&url).await;
    assert_eq!(r.headers()["upload-offset"], "0");
    assert_eq!(r.headers()["upload-length"], "5");
    let metadata = r.headers()["upload-metadata"].to_str().unwrap();
    let mut pairs: Vec<&str> = metadata.split(',').collect();
    pairs.sort();
    assert_eq!(pairs, ["empty", "filename aGkudHh0"]);
}

#[tokio::test]
async fn creation_with_upload_stores_the_body_and_reports_the_offset() {
    let server = InProcessServer::with_args(&[]).await;
    let r = tus(Method::POST, &server.files_url())
        .header("Upload-Length", "11")
        .header("Content-Type", OCTETS)
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["upload-offset"], "5");
    let url = r.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(offset(&url).await, 5);
    assert_eq!(patch(&url, 5, &b" world"[..]).await.status(), 204);
    assert_eq!(get_bytes(&url).await, (200, b"hello world".to_vec()));
}

#[tokio::test]
async fn creation_with_upload_refuses_a_body_longer_than_the_upload() {
    let server = InProcessServer::with_args(&[]).await;
    let r = tus(Method::POST, &server.files_url())
        .header("Upload-Length", "3")
        .header("Content-Type", OCTETS)
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(stored_names(server.upload_dir()).is_empty());
}

#[tokio::test]
async fn deferred_length_is_declared_by_a_later_patch() {
    let server = InProcessServer::with_args(&[]).await;
    let url = create_with(&server, &[("Upload-Defer-Length", "1")]).await;
    let r = head(&url).await;
    assert_eq!(r.headers()["upload-defer-length"], "1");
    assert!(r.headers().get("upload-length").is_none());

    assert_eq!(patch(&url, 0, &b"hel"[..]).await.status(), 204);
    let r = head(&url).await;
    assert_eq!(r.headers()["upload-defer-length"], "1");
    assert_eq!(r.headers()["upload-offset"], "3");
    assert_eq!(get_bytes(&url).await.1, b"hel", "unfinished bytes readable");

    let r = tus(Method::PATCH, &url)
        .header("Upload-Offset", "3")
        .header("Upload-Length", "5")
        .header("Content-Type", OCTETS)
        .body("lo")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["upload-offset"], "5");
    let r = head(&url).await;
    assert_eq!(r.headers()["upload-length"], "5");
    assert!(r.headers().get("upload-defer-length").is_none());
    assert_eq!(get_bytes(&url).await, (200, b"hello".to_vec()));
}

#[tokio::test]
async fn declared_length_cannot_change_or_undercut_the_offset() {
    let server = InProcessServer::with_args(&[]).await;
    let url = create_with(&server, &[("Upload-Defer-Length", "1")]).await;
    assert_eq!(patch(&url, 0, &b"hello"[..]).await.status(), 204);
    let declare = |length: &'static str| {
        tus(Method::PATCH, &url)
            .header("Upload-Offset", "5")
            .header("Upload-Length", length)
            .header("Content-Type", OCTETS)
            .send()
    };
    assert_eq!(declare("4").await.unwrap().status(), 400);
    assert_eq!(declare("8").await.unwrap().status(), 204);
    assert_eq!(declare("9").await.unwrap().status(), 400);
    let r = head(&url).await;
    assert_eq!(r.headers()["upload-length"], "8");
    assert_eq!(r.headers()["upload-offset"], "5");
}

#[tokio::test]
async fn post_needs_exactly_one_of_length_and_defer_length() {
    let server = InProcessServer::with_args(&[]).await;
    for headers in [
        &[][..],
        &[("Upload-Length", "3"), ("Upload-Defer-Length", "1")][..],
        &[("Upload-Defer-Length", "0")][..],
        &[("Upload-Defer-Length", "yes")][..],
    ] {
        let mut r = tus(Method::POST, &server.files_url());
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 400, "{headers:?}");
        let text = r.text().await.unwrap();
        assert_eq!(
            text.trim_end().lines().count(),
            1,
            "one-line reason: {text:?}"
        );
    }
    assert!(stored_names(server.upload_dir()).is_empty());
}

#[tokio::test]
async fn malformed_or_duplicate_metadata_is_400_and_creates_nothing() {
    let server = InProcessServer::with_args(&[]).await;
    for metadata in [
        "filename",              // fine: key without value
        "filename !!!",          // not base64
        "a d29ybGQ=,a d29ybGQ=", // duplicate key
        ",a",                    // empty key
        "a d29y bGQ=",           // space inside the value
        "a d29ybGQ",             // unpadded base64
        "a  d29ybGQ=",           // two spaces
    ] {
        let r = tus(Method::POST, &server.files_url())
            .header("Upload-Length", "1")
            .header("Upload-Metadata", metadata)
            .send()
            .await
            .unwrap();
        if metadata == "filename" {
            assert_eq!(r.status(), 201);
            continue;
        }
        assert_eq!(r.status(), 400, "{metadata:?}");
        let text = r.text().await.unwrap();
        assert_eq!(text.trim_end().lines().count(), 1, "{text:?}");
    }
    assert_eq!(
        uploads_in(server.upload_dir()).len(),
        1,
        "only the valid one"
    );
}

#[tokio::test]
async fn empty_upload_is_finished_at_creation() {
    let server = InProcessServer::with_args(&[]).await;
    let before = metric(&metrics(&server).await, "tusd_uploads_finished_total");
    let url = create(&server, 0).await;
    let r = head(&url).await;
    assert_eq!(r.headers()["upload-offset"], "0");
    assert_eq!(r.headers()["upload-length"], "0");
    assert_eq!(get_bytes(&url).await, (200, Vec::new()));
    let after = metric(&metrics(&server).await, "tusd_uploads_finished_total");
    assert_eq!(after - before, 1.0, "an empty upload counts as finished");
}

//! Core protocol over real HTTP: OPTIONS, HEAD, PATCH, versions, media
//! types, offsets and `X-HTTP-Method-Override`.

mod common;

use common::*;
use reqwest::Method;
use tusd_testsupport::InProcessServer;

#[tokio::test]
async fn upload_in_two_chunks_then_download() {
    let server = InProcessServer::with_args(&[]).await;
    let url = create(&server, 11).await;
    assert!(url.starts_with(&server.files_url()), "{url}");

    let r = patch(&url, 0, &b"hello"[..]).await;
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["upload-offset"], "5");

    let r = patch(&url, 0, &b"hello"[..]).await;
    assert_eq!(r.status(), 409, "stale offset must conflict");
    let r = patch(&url, 7, &b"hello"[..]).await;
    assert_eq!(r.status(), 409, "offset ahead of the upload must conflict");

    let head = head(&url).await;
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["upload-offset"], "5");
    assert_eq!(head.headers()["upload-length"], "11");
    assert_eq!(head.headers()["cache-control"], "no-store");

    assert_eq!(patch(&url, 5, &b" world"[..]).await.status(), 204);
    assert_eq!(get_bytes(&url).await, (200, b"hello world".to_vec()));
}

#[tokio::test]
async fn options_lists_version_and_extensions() {
    let server = InProcessServer::with_args(&["--max-size", "1000"]).await;
    let r = client()
        .request(Method::OPTIONS, server.files_url())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(r.headers()["tus-version"], "1.0.0");
    assert_eq!(r.headers()["tus-resumable"], "1.0.0");
    assert_eq!(r.headers()["tus-max-size"], "1000");
    assert_eq!(r.headers()["tus-checksum-algorithm"], "md5,sha1,sha256");
    let extensions = r.headers()["tus-extension"].to_str().unwrap();
    for e in [
        "creation",
        "creation-with-upload",
        "creation-defer-length",
        "termination",
        "concatenation",
        "concatenation-unfinished",
        "checksum",
    ] {
        assert!(
            extensions.split(',').any(|x| x == e),
            "{e} missing from {extensions}"
        );
    }
    assert!(
        !extensions.contains("expiration"),
        "expiration is off by default: {extensions}"
    );
}

#[tokio::test]
async fn every_response_carries_tus_resumable() {
    let server = InProcessServer::with_args(&[]).await;
    let url = create(&server, 3).await;
    let missing = format!("{}0123456789abcdef", server.files_url());
    let nested = format!("{}a/b", server.files_url());
    let responses = vec![
        tus(Method::POST, &server.files_url()).send().await.unwrap(), // 400
        head(&url).await,
        patch(&url, 0, &b"abc"[..]).await,
        patch(&url, 1, &b"abc"[..]).await, // 409
        head(&missing).await,              // 404
        head(&nested).await,               // 404
        client().get(&url).send().await.unwrap(),
        client().post(&url).send().await.unwrap(),    // 412
        tus(Method::PUT, &url).send().await.unwrap(), // 405
        tus(Method::DELETE, &url).send().await.unwrap(),
    ];
    for r in responses {
        assert_eq!(
            r.headers()
                .get("tus-resumable")
                .map(|v| v.to_str().unwrap()),
            Some("1.0.0"),
            "{} {}",
            r.status(),
            r.url()
        );
    }
}

#[tokio::test]
async fn unsupported_or_missing_version_is_412_with_tus_version() {
    let server = InProcessServer::with_args(&[]).await;
    let url = create(&server, 3).await;
    for version in [None, Some("0.2.2"), Some("1.0"), Some("")] {
        let mut post = client()
            .post(server.files_url())
            .header("Upload-Length", "3");
        let mut patch = client()
            .patch(&url)
            .header("Upload-Offset", "0")
            .header("Content-Type", OCTETS)
            .body("abc");
        if let Some(v) = version {
            post = post.header("Tus-Resumable", v);
            patch = patch.header("Tus-Resumable", v);
        }
        for r in [post.send().await.unwrap(), patch.send().await.unwrap()] {
            assert_eq!(r.status(), 412, "{version:?}");
            assert_eq!(r.headers()["tus-version"], "1.0.0");
        }
    }
    assert_eq!(offset(&url).await, 0, "a refused PATCH stored nothing");
    assert_eq!(
        uploads_in(server.upload_dir()).len(),
        1,
        "refused POSTs created nothing"
    );
}

#[tokio::test]
async fn patch_needs_the_offset_media_type() {
    let server = InProcessServer::with_args(&[]).await;
    let url = create(&server, 3).await;
    for content_type in [None, Some("application/octet-stream"), Some("text/plain")] {
        let mut r = tus(Method::PATCH, &url)
            .header("Upload-Offset", "0")
            .body("abc");
        if let Some(t) = content_type {
            r = r.header("Content-Type", t);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 415, "{content_type:?}");
    }
    assert_eq!(offset(&url).await, 0);
    assert_eq!(data_len(&server, &url), 0);
}

#[tokio::test]
async fn method_override_turns_post_into_patch_and_delete() {
    let server = InProcessServer::with_args(&[]).await;
    let url = create(&server, 3).await;
    let r = tus(Method::POST, &url)
        .header("X-HTTP-Method-Override", "PATCH")
        .header("Upload-Offset", "0")
        .header("Content-Type", OCTETS)
        .body("abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["upload-offset"], "3");
    assert_eq!(get_bytes(&url).await, (200, b"abc".to_vec()));

    let r = tus(Method::POST, &url)
        .header("X-HTTP-Method-Override", "DELETE")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(head(&url).await.status(), 404);
}

#[tokio::test]
async fn head_of_unknown_upload_is_404() {
    let server = InProcessServer::with_args(&[]).await;
    let r = head(&format!(
        "{}0123456789abcdef0123456789abcdef",
        server.files_url()
    ))
    .await;
    assert_eq!(r.status(), 404);
}

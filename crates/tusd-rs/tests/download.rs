//! GET: downloads with Content-Type / Content-Disposition from metadata,
//! Range requests, and --disable-download.

mod common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::*;
use tusd_testsupport::InProcessServer;

async fn finished(server: &impl Server, body: &'static [u8], metadata: &[(&str, &str)]) -> String {
    let metadata: Vec<String> = metadata
        .iter()
        .map(|(k, v)| format!("{k} {}", STANDARD.encode(v)))
        .collect();
    let url = create_with(
        server,
        &[
            ("Upload-Length", &body.len().to_string()),
            ("Upload-Metadata", &metadata.join(",")),
        ],
    )
    .await;
    assert_eq!(patch(&url, 0, body).await.status(), 204);
    url
}

#[tokio::test]
async fn safe_types_are_inline_and_others_attachments() {
    let server = InProcessServer::with_args(&[]).await;
    let png = finished(
        &server,
        b"png!",
        &[("filetype", "image/png"), ("filename", "a.png")],
    )
    .await;
    let r = client().get(&png).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.headers()["content-length"], "4");
    let d = r.headers()["content-disposition"].to_str().unwrap();
    assert!(
        d.starts_with("inline;") && d.contains("filename=\"a.png\""),
        "{d}"
    );
    assert_eq!(&r.bytes().await.unwrap()[..], b"png!");

    let html = finished(
        &server,
        b"<script>",
        &[("filetype", "text/html"), ("filename", "x.html")],
    )
    .await;
    let r = client().get(&html).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "text/html");
    let d = r.headers()["content-disposition"].to_str().unwrap();
    assert!(d.starts_with("attachment;"), "{d}");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");

    let bare = finished(&server, b"raw", &[]).await;
    let r = client().get(&bare).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert_eq!(r.headers()["content-disposition"], "attachment");
}

#[tokio::test]
async fn ranges_are_served_with_206_and_unsatisfiable_ones_are_416() {
    let server = InProcessServer::with_args(&[]).await;
    let url = finished(&server, b"0123456789", &[]).await;
    for (range, expect, content_range) in [
        ("bytes=2-4", &b"234"[..], "bytes 2-4/10"),
        ("bytes=7-", &b"789"[..], "bytes 7-9/10"),
        ("bytes=-2", &b"89"[..], "bytes 8-9/10"),
        ("bytes=8-20", &b"89"[..], "bytes 8-9/10"),
    ] {
        let r = client()
            .get(&url)
            .header("Range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206, "{range}");
        assert_eq!(r.headers()["content-range"], content_range);
        assert_eq!(&r.bytes().await.unwrap()[..], expect, "{range}");
    }
    let r = client()
        .get(&url)
        .header("Range", "bytes=10-12")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], "bytes */10");
    let r = client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["accept-ranges"], "bytes");
}

#[tokio::test]
async fn unknown_upload_is_404() {
    let server = InProcessServer::with_args(&[]).await;
    let url = format!("{}0123456789abcdef", server.files_url());
    assert_eq!(get_bytes(&url).await.0, 404);
}

#[tokio::test]
async fn disable_download_refuses_get() {
    let server = InProcessServer::with_args(&["--disable-download"]).await;
    let url = finished(&server, b"secret", &[]).await;
    let (status, body) = get_bytes(&url).await;
    assert!((400..500).contains(&status), "{status}");
    assert!(!body.windows(6).any(|w| w == b"secret"));
    assert_eq!(offset(&url).await, 6, "HEAD still works");
}

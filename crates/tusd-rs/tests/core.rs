//! Core protocol over real HTTP: create, append, resume, read back.

use tusd_testsupport::TusServer;

const BIN: &str = env!("CARGO_BIN_EXE_tusd-rs");

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn create(server: &TusServer, length: u64) -> String {
    let response = client()
        .post(server.files_url())
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", length.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.headers()["location"].to_str().unwrap().to_owned()
}

async fn patch(url: &str, offset: u64, body: &'static [u8]) -> reqwest::Response {
    client()
        .patch(url)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", offset.to_string())
        .header("Content-Type", "application/offset+octet-stream")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn upload_in_two_chunks_then_download() {
    let server = TusServer::start(BIN, &[]);
    let url = create(&server, 11).await;
    assert!(url.starts_with(&server.files_url()), "{url}");

    let r = patch(&url, 0, b"hello").await;
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["upload-offset"], "5");
    assert_eq!(r.headers()["tus-resumable"], "1.0.0");

    let r = patch(&url, 0, b"hello").await;
    assert_eq!(r.status(), 409, "stale offset must conflict");

    let head = client()
        .head(&url)
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(head.headers()["upload-offset"], "5");
    assert_eq!(head.headers()["cache-control"], "no-store");

    assert_eq!(patch(&url, 5, b" world").await.status(), 204);
    let body = client()
        .get(&url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&body[..], b"hello world");
}

#[tokio::test]
async fn options_lists_version_and_extensions() {
    let server = TusServer::start(BIN, &["--max-size", "1000"]);
    let r = client()
        .request(reqwest::Method::OPTIONS, server.files_url())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(r.headers()["tus-version"], "1.0.0");
    assert_eq!(r.headers()["tus-max-size"], "1000");
    assert_eq!(r.headers()["tus-checksum-algorithm"], "md5,sha1,sha256");
    let extensions = r.headers()["tus-extension"].to_str().unwrap();
    for e in [
        "creation",
        "creation-with-upload",
        "creation-defer-length",
        "termination",
        "concatenation",
        "checksum",
    ] {
        assert!(
            extensions.split(',').any(|x| x == e),
            "{e} missing from {extensions}"
        );
    }
}

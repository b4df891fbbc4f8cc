//! Bad input: the right status (or 400 with a one-line reason) and stored
//! state unchanged, checked through HEAD/GET and what the store holds (run
//! on S3 too with `TUSD_TEST_STORE=s3`).

mod common;

use common::*;
use reqwest::Method;
use tokio::io::AsyncWriteExt;
use tusd_testsupport::{TestStore, TusServer};

async fn one_line_400(r: reqwest::Response, what: &str) {
    assert_eq!(r.status(), 400, "{what}");
    let text = r.text().await.unwrap();
    assert!(!text.trim().is_empty(), "{what}: empty reason");
    assert_eq!(text.trim_end().lines().count(), 1, "{what}: {text:?}");
}

#[tokio::test]
async fn bad_lengths_are_400_and_create_nothing() {
    let server = TusServer::start(BIN, &[]);
    for length in [
        "-1",
        "abc",
        "1.5",
        "+3",
        "3 3",
        "0x10",
        "99999999999999999999",
        "9223372036854775808",
    ] {
        let r = tus(Method::POST, &server.files_url())
            .header("Upload-Length", length)
            .send()
            .await
            .unwrap();
        one_line_400(r, length).await;
    }
    assert!(stored_names(server.upload_dir()).is_empty());
}

#[tokio::test]
async fn bad_offsets_are_400_and_store_nothing() {
    let server = TusServer::start(BIN, &[]);
    let url = create(&server, 5).await;
    for offset in [
        "-1",
        "abc",
        "",
        "1e3",
        "18446744073709551616",
        "9223372036854775808",
    ] {
        let r = tus(Method::PATCH, &url)
            .header("Upload-Offset", offset)
            .header("Content-Type", OCTETS)
            .body("abc")
            .send()
            .await
            .unwrap();
        one_line_400(r, offset).await;
    }
    let r = tus(Method::PATCH, &url)
        .header("Content-Type", OCTETS)
        .body("abc")
        .send()
        .await
        .unwrap();
    one_line_400(r, "missing Upload-Offset").await;
    assert_eq!(offset(&url).await, 0);
    assert_eq!(data_len(&server, &url), 0);
}

#[tokio::test]
async fn lengths_above_max_size_are_413() {
    let server = TusServer::start(BIN, &["--max-size", "10"]);
    let r = tus(Method::POST, &server.files_url())
        .header("Upload-Length", "11")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(stored_names(server.upload_dir()).is_empty());

    // A deferred length is checked when it is declared.
    let url = create_with(&server, &[("Upload-Defer-Length", "1")]).await;
    let r = tus(Method::PATCH, &url)
        .header("Upload-Offset", "0")
        .header("Upload-Length", "11")
        .header("Content-Type", OCTETS)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(head(&url).await.headers()["upload-defer-length"], "1");
}

#[tokio::test]
async fn body_longer_than_the_rest_is_413_upfront_and_cut_when_chunked() {
    let server = TusServer::start(BIN, &[]);
    let url = create(&server, 5).await;
    assert_eq!(patch(&url, 0, &b"ab"[..]).await.status(), 204);
    // Content-Length says so upfront: nothing is stored.
    let r = patch(&url, 2, &b"cdefg"[..]).await;
    assert_eq!(r.status(), 413);
    assert_eq!(offset(&url).await, 2);
    assert_eq!(data_len(&server, &url), 2);

    // Chunked: nothing past the declared length is written.
    let (mut writer, send) = start_patch(&url, 2);
    writer.write_all(b"cdefghij").await.unwrap();
    drop(writer);
    assert_eq!(send.await.unwrap().status(), 413, "the excess is refused");
    assert_eq!(offset(&url).await, 5);
    assert_eq!(data_len(&server, &url), 5);
    assert_eq!(get_bytes(&url).await.1, b"abcde");
}

#[tokio::test]
async fn patch_to_a_finished_upload_changes_nothing() {
    let server = TusServer::start(BIN, &[]);
    let url = create(&server, 3).await;
    assert_eq!(patch(&url, 0, &b"abc"[..]).await.status(), 204);
    let r = patch(&url, 3, &b"def"[..]).await;
    assert!(r.status().is_client_error(), "{}", r.status());
    let r = patch(&url, 0, &b"xyz"[..]).await;
    assert_eq!(r.status(), 409);
    assert_eq!(get_bytes(&url).await.1, b"abc");
    assert_eq!(data_len(&server, &url), 3);
}

#[tokio::test]
async fn unknown_ids_are_404() {
    let server = TusServer::start(BIN, &[]);
    let unknown = format!("{}0123456789abcdef0123456789abcdef", server.files_url());
    assert_eq!(head(&unknown).await.status(), 404);
    assert_eq!(patch(&unknown, 0, &b"a"[..]).await.status(), 404);
    assert_eq!(
        tus(Method::DELETE, &unknown).send().await.unwrap().status(),
        404
    );
    assert_eq!(get_bytes(&unknown).await.0, 404);
    assert!(stored_names(server.upload_dir()).is_empty());
}

/// Ids the store did not generate never reach it: a file next to the
/// upload directory (and one inside it) stays unreachable and untouched.
#[tokio::test]
async fn ids_that_are_paths_never_leave_the_upload_dir() {
    if TestStore::from_env().is_s3() {
        eprintln!("skipped on S3: it plants files next to the file store's upload directory");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("uploads");
    let server = TusServer::start_in(BIN, &dir, &[]);
    let secret = tmp.path().join("secret");
    std::fs::write(&secret, b"top secret").unwrap();
    std::fs::write(
        tmp.path().join("secret.info"),
        br#"{"ID":"secret","Size":10,"Offset":10}"#,
    )
    .unwrap();
    let url = create(&server, 3).await; // a real upload to aim next to
    let id = id_of(&url).to_owned();

    let base = server.files_url();
    let paths = [
        "..%2Fsecret".to_owned(),
        "%2E%2E%2Fsecret".to_owned(),
        "..%5Csecret".to_owned(),
        "%2E%2E".to_owned(),
        "secret%00".to_owned(),
        format!("{id}%2F..%2F..%2Fsecret"),
        format!("{id}.info"),
        format!("{id}%00"),
        "a%2Fb".to_owned(),
        ".info".to_owned(),
    ];
    for path in &paths {
        let target = format!("{base}{path}");
        assert_eq!(head(&target).await.status(), 404, "HEAD {path}");
        assert_eq!(get_bytes(&target).await.0, 404, "GET {path}");
        assert_eq!(
            patch(&target, 0, &b"pwn"[..]).await.status(),
            404,
            "PATCH {path}"
        );
        let r = tus(Method::DELETE, &target).send().await.unwrap();
        assert_eq!(r.status(), 404, "DELETE {path}");
    }
    // Paths an HTTP client would normalise go out raw.
    for path in [
        "/files/../secret",
        "/files/..",
        "/files/./../secret",
        "/files/%2e%2e/secret",
        "/files/a/../../secret",
    ] {
        for method in ["GET", "HEAD", "DELETE"] {
            let request = format!(
                "{method} {path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nConnection: close\r\n\r\n"
            );
            let response = raw(&server, request.as_bytes()).await;
            let status = raw_status(&response);
            assert!(
                status == 404 || status == 400,
                "{method} {path}: {response}"
            );
            assert!(!response.contains("top secret"), "{method} {path}");
        }
    }
    let raw_backslash = raw(
        &server,
        b"GET /files/..\\secret HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        matches!(raw_status(&raw_backslash), 400 | 404),
        "{raw_backslash}"
    );

    assert_eq!(std::fs::read(&secret).unwrap(), b"top secret");
    assert_eq!(files_in(tmp.path()), ["secret", "secret.info", "uploads"]);
    assert_eq!(files_in(&dir), [id.clone(), format!("{id}.info")]);
    assert_eq!(offset(&url).await, 0);
}

/// A client that drops its connection mid-body leaves every byte that
/// reached the server stored and counted, also when another request (the
/// HEADs below) asks the PATCH to let go of the lock before its store has
/// taken the bytes.
#[tokio::test]
async fn disconnect_mid_patch_keeps_the_bytes_that_arrived() {
    let server = TusServer::start(BIN, &[]);
    let url = create(&server, 10).await;
    let path = &url[url.find("/files/").unwrap()..];
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", server.port()))
        .await
        .unwrap();
    let request = format!(
        "PATCH {path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n\
         Content-Type: {OCTETS}\r\nContent-Length: 10\r\n\r\nabcd"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    // On the file store, wait until the bytes are on disk, then vanish. The
    // S3 store shows nothing until a body ends, so there the client vanishes
    // right after sending: the bytes are in the server's socket by then
    // (loopback), and what reached the server must be stored all the same.
    let (server_ref, url_ref) = (&server, &url);
    if !TestStore::from_env().is_s3() {
        eventually("first bytes stored", 500, || async move {
            data_len(server_ref, url_ref) == 4
        })
        .await;
    }
    drop(stream);
    eventually("offset settles at 4", 500, || async move {
        let r = head(url_ref).await;
        r.status() == 200 && header_u64(&r, "upload-offset") == 4
    })
    .await;
    assert_eq!(patch(&url, 4, &b"efghij"[..]).await.status(), 204);
    assert_eq!(get_bytes(&url).await.1, b"abcdefghij");
}

/// Two values of one tus header are ambiguous: which length, which offset?
#[tokio::test]
async fn repeated_tus_headers_are_400() {
    let server = TusServer::start(BIN, &[]);
    let r = tus(Method::POST, &server.files_url())
        .header("Upload-Length", "3")
        .header("Upload-Length", "5")
        .send()
        .await
        .unwrap();
    one_line_400(r, "two Upload-Length").await;
    let r = tus(Method::POST, &server.files_url())
        .header("Upload-Length", "3")
        .header("Upload-Metadata", "a YQ==")
        .header("Upload-Metadata", "a Yg==")
        .send()
        .await
        .unwrap();
    one_line_400(r, "two Upload-Metadata").await;
    assert!(stored_names(server.upload_dir()).is_empty());

    let url = create(&server, 5).await;
    let r = tus(Method::PATCH, &url)
        .header("Upload-Offset", "0")
        .header("Upload-Offset", "2")
        .header("Content-Type", OCTETS)
        .body("abc")
        .send()
        .await
        .unwrap();
    one_line_400(r, "two Upload-Offset").await;
    assert_eq!(offset(&url).await, 0);
}

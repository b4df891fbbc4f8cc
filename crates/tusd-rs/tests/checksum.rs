//! The checksum extension over real HTTP.

mod common;

use common::*;
use reqwest::Method;
use tusd_testsupport::InProcessServer;

async fn patch_with_checksum(url: &str, offset: u64, body: &'static str, checksum: &str) -> u16 {
    tus(Method::PATCH, url)
        .header("Upload-Offset", offset.to_string())
        .header("Content-Type", OCTETS)
        .header("Upload-Checksum", checksum)
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn matching_digests_of_each_algorithm_are_accepted() {
    let server = InProcessServer::with_args(&[]).await;
    let url = create(&server, 15).await;
    // Digests of "hello".
    for (i, checksum) in [
        "md5 XUFAKrxLKna5cZ2REBfFkg==",
        "sha1 qvTGHdzF6KLavt4PO0gs2a6pQ00=",
        "sha256 LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=",
    ]
    .into_iter()
    .enumerate()
    {
        let at = 5 * i as u64;
        assert_eq!(
            patch_with_checksum(&url, at, "hello", checksum).await,
            204,
            "{checksum}"
        );
    }
    assert_eq!(get_bytes(&url).await.1, b"hellohellohello");
}

#[tokio::test]
async fn mismatch_is_460_and_discards_the_chunk() {
    let server = InProcessServer::with_args(&[]).await;
    let url = create(&server, 10).await;
    assert_eq!(patch(&url, 0, &b"ab"[..]).await.status(), 204);
    for checksum in [
        "sha1 qvTGHdzF6KLavt4PO0gs2a6pQ00=",
        "md5 XUFAKrxLKna5cZ2REBfFkg==",
        "sha256 AAAA",
    ] {
        // "hellx" is not "hello".
        assert_eq!(patch_with_checksum(&url, 2, "hellx", checksum).await, 460);
        assert_eq!(offset(&url).await, 2, "offset unchanged after {checksum}");
        assert_eq!(data_len(&server, &url), 2, "chunk cut off the data file");
    }
    assert_eq!(
        patch_with_checksum(&url, 2, "hello", "sha1 qvTGHdzF6KLavt4PO0gs2a6pQ00=").await,
        204
    );
    assert_eq!(get_bytes(&url).await.1, b"abhello");
}

#[tokio::test]
async fn unknown_algorithm_or_malformed_checksum_is_400() {
    let server = InProcessServer::with_args(&[]).await;
    let url = create(&server, 5).await;
    for checksum in [
        "crc32 AAAA",
        "sha1",
        "sha1 !!notbase64",
        "SHA1 qvTGHdzF6KLavt4PO0gs2a6pQ00=",
    ] {
        assert_eq!(
            patch_with_checksum(&url, 0, "hello", checksum).await,
            400,
            "{checksum}"
        );
    }
    assert_eq!(offset(&url).await, 0);
    assert_eq!(data_len(&server, &url), 0);
}

#[tokio::test]
async fn creation_with_upload_checks_the_checksum_and_still_names_the_upload() {
    let server = InProcessServer::with_args(&[]).await;
    let r = tus(Method::POST, &server.files_url())
        .header("Upload-Length", "5")
        .header("Content-Type", OCTETS)
        .header("Upload-Checksum", "sha1 qvTGHdzF6KLavt4PO0gs2a6pQ00=")
        .body("hellx")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 460);
    let url = r.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(offset(&url).await, 0, "the chunk was discarded");
    assert_eq!(
        patch_with_checksum(&url, 0, "hello", "sha1 qvTGHdzF6KLavt4PO0gs2a6pQ00=").await,
        204
    );
    assert_eq!(get_bytes(&url).await, (200, b"hello".to_vec()));
}

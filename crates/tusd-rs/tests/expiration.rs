//! Expiration: `Upload-Expires`, 410 for expired uploads, and the sweeper.
//! Waits are bounded polls, never assertions on time.

mod common;

use common::*;
use reqwest::Method;
use tusd_testsupport::InProcessServer;

fn has_expires(r: &reqwest::Response) -> bool {
    r.headers()
        .get("upload-expires")
        .and_then(|v| httpdate_ok(v.to_str().ok()?))
        .unwrap_or(false)
}

/// An HTTP date looks like "Sun, 06 Nov 1994 08:49:37 GMT".
fn httpdate_ok(s: &str) -> Option<bool> {
    Some(s.ends_with(" GMT") && s.len() == 29)
}

#[tokio::test]
async fn expires_header_on_post_patch_and_head_then_410() {
    // A long sweep interval so the 410 is seen before the sweeper removes it.
    let server =
        InProcessServer::with_args(&["--expire-after", "2s", "--expire-sweep-interval", "1h"])
            .await;
    let options = client()
        .request(Method::OPTIONS, server.files_url())
        .send()
        .await
        .unwrap();
    assert!(options.headers()["tus-extension"]
        .to_str()
        .unwrap()
        .contains("expiration"));

    let r = tus(Method::POST, &server.files_url())
        .header("Upload-Length", "10")
        .send()
        .await
        .unwrap();
    assert!(has_expires(&r), "{:?}", r.headers());
    let url = r.headers()["location"].to_str().unwrap().to_owned();
    let r = patch(&url, 0, &b"abc"[..]).await;
    assert!(has_expires(&r), "{:?}", r.headers());
    let r = head(&url).await;
    assert!(has_expires(&r), "{:?}", r.headers());

    // A finished upload never expires.
    let done = create(&server, 1).await;
    let r = patch(&done, 0, &b"x"[..]).await;
    assert!(!has_expires(&r));

    let mut status = 0;
    for _ in 0..300 {
        status = head(&url).await.status().as_u16();
        if status == 410 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status, 410, "the upload never expired");
    assert_eq!(patch(&url, 3, &b"d"[..]).await.status(), 410);
    assert_eq!(offset(&done).await, 1, "finished upload still there");
    assert_eq!(get_bytes(&done).await.1, b"x");
}

#[tokio::test]
async fn sweeper_removes_expired_uploads_files() {
    let server =
        InProcessServer::with_args(&["--expire-after", "2s", "--expire-sweep-interval", "1s"])
            .await;
    let url = create(&server, 10).await;
    assert_eq!(patch(&url, 0, &b"abc"[..]).await.status(), 204);
    let done = create(&server, 1).await;
    assert_eq!(patch(&done, 0, &b"x"[..]).await.status(), 204);
    let id = id_of(&url).to_owned();
    let dir = server.upload_dir().to_owned();
    eventually("sweeper removed the expired upload", 500, || {
        let files = stored_names(&dir);
        let gone = !files.iter().any(|f| f.starts_with(storage_name(&id)));
        async move { gone }
    })
    .await;
    assert_eq!(head(&url).await.status(), 404);
    assert_eq!(offset(&done).await, 1, "finished uploads are kept");
}

#[tokio::test]
async fn expired_upload_is_410_for_get_too() {
    let server =
        InProcessServer::with_args(&["--expire-after", "1s", "--expire-sweep-interval", "1h"])
            .await;
    let url = create(&server, 10).await;
    let u = &url;
    eventually("the upload expired", 500, || async move {
        head(u).await.status() == 410
    })
    .await;
    assert_eq!(get_bytes(&url).await.0, 410);
    assert_eq!(
        uploads_in(server.upload_dir()).len(),
        1,
        "only the sweeper removes files"
    );
}

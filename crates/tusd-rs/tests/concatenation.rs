//! Concatenation (and concatenation-unfinished) over real HTTP.

mod common;

use common::*;
use reqwest::Method;
use tusd_testsupport::InProcessServer;

async fn partial(server: &impl Server, length: u64) -> String {
    create_with(
        server,
        &[
            ("Upload-Length", &length.to_string()),
            ("Upload-Concat", "partial"),
        ],
    )
    .await
}

fn path_of(url: &str) -> &str {
    &url[url.find("/files/").unwrap()..]
}

#[tokio::test]
async fn final_of_finished_partials_is_their_bytes_joined() {
    let server = InProcessServer::with_args(&[]).await;
    let a = partial(&server, 5).await;
    let b = partial(&server, 6).await;
    assert_eq!(head(&a).await.headers()["upload-concat"], "partial");
    assert_eq!(patch(&a, 0, &b"hello"[..]).await.status(), 204);
    assert_eq!(patch(&b, 0, &b" world"[..]).await.status(), 204);

    // One absolute URL and one path: both name uploads of this server.
    let concat = format!("final;{a} {}", path_of(&b));
    let r = tus(Method::POST, &server.files_url())
        .header("Upload-Concat", concat)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let url = r.headers()["location"].to_str().unwrap().to_owned();
    let h = head(&url).await;
    assert_eq!(h.headers()["upload-offset"], "11");
    assert_eq!(h.headers()["upload-length"], "11");
    // The partials come back as absolute URLs, in the order given.
    assert_eq!(
        h.headers()["upload-concat"],
        format!("final;{a} {b}").as_str()
    );
    assert_eq!(get_bytes(&url).await, (200, b"hello world".to_vec()));
    assert_eq!(patch(&url, 11, &b"x"[..]).await.status(), 403);
    assert_eq!(get_bytes(&a).await.1, b"hello", "partials stay as they are");
}

#[tokio::test]
async fn final_created_before_its_partials_finish_waits_for_them() {
    let server = InProcessServer::with_args(&[]).await;
    let a = partial(&server, 3).await;
    let b = partial(&server, 3).await;
    assert_eq!(patch(&a, 0, &b"abc"[..]).await.status(), 204);
    let url = create_with(
        &server,
        &[(
            "Upload-Concat",
            &format!("final;{} {}", path_of(&a), path_of(&b)),
        )],
    )
    .await;

    let h = head(&url).await;
    assert_eq!(h.status(), 200);
    assert!(
        h.headers().get("upload-offset").is_none(),
        "{:?}",
        h.headers()
    );
    assert!(h.headers().get("upload-length").is_none());
    assert!(h.headers()["upload-concat"]
        .to_str()
        .unwrap()
        .starts_with("final;"));
    let r = patch(&url, 0, &b"x"[..]).await;
    assert_eq!(r.status(), 403, "a final upload is never patched");

    assert_eq!(patch(&b, 0, &b"de"[..]).await.status(), 204);
    assert!(head(&url).await.headers().get("upload-offset").is_none());
    assert_eq!(patch(&b, 2, &b"f"[..]).await.status(), 204);

    let h = head(&url).await;
    assert_eq!(h.headers()["upload-offset"], "6");
    assert_eq!(h.headers()["upload-length"], "6");
    assert_eq!(get_bytes(&url).await, (200, b"abcdef".to_vec()));
}

#[tokio::test]
async fn final_must_name_partials_of_this_server() {
    let server = InProcessServer::with_args(&[]).await;
    let whole = create(&server, 3).await;
    let a = partial(&server, 3).await;
    let before = stored_names(server.upload_dir());
    for concat in [
        format!("final;{}", path_of(&whole)), // not partial
        format!("final;{}0123456789abcdef", server.files_url()), // unknown
        "final;/elsewhere/abc".to_owned(),
        "final;".to_owned(),
        "final".to_owned(),
        format!("final;{}/../x", path_of(&a)),
    ] {
        let r = tus(Method::POST, &server.files_url())
            .header("Upload-Concat", &concat)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{concat}");
    }
    let r = tus(Method::POST, &server.files_url())
        .header("Upload-Concat", format!("final;{}", path_of(&a)))
        .header("Upload-Length", "3")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "a final upload takes no Upload-Length");
    assert_eq!(stored_names(server.upload_dir()), before);
}

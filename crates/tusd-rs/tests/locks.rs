//! Upload locks over real HTTP: a request that finds the lock held asks the
//! holder to release; the holder stops reading, keeps what it stored and
//! answers; a finished upload is read without any lock.

mod common;

use common::*;
use tokio::io::AsyncWriteExt;
use tusd_testsupport::InProcessServer;

#[tokio::test]
async fn head_during_a_slow_patch_takes_over_and_sees_the_stored_bytes() {
    let server = InProcessServer::with_args(&[]).await;
    let url = create(&server, 100).await;
    let (writer, patching) = stalled_patch(&server, &url, b"0123456789").await;

    let h = head(&url).await;
    assert_eq!(h.status(), 200);
    let seen = header_u64(&h, "upload-offset");
    assert!((10..=100).contains(&seen), "HEAD saw {seen}");

    let patched = patching.await.unwrap();
    assert_eq!(patched.status(), 204);
    assert_eq!(
        header_u64(&patched, "upload-offset"),
        seen,
        "PATCH answers with the offset HEAD saw"
    );
    drop(writer);
    assert_eq!(offset(&url).await, seen);
    assert_eq!(get_bytes(&url).await.1, b"0123456789"[..seen as usize]);

    // The client resumes where the server says.
    let rest = vec![b'x'; (100 - seen) as usize];
    assert_eq!(patch(&url, seen, rest).await.status(), 204);
    assert_eq!(offset(&url).await, 100);
}

#[tokio::test]
async fn second_patch_takes_over_from_a_zombie_patch() {
    let server = InProcessServer::with_args(&[]).await;
    let url = create(&server, 8).await;
    let (mut writer, zombie) = stalled_patch(&server, &url, b"abcd").await;

    // The retry learns the offset (taking the lock), then resumes.
    let at = offset(&url).await;
    assert_eq!(at, 4);
    assert_eq!(zombie.await.unwrap().status(), 204);
    assert_eq!(patch(&url, at, &b"efgh"[..]).await.status(), 204);
    // Bytes the zombie sends later go nowhere.
    let _ = writer.write_all(b"ZZZZ").await;
    drop(writer);
    assert_eq!(get_bytes(&url).await.1, b"abcdefgh");
}

/// A GET of a finished upload takes no lock: a PATCH holding that upload's
/// lock is not asked to release (it would answer 204 if it were; it goes on
/// waiting for its body and refuses the excess with 413).
#[tokio::test]
async fn download_of_a_finished_upload_takes_no_lock() {
    let server = InProcessServer::with_args(&[]).await;
    let url = create(&server, 3).await;
    assert_eq!(patch(&url, 0, &b"abc"[..]).await.status(), 204);
    let waits_before = metric(&metrics(&server).await, "tusd_lock_waits_total");

    let (mut writer, holder) = start_patch(&url, 3);
    let s = &server;
    eventually("the PATCH holds the lock", 500, || async move {
        metric(&metrics(s).await, "tusd_lock_waits_total") > waits_before
    })
    .await;
    for _ in 0..3 {
        assert_eq!(get_bytes(&url).await, (200, b"abc".to_vec()));
    }
    writer.write_all(b"d").await.unwrap();
    drop(writer);
    assert_eq!(
        holder.await.unwrap().status(),
        413,
        "the holder was never asked to release"
    );
    assert_eq!(get_bytes(&url).await.1, b"abc");
}

/// GET and DELETE of an unfinished upload take its lock too: the PATCH
/// holding it is asked to release and answers with what it stored.
#[tokio::test]
async fn get_and_delete_of_an_unfinished_upload_take_the_lock() {
    let server = InProcessServer::with_args(&[]).await;
    for method in ["GET", "DELETE"] {
        let url = create(&server, 50).await;
        let (writer, patching) = stalled_patch(&server, &url, b"abcdef").await;
        if method == "GET" {
            assert_eq!(get_bytes(&url).await, (200, b"abcdef".to_vec()));
        } else {
            let r = tus(reqwest::Method::DELETE, &url).send().await.unwrap();
            assert_eq!(r.status(), 204);
        }
        let patched = patching.await.unwrap();
        assert_eq!(patched.status(), 204, "{method}");
        assert_eq!(header_u64(&patched, "upload-offset"), 6, "{method}");
        drop(writer);
        if method == "DELETE" {
            assert_eq!(head(&url).await.status(), 404);
            assert!(!files_in(server.upload_dir())
                .iter()
                .any(|f| f.starts_with(id_of(&url))));
        }
    }
}

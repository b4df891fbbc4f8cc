//! Many requests on one upload at once, through HTTP with the memory locker:
//! the lock goes from each holder to the next waiter in line, so every
//! request is served and none waits out the lock timeout (423) while the
//! lock is being handed on. (The order itself is asserted where it can be
//! observed, in the memory locker's unit tests: over HTTP the server's
//! arrival order is not the client's sending order.)

mod common;

use common::*;
use futures::future::join_all;
use tusd_testsupport::InProcessServer;

const CONTENDERS: usize = 32;

/// A timeout no holder needs: 32 HEADs or short PATCHes in line are served
/// in a small fraction of it, and a waiter that lost every race to newcomers
/// (the behaviour this guards against) would reach it.
const LOCK_TIMEOUT: &str = "10s";

#[tokio::test]
async fn thirty_two_heads_on_one_upload_are_all_served() {
    let server = InProcessServer::with_args(&["--acquire-lock-timeout", LOCK_TIMEOUT]).await;
    let url = create(&server, 1000).await;
    assert_eq!(patch(&url, 0, vec![7u8; 100]).await.status(), 204);
    for _ in 0..3 {
        let answers = join_all((0..CONTENDERS).map(|_| head(&url))).await;
        for answer in answers {
            assert_eq!(answer.status(), 200, "a HEAD in the crowd");
            assert_eq!(header_u64(&answer, "upload-offset"), 100);
        }
    }
}

#[tokio::test]
async fn thirty_two_patches_and_heads_on_one_upload_get_answers_never_423() {
    let server = InProcessServer::with_args(&["--acquire-lock-timeout", LOCK_TIMEOUT]).await;
    let length = 64 * 1024;
    let url = create(&server, length).await;
    let content: Vec<u8> = (0..length).map(|i| (i % 251) as u8).collect();
    // Each contender sends a HEAD, then a PATCH of the next 4 KiB at the
    // offset it saw; PATCHes that lost the race to another answer 409, those
    // asked to hand on at once may store nothing, but every one is answered
    // and what is stored is the content at its offset.
    let contenders = (0..CONTENDERS).map(|_| {
        let (url, content) = (url.clone(), content.clone());
        async move {
            let seen = head(&url).await;
            assert_eq!(seen.status(), 200, "HEAD");
            let at = header_u64(&seen, "upload-offset");
            let end = (at + 4096).min(length);
            let answer = patch(&url, at, content[at as usize..end as usize].to_vec()).await;
            let status = answer.status().as_u16();
            assert!(
                status == 204 || status == 409,
                "PATCH at {at} answered {status}: {:?}",
                answer.text().await
            );
            status
        }
    });
    let statuses = join_all(contenders).await;
    assert_eq!(statuses.len(), CONTENDERS);
    assert!(statuses.contains(&204), "some PATCH got the lock");
    let stored = offset(&url).await;
    let (status, bytes) = get_bytes(&url).await;
    assert_eq!(status, 200);
    assert_eq!(bytes.len() as u64, stored);
    assert_eq!(bytes, content[..stored as usize], "bytes at their offsets");
}

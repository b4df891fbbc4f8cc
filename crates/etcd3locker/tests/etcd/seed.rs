//! The Go package's own test scenario, and the seed's API contracts.

use std::time::Duration;

use etcd3locker::{Error, Etcd3Locker, LockerOptions};
use tusd_testsupport::EtcdServer;

#[tokio::test]
async fn seed_scenario() {
    let server = EtcdServer::start().await;
    let client = server.client().await;
    let locker = Etcd3Locker::with_options(client.clone(), LockerOptions::new(3, "test-tusd"));
    assert_eq!(locker.options().prefix(), "/test-tusd");

    locker.lock_upload("one").await.unwrap();
    // Longer than the TTL: only the keep-alive keeps the lock.
    tokio::time::sleep(Duration::from_secs(5)).await;

    let same_prefix = Etcd3Locker::with_options(client.clone(), LockerOptions::new(3, "test-tusd"));
    let (again, elsewhere) =
        tokio::join!(locker.lock_upload("one"), same_prefix.lock_upload("one"));
    assert!(matches!(again, Err(Error::FileLocked)), "{again:?}");
    assert!(matches!(elsewhere, Err(Error::FileLocked)), "{elsewhere:?}");

    locker.unlock_upload("one").await.unwrap();
    let twice = locker.unlock_upload("one").await;
    assert!(matches!(twice, Err(Error::LockNotHeld)), "{twice:?}");
    assert_eq!(twice.unwrap_err().to_string(), "Lock not held");

    let other_prefix = Etcd3Locker::with_prefix(client.clone(), "other-tusd");
    locker.lock_upload("one").await.unwrap();
    other_prefix.lock_upload("one").await.unwrap();
    other_prefix.unlock_upload("one").await.unwrap();
    locker.unlock_upload("one").await.unwrap();
}

#[tokio::test]
async fn ids_with_a_slash_are_refused() {
    let server = EtcdServer::start().await;
    let locker = Etcd3Locker::new(server.client().await);
    for bad in ["a/b", "", "/"] {
        let refused = locker.lock_upload(bad).await;
        assert!(
            matches!(refused, Err(Error::InvalidId(_))),
            "{bad:?}: {refused:?}"
        );
    }
}

//! The same locks as `etcdctl lock` (and so as Go's concurrency.Mutex and the
//! Go etcd3locker), in both directions.

use std::process::Stdio;
use std::time::Duration;

use etcd3locker::Etcd3Locker;
use tusd_core::{LockError, Locker};
use tusd_testsupport::{etcdctl, etcdctl_lock, EtcdServer};

use crate::{id, in_secs, keys, must};

#[tokio::test]
async fn etcdctl_holder_excludes_us() {
    let server = EtcdServer::start().await;
    let client = server.client().await;
    let mut holder = etcdctl_lock(&server.endpoints(), "/tusdshared");

    let locker = Etcd3Locker::new(client.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    assert_eq!(
        locker.lock(&id("shared"), deadline).await.unwrap_err(),
        LockError::Timeout
    );

    // SIGTERM makes etcdctl unlock and close its session.
    // SAFETY: kill(2) on our own unreaped child.
    unsafe { libc::kill(holder.id() as libc::pid_t, libc::SIGTERM) };
    holder.wait().unwrap();
    let lock = locker.lock(&id("shared"), in_secs(10)).await.unwrap();
    lock.unlock().await.unwrap();
    assert!(keys(&client, "/tusd").await.is_empty());
}

#[tokio::test]
async fn we_exclude_an_etcdctl_waiter_and_hear_its_request() {
    let server = EtcdServer::start().await;
    let locker = Etcd3Locker::new(server.client().await);
    let held = locker.lock(&id("shared"), in_secs(5)).await.unwrap();

    let mut waiter = etcdctl(&server.endpoints())
        .args(["lock", "/tusdshared", "echo", "acquired"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    must(
        "etcdctl's key asks us to release",
        10,
        held.signals().release_requested(),
    )
    .await;
    assert!(
        waiter.try_wait().unwrap().is_none(),
        "etcdctl got a held lock"
    );

    held.unlock().await.unwrap();
    let output = must("etcdctl acquires after unlock", 10, async {
        tokio::task::spawn_blocking(move || waiter.wait_with_output().unwrap())
            .await
            .unwrap()
    })
    .await;
    assert!(String::from_utf8_lossy(&output.stdout).contains("acquired"));
}

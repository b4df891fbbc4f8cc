//! A holder whose lease cannot be renewed is told before etcd expires it.

use std::time::Duration;

use etcd3locker::{Etcd3Locker, LockerOptions};
use tusd_core::{LockError, Locker};
use tusd_testsupport::{EtcdCluster, EtcdServer};

use crate::{id, in_secs, keys, must};

/// The locker talks to member 0 only; pausing it cuts the locker off while
/// members 1 and 2 keep the cluster (and the lease's clock) running, so
/// etcd's own answer shows whether the lease was still alive when the
/// holder was told.
#[tokio::test]
async fn holder_is_told_before_etcd_expires_the_lease() {
    let mut cluster = EtcdCluster::start(3).await;
    let endpoints = cluster.endpoints();
    let isolated = etcd_client::Client::connect(&endpoints[..1], None)
        .await
        .unwrap();
    let mut observer = etcd_client::Client::connect(&endpoints[1..], None)
        .await
        .unwrap();
    // TTL 6: the locker gives the lease up 4 s after its last renewal was
    // sent, etcd no earlier than 6 s after it arrived, so etcd must still
    // report at least a whole second left (it rounds down).
    let locker = Etcd3Locker::with_options(isolated, LockerOptions::new(6, "loss"));

    let held = locker.lock(&id("up"), in_secs(10)).await.unwrap();
    let key = &keys(&observer, "/lossup/").await[0];
    let lease = i64::from_str_radix(key.rsplit('/').next().unwrap(), 16).unwrap();

    cluster.member(0).pause();
    must("lost signal", 15, held.signals().lost()).await;
    let ttl = observer
        .lease_time_to_live(lease, None)
        .await
        .unwrap()
        .ttl();
    assert!(
        ttl > 0,
        "etcd had already expired the lease (ttl {ttl}) when the holder was told"
    );

    cluster.member(0).resume();
    assert_eq!(held.unlock().await.unwrap_err(), LockError::Lost);
}

#[tokio::test]
async fn paused_etcd_loses_the_lock_and_a_new_lease_takes_over() {
    let mut server = EtcdServer::start().await;
    let client = server.client().await;
    let locker = Etcd3Locker::with_options(client.clone(), LockerOptions::new(3, "pause"));
    let held = locker.lock(&id("up"), in_secs(10)).await.unwrap();
    let token = crate::token(&held);

    server.pause();
    must(
        "lost signal while etcd is paused",
        15,
        held.signals().lost(),
    )
    .await;
    assert!(
        held.signals().is_release_requested(),
        "loss implies a release request"
    );
    // Longer than the TTL in all.
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.resume();

    assert_eq!(held.unlock().await.unwrap_err(), LockError::Lost);
    let again = locker.lock(&id("up"), in_secs(15)).await.unwrap();
    assert!(crate::token(&again) > token);
    assert_eq!(keys(&client, "/pause").await.len(), 1);
    again.unlock().await.unwrap();
}

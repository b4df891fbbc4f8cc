//! Locking through a 3-member cluster while one member is down.

use etcd3locker::{connect, ConnectOptions, Etcd3Locker};
use tusd_core::Locker;
use tusd_testsupport::EtcdCluster;

use crate::{id, in_secs};

#[tokio::test]
async fn keeps_locking_with_one_member_down() {
    let mut cluster = EtcdCluster::start(3).await;
    let client = connect(&ConnectOptions::new(cluster.endpoints()))
        .await
        .unwrap();
    let locker = Etcd3Locker::new(client);
    let contender = Etcd3Locker::new(cluster.client().await);

    for round in 0..3 {
        if round == 1 {
            cluster.member(0).stop();
        }
        if round == 2 {
            cluster.member(0).restart();
            cluster.member(1).stop();
        }
        for i in 0..10 {
            let upload = id(&format!("r{round}-{i}"));
            let lock = locker.lock(&upload, in_secs(15)).await.unwrap();
            let token = crate::token(&lock);
            lock.unlock().await.unwrap();
            let next = contender.lock(&upload, in_secs(15)).await.unwrap();
            assert!(crate::token(&next) > token);
            next.unlock().await.unwrap();
        }
    }
}

#[tokio::test]
async fn unreachable_etcd_is_a_clear_error() {
    let port = tusd_testsupport::ports::free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut options = ConnectOptions::new(vec![endpoint.clone()]);
    options.connect_timeout = std::time::Duration::from_secs(1);
    let error = crate::must("connect gives up", 10, connect(&options))
        .await
        .err()
        .expect("connected to nothing");
    assert!(error.to_string().contains(&endpoint), "{error}");
}

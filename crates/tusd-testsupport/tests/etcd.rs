//! The etcd helpers against the real binary named by ETCD_BIN (or PATH).

use std::time::Duration;

use tusd_testsupport::{etcdctl, EtcdCluster, EtcdServer};

#[tokio::test]
async fn single_node_serves_pauses_and_restarts() {
    let mut server = EtcdServer::start().await;
    let mut client = server.client().await;
    client.put("k", "v", None).await.unwrap();

    server.pause();
    let frozen = tokio::time::timeout(Duration::from_millis(500), client.get("k", None)).await;
    assert!(frozen.is_err(), "a paused etcd answered");
    server.resume();

    server.restart().await;
    let mut client = server.client().await;
    let got = client.get("k", None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"v", "data survives a restart");
    assert!(server
        .metrics()
        .contains("etcd_server_proposals_committed_total"));
}

#[tokio::test]
async fn etcdctl_reaches_the_server() {
    let server = EtcdServer::start().await;
    let status = etcdctl(&server.endpoints())
        .args(["put", "from-etcdctl", "1"])
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    let mut client = server.client().await;
    assert_eq!(client.get("from-etcdctl", None).await.unwrap().count(), 1);
}

#[tokio::test]
async fn cluster_keeps_serving_with_one_member_down() {
    let mut cluster = EtcdCluster::start(3).await;
    assert_eq!(cluster.endpoints().len(), 3);
    cluster.member(0).stop();
    let options = etcd_client::ConnectOptions::new().with_timeout(Duration::from_secs(5));
    let mut client = etcd_client::Client::connect(&cluster.endpoints()[1..], Some(options))
        .await
        .unwrap();
    // If member 0 led, the others elect a new leader first; until then
    // writes fail or time out, so retry for a while.
    let mut attempts = 0;
    while let Err(e) = client.put("k", "v", None).await {
        attempts += 1;
        assert!(
            attempts < 10,
            "no write succeeded with one member down: {e}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    cluster.member(0).restart();
    cluster.wait_healthy().await;
}

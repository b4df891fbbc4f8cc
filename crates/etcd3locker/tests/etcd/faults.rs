//! Faults of etcd members that the locker must survive (issue 7): a request
//! queued in a hung member, a hung member under the keep-alive, a lease
//! that vanished behind the locker's back, and a full outage.

use std::time::Duration;

use etcd3locker::{connect, ConnectOptions, Etcd3Locker, LockerOptions};
use etcd_client::Client;
use tokio::time::Instant;
use tusd_core::{LockError, Locker};
use tusd_testsupport::{EtcdCluster, EtcdMember, EtcdServer};

use crate::proxy::CancelDroppingProxy;
use crate::{id, in_secs, keys, must};

/// The lease id a lock key ends in.
fn lease_of(key: &str) -> i64 {
    i64::from_str_radix(key.rsplit('/').next().unwrap(), 16).unwrap()
}

/// The seconds etcd gives lease `id` still, `None` when it does not know it
/// (etcd 3.4 answers TTL -1, later versions "lease not found").
async fn lease_ttl(client: &mut Client, id: i64) -> Option<i64> {
    match client.lease_time_to_live(id, None).await {
        Ok(answer) if answer.ttl() > 0 => Some(answer.ttl()),
        Ok(_) => None,
        Err(etcd_client::Error::GRpcStatus(status)) if status.code() == tonic::Code::NotFound => {
            None
        }
        Err(e) => panic!("lease {id:x}: {e}"),
    }
}

/// The create revision of `key`, or `None` when it does not exist.
async fn create_revision(client: &Client, key: &str) -> Option<i64> {
    let answer = client.clone().get(key, None).await.unwrap();
    answer.kvs().first().map(|kv| kv.create_revision())
}

/// How many Txn and DeleteRange requests `member` has finished handling,
/// whatever their outcome.
fn writes_handled(member: &EtcdMember) -> u64 {
    member
        .metrics()
        .lines()
        .filter(|line| line.starts_with("grpc_server_handled_total{"))
        .filter(|line| {
            line.contains("grpc_method=\"Txn\"") || line.contains("grpc_method=\"DeleteRange\"")
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// An unlock whose delete reached a member that then hung is retried on
/// another member; the first delete stays queued in the hung member. Once
/// the process holds the upload again and the member resumes, that queued
/// delete is applied: it must not remove the new key. (When every lock of
/// a process on an upload used the same key name, it did.)
#[tokio::test]
async fn a_delete_queued_in_a_hung_member_cannot_remove_the_next_key() {
    let mut cluster = EtcdCluster::start(3).await;
    let endpoints = cluster.endpoints();
    let proxy = CancelDroppingProxy::start(&endpoints[0]).await;
    // Member 0 (through the proxy) is the client's only endpoint until the
    // test gives it another one for the retry.
    let client = Client::connect([proxy.endpoint()], None).await.unwrap();
    let observer = Client::connect(&endpoints[1..], None).await.unwrap();
    let locker = Etcd3Locker::with_options(client.clone(), LockerOptions::new(60, "queued"));

    let first = locker.lock(&id("up"), in_secs(10)).await.unwrap();
    let key = keys(&observer, "/queuedup/").await.remove(0);
    let handled = writes_handled(cluster.member(0));

    cluster.member(0).pause();
    let requests_before = proxy.requests();
    let unlock = tokio::spawn(first.unlock());
    // The delete goes out at once; a second is ample for it to reach the
    // paused member's socket, and the attempt's own timeout is 2 s.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        proxy.requests() > requests_before,
        "the unlock's delete did not reach member 0"
    );
    client.add_endpoint(&endpoints[1]).await.unwrap();
    client.remove_endpoint(proxy.endpoint()).await.unwrap();
    must("unlock retried on member 1", 15, unlock)
        .await
        .unwrap()
        .unwrap();
    assert!(keys(&observer, "/queuedup/").await.is_empty());

    let second = locker.lock(&id("up"), in_secs(10)).await.unwrap();
    let next_keys = keys(&observer, "/queuedup/").await;
    assert_eq!(next_keys.len(), 1);
    assert_ne!(next_keys[0], key, "a lock key name was used twice");
    assert_eq!(lease_of(&next_keys[0]), lease_of(&key), "same lease");
    let key = next_keys[0].clone();
    let revision = create_revision(&observer, &key).await;
    assert_eq!(revision, Some(crate::token(&second)));

    cluster.member(0).resume();
    let deadline = in_secs(15);
    while writes_handled(cluster.member(0)) == handled {
        assert!(
            Instant::now() < deadline,
            "member 0 never handled the queued delete"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        create_revision(&observer, &key).await,
        revision,
        "the queued delete removed the next holder's key"
    );
    assert!(!second.signals().is_lost());
    second.unlock().await.unwrap();
    assert!(keys(&observer, "/queued").await.is_empty());
}

/// The index of the member that leads, asking each running member.
async fn leader(cluster: &EtcdCluster) -> usize {
    let endpoints = cluster.endpoints();
    let deadline = in_secs(30);
    loop {
        for (index, endpoint) in endpoints.iter().enumerate() {
            let status = async {
                let mut client = Client::connect([endpoint], None).await?;
                client.status().await
            };
            if let Ok(Ok(status)) = tokio::time::timeout(Duration::from_secs(1), status).await {
                let me = status.header().map(|h| h.member_id());
                if status.leader() != 0 && me == Some(status.leader()) {
                    return index;
                }
            }
        }
        assert!(Instant::now() < deadline, "no etcd leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// With a majority healthy, a member hung for half the TTL, the leader as
/// much as a follower, never costs the lease: keep-alives go to every
/// endpoint on streams of their own, and a stream left unanswered is
/// opened again, which reaches a new leader once there is one.
#[tokio::test]
async fn one_member_hung_for_half_the_ttl_never_costs_the_lease() {
    let mut cluster = EtcdCluster::start(3).await;
    let client = connect(&ConnectOptions::new(cluster.endpoints()))
        .await
        .unwrap();
    let ttl = 6;
    let locker = Etcd3Locker::with_options(client, LockerOptions::new(ttl, "hang"));
    let held = locker.lock(&id("up"), in_secs(10)).await.unwrap();

    let first_leader = leader(&cluster).await;
    let mut order = vec![first_leader];
    order.extend((0..cluster.len()).filter(|&i| i != first_leader));
    for victim in order {
        let leading = leader(&cluster).await == victim;
        cluster.member(victim).pause();
        tokio::time::sleep(Duration::from_secs(ttl as u64) / 2).await;
        cluster.member(victim).resume();
        assert!(
            !held.signals().is_lost(),
            "lock lost while member {victim} (leader: {leading}) hung"
        );
        cluster.wait_healthy().await;
        // Past the window the lease was trusted for when the member hung.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            !held.signals().is_lost(),
            "lock lost after member {victim} resumed"
        );
    }

    let mut observer = cluster.client().await;
    let key = keys(&observer, "/hangup/").await.remove(0);
    let left = lease_ttl(&mut observer, lease_of(&key)).await;
    assert!(left.is_some(), "etcd lost the lease");
    held.unlock().await.unwrap();
}

/// A lock request that etcd answers with "lease not found" is sent again on
/// a new lease within its deadline instead of failing as unavailable.
#[tokio::test]
async fn a_lease_revoked_behind_the_lockers_back_is_replaced_by_the_next_lock() {
    let server = EtcdServer::start().await;
    let mut observer = server.client().await;
    // TTL 60: the next keep-alive is 10 s away, so only the lock request
    // can find out that the lease is gone.
    let locker = Etcd3Locker::new(server.client().await);
    let held = locker.lock(&id("a"), in_secs(5)).await.unwrap();
    let old_lease = lease_of(&keys(&observer, "/tusda/").await[0]);
    observer.lease_revoke(old_lease).await.unwrap();

    let again = locker.lock(&id("b"), in_secs(5)).await.unwrap();
    assert!(
        held.signals().is_lost(),
        "the lock request found the lease gone and told its holders"
    );
    let new_lease = lease_of(&keys(&observer, "/tusdb/").await[0]);
    assert_ne!(new_lease, old_lease);
    again.unlock().await.unwrap();
    assert_eq!(held.unlock().await.unwrap_err(), LockError::Lost);
    locker.shutdown().await;
}

/// After a full outage etcd restores every lease with a fresh TTL. The
/// locker keeps revoking its lost lease until etcd confirms, so the old
/// lock keys go as soon as etcd is back, not a TTL later.
#[tokio::test]
async fn a_lost_lease_is_revoked_as_soon_as_etcd_is_back() {
    let mut server = EtcdServer::start().await;
    let ttl = 15;
    let locker = Etcd3Locker::with_options(server.client().await, LockerOptions::new(ttl, "out"));
    let held = locker.lock(&id("up"), in_secs(10)).await.unwrap();
    let key = keys(&server.client().await, "/outup/").await.remove(0);

    server.stop();
    must("lost signal during the outage", 30, held.signals().lost()).await;
    // The outage lasts longer than the window plus a whole TTL, so a revoke
    // given up after a TTL would have been given up by now.
    tokio::time::sleep(Duration::from_secs(ttl as u64 + 1)).await;
    server.restart().await;

    let mut observer = server.client().await;
    let bound = Duration::from_secs(5);
    let deadline = Instant::now() + bound;
    while create_revision(&observer, &key).await.is_some() {
        assert!(
            Instant::now() < deadline,
            "the old lock key outlived etcd's return by {bound:?} (TTL {ttl} s)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(lease_ttl(&mut observer, lease_of(&key)).await, None);
    assert_eq!(held.unlock().await.unwrap_err(), LockError::Lost);
}

//! Locking between lockers and inside one: release requests, fencing,
//! local queueing, what is left behind, shutdown, raft cost.

use std::time::Duration;

use etcd3locker::{Etcd3Locker, LockerOptions};
use tusd_core::{LockError, Locker};
use tusd_testsupport::EtcdServer;

use crate::{eventually, id, in_secs, keys, lease_count, must};

#[tokio::test]
async fn release_request_between_two_lockers() {
    let server = EtcdServer::start().await;
    let a = Etcd3Locker::new(server.client().await);
    let b = Etcd3Locker::new(server.client().await);

    let held = a.lock(&id("up"), in_secs(5)).await.unwrap();
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.lock(&id("up"), in_secs(20)).await })
    };
    must(
        "release request reaches the holder",
        10,
        held.signals().release_requested(),
    )
    .await;
    assert!(!held.signals().is_lost());
    let first_token = crate::token(&held);
    // Tokens of one cluster and prefix are comparable, whichever locker
    // issued them; the issuer says which.
    let cluster_id = server
        .client()
        .await
        .status()
        .await
        .unwrap()
        .header()
        .unwrap()
        .cluster_id();
    let issuer = held.fencing_token().unwrap().issuer().to_owned();
    assert_eq!(issuer, format!("etcd:{cluster_id:016x}/tusd"));
    held.unlock().await.unwrap();

    let next = must("waiter gets the lock", 10, waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(crate::token(&next) > first_token);
    assert_eq!(next.fencing_token().unwrap().issuer(), issuer);
    next.unlock().await.unwrap();
}

#[tokio::test]
async fn local_callers_queue_and_ask_the_holder() {
    let server = EtcdServer::start().await;
    let locker = Etcd3Locker::new(server.client().await);
    let client = server.client().await;

    let first = locker.lock(&id("q"), in_secs(5)).await.unwrap();
    let second = {
        let locker = locker.clone();
        tokio::spawn(async move { locker.lock(&id("q"), in_secs(20)).await })
    };
    must(
        "local release request",
        10,
        first.signals().release_requested(),
    )
    .await;
    assert_eq!(
        keys(&client, "/tusdq/").await.len(),
        1,
        "one key per process and id"
    );

    let token = crate::token(&first);
    first.unlock().await.unwrap();
    let second = must("second local caller gets the lock", 10, second)
        .await
        .unwrap()
        .unwrap();
    assert!(crate::token(&second) > token);
    second.unlock().await.unwrap();
    assert!(keys(&client, "/tusd").await.is_empty());
}

#[tokio::test]
async fn failed_attempts_leave_no_key_and_no_lease() {
    let server = EtcdServer::start().await;
    let client = server.client().await;
    let holder = Etcd3Locker::new(client.clone());
    let contender = Etcd3Locker::new(server.client().await);

    let held = holder.lock(&id("busy"), in_secs(5)).await.unwrap();
    for _ in 0..5 {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
        let failed = contender.lock(&id("busy"), deadline).await;
        assert_eq!(failed.unwrap_err(), LockError::Timeout);
    }
    eventually("only the holder's key is left", || async {
        keys(&client, "/tusd").await.len() == 1
    })
    .await;
    assert_eq!(
        lease_count(&client).await,
        2,
        "one lease per locker, no more"
    );

    held.unlock().await.unwrap();
    assert!(keys(&client, "/tusd").await.is_empty());
    holder.shutdown().await;
    contender.shutdown().await;
    assert_eq!(lease_count(&client).await, 0);
}

#[tokio::test]
async fn shutdown_revokes_every_lock_at_once() {
    let server = EtcdServer::start().await;
    let client = server.client().await;
    let locker = Etcd3Locker::new(client.clone());
    let a = locker.lock(&id("a"), in_secs(5)).await.unwrap();
    let b = locker.lock(&id("b"), in_secs(5)).await.unwrap();
    assert_eq!(keys(&client, "/tusd").await.len(), 2);

    Locker::shutdown(&locker).await;
    assert!(a.signals().is_lost() && b.signals().is_lost());
    assert!(keys(&client, "/tusd").await.is_empty());
    assert_eq!(lease_count(&client).await, 0);
    assert_eq!(a.unlock().await.unwrap_err(), LockError::Lost);
    assert!(matches!(
        locker.lock(&id("c"), in_secs(5)).await,
        Err(LockError::Unavailable(_))
    ));
}

#[tokio::test]
async fn an_uncontended_cycle_costs_two_raft_proposals() {
    let server = EtcdServer::start().await;
    let locker = Etcd3Locker::with_options(server.client().await, LockerOptions::new(30, "p"));
    // The first lock also grants the lease; measure after it.
    locker
        .lock(&id("warm"), in_secs(5))
        .await
        .unwrap()
        .unlock()
        .await
        .unwrap();
    // The counter trails the answers a little; let it settle around the run.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = server.proposals_committed();
    for i in 0..20 {
        let lock = locker
            .lock(&id(&format!("u{i}")), in_secs(5))
            .await
            .unwrap();
        lock.unlock().await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.proposals_committed() - before, 40);
}

/// Three processes on one id: waiters behind a waiter watch their nearest
/// predecessor, and one that gives up does not strand the one behind it.
#[tokio::test]
async fn waiters_take_turns_and_survive_a_waiter_giving_up() {
    let server = EtcdServer::start().await;
    let client = server.client().await;
    let a = Etcd3Locker::new(server.client().await);
    let b = Etcd3Locker::new(server.client().await);
    let c = Etcd3Locker::new(server.client().await);

    let held = a.lock(&id("line"), in_secs(5)).await.unwrap();
    let quitter = {
        let b = b.clone();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
        tokio::spawn(async move { b.lock(&id("line"), deadline).await })
    };
    eventually("b queued", || async {
        keys(&client, "/tusdline/").await.len() == 2
    })
    .await;
    let last = {
        let c = c.clone();
        tokio::spawn(async move { c.lock(&id("line"), in_secs(20)).await })
    };
    eventually("c queued", || async {
        keys(&client, "/tusdline/").await.len() == 3
    })
    .await;

    assert_eq!(
        must("b gives up", 10, quitter).await.unwrap().unwrap_err(),
        LockError::Timeout
    );
    let token = crate::token(&held);
    held.unlock().await.unwrap();
    let next = must("c gets the lock", 10, last).await.unwrap().unwrap();
    assert!(crate::token(&next) > token);
    next.unlock().await.unwrap();
    eventually("no key left", || async {
        keys(&client, "/tusd").await.is_empty()
    })
    .await;
}

/// Waiters in several processes are served in the order their keys were
/// created (etcd's `concurrency.Mutex` order): each watches only its
/// predecessor, and a free-lock Txn succeeds only on an empty range, so no
/// newcomer can take the lock from a waiter in line.
#[tokio::test]
async fn waiters_in_other_processes_are_served_in_the_order_they_queued() {
    let server = EtcdServer::start().await;
    let client = server.client().await;
    let holder = Etcd3Locker::new(server.client().await);
    let held = holder.lock(&id("fifo"), in_secs(5)).await.unwrap();
    let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for n in 0..4 {
        let locker = Etcd3Locker::new(server.client().await);
        let order = order.clone();
        waiters.push(tokio::spawn(async move {
            let lock = locker.lock(&id("fifo"), in_secs(30)).await.unwrap();
            order.lock().unwrap().push((n, crate::token(&lock)));
            lock.unlock().await.unwrap();
        }));
        eventually("the waiter's key is written", || async {
            keys(&client, "/tusdfifo/").await.len() == n + 2
        })
        .await;
    }
    held.unlock().await.unwrap();
    for waiter in waiters {
        must("every waiter gets the lock", 30, waiter)
            .await
            .unwrap();
    }
    let order = order.lock().unwrap().clone();
    let served: Vec<usize> = order.iter().map(|(n, _)| *n).collect();
    assert_eq!(served, [0, 1, 2, 3], "served in queueing order");
    assert!(
        order.windows(2).all(|w| w[0].1 < w[1].1),
        "tokens rise: {order:?}"
    );
}

/// A lock attempt whose Txn reaches etcd but gets no answer before its
/// deadline (etcd paused) may commit once etcd resumes, possibly after the
/// locker's first delete. The locker keeps deleting until the key is surely
/// gone: another process can then take the lock (a leaked key would block
/// it for as long as the lease lives), and nothing of the attempt is left.
#[tokio::test]
async fn a_txn_cut_off_by_its_deadline_leaves_nothing_behind() {
    let mut server = EtcdServer::start().await;
    let observer = server.client().await;
    let locker = Etcd3Locker::new(server.client().await);
    // Take the lease now, so the attempt below sends nothing but its Txn.
    let warm = locker.lock(&id("warm"), in_secs(5)).await.unwrap();
    warm.unlock().await.unwrap();
    let before = revision(&observer).await;

    server.pause();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    assert!(locker.lock(&id("cut"), deadline).await.is_err());
    server.resume();

    let other = Etcd3Locker::new(server.client().await);
    let again = other.lock(&id("cut"), in_secs(15)).await.unwrap();
    again.unlock().await.unwrap();
    other.shutdown().await;
    // Anything of the cut-off attempt still in flight would land by now.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(keys(&observer, "/tusd").await.is_empty());
    // 2: etcd dropped the cancelled Txn; 4: it committed late and was
    // deleted. Then the other locker's lock and unlock.
    let moved = revision(&observer).await - before;
    assert!(moved == 2 || moved == 4, "revision moved by {moved}");
    locker.shutdown().await;
}

/// A key of the locker's own lease that an unlock could not delete (etcd
/// unreachable for the whole clean-up) is removed by the next lock of that
/// id instead of blocking it until the lease expires.
#[tokio::test]
async fn a_leftover_key_of_the_own_lease_is_removed_not_waited_for() {
    let server = EtcdServer::start().await;
    let mut observer = server.client().await;
    let locker = Etcd3Locker::new(server.client().await);
    let held = locker.lock(&id("a"), in_secs(5)).await.unwrap();
    let key = keys(&observer, "/tusda/").await.remove(0);
    let lease_hex = key.rsplit('/').next().unwrap();
    let lease = i64::from_str_radix(lease_hex, 16).unwrap();
    let leftover = format!("/tusdb/999/{lease_hex}");
    observer
        .put(
            leftover.as_str(),
            "",
            Some(etcd_client::PutOptions::new().with_lease(lease)),
        )
        .await
        .unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    let next = locker.lock(&id("b"), deadline).await.unwrap();
    let left = keys(&observer, "/tusdb/").await;
    assert_eq!(left.len(), 1);
    assert_ne!(left[0], leftover);
    next.unlock().await.unwrap();
    held.unlock().await.unwrap();
    assert!(keys(&observer, "/tusd").await.is_empty());
}

async fn revision(client: &etcd_client::Client) -> i64 {
    let answer = client.clone().get("probe", None).await.unwrap();
    answer.header().unwrap().revision()
}

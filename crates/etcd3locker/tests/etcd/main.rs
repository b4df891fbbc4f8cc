//! etcd3locker against real etcd servers (ETCD_BIN / ETCDCTL_BIN, or PATH).
//!
//! One test binary, so the suite links once; every test starts its own etcd
//! on free loopback ports, so they run in parallel.

mod auth;
mod cluster;
mod faults;
mod interop;
mod locking;
mod loss;
mod proxy;
mod seed;
mod tls;

use std::time::Duration;

use etcd_client::{Client, GetOptions};
use tokio::time::Instant;
use tusd_core::{Lock, UploadId};

pub fn id(raw: &str) -> UploadId {
    UploadId::parse(raw).unwrap()
}

/// The fencing token's value: the create revision of the lock's key.
pub fn token(lock: &Lock) -> i64 {
    lock.fencing_token()
        .expect("etcd locks carry a token")
        .value()
}

pub fn in_secs(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

/// The keys under `prefix`, as text.
pub async fn keys(client: &Client, prefix: &str) -> Vec<String> {
    let mut client = client.clone();
    let answer = client
        .get(
            prefix,
            Some(GetOptions::new().with_prefix().with_keys_only()),
        )
        .await
        .unwrap();
    answer
        .kvs()
        .iter()
        .map(|kv| kv.key_str().unwrap().to_owned())
        .collect()
}

/// How many leases etcd knows.
pub async fn lease_count(client: &Client) -> usize {
    client.clone().leases().await.unwrap().leases().len()
}

/// Polls `check` until it holds; panics with `what` after 10 s. For effects
/// that happen in the background (a best-effort delete), not for timing.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = in_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for a signal that must come; panics after `secs` so a broken
/// locker fails the test instead of hanging it.
pub async fn must<F: std::future::Future>(what: &str, secs: u64, future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), future)
        .await
        .unwrap_or_else(|_| panic!("did not happen: {what}"))
}

//! The etcd locker against the locker conformance suite in
//! `tusd-testsupport`, on a real etcd (ETCD_BIN, or PATH). Every instance is
//! an `Etcd3Locker` on a client of its own, as each server process of a
//! cluster has; a lock is made lost by revoking its lease behind the
//! locker's back, as etcd does when the lease expires.

use std::sync::Arc;

use async_trait::async_trait;
use etcd3locker::{Etcd3Locker, LockerOptions};
use etcd_client::{Client, GetOptions, SortOrder, SortTarget};
use tusd_core::{Locker, UploadId};
use tusd_testsupport::{check_locker, EtcdServer, LockSpace};

/// Short enough that a revoked lease is noticed within seconds (keep-alives
/// every TTL/3), long enough for a loaded test machine.
const TTL: i64 = 6;

struct EtcdSpace {
    server: EtcdServer,
    options: LockerOptions,
}

#[async_trait]
impl LockSpace for EtcdSpace {
    async fn locker(&self) -> Arc<dyn Locker> {
        let client = Client::connect(self.server.endpoints(), None)
            .await
            .expect("connect to etcd");
        Arc::new(Etcd3Locker::with_options(client, self.options.clone()))
    }

    /// Revokes the lease of the key that owns `id`'s lock: the lowest
    /// create revision under `{prefix}{id}/`.
    async fn lose(&self, id: &UploadId) -> bool {
        let mut client = self.server.client().await;
        let range = format!("{}{id}/", self.options.prefix());
        let options = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Ascend)
            .with_limit(1);
        let owner = client.get(range.as_str(), Some(options)).await.unwrap();
        let lease = owner.kvs().first().expect("the lock has a key").lease();
        client.lease_revoke(lease).await.unwrap();
        true
    }
}

#[tokio::test]
async fn the_etcd_locker_passes_the_locker_conformance_suite() {
    let space = EtcdSpace {
        server: EtcdServer::start().await,
        options: LockerOptions::new(TTL, "conformance"),
    };
    check_locker(&space).await.assert_passed();
}

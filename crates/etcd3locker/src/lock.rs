//! The lock protocol of etcd's Go `concurrency.Mutex`, key for key, so Rust
//! nodes, Go tusd nodes and `etcdctl lock` exclude each other.
//!
//! A lock named `N` (here `{prefix}{id}`) is the range `N/`. Each contender
//! writes its own key `N/{lease id in lowercase hex}`, attached to its lease,
//! in one Txn guarded by `create_revision == 0`; the same Txn reads the key
//! with the lowest create revision under `N/`, the owner. If that is the
//! contender's own key it holds the lock (one round trip, one raft write).
//! Otherwise it waits until every key created before its own is gone (see
//! [`crate::wait`]), then checks that its own key still exists: its lease
//! may have expired while it waited. Unlock deletes the key (one raft
//! write). The create revision of the key is the fencing token: a later
//! holder's key was necessarily created later.

use etcd_client::{
    Client, Compare, CompareOp, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp,
    TxnOpResponse, TxnResponse,
};
use tokio::time::Instant;

use crate::call::{retry, CallError, ATTEMPT_TIMEOUT};
use crate::lease::Lease;
use crate::wait::wait_for_predecessors;
use crate::Error;

/// Why [`acquire`] did not get the lock. In every case it leaves no key.
pub(crate) enum AcquireError {
    /// Earlier keys were still there at the deadline.
    StillHeld,
    /// The lease was lost while waiting; a new lease may succeed.
    LeaseLost,
    /// etcd failed or did not answer.
    Failed(Error),
}

impl From<CallError> for AcquireError {
    fn from(error: CallError) -> AcquireError {
        AcquireError::Failed(error.into())
    }
}

/// The key of `lease` under the lock range `name` (which ends in `/`).
pub(crate) fn own_key(name: &str, lease: &Lease) -> String {
    format!("{name}{:x}", lease.id())
}

/// Takes the lock `name` (ending in `/`) with a key on `lease`, waiting
/// until `deadline`. Returns the key's create revision, the fencing token.
/// On failure the key is deleted, in the background if need be: a Txn that
/// timed out may still have committed.
pub(crate) async fn acquire(
    client: &Client,
    name: &str,
    lease: &Lease,
    deadline: Instant,
) -> Result<i64, AcquireError> {
    let key = own_key(name, lease);
    let result = tokio::select! {
        result = contend(client, name, &key, lease.id(), deadline) => result,
        _ = lease.lost() => Err(AcquireError::LeaseLost),
    };
    if result.is_err() {
        let client = client.clone();
        tokio::spawn(async move {
            let deadline = Instant::now() + 2 * ATTEMPT_TIMEOUT;
            if let Err(e) = delete(&client, &key, deadline).await {
                tracing::warn!(key, error = ?e, "could not delete the key of a failed lock attempt");
            }
        });
    }
    result
}

/// Gives the lock back by deleting `key`; idempotent.
pub(crate) async fn release(client: &Client, key: &str, deadline: Instant) -> Result<(), Error> {
    Ok(delete(client, key, deadline).await?)
}

async fn contend(
    client: &Client,
    name: &str,
    key: &str,
    lease_id: i64,
    deadline: Instant,
) -> Result<i64, AcquireError> {
    let owner = GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Ascend)
        .with_limit(1);
    let txn = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then([
            TxnOp::put(key, "", Some(PutOptions::new().with_lease(lease_id))),
            TxnOp::get(name, Some(owner.clone())),
        ])
        .or_else([TxnOp::get(key, None), TxnOp::get(name, Some(owner))]);
    let mut stale_key_removed = false;
    let (response, own_revision) = loop {
        let mut attempts = 0;
        let response = retry(deadline, ATTEMPT_TIMEOUT, || {
            attempts += 1;
            let mut client = client.clone();
            let txn = txn.clone();
            async move { client.txn(txn).await }
        })
        .await?;
        if response.succeeded() {
            let revision = response.header().map_or(0, |h| h.revision());
            break (response, revision);
        }
        // The key exists. After a retried Txn it is our own first attempt's,
        // which committed: we may use it. On a first attempt it was left by an
        // earlier holding of ours whose delete failed: remove it, so the
        // fencing token still grows.
        if attempts == 1 && !stale_key_removed {
            delete(client, key, deadline).await?;
            stale_key_removed = true;
            continue;
        }
        let revision = first_kv(&response, 0).map_or(0, |(_, rev)| rev);
        break (response, revision);
    };
    match first_kv(&response, 1) {
        Some((_, owner_revision)) if owner_revision != own_revision => {}
        _ => return Ok(own_revision),
    }
    if !wait_for_predecessors(client, name, own_revision - 1, deadline).await? {
        return Err(AcquireError::StillHeld);
    }
    let own = retry(deadline, ATTEMPT_TIMEOUT, || {
        let mut client = client.clone();
        async move { client.get(key, None).await }
    })
    .await?;
    if own.kvs().is_empty() {
        return Err(AcquireError::LeaseLost);
    }
    Ok(own_revision)
}

/// The first key and its create revision in the range read number `index` of `response`.
fn first_kv(response: &TxnResponse, index: usize) -> Option<(Vec<u8>, i64)> {
    match response.op_responses().into_iter().nth(index)? {
        TxnOpResponse::Get(get) => get
            .kvs()
            .first()
            .map(|kv| (kv.key().to_vec(), kv.create_revision())),
        _ => None,
    }
}

async fn delete(client: &Client, key: &str, deadline: Instant) -> Result<(), CallError> {
    retry(deadline, ATTEMPT_TIMEOUT, || {
        let mut client = client.clone();
        async move { client.delete(key, None).await }
    })
    .await
    .map(drop)
}

//! The lock protocol of etcd's Go `concurrency.Mutex`, key for key, so Rust
//! nodes, Go tusd nodes and `etcdctl lock` exclude each other.
//!
//! A lock named `N` (here `{prefix}{id}`) is the range `N/`. Each contender
//! writes its own key `N/{lease id in lowercase hex}`, attached to its lease,
//! in a Txn guarded by `create_revision == 0`; the same Txn reads the key
//! with the lowest create revision under `N/`, the owner. If that is the
//! contender's own key it holds the lock.
//!
//! The common case, a free lock, takes a shorter way: a first, small Txn
//! puts the key only if `N/` is empty (one round trip, one raft write, no
//! read). Only when `N/` is not empty does the `concurrency.Mutex` Txn
//! follow. A contender that is not first waits until every key created
//! before its own is gone (see [`crate::wait`]), then checks that its own
//! key still exists: its lease may have expired while it waited.
//!
//! Unlock deletes the key (one raft write). The create revision of the key
//! is the fencing token: a later holder's key was necessarily created later.

use etcd_client::{
    Client, Compare, CompareOp, GetOptions, GetResponse, KvClient, PutOptions, SortOrder,
    SortTarget, Txn, TxnOp, TxnOpResponse, TxnResponse,
};
use std::time::Duration;

use tokio::time::Instant;

use crate::call::{retry, CallError, ATTEMPT_TIMEOUT};
use crate::lease::Lease;
use crate::wait::{wait_deleted, wait_for_predecessors};
use crate::Error;

/// After a failed call, how long etcd gets to apply a request of ours that
/// may still be in flight before [`clean_up`] looks at the key again.
const SETTLE: Duration = Duration::from_millis(500);

/// How long [`clean_up`] keeps trying before it gives up with a warning.
const CLEAN_UP_WINDOW: Duration = Duration::from_secs(10);

/// Why [`acquire`] did not get the lock. The key may still exist, or appear
/// later: the caller runs [`clean_up`].
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

/// Makes sure `key` is gone after a lock attempt or an unlock failed
/// midway. etcd may apply a request that timed out after a delete sent
/// later (it serves the two concurrently), so one delete is not enough: it
/// deletes, gives etcd [`SETTLE`] to apply anything still in flight, and
/// looks again, until the key stays absent.
///
/// `turn` is the caller's local turn on the id, held until this is done:
/// the next local caller would write the same key (same lease), and a late
/// delete must never remove a key that a later holder relies on.
pub(crate) async fn clean_up<T: Send>(kv: KvClient, key: String, turn: T) {
    let give_up = Instant::now() + CLEAN_UP_WINDOW;
    while Instant::now() < give_up {
        if delete(&kv, &key, Instant::now() + 2 * ATTEMPT_TIMEOUT)
            .await
            .is_err()
        {
            continue;
        }
        tokio::time::sleep(SETTLE).await;
        let looked = retry(Instant::now() + ATTEMPT_TIMEOUT, ATTEMPT_TIMEOUT, || {
            let mut kv = kv.clone();
            let key = key.clone();
            async move { kv.get(key, Some(GetOptions::new().with_count_only())).await }
        })
        .await;
        if looked.is_ok_and(|answer| answer.count() == 0) {
            drop(turn);
            return;
        }
    }
    tracing::warn!(
        key,
        "could not make sure the key of a failed lock call is gone"
    );
}

/// Gives the lock back by deleting `key`; idempotent.
pub(crate) async fn release(kv: &KvClient, key: &str, deadline: Instant) -> Result<(), Error> {
    Ok(delete(kv, key, deadline).await?)
}

/// Takes the lock `name` (ending in `/`) with `key` (its [`own_key`] on
/// `lease`), waiting until `deadline`. Returns the key's create revision,
/// the fencing token. On failure the key may exist, or appear later (a Txn
/// that timed out may still commit): the caller must run [`clean_up`].
pub(crate) async fn acquire(
    client: &Client,
    name: &str,
    key: &str,
    lease: &Lease,
    deadline: Instant,
) -> Result<i64, AcquireError> {
    let lease_id = lease.id();
    let put = TxnOp::put(key, "", Some(PutOptions::new().with_lease(lease_id)));
    // The common case, a free lock, needs no read and nothing else in the
    // request: if no key exists under `name`, ours is the first and owns the
    // lock. The request is kept this small because etcd writes every Txn
    // whole into its raft log, taken branch or not.
    let free = Txn::new()
        .when([Compare::create_revision(name, CompareOp::Equal, 0).with_prefix()])
        .and_then([put.clone()]);
    let fast = retry(deadline, ATTEMPT_TIMEOUT, || {
        let mut kv = client.kv_client();
        let free = free.clone();
        async move { kv.txn(free).await }
    })
    .await?;
    if fast.succeeded() {
        return Ok(fast.header().map_or(0, |h| h.revision()));
    }
    // Someone else's key, or a key of ours that a failed unlock or a late
    // attempt left, is there: `concurrency.Mutex`'s Txn from here on.
    let owner = GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Ascend)
        .with_limit(1);
    let txn = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then([put, TxnOp::get(name, Some(owner.clone()))])
        .or_else([TxnOp::get(key, None), TxnOp::get(name, Some(owner))]);
    let mut stale_key_removed = false;
    let (response, own_revision, txn_revision) = loop {
        let mut attempts = 0;
        let response = retry(deadline, ATTEMPT_TIMEOUT, || {
            attempts += 1;
            let mut kv = client.kv_client();
            let txn = txn.clone();
            async move { kv.txn(txn).await }
        })
        .await?;
        let txn_revision = response.header().map_or(0, |h| h.revision());
        if response.succeeded() {
            break (response, txn_revision, txn_revision);
        }
        // The key exists. After a retried Txn it is our own first attempt's,
        // which committed: we may use it. On a first attempt it was left by an
        // earlier holding of ours whose delete failed: remove it, so the
        // fencing token still grows.
        if attempts == 1 && !stale_key_removed {
            delete(&client.kv_client(), key, deadline).await?;
            stale_key_removed = true;
            continue;
        }
        let revision = range(&response, 0)
            .and_then(|own| own.kvs().first().map(|kv| kv.create_revision()))
            .unwrap_or(0);
        break (response, revision, txn_revision);
    };
    let Some((owner_key, owner_revision, contenders)) = first_in_line(&response) else {
        return Ok(own_revision);
    };
    if owner_revision == own_revision {
        return Ok(own_revision);
    }
    let wait = wait_in_line(
        client,
        name,
        key,
        own_revision,
        txn_revision,
        owner_key,
        contenders,
        deadline,
    );
    tokio::select! {
        result = wait => result,
        _ = lease.lost() => Err(AcquireError::LeaseLost),
    }
}

/// Waits behind the keys created before `key` (`own_revision`), then checks
/// that `key` survived the wait. `owner_key` is the lowest key and
/// `contenders` the number of keys as of `txn_revision`.
#[allow(clippy::too_many_arguments)]
async fn wait_in_line(
    client: &Client,
    name: &str,
    key: &str,
    own_revision: i64,
    txn_revision: i64,
    owner_key: Vec<u8>,
    contenders: i64,
    deadline: Instant,
) -> Result<i64, AcquireError> {
    // With only the owner before us, watch it straight from the Txn's
    // revision: its deletion hands us the lock, one round trip sooner.
    let mut owner_gone = false;
    if contenders == 2 {
        let from = txn_revision + 1;
        match tokio::time::timeout_at(deadline, wait_deleted(client, owner_key, from)).await {
            Ok(deleted) => owner_gone = deleted,
            Err(_) => return Err(AcquireError::StillHeld),
        }
    }
    if !owner_gone && !wait_for_predecessors(client, name, own_revision - 1, deadline).await? {
        return Err(AcquireError::StillHeld);
    }
    let own = retry(deadline, ATTEMPT_TIMEOUT, || {
        let mut kv = client.kv_client();
        async move { kv.get(key, None).await }
    })
    .await?;
    if own.kvs().is_empty() {
        return Err(AcquireError::LeaseLost);
    }
    Ok(own_revision)
}

/// The range read number `index` of `response`.
fn range(response: &TxnResponse, index: usize) -> Option<GetResponse> {
    match response.op_responses().into_iter().nth(index)? {
        TxnOpResponse::Get(get) => Some(get),
        _ => None,
    }
}

/// The owner's key and create revision, and how many keys the lock has.
fn first_in_line(response: &TxnResponse) -> Option<(Vec<u8>, i64, i64)> {
    let owners = range(response, 1)?;
    let kv = owners.kvs().first()?;
    Some((kv.key().to_vec(), kv.create_revision(), owners.count()))
}

async fn delete(kv: &KvClient, key: &str, deadline: Instant) -> Result<(), CallError> {
    retry(deadline, ATTEMPT_TIMEOUT, || {
        let mut kv = kv.clone();
        async move { kv.delete(key, None).await }
    })
    .await
    .map(drop)
}

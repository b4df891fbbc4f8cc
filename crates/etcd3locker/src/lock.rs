//! The lock protocol of etcd's Go `concurrency.Mutex`, on the same key
//! range, so Rust nodes, Go tusd nodes and `etcdctl lock` exclude each other.
//!
//! A lock named `N` (here `{prefix}{id}`) is the range `N/`. Each contender
//! writes its own key under `N/` (Go: `N/{lease id in lowercase hex}`; this
//! crate: see below), attached to its lease, in a Txn guarded by `create_revision == 0`; the same Txn reads the key
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
//!
//! A process writes the same key for every lock of an upload, as Go's
//! Mutex does, so etcd keeps one index entry per upload and lease. A delete
//! that a hung member keeps queued (the client gave up on it and retried
//! elsewhere) and applies late would then remove the process's *next* key
//! of that upload. So a delete that was sent without an answer retires its
//! key's name ([`Lease::retire`]): later locks of that upload under this
//! lease write `N/{n}/{lease id in hex}` instead, which a late delete cannot
//! touch, and Go's Mutex orders like any key under `N/`. Unlock is a plain
//! delete, the cheapest write etcd has. (A fresh name for every lock would
//! do too, but etcd keeps a tombstone per deleted name until compaction,
//! and the free-lock Txn's range compare walks them all.)

use etcd_client::{
    Client, Compare, CompareOp, GetOptions, GetResponse, KvClient, PutOptions, SortOrder,
    SortTarget, Txn, TxnOp, TxnOpResponse, TxnResponse,
};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::call::{retry, retry_noting_resends, CallError, ATTEMPT_TIMEOUT};
use crate::lease::Lease;
use crate::wait::{wait_deleted, wait_for_predecessors, Waited};
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
    /// The lease was lost, or the own key vanished, while trying; a new
    /// attempt (on a new lease if this one is lost) may succeed.
    LeaseLost,
    /// etcd failed or did not answer.
    Failed(Error),
}

impl From<CallError> for AcquireError {
    fn from(error: CallError) -> AcquireError {
        match error {
            CallError::OutOfTime => AcquireError::StillHeld,
            other => AcquireError::Failed(other.into()),
        }
    }
}

/// Makes sure `key` (under lock `name`, of `lease`) is gone after a lock
/// attempt or an unlock failed midway.
///
/// After an unlock (`written`), one answered delete is enough: no request
/// of ours writes that key again. After a lock attempt the key may appear
/// late: etcd may apply a Txn that timed out after a request sent later (it
/// serves them concurrently), so this gives etcd [`SETTLE`] to apply
/// anything still in flight and looks again, until the key stays absent.
///
/// `turn` is the caller's local turn on the id, held until this is done, so
/// that the next local caller neither queues behind this key nor writes it
/// while a request of this attempt is still in flight.
pub(crate) async fn clean_up<T: Send>(
    kv: KvClient,
    lease: Arc<Lease>,
    name: String,
    key: String,
    written: bool,
    turn: T,
) {
    let give_up = Instant::now() + CLEAN_UP_WINDOW;
    let mut present = written;
    let mut absent_once = false;
    while Instant::now() < give_up {
        if !present {
            match look(&kv, &key, Instant::now() + ATTEMPT_TIMEOUT).await {
                Err(_) => continue,
                Ok(true) => absent_once = false,
                Ok(false) if absent_once => {
                    drop(turn);
                    return;
                }
                Ok(false) => {
                    absent_once = true;
                    tokio::time::sleep(SETTLE).await;
                    continue;
                }
            }
        }
        let deadline = Instant::now() + 2 * ATTEMPT_TIMEOUT;
        if delete(&kv, &lease, &name, &key, deadline).await.is_err() {
            present = written;
            continue;
        }
        if written {
            drop(turn);
            return;
        }
        present = false;
        tokio::time::sleep(SETTLE).await;
    }
    lease.retire(&name);
    tracing::warn!(
        key,
        "could not make sure the key of a failed lock call is gone"
    );
}

/// Gives the lock back by deleting `key` (under lock `name`, of `lease`).
/// `Ok(false)` when it was already gone before this call (the lease
/// expired or someone deleted it): the lock was not held any more.
pub(crate) async fn release(
    kv: &KvClient,
    lease: &Lease,
    name: &str,
    key: &str,
    deadline: Instant,
) -> Result<bool, Error> {
    let (deleted, resent) = delete(kv, lease, name, key, deadline).await?;
    // After a resend, "not there" may mean that an earlier attempt deleted it.
    Ok(deleted || resent)
}

/// Takes the lock `name` (ending in `/`) with `key` (the [`Lease::key`]
/// of `lease`), waiting until `deadline`. Returns the key's create revision,
/// the fencing token. On failure the key may exist, or appear later (a Txn
/// that timed out may still commit): the caller must run [`clean_up`].
/// When etcd says the lease is gone, the lease is marked lost before
/// [`AcquireError::LeaseLost`] is returned, so the next attempt gets a new one.
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
    let lease_gone = |error: CallError| {
        if error.is_lease_not_found() {
            lease.invalidate();
            AcquireError::LeaseLost
        } else {
            AcquireError::from(error)
        }
    };
    let fast = retry(deadline, ATTEMPT_TIMEOUT, || {
        let mut kv = client.kv_client();
        let free = free.clone();
        async move { kv.txn(free).await }
    })
    .await
    .map_err(lease_gone)?;
    if fast.succeeded() {
        return Ok(fast.header().map_or(0, |h| h.revision()));
    }
    // Boxed: the free lock's future, moved on every poll path, stays small.
    Box::pin(contend(client, name, key, lease, put, deadline)).await
}

/// Someone else's key, or a key of ours that a failed unlock or a late
/// attempt left, is there: `concurrency.Mutex`'s Txn from here on.
async fn contend(
    client: &Client,
    name: &str,
    key: &str,
    lease: &Lease,
    put: TxnOp,
    deadline: Instant,
) -> Result<i64, AcquireError> {
    let lease_gone = |error: CallError| {
        if error.is_lease_not_found() {
            lease.invalidate();
            AcquireError::LeaseLost
        } else {
            AcquireError::from(error)
        }
    };
    let owner = GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Ascend)
        .with_limit(1);
    let txn = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then([put, TxnOp::get(name, Some(owner.clone()))])
        .or_else([TxnOp::get(key, None), TxnOp::get(name, Some(owner))]);
    let response = retry(deadline, ATTEMPT_TIMEOUT, || {
        let mut kv = client.kv_client();
        let txn = txn.clone();
        async move { kv.txn(txn).await }
    })
    .await
    .map_err(lease_gone)?;
    let txn_revision = response.header().map_or(0, |h| h.revision());
    // If the key exists, it is ours to use: an earlier attempt of this call
    // (whose answer was lost) wrote it, or a Txn of an earlier call of ours
    // committed late; either way its create revision is newer than every
    // earlier holder's.
    let own_revision = if response.succeeded() {
        txn_revision
    } else {
        range(&response, 0)
            .and_then(|own| own.kvs().first().map(|kv| kv.create_revision()))
            .unwrap_or(0)
    };
    let Some((owner_key, owner_revision, contenders)) = first_in_line(&response) else {
        return Ok(own_revision);
    };
    if owner_revision == own_revision {
        return Ok(own_revision);
    }
    let wait = wait_in_line(
        client,
        lease,
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
    lease: &Lease,
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
    if contenders == 2 && lease.wrote(&owner_key) {
        owner_gone = remove_leftover(client, lease, name, &owner_key, deadline)
            .await
            .is_ok();
    } else if contenders == 2 {
        let from = txn_revision + 1;
        match tokio::time::timeout_at(deadline, wait_deleted(client, owner_key, from)).await {
            Ok(deleted) => owner_gone = deleted,
            Err(_) => return Err(AcquireError::StillHeld),
        }
    }
    while !owner_gone {
        // A key of our own lease before ours is a leftover (an unlock whose
        // delete never got through): remove it rather than wait for the
        // lease to expire.
        let own = |key: &[u8]| lease.wrote(key);
        match wait_for_predecessors(client, name, own_revision - 1, own, deadline).await? {
            Waited::Clear => owner_gone = true,
            Waited::TimedOut => return Err(AcquireError::StillHeld),
            Waited::Skipped(key) => remove_leftover(client, lease, name, &key, deadline).await?,
        }
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

/// Deletes `key` (under lock `name`, of `lease`): one plain delete,
/// retried until `deadline`. Returns whether the last attempt deleted it,
/// and whether the delete was sent more than once. A delete sent without
/// an answer may still be applied later, so the key's name is then retired:
/// this lease never writes it again.
async fn delete(
    kv: &KvClient,
    lease: &Lease,
    name: &str,
    key: &str,
    deadline: Instant,
) -> Result<(bool, bool), CallError> {
    let (answer, resent) = retry_noting_resends(deadline, ATTEMPT_TIMEOUT, || {
        let mut kv = kv.clone();
        async move { kv.delete(key, None).await }
    })
    .await;
    if resent || answer.is_err() {
        lease.retire(name);
    }
    Ok((answer?.deleted() > 0, resent))
}

/// Deletes a key of `lease` under `name` that no lock holds any more.
async fn remove_leftover(
    client: &Client,
    lease: &Lease,
    name: &str,
    key: &[u8],
    deadline: Instant,
) -> Result<(), CallError> {
    let key = String::from_utf8_lossy(key);
    delete(&client.kv_client(), lease, name, &key, deadline).await?;
    Ok(())
}

/// Whether `key` exists.
async fn look(kv: &KvClient, key: &str, deadline: Instant) -> Result<bool, CallError> {
    let answer = retry(deadline, ATTEMPT_TIMEOUT, || {
        let mut kv = kv.clone();
        async move { kv.get(key, Some(GetOptions::new().with_keys_only())).await }
    })
    .await?;
    Ok(!answer.kvs().is_empty())
}

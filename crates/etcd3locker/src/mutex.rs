//! The lock protocol of etcd's Go `concurrency.Mutex`, on the same key
//! range, so Rust nodes, Go tusd nodes and `etcdctl lock` exclude each other.
//!
//! A lock named `N` (here `{prefix}{id}`) is the range `N/`. Each contender
//! writes its own key under `N/`, attached to its lease, in a Txn guarded by
//! `create_revision == 0`; the same Txn reads the key with the lowest create
//! revision under `N/`, the owner. If that is the contender's own key it
//! holds the lock. The create revision of the key is the fencing token: a
//! later holder's key was necessarily created later.
//!
//! The common case, a free lock, takes a shorter way: a first, small Txn
//! puts the key only if `N/` is empty (one round trip, one raft write, no
//! read). Only when `N/` is not empty does the `concurrency.Mutex` Txn
//! follow. A contender that is not first waits until every key created
//! before its own is gone (see [`crate::key`]), then checks that its own
//! key still exists: its lease may have expired while it waited.
//!
//! Unlock is a plain delete, the cheapest write etcd has (one raft write).
//!
//! A process writes the same key for every lock of an upload,
//! `N/{lease id in lowercase hex}` as Go's Mutex does, so etcd keeps one
//! index entry per upload and lease. A delete that a hung member keeps
//! queued (the client gave up on it and retried elsewhere) and applies late
//! would then remove the process's *next* key of that upload. So a delete
//! sent without an answer retires its key's name ([`Lease::retire`]): later
//! locks of that upload under this lease write `N/{n}/{lease id in hex}`,
//! which a late delete cannot touch, and which Go's Mutex orders like any
//! key under `N/`. (A fresh name for every lock would do too, but etcd keeps
//! a tombstone per deleted name until compaction, and the free-lock Txn's
//! range compare walks them all.)

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, GetOptions, GetResponse, KvClient, PutOptions, SortOrder,
    SortTarget, Txn, TxnOp, TxnOpResponse, TxnResponse,
};
use tokio::time::Instant;

use crate::call::{retry, Attempts, CallError, ATTEMPT_TIMEOUT};
use crate::key::{wait_deleted, wait_for_predecessors, Waited};
use crate::session::Lease;
use crate::Error;

/// After a failed call, how long etcd gets to apply a request of ours that
/// may still be in flight before [`clean_up`] looks at the key again.
const SETTLE: Duration = Duration::from_millis(500);

/// How long [`clean_up`] keeps trying before it gives up with a warning.
const CLEAN_UP_WINDOW: Duration = Duration::from_secs(10);

/// The key one lock attempt writes: the lock range `name` (`{prefix}{id}/`),
/// the key under it, and the lease it is attached to.
///
/// Name and key are shared, not copied, by everything that needs them while
/// the lock is held (the local queue, the release-watch registration, the
/// unlock): each copy was an allocation on every lock.
pub(crate) struct LockKey {
    pub(crate) lease: Arc<Lease>,
    pub(crate) name: Arc<str>,
    pub(crate) key: Arc<str>,
}

impl LockKey {
    /// `lease`'s key under `name`: `{name}{lease hex}`, or `{name}{n}/{lease
    /// hex}` once the name was retired `n` times.
    pub(crate) fn new(lease: Arc<Lease>, name: Arc<str>) -> LockKey {
        let hex = lease.hex();
        let key = match lease.retirements(&name) {
            0 => {
                let mut key = String::with_capacity(name.len() + hex.len());
                key.push_str(&name);
                key.push_str(hex);
                key
            }
            n => format!("{name}{n}/{hex}"),
        };
        LockKey {
            key: key.into(),
            lease,
            name,
        }
    }
}

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

impl AcquireError {
    /// Classifies a failed request of `own`'s attempt; when etcd says the
    /// lease is gone, marks it lost first, so the next attempt gets a new one.
    fn of(own: &LockKey, error: CallError) -> AcquireError {
        if error.is_lease_not_found() {
            own.lease.invalidate();
            return AcquireError::LeaseLost;
        }
        AcquireError::from(error)
    }
}

/// Takes the lock with `own`, waiting until `deadline`. Returns the key's
/// create revision, the fencing token. On failure the key may exist, or
/// appear later (a Txn that timed out may still commit): the caller must
/// run [`clean_up`].
pub(crate) async fn acquire(
    client: &Client,
    kv: &mut KvClient,
    own: &LockKey,
    deadline: Instant,
) -> Result<i64, AcquireError> {
    let mut attempts = Attempts::new(deadline, ATTEMPT_TIMEOUT);
    let answer = loop {
        // Built again for each attempt rather than cloned: the first is the
        // only one in nearly every call.
        let answer = attempts.timed(kv.txn(free_lock_txn(own))).await;
        if let Some(outcome) = attempts.judge(answer).await {
            break outcome;
        }
    }
    .map_err(|e| AcquireError::of(own, e))?;
    if answer.succeeded() {
        return Ok(answer.header().map_or(0, |h| h.revision()));
    }
    // Boxed: the free lock's future stays small.
    Box::pin(contend(client, own, deadline)).await
}

/// The put of `own`'s key on its lease.
fn own_put(own: &LockKey) -> TxnOp {
    let options = PutOptions::new().with_lease(own.lease.id());
    TxnOp::put(&*own.key, "", Some(options))
}

/// The common case, a free lock, needs no read and nothing else in the
/// request: if no key exists under `name`, ours is the first and owns the
/// lock. The request is kept this small because etcd writes every Txn
/// whole into its raft log, taken branch or not.
fn free_lock_txn(own: &LockKey) -> Txn {
    Txn::new()
        .when([Compare::create_revision(&*own.name, CompareOp::Equal, 0).with_prefix()])
        .and_then([own_put(own)])
}

/// The lock range is not empty: `concurrency.Mutex`'s Txn, then the wait
/// behind every key created before ours.
async fn contend(client: &Client, own: &LockKey, deadline: Instant) -> Result<i64, AcquireError> {
    let (name, key) = (&*own.name, &*own.key);
    let put = own_put(own);
    let owner = GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Ascend)
        .with_limit(1);
    let txn = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then([put, TxnOp::get(name, Some(owner.clone()))])
        .or_else([TxnOp::get(key, None), TxnOp::get(name, Some(owner))]);
    let answer = retry(deadline, ATTEMPT_TIMEOUT, || {
        let mut kv = client.kv_client();
        let txn = txn.clone();
        async move { kv.txn(txn).await }
    })
    .await
    .map_err(|e| AcquireError::of(own, e))?;
    let line = Line::read(&answer);
    if line.owner_revision == line.own_revision {
        return Ok(line.own_revision);
    }
    tokio::select! {
        result = wait_in_line(client, own, line, deadline) => result,
        _ = own.lease.lost() => Err(AcquireError::LeaseLost),
    }
}

/// Where `concurrency.Mutex`'s Txn found us.
struct Line {
    /// The revision the Txn was answered at.
    seen_at: i64,
    /// Our key's create revision. If the key already existed it is ours to
    /// use: an earlier attempt of this call (whose answer was lost) wrote
    /// it, or a Txn of an earlier call of ours committed late; either way
    /// it is newer than every earlier holder's.
    own_revision: i64,
    /// The lowest key under the name: the owner.
    owner_key: Vec<u8>,
    owner_revision: i64,
    /// How many keys the name had.
    contenders: i64,
}

impl Line {
    fn read(answer: &TxnResponse) -> Line {
        let range = |index: usize| -> Option<GetResponse> {
            match answer.op_responses().into_iter().nth(index)? {
                TxnOpResponse::Get(get) => Some(get),
                _ => None,
            }
        };
        let seen_at = answer.header().map_or(0, |h| h.revision());
        let own_revision = if answer.succeeded() {
            seen_at
        } else {
            range(0)
                .and_then(|own| own.kvs().first().map(|kv| kv.create_revision()))
                .unwrap_or(0)
        };
        let owners = range(1);
        let owner = owners.as_ref().and_then(|o| o.kvs().first());
        Line {
            seen_at,
            own_revision,
            owner_key: owner.map(|kv| kv.key().to_vec()).unwrap_or_default(),
            owner_revision: owner.map_or(own_revision, |kv| kv.create_revision()),
            contenders: owners.map_or(1, |o| o.count()),
        }
    }
}

/// Waits behind the keys created before ours, then checks that ours
/// survived the wait.
async fn wait_in_line(
    client: &Client,
    own: &LockKey,
    line: Line,
    deadline: Instant,
) -> Result<i64, AcquireError> {
    // A key of our own lease before ours is a leftover (an unlock whose
    // delete never got through): remove it rather than wait for the lease
    // to expire.
    let leftover = |key: &[u8]| own.lease.wrote(key);
    let mut clear = false;
    if line.contenders == 2 && leftover(&line.owner_key) {
        clear = remove(client, own, &line.owner_key, deadline).await.is_ok();
    } else if line.contenders == 2 {
        // Only the owner before us: watch it straight from the Txn's
        // revision; its deletion hands us the lock, one round trip sooner.
        let gone = wait_deleted(client, line.owner_key, line.seen_at + 1);
        match tokio::time::timeout_at(deadline, gone).await {
            Ok(deleted) => clear = deleted,
            Err(_) => return Err(AcquireError::StillHeld),
        }
    }
    let before_ours = line.own_revision - 1;
    while !clear {
        match wait_for_predecessors(client, &own.name, before_ours, leftover, deadline).await? {
            Waited::Clear => clear = true,
            Waited::TimedOut => return Err(AcquireError::StillHeld),
            Waited::Skipped(key) => remove(client, own, &key, deadline).await?,
        }
    }
    if !look(&mut client.kv_client(), &own.key, deadline).await? {
        return Err(AcquireError::LeaseLost);
    }
    Ok(line.own_revision)
}

/// Gives the lock back by deleting `own`'s key. `Ok(false)` when it was
/// already gone before this call (the lease expired or someone deleted it):
/// the lock was not held any more.
pub(crate) async fn release(
    kv: &mut KvClient,
    own: &LockKey,
    deadline: Instant,
) -> Result<bool, Error> {
    let (deleted, resent) = delete(kv, own, &own.key, deadline).await?;
    // After a resend, "not there" may mean that an earlier attempt deleted it.
    Ok(deleted || resent)
}

/// Makes sure `own`'s key is gone after a lock attempt or an unlock failed
/// midway.
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
pub(crate) async fn clean_up<T: Send>(mut kv: KvClient, own: LockKey, written: bool, turn: T) {
    let give_up = Instant::now() + CLEAN_UP_WINDOW;
    let mut present = written;
    let mut absent_once = false;
    while Instant::now() < give_up {
        if !present {
            match look(&mut kv, &own.key, Instant::now() + ATTEMPT_TIMEOUT).await {
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
        if delete(&mut kv, &own, &own.key, deadline).await.is_err() {
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
    own.lease.retire(&own.name);
    tracing::warn!(
        key = &*own.key,
        "could not make sure the key of a failed lock call is gone"
    );
}

/// Deletes a leftover `key` of `own`'s lease under `own`'s name.
async fn remove(
    client: &Client,
    own: &LockKey,
    key: &[u8],
    deadline: Instant,
) -> Result<(), CallError> {
    let key = String::from_utf8_lossy(key);
    delete(&mut client.kv_client(), own, &key, deadline).await?;
    Ok(())
}

/// Deletes `key` (a key of `own`'s lease under `own`'s name): one plain
/// delete, retried until `deadline`. Returns whether the last attempt
/// deleted it, and whether the delete was sent more than once. A delete
/// sent without an answer may still be applied later, so the name is then
/// retired: the lease never writes its current key again.
async fn delete(
    kv: &mut KvClient,
    own: &LockKey,
    key: &str,
    deadline: Instant,
) -> Result<(bool, bool), CallError> {
    let mut attempts = Attempts::new(deadline, ATTEMPT_TIMEOUT);
    let answer = loop {
        let answer = attempts.timed(kv.delete(key, None)).await;
        if let Some(outcome) = attempts.judge(answer).await {
            break outcome;
        }
    };
    let resent = attempts.resent();
    if resent || answer.is_err() {
        own.lease.retire(&own.name);
    }
    Ok((answer?.deleted() > 0, resent))
}

/// Whether `key` exists.
async fn look(kv: &mut KvClient, key: &str, deadline: Instant) -> Result<bool, CallError> {
    let mut attempts = Attempts::new(deadline, ATTEMPT_TIMEOUT);
    let answer = loop {
        let request = kv.get(key, Some(GetOptions::new().with_keys_only()));
        let answer = attempts.timed(request).await;
        if let Some(outcome) = attempts.judge(answer).await {
            break outcome;
        }
    }?;
    Ok(!answer.kvs().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_gos_name_until_it_is_retired() {
        let lease = Lease::unattached(0x694d);
        let key = |name: &str| LockKey::new(lease.clone(), name.into()).key.to_string();
        assert_eq!(key("/tusdabc/"), "/tusdabc/694d");
        lease.retire("/tusdabc/");
        assert_eq!(key("/tusdabc/"), "/tusdabc/1/694d");
        lease.retire("/tusdabc/");
        assert_eq!(key("/tusdabc/"), "/tusdabc/2/694d");
        assert_eq!(key("/tusdabd/"), "/tusdabd/694d");
        assert!(lease.wrote(b"/tusdabc/2/694d") && lease.wrote(b"/tusdabc/694d"));
        assert!(!lease.wrote(b"/tusdabc/1694d"));
    }
}

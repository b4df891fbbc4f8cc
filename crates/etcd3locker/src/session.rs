//! The locker's session: one lease for the whole process, granted on first
//! use, kept alive (see [`crate::keepalive`]), replaced when lost, and
//! revoked after a loss once etcd answers again. etcd's Go `concurrency`
//! package calls this a session; there, every tusd lock opens its own.
//!
//! Every lock key a locker writes is attached to its current lease, so a
//! crashed process loses all its locks when the lease expires, and a clean
//! shutdown drops them all with one revoke. Sharing one lease among all
//! locks saves two raft writes per lock (grant and revoke).
//!
//! A lost lease is revoked, retried until etcd confirms it, because after
//! an outage etcd restores leases with a fresh TTL: without the revoke, the
//! old keys would block their uploads for a whole TTL after etcd is back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Client, LeaseGrantOptions};
use tokio::time::{sleep, Instant};
use tokio_util::sync::CancellationToken;
use tusd_core::LockSignals;

use crate::call::{classify, retry, Failure, ATTEMPT_TIMEOUT};
use crate::keepalive::{KeepAlive, Route, Timing};
use crate::{Error, GRANT_TIMEOUT};

/// The lease of a locker, and how to get a fresh one. Dropping it stops the
/// keep-alive and any revoke still retried.
pub(crate) struct Session {
    client: Client,
    ttl: Duration,
    prefix: String,
    /// Decided at the first grant, when the cluster id is known.
    routes: Mutex<Option<Vec<Route>>>,
    current: Mutex<Option<Arc<Lease>>>,
    /// Held while granting, so concurrent callers wait for one grant.
    granting: tokio::sync::Mutex<()>,
    /// Cancelled at shutdown or drop.
    stop: CancellationToken,
    /// Set with `stop` at shutdown, read on every lock without the token's
    /// mutex.
    closed: AtomicBool,
}

/// One granted lease and the locks held under it.
pub(crate) struct Lease {
    id: i64,
    /// `id` in lowercase hex, the last part of every key of this lease;
    /// formatted once, not per lock.
    hex: Box<str>,
    /// The fencing token issuer: `etcd:{cluster id}{prefix}`.
    issuer: Arc<str>,
    lost: CancellationToken,
    /// Whether `lost` was cancelled, read on every lock and unlock without
    /// the token's mutex.
    is_lost: AtomicBool,
    /// Signals of the locks held under this lease; `None` once lost, so a
    /// lock that registers late learns at once that its lease is gone.
    holders: Mutex<Option<HashMap<u64, Arc<LockSignals>>>>,
    next_holder: AtomicU64,
    /// How often each lock name's key under this lease was retired (see
    /// [`Lease::retire`]). Grows only when etcd leaves a delete unanswered.
    retired: Mutex<HashMap<String, u32>>,
    /// Whether `retired` has any entry: almost never, so the lock path
    /// skips its mutex and hashing.
    any_retired: AtomicBool,
}

/// A held lock's place among those told when the lease is lost; dropping it
/// leaves.
pub(crate) struct Holder {
    lease: Arc<Lease>,
    slot: u64,
}

impl Session {
    pub(crate) fn new(client: Client, ttl: Duration, prefix: &str) -> Session {
        Session {
            client,
            ttl,
            prefix: prefix.to_owned(),
            routes: Mutex::new(None),
            current: Mutex::new(None),
            granting: tokio::sync::Mutex::new(()),
            stop: CancellationToken::new(),
            closed: AtomicBool::new(false),
        }
    }

    /// The lease to attach new lock keys to: the current one while it is
    /// valid, else a new one granted before `deadline`.
    pub(crate) async fn lease(&self, deadline: Instant) -> Result<Arc<Lease>, Error> {
        if let Some(lease) = self.valid() {
            return Ok(lease);
        }
        // Boxed: a grant's future is several kilobytes, and inline it would
        // make every lock's future that large, copied on every lock.
        Box::pin(self.renew(deadline)).await
    }

    /// The slow way of [`Session::lease`]: a new lease, granted once for
    /// all concurrent callers.
    async fn renew(&self, deadline: Instant) -> Result<Arc<Lease>, Error> {
        let _granting = self.granting.lock().await;
        if self.stop.is_cancelled() {
            return Err(Error::ShutDown);
        }
        if let Some(lease) = self.valid() {
            return Ok(lease);
        }
        let (lease, granted_at, cluster_id) = self.grant(deadline).await?;
        let routes = self
            .routes
            .lock()
            .unwrap()
            .get_or_insert_with(|| Route::for_cluster(&self.client, cluster_id))
            .clone();
        let keeper = KeepAlive::new(lease.clone(), Timing::for_ttl(self.ttl), routes, granted_at);
        let (client, stop, id) = (self.client.clone(), self.stop.child_token(), lease.id);
        tokio::spawn(async move {
            if keeper.run(stop.clone()).await {
                revoke_until_confirmed(client, id, stop).await;
            }
        });
        *self.current.lock().unwrap() = Some(lease.clone());
        Ok(lease)
    }

    fn valid(&self) -> Option<Arc<Lease>> {
        if self.closed.load(Ordering::Acquire) {
            return None;
        }
        let current = self.current.lock().unwrap();
        current.as_ref().filter(|lease| !lease.is_lost()).cloned()
    }

    /// Revokes the current lease, so every key of this locker goes at once,
    /// and tells every holder its lock is lost. Later [`Session::lease`]
    /// calls fail with [`Error::ShutDown`].
    pub(crate) async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.stop.cancel();
        let _granting = self.granting.lock().await;
        let Some(lease) = self.current.lock().unwrap().take() else {
            return;
        };
        lease.mark_lost();
        let id = lease.id;
        let deadline = Instant::now() + 2 * GRANT_TIMEOUT;
        let revoked = retry(deadline, ATTEMPT_TIMEOUT, || {
            let mut client = self.client.clone();
            async move { revoke_once(&mut client, id).await }
        })
        .await;
        if let Err(e) = revoked {
            tracing::warn!(lease = format_args!("{id:x}"), error = ?e,
                "could not revoke the etcd lease at shutdown; it expires after its TTL");
        }
    }

    /// Grants a lease with an id chosen here, so that a grant retried after a
    /// timeout cannot create a second lease, and a grant given up on can be
    /// revoked by id. Returns the lease, when the grant was sent and the id
    /// of the cluster that granted it.
    async fn grant(&self, deadline: Instant) -> Result<(Arc<Lease>, Instant, u64), Error> {
        let id = (rand::random::<i64>() & i64::MAX).max(1);
        let ttl = self.ttl.as_secs() as i64;
        let sent = Instant::now();
        let granted = retry(deadline, GRANT_TIMEOUT, || {
            let mut client = self.client.clone();
            async move {
                match client
                    .lease_grant(ttl, Some(LeaseGrantOptions::new().with_id(id)))
                    .await
                {
                    Ok(answer) => Ok(answer.header().map(|h| h.cluster_id())),
                    // An earlier attempt that timed out did grant it.
                    Err(e) if classify(&e) == Failure::LeaseExists => Ok(None),
                    Err(e) => Err(e),
                }
            }
        })
        .await;
        let cluster_id = match granted {
            Ok(Some(cluster_id)) => Ok(cluster_id),
            Ok(None) => retry(deadline, ATTEMPT_TIMEOUT, || {
                let mut client = self.client.clone();
                async move {
                    let answer = client.lease_time_to_live(id, None).await?;
                    Ok(answer.header().map_or(0, |h| h.cluster_id()))
                }
            })
            .await
            .map_err(Error::from),
            Err(e) => Err(Error::from(e)),
        };
        let cluster_id = match cluster_id {
            Ok(cluster_id) => cluster_id,
            Err(e) => {
                let client = self.client.clone();
                tokio::spawn(revoke_until_confirmed(client, id, self.stop.child_token()));
                return Err(e);
            }
        };
        tracing::debug!(lease = format_args!("{id:x}"), "granted etcd lease");
        let issuer = format!("etcd:{cluster_id:016x}{}", self.prefix);
        Ok((Lease::new(id, issuer.into()), sent, cluster_id))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Lease {
    fn new(id: i64, issuer: Arc<str>) -> Arc<Lease> {
        Arc::new(Lease {
            id,
            hex: format!("{id:x}").into(),
            issuer,
            lost: CancellationToken::new(),
            is_lost: AtomicBool::new(false),
            holders: Mutex::new(Some(HashMap::new())),
            next_holder: AtomicU64::new(0),
            retired: Mutex::new(HashMap::new()),
            any_retired: AtomicBool::new(false),
        })
    }

    /// The lease id; lock keys end in it, in lowercase hex.
    pub(crate) fn id(&self) -> i64 {
        self.id
    }

    /// The lease id in lowercase hex.
    pub(crate) fn hex(&self) -> &str {
        &self.hex
    }

    /// Names the counter that fencing tokens of locks under this lease come
    /// from: one etcd cluster's revisions, for one key prefix.
    pub(crate) fn issuer(&self) -> &Arc<str> {
        &self.issuer
    }

    pub(crate) fn is_lost(&self) -> bool {
        self.is_lost.load(Ordering::Acquire)
    }

    /// Resolves once the lease is lost or revoked.
    pub(crate) async fn lost(&self) {
        self.lost.cancelled().await
    }

    /// Records that etcd answered a request with "lease not found": every
    /// lock under it is lost, and the next lock gets a new lease. Nothing
    /// needs revoking.
    pub(crate) fn invalidate(&self) {
        if !self.is_lost() {
            tracing::warn!(
                lease = format_args!("{:x}", self.id),
                "etcd no longer knows the lease"
            );
        }
        self.mark_lost();
    }

    /// Tells every holder its lock is lost; later holders are told at once.
    pub(crate) fn mark_lost(&self) {
        self.is_lost.store(true, Ordering::Release);
        self.lost.cancel();
        let holders = self.holders.lock().unwrap().take();
        for signals in holders.into_iter().flat_map(HashMap::into_values) {
            signals.mark_lost();
        }
    }

    /// Adds a held lock to those told on loss, until the [`Holder`] is
    /// dropped. Returns `None`, having marked `signals` lost, when the lease
    /// is already lost.
    pub(crate) fn hold(self: &Arc<Self>, signals: &Arc<LockSignals>) -> Option<Holder> {
        let mut holders = self.holders.lock().unwrap();
        let Some(holders) = holders.as_mut() else {
            signals.mark_lost();
            return None;
        };
        let slot = self.next_holder.fetch_add(1, Ordering::Relaxed);
        holders.insert(slot, signals.clone());
        Some(Holder {
            lease: self.clone(),
            slot,
        })
    }

    /// How often the key of lock `name` under this lease was retired.
    pub(crate) fn retirements(&self, name: &str) -> u32 {
        // A retirement happens before its caller gives up the id's local
        // turn, and this is read after taking the turn, so the flag is seen.
        if !self.any_retired.load(Ordering::Acquire) {
            return 0;
        }
        self.retired.lock().unwrap().get(name).copied().unwrap_or(0)
    }

    /// Never writes the current key of lock `name` again: a delete of it was
    /// sent without an answer, and etcd may still apply it (a hung member
    /// keeps it queued), which must not remove a later key of this lease.
    pub(crate) fn retire(&self, name: &str) {
        let mut retired = self.retired.lock().unwrap();
        *retired.entry(name.to_owned()).or_insert(0) += 1;
        self.any_retired.store(true, Ordering::Release);
    }

    /// Whether `key` was written under this lease: it ends in `/{id hex}`.
    pub(crate) fn wrote(&self, key: &[u8]) -> bool {
        key.strip_suffix(self.hex.as_bytes())
            .is_some_and(|rest| rest.ends_with(b"/"))
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        if let Some(holders) = self.lease.holders.lock().unwrap().as_mut() {
            holders.remove(&self.slot);
        }
    }
}

/// One revoke of lease `id`; etcd not knowing the lease counts as done.
async fn revoke_once(client: &mut Client, id: i64) -> Result<(), etcd_client::Error> {
    match client.lease_revoke(id).await {
        Err(e) if classify(&e) == Failure::LeaseNotFound => Ok(()),
        other => other.map(drop),
    }
}

/// Revokes lease `id` (deleting its keys), retrying with backoff until etcd
/// confirms that the lease is gone, or `stop`. No time limit: after an
/// outage etcd restores a lease with a fresh TTL, so giving up would leave
/// its keys in the way for a whole TTL after etcd is back.
async fn revoke_until_confirmed(mut client: Client, id: i64, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    let mut warned = false;
    loop {
        let attempt = tokio::time::timeout(ATTEMPT_TIMEOUT, revoke_once(&mut client, id));
        let outcome = tokio::select! {
            _ = stop.cancelled() => return,
            outcome = attempt => outcome,
        };
        match outcome {
            Ok(Ok(())) => {
                tracing::info!(lease = format_args!("{id:x}"), "lost etcd lease revoked");
                return;
            }
            Ok(Err(e)) if classify(&e) != Failure::Unavailable && !warned => {
                warned = true;
                tracing::warn!(lease = format_args!("{id:x}"), error = %e,
                    "etcd refuses to revoke a lost lease; still trying");
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "revoking a lost lease failed"),
            Err(_) => tracing::debug!("revoking a lost lease: no answer"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

#[cfg(test)]
impl Lease {
    /// A lease that was never granted, for unit tests.
    pub(crate) fn unattached(id: i64) -> Arc<Lease> {
        Lease::new(id, "test".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_leave_when_dropped_and_hear_of_loss_while_held() {
        let lease = Lease::unattached(0x2a);
        let (kept, dropped) = (Arc::new(LockSignals::new()), Arc::new(LockSignals::new()));
        let _kept = lease.hold(&kept).unwrap();
        drop(lease.hold(&dropped).unwrap());
        lease.mark_lost();
        assert!(kept.is_lost());
        assert!(!dropped.is_lost());
        let late = Arc::new(LockSignals::new());
        assert!(lease.hold(&late).is_none());
        assert!(late.is_lost());
    }
}

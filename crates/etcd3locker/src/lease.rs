//! The locker's one lease: granted on first use, kept alive by one task,
//! replaced when lost.
//!
//! Every lock key a locker writes is attached to its current lease, so a
//! crashed process loses all its locks when the lease expires, and a clean
//! shutdown drops them all with one revoke. Sharing one lease among all
//! locks (instead of one per lock, as the Go locker does) saves two raft
//! writes per lock (grant and revoke) and keeps one keep-alive stream per
//! process instead of one per lock.
//!
//! Loss is decided locally, before etcd could decide it: the lease counts as
//! valid until the *send* time of the last acknowledged keep-alive plus two
//! thirds of the TTL. etcd renewed the lease when it received that keep-alive,
//! which was after we sent it, so etcd keeps the lease at least a third of
//! the TTL longer than we trust it. Past our deadline, or when etcd answers
//! a keep-alive with TTL 0 (the lease is gone), every lock under the lease is
//! told at once ([`tusd_handler::LockSignals::mark_lost`]), the lease is
//! revoked best-effort (which deletes its keys), and the next lock gets a
//! new lease.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Client, LeaseGrantOptions};
use tokio::time::{sleep, sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tusd_handler::LockSignals;

use crate::call::{retry, ATTEMPT_TIMEOUT};
use crate::{Error, GRANT_TIMEOUT};

/// The current lease of a locker, and how to get a fresh one.
pub(crate) struct Leases {
    client: Client,
    ttl: Duration,
    current: Mutex<Option<Arc<Lease>>>,
    /// Held while granting, so concurrent callers wait for one grant.
    granting: tokio::sync::Mutex<()>,
    /// Cancelled at shutdown or when the locker is dropped; stops keep-alives.
    stop: CancellationToken,
}

/// One granted lease and the locks held under it.
pub(crate) struct Lease {
    id: i64,
    lost: CancellationToken,
    /// Signals of the locks held under this lease; `None` once lost, so a
    /// lock that registers late learns at once that its lease is gone.
    holders: Mutex<Option<HashMap<u64, LockSignals>>>,
    next_holder: AtomicU64,
}

impl Leases {
    pub(crate) fn new(client: Client, ttl: Duration) -> Leases {
        Leases {
            client,
            ttl,
            current: Mutex::new(None),
            granting: tokio::sync::Mutex::new(()),
            stop: CancellationToken::new(),
        }
    }

    /// The lease to attach new lock keys to: the current one while it is
    /// valid, else a new one granted before `deadline`.
    pub(crate) async fn get(&self, deadline: Instant) -> Result<Arc<Lease>, Error> {
        if let Some(lease) = self.valid() {
            return Ok(lease);
        }
        let _granting = self.granting.lock().await;
        if self.stop.is_cancelled() {
            return Err(Error::ShutDown);
        }
        if let Some(lease) = self.valid() {
            return Ok(lease);
        }
        let (lease, granted_at) = self.grant(deadline).await?;
        tokio::spawn(keep_alive(
            self.client.clone(),
            lease.clone(),
            self.ttl,
            granted_at,
            self.stop.child_token(),
        ));
        *self.current.lock().unwrap() = Some(lease.clone());
        Ok(lease)
    }

    fn valid(&self) -> Option<Arc<Lease>> {
        if self.stop.is_cancelled() {
            return None;
        }
        let current = self.current.lock().unwrap();
        current.as_ref().filter(|lease| !lease.is_lost()).cloned()
    }

    /// Revokes the current lease, so every key of this locker goes at once,
    /// and tells every holder its lock is lost. Later [`Leases::get`] fails.
    pub(crate) async fn shutdown(&self) {
        self.stop.cancel();
        let _granting = self.granting.lock().await;
        let lease = self.current.lock().unwrap().take();
        if let Some(lease) = lease {
            lease.mark_lost();
            revoke(&self.client, lease.id, Instant::now() + 2 * GRANT_TIMEOUT).await;
        }
    }

    /// Grants a lease with an id chosen here, so that a grant retried after a
    /// timeout cannot create a second lease, and a grant given up on can be
    /// revoked by id.
    async fn grant(&self, deadline: Instant) -> Result<(Arc<Lease>, Instant), Error> {
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
                    Err(e) if e.to_string().contains("lease already exists") => Ok(()),
                    other => other.map(drop),
                }
            }
        })
        .await;
        if let Err(e) = granted {
            let client = self.client.clone();
            let ttl = self.ttl;
            tokio::spawn(async move { revoke(&client, id, Instant::now() + ttl).await });
            return Err(e.into());
        }
        tracing::debug!(lease = format_args!("{id:x}"), "granted etcd lease");
        let lease = Lease {
            id,
            lost: CancellationToken::new(),
            holders: Mutex::new(Some(HashMap::new())),
            next_holder: AtomicU64::new(0),
        };
        Ok((Arc::new(lease), sent))
    }
}

impl Drop for Leases {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Lease {
    /// The lease id; lock keys end in it, in lowercase hex.
    pub(crate) fn id(&self) -> i64 {
        self.id
    }

    pub(crate) fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }

    /// Resolves once the lease is lost or revoked.
    pub(crate) async fn lost(&self) {
        self.lost.cancelled().await
    }

    /// Adds a held lock to those told on loss. Returns `None`, having marked
    /// `signals` lost, when the lease is already lost.
    pub(crate) fn register(&self, signals: &LockSignals) -> Option<u64> {
        let mut holders = self.holders.lock().unwrap();
        match holders.as_mut() {
            Some(holders) => {
                let key = self.next_holder.fetch_add(1, Ordering::Relaxed);
                holders.insert(key, signals.clone());
                Some(key)
            }
            None => {
                signals.mark_lost();
                None
            }
        }
    }

    pub(crate) fn unregister(&self, key: u64) {
        if let Some(holders) = self.holders.lock().unwrap().as_mut() {
            holders.remove(&key);
        }
    }

    fn mark_lost(&self) {
        self.lost.cancel();
        let holders = self.holders.lock().unwrap().take();
        for signals in holders.into_iter().flat_map(HashMap::into_values) {
            signals.mark_lost();
        }
    }
}

/// Keeps `lease` alive every TTL/3 until `stop`, reopening the keep-alive
/// stream whenever it breaks or goes quiet (etcd-client does neither), and
/// declares the lease lost as described in the module docs.
async fn keep_alive(
    client: Client,
    lease: Arc<Lease>,
    ttl: Duration,
    granted_at: Instant,
    stop: CancellationToken,
) {
    let window = ttl * 2 / 3;
    let interval = ttl / 3;
    let mut valid_until = granted_at + window;
    let mut next_send = granted_at + interval;
    let mut unanswered: VecDeque<Instant> = VecDeque::new();
    let mut stream = None;
    let mut backoff = Duration::from_millis(50);
    let reason = loop {
        let Some((keeper, responses)) = stream.as_mut() else {
            // Opening sends one keep-alive and waits for its answer.
            let sent = Instant::now();
            let mut lease_client = client.lease_client();
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = lease.lost.cancelled() => return,
                _ = sleep_until(valid_until) => break "no keep-alive answered in time",
                opened = lease_client.keep_alive(lease.id) => match opened {
                    Ok(pair) => {
                        valid_until = valid_until.max(sent + window);
                        next_send = sent + interval;
                        unanswered.clear();
                        backoff = Duration::from_millis(50);
                        stream = Some(pair);
                    }
                    Err(e) if e.to_string().contains("lease not found") => {
                        break "etcd no longer knows the lease";
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "lease keep-alive stream failed to open");
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = sleep(backoff) => {}
                            _ = sleep_until(valid_until) => break "no keep-alive answered in time",
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    }
                },
            }
            continue;
        };
        let quiet_since = unanswered.front().copied();
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = lease.lost.cancelled() => return,
            _ = sleep_until(valid_until) => break "no keep-alive answered in time",
            _ = sleep_until(next_send) => {
                unanswered.push_back(Instant::now());
                next_send = Instant::now() + interval;
                if keeper.keep_alive().await.is_err() {
                    stream = None;
                }
            }
            // A keep-alive unanswered for a whole interval: the connection may be
            // to a member that hangs; a new stream may reach another one.
            _ = sleep_until(quiet_since.map_or(valid_until, |sent| sent + interval)),
                if quiet_since.is_some() => {
                stream = None;
            }
            message = responses.message() => match message {
                Ok(Some(answer)) if answer.ttl() <= 0 => break "etcd answered a keep-alive with TTL 0",
                Ok(Some(_)) => {
                    if let Some(sent) = unanswered.pop_front() {
                        valid_until = valid_until.max(sent + window);
                    }
                }
                _ => stream = None,
            }
        }
    };
    tracing::warn!(
        lease = format_args!("{:x}", lease.id),
        reason,
        "etcd lease lost"
    );
    lease.mark_lost();
    revoke(&client, lease.id, Instant::now() + ttl).await;
}

/// Revokes lease `id` (deleting its keys), retrying until `deadline`; by
/// then etcd expires it anyway. Failures are only logged.
async fn revoke(client: &Client, id: i64, deadline: Instant) {
    let revoked = retry(deadline, ATTEMPT_TIMEOUT, || {
        let mut client = client.clone();
        async move {
            match client.lease_revoke(id).await {
                Err(e) if e.to_string().contains("lease not found") => Ok(()),
                other => other.map(drop),
            }
        }
    })
    .await;
    if let Err(e) = revoked {
        tracing::warn!(lease = format_args!("{id:x}"), error = ?e, "could not revoke etcd lease");
    }
}

//! [`Etcd3Locker`]: the seed's API, and the handler's [`Locker`] interface.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::Client;
use tokio::time::Instant;
use tusd_core::{
    FencingToken, Lock, LockError, LockSignals, Locker, Release, StoreComposer, UploadId,
};

use crate::call::ATTEMPT_TIMEOUT;
use crate::mutex::{acquire, clean_up, release, AcquireError, LockKey};
use crate::queue::{LocalQueue, Turn};
use crate::release_request::{ReleaseWatch, ReleaseWatches};
use crate::session::{Holder, Session};
use crate::{Error, LockerOptions};

/// How long [`Etcd3Locker::lock_upload`] waits, as the Go locker does.
const LOCK_UPLOAD_WAIT: Duration = Duration::from_secs(5);

/// How long an unlock may try to delete its key.
const UNLOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// Distributed per-upload locks on an etcd v3 cluster.
///
/// Cheap to clone: clones share the lease, the local queues and the locks.
/// Dropping the last clone stops the keep-alive, so the locks expire after
/// the TTL; call [`Etcd3Locker::shutdown`] to give them up at once.
#[derive(Clone)]
pub struct Etcd3Locker {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    options: LockerOptions,
    session: Session,
    queue: LocalQueue,
    release_watches: ReleaseWatches,
    /// Locks taken through [`Etcd3Locker::lock_upload`], by id.
    uploads: Mutex<HashMap<String, Lock>>,
}

impl Etcd3Locker {
    /// A locker with TTL 60 s and prefix `/tusd`. The client must be
    /// connected (see [`crate::connect()`]); nothing is sent before the first lock.
    pub fn new(client: Client) -> Etcd3Locker {
        Etcd3Locker::with_options(client, LockerOptions::default())
    }

    /// A locker whose keys live under `prefix`, for clusters shared by several
    /// tusd deployments: lockers with different prefixes never exclude each other.
    pub fn with_prefix(client: Client, prefix: &str) -> Etcd3Locker {
        Etcd3Locker::with_options(client, LockerOptions::new(0, prefix))
    }

    /// A locker with the given TTL and prefix.
    pub fn with_options(client: Client, options: LockerOptions) -> Etcd3Locker {
        Etcd3Locker {
            inner: Arc::new(Inner {
                session: Session::new(client.clone(), options.ttl_duration(), options.prefix()),
                release_watches: ReleaseWatches::new(client.clone()),
                client,
                options,
                queue: LocalQueue::default(),
                uploads: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The etcd client the locker sends its requests through.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The TTL and prefix the locker was built with.
    pub fn options(&self) -> &LockerOptions {
        &self.inner.options
    }

    /// Makes this locker the composer's locker.
    pub fn use_in(&self, composer: &mut StoreComposer) {
        composer.use_locker(Arc::new(self.clone()));
    }

    /// Takes the lock on `id`, waiting up to 5 seconds, and keeps it until
    /// [`Etcd3Locker::unlock_upload`]. Fails with [`Error::FileLocked`] when
    /// someone else (another process, or an earlier `lock_upload` of this
    /// locker) still holds it then, and with [`Error::InvalidId`] for ids that
    /// are empty or contain `/`.
    pub async fn lock_upload(&self, id: &str) -> Result<(), Error> {
        let lock = self.lock_id(id, Instant::now() + LOCK_UPLOAD_WAIT).await?;
        self.inner
            .uploads
            .lock()
            .unwrap()
            .insert(id.to_owned(), lock);
        Ok(())
    }

    /// Gives back a lock taken with [`Etcd3Locker::lock_upload`]. Fails with
    /// [`Error::LockNotHeld`] when this locker does not hold `id`, and with
    /// [`Error::LockLost`] when the lock was lost while held.
    pub async fn unlock_upload(&self, id: &str) -> Result<(), Error> {
        let lock = self.inner.uploads.lock().unwrap().remove(id);
        let lock = lock.ok_or(Error::LockNotHeld)?;
        lock.unlock().await.map_err(|e| match e {
            LockError::Lost => Error::LockLost,
            LockError::NotHeld => Error::LockNotHeld,
            LockError::Timeout => Error::Unavailable("unlock timed out".to_owned()),
            LockError::Unavailable(reason) => Error::Unavailable(reason),
        })
    }

    /// Revokes the lease, so all locks of this locker go at once; their
    /// holders are told the locks are lost. Later locks fail with
    /// [`Error::ShutDown`].
    pub async fn shutdown(&self) {
        self.inner.session.close().await;
        let uploads = std::mem::take(&mut *self.inner.uploads.lock().unwrap());
        drop(uploads);
    }

    async fn lock_id(&self, id: &str, deadline: Instant) -> Result<Lock, Error> {
        if id.is_empty() || id.contains('/') {
            return Err(Error::InvalidId(id.to_owned()));
        }
        let inner = &self.inner;
        let name = lock_name(inner.options.prefix(), id);
        let turn = inner
            .queue
            .wait_turn(&name, deadline)
            .await
            .ok_or(Error::FileLocked)?;
        // One KV client for every request of this lock, unlock included.
        let mut kv = inner.client.kv_client();
        loop {
            let own = LockKey::new(inner.session.lease(deadline).await?, name.clone());
            let revision = match acquire(&inner.client, &mut kv, &own, deadline).await {
                Ok(revision) => revision,
                Err(AcquireError::LeaseLost) if Instant::now() < deadline => {
                    // A new lease means a new key, so the old key can be
                    // cleaned up while this caller goes on. On the same lease
                    // the key was seen gone already.
                    if own.lease.is_lost() {
                        tokio::spawn(clean_up(inner.client.kv_client(), own, false, ()));
                    }
                    continue;
                }
                Err(failure) => {
                    tokio::spawn(clean_up(kv, own, false, turn));
                    return Err(match failure {
                        AcquireError::StillHeld => Error::FileLocked,
                        AcquireError::LeaseLost => Error::LockLost,
                        AcquireError::Failed(e) => e,
                    });
                }
            };
            // Shared by the lease, the local queue, the release watch and
            // the unlock: a clone of the signals themselves costs two
            // mutex round trips to make and two to drop.
            let signals = Arc::new(LockSignals::new());
            let Some(holder) = own.lease.hold(&signals) else {
                continue;
            };
            turn.set_holder(&signals);
            let watch = inner.release_watches.register(
                own.name.clone(),
                own.key.clone(),
                revision,
                signals.clone(),
            );
            let token = FencingToken::new(own.lease.issuer().clone(), revision);
            let holders_signals = LockSignals::clone(&signals);
            let held = HeldLock {
                kv,
                own,
                signals,
                watch,
                holder,
                turn,
            };
            return Ok(Lock::new(holders_signals, Some(token), Box::new(held)));
        }
    }
}

/// The lock range of upload `id`: `{prefix}{id}/`, as Go's etcd3locker
/// names it (nothing between prefix and id).
fn lock_name(prefix: &str, id: &str) -> Arc<str> {
    let mut name = String::with_capacity(prefix.len() + id.len() + 1);
    name.push_str(prefix);
    name.push_str(id);
    name.push('/');
    name.into()
}

#[async_trait]
impl Locker for Etcd3Locker {
    async fn lock(&self, id: &UploadId, deadline: Instant) -> Result<Lock, LockError> {
        Ok(self.lock_id(id.as_str(), deadline).await?)
    }

    async fn shutdown(&self) {
        Etcd3Locker::shutdown(self).await;
    }
}

/// A lock this locker holds: its key, and guards for what it takes part
/// in while held: the release-request watch, the lease's loss notices, and
/// its place in the local queue, which the next local caller gets once the
/// key is gone.
struct HeldLock {
    // Not the locker itself: a lock kept in the locker's own table
    // (`lock_upload`) must not keep the locker alive.
    kv: etcd_client::KvClient,
    own: LockKey,
    signals: Arc<LockSignals>,
    watch: ReleaseWatch,
    holder: Holder,
    turn: Turn,
}

#[async_trait]
impl Release for HeldLock {
    async fn release(self: Box<Self>) -> Result<(), LockError> {
        let HeldLock {
            mut kv,
            own,
            signals,
            watch,
            holder,
            turn,
        } = *self;
        drop((watch, holder));
        if signals.is_lost() || own.lease.is_lost() {
            // The lease is being revoked (or has expired), which deletes the key.
            return Err(LockError::Lost);
        }
        let deadline = Instant::now() + UNLOCK_TIMEOUT.max(ATTEMPT_TIMEOUT);
        match release(&mut kv, &own, deadline).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(LockError::Lost),
            Err(e) => {
                // Until the key is surely gone, the next local caller waits
                // rather than queue behind it.
                tokio::spawn(clean_up(kv, own, true, turn));
                Err(LockError::from(e))
            }
        }
    }
}

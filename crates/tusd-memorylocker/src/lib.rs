//! The in-memory locker: the default for a single tusd-rs process.
//!
//! Every request that touches an unfinished upload holds that upload's lock,
//! so two requests (typically a client's retry and its own zombie request
//! whose connection has not timed out yet) never write the same upload at
//! once. When a request finds the lock taken, it asks the holder to release
//! ([`tusd_handler::LockSignals::request_release`]) and waits until the lock
//! is free or its deadline passes. The holder sees the request, stops reading
//! its body, keeps what it stored, answers and unlocks; the waiter then takes
//! the lock at once.
//!
//! The locks live in this process only: two processes sharing an upload
//! directory need a distributed locker such as `etcd3locker`.
//!
//! Fencing tokens come from one counter per locker, so they strictly increase
//! from one holder of an upload to the next. Their issuer is `memory:`
//! followed by 64 random bits drawn when the locker is made: a restarted
//! process counts from one again under a new issuer, which a store treats
//! as taking over from the old one, never as a stale holder.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;
use tusd_handler::{
    FencingToken, Lock, LockError, LockSignals, Locker, Release, StoreComposer, UploadId,
};

/// Locks held by this process, keyed by upload id.
#[derive(Clone)]
pub struct MemoryLocker {
    state: Arc<Mutex<State>>,
    issuer: Arc<str>,
}

impl Default for MemoryLocker {
    fn default() -> MemoryLocker {
        MemoryLocker {
            state: Arc::default(),
            issuer: format!("memory:{:016x}", rand::random::<u64>()).into(),
        }
    }
}

#[derive(Default)]
struct State {
    next_token: i64,
    held: HashMap<UploadId, Holder>,
}

struct Holder {
    token: i64,
    signals: LockSignals,
    /// Woken when this holder releases, so waiters retry.
    released: Arc<Notify>,
}

impl MemoryLocker {
    pub fn new() -> MemoryLocker {
        MemoryLocker::default()
    }

    /// Makes this locker the composer's locker.
    pub fn use_in(&self, composer: &mut StoreComposer) {
        composer.use_locker(Arc::new(self.clone()));
    }

    /// How many uploads are locked right now.
    pub fn held_count(&self) -> usize {
        self.state.lock().unwrap().held.len()
    }
}

#[async_trait]
impl Locker for MemoryLocker {
    async fn lock(&self, id: &UploadId, deadline: Instant) -> Result<Lock, LockError> {
        loop {
            let released = {
                let mut state = self.state.lock().unwrap();
                match state.held.get(id) {
                    Some(holder) => {
                        holder.signals.request_release();
                        holder.released.clone()
                    }
                    None => {
                        state.next_token += 1;
                        let token = state.next_token;
                        let signals = LockSignals::new();
                        state.held.insert(
                            id.clone(),
                            Holder {
                                token,
                                signals: signals.clone(),
                                released: Arc::new(Notify::new()),
                            },
                        );
                        let release = Box::new(MemoryRelease {
                            state: self.state.clone(),
                            id: id.clone(),
                            token,
                        });
                        let fencing = FencingToken::new(self.issuer.clone(), token);
                        return Ok(Lock::new(signals, Some(fencing), release));
                    }
                }
            };
            // Register for the wake-up first, then re-check: a release that
            // happened after the state lock was dropped is then never missed.
            let notified = released.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.state.lock().unwrap().held.contains_key(id) {
                continue;
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(deadline) => return Err(LockError::Timeout),
            }
        }
    }

    async fn shutdown(&self) {
        let state = self.state.lock().unwrap();
        for holder in state.held.values() {
            holder.signals.request_release();
        }
    }
}

struct MemoryRelease {
    state: Arc<Mutex<State>>,
    id: UploadId,
    token: i64,
}

#[async_trait]
impl Release for MemoryRelease {
    async fn release(self: Box<Self>) -> Result<(), LockError> {
        let mut state = self.state.lock().unwrap();
        match state.held.get(&self.id) {
            Some(holder) if holder.token == self.token => {
                let holder = state.held.remove(&self.id).expect("checked above");
                holder.released.notify_waiters();
                Ok(())
            }
            _ => Err(LockError::NotHeld),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn id(s: &str) -> UploadId {
        UploadId::parse(s).unwrap()
    }

    fn soon(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    #[tokio::test]
    async fn second_locker_times_out_and_asks_for_release() {
        let locker = MemoryLocker::new();
        let held = locker.lock(&id("a"), soon(100)).await.unwrap();
        assert!(!held.signals().is_release_requested());
        let err = locker.lock(&id("a"), soon(50)).await.unwrap_err();
        assert_eq!(err, LockError::Timeout);
        assert!(held.signals().is_release_requested());
        held.unlock().await.unwrap();
        assert_eq!(locker.held_count(), 0);
    }

    #[tokio::test]
    async fn waiter_gets_lock_when_holder_honours_release_request() {
        let locker = MemoryLocker::new();
        let held = locker.lock(&id("a"), soon(100)).await.unwrap();
        let first_token = held.fencing_token().unwrap().clone();
        let holder = tokio::spawn(async move {
            held.signals().release_requested().await;
            held.unlock().await.unwrap();
        });
        let next = locker.lock(&id("a"), soon(10_000)).await.unwrap();
        let next_token = next.fencing_token().unwrap();
        assert_eq!(next_token.issuer(), first_token.issuer());
        assert!(next_token.value() > first_token.value());
        holder.await.unwrap();
        next.unlock().await.unwrap();
    }

    #[tokio::test]
    async fn distinct_ids_do_not_contend() {
        let locker = MemoryLocker::new();
        let a = locker.lock(&id("a"), soon(100)).await.unwrap();
        let b = locker.lock(&id("b"), soon(100)).await.unwrap();
        assert!(!a.signals().is_release_requested());
        a.unlock().await.unwrap();
        b.unlock().await.unwrap();
    }

    #[tokio::test]
    async fn dropped_lock_is_released() {
        let locker = MemoryLocker::new();
        drop(locker.lock(&id("a"), soon(100)).await.unwrap());
        let again = locker.lock(&id("a"), soon(5_000)).await.unwrap();
        again.unlock().await.unwrap();
    }

    #[tokio::test]
    async fn many_waiters_each_get_the_lock_exactly_once() {
        let locker = MemoryLocker::new();
        let inside = Arc::new(Mutex::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let locker = locker.clone();
            let inside = inside.clone();
            tasks.push(tokio::spawn(async move {
                let lock = locker.lock(&id("a"), soon(30_000)).await.unwrap();
                {
                    let mut n = inside.lock().unwrap();
                    *n += 1;
                    assert_eq!(*n, 1, "two holders at once");
                }
                tokio::task::yield_now().await;
                *inside.lock().unwrap() -= 1;
                lock.unlock().await.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(locker.held_count(), 0);
    }
}

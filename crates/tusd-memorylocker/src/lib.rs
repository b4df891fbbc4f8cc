//! The in-memory locker: the default for a single tusd-rs process.
//!
//! Every request that touches an unfinished upload holds that upload's lock,
//! so two requests (typically a client's retry and its own zombie request
//! whose connection has not timed out yet) never write the same upload at
//! once. When a request finds the lock taken, it asks the holder to release
//! ([`tusd_core::LockSignals::request_release`]) and waits in line until
//! the lock is handed to it or its deadline passes. The holder sees the
//! request, stops reading its body, keeps what it stored, answers and
//! unlocks; the lock then goes straight to the longest waiting caller.
//!
//! The locks live in this process only: two processes sharing an upload
//! directory need a distributed locker such as `etcd3locker`.
//!
//! Fencing tokens come from one counter per locker, so they strictly increase
//! from one holder of an upload to the next. Their issuer is `memory:`
//! followed by 64 random bits drawn when the locker is made: a restarted
//! process counts from one again under a new issuer, which a store treats
//! as taking over from the old one, never as a stale holder.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tusd_core::{
    FencingToken, Lock, LockError, LockSignals, Locker, Release, StoreComposer, UploadId,
};

/// Locks held by this process, keyed by upload id.
#[derive(Clone)]
pub struct MemoryLocker {
    shared: Arc<Shared>,
}

struct Shared {
    issuer: Arc<str>,
    state: Mutex<State>,
}

impl Default for MemoryLocker {
    fn default() -> MemoryLocker {
        MemoryLocker {
            shared: Arc::new(Shared {
                issuer: format!("memory:{:016x}", rand::random::<u64>()).into(),
                state: Mutex::default(),
            }),
        }
    }
}

#[derive(Default)]
struct State {
    next_token: i64,
    held: HashMap<UploadId, Holder>,
}

/// The current holder of one upload's lock and the callers queued behind it.
///
/// Waiters are served first come, first served: a release hands the lock
/// straight to the longest waiting caller, so a newcomer can never take it
/// in between, and no waiter loses every race until its deadline.
struct Holder {
    token: i64,
    signals: LockSignals,
    waiters: VecDeque<oneshot::Sender<Lock>>,
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
        self.shared.state.lock().unwrap().held.len()
    }
}

impl Shared {
    /// Makes a new holder of `id` in `state` and returns its lock.
    fn grant(self: &Arc<Shared>, state: &mut State, id: &UploadId) -> (Lock, Holder) {
        state.next_token += 1;
        let token = state.next_token;
        let signals = LockSignals::new();
        let release = Box::new(MemoryRelease {
            shared: self.clone(),
            id: id.clone(),
            token,
        });
        let fencing = FencingToken::new(self.issuer.clone(), token);
        let lock = Lock::new(signals.clone(), Some(fencing), release);
        let holder = Holder {
            token,
            signals,
            waiters: VecDeque::new(),
        };
        (lock, holder)
    }
}

#[async_trait]
impl Locker for MemoryLocker {
    async fn lock(&self, id: &UploadId, deadline: Instant) -> Result<Lock, LockError> {
        let granted = {
            let mut state = self.shared.state.lock().unwrap();
            if let Some(holder) = state.held.get_mut(id) {
                holder.signals.request_release();
                // Callers that gave up leave no trace behind a long hold.
                holder.waiters.retain(|w| !w.is_closed());
                let (tx, rx) = oneshot::channel();
                holder.waiters.push_back(tx);
                rx
            } else {
                let (lock, holder) = self.shared.grant(&mut state, id);
                state.held.insert(id.clone(), holder);
                return Ok(lock);
            }
        };
        // A lock handed over just as the deadline passes is dropped with
        // the receiver, which releases it to the next waiter.
        match tokio::time::timeout_at(deadline, granted).await {
            Ok(Ok(lock)) => Ok(lock),
            Ok(Err(_)) => Err(LockError::Unavailable(
                "the locker shut down while this request waited".into(),
            )),
            Err(_) => Err(LockError::Timeout),
        }
    }

    /// Frees every lock at once, as the trait promises: each holder is
    /// told its lock is lost (so its body stops before another byte, and
    /// the store's fence refuses it if it does not), and each waiter is
    /// answered as unavailable rather than handed a lock during shutdown.
    async fn shutdown(&self) {
        let held = std::mem::take(&mut self.shared.state.lock().unwrap().held);
        for holder in held.into_values() {
            holder.signals.mark_lost();
        }
    }
}

struct MemoryRelease {
    shared: Arc<Shared>,
    id: UploadId,
    token: i64,
}

#[async_trait]
impl Release for MemoryRelease {
    /// Hands the lock to the first waiter still waiting, or frees it.
    async fn release(self: Box<Self>) -> Result<(), LockError> {
        let mut state = self.shared.state.lock().unwrap();
        let mut waiters = match state.held.get_mut(&self.id) {
            Some(holder) if holder.token == self.token => std::mem::take(&mut holder.waiters),
            _ => return Err(LockError::NotHeld),
        };
        while let Some(waiter) = waiters.pop_front() {
            if waiter.is_closed() {
                continue;
            }
            let (lock, mut holder) = self.shared.grant(&mut state, &self.id);
            // Asked to hand on only for someone still waiting: a PATCH
            // stopped for a caller that gave up would store nothing.
            if waiters.iter().any(|w| !w.is_closed()) {
                holder.signals.request_release();
            }
            holder.waiters = waiters;
            state.held.insert(self.id.clone(), holder);
            if let Err(lock) = waiter.send(lock) {
                // It gave up between the check and the send; dropping the
                // lock releases it again, to the next in line.
                drop(state);
                drop(lock);
            }
            return Ok(());
        }
        state.held.remove(&self.id);
        Ok(())
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

    /// How many wait for `upload` and have not given up.
    fn queued(locker: &MemoryLocker, upload: &str) -> usize {
        let state = locker.shared.state.lock().unwrap();
        state
            .held
            .get(&id(upload))
            .map_or(0, |h| h.waiters.iter().filter(|w| !w.is_closed()).count())
    }

    /// How many places the queue holds, counting those that gave up.
    fn queue_len(locker: &MemoryLocker, upload: &str) -> usize {
        let state = locker.shared.state.lock().unwrap();
        state.held.get(&id(upload)).map_or(0, |h| h.waiters.len())
    }

    #[tokio::test]
    async fn waiters_are_served_first_come_first_served() {
        let locker = MemoryLocker::new();
        let first = locker.lock(&id("a"), soon(100)).await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for n in 0..5 {
            let (waiter, order) = (locker.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let lock = waiter.lock(&id("a"), soon(10_000)).await.unwrap();
                order.lock().unwrap().push(n);
                // Every holder but the last is asked to hand on at once.
                tokio::task::yield_now().await;
                lock.unlock().await.unwrap();
            }));
            while queued(&locker, "a") < n + 1 {
                tokio::task::yield_now().await;
            }
        }
        first.unlock().await.unwrap();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4]);
        assert_eq!(locker.held_count(), 0);
    }

    #[tokio::test]
    async fn a_cancelled_waiter_leaves_the_queue_and_the_hand_off_goes_on() {
        let locker = MemoryLocker::new();
        let first = locker.lock(&id("a"), soon(100)).await.unwrap();
        let mut waiters = Vec::new();
        for n in 0..3 {
            let waiter = locker.clone();
            waiters.push(tokio::spawn(async move {
                waiter.lock(&id("a"), soon(10_000)).await
            }));
            while queued(&locker, "a") < n + 1 {
                tokio::task::yield_now().await;
            }
        }
        // The middle one is cancelled, as a request whose client went away.
        waiters[1].abort();
        assert!(waiters.remove(1).await.unwrap_err().is_cancelled());
        assert_eq!(queued(&locker, "a"), 2);
        first.unlock().await.unwrap();
        let second = waiters.remove(0).await.unwrap().unwrap();
        assert!(
            second.signals().is_release_requested(),
            "the third still waits"
        );
        second.unlock().await.unwrap();
        let third = waiters.remove(0).await.unwrap().unwrap();
        assert!(
            !third.signals().is_release_requested(),
            "nobody waits behind the third"
        );
        third.unlock().await.unwrap();
        assert_eq!(locker.held_count(), 0);
    }

    #[tokio::test]
    async fn a_waiter_that_gave_up_leaves_the_queue() {
        let locker = MemoryLocker::new();
        let first = locker.lock(&id("a"), soon(100)).await.unwrap();
        assert_eq!(
            locker.lock(&id("a"), soon(10)).await.unwrap_err(),
            LockError::Timeout
        );
        let patient = {
            let locker = locker.clone();
            tokio::spawn(async move { locker.lock(&id("a"), soon(10_000)).await })
        };
        while queued(&locker, "a") < 1 {
            tokio::task::yield_now().await;
        }
        assert_eq!(queue_len(&locker, "a"), 1, "the one that gave up left");
        first.unlock().await.unwrap();
        let next = patient.await.unwrap().unwrap();
        assert!(!next.signals().is_release_requested());
        next.unlock().await.unwrap();
        assert_eq!(locker.held_count(), 0);
    }
}

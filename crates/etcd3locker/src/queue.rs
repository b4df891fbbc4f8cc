//! Local queueing: callers in one process wait for the same id here, in
//! arrival order, before any of them touches etcd.
//!
//! The etcd protocol names a process's key after its lease, so two local
//! callers for one id would share one key and both believe they hold the
//! lock. Queueing them here first means a process has at most one key per id
//! and hands the id from one local caller to the next. A caller that joins
//! the queue asks the current local holder to release, as a waiter in another
//! process does through its key.
//!
//! Queues are keyed by the lock's name (`{prefix}{id}/`, one per id within
//! a locker), which the lock shares with everything else that needs it, so
//! queueing copies no string.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;
use tusd_core::LockSignals;

/// The per-id queues of one locker.
#[derive(Default)]
pub(crate) struct LocalQueue {
    slots: Arc<Mutex<HashMap<Arc<str>, Slot>>>,
}

#[derive(Default)]
struct Slot {
    turn: Arc<tokio::sync::Mutex<()>>,
    /// Signals of the caller whose turn it is, once it holds the etcd lock.
    holder: Option<Arc<LockSignals>>,
    /// Callers holding or waiting for their turn.
    queued: usize,
}

/// A caller's place in the queue; leaving it (drop) lets the next one in.
pub(crate) struct Turn {
    entry: Entry,
    _guard: OwnedMutexGuard<()>,
}

/// Counts a caller as queued until dropped, even if its wait is cancelled.
struct Entry {
    slots: Arc<Mutex<HashMap<Arc<str>, Slot>>>,
    name: Arc<str>,
}

impl LocalQueue {
    /// Waits for the turn on lock `name` until `deadline`; `None` when the
    /// deadline passed first. Asks the current local holder, if any, to
    /// release.
    pub(crate) async fn wait_turn(&self, name: &Arc<str>, deadline: Instant) -> Option<Turn> {
        let turn = {
            let mut slots = self.slots.lock().unwrap();
            let slot = slots.entry(name.clone()).or_default();
            slot.queued += 1;
            if let Some(holder) = &slot.holder {
                holder.request_release();
            }
            slot.turn.clone()
        };
        let entry = Entry {
            slots: self.slots.clone(),
            name: name.clone(),
        };
        let guard = tokio::time::timeout_at(deadline, turn.lock_owned())
            .await
            .ok()?;
        Some(Turn {
            entry,
            _guard: guard,
        })
    }
}

impl Turn {
    /// Records the holder's signals so that later local callers can ask it
    /// to release; asks at once if someone is already waiting.
    pub(crate) fn set_holder(&self, signals: &Arc<LockSignals>) {
        let mut slots = self.entry.slots.lock().unwrap();
        if let Some(slot) = slots.get_mut(&self.entry.name) {
            if slot.queued > 1 {
                signals.request_release();
            }
            slot.holder = Some(signals.clone());
        }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        let mut slots = self.slots.lock().unwrap();
        if let Some(slot) = slots.get_mut(&self.name) {
            slot.holder = None;
            slot.queued -= 1;
            if slot.queued == 0 {
                slots.remove(&self.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn soon(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    #[tokio::test]
    async fn second_caller_waits_and_asks_the_holder() {
        let queue = LocalQueue::default();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let first = queue.wait_turn(&a, soon(100)).await.unwrap();
        let signals = Arc::new(LockSignals::new());
        first.set_holder(&signals);
        assert!(queue.wait_turn(&a, soon(50)).await.is_none());
        assert!(signals.is_release_requested());
        assert!(queue.wait_turn(&b, soon(50)).await.is_some());
        drop(first);
        assert!(queue.wait_turn(&a, soon(50)).await.is_some());
        assert!(queue.slots.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn holder_learns_of_a_caller_that_queued_before_it_held() {
        let queue = Arc::new(LocalQueue::default());
        let a: Arc<str> = "a".into();
        let first = queue.wait_turn(&a, soon(1000)).await.unwrap();
        let waiter = {
            let (queue, a) = (queue.clone(), a.clone());
            tokio::spawn(async move { queue.wait_turn(&a, soon(1000)).await.is_some() })
        };
        while queue.slots.lock().unwrap()["a"].queued < 2 {
            tokio::task::yield_now().await;
        }
        let signals = Arc::new(LockSignals::new());
        first.set_holder(&signals);
        assert!(signals.is_release_requested());
        drop(first);
        assert!(waiter.await.unwrap());
    }
}

//! Release-request watches, started only for locks held long enough to
//! need one.
//!
//! A holder learns that another process waits from a watch on its lock name
//! (see [`crate::wait::request_release_on_waiter`]). Most locks (a HEAD, a
//! short PATCH) are released within milliseconds, and a watch per lock would
//! cost etcd a watcher and the client a stream for nothing. So a lock is
//! only *registered* here; one task per locker starts the watch of each lock
//! still held [`RELEASE_WATCH_DELAY`] later. A waiter that arrived earlier is
//! still seen: the watch starts at the revision after the holder's key.
//!
//! One scheduling task instead of a sleeping task per lock keeps the
//! uncontended lock path to two map operations under a mutex, which matters
//! because the locker's client shares the CPU with everything else.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::Client;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tusd_core::LockSignals;

use crate::wait::request_release_on_waiter;

/// How long a lock is held before it watches for waiters.
const RELEASE_WATCH_DELAY: Duration = Duration::from_millis(50);

/// The scheduler of one locker. Dropping it stops the scheduling task and
/// every watch it started.
pub(crate) struct ReleaseWatches {
    shared: Arc<Shared>,
}

/// What a held lock keeps to end its registration; does not keep the
/// scheduler alive.
#[derive(Clone)]
pub(crate) struct Registrations {
    shared: Arc<Shared>,
}

struct Shared {
    client: Client,
    state: Mutex<State>,
    /// Woken when a lock registers while the scheduler waits with nothing
    /// scheduled.
    registered: Notify,
    stop: CancellationToken,
}

#[derive(Default)]
struct State {
    next_ticket: u64,
    /// Locks whose watch has not started, by ticket. Tickets are handed out
    /// in time order with a fixed delay, so the first entry is due first.
    pending: BTreeMap<u64, Pending>,
    /// Watches running, by ticket, to stop at release.
    started: HashMap<u64, CancellationToken>,
    scheduler_running: bool,
    /// The scheduler waits for a registration, with no deadline. Otherwise
    /// it sleeps until an entry that was first in line falls due, and new
    /// entries, due later, need not wake it.
    scheduler_idle: bool,
}

struct Pending {
    due: Instant,
    name: String,
    key: String,
    revision: i64,
    signals: LockSignals,
}

impl ReleaseWatches {
    pub(crate) fn new(client: Client) -> ReleaseWatches {
        ReleaseWatches {
            shared: Arc::new(Shared {
                client,
                state: Mutex::default(),
                registered: Notify::new(),
                stop: CancellationToken::new(),
            }),
        }
    }

    /// Schedules the release watch of the lock `name` held through `key`
    /// (created at `revision`); returns the ticket that ends it.
    pub(crate) fn register(
        &self,
        name: String,
        key: String,
        revision: i64,
        signals: LockSignals,
    ) -> (Registrations, u64) {
        let mut state = self.shared.state.lock().unwrap();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.pending.insert(
            ticket,
            Pending {
                due: Instant::now() + RELEASE_WATCH_DELAY,
                name,
                key,
                revision,
                signals,
            },
        );
        if !state.scheduler_running {
            state.scheduler_running = true;
            tokio::spawn(schedule(self.shared.clone()));
        } else if state.scheduler_idle {
            state.scheduler_idle = false;
            self.shared.registered.notify_one();
        }
        let registrations = Registrations {
            shared: self.shared.clone(),
        };
        (registrations, ticket)
    }
}

impl Drop for ReleaseWatches {
    fn drop(&mut self) {
        self.shared.stop.cancel();
    }
}

impl Registrations {
    /// Ends the registration `ticket`: the watch never starts, or stops.
    pub(crate) fn end(&self, ticket: u64) {
        let mut state = self.shared.state.lock().unwrap();
        if state.pending.remove(&ticket).is_none() {
            if let Some(watch) = state.started.remove(&ticket) {
                watch.cancel();
            }
        }
    }
}

/// Starts each registered watch when it falls due, until the locker goes.
async fn schedule(shared: Arc<Shared>) {
    loop {
        let next_due = {
            let mut state = shared.state.lock().unwrap();
            let now = Instant::now();
            while let Some(entry) = state.pending.first_entry() {
                if entry.get().due > now {
                    break;
                }
                let (ticket, lock) = entry.remove_entry();
                let watch = shared.stop.child_token();
                state.started.insert(ticket, watch.clone());
                tokio::spawn(request_release_on_waiter(
                    shared.client.clone(),
                    lock.name,
                    lock.key,
                    lock.revision,
                    lock.signals,
                    watch,
                ));
            }
            let next_due = state.pending.first_key_value().map(|(_, lock)| lock.due);
            state.scheduler_idle = next_due.is_none();
            next_due
        };
        tokio::select! {
            _ = shared.stop.cancelled() => return,
            _ = shared.registered.notified() => {}
            _ = sleep_until_or_forever(next_due) => {}
        }
    }
}

async fn sleep_until_or_forever(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

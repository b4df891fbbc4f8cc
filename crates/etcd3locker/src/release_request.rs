//! Release requests: a holder learns that someone waits behind it from a
//! watch on its lock range, and asks itself to release.
//!
//! Any later key under the lock name fires the request, whoever wrote it: a
//! waiter in another tusd-rs process, a Go tusd node or `etcdctl lock`. (A
//! waiter in the same process asks through the local queue instead.)
//!
//! Most locks (a HEAD, a short PATCH) are released within milliseconds, and
//! a watch per lock would cost etcd a watcher and the client a stream for
//! nothing. So a lock is only *registered* here; one task per locker starts
//! the watch of each lock still held [`RELEASE_WATCH_DELAY`] later. A waiter
//! that arrived earlier is still seen: the watch starts at the revision
//! after the holder's key.
//!
//! One scheduling task instead of a sleeping task per lock keeps the
//! uncontended lock path to two map operations under a mutex, which matters
//! because the locker's client shares the CPU with everything else.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Client, GetOptions, WatchFilterType, WatchOptions};
use tokio::sync::Notify;
use tokio::time::{sleep, Instant};
use tokio_util::sync::CancellationToken;
use tusd_core::LockSignals;

use crate::call::ATTEMPT_TIMEOUT;

/// How long a lock is held before it watches for waiters.
const RELEASE_WATCH_DELAY: Duration = Duration::from_millis(50);

/// The scheduler of one locker. Dropping it stops the scheduling task and
/// every watch it started.
pub(crate) struct ReleaseWatches {
    shared: Arc<Shared>,
}

/// A held lock's registration: dropping it ends the watch, or keeps it from
/// starting. Does not keep the scheduler alive.
pub(crate) struct ReleaseWatch {
    shared: Arc<Shared>,
    ticket: u64,
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
    name: Arc<str>,
    key: Arc<str>,
    revision: i64,
    signals: Arc<LockSignals>,
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
    /// (created at `revision`), until the returned guard is dropped.
    pub(crate) fn register(
        &self,
        name: Arc<str>,
        key: Arc<str>,
        revision: i64,
        signals: Arc<LockSignals>,
    ) -> ReleaseWatch {
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
        ReleaseWatch {
            shared: self.shared.clone(),
            ticket,
        }
    }
}

impl Drop for ReleaseWatches {
    fn drop(&mut self) {
        self.shared.stop.cancel();
    }
}

impl Drop for ReleaseWatch {
    fn drop(&mut self) {
        let mut state = self.shared.state.lock().unwrap();
        if state.pending.remove(&self.ticket).is_none() {
            if let Some(watch) = state.started.remove(&self.ticket) {
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

/// Asks the holder of `own_key` (created at `own_revision`) to release as
/// soon as any later key appears under `name`: a waiter in another process,
/// a Go tusd node or `etcdctl lock`. Runs until `stop` or the request.
async fn request_release_on_waiter(
    client: Client,
    name: Arc<str>,
    own_key: Arc<str>,
    own_revision: i64,
    signals: Arc<LockSignals>,
    stop: CancellationToken,
) {
    let mut from_revision = own_revision + 1;
    let mut backoff = Duration::from_millis(50);
    loop {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(from_revision)
            .with_filters([WatchFilterType::NoDelete]);
        let mut client = client.clone();
        let opened = tokio::select! {
            _ = stop.cancelled() => return,
            opened = client.watch(&*name, Some(options)) => opened,
        };
        if let Ok(mut stream) = opened {
            loop {
                let message = tokio::select! {
                    _ = stop.cancelled() => return,
                    message = stream.message() => message,
                };
                let Ok(Some(response)) = message else { break };
                if response.canceled() {
                    // Compacted past our revision: the history is gone, so
                    // look at the keys themselves, then watch from now on.
                    match later_keys(&mut client, &name, own_revision).await {
                        Some((0, now)) => from_revision = now + 1,
                        Some(_) => {
                            signals.request_release();
                            return;
                        }
                        None => {}
                    }
                    break;
                }
                let mut waiter = false;
                for kv in response.events().iter().filter_map(|event| event.kv()) {
                    waiter |= kv.create_revision() > own_revision && kv.key() != own_key.as_bytes();
                    from_revision = from_revision.max(kv.mod_revision() + 1);
                }
                if waiter {
                    signals.request_release();
                    return;
                }
                backoff = Duration::from_millis(50);
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// How many keys under `name` were created after `own_revision`, and the
/// revision of that answer; `None` when etcd did not answer.
async fn later_keys(client: &mut Client, name: &str, own_revision: i64) -> Option<(i64, i64)> {
    let options = GetOptions::new()
        .with_prefix()
        .with_min_create_revision(own_revision + 1)
        .with_count_only();
    let answer = tokio::time::timeout(ATTEMPT_TIMEOUT, client.get(name, Some(options)))
        .await
        .ok()?
        .ok()?;
    Some((answer.count(), answer.header()?.revision()))
}

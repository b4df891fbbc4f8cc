//! The conformance suite every locker runs: exclusion, deadlines, release
//! requests, loss, fencing tokens and shutdown.
//!
//! The suite takes a [`LockSpace`]: a way to make several locker instances
//! that share one space of locks (clones of one memory locker; several etcd
//! clients on one etcd, which is what several server processes are). Every
//! check that involves two callers runs with two instances, and exclusion,
//! deadlines and release requests also with two tasks on one instance.
//!
//! ```ignore
//! check_locker(&clones_of(MemoryLocker::new())).await.assert_passed();
//! ```
//!
//! Holders in the checks never react to release requests unless the check
//! says so: that is the stuck request a locker must still cope with.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tusd_core::{FencingToken, Lock, LockError, Locker, UploadId};

use crate::conformance::{ensure, fresh_id, CheckResult, Context, Report, Verdict};

/// How long one check may take before it counts as hanging.
const CHECK_LIMIT: Duration = Duration::from_secs(90);
/// How long a wrongful grant gets to show itself.
const GRANT_WINDOW: Duration = Duration::from_millis(300);
/// The deadline of a lock that must be granted.
const PATIENT: Duration = Duration::from_secs(10);
/// The deadline of a lock that must be granted "at once": one that waits
/// for a holder's lease to expire (tens of seconds) misses it.
const AT_ONCE: Duration = Duration::from_secs(3);
/// How long a holder may wait for a signal that must come.
const SIGNAL_WAIT: Duration = Duration::from_secs(20);

/// Several locker instances over one shared space of locks.
#[async_trait]
pub trait LockSpace: Send + Sync {
    /// Another instance (a handle, a client, a process's locker) whose locks
    /// exclude those of every other instance from this space.
    async fn locker(&self) -> Arc<dyn Locker>;

    /// Makes the current holder of `id`'s lock lose it behind its back, as
    /// an expired lease would. `false` when the locker cannot lose a lock,
    /// which skips the loss check.
    async fn lose(&self, id: &UploadId) -> bool {
        let _ = id;
        false
    }
}

/// The [`LockSpace`] of a locker whose clones share its locks (the memory
/// locker): every instance is a clone.
pub fn clones_of<L: Locker + Clone>(locker: L) -> impl LockSpace {
    struct Clones<L>(L);

    #[async_trait]
    impl<L: Locker + Clone> LockSpace for Clones<L> {
        async fn locker(&self) -> Arc<dyn Locker> {
            Arc::new(self.0.clone())
        }
    }

    Clones(locker)
}

/// The locker contracts, by the names a [`Report`] lists them under.
pub mod contracts {
    pub const EXCLUSION_ONE_INSTANCE: &str =
        "exclusion (one instance): a second caller waits until the holder unlocks";
    pub const EXCLUSION_TWO_INSTANCES: &str =
        "exclusion (two instances): a second caller waits until the holder unlocks";
    pub const TIMEOUT_ONE_INSTANCE: &str =
        "deadline (one instance): Timeout at the deadline, nothing left behind";
    pub const TIMEOUT_TWO_INSTANCES: &str =
        "deadline (two instances): Timeout at the deadline, nothing left behind";
    pub const RELEASE_ONE_INSTANCE: &str =
        "release request (one instance): a waiter makes release_requested() fire";
    pub const RELEASE_TWO_INSTANCES: &str =
        "release request (two instances): a waiter makes release_requested() fire";
    pub const DISTINCT_IDS: &str = "distinct ids (even one a prefix of another) do not contend";
    pub const FENCING: &str =
        "fencing tokens: one issuer, strictly increasing from holder to holder";
    pub const LOSS: &str = "loss: the holder is told, the id is free, its unlock reports Lost";
    pub const SHUTDOWN_TELLS: &str = "shutdown: every holder is asked to release";
    pub const SHUTDOWN_RELEASES: &str =
        "shutdown: every lock is free at once, even while its holder does not react";
}

/// Runs every locker contract against instances from `space` and returns
/// the report; call [`Report::assert_passed`] on it in a test.
pub async fn check_locker(space: &dyn LockSpace) -> Report {
    use contracts::*;
    let mut report = Report::new("Locker");
    for (two, name) in [
        (false, EXCLUSION_ONE_INSTANCE),
        (true, EXCLUSION_TWO_INSTANCES),
    ] {
        report.run(name, CHECK_LIMIT, exclusion(space, two)).await;
    }
    for (two, name) in [(false, TIMEOUT_ONE_INSTANCE), (true, TIMEOUT_TWO_INSTANCES)] {
        report.run(name, CHECK_LIMIT, timeout(space, two)).await;
    }
    for (two, name) in [(false, RELEASE_ONE_INSTANCE), (true, RELEASE_TWO_INSTANCES)] {
        report
            .run(name, CHECK_LIMIT, release_request(space, two))
            .await;
    }
    report
        .run(DISTINCT_IDS, CHECK_LIMIT, distinct_ids(space))
        .await;
    report.run(FENCING, CHECK_LIMIT, fencing(space)).await;
    report.run(LOSS, CHECK_LIMIT, loss(space)).await;
    report
        .run(SHUTDOWN_TELLS, CHECK_LIMIT, shutdown_tells(space))
        .await;
    report
        .run(SHUTDOWN_RELEASES, CHECK_LIMIT, shutdown_releases(space))
        .await;
    report
}

fn after(wait: Duration) -> Instant {
    Instant::now() + wait
}

/// A spawned lock attempt, aborted if the check ends before it does.
struct Attempt(JoinHandle<Result<Lock, LockError>>);

impl Attempt {
    fn start(locker: &Arc<dyn Locker>, id: &UploadId, wait: Duration) -> Attempt {
        let (locker, id) = (locker.clone(), id.clone());
        Attempt(tokio::spawn(
            async move { locker.lock(&id, after(wait)).await },
        ))
    }

    /// Waits until this waiting attempt makes `held`'s release request
    /// fire; fails if it does not within [`SIGNAL_WAIT`], or if the attempt
    /// ends first (granted while the lock was held, or given up).
    async fn release_requested_of(&self, held: &Lock) -> Result<(), String> {
        let ended = async {
            while !self.0.is_finished() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::select! {
            requested = tokio::time::timeout(SIGNAL_WAIT, held.signals().release_requested()) => {
                requested.map_err(|_| {
                    format!("the holder's release_requested() did not fire within {SIGNAL_WAIT:?} of a waiter")
                })
            }
            () = ended => Err(
                "the waiter's lock attempt ended while the holder kept the lock, before any \
                 release request reached the holder".to_owned()
            ),
        }
    }

    async fn finish(mut self) -> Result<Lock, String> {
        let joined = tokio::time::timeout(PATIENT + SIGNAL_WAIT, &mut self.0)
            .await
            .map_err(|_| "a lock attempt outlived its deadline by far".to_owned())?;
        joined.context("the lock attempt's task")?.context("lock")
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Two instances, or the same one twice.
async fn pair(space: &dyn LockSpace, two: bool) -> (Arc<dyn Locker>, Arc<dyn Locker>) {
    let first = space.locker().await;
    let second = match two {
        true => space.locker().await,
        false => first.clone(),
    };
    (first, second)
}

async fn lock(locker: &Arc<dyn Locker>, id: &UploadId, wait: Duration) -> Result<Lock, String> {
    locker
        .lock(id, after(wait))
        .await
        .context(&format!("lock on {id}"))
}

async fn exclusion(space: &dyn LockSpace, two: bool) -> CheckResult {
    let (holder, waiter) = pair(space, two).await;
    let id = fresh_id("exclusion");
    let held = lock(&holder, &id, PATIENT).await?;
    let unlocking = Arc::new(AtomicBool::new(false));
    let attempt = {
        let (waiter, id, unlocking) = (waiter.clone(), id.clone(), unlocking.clone());
        tokio::spawn(async move {
            let lock = waiter.lock(&id, after(PATIENT + PATIENT)).await;
            (lock, unlocking.load(Ordering::SeqCst))
        })
    };
    tokio::time::sleep(GRANT_WINDOW).await;
    ensure!(
        !attempt.is_finished(),
        "a second lock on a held id returned within {GRANT_WINDOW:?} while the holder kept it: {:?}",
        attempt.await.map(|(lock, _)| lock)
    );
    unlocking.store(true, Ordering::SeqCst);
    held.unlock().await.context("unlock by the holder")?;
    let (granted, after_unlock) = tokio::time::timeout(PATIENT + SIGNAL_WAIT, attempt)
        .await
        .map_err(|_| "the waiter outlived its deadline by far".to_owned())?
        .context("the waiter's task")?;
    let granted = granted.context("the waiter's lock once the holder unlocked")?;
    ensure!(
        after_unlock,
        "the waiter was granted the lock before the holder unlocked"
    );
    granted
        .unlock()
        .await
        .context("unlock by the second holder")?;
    Ok(Verdict::Passed)
}

async fn timeout(space: &dyn LockSpace, two: bool) -> CheckResult {
    let (holder, waiter) = pair(space, two).await;
    let id = fresh_id("deadline");
    let held = lock(&holder, &id, PATIENT).await?;
    let deadline = after(Duration::from_millis(400));
    let result = tokio::time::timeout(PATIENT, waiter.lock(&id, deadline))
        .await
        .map_err(|_| "a lock on a held id ran on long past its deadline".to_owned())?;
    let now = Instant::now();
    ensure!(
        matches!(result, Err(LockError::Timeout)),
        "a lock on a held id whose deadline passes fails with Timeout; got {result:?}"
    );
    ensure!(
        now >= deadline,
        "a lock gives up no earlier than its deadline; it gave up {:?} early",
        deadline - now
    );
    ensure!(
        !held.signals().is_lost(),
        "a waiter that gave up does not make the holder's lock lost"
    );
    held.unlock().await.context("unlock by the holder")?;

    // Nothing left behind: the caller that gave up and a fresh instance
    // each get the id at once, and no release request from the waiter that
    // gave up reaches them.
    let fresh = space.locker().await;
    for (who, locker) in [
        ("the caller whose attempt timed out", &waiter),
        ("another instance", &fresh),
    ] {
        let next = locker.lock(&id, after(AT_ONCE)).await;
        let next = next.map_err(|e| {
            format!("{who} cannot lock the id right after a timed-out attempt and unlock: {e}")
        })?;
        tokio::time::sleep(GRANT_WINDOW).await;
        ensure!(
            !next.signals().is_release_requested(),
            "a waiter that gave up leaves no release request behind (seen by {who})"
        );
        next.unlock().await.context("unlock")?;
    }
    Ok(Verdict::Passed)
}

async fn release_request(space: &dyn LockSpace, two: bool) -> CheckResult {
    let (holder, waiter) = pair(space, two).await;
    let id = fresh_id("release");
    let held = lock(&holder, &id, PATIENT).await?;
    tokio::time::sleep(GRANT_WINDOW).await;
    ensure!(
        !held.signals().is_release_requested(),
        "an uncontended holder is not asked to release"
    );
    let attempt = Attempt::start(&waiter, &id, PATIENT + SIGNAL_WAIT);
    attempt.release_requested_of(&held).await?;
    ensure!(
        !held.signals().is_lost(),
        "a release request does not mark the lock lost"
    );
    held.unlock()
        .await
        .context("unlock by a holder asked to release")?;
    let next = attempt.finish().await?;
    next.unlock().await.context("unlock by the waiter")?;
    Ok(Verdict::Passed)
}

async fn distinct_ids(space: &dyn LockSpace) -> CheckResult {
    let (holder, other) = pair(space, true).await;
    let id = fresh_id("distinct");
    let held = lock(&holder, &id, PATIENT).await?;
    let mut others = Vec::new();
    for raw in [format!("{id}-2"), format!("{id}_x"), format!("x{id}")] {
        let next = UploadId::parse(&raw).expect("id-safe");
        for locker in [&holder, &other] {
            let lock = locker
                .lock(&next, after(AT_ONCE))
                .await
                .map_err(|e| format!("{next} cannot be locked while only {id} is held: {e}"))?;
            lock.unlock().await.context("unlock")?;
        }
        others.push(lock(&other, &next, AT_ONCE).await?);
    }
    tokio::time::sleep(GRANT_WINDOW).await;
    ensure!(
        !held.signals().is_release_requested(),
        "locks on other ids do not ask {id}'s holder to release"
    );
    held.unlock().await.context("unlock")?;
    for lock in others {
        lock.unlock().await.context("unlock")?;
    }
    Ok(Verdict::Passed)
}

async fn fencing(space: &dyn LockSpace) -> CheckResult {
    let instances = [space.locker().await, space.locker().await];
    let id = fresh_id("fencing");
    let mut tokens: Vec<Option<FencingToken>> = Vec::new();
    // Successive holders alternate between instances and between the same
    // instance twice in a row.
    for n in [0, 1, 1, 0, 1] {
        let held = lock(&instances[n], &id, PATIENT).await?;
        tokens.push(held.fencing_token().cloned());
        held.unlock().await.context("unlock")?;
    }
    // And a handover to a waiter, the way a resumed client's request gets it.
    let held = lock(&instances[0], &id, PATIENT).await?;
    tokens.push(held.fencing_token().cloned());
    let attempt = Attempt::start(&instances[1], &id, PATIENT + SIGNAL_WAIT);
    attempt.release_requested_of(&held).await?;
    held.unlock().await.context("unlock")?;
    let next = attempt.finish().await?;
    tokens.push(next.fencing_token().cloned());
    next.unlock().await.context("unlock")?;

    if tokens.iter().all(Option::is_none) {
        return Ok(Verdict::Skipped(
            "the locker gives no fencing tokens".into(),
        ));
    }
    let tokens: Vec<FencingToken> = tokens.into_iter().flatten().collect::<Vec<_>>();
    ensure!(
        tokens.len() == 7,
        "a locker that gives fencing tokens gives one to every holder; got {tokens:?}"
    );
    ensure!(
        tokens.iter().all(|t| t.issuer() == tokens[0].issuer()),
        "instances over one lock space issue tokens of one issuer (a store would treat \
         another as taking over for good); got {tokens:?}"
    );
    let values: Vec<i64> = tokens.iter().map(FencingToken::value).collect();
    ensure!(
        values.windows(2).all(|w| w[0] < w[1]),
        "fencing tokens strictly increase from one holder of an id to the next; got {values:?}"
    );
    Ok(Verdict::Passed)
}

async fn loss(space: &dyn LockSpace) -> CheckResult {
    let (holder, other) = pair(space, true).await;
    let id = fresh_id("loss");
    let held = lock(&holder, &id, PATIENT).await?;
    let token = held.fencing_token().cloned();
    if !space.lose(&id).await {
        return Ok(Verdict::Skipped(
            "the lock space cannot make a lock lost".into(),
        ));
    }
    tokio::time::timeout(SIGNAL_WAIT, held.signals().lost())
        .await
        .map_err(|_| format!("the holder's lost() did not fire within {SIGNAL_WAIT:?}"))?;
    ensure!(
        held.signals().is_release_requested(),
        "a lost lock also counts as asked to release"
    );
    let next = lock(&other, &id, PATIENT)
        .await
        .map_err(|e| format!("another instance cannot lock the id after its loss: {e}"))?;
    if let (Some(old), Some(new)) = (&token, next.fencing_token()) {
        ensure!(
            old.issuer() == new.issuer() && old.value() < new.value(),
            "the next holder's token {new} is newer than the lost holder's {old}"
        );
    }
    let result = held.unlock().await;
    ensure!(
        result == Err(LockError::Lost),
        "unlock of a lost lock reports Lost; got {result:?}"
    );
    let third = space.locker().await;
    let result = third
        .lock(&id, after(Duration::from_millis(400)))
        .await
        .map(|lock| format!("{lock:?}"));
    ensure!(
        result == Err(LockError::Timeout),
        "the lost holder's unlock does not free its successor's lock: a third caller got {result:?}"
    );
    next.unlock().await.context("unlock by the successor")?;
    Ok(Verdict::Passed)
}

/// Locks `count` fresh ids with a fresh instance.
async fn hold_several(
    space: &dyn LockSpace,
    label: &str,
) -> Result<(Arc<dyn Locker>, Vec<(UploadId, Lock)>), String> {
    let locker = space.locker().await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let id = fresh_id(label);
        let lock = lock(&locker, &id, PATIENT).await?;
        held.push((id, lock));
    }
    Ok((locker, held))
}

async fn shutdown_tells(space: &dyn LockSpace) -> CheckResult {
    let (locker, held) = hold_several(space, "shutdown-tells").await?;
    tokio::time::timeout(PATIENT, locker.shutdown())
        .await
        .map_err(|_| format!("shutdown() did not return within {PATIENT:?}"))?;
    for (id, lock) in &held {
        ensure!(
            lock.signals().is_release_requested(),
            "after shutdown() the holder of {id} is asked to release (or told it is lost)"
        );
    }
    Ok(Verdict::Passed)
}

async fn shutdown_releases(space: &dyn LockSpace) -> CheckResult {
    let (locker, held) = hold_several(space, "shutdown-frees").await?;
    tokio::time::timeout(PATIENT, locker.shutdown())
        .await
        .map_err(|_| format!("shutdown() did not return within {PATIENT:?}"))?;
    let successor = space.locker().await;
    let attempts = held.iter().map(|(id, _)| {
        let successor = &successor;
        async move { (id, successor.lock(id, after(AT_ONCE)).await) }
    });
    let mut next = Vec::new();
    let mut refused = Vec::new();
    for (id, result) in futures::future::join_all(attempts).await {
        match result {
            Ok(lock) => next.push((id.clone(), lock)),
            Err(e) => refused.push(format!("{id}: {e}")),
        }
    }
    ensure!(
        refused.is_empty(),
        "after shutdown() another instance locks every id at once while the old holders \
         do not react; refused: {refused:?}"
    );
    // The old holders' late unlocks must not free their successors' locks.
    for (_, lock) in held {
        let _ = lock.unlock().await;
    }
    let third = space.locker().await;
    for (id, _) in &next {
        let result = third
            .lock(id, after(Duration::from_millis(400)))
            .await
            .map(|lock| format!("{lock:?}"));
        ensure!(
            result == Err(LockError::Timeout),
            "an unlock by a holder from before shutdown() does not free {id}'s new holder; \
             a third caller got {result:?}"
        );
    }
    for (_, lock) in next {
        lock.unlock().await.context("unlock by a successor")?;
    }
    Ok(Verdict::Passed)
}

/// The suite rejects lockers that break a contract: a suite that passes
/// everything proves nothing.
#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicI64;

    use tusd_core::{LockSignals, Release};
    use tusd_memorylocker::MemoryLocker;

    use super::contracts::*;
    use super::*;

    /// Grants every lock at once: no exclusion, no release requests.
    #[derive(Clone, Default)]
    struct NeverExcludes {
        next: Arc<AtomicI64>,
    }

    struct Nothing;

    #[async_trait]
    impl Release for Nothing {
        async fn release(self: Box<Self>) -> Result<(), LockError> {
            Ok(())
        }
    }

    #[async_trait]
    impl Locker for NeverExcludes {
        async fn lock(&self, _: &UploadId, _: Instant) -> Result<Lock, LockError> {
            let value = self.next.fetch_add(1, Ordering::SeqCst) + 1;
            let token = FencingToken::new("never-excludes", value);
            Ok(Lock::new(
                LockSignals::new(),
                Some(token),
                Box::new(Nothing),
            ))
        }
    }

    /// A correct memory locker whose tokens count down instead of up.
    #[derive(Clone, Default)]
    struct CountsDown {
        inner: MemoryLocker,
    }

    struct Inner(Lock);

    #[async_trait]
    impl Release for Inner {
        async fn release(self: Box<Self>) -> Result<(), LockError> {
            self.0.unlock().await
        }
    }

    #[async_trait]
    impl Locker for CountsDown {
        async fn lock(&self, id: &UploadId, deadline: Instant) -> Result<Lock, LockError> {
            let inner = self.inner.lock(id, deadline).await?;
            let value = -inner
                .fencing_token()
                .expect("memory locks have tokens")
                .value();
            let token = FencingToken::new("counts-down", value);
            let signals = inner.signals().clone();
            Ok(Lock::new(signals, Some(token), Box::new(Inner(inner))))
        }

        async fn shutdown(&self) {
            self.inner.shutdown().await;
        }
    }

    #[tokio::test]
    async fn a_locker_that_never_excludes_fails_every_exclusion_contract() {
        let report = check_locker(&clones_of(NeverExcludes::default())).await;
        assert_eq!(
            report.failed(),
            [
                EXCLUSION_ONE_INSTANCE,
                EXCLUSION_TWO_INSTANCES,
                TIMEOUT_ONE_INSTANCE,
                TIMEOUT_TWO_INSTANCES,
                RELEASE_ONE_INSTANCE,
                RELEASE_TWO_INSTANCES,
                FENCING,
                SHUTDOWN_TELLS,
                SHUTDOWN_RELEASES,
            ],
            "{report}"
        );
        assert_eq!(report.outcome(DISTINCT_IDS), Some(&crate::Outcome::Passed));
    }

    #[tokio::test]
    async fn a_locker_whose_tokens_decrease_fails_the_fencing_contract_only() {
        let report = check_locker(&clones_of(CountsDown::default())).await;
        assert_eq!(report.failed(), [FENCING], "{report}");
    }
}

//! Waiting for keys to be deleted, as etcd's Go `concurrency` package does
//! in `key.go`: a waiter waits for the keys created before its own to go.
//!
//! A waiter watches only its nearest predecessor (the key with the highest
//! create revision below its own), as Go's `waitDeletes` does, so a release
//! wakes one waiter, not all of them. When the predecessor goes, the waiter
//! looks again: an earlier key may still be there (the predecessor was a
//! waiter that gave up).
//!
//! Watches start one revision after the state they continue from, so no
//! event in between is missed, and a watch that breaks (a member went down)
//! ends the wait for the caller to look again.

use std::time::Duration;

use etcd_client::{
    Client, EventType, GetOptions, SortOrder, SortTarget, WatchFilterType, WatchOptions,
};
use tokio::time::{sleep, Instant};

use crate::call::{retry, CallError, ATTEMPT_TIMEOUT};

/// How [`wait_for_predecessors`] ended.
pub(crate) enum Waited {
    /// No predecessor is left.
    Clear,
    /// The deadline passed while one remained.
    TimedOut,
    /// The nearest predecessor is one the caller said not to wait for.
    Skipped(Vec<u8>),
}

/// Waits until no key under `name` has a create revision at or below
/// `max_revision`, or `deadline`; an error when etcd failed or did not
/// answer. Stops at a nearest predecessor for which `skip` holds instead
/// of waiting for it.
pub(crate) async fn wait_for_predecessors(
    client: &Client,
    name: &str,
    max_revision: i64,
    skip: impl Fn(&[u8]) -> bool,
    deadline: Instant,
) -> Result<Waited, CallError> {
    let options = GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Descend)
        .with_max_create_revision(max_revision)
        .with_limit(1)
        .with_keys_only();
    loop {
        let predecessors = retry(deadline, ATTEMPT_TIMEOUT, || {
            let mut kv = client.kv_client();
            let options = options.clone();
            async move { kv.get(name, Some(options)).await }
        })
        .await?;
        let Some(nearest) = predecessors.kvs().first() else {
            return Ok(Waited::Clear);
        };
        let seen_at = predecessors.header().map_or(0, |h| h.revision());
        let key = nearest.key().to_vec();
        if skip(&key) {
            return Ok(Waited::Skipped(key));
        }
        match tokio::time::timeout_at(deadline, wait_deleted(client, key, seen_at + 1)).await {
            Ok(_) => continue,
            Err(_) => return Ok(Waited::TimedOut),
        }
    }
}

/// Returns `true` once `key` is deleted at or after `from_revision`, or
/// `false` when the watch breaks (the caller then looks again).
pub(crate) async fn wait_deleted(client: &Client, key: Vec<u8>, from_revision: i64) -> bool {
    let options = WatchOptions::new()
        .with_start_revision(from_revision)
        .with_filters([WatchFilterType::NoPut]);
    let mut client = client.clone();
    let Ok(mut stream) = client.watch(key, Some(options)).await else {
        sleep(Duration::from_millis(50)).await;
        return false;
    };
    loop {
        match stream.message().await {
            Ok(Some(response)) if response.canceled() => return false,
            Ok(Some(response)) => {
                if response
                    .events()
                    .iter()
                    .any(|e| e.event_type() == EventType::Delete)
                {
                    return true;
                }
            }
            _ => {
                sleep(Duration::from_millis(50)).await;
                return false;
            }
        }
    }
}

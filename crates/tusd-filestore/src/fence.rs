//! Fencing: the store's own refusal of a lock holder that lost its lock.
//!
//! Why the store and not only the locker: a holder learns that its lock is
//! gone from a timer or a message, and a process paused long enough (GC, a
//! frozen VM, `SIGSTOP`, a debugger) wakes up with a write already on its
//! way, before either can fire. Only the storage sees every write in order,
//! so only it can close that window. Each change an upload undergoes is made
//! inside one critical section that:
//!
//! 1. takes an exclusive OS lock (`flock`) on the upload's data file, which
//!    every process sharing the directory honours;
//! 2. checks that the data file is still linked (not terminated meanwhile);
//! 3. admits the caller's fencing token against the upload's record,
//!    `{id}.fence`, and raises the record if the token is newer;
//! 4. checks the data file's length against the offset the change expects;
//! 5. makes the change, then lets go of the OS lock.
//!
//! A stale writer therefore either runs entirely before its successor's
//! first change (and the successor then sees its bytes in the length) or is
//! refused; it can never append at a shifted position.
//!
//! # The record and the rule
//!
//! `{id}.fence` is JSON: `{"Issuer": "...", "Token": 42, "Retired": [...]}`,
//! and the rule is `tusd_core::fence_record`'s, shared with every store.
//! Tokens are comparable only within one issuer (one etcd cluster and
//! prefix, or one memory locker's lifetime). A call with a token is admitted
//! when:
//! - the upload has no record yet (it is recorded);
//! - the issuer is the recorded one and the token is at least the recorded
//!   one (equal: the same holder writing again);
//! - the issuer is new, i.e. neither the recorded one nor a retired one: a
//!   restarted memory locker, or a switch of locker. The new issuer takes
//!   over and the old one is *retired* for this upload, so a holder still
//!   alive under the old issuer is refused from then on instead of
//!   alternating with the new one.
//!
//! It is refused when the token is lower than the recorded one of the same
//! issuer, or its issuer is retired. A call without a token (a locker that
//! has none) is not checked and records nothing; it still gets the offset
//! check. An unreadable record is treated as absent (and logged): refusing
//! every holder would lock the upload out for good.
//!
//! The record is not synced: it matters while processes run, and a crash of
//! the machine that holds the directory takes every lock holder with it.
//!
//! # The first bytes go unrecorded
//!
//! A request that finds an upload empty and without a record writes its
//! first [`UNRECORDED_BYTES`] without recording its token: it neither
//! creates `{id}.fence` nor reads one, only looks (inside each critical
//! section) whether one has appeared. A small creation-with-upload is then
//! two files instead of three, and a new file's inode and directory entry
//! are most of what such an upload costs the file system. Every other
//! change records as above: another request's, and this request's own once
//! the upload holds `UNRECORDED_BYTES`. The guarantee above, case by case
//! (each look runs inside the critical section, so it is atomic with the
//! change):
//!
//! - A stale holder, and a successor that made a recorded change: refused,
//!   as before. Only the first request that writes an upload can go
//!   unrecorded: once the upload holds bytes, a request starting on it
//!   records, and the data file empties again only by a truncation (a
//!   failed checksum) or a concatenation, which record too. And once a
//!   record exists, the unrecorded request's next write is checked against
//!   it like any other.
//! - A stale unrecorded request (paused past its lock) and a successor:
//!   the successor's first change records, so the stale request's next
//!   write is refused, as before.
//! - An unrecorded successor, and a stale holder of the same issuer arriving
//!   after one of its writes: the stale holder is admitted as if there were
//!   no successor, and its change is recorded, so the successor's next
//!   write is refused (by the length check, or by the record when the
//!   stale change left the length alone). Before, the stale holder was
//!   refused: this is the case the record no longer covers. What still
//!   holds: it appends only exactly at the end of the successor's bytes, so
//!   no byte lands at a shifted position and nothing is interleaved. Through
//!   the handler, whose PATCH checks `Upload-Offset` against the stored
//!   offset before any change (a declared length included), the stale
//!   request must name an offset the upload reached only after the stale
//!   holder got its lock, while it was still empty; a tus client names
//!   offsets the server told it, so this takes one client sending two
//!   PATCHes of one upload at once, or, for a creation-with-upload, a
//!   party told the new id by a `post-create` hook that locks it before the
//!   creating request does. The result is then the one a serial order of
//!   the two requests gives.
//! - Issuers: a new issuer retires the recorded one, and an unrecorded
//!   request leaves none to retire. A holder under an old issuer, paused in
//!   its unrecorded request until a new issuer changed the upload without
//!   moving its length (declared a deferred length), is admitted at its
//!   next write (its issuer looks new) instead of refused. That window
//!   existed before for a holder ahead of its first change; it now extends
//!   over its first `UNRECORDED_BYTES`. Holders under an old issuer outlive
//!   a switch only when nodes with two lockers share a directory (a memory
//!   locker's holders die with its process), and they stay bound by the
//!   length check.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tusd_core::fence_record::{admit, FenceRecord as Record};
use tusd_core::{FencingToken, StoreError};

/// How many bytes the first request that writes an upload writes before it
/// records its token (see the module docs): a small upload's whole body,
/// while a large one pays the look for a record on only its first batches.
pub(crate) const UNRECORDED_BYTES: u64 = 1 << 20;

/// How long a change waits for another process's critical section (a writer
/// paused while inside one) before giving up with [`StoreError::Fenced`].
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// An upload's fencing state for a run of changes by one caller: the path of
/// its record and the caller's token. The record file is opened on the first
/// change that needs it and kept open for the next ones.
pub(crate) struct Fence {
    path: PathBuf,
    token: Option<FencingToken>,
    record: Option<File>,
    /// This caller's writes so far went unrecorded (see the module docs).
    unrecorded: bool,
}

/// Proof that the caller is inside the critical section; leaving it (drop)
/// releases the OS lock.
pub(crate) struct Entered<'a> {
    data: &'a File,
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        let _ = self.data.unlock();
    }
}

impl Fence {
    pub(crate) fn new(path: PathBuf, token: Option<&FencingToken>) -> Fence {
        Fence {
            path,
            token: token.cloned(),
            record: None,
            unrecorded: false,
        }
    }

    /// Enters the critical section of the upload whose data file is `data`
    /// (steps 1 to 4 of the module docs; `expected_len` `None` skips 4).
    pub(crate) fn enter<'a>(
        &mut self,
        data: &'a File,
        expected_len: Option<u64>,
    ) -> Result<Entered<'a>, StoreError> {
        lock_within(data, LOCK_WAIT)?;
        let entered = Entered { data };
        let metadata = data.metadata()?;
        if metadata.nlink() == 0 {
            return Err(StoreError::NotFound);
        }
        if let Some(token) = self.token.clone() {
            // An append that would leave the upload's first bytes, all its
            // own, below the bound; whether there is a record is seen next.
            let unrecorded = match expected_len {
                Some(0) => metadata.len() == 0,
                Some(expected) => self.unrecorded && expected < UNRECORDED_BYTES,
                None => false,
            };
            self.admit(&token, unrecorded)?;
        }
        if let Some(expected) = expected_len {
            if metadata.len() != expected {
                return Err(StoreError::OffsetMoved {
                    expected,
                    actual: metadata.len(),
                });
            }
        }
        Ok(entered)
    }

    /// `unrecorded`: the change may go unrecorded if there is no record
    /// (see the module docs).
    fn admit(&mut self, token: &FencingToken, unrecorded: bool) -> Result<(), StoreError> {
        if self.record.is_none() {
            match open_record(&self.path, !unrecorded) {
                Ok(file) => self.record = Some(file),
                Err(e) if unrecorded && e.kind() == io::ErrorKind::NotFound => {
                    self.unrecorded = true;
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.unrecorded = false;
        let file = self.record.as_ref().expect("opened above");
        let current = read_record(file, &self.path)?;
        match admit(current.as_ref(), token) {
            Err(reason) => Err(StoreError::Fenced(reason)),
            Ok(None) => Ok(()),
            Ok(Some(new)) => {
                let json = serde_json::to_vec(&new).map_err(io::Error::other)?;
                // Written over the old record, then cut to its length, never
                // cut to zero first: ext4 starts writing back, inside
                // close(2), any file that was truncated to zero (its guard
                // for files replaced in place), which cost every new upload
                // a disk write submitted on the request's thread.
                file.write_all_at(&json, 0)?;
                file.set_len(json.len() as u64)?;
                Ok(())
            }
        }
    }
}

/// The record file, created if missing (and `create`) with the store's
/// permissions.
fn open_record(path: &Path, create: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .mode(0o664)
        .open(path)
}

fn read_record(mut file: &File, path: &Path) -> io::Result<Option<Record>> {
    let mut json = Vec::new();
    std::io::Seek::rewind(&mut file)?;
    file.read_to_end(&mut json)?;
    if json.is_empty() {
        return Ok(None);
    }
    match serde_json::from_slice(&json) {
        Ok(record) => Ok(Some(record)),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "unreadable fence record, treated as absent");
            Ok(None)
        }
    }
}

/// Takes the exclusive OS lock on `file`, waiting at most `wait`.
fn lock_within(file: &File, wait: Duration) -> Result<(), StoreError> {
    let give_up = Instant::now() + wait;
    let mut pause = Duration::from_micros(200);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < give_up => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Fenced(format!(
                    "another writer kept the upload's storage locked for over {wait:?}"
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(StoreError::Io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(issuer: &str, value: i64) -> FencingToken {
        FencingToken::new(issuer, value)
    }

    fn record(issuer: &str, value: i64, retired: &[&str]) -> Record {
        Record {
            issuer: issuer.into(),
            token: value,
            retired: retired.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[test]
    fn a_stale_token_is_refused_inside_the_section_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let data_path = dir.path().join("u");
        std::fs::write(&data_path, b"abc").unwrap();
        let data = File::open(&data_path).unwrap();
        let record_path = dir.path().join("u.fence");

        let newer = token("etcd:1/tusd", 20);
        let entered = Fence::new(record_path.clone(), Some(&newer))
            .enter(&data, Some(3))
            .unwrap();
        drop(entered);
        let older = token("etcd:1/tusd", 10);
        let refused = Fence::new(record_path.clone(), Some(&older)).enter(&data, Some(3));
        assert!(matches!(refused, Err(StoreError::Fenced(_))));
        let stored: Record = serde_json::from_slice(&std::fs::read(&record_path).unwrap()).unwrap();
        assert_eq!(stored, record("etcd:1/tusd", 20, &[]));
    }

    #[test]
    fn the_first_bytes_go_unrecorded_and_every_later_change_is_fenced() {
        let dir = tempfile::tempdir().unwrap();
        let data_path = dir.path().join("u");
        std::fs::write(&data_path, b"").unwrap();
        let data = File::open(&data_path).unwrap();
        let record_path = dir.path().join("u.fence");
        let first = token("etcd:1/tusd", 20);

        let mut fence = Fence::new(record_path.clone(), Some(&first));
        drop(fence.enter(&data, Some(0)).unwrap());
        std::fs::write(&data_path, b"abc").unwrap();
        drop(fence.enter(&data, Some(3)).unwrap());
        assert!(!record_path.exists());
        // Another caller finds bytes, and records.
        let also_first = token("etcd:1/tusd", 20);
        drop(
            Fence::new(record_path.clone(), Some(&also_first))
                .enter(&data, Some(3))
                .unwrap(),
        );
        let stored: Record = serde_json::from_slice(&std::fs::read(&record_path).unwrap()).unwrap();
        assert_eq!(stored, record("etcd:1/tusd", 20, &[]));
        let older = token("etcd:1/tusd", 10);
        assert!(matches!(
            Fence::new(record_path.clone(), Some(&older)).enter(&data, Some(3)),
            Err(StoreError::Fenced(_))
        ));
    }

    #[test]
    fn the_first_request_records_once_it_reaches_the_bound_or_finds_a_record() {
        let dir = tempfile::tempdir().unwrap();
        let data_path = dir.path().join("u");
        std::fs::write(&data_path, b"").unwrap();
        let data = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&data_path)
            .unwrap();
        let record_path = dir.path().join("u.fence");
        let holder = token("etcd:1/tusd", 20);
        let mut fence = Fence::new(record_path.clone(), Some(&holder));
        drop(fence.enter(&data, Some(0)).unwrap());
        let len = UNRECORDED_BYTES;
        data.set_len(len).unwrap();
        drop(fence.enter(&data, Some(len)).unwrap());
        let stored: Record = serde_json::from_slice(&std::fs::read(&record_path).unwrap()).unwrap();
        assert_eq!(stored, record("etcd:1/tusd", 20, &[]));

        // A stale unrecorded request meets its successor's record.
        std::fs::remove_file(&record_path).unwrap();
        data.set_len(0).unwrap();
        let mut stale = Fence::new(record_path.clone(), Some(&holder));
        drop(stale.enter(&data, Some(0)).unwrap());
        data.set_len(5).unwrap();
        let successor = token("etcd:1/tusd", 21);
        drop(
            Fence::new(record_path.clone(), Some(&successor))
                .enter(&data, Some(5))
                .unwrap(),
        );
        assert!(matches!(
            stale.enter(&data, Some(5)),
            Err(StoreError::Fenced(_))
        ));
    }

    #[test]
    fn a_first_write_is_checked_against_a_record_that_exists() {
        let dir = tempfile::tempdir().unwrap();
        let data_path = dir.path().join("u");
        std::fs::write(&data_path, b"").unwrap();
        let data = File::open(&data_path).unwrap();
        let record_path = dir.path().join("u.fence");
        // A successor declared the length (a recorded change) of the empty upload.
        let newer = token("etcd:1/tusd", 20);
        drop(
            Fence::new(record_path.clone(), Some(&newer))
                .enter(&data, None)
                .unwrap(),
        );
        let older = token("etcd:1/tusd", 10);
        assert!(matches!(
            Fence::new(record_path.clone(), Some(&older)).enter(&data, Some(0)),
            Err(StoreError::Fenced(_))
        ));
    }

    #[test]
    fn a_shorter_record_replaces_a_longer_one_whole() {
        let dir = tempfile::tempdir().unwrap();
        let data_path = dir.path().join("u");
        std::fs::write(&data_path, b"").unwrap();
        let data = File::open(&data_path).unwrap();
        let record_path = dir.path().join("u.fence");
        let mut old = serde_json::to_vec(&record("memory:1", 1, &[])).unwrap();
        old.extend_from_slice(&[b' '; 100]);
        std::fs::write(&record_path, &old).unwrap();
        let newer = token("memory:1", 2);
        drop(
            Fence::new(record_path.clone(), Some(&newer))
                .enter(&data, None)
                .unwrap(),
        );
        let expected = serde_json::to_vec(&record("memory:1", 2, &[])).unwrap();
        assert_eq!(std::fs::read(&record_path).unwrap(), expected);
    }

    #[test]
    fn a_moved_offset_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data_path = dir.path().join("u");
        std::fs::write(&data_path, b"abcd").unwrap();
        let data = File::open(&data_path).unwrap();
        let mut fence = Fence::new(dir.path().join("u.fence"), None);
        assert!(matches!(
            fence.enter(&data, Some(3)),
            Err(StoreError::OffsetMoved {
                expected: 3,
                actual: 4
            })
        ));
        assert!(fence.enter(&data, Some(4)).is_ok());
    }

    #[test]
    fn a_second_opener_waits_for_the_section() {
        let dir = tempfile::tempdir().unwrap();
        let data_path = dir.path().join("u");
        std::fs::write(&data_path, b"").unwrap();
        let first = File::open(&data_path).unwrap();
        let second = File::open(&data_path).unwrap();
        let mut fence = Fence::new(dir.path().join("u.fence"), None);
        let entered = fence.enter(&first, None).unwrap();
        assert!(matches!(
            lock_within(&second, Duration::from_millis(20)),
            Err(StoreError::Fenced(_))
        ));
        drop(entered);
        assert!(lock_within(&second, Duration::from_millis(20)).is_ok());
    }
}

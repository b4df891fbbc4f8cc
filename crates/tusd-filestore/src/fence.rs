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
//! 3. admits the caller's fencing token against the upload's record (see
//!    below) and raises the record if the token is newer;
//! 4. checks the data file's length against the offset the change expects;
//! 5. makes the change, then lets go of the OS lock.
//!
//! A stale writer therefore either runs entirely before its successor's
//! first change (and the successor then sees its bytes in the length) or is
//! refused; it can never append at a shifted position.
//!
//! # The record and the rule
//!
//! The record is JSON, `{"Issuer": "...", "Token": 42, "Retired": [...]}`,
//! kept in the extended attribute `user.tusd.fence` of the data file, the
//! file whose OS lock guards it. An attribute costs no file of its own: a
//! small upload is two files, data and `.info`, and its record is written
//! into the data file's inode (ext4, XFS and Btrfs keep an attribute this
//! small there). Where the file system refuses user attributes (some
//! network file systems, tmpfs before Linux 6.6), and for uploads recorded
//! by versions before this one, the record is the file `{id}.fence`
//! instead, as it was. A data file created by this version gets an empty
//! attribute at once (`mark_new`), so its writes never look for that file. Nodes sharing a directory must all keep the record
//! in the same place, so a cluster moves to this version all at once.
//! The rule is `tusd_core::fence_record`'s, shared with every store.
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

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tusd_core::fence_record::{admit, FenceRecord as Record};
use tusd_core::{FencingToken, StoreError};

/// How long a change waits for another process's critical section (a writer
/// paused while inside one) before giving up with [`StoreError::Fenced`].
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// An upload's fencing state for a run of changes by one caller: where its
/// record is and the caller's token. Where the record is, is learnt on the
/// first change that needs it and kept for the next ones.
pub(crate) struct Fence {
    path: PathBuf,
    token: Option<FencingToken>,
    place: Option<Place>,
}

/// Where an upload's record is kept.
enum Place {
    /// In the data file's extended attribute [`ATTRIBUTE`].
    Attribute,
    /// In `{id}.fence`, open.
    File(File),
}

/// The extended attribute of the data file that holds the record.
pub(crate) const ATTRIBUTE: &str = "user.tusd.fence";

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
            place: None,
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
            self.admit(data, &token)?;
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

    fn admit(&mut self, data: &File, token: &FencingToken) -> Result<(), StoreError> {
        let current = self.read(data)?;
        let new = match admit(current.as_ref(), token) {
            Err(reason) => return Err(StoreError::Fenced(reason)),
            Ok(None) => return Ok(()),
            Ok(Some(new)) => new,
        };
        match self.place.as_ref().expect("set by read") {
            Place::Attribute => match write_attribute(data, &compact(&new)) {
                Err(e) if unsupported(&e) => {
                    let file = open_record(&self.path)?;
                    write_file(&file, &full(&new)?)?;
                    self.place = Some(Place::File(file));
                }
                written => written?,
            },
            Place::File(file) => write_file(file, &full(&new)?)?,
        }
        Ok(())
    }

    /// The record, wherever it is; learns the place on the first call.
    fn read(&mut self, data: &File) -> io::Result<Option<Record>> {
        let (bytes, in_attribute) = match &self.place {
            Some(Place::Attribute) => (read_attribute(data)?, true),
            Some(Place::File(file)) => (read_file(file)?, false),
            None => match read_attribute(data) {
                Ok(Some(bytes)) => {
                    self.place = Some(Place::Attribute);
                    (Some(bytes), true)
                }
                // No attribute: a record from before attributes, if any,
                // is the file's.
                Ok(None) => match OpenOptions::new().read(true).write(true).open(&self.path) {
                    Ok(file) => {
                        let bytes = read_file(&file)?;
                        self.place = Some(Place::File(file));
                        (bytes, false)
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        self.place = Some(Place::Attribute);
                        (None, true)
                    }
                    Err(e) => return Err(e),
                },
                Err(e) if unsupported(&e) => {
                    let file = open_record(&self.path)?;
                    let bytes = read_file(&file)?;
                    self.place = Some(Place::File(file));
                    (bytes, false)
                }
                Err(e) => return Err(e),
            },
        };
        Ok(bytes.and_then(|bytes| parse(&bytes, in_attribute, &self.path)))
    }
}

/// The record of the upload whose data file is `data_path` (and record
/// file `record_path`) as the JSON object `{id}.fence` holds, for those who
/// look at a directory from outside; `None` when it has none.
pub(crate) fn record_json(data_path: &Path, record_path: &Path) -> io::Result<Option<Vec<u8>>> {
    let data = File::open(data_path)?;
    let record = Fence::new(record_path.to_owned(), None).read(&data)?;
    record.map(|record| full(&record)).transpose()
}

/// Gives a data file this version has just created an empty attribute: the
/// record's place is known from then on, and the upload's first write does
/// not look for a `{id}.fence` an older version may have left, a lookup in
/// the directory that waits while other uploads are being created there
/// (seen in a profile of small creations). Best effort: without the mark
/// (an error, no user attributes) the first write looks, as before.
pub(crate) fn mark_new(data: &File) {
    let _ = write_attribute(data, b"");
}

/// The record as the attribute holds it: a JSON array, `[issuer, token]`,
/// or `[issuer, token, [retired, ...]]`. Without field names it stays
/// within the room ext4 keeps for attributes inside a 256-byte inode
/// (about 60 bytes of value), which spares every upload a 4 KiB attribute
/// block (measured: 11 % of a small upload's server CPU went to allocating
/// it with the full object form).
fn compact(record: &Record) -> Vec<u8> {
    let encoded = if record.retired.is_empty() {
        serde_json::to_vec(&(&record.issuer, record.token))
    } else {
        serde_json::to_vec(&(&record.issuer, record.token, &record.retired))
    };
    encoded.expect("strings and a number always encode")
}

/// The record as `{id}.fence` holds it: the shared JSON object.
fn full(record: &Record) -> io::Result<Vec<u8>> {
    serde_json::to_vec(record).map_err(io::Error::other)
}

/// The attribute's two shapes (see [`compact`]).
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Compact {
    Current(String, i64),
    WithRetired(String, i64, Vec<String>),
}

fn parse(bytes: &[u8], in_attribute: bool, path: &Path) -> Option<Record> {
    if bytes.is_empty() {
        return None;
    }
    let parsed = if in_attribute {
        serde_json::from_slice(bytes).map(|compact| match compact {
            Compact::Current(issuer, token) => Record {
                issuer,
                token,
                retired: Vec::new(),
            },
            Compact::WithRetired(issuer, token, retired) => Record {
                issuer,
                token,
                retired,
            },
        })
    } else {
        serde_json::from_slice(bytes)
    };
    match parsed {
        Ok(record) => Some(record),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "unreadable fence record, treated as absent");
            None
        }
    }
}

/// Whether the file system keeps no user attributes.
fn unsupported(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOTSUP) || e.raw_os_error() == Some(libc::EOPNOTSUPP)
}

/// The attribute's value; `None` when the file has none.
fn read_attribute(data: &File) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 512];
    loop {
        match rustix::fs::fgetxattr(data, ATTRIBUTE, &mut buf[..]) {
            Ok(len) => {
                buf.truncate(len);
                return Ok(Some(buf));
            }
            Err(rustix::io::Errno::NODATA) => return Ok(None),
            // Larger than the buffer: ask for its size and read again.
            Err(rustix::io::Errno::RANGE) => {
                let len = rustix::fs::fgetxattr_query(data, ATTRIBUTE)?;
                buf = vec![0u8; len.max(buf.len() * 2)];
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn write_attribute(data: &File, json: &[u8]) -> io::Result<()> {
    rustix::fs::fsetxattr(data, ATTRIBUTE, json, rustix::fs::XattrFlags::empty())?;
    Ok(())
}

/// The record file, created if missing with the store's permissions.
fn open_record(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o664)
        .open(path)
}

fn read_file(mut file: &File) -> io::Result<Option<Vec<u8>>> {
    let mut json = Vec::new();
    std::io::Seek::rewind(&mut file)?;
    file.read_to_end(&mut json)?;
    Ok(Some(json))
}

fn write_file(file: &File, json: &[u8]) -> io::Result<()> {
    // Written over the old record, then cut to its length, never cut to
    // zero first: ext4 starts writing back, inside close(2), any file that
    // was truncated to zero (its guard for files replaced in place), which
    // cost every new upload a disk write submitted on the request's thread.
    file.write_all_at(json, 0)?;
    file.set_len(json.len() as u64)
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

    /// A temporary directory with an upload's data file `u` holding
    /// `bytes`, where its record file `u.fence` would go.
    fn upload(bytes: &[u8]) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let data_path = dir.path().join("u");
        std::fs::write(&data_path, bytes).unwrap();
        let record_path = dir.path().join("u.fence");
        (dir, data_path, record_path)
    }

    #[test]
    fn a_stale_token_is_refused_inside_the_section_and_changes_nothing() {
        let (dir, data_path, record_path) = upload(b"abc");
        let data = File::open(&data_path).unwrap();

        let newer = token("etcd:1/tusd", 20);
        let entered = Fence::new(record_path.clone(), Some(&newer))
            .enter(&data, Some(3))
            .unwrap();
        drop(entered);
        let older = token("etcd:1/tusd", 10);
        let refused = Fence::new(record_path.clone(), Some(&older)).enter(&data, Some(3));
        assert!(matches!(refused, Err(StoreError::Fenced(_))));
        let json = record_json(&data_path, &record_path).unwrap().unwrap();
        let stored: Record = serde_json::from_slice(&json).unwrap();
        assert_eq!(stored, record("etcd:1/tusd", 20, &[]));
        if attributes_supported(dir.path()) {
            assert_eq!(read_attribute(&data).unwrap(), Some(compact(&stored)));
            assert!(!record_path.exists(), "no file of its own");
        }
    }

    /// A data file marked at creation keeps its record in the attribute
    /// from its first write on: a `{id}.fence` found next to it is not an
    /// older version's record and is not read.
    #[test]
    fn a_marked_new_file_keeps_its_record_in_the_attribute() {
        let (dir, data_path, record_path) = upload(b"");
        if !attributes_supported(dir.path()) {
            return;
        }
        let data = File::open(&data_path).unwrap();
        mark_new(&data);
        std::fs::write(&record_path, full(&record("etcd:1/tusd", 50, &[])).unwrap()).unwrap();

        let first = token("etcd:1/tusd", 10);
        let entered = Fence::new(record_path.clone(), Some(&first)).enter(&data, Some(0));
        assert!(
            entered.is_ok(),
            "the stray file's newer token is not the record"
        );
        drop(entered);
        assert_eq!(
            read_attribute(&data).unwrap(),
            Some(compact(&record("etcd:1/tusd", 10, &[])))
        );
    }

    /// The attribute's form fits the ~60 bytes of value a 256-byte ext4
    /// inode keeps for attributes, for the issuers the lockers make.
    #[test]
    fn a_record_in_its_attribute_form_fits_in_the_inode() {
        for issuer in ["memory:aae0d5c093675a87", "etcd:2d6c9a4f0e81b7c3/tusd"] {
            let record = record(issuer, 1_234_567_890, &[]);
            let bytes = compact(&record);
            assert!(bytes.len() <= 48, "{}", String::from_utf8_lossy(&bytes));
            assert_eq!(parse(&bytes, true, Path::new("u")), Some(record));
        }
        let retired = record(
            "etcd:2d6c9a4f0e81b7c3/tusd",
            7,
            &["memory:aae0d5c093675a87"],
        );
        assert_eq!(
            parse(&compact(&retired), true, Path::new("u")),
            Some(retired)
        );
    }

    /// Whether the file system under `dir` keeps user attributes.
    fn attributes_supported(dir: &Path) -> bool {
        let probe = dir.join("probe");
        std::fs::write(&probe, b"").unwrap();
        let file = File::open(&probe).unwrap();
        match write_attribute(&file, b"{}") {
            Ok(()) => true,
            Err(e) if unsupported(&e) => false,
            Err(e) => panic!("{e}"),
        }
    }

    /// Also: an upload recorded in `{id}.fence` (before attributes, or on a
    /// file system without them) keeps its record there.
    #[test]
    fn a_shorter_record_replaces_a_longer_one_whole() {
        let (_dir, data_path, record_path) = upload(b"");
        let data = File::open(&data_path).unwrap();
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
        // A record from before attributes stays in its file.
        assert_eq!(read_attribute(&data).unwrap_or(None), None);
    }

    #[test]
    fn a_moved_offset_is_refused() {
        let (_dir, data_path, record_path) = upload(b"abcd");
        let data = File::open(&data_path).unwrap();
        let mut fence = Fence::new(record_path.clone(), None);
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
        let (_dir, data_path, record_path) = upload(b"");
        let first = File::open(&data_path).unwrap();
        let second = File::open(&data_path).unwrap();
        let mut fence = Fence::new(record_path.clone(), None);
        let entered = fence.enter(&first, None).unwrap();
        assert!(matches!(
            lock_within(&second, Duration::from_millis(20)),
            Err(StoreError::Fenced(_))
        ));
        drop(entered);
        assert!(lock_within(&second, Duration::from_millis(20)).is_ok());
    }
}

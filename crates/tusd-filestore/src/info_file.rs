//! The `.info` file: an upload's state as tusd's `FileInfo` JSON.
//!
//! Two rules keep it compatible with tusd and safe to share:
//! - The `Offset` it records is never trusted on read: the data file's length
//!   is the offset, as in tusd, because bytes can land after the `.info` was
//!   written but the `.info` cannot claim bytes that never landed.
//! - It is replaced, never edited: the new JSON goes to a hidden temporary
//!   file in the same directory, is synced, and is renamed over the old one.
//!   Another process reading concurrently sees the old state or the new one.
//!   Only a new upload's first `.info` is written in place (`create`):
//!   until its creation is answered, no one knows the upload to read it.
//!
//! The directory is shared storage: other writers, bugs and half-finished
//! restores happen. So reading trusts nothing the files say about
//! themselves: the id is the one the request named, the `.info` must be a
//! regular file (opened without following a symlink or blocking on a FIFO)
//! of bounded size, the data file must be a regular file, and a state that
//! contradicts itself is `Corrupt`, reported without the server's paths.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use tusd_core::{StoreError, UploadInfo};

use crate::blocking::upload_io;
use crate::paths::UploadPaths;

/// The largest `.info` read. tusd's JSON for an upload with generous
/// metadata is a few KiB; anything this big is not one of ours.
pub(crate) const MAX_INFO_BYTES: u64 = 1 << 20;

/// Reads an upload's state with `offset` and `modified` taken from its data
/// file. `NotFound` if either file is missing, `Corrupt` if either is not a
/// regular file, the JSON does not parse or is too large, or the data file
/// holds more bytes than the upload's length.
pub(crate) fn load(paths: &UploadPaths) -> Result<UploadInfo, StoreError> {
    let json = read_info(paths)?;
    let mut info: UploadInfo = serde_json::from_slice(&json)
        .map_err(|e| StoreError::Corrupt(format!("the .info file is not valid JSON ({e})")))?;
    if info.id != paths.id.as_str() {
        tracing::warn!(id = %paths.id, recorded = %info.id, "an .info file names another upload; the URL's id is used");
        info.id = paths.id.to_string();
    }
    refresh(paths, info)
}

/// Takes `info`'s offset and modification time from the data file, the
/// only place they are kept.
pub(crate) fn refresh(paths: &UploadPaths, mut info: UploadInfo) -> Result<UploadInfo, StoreError> {
    let data = fs::symlink_metadata(&paths.data).map_err(upload_io)?;
    if !data.is_file() {
        return Err(StoreError::Corrupt(
            "the upload's data file is not a regular file".into(),
        ));
    }
    info.offset = data.len();
    info.modified = data.modified().ok();
    if !info.size_is_deferred && info.offset > info.size {
        return Err(StoreError::Corrupt(format!(
            "the data file holds {} bytes, more than the upload's length {}",
            info.offset, info.size
        )));
    }
    Ok(info)
}

/// The `.info`'s bytes, refusing anything but a regular file of bounded
/// size: `O_NOFOLLOW` so a symlink is not followed, `O_NONBLOCK` so a FIFO
/// does not hang the reader (it is then refused as not a regular file).
fn read_info(paths: &UploadPaths) -> Result<Vec<u8>, StoreError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&paths.info)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => StoreError::Corrupt("the .info file is a symlink".into()),
            _ => upload_io(e),
        })?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(StoreError::Corrupt(
            "the .info file is not a regular file".into(),
        ));
    }
    if metadata.len() > MAX_INFO_BYTES {
        return Err(StoreError::Corrupt(format!(
            "the .info file is {} bytes, over the {MAX_INFO_BYTES}-byte limit",
            metadata.len()
        )));
    }
    // Exactly the length the stat gave, with no further read to see the
    // end: an `.info` is replaced by a rename, never changed in place, so
    // the open file keeps that length (one read per HEAD instead of two).
    // A foreign writer changing it in place leaves a prefix that does not
    // parse, or an early end: refused either way.
    let mut json = vec![0; metadata.len() as usize];
    (&file).read_exact(&mut json).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => {
            StoreError::Corrupt("the .info file shrank while it was read".into())
        }
        _ => StoreError::Io(e),
    })?;
    Ok(json)
}

/// Replaces the `.info` with `info`, atomically (see the module docs); with
/// `sync` the new JSON is on disk before the rename makes it the `.info`.
pub(crate) fn store(paths: &UploadPaths, info: &UploadInfo, sync: bool) -> Result<(), StoreError> {
    let json = serde_json::to_vec(info).map_err(|e| StoreError::Io(io::Error::other(e)))?;
    let tmp = temp_path(paths);
    let written = write_new(&tmp, &json, sync).and_then(|()| fs::rename(&tmp, &paths.info));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(StoreError::Io(e));
    }
    Ok(())
}

/// Writes a new upload's first `.info` in place. No one can ask for the
/// upload before its creation is answered, so no reader can see it half
/// written, and writing it directly spares a file creation and a rename in
/// the directory, which every creation otherwise pays for (concurrent
/// creations in one directory serialise on it). If the write fails, nothing
/// of it is left. A `.info` left behind by an upload whose termination was
/// cut short (its data file already gone) is replaced as before.
pub(crate) fn create(paths: &UploadPaths, info: &UploadInfo, sync: bool) -> Result<(), StoreError> {
    let json = serde_json::to_vec(info).map_err(|e| StoreError::Io(io::Error::other(e)))?;
    match write_new(&paths.info, &json, sync) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => store(paths, info, sync),
        Err(e) => {
            let _ = fs::remove_file(&paths.info);
            Err(StoreError::Io(e))
        }
    }
}

/// A fresh hidden name beside the `.info`. It neither ends in `.info` nor
/// parses as an id, so listing uploads never mistakes it for one.
fn temp_path(paths: &UploadPaths) -> PathBuf {
    let name = paths.info.file_name().unwrap_or_default().to_string_lossy();
    let nonce: u64 = rand::random();
    paths
        .info
        .with_file_name(format!(".{name}.{nonce:016x}.tmp"))
}

fn write_new(path: &PathBuf, bytes: &[u8], sync: bool) -> io::Result<()> {
    let mut file = create_new(path)?;
    file.write_all(bytes)?;
    if sync {
        file.sync_all()?;
    }
    Ok(())
}

/// Creates a file that must not exist yet, with tusd's permissions (0664)
/// so that a tusd sharing the directory under the same group can use it.
pub(crate) fn create_new(path: &PathBuf) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o664);
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tusd_core::UploadId;

    fn upload_in(dir: &std::path::Path) -> UploadPaths {
        let paths = UploadPaths::new(dir, &UploadId::parse("abc").unwrap()).unwrap();
        fs::write(&paths.data, b"12345").unwrap();
        paths
    }

    fn names_in(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn offset_comes_from_the_data_file_not_the_json() {
        let dir = tempfile::tempdir().unwrap();
        let paths = upload_in(dir.path());
        let info = UploadInfo {
            id: "abc".into(),
            size: 10,
            offset: 0,
            ..UploadInfo::default()
        };
        store(&paths, &info, true).unwrap();
        let loaded = load(&paths).unwrap();
        assert_eq!(loaded.offset, 5);
        assert_eq!(loaded.size, 10);
        assert!(loaded.modified.is_some());
    }

    #[test]
    fn replacing_leaves_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let paths = upload_in(dir.path());
        store(&paths, &UploadInfo::default(), false).unwrap();
        store(&paths, &UploadInfo::default(), false).unwrap();
        assert_eq!(names_in(dir.path()), ["abc", "abc.info"]);
    }

    #[test]
    fn a_first_info_is_written_in_place_and_an_orphan_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let paths = upload_in(dir.path());
        let info = |size| UploadInfo {
            id: "abc".into(),
            size,
            ..UploadInfo::default()
        };
        create(&paths, &info(10), false).unwrap();
        assert_eq!(load(&paths).unwrap().size, 10);
        // A leftover of a cut-short termination under the same id.
        create(&paths, &info(20), false).unwrap();
        assert_eq!(load(&paths).unwrap().size, 20);
        assert_eq!(names_in(dir.path()), ["abc", "abc.info"]);
    }

    #[test]
    fn missing_files_are_not_found_and_bad_json_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let paths = upload_in(dir.path());
        assert!(matches!(load(&paths), Err(StoreError::NotFound)));
        fs::write(&paths.info, b"{not json").unwrap();
        assert!(matches!(load(&paths), Err(StoreError::Corrupt(_))));
        store(&paths, &UploadInfo::default(), false).unwrap();
        fs::remove_file(&paths.data).unwrap();
        assert!(matches!(load(&paths), Err(StoreError::NotFound)));
    }

    fn corrupt(paths: &UploadPaths) -> String {
        match load(paths) {
            Err(StoreError::Corrupt(reason)) => {
                assert!(!reason.contains('/'), "a path in {reason:?}");
                reason
            }
            other => panic!("not Corrupt: {other:?}"),
        }
    }

    fn sized(size: u64) -> UploadInfo {
        UploadInfo {
            id: "abc".into(),
            size,
            ..UploadInfo::default()
        }
    }

    #[test]
    fn an_info_that_is_no_regular_file_is_corrupt_and_never_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let paths = upload_in(dir.path());
        let elsewhere = dir.path().join("elsewhere.json");
        fs::write(&elsewhere, serde_json::to_vec(&sized(10)).unwrap()).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &paths.info).unwrap();
        assert!(corrupt(&paths).contains("symlink"));
        fs::remove_file(&paths.info).unwrap();
        let fifo = std::ffi::CString::new(paths.info.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        assert!(corrupt(&paths).contains("not a regular file"));
        fs::remove_file(&paths.info).unwrap();
        fs::create_dir(&paths.info).unwrap();
        corrupt(&paths);
    }

    #[test]
    fn an_oversized_info_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let paths = upload_in(dir.path());
        let file = File::create(&paths.info).unwrap();
        file.set_len(MAX_INFO_BYTES + 1).unwrap();
        assert!(corrupt(&paths).contains("limit"));
    }

    #[test]
    fn a_data_file_that_is_no_regular_file_or_too_long_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let paths = upload_in(dir.path());
        store(&paths, &sized(3), false).unwrap();
        assert!(corrupt(&paths).contains("more than the upload's length"));
        fs::remove_file(&paths.data).unwrap();
        fs::create_dir(&paths.data).unwrap();
        assert!(corrupt(&paths).contains("not a regular file"));
        fs::remove_dir(&paths.data).unwrap();
        std::os::unix::fs::symlink(dir.path(), &paths.data).unwrap();
        assert!(corrupt(&paths).contains("not a regular file"));
    }

    #[test]
    fn the_id_is_the_requested_one_whatever_the_info_says() {
        let dir = tempfile::tempdir().unwrap();
        let paths = upload_in(dir.path());
        let mut other = sized(10);
        other.id = "someone-else".into();
        store(&paths, &other, false).unwrap();
        assert_eq!(load(&paths).unwrap().id, "abc");
    }
}

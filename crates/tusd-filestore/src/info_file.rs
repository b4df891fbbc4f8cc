//! The `.info` file: an upload's state as tusd's `FileInfo` JSON.
//!
//! Two rules keep it compatible with tusd and safe to share:
//! - The `Offset` it records is never trusted on read: the data file's length
//!   is the offset, as in tusd, because bytes can land after the `.info` was
//!   written but the `.info` cannot claim bytes that never landed.
//! - It is replaced, never edited: the new JSON goes to a hidden temporary
//!   file in the same directory, is synced, and is renamed over the old one.
//!   Another process reading concurrently sees the old state or the new one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;

use tusd_handler::{StoreError, UploadInfo};

use crate::blocking::upload_io;
use crate::paths::UploadPaths;

/// Reads an upload's state with `offset` and `modified` taken from its data
/// file. `NotFound` if either file is missing, `Corrupt` if the JSON does not
/// parse.
pub(crate) fn load(paths: &UploadPaths) -> Result<UploadInfo, StoreError> {
    let json = fs::read(&paths.info).map_err(upload_io)?;
    let mut info: UploadInfo = serde_json::from_slice(&json)
        .map_err(|e| StoreError::Corrupt(format!("{}: {e}", paths.info.display())))?;
    let data = fs::metadata(&paths.data).map_err(upload_io)?;
    info.offset = data.len();
    info.modified = data.modified().ok();
    Ok(info)
}

/// Replaces the `.info` with `info`, atomically (see the module docs).
pub(crate) fn store(paths: &UploadPaths, info: &UploadInfo) -> Result<(), StoreError> {
    let json = serde_json::to_vec(info).map_err(|e| StoreError::Io(io::Error::other(e)))?;
    let tmp = temp_path(paths);
    let written = write_synced(&tmp, &json).and_then(|()| fs::rename(&tmp, &paths.info));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(StoreError::Io(e));
    }
    Ok(())
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

fn write_synced(path: &PathBuf, bytes: &[u8]) -> io::Result<()> {
    let mut file = create_new(path)?;
    file.write_all(bytes)?;
    file.sync_all()
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
    use tusd_handler::UploadId;

    fn upload_in(dir: &std::path::Path) -> UploadPaths {
        let paths = UploadPaths::new(dir, &UploadId::parse("abc").unwrap());
        fs::write(&paths.data, b"12345").unwrap();
        paths
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
        store(&paths, &info).unwrap();
        let loaded = load(&paths).unwrap();
        assert_eq!(loaded.offset, 5);
        assert_eq!(loaded.size, 10);
        assert!(loaded.modified.is_some());
    }

    #[test]
    fn replacing_leaves_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let paths = upload_in(dir.path());
        store(&paths, &UploadInfo::default()).unwrap();
        store(&paths, &UploadInfo::default()).unwrap();
        let mut names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["abc", "abc.info"]);
    }

    #[test]
    fn missing_files_are_not_found_and_bad_json_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let paths = upload_in(dir.path());
        assert!(matches!(load(&paths), Err(StoreError::NotFound)));
        fs::write(&paths.info, b"{not json").unwrap();
        assert!(matches!(load(&paths), Err(StoreError::Corrupt(_))));
        store(&paths, &UploadInfo::default()).unwrap();
        fs::remove_file(&paths.data).unwrap();
        assert!(matches!(load(&paths), Err(StoreError::NotFound)));
    }
}

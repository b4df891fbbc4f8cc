//! Opening an upload's data file without trusting what is at its path.
//!
//! The directory may be shared with other writers, so the path could hold a
//! symlink to somewhere else, a directory or a FIFO. Every open refuses to
//! follow a symlink (`O_NOFOLLOW`) and insists on a regular file, so a write
//! can never land outside the upload and a read never hangs.

use std::fs::{File, Metadata, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use tusd_core::StoreError;

use crate::blocking::upload_io;

/// How the data file is opened.
#[derive(Clone, Copy)]
pub(crate) enum Access {
    Read,
    Write,
    Append,
}

/// Opens the data file at `path`: `NotFound` if missing, `Corrupt` if it is
/// not a regular file.
pub(crate) fn open(path: &Path, access: Access) -> Result<File, StoreError> {
    open_with_metadata(path, access).map(|(file, _)| file)
}

/// [`open`], also returning the metadata it checked, so a caller that needs
/// the length does not ask the kernel again.
pub(crate) fn open_with_metadata(
    path: &Path,
    access: Access,
) -> Result<(File, Metadata), StoreError> {
    let mut options = OpenOptions::new();
    match access {
        Access::Read => options.read(true),
        Access::Write => options.write(true),
        Access::Append => options.append(true),
    };
    let file = options
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) | Some(libc::EISDIR) => not_regular(),
            _ => upload_io(e),
        })?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(not_regular());
    }
    Ok((file, metadata))
}

fn not_regular() -> StoreError {
    StoreError::Corrupt("the upload's data file is not a regular file".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_open() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        for access in [Access::Read, Access::Write, Access::Append] {
            assert!(open(&file, access).is_ok());
            assert!(matches!(
                open(dir.path(), access),
                Err(StoreError::Corrupt(_))
            ));
        }
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(matches!(
            open(&link, Access::Append),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            open(&dir.path().join("missing"), Access::Read),
            Err(StoreError::NotFound)
        ));
    }
}

//! Where an upload's two files live.
//!
//! This is the only place that turns an id into a path. It accepts only a
//! validated [`UploadId`], which cannot contain a separator, `..` or NUL, so
//! no request can name a file outside the store's directory; and of those,
//! only ids in the file store's own alphabet (letters, digits, `-`, `_`), so
//! no request can name another upload's `.info` or `.fence` as if it were a
//! data file: `UploadId` also admits `.`, `+`, `~` and `=`, which other
//! stores' ids contain (S3 multipart upload ids), and `{id}.info` is a valid
//! `UploadId`.

use std::path::{Path, PathBuf};

use tusd_core::{StoreError, UploadId};

/// The suffix of the JSON state file, as tusd names it.
pub(crate) const INFO_SUFFIX: &str = ".info";

/// The suffix of the fencing record (see `crate::fence`).
pub(crate) const FENCE_SUFFIX: &str = ".fence";

/// The data file, `.info` file and fencing record of one upload, and the id
/// they were derived from (the one the request named, which is the one the
/// store trusts over anything a file says).
#[derive(Clone, Debug)]
pub(crate) struct UploadPaths {
    pub(crate) id: UploadId,
    pub(crate) data: PathBuf,
    pub(crate) info: PathBuf,
    pub(crate) fence: PathBuf,
}

/// Whether `id` is in the file store's alphabet: ASCII letters, digits, `-`
/// and `_`. The store generates 32 lowercase hex digits; upper case, `-` and
/// `_` stay accepted, as they were before `UploadId` widened, so a directory
/// holding such ids (tusd's hooks can choose ids) is still served.
pub(crate) fn is_file_store_id(id: &str) -> bool {
    id.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl UploadPaths {
    /// The files of upload `id`; `NotFound` for an id the file store could
    /// not have made, before any file is looked at.
    pub(crate) fn new(dir: &Path, id: &UploadId) -> Result<UploadPaths, StoreError> {
        if !is_file_store_id(id.as_str()) {
            return Err(StoreError::NotFound);
        }
        Ok(UploadPaths {
            id: id.clone(),
            data: dir.join(id.as_str()),
            info: dir.join(format!("{}{INFO_SUFFIX}", id.as_str())),
            fence: dir.join(format!("{}{FENCE_SUFFIX}", id.as_str())),
        })
    }
}

/// The upload id a directory entry is the `.info` file of, if it is one.
pub(crate) fn id_of_info_file(file_name: &str) -> Option<UploadId> {
    let id = file_name.strip_suffix(INFO_SUFFIX)?;
    is_file_store_id(id).then(|| UploadId::parse(id)).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_sit_side_by_side_in_the_directory() {
        let id = UploadId::parse("abc").unwrap();
        let paths = UploadPaths::new(Path::new("/srv/up"), &id).unwrap();
        assert_eq!(paths.data, Path::new("/srv/up/abc"));
        assert_eq!(paths.info, Path::new("/srv/up/abc.info"));
    }

    #[test]
    fn only_info_files_of_valid_ids_name_an_upload() {
        assert_eq!(id_of_info_file("abc.info").unwrap().as_str(), "abc");
        for other in [
            "abc",
            "abc.fence",
            ".info",
            "abc.info.tmp",
            ".abc.info.1f.tmp",
            "a.b.info",
            "a+b.info",
            "a~b.info",
        ] {
            assert!(id_of_info_file(other).is_none(), "{other:?} accepted");
        }
    }

    #[test]
    fn ids_outside_the_file_store_alphabet_are_not_found() {
        // Valid UploadIds (another store could have made them) that would
        // name another upload's files, or files the store never makes.
        for other in [
            "abc.info",
            "abc.fence",
            "abc.info.tmp",
            "a+b",
            "a~b",
            "a=b",
            "a.b",
        ] {
            let id = UploadId::parse(other).expect("a valid UploadId");
            assert!(
                matches!(
                    UploadPaths::new(Path::new("/srv/up"), &id),
                    Err(StoreError::NotFound)
                ),
                "{other:?} accepted"
            );
        }
        for own in ["0123456789abcdef0123456789abcdef", "a-b_C"] {
            let id = UploadId::parse(own).unwrap();
            assert!(
                UploadPaths::new(Path::new("/srv/up"), &id).is_ok(),
                "{own:?}"
            );
        }
    }
}

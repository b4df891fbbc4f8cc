//! Where an upload's two files live.
//!
//! This is the only place that turns an id into a path, and it accepts only
//! a validated [`UploadId`], which cannot contain a separator, `..` or NUL:
//! no request can name a file outside the store's directory.

use std::path::{Path, PathBuf};

use tusd_core::UploadId;

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

impl UploadPaths {
    pub(crate) fn new(dir: &Path, id: &UploadId) -> UploadPaths {
        UploadPaths {
            id: id.clone(),
            data: dir.join(id.as_str()),
            info: dir.join(format!("{}{INFO_SUFFIX}", id.as_str())),
            fence: dir.join(format!("{}{FENCE_SUFFIX}", id.as_str())),
        }
    }
}

/// The upload id a directory entry is the `.info` file of, if it is one.
pub(crate) fn id_of_info_file(file_name: &str) -> Option<UploadId> {
    UploadId::parse(file_name.strip_suffix(INFO_SUFFIX)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_sit_side_by_side_in_the_directory() {
        let id = UploadId::parse("abc").unwrap();
        let paths = UploadPaths::new(Path::new("/srv/up"), &id);
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
        ] {
            assert!(id_of_info_file(other).is_none(), "{other:?} accepted");
        }
    }
}

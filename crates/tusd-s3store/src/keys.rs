//! Upload ids and the object keys of an upload: the only place that turns
//! one into the other.
//!
//! An id is tusd's `{object id}+{multipart upload id}`; the object id is
//! ours (32 hex digits), the multipart upload id the server's. Objects:
//! `{prefix}{object id}` (the finished upload), `{prefix}{object id}.info`,
//! `{prefix}{object id}.part` and, ours only, `{prefix}{object id}.fence`.

use tusd_core::{StoreError, UploadId};

/// The keys and halves of one upload's id.
#[derive(Clone, Debug)]
pub(crate) struct UploadKeys {
    pub(crate) id: UploadId,
    pub(crate) multipart_id: String,
    pub(crate) object: String,
    pub(crate) info: String,
    pub(crate) part: String,
    pub(crate) fence: String,
}

/// The prefix as tusd uses it: with a trailing `/` unless empty.
pub(crate) fn normalise_prefix(prefix: &str) -> String {
    if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_owned()
    } else {
        format!("{prefix}/")
    }
}

/// Whether `object_id` could be one this store (or tusd) made: letters,
/// digits, `-` and `_`. Anything else (a `.` above all) could make one
/// upload's keys name another's `.info` or `.part`.
fn is_object_id(object_id: &str) -> bool {
    !object_id.is_empty()
        && object_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl UploadKeys {
    /// The keys of `id` under `prefix` (normalised); `NotFound` for an id
    /// that is not `{object id}+{multipart id}` with an object id this
    /// store could have made.
    pub(crate) fn new(prefix: &str, id: &UploadId) -> Result<UploadKeys, StoreError> {
        let (object_id, multipart_id) = id.as_str().rsplit_once('+').ok_or(StoreError::NotFound)?;
        if !is_object_id(object_id) || multipart_id.is_empty() {
            return Err(StoreError::NotFound);
        }
        Ok(UploadKeys {
            id: id.clone(),
            multipart_id: multipart_id.to_owned(),
            object: format!("{prefix}{object_id}"),
            info: format!("{prefix}{object_id}.info"),
            part: format!("{prefix}{object_id}.part"),
            fence: format!("{prefix}{object_id}.fence"),
        })
    }
}

/// A fresh object id: 128 random bits as 32 lowercase hex digits, the shape
/// of tusd's `uid`.
pub(crate) fn new_object_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_tusds_layout() {
        let id = UploadId::parse("abc+mp.1~x").unwrap();
        let keys = UploadKeys::new("up/", &id).unwrap();
        assert_eq!(keys.multipart_id, "mp.1~x");
        assert_eq!(keys.object, "up/abc");
        assert_eq!(keys.info, "up/abc.info");
        assert_eq!(keys.part, "up/abc.part");
        assert_eq!(normalise_prefix("up"), "up/");
        assert_eq!(normalise_prefix(""), "");
    }

    #[test]
    fn ids_this_store_cannot_have_made_are_not_found() {
        for bad in ["abc", "abc+", "+mp", "a.info+mp", "a.b+mp", "a~b+mp"] {
            let id = UploadId::parse(bad).unwrap();
            assert!(
                matches!(UploadKeys::new("", &id), Err(StoreError::NotFound)),
                "{bad}"
            );
        }
    }
}

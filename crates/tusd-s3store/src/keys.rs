//! Upload ids and the object keys of an upload: the only place that turns
//! one into the other.
//!
//! An id is tusd's `{object id}+{multipart upload id}`; the object id is
//! ours (32 hex digits), the multipart upload id the server's. Objects:
//! `{prefix}{object id}` (the finished upload) and, under the metadata
//! prefix (the object prefix unless tusd's `MetadataObjectPrefix` is set),
//! `{metadata prefix}{object id}.info`, `.part` and, ours only, `.fence`.

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
fn normalise_prefix(prefix: &str) -> String {
    if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_owned()
    } else {
        format!("{prefix}/")
    }
}

/// The two prefixes of the layout, normalised. tusd lets the small objects
/// an upload needs while it runs (`.info`, `.part`) live apart from the
/// uploaded bytes, e.g. so that a bucket's data prefix holds only finished
/// files for whoever reads them; `.fence` goes with them.
#[derive(Clone, Debug)]
pub(crate) struct Prefixes {
    /// Where the uploads' bytes (the multipart uploads, then the objects) go.
    pub(crate) object: String,
    /// Where `.info`, `.part` and `.fence` go.
    pub(crate) metadata: String,
}

impl Prefixes {
    /// As tusd reads its options: an empty metadata prefix means the
    /// object prefix.
    pub(crate) fn new(object: &str, metadata: &str) -> Prefixes {
        let metadata = if metadata.is_empty() {
            object
        } else {
            metadata
        };
        Prefixes {
            object: normalise_prefix(object),
            metadata: normalise_prefix(metadata),
        }
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
    /// The keys of `id` under `prefixes`; `NotFound` for an id that is not
    /// `{object id}+{multipart id}` with an object id this store could have
    /// made.
    pub(crate) fn new(prefixes: &Prefixes, id: &UploadId) -> Result<UploadKeys, StoreError> {
        let (object_id, multipart_id) = id.as_str().rsplit_once('+').ok_or(StoreError::NotFound)?;
        if !is_object_id(object_id) || multipart_id.is_empty() {
            return Err(StoreError::NotFound);
        }
        Ok(UploadKeys {
            id: id.clone(),
            multipart_id: multipart_id.to_owned(),
            object: format!("{}{object_id}", prefixes.object),
            info: format!("{}{object_id}.info", prefixes.metadata),
            part: format!("{}{object_id}.part", prefixes.metadata),
            fence: format!("{}{object_id}.fence", prefixes.metadata),
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
        let keys = UploadKeys::new(&Prefixes::new("up", ""), &id).unwrap();
        assert_eq!(keys.multipart_id, "mp.1~x");
        assert_eq!(keys.object, "up/abc");
        assert_eq!(keys.info, "up/abc.info");
        assert_eq!(keys.part, "up/abc.part");
        assert_eq!(keys.fence, "up/abc.fence");
        assert_eq!(normalise_prefix("up/"), "up/");
        assert_eq!(normalise_prefix(""), "");
    }

    #[test]
    fn metadata_objects_go_under_their_own_prefix() {
        let id = UploadId::parse("abc+mp").unwrap();
        let keys = UploadKeys::new(&Prefixes::new("", "meta"), &id).unwrap();
        assert_eq!(keys.object, "abc");
        assert_eq!(keys.info, "meta/abc.info");
        assert_eq!(keys.part, "meta/abc.part");
        assert_eq!(keys.fence, "meta/abc.fence");
    }

    #[test]
    fn ids_this_store_cannot_have_made_are_not_found() {
        for bad in ["abc", "abc+", "+mp", "a.info+mp", "a.b+mp", "a~b+mp"] {
            let id = UploadId::parse(bad).unwrap();
            assert!(
                matches!(
                    UploadKeys::new(&Prefixes::new("", ""), &id),
                    Err(StoreError::NotFound)
                ),
                "{bad}"
            );
        }
    }
}

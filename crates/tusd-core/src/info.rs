//! The state of an upload, as stores keep it and the handler reads it.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::UploadId;

/// The state of one upload, serialised with the same field names as tusd's
/// `FileInfo` so that a tusd upload directory can be served as it is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UploadInfo {
    #[serde(rename = "ID")]
    pub id: String,
    /// Total length in bytes; meaningless while `size_is_deferred`.
    pub size: u64,
    pub size_is_deferred: bool,
    /// Bytes stored so far.
    pub offset: u64,
    #[serde(rename = "MetaData", default, deserialize_with = "null_as_default")]
    pub metadata: BTreeMap<String, String>,
    pub is_partial: bool,
    pub is_final: bool,
    /// Ids of the partial uploads a final upload is made of, in order.
    #[serde(default, deserialize_with = "null_as_default")]
    pub partial_uploads: Vec<String>,
    /// Store-specific details (tusd's filestore writes Type, Path, InfoPath).
    #[serde(default, deserialize_with = "null_as_default")]
    pub storage: BTreeMap<String, String>,
    /// Last time bytes or state changed; drives expiration. Not serialised:
    /// stores derive it (the file store from the data file's mtime).
    #[serde(skip)]
    pub modified: Option<SystemTime>,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl UploadInfo {
    /// True once every declared byte is stored (never while the length is deferred).
    pub fn is_complete(&self) -> bool {
        !self.size_is_deferred && self.offset == self.size
    }
}

/// What the handler asks a store to create; the store chooses the id
/// unless `id` asks for one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NewUpload {
    /// An id chosen by the caller (a pre-create hook's `ChangeFileInfo.ID`).
    /// A store that honours it creates exactly this id and fails if it
    /// exists; as in tusd, a store may also ignore it and pick its own.
    pub id: Option<UploadId>,
    /// Store-specific hints (tusd's `ChangeFileInfo.Storage`); a store may
    /// ignore them, as tusd's own stores do.
    pub storage: BTreeMap<String, String>,
    pub size: Option<u64>,
    pub metadata: BTreeMap<String, String>,
    pub is_partial: bool,
    pub is_final: bool,
    pub partial_uploads: Vec<UploadId>,
}

impl NewUpload {
    /// The state of this upload once a store created it as `id`, with zero
    /// bytes and the store's own `storage` fields (what tusd's stores record,
    /// e.g. the file store's `Path`). `self.storage` holds only hints for the
    /// store and is not recorded.
    pub fn into_info(self, id: &UploadId, storage: BTreeMap<String, String>) -> UploadInfo {
        UploadInfo {
            id: id.to_string(),
            size: self.size.unwrap_or(0),
            size_is_deferred: self.size.is_none(),
            offset: 0,
            metadata: self.metadata,
            is_partial: self.is_partial,
            is_final: self.is_final,
            partial_uploads: self.partial_uploads.iter().map(|p| p.to_string()).collect(),
            storage,
            modified: None,
        }
    }
}

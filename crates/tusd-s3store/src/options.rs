//! [`S3StoreOptions`]: the bucket, the layout's prefix and how parts are cut
//! and sent, with tusd's defaults.

use std::path::PathBuf;

/// S3's smallest part (every part but the last must be at least this big).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

/// S3's largest part, and the largest range one UploadPartCopy may copy.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// S3's most parts in one multipart upload.
pub const MAX_PARTS: u64 = 10_000;

/// tusd's `PreferredPartSize`: big enough that a 1 GiB upload is 21
/// requests, small enough that an interrupted part costs little to resend.
pub const DEFAULT_PART_SIZE: u64 = 50 * 1024 * 1024;

/// tusd's `MaxBufferedParts`: parts that may wait on local disk per upload
/// while earlier ones are being sent.
pub const DEFAULT_MAX_BUFFERED_PARTS: usize = 20;

/// tusd's default limit on part uploads in flight, for the whole store.
pub const DEFAULT_CONCURRENT_PART_UPLOADS: usize = 10;

/// How an [`S3Store`](crate::S3Store) uses its bucket.
#[derive(Clone, Debug)]
pub struct S3StoreOptions {
    /// The bucket every object lives in.
    pub bucket: String,
    /// Prepended to every key; a `/` is added when it is not empty and does
    /// not end with one, as tusd does (`--s3-object-prefix`).
    pub object_prefix: String,
    /// Prepended instead to the keys of `.info`, `.part` and `.fence`
    /// (tusd's `MetadataObjectPrefix`, `--s3-metadata-object-prefix`);
    /// empty: the object prefix. Normalised the same way.
    pub metadata_object_prefix: String,
    /// The size parts are cut to (`--s3-part-size`); bigger for uploads
    /// that would otherwise need more than 10,000 parts. At least 5 MiB.
    pub part_size: u64,
    /// Parts of one upload that may wait on local disk while earlier ones
    /// are sent (`--s3-max-buffered-parts`); when they are all waiting, the
    /// request body is not read further.
    pub max_buffered_parts: usize,
    /// Part uploads in flight for the whole store
    /// (`--s3-concurrent-part-uploads`).
    pub concurrent_part_uploads: usize,
    /// Where parts wait before they are sent; the system's temporary
    /// directory when `None`.
    pub temp_dir: Option<PathBuf>,
    /// Sends parts without a content checksum or signed payload hash
    /// (`--s3-disable-content-hashes`): saves the CPU of hashing every byte,
    /// gives up S3's check that the bytes arrived intact.
    pub disable_content_hashes: bool,
}

impl S3StoreOptions {
    /// tusd's defaults for `bucket`.
    pub fn new(bucket: impl Into<String>) -> S3StoreOptions {
        S3StoreOptions {
            bucket: bucket.into(),
            object_prefix: String::new(),
            metadata_object_prefix: String::new(),
            part_size: DEFAULT_PART_SIZE,
            max_buffered_parts: DEFAULT_MAX_BUFFERED_PARTS,
            concurrent_part_uploads: DEFAULT_CONCURRENT_PART_UPLOADS,
            temp_dir: None,
            disable_content_hashes: false,
        }
    }

    /// The part size for an upload of `size` bytes (deferred: `None`):
    /// the configured one, unless 10,000 of those would not hold it. A
    /// deferred upload can hold 10,000 configured parts at most.
    pub(crate) fn part_size_for(&self, size: Option<u64>) -> u64 {
        let configured = self.part_size.clamp(MIN_PART_SIZE, MAX_PART_SIZE);
        match size {
            Some(size) if size > configured * MAX_PARTS => size.div_ceil(MAX_PARTS),
            _ => configured,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_size_grows_only_past_ten_thousand_parts() {
        let options = S3StoreOptions::new("b");
        assert_eq!(options.part_size_for(Some(1)), DEFAULT_PART_SIZE);
        assert_eq!(options.part_size_for(None), DEFAULT_PART_SIZE);
        let huge = DEFAULT_PART_SIZE * MAX_PARTS + 1;
        assert_eq!(options.part_size_for(Some(huge)), huge.div_ceil(MAX_PARTS));
        let mut tiny = S3StoreOptions::new("b");
        tiny.part_size = 1;
        assert_eq!(tiny.part_size_for(Some(10)), MIN_PART_SIZE);
    }
}

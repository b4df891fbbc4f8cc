//! A tus data store on S3, or any S3-compatible server, laid out exactly
//! like tusd's `s3store`, so a bucket written by tusd can be served by
//! tusd-rs and the other way round.
//!
//! Why S3: it lets every server of a cluster be stateless. With the etcd
//! locker for exclusion and a bucket for bytes, no node keeps anything an
//! upload needs, so any node can take any request.
//!
//! # The objects of an upload
//! An upload's id is tusd's `{object id}+{multipart upload id}`: 32 random
//! hex digits of ours, and the id S3 gave the upload's multipart upload.
//! Under the configured prefix (`up/` for `--s3-object-prefix up`):
//! - `{prefix}{object id}`: the finished upload, one object. Until it is
//!   finished, its bytes are the parts of a multipart upload under that key.
//! - `{prefix}{object id}.info`: the upload's state as JSON, with the file
//!   store's (and tusd's) field names; `Storage` holds `Type: s3store`,
//!   `Bucket` and `Key`. Written at creation and when the state changes.
//! - `{prefix}{object id}.part`: the trailing bytes of an unfinished upload
//!   that do not fill S3's minimum part (5 MiB), kept until more arrive.
//! - `{prefix}{object id}.fence`: ours only, the newest fencing token that
//!   changed the upload (see `fence`); tusd ignores it.
//!
//! With tusd's `MetadataObjectPrefix` (`--s3-metadata-object-prefix`),
//! `.info`, `.part` and `.fence` go under that prefix instead.
//!
//! The offset is recorded nowhere: it is the sum of the part sizes S3 lists
//! plus the size of `.part` (the object's size once finished), so a restart,
//! a crash or another server can never disagree with the bytes stored.
//! `finish_upload` completes the multipart upload.
//!
//! # Layout
//! - `store`: [`S3Store`], the `DataStore` and its capabilities, one short
//!   method per operation.
//! - `options`: [`S3StoreOptions`], tusd's knobs and defaults.
//! - `client`: the AWS client from the standard environment,
//!   [`S3ClientConfig`], and the start-up check ([`ConnectError`]).
//! - `keys`: ids and object keys; the only place that turns one into the
//!   other.
//! - `state`: reading an upload's state (`.info`, ListParts, `.part`) and
//!   writing the `.info`.
//! - `write`: `write_chunk`, cutting the body into parts on local disk and
//!   sending them concurrently.
//! - `part`: sending one part from local disk, and sending it again,
//!   safely, when an attempt fails.
//! - `stage`: checksums: a chunk kept on local disk until its digest is
//!   verified, then written as a body would be.
//! - `complete`: completing the multipart upload.
//! - `read`: `read_range`, ranged GETs.
//! - `concat`: concatenation by server-side part copy, or download and
//!   re-upload when a partial is too small to be a part.
//! - `fence`: the fencing record and its limits on S3.
//! - `error`: S3 error codes into `StoreError`s.
//!
//! # What S3 cannot do
//! No truncation: an uploaded part cannot be taken back, so a chunk that
//! carries a checksum is staged on local disk and sent only once verified
//! (`ChunkStager`). An unfinished upload cannot be read once it has parts (S3 does
//! not serve parts before completion). Fencing narrows but cannot close the
//! window a paused holder has (see `fence`). docs/s3.md has the details.

mod client;
mod complete;
mod concat;
mod error;
mod fence;
mod keys;
mod options;
mod part;
mod read;
mod stage;
mod state;
mod store;
mod write;

pub use client::{check_bucket, s3_client, ConnectError, S3ClientConfig, DEFAULT_REQUEST_TIMEOUT};
pub use options::{
    S3StoreOptions, DEFAULT_CONCURRENT_PART_UPLOADS, DEFAULT_MAX_BUFFERED_PARTS, DEFAULT_PART_SIZE,
    MAX_PARTS, MAX_PART_SIZE, MIN_PART_SIZE,
};
pub use store::S3Store;

/// The SDK the store is built on, for callers that talk to the bucket too
/// (tests, benchmarks) with the same version.
pub use aws_sdk_s3;

/// What every operation needs; shared by the clones of one [`S3Store`].
pub(crate) struct Inner {
    pub(crate) client: aws_sdk_s3::Client,
    pub(crate) bucket: String,
    pub(crate) prefixes: keys::Prefixes,
    pub(crate) options: S3StoreOptions,
    /// Part uploads (and copies) in flight for the whole store.
    pub(crate) upload_slots: tokio::sync::Semaphore,
    /// The server's URL, for start-up errors.
    pub(crate) endpoint: String,
}

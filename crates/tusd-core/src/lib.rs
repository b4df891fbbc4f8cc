//! The interfaces of tusd-rs, without HTTP: what a data store, a locker and
//! the protocol handler agree on.
//!
//! A store or locker crate depends on this crate alone, so it compiles no
//! web framework and no hash; the handler (`tusd-handler`) depends on it too
//! and re-exports everything here for embedders.
//!
//! # Layout
//! - [`upload_id`]: which ids may reach a store or a lock name.
//! - [`info`]: [`UploadInfo`], the state of an upload in tusd's `.info`
//!   shape, and [`NewUpload`], what creation asks for.
//! - [`store`]: the [`DataStore`] minimum, the optional capabilities
//!   ([`Terminater`], [`Concater`], [`LengthDeferrer`], [`Truncater`] or
//!   [`ChunkStager`] for checksums, [`Lister`]) and [`StoreError`].
//! - [`lock`]: the [`Locker`] interface, held [`Lock`]s, release requests,
//!   loss, [`FencingToken`]s and [`LockError`].
//! - [`composer`]: the [`StoreComposer`] that names the parts a handler uses.
//! - [`fence_record`]: the fencing rule every store applies to tokens,
//!   across issuers, and the record it keeps per upload.

pub mod composer;
pub mod fence_record;
pub mod info;
pub mod lock;
pub mod store;
pub mod upload_id;

pub use composer::{Capabilities, StoreComposer};
pub use info::{NewUpload, UploadInfo};
pub use lock::{FencingToken, Lock, LockError, LockSignals, Locker, Release};
pub use store::{
    ChunkStager, ChunkStream, Concater, DataStore, LengthDeferrer, Lister, StagedChunk, StoreError,
    Terminater, Truncater, UploadReader,
};
pub use upload_id::UploadId;

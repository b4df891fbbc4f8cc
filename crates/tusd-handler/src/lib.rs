//! The tus 1.0 protocol handler of tusd-rs.
//!
//! # Layout
//! - [`composer`]: the [`StoreComposer`] that names a data store and a locker.
//! - [`store`]: the [`DataStore`] interface and [`UploadInfo`], tusd's `.info` shape.
//! - [`lock`]: the [`Locker`] interface, held [`Lock`]s, release requests and loss.
//! - [`upload_id`]: which ids the handler lets through to a store.
//!
//! This crate knows interfaces only: no store, no locker, no etcd.

pub mod composer;
pub mod lock;
pub mod store;
pub mod upload_id;

pub use composer::StoreComposer;
pub use lock::{Lock, LockError, LockSignals, Locker, Release};
pub use store::{ChunkStream, DataStore, NewUpload, StoreError, UploadInfo, UploadReader};
pub use upload_id::UploadId;

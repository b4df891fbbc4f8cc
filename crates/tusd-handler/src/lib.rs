//! The tus 1.0 protocol handler of tusd-rs.
//!
//! Build a [`StoreComposer`] with a data store and a locker (each plug-in
//! crate offers `use_in(&mut composer)`), then a [`TusHandler`] from it, and
//! serve [`TusHandler::router`] in any axum application.
//!
//! # Layout
//! - [`composer`]: the [`StoreComposer`] that names a data store and a locker.
//! - [`store`]: the [`DataStore`] interface and [`UploadInfo`], tusd's `.info` shape.
//! - [`lock`]: the [`Locker`] interface, held [`Lock`]s, release requests and loss.
//! - [`upload_id`]: which ids the handler lets through to a store.
//! - [`handler`]: the routes and what every request goes through first.
//! - `protocol`: one module per tus extension (core, creation, termination,
//!   concatenation, checksum, expiration, download).
//! - `headers`: the one parser for each tus header.
//! - `body`: the request body as a chunk stream that obeys the lock.
//! - `location`: upload URLs, proxy headers included.
//! - `rate_limit`: the opt-in per-client limit on upload creation.
//! - [`error`]: every failure and its status code, in one place.
//! - [`metrics`]: Prometheus counters.
//! - [`config`]: the handler's settings.
//!
//! This crate knows interfaces only: no concrete store, no locker, no etcd.

mod body;
pub mod composer;
pub mod config;
mod drain;
pub mod error;
pub mod handler;
mod headers;
mod location;
pub mod lock;
pub mod metrics;
mod protocol;
mod rate_limit;
pub mod store;
pub mod upload_id;

pub use composer::StoreComposer;
pub use config::Config;
pub use error::HandlerError;
pub use handler::{BuildError, TusHandler};
pub use lock::{FencingToken, Lock, LockError, LockSignals, Locker, Release};
pub use metrics::Metrics;
pub use store::{ChunkStream, DataStore, NewUpload, StoreError, UploadInfo, UploadReader};
pub use upload_id::UploadId;

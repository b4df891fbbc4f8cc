//! The tus 1.0 protocol handler of tusd-rs.
//!
//! Build a [`StoreComposer`] with a data store and a locker (each plug-in
//! crate offers `use_in(&mut composer)`), then a [`TusHandler`] from it, and
//! serve [`TusHandler::router`] in any axum application.
//!
//! The interfaces (uploads, [`DataStore`] and its optional capabilities,
//! [`Locker`], [`StoreComposer`]) live in `tusd-core`, which has no HTTP, so
//! store and locker crates need not compile this one; they are re-exported
//! here so that an embedder needs only this crate.
//!
//! # Layout
//! - [`handler`]: the routes and what every request goes through first.
//! - `state`: the handler's shared state and the one place uploads change:
//!   capability checks, the completion point (the store's `finish_upload`)
//!   and the events.
//! - [`events`]: upload events, the request they came from, and the
//!   [`Hooks`] an embedder plugs in (events after, decisions before).
//! - `protocol`: one module per tus extension (core, creation, termination,
//!   concatenation, checksum, expiration, download).
//! - `headers`: the one parser for each tus header.
//! - `body`: the request body as a chunk stream that obeys the lock.
//! - `location`: upload URLs, proxy headers included.
//! - `rate_limit`: the opt-in per-client limit on upload creation.
//! - [`cors`]: tus-aware CORS for browsers on other origins (preflights
//!   answered with the tus headers exposed), applied by the router.
//! - [`error`]: every failure and its status code, in one place.
//! - `request_log`: what a request's one log line is built from.
//! - [`metrics`]: Prometheus counters.
//! - [`config`]: the handler's settings.
//!
//! This crate knows interfaces only: no concrete store, no locker, no etcd.

mod body;
pub mod config;
pub mod cors;
mod drain;
pub mod error;
pub mod events;
pub mod handler;
mod headers;
mod location;
pub mod metrics;
mod protocol;
mod rate_limit;
mod request_log;
mod state;

pub use config::Config;
pub use error::HandlerError;
pub use events::{
    EventKind, Hooks, Rejection, RequestInfo, ResponseChange, UploadEvent, UploadStopper,
};
pub use handler::TusHandler;
pub use metrics::Metrics;
pub use state::BuildError;
pub use tusd_core::*;

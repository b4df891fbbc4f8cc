//! The tusd-rs server as a library: everything the `tusd-rs` binary does
//! after parsing its flags and binding its port, so that tests and programs
//! embedding the whole server start it in-process the same way.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let config = tusd_rs::Config::from_args(["--upload-dir", "/srv/uploads"])?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:1080").await?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(tusd_rs::run(config, listener, async {
//!     let _ = stopped.await;
//! }));
//! // ... serve until it is time to stop:
//! let _ = stop.send(());
//! server.await??;
//! # Ok(())
//! # }
//! ```
//!
//! To put only the tus routes into an axum application of your own, use
//! `tusd-handler` with a store and a locker instead (see the README).
//!
//! # Layout
//! - `cli`: [`Config`], every flag with tusd's names and `TUSD_*`
//!   environment variables.
//! - `server`: [`run`]'s body: store, locker, handler, metrics and CORS put
//!   together; the shutdown sequence.
//! - `store`: the file store on the upload directory, or the S3 store (with
//!   the `s3` feature) when a bucket is given.
//! - `hooks`: the hooks the flags ask for (tusd-hooks: HTTP or file).
//! - `locker`: the memory locker, or the etcd locker (with the `etcd`
//!   feature) when etcd endpoints are given.
//! - `connections`: the accept loop: connection limit, header, idle and
//!   write timeouts, bounded read buffers, the connection metrics.
//! - `error`: [`Error`], why the server could not start.
//!
//! # Features
//! - `etcd` (on by default): the etcd locker. Without it the crate needs
//!   neither protoc nor etcd-client, and `--etcd-endpoints` is an error.
//! - `s3` (on by default): the S3 store. Without it the crate compiles no
//!   AWS SDK, and `--s3-bucket` is an error.

mod cli;
mod connections;
mod error;
mod hooks;
mod locker;
mod server;
mod store;

use std::future::Future;

pub use cli::{Config, LogFormat};
pub use error::Error;

/// The README's Rust examples, compiled (and run) by `cargo test --doc`:
/// this crate depends on every crate they use.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

/// Serves tus uploads on `listener` with `config` until `shutdown`
/// completes, then shuts down gracefully and returns.
///
/// Before serving, it opens the store (the upload directory, or the S3
/// bucket with `--s3-bucket`, checked), sets up the locker
/// (connecting to etcd if endpoints are given) and builds the handler; a
/// failure there is returned at once and nothing is served. The listener
/// is already bound, so clients that connect meanwhile wait in its backlog
/// rather than being refused.
///
/// When `shutdown` completes: no new connections are accepted; requests in
/// flight get `config.shutdown_timeout` to finish, then request bodies
/// still streaming are told to stop (each keeps what it stored and answers
/// with its offset); finally the locker releases every lock (the etcd
/// locker revokes its lease). `Ok(())` then means a clean stop.
///
/// Process-wide effects, as for the binary: the open-file limit is raised
/// to its hard limit (connections are limited to fit it), and with glibc
/// freed memory is handed back to the system every
/// `config.memory_trim_interval`. Logging goes through `tracing`; install a
/// subscriber to see it (`config.log_format` is the binary's business).
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    server::run(config, listener, shutdown).await
}

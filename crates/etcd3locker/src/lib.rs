//! A tusd locker on an etcd v3 cluster: the Rust form of tusd's Go
//! `etcd3locker` package, compatible with it on the wire.
//!
//! Why: tus uploads are resumed by retries that a load balancer may send to
//! any tusd process. Every process serving the same store must agree on who
//! writes an upload, so the lock lives in etcd, not in a process.
//!
//! # Use
//!
//! A locker takes a connected etcd client. The most basic locker (a cluster
//! of its own, default TTL and prefix):
//!
//! ```no_run
//! # async fn example() -> Result<(), etcd3locker::Error> {
//! use etcd3locker::{connect, ConnectOptions, Etcd3Locker};
//! use tusd_core::StoreComposer;
//!
//! let client = connect(&ConnectOptions::new(vec!["http://127.0.0.1:2379".into()])).await?;
//! let locker = Etcd3Locker::new(client);
//!
//! let mut composer = StoreComposer::new();
//! locker.use_in(&mut composer);
//! # Ok(()) }
//! ```
//!
//! For a cluster shared with other deployments, a prefix of its own:
//!
//! ```no_run
//! # fn example(client: etcd_client::Client) {
//! let locker = etcd3locker::Etcd3Locker::with_prefix(client, "my-prefix");
//! # }
//! ```
//!
//! For full control, [`LockerOptions`] (TTL in seconds, prefix):
//!
//! ```no_run
//! # fn example(client: etcd_client::Client) {
//! use etcd3locker::{Etcd3Locker, LockerOptions};
//! let locker = Etcd3Locker::with_options(client, LockerOptions::new(15, "my-prefix"));
//! # }
//! ```
//!
//! The seed's pair, outside a tus server:
//!
//! ```no_run
//! # async fn example(locker: etcd3locker::Etcd3Locker) -> Result<(), etcd3locker::Error> {
//! locker.lock_upload("f81d4fae7dec11d0a76500a0c91e6bf6").await?; // waits up to 5 s
//! locker.unlock_upload("f81d4fae7dec11d0a76500a0c91e6bf6").await?;
//! # Ok(()) }
//! ```
//!
//! # How it works
//!
//! - Keys follow etcd's Go `concurrency.Mutex` (`{prefix}{id}/{lease
//!   hex}`, lowest create revision owns), so Go tusd nodes and `etcdctl lock
//!   {prefix}{id}` take the same locks. As in the Go locker, nothing separates
//!   prefix and id: upload `abc` under `/tusd` is the lock `/tusdabc`. An
//!   uncontended lock and unlock cost two raft writes: the Txn that creates
//!   the key and a plain delete. A delete that etcd did not answer may be
//!   applied late, so it retires the key's name: later locks of that upload
//!   write `{prefix}{id}/{n}/{lease hex}`, which the late delete cannot touch.
//! - One lease per locker, kept alive by one task over a stream per
//!   endpoint (clients from [`connect()`]), so that one hung member cannot
//!   stall every keep-alive; the locker trusts it only up to two thirds of
//!   the TTL after the last acknowledged keep-alive was sent, and tells
//!   every holder its lock is lost before etcd could expire the lease. A
//!   lost lease is revoked as soon as etcd answers again.
//! - Callers in one process queue locally per id, so a process holds at most
//!   one key per id.
//! - A holder is asked to release when anyone queues behind it: a local
//!   caller directly, any other contender through its key.
//! - The fencing token of a lock is its key's create revision, issued as
//!   `etcd:{cluster id in hex}{prefix}`: revisions of one cluster are
//!   comparable, another cluster's are not.
//!
//! # Layout
//!
//! One concept per file, in reading order, as in etcd's Go `concurrency`
//! package (`session.go`, `mutex.go`, `key.go`):
//!
//! - `locker`: [`Etcd3Locker`], the API of tusd's Go etcd3locker and the
//!   handler's `Locker`: one lock from queue to release.
//! - `session`: the locker's one lease (a `Session`), granted on first use,
//!   replaced when lost, revoked at shutdown; the guard a held lock keeps to
//!   hear of the lease's loss.
//! - `keepalive`: the keep-alive task of a lease, one stream per endpoint,
//!   and the local deadline after which the lease counts as lost.
//! - `mutex`: the `concurrency.Mutex` key protocol: the key's name, the
//!   Txns, the owner rule, unlock and clean-up.
//! - `key`: waiting for the keys before one's own to be deleted.
//! - `release_request`: the watch that tells a holder someone waits behind
//!   it, started for locks held longer than 50 ms; dropped with the lock.
//! - `queue`: local queueing per id; a caller's place is a `Turn` guard.
//! - `call`: one etcd request under a deadline, retried while unavailable,
//!   and the one place that classifies etcd errors, by gRPC code.
//! - [`options`] holds [`LockerOptions`] and the defaults; [`connect`](mod@connect)
//!   holds [`ConnectOptions`] and [`connect()`], a client with a clear error
//!   when etcd is unreachable; [`error`] holds [`Error`].

#![warn(missing_docs)]

mod call;
pub mod connect;
pub mod error;
mod keepalive;
mod key;
mod locker;
mod mutex;
pub mod options;
mod queue;
mod release_request;
mod session;

pub use connect::{connect, ConnectOptions};
pub use error::Error;
pub use locker::Etcd3Locker;
pub use options::{LockerOptions, DEFAULT_PREFIX, DEFAULT_TTL, GRANT_TIMEOUT};

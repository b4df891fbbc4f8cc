//! Real services for tests and benchmarks on loopback: child processes, and
//! tusd-rs inside the test's own process; and the conformance suites.
//!
//! # Layout
//! - [`etcd`]: [`EtcdServer`] (one node) and [`EtcdCluster`] (several), with
//!   members that can be stopped, paused, resumed and restarted, and
//!   [`etcdctl`] for driving the command-line client against them.
//! - [`garage`]: [`GarageServer`], a real single-node Garage (S3) with a
//!   bucket and an access key, for the S3 store's tests, and
//!   [`GarageCluster`], several nodes replicating each other.
//! - [`nginx`]: [`Nginx`], a real nginx in front of tusd-rs nodes, with the
//!   configuration docs/cluster.md recommends.
//! - [`ports`]: free loopback ports.
//! - [`store_conformance`]: [`check_store`], the suite every data store runs
//!   (every contract of `DataStore` and of each capability it registers).
//! - [`locker_conformance`]: [`check_locker`], the suite every locker runs
//!   over a [`LockSpace`] of several instances (exclusion, deadlines,
//!   release requests, loss, fencing tokens, shutdown).
//! - `conformance`: the [`Report`] both suites return.
//! - [`tus_server`]: [`TusServer`], a real `tusd-rs` process on loopback,
//!   for tests that stop, freeze or kill it.
//! - [`in_process`]: [`InProcessServer`], `tusd-rs` served by
//!   [`tusd_rs::run`] in the test's own runtime, for every other test.
//! - [`server`]: [`Server`], what test helpers need of either.
//! - [`test_store`]: which store those servers use: the file store, or the
//!   S3 store on a shared Garage with `TUSD_TEST_STORE=s3`.
//!
//! The `etcd` feature (on by default) brings the [`etcd`] module; without
//! it this crate needs neither protoc nor etcd-client.
//!
//! Binaries are found through `ETCD_BIN` / `ETCDCTL_BIN`, then `PATH`
//! (`scripts/install-etcd.sh` installs etcd 3.4 and 3.5), and `NGINX_BIN`,
//! then `/usr/sbin/nginx` (`scripts/install-nginx.sh`), and `GARAGE_BIN`,
//! then `.tools/garage.env`, then `PATH` (`scripts/install-garage.sh`).
//! Every process is killed, and every in-process server stopped, when its
//! handle drops, and its data lives in a temporary directory removed with
//! it, so a failing test leaves nothing running.

mod conformance;
#[cfg(feature = "etcd")]
pub mod etcd;
mod freeze;
pub mod garage;
pub mod in_process;
pub mod locker_conformance;
pub mod nginx;
pub mod ports;
pub mod server;
pub mod store_conformance;
pub mod test_store;
pub mod tus_server;

pub use conformance::{Outcome, Report};
#[cfg(feature = "etcd")]
pub use etcd::{
    etcd_bin, etcd_version, etcdctl, etcdctl_bin, etcdctl_lock, EtcdCluster, EtcdMember, EtcdServer,
};
pub use garage::{garage_bin, GarageCluster, GarageServer};
pub use in_process::InProcessServer;
pub use locker_conformance::{check_locker, clones_of, LockSpace};
pub use nginx::Nginx;
pub use server::Server;
pub use store_conformance::{check_store, StoreClaims};
pub use test_store::{s3_place_for, S3Place, TestStore};
pub use tus_server::TusServer;

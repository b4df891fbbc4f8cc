//! Real services for tests and benchmarks, started as child processes on
//! loopback.
//!
//! # Layout
//! - [`etcd`]: [`EtcdServer`] (one node) and [`EtcdCluster`] (several), with
//!   members that can be stopped, paused, resumed and restarted, and
//!   [`etcdctl`] for driving the command-line client against them.
//! - [`nginx`]: [`Nginx`], a real nginx in front of tusd-rs nodes, with the
//!   configuration docs/cluster.md recommends.
//! - [`ports`]: free loopback ports.
//! - [`tus_server`]: [`TusServer`], a real `tusd-rs` process on loopback.
//!
//! Binaries are found through `ETCD_BIN` / `ETCDCTL_BIN`, then `PATH`
//! (`scripts/install-etcd.sh` installs etcd 3.4 and 3.5), and `NGINX_BIN`,
//! then `/usr/sbin/nginx` (`scripts/install-nginx.sh`). Every process is
//! killed when its handle drops, and its data lives in a temporary directory
//! removed with it, so a failing test leaves nothing running.

pub mod etcd;
pub mod nginx;
pub mod ports;
pub mod tus_server;

pub use etcd::{
    etcd_bin, etcd_version, etcdctl, etcdctl_bin, etcdctl_lock, EtcdCluster, EtcdMember, EtcdServer,
};
pub use nginx::Nginx;
pub use tus_server::TusServer;

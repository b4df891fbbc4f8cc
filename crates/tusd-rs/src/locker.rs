//! Choosing the locker: the memory locker for one process, the etcd locker
//! as soon as etcd endpoints are given.

use std::sync::Arc;

use tusd_handler::{Locker, StoreComposer};
use tusd_memorylocker::MemoryLocker;

use crate::cli::Cli;

/// Puts the locker the flags ask for into `composer` and returns it, so the
/// server can release every lock at shutdown.
pub async fn install(cli: &Cli, composer: &mut StoreComposer) -> Result<Arc<dyn Locker>, String> {
    if cli.etcd_endpoints.is_empty() {
        MemoryLocker::new().use_in(composer);
        tracing::info!("using the memory locker (one process only)");
    } else {
        return Err("the etcd locker is not wired yet".into());
    }
    Ok(composer.locker().expect("just installed").clone())
}

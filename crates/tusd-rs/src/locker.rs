//! Choosing the locker: the memory locker for one process, the etcd locker
//! as soon as etcd endpoints are given (only with the `etcd` feature).

use std::sync::Arc;

use tusd_handler::{Locker, StoreComposer};
use tusd_memorylocker::MemoryLocker;

use crate::cli::Config;
use crate::error::Error;

/// Puts the locker the flags ask for into `composer` and returns it, so the
/// server can release every lock at shutdown. An unreachable etcd is an
/// error naming the endpoints, after `--etcd-connect-timeout` at most.
pub async fn install(cli: &Config, composer: &mut StoreComposer) -> Result<Arc<dyn Locker>, Error> {
    if cli.etcd_endpoints.is_empty() {
        MemoryLocker::new().use_in(composer);
        tracing::info!("using the memory locker (one process only)");
    } else {
        install_etcd(cli, composer).await?;
    }
    Ok(composer.locker().expect("just installed").clone())
}

#[cfg(feature = "etcd")]
async fn install_etcd(cli: &Config, composer: &mut StoreComposer) -> Result<(), Error> {
    use etcd3locker::{ConnectOptions, Etcd3Locker, LockerOptions};

    let options = ConnectOptions {
        endpoints: cli.etcd_endpoints.clone(),
        username: cli.etcd_username.clone(),
        password: cli.etcd_password.clone(),
        ca_file: cli.etcd_ca_file.clone(),
        cert_file: cli.etcd_cert_file.clone(),
        key_file: cli.etcd_key_file.clone(),
        connect_timeout: cli.etcd_connect_timeout,
    };
    let client = etcd3locker::connect(&options)
        .await
        .map_err(|e| Error::Locker(e.to_string()))?;
    let locker =
        Etcd3Locker::with_options(client, LockerOptions::new(cli.etcd_ttl, &cli.etcd_prefix));
    locker.use_in(composer);
    tracing::info!(
        endpoints = %cli.etcd_endpoints.join(","),
        prefix = %locker.options().prefix(),
        ttl_seconds = locker.options().ttl(),
        "using the etcd locker"
    );
    Ok(())
}

#[cfg(not(feature = "etcd"))]
async fn install_etcd(_: &Config, _: &mut StoreComposer) -> Result<(), Error> {
    Err(Error::Locker(
        "--etcd-endpoints given, but this tusd-rs was built without the etcd locker (build it with the `etcd` feature, which is on by default)".to_owned(),
    ))
}

//! [`crate::run`]'s body: store, locker, handler, metrics and CORS put
//! together, the listener served, and the shutdown sequence.
//!
//! Connections are accepted and served by `connections` (our own accept loop
//! on hyper, with the connection limits), not by `axum::serve`.
//!
//! Shutdown, once the caller's shutdown future completes (the binary's: on
//! SIGTERM or SIGINT): stop accepting connections (idle ones are closed);
//! let requests in flight finish for up to `--shutdown-timeout`; then tell
//! the bodies still streaming to stop (each stores what it received,
//! answers with its offset and unlocks) and give them a short grace to do
//! so, after which connections still open are dropped; finally release
//! every lock the locker still holds (for etcd: revoke the lease).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::task::AbortOnDropHandle;
use tusd_handler::cors::{CorsConfig, CorsError};
use tusd_handler::{BuildError, StoreComposer, TusHandler};

use crate::cli::Config;
use crate::connections::{self, Settings, Timeouts};
use crate::error::Error;
use crate::locker;
use crate::store;

/// How long bodies cut short at the shutdown deadline get to answer.
const STOP_GRACE: Duration = Duration::from_secs(3);

pub async fn run(
    cli: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let config = handler_config(&cli);
    let settings = connection_settings(&cli);
    let mut composer = StoreComposer::new();
    let store = store::install(&cli, &mut composer).await?;
    let locker = locker::install(&cli, &mut composer).await?;

    if cli.fault_ignore_lock_signals {
        tracing::warn!("FAULT INJECTION: request bodies ignore lock loss and release requests; only the store's fence protects uploads");
    }
    let hooks = crate::hooks::from_config(&cli)?;
    let built = match &hooks {
        Some(hooks) => TusHandler::with_hooks(&composer, config, hooks.clone()),
        None => TusHandler::new(&composer, config),
    };
    let handler = built.map_err(|e| match e {
        BuildError::Cors(e) => cors_error(e),
        other => Error::Config(other.to_string()),
    })?;

    let mut app = handler.router();
    let connection_metrics = connections::Metrics::default();
    if cli.expose_metrics {
        app = app.merge(metrics_route(
            &cli.metrics_path,
            &handler,
            &connection_metrics,
            hooks.as_ref().map(|h| h.metrics()),
        ));
    }

    let addr = listener.local_addr().map_err(Error::Listener)?;
    tracing::info!(
        "listening on http://{addr}{} ({store})",
        handler.config().base_path,
    );
    // If this future is dropped before its end (an embedder aborting it),
    // what it started ends with it: the tasks below are aborted, the accept
    // loop and every connection are stopped at once (no graceful shutdown,
    // locks are not released explicitly).
    let sweeper =
        AbortOnDropHandle::new(handler.spawn_expiration_sweeper(cli.expire_sweep_interval));
    let trimmer = spawn_memory_trim(cli.memory_trim_interval).map(AbortOnDropHandle::new);

    let shared = connections::Shared::new(
        app,
        &settings,
        handler.metrics().connections_open().clone(),
        connection_metrics,
    );
    let _stop_on_drop = (
        shared.stop.clone().drop_guard(),
        shared.force.clone().drop_guard(),
    );
    let accepting = connections::spawn(listener, shared.clone());

    shutdown.await;
    tracing::info!("shutting down: no new connections, waiting for requests in flight");
    shared.stop.cancel();
    let _ = accepting.await;
    if tokio::time::timeout(cli.shutdown_timeout, shared.tracker.all_closed())
        .await
        .is_err()
    {
        tracing::warn!("shutdown timeout reached: stopping request bodies still in flight");
        handler.begin_shutdown();
        if tokio::time::timeout(STOP_GRACE, shared.tracker.all_closed())
            .await
            .is_err()
        {
            tracing::warn!("requests still open after the grace period; closing them");
            shared.force.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(1), shared.tracker.all_closed()).await;
        }
    }
    handler.begin_shutdown();
    drop((sweeper, trimmer));
    locker.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Hands memory freed after bursts back to the system every `interval`.
///
/// After a burst of uploads glibc keeps the freed read buffers and chunks in
/// its arenas, as long as live buffers sit between them: measured, that was
/// a third or more of the resident memory per upload in flight
/// (docs/benchmarks.md, "Memory per in-flight upload"). `malloc_trim`
/// returns those pages. Only with glibc; elsewhere nothing is started.
fn spawn_memory_trim(interval: Duration) -> Option<tokio::task::JoinHandle<()>> {
    if interval.is_zero() || !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let started = std::time::Instant::now();
            let released = tokio::task::spawn_blocking(trim).await.unwrap_or(false);
            tracing::debug!(released, took = ?started.elapsed(), "malloc_trim");
        }
    }))
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() -> bool {
    // SAFETY: malloc_trim has no preconditions; it only returns free memory.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}

/// The handler's settings from the flags.
fn handler_config(cli: &Config) -> tusd_handler::Config {
    tusd_handler::Config {
        base_path: cli.base_path.clone(),
        max_size: cli.max_size,
        behind_proxy: cli.behind_proxy,
        disable_download: cli.disable_download,
        disable_termination: cli.disable_termination,
        acquire_lock_timeout: cli.acquire_lock_timeout,
        network_timeout: cli.network_timeout,
        expire_after: (!cli.expire_after.is_zero()).then_some(cli.expire_after),
        fault_ignore_lock_signals: cli.fault_ignore_lock_signals,
        max_concat_partials: cli.max_concat_partials,
        creations_per_minute: cli.creations_per_minute,
        progress_interval: cli.progress_hooks_interval,
        cors: (!cli.disable_cors).then(|| CorsConfig {
            allow_origin: cli.cors_allow_origin.clone(),
            allow_credentials: cli.cors_allow_credentials,
            allow_methods: cli.cors_allow_methods.clone(),
            allow_headers: cli.cors_allow_headers.clone(),
            max_age: cli.cors_max_age,
            expose_headers: cli.cors_expose_headers.clone(),
        }),
    }
}

/// A CORS setting the policy refuses, told by its flag's name.
fn cors_error(e: CorsError) -> Error {
    Error::Config(match e {
        CorsError::AllowOrigin(e) => {
            format!("--cors-allow-origin is not a valid regular expression: {e}")
        }
        CorsError::NotAHeaderValue { field } => format!(
            "--cors-{} contains characters not allowed in a header",
            field.replace('_', "-")
        ),
    })
}

/// The connection limits from the flags; the connection limit is lowered to
/// what the open-file limit allows (raised to its hard limit first).
fn connection_settings(cli: &Config) -> Settings {
    let off_if_zero = |d: Duration| (!d.is_zero()).then_some(d);
    let fd_limit = connections::raise_fd_limit();
    let fits = connections::connections_for(fd_limit);
    let max_connections = match cli.max_connections {
        None => connections::DEFAULT_MAX_CONNECTIONS.min(fits),
        Some(wanted) if wanted > fits => {
            tracing::warn!(
                "--max-connections {wanted} lowered to {fits}: the open-file limit is {fd_limit} (raise it with ulimit -n or LimitNOFILE=)"
            );
            fits
        }
        Some(wanted) => wanted,
    };
    let settings = Settings {
        timeouts: Timeouts {
            header: off_if_zero(cli.header_timeout),
            idle: off_if_zero(cli.idle_timeout),
            write: off_if_zero(cli.network_timeout),
        },
        max_connections,
        max_header_size: cli.max_header_size,
        max_read_buffer: cli.max_read_buffer,
        h2c: cli.enable_h2c,
    };
    tracing::info!(
        max_connections,
        open_file_limit = fd_limit,
        header_timeout = ?settings.timeouts.header,
        idle_timeout = ?settings.timeouts.idle,
        max_header_size = settings.max_header_size,
        max_read_buffer = settings.max_read_buffer,
        h2c = settings.h2c,
        "connection limits"
    );
    settings
}

fn metrics_route(
    path: &str,
    handler: &TusHandler,
    connections: &connections::Metrics,
    hooks: Option<&tusd_hooks::HookMetrics>,
) -> Router {
    let mut registry = Registry::default();
    handler.metrics().register(&mut registry);
    connections.register(&mut registry);
    if let Some(hooks) = hooks {
        hooks.register(&mut registry);
    }
    let registry = Arc::new(registry);
    Router::new().route(
        path,
        get(move || {
            let registry = registry.clone();
            async move {
                let mut text = String::new();
                match prometheus_client::encoding::text::encode(&mut text, &registry) {
                    Ok(()) => (
                        [(
                            CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        text,
                    )
                        .into_response(),
                    Err(_) => (
                        [(CONTENT_TYPE, "text/plain")],
                        "metrics encoding failed\n".to_owned(),
                    )
                        .into_response(),
                }
            }
        }),
    )
}

//! The hooks the flags ask for: file hooks (`--hooks-dir`), HTTP hooks
//! (`--hooks-http`) or gRPC hooks (`--hooks-grpc`), the first of these
//! given (tusd's order), calling only the events of
//! `--hooks-enabled-events`. See docs/hooks.md.

use std::sync::Arc;

use tusd_hooks::http::HttpHookOptions;
use tusd_hooks::{FileHook, HookHandler, HookType, HttpHook, TusdHooks};

use crate::cli::Config;
use crate::error::Error;

/// The hooks to build the handler with (and whose metrics to serve), or
/// `None` without hook flags.
pub fn from_config(cli: &Config) -> Result<Option<Arc<TusdHooks>>, Error> {
    let enabled = HookType::parse_list(&cli.hooks_enabled_events).map_err(Error::Config)?;
    let backend: Arc<dyn HookHandler> = if let Some(dir) = &cli.hooks_dir {
        tracing::info!(dir = %dir.display(), "file hooks enabled");
        Arc::new(FileHook::new(dir))
    } else if let Some(endpoint) = &cli.hooks_http {
        let options = HttpHookOptions {
            endpoint: endpoint.clone(),
            retries: cli.hooks_http_retry,
            backoff: cli.hooks_http_backoff,
            forward_headers: cli
                .hooks_http_forward_headers
                .iter()
                .filter(|h| !h.is_empty())
                .cloned()
                .collect(),
            timeout: cli.hooks_http_timeout,
            size_limit: cli.hooks_http_size_limit,
            skip_verify: cli.hooks_http_skip_verify,
        };
        tracing::info!(%endpoint, "HTTP hooks enabled");
        Arc::new(HttpHook::new(options).map_err(|e| Error::Config(format!("--hooks-http: {e}")))?)
    } else if let Some(endpoint) = &cli.hooks_grpc {
        tracing::info!(%endpoint, "gRPC hooks enabled");
        grpc(cli, endpoint)?
    } else {
        return Ok(None);
    };
    let names: Vec<_> = enabled.iter().map(|t| t.name()).collect();
    tracing::info!(events = %names.join(","), "hook events enabled");
    Ok(Some(Arc::new(TusdHooks::new(backend, enabled))))
}

#[cfg(feature = "grpc-hooks")]
fn grpc(cli: &Config, endpoint: &str) -> Result<Arc<dyn HookHandler>, Error> {
    use tusd_hooks::grpc::{GrpcHook, GrpcHookOptions, GrpcTls};
    let tls = match (cli.hooks_grpc_secure, &cli.hooks_grpc_server_tls_certificate) {
        (true, Some(server_certificate)) => Some(GrpcTls {
            server_certificate: server_certificate.clone(),
            client_certificate: cli.hooks_grpc_client_tls_certificate.clone(),
            client_key: cli.hooks_grpc_client_tls_key.clone(),
        }),
        (true, None) => {
            return Err(Error::Config(
                "--hooks-grpc-secure needs --hooks-grpc-server-tls-certificate (the hook server's certificate or its CA), as in tusd".into(),
            ))
        }
        (false, _) => {
            // tusd ignores them too; a command line written for tusd keeps
            // working, but the operator should know the channel is plaintext.
            if cli.hooks_grpc_server_tls_certificate.is_some()
                || cli.hooks_grpc_client_tls_certificate.is_some()
            {
                tracing::warn!("gRPC hook TLS certificates are ignored without --hooks-grpc-secure: the channel is plaintext");
            }
            None
        }
    };
    let options = GrpcHookOptions {
        endpoint: endpoint.to_owned(),
        retries: cli.hooks_grpc_retry,
        backoff: cli.hooks_grpc_backoff,
        forward_headers: cli
            .hooks_grpc_forward_headers
            .iter()
            .filter(|h| !h.is_empty())
            .cloned()
            .collect(),
        tls,
    };
    Ok(Arc::new(GrpcHook::new(options).map_err(|e| {
        Error::Config(format!("--hooks-grpc: {e}"))
    })?))
}

#[cfg(not(feature = "grpc-hooks"))]
fn grpc(_: &Config, _: &str) -> Result<Arc<dyn HookHandler>, Error> {
    Err(Error::Config(
        "--hooks-grpc needs tusd-rs built with the grpc-hooks feature".into(),
    ))
}

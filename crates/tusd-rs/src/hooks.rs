//! The hooks the flags ask for: file hooks (`--hooks-dir`) or HTTP hooks
//! (`--hooks-http`), chosen in tusd's order when both are given, calling
//! only the events of `--hooks-enabled-events`. See docs/hooks.md.

use std::sync::Arc;

use tusd_handler::Hooks;
use tusd_hooks::http::HttpHookOptions;
use tusd_hooks::{FileHook, HookHandler, HookType, HttpHook, TusdHooks};

use crate::cli::Config;
use crate::error::Error;

/// The hooks to build the handler with, or `None` without hook flags.
pub fn from_config(cli: &Config) -> Result<Option<Arc<dyn Hooks>>, Error> {
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
        };
        tracing::info!(%endpoint, "HTTP hooks enabled");
        Arc::new(HttpHook::new(options).map_err(|e| Error::Config(format!("--hooks-http: {e}")))?)
    } else {
        return Ok(None);
    };
    let names: Vec<_> = enabled.iter().map(|t| t.name()).collect();
    tracing::info!(events = %names.join(","), "hook events enabled");
    Ok(Some(Arc::new(TusdHooks::new(backend, enabled))))
}

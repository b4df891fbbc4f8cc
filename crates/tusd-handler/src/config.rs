//! What a handler is told at construction; every field has a safe default.

use std::time::Duration;

use crate::cors::CorsConfig;

/// Settings of one [`crate::TusHandler`].
#[derive(Clone, Debug)]
pub struct Config {
    /// URL path the uploads live under; always starts and ends with `/`.
    pub base_path: String,
    /// Largest upload accepted, in bytes; 0 means no limit.
    pub max_size: u64,
    /// Trust `X-Forwarded-Host`, `X-Forwarded-Proto` and `Forwarded` when
    /// building `Location` URLs.
    pub behind_proxy: bool,
    /// Refuse GET on uploads.
    pub disable_download: bool,
    /// Refuse DELETE on uploads.
    pub disable_termination: bool,
    /// How long a request waits for an upload's lock before answering 423.
    pub acquire_lock_timeout: Duration,
    /// A request body that delivers no byte for this long is ended; what it
    /// delivered stays stored.
    pub network_timeout: Duration,
    /// Unfinished uploads untouched for this long expire (410, then removed).
    /// `None` disables the expiration extension.
    pub expire_after: Option<Duration>,
    /// Fault injection, never for production: request bodies ignore their
    /// lock's release requests and loss, as a process would that woke from
    /// a pause before either signal reached it. What is left to stop a
    /// stale holder is the store's fence, which is what this exists to test.
    pub fault_ignore_lock_signals: bool,
    /// The most partial uploads one final upload may name. Each is copied
    /// into the final, so this bounds the disk work one request can cause.
    pub max_concat_partials: usize,
    /// Uploads one client address may create per minute; 0 means no limit.
    pub creations_per_minute: u32,
    /// CORS for browser clients on other origins, applied by
    /// [`crate::TusHandler::router`]; `None` sends no CORS headers.
    pub cors: Option<CorsConfig>,
    /// While a body flows, how often a progress event reports its offset
    /// (only when it moved; tusd's `--progress-hooks-interval`). Progress
    /// is timed only for a handler with hooks.
    pub progress_interval: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            base_path: "/files/".to_owned(),
            max_size: 0,
            behind_proxy: false,
            disable_download: false,
            disable_termination: false,
            acquire_lock_timeout: Duration::from_secs(20),
            network_timeout: Duration::from_secs(60),
            expire_after: None,
            fault_ignore_lock_signals: false,
            max_concat_partials: 1000,
            creations_per_minute: 0,
            cors: Some(CorsConfig::default()),
            progress_interval: Duration::from_secs(1),
        }
    }
}

/// Puts `path` in the `/segment/` form the router matches against.
pub fn normalize_base_path(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        format!("/{trimmed}/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_paths_are_slash_wrapped() {
        assert_eq!(normalize_base_path("files"), "/files/");
        assert_eq!(normalize_base_path("/files"), "/files/");
        assert_eq!(normalize_base_path("/a/b/"), "/a/b/");
        assert_eq!(normalize_base_path(""), "/");
        assert_eq!(normalize_base_path("/"), "/");
    }
}

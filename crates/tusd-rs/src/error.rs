//! Why the server could not start; the one error type of this crate.

/// Why [`crate::run`] could not start serving. Each message is one line
/// that names the setting at fault, fit for an operator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The upload directory cannot be created or used.
    #[error("cannot use upload directory {path}: {source}")]
    UploadDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The S3 store cannot use its bucket (endpoint unreachable,
    /// credentials refused, no such bucket), or S3 was asked for in a build
    /// without the `s3` feature.
    #[error("{0}")]
    Store(String),
    /// The locker cannot be set up: etcd unreachable, unreadable TLS files,
    /// or etcd asked for in a build without the `etcd` feature.
    #[error("{0}")]
    Locker(String),
    /// A setting the handler or the CORS policy refuses; the message names
    /// the flag.
    #[error("{0}")]
    Config(String),
    /// The listener given to [`crate::run`] cannot tell its address.
    #[error("the listener has no local address: {0}")]
    Listener(#[source] std::io::Error),
}

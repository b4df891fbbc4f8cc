//! What a test needs to know of a running tusd-rs, wherever it runs.

use std::path::Path;

/// A tusd-rs serving on 127.0.0.1: a [`crate::TusServer`] process or an
/// [`crate::InProcessServer`], so that test helpers take either.
pub trait Server {
    /// The loopback port it listens on.
    fn port(&self) -> u16;

    /// The creation URL, e.g. `http://127.0.0.1:PORT/files/`.
    fn files_url(&self) -> String;

    /// The directory of its file store.
    fn upload_dir(&self) -> &Path;

    /// `http://127.0.0.1:PORT`
    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }
}

//! A `tusd-rs` server running inside the test's own process, through
//! [`tusd_rs::run`]: no binary to build or find, no log to read for the
//! port, and a panic in the server shows up in the test.
//!
//! Tests that must stop, freeze or kill a server process (SIGSTOP, kill -9)
//! use [`crate::TusServer`] instead.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::server::Server;

/// A `tusd-rs` served by a task of the current Tokio runtime on a free
/// loopback port. Dropping it stops the server at once (its task is
/// aborted); [`InProcessServer::shutdown`] stops it gracefully.
pub struct InProcessServer {
    port: u16,
    base_path: String,
    upload_dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), tusd_rs::Error>>>,
    _tmp: Option<tempfile::TempDir>,
}

impl InProcessServer {
    /// Serves `config` on 127.0.0.1 at a port the kernel picks
    /// (`config.host` and `config.port` are not used). The port accepts
    /// connections when this returns; requests wait until the server has
    /// set itself up, and get no answer if that fails (the failure is then
    /// what [`InProcessServer::shutdown`] returns).
    pub async fn start(config: tusd_rs::Config) -> InProcessServer {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("binding a loopback port");
        let port = listener.local_addr().expect("bound").port();
        let (stop, stopped) = oneshot::channel::<()>();
        let base_path = tusd_handler::config::normalize_base_path(&config.base_path);
        let upload_dir = config.upload_dir.clone();
        let task = tokio::spawn(tusd_rs::run(config, listener, async {
            let _ = stopped.await;
        }));
        InProcessServer {
            port,
            base_path,
            upload_dir,
            stop: Some(stop),
            task: Some(task),
            _tmp: None,
        }
    }

    /// Like [`crate::TusServer::start`]: a fresh temporary upload directory,
    /// then `args` as on the command line. Panics if `args` do not parse.
    pub async fn with_args(args: &[&str]) -> InProcessServer {
        let tmp = tempfile::tempdir().expect("temporary upload directory");
        let dir = tmp.path().join("uploads");
        let mut server = InProcessServer::with_args_in(&dir, args).await;
        server._tmp = Some(tmp);
        server
    }

    /// Serves `upload_dir`, which other servers may share, with `args`
    /// (which must not name `--upload-dir` again). With
    /// `TUSD_TEST_STORE=s3` and no `--s3-bucket` in `args`, on the S3 store
    /// instead (see [`crate::test_store`]).
    pub async fn with_args_in(upload_dir: &Path, args: &[&str]) -> InProcessServer {
        let mut all = vec![OsStr::new("--upload-dir"), upload_dir.as_os_str()];
        all.extend(args.iter().map(OsStr::new));
        let mut config = tusd_rs::Config::from_args(all)
            .unwrap_or_else(|e| panic!("tusd-rs arguments {args:?}: {e}"));
        if config.s3_bucket.is_none() {
            let dir = upload_dir.to_owned();
            let place = tokio::task::spawn_blocking(move || crate::test_store::s3_place_for(&dir))
                .await
                .expect("starting the shared Garage panicked");
            if let Some(place) = place {
                config.s3_bucket = Some(place.bucket);
                config.s3_endpoint = Some(place.endpoint);
                config.s3_object_prefix = place.prefix;
            }
        }
        InProcessServer::start(config).await
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The creation URL, e.g. `http://127.0.0.1:PORT/files/`.
    pub fn files_url(&self) -> String {
        format!("{}{}", self.origin(), self.base_path)
    }

    pub fn upload_dir(&self) -> &Path {
        &self.upload_dir
    }

    /// Shuts the server down as SIGTERM does the binary and returns what
    /// [`tusd_rs::run`] returned (a start-up failure included). Panics if
    /// the server panicked.
    pub async fn shutdown(mut self) -> Result<(), tusd_rs::Error> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("shut down once");
        match task.await {
            Ok(result) => result,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

impl Drop for InProcessServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Server for InProcessServer {
    fn port(&self) -> u16 {
        self.port
    }

    fn files_url(&self) -> String {
        InProcessServer::files_url(self)
    }

    fn upload_dir(&self) -> &Path {
        &self.upload_dir
    }
}

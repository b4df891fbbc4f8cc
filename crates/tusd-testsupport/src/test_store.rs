//! Which store the HTTP tests run on: the file store, or with
//! `TUSD_TEST_STORE=s3` the S3 store on a real Garage, so the protocol
//! suite written against the file store runs again, unchanged, on S3.
//!
//! In S3 mode every server [`crate::InProcessServer`] or
//! [`crate::TusServer`] starts gets `--s3-bucket`, `--s3-endpoint` and an
//! `--s3-object-prefix` derived from its upload directory: servers that
//! share an upload directory share a prefix (they share the store, as they
//! would share the directory), and every other server sees only its own
//! uploads, so listing and expiration tests do not see each other's.
//!
//! One Garage serves a whole test binary: started on first use (a few
//! seconds), killed and its directory removed when the process exits
//! (`atexit`; the test harness exits through `exit`). The credentials are
//! the fixed ones the Garage is set up with; they are put into the AWS
//! environment variables of this process once, at that start (an
//! in-process server reads them there, as the binary does), and given to
//! every `tusd-rs` child process.

use std::path::Path;
use std::sync::Mutex;

use crate::garage::{GarageServer, GARAGE_ACCESS_KEY_ID, GARAGE_REGION, GARAGE_SECRET_ACCESS_KEY};

/// The environment variable that picks the store.
pub const TEST_STORE_VAR: &str = "TUSD_TEST_STORE";

/// The store the HTTP tests run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestStore {
    File,
    S3,
}

impl TestStore {
    /// From `TUSD_TEST_STORE` (`s3`, or `file`/unset); panics on anything
    /// else, so a typo does not silently test the file store.
    pub fn from_env() -> TestStore {
        match std::env::var(TEST_STORE_VAR).as_deref() {
            Err(_) | Ok("") | Ok("file") => TestStore::File,
            Ok("s3") => TestStore::S3,
            Ok(other) => panic!("{TEST_STORE_VAR}={other:?}: expected \"file\" or \"s3\""),
        }
    }

    pub fn is_s3(self) -> bool {
        self == TestStore::S3
    }
}

/// Where a server's uploads live in S3 mode.
#[derive(Clone, Debug)]
pub struct S3Place {
    pub endpoint: String,
    pub bucket: String,
    /// The object prefix, with its trailing `/`.
    pub prefix: String,
}

impl S3Place {
    /// The `tusd-rs` flags that put a server's uploads here.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--s3-bucket".into(),
            self.bucket.clone(),
            "--s3-endpoint".into(),
            self.endpoint.clone(),
            "--s3-object-prefix".into(),
            self.prefix.clone(),
        ]
    }
}

/// The AWS environment a `tusd-rs` process needs for the shared Garage.
pub const S3_ENV: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", GARAGE_ACCESS_KEY_ID),
    ("AWS_SECRET_ACCESS_KEY", GARAGE_SECRET_ACCESS_KEY),
    ("AWS_REGION", GARAGE_REGION),
];

/// In S3 mode, where the server of `upload_dir` keeps its uploads
/// (starting the shared Garage on first use); `None` for the file store.
/// Blocks while Garage starts.
pub fn s3_place_for(upload_dir: &Path) -> Option<S3Place> {
    if !TestStore::from_env().is_s3() {
        return None;
    }
    let endpoint = shared_garage_endpoint();
    let prefix: String = upload_dir
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    Some(S3Place {
        endpoint,
        bucket: crate::garage::GARAGE_BUCKET.to_owned(),
        prefix: format!("{}/", prefix.trim_matches('-')),
    })
}

/// Applies the S3 mode to a `tusd-rs` command serving `upload_dir` with
/// `args`, unless those already choose a bucket.
pub(crate) fn apply_to_command(
    command: &mut std::process::Command,
    upload_dir: &Path,
    args: &[&str],
) {
    if args.contains(&"--s3-bucket") {
        return;
    }
    if let Some(place) = s3_place_for(upload_dir) {
        command.args(place.args()).envs(S3_ENV);
    }
}

static SHARED: Mutex<Option<(GarageServer, String)>> = Mutex::new(None);

fn shared_garage_endpoint() -> String {
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, endpoint)) = shared.as_ref() {
        return endpoint.clone();
    }
    let garage = GarageServer::start_blocking();
    let endpoint = garage.endpoint();
    for (name, value) in S3_ENV {
        if std::env::var(name).ok().as_deref() != Some(value) {
            std::env::set_var(name, value);
        }
    }
    *shared = Some((garage, endpoint.clone()));
    // SAFETY: registers a plain function without arguments.
    unsafe {
        libc::atexit(stop_shared_garage);
    }
    eprintln!("{TEST_STORE_VAR}=s3: the HTTP tests of this binary run on the S3 store (Garage at {endpoint})");
    endpoint
}

extern "C" fn stop_shared_garage() {
    if let Ok(mut shared) = SHARED.try_lock() {
        drop(shared.take());
    }
}

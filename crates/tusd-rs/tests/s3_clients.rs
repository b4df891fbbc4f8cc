//! tus-js-client and tuspy uploading into S3 through tusd-rs with
//! `--s3-bucket`, on a real Garage: the bytes GET returns and the finished
//! object in the bucket are the client's file, byte for byte, including a
//! resume after the client was killed and a `parallelUploads`
//! concatenation (partials under 5 MiB: downloaded and sent again).
//!
//! The clients come from scripts/install-clients.sh, as for clients.rs;
//! Garage from scripts/install-garage.sh. Credentials reach the server
//! process through the standard AWS environment variables.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{source_file, BIN};
use serde_json::Value;
use tusd_s3store::{s3_client, S3ClientConfig};
use tusd_testsupport::{GarageServer, TusServer};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
const LINE_TIMEOUT: Duration = Duration::from_secs(120);

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients")
}

fn js(endpoint: &str, file: &Path, mode: &str, args: &[&str]) -> Command {
    let dir = clients_dir().join("js");
    let mut command = Command::new("node");
    command
        .current_dir(&dir)
        .arg(dir.join("upload.mjs"))
        .arg(endpoint)
        .arg(file)
        .arg(mode)
        .args(args);
    command
}

fn py(endpoint: &str, file: &Path, mode: &str, args: &[&str]) -> Command {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    let dir = clients_dir().join("python");
    let mut command = Command::new(python);
    command
        .current_dir(&dir)
        .arg("-u")
        .arg(dir.join("upload.py"))
        .arg(endpoint)
        .arg(file)
        .arg(mode)
        .args(args);
    command
}

/// Runs a client to its end, or kills it (SIGKILL) at the first event
/// `kill_when` accepts; returns its JSON events and whether it succeeded.
fn drive(mut command: Command, kill_when: Option<&dyn Fn(&Value) -> bool>) -> (bool, Vec<Value>) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {command:?}: {e} (run scripts/install-clients.sh)")
        });
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut events = Vec::new();
    loop {
        match rx.recv_timeout(LINE_TIMEOUT) {
            Ok(line) => {
                let event: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not a JSON event ({e}): {line}"));
                let kill = kill_when.is_some_and(|f| f(&event));
                events.push(event);
                if kill {
                    child.kill().expect("SIGKILL the client");
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!("{command:?} printed nothing for {LINE_TIMEOUT:?}: {events:#?}");
            }
        }
    }
    let status = child.wait().expect("waiting for the client");
    (status.success(), events)
}

fn success_url(succeeded: bool, events: &[Value]) -> String {
    let success: Vec<&Value> = events.iter().filter(|e| e["event"] == "success").collect();
    assert!(
        succeeded && success.len() == 1,
        "the client did not succeed: {events:#?}"
    );
    success[0]["url"].as_str().expect("url").to_owned()
}

/// Garage, and a tusd-rs process storing into its bucket.
async fn start() -> (GarageServer, TusServer) {
    let garage = GarageServer::start().await;
    // The same values in every test of this process, so setting them from
    // tests running side by side is harmless.
    std::env::set_var("AWS_ACCESS_KEY_ID", garage.access_key_id());
    std::env::set_var("AWS_SECRET_ACCESS_KEY", garage.secret_access_key());
    std::env::set_var("AWS_REGION", garage.region());
    let endpoint = garage.endpoint();
    let server = TusServer::start(
        BIN,
        &["--s3-bucket", garage.bucket(), "--s3-endpoint", &endpoint],
    );
    (garage, server)
}

/// The upload at `url` is `expected`: by GET, and as the finished object.
async fn assert_stored(garage: &GarageServer, url: &str, expected: &[u8]) {
    let response = reqwest::get(url).await.expect("GET the upload");
    assert_eq!(response.status(), 200, "GET {url}");
    let body = response.bytes().await.expect("GET body");
    assert!(
        body == expected,
        "GET {url}: {} bytes, want {}",
        body.len(),
        expected.len()
    );
    let client = s3_client(&S3ClientConfig {
        endpoint: Some(garage.endpoint()),
        ..S3ClientConfig::default()
    })
    .await;
    let id = url.rsplit('/').next().expect("an id");
    let object = id.split_once('+').expect("tusd's S3 id").0;
    let stored = client
        .get_object()
        .bucket(garage.bucket())
        .key(object)
        .send()
        .await
        .expect("the finished object")
        .body
        .collect()
        .await
        .expect("its bytes")
        .into_bytes();
    assert!(
        stored == expected,
        "the object holds {} bytes, want {}",
        stored.len(),
        expected.len()
    );
}

#[tokio::test]
async fn js_plain_upload_into_s3() {
    let (garage, server) = start().await;
    let tmp = tempfile::tempdir().unwrap();
    let (file, data) = source_file(tmp.path(), "plain.bin", 6 * MIB + 123, 1);
    let chunk = (MIB).to_string();
    let (ok, events) = drive(
        js(
            &server.files_url(),
            &file,
            "plain",
            &["--chunk-size", &chunk],
        ),
        None,
    );
    let url = success_url(ok, &events);
    assert_stored(&garage, &url, &data).await;
}

#[tokio::test]
async fn js_resume_after_sigkill_into_s3() {
    let (garage, server) = start().await;
    let tmp = tempfile::tempdir().unwrap();
    let (file, data) = source_file(tmp.path(), "resume.bin", 7 * MIB + 321, 2);
    let url_file = tmp.path().join("upload-url");
    let url_file = url_file.to_str().unwrap();
    let chunk = (512 * KIB).to_string();
    let args = [
        "--chunk-size",
        &chunk,
        "--url-file",
        url_file,
        "--delay-ms",
        "50",
    ];
    let (_, first) = drive(
        js(&server.files_url(), &file, "resume", &args),
        Some(&|e: &Value| {
            // The offset is a number (or a string) in the event.
            let offset = e["offset"]
                .as_u64()
                .or_else(|| e["offset"].as_str().and_then(|o| o.parse().ok()));
            e["event"] == "chunk" && offset.is_some_and(|o| o > 0)
        }),
    );
    assert!(first.iter().all(|e| e["event"] != "success"), "{first:#?}");
    let url = std::fs::read_to_string(url_file).unwrap().trim().to_owned();
    let stopped_at = common::offset(&url).await;
    assert!(
        stopped_at > 0 && stopped_at < data.len() as u64,
        "{stopped_at}"
    );
    let (ok, second) = drive(js(&server.files_url(), &file, "resume", &args[..4]), None);
    assert_eq!(
        success_url(ok, &second),
        url,
        "the second run resumes the same upload"
    );
    assert_stored(&garage, &url, &data).await;
}

#[tokio::test]
async fn js_parallel_uploads_are_concatenated_in_s3() {
    let (garage, server) = start().await;
    let tmp = tempfile::tempdir().unwrap();
    let (file, data) = source_file(tmp.path(), "parallel.bin", 3 * MIB + 5, 4);
    let chunk = (512 * KIB).to_string();
    let (ok, events) = drive(
        js(
            &server.files_url(),
            &file,
            "parallel",
            &["--chunk-size", &chunk, "--parallel", "3"],
        ),
        None,
    );
    let url = success_url(ok, &events);
    assert_stored(&garage, &url, &data).await;
}

#[tokio::test]
async fn py_plain_upload_into_s3() {
    let (garage, server) = start().await;
    let tmp = tempfile::tempdir().unwrap();
    let (file, data) = source_file(tmp.path(), "plain.bin", 6 * MIB + 99, 5);
    let chunk = (MIB).to_string();
    let (ok, events) = drive(
        py(
            &server.files_url(),
            &file,
            "plain",
            &["--chunk-size", &chunk],
        ),
        None,
    );
    let url = success_url(ok, &events);
    assert_stored(&garage, &url, &data).await;
}

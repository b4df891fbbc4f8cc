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

use common::tus_clients::{drive, js, offset_of, py};
use common::{source_file, BIN};
use serde_json::Value;
use tusd_s3store::{s3_client, S3ClientConfig};
use tusd_testsupport::{GarageServer, TusServer};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

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
    let run = drive(
        js(
            &server.files_url(),
            &file,
            "plain",
            &["--chunk-size", &chunk],
        ),
        None,
    );
    let url = run.success_url();
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
    let first = drive(
        js(&server.files_url(), &file, "resume", &args),
        Some(&|e: &Value| e["event"] == "chunk" && offset_of(e, "offset") > 0),
    );
    assert!(first.killed && first.of("success").is_empty(), "{first:?}");
    let url = std::fs::read_to_string(url_file).unwrap().trim().to_owned();
    let stopped_at = common::offset(&url).await;
    assert!(
        stopped_at > 0 && stopped_at < data.len() as u64,
        "{stopped_at}"
    );
    let second = drive(js(&server.files_url(), &file, "resume", &args[..4]), None);
    assert_eq!(
        second.success_url(),
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
    let run = drive(
        js(
            &server.files_url(),
            &file,
            "parallel",
            &["--chunk-size", &chunk, "--parallel", "3"],
        ),
        None,
    );
    let url = run.success_url();
    assert_stored(&garage, &url, &data).await;
}

#[tokio::test]
async fn py_plain_upload_into_s3() {
    let (garage, server) = start().await;
    let tmp = tempfile::tempdir().unwrap();
    let (file, data) = source_file(tmp.path(), "plain.bin", 6 * MIB + 99, 5);
    let chunk = (MIB).to_string();
    let run = drive(
        py(
            &server.files_url(),
            &file,
            "plain",
            &["--chunk-size", &chunk],
        ),
        None,
    );
    let url = run.success_url();
    assert_stored(&garage, &url, &data).await;
}

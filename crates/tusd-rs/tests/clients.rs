//! tusd-rs driven by two tus clients written elsewhere: tus-js-client (under
//! Node) and tuspy (`tusclient`), through the scripts in tests/clients/. Each
//! test starts a real server, makes a random source file, runs a client as a
//! child process and compares the server's bytes with the source.
//!
//! The clients are installed by scripts/install-clients.sh; without them
//! these tests fail (they do not skip).
//!
//! Not covered, because the pinned clients cannot do it:
//! - tuspy 1.1.0 has no deferred length (no Upload-Defer-Length) and no
//!   concatenation;
//! - tus-js-client has no Upload-Checksum support.

mod common;

use base64::Engine as _;
use common::tus_clients::{drive, js, offset_of, py};
use common::{assert_same_bytes, head, id_of, metric, metrics, offset, source_file, BIN};
use serde_json::Value;
use sha1::{Digest, Sha1};
use tusd_testsupport::TusServer;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// The upload's data file in the file store, named by the URL's last segment.
fn data_file(server: &TusServer, url: &str) -> Vec<u8> {
    let path = server.upload_dir().join(id_of(url));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Checks the upload at `url` both by GET and in the upload dir.
async fn assert_upload_is(server: &TusServer, url: &str, expected: &[u8]) {
    assert!(url.starts_with(&server.files_url()), "{url}");
    let response = reqwest::get(url).await.expect("GET the upload");
    assert_eq!(response.status(), 200, "GET {url}");
    let body = response.bytes().await.expect("GET body");
    assert_same_bytes(&body, expected, &format!("GET {url}"));
    assert_same_bytes(&data_file(server, url), expected, "data file");
}

/// Checks the upload as [`assert_upload_is`] does, and that the server
/// received each byte once: nothing was sent twice, even across a resume.
async fn assert_stored_once(server: &TusServer, url: &str, expected: &[u8]) {
    assert_upload_is(server, url, expected).await;
    assert_eq!(bytes_received(server).await, expected.len() as u64);
}

/// The offset the server reports for an upload whose client was killed
/// mid-way: at least `at_least`, and short of the whole `len`.
async fn offset_after_kill(url: &str, at_least: u64, len: usize) -> u64 {
    let stopped_at = offset(url).await;
    assert!(
        stopped_at >= at_least && stopped_at < len as u64,
        "offset after the kill: {stopped_at}"
    );
    stopped_at
}

/// `tusd_bytes_received_total` from /metrics.
async fn bytes_received(server: &TusServer) -> u64 {
    metric(&metrics(server).await, "tusd_bytes_received_total") as u64
}

// ---------------------------------------------------------------- tus-js-client

#[tokio::test]
async fn js_plain_upload_in_chunks() {
    let server = TusServer::start(BIN, &[]);
    let tmp = tempfile::tempdir().unwrap();
    let (file, data) = source_file(tmp.path(), "plain.bin", 3 * MIB + 123, 1);
    let chunk = 512 * KIB;

    let run = drive(
        js(
            &server.files_url(),
            &file,
            "plain",
            &["--chunk-size", &chunk.to_string()],
        ),
        None,
    );
    let url = run.success_url();
    let patches = run.requests("PATCH");
    assert_eq!(patches.len(), data.len().div_ceil(chunk), "{run:?}");
    for (i, patch) in patches.iter().enumerate() {
        assert_eq!(offset_of(patch, "uploadOffset"), (i * chunk) as u64);
    }
    assert_eq!(
        run.requests("POST")[0]["uploadLength"],
        data.len().to_string()
    );
    assert_stored_once(&server, &url, &data).await;
}

#[tokio::test]
async fn js_resume_after_sigkill() {
    let server = TusServer::start(BIN, &[]);
    let tmp = tempfile::tempdir().unwrap();
    let (file, data) = source_file(tmp.path(), "resume.bin", 4 * MIB + 321, 2);
    let url_file = tmp.path().join("upload-url");
    let url_file = url_file.to_str().unwrap();
    let chunk = (256 * KIB).to_string();

    // First run: each PATCH waits 50 ms before it goes out, so the client is
    // surely mid-way (16+ chunks) when it is killed after its first chunk.
    let first = drive(
        js(
            &server.files_url(),
            &file,
            "resume",
            &[
                "--chunk-size",
                &chunk,
                "--url-file",
                url_file,
                "--delay-ms",
                "50",
            ],
        ),
        Some(&|e: &Value| e["event"] == "chunk" && offset_of(e, "offset") > 0),
    );
    assert!(first.killed, "{first:?}");
    assert!(first.of("success").is_empty(), "{first:?}");
    let url = std::fs::read_to_string(url_file).unwrap().trim().to_owned();
    let stopped_at = offset_after_kill(&url, 1, data.len()).await;

    // Second run: a new process, resuming from the stored URL.
    let second = drive(
        js(
            &server.files_url(),
            &file,
            "resume",
            &["--chunk-size", &chunk, "--url-file", url_file],
        ),
        None,
    );
    assert_eq!(second.success_url(), url);
    assert!(
        second.requests("POST").is_empty(),
        "resuming must not create: {second:?}"
    );
    let heads = second.of("response");
    assert_eq!(heads[0]["method"], "HEAD", "{second:?}");
    assert_eq!(offset_of(heads[0], "uploadOffset"), stopped_at);
    let patches = second.requests("PATCH");
    assert_eq!(
        offset_of(patches[0], "uploadOffset"),
        stopped_at,
        "the second run must start where the server is: {second:?}"
    );
    assert_stored_once(&server, &url, &data).await;
}

/// Like `js_resume_after_sigkill`, but the kill lands while a PATCH body is
/// going out (the client reported progress inside its second chunk), so
/// the server sees a broken body and keeps what arrived: the upload may stop
/// at any offset, not only at a chunk boundary.
#[tokio::test]
async fn js_resume_after_sigkill_mid_patch() {
    let server = TusServer::start(BIN, &[]);
    let tmp = tempfile::tempdir().unwrap();
    let (file, data) = source_file(tmp.path(), "resume.bin", 4 * MIB + 4321, 9);
    let url_file = tmp.path().join("upload-url");
    let url_file = url_file.to_str().unwrap();
    let chunk = MIB as u64;
    let chunk_arg = chunk.to_string();

    let first = drive(
        js(
            &server.files_url(),
            &file,
            "resume",
            &[
                "--chunk-size",
                &chunk_arg,
                "--url-file",
                url_file,
                "--delay-ms",
                "50",
                "--progress",
                "yes",
            ],
        ),
        Some(&|e: &Value| {
            e["event"] == "progress" && {
                let offset = offset_of(e, "offset");
                offset > chunk && !offset.is_multiple_of(chunk)
            }
        }),
    );
    assert!(first.killed, "{first:?}");
    let url = std::fs::read_to_string(url_file).unwrap().trim().to_owned();
    let stopped_at = offset_after_kill(&url, chunk, data.len()).await;
    eprintln!("killed mid-PATCH; the server kept {stopped_at} bytes");
    assert_same_bytes(
        &data_file(&server, &url),
        &data[..stopped_at as usize],
        "data file after the kill",
    );

    let second = drive(
        js(
            &server.files_url(),
            &file,
            "resume",
            &["--chunk-size", &chunk_arg, "--url-file", url_file],
        ),
        None,
    );
    assert_eq!(second.success_url(), url);
    assert!(second.requests("POST").is_empty(), "{second:?}");
    assert_eq!(
        offset_of(second.requests("PATCH")[0], "uploadOffset"),
        stopped_at,
        "{second:?}"
    );
    assert_stored_once(&server, &url, &data).await;
}

#[tokio::test]
async fn js_deferred_length_from_a_stream() {
    let server = TusServer::start(BIN, &[]);
    let tmp = tempfile::tempdir().unwrap();
    // Not a multiple of the chunk size: with a multiple, tus-js-client 4.3.1
    // never sends the final Upload-Length (tus-js-client issue #779); the
    // script reports that as "stalled".
    let (file, data) = source_file(tmp.path(), "deferred.bin", 3 * MIB + 777, 3);

    let run = drive(
        js(
            &server.files_url(),
            &file,
            "deferred",
            &["--chunk-size", &(512 * KIB).to_string()],
        ),
        None,
    );
    let url = run.success_url();
    let post = run.requests("POST");
    assert_eq!(post.len(), 1, "{run:?}");
    assert_eq!(post[0]["uploadDeferLength"], "1", "{run:?}");
    assert_eq!(post[0]["uploadLength"], Value::Null, "{run:?}");
    let patches = run.requests("PATCH");
    let (last, earlier) = patches.split_last().expect("PATCHes");
    assert!(!earlier.is_empty(), "several chunks: {run:?}");
    assert!(
        earlier.iter().all(|p| p["uploadLength"].is_null()),
        "{run:?}"
    );
    assert_eq!(last["uploadLength"], data.len().to_string(), "{run:?}");
    assert_upload_is(&server, &url, &data).await;
    let head = head(&url).await;
    assert_eq!(
        head.headers()["upload-length"],
        data.len().to_string().as_str()
    );
    assert!(head.headers().get("upload-defer-length").is_none());
}

#[tokio::test]
async fn js_parallel_uploads_are_concatenated() {
    let server = TusServer::start(BIN, &[]);
    let tmp = tempfile::tempdir().unwrap();
    let (file, data) = source_file(tmp.path(), "parallel.bin", 3 * MIB + 5, 4);

    let run = drive(
        js(
            &server.files_url(),
            &file,
            "parallel",
            &["--chunk-size", &(512 * KIB).to_string(), "--parallel", "3"],
        ),
        None,
    );
    let url = run.success_url();
    let posts = run.requests("POST");
    let partials: Vec<_> = posts
        .iter()
        .filter(|p| p["uploadConcat"] == "partial")
        .collect();
    assert_eq!(partials.len(), 3, "{run:?}");
    let finals: Vec<_> = posts
        .iter()
        .filter(|p| {
            p["uploadConcat"]
                .as_str()
                .unwrap_or("")
                .starts_with("final;")
        })
        .collect();
    assert_eq!(finals.len(), 1, "{run:?}");
    assert_eq!(
        finals[0]["uploadConcat"]
            .as_str()
            .unwrap()
            .split(' ')
            .count(),
        3
    );
    // Each part took several PATCHes.
    assert!(run.requests("PATCH").len() > 3, "{run:?}");
    assert_upload_is(&server, &url, &data).await;
    let head = head(&url).await;
    assert_eq!(
        head.headers()["upload-offset"],
        data.len().to_string().as_str()
    );
    let concat = head.headers()["upload-concat"].to_str().unwrap().to_owned();
    assert!(concat.starts_with("final;"), "{concat}");
}

// ------------------------------------------------------------------------ tuspy

#[tokio::test]
async fn py_plain_upload_in_chunks() {
    let server = TusServer::start(BIN, &[]);
    let tmp = tempfile::tempdir().unwrap();
    let (file, data) = source_file(tmp.path(), "plain.bin", 3 * MIB + 99, 5);
    let chunk = 512 * KIB;

    let run = drive(
        py(
            &server.files_url(),
            &file,
            "plain",
            &["--chunk-size", &chunk.to_string()],
        ),
        None,
    );
    let url = run.success_url();
    let chunks = run.of("chunk");
    assert_eq!(chunks.len(), data.len().div_ceil(chunk), "{run:?}");
    assert!(chunks.iter().all(|c| c["checksum"].is_null()));
    assert_stored_once(&server, &url, &data).await;
}

#[tokio::test]
async fn py_resume_after_sigkill_from_url_storage() {
    let server = TusServer::start(BIN, &[]);
    let tmp = tempfile::tempdir().unwrap();
    let (file, data) = source_file(tmp.path(), "resume.bin", 4 * MIB + 17, 6);
    let storage = tmp.path().join("tuspy-urls.json");
    let storage = storage.to_str().unwrap();
    let chunk = (256 * KIB).to_string();

    let first = drive(
        py(
            &server.files_url(),
            &file,
            "resume",
            &[
                "--chunk-size",
                &chunk,
                "--url-storage",
                storage,
                "--delay-ms",
                "50",
            ],
        ),
        Some(&|e: &Value| e["event"] == "chunk" && offset_of(e, "offset") > 0),
    );
    assert!(first.killed, "{first:?}");
    let url = first.of("url")[0]["url"].as_str().unwrap().to_owned();
    let stopped_at = offset_after_kill(&url, 1, data.len()).await;

    // Second run: tuspy finds the URL by the file's fingerprint in its
    // FileStorage, asks the server for the offset (HEAD) and goes on.
    let second = drive(
        py(
            &server.files_url(),
            &file,
            "resume",
            &["--chunk-size", &chunk, "--url-storage", storage],
        ),
        None,
    );
    assert_eq!(second.of("resuming").len(), 1, "{second:?}");
    assert_eq!(second.success_url(), url);
    assert_eq!(
        offset_of(second.of("start")[0], "offset"),
        stopped_at,
        "the second run must start where the server is: {second:?}"
    );
    assert_stored_once(&server, &url, &data).await;
}

#[tokio::test]
async fn py_checksum_upload() {
    let server = TusServer::start(BIN, &[]);
    let tmp = tempfile::tempdir().unwrap();
    let (file, data) = source_file(tmp.path(), "checksum.bin", 2 * MIB + 1000, 7);
    let chunk = 512 * KIB;

    let run = drive(
        py(
            &server.files_url(),
            &file,
            "checksum",
            &["--chunk-size", &chunk.to_string()],
        ),
        None,
    );
    let url = run.success_url();
    let chunks = run.of("chunk");
    assert_eq!(chunks.len(), data.len().div_ceil(chunk), "{run:?}");
    // Each PATCH carried "Upload-Checksum: sha1 <base64 of the chunk's sha1>".
    for (i, piece) in data.chunks(chunk).enumerate() {
        let expected = format!(
            "sha1 {}",
            base64::engine::general_purpose::STANDARD.encode(Sha1::digest(piece))
        );
        assert_eq!(chunks[i]["checksum"], expected.as_str(), "chunk {i}");
    }
    assert_upload_is(&server, &url, &data).await;
}

#[tokio::test]
async fn py_checksum_mismatch_is_refused() {
    let server = TusServer::start(BIN, &[]);
    let tmp = tempfile::tempdir().unwrap();
    let (file, _data) = source_file(tmp.path(), "bad.bin", MIB, 8);

    // Same client, same header name and algorithm, but the digest is of other
    // bytes: the server must answer 460 and keep nothing.
    let run = drive(
        py(
            &server.files_url(),
            &file,
            "badchecksum",
            &["--chunk-size", &(256 * KIB).to_string()],
        ),
        None,
    );
    assert_eq!(run.status.code(), Some(1), "{run:?}");
    let errors = run.of("error");
    assert_eq!(errors.len(), 1, "{run:?}");
    assert_eq!(errors[0]["status"], 460, "{run:?}");
    assert!(run.of("chunk").is_empty(), "{run:?}");
    let url = run.of("url")[0]["url"].as_str().unwrap().to_owned();
    assert_eq!(offset(&url).await, 0);
    assert!(data_file(&server, &url).is_empty());
    // Not asserted: tusd_bytes_received_total, which (help text "Upload
    // bytes stored") still counts the discarded chunk's bytes.
}

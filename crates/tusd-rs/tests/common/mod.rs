//! Small tus client steps shared by the HTTP integration tests. Starting the
//! server itself is the job of `tusd_testsupport`: `InProcessServer` (in
//! this process) or `TusServer` (a real process); every helper here takes
//! either, as a `Server`.

#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use reqwest::{Client, Method, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
pub use tusd_testsupport::Server;

pub mod child_output;
mod stored;
pub mod tus_clients;
#[allow(unused_imports)]
pub use stored::{data_len, object_names, storage_name, stored_names, uploads_in};

pub const BIN: &str = env!("CARGO_BIN_EXE_tusd-rs");
pub const OCTETS: &str = "application/offset+octet-stream";

pub fn client() -> Client {
    Client::new()
}

/// A request with `Tus-Resumable: 1.0.0` already set.
pub fn tus(method: Method, url: &str) -> reqwest::RequestBuilder {
    client()
        .request(method, url)
        .header("Tus-Resumable", "1.0.0")
}

/// Creates an upload of `length` bytes and returns its URL.
pub async fn create(server: &impl Server, length: u64) -> String {
    create_with(server, &[("Upload-Length", &length.to_string())]).await
}

/// POSTs with extra headers, expects 201 and returns the Location.
pub async fn create_with(server: &impl Server, headers: &[(&str, &str)]) -> String {
    let mut request = tus(Method::POST, &server.files_url());
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    response.headers()["location"].to_str().unwrap().to_owned()
}

/// A PATCH at `offset` carrying `body`, ready to send.
pub fn patch_request(
    url: &str,
    offset: u64,
    body: impl Into<reqwest::Body>,
) -> reqwest::RequestBuilder {
    tus(Method::PATCH, url)
        .header("Upload-Offset", offset.to_string())
        .header("Content-Type", OCTETS)
        .body(body)
}

pub async fn patch(url: &str, offset: u64, body: impl Into<reqwest::Body>) -> Response {
    patch_request(url, offset, body).send().await.unwrap()
}

pub async fn head(url: &str) -> Response {
    tus(Method::HEAD, url).send().await.unwrap()
}

/// The `Upload-Offset` a HEAD reports.
pub async fn offset(url: &str) -> u64 {
    let r = head(url).await;
    assert_eq!(r.status(), 200, "HEAD {url}");
    header_u64(&r, "upload-offset")
}

pub fn header_u64(r: &Response, name: &str) -> u64 {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing"))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

pub async fn get_bytes(url: &str) -> (u16, Vec<u8>) {
    let r = client().get(url).send().await.unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

/// The last path segment of an upload URL.
pub fn id_of(url: &str) -> &str {
    url.rsplit('/').next().unwrap()
}

/// Names of the files in `dir`, sorted.
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

/// Polls `check` every 20 ms, at most `tries` times; panics with `what` if
/// it never holds.
pub async fn eventually<F, Fut>(what: &str, tries: usize, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..tries {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never happened: {what}");
}

/// Sends `request` as raw bytes (so nothing normalises the path) and
/// returns the whole response text.
pub async fn raw(server: &impl Server, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", server.port()))
        .await
        .unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Status code of a raw response.
pub fn raw_status(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"))
}

/// A request body fed by the test: write to the returned half whenever you
/// like; dropping it ends the body.
pub fn slow_body() -> (tokio::io::DuplexStream, reqwest::Body) {
    let (writer, reader) = tokio::io::duplex(1024);
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(reader));
    (writer, body)
}

/// A PATCH at `offset` whose body the test feeds through the returned
/// writer (dropping it ends the body); the response comes from the handle.
pub fn start_patch(url: &str, offset: u64) -> (tokio::io::DuplexStream, JoinHandle<Response>) {
    let (writer, body) = slow_body();
    let url = url.to_owned();
    (
        writer,
        tokio::spawn(async move { patch(&url, offset, body).await }),
    )
}

/// Starts a PATCH at offset 0, sends `first`, and returns once those bytes
/// are in the data file: the PATCH then surely holds the upload's lock, and
/// stalls until the test writes more or drops the writer.
pub async fn stalled_patch(
    server: &impl Server,
    url: &str,
    first: &[u8],
) -> (tokio::io::DuplexStream, JoinHandle<Response>) {
    let (mut writer, response) = start_patch(url, 0);
    writer.write_all(first).await.unwrap();
    writer.flush().await.unwrap();
    let len = first.len() as u64;
    eventually("the first bytes on disk", 3000, || async move {
        data_len(server, url) >= len
    })
    .await;
    (writer, response)
}

/// The value of an unlabelled metric line `name value` in OpenMetrics text.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            let (n, v) = l.rsplit_once(' ')?;
            (n == name).then(|| v.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

pub async fn metrics(server: &impl Server) -> String {
    client()
        .get(format!("{}/metrics", server.origin()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// `len` pseudo-random bytes (xorshift64*, seeded), written to `dir/name`.
pub fn source_file(dir: &Path, name: &str, len: usize, seed: u64) -> (std::path::PathBuf, Vec<u8>) {
    let mut state = seed | 1;
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        data.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    data.truncate(len);
    let path = dir.join(name);
    std::fs::write(&path, &data).expect("writing the source file");
    (path, data)
}

/// Panics unless `actual` is `expected`, naming the first differing byte
/// instead of printing megabytes.
pub fn assert_same_bytes(actual: &[u8], expected: &[u8], what: &str) {
    if actual != expected {
        let first = actual
            .iter()
            .zip(expected)
            .position(|(a, b)| a != b)
            .unwrap_or(actual.len().min(expected.len()));
        panic!(
            "{what}: {} bytes, expected {} bytes; first difference at byte {first}",
            actual.len(),
            expected.len()
        );
    }
}

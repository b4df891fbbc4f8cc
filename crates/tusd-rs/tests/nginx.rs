//! tusd-rs behind a real nginx (issue 7: early answers broke nginx).
//!
//! Two nodes share one upload directory and one etcd, behind an nginx that
//! runs the configuration docs/cluster.md recommends
//! (`tusd_testsupport::nginx::TEMPLATE`, with `proxy_request_buffering off`).
//! Each test sends PATCHes with large streaming bodies that the server
//! answers before their end (409 wrong offset, 423 lock not had, 204 after a
//! release request) and checks that the client gets that answer, not nginx's
//! 502, and that nginx never counted a node as failed. The same answers must
//! reach a client talking to a node directly, not a connection reset.

mod common;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use reqwest::{Method, Response};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;
use tusd_testsupport::{EtcdServer, Nginx, TusServer};

const CHUNK: usize = 64 * 1024;
/// Far more than the socket buffers between client, nginx and node hold.
const LARGE: usize = 8 << 20;

/// etcd, two nodes on one directory, nginx in front of both. Dropped in
/// field order: nginx first, etcd last.
struct Cluster {
    nginx: Nginx,
    nodes: Vec<TusServer>,
    etcd: EtcdServer,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start(extra: &[&str]) -> Cluster {
        let etcd = EtcdServer::start().await;
        let dir = tempfile::tempdir().unwrap();
        let endpoint = etcd.endpoint();
        let mut args = vec!["--etcd-endpoints", endpoint.as_str(), "--behind-proxy"];
        args.extend_from_slice(extra);
        let nodes: Vec<TusServer> = (0..2)
            .map(|_| TusServer::start_in(BIN, dir.path(), &args))
            .collect();
        let ports: Vec<u16> = nodes.iter().map(TusServer::port).collect();
        let nginx = Nginx::start(&ports);
        Cluster {
            nginx,
            nodes,
            etcd,
            _dir: dir,
        }
    }

    /// Creates an upload through nginx; its URL points at nginx.
    async fn create(&self, length: u64) -> String {
        create_at(&self.nginx.files_url(), length).await
    }

    /// The same upload, addressed at node `i` directly.
    fn on_node(&self, i: usize, url: &str) -> String {
        format!("{}{}", self.nodes[i].files_url(), id_of(url))
    }

    fn upload_dir(&self) -> &Path {
        self.nodes[0].upload_dir()
    }

    /// Everything worth reading when a test fails.
    fn logs(&self) -> String {
        format!(
            "nginx error log:\n{}\nnginx access log:\n{}\nnode 0 log:\n{}\nnode 1 log:\n{}",
            self.nginx.error_log(),
            self.nginx.access_log(),
            self.nodes[0].log(),
            self.nodes[1].log()
        )
    }

    /// nginx counted no request as an upstream failure (so `max_fails` never
    /// took a node out), no client got a 502, and right away requests still
    /// go to both nodes and succeed.
    async fn assert_nodes_never_failed(&self, url: &str) {
        let errors = self.nginx.error_log();
        assert!(
            !errors.contains("no live upstreams"),
            "nginx ran out of nodes:\n{}",
            self.logs()
        );
        assert!(
            !errors.lines().any(|l| l.contains("upstream")),
            "nginx logged upstream errors (each counts towards max_fails):\n{}",
            self.logs()
        );
        assert!(
            !self.nginx.access_log().contains("\" 502 "),
            "a client got 502:\n{}",
            self.logs()
        );
        let before = self.nginx.access_log().lines().count();
        for _ in 0..4 {
            let r = head(url).await;
            assert_eq!(r.status(), 200, "follow-up HEAD\n{}", self.logs());
        }
        let access = self.nginx.access_log();
        let follow_ups: Vec<&str> = access.lines().skip(before).collect();
        for node in &self.nodes {
            let addr = format!("upstream=127.0.0.1:{} ", node.port());
            assert!(
                follow_ups.iter().any(|l| l.contains(&addr)),
                "node {} got none of the follow-up HEADs: {follow_ups:#?}\n{}",
                node.port(),
                self.logs()
            );
        }
    }
}

async fn create_at(files_url: &str, length: u64) -> String {
    let r = tus(Method::POST, files_url)
        .header("Upload-Length", length.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    r.headers()["location"].to_str().unwrap().to_owned()
}

/// `len` bytes as a chunked body, produced as fast as the connection takes
/// them.
fn streaming_body(len: usize) -> reqwest::Body {
    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    let chunks = (0..len / CHUNK).map(move |_| Ok::<_, std::io::Error>(chunk.clone()));
    reqwest::Body::wrap_stream(futures::stream::iter(chunks))
}

/// A PATCH whose outcome is kept whatever it is: a response, or the
/// transport error (a reset) the client saw instead.
async fn try_patch(url: &str, offset: u64, body: reqwest::Body) -> Result<Response, String> {
    patch_request(url, offset, body)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))
}

fn status(outcome: &Result<Response, String>) -> String {
    match outcome {
        Ok(r) => r.status().as_u16().to_string(),
        Err(e) => format!("no response: {e}"),
    }
}

/// `len` bytes that keep coming at a moderate pace (4 KiB a millisecond at
/// most), as from a client on a real network: the body is still flowing
/// when the server answers, rather than stuck in full socket buffers, which
/// is when nginx used to trip over the early answer. The sender stops when
/// the request is dropped.
fn paced_body(len: usize) -> reqwest::Body {
    const PIECE: usize = 4096;
    let (mut writer, body) = slow_body();
    tokio::spawn(async move {
        let piece = vec![b'y'; PIECE];
        for _ in 0..len / PIECE {
            if writer.write_all(&piece).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    body
}

/// A PATCH at offset 0 with a [`paced_body`] of `len` bytes.
fn paced_patch(url: &str, len: usize) -> JoinHandle<Result<Response, String>> {
    let url = url.to_owned();
    tokio::spawn(async move { try_patch(&url, 0, paced_body(len)).await })
}

fn data_len_in(dir: &Path, url: &str) -> u64 {
    std::fs::metadata(dir.join(id_of(url))).map_or(0, |m| m.len())
}

/// `etcdctl lock` on the upload's lock name: a holder that ignores
/// release requests, as a stuck Go tusd node would.
fn holder_that_never_lets_go(etcd: &EtcdServer, url: &str) -> std::process::Child {
    tusd_testsupport::etcdctl_lock(&etcd.endpoints(), &format!("/tusd{}", id_of(url)))
}

/// How many PATCHes go through nginx at once: early answers to several
/// streaming requests at a time are what made nginx fail (issue 7).
const AT_ONCE: usize = 8;

/// Runs `AT_ONCE` copies of `patch(i)` at the same time; their outcomes.
async fn all_at_once<F, Fut>(patch: F) -> Vec<Result<Response, String>>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<Response, String>> + Send + 'static,
{
    let tasks: Vec<_> = (0..AT_ONCE).map(|i| tokio::spawn(patch(i))).collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    outcomes
}

fn statuses(outcomes: &[Result<Response, String>]) -> Vec<String> {
    outcomes.iter().map(status).collect()
}

#[tokio::test]
async fn wrong_offsets_with_large_bodies_get_409_through_nginx() {
    let cluster = Cluster::start(&[]).await;
    let mut urls = Vec::new();
    for _ in 0..AT_ONCE {
        urls.push(cluster.create(64 << 20).await);
    }
    assert!(
        urls[0].starts_with(&cluster.nginx.files_url()),
        "--behind-proxy builds URLs from nginx's forwarded headers: {}",
        urls[0]
    );
    for round in 0..3 {
        let urls = urls.clone();
        // Chunked bodies and bodies with a Content-Length.
        let outcomes = all_at_once(move |i| {
            let url = urls[i].clone();
            let body = match i % 2 {
                0 => streaming_body(LARGE),
                _ => vec![b'x'; LARGE].into(),
            };
            async move { try_patch(&url, 5, body).await }
        })
        .await;
        assert_eq!(
            statuses(&outcomes),
            vec!["409"; AT_ONCE],
            "round {round}\n{}",
            cluster.logs()
        );
    }
    for url in &urls {
        assert_eq!(data_len_in(cluster.upload_dir(), url), 0);
    }
    cluster.assert_nodes_never_failed(&urls[0]).await;
}

#[tokio::test]
async fn holders_that_never_let_go_get_streaming_patches_423_through_nginx() {
    let cluster = Cluster::start(&["--acquire-lock-timeout", "1s"]).await;
    // One upload and one holder per PATCH. (PATCHes queued on one upload in
    // one node can see the etcd locker report the lock deadline passing
    // inside an etcd call as 503 instead of 423, which is not this test's
    // subject.)
    let mut urls = Vec::new();
    let mut holders = Vec::new();
    for _ in 0..AT_ONCE {
        let url = cluster.create(64 << 20).await;
        holders.push(holder_that_never_lets_go(&cluster.etcd, &url));
        urls.push(url);
    }
    for round in 0..3 {
        let urls = urls.clone();
        let outcomes = all_at_once(move |i| {
            let url = urls[i].clone();
            async move { try_patch(&url, 0, paced_body(LARGE)).await }
        })
        .await;
        assert_eq!(
            statuses(&outcomes),
            vec!["423"; AT_ONCE],
            "round {round}\n{}",
            cluster.logs()
        );
        for outcome in outcomes {
            assert!(outcome.unwrap().headers().contains_key("retry-after"));
        }
    }
    for url in &urls {
        assert_eq!(data_len_in(cluster.upload_dir(), url), 0);
    }
    for mut holder in holders {
        let _ = holder.kill();
        let _ = holder.wait();
    }
    // A killed holder's key stays until its lease expires (etcdctl's
    // default TTL, 60 s), so the follow-up requests are for another upload.
    let other = cluster.create(10).await;
    cluster.assert_nodes_never_failed(&other).await;
}

#[tokio::test]
async fn heads_stop_streaming_patches_which_get_204_through_nginx() {
    let cluster = Cluster::start(&[]).await;
    for round in 0..2 {
        let mut urls = Vec::new();
        let mut patches = Vec::new();
        for _ in 0..AT_ONCE {
            let url = cluster.create(64 << 20).await;
            patches.push(paced_patch(&url, 32 << 20));
            urls.push(url);
        }
        for url in &urls {
            let dir = cluster.upload_dir().to_owned();
            eventually("each PATCH's first bytes on disk", 3000, || {
                let dir = dir.clone();
                async move { data_len_in(&dir, url) >= CHUNK as u64 }
            })
            .await;
        }
        // Each client's HEAD (a resume through nginx, on either node) asks
        // its PATCH to let go; the PATCHes keep sending while that happens.
        let heads: Vec<_> = urls
            .iter()
            .map(|url| {
                let url = url.clone();
                tokio::spawn(async move { offset(&url).await })
            })
            .collect();
        for (patching, head) in patches.into_iter().zip(heads) {
            let resumed_at = head.await.unwrap();
            let patched = tokio::time::timeout(Duration::from_secs(30), patching)
                .await
                .expect("a PATCH never ended after its HEAD")
                .unwrap();
            assert_eq!(status(&patched), "204", "round {round}\n{}", cluster.logs());
            assert_eq!(header_u64(&patched.unwrap(), "upload-offset"), resumed_at);
        }
        cluster.assert_nodes_never_failed(&urls[0]).await;
    }
}

/// A client that writes its whole request before it reads anything, as
/// simple HTTP clients do, on a connection of its own to a node.
struct RawClient {
    stream: tokio::net::TcpStream,
}

impl RawClient {
    async fn connect(port: u16) -> RawClient {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        RawClient { stream }
    }

    /// Sends the head of a PATCH whose body is `length` bytes.
    async fn patch_head(&mut self, path: &str, offset: u64, length: usize) {
        let head = format!(
            "PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n\
             Upload-Offset: {offset}\r\nContent-Type: {OCTETS}\r\nContent-Length: {length}\r\n\r\n"
        );
        self.stream.write_all(head.as_bytes()).await.unwrap();
    }

    /// Sends `len` body bytes; the error is what a client without the
    /// server's drain gets (the server reset the connection).
    async fn send(&mut self, len: usize) -> Result<(), String> {
        let chunk = vec![b'z'; CHUNK];
        let mut left = len;
        while left > 0 {
            let n = left.min(CHUNK);
            self.stream
                .write_all(&chunk[..n])
                .await
                .map_err(|e| format!("sending the body failed: {e}"))?;
            left -= n;
        }
        Ok(())
    }

    /// Reads one response; returns its status and head. A response to HEAD
    /// has no body whatever its Content-Length says.
    async fn response(&mut self, to_head: bool) -> (u16, String) {
        use tokio::io::AsyncReadExt;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match self.stream.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                other => panic!(
                    "no response ({other:?}) after {:?}",
                    String::from_utf8_lossy(&head)
                ),
            }
        }
        let head = String::from_utf8(head).unwrap();
        let length = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())
                    .flatten()
            })
            .unwrap_or(0);
        if !to_head {
            let mut body = vec![0u8; length];
            self.stream.read_exact(&mut body).await.unwrap();
        }
        (raw_status(&head), head)
    }

    /// A HEAD on the same connection: proves it was kept alive.
    async fn head(&mut self, path: &str) -> u16 {
        let head =
            format!("HEAD {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n\r\n");
        self.stream.write_all(head.as_bytes()).await.unwrap();
        self.response(true).await.0
    }
}

fn path_of(url: &str) -> String {
    format!("/files/{}", id_of(url))
}

#[tokio::test]
async fn early_answers_reach_a_direct_client_which_keeps_its_connection() {
    // Bodies far larger than the socket buffers, but within the drain's
    // 64 MiB: the node reads them to the end, so the connection survives.
    const BODY: usize = 32 << 20;
    let cluster = Cluster::start(&["--acquire-lock-timeout", "1s"]).await;
    let url = cluster.create(64 << 20).await;
    let path = path_of(&url);
    let port = cluster.nodes[0].port();

    // 409: a wrong offset.
    let mut client = RawClient::connect(port).await;
    client.patch_head(&path, 5, BODY).await;
    client.send(BODY).await.unwrap();
    assert_eq!(client.response(false).await.0, 409, "{}", cluster.logs());
    assert_eq!(client.head(&path).await, 200, "{}", cluster.logs());

    // The same with a streaming client library (reqwest, chunked).
    let direct = cluster.on_node(0, &url);
    let outcome = try_patch(&direct, 5, streaming_body(LARGE)).await;
    assert_eq!(status(&outcome), "409", "{}", cluster.logs());

    // 204: a HEAD on the other node stops the PATCH; the client sends on.
    let mut client = RawClient::connect(port).await;
    client.patch_head(&path, 0, CHUNK + BODY).await;
    client.send(CHUNK).await.unwrap();
    let dir = cluster.upload_dir().to_owned();
    let on_disk = &url;
    eventually("the PATCH's first bytes on disk", 3000, || {
        let dir = dir.clone();
        async move { data_len_in(&dir, on_disk) >= CHUNK as u64 }
    })
    .await;
    let resumed_at = offset(&cluster.on_node(1, &url)).await;
    client.send(BODY).await.unwrap();
    let (code, head) = client.response(false).await;
    assert_eq!(code, 204, "{}", cluster.logs());
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("upload-offset: {resumed_at}\r\n")),
        "{head}"
    );
    assert_eq!(client.head(&path).await, 200, "{}", cluster.logs());

    // 423: a holder that never lets go.
    let mut holder = holder_that_never_lets_go(&cluster.etcd, &url);
    let mut client = RawClient::connect(port).await;
    client.patch_head(&path, resumed_at, BODY).await;
    client.send(BODY).await.unwrap();
    assert_eq!(client.response(false).await.0, 423, "{}", cluster.logs());
    let _ = holder.kill();
    let _ = holder.wait();
}

/// The configuration docs/cluster.md shows under "Behind nginx" is the one
/// these tests run.
#[test]
fn the_documented_nginx_config_is_the_tested_one() {
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/cluster.md"
    ))
    .unwrap();
    let section = docs
        .split("\n## Behind nginx\n")
        .nth(1)
        .expect("docs/cluster.md has a '## Behind nginx' section");
    let section = section.split("\n## ").next().unwrap();
    let block = section
        .split("```nginx\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("the section has an nginx code block");
    assert_eq!(
        block.trim_end(),
        tusd_testsupport::nginx::TEMPLATE.trim_end(),
        "docs/cluster.md and crates/tusd-testsupport/src/nginx.conf.template differ"
    );
}

//! gRPC hooks against a real tusd v2 hook server written in Python with
//! grpcio (tests/hooks/grpc_receiver.py), its stubs generated from the
//! project's proto (crates/tusd-hooks/proto/hook.proto). grpcio comes from
//! scripts/install-clients.sh (into <repo>/.venv).
#![cfg(feature = "grpc-hooks")]

#[path = "hooks/certs.rs"]
mod certs;
mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use common::*;
use reqwest::Method;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tusd_testsupport::InProcessServer;

struct Receiver {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Receiver {
    fn start() -> Receiver {
        Receiver::start_with(&[])
    }

    /// With `tls` = [certificate, key] it serves TLS; with a third file,
    /// the CA client certificates must chain to (mutual TLS).
    fn start_with(tls: &[&Path]) -> Receiver {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let python = manifest.join("../../.venv/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run scripts/install-clients.sh (grpcio for the gRPC hook receiver)",
            python.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("hooks.log");
        let mut child = Command::new(python)
            .arg(manifest.join("tests/hooks/grpc_receiver.py"))
            .arg(manifest.join("../tusd-hooks/proto"))
            .arg(dir.path())
            .arg(&log)
            .args(tls)
            .stdout(Stdio::piped())
            .spawn()
            .expect("running the gRPC hook receiver");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("receiver did not start (is grpcio installed?): {line:?}"));
        Receiver {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    fn calls(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn calls_of(&self, kind: &str, id: &str) -> Vec<Value> {
        self.calls()
            .into_iter()
            .filter(|c| c["type"] == kind && c["event"]["upload"]["id"] == id)
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn server_for(receiver: &Receiver, extra: &[&str]) -> InProcessServer {
    let endpoint = format!("127.0.0.1:{}", receiver.port);
    let mut args = vec![
        "--hooks-grpc",
        endpoint.as_str(),
        "--hooks-enabled-events",
        "",
        "--progress-hooks-interval",
        "100ms",
    ];
    args.extend_from_slice(extra);
    InProcessServer::with_args(&args).await
}

async fn post(server: &InProcessServer, length: u64, meta: &[(&str, &str)]) -> reqwest::Response {
    let value = meta
        .iter()
        .map(|(k, v)| {
            format!(
                "{k} {}",
                base64::engine::general_purpose::STANDARD.encode(v)
            )
        })
        .collect::<Vec<_>>()
        .join(",");
    tus(Method::POST, &server.files_url())
        .header("Upload-Length", length.to_string())
        .header("Upload-Metadata", value)
        .header("Authorization", "Bearer t0ken")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn grpc_pre_create_rejects_and_changes_metadata() {
    let receiver = Receiver::start();
    let server = server_for(
        &receiver,
        &["--hooks-grpc-forward-headers", "Authorization"],
    )
    .await;
    let r = post(&server, 3, &[("reject", "1")]).await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-grpc"], "yes");
    assert_eq!(r.text().await.unwrap(), "no via grpc");
    let calls = receiver.calls();
    let event = &calls[0]["event"];
    assert_eq!(calls[0]["type"], "pre-create");
    assert_eq!(event["upload"]["size"], "3"); // int64 in proto JSON
    assert_eq!(event["httpRequest"]["method"], "POST");
    assert_eq!(event["httpRequest"]["uri"], "/files/");
    assert_eq!(event["httpRequest"]["header"]["Upload-Length"], "3");
    assert_eq!(calls[0]["_metadata"]["authorization"], "Bearer t0ken");

    let r = post(&server, 3, &[("rename", "via-grpc.txt")]).await;
    assert_eq!(r.status(), 201);
    let url = r.headers()["location"].to_str().unwrap().to_owned();
    let stored = head(&url).await.headers()["upload-metadata"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        stored,
        format!(
            "filename {}",
            base64::engine::general_purpose::STANDARD.encode("via-grpc.txt")
        )
    );
}

#[tokio::test]
async fn grpc_post_receive_stops_and_pre_finish_answers_and_post_finish_once() {
    let receiver = Receiver::start();
    let server = server_for(&receiver, &[]).await;

    let r = post(&server, 1000, &[("stop", "1")]).await;
    let url = r.headers()["location"].to_str().unwrap().to_owned();
    let (mut writer, response) = start_patch(&url, 0);
    writer.write_all(&[7u8; 50]).await.unwrap();
    writer.flush().await.unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .expect("the gRPC hook stops the PATCH")
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.text().await.unwrap(), "stopped via grpc");
    drop(writer);
    assert_eq!(head(&url).await.status(), 404);

    let r = post(&server, 2, &[("refuse_finish", "1")]).await;
    let url = r.headers()["location"].to_str().unwrap().to_owned();
    let last = patch(&url, 0, &b"ab"[..]).await;
    assert_eq!(last.status(), 422);
    assert_eq!(last.text().await.unwrap(), "grpc says no");

    let r = post(&server, 2, &[]).await;
    let url = r.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(patch(&url, 0, &b"ab"[..]).await.status(), 204);
    let id = id_of(&url).to_owned();
    eventually("post-finish", 200, || {
        let found = !receiver.calls_of("post-finish", &id).is_empty();
        async move { found }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let finished = receiver.calls_of("post-finish", &id);
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0]["event"]["upload"]["offset"], "2");
    assert_eq!(
        finished[0]["event"]["upload"]["storage"]["Type"],
        "filestore"
    );
}

#[tokio::test]
async fn an_unreachable_grpc_server_fails_blocking_hooks_with_500() {
    let port = tusd_testsupport::ports::free_port();
    let endpoint = format!("127.0.0.1:{port}");
    let server = InProcessServer::with_args(&[
        "--hooks-grpc",
        &endpoint,
        "--hooks-grpc-retry",
        "1",
        "--hooks-grpc-backoff",
        "10ms",
    ])
    .await;
    let r = tus(Method::POST, &server.files_url())
        .header("Upload-Length", "3")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert!(r
        .text()
        .await
        .unwrap()
        .starts_with("ERR_INTERNAL_SERVER_ERROR: gRPC hook call failed"));
}

/// Beyond tusd: `pre-access` goes through tusd's own message (its `type`
/// is "pre-access"); `rejectUpload` refuses the request.
#[tokio::test]
async fn grpc_pre_access_refuses_a_patch_without_the_token() {
    let receiver = Receiver::start();
    let endpoint = format!("127.0.0.1:{}", receiver.port);
    let server = InProcessServer::with_args(&[
        "--hooks-grpc",
        &endpoint,
        "--hooks-enabled-events",
        "pre-access",
    ])
    .await;
    let r = post(&server, 2, &[("private", "1")]).await;
    let url = r.headers()["location"].to_str().unwrap().to_owned();
    let refused = patch(&url, 0, &b"ab"[..]).await;
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.text().await.unwrap(), "grpc asks who you are");
    assert_eq!(data_len(&server, &url), 0);
    let allowed = patch_request(&url, 0, &b"ab"[..])
        .header("Authorization", "Bearer let-me-in")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 204);

    let id = id_of(&url).to_owned();
    let calls = receiver.calls_of("pre-access", &id);
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0]["event"]["httpRequest"]["method"], "PATCH");
    assert_eq!(calls[0]["event"]["upload"]["metaData"]["private"], "1");
    let text = metrics(&server).await;
    let labels = r#"{hooktype="pre-access",kind="grpc"}"#;
    assert_eq!(
        metric(&text, &format!("tusd_hook_invocations_total{labels}")),
        2.0,
        "{text}"
    );
}

/// A pre-create rejected by the receiver (it rejects `reject=1`) through
/// a server with these gRPC hook flags: the client's status and body.
async fn rejected_through(endpoint: &str, flags: &[&str]) -> (u16, String) {
    let mut args = vec!["--hooks-grpc", endpoint, "--hooks-grpc-retry", "0"];
    args.extend_from_slice(flags);
    let server = InProcessServer::with_args(&args).await;
    let r = post(&server, 3, &[("reject", "1")]).await;
    (r.status().as_u16(), r.text().await.unwrap())
}

/// tusd's `--hooks-grpc-secure`: TLS to the hook server, trusting only the
/// certificate given; with a client certificate and key, mutual TLS. Each
/// case is told apart by the receiver's answer reaching the client (403)
/// or the blocking hook failing (500).
#[tokio::test]
async fn grpc_hooks_over_tls_and_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let server_cert = certs::SelfSigned::new(dir.path(), "server");
    let client_cert = certs::SelfSigned::new(dir.path(), "client");
    let trusting = |pem| {
        [
            "--hooks-grpc-secure",
            "--hooks-grpc-server-tls-certificate",
            pem,
        ]
    };
    let answered = (403, "no via grpc".to_owned());

    let receiver = Receiver::start_with(&[&server_cert.cert, &server_cert.key]);
    let endpoint = format!("127.0.0.1:{}", receiver.port);
    assert_eq!(
        rejected_through(&endpoint, &trusting(server_cert.cert_path())).await,
        answered
    );
    // Plaintext to a TLS server, or trusting another certificate, fails.
    assert_eq!(rejected_through(&endpoint, &[]).await.0, 500);
    let (status, body) = rejected_through(&endpoint, &trusting(client_cert.cert_path())).await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body.starts_with("ERR_INTERNAL_SERVER_ERROR: gRPC hook call failed"),
        "{body}"
    );
    assert_eq!(
        receiver.calls().len(),
        1,
        "only the trusted TLS call arrived"
    );

    // Mutual TLS: the server asks for a client certificate signed by client.crt.
    let mutual = Receiver::start_with(&[&server_cert.cert, &server_cert.key, &client_cert.cert]);
    let endpoint = format!("127.0.0.1:{}", mutual.port);
    let server_only = trusting(server_cert.cert_path());
    assert_eq!(rejected_through(&endpoint, &server_only).await.0, 500);
    let mut with_identity = server_only.to_vec();
    with_identity.extend([
        "--hooks-grpc-client-tls-certificate",
        client_cert.cert_path(),
        "--hooks-grpc-client-tls-key",
        client_cert.key_path(),
    ]);
    assert_eq!(rejected_through(&endpoint, &with_identity).await, answered);
    assert_eq!(mutual.calls().len(), 1);
}

/// As in tusd, `--hooks-grpc-secure` without the server's certificate is a
/// configuration error; so is a client certificate without its key.
#[tokio::test]
async fn grpc_tls_settings_that_cannot_work_stop_the_server_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let cert = certs::SelfSigned::new(dir.path(), "client");
    let cases: [(&[&str], &str); 2] = [
        (
            &["--hooks-grpc-secure"],
            "--hooks-grpc-server-tls-certificate",
        ),
        (
            &[
                "--hooks-grpc-secure",
                "--hooks-grpc-server-tls-certificate",
                cert.cert_path(),
                "--hooks-grpc-client-tls-certificate",
                cert.cert_path(),
            ],
            "both the client certificate and its key",
        ),
    ];
    for (args, reason) in cases {
        let output = std::process::Command::new(BIN)
            .args(["--host", "127.0.0.1", "--port", "0", "--upload-dir"])
            .arg(dir.path().join("uploads"))
            .args(["--hooks-grpc", "127.0.0.1:1"])
            .args(args)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(reason), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one-line error: {stderr}");
    }
}

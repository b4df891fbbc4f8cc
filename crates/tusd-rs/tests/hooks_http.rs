//! HTTP hooks against a real receiver: tests/hooks/receiver.py, a Python
//! `http.server` written to tusd v2's documented hook format (standard
//! library only), started as a process on loopback.

#[path = "hooks/certs.rs"]
mod certs;
mod common;
#[path = "hooks/http_receiver.rs"]
mod http_receiver;

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use common::*;
use http_receiver::Receiver;
use reqwest::Method;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tusd_testsupport::InProcessServer;

async fn server_for(receiver: &Receiver, extra: &[&str]) -> InProcessServer {
    let url = receiver.url();
    let mut args = vec!["--hooks-http", url.as_str()];
    args.extend_from_slice(extra);
    InProcessServer::with_args(&args).await
}

/// An `Upload-Metadata` value from pairs.
fn metadata(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{k} {}",
                base64::engine::general_purpose::STANDARD.encode(v)
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

async fn post(server: &InProcessServer, length: u64, meta: &[(&str, &str)]) -> reqwest::Response {
    tus(Method::POST, &server.files_url())
        .header("Upload-Length", length.to_string())
        .header("Upload-Metadata", metadata(meta))
        .send()
        .await
        .unwrap()
}

const ALL: &str =
    "pre-create,post-create,post-receive,pre-finish,post-finish,pre-terminate,post-terminate";

#[tokio::test]
async fn pre_create_rejection_reaches_the_client_and_creates_nothing() {
    let receiver = Receiver::start();
    let server = server_for(&receiver, &[]).await;
    let r = post(&server, 5, &[("reject", "1")]).await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-reason"], "quota");
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.text().await.unwrap(), r#"{"message":"over quota"}"#);
    assert!(files_in(server.upload_dir()).is_empty());

    let calls = receiver.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let event = &calls[0]["Event"];
    assert_eq!(calls[0]["Type"], "pre-create");
    assert_eq!(event["Upload"]["Size"], 5);
    assert_eq!(event["Upload"]["MetaData"]["reject"], "1");
    assert_eq!(event["HTTPRequest"]["Method"], "POST");
    assert_eq!(event["HTTPRequest"]["URI"], "/files/");
    assert_eq!(event["HTTPRequest"]["Header"]["Upload-Length"][0], "5");
    assert!(event["HTTPRequest"]["Header"]["Host"][0].is_string());
    assert!(event["HTTPRequest"]["RemoteAddr"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
}

#[tokio::test]
async fn changed_metadata_is_stored() {
    let receiver = Receiver::start();
    let server = server_for(&receiver, &[]).await;
    let r = post(&server, 3, &[("rename", "new.txt"), ("secret", "x")]).await;
    assert_eq!(r.status(), 201);
    // pre-create's HTTPResponse is merged into the 201, as in tusd.
    assert_eq!(r.headers()["x-hook-seen"], "yes");
    let url = r.headers()["location"].to_str().unwrap().to_owned();
    let info: Value = serde_json::from_slice(
        &std::fs::read(server.upload_dir().join(format!("{}.info", id_of(&url)))).unwrap(),
    )
    .unwrap();
    assert_eq!(
        info["MetaData"],
        serde_json::json!({"filename": "new.txt", "checked": "yes"})
    );
    let created = {
        let id = id_of(&url).to_owned();
        let mut found = Vec::new();
        for _ in 0..200 {
            found = receiver.calls_of("post-create", &id);
            if !found.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        found
    };
    assert_eq!(created.len(), 1);
    assert_eq!(
        created[0]["Event"]["Upload"]["MetaData"]["filename"],
        "new.txt"
    );
}

#[tokio::test]
async fn changed_id_appears_in_location() {
    let receiver = Receiver::start();
    let server = server_for(&receiver, &[]).await;
    let r = post(&server, 3, &[("chosen_id", "my-chosen-id")]).await;
    assert_eq!(r.status(), 201);
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .ends_with("/files/my-chosen-id"));
}

#[tokio::test]
async fn an_invalid_changed_id_is_a_server_error_as_in_tusd() {
    let receiver = Receiver::start();
    let server = server_for(&receiver, &[]).await;
    let r = post(&server, 3, &[("chosen_id", "../escape")]).await;
    assert_eq!(r.status(), 500);
    let body = r.text().await.unwrap();
    assert!(
        body.starts_with("ERR_INTERNAL_SERVER_ERROR: validation error in FileInfoChanges"),
        "{body}"
    );
    assert!(files_in(server.upload_dir()).is_empty());
}

#[tokio::test]
async fn post_receive_stops_the_upload_and_terminates_it() {
    let receiver = Receiver::start();
    let server = server_for(&receiver, &["--progress-hooks-interval", "100ms"]).await;
    let r = post(&server, 1000, &[("stop", "1")]).await;
    let url = r.headers()["location"].to_str().unwrap().to_owned();
    let (mut writer, response) = start_patch(&url, 0);
    writer.write_all(&[1u8; 100]).await.unwrap();
    writer.flush().await.unwrap();
    // The body stays open: only the hook can end this request.
    let response = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .expect("the hook stops the PATCH")
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.text().await.unwrap(), "stopped by hook");
    drop(writer);
    assert_eq!(head(&url).await.status(), 404);
    assert!(files_in(server.upload_dir()).is_empty());
    let id = id_of(&url).to_owned();
    let progress = receiver.calls_of("post-receive", &id);
    assert!(!progress.is_empty());
    assert_eq!(progress[0]["Event"]["Upload"]["Offset"], 100);
    assert_eq!(progress[0]["Event"]["HTTPRequest"]["Method"], "PATCH");
    eventually("post-terminate", 200, || {
        let found = !receiver.calls_of("post-terminate", &id).is_empty();
        async move { found }
    })
    .await;
}

#[tokio::test]
async fn pre_finish_answer_is_what_the_final_patch_gets() {
    let receiver = Receiver::start();
    let server = server_for(&receiver, &["--hooks-enabled-events", ALL]).await;

    let r = post(&server, 4, &[("refuse_finish", "1")]).await;
    let url = r.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(patch(&url, 0, &b"ab"[..]).await.status(), 204);
    let last = patch(&url, 2, &b"cd"[..]).await;
    assert_eq!(last.status(), 422);
    assert_eq!(last.text().await.unwrap(), "not this file");
    let id = id_of(&url).to_owned();
    let pre_finish = receiver.calls_of("pre-finish", &id);
    assert_eq!(pre_finish.len(), 1);
    assert_eq!(pre_finish[0]["Event"]["Upload"]["Offset"], 4);

    // A pre-finish header is added to the final 204.
    let r = post(&server, 2, &[("finish_header", "1")]).await;
    let url = r.headers()["location"].to_str().unwrap().to_owned();
    let last = patch(&url, 0, &b"ab"[..]).await;
    assert_eq!(last.status(), 204);
    assert_eq!(last.headers()["x-finished"], "yes");
    assert_eq!(last.headers()["upload-offset"], "2");
}

#[tokio::test]
async fn post_finish_arrives_once_with_the_final_storage() {
    let receiver = Receiver::start();
    let server = server_for(&receiver, &[]).await;
    let r = post(&server, 6, &[("filename", "a.txt")]).await;
    let url = r.headers()["location"].to_str().unwrap().to_owned();
    for (offset, chunk) in [(0, &b"ab"[..]), (2, b"cd"), (4, b"ef")] {
        assert_eq!(patch(&url, offset, chunk).await.status(), 204);
    }
    // HEAD and GET of the finished upload fire nothing more.
    assert_eq!(offset(&url).await, 6);
    assert_eq!(get_bytes(&url).await.1, b"abcdef");
    let id = id_of(&url).to_owned();
    eventually("post-finish", 200, || {
        let found = !receiver.calls_of("post-finish", &id).is_empty();
        async move { found }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let finished = receiver.calls_of("post-finish", &id);
    assert_eq!(finished.len(), 1, "{finished:?}");
    let upload = &finished[0]["Event"]["Upload"];
    assert_eq!(upload["Offset"], 6);
    assert_eq!(upload["Size"], 6);
    assert_eq!(upload["Storage"]["Type"], "filestore");
    let path = upload["Storage"]["Path"].as_str().unwrap();
    assert_eq!(std::fs::read(path).unwrap(), b"abcdef");
    // Every PATCH reported its progress (post-* hooks run concurrently, so
    // they may arrive in any order, as in tusd).
    let mut offsets: Vec<_> = receiver
        .calls_of("post-receive", &id)
        .iter()
        .map(|c| c["Event"]["Upload"]["Offset"].as_u64().unwrap())
        .collect();
    offsets.sort();
    assert_eq!(offsets, [2, 4, 6]);
}

#[tokio::test]
async fn termination_refused_by_pre_terminate_keeps_the_upload() {
    let receiver = Receiver::start();
    let server = server_for(&receiver, &["--hooks-enabled-events", ALL]).await;
    let r = post(&server, 4, &[("keep", "1")]).await;
    let url = r.headers()["location"].to_str().unwrap().to_owned();
    let refused = tus(Method::DELETE, &url).send().await.unwrap();
    assert_eq!(refused.status(), 409);
    assert_eq!(refused.text().await.unwrap(), "keep it");
    assert_eq!(head(&url).await.status(), 200);

    let r = post(&server, 4, &[]).await;
    let url = r.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(
        tus(Method::DELETE, &url).send().await.unwrap().status(),
        204
    );
    let id = id_of(&url).to_owned();
    assert_eq!(receiver.calls_of("pre-terminate", &id).len(), 1);
    eventually("post-terminate", 200, || {
        let found = receiver.calls_of("post-terminate", &id).len() == 1;
        async move { found }
    })
    .await;
}

#[tokio::test]
async fn a_failing_receiver_is_retried() {
    let receiver = Receiver::start();
    let server = server_for(
        &receiver,
        &["--hooks-http-retry", "3", "--hooks-http-backoff", "50ms"],
    )
    .await;
    let r = post(&server, 3, &[("fail", "2"), ("token", "retry-1")]).await;
    assert_eq!(r.status(), 201);
    let pre_create: Vec<_> = receiver
        .calls()
        .into_iter()
        .filter(|c| c["Type"] == "pre-create")
        .collect();
    assert_eq!(pre_create.len(), 3, "two failures, then success");

    // More failures than retries: the blocking hook fails, 500 as in tusd.
    let r = post(&server, 3, &[("fail", "9"), ("token", "retry-2")]).await;
    assert_eq!(r.status(), 500);
    let body = r.text().await.unwrap();
    assert!(
        body.starts_with(
            "ERR_INTERNAL_SERVER_ERROR: unexpected response code from hook endpoint (500)"
        ),
        "{body}"
    );
    // One call per creation, retries included; the second one failed.
    let text = metrics(&server).await;
    let labels = r#"{hooktype="pre-create",kind="http"}"#;
    assert_eq!(
        metric(&text, &format!("tusd_hook_invocations_total{labels}")),
        2.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, &format!("tusd_hook_errors_total{labels}")),
        1.0
    );
    assert_eq!(
        metric(&text, &format!("tusd_hook_duration_seconds_count{labels}")),
        2.0
    );
}

#[tokio::test]
async fn an_unreachable_blocking_hook_answers_500() {
    let port = tusd_testsupport::ports::free_port();
    let url = format!("http://127.0.0.1:{port}/nobody");
    let server = InProcessServer::with_args(&[
        "--hooks-http",
        &url,
        "--hooks-http-retry",
        "1",
        "--hooks-http-backoff",
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
        .starts_with("ERR_INTERNAL_SERVER_ERROR: hook endpoint unreachable"));
    // Uploads without a blocking hook still work: post-* failures are only logged.
    let server = InProcessServer::with_args(&[
        "--hooks-http",
        &url,
        "--hooks-http-retry",
        "0",
        "--hooks-enabled-events",
        "post-create,post-finish",
    ])
    .await;
    let url = create(&server, 2).await;
    assert_eq!(patch(&url, 0, &b"ab"[..]).await.status(), 204);
}

#[tokio::test]
async fn forwarded_headers_reach_the_receiver() {
    let receiver = Receiver::start();
    let server = server_for(&receiver, &["--hooks-http-forward-headers", "x-auth-token"]).await;
    let r = tus(Method::POST, &server.files_url())
        .header("Upload-Length", "3")
        .header("X-Auth-Token", "secret-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let calls = receiver.calls();
    assert_eq!(calls[0]["_forwarded"]["x-auth-token"], "secret-123");
    assert_eq!(
        calls[0]["Event"]["HTTPRequest"]["Header"]["X-Auth-Token"][0],
        "secret-123"
    );
}

#[tokio::test]
async fn tus_js_client_sees_a_pre_create_rejection_as_an_error_with_the_hooks_body() {
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients/js");
    assert!(
        js.join("node_modules/tus-js-client/package.json").is_file(),
        "tus-js-client is not installed: run scripts/install-clients.sh"
    );
    let receiver = Receiver::start();
    let server = server_for(&receiver, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("reject-me.bin");
    std::fs::write(&file, b"some bytes").unwrap();
    let output = tokio::process::Command::new("node")
        .current_dir(&js)
        .arg(js.join("upload.mjs"))
        .arg(server.files_url())
        .arg(&file)
        .arg("plain")
        .output()
        .await
        .expect("running node");
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let error: Value = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["event"] == "error")
        .unwrap_or_else(|| panic!("no error event: {stdout}"));
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("response code: 403"), "{message}");
    assert!(message.contains(r#"{"message":"over quota"}"#), "{message}");
    assert!(files_in(server.upload_dir()).is_empty());
}

/// Beyond tusd: `pre-access` decides on every request to an existing upload.
/// The receiver refuses uploads marked `private` unless the request carries
/// its bearer token.
#[tokio::test]
async fn pre_access_refuses_head_and_patch_unless_the_receiver_allows() {
    let receiver = Receiver::start();
    let server = server_for(
        &receiver,
        &["--hooks-enabled-events", "pre-create,pre-access"],
    )
    .await;
    let r = post(&server, 4, &[("private", "1")]).await;
    assert_eq!(r.status(), 201);
    let url = r.headers()["location"].to_str().unwrap().to_owned();
    let id = id_of(&url).to_owned();
    let authorized = |method: Method| tus(method, &url).header("Authorization", "Bearer let-me-in");

    let refused = head(&url).await;
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.headers()["www-authenticate"], "Bearer");
    let refused = patch(&url, 0, &b"ab"[..]).await;
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.headers()["www-authenticate"], "Bearer");
    assert_eq!(refused.text().await.unwrap(), "who are you");
    assert_eq!(data_len(&server, &url), 0, "a refused PATCH stores nothing");

    let allowed = authorized(Method::HEAD).send().await.unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(allowed.headers()["upload-offset"], "0");
    let allowed = authorized(Method::PATCH)
        .header("Upload-Offset", "0")
        .header("Content-Type", OCTETS)
        .body(&b"ab"[..])
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 204);
    assert_eq!(allowed.headers()["upload-offset"], "2");

    // GET and DELETE are asked about too.
    assert_eq!(get_bytes(&url).await.0, 401);
    let got = authorized(Method::GET).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(&got.bytes().await.unwrap()[..], b"ab");
    assert_eq!(
        tus(Method::DELETE, &url).send().await.unwrap().status(),
        401
    );
    assert_eq!(
        data_len(&server, &url),
        2,
        "a refused DELETE removes nothing"
    );
    assert_eq!(
        authorized(Method::DELETE).send().await.unwrap().status(),
        204
    );

    // Each request was one call, with the upload's state and the request.
    let access = receiver.calls_of("pre-access", &id);
    let methods: Vec<_> = access
        .iter()
        .map(|c| c["Event"]["HTTPRequest"]["Method"].as_str().unwrap())
        .collect();
    assert_eq!(
        methods,
        ["HEAD", "PATCH", "HEAD", "PATCH", "GET", "GET", "DELETE", "DELETE"]
    );
    let allowed_patch = &access[3]["Event"];
    assert_eq!(allowed_patch["Upload"]["Offset"], 0);
    assert_eq!(allowed_patch["Upload"]["Size"], 4);
    assert_eq!(allowed_patch["Upload"]["MetaData"]["private"], "1");
    assert_eq!(allowed_patch["HTTPRequest"]["URI"], format!("/files/{id}"));
    assert_eq!(
        allowed_patch["HTTPRequest"]["Header"]["Authorization"][0],
        "Bearer let-me-in"
    );
    assert_eq!(
        allowed_patch["HTTPRequest"]["Header"]["Upload-Offset"][0],
        "0"
    );
    assert_eq!(access[6]["Event"]["Upload"]["Offset"], 2);

    // No upload, no question: a 404, as without hooks.
    let before = receiver.calls().len();
    let missing = format!("{}no-such-upload", server.files_url());
    assert_eq!(head(&missing).await.status(), 404);
    assert_eq!(receiver.calls().len(), before);

    let text = metrics(&server).await;
    let labels = r#"{hooktype="pre-access",kind="http"}"#;
    assert_eq!(
        metric(&text, &format!("tusd_hook_invocations_total{labels}")),
        8.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, &format!("tusd_hook_duration_seconds_count{labels}")),
        8.0
    );
}

/// tusd's receivers never see `pre-access` unless it is named: neither
/// with the default events nor with an empty list (tusd's "all").
#[tokio::test]
async fn pre_access_is_off_unless_named() {
    let receiver = Receiver::start();
    for events in [None, Some("")] {
        let server = match events {
            None => server_for(&receiver, &[]).await,
            Some(list) => server_for(&receiver, &["--hooks-enabled-events", list]).await,
        };
        let r = post(&server, 2, &[("private", "1")]).await;
        let url = r.headers()["location"].to_str().unwrap().to_owned();
        assert_eq!(head(&url).await.status(), 200);
        assert_eq!(patch(&url, 0, &b"ab"[..]).await.status(), 204);
        assert_eq!(get_bytes(&url).await, (200, b"ab".to_vec()));
    }
    let calls = receiver.calls();
    assert!(calls.iter().any(|c| c["Type"] == "pre-create"));
    assert!(
        !calls.iter().any(|c| c["Type"] == "pre-access"),
        "{calls:?}"
    );
}

/// A blocking hook that fails: pre-access answers 500, as the others do,
/// and the request is not served.
#[tokio::test]
async fn an_unreachable_pre_access_hook_answers_500() {
    let port = tusd_testsupport::ports::free_port();
    let hooks = format!("http://127.0.0.1:{port}/nobody");
    let server = InProcessServer::with_args(&[
        "--hooks-http",
        &hooks,
        "--hooks-http-retry",
        "0",
        "--hooks-enabled-events",
        "pre-access",
    ])
    .await;
    let url = create(&server, 2).await;
    let r = patch(&url, 0, &b"ab"[..]).await;
    assert_eq!(r.status(), 500);
    assert!(r
        .text()
        .await
        .unwrap()
        .starts_with("ERR_INTERNAL_SERVER_ERROR: hook endpoint unreachable"));
    assert_eq!(data_len(&server, &url), 0);
    let text = metrics(&server).await;
    let labels = r#"{hooktype="pre-access",kind="http"}"#;
    assert_eq!(
        metric(&text, &format!("tusd_hook_errors_total{labels}")),
        1.0,
        "{text}"
    );
}

/// An https:// receiver is verified against the system's CA certificates:
/// a self-signed one is not trusted (the blocking hook fails, 500, and the
/// receiver hears nothing) unless `--hooks-http-skip-verify`, as in tusd.
#[tokio::test]
async fn an_https_receiver_with_a_self_signed_certificate_needs_skip_verify() {
    let dir = tempfile::tempdir().unwrap();
    let cert = certs::SelfSigned::new(dir.path(), "receiver");
    let receiver = Receiver::start_https(&cert.cert, &cert.key);
    assert!(receiver.url().starts_with("https://"));

    let server = server_for(&receiver, &["--hooks-http-retry", "0"]).await;
    let r = post(&server, 3, &[]).await;
    assert_eq!(r.status(), 500);
    let body = r.text().await.unwrap();
    assert!(
        body.starts_with("ERR_INTERNAL_SERVER_ERROR: hook endpoint unreachable"),
        "{body}"
    );
    assert!(receiver.calls().is_empty());

    let server = server_for(&receiver, &["--hooks-http-skip-verify"]).await;
    let r = post(&server, 3, &[("reject", "1")]).await;
    assert_eq!(r.status(), 403, "the receiver's answer, over TLS");
    assert_eq!(r.text().await.unwrap(), r#"{"message":"over quota"}"#);
    assert_eq!(receiver.calls().len(), 1);
}

/// The other side: an https:// receiver whose certificate the system's CA
/// store holds is trusted without `--hooks-http-skip-verify`. The store is
/// pointed at the receiver's certificate with `SSL_CERT_FILE` (read by
/// rustls-native-certs as by OpenSSL), on a server process of its own so
/// that no other test sees the variable.
#[tokio::test]
async fn an_https_receiver_in_the_system_store_is_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let cert = certs::SelfSigned::new(dir.path(), "receiver");
    let receiver = Receiver::start_https(&cert.cert, &cert.key);
    let port = tusd_testsupport::ports::free_port();
    let child = std::process::Command::new(BIN)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .arg("--upload-dir")
        .arg(dir.path().join("uploads"))
        .args(["--hooks-http", &receiver.url(), "--hooks-http-retry", "0"])
        .env("SSL_CERT_FILE", &cert.cert)
        .env_remove("SSL_CERT_DIR")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _server = KillOnDrop(child);
    let files = format!("http://127.0.0.1:{port}/files/");
    eventually("the server listens", 500, || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
    let r = tus(Method::POST, &files)
        .header("Upload-Length", "3")
        .header("Upload-Metadata", metadata(&[("reject", "1")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "the receiver's answer, over verified TLS");
    assert_eq!(receiver.calls().len(), 1);
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

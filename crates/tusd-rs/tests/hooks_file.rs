//! File hooks (`--hooks-dir`) with shell scripts from tests/hooks/files,
//! written to tusd v2's documented format: the JSON on stdin, `TUS_*` in
//! the environment, the answer on stdout.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::Value;
use tusd_testsupport::InProcessServer;

/// The scripts copied into a fresh directory (their logs land there).
fn hooks_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hooks/files");
    for entry in std::fs::read_dir(source).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

async fn server(hooks: &Path, events: &str) -> InProcessServer {
    InProcessServer::with_args(&[
        "--hooks-dir",
        hooks.to_str().unwrap(),
        "--hooks-enabled-events",
        events,
    ])
    .await
}

#[tokio::test]
async fn a_shell_pre_create_hook_rejects_with_its_own_response() {
    let hooks = hooks_dir();
    let server = server(hooks.path(), "").await;
    let r = tus(Method::POST, &server.files_url())
        .header("Upload-Length", "3")
        .header("Upload-Metadata", "reject MQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-hook"], "file");
    assert_eq!(r.text().await.unwrap(), "no uploads from shell");
    assert!(files_in(server.upload_dir()).is_empty());

    // Metadata changed by the hook is what is stored.
    let url = create_with(
        &server,
        &[("Upload-Length", "3"), ("Upload-Metadata", "rename MQ==")],
    )
    .await;
    let r = head(&url).await;
    let stored = r.headers()["upload-metadata"].to_str().unwrap().to_owned();
    assert_eq!(stored, "filename ZnJvbS1zaGVsbC50eHQ="); // from-shell.txt
}

#[tokio::test]
async fn post_finish_runs_once_with_tus_variables_and_the_event_json() {
    let hooks = hooks_dir();
    let server = server(hooks.path(), "pre-create,post-finish").await;
    let url = create(&server, 4).await;
    assert_eq!(patch(&url, 0, &b"ab"[..]).await.status(), 204);
    assert_eq!(patch(&url, 2, &b"cd"[..]).await.status(), 204);
    let id = id_of(&url).to_owned();
    let log = hooks.path().join("calls.log");
    let expected = format!("post-finish {id} 4 4");
    eventually("post-finish ran", 250, || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let found = text.contains(&expected);
        async move { found }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches("post-finish").count(), 1, "{text}");
    let json = std::fs::read_to_string(hooks.path().join("post-finish.json")).unwrap();
    let event: Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(event["Type"], "post-finish");
    assert_eq!(event["Event"]["Upload"]["ID"], id.as_str());
    assert_eq!(event["Event"]["Upload"]["Storage"]["Type"], "filestore");
    assert_eq!(event["Event"]["HTTPRequest"]["Method"], "PATCH");
}

#[tokio::test]
async fn a_shell_pre_terminate_hook_keeps_the_upload() {
    let hooks = hooks_dir();
    let server = server(hooks.path(), "pre-terminate").await;
    let url = create(&server, 4).await;
    let r = tus(Method::DELETE, &url).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.text().await.unwrap(), "shell says keep");
    assert_eq!(head(&url).await.status(), 200);
}

#[tokio::test]
async fn a_failing_pre_finish_script_answers_500_and_a_missing_script_is_no_hook() {
    let hooks = hooks_dir();
    // post-create has no script: not hooked, creation works.
    let server = server(hooks.path(), "post-create,pre-finish").await;
    let url = create_with(
        &server,
        &[("Upload-Length", "2"), ("Upload-Metadata", "broken MQ==")],
    )
    .await;
    let r = patch(&url, 0, &b"ab"[..]).await;
    assert_eq!(r.status(), 500);
    assert!(r
        .text()
        .await
        .unwrap()
        .starts_with("ERR_INTERNAL_SERVER_ERROR: unexpected return code 3"));
    // The bytes are stored; as in tusd, the upload is complete.
    assert_eq!(offset(&url).await, 2);
}

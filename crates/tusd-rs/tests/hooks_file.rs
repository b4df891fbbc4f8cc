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

/// Beyond tusd: a `pre-access` script refuses HEAD and PATCH of an upload
/// marked `private` unless the request carries its token.
#[tokio::test]
async fn a_shell_pre_access_hook_refuses_head_and_patch_without_the_token() {
    let hooks = hooks_dir();
    let server = server(hooks.path(), "pre-access").await;
    let url = create_with(
        &server,
        &[("Upload-Length", "4"), ("Upload-Metadata", "private MQ==")],
    )
    .await;
    let refused = head(&url).await;
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.headers()["www-authenticate"], "Bearer");
    let refused = patch(&url, 0, &b"ab"[..]).await;
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.text().await.unwrap(), "shell asks who you are");
    assert_eq!(data_len(&server, &url), 0);

    let token = ("Authorization", "Bearer let-me-in");
    let allowed = tus(Method::HEAD, &url)
        .header(token.0, token.1)
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    let allowed = patch_request(&url, 0, &b"ab"[..])
        .header(token.0, token.1)
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 204);
    assert_eq!(data_len(&server, &url), 2);

    // An upload not marked private is let through without a token.
    let open = create(&server, 2).await;
    assert_eq!(patch(&open, 0, &b"ab"[..]).await.status(), 204);

    let log = std::fs::read_to_string(hooks.path().join("access.log")).unwrap();
    let calls: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let methods: Vec<_> = calls
        .iter()
        .map(|c| c["Event"]["HTTPRequest"]["Method"].as_str().unwrap())
        .collect();
    assert_eq!(methods, ["HEAD", "PATCH", "HEAD", "PATCH", "PATCH"]);
    assert!(calls.iter().all(|c| c["Type"] == "pre-access"));
    assert_eq!(calls[1]["Event"]["Upload"]["ID"], id_of(&url));
    assert_eq!(calls[1]["Event"]["Upload"]["Offset"], 0);

    let text = metrics(&server).await;
    let labels = r#"{hooktype="pre-access",kind="file"}"#;
    assert_eq!(
        metric(&text, &format!("tusd_hook_invocations_total{labels}")),
        5.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, &format!("tusd_hook_errors_total{labels}")),
        0.0
    );
}

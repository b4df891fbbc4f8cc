//! What operators see: `/metrics` in OpenMetrics text, and one structured
//! log line per request.

mod common;

use common::*;
use reqwest::Method;
use tusd_testsupport::TusServer;

#[tokio::test]
async fn metrics_name_everything_and_move_after_an_upload() {
    let server = TusServer::start(BIN, &[]);
    let r = client()
        .get(format!("{}/metrics", server.origin()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let before = r.text().await.unwrap();
    assert!(before.trim_end().ends_with("# EOF"), "{before}");
    let url = create(&server, 5).await;
    assert_eq!(patch(&url, 0, &b"hello"[..]).await.status(), 204);
    assert_eq!(patch(&url, 0, &b"hello"[..]).await.status(), 409);
    let doomed = create(&server, 1).await;
    assert_eq!(
        tus(Method::DELETE, &doomed).send().await.unwrap().status(),
        204
    );

    let after = metrics(&server).await;
    for family in [
        "tusd_requests",
        "tusd_errors",
        "tusd_bytes_received",
        "tusd_uploads_created",
        "tusd_uploads_finished",
        "tusd_uploads_terminated",
        "tusd_connections_open",
        "tusd_lock_waits",
        "tusd_lock_wait_seconds",
    ] {
        assert!(
            after.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{after}"
        );
    }

    let moved = |name: &str| metric(&after, name) - metric(&before, name);
    assert_eq!(moved("tusd_bytes_received_total"), 5.0, "{after}");
    assert_eq!(moved("tusd_uploads_created_total"), 2.0);
    assert_eq!(moved("tusd_uploads_finished_total"), 1.0);
    assert_eq!(moved("tusd_uploads_terminated_total"), 1.0);
    assert_eq!(moved(r#"tusd_requests_total{method="POST"}"#), 2.0);
    assert_eq!(moved(r#"tusd_requests_total{method="PATCH"}"#), 2.0);
    assert_eq!(moved(r#"tusd_errors_total{status="409"}"#), 1.0);
    assert!(moved("tusd_lock_waits_total") >= 3.0);
    assert!(moved("tusd_lock_wait_seconds_count") >= 3.0);
    assert!(metric(&after, "tusd_connections_open") >= 1.0, "{after}");
}

#[tokio::test]
async fn lock_waits_are_counted_when_a_request_takes_over() {
    let server = TusServer::start(BIN, &[]);
    let url = create(&server, 10).await;
    let (_writer, patching) = stalled_patch(&server, &url, b"ab").await;
    let before = metrics(&server).await;
    assert_eq!(offset(&url).await, 2);
    assert_eq!(patching.await.unwrap().status(), 204);
    let after = metrics(&server).await;
    let moved = |name: &str| metric(&after, name) - metric(&before, name);
    assert_eq!(moved("tusd_lock_waits_total"), 1.0, "{after}");
    assert_eq!(moved("tusd_lock_timeouts_total"), 0.0);
    assert!(metric(&after, "tusd_lock_wait_seconds_sum") > 0.0);
}

#[tokio::test]
async fn one_json_log_line_per_request() {
    let server = TusServer::start(BIN, &["--log-format", "json"]);
    let url = create(&server, 5).await;
    let id = id_of(&url).to_owned();
    assert_eq!(patch(&url, 0, &b"hello"[..]).await.status(), 204);
    assert_eq!(head(&url).await.status(), 200);

    let s = &server;
    eventually("three request lines logged", 200, || async move {
        request_lines(&s.log()).len() >= 3
    })
    .await;
    let lines = request_lines(&server.log());
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let expect = [
        ("POST", "", 201, 0),
        ("PATCH", id.as_str(), 204, 5),
        ("HEAD", id.as_str(), 200, 0),
    ];
    for (line, (method, line_id, status, bytes)) in lines.iter().zip(expect) {
        assert_eq!(line["method"], method, "{line}");
        assert_eq!(line["id"], line_id, "{line}");
        assert_eq!(line["status"], status, "{line}");
        assert_eq!(line["bytes"], bytes, "{line}");
        assert!(
            line["duration_ms"].as_f64().is_some_and(|d| d >= 0.0),
            "{line}"
        );
    }
}

fn request_lines(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("status").is_some() && v.get("method").is_some())
        .collect()
}

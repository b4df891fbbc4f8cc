//! Hostile and broken input, one test per defence of docs/security.md: each
//! asserts the status, the one-line reason, and that stored state did not
//! change (or changed exactly as it should). Connection limits and timeouts
//! are in `connections.rs`.

mod common;

use common::*;
use reqwest::Method;
use tusd_testsupport::TusServer;

/// The body of an error answer: one line, no server path in it.
async fn one_line(response: reqwest::Response) -> String {
    let text = response.text().await.unwrap();
    assert!(text.ends_with('\n'), "{text:?}");
    assert_eq!(text.trim_end().lines().count(), 1, "{text:?}");
    assert!(!text.contains("/tmp"), "a server path in {text:?}");
    text
}

fn info_path(server: &TusServer, url: &str) -> std::path::PathBuf {
    server.upload_dir().join(format!("{}.info", id_of(url)))
}

#[tokio::test]
async fn client_chosen_method_names_never_become_metric_labels() {
    let server = TusServer::start(BIN, &[]);
    for i in 0..50 {
        let name = format!("BOGUS{i}");
        let via_line = raw(
            &server,
            format!("{name} /files/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(via_line.starts_with("HTTP/1.1 "), "{via_line}");
        let via_override = tus(Method::POST, &server.files_url())
            .header("X-HTTP-Method-Override", format!("OVERRIDE{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(via_override.status(), 405);
    }
    let text = metrics(&server).await;
    assert!(!text.contains("BOGUS") && !text.contains("OVERRIDE"));
    let other = metric(&text, "tusd_requests_total{method=\"other\"}");
    assert!(other >= 100.0, "{other}\n{text}");
}

#[tokio::test]
async fn a_long_method_name_is_cut_in_the_log_line() {
    let server = TusServer::start(BIN, &[]);
    let name = "X".repeat(5000);
    raw(
        &server,
        format!("{name} /files/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    let log = server.log();
    assert!(!log.contains(&"X".repeat(17)), "uncut method in the log");
}

#[tokio::test]
async fn the_override_applies_to_post_only() {
    let server = TusServer::start(BIN, &[]);
    let url = create(&server, 3).await;
    let get = client()
        .get(&url)
        .header("X-HTTP-Method-Override", "DELETE")
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_ne!(get.status(), 204);
    assert_eq!(head(&url).await.status(), 200, "the GET deleted the upload");
    let post = tus(Method::POST, &url)
        .header("X-HTTP-Method-Override", "DELETE")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 204);
    assert_eq!(head(&url).await.status(), 404);
}

#[tokio::test]
async fn a_transfer_coding_other_than_chunked_is_501_and_stores_nothing() {
    let server = TusServer::start(BIN, &[]);
    let url = create(&server, 100).await;
    let path = url.split_once("/files/").unwrap().1;
    let request = format!(
        "PATCH /files/{path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n\
         Upload-Offset: 0\r\nContent-Type: {OCTETS}\r\n\
         Transfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    );
    let response = raw(&server, request.as_bytes()).await;
    assert_eq!(raw_status(&response), 501, "{response}");
    assert!(response.contains("only chunked"), "{response}");
    assert_eq!(data_len(&server, &url), 0);
}

#[tokio::test]
async fn a_partial_named_twice_or_too_many_partials_is_400() {
    let server = TusServer::start(BIN, &["--max-concat-partials", "3"]);
    let partial = create_with(
        &server,
        &[("Upload-Length", "4"), ("Upload-Concat", "partial")],
    )
    .await;
    assert_eq!(patch(&partial, 0, &b"abcd"[..]).await.status(), 204);
    let files_before = files_in(server.upload_dir());
    let concat = |list: String| {
        tus(Method::POST, &server.files_url())
            .header("Upload-Concat", format!("final;{list}"))
            .send()
    };
    let twice = concat(format!("{partial} {partial}")).await.unwrap();
    assert_eq!(twice.status(), 400);
    assert!(one_line(twice).await.contains("more than once"));
    let others: Vec<String> = futures::future::join_all((0..3).map(|_| {
        create_with(
            &server,
            &[("Upload-Length", "1"), ("Upload-Concat", "partial")],
        )
    }))
    .await;
    let files_with_others = files_in(server.upload_dir());
    let four = concat(format!("{partial} {}", others.join(" ")))
        .await
        .unwrap();
    assert_eq!(four.status(), 400);
    assert!(one_line(four).await.contains("at most 3"));
    assert_eq!(files_in(server.upload_dir()), files_with_others);
    assert!(files_before.len() < files_with_others.len());
}

#[tokio::test]
async fn a_final_whose_partial_was_deleted_is_410_not_the_client_s_fault() {
    let server = TusServer::start(BIN, &[]);
    let partial = create_with(
        &server,
        &[("Upload-Length", "4"), ("Upload-Concat", "partial")],
    )
    .await;
    let final_url = create_with(&server, &[("Upload-Concat", &format!("final;{partial}"))]).await;
    let deleted = tus(Method::DELETE, &partial).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    let answer = head(&final_url).await;
    assert_eq!(answer.status(), 410);
    let answer = client().get(&final_url).send().await.unwrap();
    assert_eq!(answer.status(), 410);
    assert!(one_line(answer).await.contains("never be completed"));
}

#[tokio::test]
async fn an_info_naming_another_upload_cannot_redirect_a_write() {
    let server = TusServer::start(BIN, &[]);
    let victim = create(&server, 5).await;
    let url = create(&server, 5).await;
    // Rewrite url's .info to claim the victim's id.
    let path = info_path(&server, &url);
    let mut info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    info["ID"] = serde_json::Value::String(id_of(&victim).to_owned());
    std::fs::write(&path, serde_json::to_vec(&info).unwrap()).unwrap();

    assert_eq!(patch(&url, 0, &b"hello"[..]).await.status(), 204);
    assert_eq!(data_len(&server, &url), 5);
    assert_eq!(
        data_len(&server, &victim),
        0,
        "the write went to the victim"
    );
}

#[tokio::test]
async fn inconsistent_or_strange_files_are_500_and_other_uploads_keep_working() {
    let server = TusServer::start(BIN, &[]);
    let healthy = create(&server, 3).await;

    // Size below the data file's length.
    let short = create(&server, 2).await;
    std::fs::write(server.upload_dir().join(id_of(&short)), b"abcdef").unwrap();
    let answer = head(&short).await;
    assert_eq!(answer.status(), 500);
    let answer = patch(&short, 6, &b"x"[..]).await;
    assert_eq!(answer.status(), 500);
    assert!(one_line(answer)
        .await
        .contains("more than the upload's length"));

    // A FIFO where the .info should be: answered at once, not hung.
    let fifo = create(&server, 3).await;
    let path = info_path(&server, &fifo);
    std::fs::remove_file(&path).unwrap();
    let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o644) }, 0);
    let answer = tokio::time::timeout(std::time::Duration::from_secs(10), head(&fifo))
        .await
        .expect("a FIFO .info hung the request");
    assert_eq!(answer.status(), 500);

    // A data file that is a symlink to a directory.
    let linked = create(&server, 3).await;
    let data = server.upload_dir().join(id_of(&linked));
    std::fs::remove_file(&data).unwrap();
    std::os::unix::fs::symlink("/", &data).unwrap();
    let answer = patch(&linked, 0, &b"abc"[..]).await;
    assert_eq!(answer.status(), 500);
    assert!(one_line(answer).await.contains("not a regular file"));

    // A 20 MB .info is not read whole on every request.
    let huge = create(&server, 3).await;
    let file = std::fs::File::create(info_path(&server, &huge)).unwrap();
    file.set_len(20 << 20).unwrap();
    let answer = head(&huge).await;
    assert_eq!(answer.status(), 500);

    assert_eq!(patch(&healthy, 0, &b"abc"[..]).await.status(), 204);
    assert_eq!(get_bytes(&healthy).await, (200, b"abc".to_vec()));
}

#[tokio::test]
async fn creations_past_the_per_client_limit_are_429() {
    let server = TusServer::start(BIN, &["--creations-per-minute", "2", "--behind-proxy"]);
    let from = |client_ip: &'static str| {
        tus(Method::POST, &server.files_url())
            .header("Upload-Length", "1")
            .header("X-Forwarded-For", format!("203.0.113.99, {client_ip}"))
            .send()
    };
    assert_eq!(from("192.0.2.1").await.unwrap().status(), 201);
    assert_eq!(from("192.0.2.1").await.unwrap().status(), 201);
    let files = files_in(server.upload_dir());
    let refused = from("192.0.2.1").await.unwrap();
    assert_eq!(refused.status(), 429);
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    assert!(one_line(refused).await.contains("too many uploads"));
    assert_eq!(
        files_in(server.upload_dir()),
        files,
        "the refused POST created files"
    );
    assert_eq!(from("192.0.2.2").await.unwrap().status(), 201);
}

/// Disk full in the middle of a PATCH: 507 with a one-line reason, the bytes
/// that fit are kept and the offset says exactly that. Needs root to mount a
/// small tmpfs; skipped with a message otherwise.
#[tokio::test]
async fn a_full_disk_mid_patch_is_507_and_the_offset_stays_truthful() {
    let mount = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(mount.path())
        .status();
    if !matches!(mounted, Ok(s) if s.success()) {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(mount.path().to_owned());
    let server = TusServer::start_in(BIN, mount.path(), &[]);
    let url = create(&server, 4 << 20).await;
    let answer = patch(&url, 0, vec![7u8; 2 << 20]).await;
    assert_eq!(answer.status(), 507);
    assert!(one_line(answer).await.contains("storage is full"));
    let stored = data_len(&server, &url);
    assert!(stored > 0 && stored < 2 << 20, "{stored}");
    assert_eq!(offset(&url).await, stored);
    assert!(
        server.log().contains(id_of(&url)) && server.log().contains("request failed"),
        "{}",
        server.log()
    );
}

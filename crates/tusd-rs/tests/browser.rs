//! tusd-rs driven from a real browser: Debian's headless chromium, through
//! chromedriver and Selenium (tests/browser/driver.py), loading the pages of
//! examples/browser/ (Uppy's Dashboard, tus-js-client) from one loopback
//! origin (examples/browser/serve.py) while tusd-rs listens on another. So
//! every tus request is cross-origin, with the preflights, exposed headers,
//! page reloads and network stack of a browser, which tus-js-client under
//! Node (tests/clients.rs) has none of.
//!
//! "Mid-way" is made to last by throttling the browser's uploads (the
//! DevTools protocol's network conditions), never by timing: the tests act
//! on the progress the page reports and the offsets the server reports.
//!
//! Chromium, chromedriver, Selenium, Uppy and tus-js-client are installed by
//! scripts/install-browser.sh; without them these tests fail (they do not
//! skip).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine as _;
use common::child_output::{read_output, ChildOutput};
use common::{
    assert_same_bytes, client, get_bytes, head, id_of, metric, metrics, offset, source_file, BIN,
};
use serde_json::Value;
use tusd_testsupport::{EtcdServer, InProcessServer, Nginx, TusServer};

const MIB: usize = 1024 * 1024;
/// Upload speed while a test needs "mid-way" to last: a few seconds for the
/// files below, on loopback.
const THROTTLE: &str = "2000000";
/// Safety net against a hung browser; no test expects to come near it.
const LINE_TIMEOUT: Duration = Duration::from_secs(180);
const INSTALL_HINT: &str = "run scripts/install-browser.sh (from the repository root)";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// examples/browser/serve.py, serving the pages on 127.0.0.1.
struct Pages {
    child: Child,
    port: u16,
}

impl Pages {
    fn start() -> Pages {
        let dir = repo_root().join("examples/browser");
        assert!(
            dir.join("node_modules/uppy/dist/uppy.min.mjs").is_file()
                && dir
                    .join("node_modules/tus-js-client/dist/tus.min.js")
                    .is_file(),
            "Uppy or tus-js-client is missing under {}: {INSTALL_HINT}",
            dir.display()
        );
        let mut child = Command::new("python3")
            .arg(dir.join("serve.py"))
            .args(["--host", "127.0.0.1", "--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting examples/browser/serve.py");
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut first)
            .expect("reading serve.py's first line");
        let port = first
            .split("http://127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("serve.py did not name its origin: {first:?}"));
        Pages { child, port }
    }

    /// The pages' origin under `host` (`127.0.0.1` or `localhost`: two
    /// origins for the browser, one server).
    fn origin(&self, host: &str) -> String {
        format!("http://{host}:{}", self.port)
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One run of tests/browser/driver.py: its JSON events as they come, and a
/// line on its stdin to go on after a pause.
struct Driver {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr: std::thread::JoinHandle<String>,
    events: Vec<Value>,
}

impl Driver {
    /// The tus-js-client page uploading `file` to `endpoint`, throttled, and
    /// paused once `fraction` of it is sent; returns the driver and the
    /// upload's URL.
    fn paused_tus(pages: &Pages, endpoint: &str, file: &Path, fraction: &str) -> (Driver, String) {
        let mut driver = Driver::start(
            "tus",
            &pages.origin("127.0.0.1"),
            endpoint,
            &[
                "--file",
                file.to_str().unwrap(),
                "--throttle",
                THROTTLE,
                "--pause-at",
                fraction,
            ],
        );
        let waiting = driver.until("the pause", |e| e["event"] == "waiting");
        let url = waiting["url"].as_str().expect("url").to_owned();
        (driver, url)
    }

    /// `driver.py <scenario> --page <origin> --endpoint <endpoint> <args...>`
    fn start(scenario: &str, page: &str, endpoint: &str, args: &[&str]) -> Driver {
        let python = repo_root().join(".venv/bin/python");
        for (what, path) in [
            ("the venv", python.as_path()),
            ("chromium", Path::new("/usr/bin/chromium")),
            ("chromedriver", Path::new("/usr/bin/chromedriver")),
        ] {
            assert!(
                path.is_file(),
                "{what} is missing ({}): {INSTALL_HINT}",
                path.display()
            );
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/driver.py");
        let mut child = Command::new(python)
            .arg("-u")
            .arg(script)
            .arg(scenario)
            .args(["--page", page, "--endpoint", endpoint])
            .args(args)
            .env("SE_OFFLINE", "true")
            .env("SE_AVOID_STATS", "true")
            // Its own process group, so that chromedriver and chromium die
            // with it when a failing test kills it (see Drop).
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start driver.py: {e} ({INSTALL_HINT}?)"));
        let ChildOutput { lines, stderr } = read_output(&mut child);
        Driver {
            stdin: child.stdin.take(),
            child,
            lines,
            stderr,
            events: Vec::new(),
        }
    }

    /// The next event, or None once the driver has exited.
    fn next(&mut self) -> Option<Value> {
        let line = tokio::task::block_in_place(|| self.lines.recv_timeout(LINE_TIMEOUT));
        match line {
            Ok(line) => {
                let event: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not a JSON event ({e}): {line}"));
                self.events.push(event.clone());
                Some(event)
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = self.child.kill();
                panic!("driver.py printed nothing for {LINE_TIMEOUT:?}; events so far:\n{self:?}")
            }
        }
    }

    /// Reads events until one satisfies `wanted`, and returns it.
    fn until(&mut self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        while let Some(event) = self.next() {
            if wanted(&event) {
                return event;
            }
            if event["event"] == "error" || event["event"] == "timeout" {
                panic!("waiting for {what}, the page reported:\n{self:?}");
            }
        }
        let stderr = self.finish_stderr();
        panic!("driver.py ended before {what}:\n{self:?}\nstderr:\n{stderr}")
    }

    /// Tells a paused driver to reload the page and resume.
    fn go_on(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "go on").expect("writing to driver.py");
    }

    /// Waits for the driver to exit successfully; returns every event.
    fn finish(mut self) -> Vec<Value> {
        while self.next().is_some() {}
        let status = tokio::task::block_in_place(|| self.child.wait()).expect("driver.py");
        let stderr = self.finish_stderr();
        assert!(
            status.success(),
            "driver.py failed ({status}):\n{self:?}\nstderr:\n{stderr}"
        );
        std::mem::take(&mut self.events)
    }

    fn finish_stderr(&mut self) -> String {
        self.stdin.take();
        let handle = std::mem::replace(&mut self.stderr, std::thread::spawn(String::new));
        handle.join().unwrap_or_default()
    }
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for event in &self.events {
            writeln!(f, "  {event}")?;
        }
        Ok(())
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The driver quits the browser itself when it ends normally; this is
        // for a test that panicked while it ran.
        // SAFETY: kill(2) on the process group our own child leads.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

fn of<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

/// The one upload URL the page reported finished.
fn success_url(events: &[Value]) -> String {
    let success = of(events, "success");
    assert_eq!(success.len(), 1, "{events:#?}");
    success[0]["url"].as_str().expect("url").to_owned()
}

/// `Upload-Metadata` as HEAD reports it, decoded.
async fn metadata(url: &str) -> Vec<(String, String)> {
    let r = head(url).await;
    assert_eq!(r.status(), 200, "HEAD {url}");
    let raw = r.headers()["upload-metadata"].to_str().unwrap().to_owned();
    raw.split(',')
        .map(|pair| {
            let (key, value) = pair.trim().split_once(' ').unwrap_or((pair.trim(), ""));
            let value = base64::engine::general_purpose::STANDARD
                .decode(value)
                .expect("base64 metadata value");
            (key.to_owned(), String::from_utf8(value).expect("UTF-8"))
        })
        .collect()
}

/// The upload's offset once the PATCH that a pause cut off has been handled
/// whole. A server counts a PATCH's bytes when it ends, so the offset HEAD
/// reports and the bytes the servers at `origins` received agree only then.
async fn settled_offset(url: &str, origins: &[String]) -> u64 {
    let mut seen = Vec::new();
    for _ in 0..400 {
        let at = offset(url).await;
        let mut received = 0.0;
        for origin in origins {
            let text = client()
                .get(format!("{origin}/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            received += metric(&text, "tusd_bytes_received_total");
        }
        if at > 0 && received == at as f64 {
            return at;
        }
        seen.push((at, received));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("offset and bytes received never agreed: {seen:?}")
}

/// The events after the page was reloaded.
fn after_reload(events: &[Value]) -> &[Value] {
    let at = events
        .iter()
        .position(|e| e["event"] == "reloaded")
        .unwrap_or_else(|| panic!("no reload: {events:#?}"));
    &events[at + 1..]
}

/// The `Upload-Offset` of each PATCH the page sent, in order.
fn patch_offsets(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .filter(|e| e["event"] == "request" && e["method"] == "PATCH")
        .map(|e| {
            e["offset"]
                .as_str()
                .and_then(|o| o.parse().ok())
                .unwrap_or_else(|| panic!("PATCH without Upload-Offset: {e}"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uppy_dashboard_uploads_20_mib_byte_identical_with_its_metadata() {
    let server = InProcessServer::with_args(&[]).await;
    let pages = Pages::start();
    let tmp = tempfile::tempdir().unwrap();
    let (file, data) = source_file(tmp.path(), "browser-upload.zip", 20 * MIB, 13);
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-dashboard.png");
    let _ = std::fs::remove_file(&screenshot);

    let events = Driver::start(
        "uppy",
        &pages.origin("127.0.0.1"),
        &server.files_url(),
        &[
            "--file",
            file.to_str().unwrap(),
            "--screenshot",
            screenshot.to_str().unwrap(),
        ],
    )
    .finish();

    let complete = of(&events, "complete");
    assert_eq!(complete.len(), 1, "{events:#?}");
    assert_eq!(complete[0]["successful"], 1, "{events:#?}");
    assert_eq!(complete[0]["failed"], 0, "{events:#?}");
    let url = success_url(&events);
    assert!(url.starts_with(&server.files_url()), "{url}");
    let (status, body) = get_bytes(&url).await;
    assert_eq!(status, 200);
    assert_same_bytes(&body, &data, "GET after the Uppy upload");
    assert_same_bytes(
        &std::fs::read(server.upload_dir().join(id_of(&url))).unwrap(),
        &data,
        "the stored file",
    );
    let metadata = metadata(&url).await;
    assert!(
        metadata.contains(&("filename".into(), "browser-upload.zip".into())),
        "{metadata:?}"
    );
    assert!(
        metadata.contains(&("filetype".into(), "application/zip".into())),
        "{metadata:?}"
    );
    let png = std::fs::read(&screenshot).expect("the Dashboard's screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_upload_resumes_after_a_reload_from_the_servers_offset() {
    let server = InProcessServer::with_args(&[]).await;
    let pages = Pages::start();
    let tmp = tempfile::tempdir().unwrap();
    let size = 8 * MIB;
    let (file, data) = source_file(tmp.path(), "paused.bin", size, 14);

    let (mut driver, url) = Driver::paused_tus(&pages, &server.files_url(), &file, "0.3");
    let at_pause = settled_offset(&url, &[server.origin()]).await;
    assert!(at_pause < size as u64, "offset {at_pause} at the pause");
    driver.go_on();
    let events = driver.finish();

    let resumed = after_reload(&events);
    assert_eq!(success_url(resumed), url, "{events:#?}");
    let resuming = of(resumed, "resuming");
    assert_eq!(
        resuming.len(),
        1,
        "the stored fingerprint was not found: {events:#?}"
    );
    assert_eq!(resuming[0]["url"], url.as_str());
    assert!(
        !resumed
            .iter()
            .any(|e| e["event"] == "request" && e["method"] == "POST"),
        "a new upload was created after the reload: {events:#?}"
    );
    // The first PATCH after the reload starts where the server said it
    // stopped, and the server received every byte once.
    let offsets = patch_offsets(resumed);
    assert_eq!(offsets.first(), Some(&at_pause), "{events:#?}");
    let text = metrics(&server).await;
    assert_eq!(metric(&text, "tusd_uploads_created_total"), 1.0, "{text}");
    assert_eq!(
        metric(&text, "tusd_bytes_received_total"),
        size as f64,
        "{text}"
    );
    assert_same_bytes(&get_bytes(&url).await.1, &data, "GET after the resume");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_interrupted_by_sigterm_finishes_after_the_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("uploads");
    let mut server = TusServer::start_in(BIN, &dir, &["--shutdown-timeout", "0s"]);
    let port = server.port();
    let pages = Pages::start();
    let size = 8 * MIB;
    let (file, data) = source_file(tmp.path(), "restarted.bin", size, 15);

    let mut driver = Driver::start(
        "tus",
        &pages.origin("127.0.0.1"),
        &server.files_url(),
        &["--file", file.to_str().unwrap(), "--throttle", THROTTLE],
    );
    driver.until("a quarter of the file", |e| {
        e["event"] == "progress" && e["bytes"].as_u64().unwrap() * 4 >= size as u64
    });
    let exit = tokio::task::block_in_place(|| server.terminate());
    assert!(exit.success(), "{exit:?}\n{}", server.log());
    let first_log = server.log();
    // The browser retries on its own (the page's retryDelays) until the
    // server is back on the same port.
    let restarted = TusServer::start_in_at(BIN, &dir, port, &[]);
    let events = driver.finish();

    let url = success_url(&events);
    let offsets = patch_offsets(&events);
    assert!(
        offsets.len() >= 2 && offsets[0] == 0,
        "expected a first PATCH from 0 and at least one more: {events:#?}\nfirst server:\n{first_log}"
    );
    let text = metrics(&restarted).await;
    let after_restart = metric(&text, "tusd_bytes_received_total");
    assert_eq!(metric(&text, "tusd_uploads_created_total"), 0.0, "{text}");
    assert!(
        after_restart > 0.0 && after_restart < size as f64,
        "the restarted server received {after_restart} of {size} bytes: it should have resumed, not started over\n{events:#?}"
    );
    let resumed_at = *offsets.last().unwrap();
    assert_eq!(
        resumed_at as f64 + after_restart,
        size as f64,
        "the last PATCH started at {resumed_at}: {events:#?}"
    );
    assert_same_bytes(&get_bytes(&url).await.1, &data, "GET after the restart");
}

/// The node (`host:port`) that answered a request in nginx's access log
/// (`... upstream=A, B upstream_status=...`): the last one nginx tried.
fn answered_by(line: &str) -> Option<&str> {
    let tried = line
        .split("upstream=")
        .nth(1)?
        .split(" upstream_status=")
        .next()?;
    tried.rsplit(", ").next()
}

/// The node (`host:port`) that took the last PATCH nginx logged; nginx logs
/// a PATCH the browser cut off once it has seen the connection close.
async fn last_patch_upstream(nginx: &Nginx) -> String {
    for _ in 0..400 {
        let log = nginx.access_log();
        let last = log
            .lines()
            .filter(|l| l.contains("\"PATCH "))
            .filter_map(answered_by)
            .next_back();
        if let Some(upstream) = last {
            return upstream.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no PATCH in nginx's log:\n{}", nginx.access_log())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_upload_resumes_on_the_other_node_behind_nginx() {
    let etcd = EtcdServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let endpoint = etcd.endpoint();
    let args = ["--etcd-endpoints", endpoint.as_str(), "--behind-proxy"];
    let mut nodes: Vec<TusServer> = (0..2)
        .map(|_| TusServer::start_in(BIN, &dir.path().join("uploads"), &args))
        .collect();
    let nginx = Nginx::start(&nodes.iter().map(TusServer::port).collect::<Vec<_>>());
    let pages = Pages::start();
    let size = 8 * MIB;
    let (file, data) = source_file(dir.path(), "two-nodes.bin", size, 16);

    let (mut driver, url) = Driver::paused_tus(&pages, &nginx.files_url(), &file, "0.4");
    assert!(url.starts_with(&nginx.files_url()), "{url}");
    let origins: Vec<String> = nodes.iter().map(TusServer::origin).collect();
    let at_pause = settled_offset(&url, &origins).await;

    // Stop the node that took the paused PATCH; the rest must go to the other.
    let patched_by = last_patch_upstream(&nginx).await;
    let stopped = nodes
        .iter()
        .position(|n| patched_by == format!("127.0.0.1:{}", n.port()))
        .unwrap_or_else(|| panic!("PATCH went to {patched_by}, not a node"));
    let other = 1 - stopped;
    let exit = tokio::task::block_in_place(|| nodes[stopped].terminate());
    assert!(exit.success(), "{exit:?}\n{}", nodes[stopped].log());
    let log_before = nginx.access_log();
    driver.go_on();
    let events = driver.finish();

    let resumed = after_reload(&events);
    assert_eq!(success_url(resumed), url, "{events:#?}");
    assert_eq!(
        patch_offsets(resumed).first(),
        Some(&at_pause),
        "{events:#?}"
    );
    let later = nginx.access_log()[log_before.len()..].to_owned();
    let other_addr = format!("127.0.0.1:{}", nodes[other].port());
    let patches: Vec<&str> = later.lines().filter(|l| l.contains("\"PATCH ")).collect();
    assert!(!patches.is_empty(), "no PATCH after the reload:\n{later}");
    // nginx may try the stopped node first (a 502 the page retries), but
    // only the other node stores anything.
    assert!(
        patches.iter().any(|l| l.contains("\" 204 ")),
        "no resumed PATCH succeeded:\n{later}"
    );
    for line in patches.iter().filter(|l| l.contains("\" 204 ")) {
        assert_eq!(
            answered_by(line),
            Some(other_addr.as_str()),
            "a resumed PATCH answered by the stopped node: {line}\n{later}"
        );
    }
    let text = metrics(&nodes[other]).await;
    let received = metric(&text, "tusd_bytes_received_total");
    assert!(
        received >= (size as u64 - at_pause) as f64 && received < size as f64,
        "the other node received {received} bytes, the rest was {}",
        size as u64 - at_pause
    );
    assert_same_bytes(&get_bytes(&url).await.1, &data, "GET through nginx");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_exposed_headers_and_a_refused_origin() {
    let pages = Pages::start();
    let allowed = pages.origin("localhost");
    let server = InProcessServer::with_args(&["--cors-allow-origin", &allowed]).await;
    let options = |text: &str| metric(text, "tusd_requests_total{method=\"OPTIONS\"}");

    let events = Driver::start("cors", &allowed, &server.files_url(), &[]).finish();
    let cors = of(&events, "cors");
    let ok = cors[0];
    assert_eq!(ok["origin"], allowed.as_str());
    assert_eq!(ok["ok"], true, "{ok}");
    assert_eq!(ok["post"]["status"], 201, "{ok}");
    let location = ok["post"]["location"].as_str().expect("Location readable");
    assert!(location.starts_with(&server.files_url()), "{ok}");
    assert_eq!(ok["post"]["resumable"], "1.0.0", "{ok}");
    assert_eq!(ok["head"]["status"], 200, "{ok}");
    assert_eq!(ok["head"]["offset"], "0", "{ok}");
    assert_eq!(ok["head"]["length"], "5", "{ok}");
    let encoded = base64::engine::general_purpose::STANDARD.encode("probe.txt");
    assert_eq!(
        ok["head"]["metadata"],
        format!("filename {encoded}").as_str(),
        "{ok}"
    );
    let text = metrics(&server).await;
    // The POST and the HEAD carry tus headers, so each was preflighted.
    assert!(options(&text) >= 2.0, "{text}");
    assert_eq!(metric(&text, "tusd_uploads_created_total"), 1.0, "{text}");

    let refused = pages.origin("127.0.0.1");
    let events = Driver::start("cors", &refused, &server.files_url(), &[]).finish();
    let no = of(&events, "cors")[0];
    assert_eq!(no["origin"], refused.as_str());
    assert_eq!(no["ok"], false, "{no}");
    assert!(
        no["error"].as_str().unwrap().contains("Failed to fetch"),
        "{no}"
    );
    assert!(
        no["console"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m.as_str().unwrap().contains("CORS policy")),
        "{no}"
    );
    let after = metrics(&server).await;
    assert!(options(&after) > options(&text), "no preflight: {after}");
    assert_eq!(
        metric(&after, "tusd_uploads_created_total"),
        1.0,
        "the refused origin's POST was sent after all: {after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_finished_file_downloads_from_the_page_under_its_name() {
    let server = InProcessServer::with_args(&[]).await;
    let pages = Pages::start();
    let tmp = tempfile::tempdir().unwrap();
    let downloads = tmp.path().join("downloads");
    std::fs::create_dir(&downloads).unwrap();
    let (file, data) = source_file(tmp.path(), "report 2026.zip", 3 * MIB, 17);

    let events = Driver::start(
        "tus",
        &pages.origin("127.0.0.1"),
        &server.files_url(),
        &[
            "--file",
            file.to_str().unwrap(),
            "--download-dir",
            downloads.to_str().unwrap(),
        ],
    )
    .finish();

    success_url(&events);
    let downloaded = of(&events, "downloaded");
    assert_eq!(downloaded.len(), 1, "{events:#?}");
    assert_eq!(downloaded[0]["link"], "report 2026.zip");
    assert_eq!(
        downloaded[0]["files"],
        serde_json::json!(["report 2026.zip"]),
        "{events:#?}"
    );
    assert_same_bytes(
        &std::fs::read(downloads.join("report 2026.zip")).unwrap(),
        &data,
        "the downloaded file",
    );
    let gets = metric(
        &metrics(&server).await,
        "tusd_requests_total{method=\"GET\"}",
    );
    assert!(gets >= 1.0, "the download was not a GET of the server");
}

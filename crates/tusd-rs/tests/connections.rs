//! Connection limits against the real binary over loopback, with raw
//! sockets: the header, idle and write timeouts close what they should and
//! nothing else, the connection limit refuses clearly and recovers, an
//! oversized head is 431, accept errors are logged once per interval, h2c
//! is off unless asked for, and the handler sees the peer's address. Each
//! checks that nothing stored changed where a request was cut.
//!
//! Timeouts are asserted as "closed within a generous bound", never as
//! durations.

mod common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tusd_testsupport::TusServer;

/// Generous bound for "closed by a timeout of about a second".
const BOUND: Duration = Duration::from_secs(30);

async fn connect(server: &TusServer) -> TcpStream {
    TcpStream::connect(("127.0.0.1", server.port()))
        .await
        .unwrap()
}

/// Reads until the server closes the connection (EOF or reset); returns
/// what arrived, or `None` if it is still open after `bound`.
async fn closed_within(stream: &mut TcpStream, bound: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 64 << 10];
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// One response: status, headers (lower-case names), body (by
/// Content-Length; none for 204 and 304).
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

async fn read_answer(stream: &mut TcpStream) -> Answer {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head) = response.parse(&data).unwrap() {
            let status = response.code.unwrap();
            let headers: Vec<(String, String)> = response
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            let length: usize = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .map_or(0, |(_, v)| v.parse().unwrap());
            let length = if status == 204 { 0 } else { length };
            let mut body = data[head..].to_vec();
            while body.len() < length {
                let n = tokio::time::timeout(BOUND, stream.read(&mut buf))
                    .await
                    .expect("response body")
                    .unwrap();
                assert_ne!(n, 0, "connection closed inside a response body");
                body.extend_from_slice(&buf[..n]);
            }
            return Answer {
                status,
                headers,
                body,
            };
        }
        let n = tokio::time::timeout(BOUND, stream.read(&mut buf))
            .await
            .expect("response head")
            .unwrap();
        assert_ne!(n, 0, "connection closed before a response: {data:?}");
        data.extend_from_slice(&buf[..n]);
    }
}

fn options_request(server: &TusServer) -> Vec<u8> {
    format!(
        "OPTIONS /files/ HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n",
        server.port()
    )
    .into_bytes()
}

/// Sends an OPTIONS on `stream` and expects 204 (the connection works).
async fn works(server: &TusServer, stream: &mut TcpStream) {
    stream.write_all(&options_request(server)).await.unwrap();
    assert_eq!(read_answer(stream).await.status, 204);
}

fn path_of(url: &str) -> String {
    let rest = url.split_once("//").unwrap().1;
    rest[rest.find('/').unwrap()..].to_owned()
}

#[tokio::test]
async fn a_stalled_head_is_closed_after_the_header_timeout_and_changes_nothing() {
    let server = TusServer::start(BIN, &["--header-timeout", "1s"]);
    let url = create(&server, 10).await;
    let files = files_in(server.upload_dir());

    // Half a PATCH head, then silence.
    let mut stalled = connect(&server).await;
    let half = format!(
        "PATCH {} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\nUpload-Off",
        path_of(&url)
    );
    stalled.write_all(half.as_bytes()).await.unwrap();
    // A connection that sends nothing at all is no different.
    let mut silent = connect(&server).await;

    let got = closed_within(&mut stalled, BOUND)
        .await
        .expect("the stalled head was never closed");
    assert!(
        got.is_empty(),
        "answered: {:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(closed_within(&mut silent, BOUND).await.is_some());

    assert_eq!(files_in(server.upload_dir()), files);
    assert_eq!(data_len(&server, &url), 0);
    assert_eq!(offset(&url).await, 0);
    let text = metrics(&server).await;
    assert!(
        metric(
            &text,
            r#"tusd_connections_timed_out_total{reason="header"}"#
        ) >= 2.0,
        "{text}"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let server = TusServer::start(BIN, &["--idle-timeout", "1s", "--header-timeout", "60s"]);
    let mut stream = connect(&server).await;
    // Two requests on the one connection: keep-alive works ...
    works(&server, &mut stream).await;
    works(&server, &mut stream).await;
    // ... and once idle it is closed, without an answer to anything.
    let got = closed_within(&mut stream, BOUND)
        .await
        .expect("the idle connection was never closed");
    assert!(got.is_empty());
    let text = metrics(&server).await;
    assert!(
        metric(&text, r#"tusd_connections_timed_out_total{reason="idle"}"#) >= 1.0,
        "{text}"
    );
    assert!(files_in(server.upload_dir()).is_empty());
}

#[tokio::test]
async fn a_request_slower_than_the_header_and_idle_timeouts_is_not_cut() {
    let server = TusServer::start(BIN, &["--header-timeout", "1s", "--idle-timeout", "1s"]);
    let url = create(&server, 8).await;
    let (mut writer, patching) = start_patch(&url, 0);
    // The body takes about three seconds; both timeouts are one.
    for pair in [b"ab", b"cd", b"ef", b"gh"] {
        writer.write_all(pair).await.unwrap();
        writer.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    drop(writer);
    let response = patching.await.unwrap();
    assert_eq!(response.status(), 204, "{}", server.log());
    assert_eq!(header_u64(&response, "upload-offset"), 8);
    assert_eq!(get_bytes(&url).await.1, b"abcdefgh");
}

#[tokio::test]
async fn past_the_connection_limit_new_connections_get_503_and_existing_ones_keep_working() {
    let server = TusServer::start(BIN, &["--max-connections", "2"]);
    let mut first = connect(&server).await;
    let mut second = connect(&server).await;
    works(&server, &mut first).await;
    works(&server, &mut second).await;

    // A third is refused clearly, even one that sends a creation at once;
    // nothing is created.
    let mut third = connect(&server).await;
    let post = format!(
        "POST /files/ HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nTus-Resumable: 1.0.0\r\nUpload-Length: 5\r\n\r\n",
        server.port()
    );
    third.write_all(post.as_bytes()).await.unwrap();
    let refused = read_answer(&mut third).await;
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(refused.header("connection"), Some("close"));
    let reason = String::from_utf8(refused.body).unwrap();
    assert_eq!(reason.trim_end().lines().count(), 1, "{reason:?}");
    assert!(closed_within(&mut third, BOUND).await.is_some());
    assert!(files_in(server.upload_dir()).is_empty());

    // The two open ones still work.
    works(&server, &mut first).await;
    works(&server, &mut second).await;

    // One closes: new connections are served again (once the server has
    // seen the close).
    drop(first);
    let mut served = None;
    for _ in 0..200 {
        let mut next = connect(&server).await;
        next.write_all(&options_request(&server)).await.unwrap();
        let answer = read_answer(&mut next).await;
        if answer.status == 204 {
            served = Some(next);
            break;
        }
        assert_eq!(answer.status, 503);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut next = served.expect("no connection was served after one closed");
    works(&server, &mut next).await;
    works(&server, &mut second).await;
    let text = {
        drop(next);
        drop(second);
        let mut text = String::new();
        for _ in 0..200 {
            let r = client()
                .get(format!("{}/metrics", server.origin()))
                .send()
                .await;
            if let Ok(r) = r {
                if r.status() == 200 {
                    text = r.text().await.unwrap();
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        text
    };
    assert!(
        metric(&text, "tusd_connections_refused_total") >= 1.0,
        "{text}"
    );
}

#[tokio::test]
async fn an_oversized_head_is_431_and_creates_nothing() {
    let server = TusServer::start(BIN, &["--max-header-size", "4096"]);
    let big = "a".repeat(8192);
    let mut stream = connect(&server).await;
    let post = format!(
        "POST /files/ HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nTus-Resumable: 1.0.0\r\nUpload-Length: 5\r\nX-Padding: {big}\r\n\r\n",
        server.port()
    );
    stream.write_all(post.as_bytes()).await.unwrap();
    assert_eq!(read_answer(&mut stream).await.status, 431);
    assert!(closed_within(&mut stream, BOUND).await.is_some());
    assert!(files_in(server.upload_dir()).is_empty());

    // A head under the limit is served.
    let fits = "a".repeat(2048);
    let r = tus(Method::POST, &server.files_url())
        .header("Upload-Length", "5")
        .header("X-Padding", fits)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn a_response_the_client_does_not_read_is_cut_after_the_network_timeout() {
    let server = TusServer::start(BIN, &["--network-timeout", "1s"]);
    let total = 32usize << 20;
    let url = create(&server, total as u64).await;
    let bytes = vec![b'z'; total];
    assert_eq!(patch(&url, 0, bytes).await.status(), 204);

    let mut stream = connect(&server).await;
    let get = format!("GET {} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path_of(&url));
    stream.write_all(get.as_bytes()).await.unwrap();
    // Read nothing for a while: the server's writes block.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let got = closed_within(&mut stream, Duration::from_secs(120))
        .await
        .expect("the connection was never closed");
    assert!(
        got.len() < total,
        "the whole download arrived: the server waited for the reader"
    );
    let text = metrics(&server).await;
    assert!(
        metric(&text, r#"tusd_connections_timed_out_total{reason="write"}"#) >= 1.0,
        "{text}"
    );
    // The upload is untouched.
    assert_eq!(offset(&url).await, total as u64);
}

/// CPU seconds (user + system) the process `pid` has used.
fn process_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no memory effects.
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// Sets the soft limit of open files of `pid` (the hard limit stays, so
/// that it can be raised again without privileges); returns the old one.
fn set_open_file_limit(pid: u32, soft: Option<u64>) -> u64 {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit only reads and writes the structs we pass.
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            std::ptr::null(),
            &mut old,
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    if let Some(soft) = soft {
        let new = libc::rlimit {
            rlim_cur: soft,
            rlim_max: old.rlim_max,
        };
        // SAFETY: as above.
        let rc = unsafe {
            libc::prlimit(
                pid as libc::pid_t,
                libc::RLIMIT_NOFILE,
                &new,
                std::ptr::null_mut(),
            )
        };
        assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    }
    old.rlim_cur
}

fn open_files(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_accept_errors_back_off_and_are_logged_once_per_interval() {
    let server = TusServer::start(BIN, &[]);
    let pid = server.pid();
    let url = create(&server, 3).await;
    // The creating client's connection closes; then a few descriptors to spare.
    eventually("the server's descriptors settle", 500, || async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        open_files(pid) < 64
    })
    .await;
    let limit = open_files(pid) + 3;
    let normal = set_open_file_limit(pid, Some(limit));

    // Far more connections than descriptors: the rest wait in the backlog
    // and every accept of them fails with EMFILE.
    let cpu_before = process_cpu(pid);
    let mut clients = Vec::new();
    for _ in 0..40 {
        clients.push(connect(&server).await);
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let cpu = process_cpu(pid) - cpu_before;
    let lines = server
        .log()
        .lines()
        .filter(|l| l.contains("accept failed"))
        .count();
    // One line for the whole burst (the interval is 10 s), where the old
    // loop logged every 50 ms; and the loop waited instead of spinning.
    assert_eq!(lines, 1, "{}", server.log());
    assert!(cpu < 1.0, "{cpu} CPU seconds in 4 s of EMFILE");

    // Descriptors back: the server accepts and serves again.
    drop(clients);
    set_open_file_limit(pid, Some(normal));
    let mut stream = None;
    for _ in 0..300 {
        let mut s = connect(&server).await;
        s.write_all(&options_request(&server)).await.unwrap();
        let mut first = [0u8; 12];
        if tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut first))
            .await
            .is_ok_and(|r| r.is_ok())
            && first.starts_with(b"HTTP/1.1 204")
        {
            stream = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stream.is_some(), "never served again\n{}", server.log());
    let text = metrics(&server).await;
    assert!(metric(&text, "tusd_accept_errors_total") >= 2.0, "{text}");
    // Nothing stored changed.
    assert_eq!(offset(&url).await, 0);
    assert_eq!(data_len(&server, &url), 0);
}

/// The HTTP/2 connection preface and an empty SETTINGS frame.
const H2_START: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// The frame types of the HTTP/2 frames in `bytes` (as far as complete).
fn frame_types(bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut at = 0;
    while bytes.len() >= at + 9 {
        let length = u32::from_be_bytes([0, bytes[at], bytes[at + 1], bytes[at + 2]]) as usize;
        types.push(bytes[at + 3]);
        at += 9 + length;
    }
    types
}

#[tokio::test]
async fn cleartext_http2_is_off_by_default_and_under_the_limits_when_on() {
    let server = TusServer::start(BIN, &[]);
    let mut stream = connect(&server).await;
    stream.write_all(H2_START).await.unwrap();
    let got = closed_within(&mut stream, BOUND)
        .await
        .expect("an HTTP/2 preface kept the connection open");
    assert!(
        !frame_types(&got).starts_with(&[4]),
        "HTTP/2 was served: {got:?}"
    );

    let server = TusServer::start(BIN, &["--enable-h2c", "--header-timeout", "1s"]);
    let mut stream = connect(&server).await;
    stream.write_all(H2_START).await.unwrap();
    // Served (the server's SETTINGS first), then, as no request follows,
    // closed after the header timeout with a GOAWAY (type 7).
    let got = closed_within(&mut stream, BOUND)
        .await
        .expect("an idle HTTP/2 connection was never closed");
    let types = frame_types(&got);
    assert_eq!(types.first(), Some(&4), "{got:?}");
    assert!(types.contains(&7), "no GOAWAY: {types:?}");
    // HTTP/1 still works on the same port.
    let mut h1 = connect(&server).await;
    works(&server, &mut h1).await;
}

#[tokio::test]
async fn the_handler_sees_the_peer_address() {
    // Without --behind-proxy the per-client creation limit counts the
    // connection's peer, which only our accept loop tells the handler.
    let server = TusServer::start(BIN, &["--creations-per-minute", "1"]);
    create(&server, 1).await;
    let second = tus(Method::POST, &server.files_url())
        .header("Upload-Length", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 429);
    let infos = files_in(server.upload_dir())
        .into_iter()
        .filter(|f| f.ends_with(".info"))
        .count();
    assert_eq!(infos, 1, "one upload only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_without_a_request_in_progress_do_not_hold_up_shutdown() {
    // An idle keep-alive connection and a head still arriving have nothing
    // to finish: SIGTERM closes them at once rather than after the
    // header timeout or the shutdown timeout.
    let mut server = TusServer::start(
        BIN,
        &["--header-timeout", "300s", "--shutdown-timeout", "300s"],
    );
    let mut idle = connect(&server).await;
    works(&server, &mut idle).await;
    let mut half = connect(&server).await;
    half.write_all(b"POST /files/ HTTP/1.1\r\nHost: 127")
        .await
        .unwrap();
    let started = Instant::now();
    let status = tokio::task::block_in_place(|| server.terminate());
    assert!(status.success(), "{status:?}\n{}", server.log());
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "shutdown waited for connections without a request"
    );
    assert!(closed_within(&mut idle, BOUND).await.is_some());
    assert!(closed_within(&mut half, BOUND).await.is_some());
    assert!(files_in(server.upload_dir()).is_empty());
}

//! PATCH throughput of one large upload over loopback, next to writing the
//! same bytes straight to a file on the same disk, in the same run.
//!
//! `cargo bench -p tusd-rs --bench patch_throughput` (release build of the
//! real `tusd-rs` binary; `TUSD_BENCH_MIB` sets the size, default 1024;
//! `TUSD_BENCH_ROUNDS` the rounds per mode, default 5; `TUSD_BENCH_SERVER`
//! another `tusd-rs` binary to run instead of this build's;
//! `TUSD_BENCH_WARM=0` turns off the untimed warm-up write, see [`warm_up`]).
//!
//! Three ways of putting the same bytes into a file on the same disk, each
//! round in a rotating order, with `sync` before each so none pays for the
//! previous one's writeback, and an untimed warm-up write (see [`warm_up`]):
//! - **plain write**: `std::fs::File::write_all` of 256 KiB chunks of the
//!   bytes, in memory, on one thread: the baseline;
//! - **PATCH, sendfile client**: the cheapest client there is, so that on a
//!   small machine the client takes as little as possible of the cores the
//!   server needs (a real client runs on another machine): the request head
//!   written on a `std::net::TcpStream`, the body sent with `sendfile(2)`
//!   from a source file holding the same bytes, already in the page cache
//!   (no copy on the sending side), the response read with `httparse`;
//! - **PATCH, reqwest client**: reqwest streaming the 256 KiB chunks, one
//!   more user-space copy into the socket, competing for the same cores.
//!
//! Per round: MiB/s, (ratio to the plain write), [CPU seconds per GiB of
//! the writer or the server]. Twice: bytes in the page cache (the timer stops when the last write
//! returns or the PATCH is answered), and bytes on disk (a `sync` inside the
//! timed section). Besides MiB/s it reports CPU seconds per GiB: the plain
//! writer's thread, the server process (all threads, from /proc), and the
//! client (its thread for sendfile, the whole bench process for reqwest).

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use tusd_testsupport::TusServer;

const BIN: &str = env!("CARGO_BIN_EXE_tusd-rs");
const CHUNK: usize = 256 * 1024;
/// Rounds per mode unless `TUSD_BENCH_ROUNDS` says otherwise.
const ROUNDS: usize = 5;

fn payload() -> Bytes {
    // 64 MiB of non-repeating-looking bytes, sent over and over.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buf = vec![0u8; 64 << 20];
    for b in buf.iter_mut() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *b = state as u8;
    }
    Bytes::from(buf)
}

fn chunks(payload: &Bytes, total: usize) -> impl Iterator<Item = Bytes> + '_ {
    (0..total / CHUNK).map(move |i| {
        let at = (i * CHUNK) % payload.len();
        payload.slice(at..at + CHUNK)
    })
}

/// One timed transfer: wall seconds, and CPU seconds of the writer (plain
/// write), or of the server and of the client (PATCH).
#[derive(Clone, Copy)]
struct Run {
    secs: f64,
    cpu: f64,
    client_cpu: f64,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Plain,
    Sendfile,
    Reqwest,
}

const KINDS: [Kind; 3] = [Kind::Plain, Kind::Sendfile, Kind::Reqwest];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Plain => "plain write",
            Kind::Sendfile => "PATCH sendfile",
            Kind::Reqwest => "PATCH reqwest",
        }
    }
}

fn rusage(who: libc::c_int) -> f64 {
    // SAFETY: getrusage only writes the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(who, &mut usage) }, 0);
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// CPU seconds (user + system, all threads) the process `pid` has used.
fn process_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name: state is field 3, utime 14, stime 15.
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

fn plain_write(dir: &Path, payload: &Bytes, total: usize, to_disk: bool) -> Run {
    let path = dir.join("plain.bin");
    let cpu = rusage(libc::RUSAGE_THREAD);
    let started = Instant::now();
    let mut file = File::create(&path).unwrap();
    for chunk in chunks(payload, total) {
        file.write_all(&chunk).unwrap();
    }
    drop(file);
    let cpu = rusage(libc::RUSAGE_THREAD) - cpu;
    if to_disk {
        flush_page_cache();
    }
    let secs = started.elapsed().as_secs_f64();
    std::fs::remove_file(path).unwrap();
    Run {
        secs,
        cpu,
        client_cpu: 0.0,
    }
}

/// Creates an upload of `total` bytes and returns its URL.
async fn create(client: &reqwest::Client, server: &TusServer, total: usize) -> reqwest::Url {
    let created = client
        .post(server.files_url())
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", total.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    reqwest::Url::parse(created.headers()["location"].to_str().unwrap()).unwrap()
}

async fn delete(client: &reqwest::Client, url: &reqwest::Url) {
    let deleted = client
        .delete(url.clone())
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
}

async fn reqwest_patch(
    client: &reqwest::Client,
    server: &TusServer,
    url: &reqwest::Url,
    payload: &Bytes,
    total: usize,
    to_disk: bool,
) -> Run {
    let body: Vec<Result<Bytes, std::io::Error>> = chunks(payload, total).map(Ok).collect();
    let (server_cpu, client_cpu) = (process_cpu(server.pid()), rusage(libc::RUSAGE_SELF));
    let started = Instant::now();
    let response = client
        .patch(url.clone())
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/offset+octet-stream")
        .header("Content-Length", total.to_string())
        .body(reqwest::Body::wrap_stream(futures::stream::iter(body)))
        .send()
        .await
        .unwrap();
    let (server_cpu, client_cpu) = (
        process_cpu(server.pid()) - server_cpu,
        rusage(libc::RUSAGE_SELF) - client_cpu,
    );
    if to_disk {
        flush_page_cache();
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(response.status(), 204);
    assert_eq!(
        response.headers()["upload-offset"],
        total.to_string().as_str()
    );
    Run {
        secs,
        cpu: server_cpu,
        client_cpu,
    }
}

/// The PATCH with the cheapest client: head on a plain socket, body by
/// `sendfile(2)` from `source` (in the page cache), status by `httparse`.
/// Blocks the calling thread, whose CPU time is the client's.
fn sendfile_patch(
    server: &TusServer,
    url: &reqwest::Url,
    source: &File,
    total: usize,
    to_disk: bool,
) -> Run {
    let mut socket = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    socket.set_nodelay(true).unwrap();
    let head = format!(
        "PATCH {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nTus-Resumable: 1.0.0\r\n\
         Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n\
         Content-Length: {total}\r\n\r\n",
        url.path(),
        server.port()
    );
    let (server_cpu, client_cpu) = (process_cpu(server.pid()), rusage(libc::RUSAGE_THREAD));
    let started = Instant::now();
    socket.write_all(head.as_bytes()).unwrap();
    let mut offset: libc::off_t = 0;
    while (offset as usize) < total {
        let left = total - offset as usize;
        // SAFETY: both descriptors are open for the duration of the call and
        // `offset` is a valid pointer to our own variable.
        let n =
            unsafe { libc::sendfile(socket.as_raw_fd(), source.as_raw_fd(), &mut offset, left) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "sendfile: {e}");
        }
        assert_ne!(n, 0, "source file ended early");
    }
    let (status, upload_offset) = read_response(&mut socket);
    let (server_cpu, client_cpu) = (
        process_cpu(server.pid()) - server_cpu,
        rusage(libc::RUSAGE_THREAD) - client_cpu,
    );
    if to_disk {
        flush_page_cache();
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(status, 204);
    assert_eq!(upload_offset.as_deref(), Some(total.to_string().as_str()));
    Run {
        secs,
        cpu: server_cpu,
        client_cpu,
    }
}

/// Reads one response head; returns its status and `Upload-Offset`.
fn read_response(socket: &mut TcpStream) -> (u16, Option<String>) {
    let mut buf = Vec::new();
    let mut read = [0u8; 4096];
    loop {
        let n = socket.read(&mut read).unwrap();
        assert_ne!(n, 0, "connection closed before a response");
        buf.extend_from_slice(&read[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        if response.parse(&buf).unwrap().is_complete() {
            let offset = response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("upload-offset"))
                .map(|h| String::from_utf8_lossy(h.value).into_owned());
            return (response.code.unwrap(), offset);
        }
    }
}

/// Writes the bytes the plain write writes into `path`, for sendfile.
fn source_file(path: &Path, payload: &Bytes, total: usize) -> File {
    let mut file = File::create(path).unwrap();
    for chunk in chunks(payload, total) {
        file.write_all(&chunk).unwrap();
    }
    file.sync_all().unwrap();
    drop(file);
    // Read it back once so it is surely in the page cache.
    let mut file = File::open(path).unwrap();
    let mut sink = vec![0u8; 1 << 20];
    while file.read(&mut sink).unwrap() > 0 {}
    file
}

/// Checks once per mode, outside the timing, that the upload holds exactly
/// the source's bytes.
fn same_contents(a: &Path, b: &Path) -> bool {
    let (mut a, mut b) = (File::open(a).unwrap(), File::open(b).unwrap());
    let (mut x, mut y) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = a.read(&mut x).unwrap();
        if n == 0 {
            return b.read(&mut y).unwrap() == 0;
        }
        if b.read_exact(&mut y[..n]).is_err() || x[..n] != y[..n] {
            return false;
        }
    }
}

/// Writes `total` bytes to a file and deletes it before it reaches the disk,
/// untimed. On a VM that hands freed memory back to its host (virtio-balloon
/// free page reporting, a couple of seconds after the free), the first
/// write into such memory costs several times a normal one; this makes the
/// next timed transfer draw on memory just freed by this file instead, so
/// every kind starts from the same, best state.
fn warm_up(dir: &Path, payload: &Bytes, total: usize) {
    let path = dir.join("warm-up.bin");
    let mut file = File::create(&path).unwrap();
    for chunk in chunks(payload, total) {
        file.write_all(&chunk).unwrap();
    }
    drop(file);
    std::fs::remove_file(path).unwrap();
}

fn flush_page_cache() {
    let _ = std::process::Command::new("sync").status();
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[tokio::main]
async fn main() {
    let mib: usize = std::env::var("TUSD_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let total = mib << 20;
    let rounds: usize = std::env::var("TUSD_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ROUNDS);
    let warm = std::env::var("TUSD_BENCH_WARM").map_or(true, |v| v != "0");
    let gib = total as f64 / (1u64 << 30) as f64;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let uploads: PathBuf = dir.path().join("uploads");
    // Another build of the server can be compared without rebuilding this.
    let bin = std::env::var("TUSD_BENCH_SERVER").unwrap_or_else(|_| BIN.to_owned());
    let server = TusServer::start_in(&bin, &uploads, &["--log-format", "json"]);
    let payload = payload();
    let source_path = dir.path().join("source.bin");
    let source = source_file(&source_path, &payload, total);
    let client = reqwest::Client::new();
    println!(
        "PATCH of {mib} MiB over loopback vs plain file write, {rounds} rounds, warm-up {}, server {bin}, dir {}, load average {}",
        if warm { "on" } else { "off" },
        dir.path().display(),
        load_average()
    );
    for (mode, to_disk) in [("page cache", false), ("on disk (sync timed)", true)] {
        let mut runs: Vec<Vec<Run>> = vec![Vec::new(); KINDS.len()];
        for round in 0..rounds {
            let mut this = [None; 3];
            for k in 0..KINDS.len() {
                let kind = (round + k) % KINDS.len();
                // Each starts with no dirty pages left by the one before,
                // and (unless TUSD_BENCH_WARM=0) on memory the VM has backed.
                flush_page_cache();
                if warm {
                    warm_up(dir.path(), &payload, total);
                    flush_page_cache();
                }
                let run = match KINDS[kind] {
                    Kind::Plain => plain_write(dir.path(), &payload, total, to_disk),
                    Kind::Sendfile | Kind::Reqwest => {
                        let url = create(&client, &server, total).await;
                        let run = if KINDS[kind] == Kind::Sendfile {
                            sendfile_patch(&server, &url, &source, total, to_disk)
                        } else {
                            reqwest_patch(&client, &server, &url, &payload, total, to_disk).await
                        };
                        if round == 0 {
                            let id = url.path().rsplit('/').next().unwrap();
                            assert!(
                                same_contents(&uploads.join(id), &source_path),
                                "{} stored other bytes than were sent",
                                KINDS[kind].name()
                            );
                        }
                        delete(&client, &url).await;
                        run
                    }
                };
                this[kind] = Some(run);
                runs[kind].push(run);
            }
            let [p, s, r] = this.map(|run| run.unwrap());
            let rate = |run: Run| mib as f64 / run.secs;
            println!(
                "{mode:>20} round {}: plain {:6.0} MiB/s [{:.2}]   sendfile PATCH {:6.0} MiB/s ({:.2}) [{:.2}]   reqwest PATCH {:6.0} MiB/s ({:.2}) [{:.2}]",
                round + 1,
                rate(p),
                p.cpu / gib,
                rate(s),
                rate(s) / rate(p),
                s.cpu / gib,
                rate(r),
                rate(r) / rate(p),
                r.cpu / gib,
            );
        }
        let rates: Vec<f64> = runs
            .iter()
            .map(|r| median(r.iter().map(|run| mib as f64 / run.secs).collect()))
            .collect();
        let range = |k: usize| {
            let v: Vec<f64> = runs[k].iter().map(|run| mib as f64 / run.secs).collect();
            (
                v.iter().cloned().fold(f64::INFINITY, f64::min),
                v.iter().cloned().fold(0.0, f64::max),
            )
        };
        let cpu = |k: usize, f: fn(&Run) -> f64| median(runs[k].iter().map(f).collect()) / gib;
        println!("{mode:>20} medians (min-max), CPU s/GiB (median):");
        for (k, kind) in KINDS.iter().enumerate() {
            let (lo, hi) = range(k);
            let ratio = if k == 0 {
                String::new()
            } else {
                format!("   ratio {:.2}", rates[k] / rates[0])
            };
            let cpu_text = if k == 0 {
                format!("writer {:.2}", cpu(k, |r| r.cpu))
            } else {
                format!(
                    "server {:.2}, client {:.2}",
                    cpu(k, |r| r.cpu),
                    cpu(k, |r| r.client_cpu)
                )
            };
            println!(
                "{:>20}   {:<15} {:7.1} MiB/s ({:.0}-{:.0}){ratio}   CPU {cpu_text}",
                "",
                kind.name(),
                rates[k],
                lo,
                hi
            );
        }
    }
    println!("load average at the end {}", load_average());
}

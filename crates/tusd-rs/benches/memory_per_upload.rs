//! Server memory per in-flight upload: many PATCHes each send a burst and
//! then trickle, keeping their requests open; the server's resident memory
//! above its idle baseline, divided by the number of uploads.
//!
//! `cargo bench -p tusd-rs --bench memory_per_upload` runs the real release
//! `tusd-rs` binary over loopback. Knobs (environment):
//! - `TUSD_MEM_UPLOADS` (200): uploads in flight at once, one connection each;
//! - `TUSD_MEM_BURST_KIB` (4096): bytes each PATCH sends at once first;
//! - `TUSD_MEM_TRICKLE_SECS` (20): how long each then trickles,
//!   `TUSD_MEM_TRICKLE_BYTES` (16) every second;
//! - `TUSD_MEM_ROUNDS` (2): rounds; every round runs every variant, in turn;
//! - `TUSD_MEM_VARIANTS`: servers to compare, `;`-separated, each
//!   `label=binary arg arg ...` (`binary` `.` is this build); default
//!   `default=.`, this build with its default flags;
//! - `TUSD_MEM_AT_END`: a command run (`sh -c`, waited for) at the end of
//!   the trickle, before the server is killed, `{pid}` replaced by the
//!   server's pid; for profiling, e.g. with a variant whose binary is a
//!   script running the server under `heaptrack`, a command that kills the
//!   server (`kill -KILL $(pgrep -P {pid} -x tusd-rs)`) makes what
//!   heaptrack reports as leaked what was live during the trickle.
//!
//! Per upload and round: `(VmRSS - idle VmRSS) / uploads` in KiB, where the
//! idle VmRSS is read after the uploads were created and before any PATCH
//! connects, and VmRSS is read at the end of the burst (all burst bytes on
//! disk) and at the end of the trickle. The smaps_rollup split
//! (anonymous vs file-backed) of the end state is printed too.
//!
//! With `TUSD_TEST_STORE=s3` the servers use the S3 store on a Garage the
//! bench starts (see `tusd_testsupport::test_store`). A body's bytes are
//! then in the store's part files on local disk until the body ends, so
//! "stored" is read there: each server runs with `TMPDIR` set to a
//! directory of its own, and the bytes in it are summed. With the default
//! 50 MiB parts no part is sent during the run: what is measured is the
//! S3 store's path for a body in flight.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tusd_testsupport::{TestStore, TusServer};

const BIN: &str = env!("CARGO_BIN_EXE_tusd-rs");

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Variant {
    label: String,
    binary: String,
    args: Vec<String>,
}

fn variants() -> Vec<Variant> {
    let spec = std::env::var("TUSD_MEM_VARIANTS").unwrap_or_else(|_| "default=.".to_owned());
    spec.split(';')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let (label, command) = s.split_once('=').expect("variant is label=binary args");
            let mut words = command.split_whitespace().map(str::to_owned);
            let binary = words.next().expect("variant without a binary");
            Variant {
                label: label.trim().to_owned(),
                binary: if binary == "." {
                    BIN.to_owned()
                } else {
                    binary
                },
                args: words.collect(),
            }
        })
        .collect()
}

/// A `kB` field of /proc/<pid>/status or smaps_rollup, in KiB.
fn proc_field(pid: u32, file: &str, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap();
    text.lines()
        .find_map(|l| {
            let rest = l.strip_prefix(field)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("{field} missing in /proc/{pid}/{file}"))
}

fn rss_kib(pid: u32) -> u64 {
    proc_field(pid, "status", "VmRSS")
}

fn threads(pid: u32) -> u64 {
    proc_field(pid, "status", "Threads")
}

async fn create(client: &reqwest::Client, server: &TusServer, length: u64) -> String {
    let created = client
        .post(server.files_url())
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", length.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    created.headers()["location"].to_str().unwrap().to_owned()
}

fn data_len(dir: &Path, url: &str) -> u64 {
    let id = url.rsplit('/').next().unwrap();
    std::fs::metadata(dir.join(id)).map_or(0, |m| m.len())
}

/// Whether every upload holds at least `bytes`: each data file on the file
/// store; on S3 the part files in `parts`, summed (they are per body, not
/// per upload, and a body holds one upload's bytes).
fn all_hold(dir: &Path, parts: &Path, urls: &[String], bytes: u64) -> bool {
    if TestStore::from_env().is_s3() {
        let total: u64 = std::fs::read_dir(parts)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        total >= bytes * urls.len() as u64
    } else {
        urls.iter().all(|u| data_len(dir, u) >= bytes)
    }
}

struct Measured {
    idle_kib: u64,
    burst_kib: u64,
    end_kib: u64,
    max_kib: u64,
    anon_kib: u64,
    file_kib: u64,
    threads: u64,
}

async fn one_run(variant: &Variant, workdir: &Path, round: usize) -> Measured {
    let uploads: usize = env_or("TUSD_MEM_UPLOADS", 200);
    let burst: usize = env_or::<usize>("TUSD_MEM_BURST_KIB", 4096) << 10;
    let trickle_secs: u64 = env_or("TUSD_MEM_TRICKLE_SECS", 20);
    let trickle_bytes: usize = env_or("TUSD_MEM_TRICKLE_BYTES", 16);
    // Never reached: the PATCHes stay open until the end.
    let length = (burst + trickle_bytes * (trickle_secs as usize + 10) * 2) as u64;

    let dir: PathBuf = workdir.join(format!("{}-{round}", variant.label));
    let args: Vec<&str> = variant.args.iter().map(String::as_str).collect();
    let parts = workdir.join(format!("{}-{round}-parts", variant.label));
    if TestStore::from_env().is_s3() {
        std::fs::create_dir_all(&parts).unwrap();
        // Inherited by the server started next (Garage runs already);
        // nothing else reads it meanwhile.
        std::env::set_var("TMPDIR", &parts);
    }
    let server = TusServer::start_in(&variant.binary, &dir, &args);
    let pid = server.pid();

    let urls = {
        let client = reqwest::Client::new();
        let mut urls = Vec::with_capacity(uploads);
        for _ in 0..uploads {
            urls.push(create(&client, &server, length).await);
        }
        urls
    };
    // The creating client's connection is gone; let the server settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_kib = rss_kib(pid);

    let payload: &'static [u8] = Box::leak(vec![b'x'; burst].into_boxed_slice());
    let mut connections = Vec::with_capacity(uploads);
    for url in &urls {
        let port = server.port();
        let path = url.split_once("//").unwrap().1;
        let path = &path[path.find('/').unwrap()..];
        let head = format!(
            "PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTus-Resumable: 1.0.0\r\n\
             Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n\
             Content-Length: {length}\r\n\r\n"
        );
        connections.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            stream.write_all(head.as_bytes()).await.unwrap();
            stream.write_all(payload).await.unwrap();
            stream
        }));
    }
    let mut streams = Vec::with_capacity(uploads);
    for c in connections {
        streams.push(c.await.unwrap());
    }
    let started = Instant::now();
    while !all_hold(&dir, &parts, &urls, burst as u64) {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "not every burst stored after 300 s\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let burst_kib = rss_kib(pid);
    let mut max_kib = burst_kib;

    let trickle = vec![b'y'; trickle_bytes];
    for _ in 0..trickle_secs {
        tokio::time::sleep(Duration::from_secs(1)).await;
        for s in streams.iter_mut() {
            s.write_all(&trickle).await.unwrap();
        }
        max_kib = max_kib.max(rss_kib(pid));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let end_kib = rss_kib(pid);
    let anon_kib = proc_field(pid, "smaps_rollup", "Anonymous");
    let file_kib = proc_field(pid, "status", "RssFile");
    let threads = threads(pid);
    // Every trickled byte arrived: the uploads were in flight throughout.
    let expected = (burst + trickle_bytes * trickle_secs as usize) as u64;
    let started = Instant::now();
    while !all_hold(&dir, &parts, &urls, expected) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "trickled bytes did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Ok(command) = std::env::var("TUSD_MEM_AT_END") {
        let _ = std::process::Command::new("sh")
            .args(["-c", &command.replace("{pid}", &pid.to_string())])
            .status();
    }
    drop(server);
    drop(streams);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&parts);
    Measured {
        idle_kib,
        burst_kib,
        end_kib,
        max_kib,
        anon_kib,
        file_kib,
        threads,
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[tokio::main]
async fn main() {
    let uploads: u64 = env_or("TUSD_MEM_UPLOADS", 200);
    let rounds: usize = env_or("TUSD_MEM_ROUNDS", 2);
    let variants = variants();
    let workdir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    if TestStore::from_env().is_s3() {
        // Garage starts now, before any round sets TMPDIR: started later it
        // would keep its data in that round's part directory, which the
        // round deletes when it ends.
        let dir = workdir.path().to_owned();
        tokio::task::spawn_blocking(move || tusd_testsupport::s3_place_for(&dir))
            .await
            .expect("starting Garage");
    }
    println!(
        "memory per in-flight upload: {uploads} uploads, burst {} KiB, trickle {} B/s for {} s, {rounds} rounds, load average {}",
        env_or::<u64>("TUSD_MEM_BURST_KIB", 4096),
        env_or::<u64>("TUSD_MEM_TRICKLE_BYTES", 16),
        env_or::<u64>("TUSD_MEM_TRICKLE_SECS", 20),
        load_average()
    );
    for v in &variants {
        println!("  {}: {} {}", v.label, v.binary, v.args.join(" "));
    }
    let per = |kib: u64, idle: u64| kib.saturating_sub(idle) as f64 / uploads as f64;
    let mut results: Vec<Vec<Measured>> = variants.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for (i, v) in variants.iter().enumerate() {
            let m = one_run(v, workdir.path(), round).await;
            println!(
                "round {} {:>16}: idle {:6} KiB; per upload after burst {:6.1} KiB, after trickle {:6.1} KiB (max {:6.1}); end: anon {} KiB, file {} KiB, {} threads",
                round + 1,
                v.label,
                m.idle_kib,
                per(m.burst_kib, m.idle_kib),
                per(m.end_kib, m.idle_kib),
                per(m.max_kib, m.idle_kib),
                m.anon_kib,
                m.file_kib,
                m.threads,
            );
            results[i].push(m);
        }
    }
    println!("KiB per upload after the trickle, min-max over {rounds} rounds:");
    for (v, runs) in variants.iter().zip(&results) {
        let values: Vec<f64> = runs.iter().map(|m| per(m.end_kib, m.idle_kib)).collect();
        let burst: Vec<f64> = runs.iter().map(|m| per(m.burst_kib, m.idle_kib)).collect();
        let range = |v: &[f64]| {
            (
                v.iter().cloned().fold(f64::INFINITY, f64::min),
                v.iter().cloned().fold(0.0, f64::max),
            )
        };
        let ((lo, hi), (blo, bhi)) = (range(&values), range(&burst));
        println!(
            "  {:>16}: {lo:.1}-{hi:.1} after trickle, {blo:.1}-{bhi:.1} after burst",
            v.label
        );
    }
    println!("load average at the end {}", load_average());
}

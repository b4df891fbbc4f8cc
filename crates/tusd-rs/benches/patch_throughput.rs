//! PATCH throughput of one large upload over loopback, next to writing the
//! same bytes straight to a file on the same disk, in the same run.
//!
//! `cargo bench -p tusd-rs --bench patch_throughput` (release build of the
//! real `tusd-rs` binary; `TUSD_BENCH_MIB` sets the size, default 1024).
//! Prints MiB/s per round and the medians, twice: bytes in the page cache
//! (the timer stops when the last write returns), and bytes on disk (a
//! `sync` inside the timed section).

use std::io::Write;
use std::time::Instant;

use bytes::Bytes;
use tusd_testsupport::TusServer;

const BIN: &str = env!("CARGO_BIN_EXE_tusd-rs");
const CHUNK: usize = 256 * 1024;
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

fn plain_write(dir: &std::path::Path, payload: &Bytes, total: usize, to_disk: bool) -> f64 {
    let path = dir.join("plain.bin");
    let started = Instant::now();
    let mut file = std::fs::File::create(&path).unwrap();
    for chunk in chunks(payload, total) {
        file.write_all(&chunk).unwrap();
    }
    drop(file);
    if to_disk {
        flush_page_cache();
    }
    let secs = started.elapsed().as_secs_f64();
    std::fs::remove_file(path).unwrap();
    (total >> 20) as f64 / secs
}

async fn patch_upload(server: &TusServer, payload: &Bytes, total: usize, to_disk: bool) -> f64 {
    let client = reqwest::Client::new();
    let created = client
        .post(server.files_url())
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", total.to_string())
        .send()
        .await
        .unwrap();
    let url = created.headers()["location"].to_str().unwrap().to_owned();
    let body: Vec<Result<Bytes, std::io::Error>> = chunks(payload, total).map(Ok).collect();
    let started = Instant::now();
    let response = client
        .patch(&url)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/offset+octet-stream")
        .header("Content-Length", total.to_string())
        .body(reqwest::Body::wrap_stream(futures::stream::iter(body)))
        .send()
        .await
        .unwrap();
    if to_disk {
        flush_page_cache();
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(response.status(), 204);
    assert_eq!(
        response.headers()["upload-offset"],
        total.to_string().as_str()
    );
    client
        .delete(&url)
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    (total >> 20) as f64 / secs
}

fn flush_page_cache() {
    let _ = std::process::Command::new("sync").status();
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let mib: usize = std::env::var("TUSD_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let total = mib << 20;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let server = TusServer::start_in(BIN, &dir.path().join("uploads"), &["--log-format", "json"]);
    let payload = payload();
    println!(
        "PATCH of {mib} MiB over loopback vs plain file write, {ROUNDS} rounds, dir {}",
        dir.path().display()
    );
    for (mode, to_disk) in [("page cache", false), ("on disk (sync timed)", true)] {
        let (mut plain, mut tus) = (Vec::new(), Vec::new());
        for round in 1..=ROUNDS {
            // Each starts with no dirty pages left by the one before, so
            // neither pays for the other's writeback.
            flush_page_cache();
            let p = plain_write(dir.path(), &payload, total, to_disk);
            flush_page_cache();
            let t = patch_upload(&server, &payload, total, to_disk).await;
            println!("{mode:>20} round {round}: plain write {p:7.1} MiB/s   tus PATCH {t:7.1} MiB/s   ratio {:.2}", t / p);
            plain.push(p);
            tus.push(t);
        }
        let (p, t) = (median(plain), median(tus));
        println!(
            "{mode:>20} median:  plain write {p:7.1} MiB/s   tus PATCH {t:7.1} MiB/s   ratio {:.2}",
            t / p
        );
    }
}

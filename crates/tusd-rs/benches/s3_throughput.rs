//! One large upload through tusd-rs into Garage (`--s3-bucket`), next to
//! the same bytes sent as a multipart upload straight to the same Garage
//! with the same SDK, part size and concurrency, in the same run.
//!
//! `cargo bench -p tusd-rs --bench s3_throughput` (release build of the
//! real `tusd-rs` binary; `TUSD_BENCH_MIB` sets the size, default 1024;
//! `TUSD_BENCH_ROUNDS` the rounds per mode, default 3; `TUSD_BENCH_ARGS`
//! more server flags, e.g. `--s3-disable-content-hashes`;
//! `TUSD_BENCH_BEFORE_BIN` another `tusd-rs` binary, e.g. a copy of an
//! older build, run in the same rounds with the same flags, so a change is
//! measured against its past under the same load; `TUSD_BENCH_BIN` a copy
//! to run instead of this build's binary). Needs Garage
//! (scripts/install-garage.sh). Each round runs every mode, rotating which
//! goes first; each prints MiB/s and the ratio of through-tusd-rs to
//! direct. The server's pid is printed, for `perf record -p`. The client streams 256 KiB chunks of an in-memory payload; the
//! server cuts 50 MiB parts on local disk and sends 10 at a time, as does
//! the direct upload (from memory: no disk on that side).

use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use tusd_s3store::{s3_client, S3ClientConfig, DEFAULT_CONCURRENT_PART_UPLOADS, DEFAULT_PART_SIZE};
use tusd_testsupport::{GarageServer, TusServer};

const BIN: &str = env!("CARGO_BIN_EXE_tusd-rs");
const CHUNK: usize = 256 * 1024;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// 100 MiB (two 50 MiB parts) of non-repeating-looking bytes, sent over
/// and over.
fn payload() -> Bytes {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buf = vec![0u8; 100 << 20];
    for b in buf.iter_mut() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *b = state as u8;
    }
    Bytes::from(buf)
}

/// `len` bytes of `payload` as pieces of at most `piece` bytes.
fn pieces(payload: &Bytes, len: usize, piece: usize) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < len {
        let n = piece.min(len - at);
        let start = at % payload.len();
        let n = n.min(payload.len() - start);
        out.push(payload.slice(start..start + n));
        at += n;
    }
    out
}

async fn direct(garage: &GarageServer, payload: &Bytes, len: usize) -> f64 {
    let client = s3_client(&S3ClientConfig {
        endpoint: Some(garage.endpoint()),
        ..S3ClientConfig::default()
    })
    .await;
    let key = format!("direct-{:x}", rand_u64());
    let started = Instant::now();
    let created = client
        .create_multipart_upload()
        .bucket(garage.bucket())
        .key(&key)
        .send()
        .await
        .unwrap();
    let upload_id = created.upload_id().unwrap().to_owned();
    let parts = pieces(payload, len, DEFAULT_PART_SIZE as usize);
    let sent = futures::stream::iter(parts.into_iter().enumerate())
        .map(|(i, part)| {
            let (client, key, upload_id) = (&client, &key, &upload_id);
            async move {
                let done = client
                    .upload_part()
                    .bucket(garage.bucket())
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(i as i32 + 1)
                    .body(part.into())
                    .send()
                    .await
                    .unwrap();
                tusd_s3store::aws_sdk_s3::types::CompletedPart::builder()
                    .part_number(i as i32 + 1)
                    .e_tag(done.e_tag().unwrap())
                    .build()
            }
        })
        .buffered(DEFAULT_CONCURRENT_PART_UPLOADS)
        .collect::<Vec<_>>()
        .await;
    client
        .complete_multipart_upload()
        .bucket(garage.bucket())
        .key(&key)
        .upload_id(&upload_id)
        .multipart_upload(
            tusd_s3store::aws_sdk_s3::types::CompletedMultipartUpload::builder()
                .set_parts(Some(sent))
                .build(),
        )
        .send()
        .await
        .unwrap();
    started.elapsed().as_secs_f64()
}

async fn through_tusd(server: &TusServer, payload: &Bytes, len: usize) -> f64 {
    let http = reqwest::Client::new();
    let started = Instant::now();
    let created = http
        .post(server.files_url())
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", len.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let url = created.headers()["location"].to_str().unwrap().to_owned();
    let body = futures::stream::iter(
        pieces(payload, len, CHUNK)
            .into_iter()
            .map(Ok::<_, std::io::Error>),
    );
    let done = http
        .patch(&url)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/offset+octet-stream")
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 204, "{:?}", done.text().await);
    started.elapsed().as_secs_f64()
}

fn rand_u64() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mib = env_usize("TUSD_BENCH_MIB", 1024);
        let rounds = env_usize("TUSD_BENCH_ROUNDS", 3);
        let len = mib << 20;
        let payload = payload();
        let garage = GarageServer::start().await;
        std::env::set_var("AWS_ACCESS_KEY_ID", garage.access_key_id());
        std::env::set_var("AWS_SECRET_ACCESS_KEY", garage.secret_access_key());
        std::env::set_var("AWS_REGION", garage.region());
        let endpoint = garage.endpoint();
        let extra = std::env::var("TUSD_BENCH_ARGS").unwrap_or_default();
        let mut args = vec!["--s3-bucket", garage.bucket(), "--s3-endpoint", &endpoint];
        args.extend(extra.split_whitespace());
        // A copy of the binary can be named instead of this build's: the
        // target directory may be shared, and rebuilt meanwhile.
        let bin = std::env::var("TUSD_BENCH_BIN").unwrap_or_else(|_| BIN.to_owned());
        let mut servers = vec![("tusd-rs", TusServer::start(&bin, &args))];
        if let Ok(before) = std::env::var("TUSD_BENCH_BEFORE_BIN") {
            servers.push(("before", TusServer::start(&before, &args)));
        }
        println!(
            "{mib} MiB into Garage, {rounds} rounds (MiB/s), server flags {args:?}, load average {}",
            load_average()
        );
        for (label, server) in &servers {
            println!("{label}: pid {}", server.pid());
        }
        for round in 0..rounds {
            // Mode 0 is the direct upload, mode i the i-th server.
            let modes = servers.len() + 1;
            let mut seconds = vec![0.0; modes];
            for k in 0..modes {
                let mode = (round + k) % modes;
                seconds[mode] = match mode {
                    0 => direct(&garage, &payload, len).await,
                    i => through_tusd(&servers[i - 1].1, &payload, len).await,
                };
            }
            let rate: Vec<f64> = seconds.iter().map(|s| mib as f64 / s).collect();
            let mut line = format!("round {round}: direct {:.0}", rate[0]);
            for (i, (label, _)) in servers.iter().enumerate() {
                let r = rate[i + 1];
                line += &format!("  {label} {r:.0} (ratio {:.2})", r / rate[0]);
            }
            println!("{line}  load {}", load_average());
        }
    });
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

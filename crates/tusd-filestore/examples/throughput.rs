//! PATCH-path throughput of the file store against a plain file write.
//!
//! Writes the same bytes (default 1 GiB in 64 KiB chunks) three ways, each
//! into a fresh file that is deleted afterwards, rotating the order every
//! round so that no method always follows another:
//! - `std::fs`: `write_all` of each chunk to a `std::fs::File`, the baseline;
//! - `tokio::fs`: `write_all` of each chunk to a `tokio::fs::File`, for scale;
//! - `FileStore`: `write_chunk` fed by an in-memory stream of the chunks.
//!
//! Wall-clock MiB/s is what a client sees but is at the mercy of whatever
//! else the machine runs; MiB per CPU-second (process CPU time, all threads)
//! is the cost of each method and barely moves under load. Both are printed.
//!
//! Run: `cargo run --release -p tusd-filestore --example throughput -- [DIR] [MiB] [CHUNK_KiB] [ROUNDS]`

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{stream, StreamExt};
use tokio::io::AsyncWriteExt;
use tusd_core::{DataStore, NewUpload, Terminater, UploadId};
use tusd_filestore::FileStore;

struct Setup {
    dir: PathBuf,
    total: u64,
    chunk: Bytes,
}

impl Setup {
    fn chunks(&self) -> u64 {
        self.total / self.chunk.len() as u64
    }
}

/// Wall-clock and process CPU time elapsed between `start` and `stop`.
struct Clock {
    wall: Instant,
    cpu: Duration,
}

#[derive(Clone, Copy)]
struct Took {
    wall: Duration,
    cpu: Duration,
}

impl Clock {
    fn start() -> Clock {
        Clock {
            wall: Instant::now(),
            cpu: process_cpu_time(),
        }
    }

    fn stop(self) -> Took {
        Took {
            wall: self.wall.elapsed(),
            cpu: process_cpu_time() - self.cpu,
        }
    }
}

fn process_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn plain_std(s: &Setup) -> Took {
    let path = s.dir.join("plain-std");
    let clock = Clock::start();
    let mut file = std::fs::File::create(&path).unwrap();
    for _ in 0..s.chunks() {
        file.write_all(&s.chunk).unwrap();
    }
    drop(file);
    let took = clock.stop();
    std::fs::remove_file(path).unwrap();
    took
}

async fn plain_tokio(s: &Setup) -> Took {
    let path = s.dir.join("plain-tokio");
    let clock = Clock::start();
    let mut file = tokio::fs::File::create(&path).await.unwrap();
    for _ in 0..s.chunks() {
        file.write_all(&s.chunk).await.unwrap();
    }
    file.flush().await.unwrap();
    drop(file);
    let took = clock.stop();
    std::fs::remove_file(path).unwrap();
    took
}

async fn file_store(s: &Setup, store: &FileStore) -> Took {
    let created = store
        .create_upload(NewUpload {
            size: Some(s.total),
            ..NewUpload::default()
        })
        .await
        .unwrap();
    let id = UploadId::parse(&created.id).unwrap();
    let chunk = s.chunk.clone();
    let body = stream::iter((0..s.chunks()).map(move |_| Ok(chunk.clone()))).boxed();
    let clock = Clock::start();
    let written = store.write_chunk(&id, 0, None, body).await.unwrap();
    let took = clock.stop();
    assert_eq!(written, s.total);
    store.terminate(&id, None).await.unwrap();
    took
}

/// A summary line: its label, how rounds are reduced, which figures.
type Summary<'a> = (&'a str, fn(Vec<f64>) -> f64, &'a [Vec<f64>; 3]);

const METHODS: [&str; 3] = ["std::fs", "tokio::fs", "FileStore"];

fn mib_per(total: u64, d: Duration) -> f64 {
    total as f64 / (1024.0 * 1024.0) / d.as_secs_f64()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn best(xs: Vec<f64>) -> f64 {
    xs.into_iter().fold(0.0, f64::max)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let base = args
        .first()
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let mib: u64 = args.get(1).map_or(1024, |a| a.parse().unwrap());
    let chunk_kib: usize = args.get(2).map_or(64, |a| a.parse().unwrap());
    let rounds: usize = args.get(3).map_or(5, |a| a.parse().unwrap());
    let tmp = tempfile::tempdir_in(&base).unwrap();
    let setup = Setup {
        dir: tmp.path().to_owned(),
        total: mib << 20,
        chunk: Bytes::from((0..chunk_kib << 10).map(|i| i as u8).collect::<Vec<u8>>()),
    };
    let store = FileStore::new(tmp.path().join("store")).unwrap();
    println!(
        "{mib} MiB in {chunk_kib} KiB chunks into {}, {rounds} rounds",
        tmp.path().display()
    );
    let mut wall: [Vec<f64>; 3] = Default::default();
    let mut cpu: [Vec<f64>; 3] = Default::default();
    for round in 0..rounds {
        let mut took = [Took {
            wall: Duration::ZERO,
            cpu: Duration::ZERO,
        }; 3];
        for k in 0..3 {
            let which = (round + k) % 3;
            took[which] = match which {
                0 => plain_std(&setup),
                1 => plain_tokio(&setup).await,
                _ => file_store(&setup, &store).await,
            };
        }
        print!("  round {}:", round + 1);
        for (m, t) in took.iter().enumerate() {
            wall[m].push(mib_per(setup.total, t.wall));
            cpu[m].push(mib_per(setup.total, t.cpu));
            print!("  {} {:6.0} MiB/s", METHODS[m], wall[m][round]);
        }
        println!();
    }
    let summaries: [Summary<'_>; 3] = [
        ("wall-clock MiB/s, median", median, &wall),
        ("wall-clock MiB/s, best", best, &wall),
        ("MiB per CPU-second, median", median, &cpu),
    ];
    for (what, pick, xs) in summaries {
        let v: Vec<f64> = xs.iter().map(|x| pick(x.clone())).collect();
        println!(
            "{what:>27}: std::fs {:6.0}  tokio::fs {:6.0}  FileStore {:6.0}  FileStore/std = {:.2}",
            v[0],
            v[1],
            v[2],
            v[2] / v[0]
        );
    }
}

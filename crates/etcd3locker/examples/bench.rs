//! Benchmark of etcd3locker against its own etcd (ETCD_BIN or PATH), printed
//! as a Markdown table for docs/benchmarks.md.
//!
//! At 1, 16, 64 and 256 tasks in flight, each on its own id, for
//! `BENCH_SECS` seconds (default 6) each, in
//! three alternating slices, on one etcd in one run:
//! - raw put+delete pairs per second: the two raft writes any lock/unlock
//!   cycle needs, the ceiling for a locker;
//! - raw Txn+delete pairs per second: the conditional create on a lease that
//!   any etcd lock needs (etcd 3.4 runs a Txn at about half a put's rate);
//! - this locker's lock+unlock cycles per second, with lock latency p50/p99;
//! - the Go locker's pattern per cycle (lease grant, keep-alive, lock Txn,
//!   delete, revoke) on the same client;
//! - raft proposals per cycle, from etcd's `etcd_server_proposals_committed_total`.
//!
//! Then the contended hand-off latency: one locker unlocks, another that was
//! waiting on the same id acquires; compared with one put's round trip.
//!
//! Run: `scripts/bench-etcd.sh` (both etcd versions) or
//! `ETCD_BIN=... cargo run --release -p etcd3locker --example bench`.

use std::sync::Arc;
use std::time::Duration;

use etcd3locker::{Etcd3Locker, LockerOptions};
use etcd_client::{
    Client, Compare, CompareOp, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp,
};
use tokio::time::Instant;
use tusd_handler::{Locker, UploadId};
use tusd_testsupport::{etcd_version, EtcdServer};

const CONCURRENCY: [usize; 4] = [1, 16, 64, 256];
const HANDOFFS: usize = 200;
const ROUNDS: u32 = 3;

#[derive(Clone, Copy)]
enum Kind {
    Raw,
    RawTxn,
    PutWatch,
    PutRange,
    Locker,
    GoPattern,
}

/// What one kind did in one or more slices.
#[derive(Default)]
struct Run {
    cycles: u64,
    seconds: f64,
    proposals: u64,
    latencies: Vec<Duration>,
}

impl Run {
    fn add(&mut self, other: Run) {
        self.cycles += other.cycles;
        self.seconds += other.seconds;
        self.proposals += other.proposals;
        self.latencies.extend(other.latencies);
    }

    fn per_second(&self) -> f64 {
        self.cycles as f64 / self.seconds
    }

    fn proposals_per_cycle(&self) -> f64 {
        self.proposals as f64 / (self.cycles as f64).max(1.0)
    }
}

#[tokio::main]
async fn main() {
    let secs: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    let window = Duration::from_secs(secs);
    let server = EtcdServer::start().await;
    let client = server.client().await;
    let locker = Etcd3Locker::with_options(client.clone(), LockerOptions::new(60, "/bench-lock"));
    // Grant the lease outside the measurement.
    let warm = UploadId::parse("warm").unwrap();
    let lock = locker.lock(&warm, deadline()).await.unwrap();
    lock.unlock().await.unwrap();

    println!(
        "{}, {secs} s per cell, one etcd node on loopback\n",
        etcd_version()
    );
    println!("| in flight | raw put+delete /s | raw Txn+delete /s | locker cycles /s | locker / raw put | locker / raw Txn | Go pattern cycles /s | locker / Go | lock p50 | lock p99 | proposals per cycle (raw / locker / Go) |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let only: Option<usize> = std::env::var("ONLY").ok().and_then(|s| s.parse().ok());
    for tasks in CONCURRENCY
        .into_iter()
        .filter(|t| only.is_none_or(|o| o == *t))
    {
        // Short alternating slices, so that load from outside the benchmark
        // hits all three kinds alike.
        let (mut raw, mut ours, mut go) = (Run::default(), Run::default(), Run::default());
        let mut raw_txn = Run::default();
        let (mut pw, mut pr) = (Run::default(), Run::default());
        let slice = window / ROUNDS;
        for _ in 0..ROUNDS {
            raw.add(run(Kind::Raw, tasks, slice, &server, &client, &locker).await);
            raw_txn.add(run(Kind::RawTxn, tasks, slice, &server, &client, &locker).await);
            pw.add(run(Kind::PutWatch, tasks, slice, &server, &client, &locker).await);
            pr.add(run(Kind::PutRange, tasks, slice, &server, &client, &locker).await);
            ours.add(run(Kind::Locker, tasks, slice, &server, &client, &locker).await);
            go.add(run(Kind::GoPattern, tasks, slice, &server, &client, &locker).await);
        }
        ours.latencies.sort();
        println!("EXPERIMENT {tasks}: raw {:.0} putwatch {:.0} ({:.2}) putrange {:.0} ({:.2}) proposals pw {:.2}", raw.per_second(), pw.per_second(), pw.per_second()/raw.per_second(), pr.per_second(), pr.per_second()/raw.per_second(), pw.proposals_per_cycle());
        println!(
            "| {tasks} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} | {:.0} | {:.1} | {:.2} ms | {:.2} ms | {:.2} / {:.2} / {:.2} |",
            raw.per_second(),
            raw_txn.per_second(),
            ours.per_second(),
            ours.per_second() / raw.per_second(),
            ours.per_second() / raw_txn.per_second(),
            go.per_second(),
            ours.per_second() / go.per_second(),
            ms(percentile(&ours.latencies, 50)),
            ms(percentile(&ours.latencies, 99)),
            raw.proposals_per_cycle(),
            ours.proposals_per_cycle(),
            go.proposals_per_cycle(),
        );
    }

    let (put_p50, handoff) = handoff(&server).await;
    println!();
    println!(
        "Contended hand-off (unlock on one locker to acquire on a waiting one, {HANDOFFS} times): \
         p50 {:.2} ms, p99 {:.2} ms; one put round trip p50 {:.2} ms (hand-off p50 = {:.2} put round trips).",
        ms(percentile(&handoff, 50)),
        ms(percentile(&handoff, 99)),
        ms(put_p50),
        ms(percentile(&handoff, 50)) / ms(put_p50),
    );
    locker.shutdown().await;
}

async fn run(
    kind: Kind,
    tasks: usize,
    window: Duration,
    server: &EtcdServer,
    client: &Client,
    locker: &Etcd3Locker,
) -> Run {
    if let Ok(only) = std::env::var("KIND") {
        let k = match kind {
            Kind::Raw => "raw",
            Kind::RawTxn => "rawtxn",
            Kind::PutWatch => "putwatch",
            Kind::PutRange => "putrange",
            Kind::Locker => "locker",
            Kind::GoPattern => "go",
        };
        if k != only {
            return Run {
                cycles: 1,
                seconds: 1.0,
                ..Run::default()
            };
        }
    }
    let before = server.proposals_committed();
    let cpu0 = (cpu_ticks(std::process::id()), etcd_pid().map(cpu_ticks));
    let end = Instant::now() + window;
    let mut handles = Vec::new();
    for task in 0..tasks {
        let client = client.clone();
        let locker = locker.clone();
        handles.push(tokio::spawn(async move {
            let mut cycles = 0u64;
            let mut latencies = Vec::new();
            let id = format!("t{task}");
            while Instant::now() < end {
                match kind {
                    Kind::Raw => raw_cycle(&client, &id).await,
                    Kind::RawTxn => raw_txn_cycle(&client, &id).await,
                    Kind::PutWatch => put_watch_cycle(&client, &id).await,
                    Kind::PutRange => put_range_cycle(&client, &id).await,
                    Kind::Locker => latencies.push(locker_cycle(&locker, &id).await),
                    Kind::GoPattern => go_cycle(&client, &id).await,
                }
                cycles += 1;
            }
            (cycles, latencies)
        }));
    }
    let started = end - window;
    let mut cycles = 0;
    let mut latencies = Vec::new();
    for handle in handles {
        let (count, task_latencies) = handle.await.unwrap();
        cycles += count;
        latencies.extend(task_latencies);
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu1 = (cpu_ticks(std::process::id()), etcd_pid().map(cpu_ticks));
    if std::env::var("CPU").is_ok() {
        let k = match kind {
            Kind::Raw => "raw",
            Kind::RawTxn => "rawtxn",
            Kind::PutWatch => "putwatch",
            Kind::PutRange => "putrange",
            Kind::Locker => "locker",
            Kind::GoPattern => "go",
        };
        eprintln!(
            "CPU {tasks} {k}: cycles/s {:.0} client us/cycle {:.1} etcd us/cycle {:.1}",
            cycles as f64 / seconds,
            (cpu1.0 - cpu0.0) as f64 * 10_000.0 / cycles as f64,
            (cpu1.1.unwrap_or(0) - cpu0.1.unwrap_or(0)) as f64 * 10_000.0 / cycles as f64
        );
    }
    // The counter trails the answers a little.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Run {
        cycles,
        seconds,
        proposals: server.proposals_committed() - before,
        latencies,
    }
}

async fn raw_cycle(client: &Client, id: &str) {
    let key = format!("/bench-raw/{id}");
    let mut client = client.clone();
    client.put(key.as_str(), "", None).await.unwrap();
    client.delete(key.as_str(), None).await.unwrap();
}

/// The cheapest conditional create: the Txn any lock needs (put if absent,
/// on a lease), then the delete. No locker can beat this per cycle.
async fn raw_txn_cycle(client: &Client, id: &str) {
    static LEASE: tokio::sync::OnceCell<i64> = tokio::sync::OnceCell::const_new();
    let mut client = client.clone();
    let lease = *LEASE
        .get_or_init(|| async { client.clone().lease_grant(600, None).await.unwrap().id() })
        .await;
    let key = format!("/bench-txn/{id}");
    let txn = Txn::new()
        .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key.as_str(),
            "",
            Some(PutOptions::new().with_lease(lease)),
        )]);
    client.txn(txn).await.unwrap();
    client.delete(key.as_str(), None).await.unwrap();
}

async fn locker_cycle(locker: &Etcd3Locker, id: &str) -> Duration {
    let id = UploadId::parse(id).unwrap();
    let start = Instant::now();
    let lock = locker.lock(&id, deadline()).await.unwrap();
    let latency = start.elapsed();
    lock.unlock().await.unwrap();
    latency
}

/// What the Go etcd3locker does per lock: a session (lease grant plus a
/// keep-alive stream), concurrency.Mutex's lock Txn, the unlock delete, and
/// the session's revoke.
async fn go_cycle(client: &Client, id: &str) {
    let mut client = client.clone();
    let lease = client.lease_grant(60, None).await.unwrap().id();
    let keep_alive = client.lease_keep_alive(lease).await.unwrap();
    let name = format!("/bench-go{id}/");
    let key = format!("{name}{lease:x}");
    let owner = GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Ascend)
        .with_limit(1);
    let txn = Txn::new()
        .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
        .and_then([
            TxnOp::put(key.as_str(), "", Some(PutOptions::new().with_lease(lease))),
            TxnOp::get(name.as_str(), Some(owner.clone())),
        ])
        .or_else([
            TxnOp::get(key.as_str(), None),
            TxnOp::get(name.as_str(), Some(owner)),
        ]);
    client.txn(txn).await.unwrap();
    client.delete(key.as_str(), None).await.unwrap();
    drop(keep_alive);
    client.lease_revoke(lease).await.unwrap();
}

/// Returns one put's round-trip p50 and the hand-off latencies.
async fn handoff(server: &EtcdServer) -> (Duration, Vec<Duration>) {
    let mut client = server.client().await;
    let mut puts = Vec::new();
    for _ in 0..HANDOFFS {
        // Idle as long as a hand-off round idles before its unlock, so both
        // meet the machine in the same state.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let start = Instant::now();
        client.put("/bench-put", "", None).await.unwrap();
        puts.push(start.elapsed());
    }
    puts.sort();

    let first = Etcd3Locker::with_options(server.client().await, LockerOptions::new(60, "/bh"));
    let second = Arc::new(Etcd3Locker::with_options(
        server.client().await,
        LockerOptions::new(60, "/bh"),
    ));
    let id = UploadId::parse("handoff").unwrap();
    let mut latencies = Vec::new();
    for _ in 0..HANDOFFS {
        let held = first.lock(&id, deadline()).await.unwrap();
        let waiter = {
            let second = second.clone();
            let id = id.clone();
            tokio::spawn(async move {
                let lock = second.lock(&id, deadline()).await.unwrap();
                let acquired = Instant::now();
                lock.unlock().await.unwrap();
                acquired
            })
        };
        // The waiter has written its key and watches the holder's.
        while client
            .get(
                "/bhhandoff/",
                Some(GetOptions::new().with_prefix().with_count_only()),
            )
            .await
            .unwrap()
            .count()
            < 2
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let released = Instant::now();
        held.unlock().await.unwrap();
        let acquired = waiter.await.unwrap();
        latencies.push(acquired - released);
    }
    latencies.sort();
    first.shutdown().await;
    second.shutdown().await;
    (percentile(&puts, 50), latencies)
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) * p) / 100]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

struct Seen {
    upto: i64,
    waiting: std::collections::BTreeMap<i64, Vec<tokio::sync::oneshot::Sender<()>>>,
}
static MIRROR: tokio::sync::OnceCell<(i64, Vec<Arc<std::sync::Mutex<Seen>>>)> =
    tokio::sync::OnceCell::const_new();
fn shards() -> usize {
    std::env::var("SHARDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

async fn put_watch_cycle(client: &Client, id: &str) {
    let mut client = client.clone();
    let (lease, seen) = MIRROR
        .get_or_init(|| async {
            let mut c = client.clone();
            let lease = c.lease_grant(600, None).await.unwrap().id();
            let mut all = Vec::new();
            for shard in 0..shards() {
                let seen = Arc::new(std::sync::Mutex::new(Seen {
                    upto: 0,
                    waiting: Default::default(),
                }));
                all.push(seen.clone());
                let mut stream = c
                    .watch(
                        format!("/bench-pw/{shard}/"),
                        Some(etcd_client::WatchOptions::new().with_prefix()),
                    )
                    .await
                    .unwrap();
                let s2 = seen.clone();
                tokio::spawn(async move {
                    while let Ok(Some(r)) = stream.message().await {
                        if let Some(rev) = r
                            .events()
                            .iter()
                            .filter_map(|e| e.kv())
                            .map(|kv| kv.mod_revision())
                            .max()
                        {
                            let mut g = s2.lock().unwrap();
                            g.upto = rev;
                            let later = g.waiting.split_off(&(rev + 1));
                            let done = std::mem::replace(&mut g.waiting, later);
                            drop(g);
                            for (_, v) in done {
                                for tx in v {
                                    let _ = tx.send(());
                                }
                            }
                        }
                    }
                });
            }
            (lease, all)
        })
        .await
        .clone();
    let shard = id[1..].parse::<usize>().unwrap() % seen.len();
    let seen = seen[shard].clone();
    let key = format!("/bench-pw/{shard}/{id}/{lease:x}");
    let put = client
        .put(
            key.as_str(),
            "",
            Some(PutOptions::new().with_lease(lease).with_prev_key()),
        )
        .await
        .unwrap();
    let rev = put.header().unwrap().revision();
    let rx = {
        let mut g = seen.lock().unwrap();
        if g.upto >= rev {
            None
        } else {
            let (tx, rx) = tokio::sync::oneshot::channel();
            g.waiting.entry(rev).or_default().push(tx);
            Some(rx)
        }
    };
    if let Some(rx) = rx {
        rx.await.unwrap();
    }
    client.delete(key.as_str(), None).await.unwrap();
}

async fn put_range_cycle(client: &Client, id: &str) {
    static LEASE: tokio::sync::OnceCell<i64> = tokio::sync::OnceCell::const_new();
    let mut client = client.clone();
    let lease = *LEASE
        .get_or_init(|| async { client.clone().lease_grant(600, None).await.unwrap().id() })
        .await;
    let name = format!("/bench-pr/{id}/");
    let key = format!("{name}{lease:x}");
    client
        .put(
            key.as_str(),
            "",
            Some(PutOptions::new().with_lease(lease).with_prev_key()),
        )
        .await
        .unwrap();
    client
        .get(
            name.as_str(),
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_serializable()
                    .with_keys_only(),
            ),
        )
        .await
        .unwrap();
    client.delete(key.as_str(), None).await.unwrap();
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

fn etcd_pid() -> Option<u32> {
    let me = std::process::id().to_string();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.contains("(etcd)") {
            let rest = stat.rsplit(')').next().unwrap_or("");
            if rest.split_whitespace().nth(1) == Some(me.as_str()) {
                return Some(pid);
            }
        }
    }
    None
}

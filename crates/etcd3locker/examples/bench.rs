//! Benchmark of etcd3locker against its own etcd (ETCD_BIN or PATH), printed
//! as a Markdown table for docs/benchmarks.md.
//!
//! At 1, 16, 64 and 256 tasks in flight, each on its own id, for
//! `BENCH_SECS` seconds (default 6) per kind, cut into `BENCH_SLICES`
//! (default 6) alternating slices, on one etcd in one run:
//! - raw put+delete pairs per second: the two raft writes any lock/unlock
//!   cycle needs, the ceiling for a locker;
//! - raw Txn+delete pairs per second: the conditional create on a lease that
//!   any etcd lock needs (etcd 3.4 runs a Txn at about half a put's rate),
//!   then a plain delete;
//! - raw range-Txn+delete pairs per second: the same, but the Txn's compare
//!   is the locker's free-lock compare, on the whole range `{name}/` rather
//!   than on one key (the protocol of Go's `concurrency.Mutex` needs it):
//!   the floor of this locker's protocol;
//! - this locker's lock+unlock cycles per second, with lock latency p50/p99;
//! - the Go locker's pattern per cycle (lease grant, keep-alive, lock Txn,
//!   delete, revoke) on the same client;
//! - raft proposals per cycle, from etcd's `etcd_server_proposals_committed_total`;
//! - CPU time per cycle of etcd and of this benchmark's process (the client),
//!   from `/proc`: on a small machine the two share the cores, so what the
//!   client spends is taken from etcd.
//!
//! `BENCH_PIN=1` pins etcd to CPU 0 and the benchmark to CPU 1, as if etcd
//! ran on a host of its own (needs two CPUs).
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
use tusd_core::{Locker, UploadId};
use tusd_testsupport::{etcd_version, EtcdServer};

const CONCURRENCY: [usize; 4] = [1, 16, 64, 256];
const HANDOFFS: usize = 200;

#[derive(Clone, Copy)]
enum Kind {
    Raw,
    RawTxn,
    RawRangeTxn,
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
    /// CPU ticks (1/100 s) of the benchmark process and of etcd.
    client_ticks: u64,
    etcd_ticks: u64,
}

impl Run {
    fn add(&mut self, other: Run) {
        self.cycles += other.cycles;
        self.seconds += other.seconds;
        self.proposals += other.proposals;
        self.latencies.extend(other.latencies);
        self.client_ticks += other.client_ticks;
        self.etcd_ticks += other.etcd_ticks;
    }

    fn per_second(&self) -> f64 {
        self.cycles as f64 / self.seconds
    }

    fn proposals_per_cycle(&self) -> f64 {
        self.proposals as f64 / (self.cycles as f64).max(1.0)
    }

    /// Microseconds of CPU per cycle, from ticks of 10 ms.
    fn micros_per_cycle(&self, ticks: u64) -> f64 {
        ticks as f64 * 10_000.0 / (self.cycles as f64).max(1.0)
    }
}

#[tokio::main]
async fn main() {
    let secs: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    let slices: u32 = std::env::var("BENCH_SLICES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    let window = Duration::from_secs(secs);
    let mut server = EtcdServer::start().await;
    let etcd_pid = server.member().pid().expect("etcd runs");
    let pinned = std::env::var("BENCH_PIN").is_ok_and(|v| v == "1");
    if pinned {
        pin(etcd_pid, "0");
        pin(std::process::id(), "1");
    }
    let client = server.client().await;
    let locker = Etcd3Locker::with_options(client.clone(), LockerOptions::new(60, "/bench-lock"));
    // Grant the lease outside the measurement.
    let warm = UploadId::parse("warm").unwrap();
    let lock = locker.lock(&warm, deadline()).await.unwrap();
    lock.unlock().await.unwrap();

    println!(
        "{}, {secs} s per cell in {slices} slices, one etcd node on loopback{}\n",
        etcd_version(),
        if pinned {
            ", etcd pinned to CPU 0 and the benchmark to CPU 1"
        } else {
            ", unpinned"
        }
    );
    println!("| in flight | raw put+delete /s | raw Txn+delete /s | raw range-Txn+delete /s | locker cycles /s | locker / raw put | locker / raw Txn | locker / raw range-Txn | Go pattern cycles /s | locker / Go | lock p50 | lock p99 | proposals per cycle (raw / locker / Go) | etcd CPU µs per cycle (raw / Txn / range-Txn / locker) | client CPU µs per cycle (raw / Txn / range-Txn / locker) |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for tasks in CONCURRENCY {
        // Short alternating slices, so that load from outside the benchmark
        // and the VM's own drift hit all kinds alike.
        let (mut raw, mut ours, mut go) = (Run::default(), Run::default(), Run::default());
        let mut raw_txn = Run::default();
        let mut range_txn = Run::default();
        let slice = window / slices;
        let bench = Bench {
            server: &server,
            etcd_pid,
            client: &client,
            locker: &locker,
        };
        for _ in 0..slices {
            raw.add(bench.run(Kind::Raw, tasks, slice).await);
            raw_txn.add(bench.run(Kind::RawTxn, tasks, slice).await);
            range_txn.add(bench.run(Kind::RawRangeTxn, tasks, slice).await);
            ours.add(bench.run(Kind::Locker, tasks, slice).await);
            go.add(bench.run(Kind::GoPattern, tasks, slice).await);
        }
        ours.latencies.sort();
        println!(
            "| {tasks} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.0} | {:.1} | {:.2} ms | {:.2} ms | {:.2} / {:.2} / {:.2} | {:.0} / {:.0} / {:.0} / {:.0} | {:.0} / {:.0} / {:.0} / {:.0} |",
            raw.per_second(),
            raw_txn.per_second(),
            range_txn.per_second(),
            ours.per_second(),
            ours.per_second() / raw.per_second(),
            ours.per_second() / raw_txn.per_second(),
            ours.per_second() / range_txn.per_second(),
            go.per_second(),
            ours.per_second() / go.per_second(),
            ms(percentile(&ours.latencies, 50)),
            ms(percentile(&ours.latencies, 99)),
            raw.proposals_per_cycle(),
            ours.proposals_per_cycle(),
            go.proposals_per_cycle(),
            raw.micros_per_cycle(raw.etcd_ticks),
            raw_txn.micros_per_cycle(raw_txn.etcd_ticks),
            range_txn.micros_per_cycle(range_txn.etcd_ticks),
            ours.micros_per_cycle(ours.etcd_ticks),
            raw.micros_per_cycle(raw.client_ticks),
            raw_txn.micros_per_cycle(raw_txn.client_ticks),
            range_txn.micros_per_cycle(range_txn.client_ticks),
            ours.micros_per_cycle(ours.client_ticks),
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

/// What every slice runs against.
struct Bench<'a> {
    server: &'a EtcdServer,
    etcd_pid: u32,
    client: &'a Client,
    locker: &'a Etcd3Locker,
}

impl Bench<'_> {
    async fn run(&self, kind: Kind, tasks: usize, window: Duration) -> Run {
        let before = self.server.proposals_committed();
        let ticks_before = (cpu_ticks(std::process::id()), cpu_ticks(self.etcd_pid));
        let end = Instant::now() + window;
        let mut handles = Vec::new();
        for task in 0..tasks {
            let client = self.client.clone();
            let locker = self.locker.clone();
            handles.push(tokio::spawn(async move {
                let mut cycles = 0u64;
                let mut latencies = Vec::new();
                let id = format!("t{task}");
                while Instant::now() < end {
                    match kind {
                        Kind::Raw => raw_cycle(&client, &id).await,
                        Kind::RawTxn => raw_txn_cycle(&client, &id).await,
                        Kind::RawRangeTxn => range_txn_cycle(&client, &id).await,
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
        let client_ticks = cpu_ticks(std::process::id()) - ticks_before.0;
        let etcd_ticks = cpu_ticks(self.etcd_pid) - ticks_before.1;
        // The counter trails the answers a little.
        tokio::time::sleep(Duration::from_millis(200)).await;
        Run {
            cycles,
            seconds,
            proposals: self.server.proposals_committed() - before,
            latencies,
            client_ticks,
            etcd_ticks,
        }
    }
}

async fn raw_cycle(client: &Client, id: &str) {
    let key = format!("/bench-raw/{id}");
    let mut client = client.clone();
    client.put(key.as_str(), "", None).await.unwrap();
    client.delete(key.as_str(), None).await.unwrap();
}

/// The lease in `cell`, granted on first use: one per kind, shared by its
/// cycles.
async fn shared_lease(cell: &tokio::sync::OnceCell<i64>, client: &Client) -> i64 {
    *cell
        .get_or_init(|| async { client.clone().lease_grant(600, None).await.unwrap().id() })
        .await
}

/// The cheapest conditional create: the Txn any lock needs (put if absent,
/// on a lease), then the delete. No locker can beat this per cycle.
async fn raw_txn_cycle(client: &Client, id: &str) {
    static LEASE: tokio::sync::OnceCell<i64> = tokio::sync::OnceCell::const_new();
    let lease = shared_lease(&LEASE, client).await;
    let key = format!("/bench-txn/{id}");
    let free = Compare::create_revision(key.as_str(), CompareOp::Equal, 0);
    put_if_then_delete(client, free, &key, lease).await;
}

/// [`raw_txn_cycle`] with the locker's free-lock compare: no key under the
/// lock's range, instead of no such key.
async fn range_txn_cycle(client: &Client, id: &str) {
    static LEASE: tokio::sync::OnceCell<i64> = tokio::sync::OnceCell::const_new();
    let lease = shared_lease(&LEASE, client).await;
    let name = format!("/bench-range{id}/");
    let free = Compare::create_revision(name.as_str(), CompareOp::Equal, 0).with_prefix();
    put_if_then_delete(client, free, &format!("{name}{lease:x}"), lease).await;
}

/// One Txn that puts `key` on `lease` when `free` holds, then the key's
/// delete: the two raft writes of a lock cycle with no locker around them.
async fn put_if_then_delete(client: &Client, free: Compare, key: &str, lease: i64) {
    let mut client = client.clone();
    let txn = Txn::new().when([free]).and_then([TxnOp::put(
        key,
        "",
        Some(PutOptions::new().with_lease(lease)),
    )]);
    client.txn(txn).await.unwrap();
    client.delete(key, None).await.unwrap();
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

/// User plus system CPU time of process `pid` so far, in ticks of 10 ms
/// (fields 14 and 15 of `/proc/{pid}/stat`, after the command name).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("process runs");
    let after_name = stat.rsplit(')').next().unwrap_or_default();
    after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|field| field.parse::<u64>().expect("numeric CPU time"))
        .sum()
}

/// Pins every thread of process `pid` to `cpus`.
fn pin(pid: u32, cpus: &str) {
    let status = std::process::Command::new("taskset")
        .args(["--all-tasks", "--cpu-list", "--pid", cpus, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("taskset (util-linux) is installed");
    assert!(status.success(), "taskset failed for pid {pid}");
}

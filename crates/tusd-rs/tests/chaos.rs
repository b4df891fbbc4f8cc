//! The fault-injection suite (issue 7): a whole cluster under load while its
//! parts fail one after another.
//!
//! Setup: a 3-member etcd cluster; 3 tusd-rs nodes sharing one upload
//! directory, each with all three etcd endpoints, `--etcd-ttl 4` and
//! `--behind-proxy`; a real nginx round-robin in front of them
//! (`tusd_testsupport::Nginx`, the configuration docs/cluster.md
//! recommends).
//!
//! Workload, all through nginx: `CHAOS_CLIENTS` clients (default 6), each
//! uploading one upload after another (256 KiB to 3 MiB of deterministic
//! bytes each) in PATCHes of 64 KiB to 1 MiB, paced, each sent whole, cut
//! off mid-body (FIN or reset), stalled and then finished, or stalled and
//! abandoned for a new connection. After anything but a 204 the client asks
//! HEAD for the offset and resumes from there, with backoff; so an upload's
//! requests land on all three nodes. Three probe lanes send HEAD + a 64-byte
//! PATCH on their own uploads every 200 ms with short timeouts.
//!
//! Faults, one after another while the uploads run, each lifted again and
//! followed by recovery (a probe that started after the lift succeeds):
//! node `kill -9` then restart on the same port; node `SIGSTOP` past the
//! TTL then `SIGCONT`; etcd leader `kill -9` then restart; etcd leader
//! `SIGSTOP` then `SIGCONT`; an etcd follower `SIGSTOP` then `SIGCONT`; all
//! etcd members killed (or, in even rounds, paused) past the TTL, then back.
//! `CHAOS_ROUNDS` (default 1) repeats the schedule; round r hits node r-1.
//!
//! Checks, all collected and asserted at the end:
//! 1. every upload finished and its file is byte-identical to what its
//!    client sent (read from disk and downloaded through nginx);
//! 2. every offset an answer reported (204 of a PATCH, also a late one to an
//!    abandoned PATCH, and HEAD's) is at most what the client had sent when
//!    the answer came, and at least every offset acknowledged before the
//!    request was sent; the file's first N bytes are the client's for the
//!    largest acknowledged N;
//! 3. every upload's fence record (`{id}.fence`) names the etcd issuer and
//!    has retired none (no write ever came under another locker); refusals
//!    of stale holders (`store refused a stale lock holder` in the node
//!    logs) are counted and reported, not failed;
//! 4. every 5xx or unanswered request of an upload is followed by a success
//!    for it, every upload finishes within 120 s after the last fault was
//!    lifted, and the probes succeed again within 60 s after each lift;
//! 5. recovery times are measured by the probes and printed as a table
//!    (also written to `target/tmp/chaos-report-<etcd version>.txt`; with
//!    `CHAOS_KEEP_LOGS=1`, or on failure, the node and nginx logs too).
//!
//! Times are measured and reported, never asserted beyond those generous
//! bounds.

#[path = "common/chaos_client.rs"]
mod chaos_client;
#[path = "common/chaos_node.rs"]
mod chaos_node;
mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chaos_client::{LateAnswer, Outcome, PatchEnd, PatchRequest, Plan, Rng, Target, Timeouts};
use chaos_node::{Node, PortHold};
use common::BIN;
use tusd_testsupport::{EtcdCluster, Nginx};

/// `--etcd-ttl` of every node, in seconds.
const TTL_SECONDS: u64 = 4;
const NODES: usize = 3;
const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const PROBE_LANES: usize = 3;
const PROBE_LENGTH: u64 = 4 * MIB;
const PROBE_BYTES: usize = 64;
const PROBE_EVERY: Duration = Duration::from_millis(200);
/// Bytes of a client body between two pacing sleeps, and the sleep: about
/// 640 KiB/s per client, so that uploads are in flight when faults strike.
const PACE: Duration = Duration::from_millis(25);
/// A probe that started after a fault was lifted must succeed within this.
const RECOVERY_BOUND: Duration = Duration::from_secs(60);
/// Every upload must be finished this long after the last fault was lifted.
const FINISH_BOUND: Duration = Duration::from_secs(120);
/// Quiet time after each recovery before the next fault.
const SETTLE: Duration = Duration::from_secs(3);

const CLIENT_TIMEOUTS: Timeouts = Timeouts {
    connect: Duration::from_secs(3),
    write: Duration::from_secs(10),
    answer: Duration::from_secs(25),
};
const PROBE_TIMEOUTS: Timeouts = Timeouts {
    connect: Duration::from_secs(2),
    write: Duration::from_secs(2),
    answer: Duration::from_secs(3),
};

struct Knobs {
    rounds: usize,
    clients: usize,
    seed: u64,
    /// Extra flags for every node (`CHAOS_NODE_ARGS`, split at spaces), e.g.
    /// `--fault-ignore-lock-signals` to leave the store's fence alone.
    node_args: Vec<String>,
}

fn knob(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
        _ => default,
    }
}

fn knobs() -> Knobs {
    Knobs {
        rounds: knob("CHAOS_ROUNDS", 1).max(1) as usize,
        clients: knob("CHAOS_CLIENTS", 6).max(1) as usize,
        seed: knob("CHAOS_SEED", 7),
        node_args: std::env::var("CHAOS_NODE_ARGS")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
    }
}

/// One upload of one client, as the client saw it.
struct UploadRecord {
    client: usize,
    seed: u64,
    len: u64,
    id: Option<String>,
    /// How far the client has put the upload's bytes into sockets.
    sent: Arc<AtomicU64>,
    /// The largest offset any answer reported.
    max_ack: u64,
    acks: u32,
    finished: Option<Instant>,
    plans: BTreeMap<&'static str, u32>,
    late_answers: u32,
    /// 204s that stored less than the PATCH sent in full.
    short_204s: u32,
}

/// One request's result as a client or probe saw it.
struct Event {
    at: Instant,
    /// Index into the upload records; `None` for probes.
    upload: Option<usize>,
    what: &'static str,
    /// A status code, or `None` for no answer.
    status: Option<u16>,
    detail: String,
}

struct ProbeResult {
    start: Instant,
    end: Instant,
    ok: bool,
    detail: String,
}

struct Shared {
    target: Target,
    stop_new_uploads: AtomicBool,
    stop_probes: AtomicBool,
    uploads: Mutex<Vec<UploadRecord>>,
    events: Mutex<Vec<Event>>,
    violations: Mutex<Vec<String>>,
    probes: Mutex<Vec<ProbeResult>>,
    probe_ids: Mutex<Vec<String>>,
}

impl Shared {
    fn violation(&self, text: String) {
        eprintln!("chaos: VIOLATION: {text}");
        self.violations.lock().unwrap().push(text);
    }

    fn event(&self, upload: Option<usize>, what: &'static str, status: Option<u16>, detail: &str) {
        self.event_at(Instant::now(), upload, what, status, detail);
    }

    fn event_at(
        &self,
        at: Instant,
        upload: Option<usize>,
        what: &'static str,
        status: Option<u16>,
        detail: &str,
    ) {
        self.events.lock().unwrap().push(Event {
            at,
            upload,
            what,
            status,
            detail: detail.chars().take(160).collect(),
        });
    }

    /// Checks and records an offset that an answer reported for upload
    /// `index`: at most what was sent when it came, at least `floor` (the
    /// largest offset acknowledged before the request was sent).
    fn ack(&self, index: usize, what: &str, offset: u64, sent_then: u64, floor: u64) {
        let mut uploads = self.uploads.lock().unwrap();
        let record = &mut uploads[index];
        let id = record.id.clone().unwrap_or_default();
        if offset > sent_then {
            drop(uploads);
            self.violation(format!(
                "upload {id}: {what} reported offset {offset}, but the client had sent only {sent_then} bytes"
            ));
            return;
        }
        if offset < floor {
            drop(uploads);
            self.violation(format!(
                "upload {id}: {what} reported offset {offset}, below {floor} acknowledged before the request"
            ));
            return;
        }
        record.max_ack = record.max_ack.max(offset);
        record.acks += 1;
    }

    fn floor(&self, index: usize) -> u64 {
        self.uploads.lock().unwrap()[index].max_ack
    }
}

fn status_of(outcome: &Outcome) -> (Option<u16>, String) {
    match outcome {
        Outcome::Answered(r) => (Some(r.status), r.summary()),
        Outcome::Failed(e) => (None, e.clone()),
    }
}

/// Exponential backoff with jitter, 100 ms to 2 s.
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff {
            next: Duration::from_millis(100),
        }
    }

    fn reset(&mut self) {
        self.next = Duration::from_millis(100);
    }

    async fn wait(&mut self, rng: &mut Rng) {
        let jitter = rng.range(0, self.next.as_millis() as u64 / 2 + 1);
        tokio::time::sleep(self.next + Duration::from_millis(jitter)).await;
        self.next = (self.next * 2).min(Duration::from_secs(2));
    }
}

/// POSTs until an upload of `len` bytes exists; returns its id.
async fn create(
    shared: &Shared,
    upload: Option<usize>,
    len: u64,
    timeouts: Timeouts,
    rng: &mut Rng,
) -> String {
    let mut backoff = Backoff::new();
    loop {
        let outcome = shared
            .target
            .send(
                "POST",
                "/files/",
                &[("Upload-Length", len.to_string())],
                timeouts,
            )
            .await;
        let (status, detail) = status_of(&outcome);
        shared.event(upload, "POST", status, &detail);
        if let Outcome::Answered(r) = &outcome {
            if r.status == 201 {
                let location = r.header("location").unwrap_or_default();
                return location.rsplit('/').next().unwrap_or_default().to_owned();
            }
            if r.status < 500 && r.status != 423 {
                shared.violation(format!("POST answered {}", r.summary()));
            }
        }
        backoff.wait(rng).await;
    }
}

/// One client: uploads one upload after another until told to stop (and at
/// least one).
async fn client(shared: Arc<Shared>, client: usize, seed: u64) {
    let mut rng = Rng::new(seed ^ (client as u64 + 1).wrapping_mul(0x51_7CC1_B727_220A));
    let mut count = 0u64;
    while count == 0 || !shared.stop_new_uploads.load(Ordering::SeqCst) {
        let len = rng.range(256 * KIB, 3 * MIB + 1);
        let upload_seed = rng.next();
        let index = {
            let mut uploads = shared.uploads.lock().unwrap();
            uploads.push(UploadRecord {
                client,
                seed: upload_seed,
                len,
                id: None,
                sent: Arc::new(AtomicU64::new(0)),
                max_ack: 0,
                acks: 0,
                finished: None,
                plans: BTreeMap::new(),
                late_answers: 0,
                short_204s: 0,
            });
            uploads.len() - 1
        };
        upload(&shared, index, &mut rng).await;
        count += 1;
    }
}

/// Sends upload `index` to its end, resuming after every failure.
async fn upload(shared: &Shared, index: usize, rng: &mut Rng) {
    let (len, seed, sent) = {
        let uploads = shared.uploads.lock().unwrap();
        let r = &uploads[index];
        (r.len, r.seed, r.sent.clone())
    };
    let data: Arc<[u8]> = chaos_client::upload_data(seed, len as usize).into();
    let id = create(shared, Some(index), len, CLIENT_TIMEOUTS, rng).await;
    shared.uploads.lock().unwrap()[index].id = Some(id.clone());
    let path = format!("/files/{id}");
    let mut offset = 0u64;
    let mut need_head = false;
    let mut backoff = Backoff::new();
    let mut late: Vec<(u64, tokio::task::JoinHandle<Option<LateAnswer>>)> = Vec::new();
    loop {
        if need_head {
            let floor = shared.floor(index);
            let outcome = shared
                .target
                .send("HEAD", &path, &[], CLIENT_TIMEOUTS)
                .await;
            let (status, detail) = status_of(&outcome);
            shared.event(Some(index), "HEAD", status, &detail);
            match outcome {
                Outcome::Answered(r) if r.status == 200 => match r.offset() {
                    Some(reported) => {
                        shared.ack(index, "HEAD", reported, sent.load(Ordering::SeqCst), floor);
                        offset = reported;
                        need_head = false;
                        backoff.reset();
                    }
                    None => {
                        shared.violation(format!("upload {id}: HEAD 200 without Upload-Offset"));
                        backoff.wait(rng).await;
                    }
                },
                Outcome::Answered(r) if matches!(r.status, 404 | 410) => {
                    shared.violation(format!(
                        "upload {id}: HEAD answered {} (the upload is gone)",
                        r.summary()
                    ));
                    return;
                }
                _ => backoff.wait(rng).await,
            }
            continue;
        }
        if offset >= len {
            break;
        }
        let n = rng.range(64 * KIB, MIB + 1).min(len - offset) as usize;
        let plan = match rng.range(0, 100) {
            0..=54 => Plan::Whole,
            55..=69 => Plan::Disconnect {
                after: rng.range(1, n as u64) as usize,
                reset: rng.chance(50),
            },
            70..=84 => Plan::StallThenFinish {
                after: rng.range(1, n as u64) as usize,
                pause: Duration::from_millis(rng.range(500, 2500)),
            },
            _ => Plan::StallThenAbandon {
                after: rng.range(1, n as u64) as usize,
            },
        };
        *shared.uploads.lock().unwrap()[index]
            .plans
            .entry(plan.name())
            .or_default() += 1;
        let floor = shared.floor(index);
        let body: Arc<[u8]> = data[offset as usize..offset as usize + n].into();
        let end = shared
            .target
            .patch(
                PatchRequest {
                    path: &path,
                    offset,
                    body,
                    plan,
                    pace: PACE,
                    sent: sent.clone(),
                },
                CLIENT_TIMEOUTS,
            )
            .await;
        match end {
            PatchEnd::Answered(r) => {
                shared.event(Some(index), "PATCH", Some(r.status), &r.summary());
                if r.status == 204 {
                    match r.offset() {
                        Some(reported) => {
                            shared.ack(
                                index,
                                "PATCH 204",
                                reported,
                                sent.load(Ordering::SeqCst),
                                floor.max(offset),
                            );
                            if reported < offset + n as u64 {
                                shared.uploads.lock().unwrap()[index].short_204s += 1;
                            }
                            offset = reported;
                            backoff.reset();
                        }
                        None => {
                            shared
                                .violation(format!("upload {id}: PATCH 204 without Upload-Offset"));
                            need_head = true;
                        }
                    }
                } else if matches!(r.status, 404 | 410 | 400 | 403 | 413 | 415 | 460) {
                    shared.violation(format!(
                        "upload {id}: PATCH at {offset} answered {}",
                        r.summary()
                    ));
                    need_head = true;
                    backoff.wait(rng).await;
                } else {
                    // 409, 423, 5xx: ask where the upload is and go on.
                    need_head = true;
                    backoff.wait(rng).await;
                }
            }
            PatchEnd::Failed(reason) => {
                shared.event(Some(index), "PATCH", None, &reason);
                need_head = true;
                backoff.wait(rng).await;
            }
            PatchEnd::Disconnected => {
                shared.event(Some(index), "PATCH", None, "client disconnected on purpose");
                need_head = true;
            }
            PatchEnd::Abandoned(handle) => {
                shared.event(
                    Some(index),
                    "PATCH",
                    None,
                    "client abandoned a stalled PATCH",
                );
                late.push((floor, handle));
                need_head = true;
            }
        }
    }
    shared.uploads.lock().unwrap()[index].finished = Some(Instant::now());
    // Late answers to abandoned PATCHes: each must report an offset the
    // client had sent when it came, and none below what was acknowledged
    // before that PATCH was sent.
    for (floor, handle) in late {
        if let Ok(Some(answer)) = handle.await {
            let LateAnswer {
                received,
                sent_then,
                response,
            } = answer;
            shared.event_at(
                received,
                Some(index),
                "late PATCH",
                Some(response.status),
                &response.summary(),
            );
            shared.uploads.lock().unwrap()[index].late_answers += 1;
            if response.status == 204 {
                if let Some(reported) = response.offset() {
                    shared.ack(index, "late PATCH 204", reported, sent_then, floor);
                }
            }
        }
    }
}

/// A probe lane: HEAD + a small PATCH on its own upload, again and again.
async fn probe_lane(shared: Arc<Shared>, lane: usize, seed: u64) {
    let mut rng = Rng::new(seed ^ 0xABCD ^ lane as u64);
    let id = create(&shared, None, PROBE_LENGTH, PROBE_TIMEOUTS, &mut rng).await;
    shared.probe_ids.lock().unwrap().push(id.clone());
    let path = format!("/files/{id}");
    let body: Arc<[u8]> = vec![lane as u8; PROBE_BYTES].into();
    let sent = Arc::new(AtomicU64::new(0));
    while !shared.stop_probes.load(Ordering::SeqCst) {
        let start = Instant::now();
        let (ok, detail) = match shared.target.send("HEAD", &path, &[], PROBE_TIMEOUTS).await {
            Outcome::Answered(r) if r.status == 200 => match r.offset() {
                Some(offset) if offset + PROBE_BYTES as u64 <= PROBE_LENGTH => {
                    match shared
                        .target
                        .patch(
                            PatchRequest {
                                path: &path,
                                offset,
                                body: body.clone(),
                                plan: Plan::Whole,
                                pace: Duration::ZERO,
                                sent: sent.clone(),
                            },
                            PROBE_TIMEOUTS,
                        )
                        .await
                    {
                        PatchEnd::Answered(r) if r.status == 204 => (true, "ok".to_owned()),
                        PatchEnd::Answered(r) => (false, format!("PATCH {}", r.summary())),
                        PatchEnd::Failed(e) => (false, format!("PATCH {e}")),
                        other => (false, format!("PATCH {other:?}")),
                    }
                }
                _ => (false, "HEAD without a usable offset".to_owned()),
            },
            Outcome::Answered(r) => (false, format!("HEAD {}", r.summary())),
            Outcome::Failed(e) => (false, format!("HEAD {e}")),
        };
        let end = Instant::now();
        shared.event(
            None,
            "probe",
            ok.then_some(204),
            if ok { "ok" } else { &detail },
        );
        shared.probes.lock().unwrap().push(ProbeResult {
            start,
            end,
            ok,
            detail,
        });
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    NodeKill(usize),
    NodePause(usize),
    LeaderKill,
    LeaderPause,
    FollowerPause,
    Outage { pause: bool },
}

struct FaultRecord {
    label: String,
    injected: Instant,
    lifted: Instant,
    recovered: Option<Instant>,
}

/// Injects `fault`, holds it, lifts it; returns the record without the
/// recovery.
async fn inject(fault: Fault, etcd: &mut EtcdCluster, nodes: &mut [Node]) -> FaultRecord {
    let (label, injected, lifted);
    match fault {
        Fault::NodeKill(i) => {
            label = format!("tusd node kill -9 ({}), restart after 2 s", nodes[i].name());
            injected = Instant::now();
            tokio::task::block_in_place(|| nodes[i].kill());
            let hold = PortHold::new(nodes[i].port());
            tokio::time::sleep(Duration::from_secs(2)).await;
            lifted = Instant::now();
            drop(hold);
            tokio::task::block_in_place(|| nodes[i].restart());
        }
        Fault::NodePause(i) => {
            let hold = Duration::from_secs(TTL_SECONDS + 2);
            label = format!(
                "tusd node SIGSTOP ({}) for {} s (TTL {TTL_SECONDS} s)",
                nodes[i].name(),
                hold.as_secs()
            );
            injected = Instant::now();
            nodes[i].signal(libc::SIGSTOP);
            tokio::time::sleep(hold).await;
            lifted = Instant::now();
            nodes[i].signal(libc::SIGCONT);
        }
        Fault::LeaderKill => {
            let leader = etcd.wait_leader().await;
            label = format!(
                "etcd leader kill -9 ({}), restart after 3 s",
                etcd.member(leader).name()
            );
            injected = Instant::now();
            tokio::task::block_in_place(|| etcd.member(leader).stop());
            let holds = hold_ports(etcd, &[leader]);
            tokio::time::sleep(Duration::from_secs(3)).await;
            lifted = Instant::now();
            drop(holds);
            etcd.member(leader).restart();
        }
        Fault::LeaderPause => {
            let leader = etcd.wait_leader().await;
            label = format!(
                "etcd leader SIGSTOP ({}) for 5 s",
                etcd.member(leader).name()
            );
            injected = Instant::now();
            etcd.member(leader).pause();
            tokio::time::sleep(Duration::from_secs(5)).await;
            lifted = Instant::now();
            etcd.member(leader).resume();
        }
        Fault::FollowerPause => {
            let leader = etcd.wait_leader().await;
            let follower = (leader + 1) % etcd.len();
            label = format!(
                "etcd follower SIGSTOP ({}) for 5 s",
                etcd.member(follower).name()
            );
            injected = Instant::now();
            etcd.member(follower).pause();
            tokio::time::sleep(Duration::from_secs(5)).await;
            lifted = Instant::now();
            etcd.member(follower).resume();
        }
        Fault::Outage { pause } => {
            let hold = Duration::from_secs(TTL_SECONDS + 2);
            label = format!(
                "etcd outage: all 3 members {} for {} s",
                if pause { "SIGSTOP" } else { "kill -9" },
                hold.as_secs()
            );
            injected = Instant::now();
            for i in 0..etcd.len() {
                if pause {
                    etcd.member(i).pause();
                } else {
                    tokio::task::block_in_place(|| etcd.member(i).stop());
                }
            }
            let all: Vec<usize> = (0..etcd.len()).collect();
            let holds = if pause {
                Vec::new()
            } else {
                hold_ports(etcd, &all)
            };
            tokio::time::sleep(hold).await;
            lifted = Instant::now();
            drop(holds);
            for i in 0..etcd.len() {
                if pause {
                    etcd.member(i).resume();
                } else {
                    etcd.member(i).restart();
                }
            }
        }
    }
    FaultRecord {
        label,
        injected,
        lifted,
        recovered: None,
    }
}

/// Keeps the ports of stopped etcd members from other processes.
fn hold_ports(etcd: &mut EtcdCluster, members: &[usize]) -> Vec<PortHold> {
    members
        .iter()
        .flat_map(|&i| etcd.member(i).ports())
        .map(PortHold::new)
        .collect()
}

/// Waits until a probe that started at or after `since` succeeded.
async fn wait_probe_success(shared: &Shared, since: Instant, bound: Duration) -> Option<Instant> {
    let deadline = Instant::now() + bound;
    loop {
        let found = shared
            .probes
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.ok && p.start >= since)
            .map(|p| p.end)
            .min();
        if found.is_some() {
            return found;
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_survive_node_and_etcd_faults_behind_nginx() {
    let knobs = knobs();
    let version = tusd_testsupport::etcd_version();
    let begun = Instant::now();
    eprintln!(
        "chaos: {version}; {} client(s), {} round(s), seed {}, extra node flags {:?} (CHAOS_CLIENTS, CHAOS_ROUNDS, CHAOS_SEED, CHAOS_NODE_ARGS)",
        knobs.clients, knobs.rounds, knobs.seed, knobs.node_args
    );

    let mut etcd = EtcdCluster::start(3).await;
    let dir = tempfile::Builder::new()
        .prefix("tusd-chaos-")
        .tempdir()
        .unwrap();
    let upload_dir = dir.path().join("uploads");
    let endpoints = etcd.endpoints().join(",");
    let mut args: Vec<String> = [
        "--etcd-endpoints",
        &endpoints,
        "--etcd-ttl",
        &TTL_SECONDS.to_string(),
        "--behind-proxy",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(knobs.node_args.iter().cloned());
    let ports: Vec<u16> = (0..NODES)
        .map(|_| tusd_testsupport::ports::free_port())
        .collect();
    let mut nodes: Vec<Node> = tokio::task::block_in_place(|| {
        ports
            .iter()
            .enumerate()
            .map(|(i, &port)| {
                Node::start(&format!("n{i}"), Path::new(BIN), port, &upload_dir, &args)
            })
            .collect()
    });
    let nginx = tokio::task::block_in_place(|| Nginx::start(&ports));

    let shared = Arc::new(Shared {
        target: Target { port: nginx.port() },
        stop_new_uploads: AtomicBool::new(false),
        stop_probes: AtomicBool::new(false),
        uploads: Mutex::new(Vec::new()),
        events: Mutex::new(Vec::new()),
        violations: Mutex::new(Vec::new()),
        probes: Mutex::new(Vec::new()),
        probe_ids: Mutex::new(Vec::new()),
    });
    let probes: Vec<_> = (0..PROBE_LANES)
        .map(|lane| tokio::spawn(probe_lane(shared.clone(), lane, knobs.seed)))
        .collect();
    let clients: Vec<_> = (0..knobs.clients)
        .map(|c| tokio::spawn(client(shared.clone(), c, knobs.seed)))
        .collect();

    // Warm up: every lane has answered and uploads are under way.
    let warm = wait_probe_success(&shared, Instant::now(), RECOVERY_BOUND).await;
    assert!(
        warm.is_some(),
        "the probes never succeeded before any fault"
    );
    tokio::time::sleep(SETTLE).await;

    let mut faults: Vec<FaultRecord> = Vec::new();
    'rounds: for round in 0..knobs.rounds {
        let node = round % NODES;
        let schedule = [
            Fault::NodeKill(node),
            Fault::NodePause((node + 1) % NODES),
            Fault::LeaderKill,
            Fault::LeaderPause,
            Fault::FollowerPause,
            Fault::Outage {
                pause: round % 2 == 1,
            },
        ];
        for fault in schedule {
            eprintln!(
                "chaos: t={}s round {} {fault:?}",
                secs(begun.elapsed()),
                round + 1
            );
            let mut record = inject(fault, &mut etcd, &mut nodes).await;
            // etcd members that were restarted or resumed must be a healthy
            // cluster again (panics with their logs otherwise).
            if matches!(
                fault,
                Fault::LeaderKill
                    | Fault::LeaderPause
                    | Fault::FollowerPause
                    | Fault::Outage { .. }
            ) {
                etcd.wait_healthy().await;
            }
            record.recovered = wait_probe_success(&shared, record.lifted, RECOVERY_BOUND).await;
            let recovered = record.recovered.is_some();
            if !recovered {
                shared.violation(format!(
                    "no probe succeeded within {RECOVERY_BOUND:?} after '{}' was lifted",
                    record.label
                ));
            }
            faults.push(record);
            if !recovered {
                break 'rounds;
            }
            tokio::time::sleep(SETTLE).await;
        }
    }
    let last_lift = faults.last().map_or_else(Instant::now, |f| f.lifted);
    let faults_done = Instant::now();

    // Clients finish the upload they are on and stop.
    shared.stop_new_uploads.store(true, Ordering::SeqCst);
    let deadline = tokio::time::Instant::from_std(last_lift + FINISH_BOUND);
    for handle in clients {
        let abort = handle.abort_handle();
        if tokio::time::timeout_at(deadline, handle).await.is_err() {
            abort.abort();
        }
    }
    let clients_done = Instant::now();
    shared.stop_probes.store(true, Ordering::SeqCst);
    for handle in probes {
        let _ = tokio::time::timeout(Duration::from_secs(30), handle).await;
    }

    // Checks 1, 2 and 4: the bytes, the acknowledged prefixes, the ends.
    let http = reqwest::Client::new();
    let uploads = std::mem::take(&mut *shared.uploads.lock().unwrap());
    let mut verified = 0usize;
    let mut bytes_total = 0u64;
    let mut slowest_finish = Duration::ZERO;
    for (index, record) in uploads.iter().enumerate() {
        let Some(id) = &record.id else {
            shared.violation(format!(
                "client {}: an upload of {} bytes was never created",
                record.client, record.len
            ));
            continue;
        };
        let data = chaos_client::upload_data(record.seed, record.len as usize);
        let stored = std::fs::read(upload_dir.join(id)).unwrap_or_default();
        let acked = record.max_ack as usize;
        if stored.len() < acked || stored[..acked] != data[..acked] {
            shared.violation(format!(
                "upload {id}: the file's first {acked} acknowledged bytes are not the client's (file holds {} bytes, first difference at {:?})",
                stored.len(),
                stored.iter().zip(data.iter()).position(|(a, b)| a != b)
            ));
        }
        match record.finished {
            None => shared.violation(format!(
                "upload {id} (client {}, {} bytes) never finished: acknowledged {}, sent {}, file holds {} bytes; its requests: {}",
                record.client,
                record.len,
                record.max_ack,
                record.sent.load(Ordering::SeqCst),
                stored.len(),
                events_of(&shared, index)
            )),
            Some(at) => {
                slowest_finish = slowest_finish.max(at.saturating_duration_since(last_lift));
                if stored != data {
                    shared.violation(format!(
                        "upload {id}: finished, but the file ({} bytes) differs from the client's {} bytes at {:?}",
                        stored.len(),
                        data.len(),
                        stored.iter().zip(data.iter()).position(|(a, b)| a != b)
                    ));
                }
                let got = http
                    .get(format!("{}{id}", nginx.files_url()))
                    .send()
                    .await
                    .unwrap();
                let status = got.status().as_u16();
                let body = got.bytes().await.unwrap();
                if status != 200 || body[..] != data[..] {
                    shared.violation(format!(
                        "upload {id}: GET through nginx answered {status} with {} bytes, not the client's {}",
                        body.len(),
                        data.len()
                    ));
                } else {
                    verified += 1;
                    bytes_total += record.len;
                }
            }
        }
    }
    {
        // Every failure an upload saw was followed by a success for it.
        let events = shared.events.lock().unwrap();
        let mut last_good: BTreeMap<usize, Instant> = BTreeMap::new();
        for e in events.iter() {
            if let (Some(u), Some(s)) = (e.upload, e.status) {
                if (200..300).contains(&s) {
                    let t = last_good.entry(u).or_insert(e.at);
                    *t = (*t).max(e.at);
                }
            }
        }
        let mut unhealed = Vec::new();
        for e in events.iter() {
            let Some(u) = e.upload else { continue };
            let bad = e.status.is_none_or(|s| s >= 500) && e.what != "late PATCH";
            let intended = e.detail.contains("on purpose") || e.detail.contains("abandoned");
            if bad && !intended && last_good.get(&u).is_none_or(|t| *t < e.at) {
                unhealed.push(format!("{} {:?} {}", e.what, e.status, e.detail));
            }
        }
        drop(events);
        for failure in unhealed {
            shared.violation(format!("a failure never followed by a success: {failure}"));
        }
    }

    // Check 3: the fence records.
    let probe_ids = shared.probe_ids.lock().unwrap().clone();
    let mut issuers: BTreeMap<String, usize> = BTreeMap::new();
    for id in uploads
        .iter()
        .filter_map(|r| r.id.clone())
        .chain(probe_ids.iter().cloned())
    {
        let Ok(Some(text)) = tusd_filestore::fence_record(&upload_dir, &id) else {
            shared.violation(format!("upload {id}: no fence record"));
            continue;
        };
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(record) => {
                let issuer = record["Issuer"].as_str().unwrap_or_default().to_owned();
                let retired = record["Retired"].as_array().map_or(0, Vec::len);
                if !issuer.starts_with("etcd:") || !issuer.ends_with("/tusd") || retired != 0 {
                    shared.violation(format!("upload {id}: fence record {text}"));
                }
                *issuers.entry(issuer).or_default() += 1;
            }
            Err(e) => shared.violation(format!("upload {id}: fence record {text:?}: {e}")),
        }
    }
    if issuers.len() > 1 {
        shared.violation(format!("more than one fence issuer: {issuers:?}"));
    }

    // The report.
    let events = std::mem::take(&mut *shared.events.lock().unwrap());
    let probes = std::mem::take(&mut *shared.probes.lock().unwrap());
    let refusals: Vec<(String, Instant)> = nodes
        .iter()
        .flat_map(|n| {
            n.refusals()
                .into_iter()
                .map(|t| (n.name().to_owned(), t))
                .collect::<Vec<_>>()
        })
        .collect();
    let lease_losses: Vec<Instant> = nodes.iter().flat_map(Node::lease_losses).collect();
    let violations = shared.violations.lock().unwrap().clone();
    let report = report(ReportInput {
        version: &version,
        knobs: &knobs,
        faults: &faults,
        uploads: &uploads,
        events: &events,
        probes: &probes,
        refusals: &refusals,
        lease_losses: &lease_losses,
        issuers: &issuers,
        verified,
        bytes_total,
        slowest_finish,
        total: begun.elapsed(),
        faults_took: faults_done.saturating_duration_since(begun),
        clients_took: clients_done.saturating_duration_since(faults_done),
        nginx_errors: nginx.error_log(),
        violations: &violations,
    });
    println!("{report}");
    let out = report_dir();
    let slug: String = version
        .rsplit(' ')
        .next()
        .unwrap_or("unknown")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
        .collect();
    let _ = std::fs::write(out.join(format!("chaos-report-{slug}.txt")), &report);
    let keep_logs = std::env::var("CHAOS_KEEP_LOGS").is_ok_and(|v| !v.is_empty() && v != "0");
    if keep_logs || !violations.is_empty() {
        // One name per run, so that runs one after another keep their logs.
        let run = format!(
            "{slug}-s{}-r{}-{}",
            knobs.seed,
            knobs.rounds,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        );
        for node in &nodes {
            let _ = std::fs::write(
                out.join(format!("chaos-{run}-{}.log", node.name())),
                node.log(),
            );
        }
        let _ = std::fs::write(
            out.join(format!("chaos-{run}-nginx-error.log")),
            nginx.error_log(),
        );
        let _ = std::fs::write(
            out.join(format!("chaos-{run}-nginx-access.log")),
            nginx.access_log(),
        );
        println!("node and nginx logs in {}", out.display());
    }
    if !violations.is_empty() {
        panic!(
            "{} violation(s); node and nginx logs in {}:\n{}",
            violations.len(),
            out.display(),
            violations.join("\n")
        );
    }
}

fn report_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

fn events_of(shared: &Shared, index: usize) -> String {
    let events = shared.events.lock().unwrap();
    let list: Vec<String> = events
        .iter()
        .filter(|e| e.upload == Some(index))
        .map(|e| format!("{} {:?} {}", e.what, e.status, e.detail))
        .collect();
    let skip = list.len().saturating_sub(30);
    list[skip..].join("; ")
}

struct ReportInput<'a> {
    version: &'a str,
    knobs: &'a Knobs,
    faults: &'a [FaultRecord],
    uploads: &'a [UploadRecord],
    events: &'a [Event],
    probes: &'a [ProbeResult],
    refusals: &'a [(String, Instant)],
    lease_losses: &'a [Instant],
    issuers: &'a BTreeMap<String, usize>,
    verified: usize,
    bytes_total: u64,
    slowest_finish: Duration,
    total: Duration,
    faults_took: Duration,
    clients_took: Duration,
    nginx_errors: String,
    violations: &'a [String],
}

/// Non-2xx answers and unanswered requests, counted as "WHAT STATUS
/// (reason)", the reason being the answer's first line with numbers as `#`
/// (nginx's HTML pages left out).
fn tally<'a>(events: impl Iterator<Item = &'a Event>) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for e in events {
        let key = match e.status {
            Some(s) if (200..300).contains(&s) => continue,
            Some(s) => {
                let mut reason = String::new();
                for c in e
                    .detail
                    .strip_prefix(&s.to_string())
                    .unwrap_or(&e.detail)
                    .trim()
                    .chars()
                    .take(60)
                {
                    let c = if c.is_ascii_digit() { '#' } else { c };
                    if !(c == '#' && reason.ends_with('#')) {
                        reason.push(c);
                    }
                }
                if reason.is_empty() || reason.starts_with('<') {
                    format!("{} {s}", e.what)
                } else {
                    format!("{} {s} ({reason})", e.what)
                }
            }
            None if e.detail.contains("on purpose") || e.detail.contains("abandoned") => continue,
            None => format!("{} no answer", e.what),
        };
        *counts.entry(key).or_default() += 1;
    }
    if counts.is_empty() {
        return "-".to_owned();
    }
    counts
        .iter()
        .map(|(k, v)| format!("{k} ×{v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Median and maximum duration of the successful probes that started in
/// `[from, to)`.
fn probe_times(probes: &[ProbeResult], from: Option<Instant>, to: Instant) -> String {
    let mut times: Vec<Duration> = probes
        .iter()
        .filter(|p| p.ok && from.is_none_or(|from| p.start >= from) && p.start < to)
        .map(|p| p.end - p.start)
        .collect();
    if times.is_empty() {
        return "-".to_owned();
    }
    times.sort();
    format!(
        "{:.2} / {:.2}",
        times[times.len() / 2].as_secs_f64(),
        times[times.len() - 1].as_secs_f64()
    )
}

fn report(input: ReportInput<'_>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n== chaos report: {}, {} clients, {} round(s), seed {}, extra node flags {:?}",
        input.version,
        input.knobs.clients,
        input.knobs.rounds,
        input.knobs.seed,
        input.knobs.node_args
    );
    let _ = writeln!(
        out,
        "run {} s (faults until {} s, last uploads {} s more); {} uploads verified, {:.1} MiB; slowest upload finished {} s after the last fault was lifted",
        secs(input.total),
        secs(input.faults_took),
        secs(input.clients_took),
        input.verified,
        input.bytes_total as f64 / MIB as f64,
        secs(input.slowest_finish)
    );
    let _ = writeln!(
        out,
        "\nrecovery (probe = HEAD + {PROBE_BYTES}-byte PATCH through nginx, {PROBE_LANES} lanes, every {} ms, {} s timeout):",
        PROBE_EVERY.as_millis(),
        PROBE_TIMEOUTS.answer.as_secs()
    );
    let _ = writeln!(
        out,
        "| # | fault | first probe OK after injection (s) | after lift (s) | longest gap between OK probes (s) | OK probe time median / max (s) | failed probes | etcd leases lost | fence refusals |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    let first_fault = input
        .faults
        .first()
        .map_or_else(Instant::now, |f| f.injected);
    let _ = writeln!(
        out,
        "| 0 | none (before the first fault) | | | | {} | {} | {} | |",
        probe_times(input.probes, None, first_fault),
        input
            .probes
            .iter()
            .filter(|p| !p.ok && p.start < first_fault)
            .count(),
        input
            .lease_losses
            .iter()
            .filter(|t| **t < first_fault)
            .count()
    );
    for (i, fault) in input.faults.iter().enumerate() {
        let window_end = input
            .faults
            .get(i + 1)
            .map_or(Instant::now(), |next| next.injected);
        let first_after = |since: Instant| {
            input
                .probes
                .iter()
                .filter(|p| p.ok && p.start >= since)
                .map(|p| p.end)
                .min()
                .map_or("never".to_owned(), |t| secs(t - since))
        };
        let recovered = fault.recovered.unwrap_or(window_end);
        let mut ok_ends: Vec<Instant> = input
            .probes
            .iter()
            .filter(|p| p.ok)
            .map(|p| p.end)
            .collect();
        ok_ends.sort();
        let before = ok_ends
            .iter()
            .copied()
            .filter(|t| *t <= fault.injected)
            .max()
            .unwrap_or(fault.injected);
        let mut gap = Duration::ZERO;
        let mut previous = before;
        for t in ok_ends
            .iter()
            .copied()
            .filter(|t| *t > before && *t <= recovered)
        {
            gap = gap.max(t - previous);
            previous = t;
        }
        let failed: Vec<&ProbeResult> = input
            .probes
            .iter()
            .filter(|p| !p.ok && p.start >= fault.injected && p.start < recovered)
            .collect();
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        for p in &failed {
            let kind: String = p.detail.chars().take(60).collect();
            *kinds.entry(kind).or_default() += 1;
        }
        let refusals = input
            .refusals
            .iter()
            .filter(|(_, t)| *t >= fault.injected && *t < window_end)
            .count();
        let leases = input
            .lease_losses
            .iter()
            .filter(|t| **t >= fault.injected && **t < window_end)
            .count();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            i + 1,
            fault.label,
            first_after(fault.injected),
            first_after(fault.lifted),
            secs(gap),
            probe_times(input.probes, Some(fault.injected), recovered),
            failed.len(),
            leases,
            refusals
        );
        if !kinds.is_empty() {
            let _ = writeln!(out, "|   |   failed probes: {kinds:?} | | | | | | | |");
        }
    }
    let _ = writeln!(
        out,
        "\nwhat clients saw (non-2xx answers and unanswered requests; deliberate disconnects and abandons not counted):"
    );
    let first = input.faults.first().map(|f| f.injected);
    if let Some(first) = first {
        let _ = writeln!(
            out,
            "- before the first fault: {}",
            tally(
                input
                    .events
                    .iter()
                    .filter(|e| e.upload.is_some() && e.at < first)
            )
        );
    }
    for (i, fault) in input.faults.iter().enumerate() {
        let end = input.faults.get(i + 1).map(|f| f.injected);
        let _ = writeln!(
            out,
            "- {} ({}): {}",
            i + 1,
            fault.label,
            tally(input.events.iter().filter(|e| e.upload.is_some()
                && e.at >= fault.injected
                && end.is_none_or(|end| e.at < end)))
        );
    }
    let mut plans: BTreeMap<&str, u32> = BTreeMap::new();
    let (mut late, mut short, mut acks) = (0, 0, 0);
    for u in input.uploads {
        for (k, v) in &u.plans {
            *plans.entry(k).or_default() += v;
        }
        late += u.late_answers;
        short += u.short_204s;
        acks += u.acks;
    }
    let _ = writeln!(
        out,
        "\nPATCH plans: {plans:?}; {acks} offsets acknowledged and checked; {late} late answers to abandoned PATCHes; {short} 204s that stored less than sent"
    );
    let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
    for (node, _) in input.refusals {
        *per_node.entry(node).or_default() += 1;
    }
    let _ = writeln!(
        out,
        "fence refusals ('store refused a stale lock holder'): {} {per_node:?}; fence issuers: {:?}",
        input.refusals.len(),
        input.issuers
    );
    let nginx_lines: Vec<&str> = input.nginx_errors.lines().collect();
    let mut nginx_kinds: BTreeMap<String, usize> = BTreeMap::new();
    for line in &nginx_lines {
        // "2024/01/01 00:00:00 [error] 123#123: *45 message, client: ..."
        let message = line.split_once(": *").map_or(*line, |(_, rest)| {
            rest.split_once(' ').map_or(rest, |(_, m)| m)
        });
        let message = message.split(", client").next().unwrap_or(message);
        let message = message.split(" while ").next().unwrap_or(message);
        *nginx_kinds.entry(message.to_owned()).or_default() += 1;
    }
    let _ = writeln!(
        out,
        "nginx error log: {} lines {nginx_kinds:?}",
        nginx_lines.len()
    );
    if input.violations.is_empty() {
        let _ = writeln!(out, "violations: none");
    } else {
        let _ = writeln!(out, "violations ({}):", input.violations.len());
        for v in input.violations {
            let _ = writeln!(out, "- {v}");
        }
    }
    out
}

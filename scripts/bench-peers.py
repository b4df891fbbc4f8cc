#!/usr/bin/env python3
"""tusd-rs next to rustus and @tus/server, same client, same machine.

Run through scripts/bench-peers.sh, which installs the peers and builds
tusd-rs. Every round runs every workload against every server, the order of
the servers rotating from round to round, each run on a fresh server and a
fresh file system; every stored byte is checked after each run. Workloads:

  create-16k, create-64k  creation-with-upload POSTs (wrk, 32 connections),
                          each a whole upload; uploads/s
  head                    HEAD (wrk, 32 connections), each connection on its
                          own upload; requests/s
  patch-1g                one 1 GiB PATCH from a sendfile client, bytes in
                          the page cache; MiB/s and the server's CPU seconds
                          per GiB (utime+stime from /proc/<pid>/stat)
  memory                  200 PATCHes each send a 4 MiB burst, then trickle
                          16 bytes a second; (VmRSS - idle VmRSS) / uploads
                          in KiB at the end of the trickle

tusd-rs runs the workloads whose cost depends on what is synced (creations
and the PATCH, each of which completes its upload) once per --durability
level; HEAD and memory sync nothing and run at the default. Peers sync
nothing, so the tusd-rs row at `none` is the one at equal durability.

Each run's upload directory is a file system of its own, made for the run
and thrown away after it: a new ext4 image on a loop device (sparse,
FS_GIB GiB, every inode table written at mkfs time so no background
initialisation runs during the measurement). A directory on the host's file
system would carry the state earlier runs left: after tens of thousands of
files are deleted, ext4's inode allocator scans its tables for inodes to
reuse, and the next run's creations wait on that, so the rounds measured
the file system's history more than the servers. Without loop devices (or
without root) it falls back to a tmpfs (which makes every sync free), and
failing that to a plain directory; the output says which.

Prints each run, then one table of medians with each peer's median ratio to
tusd-rs in the same round, and writes everything as JSON (--json) for
scripts/plot-peers.py.
"""

import argparse
import asyncio
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WRK_DIR = ROOT / "crates/tusd-rs/benches/wrk"
CLK_TCK = os.sysconf("SC_CLK_TCK")
GIB = 1 << 30


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_average():
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def pattern(n, seed=0):
    """Bytes that differ with their position, so a byte stored at the wrong
    offset is caught."""
    block = bytes((i * 7 + seed) % 251 for i in range(251))
    return (block * (n // 251 + 1))[:n]


class Server:
    """One running server on a fresh directory."""

    def __init__(self, kind, label, command, directory, port, durability):
        self.kind, self.label, self.dir, self.port = kind, label, directory, port
        self.durability = durability
        self.log = open(f"{directory}.log", "wb")
        self.proc = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while True:
            try:
                status, _, _ = request(port, "OPTIONS", "/files/")
                if status < 500:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                sys.exit(f"{label} did not start:\n{Path(f'{directory}.log').read_text()[-2000:]}")
            time.sleep(0.1)

    @property
    def pid(self):
        return self.proc.pid

    def cpu_seconds(self):
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_kib(self):
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def data_file(self, location):
        upload_id = location.rstrip("/").rsplit("/", 1)[1]
        return self.dir / upload_id

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.log.close()


class FreshFs:
    """An empty file system mounted at `directory` for one run, torn down
    with `discard`. `kind` is how it was made: "ext4 on loop", "tmpfs" or
    "plain directory" (the fallbacks, for machines without loop devices or
    root)."""

    def __init__(self, directory, gib, want):
        self.dir, self.image, self.mounted = Path(directory), None, False
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.kind = "plain directory"
        if want in ("ext4", "auto") and self._ext4(gib):
            self.kind = "ext4 on loop"
        elif want in ("tmpfs", "auto") and self._mount(["-t", "tmpfs", "-o", f"size={gib}g", "tmpfs"]):
            self.kind = "tmpfs"

    def _ext4(self, gib):
        if not shutil.which("mkfs.ext4"):
            return False
        fd, name = tempfile.mkstemp(prefix=f"{self.dir.name}-", suffix=".img", dir=self.dir.parent)
        os.close(fd)
        self.image = Path(name)
        os.truncate(self.image, gib << 30)
        made = subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0",
             str(self.image)], capture_output=True).returncode == 0
        if made and self._mount(["-o", "loop", str(self.image)]):
            return True
        self.image.unlink()
        self.image = None
        return False

    def _mount(self, how):
        self.mounted = subprocess.run(["mount", *how, str(self.dir)], capture_output=True).returncode == 0
        return self.mounted

    def discard(self):
        if self.mounted:
            # Lazily if something still holds it open; the loop device is
            # freed when the last user goes (mount -o loop sets autoclear).
            if subprocess.run(["umount", str(self.dir)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(self.dir)], capture_output=True)
            self.mounted = False
        if self.image is not None:
            self.image.unlink(missing_ok=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def request(port, method, path, headers=None, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        return response.status, response.getheader("Location"), data
    finally:
        conn.close()


def create(server, length):
    status, location, body = request(
        server.port, "POST", "/files/",
        {"Tus-Resumable": "1.0.0", "Upload-Length": str(length)},
    )
    if status != 201 or not location:
        sys.exit(f"{server.label}: creating an upload answered {status} {body[:200]!r}")
    return re.sub(r"^https?://[^/]+", "", location)


def servers(args):
    """(kind, label, durability, command builder) for every server."""
    env = dict(line.split("=", 1) for line in (ROOT / ".tools/peers.env").read_text().split())
    out = []
    for level in args.durabilities:
        out.append(("tusd-rs", f"tusd-rs ({level})", level, lambda p, d, level=level: [
            args.tusd_bin, "--host", "127.0.0.1", "--port", str(p), "--upload-dir", str(d),
            "--durability", level]))
    out.append(("rustus", "rustus 0.5.10", "none", lambda p, d: [
        env["RUSTUS_BIN"], "--host", "127.0.0.1", "--port", str(p), "--data-dir", str(d),
        "--info-dir", str(d), "--url", "/files",
        # Its default body limit is 256 KiB; the 1 GiB PATCH needs more.
        "--max-body-size", str(2 * GIB)]))
    out.append(("tus-node", "@tus/server 2.4.5", "none", lambda p, d: [
        "node", str(Path(env["TUS_NODE_DIR"]) / "server.mjs"), "127.0.0.1", str(p), str(d)]))
    return out


def wrk(args, server, script, env):
    out = subprocess.run(
        ["wrk", f"-t{args.wrk_threads}", f"-c{args.conns}", f"-d{args.secs}s",
         "-s", str(WRK_DIR / script), f"http://127.0.0.1:{server.port}/files/"],
        env={**os.environ, **env}, capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    problems = []
    if bad:
        problems.append(f"{bad.group(1)} non-2xx answers")
    if errors and re.search(r"[1-9]", errors.group(1)):
        problems.append(f"socket errors: {errors.group(1)}")
    if rate == 0:
        problems.append("no request was answered")
    return rate, problems


def check_creations(server, kib):
    """Every data file holds exactly the body wrk sent, or (the few the end
    of the run cut short) a prefix of it."""
    body = pattern(kib << 10)
    full = short = wrong = 0
    for entry in os.scandir(server.dir):
        if "." in entry.name or not entry.is_file():
            continue
        data = Path(entry.path).read_bytes()
        if data == body:
            full += 1
        elif body.startswith(data):
            short += 1
        else:
            wrong += 1
    problems = [f"{wrong} uploads hold wrong bytes"] if wrong else []
    return f"{full} uploads hold their {kib} KiB exactly, {short} cut short by the end of the run", problems


def run_create(args, server, kib):
    rate, problems = wrk(args, server, "create.lua", {"TUSD_WRK_BODY_KIB": str(kib)})
    check, wrong = check_creations(server, kib)
    return {"value": rate, "check": check, "problems": problems + wrong}


def run_head(args, server):
    paths_file = Path(f"{server.dir}.paths")
    paths_file.write_text("".join(create(server, 10) + "\n" for _ in range(args.conns)))
    rate, problems = wrk(args, server, "head.lua", {"TUSD_WRK_PATHS": str(paths_file)})
    paths_file.unlink()
    return {"value": rate, "check": f"{args.conns} uploads", "problems": problems}


def run_patch(args, server, source):
    size = source.stat().st_size
    path = create(server, size)
    subprocess.run(["sync"], check=True)
    head = (f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nTus-Resumable: 1.0.0\r\n"
            f"Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
            f"Content-Length: {size}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", server.port)) as sock, open(source, "rb") as f:
        cpu0, t0 = server.cpu_seconds(), time.perf_counter()
        sock.sendall(head)
        sock.sendfile(f)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        secs, cpu = time.perf_counter() - t0, server.cpu_seconds() - cpu0
    status = answer.split(b" ", 2)[1:2]
    problems = [] if status == [b"204"] else [f"PATCH answered {answer[:100]!r}"]
    same = subprocess.run(["cmp", "-s", str(source), str(server.data_file(path))]).returncode == 0
    if not same:
        problems.append("the stored file differs from the one sent")
    return {"value": size / secs / (1 << 20), "cpu_per_gib": cpu / (size / GIB),
            "check": "stored file identical" if same else "DIFFERENT", "problems": problems}


async def run_memory(args, server):
    uploads, burst, trickle = args.mem_uploads, args.mem_burst_kib << 10, args.mem_trickle_bytes
    secs = args.mem_trickle_secs
    length = burst + trickle * (secs + 1)
    body = pattern(length, seed=3)
    paths = [create(server, length) for _ in range(uploads)]
    await asyncio.sleep(2)
    idle = server.rss_kib()
    streams = []

    async def open_one(path):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write((f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                          f"Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
                          f"Content-Type: application/offset+octet-stream\r\n"
                          f"Content-Length: {length}\r\n\r\n").encode() + body[:burst])
            await writer.drain()
            return path, reader, writer
        except OSError:
            return None

    # A server may close connections under the burst (rustus does, with
    # 200 bodies of 4 MiB held in memory); the figure is then per upload
    # still in flight, and the check says so.
    opened = await asyncio.gather(*(open_one(p) for p in paths))
    closed = sum(o is None for o in opened)
    opened = [o for o in opened if o]
    paths = [p for p, _, _ in opened]
    streams = [(r, w) for _, r, w in opened]
    # Until every burst is stored, or nothing moved for 3 s (a server that
    # keeps a body in memory until it ends stores nothing yet).
    stored, last, still = -1, time.time(), 0
    while True:
        now = sum(min(server.data_file(p).stat().st_size, burst) for p in paths)
        if now == burst * uploads:
            break
        if now != stored:
            stored, last = now, time.time()
        elif time.time() - last > 3:
            break
        await asyncio.sleep(0.1)
    stored_at_burst = sum(server.data_file(p).stat().st_size >= burst for p in paths)
    after_burst = server.rss_kib()
    peak = after_burst
    for i in range(secs):
        await asyncio.sleep(1)
        at = burst + i * trickle
        for _, writer in streams:
            writer.write(body[at:at + trickle])
        drained = await asyncio.gather(*(w.drain() for _, w in streams), return_exceptions=True)
        kept = [not isinstance(d, Exception) for d in drained]
        closed += kept.count(False)
        streams = [x for x, k in zip(streams, kept) if k]
        paths = [x for x, k in zip(paths, kept) if k]
        peak = max(peak, server.rss_kib())
    await asyncio.sleep(1)
    end = server.rss_kib()
    for _, writer in streams:
        writer.write(body[length - trickle:])
    answers = await asyncio.gather(*(asyncio.wait_for(r.readline(), 120) for r, _ in streams))
    for _, writer in streams:
        writer.close()
    problems = []
    if not streams:
        problems.append("the server closed every connection during the burst")
    bad_answers = sum(b" 204" not in a for a in answers)
    if bad_answers:
        problems.append(f"{bad_answers} PATCHes not answered 204 (e.g. {answers[0][:60]!r})")
    wrong = sum(server.data_file(p).read_bytes() != body for p in paths)
    if wrong:
        problems.append(f"{wrong} uploads hold wrong bytes")
    per = lambda kib: max(kib - idle, 0) / max(len(streams), 1)
    check = (f"{stored_at_burst}/{len(streams)} bursts on disk before the trickle; "
             f"every upload complete and byte-identical" if not wrong else "WRONG BYTES")
    if closed:
        check += (f"; the server closed {closed} of {uploads} connections, "
                  f"figures per upload still in flight at the end")
    return {"value": per(end), "after_burst": per(after_burst), "peak": per(peak),
            "idle_kib": idle, "in_flight": len(streams), "check": check, "problems": problems}


WORKLOADS = [
    ("create-16k", "16 KiB creation-with-upload, uploads/s", True),
    ("create-64k", "64 KiB creation-with-upload, uploads/s", True),
    ("head", "HEAD/s, 32 connections on distinct uploads", False),
    ("patch-1g", "1 GiB PATCH, MiB/s (page cache)", True),
    ("patch-1g-cpu", "1 GiB PATCH, server CPU s per GiB", True),
    ("memory", "KiB per in-flight upload (4 MiB burst, then trickling)", False),
]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tusd-bin", default=str(ROOT / "target/release/tusd-rs"))
    p.add_argument("--rounds", type=int, default=int(os.environ.get("ROUNDS", 3)))
    p.add_argument("--secs", type=int, default=int(os.environ.get("SECS", 10)))
    p.add_argument("--conns", type=int, default=int(os.environ.get("CONNS", 32)))
    p.add_argument("--wrk-threads", type=int, default=int(os.environ.get("WRK_THREADS", 1)))
    p.add_argument("--patch-mib", type=int, default=int(os.environ.get("PATCH_MIB", 1024)))
    p.add_argument("--mem-uploads", type=int, default=int(os.environ.get("MEM_UPLOADS", 200)))
    p.add_argument("--mem-burst-kib", type=int, default=int(os.environ.get("MEM_BURST_KIB", 4096)))
    p.add_argument("--mem-trickle-secs", type=int, default=int(os.environ.get("MEM_TRICKLE_SECS", 20)))
    p.add_argument("--mem-trickle-bytes", type=int, default=16)
    p.add_argument("--durabilities", default=os.environ.get("DURABILITIES", "none,create,complete"))
    p.add_argument("--default-durability", default="complete")
    p.add_argument("--workloads", default=os.environ.get("WORKLOADS", "create-16k,create-64k,head,patch-1g,memory"))
    p.add_argument("--json", default=str(ROOT / "target/bench-peers/results.json"))
    p.add_argument("--fs", choices=["auto", "ext4", "tmpfs", "dir"], default=os.environ.get("FS", "auto"),
                   help="what each run's upload directory is (auto: ext4 on a loop device, "
                        "else tmpfs, else a plain directory)")
    p.add_argument("--fs-gib", type=int, default=int(os.environ.get("FS_GIB", 16)),
                   help="size of each run's file system (ext4: a sparse image)")
    args = p.parse_args()
    args.durabilities = args.durabilities.split(",")
    workloads = args.workloads.split(",")

    work = ROOT / "target/bench-peers"
    work.mkdir(parents=True, exist_ok=True)
    meta = {
        "date": time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                 capture_output=True, text=True).stdout.strip(),
        "cores": os.cpu_count(), "load_start": load_average(),
        "command": " ".join(sys.argv), "rounds": args.rounds,
        "wrk": f"wrk -t{args.wrk_threads} -c{args.conns} -d{args.secs}s",
    }
    print(f"date {meta['date']}, commit {meta['commit']}, {meta['cores']} cores, "
          f"load average {meta['load_start']} (the machine is shared)")
    print(f"{meta['wrk']}; rounds: {args.rounds}; workloads: {', '.join(workloads)}", flush=True)

    source = work / "patch-source.bin"
    if "patch-1g" in workloads and (not source.exists() or source.stat().st_size != args.patch_mib << 20):
        with open(source, "wb") as f:
            for _ in range(args.patch_mib):
                f.write(os.urandom(1 << 20))

    everyone = servers(args)
    runs = []  # dicts: round, workload, kind, label, durability, value, ...
    fs_kinds = []  # what the runs' upload directories were, in order of first use
    failures = []
    for rnd in range(1, args.rounds + 1):
        shift = (rnd - 1) % len(everyone)
        order = everyone[shift:] + everyone[:shift]
        for workload in workloads:
            for kind, label, durability, command in order:
                durability_matters = workload in ("create-16k", "create-64k", "patch-1g")
                if kind == "tusd-rs" and not durability_matters and durability != args.default_durability:
                    continue
                directory = work / f"{kind}-{durability}-{workload}-{rnd}"
                fs = FreshFs(directory, args.fs_gib, args.fs)
                if fs.kind not in fs_kinds:
                    fs_kinds.append(fs.kind)
                    meta["fs"] = " / ".join(fs_kinds)
                    print(f"upload directory of round {rnd} {workload} {label}: a fresh {fs.kind}"
                          + (" (syncs cost nothing there)" if fs.kind == "tmpfs" else ""), flush=True)
                port = free_port()
                try:
                    server = Server(kind, label, command(port, directory), directory, port, durability)
                except BaseException:
                    fs.discard()
                    raise
                try:
                    if workload == "create-16k":
                        result = run_create(args, server, 16)
                    elif workload == "create-64k":
                        result = run_create(args, server, 64)
                    elif workload == "head":
                        result = run_head(args, server)
                    elif workload == "patch-1g":
                        result = run_patch(args, server, source)
                    elif workload == "memory":
                        result = asyncio.run(run_memory(args, server))
                    else:
                        sys.exit(f"unknown workload {workload}")
                except Exception as e:  # one broken run must not end the others
                    result = {"value": float("nan"), "check": "run failed",
                              "problems": [f"{type(e).__name__}: {e}"]}
                finally:
                    server.stop()
                    fs.discard()
                extra = f", {result['cpu_per_gib']:.2f} CPU s/GiB" if "cpu_per_gib" in result else ""
                extra += f", {result['after_burst']:.0f} after the burst" if "after_burst" in result else ""
                print(f"round {rnd} {workload:<10} {label:<22} {result['value']:10.1f}{extra}   "
                      f"[{result['check']}]" + (f" PROBLEMS: {'; '.join(result['problems'])}"
                                                if result["problems"] else ""), flush=True)
                if result["problems"]:
                    failures.append(f"round {rnd} {workload} {label}: {'; '.join(result['problems'])}")
                runs.append({"round": rnd, "workload": workload, "kind": kind, "label": label,
                             "durability": durability, **result})
                if workload == "patch-1g" and "cpu_per_gib" in result:
                    runs.append({"round": rnd, "workload": "patch-1g-cpu", "kind": kind,
                                 "label": label, "durability": durability,
                                 "value": result["cpu_per_gib"], "problems": []})
    meta["load_end"] = load_average()
    table = summarize(runs, args, meta)
    print()
    print(table)
    Path(args.json).write_text(json.dumps({"meta": meta, "runs": runs, "table": table}, indent=1))
    print(f"\nload average at the end {meta['load_end']}; results in {args.json}")
    if failures:
        print("\nFAILED CHECKS:\n" + "\n".join(failures))
        sys.exit(1)


def summarize(runs, args, meta):
    """Markdown: a row per workload and tusd-rs durability; each peer as the
    median of its per-round ratios to that tusd-rs row."""
    peers = [("rustus", "rustus 0.5.10"), ("tus-node", "@tus/server 2.4.5")]
    lines = [
        f"{meta['date']}, commit {meta['commit']}, {meta['cores']} cores, load average "
        f"{meta['load_start']} at the start and {meta['load_end']} at the end (shared machine); "
        f"{args.rounds} rounds; each run's uploads on a fresh {meta.get('fs', '?')}; "
        f"medians, peers as median ratio to tusd-rs in the same round",
        "",
        "| workload | tusd-rs --durability | tusd-rs | rustus 0.5.10 | @tus/server 2.4.5 |",
        "|---|---|---|---|---|",
    ]
    by = {}
    for r in runs:
        if r["value"] == r["value"]:  # not NaN: the run worked
            by.setdefault((r["workload"], r["kind"], r["durability"]), {})[r["round"]] = r["value"]
    for workload, title, durability_matters in WORKLOADS:
        levels = args.durabilities if durability_matters else [args.default_durability]
        for level in levels:
            ours = by.get((workload, "tusd-rs", level))
            if not ours:
                continue
            cells = [title, level + ("" if durability_matters else " (syncs nothing here)"),
                     fmt(statistics.median(ours.values()))]
            for kind, _ in peers:
                theirs = by.get((workload, kind, "none"), {})
                ratios = [theirs[r] / ours[r] for r in ours if r in theirs and ours[r] > 0]
                cells.append(f"{fmt(statistics.median(theirs.values()))} ({statistics.median(ratios):.2f}×)"
                             if ratios else "–")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fmt(v):
    return f"{v:,.0f}" if v >= 100 else f"{v:.2f}" if v < 10 else f"{v:.1f}"


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Checks the declared MSRV against the dependency tree.

Clippy's incompatible_msrv lint (denied in [workspace.lints]) covers the
standard library APIs our own code calls; this covers the other half: every
package in Cargo.lock's resolved tree must declare a rust-version no newer
than ours (or none). Only one toolchain can be installed on our machines, so
the MSRV cannot be checked by building with it.
"""
import json
import subprocess
import sys


def version(text):
    return tuple(int(p) for p in text.split("."))[:3] + (0,) * (3 - len(text.split(".")))


meta = json.loads(subprocess.check_output(
    ["cargo", "metadata", "--format-version", "1", "--locked",
     "--filter-platform", "x86_64-unknown-linux-gnu"], text=True))
members = set(meta["workspace_members"])
ours = {p["rust_version"] for p in meta["packages"] if p["id"] in members}
if len(ours) != 1 or None in ours:
    sys.exit(f"every workspace crate must inherit one rust-version, found {sorted(map(str, ours))}")
msrv = ours.pop()
used = {n["id"] for n in meta["resolve"]["nodes"]}
too_new = sorted(
    f'{p["name"]} {p["version"]} needs Rust {p["rust_version"]}'
    for p in meta["packages"]
    if p["id"] in used and p["rust_version"] and version(p["rust_version"]) > version(msrv))
if too_new:
    sys.exit(f"dependencies newer than the declared MSRV {msrv}:\n  " + "\n  ".join(too_new))
print(f"MSRV {msrv}: every crate inherits it; no dependency in the tree needs a newer Rust")

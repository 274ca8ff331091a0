#!/usr/bin/env python3
"""Turns bench/io.sh's fio output into the Markdown report of BENCHMARKS.md: throughput of
every target for every workload, the ratios the targets are stated in, Active/Active over
two paths against one, and the failover stall from the per-request latency logs."""

import glob
import json
import os
import statistics
import sys

out, secs = sys.argv[1], sys.argv[2]


def job(name):
    with open(os.path.join(out, name + ".json")) as f:
        j = json.load(f)["jobs"][0]
    side = j["read"] if j["read"]["io_bytes"] > 0 else j["write"]
    return {
        "iops": side["iops"],
        "mibs": side["bw_bytes"] / 2**20,
        "p50": side["clat_ns"]["percentile"].get("50.000000", 0) / 1000,
        "errors": j["error"],
    }


def fmt(r, bs):
    return f'{r["mibs"]:.0f} MiB/s' if bs == "1M" else f'{r["iops"] / 1000:.1f} k IOPS'


TARGETS = ["loop", "fuse", "loop-on-fuse", "nbd-export", "qemu-nbd", "fuse-floor", "nbd-floor"]
WORKLOADS = [(w, bs, qd) for w, bs in [("seq-read", "1M"), ("seq-write", "1M"),
                                       ("rand-read", "4k"), ("rand-write", "4k")]
             for qd in (1, 32)]

print(f"fio, O_DIRECT, {secs} s per run after 1 s ramp, 900 MiB region of a 1 GiB image.\n")
print("| workload | " + " | ".join(TARGETS) + " | fuse/loop | loop-on-fuse/loop | nbd/loop | nbd/qemu-nbd | fuse/fuse-floor | nbd/nbd-floor |")
print("|---|" + "---:|" * (len(TARGETS) + 6))
for w, bs, qd in WORKLOADS:
    r = {t: job(f"main_{t}_{w}_{bs}_qd{qd}") for t in TARGETS}
    key = "mibs" if bs == "1M" else "iops"
    ratio = lambda a, b: f'{r[a][key] / r[b][key]:.2f}'
    cells = [fmt(r[t], bs) for t in TARGETS]
    print(f"| {w} {bs} QD{qd} | " + " | ".join(cells) + f" | {ratio('fuse', 'loop')} | "
          f"{ratio('loop-on-fuse', 'loop')} | {ratio('nbd-export', 'loop')} | {ratio('nbd-export', 'qemu-nbd')} | "
          f"{ratio('fuse', 'fuse-floor')} | {ratio('nbd-export', 'nbd-floor')} |")

print("\nActive/Active through the export, two paths against one (QD32):\n")
print("| workload | two paths | one path | two/one |")
print("|---|---:|---:|---:|")
for w, bs in [("rand-read", "4k"), ("seq-read", "1M"), ("rand-write", "4k")]:
    two, one = job(f"aa_two_{w}"), job(f"aa_one_{w}")
    key = "mibs" if bs == "1M" else "iops"
    print(f"| {w} {bs} | {fmt(two, bs)} | {fmt(one, bs)} | {two[key] / one[key]:.2f} |")


def latencies(name):
    """(completion time in ms since the epoch, latency in µs) of every request of a run."""
    lat = []
    for path in glob.glob(os.path.join(out, name + "_clat.*.log")):
        with open(path) as f:
            for line in f:
                fields = [x.strip() for x in line.split(",")]
                lat.append((int(fields[0]), int(fields[1]) / 1000))
    return lat


def after_fault(name, window_ms):
    """The latencies of the requests completed within `window_ms` of the fault."""
    with open(os.path.join(out, name + ".fault_at")) as f:
        at = int(f.read())
    return [l for t, l in latencies(name) if at <= t <= at + window_ms]


print("\nFailover stall (4 KiB random reads, one at a time, through the export; at 2 s the")
print("active path's NOP provider starts failing every request with EIO, or holding it 10 s")
print("with io_timeout = 1 s). The stall is the slowest request completed in the window after")
print("the fault, against the median of a run without one:\n")
clean = [l for _, l in latencies("stall_none")]
median = statistics.median(clean)
print(f"No fault: {len(clean)} requests, median {median:.0f} µs, max {max(clean):,.0f} µs.\n")
print("| fault | window | slowest in window | added to the clean median | target |")
print("|---|---:|---:|---:|---|")
for name, label, window, target in [("stall_eio", "EIO on the active path", 200, "≤ 1 ms added"),
                                    ("stall_hang", "active path hangs", 3000, "≤ 1.1 s (deadline + 10%)")]:
    lat = after_fault(name, window)
    top = max(lat)
    print(f"| {label} | {window} ms | {top:,.0f} µs | {top - median:,.0f} µs | {target} |")

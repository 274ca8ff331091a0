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

main_runs = os.path.exists(os.path.join(out, "main_loop_seq-read_1M_qd1.json"))
if main_runs:
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


def windows(name):
    """Each fault's (before, after) times: it took effect in between."""
    with open(os.path.join(out, name + ".fault_at")) as f:
        return [tuple(int(x) for x in line.split()) for line in f if line.strip()]


def slowest(lat, lo, hi):
    return max([l for t, l in lat if lo <= t <= hi] or [0])


SETTLE_MS = 20  # a window ends this long after the fault is known to be in effect

print("\nFailover stall (4 KiB random reads, one at a time, through the export). After 2 s")
print("the active path's NOP provider starts failing every request with EIO (8 times, the")
print("other path each time, healed and restored in between), or holding it 10 s with")
print(f"io_timeout = 1 s. A fault's window runs from just before `gnop configure` to {SETTLE_MS} ms")
print("after it returned; its stall is the slowest request completed in it. The same windows")
print("in a run with the same steps and no fault are the control: the slowest of a few dozen")
print("requests is never the median one.\n")
control_lat = latencies("stall_none")
control = [slowest(control_lat, lo, hi + SETTLE_MS) for lo, hi in windows("stall_none")]
clean = [l for _, l in control_lat]
print(f"No fault: {len(clean)} requests, median {statistics.median(clean):.0f} µs, "
      f"max {max(clean):,.0f} µs; slowest per window: median {statistics.median(control):,.0f} µs.\n")
print("| fault | faults | stall: median | stall: max | median added over the control | target |")
print("|---|---:|---:|---:|---:|---|")
for name, label, settle, target in [("stall_eio", "EIO on the active path", SETTLE_MS, "≤ 1 ms added"),
                                    ("stall_hang", "active path hangs", 3000, "≤ 1.1 s (deadline + 10%)")]:
    lat = latencies(name)
    st = [slowest(lat, lo, hi + settle) for lo, hi in windows(name)]
    med = statistics.median(st)
    print(f"| {label} | {len(st)} | {med:,.0f} µs | {max(st):,.0f} µs | "
          f"{med - statistics.median(control):,.0f} µs | {target} |")

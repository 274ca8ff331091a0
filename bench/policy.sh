#!/usr/bin/env bash
# The issue-12 rows of BENCHMARKS.md, in one run, through the real daemon on two gnop paths
# over loop devices on one image:
#   (a) reinstatement latency: with check_interval=1 and reinstate on, the passive path is
#       made to fail every request (gnop -r/-w 100), found FAIL by the checker, then healed;
#       the time from the heal to `status` showing it PASSIVE again, ROUNDS times;
#   (b) fio random 4 KiB reads, QD16, through /dev/multipath/BENCH in Active/Active where one
#       path answers every request DELAY ms late (gnop -d/-q/-x), with each selector.
# It prints a Markdown report. The routing cost per selector is the criterion bench:
#   cargo bench -p geom_multipath --bench route -- selector
#
# Usage: sudo bench/policy.sh [seconds per fio run, default 10]
# Needs: fio, python3, losetup; a release build (it builds one).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench/policy.sh: needs root (loop devices, FUSE)" >&2; exit 1; }
for tool in fio python3 losetup; do
    command -v "$tool" >/dev/null || { echo "bench/policy.sh: $tool is not installed" >&2; exit 1; }
done
SECS=${1:-10}
ROUNDS=${ROUNDS:-10}
DELAY=${DELAY:-2}

cargo build --release --bins -j2 --quiet
BIN=$PWD/target/release
export PATH=$BIN:$PATH
WORK=$(mktemp -d /var/tmp/gmp-policy.XXXXXX)
export GMULTIPATH_SOCKET=$WORK/run/geom.ctl GMULTIPATH_MOUNT=$WORK/multipath
export GMULTIPATH_DEVICES=$WORK GMULTIPATH_CONF=/dev/null GMULTIPATHD=$BIN/gmultipathd
LOOPS=()
cleanup() {
    set +e
    gmultipath destroy BENCH >/dev/null 2>&1
    gnop destroy -f "${N0:-}" "${N1:-}" >/dev/null 2>&1
    gmultipath unload || echo "bench/policy.sh: unload failed; the daemon is left running" >&2
    for _ in $(seq 100); do mountpoint -q "$GMULTIPATH_MOUNT" || break; sleep 0.1; done
    for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null; done
    mountpoint -q "$GMULTIPATH_MOUNT" || rm -rf "$WORK"
}
trap cleanup EXIT

IMG=$WORK/disk.img
truncate -s 1G "$IMG"
L0=$(losetup -f --show "$IMG"); LOOPS+=("$L0")
L1=$(losetup -f --show "$IMG"); LOOPS+=("$L1")
gmultipathd
gnop create -o 4096 "${L0#/dev/}" "${L1#/dev/}"
N0=${L0#/dev/}.nop N1=${L1#/dev/}.nop
gmultipath label BENCH "$N0" "$N1"
FUSE=$GMULTIPATH_MOUNT/BENCH
for _ in $(seq 100); do [ -e "$FUSE" ] && break; sleep 0.1; done
dd if=/dev/urandom of="$FUSE" bs=1M count=512 oflag=direct status=none

now() { python3 -c 'import time; print(time.monotonic())'; }
state_of() { gmultipath status -s BENCH | awk -v p="$1" '$3 == p { print $4 }'; }
wait_state() { # <path> <(STATE)>: polls every 10 ms, at most 30 s
    for _ in $(seq 3000); do [ "$(state_of "$1")" = "$2" ] && return 0; sleep 0.01; done
    echo "bench/policy.sh: $1 never became $2" >&2; return 1
}

echo "## Reinstatement latency (check_interval 1 s, reinstate on)"
echo
gmultipath configure -c 1 -r 1 BENCH
LAT=()
for r in $(seq "$ROUNDS"); do
    gnop configure -r 100 -w 100 "$N1"
    wait_state "$N1" "(FAIL)"
    # Heal at a random point of the checker's period.
    sleep "0.$(printf '%03d' $((RANDOM % 1000)))"
    t0=$(now)
    gnop configure -r 0 -w 0 "$N1"
    wait_state "$N1" "(PASSIVE)"
    t1=$(now)
    LAT+=("$(python3 -c "print(f'{$t1 - $t0:.3f}')")")
done
python3 - "${LAT[@]}" <<'PY'
import statistics, sys
v = [float(x) for x in sys.argv[1:]]
print("| rounds | each (s) | median (s) | max (s) | target |")
print("|---|---|--:|--:|---|")
print(f"| {len(v)} | {' '.join(f'{x:.3f}' for x in v)} | {statistics.median(v):.3f} | "
      f"{max(v):.3f} | ≤ 1.100 (check_interval + 10 %): {'met' if max(v) <= 1.1 else 'MISSED'} |")
PY
gmultipath configure -c 0 -r 0 BENCH
echo

echo "## Active/Active over unequal paths: fio randread 4 KiB QD16, ${SECS} s, $N1 delayed ${DELAY} ms"
echo
gmultipath configure -A BENCH
gnop configure -d "$DELAY" -q 100 -x 100 "$N1"
echo "| selector | IOPS | MiB/s | share of requests on the fast path |"
echo "|---|--:|--:|--:|"
for sel in least-busy round-robin:1 round-robin:16 service-time; do
    gmultipath configure -s "$sel" BENCH
    before=$(gnop list "$N0" | awk '/^Reads:/ { print $2; exit }')
    fio --name=sel --ioengine=libaio --direct=1 --filename="$FUSE" --rw=randread --bs=4k \
        --iodepth=16 --size=512M --time_based --runtime="$SECS" --randrepeat=0 \
        --norandommap --output-format=json --output="$WORK/$sel.json" >/dev/null
    after=$(gnop list "$N0" | awk '/^Reads:/ { print $2; exit }')
    python3 - "$WORK/$sel.json" "$sel" "$before" "$after" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]["read"]
n = j["total_ios"]
fast = int(sys.argv[4] or 0) - int(sys.argv[3] or 0)
share = f"{fast / n:.0%}" if n else "-"
print(f"| {sys.argv[2]} | {j['iops']:.0f} | {j['bw'] / 1024:.1f} | {share} |")
PY
done
gnop configure -d 0 -q 0 -x 0 "$N1"

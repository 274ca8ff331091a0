#!/usr/bin/env bash
# The issue-12 rows of BENCHMARKS.md, in one run, through the real daemon on two gnop paths
# over loop devices on one image:
#   (a) reinstatement latency (tests/examples/reinstate_latency.rs, its own daemon): with
#       check_interval=1 and reinstate on, the passive path fails every request until the
#       checker marks it FAIL, then is healed; heal → `is marked OK.`, ROUNDS times;
#   (b) fio random 4 KiB reads, QD16, through /dev/multipath/BENCH in Active/Active where one
#       path answers every request DELAY ms late (gnop -d/-q/-x), with each selector.
#   (c) the routing cost per selector at 8 paths: the criterion bench and callgrind counts.
# It prints a Markdown report.
#
# Usage: sudo bench/policy.sh [seconds per fio run, default 10]
# Needs: fio, python3, losetup; a release build (it builds one).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench/policy.sh: needs root (loop devices, FUSE)" >&2; exit 1; }
for tool in fio python3 losetup valgrind; do
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

echo "## Reinstatement latency (check_interval 1 s, reinstate on)"
echo
cargo build --workspace --bins -j2 --quiet
cargo run --quiet -j2 -p gmultipath-e2e --example reinstate_latency "$ROUNDS"
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
gnop configure -q 0 -x 0 "$N1"

echo
echo "## Routing cost per selector, Active/Active, 8 paths"
echo
echo "criterion (ns per request: low, median, high):"
echo
cargo bench --quiet -j2 -p geom_multipath --bench route -- selector --warm-up-time 1 --measurement-time 3 2>/dev/null \
    | awk '/^selector/ { name = $1 } /time:/ { sub(/.*\[/, ""); sub(/\]/, ""); print "    " name ": " $0 }'
echo
echo "callgrind (instructions per request, release build; (200 000 − 100 000 requests) / 100 000):"
echo
cargo build --quiet --release -j2 -p geom_multipath --features testkit --example route_loop
for sel in least-busy round-robin:1 round-robin:16 service-time; do
    count() { valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/route_loop 8 "$1" "$sel" 2>&1 | awk '/Collected/ { print $4 }'; }
    a=$(count 100000); b=$(count 200000)
    echo "    $sel: $(( (b - a) / 100000 ))"
done

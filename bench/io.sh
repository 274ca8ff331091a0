#!/usr/bin/env bash
# The I/O benchmark of BENCHMARKS.md, in one run on one image: fio with O_DIRECT through
#   (a) a path's loop device directly (the limit here),
#   (b) /dev/multipath/BENCH through the FUSE export, and a loop device on that file,
#   (c) the daemon's NBD export (fio's nbd engine),
#   (d) qemu-nbd serving the same image (the same client),
# sequential 1 MiB and random 4 KiB, QD1 and QD32, read and write; then Active/Active over
# two paths against one; then the failover stall: the latency of the requests in flight
# when the active path starts failing with EIO, and when it hangs (io_timeout=1).
# It prints a Markdown report with the ratios the targets are stated in.
#
# Usage: sudo bench/io.sh [seconds per fio run, default 5]
#        BENCH_ONLY=stall sudo bench/io.sh   (the failover stall alone)
# Needs: fio, qemu-nbd, python3; a release build (it builds one).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench/io.sh: needs root (loop devices, FUSE)" >&2; exit 1; }
for tool in fio qemu-nbd python3 losetup; do
    command -v "$tool" >/dev/null || { echo "bench/io.sh: $tool is not installed" >&2; exit 1; }
done
SECS=${1:-5}

cargo build --release --bins -j2 --quiet
cargo build --release -j2 --quiet -p geom_multipath_host --example export_floor
BIN=$PWD/target/release
export PATH=$BIN:$PATH
WORK=$(mktemp -d /var/tmp/gmp-bench.XXXXXX)
OUT=$WORK/out
mkdir -p "$OUT"
export GMULTIPATH_SOCKET=$WORK/run/geom.ctl GMULTIPATH_MOUNT=$WORK/multipath
export GMULTIPATH_DEVICES=$WORK GMULTIPATH_CONF=/dev/null GMULTIPATHD=$BIN/gmultipathd
LOOPS=() QEMU= FLOOR=
cleanup() {
    set +e
    [ -n "$QEMU" ] && kill "$QEMU" 2>/dev/null && wait "$QEMU" 2>/dev/null
    [ -n "$FLOOR" ] && kill "$FLOOR" 2>/dev/null && wait "$FLOOR" 2>/dev/null
    # The loop on the export first, then the daemon (waiting until it is gone), then the
    # path loops.
    [ -n "${LFUSE:-}" ] && losetup -d "$LFUSE"
    gmultipath destroy STALL >/dev/null 2>&1
    gnop destroy -f "${N0:-}" "${N1:-}" >/dev/null 2>&1
    gmultipath unload || echo "bench/io.sh: unload failed; the daemon is left running" >&2
    for _ in $(seq 100); do mountpoint -q "$GMULTIPATH_MOUNT" || break; sleep 0.1; done
    for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null; done
    mountpoint -q "$GMULTIPATH_MOUNT" || rm -rf "$WORK"
}
trap cleanup EXIT

SIZE=1G
IMG=$WORK/disk.img
echo "# filling a $SIZE image" >&2
dd if=/dev/urandom of="$IMG" bs=1M count=1024 status=none
L0=$(losetup -f --show "$IMG"); LOOPS+=("$L0")
L1=$(losetup -f --show "$IMG"); LOOPS+=("$L1")

gmultipathd --nbd-dir "$WORK/nbd"
gmultipath label BENCH "${L0#/dev/}" "${L1#/dev/}"
FUSE=$GMULTIPATH_MOUNT/BENCH
for _ in $(seq 100); do [ -e "$FUSE" ] && [ -S "$WORK/nbd/BENCH" ] && break; sleep 0.1; done
LFUSE=$(losetup -f --show --direct-io=on "$FUSE")
qemu-nbd --format=raw --persistent --shared=8 --socket="$WORK/qemu.sock" "$IMG" &
QEMU=$!
for _ in $(seq 100); do [ -S "$WORK/qemu.sock" ] && break; sleep 0.1; done
mkdir -p "$WORK/floor"
target/release/examples/export_floor "$WORK/floor" "$WORK/floor-nbd" $((1 << 30)) &
FLOOR=$!
for _ in $(seq 100); do [ -e "$WORK/floor/FLOOR" ] && [ -S "$WORK/floor-nbd/FLOOR" ] && break; sleep 0.1; done

# One fio run: <name> <target-kind> <target> <rw> <bs> <qd>; JSON in $OUT/<name>.json.
# The region is the first 900 MiB (inside every target: the label sector stays untouched).
fio_run() {
    local name=$1 kind=$2 target=$3 rw=$4 bs=$5 qd=$6
    local io=(--ioengine=libaio --direct=1 "--filename=$target")
    [ "$kind" = nbd ] && io=(--ioengine=nbd "--uri=$target")
    fio --name="$name" "${io[@]}" --rw="$rw" --bs="$bs" --iodepth="$qd" \
        --size=900M --time_based --runtime="$SECS" --ramp_time=1 --randrepeat=0 \
        --norandommap --output-format=json --output="$OUT/$name.json" >/dev/null
}

if [ "${BENCH_ONLY:-}" != stall ]; then
WORKLOADS=("seq-read read 1M 1" "seq-read read 1M 32" "seq-write write 1M 1" "seq-write write 1M 32"
           "rand-read randread 4k 1" "rand-read randread 4k 32" "rand-write randwrite 4k 1" "rand-write randwrite 4k 32")
TARGETS=("loop dev $L0" "fuse dev $FUSE" "loop-on-fuse dev $LFUSE"
         "nbd-export nbd nbd+unix:///?socket=$WORK/nbd/BENCH" "qemu-nbd nbd nbd+unix:///?socket=$WORK/qemu.sock"
         "fuse-floor dev $WORK/floor/FLOOR" "nbd-floor nbd nbd+unix:///?socket=$WORK/floor-nbd/FLOOR")
for w in "${WORKLOADS[@]}"; do
    read -r wname rw bs qd <<<"$w"
    for t in "${TARGETS[@]}"; do
        read -r tname kind target <<<"$t"
        echo "# $tname $wname bs=$bs qd=$qd" >&2
        fio_run "main_${tname}_${wname}_${bs}_qd${qd}" "$kind" "$target" "$rw" "$bs" "$qd"
    done
done

# Active/Active over two paths, then over one (the other removed), through the export.
losetup -d "$LFUSE"; LFUSE=
gmultipath configure -A BENCH
for w in "rand-read randread 4k 32" "seq-read read 1M 32" "rand-write randwrite 4k 32"; do
    read -r wname rw bs qd <<<"$w"
    echo "# A/A two paths $wname" >&2
    fio_run "aa_two_${wname}" dev "$FUSE" "$rw" "$bs" "$qd"
done
gmultipath remove BENCH "${L1#/dev/}"
for w in "rand-read randread 4k 32" "seq-read read 1M 32" "rand-write randwrite 4k 32"; do
    read -r wname rw bs qd <<<"$w"
    echo "# A/A one path $wname" >&2
    fio_run "aa_one_${wname}" dev "$FUSE" "$rw" "$bs" "$qd"
done
gmultipath destroy BENCH

fi

# The failover stall: two NOP providers over two loops of a second image are the paths
# (a manual geom);
# fio reads 4 KiB at QD1 with every latency logged; after 2 s the active path's NOP starts
# failing every request with EIO (or holding it for 10 s, with io_timeout=1).
IMG2=$WORK/stall.img
truncate -s 256M "$IMG2"
S0=$(losetup -f --show "$IMG2"); LOOPS+=("$S0")
S1=$(losetup -f --show "$IMG2"); LOOPS+=("$S1")
# The daemon learns of new loop devices from uevents; give it a moment to know them.
for try in $(seq 50); do
    gnop create "${S0#/dev/}" "${S1#/dev/}" 2>"$OUT/gnop.err" && break
    [ "$try" -eq 50 ] && { cat "$OUT/gnop.err" >&2; exit 1; }
    echo "# gnop create: $(cat "$OUT/gnop.err") (retrying)" >&2
    sleep 0.2
done
N0=${S0#/dev/}.nop N1=${S1#/dev/}.nop
stall_run() {
    local name=$1 fault=$2 faults=${3:-1}
    # create, not label: a label on a NOP provider is also on the loop device below it.
    gmultipath create STALL "$N0" "$N1"
    fio --name="$name" --ioengine=psync --direct=1 --filename="$GMULTIPATH_MOUNT/STALL" \
        --rw=randread --bs=4k --size=200M --time_based --runtime=$((3 + faults)) --randrepeat=0 \
        --write_lat_log="$OUT/$name" --log_avg_msec=0 --log_unix_epoch=1 --output-format=json \
        --output="$OUT/$name.json" >/dev/null &
    local fio_pid=$!
    # fio starts slowly on a busy machine: the fault must come after its requests began.
    local job
    for _ in $(seq 300); do
        job=$(pgrep -P "$fio_pid" | head -1 || true)
        [ -n "$job" ] && ls -l "/proc/$job/fd" 2>/dev/null | grep -q "$GMULTIPATH_MOUNT/STALL" && break
        sleep 0.1
    done
    sleep 2
    local active i before
    : >"$OUT/$name.fault_at"
    for i in $(seq "$faults"); do
        active=$(gmultipath getactive STALL)
        # The fault takes effect between these two times (configure is synchronous).
        before=$(date +%s%3N)
        case $fault in
            eio) gnop configure -r 100 -w 100 "$active" ;;
            hang) gnop configure -d 10000 -q 100 -x 100 "$active" ;;
            none) ;;
        esac
        echo "$before $(date +%s%3N)" >>"$OUT/$name.fault_at"
        [ "$fault" = hang ] && break
        # Heal the failed path and give it back, so the next fault fails the other one.
        sleep 0.4
        gnop configure -r 0 -w 0 "$active"
        gmultipath restore STALL "$active"
        sleep 0.4
    done
    wait "$fio_pid"
    gnop configure -r 0 -w 0 -q 0 -x 0 "$N0"; gnop configure -r 0 -w 0 -q 0 -x 0 "$N1"
    gmultipath destroy STALL
}
mpsysctl kern.geom.multipath.io_timeout=1 >/dev/null
echo "# stall: none / EIO / hang" >&2
stall_run stall_none none 8
stall_run stall_eio eio 8
stall_run stall_hang hang
gnop destroy "$N0" "$N1"

python3 bench/report.py "$OUT" "$SECS"

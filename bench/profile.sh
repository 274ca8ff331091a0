#!/usr/bin/env bash
# Where the daemon's time goes while fio reads 4 KiB at random, QD32, through the FUSE
# export of a two-path geom (the rand-read QD32 row of bench/io.sh):
#   perf       perf record -e cpu-clock of gmultipathd for 8 s, then the time per thread
#              and the hottest symbols (kernel ones included: that is where it goes);
#   callgrind  gmultipathd under valgrind callgrind, instruction counting switched on only
#              while fio issues a fixed number of requests: user-space instructions per
#              request, and the functions they are spent in.
#
# Usage: sudo bench/profile.sh perf|callgrind
#        GMULTIPATHD_IO=threads sudo bench/profile.sh ...   (the thread-pool engine)
# Needs: fio, perf (linux-perf) or valgrind; root (loop devices, FUSE).
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:?usage: bench/profile.sh perf|callgrind}
[ "$(id -u)" -eq 0 ] || { echo "bench/profile.sh: needs root (loop devices, FUSE)" >&2; exit 1; }
case $MODE in
    perf) TOOL=perf ;;
    callgrind) TOOL=valgrind ;;
    *) echo "bench/profile.sh: perf or callgrind, not $MODE" >&2; exit 2 ;;
esac
for tool in fio "$TOOL" losetup; do
    command -v "$tool" >/dev/null || { echo "bench/profile.sh: $tool is not installed" >&2; exit 1; }
done

cargo build --release --bins -j2 --quiet
BIN=$PWD/target/release
WORK=$(mktemp -d /var/tmp/gmp-profile.XXXXXX)
export GMULTIPATH_SOCKET=$WORK/run/geom.ctl GMULTIPATH_MOUNT=$WORK/multipath
export GMULTIPATH_DEVICES=$WORK GMULTIPATH_CONF=/dev/null
LOOPS=() DAEMON=
cleanup() {
    set +e
    "$BIN/gmultipath" destroy PROF >/dev/null 2>&1
    # Under valgrind a thread's stat(2) of the daemon's own FUSE mount holds valgrind's
    # lock while it waits for the answer its FUSE threads cannot give: detach the mount
    # first, so the daemon's unmount check finds an empty directory.
    [ "$MODE" = callgrind ] && umount -l "$GMULTIPATH_MOUNT" 2>/dev/null
    if [ -n "$DAEMON" ]; then
        "$BIN/gmultipath" unload >/dev/null 2>&1 || kill "$DAEMON"
        wait "$DAEMON" 2>/dev/null
    fi
    for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null; done
    mountpoint -q "$GMULTIPATH_MOUNT" || rm -rf "$WORK"
}
trap cleanup EXIT

dd if=/dev/urandom of="$WORK/disk.img" bs=1M count=512 status=none
L0=$(losetup -f --show "$WORK/disk.img"); LOOPS+=("$L0")
L1=$(losetup -f --show "$WORK/disk.img"); LOOPS+=("$L1")

wait_for() {
    local what=$1; shift
    for _ in $(seq 600); do "$@" && return 0; sleep 0.1; done
    echo "bench/profile.sh: timed out waiting for $what" >&2
    exit 1
}

if [ "$MODE" = callgrind ]; then
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/callgrind.out" \
        "$BIN/gmultipathd" -f 2>"$WORK/daemon.log" &
else
    "$BIN/gmultipathd" -f 2>"$WORK/daemon.log" &
fi
DAEMON=$!
wait_for "the daemon's socket" test -S "$GMULTIPATH_SOCKET"
"$BIN/gmultipath" label PROF "${L0#/dev/}" "${L1#/dev/}"
wait_for "/dev/multipath/PROF" test -e "$GMULTIPATH_MOUNT/PROF"

fio_args=(--name=prof "--filename=$GMULTIPATH_MOUNT/PROF" --ioengine=libaio --direct=1
          --rw=randread --bs=4k --iodepth=32 --size=400M --randrepeat=0 --norandommap
          --output-format=terse --terse-version=3)

if [ "$MODE" = perf ]; then
    fio "${fio_args[@]}" --time_based --runtime=12 >"$WORK/fio.out" &
    FIO=$!
    sleep 2 # fio's ramp-up; the sample below is a fixed window, not a synchronisation
    perf record -e cpu-clock -F 999 -g -p "$DAEMON" -o "$WORK/perf.data" -- sleep 8 \
        >/dev/null 2>&1
    wait "$FIO"
    echo "fio read IOPS: $(cut -d';' -f8 "$WORK/fio.out")"
    echo
    echo "== samples per thread (999 Hz for 8 s: 7992 samples are one CPU kept busy)"
    perf report -i "$WORK/perf.data" --no-children --sort comm -n --stdio 2>/dev/null \
        | grep -E '^ +[0-9]' | head -10
    echo
    echo "== hottest symbols (self)"
    perf report -i "$WORK/perf.data" --no-children --sort comm,sym --stdio -g none \
        2>/dev/null | grep -E '^ +[0-9]' | head -25
else
    REQUESTS=20000
    callgrind_control -i on "$DAEMON" >/dev/null
    fio "${fio_args[@]}" --number_ios=$REQUESTS >"$WORK/fio.out"
    callgrind_control -i off "$DAEMON" >/dev/null
    callgrind_control -d "$DAEMON" >/dev/null
    dump=$(ls -t "$WORK"/callgrind.out* | head -1)
    total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    echo "requests: $REQUESTS (fio read IOPS under valgrind: $(cut -d';' -f8 "$WORK/fio.out"))"
    echo "user-space instructions in gmultipathd: $total, per request: $((total / REQUESTS))"
    echo
    echo "== functions (self instructions)"
    callgrind_annotate "$dump" 2>/dev/null | sed -n '/^-* *$/,$p' | grep -E '^ *[0-9,]+ ' | head -25
fi

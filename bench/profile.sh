#!/usr/bin/env bash
# Where the daemon's time goes while fio reads 4 KiB at random, QD32, through the FUSE
# export of a two-path geom (the rand-read QD32 row of bench/io.sh):
#   perf       perf record -e cpu-clock of gmultipathd for 8 s, then the time per thread
#              and the hottest symbols (kernel ones included: that is where it goes);
#   callgrind  gmultipathd under valgrind callgrind, instruction counting switched on only
#              while fio issues a fixed number of requests: user-space instructions per
#              request, and the functions they are spent in;
#   switches   context switches of each daemon thread (voluntary + involuntary, from
#              /proc/PID/task/*/status) while fio issues a fixed number of requests: per
#              request, and per thread.
# Another row of bench/io.sh: PROFILE_EXPORT=fuse|nbd (the daemon's NBD export, fio's nbd
# engine), PROFILE_RW (randread, randwrite, read, write), PROFILE_BS, PROFILE_QD.
#
# Usage: sudo bench/profile.sh perf|callgrind|switches
#        GMULTIPATHD_IO=threads sudo bench/profile.sh ...   (the thread-pool engine)
#        PROFILE_EXPORT=nbd PROFILE_QD=1 sudo bench/profile.sh callgrind
# Needs: fio, perf (linux-perf) or valgrind; root (loop devices, FUSE).
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:?usage: bench/profile.sh perf|callgrind|switches}
EXPORT=${PROFILE_EXPORT:-fuse} RW=${PROFILE_RW:-randread} BS=${PROFILE_BS:-4k} QD=${PROFILE_QD:-32}
[ "$(id -u)" -eq 0 ] || { echo "bench/profile.sh: needs root (loop devices, FUSE)" >&2; exit 1; }
case $MODE in
    perf) TOOL=perf ;;
    callgrind) TOOL=valgrind ;;
    switches) TOOL=fio ;;
    *) echo "bench/profile.sh: perf, callgrind or switches, not $MODE" >&2; exit 2 ;;
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
        "$BIN/gmultipathd" -f --nbd-dir "$WORK/nbd" 2>"$WORK/daemon.log" &
else
    "$BIN/gmultipathd" -f --nbd-dir "$WORK/nbd" 2>"$WORK/daemon.log" &
fi
DAEMON=$!
wait_for "the daemon's socket" test -S "$GMULTIPATH_SOCKET"
"$BIN/gmultipath" label PROF "${L0#/dev/}" "${L1#/dev/}"
wait_for "/dev/multipath/PROF" test -e "$GMULTIPATH_MOUNT/PROF"
wait_for "the NBD export" test -S "$WORK/nbd/PROF"

case $EXPORT in
    fuse) target=(--ioengine=libaio --direct=1 "--filename=$GMULTIPATH_MOUNT/PROF") ;;
    nbd) target=(--ioengine=nbd "--uri=nbd+unix:///?socket=$WORK/nbd/PROF") ;;
    *) echo "bench/profile.sh: PROFILE_EXPORT is fuse or nbd, not $EXPORT" >&2; exit 2 ;;
esac
fio_args=(--name=prof "${target[@]}" --rw="$RW" --bs="$BS" --iodepth="$QD" --size=400M
          --randrepeat=0 --norandommap --output-format=terse --terse-version=3)
echo "$EXPORT $RW bs=$BS QD$QD"
# fio's terse v3: field 8 is read IOPS, 49 write IOPS.
iops() { tail -1 "$WORK/fio.out" | awk -F';' '{print ($8 > 0 ? $8 : $49)}'; }
# Context switches of every thread of the daemon, one "name count" line each.
switches() {
    local t
    for t in /proc/"$DAEMON"/task/*; do
        awk -v comm="$(cat "$t/comm")" '/ctxt_switches/ {n += $2} END {print comm, n}' "$t/status"
    done
}

if [ "$MODE" = perf ]; then
    fio "${fio_args[@]}" --time_based --runtime=12 >"$WORK/fio.out" &
    FIO=$!
    sleep 2 # fio's ramp-up; the sample below is a fixed window, not a synchronisation
    perf record -e cpu-clock -F 999 -g -p "$DAEMON" -o "$WORK/perf.data" -- sleep 8 \
        >/dev/null 2>&1
    wait "$FIO"
    echo "fio IOPS: $(iops)"
    echo
    echo "== samples per thread (999 Hz for 8 s: 7992 samples are one CPU kept busy)"
    perf report -i "$WORK/perf.data" --no-children --sort comm -n --stdio 2>/dev/null \
        | grep -E '^ +[0-9]' | head -10
    echo
    echo "== hottest symbols (self)"
    perf report -i "$WORK/perf.data" --no-children --sort comm,sym --stdio -g none \
        2>/dev/null | grep -E '^ +[0-9]' | head -25
elif [ "$MODE" = switches ]; then
    REQUESTS=50000
    switches | sort >"$WORK/before"
    fio "${fio_args[@]}" --number_ios=$REQUESTS >"$WORK/fio.out"
    switches | sort >"$WORK/after"
    echo "requests: $REQUESTS (fio IOPS: $(iops))"
    # Threads with one name (the FUSE readers, path workers) are added up per name.
    join -a2 -e0 -o 0,1.2,2.2 <(awk '{n[$1] += $2} END {for (c in n) print c, n[c]}' "$WORK/before" | sort) \
        <(awk '{n[$1] += $2} END {for (c in n) print c, n[c]}' "$WORK/after" | sort) |
        awk -v r=$REQUESTS '{d = $3 - $2; total += d; printf "%-16s %8d switches, %.3f per request\n", $1, d, d / r}
            END {printf "%-16s %8d switches, %.3f per request\n", "all threads", total, total / r}'
else
    REQUESTS=20000
    callgrind_control -i on "$DAEMON" >/dev/null
    fio "${fio_args[@]}" --number_ios=$REQUESTS >"$WORK/fio.out"
    callgrind_control -i off "$DAEMON" >/dev/null
    callgrind_control -d "$DAEMON" >/dev/null
    dump=$(ls -t "$WORK"/callgrind.out* | head -1)
    # PROFILE_KEEP=FILE keeps the dump (callgrind_annotate --tree=caller FILE shows callers).
    if [ -n "${PROFILE_KEEP:-}" ]; then cp "$dump" "$PROFILE_KEEP"; fi
    total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    echo "requests: $REQUESTS (fio IOPS under valgrind: $(iops))"
    echo "user-space instructions in gmultipathd: $total, per request: $((total / REQUESTS))"
    echo
    echo "== functions (self instructions)"
    callgrind_annotate "$dump" 2>/dev/null | sed -n '/^-* *$/,$p' | grep -E '^ *[0-9,]+ ' | head -25
fi

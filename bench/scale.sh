#!/usr/bin/env bash
# The scale benchmark of BENCHMARKS.md: N geoms of two paths each (two loop devices over
# each of N small images), for each N given (default 100 1000 4000):
#   label     the time to `gmultipath label` all N, one command each, the daemon running;
#   load      the time from `gmultipath load` (a fresh daemon tasting all 2N loop devices)
#             to every geom assembled (N files under the mount, then `status` checked:
#             N geoms OPTIMAL with 2 paths each);
#   status    `gmultipath status` and `gmultipath list` latency (median of 5);
#   daemon    its RSS, threads and open descriptors once assembled.
# It prints one Markdown table row per N. Loop devices are made with `losetup -f` and
# detached at the end; the daemon sees only devices whose backing file is in its scratch
# directory (GMULTIPATH_DEVICES), so other work on the machine is left alone.
#
# Usage: sudo bench/scale.sh [N ...]
# Needs: root, losetup, python3; 2N free loop devices (see the limits printed first).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench/scale.sh: needs root (loop devices, FUSE)" >&2; exit 1; }
for tool in losetup python3; do
    command -v "$tool" >/dev/null || { echo "bench/scale.sh: $tool is not installed" >&2; exit 1; }
done
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(100 1000 4000)

cargo build --release --bins -j2 --quiet
BIN=$PWD/target/release
export PATH=$BIN:$PATH
WORK=$(mktemp -d /var/tmp/gmp-scale.XXXXXX)
export GMULTIPATH_SOCKET=$WORK/run/geom.ctl GMULTIPATH_MOUNT=$WORK/multipath
export GMULTIPATH_DEVICES=$WORK GMULTIPATH_CONF=/dev/null GMULTIPATHD=$BIN/gmultipathd
export GMULTIPATH_LOG=$WORK/daemon.log
LOOPS=()
cleanup() {
    set +e
    gmultipath unload >/dev/null 2>&1
    for _ in $(seq 100); do mountpoint -q "$GMULTIPATH_MOUNT" || break; sleep 0.1; done
    detach_loops
    mountpoint -q "$GMULTIPATH_MOUNT" || rm -rf "$WORK"
}
detach_loops() {
    local i
    for ((i = 0; i < ${#LOOPS[@]}; i += 200)); do
        losetup -d "${LOOPS[@]:i:200}" 2>/dev/null
    done
    LOOPS=()
}
trap cleanup EXIT

now_ns() { date +%s%N; }
ms_since() { echo $((($(now_ns) - $1) / 1000000)); }
daemon_pid() { cat "$WORK/run/gmultipathd.pid"; }
# The median wall time of 5 runs of a command, in ms.
median_ms() {
    local t i times=()
    for i in 1 2 3 4 5; do
        t=$(now_ns)
        "$@" >/dev/null
        times+=($((($(now_ns) - t) / 1000)))
    done
    printf '%s\n' "${times[@]}" | sort -n | sed -n 3p | awk '{printf "%.1f", $1 / 1000}'
}
wait_until() {
    local what=$1 secs=$2; shift 2
    local deadline=$(($(date +%s) + secs))
    until "$@"; do
        [ "$(date +%s)" -lt "$deadline" ] || { echo "bench/scale.sh: timed out waiting for $what" >&2; exit 1; }
        sleep 0.05
    done
}
files_under_mount() { [ "$(find "$GMULTIPATH_MOUNT" -mindepth 1 -maxdepth 1 | wc -l)" -ge "$1" ]; }

echo "# limits: loop max_loop=$(cat /sys/module/loop/parameters/max_loop 2>/dev/null || echo ?)" \
    "(0 or a number; losetup -f adds devices past it through /dev/loop-control)," \
    "loop devices now $(ls /sys/block | grep -c '^loop' || true)," \
    "RLIMIT_NOFILE $(ulimit -Sn)/$(ulimit -Hn), fs.nr_open $(cat /proc/sys/fs/nr_open)," \
    "fs.file-nr $(cut -f1 /proc/sys/fs/file-nr)/$(cut -f3 /proc/sys/fs/file-nr)" >&2

echo "| N geoms | loop devices | label, total (per label) | load → assembled | status | list | RSS | threads | descriptors |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for N in "${SIZES[@]}"; do
    mkdir -p "$WORK/img"
    echo "# N=$N: $((2 * N)) loop devices over $N images" >&2
    for ((i = 0; i < N; i++)); do
        img=$WORK/img/d$i
        truncate -s 1M "$img"
        LOOPS+=("$(losetup -f --show --direct-io=on "$img")")
        LOOPS+=("$(losetup -f --show --direct-io=on "$img")")
    done
    gmultipathd
    # The daemon learns of the loop devices made before it from sysfs at start.
    echo "# N=$N: labelling" >&2
    start=$(now_ns)
    for ((i = 0; i < N; i++)); do
        gmultipath label "S$i" "${LOOPS[2 * i]#/dev/}" "${LOOPS[2 * i + 1]#/dev/}"
    done
    label_ms=$(ms_since "$start")
    wait_until "$N labelled geoms" 600 files_under_mount "$N"
    gmultipath unload
    wait_until "the unmount" 60 bash -c "! mountpoint -q '$GMULTIPATH_MOUNT'"

    echo "# N=$N: load until assembled" >&2
    start=$(now_ns)
    gmultipath load
    wait_until "$N assembled geoms" 600 files_under_mount "$N"
    load_ms=$(ms_since "$start")
    # `status -s` prints one line per path: 2N lines that say OPTIMAL.
    optimal=$(gmultipath status -s | awk '$2 == "OPTIMAL"' | wc -l)
    [ "$optimal" -eq $((2 * N)) ] || { echo "bench/scale.sh: $optimal of $((2 * N)) paths in OPTIMAL geoms" >&2; exit 1; }
    paths=$(gmultipath list | grep -c '^[0-9]*\. Name: loop' || true)
    [ "$paths" -eq $((2 * N)) ] || { echo "bench/scale.sh: $paths of $((2 * N)) paths listed" >&2; exit 1; }

    status_ms=$(median_ms gmultipath status)
    list_ms=$(median_ms gmultipath list)
    pid=$(daemon_pid)
    rss=$(awk '/^VmRSS/ {printf "%.1f MiB", $2 / 1024}' "/proc/$pid/status")
    threads=$(awk '/^Threads/ {print $2}' "/proc/$pid/status")
    fds=$(find "/proc/$pid/fd" -mindepth 1 | wc -l)
    printf '| %d | %d | %.2f s (%.1f ms) | %.2f s | %s ms | %s ms | %s | %s | %s |\n' \
        "$N" $((2 * N)) "$(echo "$label_ms / 1000" | bc -l)" "$(echo "$label_ms / $N" | bc -l)" \
        "$(echo "$load_ms / 1000" | bc -l)" "$status_ms" "$list_ms" "$rss" "$threads" "$fds"

    # Clear the labels, so the next N starts from blank images (they are deleted anyway).
    gmultipath unload
    wait_until "the unmount" 60 bash -c "! mountpoint -q '$GMULTIPATH_MOUNT'"
    detach_loops
    rm -rf "$WORK/img"
done

#!/usr/bin/env bash
# The main job, start to finish: build, label two loop devices over one scratch image
# (two paths to one disk), show status, write and read /dev/multipath/FRED, fail a path,
# show the failover and that the data is still there, then clean everything up.
#
# Usage: sudo tests/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" -eq 0 ] || { echo "demo.sh: needs root (loop devices, FUSE)" >&2; exit 1; }
say() { printf '\n\033[1m# %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

say "build"
cargo build --bins -j2 --quiet
BIN=$PWD/target/debug
export PATH=$BIN:$PATH

# Refuse before making anything, so that a refusal leaves nothing behind.
if gmultipathd probes >/dev/null 2>&1; then
    echo "demo.sh: a gmultipathd is already running; stop it first (gmultipath unload)" >&2
    exit 1
fi
WORK=$(mktemp -d /var/tmp/gmultipath-demo.XXXXXX)
# The daemon tastes only loop devices backed by files in $WORK, so the demo never touches
# another disk of this machine.
export GMULTIPATH_DEVICES=$WORK GMULTIPATH_CONF=/dev/null
L0= L1=
cleanup() {
    set +e
    gmultipath unload 2>/dev/null
    for l in $L0 $L1; do losetup -d "$l" 2>/dev/null; done
    rm -rf "$WORK"
}
trap cleanup EXIT

say "two loop devices over one 256 MiB image: two paths to one disk"
truncate -s 256M "$WORK/disk.img"
L0=$(losetup -f --show "$WORK/disk.img")
L1=$(losetup -f --show "$WORK/disk.img")
P0=${L0#/dev/} P1=${L1#/dev/}
echo "$L0 $L1"

say "label them (this starts gmultipathd, as geom(8) loads the module)"
run gmultipath label -v FRED "$P0" "$P1"
run gmultipath status
run gmultipath list FRED

say "write 32 MiB through /dev/multipath/FRED and read it back"
head -c 32M /dev/urandom > "$WORK/data"
run dd if="$WORK/data" of=/dev/multipath/FRED bs=1M oflag=direct status=none
want=$(sha256sum < "$WORK/data" | cut -d' ' -f1)
got=$(dd if=/dev/multipath/FRED bs=1M count=32 iflag=direct status=none | sha256sum | cut -d' ' -f1)
echo "written $want"
echo "read    $got"
[ "$want" = "$got" ]

say "fail the active path: the other one takes over"
run gmultipath fail FRED "$P0"
run gmultipath status
run gmultipath getactive FRED
got=$(dd if=/dev/multipath/FRED bs=1M count=32 iflag=direct status=none | sha256sum | cut -d' ' -f1)
echo "read through $P1: $got"
[ "$want" = "$got" ]

say "restore it, and see what the class said (its console, like dmesg)"
run gmultipath restore FRED "$P0"
run gmultipath status
run gmultipathd dmesg

say "clean up: stop the geom (the label stays), unload, detach"
run gmultipath stop FRED
run gmultipath unload -v
echo
echo "demo complete: data intact across the failover."

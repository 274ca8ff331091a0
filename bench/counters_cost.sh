#!/usr/bin/env bash
# What the per-path counters and latency histograms cost per request, before and after in
# one run, against the class of BASE (default: the commit before the counters):
#   1. instructions per request under callgrind (deterministic, whatever else runs on the
#      machine): the route_loop example on an Active/Active geom of 2 and 8 paths, run
#      for 100k and 300k requests so that the set-up cancels out;
#   2. criterion's time per request (the routing bench, geom_multipath/core/benches/route.rs)
#      alternating base, new, base, new so that both see the same machine.
#
# The base class has no done_at: its copy of the bench and of route_loop completes with
# done() where these pass the answer's time (the one call the sed below changes), so both
# do the same work but for the counting.
#
# Usage: bench/counters_cost.sh [BASE]     Needs: valgrind.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${1:-$(git log --format=%H -1 --grep='^core: per-path and per-geom counters')^}
WORK=$(mktemp -d /var/tmp/gmp-cost.XXXXXX)
trap 'git worktree remove --force "$WORK/base" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
git worktree add --detach "$WORK/base" "$BASE" >/dev/null 2>&1
for f in benches/route.rs examples/route_loop.rs; do
    sed 's/class\.done_at(&mut bio, Ok(()), Time([^)]*))/class.done(\&mut bio, Ok(()))/' \
        "geom_multipath/core/$f" >"$WORK/base/geom_multipath/core/$f"
done
# Each tree builds in its own target directory, so neither overwrites the other's binaries.
route_loop() { # tree target-dir
    (cd "$1" && CARGO_TARGET_DIR=$2 cargo build -q -j2 --release -p geom_multipath \
        --features testkit --example route_loop)
    echo "$2/release/examples/route_loop"
}
cp "$(route_loop "$WORK/base" "$PWD/target/cost-base")" "$WORK/route_loop.before"
cp "$(route_loop "$PWD" "$PWD/target/cost-after")" "$WORK/route_loop.after"
cmp -s "$WORK/route_loop.before" "$WORK/route_loop.after" && { echo "the same binary twice" >&2; exit 1; }
instructions() { # binary paths requests
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$1" "$2" "$3" 2>&1 |
        awk '/Collected :/ {print $NF}'
}
echo "instructions per request (callgrind, Active/Active, start + arm_deadline + done[_at]):"
for paths in 2 8; do
    for who in before after; do
        a=$(instructions "$WORK/route_loop.$who" "$paths" 100000)
        b=$(instructions "$WORK/route_loop.$who" "$paths" 300000)
        echo "  $who paths=$paths: $(( (b - a) / 200000 ))"
    done
done

ARGS=(--warm-up-time 1 --measurement-time 3 --noplot)
bench() { # dir label target-dir
    (cd "$1" && CARGO_TARGET_DIR=$3 cargo bench -j2 -q -p geom_multipath --bench route -- "${ARGS[@]}" 2>/dev/null) |
        awk -v who="$2" '/^start_/ {name=$1}
            /time:/ {s=$0; sub(/.*\[/, "", s); sub(/\].*/, "", s); split(s, t, " ");
                     print who, name, t[3], t[4]}'
}
echo "time per request (criterion, median estimate):"
for round in 1 2; do
    bench "$WORK/base" "before#$round" "$PWD/target/cost-base"
    bench "$PWD" "after#$round" "$PWD/target/cost-after"
done

#!/usr/bin/env bash
# What the per-path counters and latency histograms cost per request, before and after in
# one run: the routing bench (geom_multipath/core/benches/route.rs) of this tree against the
# same bench built from BASE (default: the commit before the counters), alternating
# base, new, base, new so that both see the same machine.
#
# The base class has no done_at: its copy of the bench completes with done() where this one
# passes the answer's time (the one line the sed below changes), so the two timed groups do
# the same work but for the counting.
#
# Usage: bench/counters_cost.sh [BASE]      prints criterion's estimate per group and mode
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${1:-$(git log --format=%H -1 --grep='^core: per-path and per-geom counters' )^}
WORK=$(mktemp -d /var/tmp/gmp-cost.XXXXXX)
trap 'git worktree remove --force "$WORK/base" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
git worktree add --detach "$WORK/base" "$BASE" >/dev/null 2>&1
sed 's/class\.done_at(&mut bio, Ok(()), Time([^)]*))/class.done(\&mut bio, Ok(()))/' \
    geom_multipath/core/benches/route.rs >"$WORK/base/geom_multipath/core/benches/route.rs"
export CARGO_TARGET_DIR=$PWD/target
ARGS=(--warm-up-time 1 --measurement-time 3 --noplot)
bench() { # dir label
    (cd "$1" && cargo bench -j2 -q -p geom_multipath --bench route -- "${ARGS[@]}" 2>/dev/null) |
        awk -v who="$2" '/^start_/ {name=$1}
            /time:/ {s=$0; sub(/.*\[/, "", s); sub(/\].*/, "", s); split(s, t, " ");
                     print who, name, t[3], t[4]}'
}
for round in 1 2; do
    bench "$WORK/base" "before#$round"
    bench "$PWD" "after#$round"
done

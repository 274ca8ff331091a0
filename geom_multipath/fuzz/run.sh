#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time (default 20 s each; FUZZ_SECONDS=3600 for
# a nightly run). Needs the nightly toolchain and cargo-fuzz; without them it says so and
# exits 0 (the stable smoke tests in `cargo test` run the same bodies). A crash fails the
# run and leaves its input under artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${FUZZ_SECONDS:-20}
if ! cargo +nightly --version >/dev/null 2>&1 || ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "SKIPPED: fuzzing needs the nightly toolchain and cargo-fuzz (.ci/run installs them)"
    exit 0
fi
targets=$(cargo +nightly fuzz list --fuzz-dir .)
CARGO_BUILD_JOBS=2 cargo +nightly fuzz build --fuzz-dir .
for t in $targets; do
    mkdir -p "corpus/$t"
    echo "fuzz: $t for ${seconds}s"
    CARGO_BUILD_JOBS=2 cargo +nightly fuzz run --fuzz-dir . "$t" -- -max_total_time="$seconds" -rss_limit_mb=2048 2>&1 | tail -n 1
done

#!/usr/bin/env bash
# Runs every check and every test of the project: formatting, clippy, the core built
# without std, the FreeBSD build (the kernel module compiled against FreeBSD's headers,
# linked and checked; the programs linked against FreeBSD's libc; the port's plist against
# them), the unit/property/simulation tests, and the end-to-end tests on loop devices
# (those need root; without it they print SKIPPED and pass). The FreeBSD steps need what
# .ci/run installs (lld, llvm, the ziglang wheel); under CI a missing one fails.
#
# Usage: sudo tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "rustfmt"
cargo fmt --all -- --check

step "clippy (warnings are errors)"
cargo clippy --workspace --all-targets -j2 -- -D warnings

step "the core builds without std (x86_64-unknown-none)"
if rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-none; then
    cargo build -p geom_multipath --no-default-features --target x86_64-unknown-none -j2
else
    echo "SKIPPED: rustup target x86_64-unknown-none is not installed (.ci/run installs it)"
fi

step "FreeBSD build of the module: its C against FreeBSD's headers (amd64, arm64; plain, KDTRACE_HOOKS, INVARIANTS+WITNESS; warnings are errors), geom_multipath.ko linked as bsd.kmod.mk does and checked"
geom_multipath/kmod/cross-build.sh

step "kernel module: bindings fresh, clippy of the kernel build, the object gate"
geom_multipath/kmod/check-bindings.sh
cargo clippy -p geom_multipath_kmod --features kernel -j2 -- -D warnings
geom_multipath/kmod/check-object.sh

step "FreeBSD type-check: CLI, daemon and sys crate (x86_64-unknown-freebsd; check, not link)"
if rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-freebsd; then
    cargo check --target x86_64-unknown-freebsd -p gmultipath -p geom_multipath_sys -p geom_multipath_host --all-targets -j2
    cargo clippy --target x86_64-unknown-freebsd -p gmultipath -p geom_multipath_sys -p geom_multipath_host --all-targets -j2 -- -D warnings
else
    echo "SKIPPED: rustup target x86_64-unknown-freebsd is not installed (.ci/run installs it)"
fi

step "manual pages (mandoc -T lint -W warning)"
man/lint.sh

step "build the programs the end-to-end tests run"
cargo build --workspace --bins -j2

step "FreeBSD programs linked (x86_64-unknown-freebsd, the port's cargo arguments, zig cc against FreeBSD's libc)"
port/link-freebsd.sh

step "FreeBSD port: it builds what it installs; pkg-plist against a staged install of the linked programs and module"
port/check-plist.sh

step "tests"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace -j2 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

step "fuzz every decoder of untrusted bytes, ${FUZZ_SECONDS:=10}s each (cargo-fuzz, nightly)"
FUZZ_SECONDS=$FUZZ_SECONDS geom_multipath/fuzz/run.sh || status=1

step "nothing leaked: loop devices, mounts, namespaces, processes of the end-to-end tests"
# Every test resource lives under /var/tmp/gmp-e2e-* or is named gmp-net-*; each guard
# cleans up in Drop, so after the run none may be left.
leaks=$( { losetup -a 2>/dev/null | grep -F /var/tmp/gmp-e2e- ;
           grep -F /var/tmp/gmp-e2e- /proc/mounts ;
           ip netns list 2>/dev/null | grep -E '^gmp-net-' ;
           pgrep -af 'gmultipathd|nbdkit' | grep -F /var/tmp/gmp-e2e- ; } || true)
if [ -n "$leaks" ]; then
    printf 'LEAKED:\n%s\n' "$leaks"
    status=1
else
    echo "none"
fi
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "\ntests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"

#!/bin/sh
# Regenerates src/bindings.rs from kpi.h with the pinned bindgen-cli. The output is committed
# and never edited by hand; check-bindings.sh (CI) regenerates it into a temporary file and
# diffs. Usage: regen-bindings.sh [OUTPUT]   (default: src/bindings.rs next to this script)
#
# Install the pinned generator with:  cargo install bindgen-cli --version 0.73.2 --locked
# It needs libclang (Debian: apt-get install libclang-dev clang).
set -eu

BINDGEN_VERSION=0.73.2

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-"$here/src/bindings.rs"}
bindgen=${BINDGEN:-bindgen}

have=$("$bindgen" --version 2>/dev/null | awk '{ print $2 }') || have=
if [ "$have" != "$BINDGEN_VERSION" ]; then
    echo "regen-bindings.sh: bindgen $BINDGEN_VERSION is required, found '${have:-none}'" >&2
    exit 2
fi

# -ffreestanding: clang's own <stdint.h>/<stddef.h>/<stdbool.h>, never the host's, so the
# output is the same on Linux and on FreeBSD. Only our own kpi_*/gmp_rs_*/KPI_* names are
# emitted; the incomplete kernel structs come along as opaque types.
"$bindgen" "$here/kpi.h" \
    --use-core \
    --rust-target 1.82 \
    --rust-edition 2021 \
    --allowlist-function 'kpi_.*' \
    --allowlist-function 'gmp_rs_.*' \
    --allowlist-var 'KPI_.*' \
    --allowlist-type 'kpi_.*' \
    --rustified-enum 'kpi_log_level' \
    --rustified-enum 'kpi_sdt_config' \
    --rustified-enum 'kpi_work' \
    --default-macro-constant-type signed \
    --no-layout-tests \
    --merge-extern-blocks \
    --sort-semantically \
    --formatter rustfmt \
    --output "$out" \
    -- -std=c11 -ffreestanding

#!/bin/sh
# CI gate: src/bindings.rs is exactly what regen-bindings.sh makes from kpi.h today.
# Prints "SKIPPED: <why>" and succeeds when the pinned bindgen-cli or libclang is missing.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
want=$(sed -n 's/^BINDGEN_VERSION=//p' "$here/regen-bindings.sh")
bindgen=${BINDGEN:-bindgen}

if ! command -v "$bindgen" >/dev/null 2>&1; then
    echo "SKIPPED: bindgen-cli is not installed (cargo install bindgen-cli --version $want --locked)"
    exit 0
fi
have=$("$bindgen" --version 2>/dev/null | awk '{ print $2 }') || have=
if [ "$have" != "$want" ]; then
    echo "SKIPPED: bindgen-cli $want is pinned, '${have:-unknown}' is installed"
    exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! "$here/regen-bindings.sh" "$tmp/bindings.rs" 2>"$tmp/err"; then
    if grep -qi 'libclang' "$tmp/err"; then
        echo "SKIPPED: bindgen-cli cannot load libclang (apt-get install libclang-dev clang)"
        exit 0
    fi
    cat "$tmp/err" >&2
    exit 1
fi
if ! diff -u "$here/src/bindings.rs" "$tmp/bindings.rs"; then
    echo "check-bindings.sh: src/bindings.rs is stale; run regen-bindings.sh and commit it" >&2
    exit 1
fi
echo "bindings fresh (bindgen $have)"

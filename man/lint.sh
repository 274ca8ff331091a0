#!/usr/bin/env bash
# Lints the manual pages with mandoc at warning level; any warning (or worse) fails.
#
# Usage: man/lint.sh [page ...]     (default: every page in man/)
#
# Plain `mandoc -T lint` also reports STYLE messages, among them every reference to a page
# that is not installed here (geom(8), sysctl(8) on Linux), so it would fail clean pages:
# `-W warning` keeps warnings, errors and unsupported features only.
# Without mandoc this prints SKIPPED and succeeds (Debian: apt-get install mandoc).
set -euo pipefail

if ! command -v mandoc >/dev/null 2>&1; then
    echo "SKIPPED: mandoc is not installed (apt-get install mandoc)"
    exit 0
fi

if [ "$#" -gt 0 ]; then
    pages=("$@")
else
    dir=$(cd "$(dirname "$0")" && pwd)
    shopt -s nullglob
    pages=("$dir"/*.[1-9])
    shopt -u nullglob
    if [ "${#pages[@]}" -eq 0 ]; then
        echo "man/lint.sh: no manual pages in $dir" >&2
        exit 1
    fi
fi

failed=0
for page in "${pages[@]}"; do
    set +e
    out=$(mandoc -T lint -W warning "$page" 2>&1)
    rc=$?
    set -e
    if [ "$rc" -ne 0 ] || [ -n "$out" ]; then
        printf '%s\n' "$out"
        echo "FAIL: $(basename "$page") (mandoc exit status $rc)"
        failed=1
    else
        echo "ok: $(basename "$page")"
    fi
done
exit "$failed"

#!/usr/bin/env bash
# FreeBSD's headers and libc on Linux, from one pinned registry package: the `ziglang`
# wheel on PyPI carries FreeBSD's installed /usr/include (kernel headers included:
# sys/bio.h, sys/sdt.h, geom/geom.h, ...) and `zig cc`, which links FreeBSD programs
# against stub libraries made from FreeBSD's libc ABI lists. The headers are FreeBSD 15's.
#
# The wheel lives in a virtualenv under the cargo target directory; this script is the only
# place that names its version.
#
# Usage: tests/freebsd-sdk.sh install         make the venv and pip install the pinned wheel
#        tests/freebsd-sdk.sh zig             print the path of the zig binary
#        tests/freebsd-sdk.sh include ARCH    print an include directory for ARCH (amd64,
#                                             aarch64): the generic headers with the
#                                             architecture's machine/ (and x86/, arm/)
#                                             merged over them, as FreeBSD installs them
# Exits 3 (with the reason on stderr) when the wheel is not installed.
set -euo pipefail

ZIGLANG_VERSION=0.17.0

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${CARGO_TARGET_DIR:-$root/target}/freebsd-sdk
venv=$dir/venv

die() {
    echo "freebsd-sdk: $*" >&2
    exit "${2:-1}"
}

# The installed ziglang package directory, or exit 3.
package() {
    [ -x "$venv/bin/python" ] ||
        die "no venv at $venv (run: tests/freebsd-sdk.sh install)" 3
    local found
    found=$("$venv/bin/python" - "$ZIGLANG_VERSION" <<'EOF'
import importlib.metadata, os, sys
try:
    version = importlib.metadata.version("ziglang")
except importlib.metadata.PackageNotFoundError:
    sys.exit("ziglang is not installed in the venv")
if version != sys.argv[1]:
    sys.exit(f"ziglang {version} is installed, the pinned version is {sys.argv[1]}")
import ziglang
print(os.path.dirname(ziglang.__file__))
EOF
    ) || die "(run: tests/freebsd-sdk.sh install)" 3
    echo "$found"
}

case ${1:-} in
install)
    command -v python3 >/dev/null || die "python3 is not installed"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "ziglang==$ZIGLANG_VERSION"
    "$(package)/zig" version
    ;;
zig)
    echo "$(package)/zig"
    ;;
include)
    arch=${2:-}
    case $arch in
    amd64) triple=x86_64-freebsd-none ;;
    aarch64) triple=aarch64-freebsd-none ;;
    *) die "usage: freebsd-sdk.sh include amd64|aarch64" 2 ;;
    esac
    libc=$(package)/lib/libc/include
    [ -f "$libc/generic-freebsd/geom/geom.h" ] || die "no FreeBSD headers under $libc"
    merged=$dir/include-$ZIGLANG_VERSION-$arch
    if [ ! -f "$merged/.complete" ]; then
        rm -rf "$merged"
        mkdir -p "$merged"
        # Symbolic links, the architecture's over the generic ones.
        cp -rs "$libc/generic-freebsd/." "$merged/"
        cp -rsf "$libc/$triple/." "$merged/"
        touch "$merged/.complete"
    fi
    echo "$merged"
    ;;
*)
    die "usage: freebsd-sdk.sh install | zig | include amd64|aarch64" 2
    ;;
esac

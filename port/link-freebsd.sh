#!/usr/bin/env bash
# Links the port's FreeBSD programs on Linux: gmultipath and gnop, and with the HOST option
# gmultipathd (GEOM Gate export, Capsicum) and mpsysctl, built for x86_64-unknown-freebsd
# with the port's own cargo arguments (CARGO_BUILD_ARGS, plus HOST_VARS) in the release
# profile the port builds, and `zig cc -target x86_64-freebsd.14.0` from the pinned ziglang
# wheel (tests/freebsd-sdk.sh) as the linker, which links against FreeBSD's libc, libthr,
# libm, libutil, librt, libexecinfo and libgcc_s (stubs zig makes from FreeBSD's ABI lists).
#
# Base-system libraries zig has no stubs for, which the `libc` crate names with #[link] on
# FreeBSD (for its kvm_*, memstat_*, procstat_* and devstat_* declarations) although our
# programs call none of them: each gets an empty stand-in under the real library's soname.
# The linker needs the file to exist; since the stand-in defines nothing, a program that did
# call one of those functions would fail to link here (undefined symbol) instead of
# silently depending on it, and --as-needed keeps an unused one out of DT_NEEDED.
#   libkvm.so.7       kvm_open & co. (libc crate: freebsd/mod.rs)
#   libmemstat.so.3   memstat_* (libc crate)
#   libprocstat.so.1  procstat_* (libc crate)
#   libdevstat.so.7   devstat_* (libc crate)
#
# Then each program is checked: an x86-64 ELF executable with FreeBSD's ABI note, the
# interpreter /libexec/ld-elf.so.1, and only base-system libraries in DT_NEEDED.
# The programs land where the port's CARGO_OUT points: target/x86_64-unknown-freebsd/release.
#
# A missing tool fails when CI is set (.ci/run installs everything); otherwise it prints
# SKIPPED with the reason.
#
# Usage: port/link-freebsd.sh
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
makefile=$root/port/sysutils/gmultipath-rs/Makefile
target=x86_64-unknown-freebsd
target_dir=${CARGO_TARGET_DIR:-$root/target}
out=$target_dir/$target/release
link=$target_dir/freebsd-sdk/link

gate=link-freebsd.sh
# shellcheck source=../tests/gate-lib.sh
. "$root/tests/gate-lib.sh"

command -v readelf >/dev/null 2>&1 || missing "readelf (binutils) is not installed"
rustup target list --installed 2>/dev/null | grep -qx "$target" ||
    missing "rustup target $target is not installed"
set +e
zig=$("$root/tests/freebsd-sdk.sh" zig)
sdk_status=$?
set -e
[ "$sdk_status" -ne 3 ] || missing "zig: the ziglang wheel is not installed (tests/freebsd-sdk.sh install)"
[ "$sdk_status" -eq 0 ] || fail "tests/freebsd-sdk.sh zig"

# A make variable's value as written in the port's Makefile.
make_var() {
    sed -n "s/^$1[?:+]*=[[:space:]]*//p" "$makefile" | head -n 1 | tr -s '\t ' ' '
}
read -r -a build_args <<<"$(make_var CARGO_BUILD_ARGS)"
host_args=$(make_var HOST_VARS | sed -n 's/^CARGO_BUILD_ARGS+=//p')
[ "${#build_args[@]}" -gt 0 ] && [ -n "$host_args" ] ||
    fail "no CARGO_BUILD_ARGS / HOST_VARS in $makefile"
read -r -a programs <<<"$(make_var PROGRAMS) $(make_var HOST_PROGRAMS)"

# The linker: zig cc for FreeBSD 14.0 (cargo takes one program, so a wrapper).
mkdir -p "$link"
cat >"$link/cc" <<EOF
#!/bin/sh
exec "$zig" cc -target x86_64-freebsd.14.0-none "\$@"
EOF
chmod +x "$link/cc"
echo 'int gmultipath_link_stub;' >"$link/stub.c"
for lib in kvm.so.7 memstat.so.3 procstat.so.1 devstat.so.7; do
    "$link/cc" -shared -o "$link/lib${lib%%.so.*}.so" -Wl,-soname,"lib$lib" "$link/stub.c"
done

echo "==> cargo build --release --target $target ${build_args[*]} $host_args (linker: zig cc)"
(
    cd "$root"
    CARGO_TARGET_X86_64_UNKNOWN_FREEBSD_LINKER=$link/cc \
    CARGO_TARGET_X86_64_UNKNOWN_FREEBSD_RUSTFLAGS="-L native=$link" \
        cargo build --release --target "$target" "${build_args[@]}" "$host_args" \
        -j"${JOBS:-2}" --quiet
)

# What a FreeBSD 14 base system has (and the ports framework's libgcc_s).
base_libs=" libc.so.7 libthr.so.3 libm.so.5 libutil.so.9 librt.so.1 libexecinfo.so.1 libgcc_s.so.1 libkvm.so.7 libmemstat.so.3 libprocstat.so.1 libdevstat.so.7 "
status=0
for p in "${programs[@]}"; do
    f=$out/$p
    if [ ! -f "$f" ]; then
        echo "  FAIL: $p was not built (the port installs it)" >&2
        status=1
        continue
    fi
    header=$(readelf -hW "$f")
    problems=()
    grep -q 'Machine:[[:space:]]*Advanced Micro Devices X86-64' <<<"$header" || problems+=("not x86-64")
    grep -qE 'Type:[[:space:]]*(EXEC|DYN)' <<<"$header" || problems+=("not an executable")
    readelf -lW "$f" | grep -qF '[Requesting program interpreter: /libexec/ld-elf.so.1]' ||
        problems+=("interpreter is not /libexec/ld-elf.so.1")
    # The ABI tag note (owner FreeBSD, type 1): __FreeBSD_version, little-endian.
    abi=$(readelf -nW "$f" | awk '$1 == "FreeBSD" && /NT_VERSION/ { print $NF $(NF-1) $(NF-2) $(NF-3); exit }')
    [ -n "$abi" ] || problems+=("no FreeBSD ABI note")
    needed=$(readelf -dW "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
    for lib in $needed; do
        [[ $base_libs == *" $lib "* ]] || problems+=("needs $lib, not in the base system")
    done
    if [ "${#problems[@]}" -gt 0 ]; then
        echo "  FAIL: $p: ${problems[*]}" >&2
        status=1
    else
        version=$((16#$abi))
        echo "    ok: $p: $(wc -c <"$f") bytes, FreeBSD ELF (ABI note $version), needs: ${needed% }"
    fi
done
[ "$status" -eq 0 ] || fail "the FreeBSD programs are not fit to ship"
echo "FreeBSD programs linked: ${programs[*]}"

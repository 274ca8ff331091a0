#!/bin/sh
# The one recipe for the Rust half of geom_multipath.ko: the Makefile (bsd.kmod.mk, on
# FreeBSD) and check-object.sh / freebsd-build.sh (on Linux) all run this script, so what CI
# checks is what a FreeBSD build links.
#
#   1. cargo builds the glue crate (feature `kernel`) and the core as a static library for
#      the kernel: target x86_64-unknown-none (aarch64-unknown-none-softfloat on arm64), core
#      and alloc rebuilt from source (-Zbuild-std, stable Rust with RUSTC_BOOTSTRAP=1) with
#      the kernel's code model, static relocations, frame pointers, no unwind tables, fat
#      LTO, panic=abort, no debug info;
#   2. the linker pre-links the archive into one relocatable object, naming the emulation
#      as kmod.mk does (`-m elf_x86_64_fbsd` / `-m aarch64elf`: ld.lld 14, FreeBSD 13's base
#      linker, refuses `-r` of an archive alone without one), rooted at every gmp_rs_* entry
#      point of kpi.h (`-u`; an archive pulls nothing in unless rooted) and with
#      --gc-sections dropping what they do not reach;
#   3. objcopy removes LLVM's bitcode sections (they break nm, and with it kmod.mk's symbol
#      localisation) and .eh_frame (the kernel never unwinds).
#
# Usage: rust-object.sh ARCH OUTPUT.o       ARCH is FreeBSD's MACHINE_CPUARCH: amd64, aarch64
# Environment: CARGO (cargo), LD (ld.lld), OBJCOPY (objcopy), RUST_DIR (cargo's target
# directory; default: a `rust` directory beside OUTPUT.o), JOBS (cargo -j; default: cargo's),
# QUIET (non-empty: cargo --quiet).
set -eu

[ $# -eq 2 ] || { echo "usage: rust-object.sh amd64|aarch64 OUTPUT.o" >&2; exit 2; }
arch=$1
mkdir -p "$(dirname "$2")"
out=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
here=$(cd "$(dirname "$0")" && pwd)

case $arch in
amd64)
    target=x86_64-unknown-none
    emulation=elf_x86_64_fbsd
    rustflags="-Ccode-model=kernel -Crelocation-model=static -Crelro-level=off -Cforce-frame-pointers=yes -Cforce-unwind-tables=no"
    ;;
aarch64)
    target=aarch64-unknown-none-softfloat
    emulation=aarch64elf
    # Shared objects on arm64 (kmod.mk links them -Bshareable): position-independent code.
    rustflags="-Crelocation-model=pic -Crelro-level=off -Cforce-frame-pointers=yes -Cforce-unwind-tables=no"
    ;;
*)
    echo "rust-object.sh: no Rust kernel target for $arch" >&2
    exit 2
    ;;
esac

cargo=${CARGO:-cargo}
ld=${LD:-ld.lld}
objcopy=${OBJCOPY:-objcopy}
rust_dir=${RUST_DIR:-$(dirname "$out")/rust}
mkdir -p "$rust_dir"
rust_dir=$(cd "$rust_dir" && pwd)

# The roots of the pre-link: the entry points the shim calls, read from kpi.h itself.
roots=
for e in $(grep -o 'gmp_rs_[a-z0-9_]*(' "$here/kpi.h" | tr -d '(' | sort -u); do
    roots="$roots -u $e"
done
[ -n "$roots" ] || { echo "rust-object.sh: no gmp_rs_ entry points in kpi.h" >&2; exit 1; }

(
    cd "$here"
    RUSTC_BOOTSTRAP=1 \
    CARGO_PROFILE_RELEASE_LTO=fat \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
    CARGO_PROFILE_RELEASE_PANIC=abort \
    CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_OPT_LEVEL=2 \
    RUSTFLAGS="$rustflags" \
    "$cargo" rustc -p geom_multipath_kmod --release --features kernel \
        --target "$target" -Zbuild-std=core,alloc --crate-type staticlib \
        --target-dir "$rust_dir" ${JOBS:+-j"$JOBS"} ${QUIET:+--quiet}
)
lib=$rust_dir/$target/release/libgeom_multipath_kmod.a
[ -f "$lib" ] || { echo "rust-object.sh: cargo did not produce $lib" >&2; exit 1; }

# shellcheck disable=SC2086
"$ld" -m "$emulation" -r --gc-sections $roots -o "$out.tmp" "$lib"
"$objcopy" --remove-section=.llvmbc --remove-section=.llvmcmd --remove-section=.eh_frame \
    "$out.tmp" "$out"
rm -f "$out.tmp"

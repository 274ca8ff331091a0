#!/usr/bin/env bash
# geom_multipath.ko built for FreeBSD on Linux, against FreeBSD's own headers, the way
# bsd.kmod.mk builds it, then checked (check-ko.py). This is CI's stand-in for
# `make -C geom_multipath/kmod` on a FreeBSD box; what only that box can confirm is listed
# in README.md.
#
#  1. The C files of the Makefile's SRCS compile with the flags kern.mk and kmod.mk give a
#     module (-D_KERNEL -DKLD_MODULE -nostdinc, gnu99, the kernel code model, no red zone,
#     no SSE/MMX/FPU, frame pointers, -ffreestanding -fwrapv -fstack-protector -fno-common)
#     and kern.mk's warnings as errors (-Werror -Wall -Wmissing-prototypes
#     -Wstrict-prototypes -Wredundant-decls -Wnested-externs -Wpointer-arith -Wcast-qual
#     -Wundef -Wno-pointer-sign), for amd64 and arm64, in each kernel configuration a module
#     can meet: plain, KDTRACE_HOOKS, INVARIANTS+INVARIANT_SUPPORT+WITNESS. The headers are
#     FreeBSD 15's from the pinned ziglang wheel (tests/freebsd-sdk.sh), passed with
#     -isystem so their own warnings do not count against the module; __FreeBSD_version is
#     defined here, as a FreeBSD cc would.
#  2. For each architecture, the module links as kmod.mk links it, with ld.lld (the
#     Makefile's linker family; Debian's lld is lld 14, FreeBSD 13's base linker): the Rust
#     object from rust-object.sh (the Makefile's own recipe), the C objects of the
#     configuration the Makefile builds (KDTRACE_HOOKS: an untied build), `ld -m EMULATION
#     -r`, every defined symbol made local (kmod.mk's kmod_syms.awk with EXPORT_SYMS=NO:
#     nm, then objcopy --localize-symbol), --strip-debug; arm64 then gets kmod.mk's final
#     shareable link (`-Bshareable -znotext -znorelro`), amd64 keeps the relocatable object
#     as its kernel linker wants.
#  3. check-ko.py checks each .ko (OS/ABI, module metadata, sysctls, undefined symbols,
#     relocations, no FPU/SIMD, no TLS, the SDT probes).
#
# A missing tool fails the script when CI is set (CI installs every one: .ci/run) and
# otherwise prints SKIPPED with the reason.
#
# Usage: cross-build.sh            everything above; the .ko files land in
#                                  $CARGO_TARGET_DIR/kmod-freebsd/<arch>/geom_multipath.ko
#        cross-build.sh --compile  step 1 only
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${CARGO_TARGET_DIR:-$root/target}/kmod-freebsd
# A FreeBSD 15 kernel, which the headers are. Not exactly 1500000: sys/module.h makes the
# module's kernel dependency range [__FreeBSD_version, roundup(__FreeBSD_version, 100000) - 1],
# empty for a round number (check-ko.py checks the range).
freebsd_version=1500001
compile_only=
[ "${1:-}" = "--compile" ] && compile_only=yes

gate=cross-build.sh
# shellcheck source=../../tests/gate-lib.sh
. "$root/tests/gate-lib.sh"

for tool in clang ld.lld llvm-nm llvm-objcopy python3; do
    command -v "$tool" >/dev/null 2>&1 || missing "$tool is not installed"
done
set +e
inc_amd64=$("$root/tests/freebsd-sdk.sh" include amd64)
sdk_status=$?
set -e
[ "$sdk_status" -ne 3 ] || missing "FreeBSD headers: the ziglang wheel is not installed (tests/freebsd-sdk.sh install)"
[ "$sdk_status" -eq 0 ] || fail "tests/freebsd-sdk.sh include amd64"
inc_aarch64=$("$root/tests/freebsd-sdk.sh" include aarch64)

# The Makefile's C sources: what bsd.kmod.mk compiles.
read -r -a srcs <<<"$(sed -n 's/^SRCS=[[:space:]]*//p' "$here/Makefile" | tr -s '\t ' ' ')"
csrcs=()
for s in "${srcs[@]}"; do
    case $s in *.c) csrcs+=("$s") ;; esac
done
[ "${#csrcs[@]}" -gt 0 ] || fail "no .c files in the Makefile's SRCS"
# The configuration an untied build gets from the Makefile, which this script links.
grep -q '^CFLAGS+=[[:space:]]*-DKDTRACE_HOOKS' "$here/Makefile" ||
    fail "the Makefile no longer defines KDTRACE_HOOKS for an untied build; update this script"

common=(
    -O2 -pipe -fno-strict-aliasing -std=gnu99
    -D_KERNEL -DKLD_MODULE -D__FreeBSD_version=$freebsd_version -nostdinc -I"$here"
    -fno-common -fno-omit-frame-pointer -mno-omit-leaf-frame-pointer
    -ffreestanding -fwrapv -fstack-protector -fno-asynchronous-unwind-tables
    -Werror -Wall -Wmissing-prototypes -Wstrict-prototypes -Wredundant-decls
    -Wnested-externs -Wpointer-arith -Wcast-qual -Wundef -Wno-pointer-sign
    -Wmissing-include-dirs -fdiagnostics-show-option
)
flags_amd64=(--target=x86_64-unknown-freebsd14.0 -isystem "$inc_amd64"
    -mcmodel=kernel -mno-red-zone -mno-mmx -mno-sse -msoft-float -mno-aes -mno-avx)
flags_aarch64=(--target=aarch64-unknown-freebsd14.0 -isystem "$inc_aarch64"
    -mgeneral-regs-only -ffixed-x18 -fPIC)
variants=(plain kdtrace invariants)
variant_flags() {
    case $1 in
    plain) ;;
    kdtrace) echo -DKDTRACE_HOOKS ;;
    invariants) echo -DINVARIANTS -DINVARIANT_SUPPORT -DWITNESS ;;
    esac
}

echo "==> the C files (${csrcs[*]}) against FreeBSD's headers (__FreeBSD_version $freebsd_version), kern.mk's warnings as errors"
for arch in amd64 aarch64; do
    if [ "$arch" = amd64 ]; then
        archflags=("${flags_amd64[@]}")
    else
        archflags=("${flags_aarch64[@]}")
    fi
    for variant in "${variants[@]}"; do
        dir=$out/$arch/$variant
        mkdir -p "$dir"
        read -r -a vflags <<<"$(variant_flags "$variant")"
        for src in "${csrcs[@]}"; do
            clang "${archflags[@]}" "${common[@]}" "${vflags[@]}" \
                -c "$here/$src" -o "$dir/${src%.c}.o" ||
                fail "$src does not compile for $arch ($variant: ${vflags[*]:-no options})"
        done
        echo "    ok: $arch $variant${vflags[*]:+ (${vflags[*]})}"
    done
done
[ -z "$compile_only" ] || exit 0

# kmod.mk's symbol localisation (kmod_syms.awk, EXPORT_SYMS=NO): every symbol nm lists with
# a value and a type other than A or U becomes local (commons are stripped: -fno-common
# leaves none). nm must read the object, or nothing is localised: check-ko.py checks that
# no global definition is left.
localise() {
    local obj=$1 args=()
    local syms
    syms=$(llvm-nm "$obj" | awk 'NF == 3 && $2 !~ /^[AUaw]$/ { print $2, $3 }') ||
        fail "llvm-nm cannot read $obj"
    while read -r type name; do
        [ -n "$name" ] || continue
        case $type in
        C) args+=("--strip-symbol=$name") ;;
        [A-Z]) args+=("--localize-symbol=$name") ;;
        esac
    done <<<"$syms"
    [ "${#args[@]}" -eq 0 ] || llvm-objcopy "${args[@]}" "$obj"
}

for arch in amd64 aarch64; do
    case $arch in
    amd64) emulation=elf_x86_64_fbsd ;;
    aarch64) emulation=aarch64elf ;;
    esac
    dir=$out/$arch
    echo "==> $arch: the Rust object (rust-object.sh, the Makefile's recipe)"
    # (The cargo directory check-object.sh uses too: the same build is not made twice.)
    LD=ld.lld OBJCOPY=llvm-objcopy RUST_DIR=${CARGO_TARGET_DIR:-$root/target}/kmod/cargo QUIET=1 \
        "$here/rust-object.sh" "$arch" "$dir/geom_multipath_rs.o"
    # The configuration the Makefile builds (KDTRACE_HOOKS), compiled again without
    # -fstack-protector: this clang reaches __stack_chk_guard through the GOT
    # (R_X86_64_REX_GOTPCRELX), which the amd64 kernel linker does not apply (KMOD.md);
    # what FreeBSD's cc emits there only a FreeBSD box shows (README.md).
    if [ "$arch" = amd64 ]; then
        archflags=("${flags_amd64[@]}")
    else
        archflags=("${flags_aarch64[@]}")
    fi
    mkdir -p "$dir/link"
    objs=()
    for src in "${csrcs[@]}"; do
        clang "${archflags[@]}" "${common[@]}" -DKDTRACE_HOOKS -fno-stack-protector \
            -c "$here/$src" -o "$dir/link/${src%.c}.o"
        objs+=("$dir/link/${src%.c}.o")
    done
    objs+=("$dir/geom_multipath_rs.o")
    ko=$dir/geom_multipath.ko
    if [ "$arch" = amd64 ]; then
        echo "==> $arch: ld.lld -m $emulation -r, symbols localised, --strip-debug"
    else
        echo "==> $arch: ld.lld -m $emulation -r, symbols localised, -Bshareable, --strip-debug"
    fi
    rm -f "$ko" "$dir/geom_multipath.kld"
    if [ "$arch" = amd64 ]; then
        # amd64 kernel modules are relocatable objects (kmod.mk: __KLD_SHARED=no).
        ld.lld -m "$emulation" -warn-common --build-id=sha1 -r -o "$ko" "${objs[@]}"
        localise "$ko"
        llvm-objcopy --strip-debug "$ko"
    else
        # Every other architecture: a relocatable .kld, then a shareable object.
        kld=$dir/geom_multipath.kld
        ld.lld -m "$emulation" -warn-common --build-id=sha1 -r -o "$kld" "${objs[@]}"
        localise "$kld"
        ld.lld -m "$emulation" -Bshareable -znotext -znorelro -o "$ko" "$kld"
        llvm-objcopy --strip-debug "$ko"
    fi
    python3 "$here/check-ko.py" "$arch" "$ko" || fail "$arch: $ko is not fit for the kernel"
done

#!/bin/sh
# The kernel-object gate (KMOD.md, "Gates that run on Linux", item 4).
#
# Builds the Rust half of geom_multipath.ko with rust-object.sh -- the recipe the Makefile
# runs: target x86_64-unknown-none, core and alloc rebuilt from source with the kernel's
# code model, fat LTO, panic=abort, pre-linked with `ld.lld -m elf_x86_64_fbsd -r
# --gc-sections -u <each gmp_rs_ entry>`, LLVM bitcode sections and .eh_frame stripped --
# and checks with readelf/objdump that the amd64 kernel linker can take it:
#   * relocations only R_X86_64_64, R_X86_64_PC32, R_X86_64_PLT32, R_X86_64_32S;
#   * no SSE/AVX/x87 register in the code, no TLS;
#   * undefined symbols only the kpi_* functions of kpi.h and memcpy/memset/memmove/
#     memcmp/bcmp, and every gmp_rs_* entry point of kpi.h defined;
#   * no stack frame of 2 KiB or more (kernel stacks are 16 KiB);
#   * the geom methods (g_multipath_start, ...) are not global symbols: in every C object of
#     the shim that cross-build.sh compiled against FreeBSD's headers (target/kmod-freebsd),
#     no g_multipath_* function is GLOBAL (only the class and the method table are).
# (cross-build.sh links the whole module and checks that too.)
# A missing tool fails when CI is set (.ci/run installs them all); otherwise it prints
# "SKIPPED: <why>" and succeeds.
#
# Usage: check-object.sh [OUTPUT.o]     build, pre-link and check
#                                      (default: target/kmod/geom_multipath_rs.o)
#        check-object.sh --check FILE.o  only check an existing object
# Needs: rustup (component rust-src), ld.lld (Debian: lld), llvm-objcopy, readelf, objdump.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=x86_64-unknown-none
tdir=${CARGO_TARGET_DIR:-$root/target}/kmod
check_only=
if [ "${1:-}" = "--check" ]; then
    check_only=yes
    shift
fi
out=${1:-$tdir/geom_multipath_rs.o}
jobs=${JOBS:-2}
max_frame=2048

gate=check-object.sh
# shellcheck source=../../tests/gate-lib.sh
. "$root/tests/gate-lib.sh"

# ----- prerequisites -----------------------------------------------------------------------
for tool in readelf objdump; do
    command -v "$tool" >/dev/null 2>&1 || missing "$tool (binutils) is not installed"
done
# The entry points the shim calls and the functions it provides, from kpi.h itself.
entries=$(grep -o 'gmp_rs_[a-z0-9_]*(' "$here/kpi.h" | tr -d '(' | sort -u)
kpis=$(grep -o 'kpi_[a-z0-9_]*(' "$here/kpi.h" | tr -d '(' | sort -u)
[ -n "$entries" ] && [ -n "$kpis" ] || fail "no gmp_rs_/kpi_ functions found in kpi.h"

if [ -z "$check_only" ]; then
command -v cargo >/dev/null 2>&1 || missing "cargo is not installed"
command -v rustup >/dev/null 2>&1 || missing "rustup is not installed (needed for rust-src)"
for tool in ld.lld llvm-objcopy; do
    command -v "$tool" >/dev/null 2>&1 || missing "$tool (Debian: lld, llvm) is not installed"
done
if ! rustup component list --installed 2>/dev/null | grep -q '^rust-src'; then
    rustup component add rust-src >/dev/null 2>&1 || missing "rustup component add rust-src failed"
fi

echo "==> rust-object.sh amd64 (target $target, -Zbuild-std=core,alloc, fat LTO, ld.lld -m elf_x86_64_fbsd -r, -j$jobs)"
LD=ld.lld OBJCOPY=llvm-objcopy RUST_DIR=$tdir/cargo JOBS=$jobs QUIET=1 \
    "$here/rust-object.sh" amd64 "$out"
fi
[ -f "$out" ] || fail "no object $out"

# ----- checks --------------------------------------------------------------------------------
status=0
bad() {
    echo "  FAIL: $*" >&2
    status=1
}

readelf -hW "$out" | grep -q 'Type:[[:space:]]*REL' || bad "not a relocatable object"

relocs=$(readelf -rW "$out" | awk '$3 ~ /^R_X86_64_/ { print $3 }' | sort | uniq -c)
echo "==> relocation types:"
echo "$relocs" | sed 's/^/      /'
others=$(echo "$relocs" | awk '{ print $2 }' | grep -v -x -e R_X86_64_64 -e R_X86_64_PC32 -e R_X86_64_PLT32 -e R_X86_64_32S || true)
[ -z "$others" ] || bad "relocations the kernel linker rejects: $(echo $others)"

disasm=$(objdump -d --no-show-raw-insn "$out")
fpu=$(echo "$disasm" | grep -E '%(xmm|ymm|zmm|st)\b|%st\(' | head -5 || true)
[ -z "$fpu" ] || bad "SSE/AVX/x87 registers in the code:
$fpu"
echo "==> SSE/AVX/x87 register uses: $(echo "$disasm" | grep -cE '%(xmm|ymm|zmm|st)\b|%st\(' || true)"

tls=$(readelf -SW "$out" | grep -E '\.(tdata|tbss)' || true)
tlssyms=$(readelf -sW "$out" | awk '$4 == "TLS"' || true)
[ -z "$tls$tlssyms" ] || bad "thread-local storage: $tls $tlssyms"
echo "==> TLS sections/symbols: $(printf '%s%s' "$tls" "$tlssyms" | grep -c . || true)"

undef=$(readelf -sW "$out" | awk '$7 == "UND" && $8 != "" { print $8 }' | sort -u)
echo "==> undefined symbols ($(echo "$undef" | grep -c . || true)):"
echo "$undef" | tr '\n' ' ' | fold -s -w 96 | sed 's/^/      /'
echo
for s in $undef; do
    case " memcpy memset memmove memcmp bcmp " in *" $s "*) continue ;; esac
    echo "$kpis" | grep -qx "$s" || bad "undefined symbol $s is neither a kpi.h function nor mem*/bcmp"
done

defined=$(readelf -sW "$out" | awk '$7 != "UND" && $5 == "GLOBAL" { print $8 }' | sort -u)
for e in $entries; do
    echo "$defined" | grep -qx "$e" || bad "entry point $e is not defined"
done
echo "==> gmp_rs_ entry points defined: $(echo "$entries" | wc -l)"

frames=$(objdump -d -C --no-show-raw-insn "$out" | awk '
    /^[0-9a-f]+ <.*>:$/ { fn = substr($0, index($0, "<") + 1); sub(/>:$/, "", fn) }
    /sub[q]? +\$0x[0-9a-f]+,%rsp/ {
        n = $0; sub(/.*\$0x/, "", n); sub(/,.*/, "", n)
        v = 0
        for (i = 1; i <= length(n); i++) v = v * 16 + index("0123456789abcdef", substr(n, i, 1)) - 1
        if (v > max[fn]) max[fn] = v
    }
    END { for (f in max) print max[f], f }' | sort -rn)
echo "==> largest stack frames (bytes, function):"
echo "$frames" | head -5 | cut -c1-110 | sed 's/^/      /'
biggest=$(echo "$frames" | head -1 | awk '{ print ($1 == "" ? 0 : $1) }')
[ "${biggest:-0}" -lt "$max_frame" ] || bad "a stack frame of $biggest bytes (limit $max_frame)"

# The C side: a geom method that is a global symbol could be bound by any other module.
shim_objs=$(find "${CARGO_TARGET_DIR:-$root/target}/kmod-freebsd" -name g_multipath_shim.o 2>/dev/null || true)
if [ -n "$shim_objs" ]; then
    for obj in $shim_objs; do
        methods=$(readelf -sW "$obj" | awk '$4 == "FUNC" && $5 == "GLOBAL" && $7 != "UND" && $8 ~ /^g_multipath_/ { print $8 }')
        [ -z "$methods" ] || bad "geom methods are global symbols in $obj: $(echo $methods)"
    done
    echo "==> geom methods static in $(echo "$shim_objs" | wc -l) shim object(s)"
elif [ -n "${CI:-}" ]; then
    bad "no shim object to check the geom methods in (CI runs cross-build.sh first: tests/run.sh)"
else
    echo "==> geom methods: no shim object (cross-build.sh --compile makes them); tests/shim.rs checks the source"
fi

size=$(wc -c <"$out")
echo "==> $out: $size bytes"
[ "$status" -eq 0 ] || fail "the object is not fit for the kernel"
echo "kernel object OK"

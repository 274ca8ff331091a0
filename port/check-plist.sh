#!/usr/bin/env bash
# Checks the FreeBSD port's pkg-plist on Linux, for every combination of its options.
#
# For each combination it stages an install into a temporary directory the way the port
# would: it runs the recipes of the Makefile's `do-install` and `do-install-<OPT>-on|off`
# targets, with ${INSTALL_*}, ${MKDIR} and the port's variables mapped onto this
# checkout, the rc.d script USE_RC_SUBR installs, and gzip'd manual pages (as the ports
# framework compresses them). Then it compares the staged files with pkg-plist, whose
# %%<OPT>%% / %%PORTDOCS%% lines count only when the option is on, and fails on any
# difference.
#
# Build products are the FreeBSD ones port/link-freebsd.sh and
# geom_multipath/kmod/cross-build.sh linked: the programs from
# $CARGO_TARGET_DIR/x86_64-unknown-freebsd/release (the port's CARGO_OUT) and
# geom_multipath.ko from $CARGO_TARGET_DIR/kmod-freebsd/amd64, where the port's post-build
# step (make in geom_multipath/kmod) leaves it in the work source. Where they have not
# been linked, they are staged as empty stand-ins (this then checks names, not builds);
# under CI that is a failure. Sources that should be in the checkout (manual pages, docs,
# port files) must exist.
#
# It also checks that the port builds what it installs: every program a do-install
# recipe takes from ${CARGO_OUT} is a binary of a package the port's cargo arguments
# build (CARGO_BUILD_ARGS, plus HOST_VARS for the HOST option), PROGRAMS/HOST_PROGRAMS
# name the same programs, and the module it installs is the one its post-build step
# makes (the kmod Makefile's KMOD, in that directory).
#
# Usage: port/check-plist.sh
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
port=$root/port/sysutils/gmultipath-rs
makefile=$port/Makefile
plist=$port/pkg-plist
PREFIX=/usr/local
KMODDIR=/boot/modules

fail() {
    echo "check-plist: $*" >&2
    exit 1
}

[ -f "$makefile" ] || fail "no $makefile"
[ -f "$plist" ] || fail "no $plist"

# A make variable's value as written in the Makefile (first assignment, tabs collapsed).
make_var() {
    sed -n "s/^$1[?:+]*=[[:space:]]*//p" "$makefile" | head -n 1 | tr -s '\t ' ' '
}

PORTNAME=$(make_var PORTNAME)
[ -n "$PORTNAME" ] || fail "no PORTNAME in the Makefile"
DOCSDIR=$PREFIX/share/doc/$PORTNAME
read -r -a options <<<"$(make_var OPTIONS_DEFINE)"
[ "${#options[@]}" -gt 0 ] || fail "no OPTIONS_DEFINE in the Makefile"

target_dir=${CARGO_TARGET_DIR:-$root/target}
bindir=$target_dir/x86_64-unknown-freebsd/release
linked_ko=$target_dir/kmod-freebsd/amd64/geom_multipath.ko
standins=()
linked=()

# The recipe lines of target $1 (tab-indented lines after "$1:"), or nothing.
recipe() {
    awk -v t="$1:" '
        index($0, t) == 1 { on = 1; next }
        on && /^\t/ { sub(/^\t[@-]*/, ""); print; next }
        on { exit }
    ' "$makefile"
}

# install(1) with the port's semantics: every source into the destination directory.
# Missing build products become empty stand-ins; other missing sources are errors.
inst() {
    local mode=$1
    shift
    local dest=${*: -1}
    local srcs=("${@:1:$#-1}")
    [ -d "$dest" ] || fail "install into $dest, which the stage does not have"
    for s in "${srcs[@]}"; do
        if [[ $s == "$bindir"/* && -f $s ]]; then
            install -m "$mode" "$s" "$dest/"
            linked+=("$(basename "$s")")
        elif [[ $s == *.ko && ! -e $s && -f $linked_ko && $(basename "$s") == "$(basename "$linked_ko")" ]]; then
            install -m "$mode" "$linked_ko" "$dest/"
            linked+=("$(basename "$s")")
        elif [ -e "$s" ]; then
            install -m "$mode" "$s" "$dest/"
        elif [[ $s == "$bindir"/* || $s == *.ko ]]; then
            install -m "$mode" /dev/null "$dest/$(basename "$s")"
            standins+=("$(basename "$s")")
        else
            fail "a recipe installs $s, which does not exist"
        fi
    done
}

# Runs one recipe line with the port's variables mapped onto this checkout.
run_line() {
    local line=$1 stage=$2
    line=${line//'${INSTALL_PROGRAM}'/inst 555}
    line=${line//'${INSTALL_SCRIPT}'/inst 555}
    line=${line//'${INSTALL_KLD}'/inst 555}
    line=${line//'${INSTALL_MAN}'/inst 444}
    line=${line//'${INSTALL_DATA}'/inst 444}
    line=${line//'${MKDIR}'/mkdir -p}
    line=${line//'${STAGEDIR}'/$stage}
    line=${line//'${PREFIX}'/$PREFIX}
    line=${line//'${WRKSRC}'/$root}
    line=${line//'${FILESDIR}'/$port/files}
    line=${line//'${DOCSDIR}'/$DOCSDIR}
    line=${line//'${KMODDIR}'/$KMODDIR}
    line=${line//'${CARGO_OUT}'/$bindir}
    case $line in
    *'${'* | *'$('* | *'`'*) fail "cannot stage this recipe line: $1" ;;
    esac
    case $line in
    inst\ * | mkdir\ -p\ *) ;;
    *) fail "not an install step: $1" ;;
    esac
    eval "$line"
}

# The rc.d scripts USE_RC_SUBR installs, for the options in $1 ("" when always).
rc_scripts() {
    local opt=$1
    if [ -z "$opt" ]; then
        make_var USE_RC_SUBR
    else
        sed -n "s/^${opt}_USE=[[:space:]]*.*RC_SUBR=\([^[:space:]]*\).*/\1/p" "$makefile" | tr ',' ' '
    fi
}

# Stages an install with the options in "$@" on; prints the staged files, one per line,
# relative to PREFIX (or absolute when outside it).
stage_install() {
    local stage=$1
    shift
    local on=" $* "
    local dir
    # The part of the mtree skeleton the recipes rely on.
    for dir in sbin etc/rc.d share/doc share/man/man4 share/man/man8; do
        mkdir -p "$stage$PREFIX/$dir"
    done
    local targets=(do-install) scripts
    scripts=$(rc_scripts "")
    for opt in "${options[@]}"; do
        if [[ $on == *" $opt "* ]]; then
            targets+=("do-install-$opt-on")
            scripts+=" $(rc_scripts "$opt")"
        else
            targets+=("do-install-$opt-off")
        fi
    done
    local t line
    for t in "${targets[@]}"; do
        while IFS= read -r line; do
            [ -n "$line" ] && run_line "$line" "$stage"
        done < <(recipe "$t")
    done
    local s
    for s in $scripts; do
        [ -f "$port/files/$s.in" ] || fail "USE_RC_SUBR=$s but no files/$s.in"
        sh -n "$port/files/$s.in" || fail "files/$s.in is not valid sh"
        sed "s|%%PREFIX%%|$PREFIX|g" "$port/files/$s.in" >"$stage$PREFIX/etc/rc.d/$s"
        chmod 555 "$stage$PREFIX/etc/rc.d/$s"
    done
    find "$stage$PREFIX/share/man" -type f -name '*.[1-9]' -exec gzip -9n {} +
    (cd "$stage" && find . -type f -o -type l) | sed 's|^\.||' | while IFS= read -r f; do
        case $f in
        "$PREFIX"/*) echo "${f#"$PREFIX"/}" ;;
        *) echo "$f" ;;
        esac
    done | LC_ALL=C sort
}

# pkg-plist's files with the options in "$@" on.
expected() {
    local on=" $* " line opt keep
    while IFS= read -r line || [ -n "$line" ]; do
        [ -z "$line" ] && continue
        keep=1
        while [[ $line =~ ^%%([A-Z0-9_]+)%%(.*)$ ]]; do
            opt=${BASH_REMATCH[1]}
            [ "$opt" = PORTDOCS ] && opt=DOCS
            case " ${options[*]} " in
            *" $opt "*) ;;
            *) break ;;
            esac
            [[ $on == *" $opt "* ]] || keep=0
            line=${BASH_REMATCH[2]}
        done
        [ "$keep" = 1 ] || continue
        case $line in
        '@sample '*) line=${line#@sample } ;;
        @*) continue ;;
        esac
        line=${line//%%DOCSDIR%%/${DOCSDIR#"$PREFIX"/}}
        line=${line//%%KMODDIR%%/${KMODDIR#/}}
        case $line in
        *%%*) fail "pkg-plist: unknown substitution in: $line" ;;
        esac
        echo "$line"
    done <"$plist"
    local s
    s=$(rc_scripts "")
    for opt in "${options[@]}"; do
        [[ $on == *" $opt "* ]] && s+=" $(rc_scripts "$opt")"
    done
    for opt in $s; do
        echo "etc/rc.d/$opt"
    done
}

# The port builds what it installs.
check_build_steps() {
    local packages host_packages
    packages=$(make_var CARGO_BUILD_ARGS | grep -oE -- '--package[= ][A-Za-z0-9_-]+' | sed 's/--package[= ]//')
    host_packages=$(make_var HOST_VARS | grep -oE -- '--package[= ][A-Za-z0-9_-]+' | sed 's/--package[= ]//')
    [ -n "$packages" ] && [ -n "$host_packages" ] || fail "no --package in CARGO_BUILD_ARGS / HOST_VARS"
    # package name -> its binaries, from cargo itself.
    local bins
    bins=$(cd "$root" && cargo metadata --no-deps --format-version 1 --offline 2>/dev/null |
        python3 -c 'import json, sys
for p in json.load(sys.stdin)["packages"]:
    for t in p["targets"]:
        if "bin" in t["kind"]:
            print(p["name"], t["name"])') || fail "cargo metadata failed"
    bins_of() {
        local p
        for p in "$@"; do
            awk -v p="$p" '$1 == p { print $2 }' <<<"$bins"
        done
    }
    local base_bins all_bins
    # shellcheck disable=SC2086
    base_bins=" $(bins_of $packages | tr '\n' ' ') "
    # shellcheck disable=SC2086
    all_bins=" $(bins_of $packages $host_packages | tr '\n' ' ') "
    installed() {
        recipe "$1" | grep -oE '\$\{CARGO_OUT\}/[A-Za-z0-9_-]+' | sed 's|.*/||' | sort | tr '\n' ' '
    }
    local p
    for p in $(installed do-install); do
        [[ $base_bins == *" $p "* ]] ||
            fail "do-install installs $p, which CARGO_BUILD_ARGS ($(echo $packages)) does not build"
    done
    for p in $(installed do-install-HOST-on); do
        [[ $all_bins == *" $p "* ]] ||
            fail "do-install-HOST-on installs $p, which CARGO_BUILD_ARGS and HOST_VARS do not build"
    done
    [ "$(installed do-install)" = "$(make_var PROGRAMS | tr ' ' '\n' | sort | tr '\n' ' ')" ] ||
        fail "PROGRAMS ($(make_var PROGRAMS)) is not what do-install installs ($(installed do-install))"
    [ "$(installed do-install-HOST-on)" = "$(make_var HOST_PROGRAMS | tr ' ' '\n' | sort | tr '\n' ' ')" ] ||
        fail "HOST_PROGRAMS ($(make_var HOST_PROGRAMS)) is not what do-install-HOST-on installs"
    local kmod
    kmod=$(sed -n 's/^KMOD=[[:space:]]*//p' "$root/geom_multipath/kmod/Makefile")
    recipe post-build-KMOD-on | grep -qF 'cd ${WRKSRC}/geom_multipath/kmod ' ||
        fail "post-build-KMOD-on does not build in geom_multipath/kmod"
    recipe do-install-KMOD-on | grep -qF "\${WRKSRC}/geom_multipath/kmod/$kmod.ko" ||
        fail "do-install-KMOD-on does not install the $kmod.ko that post-build-KMOD-on makes"
    echo "ok: the port builds what it installs: $(installed do-install)$(installed do-install-HOST-on)$kmod.ko"
}
check_build_steps

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

status=0
combos=$((1 << ${#options[@]}))
for ((mask = 0; mask < combos; mask++)); do
    on=()
    for i in "${!options[@]}"; do
        if ((mask & (1 << i))); then
            on+=("${options[$i]}")
        fi
    done
    label=${on[*]:-none}
    stage=$work/stage.$mask
    mkdir -p "$stage"
    stage_install "$stage" "${on[@]}" >"$work/actual.$mask"
    expected "${on[@]}" | LC_ALL=C sort >"$work/expected.$mask"
    if diff -u --label "pkg-plist (options: $label)" --label "staged (options: $label)" \
        "$work/expected.$mask" "$work/actual.$mask"; then
        echo "ok: options ${label// /,}: $(wc -l <"$work/actual.$mask") files"
    else
        status=1
    fi
done
if [ "${#linked[@]}" -gt 0 ]; then
    echo "staged from the FreeBSD link (port/link-freebsd.sh, cross-build.sh): $(printf '%s\n' "${linked[@]}" | sort -u | tr '\n' ' ')"
fi
if [ "${#standins[@]}" -gt 0 ]; then
    echo "note: staged as empty stand-ins (not linked here): $(printf '%s\n' "${standins[@]}" | sort -u | tr '\n' ' ')"
    if [ -n "${CI:-}" ]; then
        echo "FAIL: under CI every build product comes from the FreeBSD link steps" >&2
        exit 1
    fi
fi
[ "$status" -eq 0 ] || echo "FAIL: pkg-plist and the staged install differ" >&2
exit "$status"

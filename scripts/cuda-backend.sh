#!/usr/bin/env bash
# Builds llama.cpp's CUDA backend module, libggml-cuda.so, from the ggml source of the pinned
# llama-cpp-sys-2 crate, and installs it beside the uniskip binary: the default build
# (cpu-variants, GGML_BACKEND_DL) loads backend modules from the binary's directory, so after
# this `uniskip run --gpu-layers N` offloads to an NVIDIA GPU without rebuilding uniskip.
#
#   bash scripts/cuda-backend.sh                    # local GPU's architecture, into target/release/
#   bash scripts/cuda-backend.sh --arch 86-real;90-real --out /opt/uniskip
#   bash scripts/cuda-backend.sh --stage-src /tmp/ggml   # copy the ggml tree it needs (~4.4 MB)
#   bash scripts/cuda-backend.sh --help
#
# Needs the CUDA toolkit (nvcc), CMake and a C/C++ compiler; not Rust, when --src is given
# (e.g. a tree written by --stage-src on a machine that has the crate source).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CRATE=llama-cpp-sys-2
CRATE_VERSION=0.1.161

usage() {
  cat <<EOF
Usage: bash scripts/cuda-backend.sh [OPTIONS]

Builds ggml's CUDA backend module (libggml-cuda.so, GGML_BACKEND_DL) from the exact ggml
source of $CRATE $CRATE_VERSION and installs it beside the uniskip binary.

Options:
  --src DIR        ggml source tree [default: the $CRATE crate source, from cargo metadata,
                   else ~/.cargo/registry/src/*/$CRATE-$CRATE_VERSION]/llama.cpp/ggml
  --arch LIST      CMAKE_CUDA_ARCHITECTURES, e.g. 90-real or "86-real;90-real"
                   [default: the local GPU's compute capability, from nvidia-smi]
  --out DIR        where to install libggml-cuda.so [default: target/release]
  --build-dir DIR  CMake build directory [default: target/cuda-backend]
  --jobs N         parallel compile jobs [default: all cores]
  --stage-src DIR  write the part of the ggml tree the build needs to DIR and exit
                   (to build on a machine without Rust: then --src DIR there)
  -h, --help       this text
EOF
}

die() { echo "cuda-backend: error: $*" >&2; exit 2; }
say() { echo "cuda-backend: $*" >&2; }

SRC="" ARCH="" OUT_DIR="" BUILD_DIR="" JOBS="" STAGE=""
while (($#)); do
  case "$1" in
    --src) SRC="${2:?--src needs a directory}"; shift 2 ;;
    --arch) ARCH="${2:?--arch needs a list}"; shift 2 ;;
    --out) OUT_DIR="${2:?--out needs a directory}"; shift 2 ;;
    --build-dir) BUILD_DIR="${2:?--build-dir needs a directory}"; shift 2 ;;
    --jobs|-j) JOBS="${2:?--jobs needs a number}"; shift 2 ;;
    --stage-src) STAGE="${2:?--stage-src needs a directory}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
done
OUT_DIR="${OUT_DIR:-$ROOT/target/release}"
BUILD_DIR="${BUILD_DIR:-$ROOT/target/cuda-backend}"
JOBS="${JOBS:-$(nproc 2>/dev/null || echo 4)}"
[[ "$JOBS" =~ ^[1-9][0-9]*$ ]] || die "--jobs must be a positive number, not '$JOBS'"

# The ggml tree of the pinned crate: cargo metadata's manifest path of llama-cpp-sys-2, else
# the registry's source directory.
find_src() {
  local manifest="" dir
  if command -v cargo >/dev/null 2>&1 && command -v python3 >/dev/null 2>&1; then
    manifest="$(cd "$ROOT" && { cargo metadata --format-version 1 --offline 2>/dev/null ||
      cargo metadata --format-version 1 2>/dev/null; } | python3 -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == sys.argv[1] and p["version"] == sys.argv[2]:
        print(p["manifest_path"]); break' "$CRATE" "$CRATE_VERSION" 2>/dev/null)" || manifest=""
  fi
  if [ -n "$manifest" ] && [ -d "$(dirname "$manifest")/llama.cpp/ggml" ]; then
    echo "$(dirname "$manifest")/llama.cpp/ggml"
    return
  fi
  for dir in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"$CRATE-$CRATE_VERSION"/llama.cpp/ggml; do
    [ -d "$dir" ] && { echo "$dir"; return; }
  done
}
if [ -z "$SRC" ]; then
  SRC="$(find_src)"
  [ -n "$SRC" ] || die "the $CRATE $CRATE_VERSION source was not found: run 'cargo fetch --locked' (or build once), or pass --src DIR (a ggml tree)"
fi
[ -f "$SRC/CMakeLists.txt" ] && [ -d "$SRC/src/ggml-cuda" ] ||
  die "$SRC is not a ggml source tree (no CMakeLists.txt or src/ggml-cuda/)"
SRC="$(cd "$SRC" && pwd)"

# --stage-src: CMake files, the public headers, ggml-base's sources, the one CPU header
# ggml-quants.c includes, and the CUDA backend.
if [ -n "$STAGE" ]; then
  mkdir -p "$STAGE"
  STAGE="$(cd "$STAGE" && pwd)"
  [ "$STAGE" = "$SRC" ] && die "--stage-src must differ from the source tree"
  # Replaces an earlier staged tree; refuses any other non-empty directory.
  if [ -n "$(ls -A "$STAGE")" ]; then
    [ -f "$STAGE/CMakeLists.txt" ] && [ -d "$STAGE/src/ggml-cuda" ] ||
      die "$STAGE is not empty and holds no staged ggml tree: give an empty or new directory"
    rm -rf "${STAGE:?}"/*
  fi
  (
    cd "$SRC"
    {
      echo CMakeLists.txt
      find cmake include src/ggml-cuda -type f
      find src -maxdepth 1 -type f \( -name '*.c' -o -name '*.cpp' -o -name '*.h' -o -name '*.in' -o -name CMakeLists.txt \)
      echo src/ggml-cpu/ggml-cpu-impl.h
    } | LC_ALL=C sort | while read -r f; do
      mkdir -p "$STAGE/$(dirname "$f")"
      cp -p "$f" "$STAGE/$f"
    done
  )
  say "staged $(find "$STAGE" -type f | wc -l) files ($(du -sh "$STAGE" | cut -f1)) of $SRC in $STAGE"
  exit 0
fi

# Tools: nvcc (the CUDA toolkit, /usr/local/cuda first), cmake, a C++ compiler.
NVCC="${CUDACXX:-}"
[ -z "$NVCC" ] && [ -x /usr/local/cuda/bin/nvcc ] && NVCC=/usr/local/cuda/bin/nvcc
[ -z "$NVCC" ] && NVCC="$(command -v nvcc || true)"
[ -n "$NVCC" ] && [ -x "$NVCC" ] ||
  die "nvcc not found: install the CUDA toolkit (it provides nvcc; /usr/local/cuda/bin is searched) or put nvcc on PATH"
command -v cmake >/dev/null 2>&1 || die "cmake not found: install CMake 3.18 or newer (e.g. apt-get install cmake)"
command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 ||
  die "no C++ compiler found: install g++ (e.g. apt-get install build-essential)"
CUDA_HOME="${CUDA_HOME:-$(dirname "$(dirname "$(readlink -f "$NVCC")")")}"

# The architecture: the GPUs' compute capabilities (9.0 -> 90-real), unless given.
if [ -z "$ARCH" ]; then
  caps=""
  command -v nvidia-smi >/dev/null 2>&1 &&
    caps="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | tr -d ' .' | grep -E '^[0-9]+$' | sort -u | sed 's/$/-real/' | paste -sd';')" || true
  [ -n "$caps" ] || die "cannot read the GPU's compute capability with nvidia-smi: pass --arch (e.g. --arch 90-real for an H100/H200, 89-real for an RTX 40xx, 86-real for an RTX 30xx)"
  ARCH="$caps"
fi

GEN=(); command -v ninja >/dev/null 2>&1 && GEN=(-G Ninja)
mkdir -p "$BUILD_DIR/wrapper" "$OUT_DIR"
BUILD_DIR="$(cd "$BUILD_DIR" && pwd)"
# A wrapper project that adds the ggml tree as a subproject (as llama.cpp does), so only the
# ggml-cuda target and ggml-base, which it links, are configured and built; a trimmed tree
# (no tests/, examples/, ggml.pc.in) cannot be configured standalone.
cat > "$BUILD_DIR/wrapper/CMakeLists.txt" <<'EOF'
# Generated by scripts/cuda-backend.sh: builds ggml's CUDA backend module from UNISKIP_GGML_DIR.
cmake_minimum_required(VERSION 3.18)
project(uniskip_ggml_cuda C CXX)
set(CMAKE_RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin)
set(CMAKE_LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin)
add_subdirectory(${UNISKIP_GGML_DIR} ggml)
EOF

say "ggml source: $SRC"
say "nvcc: $NVCC ($("$NVCC" --version | grep -o 'release [0-9.]*' | head -1)); architectures: $ARCH; jobs: $JOBS"
# A cache from another source tree or architecture would be reused silently: start over.
if [ -f "$BUILD_DIR/build/CMakeCache.txt" ] &&
   ! grep -qxF "UNISKIP_GGML_DIR:PATH=$SRC" "$BUILD_DIR/build/CMakeCache.txt"; then
  rm -rf "$BUILD_DIR/build"
fi
cmake -S "$BUILD_DIR/wrapper" -B "$BUILD_DIR/build" "${GEN[@]}" \
  -DUNISKIP_GGML_DIR:PATH="$SRC" \
  -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DGGML_BACKEND_DL=ON \
  -DGGML_CPU=OFF -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$ARCH" \
  -DCMAKE_CUDA_COMPILER="$NVCC" -DCUDAToolkit_ROOT="$CUDA_HOME" \
  -DGGML_NATIVE=OFF -DGGML_CUDA_FA=ON -DGGML_CUDA_GRAPHS=ON -DGGML_CUDA_NCCL=OFF \
  -DGGML_OPENMP=OFF -DGGML_CCACHE=OFF -DGGML_RPC=OFF -DGGML_BLAS=OFF \
  -DGGML_BUILD_TESTS=OFF -DGGML_BUILD_EXAMPLES=OFF ||
  die "CMake could not configure the CUDA backend (see above; CMake 3.18+ and a CUDA toolkit with cuBLAS are needed)"
cmake --build "$BUILD_DIR/build" --target ggml-cuda -j "$JOBS" ||
  die "building ggml-cuda failed (see above)"

SO="$(find "$BUILD_DIR/build" -name 'libggml-cuda.so' \( -type f -o -type l \) | head -1)"
[ -n "$SO" ] || die "the build finished but libggml-cuda.so is not in $BUILD_DIR/build"
rm -f "$OUT_DIR/libggml-cuda.so"
if command -v strip >/dev/null 2>&1; then
  strip --strip-unneeded -o "$OUT_DIR/libggml-cuda.so" "$(readlink -f "$SO")"
else
  cp "$(readlink -f "$SO")" "$OUT_DIR/libggml-cuda.so"
fi
say "installed $OUT_DIR/libggml-cuda.so ($(du -h "$OUT_DIR/libggml-cuda.so" | cut -f1))"
[ -e "$OUT_DIR/libggml-base.so.0" ] || [ -e "$OUT_DIR/libggml-base.so" ] ||
  say "note: $OUT_DIR has no libggml-base.so: uniskip's libraries are not there (build it with cargo build --release, or pass --out the binary's directory)"
if ldd "$OUT_DIR/libggml-cuda.so" 2>/dev/null | grep -E 'libcudart|libcublas' | grep -q 'not found'; then
  say "note: the CUDA runtime libraries are not on the loader's path: export LD_LIBRARY_PATH=$CUDA_HOME/lib64:\$LD_LIBRARY_PATH before running uniskip"
fi
say "done: uniskip now puts every block on the GPU by default (--gpu-layers -1; 0 keeps the CPU)"

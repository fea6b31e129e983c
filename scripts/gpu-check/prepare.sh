#!/usr/bin/env bash
# Stages in .gpu/ (repository root, ignored by git) what scripts/gpu-check/check.sh needs on a
# GPU machine that has no Rust and no network: the release binary and the libraries it loads,
# the trimmed ggml source for the CUDA build, the gguf Python package, the Alice text and the
# SmolLM2 model in parts of at most 40 MiB. Run here, after `cargo build --release --locked`:
#
#   bash scripts/gpu-check/prepare.sh
#
# Layout: .gpu/bin (uniskip, libllama.so.0, libggml.so.0, libggml-base.so.0, the CPU and RPC
# backend modules, stripped), .gpu/syslib (libgomp.so.1, used there only when missing),
# .gpu/ggml, .gpu/whl, .gpu/corpus/alice29.txt.gz, .gpu/model/<model>.gguf.part* + .sha256.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
S="$ROOT/.gpu"
EXE="${UNISKIP_BIN:-$ROOT/target/release/uniskip}"
GGUF_PY="gguf==0.19.0"
[ -x "$EXE" ] || { echo "prepare: $EXE is missing: build it first (cargo build --release --locked, or just build)" >&2; exit 2; }
for tool in ldd strip split sha256sum gzip; do
  command -v "$tool" >/dev/null || { echo "prepare: $tool is missing (binutils / coreutils / gzip)" >&2; exit 2; }
done
mkdir -p "$S"
rm -rf "$S/bin" "$S/syslib" "$S/ggml" "$S/corpus" "$S/model"
mkdir -p "$S/bin" "$S/syslib" "$S/corpus" "$S/model" "$S/whl"

# ---------------------------------------------------------------- the binary and its libraries
# Each library under the name the binary asks for (its NEEDED entry), copied from where ldd
# finds it; system libraries stay, except libgomp (the CPU modules need it; a machine with
# the CUDA toolkit usually has it, else check.sh puts syslib/ on the path).
cp "$EXE" "$S/bin/uniskip"
libdir=""
while read -r name _ path _; do
  case "$name" in
    libllama.so*|libggml*.so*)
      cp -L "$path" "$S/bin/$name"
      libdir="$(dirname "$path")" ;;
    libgomp.so*) cp -L "$path" "$S/syslib/$name" ;;
  esac
done < <(ldd "$EXE" | grep '=> /')
# The backend modules: beside the binary when installed there, else in the build's
# backends directory (beside the lib directory the libraries came from).
mods=""
for d in "$(dirname "$EXE")" "${libdir:+$libdir/../backends}"; do
  [ -n "$d" ] && ls "$d"/libggml-cpu-*.so >/dev/null 2>&1 && { mods="$d"; break; }
done
[ -n "$mods" ] || { echo "prepare: no libggml-cpu-*.so modules beside $EXE or in the build's backends directory" >&2; exit 2; }
cp "$mods"/libggml-cpu-*.so "$S/bin/"
[ -f "$mods/libggml-rpc.so" ] && cp "$mods/libggml-rpc.so" "$S/bin/"
if [ -z "$(ls "$S/syslib")" ]; then
  for m in "$S"/bin/libggml-cpu-*.so; do
    p="$(ldd "$m" | awk '/libgomp/ && /=> \// {print $3}')"
    [ -n "$p" ] && { cp -L "$p" "$S/syslib/"; break; }
  done
fi
chmod u+w "$S"/bin/* "$S"/syslib/* 2>/dev/null || true
strip --strip-unneeded "$S"/bin/* "$S"/syslib/* 2>/dev/null || true
if LD_LIBRARY_PATH="$S/bin" ldd "$S/bin/uniskip" | grep -q "not found"; then
  echo "prepare: the staged binary misses a library:" >&2; LD_LIBRARY_PATH="$S/bin" ldd "$S/bin/uniskip" | grep "not found" >&2; exit 1
fi

# ---------------------------------------------------------------- ggml source, gguf package
bash "$ROOT/scripts/cuda-backend.sh" --stage-src "$S/ggml"
if ! ls "$S"/whl/gguf-*.whl >/dev/null 2>&1; then
  python3 -m pip download --quiet --no-deps --only-binary=:all: "$GGUF_PY" -d "$S/whl" ||
    echo "prepare: warning: could not download the $GGUF_PY wheel; make_model.py falls back to its own GGUF writer" >&2
fi

# ---------------------------------------------------------------- corpus and the real model
"$EXE" fetch alice smollm2 >&2
cached() { "$EXE" fetch --list | awk -v n="$1" '$1 == n { for (i = 1; i <= NF; i++) if ($i ~ /^\//) { print $i; exit } }'; }
ALICE="$(cached alice)"; SMOL="$(cached smollm2)"
[ -f "$ALICE" ] && [ -f "$SMOL" ] || { echo "prepare: the cached alice text or smollm2 model is missing ($ALICE, $SMOL)" >&2; exit 1; }
gzip -9 -c "$ALICE" > "$S/corpus/$(basename "$ALICE").gz"
NAME="$(basename "$SMOL")"
split -b 40m "$SMOL" "$S/model/$NAME.part"
(cd "$(dirname "$SMOL")" && sha256sum "$NAME") > "$S/model/$NAME.sha256"
# `uniskip check` needs the model's original tokenizer.json; staged when it is next to the model.
for t in "${SMOL%.gguf}.tokenizer.json" "$(dirname "$SMOL")/tokenizer.json"; do
  [ -f "$t" ] && { cp "$t" "$S/model/${NAME%.gguf}.tokenizer.json"; break; }
done

# ---------------------------------------------------------------- sizes
echo "staged in $S:"
du -sb "$S"/bin "$S"/syslib "$S"/ggml "$S"/whl "$S"/corpus "$S"/model | awk '{printf "  %-8s %6.2f MiB\n", substr($2, length("'"$S"'") + 2), $1 / 1048576}'
ls -l "$S"/model | awk 'NR > 1 {printf "    %s %d bytes\n", $9, $5}'
BASE=$(du -scb "$S"/bin "$S"/syslib "$S"/ggml "$S"/whl "$S"/corpus | tail -1 | cut -f1)
ALL=$(du -sb "$S" | cut -f1)
awk -v b="$BASE" -v a="$ALL" 'BEGIN { printf "  without the model: %.2f MiB; in all: %.2f MiB\n", b / 1048576, a / 1048576 }'
if (( BASE > 24 * 1048576 )); then
  echo "prepare: warning: bin+syslib+ggml+whl+corpus is over 24 MiB: with a 40 MiB model part and the repository it may not fit in one 64 MiB transfer" >&2
fi

#!/usr/bin/env bash
# uniskip on one NVIDIA GPU, on a machine without Rust or network: builds ggml's CUDA backend
# module for the staged uniskip binary, writes synthetic models, then checks CPU-vs-CUDA
# agreement and measures decode speed under layer skipping. Stage .gpu/ first with
# scripts/gpu-check/prepare.sh (see scripts/gpu-check/README.md).
#
#   OUT=/some/dir bash scripts/gpu-check/check.sh       # on the GPU machine, from the repo root
#   bash scripts/gpu-check/check.sh --stash             # only keep the carried .gpu/model parts
#                                                       # (and .gpu/cuda) in /tmp/uniskip-gpu
#   GPU_CHECK_DRY=1 OUT=/tmp/gc-out bash scripts/gpu-check/check.sh   # CPU machine: no CUDA
#                                                       # build, 2 threads, a 6-block big model
#
# Settings (environment): GPU_CHECK_DEADLINE (seconds, default 540; dry 1800), GPU_LAYERS
# (the CUDA runs' --gpu-layers, default 99), GPU_CHECK_ARCH (default 90-real),
# GPU_CHECK_KEEP_MODULE=1 (bring libggml-cuda.so back in 15 MiB parts under $OUT/cuda),
# GPU_CHECK_WORK (scratch, default /tmp/gc).
#
# Logged to $OUT/log.txt (and stdout); results in $OUT/summary.json, $OUT/summary.txt (Markdown
# tables) and $OUT/details.tar.gz (every run's output and llama.cpp log). No step stops the
# others: each has its own timeout, sized so that the run ends by the deadline.
set -u -o pipefail

G="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"             # scripts/gpu-check
ROOT="$(cd "$G/../.." && pwd)"
STAGE="${GPU_CHECK_STAGE:-$ROOT/.gpu}"                        # what prepare.sh staged
KEEP=/tmp/uniskip-gpu                                         # kept between calls: parts, module
DRY="${GPU_CHECK_DRY:-0}"

# --stash: copy the carried model parts (and a carried module) to $KEEP, for a later call
# that carries the rest (a call carries at most 64 MiB).
if [ "${1:-}" = "--stash" ]; then
  mkdir -p "$KEEP/model" "$KEEP/cuda"
  for f in "$STAGE"/model/* "$STAGE"/cuda/*; do
    [ -f "$f" ] || continue
    case "$f" in */cuda/*) cp "$f" "$KEEP/cuda/" ;; *) cp "$f" "$KEEP/model/" ;; esac
  done
  ls -la "$KEEP/model" "$KEEP/cuda"
  exit 0
fi

OUT="${OUT:-/tmp/gpu-check-out}"
DEADLINE="${GPU_CHECK_DEADLINE:-540}"
[ "$DRY" = 1 ] && DEADLINE="${GPU_CHECK_DEADLINE:-1800}"
W="${GPU_CHECK_WORK:-/tmp/gc}"
R="$W/runs"
mkdir -p "$OUT" "$KEEP"
rm -rf "$W"; mkdir -p "$W" "$R"
exec > >(tee -a "$OUT/log.txt") 2>&1
SECONDS=0

# cap CAP [RESERVE]: a step's timeout: CAP, or less so that RESERVE seconds stay.
cap() { local c=$1 r=${2:-0} l; l=$(( DEADLINE - SECONDS - r )); (( l < c )) && c=$l; (( c < 0 )) && c=0; echo "$c"; }
left() { echo $(( DEADLINE - SECONDS )); }
note() { echo "== [${SECONDS}s] $*"; }
# lp DIR...: the non-empty arguments joined with ':'.
lp() { local IFS=: out=() x; for x in "$@"; do [ -n "$x" ] && out+=("$x"); done; echo "${out[*]}"; }
step_done() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4:-}" >> "$R/steps.tsv"; }
# Summary and details so far, so that a run stopped later still returns them.
checkpoint() {
  "$PY" "$G/summarize.py" "$R" "$OUT" "$DRY" >/dev/null 2>&1 || true
  tar -C "$W" -czf "$OUT/details.tar.gz" runs 2>/dev/null || true
}
PY=python3

note "uniskip GPU check; dry=$DRY deadline=${DEADLINE}s stage=$STAGE OUT=$OUT work=$W"
[ -x "$STAGE/bin/uniskip" ] || [ -f "$STAGE/bin/uniskip" ] ||
  { echo "no $STAGE/bin/uniskip: run scripts/gpu-check/prepare.sh on the build machine and carry .gpu"; exit 2; }

# ---------------------------------------------------------------- the machine
{
  set -x
  date -u; uname -a; head -4 /etc/os-release; ldd --version | head -1; nproc; free -g | head -2
  df -h /tmp | tail -1
  command -v nvidia-smi && nvidia-smi
  command -v nvidia-smi && nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader
  command -v nvcc cmake ninja gcc g++ python3
  ls -d /usr/local/cuda* 2>/dev/null
  ldconfig -p | grep -E "libcuda\.so|libcudart\.so|libcublas\.so|libgomp" | head -8
  echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
  python3 --version; gcc --version | head -1; cmake --version | head -1
  set +x
} > "$R/env.txt" 2>&1
grep -E "^NVIDIA|^[A-Z].*, [0-9.]+, [0-9]+ MiB|Driver Version|^/" "$R/env.txt" | head -8

NVCC=""
[ -x /usr/local/cuda/bin/nvcc ] && NVCC=/usr/local/cuda/bin/nvcc
[ -z "$NVCC" ] && NVCC="$(command -v nvcc || true)"
CUDA_HOME="${CUDA_HOME:-}"
[ -z "$CUDA_HOME" ] && [ -n "$NVCC" ] && CUDA_HOME="$(dirname "$(dirname "$(readlink -f "$NVCC")")")"
CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
CUDA_LIBS="$(lp "$CUDA_HOME/lib64" "$CUDA_HOME/targets/x86_64-linux/lib" "${LD_LIBRARY_PATH:-}")"
CPU_LIBS="${LD_LIBRARY_PATH:-}"
NPROC="$(nproc)"
note "nvcc=${NVCC:-none} CUDA_HOME=$CUDA_HOME cores=$NPROC"

# ---------------------------------------------------------------- the staged binary
# Run from a copy (writable, executable whatever the copy did to modes); uniskip loads its
# backend modules from beside the binary.
BIN="$W/cpubin"
cp -r "$STAGE/bin" "$BIN"
chmod +x "$BIN/uniskip"
EXTRA_LD=""
if LD_LIBRARY_PATH="$(lp "$BIN" "$CPU_LIBS")" ldd "$BIN/uniskip" "$BIN"/lib*.so* 2>&1 | grep -q "not found"; then
  note "a system library is missing; adding $STAGE/syslib to the path:"
  LD_LIBRARY_PATH="$(lp "$BIN" "$CPU_LIBS")" ldd "$BIN/uniskip" "$BIN"/lib*.so* 2>&1 | grep "not found" | sort -u
  EXTRA_LD="$STAGE/syslib"
fi
export UNISKIP_MODELS="$W/cache"                               # nothing from $HOME's cache
mkdir -p "$UNISKIP_MODELS"
LD_LIBRARY_PATH="$(lp "$BIN" "$EXTRA_LD" "$CPU_LIBS")" "$BIN/uniskip" --version
step_done env 0 "$SECONDS"

# ---------------------------------------------------------------- Python and the gguf package
if ! "$PY" -c 'import numpy' 2>/dev/null; then
  for p in /opt/torch/.venv/bin/python3 /usr/bin/python3; do
    [ -x "$p" ] && "$p" -c 'import numpy' 2>/dev/null && { PY="$p"; break; }
  done
fi
WHL="$(ls "$STAGE"/whl/gguf-*.whl 2>/dev/null | head -1)"
if [ -n "$WHL" ]; then
  mkdir -p "$W/site"
  "$PY" -m zipfile -e "$WHL" "$W/site"
  export PYTHONPATH="$W/site${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PY" -c 'import numpy; print("python: numpy", numpy.__version__)' || note "WARNING: no numpy: the synthetic models cannot be written"
"$PY" -c 'import gguf; print("python: gguf", gguf.__file__)' 2>/dev/null || note "no gguf package: make_model.py uses its own reader and writer"

# ---------------------------------------------------------------- texts
CORPUS_GZ="$(ls "$STAGE"/corpus/*.txt.gz 2>/dev/null | head -1)"
if [ -n "$CORPUS_GZ" ]; then
  "$PY" - "$CORPUS_GZ" "$W" <<'EOF'
import gzip, sys
text = gzip.open(sys.argv[1], "rt", encoding="utf-8").read().replace("\r\n", "\n")
w = sys.argv[2]
open(f"{w}/corpus.txt", "w").write(text)
at = text.find("Alice was beginning")
body = text[at if at >= 0 else len(text) // 10:]
open(f"{w}/prompt_short.txt", "w").write(body[:180])   # ~40 tokens: agreement, batch 8
open(f"{w}/prompt_long.txt", "w").write(body[:2000])   # ~450 tokens: speed (prefill)
print(f"corpus: {sys.argv[1].rsplit('/', 1)[-1]}, {len(text)} characters")
EOF
else
  note "WARNING: no corpus in $STAGE/corpus: built-in prompts, no ppl"
  printf 'The quick brown fox jumps over the lazy dog. ' > "$W/prompt_short.txt"
  for _ in $(seq 40); do cat "$W/prompt_short.txt"; done > "$W/prompt_long.txt"
fi

# ---------------------------------------------------------------- the real model (SmolLM2)
# Its parts come with this call (.gpu/model) or were left in $KEEP/model by earlier calls.
SMOL=""
SHAFILE="$(ls "$STAGE"/model/*.sha256 "$KEEP"/model/*.sha256 2>/dev/null | head -1)"
if [ -n "$SHAFILE" ]; then
  NAME="$(basename "$SHAFILE" .sha256)"
  WANT="$(cut -d' ' -f1 "$SHAFILE")"
  JOINED="$KEEP/$NAME"
  if [ -f "$JOINED" ] && [ "$(sha256sum "$JOINED" | cut -d' ' -f1)" = "$WANT" ]; then
    SMOL="$JOINED"
  else
    mkdir -p "$KEEP/model"
    for f in "$STAGE"/model/"$NAME".part*; do [ -f "$f" ] && cp -f "$f" "$KEEP/model/"; done
    cat "$KEEP"/model/"$NAME".part* > "$JOINED" 2>/dev/null
    if [ "$(sha256sum "$JOINED" | cut -d' ' -f1)" = "$WANT" ]; then
      SMOL="$JOINED"
      rm -f "$KEEP"/model/"$NAME".part*                    # /tmp keeps the joined file only
    else
      note "WARNING: $NAME: the parts present ($(ls "$KEEP"/model/"$NAME".part* 2>/dev/null | wc -l)) do not give sha256 $WANT: no SmolLM2 runs"
      rm -f "$JOINED"
    fi
  fi
fi
[ -n "$SMOL" ] && note "real model: $SMOL ($(stat -c %s "$SMOL") bytes, sha256 ok)"
step_done real_model "$([ -n "$SMOL" ] && echo 0 || echo missing)" "$SECONDS" "$SMOL"

# ---------------------------------------------------------------- synthetic models, in the background
TOK=(); [ -n "$SMOL" ] && TOK=(--tok-from "$SMOL")
BIG_BLOCKS=(); [ "$DRY" = 1 ] && BIG_BLOCKS=(--blocks 6)
(
  set -x
  nice -n 5 "$PY" "$G/make_model.py" --preset small "${TOK[@]}" --out "$W/small.gguf" &&
  nice -n 5 "$PY" "$G/make_model.py" --preset small --dtype q4_0 "${TOK[@]}" --out "$W/smallq4.gguf" &&
  nice -n 5 "$PY" "$G/make_model.py" --preset big "${BIG_BLOCKS[@]}" "${TOK[@]}" --out "$W/big.gguf"
) > "$R/make_model.log" 2>&1 &
GEN_PID=$!

# ---------------------------------------------------------------- the CUDA backend module
CUDABIN="$W/cudabin"                                           # bin/ plus libggml-cuda.so
cp -r "$BIN" "$CUDABIN"
BUILD_OK=0
BUILT_HERE=0
if [ "$DRY" = 1 ]; then
  note "dry run: no CUDA build; the 'cuda' runs run on the CPU with --gpu-layers ${GPU_LAYERS:-99}"
  step_done cuda_build skipped 0
else
  # A module carried (whole, or in parts with its .sha256) or left by an earlier call skips
  # the build.
  mkdir -p "$KEEP/cuda"
  for f in "$STAGE"/cuda/libggml-cuda.so.*; do [ -f "$f" ] && cp -f "$f" "$KEEP/cuda/"; done
  if ls "$KEEP"/cuda/libggml-cuda.so.part* >/dev/null 2>&1; then
    cat "$KEEP"/cuda/libggml-cuda.so.part* > "$W/libggml-cuda.so"
    if [ -f "$KEEP/cuda/libggml-cuda.so.sha256" ] &&
       [ "$(sha256sum "$W/libggml-cuda.so" | cut -d' ' -f1)" = "$(cut -d' ' -f1 "$KEEP/cuda/libggml-cuda.so.sha256")" ]; then
      mv "$W/libggml-cuda.so" "$KEEP/libggml-cuda.so"
      rm -f "$KEEP"/cuda/libggml-cuda.so.part*
    else
      note "the carried libggml-cuda.so parts are incomplete or lack a matching .sha256: building"
    fi
  fi
  PRE=""
  for f in "$STAGE/cuda/libggml-cuda.so" "$KEEP/libggml-cuda.so"; do [ -s "$f" ] && { PRE="$f"; break; }; done
  if [ -n "$PRE" ]; then
    cp "$PRE" "$CUDABIN/libggml-cuda.so"
    BUILD_OK=1
    note "using the CUDA module $PRE (no build)"
    step_done cuda_build reused 0 "$PRE"
  else
    BT0=$SECONDS
    T=$(cap 420 110)                                # leave 110 s for agreement and speed
    note "building libggml-cuda.so (timeout ${T}s, -j $NPROC)"
    timeout -k 10 "$T" bash "$ROOT/scripts/cuda-backend.sh" --src "$STAGE/ggml" --arch "${GPU_CHECK_ARCH:-90-real}" \
      --out "$CUDABIN" --build-dir "$W/cuda-build" --jobs "$NPROC" > "$R/build.log" 2>&1 &
    BPID=$!
    n=0
    while kill -0 "$BPID" 2>/dev/null; do
      sleep 2; n=$(( n + 1 ))
      (( n % 10 == 0 )) && echo "   [${SECONDS}s] build: $(tail -c 300 "$R/build.log" | tr '\r' '\n' | grep . | tail -1 | cut -c1-150)"
    done
    wait "$BPID"; BRC=$?
    BSECS=$(( SECONDS - BT0 ))
    grep -E "cuda-backend|CUDA Toolkit|The CUDA compiler|ggml version|error|FAILED" "$R/build.log" | head -20
    if [ "$BRC" = 0 ] && [ -s "$CUDABIN/libggml-cuda.so" ]; then
      BUILD_OK=1; BUILT_HERE=1
      cp "$CUDABIN/libggml-cuda.so" "$KEEP/libggml-cuda.so"       # a later call skips the build
      note "libggml-cuda.so built in ${BSECS}s"
    else
      note "CUDA build FAILED (rc $BRC after ${BSECS}s; 124 = timeout)"
    fi
    step_done cuda_build "$BRC" "$BSECS"
  fi
  if [ "$BUILD_OK" = 1 ]; then
    LD_LIBRARY_PATH="$(lp "$CUDABIN" "$CUDA_LIBS" "$EXTRA_LD")" ldd "$CUDABIN/libggml-cuda.so" | grep -E "not found|ggml|cudart|cublas"
    LD_LIBRARY_PATH="$(lp "$CUDABIN" "$CUDA_LIBS" "$EXTRA_LD")" "$PY" -c '
import ctypes, sys
ctypes.CDLL(sys.argv[1] + "/libggml-base.so.0", mode=ctypes.RTLD_GLOBAL)
lib = ctypes.CDLL(sys.argv[1] + "/libggml-cuda.so")
print("dlopen libggml-cuda.so: ok; ggml_backend_init:", bool(lib.ggml_backend_init))' "$CUDABIN" || BUILD_OK=0
  fi
fi

# ---------------------------------------------------------------- wait for the models
T=$(cap 120 60)
for _ in $(seq 1 "$T"); do kill -0 "$GEN_PID" 2>/dev/null || break; sleep 1; done
kill -0 "$GEN_PID" 2>/dev/null && { note "model generation still running: stopping it"; kill "$GEN_PID"; }
wait "$GEN_PID"; GRC=$?
grep -v '^+ ' "$R/make_model.log" | tail -4
step_done make_model "$GRC" "$SECONDS"

# ---------------------------------------------------------------- runs
GPU_LAYERS="${GPU_LAYERS:-99}"
THREADS=(); [ "$DRY" = 1 ] && THREADS=(--threads "${GPU_CHECK_THREADS:-2}")
HAVE_CUDA=$BUILD_OK; [ "$DRY" = 1 ] && HAVE_CUDA=1             # dry: the "cuda" runs use the CPU
# urun TAG DEV TIMEOUT uniskip-args...: DEV cpu (no CUDA module) or cuda (with it). Writes
# $R/TAG.out (stdout) and $R/TAG.err (llama.cpp's log among the rest).
urun() {
  local tag=$1 dev=$2 tmo=$3; shift 3
  local t; t=$(cap "$tmo" 5)
  if (( t < 5 )); then note "SKIP $tag: no time left"; step_done "$tag" skipped 0; return 1; fi
  local dir="$BIN" ld; ld="$(lp "$BIN" "$EXTRA_LD" "$CPU_LIBS")"
  if [ "$dev" = cuda ]; then dir="$CUDABIN"; ld="$(lp "$CUDABIN" "$CUDA_LIBS" "$EXTRA_LD")"; fi
  local t0=$SECONDS rc
  UNISKIP_LLAMA_LOG=1 LD_LIBRARY_PATH="$ld" timeout -k 5 "$t" "$dir/uniskip" "$@" > "$R/$tag.out" 2> "$R/$tag.err"
  rc=$?
  step_done "$tag" "$rc" "$(( SECONDS - t0 ))"
  "$PY" - "$R/$tag.out" "$R/$tag.err" "$tag" "$rc" "$(( SECONDS - t0 ))" <<'EOF'
import json, re, sys
out, err, tag, rc, secs = sys.argv[1:6]
off = re.findall(r"offloaded \d+/\d+ layers to GPU", open(err, errors="replace").read())
where = f" [{off[-1]}]" if off else ""
try:
    d = json.loads(open(out).read().strip().splitlines()[-1])
except Exception:
    print(f"   {tag}: rc {rc} in {secs}s{where}")
    sys.exit(0)
if isinstance(d, dict) and "decode_tokens_per_s" in d:
    print(f"   {tag}: rc {rc} in {secs}s{where}: decode {d['decode_tokens_per_s']:.1f} tok/s, prefill "
          f"{d['prefill_tokens_per_s']:.1f} tok/s ({d['prompt_tokens']} tok), {d['generated_tokens']} generated, "
          f"active {len(d['active_layers'])}/{d['n_layer']}: {d['text'][:50]!r}")
elif isinstance(d, dict) and "full" in d:
    print(f"   {tag}: rc {rc} in {secs}s{where}: ppl full {d['full']['perplexity']:.6g}, skipped "
          f"{d['skipped']['perplexity']:.6g}, kl_mean {d['skipped']['kl_mean']:.5f}")
else:
    print(f"   {tag}: rc {rc} in {secs}s{where}")
EOF
  if [ "$rc" != 0 ]; then
    grep -iE "error|fail|abort|assert|what\(\)" "$R/$tag.err" | sort -u | head -6 | grep . || tail -4 "$R/$tag.err"
  fi
  return "$rc"
}
SMALL="$W/small.gguf"; SMALLQ4="$W/smallq4.gguf"; BIG="$W/big.gguf"
SHORT="$W/prompt_short.txt"; LONG="$W/prompt_long.txt"

# ---------------------------------------------------------------- 1. agreement
note "1. agreement: greedy, 64 tokens, CPU (--gpu-layers 0, no CUDA module) vs CUDA (--gpu-layers $GPU_LAYERS)"
AG=(-f "$SHORT" -n 64 --ignore-eos --temp 0 --json "${THREADS[@]}")
MODELS=(small smallq4); [ -n "$SMOL" ] && MODELS+=(smollm2)
mpath() { case $1 in small) echo "$SMALL";; smallq4) echo "$SMALLQ4";; smollm2) echo "$SMOL";; big) echo "$BIG";; esac; }
for m in "${MODELS[@]}"; do
  for s in 1 2; do
    urun "agree-$m-cpu-s$s" cpu 60 run -m "$(mpath "$m")" "${AG[@]}" --speedup "$s" --gpu-layers 0
    [ "$HAVE_CUDA" = 1 ] && urun "agree-$m-cuda-s$s" cuda 60 run -m "$(mpath "$m")" "${AG[@]}" --speedup "$s" --gpu-layers "$GPU_LAYERS"
  done
  if [ "$m" = small ] && [ "$DRY" != 1 ] && [ "$HAVE_CUDA" = 1 ] &&
     ! grep -qE "assigned to device CUDA" "$R/agree-small-cuda-s1.err" 2>/dev/null; then
    # (llama.cpp prints `offloaded N/N layers to GPU` even when no GPU takes them.)
    note "WARNING: no layer went to a CUDA device: libggml-cuda.so did not load or found no GPU:"
    grep -E "load_backend|ggml_cuda_init|CUDA|offloaded" "$R/agree-small-cuda-s1.err" | sort -u | head -8
    HAVE_CUDA=0
  fi
done
# The CPU against itself: the AVX2 variant instead of the best one (rounding differs too).
for s in 1 2; do
  UNISKIP_CPU_VARIANT=haswell urun "agree-small-cpuavx2-s$s" cpu 60 run -m "$SMALL" "${AG[@]}" --speedup "$s" --gpu-layers 0
done
# Teacher-forced: perplexity at full depth and at 2x, per device; summarize.py takes the
# difference of the mean NLL per token.
if [ -f "$W/corpus.txt" ]; then
  PP=(--corpus "$W/corpus.txt" --windows 8 --prefix 64 --continuation 64 --speedup 2 --json "${THREADS[@]}")
  for m in small "${SMOL:+smollm2}"; do
    [ -n "$m" ] || continue
    urun "ppl-$m-cpu" cpu 90 ppl -m "$(mpath "$m")" "${PP[@]}" --gpu-layers 0
    [ "$HAVE_CUDA" = 1 ] && urun "ppl-$m-cuda" cuda 90 ppl -m "$(mpath "$m")" "${PP[@]}" --gpu-layers "$GPU_LAYERS"
  done
fi
checkpoint

# ---------------------------------------------------------------- 2. speed (8B-shaped, Q4_0)
SPEED_DEV=cuda; SPEED_GL=$GPU_LAYERS; NTOK=256; ROUNDS="1 2 3"; SPROMPT="$LONG"
[ "$DRY" = 1 ] && { NTOK=16; SPROMPT="$SHORT"; }
if [ "$HAVE_CUDA" != 1 ]; then
  SPEED_DEV=cpu; SPEED_GL=0; NTOK=32; ROUNDS=1; SPROMPT="$SHORT"; note "no CUDA: speed on the CPU, 32 tokens, 1 round"
fi
SP=(-f "$SPROMPT" -n "$NTOK" --ignore-eos --temp 0 --json "${THREADS[@]}" --gpu-layers "$SPEED_GL")
note "2. speed: $(basename "$BIG"), $NTOK tokens, rounds $ROUNDS (interleaved, rotated), $SPEED_DEV"
MON_PID=""
if command -v nvidia-smi >/dev/null && [ "$DRY" != 1 ]; then
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used,power.draw --format=csv -lms 1000 > "$R/nvidia-smi.csv" 2>&1 &
  MON_PID=$!
fi
for round in $ROUNDS; do
  case $round in 1) set -- 1 1.25 1.5 2 3;; 2) set -- 3 2 1.5 1.25 1;; 3) set -- 1.5 3 1 2 1.25;; esac
  for s in "$@"; do
    urun "speed-s$s-r$round" "$SPEED_DEV" 60 run -m "$BIG" "${SP[@]}" --speedup "$s" || true
  done
  checkpoint
done
# 8 sequences of the short prompt in one context.
for s in 1 2; do
  urun "batch8-s$s" "$SPEED_DEV" 60 run -m "$BIG" -f "$SHORT" -n "$NTOK" --ignore-eos --temp 0 --json \
    "${THREADS[@]}" --gpu-layers "$SPEED_GL" --ctx 4096 --speedup "$s" --batch 8 || true
done
# Full depth through the hook against the hook unset (llama.cpp's own path): `uniskip run`
# always sets the hook, so this is `uniskip bench`'s `full, hook unset` row.
BROUNDS=3 BTOK=64 BBATCH=1,8
[ "$DRY" = 1 ] || [ "$SPEED_DEV" = cpu ] && { BROUNDS=1 BTOK=8 BBATCH=1; }
urun bench "$SPEED_DEV" 120 bench -m "$BIG" --gpu-layers "$SPEED_GL" --strategies unified --targets 2 \
  --batch "$BBATCH" --rounds "$BROUNDS" --tokens "$BTOK" --prompt-tokens 64 --no-quality --no-calibrate \
  --json --out "$R/bench-out" "${THREADS[@]}" || true
[ -n "$MON_PID" ] && kill "$MON_PID" 2>/dev/null
checkpoint

# ---------------------------------------------------------------- 2b. what switching shapes costs
# A lossless generation alternates between a one-row draft under a mask, k-row verifications
# and plain steps. `bench --lossless --costs` times each shape repeated and right after the
# shape before it; with UNISKIP_GRAPH_SLOTS=1 every shape shares one graph slot (llama.cpp's
# own behaviour), with the default each keeps its own. Interleaved per model, medians.
note "2b. switch costs (bench --lossless --costs), graph slots 16 vs 1"
for m in ${SMOL:+smol} big; do
  MF="$BIG"; [ "$m" = smol ] && MF="$SMOL"
  for slots in 16 1; do
    UNISKIP_GRAPH_SLOTS=$slots urun "costs-$m-slots$slots" "$SPEED_DEV" 60 bench -m "$MF" --lossless --costs \
      --rounds 7 --draft-targets 1.5,2 --gpu-layers "$SPEED_GL" "${THREADS[@]}" || true
    { echo "## $(basename "$MF"), UNISKIP_GRAPH_SLOTS=$slots"; cat "$R/costs-$m-slots$slots.out"; echo; } >> "$OUT/costs.txt" 2>/dev/null
  done
done
checkpoint

# ---------------------------------------------------------------- 3. lossless, check, tune (SmolLM2)
if [ -n "$SMOL" ]; then
  note "3. lossless decoding on SmolLM2 (its text must equal full depth's)"
  urun lossless "$SPEED_DEV" 60 run -m "$SMOL" --lossless -f "$SHORT" -n 64 --ignore-eos --temp 0 --json \
    "${THREADS[@]}" --gpu-layers "$SPEED_GL" || true
  if (( $(left) > 150 )); then
    urun bench-lossless "$SPEED_DEV" 90 bench -m "$SMOL" --lossless --rounds 1 --lossless-tokens 64 \
      --draft-targets 2 --gpu-layers "$SPEED_GL" --out "$R/bench-lossless-out" "${THREADS[@]}" || true
  else
    note "bench --lossless skipped ($(left)s left)"; step_done bench-lossless skipped 0
  fi
  # `uniskip check` compares with the model's original tokenizer.json: only when one was staged.
  TJ="$(ls "$STAGE"/model/*tokenizer.json "$KEEP"/model/*tokenizer.json 2>/dev/null | head -1)"
  if [ -n "$TJ" ]; then
    urun check "$SPEED_DEV" 30 check -m "$SMOL" --tokenizer "$TJ" --texts 0 || true
  else
    note "uniskip check skipped: no tokenizer.json staged in $STAGE/model"; step_done check skipped 0
  fi
  if (( $(left) > 100 )); then
    TUNE_GL=(); "$BIN/uniskip" tune --help 2>/dev/null | grep -q -- "--gpu-layers" && TUNE_GL=(--gpu-layers "$SPEED_GL")
    urun tune "$SPEED_DEV" 90 tune -m "$SMOL" --speedup 1.5 --train-tokens 256 --eval-windows 1 --data corpus \
      ${CORPUS_GZ:+--corpus "$W/corpus.txt"} -o "$W/tuned.gguf" --json "${TUNE_GL[@]}" "${THREADS[@]}" || true
  else
    note "tune skipped ($(left)s left)"; step_done tune skipped 0
  fi
fi

# ---------------------------------------------------------------- 4. the 8B shape on the CPU, if time is left
if [ "$DRY" != 1 ] && [ "$SPEED_DEV" = cuda ] && (( $(left) > 75 )); then
  note "4. the same model on the CPU, 32 tokens"
  for s in 1 2; do
    urun "cpu8b-s$s" cpu 30 run -m "$BIG" -f "$SHORT" -n 32 --ignore-eos --temp 0 --json --gpu-layers 0 --speedup "$s" || true
  done
fi

# ---------------------------------------------------------------- summary and files
note "summary"
"$PY" "$G/summarize.py" "$R" "$OUT" "$DRY" || note "summarize.py failed"
if [ "$BUILD_OK" = 1 ] && [ "${GPU_CHECK_KEEP_MODULE:-0}" = 1 ]; then
  mkdir -p "$OUT/cuda"
  split -b 15m -d "$CUDABIN/libggml-cuda.so" "$OUT/cuda/libggml-cuda.so.part"
  (cd "$CUDABIN" && sha256sum libggml-cuda.so) > "$OUT/cuda/libggml-cuda.so.sha256"
  ls -la "$OUT/cuda"
fi
[ -f "$R/build.log" ] && gzip -9 -f "$R/build.log"
tar -C "$W" -czf "$OUT/details.tar.gz" runs 2>/dev/null
note "done in ${SECONDS}s (module built here: $BUILT_HERE)"
ls -la "$OUT"
cat "$OUT/summary.txt" 2>/dev/null
exit 0

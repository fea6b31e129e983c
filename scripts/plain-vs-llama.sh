#!/usr/bin/env bash
# Full depth against llama.cpp's own plain decoding, on the same file, prompt, threads and
# CPU code (AVX2): `uniskip run` and llama-lookup drafting nothing (--spec-draft-n-max 0),
# greedy, N tokens, R interleaved rounds; prints each round's tokens/s and the ratio.
# The peers must be built first (bash scripts/peers.sh build).
#
#   bash scripts/plain-vs-llama.sh [N=512] [R=5] [MODEL=smollm2] [THREADS=2]
set -euo pipefail
N=${1:-512}
R=${2:-5}
MODEL=${3:-smollm2}
T=${4:-2}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
U=$ROOT/target/release/uniskip
B=${UNISKIP_PEERS:-$HOME/.cache/uniskip/peers}/build-0.3.36/bin
[ -x "$U" ] || { echo "build uniskip first (cargo build --release)" >&2; exit 2; }
[ -x "$B/llama-lookup" ] || { echo "build the peers first (bash scripts/peers.sh build)" >&2; exit 2; }
M=$("$U" fetch "$MODEL" 2>/dev/null | tail -n 1 | sed 's/^[^:]*: //')
P="Write a long story about a lighthouse keeper who finds a message in a bottle."
for r in $(seq 1 "$R"); do
    u=$(UNISKIP_CPU_VARIANT=haswell "$U" run -m "$M" -p "$P" -n "$N" --ignore-eos --temp 0 -t "$T" --json 2>/dev/null |
        python3 -c "import json,sys; print(json.load(sys.stdin)['decode_tokens_per_s'])")
    l=$("$B/llama-lookup" -m "$M" -p "$P" -n "$N" -t "$T" -c 2048 -ngl 0 --temp 0 --top-k 1 --ignore-eos \
        --spec-draft-n-max 0 2>&1 | grep -oE "decoded +[0-9]+ tokens in +[0-9.]+ seconds, speed: +[0-9.]+" | grep -oE "[0-9.]+$")
    python3 -c "import sys; u,l=map(float,sys.argv[1:]); print(f'round $r  n=$N  uniskip {u:.1f}  llama.cpp {l:.1f}  ratio {u/l:.3f}')" "$u" "$l"
done

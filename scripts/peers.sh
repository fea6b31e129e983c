#!/usr/bin/env bash
# Peers for `uniskip bench --lossless` and `uniskip serve`: llama.cpp's own prompt-lookup
# decoding (llama-lookup), draft-model speculation (llama-speculative-simple), raw batch
# costs (llama-bench) and its OpenAI-compatible server (llama-server), built from the
# llama.cpp tree that the llama-cpp-python source package carries, with the same CPU flags
# as uniskip's build (AVX2, no -march=native), and run on the same prompts.
#
#   bash scripts/peers.sh build          # download (sha256-checked) and build, once
#   bash scripts/peers.sh run [options]  # run both tools and uniskip; print one table
#   bash scripts/peers.sh costs [options]  # uniskip's --costs beside llama-bench's raw costs
#   bash scripts/peers.sh serve [options]  # scripts/serve-bench.py with llama-server beside
#
# Nothing is written into the repository: sources, build and logs live under
# $UNISKIP_PEERS (default ~/.cache/uniskip/peers).
set -euo pipefail

# The newest llama-cpp-python; its vendored llama.cpp (ggml 0.25.3) is the closest
# published one to the llama.cpp of the pinned llama-cpp-sys-2 0.1.161 (ggml 0.26.0).
PY_VERSION=0.3.36
PY_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${UNISKIP_PEERS:-$HOME/.cache/uniskip/peers}
SDIST=$CACHE/llama_cpp_python-$PY_VERSION.tar.gz
SRC=$CACHE/llama_cpp_python-$PY_VERSION/vendor/llama.cpp
BUILD=$CACHE/build-$PY_VERSION
BIN=$BUILD/bin

die() { echo "peers: $*" >&2; exit "${2:-1}"; }

fetch() {
    mkdir -p "$CACHE"
    if [ ! -f "$SDIST" ]; then
        echo "peers: downloading llama-cpp-python $PY_VERSION (source) into $CACHE" >&2
        pip download --no-binary :all: --no-deps "llama-cpp-python==$PY_VERSION" -d "$CACHE" \
            >"$CACHE/pip.log" 2>&1 || die "pip download failed; see $CACHE/pip.log"
    fi
    local got
    got=$(sha256sum "$SDIST" | cut -d' ' -f1)
    [ "$got" = "$PY_SHA256" ] || die "$SDIST: sha256 $got, expected $PY_SHA256 (delete it to download again)"
    if [ ! -f "$SRC/CMakeLists.txt" ]; then
        tar -xzf "$SDIST" -C "$CACHE" || die "cannot unpack $SDIST"
    fi
}

build() {
    fetch
    if [ -x "$BIN/llama-lookup" ] && [ -x "$BIN/llama-speculative-simple" ] && [ -x "$BIN/llama-bench" ] \
        && [ -x "$BIN/llama-server" ]; then
        echo "peers: already built in $BIN" >&2
        return
    fi
    command -v cmake >/dev/null || die "cmake is missing (bash scripts/setup.sh installs it)" 2
    echo "peers: building llama-lookup, llama-speculative-simple, llama-bench and llama-server in $BUILD (several minutes)" >&2
    # AVX2/FMA/F16C, not tuned to this machine: uniskip's `haswell` CPU variant, which `run`
    # selects for uniskip too (UNISKIP_CPU_VARIANT). OpenMP stays on, as in uniskip's build.
    cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release \
        -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
        -DLLAMA_CURL=OFF -DLLAMA_BUILD_EXAMPLES=ON -DLLAMA_BUILD_TESTS=OFF \
        -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON -DBUILD_SHARED_LIBS=OFF \
        >"$CACHE/cmake.log" 2>&1 || die "cmake configure failed; see $CACHE/cmake.log"
    nice -n 19 cmake --build "$BUILD" --config Release -j "${JOBS:-$(nproc)}" \
        --target llama-lookup llama-speculative-simple llama-bench llama-server >"$CACHE/build.log" 2>&1 \
        || die "build failed; see $CACHE/build.log"
    echo "peers: built llama-lookup, llama-speculative-simple, llama-bench and llama-server in $BIN" >&2
}

usage() {
    cat <<USAGE
usage: bash scripts/peers.sh build
       bash scripts/peers.sh run [-m MODEL] [-t THREADS] [-n TOKENS] [--rounds R] [--draft-max K] [--quick]
       bash scripts/peers.sh costs [-m MODEL] [-t THREADS] [--rounds R]   (see costs --help)
       bash scripts/peers.sh serve [--model MODEL] [serve-bench.py options] (see serve --help)

run: uniskip bench --lossless (plain full depth and every drafter), then llama.cpp on the
same prompts (the model's chat template applied by uniskip, special tokens parsed), the
same number of tokens (end of text never chosen), greedy, the same threads:
  llama plain      llama-lookup drafting nothing (--spec-draft-n-max 0): llama.cpp's own
                   full-depth speed, the base of its speedups
  llama-lookup     prompt-lookup decoding, draft max K
  llama-spec self  llama-speculative-simple with the model drafting for itself (no
                   smaller model shares SmolLM2's vocabulary in the catalog): it accepts
                   every draft and pays a second full model, so it measures the tool's
                   overhead, not a gain
Rounds are interleaved; medians. uniskip runs the AVX2 (haswell) CPU code like the peers
(UNISKIP_CPU_VARIANT overrides; UNISKIP_BENCH_FLAGS adds flags to uniskip's bench, e.g.
"--draft-strategies unified,calibrated"). Results and logs: \$UNISKIP_PEERS/results/<time>/.
--quick: 16 tokens, one round, one prompt per kind (a functional check, not a measurement).
USAGE
}

run() {
    local model=smollm2 threads=2 tokens=128 rounds=3 draft_max=8 quick=0
    while [ $# -gt 0 ]; do
        case "$1" in
            -m|--model) model=$2; shift 2 ;;
            -t|--threads) threads=$2; shift 2 ;;
            -n|--tokens) tokens=$2; shift 2 ;;
            --rounds) rounds=$2; shift 2 ;;
            --draft-max) draft_max=$2; shift 2 ;;
            --quick) quick=1; tokens=16; rounds=1; shift ;;
            -h|--help) usage; exit 0 ;;
            *) usage >&2; die "unknown option: $1" 2 ;;
        esac
    done
    for v in "$threads" "$tokens" "$rounds" "$draft_max"; do
        [[ "$v" =~ ^[1-9][0-9]*$ ]] || die "not a positive integer: $v" 2
    done
    local uniskip=$ROOT/target/release/uniskip
    [ -x "$uniskip" ] || die "$uniskip is missing: run cargo build --release first" 2
    [ -x "$BIN/llama-lookup" ] && [ -x "$BIN/llama-speculative-simple" ] \
        || die "the peers are not built: run bash scripts/peers.sh build first" 2
    local gguf
    gguf=$("$uniskip" fetch "$model" 2>/dev/null | tail -n 1 | sed 's/^[^:]*: //')
    [ -f "$gguf" ] || die "cannot find model $model (uniskip fetch $model)"
    local out
    out=$CACHE/results/$(date -u +%Y%m%dT%H%M%SZ)
    mkdir -p "$out"
    echo "peers: uniskip bench --lossless ($threads threads, $tokens tokens, $rounds rounds) ..." >&2
    local -a extra=()
    # More flags for uniskip's bench, e.g. UNISKIP_BENCH_FLAGS="--draft-strategies unified,calibrated".
    local -a bench_flags=()
    read -r -a bench_flags <<<"${UNISKIP_BENCH_FLAGS:-}"
    [ "$quick" = 1 ] && extra=(--draft-targets 2 --prompt "Explain why the sky is blue in simple words."
        --prompt "Repeat this list, one item per line, but write kiwi instead of lemon: apple, banana, cherry, grape, lemon, mango, orange, peach, pear, plum, apricot, melon.")
    UNISKIP_CPU_VARIANT=${UNISKIP_CPU_VARIANT:-haswell} "$uniskip" bench -m "$gguf" -t "$threads" \
        --lossless --rounds "$rounds" --lossless-tokens "$tokens" --ignore-eos \
        --draft-max "$draft_max" --json "${extra[@]}" "${bench_flags[@]}" >"$out/uniskip.json" 2>"$out/uniskip.log" \
        || die "uniskip bench failed; see $out/uniskip.log"
    echo "peers: llama.cpp tools on the same prompts ..." >&2
    python3 - "$out" "$BIN" "$gguf" "$threads" "$tokens" "$rounds" "$draft_max" <<'PY'
import json, re, statistics, subprocess, sys

out, bin_dir, gguf, threads, tokens, rounds, draft_max = sys.argv[1:]
rounds = int(rounds)
bench = json.load(open(f"{out}/uniskip.json"))
common = ["-m", gguf, "-t", threads, "-n", tokens, "-c", "2048", "-ngl", "0",
          "--temp", "0", "--top-k", "1", "--ignore-eos"]
tools = {
    "llama plain": [f"{bin_dir}/llama-lookup", "--spec-draft-n-max", "0"],
    "llama-lookup": [f"{bin_dir}/llama-lookup", "--spec-draft-n-max", draft_max],
    "llama-spec self": [f"{bin_dir}/llama-speculative-simple", "-md", gguf,
                        "--spec-type", "draft-simple", "-td", threads,
                        "-ngld", "0", "--spec-draft-n-max", draft_max],
}
SPEED = re.compile(r"decoded\s+(\d+) tokens in\s+([\d.]+) seconds, speed:\s+([\d.]+) t/s")
ENCODED = re.compile(r"encoded\s+(\d+) tokens")
ACCEPT = re.compile(r"accept\s+=\s+([\d.]+|nan|-?nan)%")

def once(name, prompt, i, r):
    cmd = tools[name] + common + ["-p", prompt["fed"]]
    log = f"{out}/{name.replace(' ', '_')}-p{i}-r{r}.log"
    p = subprocess.run(cmd, capture_output=True, text=True)
    open(log, "w").write(p.stdout + p.stderr)
    text = p.stdout + p.stderr
    speed = SPEED.search(text)
    if p.returncode != 0 or not speed:
        sys.exit(f"peers: {name} failed on prompt {i}; see {log}")
    enc = ENCODED.search(text)
    acc = ACCEPT.search(text)
    return {
        "tok_s": float(speed.group(3)),
        "decoded": int(speed.group(1)),
        "prompt_tokens": int(enc.group(1)) if enc else None,
        "accept": None if not acc or "nan" in acc.group(1) else float(acc.group(1)),
    }

runs = {}
for r in range(rounds + 1):  # round 0 is a warm-up, discarded
    for i, prompt in enumerate(bench["prompts"]):
        names = list(tools)
        names = names[r % len(names):] + names[:r % len(names)]  # rotate the order
        for name in names:
            res = once(name, prompt, i, r)
            if r > 0:
                runs.setdefault((i, name), []).append(res)

def med(xs):
    return statistics.median(xs) if xs else float("nan")

cells = {(c["prompt"], c["config"]): c for c in bench["cells"]}
configs = list(dict.fromkeys(c["config"] for c in bench["cells"]))
rows, result = [], []
for i, prompt in enumerate(bench["prompts"]):
    full = cells[(prompt["name"], "full depth")]
    base = [x["tok_s"] for x in runs[(i, "llama plain")]]
    entry = {"prompt": prompt["name"], "prompt_tokens": prompt["n_tokens"], "uniskip": {}, "llama": {}}
    for cfg in configs:
        c = cells[(prompt["name"], cfg)]
        entry["uniskip"][cfg] = {"tok_s": c["decode"]["median"], "speedup": c["speedup"]["median"],
                                 "acceptance": c["acceptance_rate"], "identical": c["identical"]}
    for name in tools:
        rs = runs[(i, name)]
        speeds = [x["tok_s"] for x in rs]
        ratios = [a / b for a, b in zip(speeds, base)]  # paired per round
        acc = [x["accept"] for x in rs if x["accept"] is not None]
        entry["llama"][name] = {"tok_s": med(speeds), "speedup": med(ratios),
                                "acceptance": med(acc) / 100 if acc else None,
                                "prompt_tokens": rs[-1]["prompt_tokens"], "decoded": rs[-1]["decoded"]}
    result.append(entry)
json.dump({"uniskip": bench, "peers": result, "threads": int(threads), "tokens": int(tokens),
           "rounds": rounds, "draft_max": int(draft_max)}, open(f"{out}/peers.json", "w"), indent=1)

def pct(x):
    return "-" if x is None else f"{100 * x:.0f}%"

print(f"{bench['model']}, {threads} threads, {tokens} tokens (end of text never chosen), greedy, "
      f"draft max {draft_max}, {rounds} interleaved rounds after a warm-up, medians; "
      f"speedups are against each runtime's own full depth in the same round\n")
print("| prompt | runtime | configuration | decode tok/s | speedup | drafts kept |")
print("|---|---|---|---|---|---|")
for e in result:
    for cfg, v in e["uniskip"].items():
        same = "" if v["identical"] else " (output differs!)"
        acc = "-" if cfg == "full depth" else pct(v["acceptance"])
        print(f"| {e['prompt']} | uniskip | {cfg}{same} | {v['tok_s']:.1f} | {v['speedup']:.3f}x | {acc} |")
    for name, v in e["llama"].items():
        note = "" if v["prompt_tokens"] == e["prompt_tokens"] else \
            f" (read {v['prompt_tokens']} prompt tokens, uniskip {e['prompt_tokens']}!)"
        acc = "-" if name == "llama plain" else pct(v["acceptance"])
        print(f"| {e['prompt']} | llama.cpp | {name}{note} | {v['tok_s']:.1f} | {v['speedup']:.3f}x | {acc} |")
print(f"\nJSON and logs: {out}")
PY
}

usage_costs() {
    cat <<USAGE
usage: bash scripts/peers.sh costs [-m MODEL] [-t THREADS] [--rounds R]

uniskip bench --lossless --costs (every verification size of 2-8 rows, repeated and right
after a one-row draft; drafts under the 1.5x and 2x masks) beside llama-bench's raw costs of
the same batch sizes (prompt batches of k tokens at depth 64, over one-token generation at
depth 64), each relative to its own runtime's plain step. llama-bench's batches read the
logits of their last row only, where a verification reads every row, so its figures are a
floor. Interleaved: the two tools alternate, round by round; medians.
USAGE
}

costs() {
    local model=smollm2 threads=2 rounds=5
    while [ $# -gt 0 ]; do
        case "$1" in
            -m|--model) model=$2; shift 2 ;;
            -t|--threads) threads=$2; shift 2 ;;
            --rounds) rounds=$2; shift 2 ;;
            -h|--help) usage_costs; exit 0 ;;
            *) usage_costs >&2; die "unknown option: $1" 2 ;;
        esac
    done
    for v in "$threads" "$rounds"; do
        [[ "$v" =~ ^[1-9][0-9]*$ ]] || die "not a positive integer: $v" 2
    done
    local uniskip=$ROOT/target/release/uniskip
    [ -x "$uniskip" ] || die "$uniskip is missing: run cargo build --release first" 2
    [ -x "$BIN/llama-bench" ] || die "the peers are not built: run bash scripts/peers.sh build first" 2
    local gguf
    gguf=$("$uniskip" fetch "$model" 2>/dev/null | tail -n 1 | sed 's/^[^:]*: //')
    [ -f "$gguf" ] || die "cannot find model $model (uniskip fetch $model)"
    local out
    out=$CACHE/results/costs-$(date -u +%Y%m%dT%H%M%SZ)
    mkdir -p "$out"
    echo "peers: $rounds interleaved rounds of uniskip bench --lossless --costs and llama-bench ..." >&2
    local r
    for r in $(seq 1 "$rounds"); do
        UNISKIP_CPU_VARIANT=${UNISKIP_CPU_VARIANT:-haswell} "$uniskip" bench -m "$gguf" -t "$threads" \
            --lossless --costs --rounds 3 --draft-targets 1.5,2 --json \
            >"$out/uniskip-$r.json" 2>"$out/uniskip-$r.log" \
            || die "uniskip bench --costs failed; see $out/uniskip-$r.log"
        "$BIN/llama-bench" -m "$gguf" -t "$threads" -ngl 0 -p 2,3,4,5,6,7,8 -n 16 -d 64 -r 3 -o json \
            >"$out/llama-bench-$r.json" 2>"$out/llama-bench-$r.log" \
            || die "llama-bench failed; see $out/llama-bench-$r.log"
    done
    python3 - "$out" "$rounds" "$threads" <<'PY'
import json, statistics, sys

out, rounds, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ours, theirs = {}, {}
for r in range(1, rounds + 1):
    report = json.load(open(f"{out}/uniskip-{r}.json"))
    for s in report["costs"]["shapes"]:
        ours.setdefault(s["shape"], []).append((s["raw_steps"], s["switched_steps"]))
    ours.setdefault("plain ms", []).append((report["costs"]["plain_ms"], None))
    runs = json.load(open(f"{out}/llama-bench-{r}.json"))
    step = next(x["avg_ns"] / x["n_gen"] for x in runs if x["n_gen"] > 0)
    theirs.setdefault("plain ms", []).append(step / 1e6)
    for x in runs:
        if x["n_prompt"] > 0:
            theirs.setdefault(f"verify {x['n_prompt']} rows", []).append(x["avg_ns"] / step)

med = statistics.median
print(f"{report['model']}, {threads} threads, depth 64, {rounds} interleaved rounds, medians; "
      "steps are relative to each runtime's own plain step\n")
print("| shape | uniskip raw | uniskip after the shape before it | overhead | llama-bench raw |")
print("|---|---|---|---|---|")
p = ours.pop("plain ms")
print(f"| plain step (ms) | {med(x for x, _ in p):.2f} | - | - | {med(theirs.pop('plain ms')):.2f} |")
for shape, xs in ours.items():
    raw, switched = med(x for x, _ in xs), med(y for _, y in xs)
    peer = theirs.get(shape)
    peer = f"{med(peer):.2f}" if peer else "-"
    print(f"| {shape} | {raw:.2f} | {switched:.2f} | {100 * (switched / raw - 1):+.1f}% | {peer} |")
print(f"\nJSON and logs: {out}")
PY
}

# `uniskip serve` beside llama-server: the same file, threads, context and slots, the same
# requests in the same interleaved rounds (scripts/serve-bench.py says how it measures).
serve() {
    local model=smollm2
    local -a rest=()
    while [ $# -gt 0 ]; do
        case "$1" in
            --model) model=$2; shift 2 ;;
            -h|--help) python3 "$ROOT/scripts/serve-bench.py" --help; exit 0 ;;
            *) rest+=("$1"); shift ;;
        esac
    done
    local uniskip=$ROOT/target/release/uniskip
    [ -x "$uniskip" ] || die "$uniskip is missing: run cargo build --release first" 2
    local gguf
    gguf=$("$uniskip" fetch "$model" 2>/dev/null | tail -n 1 | sed 's/^[^:]*: //')
    [ -f "$gguf" ] || die "cannot find model $model (uniskip fetch $model)"
    python3 "$ROOT/scripts/serve-bench.py" --model "$model" --model-file "$gguf" \
        --llama-server "$BIN/llama-server" "${rest[@]}"
}

case "${1:-}" in
    build) build ;;
    serve) shift; build >/dev/null; serve "$@" ;;
    costs) shift; build >/dev/null; costs "$@" ;;
    run) shift; build >/dev/null; run "$@" ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 2 ;;
esac

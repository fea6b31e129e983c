# uniskip tasks. One cargo profile (release) for binaries, tests and benches, so llama.cpp
# is built once.

set shell := ["bash", "-euo", "pipefail", "-c"]

cargo := "cargo"
release := "--release --locked"

# Chat with the default model (fetched on first use).
default: chat

# Chat in the terminal on the default model; extra flags go to `uniskip chat`.
chat *FLAGS: build
    ./target/release/uniskip chat {{FLAGS}}

# Serve the default model with the OpenAI API on 127.0.0.1:8080; extra flags go to
# `uniskip serve` (e.g. `just serve --parallel 8 --speedup 1.25`; docs/SERVE.md).
serve *FLAGS: build
    ./target/release/uniskip serve {{FLAGS}}

# Aggregate decode tokens/s of `uniskip serve` at 1, 4 and 8 concurrent clients, full depth
# and 2x (docs/SERVE.md, "Throughput").
serve-bench *FLAGS: build
    python3 scripts/serve-bench.py {{FLAGS}}

# Tune the default model for 1.5x (unified mask; see docs/TUNE.md): writes a tuned GGUF.
tune *FLAGS: model
    ./target/release/uniskip tune -m smollm2 --speedup 1.5 {{FLAGS}}

# Build the binary (llama.cpp with the skip hook included).
build: setup
    {{cargo}} build {{release}}

# Install what building needs when it is missing (cmake, libclang for bindgen, pip);
# `bash scripts/setup.sh --check` only reports.
setup:
    bash scripts/setup.sh

# Fetch the default model, the test models, the text corpus and Gemma 3's original
# tokenizer.json (for `uniskip check`) into the cache.
model: build
    ./target/release/uniskip fetch all

# One generation, e.g. `just run -p "Once upon a time" --speedup 1.5`.
run *FLAGS: build
    ./target/release/uniskip run {{FLAGS}}

# Every test of every crate, on the real models (fetched first). Two tests run at once, each
# driving llama.cpp on 2 threads: OpenMP threads that spin at a barrier while the other
# test's threads hold the cores slow both several times over, so the waiting threads sleep
# instead (OMP_WAIT_POLICY=PASSIVE; 320 s against 459 s for the integration binary on 2
# cores, docs/TESTS.md). It changes how long a step takes, never what it computes.
test: model
    bash fuzz/seed.sh
    OMP_WAIT_POLICY=PASSIVE {{cargo}} test {{release}} --workspace -- --test-threads 2

# The pure crates' tests alone (skip planning, GGUF checks, drafting policy, errors): no
# llama.cpp build, no models, no optimizer (about 30 s from a clean checkout on 2 cores).
# The crates' sources are fetched first: one test reads the pinned llama.cpp's
# architecture table from them.
test-pure:
    bash fuzz/seed.sh
    {{cargo}} fetch --locked
    {{cargo}} test --locked -p uniskip-skip -p uniskip-gguf -p uniskip-draft -p uniskip-error

# Speed and quality of every strategy at every target on the default model (2 threads;
# includes a `full, hook unset` row). Table on stdout; JSON, table and charts in results/.
bench *FLAGS: build
    ./target/release/uniskip bench --threads 2 {{FLAGS}}

# A smaller grid in under 3 minutes (uses the calibration profile only if it is cached).
bench-quick *FLAGS: build
    ./target/release/uniskip bench --threads 2 --targets 1.5,3 --rounds 2 --tokens 16 --windows 4 --continuation 32 --no-calibrate {{FLAGS}}

# Format and lint as CI expects.
check:
    {{cargo}} fmt --all --check
    {{cargo}} clippy {{release}} --workspace --all-targets -- -D warnings

# Print the hook revision of ffi/ and write it into .cargo/config.toml (after editing ffi/).
hook-rev:
    @rev=$(cd ffi && for f in $(ls | LC_ALL=C sort); do [ -f "$f" ] && echo "$f $(sha256sum "$f" | cut -d' ' -f1)"; done | sha256sum | cut -c1-16); \
    sed -i "s/^GGML_UNISKIP_REV = .*/GGML_UNISKIP_REV = \"$rev\"/" .cargo/config.toml; \
    echo "$rev"
    @# llama-cpp-sys-2's build script hard-links llama.cpp's libraries into target/ and fails
    @# ("File exists") on the dangling links an earlier build left there: remove them.
    @find target -maxdepth 3 -name 'lib*.so' -xtype l -delete 2>/dev/null || true

# llama.cpp's llama-lookup and llama-speculative-simple against `uniskip bench --lossless`
# on the same prompts (builds the tools once; see docs/LOSSLESS.md, "Peers").
peers *FLAGS: build
    bash scripts/peers.sh run {{FLAGS}}

# Build llama.cpp's CUDA backend module and install it beside the binary (needs nvcc, cmake).
cuda *FLAGS: build
    bash scripts/cuda-backend.sh {{FLAGS}}

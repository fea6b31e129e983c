// Storage for the per-thread skip mask and the C API the Rust engine calls.
#include "uniskip_hook.h"

#include "llama-batch.h"
#include "llama-graph.h"

#include "ggml-backend.h"
#include "ggml.h"

#include <algorithm>
#include <cstdlib>

#ifndef UNISKIP_HOOK_REV
#error "UNISKIP_HOOK_REV must be defined by uniskip.cmake"
#endif

namespace {
// The mask for the llama_decode call the calling thread is about to make. Empty = no mask.
thread_local std::vector<uint8_t> g_mask;
thread_local uint64_t g_consulted = 0;

// Per-position masks: n_positions rows of n_layer bytes (empty = none).
struct RowMasks {
    std::vector<uint8_t> masks;
    int32_t n_layer = 0;
    int32_t n_positions = 0;
    int32_t first_loss_pos = -1;
};
thread_local RowMasks g_rows;
thread_local uint64_t g_blended = 0;

// The graph input that carries the per-row factors: F32 [n_tokens, n_layer] (block il's
// factors are row il) and, when the loss is restricted, F32 [n_tokens] loss weights.
class RowMaskInput : public llm_graph_input_i {
public:
    explicit RowMaskInput(RowMasks rows) : rows(std::move(rows)) {}

    void set_input(const llama_ubatch * ubatch) override {
        const int64_t n = ubatch->n_tokens;
        const int64_t n_layer = rows.n_layer;
        std::vector<float> m(static_cast<std::size_t>(n * n_layer));
        std::vector<float> w(static_cast<std::size_t>(n));
        for (int64_t i = 0; i < n; ++i) {
            const int64_t pos = ubatch->pos[i];
            const int64_t row = std::clamp<int64_t>(pos, 0, rows.n_positions - 1);
            for (int64_t il = 0; il < n_layer; ++il) {
                m[il * n + i] = rows.masks[row * n_layer + il] != 0 ? 1.0f : 0.0f;
            }
            w[i] = pos >= rows.first_loss_pos ? 1.0f : 0.0f;
        }
        ggml_backend_tensor_set(factors, m.data(), 0, m.size() * sizeof(float));
        if (loss_weights != nullptr) {
            ggml_backend_tensor_set(loss_weights, w.data(), 0, w.size() * sizeof(float));
        }
    }

    RowMasks rows;
    ggml_tensor * factors = nullptr;
    ggml_tensor * loss_weights = nullptr;
};

// Soft labels: n_positions rows of n_vocab probabilities, owned by the caller (null: none).
struct SoftLabels {
    const float * probs = nullptr;
    int64_t n_vocab = 0;
    int64_t n_positions = 0;
};
thread_local SoftLabels g_soft;
thread_local bool g_training = false;
thread_local uint64_t g_soft_rows = 0;

// The graph being built on this thread: its input, and the last block's blended output
// (the next block's input in every builder whose blocks end with build_cvec).
thread_local RowMaskInput * g_input = nullptr;
thread_local ggml_tensor * g_prev = nullptr;

// Graph slot statistics of the calling thread (uniskip_hook_take_graph_stats).
thread_local uint64_t g_slot_kept = 0;
thread_local uint64_t g_slot_new = 0;
thread_local uint64_t g_graph_reused = 0;

// How many slots are used: UNISKIP_GRAPH_SLOTS, or fewer when the environment variable of
// that name says so (1 gives every shape the same slot, as llama.cpp does; for comparisons).
int active_graph_slots() {
    static const int n = [] {
        const char * v = std::getenv("UNISKIP_GRAPH_SLOTS");
        const int asked = v != nullptr ? std::atoi(v) : UNISKIP_GRAPH_SLOTS;
        return std::clamp(asked, 1, UNISKIP_GRAPH_SLOTS);
    }();
    return n;
}

// FNV-1a, one 64-bit word at a time.
uint64_t mix(uint64_t h, uint64_t v) {
    for (int i = 0; i < 8; ++i) {
        h ^= (v >> (8 * i)) & 0xff;
        h *= 0x100000001b3ULL;
    }
    return h;
}
} // namespace

bool uniskip_skip_layer(int il) {
    ++g_consulted;
    return il >= 0 && static_cast<std::size_t>(il) < g_mask.size() && g_mask[il] == 0;
}

int uniskip_last_active_layer(int n_layer) {
    for (int il = n_layer - 1; il >= 0; --il) {
        if (!uniskip_skip_layer(il)) {
            return il;
        }
    }
    // A mask that skips every block is refused by the engine; fall back to llama.cpp's rule.
    return n_layer - 1;
}

int uniskip_graph_slots::pick(uint64_t k) {
    const int n = active_graph_slots();
    ++tick;
    int victim = 0;
    for (int i = 0; i < n; ++i) {
        if (last_use[i] != 0 && key[i] == k) {
            last_use[i] = tick;
            ++g_slot_kept;
            return i;
        }
        if (last_use[i] < last_use[victim]) {
            victim = i;
        }
    }
    key[victim] = k;
    last_use[victim] = tick;
    ++g_slot_new;
    return victim;
}

uint64_t uniskip_graph_key(uint64_t n_tokens, uint64_t n_seqs, uint64_t n_outputs, uint64_t gtype) {
    uint64_t h = 0xcbf29ce484222325ULL;
    h = mix(h, n_tokens);
    h = mix(h, n_seqs);
    h = mix(h, n_outputs);
    h = mix(h, gtype);
    h = mix(h, g_mask.size());
    for (uint8_t m : g_mask) {
        h = mix(h, m);
    }
    h = mix(h, static_cast<uint64_t>(g_rows.n_positions));
    return h;
}

void uniskip_graph_note_reused() {
    ++g_graph_reused;
}

std::vector<uint8_t> uniskip_current_mask() {
    if (g_rows.n_positions == 0) {
        return g_mask;
    }
    // A graph built without the blend must not be reused under per-position masks. (A graph
    // with the blend is never reused: its input does not implement can_reuse.)
    std::vector<uint8_t> marked = g_mask;
    marked.push_back(2);
    return marked;
}

ggml_tensor * uniskip_blend_rows(ggml_context * ctx, llm_graph_result * res, ggml_tensor * cur,
                                 int il, int64_t n_layer, int64_t n_tokens) {
    if (g_rows.n_positions == 0 || g_rows.n_layer != n_layer || il < 0 || il >= n_layer ||
        cur == nullptr || res == nullptr) {
        return cur;
    }
    if (il == 0) {
        // Block 0 is computed for every row (the engine checks): its output starts the chain.
        auto input = std::make_unique<RowMaskInput>(g_rows);
        input->factors = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, n_tokens, n_layer);
        ggml_set_input(input->factors);
        if (g_rows.first_loss_pos >= 0) {
            input->loss_weights = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, 1, n_tokens);
            ggml_set_input(input->loss_weights);
        }
        g_input = static_cast<RowMaskInput *>(res->add_input(std::move(input)));
        g_prev = cur;
        ++g_blended;
    } else {
        if (g_input == nullptr || g_prev == nullptr || cur->ne[1] != n_tokens ||
            g_prev->ne[1] != n_tokens || g_input->factors->ne[0] != n_tokens) {
            // Not the chain this blend needs: leave the graph alone; the engine sees the count.
            g_prev = nullptr;
            return cur;
        }
        ggml_tensor * factor = ggml_view_2d(ctx, g_input->factors, 1, n_tokens, sizeof(float),
                                            static_cast<std::size_t>(il) * n_tokens * sizeof(float));
        cur = ggml_add(ctx, g_prev, ggml_mul(ctx, ggml_sub(ctx, cur, g_prev), factor));
        g_prev = cur;
        ++g_blended;
    }
    if (il == n_layer - 1) {
        if (g_input != nullptr && g_input->loss_weights != nullptr) {
            cur = ggml_mul(ctx, cur, g_input->loss_weights);
        }
        g_input = nullptr;
        g_prev = nullptr;
    }
    return cur;
}

bool uniskip_training() {
    return g_training;
}

ggml_tensor * uniskip_geglu(ggml_context * ctx, ggml_tensor * a, ggml_tensor * b) {
    const float two_c = 1.5957691216057308f; // 2 * sqrt(2 / pi)
    ggml_tensor * cube = ggml_mul(ctx, a, ggml_sqr(ctx, a));
    ggml_tensor * u = ggml_scale(ctx, ggml_add(ctx, a, ggml_scale(ctx, cube, 0.044715f)), two_c);
    ggml_tensor * sigmoid = ggml_exp(ctx, ggml_neg(ctx, ggml_softplus(ctx, ggml_neg(ctx, u))));
    return ggml_mul(ctx, ggml_mul(ctx, a, sigmoid), b);
}

void uniskip_soft_labels(ggml_tensor * labels, int64_t first_pos, int64_t n_rows) {
    if (g_soft.probs == nullptr || labels == nullptr || labels->type != GGML_TYPE_F32 ||
        labels->ne[0] != g_soft.n_vocab || labels->ne[1] < n_rows || first_pos < 0 ||
        first_pos + n_rows > g_soft.n_positions) {
        // Not the window these labels were made for: the one-hot rows stay, and the engine
        // sees the count.
        return;
    }
    const std::size_t row_bytes = static_cast<std::size_t>(g_soft.n_vocab) * sizeof(float);
    ggml_backend_tensor_set(labels, g_soft.probs + first_pos * g_soft.n_vocab, 0,
                            static_cast<std::size_t>(n_rows) * row_bytes);
    g_soft_rows += static_cast<uint64_t>(n_rows);
}

extern "C" {

void uniskip_hook_set_soft_labels(const float * probs, int32_t n_vocab, int32_t n_positions) {
    if (probs == nullptr || n_vocab <= 0 || n_positions <= 0) {
        g_soft = SoftLabels{};
        return;
    }
    g_soft.probs = probs;
    g_soft.n_vocab = n_vocab;
    g_soft.n_positions = n_positions;
}

void uniskip_hook_set_training(int32_t on) {
    g_training = on != 0;
}

uint64_t uniskip_hook_take_soft_rows(void) {
    const uint64_t n = g_soft_rows;
    g_soft_rows = 0;
    return n;
}

void uniskip_hook_set_row_masks(const uint8_t * masks, int32_t n_layer, int32_t n_positions,
                                int32_t first_loss_pos) {
    g_input = nullptr;
    g_prev = nullptr;
    if (masks == nullptr || n_layer <= 0 || n_positions <= 0) {
        g_rows = RowMasks{};
        return;
    }
    g_rows.masks.assign(masks, masks + static_cast<std::size_t>(n_layer) * n_positions);
    g_rows.n_layer = n_layer;
    g_rows.n_positions = n_positions;
    g_rows.first_loss_pos = first_loss_pos;
}

uint64_t uniskip_hook_take_blended(void) {
    const uint64_t n = g_blended;
    g_blended = 0;
    return n;
}

void uniskip_hook_set_mask(const uint8_t * active, int32_t n) {
    if (active == nullptr || n <= 0) {
        g_mask.clear();
        return;
    }
    g_mask.assign(active, active + n);
}

void uniskip_hook_clear_mask(void) {
    g_mask.clear();
}

uint64_t uniskip_hook_take_consulted(void) {
    const uint64_t n = g_consulted;
    g_consulted = 0;
    return n;
}

void uniskip_hook_take_graph_stats(uint64_t * kept, uint64_t * new_slot, uint64_t * reused) {
    if (kept != nullptr) {
        *kept = g_slot_kept;
    }
    if (new_slot != nullptr) {
        *new_slot = g_slot_new;
    }
    if (reused != nullptr) {
        *reused = g_graph_reused;
    }
    g_slot_kept = 0;
    g_slot_new = 0;
    g_graph_reused = 0;
}

// The revision of ffi/ this library was built from, in the symbol's name: the Rust side
// links against the name it computed from ffi/, so a stale build fails at link time.
#define UNISKIP_CAT2(a, b) a##b
#define UNISKIP_CAT(a, b) UNISKIP_CAT2(a, b)
uint32_t UNISKIP_CAT(uniskip_hook_rev_, UNISKIP_HOOK_REV)(void) {
    return 1;
}

} // extern "C"

// The layer-skip hook as seen from inside llama.cpp.
//
// The build-time edit (uniskip.cmake) makes every model builder with the standard layer
// loop ask `uniskip_skip_layer(il)` at the top of the loop body, select its output rows in
// `uniskip_last_active_layer(n_layer)` instead of the last block, and makes the skip mask
// part of the graph-reuse comparison through `uniskip_current_mask()`.
//
// Per-position masks (training with the prompt at full depth and the continuation under the
// mask) do not remove blocks from the graph: every block is computed for every row, and
// `llm_graph_context::build_cvec`, called at the end of each block, blends each row's output
// with its input, `out = in + m_row * (block(in) - in)`, m_row in {0, 1} a graph input. A row
// with m_row = 0 passes its residual through, exactly as a skipped block does at inference.
//
// The mask lives in thread-local storage: llama.cpp builds the graph for a micro-batch on
// the thread that calls llama_decode, so a mask set by that thread just before the call
// reaches the builder, and no other thread (or context) can see it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

// True when the calling thread's mask says block `il` must be skipped.
bool uniskip_skip_layer(int il);

// Index of the last block the calling thread's mask computes (n_layer - 1 without a mask).
int uniskip_last_active_layer(int n_layer);

// A copy of the calling thread's mask (empty without a mask): kept in llm_graph_params so a
// graph built under one mask is never reused under another.
std::vector<uint8_t> uniskip_current_mask();

struct ggml_context;
struct ggml_tensor;
class llm_graph_result;

// The end-of-block step of llm_graph_context::build_cvec: returns `cur` unchanged unless the
// calling thread has per-position masks, then the per-row blend of block `il` (and, after the
// last block, the loss weighting; see uniskip_hook_set_row_masks).
ggml_tensor * uniskip_blend_rows(ggml_context * ctx, llm_graph_result * res, ggml_tensor * cur,
                                 int il, int64_t n_layer, int64_t n_tokens);

// True while the calling thread runs training epochs (uniskip_hook_set_training): graph
// builders then use only operations ggml can differentiate.
bool uniskip_training();

// gelu(a) * b built from operations with a backward pass, for training graphs: ggml's fused
// GEGLU has none. gelu(x) = 0.5 x (1 + tanh(c (x + 0.044715 x^3))) = x * sigmoid(2 c (x +
// 0.044715 x^3)), c = sqrt(2 / pi), and sigmoid(u) = exp(-softplus(-u)).
ggml_tensor * uniskip_geglu(ggml_context * ctx, ggml_tensor * a, ggml_tensor * b);

// Called by llama_context::opt_epoch_iter after it has written one-hot labels for the rows
// at positions first_pos .. first_pos + n_rows - 1 of a training window: when the calling
// thread has soft labels (uniskip_hook_set_soft_labels) that cover those rows with the
// labels' vocabulary, they replace the one-hot rows. The cross-entropy loss then measures
// the model against a whole distribution per row (knowledge distillation).
void uniskip_soft_labels(ggml_tensor * labels, int64_t first_pos, int64_t n_rows);

// Graph slots. llama.cpp keeps the graph of the last decode and reuses it when the next
// micro-batch has the same shape; a lossless generation alternates between a few shapes (a
// one-row draft under a mask, a k-row verification at full depth, a one-row plain step), so
// one remembered graph means a rebuild at every switch, and on CUDA a re-captured CUDA graph
// (its graphs are keyed by the address of the graph's first node, which one shared graph
// buffer gives every shape). The edited llama_context keeps one graph result and one
// scheduler per shape in UNISKIP_GRAPH_SLOTS slots: a shape that comes back finds its graph
// built and allocated in its own scheduler and runs it as it is (llama.cpp's own reuse rule,
// applied per slot), and a GPU backend finds the device graph it captured for it. Each
// scheduler holds its own compute buffers, sized for its shape.
constexpr int UNISKIP_GRAPH_SLOTS = 16;

// Which slot each shape owns, least recently used first to go.
struct uniskip_graph_slots {
    uint64_t key[UNISKIP_GRAPH_SLOTS] = {};
    uint64_t last_use[UNISKIP_GRAPH_SLOTS] = {};
    uint64_t tick = 0;

    // The slot for the shape `key`: its own when it has one, else the least recently used
    // (or an unused) one, which it then owns. Counted in the calling thread's statistics.
    int pick(uint64_t key);
};

// The shape of a micro-batch as far as graph slots go: its row and sequence counts, its
// output rows, the graph type and the calling thread's mask (or per-position masks).
uint64_t uniskip_graph_key(uint64_t n_tokens, uint64_t n_seqs, uint64_t n_outputs, uint64_t gtype);

// Called when llama_context reused the previous graph without building one.
void uniskip_graph_note_reused();

extern "C" {
// C API used by the Rust engine.

// Sets the calling thread's mask: active[i] != 0 computes block i. n == 0 clears it.
void uniskip_hook_set_mask(const uint8_t * active, int32_t n);

// Clears the calling thread's mask (every block computed, the unhooked path).
void uniskip_hook_clear_mask(void);

// Sets per-position masks for the calling thread's next graph builds: the row at position p
// computes block i when masks[min(p, n_positions - 1) * n_layer + i] != 0. Every row must
// compute block 0. When first_loss_pos >= 0, rows at positions before it leave the last block
// as zeros (their logits are all zero, so a cross-entropy loss there is the constant
// log(vocabulary) and gives no gradient): the loss is taken on the later rows only.
// n_positions == 0 clears them. A block mask set with uniskip_hook_set_mask must not be set
// at the same time.
void uniskip_hook_set_row_masks(const uint8_t * masks, int32_t n_layer, int32_t n_positions,
                                int32_t first_loss_pos);

// Sets soft training labels for the calling thread's next training epochs: row p (a window
// position) is the distribution probs[p * n_vocab .. (p + 1) * n_vocab]. The memory is not
// copied: it must stay valid until the labels are cleared (n_positions == 0 clears them).
void uniskip_hook_set_soft_labels(const float * probs, int32_t n_vocab, int32_t n_positions);

// Marks the calling thread as running training epochs (on != 0) or not.
void uniskip_hook_set_training(int32_t on);

// Number of label rows replaced by soft labels since the last call, then resets it.
uint64_t uniskip_hook_take_soft_rows(void);

// Number of blocks blended per row since the last call, then resets it. A graph built under
// per-position masks blends every block; fewer means the architecture's builder does not end
// its blocks with build_cvec, or its last block's rows were selected (not every row output).
uint64_t uniskip_hook_take_blended(void);

// Number of times the calling thread's model builders consulted the hook since the last
// call, then resets it. Zero after a graph build means the architecture has no hook.
uint64_t uniskip_hook_take_consulted(void);

// The calling thread's graph statistics since the last call, then resets them: decodes whose
// shape found its own slot (`kept`), decodes that took a slot from another shape or an unused
// one (`new_slot`), and decodes that ran the previous graph without building (`reused`).
// Any of the pointers may be null.
void uniskip_hook_take_graph_stats(uint64_t * kept, uint64_t * new_slot, uint64_t * reused);
}

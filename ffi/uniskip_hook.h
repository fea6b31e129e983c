// The layer-skip hook as seen from inside llama.cpp.
//
// The build-time edit (uniskip.cmake) makes every model builder with the standard layer
// loop ask `uniskip_skip_layer(il)` at the top of the loop body, select its output rows in
// `uniskip_last_active_layer(n_layer)` instead of the last block, and makes the skip mask
// part of the graph-reuse comparison through `uniskip_current_mask()`.
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

extern "C" {
// C API used by the Rust engine.

// Sets the calling thread's mask: active[i] != 0 computes block i. n == 0 clears it.
void uniskip_hook_set_mask(const uint8_t * active, int32_t n);

// Clears the calling thread's mask (every block computed, the unhooked path).
void uniskip_hook_clear_mask(void);

// Number of times the calling thread's model builders consulted the hook since the last
// call, then resets it. Zero after a graph build means the architecture has no hook.
uint64_t uniskip_hook_take_consulted(void);
}

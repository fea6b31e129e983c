// Storage for the per-thread skip mask and the C API the Rust engine calls.
#include "uniskip_hook.h"

#ifndef UNISKIP_HOOK_REV
#error "UNISKIP_HOOK_REV must be defined by uniskip.cmake"
#endif

namespace {
// The mask for the llama_decode call the calling thread is about to make. Empty = no mask.
thread_local std::vector<uint8_t> g_mask;
thread_local uint64_t g_consulted = 0;
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

std::vector<uint8_t> uniskip_current_mask() {
    return g_mask;
}

extern "C" {

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

// The revision of ffi/ this library was built from, in the symbol's name: the Rust side
// links against the name it computed from ffi/, so a stale build fails at link time.
#define UNISKIP_CAT2(a, b) a##b
#define UNISKIP_CAT(a, b) UNISKIP_CAT2(a, b)
uint32_t UNISKIP_CAT(uniskip_hook_rev_, UNISKIP_HOOK_REV)(void) {
    return 1;
}

} // extern "C"

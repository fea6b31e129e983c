//! The C API of the skip hook compiled into llama.cpp (ffi/uniskip_hook.cpp).
//!
//! The mask is thread-local on the C++ side: llama.cpp builds a micro-batch's graph on the
//! thread that calls `llama_decode`, so [`MaskGuard`] sets it just before a decode and
//! clears it right after, on the same thread.

include!(concat!(env!("OUT_DIR"), "/hook_rev.rs"));

unsafe extern "C" {
    fn uniskip_hook_set_mask(active: *const u8, n: i32);
    fn uniskip_hook_clear_mask();
    fn uniskip_hook_take_consulted() -> u64;
    fn uniskip_hook_set_row_masks(
        masks: *const u8,
        n_layer: i32,
        n_positions: i32,
        first_loss_pos: i32,
    );
    fn uniskip_hook_take_blended() -> u64;
    fn uniskip_hook_set_soft_labels(probs: *const f32, n_vocab: i32, n_positions: i32);
    fn uniskip_hook_take_soft_rows() -> u64;
    fn uniskip_hook_set_training(on: i32);
    fn uniskip_hook_take_graph_stats(kept: *mut u64, new_slot: *mut u64, reused: *mut u64);
}

/// Sets the calling thread's skip mask for as long as it lives; clears it on drop.
pub(crate) struct MaskGuard {
    // Not Send: the mask belongs to the thread that set it.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl MaskGuard {
    /// `active[i] != 0` computes block `i`; `None` leaves the hook unset (llama.cpp's own path).
    pub(crate) fn set(active: Option<&[u8]>) -> Self {
        match active {
            // SAFETY: the pointer and length describe a live slice; the callee copies it.
            Some(bytes) => unsafe { uniskip_hook_set_mask(bytes.as_ptr(), bytes.len() as i32) },
            // SAFETY: no arguments; clears thread-local state.
            None => unsafe { uniskip_hook_clear_mask() },
        }
        MaskGuard {
            _not_send: std::marker::PhantomData,
        }
    }
}

impl Drop for MaskGuard {
    fn drop(&mut self) {
        // SAFETY: no arguments; clears thread-local state.
        unsafe { uniskip_hook_clear_mask() }
    }
}

/// Sets the calling thread's per-position masks for as long as it lives; clears them on drop.
///
/// Every block is then computed for every row and each row keeps or discards a block's
/// result by its own mask (docs/DESIGN.md section 2): row `p` uses `rows[min(p, n - 1)]`.
pub(crate) struct RowMaskGuard {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl RowMaskGuard {
    /// `rows` holds `n_positions` masks of `n_layer` bytes, one after the other; rows at
    /// positions before `first_loss_pos` (when given) produce all-zero logits.
    pub(crate) fn set(rows: &[u8], n_layer: usize, first_loss_pos: Option<usize>) -> Self {
        let n_positions = rows.len() / n_layer.max(1);
        let first = first_loss_pos.map_or(-1, |p| p as i32);
        // SAFETY: the pointer and lengths describe a live slice of n_positions * n_layer
        // bytes; the callee copies it.
        unsafe {
            uniskip_hook_set_row_masks(rows.as_ptr(), n_layer as i32, n_positions as i32, first)
        };
        RowMaskGuard {
            _not_send: std::marker::PhantomData,
        }
    }
}

impl Drop for RowMaskGuard {
    fn drop(&mut self) {
        // SAFETY: a null pointer with zero positions clears thread-local state.
        unsafe { uniskip_hook_set_row_masks(std::ptr::null(), 0, 0, -1) }
    }
}

/// Lends the calling thread's training epochs soft labels (one distribution per window
/// position) for as long as it lives; clears them on drop. The labels are borrowed, not
/// copied: the guard keeps the borrow alive.
pub(crate) struct SoftLabelGuard<'a> {
    _labels: std::marker::PhantomData<&'a [f32]>,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl<'a> SoftLabelGuard<'a> {
    /// `probs` holds `probs.len() / n_vocab` rows of `n_vocab` probabilities.
    pub(crate) fn set(probs: &'a [f32], n_vocab: usize) -> Self {
        let n_positions = probs.len() / n_vocab.max(1);
        // SAFETY: the pointer describes `n_positions * n_vocab` live floats that stay
        // borrowed (and so valid) until the guard's drop clears the pointer.
        unsafe { uniskip_hook_set_soft_labels(probs.as_ptr(), n_vocab as i32, n_positions as i32) };
        SoftLabelGuard {
            _labels: std::marker::PhantomData,
            _not_send: std::marker::PhantomData,
        }
    }
}

impl Drop for SoftLabelGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: a null pointer clears thread-local state.
        unsafe { uniskip_hook_set_soft_labels(std::ptr::null(), 0, 0) }
    }
}

/// Marks the calling thread as running training epochs for as long as it lives: graph
/// builders then use only operations ggml can differentiate (a composed GEGLU instead of
/// the fused one).
pub(crate) struct TrainingGuard {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl TrainingGuard {
    /// Marks the calling thread until the guard drops.
    pub(crate) fn set() -> Self {
        // SAFETY: sets thread-local state.
        unsafe { uniskip_hook_set_training(1) };
        TrainingGuard {
            _not_send: std::marker::PhantomData,
        }
    }
}

impl Drop for TrainingGuard {
    fn drop(&mut self) {
        // SAFETY: clears thread-local state.
        unsafe { uniskip_hook_set_training(0) }
    }
}

/// How many training label rows were replaced by soft labels on this thread since the last
/// call.
pub(crate) fn take_soft_rows() -> u64 {
    // SAFETY: no arguments; reads and resets thread-local state.
    unsafe { uniskip_hook_take_soft_rows() }
}

/// How many blocks graph builds on this thread blended per row since the last call.
pub(crate) fn take_blended() -> u64 {
    // SAFETY: no arguments; reads and resets thread-local state.
    unsafe { uniskip_hook_take_blended() }
}

/// How many times model builders on this thread consulted the hook since the last call.
///
/// Zero after a graph was built means the architecture's builder carries no hook.
pub(crate) fn take_consulted() -> u64 {
    // SAFETY: no arguments; reads and resets thread-local state.
    unsafe { uniskip_hook_take_consulted() }
}

/// What llama.cpp did with its graphs for the decodes on this thread since the last call
/// (ffi/uniskip_hook.h, graph slots).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GraphStats {
    /// Decodes whose shape (rows, sequences, outputs, mask) found the graph slot it had
    /// before: its graph keeps its addresses, so a GPU backend finds its captured graph again.
    pub kept: u64,
    /// Decodes whose shape took a slot from another shape (or an unused one).
    pub new_slot: u64,
    /// Decodes that ran the previous graph as it was, without building one.
    pub reused: u64,
}

/// Takes (reads and resets) this thread's graph statistics.
pub fn take_graph_stats() -> GraphStats {
    let mut stats = GraphStats::default();
    // SAFETY: three valid pointers to u64s that live across the call; the callee writes them.
    unsafe {
        uniskip_hook_take_graph_stats(&mut stats.kept, &mut stats.new_slot, &mut stats.reused)
    };
    stats
}

/// Proves at link time, and reports at run time, that llama.cpp carries this revision of
/// the hook: the symbol exists only in a library built from the same ffi/ files.
pub fn revision() -> &'static str {
    // SAFETY: a function without arguments that returns a constant.
    let linked = unsafe { uniskip_hook_rev() };
    debug_assert_eq!(linked, 1);
    HOOK_REV
}

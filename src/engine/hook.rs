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

/// How many times model builders on this thread consulted the hook since the last call.
///
/// Zero after a graph was built means the architecture's builder carries no hook.
pub(crate) fn take_consulted() -> u64 {
    // SAFETY: no arguments; reads and resets thread-local state.
    unsafe { uniskip_hook_take_consulted() }
}

/// Proves at link time, and reports at run time, that llama.cpp carries this revision of
/// the hook: the symbol exists only in a library built from the same ffi/ files.
pub fn revision() -> &'static str {
    // SAFETY: a function without arguments that returns a constant.
    let linked = unsafe { uniskip_hook_rev() };
    debug_assert_eq!(linked, 1);
    HOOK_REV
}

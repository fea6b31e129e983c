//! Feeds arbitrary bytes to the GGUF validator: it must never panic, never allocate in
//! proportion to a claimed count, and every refusal must be one line.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The module itself, not the uniskip crate: fuzzing must not build llama.cpp.
#[path = "../../src/models/validate.rs"]
#[allow(dead_code)]
mod validate;

fuzz_target!(|data: &[u8]| {
    match validate::validate_bytes(data) {
        Ok(s) => {
            // What a caller relies on when a file passes.
            assert!(s.data_offset <= s.file_size);
            assert_eq!(s.data_offset % s.alignment, 0);
            assert!((1..=validate::MAX_BLOCK_COUNT as usize).contains(&s.block_count));
            assert!(validate::ARCHITECTURES.contains(&s.architecture.as_str()));
        }
        Err(problem) => {
            let message = problem.to_string();
            assert!(
                !message.contains('\n') && !message.contains('\r'),
                "{message}"
            );
        }
    }
});

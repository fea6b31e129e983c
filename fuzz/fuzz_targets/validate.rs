//! Feeds arbitrary bytes to the GGUF validator: it must never panic, never allocate in
//! proportion to a claimed count, and every refusal must be one line.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The pure GGUF crate, not uniskip: fuzzing must not build llama.cpp.
use uniskip_gguf as gguf;

fuzz_target!(|data: &[u8]| {
    match gguf::validate_bytes(data) {
        Ok(s) => {
            // What a caller relies on when a file passes.
            assert!(s.data_offset <= s.file_size);
            assert_eq!(s.data_offset % s.alignment, 0);
            assert!((1..=gguf::MAX_BLOCK_COUNT as usize).contains(&s.block_count));
            assert!(gguf::ARCHITECTURES.contains(&s.architecture.as_str()));
            // What is kept is bounded by what the file holds.
            assert_eq!(s.tensors.len() as u64, s.n_tensors);
            assert!(s.tensors.iter().all(|t| t.shape.len() <= 4 && t.name.len() <= 63));
            assert!(s.array_elements <= data.len() as u64);
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

//! What every layer of uniskip shares about failure, at the bottom of the crate graph so
//! any crate can say "this is the user's input" without importing the apps.
//!
//! An error is either the user's to fix (a flag value, a prompt, a model file): exit code
//! [`EXIT_BAD_INPUT`]; or a failure of the world (a download, the disk, llama.cpp at
//! work): [`EXIT_FAILURE`]. Typed errors of the lower crates answer `is_user_error()`
//! themselves; [`BadInput`] is the plain one, for input checks that have no type of their
//! own.

/// Exit code of an error the user can fix by changing what they gave.
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit code of any other failure.
pub const EXIT_FAILURE: u8 = 1;

// A script tells the two apart, and neither reads as success.
const _: () = assert!(EXIT_BAD_INPUT != EXIT_FAILURE && EXIT_BAD_INPUT != 0 && EXIT_FAILURE != 0);

/// An error in what the user gave (a flag value, a prompt, a model file): exit code
/// [`EXIT_BAD_INPUT`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_displays_its_message_alone() {
        let e = BadInput("--speedup 0.5: must be at least 1".into());
        assert_eq!(e.to_string(), "--speedup 0.5: must be at least 1");
    }
}

//! Whose fault an error is, and the exit code that follows from it.
//!
//! Every typed error that can reach the command line says itself whether the user can fix
//! it (`is_user_error`): a wrong flag value, prompt or model file gives exit code 2, a
//! failure of the world (a download, the disk, llama.cpp at work) exit code 1. The apps
//! only look the answer up here, so a new error variant decides its exit code where it is
//! declared.

use std::error::Error;

pub use uniskip_error::BadInput;
use uniskip_error::{EXIT_BAD_INPUT, EXIT_FAILURE};

/// The exit code for an error: 2 when any cause in its chain is the user's fault, else 1.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    if error.chain().any(is_user_error) {
        EXIT_BAD_INPUT
    } else {
        EXIT_FAILURE
    }
}

/// Whether `cause` is one of the typed errors that blame the input.
fn is_user_error(cause: &(dyn Error + 'static)) -> bool {
    /// Asks the first of the listed types that `cause` is.
    macro_rules! ask {
        ($($ty:ty),+ $(,)?) => {
            $(if let Some(e) = cause.downcast_ref::<$ty>() {
                return e.is_user_error();
            })+
        };
    }
    if cause.is::<BadInput>() {
        return true;
    }
    ask!(
        crate::models::ModelError,
        crate::gguf::InvalidModel,
        crate::skip::PlanError,
        crate::skip::CostError,
        crate::skip::SettingsError,
        crate::skip::LayerListError,
        crate::engine::EngineError,
    );
    false
}

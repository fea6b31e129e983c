//! Finding a cached catalog model by its sha256: a tuned file names its base model only
//! by hash, and `ppl` and `bench` need that base as their quality reference.

use std::path::PathBuf;

use super::catalog::Kind;
use super::{ModelError, Progress, Store};

/// The cached catalog model whose sha256 is `sha256` (lowercase hex), checked against
/// its catalog hash as every cached model is; `None` when no catalog model has that hash
/// or it is not downloaded. Nothing is fetched.
pub fn cached_model_with_sha256(sha256: &str) -> Result<Option<PathBuf>, ModelError> {
    let store = Store::open()?;
    for entry in &store.catalog.entries {
        let same = entry
            .sha256
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case(sha256));
        if entry.kind == Kind::Model && same && store.check_present(entry, Progress::Quiet)? {
            return Ok(Some(store.path_of(entry)));
        }
    }
    Ok(None)
}

//! The cost-model probe: decode time per token at a few depths on this machine, fitted to
//! `a + b * active_blocks` (docs/DESIGN.md section 4), and cached per model file and threads.
//!
//! The probe decodes a short stretch at each depth, several rounds interleaved, and fits
//! the per-depth medians; a few seconds on SmolLM2. The fit is what `--speedup-mode
//! measured` plans with: the embedding lookup, output head and sampling do not shrink when
//! blocks are skipped, so block counts alone overstate the speedup.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::speed::{self, median};
use uniskip_engine::{LlamaToken, Result, Session};
use uniskip_skip::{CostModel, Depth, Plan, StrategySpec, plan};

/// A fitted cost model with the measurements behind it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Probe {
    /// The fit.
    pub cost: CostModel,
    /// `(active blocks, median seconds per token)` measured.
    pub samples: Vec<(usize, f64)>,
    /// Decode threads it was measured with.
    pub threads: i32,
}

impl Probe {
    /// Full-depth decode tokens/s according to the fit.
    pub fn full_depth_tokens_per_s(&self, n_layer: usize) -> f64 {
        1.0 / self.cost.predict_s(n_layer)
    }
}

/// Depths the probe measures: full, about half, and the shallowest allowed (2 blocks).
fn probe_depths(n_layer: usize) -> Vec<usize> {
    let mut depths = vec![n_layer, n_layer.div_ceil(2), 2];
    depths.dedup();
    depths
}

/// Measures and fits. `steps` tokens per measurement, `rounds` interleaved rounds.
pub fn measure(
    session: &mut Session<'_>,
    prompt: &[LlamaToken],
    steps: usize,
    rounds: usize,
    threads: i32,
) -> Result<Probe> {
    let n_layer = session.model().n_layer();
    let depths = probe_depths(n_layer);
    let configs: Vec<speed::Config> = depths
        .iter()
        .map(|&k| speed::Config {
            label: format!("{k} blocks"),
            batch: session.n_seq(),
            plan: Some(Plan::fixed(
                plan(&StrategySpec::Unified, n_layer, Depth::Kept(k), 0).expect("2..=L blocks"),
            )),
        })
        .collect();
    let results = speed::measure(
        std::slice::from_mut(session),
        prompt,
        steps,
        &configs,
        rounds,
        &mut |_, _| {},
    )?;
    let samples: Vec<(usize, f64)> = depths
        .iter()
        .zip(&results)
        .map(|(&k, m)| {
            let seconds: Vec<f64> = m.decode.iter().map(|tps| 1.0 / tps).collect();
            (k, median(&seconds))
        })
        .collect();
    let cost = CostModel::fit(&samples)
        .map_err(|e| uniskip_engine::EngineError::Decode(format!("cost model: {e}")))?;
    Ok(Probe {
        cost,
        samples,
        threads,
    })
}

/// Where the probe for `model_file` at `threads` is cached, and the key it must match.
fn cache_entry(model_file: &Path, threads: i32) -> Option<(PathBuf, String)> {
    cache_file(model_file, &format!("t{threads}"), "cost")
}

/// A file in the profile cache for measurements of `model_file` under `setting` (thread
/// count, batch), named `<what>-<model>-<setting>.json`, and the key its content must
/// carry: the file's size and time, the setting, and the hook revision (a new build may
/// run at another speed).
pub(super) fn cache_file(
    model_file: &Path,
    setting: &str,
    what: &str,
) -> Option<(PathBuf, String)> {
    let meta = std::fs::metadata(model_file).ok()?;
    let mtime = meta
        .modified()
        .ok()?
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()?
        .as_secs();
    let stem = model_file.file_stem()?.to_string_lossy().into_owned();
    let dir = crate::models::cache_dir().ok()?.join("profiles");
    let key = format!(
        "{stem}:{}:{mtime}:{setting}:{}",
        meta.len(),
        uniskip_engine::hook::revision()
    );
    Some((dir.join(format!("{what}-{stem}-{setting}.json")), key))
}

#[derive(Serialize, Deserialize)]
struct Cached {
    key: String,
    probe: Probe,
}

/// The cached probe for this model file and thread count, if one was measured.
pub fn cached(model_file: &Path, threads: i32) -> Option<Probe> {
    let (path, key) = cache_entry(model_file, threads)?;
    let cached: Cached = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    (cached.key == key).then_some(cached.probe)
}

/// Remembers `probe` for this model file and thread count (best effort: a cache that
/// cannot be written only costs a new probe next time).
pub fn store(model_file: &Path, probe: &Probe) {
    let Some((path, key)) = cache_entry(model_file, probe.threads) else {
        return;
    };
    let value = Cached {
        key,
        probe: probe.clone(),
    };
    write_best_effort(&path, &value);
}

/// Writes `value` as JSON to `path`, creating its directory; failures are ignored (a
/// cache that cannot be written only costs a new measurement).
pub(super) fn write_best_effort(path: &Path, value: &impl Serialize) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Ok(bytes) = serde_json::to_vec_pretty(value) {
        let _ = std::fs::write(path, bytes);
    }
}

/// The cached probe, or a new measurement that is then cached.
pub fn cached_or_measure(
    model_file: &Path,
    session: &mut Session<'_>,
    prompt: &[LlamaToken],
    threads: i32,
) -> Result<(Probe, bool)> {
    if let Some(p) = cached(model_file, threads) {
        return Ok((p, true));
    }
    let probe = measure(session, prompt, 32, 3, threads)?;
    store(model_file, &probe);
    Ok((probe, false))
}

#[cfg(test)]
mod tests {
    use super::probe_depths;

    #[test]
    fn probe_depths_span_full_to_two_blocks() {
        assert_eq!(probe_depths(30), vec![30, 15, 2]);
        assert_eq!(probe_depths(3), vec![3, 2]);
    }
}

//! The engine thread's speed probes: a quick full-depth timing for the achieved speedup,
//! and the cost-model probe that measured speedup mode plans with.

use super::protocol::{Baseline, BaselineSource, Event};
use super::worker::{Shared, WorkerSetup};
use crate::engine::{LlamaToken, Session};
use crate::measure::probe::{self, Probe};
use crate::measure::speed::{median, time_decode};
use crate::skip::Mask;

/// Tokens decoded per probe round, and rounds per depth (the median is kept).
const PROBE_STEPS: usize = 12;
const PROBE_ROUNDS: usize = 3;

/// What the engine knows, or measures, of decode speed when it starts.
#[derive(Clone, Debug)]
pub struct StartProbe {
    /// A cost-model probe for measured mode, and whether it was measured just now (its
    /// fit then also gives the full-depth speed) rather than cached by an earlier run.
    pub cost: Option<(Probe, bool)>,
    /// Time a few full-depth decodes for the full-depth speed (cut short when a message
    /// arrives); a cached probe is not trusted for this, as the machine's load changes.
    pub quick: bool,
}

/// Measures full-depth decode speed (a few short runs) for the achieved speedup.
/// `interrupted` is asked between runs: nobody should wait for this, so a message that
/// arrives cuts it short (the first full-depth reply then gives the full-depth speed).
pub(super) fn quick(
    session: &mut Session<'_>,
    shared: &Shared,
    interrupted: &mut dyn FnMut() -> bool,
) {
    shared.send(Event::Probing);
    let model = session.model();
    let prompt = match model.tokenize(crate::measure::PROBE_PROMPT, true) {
        Ok(p) if !p.is_empty() => p,
        Ok(_) => return shared.send(Event::ProbeFailed("the probe prompt is empty".into())),
        Err(e) => return shared.send(Event::ProbeFailed(e.to_string())),
    };
    let full = Mask::full(model.n_layer());
    // A first short run warms caches and threads; it is not counted.
    let measured = time_decode(session, &prompt, 4, Some(&full))
        .map_err(|e| e.to_string())
        .and_then(|_| seconds_per_token(session, &prompt, &full, interrupted));
    session.clear();
    match measured {
        Ok(Some(t)) => shared.send(Event::Baseline(Baseline {
            tokens_per_s: 1.0 / t,
            source: BaselineSource::Probe,
        })),
        Ok(None) => shared.send(Event::ProbeFailed(
            "speed probe put off for your message: the first full-depth reply gives \
             the full-depth speed"
                .into(),
        )),
        Err(e) => shared.send(Event::ProbeFailed(e)),
    }
}

/// The cost-model probe that measured speedup mode plans with (the one `uniskip run
/// --speedup-mode measured` uses, cached per model file and thread count).
pub(super) fn cost(session: &mut Session<'_>, setup: &WorkerSetup, shared: &Shared) {
    shared.send(Event::Probing);
    let model = session.model();
    let result = model
        .tokenize(crate::measure::PROBE_PROMPT, true)
        .and_then(|prompt| {
            probe::cached_or_measure(&setup.model_path, session, &prompt, setup.context.threads)
        });
    session.clear();
    match result {
        Ok((probe, from_cache)) => report(shared, &probe, model.n_layer(), !from_cache),
        Err(e) => shared.send(Event::ProbeFailed(format!(
            "no decode-time model, so no measured mode: {e}"
        ))),
    }
}

/// Sends what a cost-model probe says: the decode-time model and, when it was measured
/// just now, the full-depth speed by its fit.
pub(super) fn report(shared: &Shared, probe: &Probe, n_layer: usize, fresh: bool) {
    if fresh {
        shared.send(Event::Baseline(Baseline {
            tokens_per_s: probe.full_depth_tokens_per_s(n_layer),
            source: BaselineSource::Probe,
        }));
    }
    shared.send(Event::Cost(probe.cost));
}

/// The median time of one decode step under `mask`, over [`PROBE_ROUNDS`] runs; `None`
/// when `interrupted` says so between runs.
fn seconds_per_token(
    session: &mut Session<'_>,
    prompt: &[LlamaToken],
    mask: &Mask,
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<Option<f64>, String> {
    let mut rounds = Vec::with_capacity(PROBE_ROUNDS);
    for _ in 0..PROBE_ROUNDS {
        if interrupted() {
            return Ok(None);
        }
        let t = time_decode(session, prompt, PROBE_STEPS, Some(mask)).map_err(|e| e.to_string())?;
        rounds.push(t.as_secs_f64() / PROBE_STEPS as f64);
    }
    Ok(Some(median(&rounds)))
}

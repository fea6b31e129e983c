//! The soak run: many conversations, masks changed at random points, oracles checked at
//! checkpoints, resident memory followed over time.
//!
//! Each conversation starts from a prompt and grows in segments. Every segment draws a
//! strategy, a target and a prefill policy, and may switch the mask again part-way
//! through; some segments add a user turn at full depth (which repairs a skipped reply).
//! At each checkpoint the live state is compared with a fresh context that replays the
//! same tokens under the same per-position masks (the switch and repair oracles in one).

use std::ops::ControlFlow;
use std::time::Instant;

use serde::Serialize;

use uniskip_engine::{
    BatchToken, ContextOptions, EngineError, LlamaToken, Model, PrefillPolicy, Request, Result,
    Sampling, Session, generate,
};
use uniskip_skip::{Depth, Mask, SplitMix64, Strategy, StrategySpec, plan};

/// Settings of a soak run.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// Tokens to generate in all.
    pub tokens: usize,
    /// Check the oracles after about this many generated tokens.
    pub checkpoint_every: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Context options (one sequence).
    pub context: ContextOptions,
}

/// One checkpoint: where the run was, what memory it held, and the oracle's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Checkpoint {
    /// Tokens generated so far.
    pub generated: usize,
    /// Conversations started so far.
    pub conversations: usize,
    /// Mask changes so far.
    pub mask_changes: usize,
    /// Tokens re-run by repairs so far.
    pub repair_tokens: u64,
    /// Resident memory of the process, MiB.
    pub rss_mib: f64,
    /// Largest logit difference between the live state and the fresh replay.
    pub oracle_max_diff: f32,
    /// Tokens in the conversation that was checked.
    pub checked_tokens: usize,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    /// Checkpoints in order.
    pub checkpoints: Vec<Checkpoint>,
    /// Tokens generated.
    pub generated: usize,
    /// Seconds it took.
    pub seconds: f64,
    /// Largest oracle difference seen.
    pub worst_diff: f32,
}

/// The logit tolerance of the replay oracle (same kernels, same inputs: float noise only).
pub const ORACLE_TOLERANCE: f32 = 1e-3;

const PROMPTS: &[&str] = &[
    "Write a short story about a lighthouse keeper and a storm.",
    "Explain how a bicycle stays upright.",
    "List ten facts about the moon.",
    "Describe a market in a small town on a Saturday morning.",
];
const TURN: &str = " Please go on, and tell me more.";

/// Resident set size of this process in MiB (0 where /proc is not available).
pub fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A random mask: strategy and target drawn from what the model allows.
fn random_mask(rng: &mut SplitMix64, n_layer: usize, step: usize) -> Mask {
    let strategies = [
        Strategy::Unified,
        Strategy::EarlyExit,
        Strategy::SkipDecode,
        Strategy::Block,
        Strategy::Random,
    ];
    let strategy = strategies[rng.below(strategies.len() as u64) as usize];
    let spec = match strategy {
        Strategy::SkipDecode => StrategySpec::SkipDecode { planned_len: 32 },
        Strategy::Random => StrategySpec::Random {
            seed: rng.next_u64(),
        },
        s => StrategySpec::default_for(s).expect("not manual"),
    };
    // Full depth a quarter of the time, else a target up to 3x.
    let target = if rng.below(4) == 0 {
        1.0
    } else {
        1.0 + rng.below(9) as f64 * 0.25
    };
    plan(&spec, n_layer, Depth::Ratio(target), step).expect("targets up to 3x fit")
}

/// Replays `session`'s sequence 0 in a fresh context under the same per-position masks and
/// returns the largest logit difference for its last token.
fn replay_oracle(
    model: &Model,
    live: &Session<'_>,
    options: &ContextOptions,
    live_logits: &[f32],
) -> Result<f32> {
    let ledger = live.ledger(0)?;
    let tokens: Vec<LlamaToken> = ledger.tokens().iter().map(|&t| LlamaToken(t)).collect();
    let mut fresh = model.session(options)?;
    let mut last_logits = Vec::new();
    for (start, end, computed) in ledger.runs() {
        let mask =
            Mask::from_active(computed.to_vec()).map_err(|e| EngineError::Decode(e.to_string()))?;
        for chunk_start in (start..end).step_by(fresh.n_batch()) {
            let chunk_end = (chunk_start + fresh.n_batch()).min(end);
            let batch: Vec<BatchToken> = (chunk_start..chunk_end)
                .map(|p| BatchToken {
                    seq: 0,
                    token: tokens[p],
                    logits: p + 1 == tokens.len(),
                })
                .collect();
            if let Some(&i) = fresh.decode(&batch, Some(&mask))?.last() {
                last_logits = fresh.logits(i).to_vec();
            }
        }
    }
    if fresh.repair_stats().tokens != 0 {
        return Err(EngineError::Decode(
            "the ledger's masks are not nested: a replay needed a repair".into(),
        ));
    }
    if last_logits.len() != live_logits.len() {
        return Err(EngineError::Decode(
            "the replay gave no logits for the last position".into(),
        ));
    }
    Ok(crate::quality::metrics::max_abs_diff(
        live_logits,
        &last_logits,
    ))
}

/// Runs the soak; `on_checkpoint` sees each checkpoint as it happens.
pub fn soak(
    model: &Model,
    options: &SoakOptions,
    on_checkpoint: &mut dyn FnMut(&Checkpoint),
) -> Result<SoakReport> {
    let n_layer = model.n_layer();
    let mut rng = SplitMix64::new(options.seed);
    let mut session = model.session(&options.context)?;
    let sampling = Sampling::greedy();
    let turn = model.tokenize(TURN, false)?;
    // Room for one more segment (up to 64 tokens) and a user turn after the limit.
    let limit = (options.context.n_ctx as usize)
        .saturating_sub(64 + 2 * turn.len())
        .max(32);
    let started = Instant::now();
    let (mut generated, mut conversations, mut mask_changes) = (0, 0, 0);
    let mut next_checkpoint = options.checkpoint_every;
    let mut checkpoints = Vec::new();
    let mut conversation: Vec<LlamaToken> = Vec::new();
    while generated < options.tokens {
        if conversation.is_empty() || conversation.len() > limit {
            let prompt = PROMPTS[rng.below(PROMPTS.len() as u64) as usize];
            conversation = model.tokenize(prompt, true)?;
            session.clear();
            conversations += 1;
        } else if rng.below(3) == 0 {
            conversation.extend_from_slice(&turn);
        }
        let prefill = if rng.below(2) == 0 {
            PrefillPolicy::Full
        } else {
            PrefillPolicy::Masked
        };
        let mut mask = random_mask(&mut rng, n_layer, 0);
        let switch_at = 1 + rng.below(24) as usize;
        let mut second = Some(random_mask(&mut rng, n_layer, switch_at));
        let segment = (8 + rng.below(56) as usize).min(options.tokens - generated);
        if conversation.len() + segment + 2 > options.context.n_ctx as usize {
            conversation.clear();
            continue;
        }
        let before = mask_changes;
        let mut used = Vec::new();
        let out = generate(
            &mut session,
            &Request {
                prompts: std::slice::from_ref(&conversation),
                max_tokens: segment,
                prefill,
                sampling: &sampling,
                interrupt: None,
                lossless: None,
            },
            &mut |step| {
                if step == switch_at
                    && let Some(m) = second.take()
                {
                    mask = m;
                }
                if used.last() != Some(&mask) {
                    used.push(mask.clone());
                }
                mask.clone()
            },
            &mut |_| ControlFlow::Continue(()),
        )?;
        mask_changes = before + used.len();
        generated += out.generated_tokens;
        conversation.extend_from_slice(&out.tokens[0]);
        if out.generated_tokens == 0 {
            conversation.extend_from_slice(&turn);
        }
        if generated >= next_checkpoint || generated >= options.tokens {
            next_checkpoint += options.checkpoint_every;
            // One more token under a fresh random mask, then the oracle on its logits.
            let mask = random_mask(&mut rng, n_layer, 0);
            let token = *conversation.last().expect("non-empty");
            let len = session.tokens(0)?.len();
            if len == conversation.len() {
                // The last generated token is not in the cache yet only when generation
                // stopped on it; drop and re-decode it so its logits exist.
                session.truncate(0, len - 1)?;
            } else {
                session.truncate(0, len)?;
            }
            let idx = session.decode(
                &[BatchToken {
                    seq: 0,
                    token,
                    logits: true,
                }],
                Some(&mask),
            )?;
            let live_logits = session.logits(idx[0]).to_vec();
            let diff = replay_oracle(model, &session, &options.context, &live_logits)?;
            let checkpoint = Checkpoint {
                generated,
                conversations,
                mask_changes,
                repair_tokens: session.repair_stats().tokens,
                rss_mib: rss_mib(),
                oracle_max_diff: diff,
                checked_tokens: session.tokens(0)?.len(),
            };
            on_checkpoint(&checkpoint);
            checkpoints.push(checkpoint);
        }
    }
    let worst_diff = checkpoints
        .iter()
        .map(|c| c.oracle_max_diff)
        .fold(0.0, |worst, d| {
            if d.is_nan() {
                f32::INFINITY
            } else {
                worst.max(d)
            }
        });
    Ok(SoakReport {
        checkpoints,
        generated,
        seconds: started.elapsed().as_secs_f64(),
        worst_diff,
    })
}

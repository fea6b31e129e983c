//! Lossless decoding against plain full depth: the same prompts, the same generation loop
//! ([`uniskip_engine::generate`]), greedy, rounds interleaved; what each drafter accepts and
//! what it gains in decode speed, and whether its output is full depth's (compared, not
//! assumed).

use std::cell::RefCell;
use std::ops::ControlFlow;

use serde::Serialize;

use super::report::Stat;
use uniskip_engine::speculative::DraftCosts;
use uniskip_engine::{
    ContextOptions, Drafter, LlamaToken, Lossless, Model, PrefillPolicy, Request, Result, Sampling,
    generate,
};
use uniskip_skip::Mask;

/// One prompt of the benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct BenchPrompt {
    /// Short name in tables.
    pub name: String,
    /// The text as given (before any chat template).
    pub text: String,
    /// The text fed to the model: after the chat template, special tokens written out (so
    /// that other tools can be given the same prompt).
    pub fed: String,
    /// Tokens fed to the model.
    #[serde(skip)]
    pub tokens: Vec<LlamaToken>,
    /// How many (so that other tools can check they read the prompt alike).
    pub n_tokens: usize,
}

/// One configuration: plain full depth, or lossless decoding with a drafter.
#[derive(Debug, Clone)]
pub struct LosslessConfig {
    /// Label in tables.
    pub label: String,
    /// `None`: plain full-depth decoding (the reference).
    pub drafter: Option<Drafter>,
    /// The mask drafter's mask (full for the reference and lookup).
    pub mask: Mask,
}

/// Measured results of one configuration on one prompt.
#[derive(Debug, Clone, Serialize)]
pub struct LosslessCell {
    /// The configuration's label.
    pub config: String,
    /// The prompt's name.
    pub prompt: String,
    /// Blocks the drafting mask computes (the model's block count for full depth).
    pub draft_blocks: usize,
    /// Tokens generated per run.
    pub tokens: usize,
    /// Decode tokens/s, per round.
    pub decode: Stat,
    /// Decode tokens/s over full depth's in the same round, per round; median.
    pub speedup: Stat,
    /// Share of drafted tokens kept (last round).
    pub acceptance_rate: f64,
    /// Mean tokens drafted per drafting round (last round).
    pub mean_draft_len: f64,
    /// Drafted tokens (last round).
    pub draft_tokens: u64,
    /// Times drafting paused itself (last round).
    pub pauses: u64,
    /// Generated tokens equal to full depth's, position by position (every round).
    pub same_tokens: usize,
    /// Whether every round's output equalled full depth's.
    pub identical: bool,
}

/// The plan of a lossless benchmark.
pub struct LosslessBench<'a> {
    /// The model.
    pub model: &'a Model,
    /// Context settings (one sequence).
    pub context: ContextOptions,
    /// Prompts.
    pub prompts: Vec<BenchPrompt>,
    /// Configurations; the first must be the full-depth reference.
    pub configs: Vec<LosslessConfig>,
    /// Measured rounds (after a warm-up round).
    pub rounds: usize,
    /// Most tokens per generation.
    pub max_tokens: usize,
    /// Decode exactly `max_tokens` (end of text is never chosen).
    pub ignore_eos: bool,
    /// Most tokens drafted per round.
    pub draft_max: usize,
}

impl LosslessBench<'_> {
    /// Runs every configuration on every prompt, `rounds + 1` times (the first discarded),
    /// rotating the configurations' order each round; `progress(done, total)` after each run.
    pub fn run(&self, progress: &mut dyn FnMut(usize, usize)) -> Result<Vec<LosslessCell>> {
        let mut sampling = Sampling::greedy();
        sampling.ignore_eos = self.ignore_eos;
        let n_cfg = self.configs.len();
        let total = (self.rounds + 1) * self.prompts.len() * n_cfg;
        let mut done = 0;
        // rates[prompt][config] per measured round; outputs of the last run of each.
        let mut rates = vec![vec![Vec::new(); n_cfg]; self.prompts.len()];
        let mut outputs = vec![vec![Vec::new(); n_cfg]; self.prompts.len()];
        let mut identical = vec![vec![true; n_cfg]; self.prompts.len()];
        let mut stats = vec![vec![None; n_cfg]; self.prompts.len()];
        // Drafting's costs, measured by the warm-up round and every run after it: as in
        // `run` and the chat, a run starts from what earlier runs measured.
        let costs = RefCell::new(DraftCosts::default());
        let mut sessions = Vec::new();
        for _ in 0..n_cfg {
            sessions.push(self.model.session(&self.context)?);
        }
        for round in 0..=self.rounds {
            for (p, prompt) in self.prompts.iter().enumerate() {
                let prompts = [prompt.tokens.clone()];
                for i in 0..n_cfg {
                    let c = (i + round) % n_cfg;
                    let config = &self.configs[c];
                    let g = generate(
                        &mut sessions[c],
                        &Request {
                            prompts: &prompts,
                            max_tokens: self.max_tokens,
                            prefill: PrefillPolicy::Full,
                            sampling: &sampling,
                            interrupt: None,
                            lossless: config.drafter.map(|drafter| Lossless {
                                drafter,
                                draft_max: self.draft_max,
                                draft_model: None,
                                draft_mask: None,
                                costs: Some(&costs),
                            }),
                        },
                        &mut |_| config.mask.clone(),
                        &mut |_| ControlFlow::Continue(()),
                    )?;
                    if round > 0 {
                        rates[p][c].push(g.decode_tokens_per_s());
                    }
                    outputs[p][c] = g.tokens[0].clone();
                    stats[p][c] = g.speculation;
                    done += 1;
                    progress(done, total);
                }
                for c in 1..n_cfg {
                    identical[p][c] &= outputs[p][c] == outputs[p][0];
                }
            }
        }
        let mut cells = Vec::new();
        for (p, prompt) in self.prompts.iter().enumerate() {
            for (c, config) in self.configs.iter().enumerate() {
                let ratios: Vec<f64> = rates[p][c]
                    .iter()
                    .zip(&rates[p][0])
                    .map(|(x, full)| x / full)
                    .collect();
                let s = stats[p][c].clone().unwrap_or_default();
                cells.push(LosslessCell {
                    config: config.label.clone(),
                    prompt: prompt.name.clone(),
                    draft_blocks: config.mask.n_active(),
                    tokens: outputs[p][c].len(),
                    decode: Stat::of(rates[p][c].clone()),
                    speedup: Stat::of(ratios),
                    acceptance_rate: s.acceptance_rate(),
                    mean_draft_len: s.mean_draft_len(),
                    draft_tokens: s.draft_tokens,
                    pauses: s.pauses,
                    same_tokens: outputs[p][c]
                        .iter()
                        .zip(&outputs[p][0])
                        .take_while(|(a, b)| a == b)
                        .count(),
                    identical: identical[p][c],
                });
            }
        }
        Ok(cells)
    }
}

/// The Markdown table of `cells`.
pub fn markdown(cells: &[LosslessCell]) -> String {
    let mut out = String::from(
        "| prompt | configuration | draft blocks | acceptance | draft len | decode tok/s (median, min..max) | speedup vs full depth | output = full depth's |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for c in cells {
        let same = if c.identical {
            format!("yes ({}/{} tokens)", c.same_tokens, c.tokens)
        } else {
            format!("**no** ({}/{} tokens)", c.same_tokens, c.tokens)
        };
        let (accept, len) = if c.draft_tokens == 0 {
            ("-".to_string(), "-".to_string())
        } else {
            (
                format!("{:.0}%", 100.0 * c.acceptance_rate),
                format!("{:.1}", c.mean_draft_len),
            )
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {}{} | {:.1} ({:.0}..{:.0}) | {:.2}x | {} |\n",
            c.prompt,
            c.config,
            c.draft_blocks,
            accept,
            len,
            if c.pauses > 0 {
                format!(", paused {}x", c.pauses)
            } else {
                String::new()
            },
            c.decode.median,
            c.decode.min,
            c.decode.max,
            c.speedup.median,
            same,
        ));
    }
    out
}

//! A context on a model: decode under a mask, with the K/V ledger and its repair rule.

use std::time::{Duration, Instant};

use llama_cpp_2::{context::LlamaContext, llama_batch::LlamaBatch, token::LlamaToken};

use super::error::{EngineError, Result};
use super::hook::{self, MaskGuard};
use super::kv::SeqLedger;
use super::model::{ContextOptions, Model};
use uniskip_skip::Mask;

/// One token of a batch: which sequence it extends, and whether its logits are wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchToken {
    /// The sequence (0-based, below the context's sequence count).
    pub seq: i32,
    /// The token.
    pub token: LlamaToken,
    /// Whether logits are computed for it.
    pub logits: bool,
}

impl BatchToken {
    /// `tokens` in order, all extending sequence `seq`, all with or all without logits.
    pub fn run_of(
        seq: i32,
        tokens: impl IntoIterator<Item = LlamaToken>,
        logits: bool,
    ) -> Vec<BatchToken> {
        tokens
            .into_iter()
            .map(|token| BatchToken { seq, token, logits })
            .collect()
    }
}

/// The cost of keeping the K/V cache exact when masks change (docs/DESIGN.md section 3).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RepairStats {
    /// Repairs made.
    pub repairs: u64,
    /// Tokens re-run.
    pub tokens: u64,
    /// Time spent re-running them.
    pub time: Duration,
}

/// A llama.cpp context plus the per-sequence record of which blocks hold valid K/V.
pub struct Session<'m> {
    model: &'m Model,
    ctx: LlamaContext<'m>,
    ledgers: Vec<SeqLedger>,
    n_batch: usize,
    n_ctx: usize,
    batch: LlamaBatch<'static>,
    hook_seen: bool,
    repair: RepairStats,
    graph_builds: u64,
    graph_slots: hook::GraphStats,
}

impl<'m> Session<'m> {
    pub(crate) fn new(model: &'m Model, ctx: LlamaContext<'m>, options: &ContextOptions) -> Self {
        let n_seq = options.n_seq.max(1) as usize;
        let n_batch = ctx.n_batch() as usize;
        // Creating the context reserved graphs on this thread: a hooked builder consulted
        // the hook while doing so.
        let hook_seen = hook::take_consulted() > 0;
        Session {
            model,
            n_ctx: ctx.n_ctx() as usize,
            ctx,
            ledgers: vec![SeqLedger::default(); n_seq],
            n_batch,
            batch: LlamaBatch::new(n_batch, n_seq as i32),
            hook_seen,
            repair: RepairStats::default(),
            graph_builds: 0,
            graph_slots: hook::GraphStats::default(),
        }
    }

    /// Whether the model's graph builder consulted the skip hook: false means the
    /// architecture's builder carries no hook, so only full depth can run.
    pub fn hook_covers_model(&self) -> bool {
        self.hook_seen
    }

    /// The model this session runs.
    pub fn model(&self) -> &'m Model {
        self.model
    }

    /// Context size in tokens (all sequences together).
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Largest batch one [`Session::decode`] call takes.
    pub fn n_batch(&self) -> usize {
        self.n_batch
    }

    /// Parallel sequences.
    pub fn n_seq(&self) -> usize {
        self.ledgers.len()
    }

    /// Tokens held in the cache, all sequences together.
    pub fn n_cached(&self) -> usize {
        self.ledgers.iter().map(SeqLedger::len).sum()
    }

    /// The tokens sequence `seq` holds, by position.
    pub fn tokens(&self, seq: i32) -> Result<&[i32]> {
        Ok(self.ledger(seq)?.tokens())
    }

    /// The ledger of sequence `seq`: which masks were in force over which positions.
    pub fn ledger(&self, seq: i32) -> Result<&SeqLedger> {
        let n_seq = self.ledgers.len();
        usize::try_from(seq)
            .ok()
            .and_then(|s| self.ledgers.get(s))
            .ok_or(EngineError::BadSequence { seq, n_seq })
    }

    /// What repairs have cost so far.
    pub fn repair_stats(&self) -> RepairStats {
        self.repair
    }

    /// How many decode calls built a new graph (the others reused the previous one).
    /// Counted through the hook, so only for architectures that carry it.
    pub fn graph_builds(&self) -> u64 {
        self.graph_builds
    }

    /// What llama.cpp did with its graphs over this session's decodes: how often a batch's
    /// shape found its own graph slot, took another's, or ran the previous graph unchanged
    /// (ffi/uniskip_hook.h, graph slots).
    pub fn graph_slots(&self) -> hook::GraphStats {
        self.graph_slots
    }

    /// The underlying context (for samplers).
    pub(crate) fn context(&self) -> &LlamaContext<'m> {
        &self.ctx
    }

    /// Logits of the `i`-th token of the last batch decoded (it must have asked for them).
    pub fn logits(&self, i: usize) -> &[f32] {
        self.ctx.get_logits_ith(i as i32)
    }

    /// Drops sequence `seq` from position `p` on (everything with `p = 0`).
    pub fn truncate(&mut self, seq: i32, p: usize) -> Result<()> {
        self.ledger(seq)?;
        self.ctx
            .clear_kv_cache_seq(Some(seq as u32), Some(p as u32), None)
            .map_err(|e| EngineError::Decode(format!("cannot drop cached positions: {e}")))?;
        self.ledgers[seq as usize].truncate(p);
        Ok(())
    }

    /// Empties every sequence.
    pub fn clear(&mut self) {
        self.ctx.clear_kv_cache();
        for ledger in &mut self.ledgers {
            *ledger = SeqLedger::default();
        }
    }

    /// Decodes one batch under `mask` (`None`: the hook stays unset, llama.cpp's own path).
    ///
    /// Positions follow each sequence's cache. Before the batch runs, any sequence missing
    /// K/V in a block the mask computes is repaired: dropped from the earliest such position
    /// and re-run under the mask. Returns, for each token that asked for logits, its index
    /// for [`Session::logits`].
    pub fn decode(&mut self, tokens: &[BatchToken], mask: Option<&Mask>) -> Result<Vec<usize>> {
        if tokens.is_empty() {
            return Ok(Vec::new());
        }
        if tokens.len() > self.n_batch {
            return Err(EngineError::BatchTooLarge {
                tokens: tokens.len(),
                n_batch: self.n_batch,
            });
        }
        for t in tokens {
            self.ledger(t.seq)?;
        }
        let bytes = self.mask_bytes(mask)?;
        let computed: Vec<bool> = match &bytes {
            Some(b) => b.iter().map(|&x| x != 0).collect(),
            None => vec![true; self.model.n_layer()],
        };
        let needed = self.n_cached() + tokens.len();
        if needed > self.n_ctx {
            return Err(EngineError::PromptTooLong {
                tokens: needed,
                n_ctx: self.n_ctx,
            });
        }
        self.repair(tokens, bytes.as_deref(), &computed)?;
        self.run_batch(tokens, bytes.as_deref(), &computed)
    }

    /// Decodes `tokens` for one sequence in batch-sized pieces under `mask`, without logits
    /// (a prompt's body: its last token is decoded with the step that wants logits).
    pub fn prefill(&mut self, seq: i32, tokens: &[LlamaToken], mask: Option<&Mask>) -> Result<()> {
        for chunk in tokens.chunks(self.n_batch) {
            self.decode(&BatchToken::run_of(seq, chunk.iter().copied(), false), mask)?;
        }
        Ok(())
    }

    fn mask_bytes(&self, mask: Option<&Mask>) -> Result<Option<Vec<u8>>> {
        let Some(mask) = mask else { return Ok(None) };
        let n_layer = self.model.n_layer();
        if mask.n_layer() != n_layer {
            return Err(EngineError::MaskLength {
                expected: n_layer,
                got: mask.n_layer(),
            });
        }
        if mask.n_active() == 0 {
            return Err(EngineError::AllSkipped(n_layer));
        }
        if !mask.is_full() && !self.hook_seen {
            return Err(EngineError::NoHook(self.model.architecture().to_string()));
        }
        Ok(Some(mask.as_bytes()))
    }

    /// Re-runs, under the new mask, every position of the batch's sequences whose K/V is
    /// missing in a block the mask computes.
    fn repair(
        &mut self,
        tokens: &[BatchToken],
        bytes: Option<&[u8]>,
        computed: &[bool],
    ) -> Result<()> {
        let mut seqs: Vec<i32> = tokens.iter().map(|t| t.seq).collect();
        seqs.sort_unstable();
        seqs.dedup();
        let mut rerun: Vec<BatchToken> = Vec::new();
        for seq in seqs {
            let ledger = &self.ledgers[seq as usize];
            let Some(p) = ledger.first_missing(computed) else {
                continue;
            };
            self.ctx
                .clear_kv_cache_seq(Some(seq as u32), Some(p as u32), None)
                .map_err(|e| {
                    EngineError::Decode(format!("cannot drop cached positions for repair: {e}"))
                })?;
            let dropped = self.ledgers[seq as usize].truncate(p);
            rerun.extend(dropped.into_iter().map(|t| BatchToken {
                seq,
                token: LlamaToken(t),
                logits: false,
            }));
        }
        if rerun.is_empty() {
            return Ok(());
        }
        let start = Instant::now();
        for chunk in rerun.chunks(self.n_batch) {
            self.run_batch(chunk, bytes, computed)?;
        }
        self.repair.repairs += 1;
        self.repair.tokens += rerun.len() as u64;
        self.repair.time += start.elapsed();
        Ok(())
    }

    fn run_batch(
        &mut self,
        tokens: &[BatchToken],
        bytes: Option<&[u8]>,
        computed: &[bool],
    ) -> Result<Vec<usize>> {
        self.batch.clear();
        let mut next_pos: Vec<usize> = self.ledgers.iter().map(SeqLedger::len).collect();
        let mut outputs = Vec::new();
        for (i, t) in tokens.iter().enumerate() {
            let pos = &mut next_pos[t.seq as usize];
            self.batch
                .add(t.token, *pos as i32, &[t.seq], t.logits)
                .map_err(|e| EngineError::Decode(e.to_string()))?;
            *pos += 1;
            if t.logits {
                outputs.push(i);
            }
        }
        let result = {
            let _mask = MaskGuard::set(bytes);
            hook::take_consulted();
            hook::take_graph_stats();
            let r = self.ctx.decode(&mut self.batch);
            let slots = hook::take_graph_stats();
            self.graph_slots.kept += slots.kept;
            self.graph_slots.new_slot += slots.new_slot;
            self.graph_slots.reused += slots.reused;
            // A hooked builder consults the hook once per block: a count above zero means
            // llama.cpp built a new graph for this batch instead of reusing the last one.
            if hook::take_consulted() > 0 {
                self.hook_seen = true;
                self.graph_builds += 1;
            }
            r
        };
        result.map_err(|e| EngineError::Decode(e.to_string()))?;
        for t in tokens {
            self.ledgers[t.seq as usize].record(&[t.token.0], computed);
        }
        Ok(outputs)
    }
}

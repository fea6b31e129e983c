//! Generation step by step for sequences that join and leave one session (continuous
//! batching): the loop of [`super::generate`] cut at its step boundaries, so that a
//! scheduler decides which sequences decode together and when a newcomer's prompt runs.
//!
//! Per sequence a lane does what [`super::generate`] does for one prompt: the same prefill
//! chunks (the prompt but its last token in batch-sized pieces, then the last token alone
//! with logits), the same sampler chain and seed, the mask of the same step, the same stop
//! rules; short pieces of several lanes may share one decode, whose rows are computed as
//! they would be alone. A lane's text therefore equals a solo generation's whatever else
//! shares the session, within the batch oracle's limits (docs/DESIGN.md section 5). Each
//! lane owns one sequence id; leaving drops its cells.

use std::time::{Duration, Instant};

use llama_cpp_2::{sampling::LlamaSampler, token::LlamaToken};

use super::error::{EngineError, Result};
use super::generate::{self, PrefillPolicy, StopReason};
use super::model::Model;
use super::sampling::{Picker, Sampling};
use super::session::{BatchToken, Session};
use super::speculative::{Emitted, Entry, Lossless, Next, SpeculationStats, Speculator};
use super::utf8::Utf8Stream;
use uniskip_skip::{Mask, Plan};

/// Most rows in a decode that runs several lanes' prompt pieces together: from 64 rows on,
/// ggml's CPU attention tiles and rounds differently from the row-by-row path a lone
/// prompt's short pieces take (the limit lossless verification keeps too).
pub const SHARED_PREFILL_ROWS: usize = super::speculative::VERIFY_ROWS_MAX;

/// What one lane generates.
pub struct LaneSpec<'a> {
    /// The prompt's tokens (at least one).
    pub prompt: Vec<LlamaToken>,
    /// Most tokens generated.
    pub max_tokens: usize,
    /// How tokens are chosen (the chain is seeded with `sampling.seed` itself).
    pub sampling: Sampling,
    /// Which blocks the prompt runs through.
    pub prefill: PrefillPolicy,
    /// The mask of every step (step 0: the prompt's when it runs masked; step `s`: the
    /// decode of the `s`-th generated token), as in [`super::generate`].
    pub plan: Plan,
    /// Lossless decoding: the plan's masks are then the mask drafter's, and every decode
    /// that produces output runs at full depth.
    pub lossless: Option<Lossless<'a>>,
    /// Most cache cells (positions) this sequence may hold, prompt included.
    pub max_cells: usize,
}

/// Where a lane stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LanePhase {
    /// Its prompt is not all decoded yet.
    Prefilling,
    /// It has a token chosen and waiting to be decoded.
    Decoding,
    /// It stopped generating.
    Finished(StopReason),
}

/// What a lane did, when it leaves.
#[derive(Debug, Clone)]
pub struct LaneReport {
    /// Prompt tokens decoded.
    pub prompt_tokens: usize,
    /// Tokens generated (an end-of-generation token is not counted).
    pub generated_tokens: usize,
    /// Time spent on the prompt's batches.
    pub prefill_time: Duration,
    /// Time of the decode calls (or lossless rounds) this lane took part in, choosing
    /// included: what its tokens cost, shared with whoever was in the same batch.
    pub decode_time: Duration,
    /// Mean number of blocks computed over the decode steps run (the plan's masks; for a
    /// lossless lane, the drafting mask's).
    pub mean_active_blocks: f64,
    /// Why it stopped (`None`: it left while still generating).
    pub stop: Option<StopReason>,
    /// What drafting did (lossless lanes only).
    pub speculation: Option<SpeculationStats>,
    /// Text the UTF-8 stream still held back (an incomplete character at the end).
    pub rest: String,
}

impl LaneReport {
    /// Generated tokens per second of [`LaneReport::decode_time`].
    pub fn decode_tokens_per_s(&self) -> f64 {
        if self.decode_time.is_zero() {
            0.0
        } else {
            self.generated_tokens as f64 / self.decode_time.as_secs_f64()
        }
    }
}

struct Lane<'a> {
    prompt: Vec<LlamaToken>,
    prefilled: usize,
    prefill_mask: Mask,
    max_tokens: usize,
    max_cells: usize,
    plan: Plan,
    speculator: Option<Speculator<'a>>,
    stream: Utf8Stream,
    /// Text emitted and not yet taken by the caller.
    text: String,
    generated: usize,
    /// The token chosen (and emitted) last, waiting for its decode.
    pending: Option<LlamaToken>,
    /// Decode steps run (the next decode runs under `plan.mask(step + 1)`).
    step: usize,
    active_sum: usize,
    stop: Option<StopReason>,
    prefill_time: Duration,
    decode_time: Duration,
}

impl Lane<'_> {
    /// Hands a chosen token to the output, as [`super::generate`]'s emitter does.
    fn emit(&mut self, model: &Model, token: LlamaToken) -> Emitted {
        if model.is_end_of_generation(token) {
            self.stop = Some(StopReason::EndOfGeneration);
            return Emitted::Ended;
        }
        self.generated += 1;
        let text = self.stream.push(&model.token_bytes(token));
        self.text.push_str(&text);
        if self.generated >= self.max_tokens {
            self.stop = Some(StopReason::MaxTokens);
            return Emitted::Ended;
        }
        Emitted::Live
    }

    /// Emits `token` and keeps it for the next decode when the lane goes on.
    fn take_choice(&mut self, model: &Model, token: LlamaToken) {
        self.pending = match self.emit(model, token) {
            Emitted::Live => Some(token),
            Emitted::Ended | Emitted::Stop => None,
        };
    }

    fn phase(&self) -> LanePhase {
        match (self.stop, self.pending) {
            (Some(reason), _) => LanePhase::Finished(reason),
            (None, Some(_)) => LanePhase::Decoding,
            (None, None) => LanePhase::Prefilling,
        }
    }
}

/// The lanes of one session, one per sequence id.
pub struct Lanes<'a> {
    lanes: Vec<Option<Lane<'a>>>,
    /// Indexed by sequence id, as the lossless rounds expect; an idle sequence holds a
    /// greedy chain that is never asked.
    pickers: Vec<Picker<'a>>,
}

impl<'a> Lanes<'a> {
    /// Lanes for every sequence of `session`, all idle.
    pub fn new(session: &Session<'_>) -> Self {
        let n = session.n_seq();
        Lanes {
            lanes: (0..n).map(|_| None).collect(),
            pickers: (0..n).map(|_| idle_picker()).collect(),
        }
    }

    /// A sequence id with no lane, if any.
    pub fn free_seq(&self) -> Option<i32> {
        self.lanes
            .iter()
            .position(Option::is_none)
            .map(|s| s as i32)
    }

    /// Lanes in use.
    pub fn busy(&self) -> usize {
        self.lanes.iter().filter(|l| l.is_some()).count()
    }

    /// Starts a lane on the free sequence `seq`: its cells are dropped, its sampler made;
    /// nothing is decoded yet.
    pub fn join(&mut self, session: &mut Session<'_>, seq: i32, spec: LaneSpec<'a>) -> Result<()> {
        let index = self.index(seq)?;
        if self.lanes[index].is_some() {
            return Err(EngineError::Decode(format!(
                "sequence {seq} already has a lane"
            )));
        }
        if spec.prompt.is_empty() {
            return Err(EngineError::Tokenize("empty prompt".into()));
        }
        if spec.prompt.len() >= spec.max_cells {
            return Err(EngineError::PromptTooLong {
                tokens: spec.prompt.len(),
                n_ctx: spec.max_cells,
            });
        }
        session.truncate(seq, 0)?;
        let model = session.model();
        let first_mask = spec.plan.mask(0).clone();
        let prefill_mask =
            generate::prefill_mask(spec.prefill, spec.lossless.is_some(), &first_mask);
        let speculator = generate::speculator(spec.lossless, model, &first_mask, &spec.sampling)?;
        let mut picker = spec.sampling.picker(model, spec.lossless.is_some());
        picker.accept_many(&spec.prompt);
        self.pickers[index] = picker;
        self.lanes[index] = Some(Lane {
            prompt: spec.prompt,
            prefilled: 0,
            prefill_mask,
            max_tokens: spec.max_tokens.max(1),
            max_cells: spec.max_cells,
            plan: spec.plan,
            speculator,
            stream: Utf8Stream::default(),
            text: String::new(),
            generated: 0,
            pending: None,
            step: 0,
            active_sum: 0,
            stop: None,
            prefill_time: Duration::ZERO,
            decode_time: Duration::ZERO,
        });
        Ok(())
    }

    /// Where lane `seq` stands (`None`: no lane).
    pub fn phase(&self, seq: i32) -> Option<LanePhase> {
        self.lane_ref(seq).map(Lane::phase)
    }

    /// Whether lane `seq` decodes losslessly (one round at a time, on its own).
    pub fn is_lossless(&self, seq: i32) -> bool {
        self.lane_ref(seq).is_some_and(|l| l.speculator.is_some())
    }

    /// The mask lane `seq`'s next decode runs under (for lossless lanes, the drafter's).
    pub fn next_mask(&self, seq: i32) -> Option<&Mask> {
        self.lane_ref(seq).map(|l| l.plan.mask(l.step + 1))
    }

    /// Prompt tokens lane `seq` still has to decode.
    pub fn prompt_left(&self, seq: i32) -> usize {
        self.lane_ref(seq)
            .map_or(0, |l| l.prompt.len() - l.prefilled)
    }

    /// Runs the next piece of lane `seq`'s prompt: a batch-sized chunk of all but its last
    /// token, or, once those are in, the last token with logits, whose row gives the first
    /// token. Returns the prompt tokens decoded.
    pub fn prefill(&mut self, session: &mut Session<'_>, seq: i32) -> Result<usize> {
        let index = self.index(seq)?;
        let n_batch = session.n_batch();
        let model = session.model();
        let lane = self.lanes[index]
            .as_mut()
            .ok_or(EngineError::BadSequence { seq, n_seq: 0 })?;
        if lane.phase() != LanePhase::Prefilling {
            return Ok(0);
        }
        let start = Instant::now();
        let body = lane.prompt.len() - 1;
        let ran = if lane.prefilled < body {
            let end = body.min(lane.prefilled + n_batch);
            let chunk = &lane.prompt[lane.prefilled..end];
            session.prefill(seq, chunk, Some(&lane.prefill_mask))?;
            chunk.len()
        } else {
            let last = BatchToken {
                seq,
                token: lane.prompt[body],
                logits: true,
            };
            let rows = session.decode(&[last], Some(&lane.prefill_mask))?;
            let token = self.pickers[index].pick(session, rows[0]);
            lane.take_choice(model, token);
            if let Some(s) = lane.speculator.as_mut() {
                s.start_clock();
            }
            1
        };
        lane.prefilled += ran;
        lane.prefill_time += start.elapsed();
        Ok(ran)
    }

    /// Runs the next prompt pieces of several prefilling lanes in one decode: for each lane
    /// of `seqs` in that order, the piece [`Lanes::prefill`] would run next (and, when that
    /// was the rest of its body, its last token too), while the batch stays under
    /// [`SHARED_PREFILL_ROWS`] rows and the lanes share one prefill mask. Below that many
    /// rows ggml's CPU attention computes each row as it would alone (docs/DESIGN.md
    /// section 2, edit 5), so every prompt ends as its own prefill would, in fewer and
    /// larger decodes. A lane whose last prompt token ran has its first token chosen.
    /// Returns the lanes that ran, with their prompt tokens; empty when fewer than two could
    /// share (then [`Lanes::prefill`] runs them one by one, as before).
    pub fn prefill_shared(
        &mut self,
        session: &mut Session<'_>,
        seqs: &[i32],
    ) -> Result<Vec<(i32, usize)>> {
        let n_batch = session.n_batch();
        let mut batch: Vec<BatchToken> = Vec::new();
        // Per lane that runs: its sequence, prompt tokens, and whether its last one ran.
        let mut ran: Vec<(i32, usize, bool)> = Vec::new();
        let mut mask: Option<&Mask> = None;
        for &seq in seqs {
            let Some(lane) = self.lane_ref(seq) else {
                continue;
            };
            if lane.phase() != LanePhase::Prefilling
                || mask.is_some_and(|m| m != &lane.prefill_mask)
            {
                continue;
            }
            let body = lane.prompt.len() - 1;
            let mut from = lane.prefilled;
            let mut last = false;
            while !last {
                // The piece this lane's own prefill runs next.
                let piece = if from < body {
                    from..body.min(from + n_batch)
                } else {
                    body..body + 1
                };
                if batch.len() + piece.len() > SHARED_PREFILL_ROWS {
                    break;
                }
                last = piece.start == body;
                batch.extend(BatchToken::run_of(
                    seq,
                    lane.prompt[piece.clone()].iter().copied(),
                    last,
                ));
                from = piece.end;
            }
            if from > lane.prefilled {
                mask = Some(&lane.prefill_mask);
                ran.push((seq, from - lane.prefilled, last));
            }
        }
        if ran.len() < 2 {
            return Ok(Vec::new());
        }
        let mask = mask.cloned();
        let start = Instant::now();
        let rows = session.decode(&batch, mask.as_ref())?;
        let elapsed = start.elapsed();
        let model = session.model();
        let mut rows = rows.into_iter();
        for &(seq, tokens, last) in &ran {
            let index = self.index(seq)?;
            let Lanes { lanes, pickers } = self;
            let lane = lanes[index].as_mut().expect("a lane that ran");
            lane.prefilled += tokens;
            lane.prefill_time += elapsed;
            if last {
                let row = rows.next().expect("a logits row per last prompt token");
                let token = pickers[index].pick(session, row);
                lane.take_choice(model, token);
                if let Some(s) = lane.speculator.as_mut() {
                    s.start_clock();
                }
            }
        }
        Ok(ran
            .into_iter()
            .map(|(seq, tokens, _)| (seq, tokens))
            .collect())
    }

    /// Stops lane `seq` when its next token would not fit in its cells (the context is
    /// full); returns whether it may decode.
    fn has_room(&mut self, session: &Session<'_>, seq: i32) -> Result<bool> {
        let cached = session.tokens(seq)?.len();
        let lane = self.lane_mut(seq)?;
        if cached + 1 > lane.max_cells || session.n_cached() + 1 > session.n_ctx() {
            lane.stop = Some(StopReason::ContextFull);
            lane.pending = None;
            return Ok(false);
        }
        Ok(true)
    }

    /// Decodes the waiting token of every lane in `seqs` in one batch, under the mask they
    /// share (see [`Lanes::next_mask`]; lossless lanes go through [`Lanes::round`]), and
    /// chooses each lane's next token. A lane whose context is full stops instead.
    pub fn decode(&mut self, session: &mut Session<'_>, seqs: &[i32]) -> Result<()> {
        let mut batch = Vec::with_capacity(seqs.len());
        let mut mask: Option<Mask> = None;
        for &seq in seqs {
            let lane = self.lane_ref(seq).ok_or(EngineError::BadSequence {
                seq,
                n_seq: self.lanes.len(),
            })?;
            let (Some(token), None) = (lane.pending, &lane.speculator) else {
                continue;
            };
            let lane_mask = lane.plan.mask(lane.step + 1);
            match &mask {
                Some(m) if m != lane_mask => {
                    return Err(EngineError::Decode(format!(
                        "sequence {seq} decodes under another mask than the rest of its batch"
                    )));
                }
                Some(_) => {}
                None => mask = Some(lane_mask.clone()),
            }
            if self.has_room(session, seq)? {
                batch.push(BatchToken {
                    seq,
                    token,
                    logits: true,
                });
            }
        }
        let Some(mask) = mask else { return Ok(()) };
        if batch.is_empty() {
            return Ok(());
        }
        let model = session.model();
        let start = Instant::now();
        let rows = session.decode(&batch, Some(&mask))?;
        for (t, row) in batch.iter().zip(rows) {
            let index = t.seq as usize;
            let token = self.pickers[index].pick(session, row);
            let lane = self.lanes[index].as_mut().expect("lane checked above");
            lane.step += 1;
            lane.active_sum += mask.n_active();
            lane.take_choice(model, token);
        }
        let took = start.elapsed();
        for t in &batch {
            if let Some(lane) = self.lanes[t.seq as usize].as_mut() {
                lane.decode_time += took;
            }
        }
        Ok(())
    }

    /// One lossless round for lane `seq` alone: drafts after its waiting token, verifies at
    /// full depth, emits what full depth agrees with and chooses the next token.
    pub fn round(&mut self, session: &mut Session<'_>, seq: i32) -> Result<()> {
        let index = self.index(seq)?;
        if self.phase(seq) != Some(LanePhase::Decoding) || !self.is_lossless(seq) {
            return Ok(());
        }
        if !self.has_room(session, seq)? {
            return Ok(());
        }
        let model = session.model();
        let cached = session.tokens(seq)?.len();
        let start = Instant::now();
        let Lanes { lanes, pickers } = self;
        let lane = lanes[index].as_mut().expect("lane checked above");
        let token = lane
            .pending
            .take()
            .expect("a decoding lane has a token waiting");
        let entry = Entry {
            seq,
            token,
            // Drafts stop at the token limit and at the lane's last cell.
            room: (lane.max_tokens - lane.generated).min(lane.max_cells - cached - 1),
        };
        lane.step += 1;
        let mask = lane.plan.mask(lane.step).clone();
        lane.active_sum += mask.n_active();
        let mut speculator = lane.speculator.take().expect("a lossless lane");
        let outcome = speculator.round(session, &[entry], &mask, pickers, &mut |_, t| {
            lane.emit(model, t)
        });
        lane.speculator = Some(speculator);
        let outcome = outcome?;
        if let Some(&(_, next)) = outcome.next.first() {
            let token = match next {
                Next::Logits(row) => pickers[index].pick(session, row),
                Next::Chosen(t) => t,
            };
            lane.take_choice(model, token);
        }
        lane.decode_time += start.elapsed();
        Ok(())
    }

    /// Takes the text lane `seq` produced since the last call.
    pub fn take_text(&mut self, seq: i32) -> String {
        self.lane_mut(seq)
            .map(|l| std::mem::take(&mut l.text))
            .unwrap_or_default()
    }

    /// Tokens lane `seq` generated so far.
    pub fn generated(&self, seq: i32) -> usize {
        self.lane_ref(seq).map_or(0, |l| l.generated)
    }

    /// Ends lane `seq`: its cells are dropped at once and its sequence id is free again.
    pub fn leave(&mut self, session: &mut Session<'_>, seq: i32) -> Result<LaneReport> {
        let index = self.index(seq)?;
        let mut lane = self.lanes[index]
            .take()
            .ok_or(EngineError::BadSequence { seq, n_seq: 0 })?;
        self.pickers[index] = idle_picker();
        session.truncate(seq, 0)?;
        let steps = lane.step.max(1) as f64;
        Ok(LaneReport {
            prompt_tokens: lane.prefilled,
            generated_tokens: lane.generated,
            prefill_time: lane.prefill_time,
            decode_time: lane.decode_time,
            mean_active_blocks: if lane.step == 0 {
                lane.plan.mask(1).n_active() as f64
            } else {
                lane.active_sum as f64 / steps
            },
            stop: lane.stop,
            speculation: lane.speculator.take().map(Speculator::finish),
            rest: std::mem::take(&mut lane.text) + &lane.stream.finish(),
        })
    }

    fn index(&self, seq: i32) -> Result<usize> {
        usize::try_from(seq)
            .ok()
            .filter(|&s| s < self.lanes.len())
            .ok_or(EngineError::BadSequence {
                seq,
                n_seq: self.lanes.len(),
            })
    }

    fn lane_ref(&self, seq: i32) -> Option<&Lane<'a>> {
        usize::try_from(seq)
            .ok()
            .and_then(|s| self.lanes.get(s))
            .and_then(Option::as_ref)
    }

    fn lane_mut(&mut self, seq: i32) -> Result<&mut Lane<'a>> {
        let n_seq = self.lanes.len();
        usize::try_from(seq)
            .ok()
            .and_then(|s| self.lanes.get_mut(s))
            .and_then(Option::as_mut)
            .ok_or(EngineError::BadSequence { seq, n_seq })
    }
}

/// The picker an idle sequence holds: never asked to choose.
fn idle_picker<'a>() -> Picker<'a> {
    Picker::Chain(LlamaSampler::greedy())
}

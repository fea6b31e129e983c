//! The engine thread: it owns the session and runs every request, step by step.
//!
//! Each turn of its loop: take new requests, drop the ones whose client has gone (their
//! cells are freed at once), give free sequence ids to waiting requests, run a budget of
//! prompt chunks (one batch's worth), then one decode per group of lanes that share a mask,
//! and one lossless round per lossless lane. A request thus joins the running batch at a
//! step boundary and leaves it when done; requests with another mask decode in their own
//! call, and the session's K/V ledger keeps every sequence exact (docs/DESIGN.md section
//! 3).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::sync::mpsc::UnboundedSender;

use super::protocol::{Event, Finish, Job, Msg, Status, Summary};
use super::stop::StopMatcher;
use crate::engine::{
    ContextOptions, LanePhase, LaneReport, LaneSpec, Lanes, Lossless, Model, Session,
};
use crate::flags::ModelArgs;
use crate::flags::lossless::LosslessArgs;
use crate::measure::probe;
use crate::measure::speed::{median, time_decode};
use crate::skip::{CostModel, Mask};

/// How the engine thread sets itself up.
pub struct EngineSetup {
    /// The model (shared with the handlers, which tokenize).
    pub model: Arc<Model>,
    /// Its file (the measured-mode probe is cached under it).
    pub model_path: PathBuf,
    /// The model flags (for the draft model's context).
    pub model_args: ModelArgs,
    /// The context: `n_seq` is `--parallel`.
    pub context: ContextOptions,
    /// Cells each sequence may hold.
    pub slot_cells: usize,
    /// The lossless drafter settings (used by requests that ask for lossless decoding).
    pub lossless: LosslessArgs,
    /// Whether `--speedup-mode measured` needs the cost-model probe.
    pub measure_cost: bool,
}

/// What the engine measured while starting.
#[derive(Debug, Clone, Copy)]
pub struct Ready {
    /// The cost model for measured mode (when asked for).
    pub cost: Option<CostModel>,
    /// One sequence's full-depth decode speed.
    pub full_depth_tokens_per_s: f64,
}

/// Starts the engine thread; returns once its session exists and its probes ran.
pub fn spawn(
    setup: EngineSetup,
    status: Arc<Status>,
) -> Result<(Sender<Msg>, JoinHandle<()>, Ready)> {
    let (tx, rx) = channel();
    let (ready_tx, ready_rx) = channel::<Result<Ready, String>>();
    let handle = std::thread::Builder::new()
        .name("uniskip-engine".into())
        .spawn(move || {
            if let Err(e) = engine_thread(setup, status, rx, &ready_tx) {
                let _ = ready_tx.send(Err(format!("{e:#}")));
            }
        })
        .context("starting the engine thread")?;
    match ready_rx.recv() {
        Ok(Ok(ready)) => Ok((tx, handle, ready)),
        Ok(Err(e)) => {
            let _ = handle.join();
            Err(anyhow::anyhow!(e))
        }
        Err(_) => {
            let _ = handle.join();
            Err(anyhow::anyhow!("the engine thread ended while starting"))
        }
    }
}

fn engine_thread(
    setup: EngineSetup,
    status: Arc<Status>,
    rx: Receiver<Msg>,
    ready: &Sender<Result<Ready, String>>,
) -> Result<()> {
    let model = setup.model.as_ref();
    let mut session = model
        .session(&setup.context)
        .context("creating the server's context")?;
    let cost = if setup.measure_cost {
        let prompt = model.tokenize(crate::measure::PROBE_PROMPT, true)?;
        let (p, _) = probe::cached_or_measure(
            &setup.model_path,
            &mut session,
            &prompt,
            setup.context.threads,
        )?;
        session.clear();
        Some(p.cost)
    } else {
        None
    };
    let full_depth_tokens_per_s = quick_probe(&mut session)?;
    let draft_model = setup.lossless.load_draft_model(&setup.model_args)?;
    let lossless =
        setup
            .lossless
            .config(&setup.model_args, setup.context.n_seq, draft_model.as_ref())?;
    let _ = ready.send(Ok(Ready {
        cost,
        full_depth_tokens_per_s,
    }));
    let lanes = Lanes::new(&session);
    let n_seq = session.n_seq();
    let mut engine = Engine {
        session,
        lanes,
        active: (0..n_seq).map(|_| None).collect(),
        waiting: VecDeque::new(),
        lossless,
        status,
        slot_cells: setup.slot_cells,
        full_depth_tokens_per_s,
        full_depth_steps: VecDeque::new(),
        prefill_turn: 0,
    };
    engine.run(&rx);
    Ok(())
}

/// One sequence's full-depth decode speed: 12 steps after a warm-up, median of 3.
fn quick_probe(session: &mut Session<'_>) -> Result<f64> {
    let model = session.model();
    let prompt = model.tokenize(crate::measure::PROBE_PROMPT, true)?;
    let full = Mask::full(model.n_layer());
    time_decode(session, &prompt, 4, Some(&full))?;
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let t = time_decode(session, &prompt, 12, Some(&full))?;
        rounds.push(t.as_secs_f64() / 12.0);
    }
    session.clear();
    Ok(1.0 / median(&rounds))
}

/// How many recent one-sequence full-depth steps give the full-depth speed.
const FULL_DEPTH_WINDOW: usize = 32;

/// A request that holds a sequence.
struct Active {
    events: UnboundedSender<Event>,
    stop: StopMatcher,
    strategy: String,
    target_speedup: f64,
    active_blocks: usize,
    queue_time: Duration,
}

struct Engine<'m, 'd> {
    session: Session<'m>,
    lanes: Lanes<'d>,
    active: Vec<Option<Active>>,
    waiting: VecDeque<Box<Job>>,
    lossless: Option<Lossless<'d>>,
    status: Arc<Status>,
    slot_cells: usize,
    full_depth_tokens_per_s: f64,
    /// Speeds (tokens/s) of the latest one-sequence full-depth decode steps: the machine's
    /// load changes, and a start-up probe alone would date.
    full_depth_steps: VecDeque<f64>,
    /// Which prefilling sequence goes first this turn (round robin).
    prefill_turn: usize,
}

impl Engine<'_, '_> {
    fn run(&mut self, rx: &Receiver<Msg>) {
        loop {
            let idle = self.lanes.busy() == 0 && self.waiting.is_empty();
            if idle {
                self.publish();
                match rx.recv() {
                    Ok(msg) => {
                        if !self.take(msg) {
                            return self.shut_down();
                        }
                    }
                    Err(_) => return self.shut_down(),
                }
            }
            loop {
                match rx.try_recv() {
                    Ok(msg) => {
                        if !self.take(msg) {
                            return self.shut_down();
                        }
                    }
                    Err(std::sync::mpsc::TryRecvError::Empty) => break,
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                        return self.shut_down();
                    }
                }
            }
            self.drop_departed();
            self.admit();
            // Before any text goes out: a client that has its first token sees its
            // sequence counted.
            self.publish();
            self.prefill();
            self.decode();
            self.publish();
        }
    }

    /// Queues a request; false on shutdown.
    fn take(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Job(job) => {
                self.waiting.push_back(job);
                true
            }
            Msg::Shutdown => false,
        }
    }

    fn publish(&self) {
        self.status.busy.store(self.lanes.busy(), Ordering::Relaxed);
        self.status
            .cells_used
            .store(self.session.n_cached(), Ordering::Relaxed);
    }

    /// Ends every generation (each gets its end, `shutdown`) and refuses the waiting.
    fn shut_down(&mut self) {
        for seq in 0..self.active.len() as i32 {
            if self.active[seq as usize].is_some() {
                self.finish(seq, Finish::Shutdown);
            }
        }
        for job in self.waiting.drain(..) {
            self.status.waiting.fetch_sub(1, Ordering::Relaxed);
            let _ = job
                .events
                .send(Event::Failed("the server is shutting down".into()));
        }
        self.publish();
    }

    /// Frees the sequences of clients that have gone, and forgets their waiting requests.
    fn drop_departed(&mut self) {
        for seq in 0..self.active.len() {
            let gone = self.active[seq]
                .as_ref()
                .is_some_and(|a| a.events.is_closed());
            if gone {
                self.active[seq] = None;
                let _ = self.lanes.leave(&mut self.session, seq as i32);
            }
        }
        let before = self.waiting.len();
        self.waiting.retain(|j| !j.events.is_closed());
        let gone = before - self.waiting.len();
        if gone > 0 {
            self.status.waiting.fetch_sub(gone, Ordering::Relaxed);
        }
    }

    /// Gives free sequences to waiting requests, in arrival order.
    fn admit(&mut self) {
        while let Some(seq) = self.lanes.free_seq() {
            let Some(job) = self.waiting.pop_front() else {
                break;
            };
            self.status.waiting.fetch_sub(1, Ordering::Relaxed);
            let Job {
                prompt,
                max_tokens,
                sampling,
                plan,
                prefill,
                lossless,
                stop,
                events,
                queued_at,
            } = *job;
            let active = Active {
                events,
                stop: StopMatcher::new(stop),
                strategy: plan.spec().strategy().name().to_string(),
                target_speedup: plan.target(),
                active_blocks: plan.mask(1).n_active(),
                queue_time: queued_at.elapsed(),
            };
            let lossless = match (lossless, self.lossless) {
                (true, Some(config)) => Some(config),
                (true, None) => {
                    let _ = active.events.send(Event::Failed(
                        "lossless decoding is not set up on this server".into(),
                    ));
                    continue;
                }
                (false, _) => None,
            };
            let spec = LaneSpec {
                prompt,
                max_tokens,
                sampling,
                prefill,
                plan,
                lossless,
                max_cells: self.slot_cells,
            };
            match self.lanes.join(&mut self.session, seq, spec) {
                Ok(()) => self.active[seq as usize] = Some(active),
                Err(e) => {
                    let _ = active.events.send(Event::Failed(e.to_string()));
                }
            }
        }
    }

    /// Runs prompt chunks, up to one batch's worth of tokens this turn, taking turns
    /// between the prefilling requests so that a long prompt does not hold back a short
    /// one for all of its chunks. Short pieces of several prompts run first, together in
    /// one decode (`Lanes::prefill_shared`: requests that arrive at once start together).
    fn prefill(&mut self) {
        let n = self.active.len();
        let mut budget = self.session.n_batch();
        let start = self.prefill_turn % n.max(1);
        self.prefill_turn = self.prefill_turn.wrapping_add(1);
        let order: Vec<i32> = (0..n).map(|i| ((start + i) % n) as i32).collect();
        match self.lanes.prefill_shared(&mut self.session, &order) {
            Ok(ran) => {
                for (seq, tokens) in ran {
                    budget = budget.saturating_sub(tokens);
                    self.flush(seq);
                }
            }
            Err(e) => {
                // The shared decode failed as a whole: every prompt still waiting fails.
                let message = e.to_string();
                for &seq in &order {
                    if self.lanes.phase(seq) == Some(LanePhase::Prefilling) {
                        self.fail(seq, &message);
                    }
                }
                return;
            }
        }
        for &seq in &order {
            while budget > 0 && self.lanes.phase(seq) == Some(LanePhase::Prefilling) {
                match self.lanes.prefill(&mut self.session, seq) {
                    Ok(ran) => budget = budget.saturating_sub(ran.max(1)),
                    Err(e) => {
                        self.fail(seq, &e.to_string());
                        break;
                    }
                }
                self.flush(seq);
            }
        }
    }

    /// One decode per mask shared by decoding lanes; one round per lossless lane.
    fn decode(&mut self) {
        let mut groups: Vec<(Mask, Vec<i32>)> = Vec::new();
        let mut lossless = Vec::new();
        for seq in 0..self.active.len() as i32 {
            if self.lanes.phase(seq) != Some(LanePhase::Decoding) {
                continue;
            }
            if self.lanes.is_lossless(seq) {
                lossless.push(seq);
                continue;
            }
            let Some(mask) = self.lanes.next_mask(seq).cloned() else {
                continue;
            };
            match groups.iter_mut().find(|(m, _)| *m == mask) {
                Some((_, seqs)) => seqs.push(seq),
                None => groups.push((mask, vec![seq])),
            }
        }
        for (mask, seqs) in groups {
            let start = Instant::now();
            if let Err(e) = self.lanes.decode(&mut self.session, &seqs) {
                for &seq in &seqs {
                    self.fail(seq, &e.to_string());
                }
                continue;
            }
            if mask.is_full() && seqs.len() == 1 {
                self.full_depth_seen(start.elapsed());
            }
            for seq in seqs {
                self.flush(seq);
            }
        }
        for seq in lossless {
            match self.lanes.round(&mut self.session, seq) {
                Ok(()) => self.flush(seq),
                Err(e) => self.fail(seq, &e.to_string()),
            }
        }
    }

    /// Records one one-sequence full-depth step that took `took`.
    fn full_depth_seen(&mut self, took: Duration) {
        if took.is_zero() {
            return;
        }
        if self.full_depth_steps.len() == FULL_DEPTH_WINDOW {
            self.full_depth_steps.pop_front();
        }
        self.full_depth_steps.push_back(1.0 / took.as_secs_f64());
    }

    /// One sequence's full-depth speed: the median of the latest such steps, else the
    /// start-up probe's.
    fn full_depth_tokens_per_s(&self) -> f64 {
        if self.full_depth_steps.len() < 4 {
            return self.full_depth_tokens_per_s;
        }
        let steps: Vec<f64> = self.full_depth_steps.iter().copied().collect();
        median(&steps)
    }

    /// Sends lane `seq`'s new text through its stop strings; ends it when it stopped.
    fn flush(&mut self, seq: i32) {
        let text = self.lanes.take_text(seq);
        let Some(active) = self.active[seq as usize].as_mut() else {
            return;
        };
        if !text.is_empty() {
            let (out, hit) = active.stop.push(&text);
            if !out.is_empty() {
                let _ = active.events.send(Event::Text(out));
            }
            if hit {
                return self.finish(seq, Finish::StopString);
            }
        }
        if let Some(LanePhase::Finished(reason)) = self.lanes.phase(seq) {
            self.finish(seq, Finish::of(reason));
        }
    }

    /// Ends lane `seq`'s request: frees its sequence, sends the last text and the summary.
    fn finish(&mut self, seq: i32, finish: Finish) {
        let Some(mut active) = self.active[seq as usize].take() else {
            return;
        };
        let report = match self.lanes.leave(&mut self.session, seq) {
            Ok(r) => r,
            Err(e) => {
                let _ = active.events.send(Event::Failed(e.to_string()));
                return;
            }
        };
        if finish != Finish::StopString {
            let (mut out, hit) = active.stop.push(&report.rest);
            if !hit {
                out.push_str(&active.stop.finish());
            }
            if !out.is_empty() {
                let _ = active.events.send(Event::Text(out));
            }
        }
        let summary = self.summary(&active, &report, finish);
        let _ = active.events.send(Event::Done(Box::new(summary)));
        self.status.served.fetch_add(1, Ordering::Relaxed);
    }

    fn summary(&self, active: &Active, report: &LaneReport, finish: Finish) -> Summary {
        let prefill_s = report.prefill_time.as_secs_f64();
        Summary {
            prompt_tokens: report.prompt_tokens,
            completion_tokens: report.generated_tokens,
            finish,
            n_layer: self.session.model().n_layer(),
            active_blocks: active.active_blocks,
            mean_active_blocks: report.mean_active_blocks,
            strategy: active.strategy.clone(),
            target_speedup: active.target_speedup,
            decode_tokens_per_s: report.decode_tokens_per_s(),
            prefill_tokens_per_s: if prefill_s > 0.0 {
                report.prompt_tokens as f64 / prefill_s
            } else {
                0.0
            },
            full_depth_tokens_per_s: self.full_depth_tokens_per_s(),
            speculation: report.speculation.clone(),
            queue_time: active.queue_time,
        }
    }

    /// Ends lane `seq` with an error.
    fn fail(&mut self, seq: i32, message: &str) {
        if let Some(active) = self.active[seq as usize].take() {
            let _ = active.events.send(Event::Failed(message.to_string()));
        }
        let _ = self.lanes.leave(&mut self.session, seq);
    }
}

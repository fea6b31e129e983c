//! `uniskip chat`: a conversation with one model in the terminal, with the skip settings
//! live: the target speedup, the strategy and the speedup mode change while it runs, and
//! the screen shows what they cost and gain.
//!
//! - [`state`]: what the screen shows, and `update`, which hands key presses to [`keys`]
//!   (the key table, which the help lists too; [`key_actions`] do what it says), typed
//!   lines to [`commands`] and engine reports to [`events`];
//! - [`draw`]: state -> widgets; [`layout`]: the geometry both share;
//! - [`protocol`]: the commands and events between the UI and the engine thread;
//! - [`worker`]: the engine thread, the only place the model runs; it keeps the
//!   [`conversation`] and runs the speed [`probes`];
//! - [`controls`]: the skip settings as the person changes them;
//! - [`transcript`]: the conversation on disk (JSON Lines), resume, Markdown;
//! - [`tui`]: the terminal loop; [`line`](mod@line): plain line mode when not on a terminal.

pub mod commands;
pub mod controls;
pub mod conversation;
pub mod draw;
pub mod events;
pub mod input;
pub mod key_actions;
pub mod keys;
pub mod layout;
pub mod line;
pub mod probes;
pub mod protocol;
pub mod state;
pub mod transcript;
pub mod tui;
pub mod worker;

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::error::BadInput;
use crate::flags::setup::{PlanInputs, RunSetup};
use crate::flags::{ModelArgs, SamplingArgs, SkipArgs};
use crate::measure::probe;
use crate::skip::SpeedupMode;
use controls::SkipControls;
use probes::StartProbe;
use protocol::ModelFacts;
use state::{Effect, Msg, State, update};
use transcript::{Record, TranscriptWriter};
use worker::{Worker, WorkerSetup};

/// Chat with a model in the terminal, changing the skip settings as it runs.
#[derive(Debug, Args)]
#[command(
    after_help = "Keys: Enter sends, Alt+Enter adds a line, Ctrl+Right/Left (or + and - on \
  an empty input) change the target speedup, Tab cycles the strategy, Ctrl+T toggles measured \
  speedup, Ctrl+C stops a reply (again on an empty input: quit), F1 lists all keys.

Examples:
  uniskip chat
  uniskip chat --speedup 1.5 --strategy unified
  uniskip chat -m gemma3 -n 64
  uniskip chat --resume
  echo 'Why is the sky blue?' | uniskip chat -n 48"
)]
pub struct ChatArgs {
    /// Which model, threads, context size.
    /// The model and how to run it.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Most tokens per reply.
    #[arg(short = 'n', long = "max-tokens", value_name = "N", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_tokens: u32,
    /// The skip settings to start with.
    /// Which blocks to skip.
    #[command(flatten)]
    pub skip: SkipArgs,
    /// Sampling settings.
    /// How tokens are drawn.
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Lossless decoding (Ctrl+O or /lossless toggle it while chatting).
    #[command(flatten)]
    pub lossless: crate::flags::lossless::LosslessArgs,
    /// System prompt to start with (`/system TEXT` changes it later).
    #[arg(long, value_name = "TEXT")]
    pub system: Option<String>,
    /// Continue a saved conversation: the transcript FILE, or the latest one.
    #[arg(long, value_name = "FILE", num_args = 0..=1)]
    pub resume: Option<Option<PathBuf>>,
    /// Do not measure full-depth speed at start-up; the first reply at full depth gives it.
    #[arg(long)]
    pub no_probe: bool,
    /// Leave the mouse to the terminal (to select text) instead of scrolling with the wheel.
    #[arg(long)]
    pub no_mouse: bool,
}

/// Runs `uniskip chat`: the full-screen chat on a terminal, line mode otherwise.
pub fn run(args: ChatArgs) -> Result<()> {
    let sampling = args.sampling.sampling()?;
    let chats_dir = transcript::chats_dir()?;
    let resume_path = match &args.resume {
        None => None,
        Some(Some(path)) => Some(path.clone()),
        Some(None) => Some(transcript::latest(&chats_dir).ok_or_else(|| {
            BadInput(format!(
                "no conversation to resume in {}",
                chats_dir.display()
            ))
        })?),
    };
    // A transcript that cannot be read back is the caller's input gone wrong.
    let loaded = resume_path
        .as_deref()
        .map(|p| transcript::load(p).map_err(|e| BadInput(format!("--resume: {e:#}"))))
        .transpose()?
        .unwrap_or_default();

    if args.lossless.draft_model.is_some() {
        return Err(BadInput(
            "chat drafts with the mask and n-gram lookup only: leave out --draft-model".into(),
        )
        .into());
    }
    let run_setup = RunSetup::load(&args.model, &args.skip, &args.lossless)?;
    let (path, model) = (&run_setup.path, &run_setup.model);
    args.model.check_context(model)?;
    let mut info = ModelFacts::of(model);
    // A tuned file starts at the mask it was tuned for unless the flags name one.
    info.tuned = run_setup
        .tuned
        .as_ref()
        .map(|t| format!("tuned for {}", crate::bench::report::fmt_target(t.speedup)));
    let max_tokens = args.max_tokens as usize;
    let seed = u64::from(args.sampling.seed);
    let context = args.model.context_options(1);
    // A cost-model probe from an earlier run makes measured mode available at once;
    // measured mode asked for at start-up needs one before the first plan.
    let cost_probe = match probe::cached(path, context.threads) {
        Some(p) => Some((p, false)),
        None if args.skip.speedup_mode == SpeedupMode::Measured => {
            eprintln!(
                "measuring decode time per block for --speedup-mode measured \
                 (a few seconds; cached for next time)..."
            );
            let mut session = model.session(&context)?;
            let prompt = model.tokenize(crate::measure::PROBE_PROMPT, true)?;
            let (p, from_cache) =
                probe::cached_or_measure(path, &mut session, &prompt, context.threads)?;
            Some((p, !from_cache))
        }
        None => None,
    };
    let fresh = cost_probe.as_ref().is_some_and(|(_, fresh)| *fresh);
    let start_probe = StartProbe {
        quick: !args.no_probe && !fresh,
        cost: cost_probe,
    };
    let cost = start_probe.cost.as_ref().map(|(p, _)| p.cost);
    let plan = run_setup.plan(
        &args.skip,
        PlanInputs {
            planned_len: max_tokens,
            seed,
            cost: cost.as_ref(),
            profile: None,
        },
    )?;
    let mut controls = SkipControls::new(plan, args.skip.prefill);
    controls.lossless = run_setup.drafter;
    controls.drafter = args.lossless.drafter.unwrap_or_default();
    controls.draft_max = args.lossless.draft_max as usize;

    let system = args.system.clone().or(loaded.system.clone());
    let mut writer = match &resume_path {
        Some(p) => TranscriptWriter::append_to(p)?,
        None => TranscriptWriter::create(
            &chats_dir,
            &Record::Start {
                version: transcript::FORMAT_VERSION,
                time: transcript::now(),
                model: info.name.clone(),
                template: info.template,
            },
        )?,
    };
    if args.system.is_some() && args.system != loaded.system {
        writer.append(&Record::System {
            time: transcript::now(),
            content: args.system.clone(),
        })?;
    }

    let mut state = State::new(info, controls.clone(), system.clone(), &loaded.messages);
    state.probe_skipped = !start_probe.quick && !fresh;
    if let Some(p) = &resume_path {
        state.notice(format!(
            "resumed {} message(s) from {}; new ones are added to it",
            loaded.messages.len(),
            p.display()
        ));
    }
    if loaded.skipped_tail {
        state.notice("the transcript's last line was cut off (killed mid-write) and is skipped");
    }
    if let Some(w) = model.unverified_warning() {
        state.notice(w);
    }
    if let Some(w) = model.placement().lossless_warning() {
        state.notice(w);
    }
    if let Some(notice) = run_setup.tuned_notice() {
        state.notice(notice);
    }
    let setup = WorkerSetup {
        context,
        sampling,
        max_tokens,
        start_probe,
        model_path: path.clone(),
        chats_dir,
        system,
        messages: loaded.messages.into_iter().map(|(m, _)| m).collect(),
    };
    let worker = Worker::spawn(run_setup.model, setup, controls, Some(writer))
        .context("starting the engine thread")?;
    if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
        tui::run(state, worker, !args.no_mouse)
    } else {
        line::run(state, worker)
    }
}

/// Carries out `effects`; returns whether the screen must be cleared and redrawn.
fn apply(state: &mut State, worker: &Worker, effects: Vec<Effect>) -> bool {
    let mut redraw = false;
    for effect in effects {
        match effect {
            Effect::Engine(command) => worker.send(command),
            Effect::StopReply => worker.stop_reply(),
            Effect::Controls(controls) => worker.set_controls(controls),
            Effect::Save { path, markdown } => {
                let result = std::fs::write(&path, markdown).map_err(|e| e.to_string());
                let more = update(state, Msg::Saved(path, result));
                redraw |= apply(state, worker, more);
            }
            Effect::Redraw => redraw = true,
        }
    }
    redraw
}

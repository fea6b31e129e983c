//! The engine thread and the handle the UI keeps on it. The thread owns the model's session
//! and the conversation ([`super::conversation`]), generates replies and streams them back.
//! The UI thread talks to it through channels only, plus two shared values read before
//! every decode call: the skip controls and the number of the reply to stop.

use std::cell::Cell;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use super::controls::SkipControls;
use super::conversation::Conversation;
use super::probes::{self, StartProbe};
use super::protocol::{Command, Event};
use super::transcript::TranscriptWriter;
use crate::engine::{ChatMessage, ContextOptions, Model, Sampling};

/// The engine thread's name (the panic hook leaves its panics to the engine's own report).
pub const ENGINE_THREAD: &str = "uniskip-engine";

/// How the engine thread runs.
#[derive(Clone, Debug)]
pub struct WorkerSetup {
    /// The context to create.
    pub context: ContextOptions,
    /// Sampling settings.
    pub sampling: Sampling,
    /// Most tokens per reply.
    pub max_tokens: usize,
    /// What is known of decode speed at start-up.
    pub start_probe: StartProbe,
    /// The model file (the cost-model probe is cached under it).
    pub model_path: PathBuf,
    /// Where new transcripts go (after `/reset`).
    pub chats_dir: PathBuf,
    /// The system prompt to start with.
    pub system: Option<String>,
    /// Messages of a resumed conversation.
    pub messages: Vec<ChatMessage>,
}

/// The handle the UI keeps on the engine thread.
pub struct Worker {
    commands: Sender<Command>,
    events: Receiver<Event>,
    /// Replies asked for so far; replies are numbered from 1 in the order sent.
    sent: Cell<u64>,
    /// The number of the reply to stop (0: none). A number, not a flag, so a stop that
    /// arrives just after its reply ended cannot stop the next one.
    stop: Arc<AtomicU64>,
    controls: Arc<Mutex<SkipControls>>,
    finished: Receiver<()>,
    handle: Option<JoinHandle<()>>,
}

/// The stop value that stops whichever reply is running (the signal watchdog uses it).
const STOP_ANY: u64 = u64::MAX;

/// A handle that can stop the engine's reply from any thread.
#[derive(Clone, Debug)]
pub struct Stopper(Arc<AtomicU64>);

impl Stopper {
    /// Stops the reply being generated, whichever it is, after its current token.
    pub fn stop_any(&self) {
        self.0.store(STOP_ANY, Ordering::SeqCst);
    }
}

impl Worker {
    /// A handle that stops replies from another thread.
    pub fn stopper(&self) -> Stopper {
        Stopper(Arc::clone(&self.stop))
    }

    /// Starts the engine thread on `model`, appending to `transcript`.
    pub fn spawn(
        model: Model,
        setup: WorkerSetup,
        controls: SkipControls,
        transcript: Option<TranscriptWriter>,
    ) -> std::io::Result<Worker> {
        let (commands, command_rx) = mpsc::channel();
        let (event_tx, events) = mpsc::channel();
        let (finished_tx, finished) = mpsc::channel();
        let stop = Arc::new(AtomicU64::new(0));
        let controls = Arc::new(Mutex::new(controls));
        let shared = Shared {
            events: event_tx,
            stop: Arc::clone(&stop),
            controls: Arc::clone(&controls),
        };
        let handle = std::thread::Builder::new()
            .name(ENGINE_THREAD.into())
            .spawn(move || {
                let events = shared.events.clone();
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run_thread(&model, setup, transcript, &shared, &command_rx);
                }));
                if let Err(panic) = result {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown cause".into());
                    let _ = events.send(Event::Failed(format!("the engine failed: {what}")));
                }
                let _ = finished_tx.send(());
            })?;
        Ok(Worker {
            commands,
            events,
            sent: Cell::new(0),
            stop,
            controls,
            finished,
            handle: Some(handle),
        })
    }

    /// Queues a command (ignored once the thread has ended: its `Failed` event says why).
    pub fn send(&self, command: Command) {
        if matches!(command, Command::Send(_)) {
            self.sent.set(self.sent.get() + 1);
        }
        let _ = self.commands.send(command);
    }

    /// The next event, if one is waiting.
    pub fn try_event(&self) -> Result<Event, mpsc::TryRecvError> {
        self.events.try_recv()
    }

    /// The next event, waiting for it at most `timeout`.
    pub fn event_timeout(&self, timeout: Duration) -> Result<Event, RecvTimeoutError> {
        self.events.recv_timeout(timeout)
    }

    /// Asks the last reply asked for to stop after its current token (at its first token
    /// if it has not started yet).
    pub fn stop_reply(&self) {
        self.stop.store(self.sent.get(), Ordering::SeqCst);
    }

    /// New skip settings, used from the next decode call on.
    pub fn set_controls(&self, controls: SkipControls) {
        *self.controls.lock().unwrap_or_else(PoisonError::into_inner) = controls;
    }

    /// Stops any reply, ends the thread and waits for it up to `timeout` (a reply stops
    /// after its current batch; past the timeout the process may exit without it).
    pub fn shutdown(mut self, timeout: Duration) {
        self.stop_reply();
        self.send(Command::Quit);
        if self.finished.recv_timeout(timeout).is_ok()
            && let Some(handle) = self.handle.take()
        {
            let _ = handle.join();
        }
    }
}

/// What the engine thread shares with the handle: where events go, which reply to stop,
/// the skip controls.
pub(super) struct Shared {
    events: Sender<Event>,
    stop: Arc<AtomicU64>,
    controls: Arc<Mutex<SkipControls>>,
}

impl Shared {
    /// Reports `event` (dropped once the UI is gone).
    pub(super) fn send(&self, event: Event) {
        let _ = self.events.send(event);
    }

    /// Whether stopping reply number `id` was asked for (or stopping any reply).
    pub(super) fn stop_asked(&self, id: u64) -> bool {
        let stop = self.stop.load(Ordering::SeqCst);
        stop == id || stop == STOP_ANY
    }

    /// The skip settings as they are now.
    pub(super) fn controls(&self) -> SkipControls {
        self.controls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The thread's body: the start-up probes, then commands in order until `Quit` or
/// until the handle is dropped.
fn run_thread(
    model: &Model,
    setup: WorkerSetup,
    transcript: Option<TranscriptWriter>,
    shared: &Shared,
    commands: &Receiver<Command>,
) {
    let mut session = match model.session(&setup.context) {
        Ok(s) => s,
        Err(e) => return shared.send(Event::Failed(e.to_string())),
    };
    let mut chat = Conversation::new(
        model,
        setup.system.clone(),
        setup.messages.clone(),
        transcript,
    );
    if let Some(path) = chat.transcript_path() {
        shared.send(Event::Transcript(path.to_path_buf()));
    }
    // Commands that arrived while the probe ran, which they cut short.
    let mut pending = VecDeque::new();
    if let Some((probe, fresh)) = &setup.start_probe.cost {
        probes::report(shared, probe, model.n_layer(), *fresh);
    }
    if setup.start_probe.quick {
        probes::quick(&mut session, shared, &mut || match commands.try_recv() {
            Ok(command) => {
                pending.push_back(command);
                true
            }
            Err(_) => false,
        });
    }
    loop {
        let command = match pending.pop_front() {
            Some(command) => command,
            None => match commands.recv() {
                Ok(command) => command,
                Err(_) => break,
            },
        };
        match command {
            Command::Quit => break,
            Command::Send(text) => chat.reply(&mut session, &setup, shared, text),
            Command::SetSystem(system) => chat.set_system(system, shared),
            Command::Reset => {
                session.clear();
                chat.restart(&setup.chats_dir, shared);
            }
            Command::Probe => probes::cost(&mut session, &setup, shared),
        }
    }
}

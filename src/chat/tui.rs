//! The terminal UI loop: owns the terminal (and always gives it back), turns terminal input
//! and engine events into [`Msg`]s, carries out the [`Effect`](super::state::Effect)s,
//! draws at a bounded frame rate. The engine runs on its own thread; nothing here waits on
//! it for longer than a frame.

use std::io::{self, Stdout, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::mpsc::TryRecvError;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use crossterm::event::{
    self, DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture,
    Event as TermEvent, KeyboardEnhancementFlags, MouseEventKind, PopKeyboardEnhancementFlags,
    PushKeyboardEnhancementFlags,
};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
    supports_keyboard_enhancement,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

use super::apply;
use super::draw::draw;
use super::state::{Msg, State, update};
use super::worker::{Stopper, Worker};

/// Longest wait for input before the engine's events are looked at and the screen is
/// redrawn: about 30 frames a second while a reply streams.
const FRAME: Duration = Duration::from_millis(33);

/// Whether the keyboard protocol that tells Shift+Enter from Enter was switched on (so
/// it must be switched off again).
static KEYBOARD_ENHANCED: AtomicBool = AtomicBool::new(false);

/// Whether the terminal is in the chat's modes right now.
static TERMINAL_TAKEN: AtomicBool = AtomicBool::new(false);

/// Puts the terminal back as it was: idempotent, and safe to call from a panic hook.
fn restore_terminal() {
    if !TERMINAL_TAKEN.swap(false, Ordering::SeqCst) {
        return;
    }
    let mut out = io::stdout();
    if KEYBOARD_ENHANCED.swap(false, Ordering::SeqCst) {
        let _ = execute!(out, PopKeyboardEnhancementFlags);
    }
    let _ = execute!(
        out,
        DisableMouseCapture,
        DisableBracketedPaste,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
    let _ = disable_raw_mode();
}

/// The terminal in raw mode on the alternate screen; restored when dropped, on panic and
/// on SIGTERM/SIGHUP/SIGINT (the loop sees the signal and returns, which drops this).
struct TerminalGuard {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl TerminalGuard {
    fn enter(mouse: bool) -> Result<TerminalGuard> {
        install_panic_hook();
        // Marked first: a failure half-way through still restores what was changed.
        TERMINAL_TAKEN.store(true, Ordering::SeqCst);
        let setup = || -> io::Result<Terminal<CrosstermBackend<Stdout>>> {
            enable_raw_mode()?;
            let mut out = io::stdout();
            execute!(out, EnterAlternateScreen, EnableBracketedPaste)?;
            if mouse {
                execute!(out, EnableMouseCapture)?;
            }
            if supports_keyboard_enhancement().unwrap_or(false) {
                execute!(
                    out,
                    PushKeyboardEnhancementFlags(
                        KeyboardEnhancementFlags::DISAMBIGUATE_ESCAPE_CODES
                    )
                )?;
                KEYBOARD_ENHANCED.store(true, Ordering::SeqCst);
            }
            Terminal::new(CrosstermBackend::new(out))
        };
        match setup() {
            Ok(terminal) => Ok(TerminalGuard { terminal }),
            Err(e) => {
                restore_terminal();
                Err(e).context("setting up the terminal")
            }
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

fn install_panic_hook() {
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return;
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // The engine thread turns its panics into a `Failed` event, and the UI quits
        // cleanly on it; any other panic must give the terminal back before it reports.
        if std::thread::current().name() == Some(super::worker::ENGINE_THREAD) {
            return;
        }
        restore_terminal();
        previous(info);
    }));
}

/// How long the UI has, after SIGTERM/SIGHUP/SIGINT, to shut down in order before the
/// watchdog restores the terminal and exits by itself.
const SIGNAL_GRACE: Duration = Duration::from_secs(3);

/// Watches for SIGTERM, SIGHUP and SIGINT: stores the signal in `signalled` (the UI loop
/// then quits in order) and stops the reply. If the UI has not finished within [`SIGNAL_GRACE`] — a
/// terminal that hung up can keep crossterm's reader spinning, so the loop may never see
/// the flag — it gives the terminal back and exits; every completed message is on disk.
fn watch_signals(
    signalled: Arc<AtomicI32>,
    ui_done: Arc<AtomicBool>,
    stopper: Stopper,
) -> Result<signal_hook::iterator::Handle> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGHUP, SIGINT])
        .context("installing a signal handler")?;
    let handle = signals.handle();
    std::thread::Builder::new()
        .name("uniskip-signals".into())
        .spawn(move || {
            let Some(signal) = signals.forever().next() else {
                return;
            };
            signalled.store(signal, Ordering::SeqCst);
            stopper.stop_any();
            let deadline = Instant::now() + SIGNAL_GRACE;
            while Instant::now() < deadline {
                if ui_done.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            restore_terminal();
            std::process::exit(128 + signal);
        })
        .context("starting the signal watcher")?;
    Ok(handle)
}

/// Runs the chat screen until the person quits, the engine fails or a signal arrives.
/// Ended by a signal, the process exits with 128 + its number, as a shell reports a
/// program killed by it, once the terminal is back and the last reply is on disk.
pub fn run(mut state: State, worker: Worker, mouse: bool) -> Result<()> {
    let signalled = Arc::new(AtomicI32::new(0));
    let ui_done = Arc::new(AtomicBool::new(false));
    let watcher = watch_signals(
        Arc::clone(&signalled),
        Arc::clone(&ui_done),
        worker.stopper(),
    )?;
    let mut guard = TerminalGuard::enter(mouse)?;
    // A lost RPC server ends the process from inside llama.cpp: give the terminal back first.
    crate::engine::rpc::on_server_lost(restore_terminal);
    let result = event_loop(&mut state, &worker, &mut guard, &signalled);
    ui_done.store(true, Ordering::SeqCst);
    watcher.close();
    drop(guard);
    worker.shutdown(Duration::from_secs(3));
    let signal = signalled.load(Ordering::SeqCst);
    if signal != 0 {
        // Ended from outside: the terminal may be gone, so there is no one to tell.
        std::process::exit(128 + signal);
    }
    result?;
    if let Some(e) = state.fatal {
        bail!(e);
    }
    if let Some(path) = &state.transcript {
        let _ = writeln!(io::stderr(), "conversation saved in {}", path.display());
    }
    Ok(())
}

fn event_loop(
    state: &mut State,
    worker: &Worker,
    guard: &mut TerminalGuard,
    signalled: &AtomicI32,
) -> Result<()> {
    let terminal = &mut guard.terminal;
    let size = terminal.size().context("reading the terminal size")?;
    state.size = (size.width, size.height);
    let mut dirty = true;
    loop {
        if dirty {
            terminal
                .draw(|frame| draw(frame, state))
                .context("drawing the screen")?;
            dirty = false;
        }
        if event::poll(FRAME).context("reading the terminal")? {
            // Take every input that is waiting, then draw once.
            loop {
                let msg = match event::read().context("reading the terminal")? {
                    TermEvent::Key(key) => Some(Msg::Key(key)),
                    // Only the wheel scrolls; the pointer's movements (reported with
                    // mouse capture on) change nothing and must not cost a redraw.
                    TermEvent::Mouse(mouse)
                        if matches!(
                            mouse.kind,
                            MouseEventKind::ScrollUp | MouseEventKind::ScrollDown
                        ) =>
                    {
                        Some(Msg::Mouse(mouse))
                    }
                    TermEvent::Mouse(_) => None,
                    TermEvent::Paste(text) => Some(Msg::Paste(text)),
                    TermEvent::Resize(w, h) => Some(Msg::Resize(w, h)),
                    TermEvent::FocusGained | TermEvent::FocusLost => None,
                };
                if let Some(msg) = msg {
                    let effects = update(state, msg);
                    if apply(state, worker, effects) {
                        terminal.clear().context("clearing the screen")?;
                    }
                    dirty = true;
                }
                if state.quit || !event::poll(Duration::ZERO).context("reading the terminal")? {
                    break;
                }
            }
        }
        loop {
            match worker.try_event() {
                Ok(event) => {
                    let effects = update(state, Msg::Engine(event));
                    apply(state, worker, effects);
                    dirty = true;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    state
                        .fatal
                        .get_or_insert_with(|| "the engine stopped".into());
                    state.quit = true;
                    break;
                }
            }
        }
        if signalled.load(Ordering::SeqCst) != 0 {
            state.quit = true;
        }
        if state.quit {
            return Ok(());
        }
    }
}

//! Plain line mode, for when standard input or output is not a terminal: one message per
//! input line, the reply streamed to standard output, a stats line on standard error.
//! Commands work as in the full-screen chat.

use std::io::{self, BufRead, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::apply;
use super::commands::{help_rows, submit};
use super::protocol::{Event, ReplyStats};
use super::state::{Entry, Msg, State, update};
use super::worker::Worker;

/// Runs line mode until standard input ends or `/quit`.
pub fn run(mut state: State, worker: Worker) -> Result<()> {
    // `interrupted` armed (true) means the next Ctrl+C ends the process as usual: so it
    // is while no reply runs (there is nothing to stop) and once a stop was asked for.
    // While a reply runs it is disarmed, and the first Ctrl+C stops the reply.
    let interrupted = Arc::new(AtomicBool::new(true));
    signal_hook::flag::register_conditional_shutdown(
        signal_hook::consts::SIGINT,
        130,
        Arc::clone(&interrupted),
    )
    .and_then(|_| {
        signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&interrupted))
    })
    .context("installing a signal handler")?;

    eprintln!(
        "uniskip chat (line mode): {}; one message per line, /help for commands",
        state.title()
    );
    let result = read_loop(&mut state, &worker, &interrupted);
    worker.shutdown(Duration::from_secs(3));
    result?;
    if let Some(e) = state.fatal {
        bail!(e);
    }
    Ok(())
}

fn read_loop(state: &mut State, worker: &Worker, interrupted: &AtomicBool) -> Result<()> {
    // Notices from start-up (a resumed conversation, warnings) first.
    let mut shown = 0;
    show_notices(state, &mut shown);
    // Start-up events (the transcript path, the probe) before the first message.
    pump(state, worker, interrupted, &mut shown, false)?;
    let mut stdin = io::stdin().lock();
    let mut bytes = Vec::new();
    loop {
        bytes.clear();
        if stdin
            .read_until(b'\n', &mut bytes)
            .context("reading standard input")?
            == 0
        {
            break;
        }
        // Bytes that are not UTF-8 become U+FFFD rather than ending the chat.
        let line = String::from_utf8_lossy(&bytes);
        let line = line.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() {
            continue;
        }
        let effects = submit(state, line);
        interrupted.store(false, Ordering::SeqCst);
        apply(state, worker, effects);
        if std::mem::take(&mut state.help) {
            for (k, d) in help_rows() {
                eprintln!("  {k:<16} {d}");
            }
        }
        if state.reply.is_active() || state.measured_pending {
            pump(state, worker, interrupted, &mut shown, true)?;
        }
        show_notices(state, &mut shown);
        interrupted.store(true, Ordering::SeqCst);
        if state.quit {
            break;
        }
    }
    Ok(())
}

/// Handles engine events: streams reply text to stdout, notices and stats to stderr.
/// With `until_idle`, waits until the reply (or the probe asked for) is over; without,
/// takes what arrives within a moment and the whole probe.
fn pump(
    state: &mut State,
    worker: &Worker,
    interrupted: &AtomicBool,
    shown: &mut usize,
    until_idle: bool,
) -> Result<()> {
    let mut out = io::stdout().lock();
    let mut stop_asked = false;
    loop {
        // The flag stays set: a second Ctrl+C ends the process.
        if !stop_asked && interrupted.load(Ordering::SeqCst) && state.reply.is_active() {
            worker.stop_reply();
            stop_asked = true;
        }
        let busy = state.reply.is_active() || state.probing || state.measured_pending;
        let wait = if until_idle || busy {
            Duration::from_millis(50)
        } else {
            Duration::from_millis(300)
        };
        let event = match worker.event_timeout(wait) {
            Ok(event) => event,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if busy {
                    continue;
                }
                return Ok(());
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                state
                    .fatal
                    .get_or_insert_with(|| "the engine stopped".into());
                state.quit = true;
                return Ok(());
            }
        };
        match &event {
            // A closed stdout (piped into `head`) stops the reply, not the program.
            Event::Piece { text, .. }
                if out
                    .write_all(text.as_bytes())
                    .and_then(|()| out.flush())
                    .is_err() =>
            {
                worker.stop_reply();
            }
            Event::Baseline(b) => eprintln!(
                "full depth: {:.1} tok/s ({})",
                b.tokens_per_s,
                b.source.label()
            ),
            _ => {}
        }
        let done = match &event {
            Event::ReplyDone(stats) => Some(stats.clone()),
            _ => None,
        };
        let effects = update(state, Msg::Engine(event));
        apply(state, worker, effects);
        if let Some(stats) = done {
            let _ = writeln!(out);
            let _ = out.flush();
            eprintln!("{}", stats_line(state, &stats));
        }
        show_notices(state, shown);
        if state.quit {
            return Ok(());
        }
    }
}

fn show_notices(state: &State, shown: &mut usize) {
    for entry in state.entries.iter().skip(*shown) {
        if let Entry::Notice(text) = entry {
            eprintln!("· {text}");
        }
    }
    *shown = state.entries.len();
}

/// The stats line printed after each reply: blocks, target and strategy, speed, the
/// achieved speedup against full depth, repairs, and why it stopped.
pub fn stats_line(state: &State, stats: &ReplyStats) -> String {
    let achieved = match state.reference_for(stats) {
        Some((base, source)) => format!(
            "achieved {:.2}x of {base:.1} tok/s full depth ({source})",
            stats.decode_tok_s / base,
        ),
        None => "achieved — (no full-depth speed yet)".to_owned(),
    };
    let mut mode = String::new();
    if stats.mode != "layers" {
        mode = format!(" ({})", stats.mode);
    }
    format!(
        "[{} · target {:.2}x {}{mode} | decode {} tok {:.1} tok/s | {achieved} | prefill {} tok {:.1} tok/s | kv repair {} tok {:.0} ms | stop: {}]",
        stats.blocks(),
        stats.target,
        stats.strategy,
        stats.tokens,
        stats.decode_tok_s,
        stats.prompt_tokens,
        stats.prefill_tok_s,
        stats.repair_tokens,
        stats.repair_ms,
        stats.stop,
    )
}

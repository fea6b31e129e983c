//! What a line the person enters does: a slash command from [`COMMANDS`], or a message
//! for the model. The same table dispatches the commands and lists them in the help.

use std::path::PathBuf;

use super::protocol::Command;
use super::state::{Effect, Entry, ReplyPhase, State};
use super::transcript::markdown;

/// One slash command: how it is typed, what it does, and the function that does it.
pub struct SlashCommand {
    /// The name after the slash.
    pub name: &'static str,
    /// Other names that do the same (not listed in the help).
    pub aliases: &'static [&'static str],
    /// What follows the name, as the help writes it (empty: nothing).
    pub args: &'static str,
    /// What it does, in a few words.
    pub does: &'static str,
    /// Runs it with the text after the name (trimmed).
    run: fn(&mut State, &str) -> Vec<Effect>,
}

impl SlashCommand {
    /// How the help writes it, e.g. `/save FILE`.
    pub fn usage(&self) -> String {
        if self.args.is_empty() {
            format!("/{}", self.name)
        } else {
            format!("/{} {}", self.name, self.args)
        }
    }

    fn is_called(&self, name: &str) -> bool {
        self.name == name || self.aliases.contains(&name)
    }
}

/// Every slash command, in the order the help lists them.
pub const COMMANDS: &[SlashCommand] = &[
    SlashCommand {
        name: "reset",
        aliases: &[],
        args: "",
        does: "new conversation (and transcript file)",
        run: reset,
    },
    SlashCommand {
        name: "save",
        aliases: &[],
        args: "FILE",
        does: "save the conversation as Markdown",
        run: save,
    },
    SlashCommand {
        name: "system",
        aliases: &[],
        args: "TEXT",
        does: "set the system prompt (no TEXT: remove it)",
        run: system,
    },
    SlashCommand {
        name: "speedup",
        aliases: &[],
        args: "R",
        does: "set the target speedup, e.g. /speedup 1.5",
        run: speedup,
    },
    SlashCommand {
        name: "strategy",
        aliases: &[],
        args: "NAME",
        does: "unified early-exit skipdecode block random",
        run: strategy,
    },
    SlashCommand {
        name: "lossless",
        aliases: &[],
        args: "",
        does: "lossless decoding on / off, like Ctrl+O",
        run: lossless,
    },
    SlashCommand {
        name: "help",
        aliases: &[],
        args: "",
        does: "this help",
        run: help,
    },
    SlashCommand {
        name: "quit",
        aliases: &["exit"],
        args: "",
        does: "quit",
        run: quit,
    },
];

/// The help's rows for the commands: usage, what it does.
pub fn help_rows() -> Vec<(String, &'static str)> {
    COMMANDS.iter().map(|c| (c.usage(), c.does)).collect()
}

/// Handles a line the person entered: a command, or a message for the model.
pub fn submit(state: &mut State, text: &str) -> Vec<Effect> {
    let trimmed = text.trim();
    if let Some(command) = trimmed.strip_prefix('/')
        && !command.starts_with('/')
    {
        return run_command(state, command);
    }
    // A leading `//` sends a message that starts with `/`.
    let message = if trimmed.starts_with("//") {
        &text.trim_start()[1..]
    } else {
        text
    };
    // Control characters (a NUL from a pipe, say) mean nothing to a model; drop them.
    let message: String = message
        .trim_end()
        .chars()
        .filter(|&c| c == '\n' || c == '\t' || !c.is_control())
        .collect();
    if message.trim().is_empty() {
        return Vec::new();
    }
    if state.reply.is_active() {
        state.flash = Some("a reply is on its way: wait, or Ctrl+C to stop it".into());
        return Vec::new();
    }
    state.entries.push(Entry::User(message.clone()));
    state.entries.push(Entry::Assistant {
        text: String::new(),
        stats: None,
    });
    state.reply = ReplyPhase::Queued;
    state.scroll = None;
    vec![Effect::Engine(Command::Send(message))]
}

fn run_command(state: &mut State, command: &str) -> Vec<Effect> {
    let (name, arg) = command
        .split_once(char::is_whitespace)
        .map_or((command, ""), |(n, a)| (n, a.trim()));
    match COMMANDS.iter().find(|c| c.is_called(name)) {
        Some(c) => (c.run)(state, arg),
        None => {
            let names: Vec<String> = COMMANDS.iter().map(|c| format!("/{}", c.name)).collect();
            state.notice(format!(
                "unknown command /{name}: try {} (start with // to send a message beginning \
                 with /)",
                names.join(" ")
            ));
            Vec::new()
        }
    }
}

fn reset(state: &mut State, _: &str) -> Vec<Effect> {
    if state.reply.is_active() {
        state.flash = Some("stop the reply first (Ctrl+C), then /reset".into());
        return Vec::new();
    }
    let system = state.entries.iter().rev().find_map(|e| match e {
        Entry::System(s) => Some(s.clone()),
        _ => None,
    });
    state.entries.clear();
    if let Some(Some(s)) = system {
        state.entries.push(Entry::System(Some(s)));
    }
    state.scroll = None;
    state.notice("new conversation");
    vec![Effect::Engine(Command::Reset)]
}

fn save(state: &mut State, arg: &str) -> Vec<Effect> {
    if arg.is_empty() {
        state.notice("usage: /save FILE (the conversation as Markdown)");
        return Vec::new();
    }
    let title = format!("Chat with {}", state.info.name);
    vec![Effect::Save {
        path: expand_home(arg),
        markdown: markdown(&title, &state.entries),
    }]
}

fn system(state: &mut State, arg: &str) -> Vec<Effect> {
    let system = (!arg.is_empty()).then(|| arg.to_owned());
    state.entries.push(Entry::System(system.clone()));
    state.scroll = None;
    vec![Effect::Engine(Command::SetSystem(system))]
}

fn speedup(state: &mut State, arg: &str) -> Vec<Effect> {
    let mut c = state.controls.clone();
    let set = arg
        .trim_end_matches(['x', 'X'])
        .parse::<f64>()
        .map_err(|_| format!("/speedup takes a number, e.g. /speedup 1.5 (got `{arg}`)"))
        .and_then(|r| c.set_target(r));
    match set {
        Ok(()) => state.set_controls(c),
        Err(e) => {
            state.notice(e);
            Vec::new()
        }
    }
}

fn strategy(state: &mut State, arg: &str) -> Vec<Effect> {
    let mut c = state.controls.clone();
    match c.set_strategy(arg) {
        Ok(()) => state.set_controls(c),
        Err(e) => {
            state.notice(e);
            Vec::new()
        }
    }
}

fn lossless(state: &mut State, _: &str) -> Vec<Effect> {
    super::key_actions::lossless_on_off(state)
}

fn help(state: &mut State, _: &str) -> Vec<Effect> {
    state.help = true;
    Vec::new()
}

fn quit(state: &mut State, _: &str) -> Vec<Effect> {
    state.quit = true;
    Vec::new()
}

fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::controls::CYCLE;

    #[test]
    fn the_strategy_command_lists_the_strategies_tab_cycles_through() {
        let strategy = COMMANDS.iter().find(|c| c.name == "strategy").unwrap();
        let names: Vec<&str> = CYCLE.iter().map(|s| s.name()).collect();
        assert_eq!(strategy.does, names.join(" "));
    }

    #[test]
    fn the_readme_names_every_command() {
        let readme = include_str!("../../README.md");
        for c in COMMANDS {
            let usage = format!("`{}`", c.usage());
            assert!(readme.contains(&usage), "README.md does not name {usage}");
        }
    }
}

//! `uniskip chat` end to end on the real default model: the full-screen chat driven inside
//! tmux as a person would, and line mode with piped input.
//!
//! These runs use one thread: on a small machine shared with other work, two llama.cpp
//! threads spin against each other and decode far slower than one.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use uniskip::skip::{Depth, StrategySpec, plan};

const BIN: &str = env!("CARGO_BIN_EXE_uniskip");

fn model() -> PathBuf {
    common::model_path("smollm2")
}

/// A tmux session that is killed when dropped, pass or fail.
struct Tmux {
    name: String,
}

impl Tmux {
    fn start(width: u16, height: u16, data: &Path) -> Tmux {
        let name = format!("uniskip-chat-test-{}", std::process::id());
        let tmux = Tmux { name };
        let status = Command::new("tmux")
            .args(["new-session", "-d", "-s", &tmux.name])
            .args(["-x", &width.to_string(), "-y", &height.to_string()])
            .arg("-e")
            .arg(format!("UNISKIP_DATA={}", data.display()))
            .args(["bash", "--norc", "--noprofile"])
            .status()
            .expect("tmux runs (the test needs tmux installed)");
        assert!(status.success(), "tmux new-session failed");
        tmux
    }

    fn send(&self, keys: &[&str]) {
        let status = Command::new("tmux")
            .args(["send-keys", "-t", &self.name])
            .args(keys)
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    fn type_text(&self, text: &str) {
        let status = Command::new("tmux")
            .args(["send-keys", "-l", "-t", &self.name, text])
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.name])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn flag(&self, format: &str) -> String {
        let out = Command::new("tmux")
            .args(["display-message", "-p", "-t", &self.name, format])
            .output()
            .expect("tmux display-message");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Polls the screen until `ready` holds; fails with the last screen after `timeout`.
    fn wait_for(&self, what: &str, timeout: Duration, ready: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} waiting for {what}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .status();
    }
}

/// The number in `● generating N tok`, if a reply is streaming.
fn generated(screen: &str) -> Option<usize> {
    let rest = &screen[screen.find("● generating ")? + "● generating ".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// The block map row: (`kept/total`, the cells).
fn block_map(screen: &str) -> (String, String) {
    let row = screen
        .lines()
        .find(|l| l.trim_start().starts_with("blocks"))
        .expect("a block map row");
    let count = row.split_whitespace().nth(1).unwrap_or("").to_owned();
    let cells = row.chars().filter(|&c| c == '█' || c == '·').collect();
    (count, cells)
}

#[test]
fn full_screen_chat_streams_follows_target_changes_stops_and_restores_the_terminal() {
    let data = tempfile::tempdir().unwrap();
    let tmux = Tmux::start(80, 24, data.path());
    let dir = data.path().display();
    tmux.type_text(&format!(
        "stty -g > {dir}/stty-before; {BIN} chat -m {} --threads 1 -n 400; \
         echo \"exit=$?\"; stty -g > {dir}/stty-after",
        model().display()
    ));
    tmux.send(&["Enter"]);
    let long = Duration::from_secs(180);
    let step = Duration::from_secs(90);

    let screen = tmux.wait_for("the chat screen", long, |s| {
        s.contains("uniskip ·") && s.contains("chat template") && s.contains("Enter send")
    });
    assert_eq!(block_map(&screen).0, "30/30", "{screen}");
    assert!(screen.contains("target    1.00x"), "{screen}");

    tmux.type_text("Write a long story about a dragon who learns to bake bread.");
    tmux.send(&["Enter"]);
    let screen = tmux.wait_for("a reply streaming", long, |s| {
        generated(s).is_some_and(|n| n >= 3)
    });
    assert!(
        screen.contains("decode ") && screen.contains("tok/s live"),
        "{screen}"
    );
    assert!(screen.contains("Ctrl+C stops it"), "{screen}");

    // Typing while the reply streams shows up at once.
    tmux.type_text("draft");
    tmux.wait_for("typed text in the input", Duration::from_secs(5), |s| {
        s.contains("│ draft")
    });
    tmux.send(&["C-u"]);

    // Change the target mid-reply: the map follows at once.
    tmux.send(&["C-Right"]);
    let expected = plan(&StrategySpec::Unified, 30, Depth::Ratio(1.25), 0).unwrap();
    let screen = tmux.wait_for("the block map at 1.25x", step, |s| {
        block_map(s) == ("24/30".to_owned(), expected.to_string())
    });
    assert!(screen.contains("target    1.25x"), "{screen}");
    // Let the engine decode a few tokens under the new mask, then stop the reply.
    let at_change = generated(&screen).expect("still streaming");
    tmux.wait_for("tokens after the change", step, |s| {
        generated(s).is_some_and(|n| n >= at_change + 3)
    });
    tmux.send(&["C-c"]);
    let screen = tmux.wait_for("the reply stopped", step, |s| {
        s.contains("· stopped") && s.contains("Enter send")
    });
    // Both depths were used by the reply, and the stopped text is kept on screen.
    assert!(screen.contains("24-30/30 blocks"), "{screen}");
    assert!(
        screen.contains("decode ") && screen.contains("last reply"),
        "{screen}"
    );

    // Ctrl+C on an empty input quits; the shell gets a normal terminal back.
    tmux.send(&["C-c"]);
    let screen = tmux.wait_for("the shell again", step, |s| s.contains("exit=0"));
    assert!(screen.contains("conversation saved in"), "{screen}");
    tmux.wait_for("stty to run", step, |_| {
        data.path().join("stty-after").exists()
    });
    std::thread::sleep(Duration::from_millis(200));
    let before = std::fs::read_to_string(data.path().join("stty-before")).unwrap();
    let after = std::fs::read_to_string(data.path().join("stty-after")).unwrap();
    assert_eq!(before, after, "terminal modes differ after quitting");
    assert_eq!(
        tmux.flag("#{alternate_on}"),
        "0",
        "still on the alternate screen"
    );
    assert_eq!(tmux.flag("#{cursor_flag}"), "1", "cursor left hidden");
    assert_eq!(
        tmux.flag("#{mouse_any_flag}"),
        "0",
        "mouse reporting left on"
    );

    // The transcript holds the message and the stopped reply.
    let transcript = only_transcript(data.path());
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&transcript)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let roles: Vec<&str> = lines.iter().filter_map(|l| l["role"].as_str()).collect();
    assert_eq!(roles, ["user", "assistant"], "{lines:?}");
    assert_eq!(lines.last().unwrap()["stats"]["stop"], "stopped");
}

fn only_transcript(data: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(data.join("chats"))
        .expect("a chats directory")
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.into_iter().next().unwrap()
}

fn chat_with_input(data: &Path, args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .arg("chat")
        .arg("-m")
        .arg(model())
        .args(["--threads", "1"])
        .args(args)
        .env("UNISKIP_DATA", data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("uniskip runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "uniskip chat failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn line_mode_with_piped_input_replies_prints_stats_and_resumes() {
    let data = tempfile::tempdir().unwrap();
    let out = chat_with_input(
        data.path(),
        &["-n", "12"],
        "Why is the sky blue?\n/speedup 1.5\nAnd the sea?\n",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.trim().len() > 5, "no reply on stdout: {stdout:?}");
    assert!(stderr.contains("full depth: "), "{stderr}");
    let stats: Vec<&str> = stderr.lines().filter(|l| l.starts_with('[')).collect();
    assert_eq!(stats.len(), 2, "one stats line per reply:\n{stderr}");
    assert!(
        stats[0].contains("30/30 blocks · target 1.00x unified"),
        "{}",
        stats[0]
    );
    assert!(
        stats[1].contains("20/30 blocks · target 1.50x unified"),
        "{}",
        stats[1]
    );
    for line in &stats {
        assert!(
            line.contains("tok/s") && line.contains("achieved"),
            "{line}"
        );
    }

    // --resume continues the same file: the earlier turns are the new turn's context.
    let out = chat_with_input(
        data.path(),
        &["-n", "4", "--resume", "--no-probe"],
        "Thanks!\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("resumed 4 message(s)"), "{stderr}");
    let transcript = only_transcript(data.path());
    let text = std::fs::read_to_string(transcript).unwrap();
    let users = text.matches("\"role\":\"user\"").count();
    assert_eq!(users, 3, "{text}");
}

//! `uniskip chat` end to end on the real default model: the full-screen chat driven inside
//! tmux as a person would, and line mode with piped input.
//!
//! These runs use one thread: on a small machine shared with other work, two llama.cpp
//! threads spin against each other and decode far slower than one.

use crate::common;

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
    /// A `width`×`height` terminal running bash; `label` keeps the tests' sessions apart.
    fn start(label: &str, width: u16, height: u16, data: &Path) -> Tmux {
        let name = format!("uniskip-{label}-{}", std::process::id());
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
    let tmux = Tmux::start("stream", 80, 24, data.path());
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

// ---------------------------------------------------------------------------------------
// Ctrl+C at every stage, signals, tiny terminals and long pastes. Each chat runs in a
// script that records its process id, the terminal modes before and after it, and its
// exit status.

/// Polls `ready` every 50 ms; fails naming `what` after `timeout`.
fn wait_until(what: &str, timeout: Duration, ready: impl Fn() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Types the command line that runs `uniskip chat -m <default> --threads 1 ARGS`, tagged
/// `tag`: it writes `stty-before-TAG` and `pid-TAG`, and once the chat has ended shows
/// `exit-TAG=N` and writes `stty-after-TAG`. Returns the chat's process id.
fn launch_chat(tmux: &Tmux, data: &Path, tag: &str, args: &str) -> u32 {
    let dir = data.display();
    // A script, not the interactive shell, waits for the chat: an interactive bash drops
    // the rest of the line when its foreground job dies of Ctrl+C. The trap keeps the
    // script alive and is reset for the chat, which gets Ctrl+C's default action.
    tmux.type_text(&format!(
        "bash -c 'trap true INT; stty -g > {dir}/stty-before-{tag}; \
         (echo $BASHPID > {dir}/pid-{tag}; exec {BIN} chat -m {} --threads 1 {args}); \
         echo \"exit-{tag}=$?\"; stty -g > {dir}/stty-after-{tag}'",
        model().display()
    ));
    tmux.send(&["Enter"]);
    let pid_file = data.join(format!("pid-{tag}"));
    let read_pid = || {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
    };
    wait_until("the chat's process id", Duration::from_secs(30), || {
        read_pid().is_some()
    });
    read_pid().unwrap()
}

/// Waits for the chat tagged `tag` to end; returns its exit status.
fn exit_status(tmux: &Tmux, data: &Path, tag: &str, timeout: Duration) -> i32 {
    // The shell's output line, not the command line that contains the same words.
    let marker = format!("exit-{tag}=");
    let status = |screen: &str| {
        screen.lines().find_map(|line| {
            let digits: String = line[line.find(&marker)? + marker.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse::<i32>().ok()
        })
    };
    let screen = tmux.wait_for("the shell again", timeout, |s| status(s).is_some());
    wait_until("stty to run", Duration::from_secs(10), || {
        std::fs::metadata(data.join(format!("stty-after-{tag}"))).is_ok_and(|m| m.len() > 0)
    });
    status(&screen).unwrap()
}

/// Asserts the terminal is as the chat tagged `tag` found it: the same line modes, the
/// main screen, the cursor shown, mouse reporting off.
fn assert_terminal_restored(tmux: &Tmux, data: &Path, tag: &str) {
    let read = |when: &str| std::fs::read_to_string(data.join(format!("stty-{when}-{tag}")));
    assert_eq!(
        read("before").unwrap(),
        read("after").unwrap(),
        "terminal modes differ after chat {tag}"
    );
    assert_eq!(
        tmux.flag("#{alternate_on}"),
        "0",
        "{tag}: still on the alternate screen"
    );
    assert_eq!(
        tmux.flag("#{cursor_flag}"),
        "1",
        "{tag}: cursor left hidden"
    );
    assert_eq!(
        tmux.flag("#{mouse_any_flag}"),
        "0",
        "{tag}: mouse reporting left on"
    );
}

/// Every record of the transcript at `path`; each line must be whole JSON.
fn records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}: bad line {l:?}: {e}", path.display()))
        })
        .collect()
}

/// How many whole message lines the transcript at `path` holds so far (a line being
/// written may be cut short).
fn complete_messages(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |text| {
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|r| r["role"].is_string())
            .count()
    })
}

/// The (role, record) pairs of the conversation's messages.
fn messages(records: &[serde_json::Value]) -> Vec<(&str, &serde_json::Value)> {
    records
        .iter()
        .filter_map(|r| Some((r["role"].as_str()?, r)))
        .collect()
}

/// Whether process `pid` still runs (a zombie waiting to be reaped does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .and_then(|s| s.split_whitespace().next())
            != Some("Z")
    })
}

/// Waits for the chat screen, sends `message` and waits until `tokens` have streamed.
fn reply_streaming(tmux: &Tmux, message: &str, tokens: usize) -> String {
    let long = Duration::from_secs(180);
    tmux.wait_for("the chat screen", long, |s| s.contains("Enter send"));
    tmux.type_text(message);
    tmux.send(&["Enter"]);
    tmux.wait_for("a reply streaming", long, |s| {
        generated(s).is_some_and(|n| n >= tokens)
    })
}

const STORY: &str = "Write a long story about a fox who sails to the moon.";

#[test]
fn ctrl_c_while_the_model_loads_or_the_chat_starts_quits_and_restores_the_terminal() {
    let data = tempfile::tempdir().unwrap();
    let tmux = Tmux::start("ctrl-c-start", 80, 24, data.path());
    // From before the model is loaded (the signal ends the process: 130), through the
    // speed probe at start-up, to the idle chat screen (the key quits it: 0).
    #[derive(Debug)]
    enum When {
        AfterMs(u64),
        Measuring,
        Idle,
    }
    let long = Duration::from_secs(120);
    let mut statuses = Vec::new();
    let stages = [0, 40, 120, 250, 500, 1000].map(When::AfterMs);
    for (i, when) in stages
        .into_iter()
        .chain([When::Measuring, When::Idle])
        .enumerate()
    {
        let tag = format!("run{i}");
        launch_chat(&tmux, data.path(), &tag, "");
        match when {
            When::AfterMs(ms) => std::thread::sleep(Duration::from_millis(ms)),
            // The probe may be over before the screen is first looked at; then this is idle.
            When::Measuring => {
                let screen = tmux.wait_for("the probe or the idle screen", long, |s| {
                    s.contains("● measuring speed") || s.contains("message · Enter send")
                });
                eprintln!("probe on screen: {}", screen.contains("● measuring speed"));
            }
            When::Idle => drop(tmux.wait_for("the idle screen", long, |s| {
                s.contains("message · Enter send")
            })),
        }
        tmux.send(&["C-c"]);
        let status = exit_status(&tmux, data.path(), &tag, Duration::from_secs(60));
        assert!(
            status == 0 || status == 130,
            "{when:?}: exit status {status}; the screen:\n{}",
            tmux.screen()
        );
        assert_terminal_restored(&tmux, data.path(), &tag);
        statuses.push((when, status));
        tmux.type_text("clear");
        tmux.send(&["Enter"]);
    }
    eprintln!("exit statuses by when Ctrl+C came: {statuses:?}");
    assert_eq!(
        statuses[0].1, 130,
        "Ctrl+C at once did not find the model loading"
    );
    assert_eq!(
        statuses.last().unwrap().1,
        0,
        "Ctrl+C on the idle screen did not quit"
    );
    // Every transcript the started chats wrote is whole: a start record and nothing torn.
    if let Ok(dir) = std::fs::read_dir(data.path().join("chats")) {
        for file in dir {
            let records = records(&file.unwrap().path());
            assert_eq!(records[0]["type"], "start", "{records:?}");
        }
    }
}

#[test]
fn a_very_long_paste_arrives_whole_and_ctrl_c_stops_its_reply_while_the_prompt_is_read() {
    let data = tempfile::tempdir().unwrap();
    let tmux = Tmux::start("paste", 80, 24, data.path());
    launch_chat(&tmux, data.path(), "paste", "--ctx 4096 -n 16 --no-probe");
    let long = Duration::from_secs(180);
    tmux.wait_for("the chat screen", long, |s| s.contains("Enter send"));

    // 7 KB in 120 lines, about 2,200 tokens, pasted as a terminal pastes (bracketed, line
    // ends as carriage returns).
    let mut paste: String = (0..120)
        .map(|i| {
            format!(
                "Line {i}: the harbour master counted {} boats before noon.\n",
                i * 7
            )
        })
        .collect();
    paste.push_str("END OF PASTE");
    let paste_file = data.path().join("paste.txt");
    std::fs::write(&paste_file, &paste).unwrap();
    for args in [
        vec![
            "load-buffer",
            "-b",
            "uniskip-test",
            paste_file.to_str().unwrap(),
        ],
        vec![
            "paste-buffer",
            "-p",
            "-d",
            "-b",
            "uniskip-test",
            "-t",
            &tmux.name,
        ],
    ] {
        assert!(Command::new("tmux").args(&args).status().unwrap().success());
    }
    tmux.wait_for("the end of the paste in the input", long, |s| {
        s.contains("END OF PASTE")
    });
    tmux.send(&["Enter"]);
    tmux.wait_for("the prompt being read", long, |s| {
        s.contains("● reading the prompt")
    });
    tmux.send(&["C-c"]);
    tmux.wait_for("the reply stopped", long, |s| {
        s.contains("· stopped") && s.contains("Enter send")
    });

    // The chat goes on: the next reply reads the rest of the prompt and answers.
    tmux.type_text("Thanks.");
    tmux.send(&["Enter"]);
    let transcript = data.path().join("chats");
    wait_until("the second reply in the transcript", long, || {
        std::fs::read_dir(&transcript)
            .ok()
            .and_then(|mut d| d.next())
            .is_some_and(|f| complete_messages(&f.unwrap().path()) == 4)
    });
    // The reply is saved just before the screen hears it ended; Ctrl+C before that would
    // stop it rather than quit.
    tmux.wait_for("the chat idle", long, |s| {
        s.contains("message · Enter send")
    });
    tmux.send(&["C-c"]);
    assert_eq!(exit_status(&tmux, data.path(), "paste", long), 0);
    assert_terminal_restored(&tmux, data.path(), "paste");

    let records = records(&only_transcript(data.path()));
    let messages = messages(&records);
    let roles: Vec<&str> = messages.iter().map(|(role, _)| *role).collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant"]);
    assert_eq!(
        messages[0].1["content"],
        paste.as_str(),
        "the paste was not kept whole"
    );
    let stopped = &messages[1].1["stats"];
    assert_eq!(stopped["stop"], "stopped", "{stopped}");
    assert_eq!(
        stopped["tokens"], 0,
        "stopped only after the prompt was read: {stopped}"
    );
    let answered = &messages[3].1["stats"];
    assert_ne!(answered["stop"], "stopped", "{answered}");
    assert!(answered["tokens"].as_u64().unwrap() > 0, "{answered}");
}

#[test]
fn ctrl_c_during_a_cache_repair_stops_the_reply_and_keeps_it() {
    let data = tempfile::tempdir().unwrap();
    let tmux = Tmux::start("repair", 80, 24, data.path());
    launch_chat(
        &tmux,
        data.path(),
        "repair",
        // A 3x mask writes noise whose end-of-text depends on the CPU code's rounding:
        // --ignore-eos keeps the reply long enough to need a repair on every machine.
        "--speedup 3 -n 600 --no-probe --ignore-eos",
    );
    reply_streaming(&tmux, STORY, 80);
    // Back to full depth: the next decode call first re-runs every generated token through
    // the 20 blocks it skipped. Ctrl+C lands while that runs.
    tmux.type_text("/speedup 1");
    tmux.send(&["Enter"]);
    let step = Duration::from_secs(90);
    tmux.wait_for("full depth on the block map", step, |s| {
        block_map(s).0 == "30/30"
    });
    std::thread::sleep(Duration::from_millis(150));
    tmux.send(&["C-c"]);
    tmux.wait_for("the reply stopped", step, |s| {
        s.contains("· stopped") && s.contains("Enter send")
    });
    tmux.send(&["C-c"]);
    assert_eq!(exit_status(&tmux, data.path(), "repair", step), 0);
    assert_terminal_restored(&tmux, data.path(), "repair");

    let records = records(&only_transcript(data.path()));
    let messages = messages(&records);
    assert_eq!(messages.len(), 2, "{records:?}");
    let stats = &messages[1].1["stats"];
    assert_eq!(stats["stop"], "stopped", "{stats}");
    assert!(stats["repair_tokens"].as_u64().unwrap() >= 80, "{stats}");
    assert_eq!(
        (stats["kept_min"].as_u64(), stats["kept_max"].as_u64()),
        (Some(10), Some(30))
    );
}

#[test]
fn tiny_terminal_sizes_mid_reply_neither_crash_the_chat_nor_lose_the_reply() {
    let data = tempfile::tempdir().unwrap();
    let tmux = Tmux::start("tiny", 80, 24, data.path());
    let pid = launch_chat(&tmux, data.path(), "tiny", "-n 400 --no-probe");
    reply_streaming(&tmux, STORY, 3);
    for (width, height) in [(1, 1), (2, 1), (1, 3), (8, 2), (20, 4), (40, 8), (80, 24)] {
        let status = Command::new("tmux")
            .args(["resize-window", "-t", &tmux.name])
            .args(["-x", &width.to_string(), "-y", &height.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            alive(pid),
            "the chat ended at {width}x{height}:\n{}",
            tmux.screen()
        );
    }
    let step = Duration::from_secs(90);
    let screen = tmux.wait_for("the full screen again", step, |s| {
        s.contains("Ctrl+C stops it") && s.lines().any(|l| l.trim_start().starts_with("blocks"))
    });
    let before = generated(&screen).expect("still streaming");
    tmux.wait_for("more tokens", step, |s| {
        generated(s).is_some_and(|n| n > before)
    });
    tmux.send(&["C-c"]);
    tmux.wait_for("the reply stopped", step, |s| s.contains("· stopped"));
    tmux.send(&["C-c"]);
    assert_eq!(exit_status(&tmux, data.path(), "tiny", step), 0);
    assert_terminal_restored(&tmux, data.path(), "tiny");
    let records = records(&only_transcript(data.path()));
    let roles: Vec<&str> = messages(&records).iter().map(|(r, _)| *r).collect();
    assert_eq!(roles, ["user", "assistant"]);
}

#[test]
fn sigterm_mid_reply_saves_the_reply_restores_the_terminal_and_exits_143() {
    let data = tempfile::tempdir().unwrap();
    let tmux = Tmux::start("sigterm", 80, 24, data.path());
    let pid = launch_chat(&tmux, data.path(), "sigterm", "-n 400 --no-probe");
    reply_streaming(&tmux, STORY, 3);
    assert!(
        // bash's own kill: a minimal system may lack the kill program.
        Command::new("bash")
            .args(["-c", &format!("kill -TERM {pid}")])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(
        exit_status(&tmux, data.path(), "sigterm", Duration::from_secs(30)),
        143
    );
    assert_terminal_restored(&tmux, data.path(), "sigterm");
    let records = records(&only_transcript(data.path()));
    let messages = messages(&records);
    assert_eq!(messages.len(), 2, "{records:?}");
    assert_eq!(messages[0].1["content"], STORY);
    assert_eq!(messages[1].1["stats"]["stop"], "stopped");
}

#[test]
fn closing_the_terminal_mid_reply_saves_the_reply_and_ends_the_chat() {
    let data = tempfile::tempdir().unwrap();
    let tmux = Tmux::start("hangup", 80, 24, data.path());
    let pid = launch_chat(&tmux, data.path(), "hangup", "-n 400 --no-probe");
    reply_streaming(&tmux, STORY, 3);
    // The terminal goes away: the chat gets SIGHUP and its terminal reads fail.
    assert!(
        Command::new("tmux")
            .args(["kill-session", "-t", &tmux.name])
            .status()
            .unwrap()
            .success()
    );
    wait_until("the chat to end", Duration::from_secs(15), || !alive(pid));
    let records = records(&only_transcript(data.path()));
    let messages = messages(&records);
    assert_eq!(messages.len(), 2, "{records:?}");
    assert_eq!(messages[1].1["stats"]["stop"], "stopped");
}

//! The conversation on disk: one JSON object per line, appended (and synced) as each
//! message completes, so a crash or a killed terminal loses nothing; read back to resume;
//! and the Markdown that `/save` writes.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::protocol::ReplyStats;
use super::state::Entry;
use crate::engine::ChatMessage;

/// The time records carry: Unix seconds, now.
pub use crate::utc::now;

/// Version of the record format, written into each file's first line.
pub const FORMAT_VERSION: u32 = 1;

/// One line of a transcript file (written with its variant's name as `type`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
// Records are written and read one at a time: a large variant costs nothing that matters.
#[allow(clippy::large_enum_variant)]
pub enum Record {
    /// First line: what the conversation was started with.
    Start {
        /// [`FORMAT_VERSION`].
        version: u32,
        /// Seconds since the Unix epoch.
        time: u64,
        /// The model's name.
        model: String,
        /// Whether the model's chat template framed the turns (else plain continuation).
        template: bool,
    },
    /// The system prompt from here on (`None`: removed).
    System {
        /// Seconds since the Unix epoch.
        time: u64,
        /// The prompt.
        content: Option<String>,
    },
    /// A completed message.
    Message {
        /// Seconds since the Unix epoch.
        time: u64,
        /// `user` or `assistant`.
        role: String,
        /// The text.
        content: String,
        /// What an assistant reply cost.
        #[serde(skip_serializing_if = "Option::is_none")]
        stats: Option<ReplyStats>,
    },
}

/// The fields of a `system` line that resuming needs.
#[derive(Deserialize)]
struct SystemLine {
    content: Option<String>,
}

/// The fields of a `message` line that resuming needs.
#[derive(Deserialize)]
struct MessageLine {
    role: String,
    content: String,
    #[serde(default)]
    stats: Option<ReplyStats>,
}

/// What one line says, for resuming.
#[allow(clippy::large_enum_variant)]
enum Parsed {
    System(Option<String>),
    Message(ChatMessage, Option<ReplyStats>),
}

/// Reads one line: `None` for lines that change nothing (the start line, and record
/// types a later version may add).
///
/// Read through a `Value` and plain structs rather than a tagged enum: serde's tagged
/// enums buffer numbers in a way that fails for floats when serde_json's
/// `arbitrary_precision` feature is on, and another dependency turns it on.
fn parse_line(line: &str) -> serde_json::Result<Option<Parsed>> {
    let value: serde_json::Value = serde_json::from_str(line)?;
    Ok(
        match value.get("type").and_then(serde_json::Value::as_str) {
            Some("system") => Some(Parsed::System(
                serde_json::from_value::<SystemLine>(value)?.content,
            )),
            Some("message") => {
                let m: MessageLine = serde_json::from_value(value)?;
                let message = ChatMessage {
                    role: m.role,
                    content: m.content,
                };
                Some(Parsed::Message(message, m.stats))
            }
            _ => None,
        },
    )
}

/// A conversation read back from a transcript file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Loaded {
    /// The system prompt in force at the end.
    pub system: Option<String>,
    /// The messages with, for replies, what they cost.
    pub messages: Vec<(ChatMessage, Option<ReplyStats>)>,
    /// A damaged last line (cut off by a kill mid-write) that was skipped.
    pub skipped_tail: bool,
}

/// Where transcripts are kept: `$UNISKIP_DATA/chats`, else `$XDG_DATA_HOME/uniskip/chats`,
/// else `~/.local/share/uniskip/chats`. It may not exist yet.
pub fn chats_dir() -> Result<PathBuf> {
    chats_dir_from(|key| std::env::var_os(key))
}

fn chats_dir_from(var: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf> {
    let set = |key| var(key).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set("UNISKIP_DATA") {
        return Ok(dir.join("chats"));
    }
    // The XDG spec says to ignore relative values.
    if let Some(dir) = set("XDG_DATA_HOME").filter(|d| d.is_absolute()) {
        return Ok(dir.join("uniskip").join("chats"));
    }
    match set("HOME") {
        Some(home) => Ok(home.join(".local/share/uniskip/chats")),
        None => bail!("no place for transcripts: set HOME, XDG_DATA_HOME or UNISKIP_DATA"),
    }
}

/// The most recently written transcript in `dir`, if any.
pub fn latest(dir: &Path) -> Option<PathBuf> {
    fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max()
        .map(|(_, p)| p)
}

/// An open transcript file that records are appended to.
#[derive(Debug)]
pub struct TranscriptWriter {
    path: PathBuf,
    file: File,
}

impl TranscriptWriter {
    /// Starts a new transcript in `dir` (created if needed), named after the time.
    pub fn create(dir: &Path, start: &Record) -> Result<TranscriptWriter> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let time = now();
        let stamp = crate::utc::file_stamp(time);
        // The process id keeps two chats started in the same second apart.
        let mut path = dir.join(format!("chat-{stamp}-{}.jsonl", std::process::id()));
        let mut n = 1;
        while path.exists() {
            path = dir.join(format!("chat-{stamp}-{}-{n}.jsonl", std::process::id()));
            n += 1;
        }
        let mut writer = TranscriptWriter::append_to(&path)?;
        writer.append(start)?;
        Ok(writer)
    }

    /// Opens an existing transcript to go on appending to it.
    pub fn append_to(path: &Path) -> Result<TranscriptWriter> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening transcript {}", path.display()))?;
        Ok(TranscriptWriter {
            path: path.to_path_buf(),
            file,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record as a line and syncs it to disk, so it survives a kill or a crash.
    pub fn append(&mut self, record: &Record) -> Result<()> {
        let mut line = serde_json::to_string(record).context("encoding a transcript record")?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data())
            .with_context(|| format!("writing transcript {}", self.path.display()))
    }
}

/// Reads a transcript file back. A last line cut off mid-write is skipped (and said so);
/// a damaged line anywhere else is an error naming it.
pub fn load(path: &Path) -> Result<Loaded> {
    let file =
        File::open(path).with_context(|| format!("opening transcript {}", path.display()))?;
    let lines: Vec<String> = BufReader::new(file)
        .lines()
        .collect::<io::Result<_>>()
        .with_context(|| format!("reading transcript {}", path.display()))?;
    let mut loaded = Loaded::default();
    let last = lines.iter().rposition(|l| !l.trim().is_empty());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(line) {
            Ok(Some(Parsed::System(content))) => loaded.system = content,
            Ok(Some(Parsed::Message(message, stats))) => loaded.messages.push((message, stats)),
            Ok(None) => {}
            Err(_) if Some(i) == last => loaded.skipped_tail = true,
            Err(e) => bail!(
                "{} line {}: not a transcript record: {e}",
                path.display(),
                i + 1
            ),
        }
    }
    Ok(loaded)
}

/// The conversation as Markdown: a heading, the system prompt, then each message under
/// its speaker, replies with what they cost.
pub fn markdown(title: &str, entries: &[Entry]) -> String {
    let mut out = format!("# {title}\n");
    for entry in entries {
        match entry {
            Entry::System(Some(text)) => {
                out.push_str(&format!("\n**System prompt:** {}\n", text.trim()));
            }
            Entry::System(None) => out.push_str("\n**System prompt removed.**\n"),
            Entry::User(text) => out.push_str(&format!("\n## You\n\n{}\n", text.trim_end())),
            Entry::Assistant { text, stats } => {
                out.push_str(&format!("\n## Assistant\n\n{}\n", text.trim_end()));
                if let Some(s) = stats {
                    out.push_str(&format!("\n_{}_\n", s.summary()));
                }
            }
            Entry::Notice(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> Record {
        Record::Start {
            version: FORMAT_VERSION,
            time: 0,
            model: "m".into(),
            template: true,
        }
    }

    fn message(role: &str, content: &str) -> Record {
        Record::Message {
            time: 1,
            role: role.into(),
            content: content.into(),
            stats: None,
        }
    }

    #[test]
    fn reply_stats_with_fractional_numbers_are_read_back() {
        let stats = ReplyStats {
            prefill_tok_s: 115.48312248809773,
            repair_tokens: 2,
            repair_ms: 0.5,
            stop: "max_tokens".into(),
            kept_min: 20,
            target: 1.5,
            ..ReplyStats::fixture(4, 30, 73.8)
        };
        let dir = tempfile::tempdir().unwrap();
        let mut w = TranscriptWriter::create(dir.path(), &start()).unwrap();
        w.append(&Record::Message {
            time: 1,
            role: "assistant".into(),
            content: "hi".into(),
            stats: Some(stats.clone()),
        })
        .unwrap();
        let loaded = load(w.path()).unwrap();
        assert_eq!(loaded.messages[0].1, Some(stats));
    }

    #[test]
    fn records_written_are_read_back_in_order_with_the_last_system_prompt() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = TranscriptWriter::create(dir.path(), &start()).unwrap();
        for r in [
            Record::System {
                time: 1,
                content: Some("be brief".into()),
            },
            message("user", "hi\nthere"),
            message("assistant", "hello"),
            Record::System {
                time: 2,
                content: Some("be kind".into()),
            },
        ] {
            w.append(&r).unwrap();
        }
        let loaded = load(w.path()).unwrap();
        assert_eq!(loaded.system.as_deref(), Some("be kind"));
        let texts: Vec<_> = loaded
            .messages
            .iter()
            .map(|(m, _)| m.content.as_str())
            .collect();
        assert_eq!(texts, ["hi\nthere", "hello"]);
        assert!(!loaded.skipped_tail);
        assert_eq!(latest(dir.path()).as_deref(), Some(w.path()));
    }

    #[test]
    fn a_line_cut_off_by_a_kill_is_skipped_but_damage_elsewhere_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        let good = serde_json::to_string(&message("user", "kept")).unwrap();
        fs::write(&path, format!("{good}\n{{\"type\":\"mess")).unwrap();
        let loaded = load(&path).unwrap();
        assert_eq!(loaded.messages.len(), 1);
        assert!(loaded.skipped_tail);
        fs::write(&path, format!("{{oops\n{good}\n")).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn unknown_record_types_from_later_versions_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        let good = serde_json::to_string(&message("user", "kept")).unwrap();
        fs::write(
            &path,
            format!("{{\"type\":\"bookmark\",\"at\":3}}\n{good}\n"),
        )
        .unwrap();
        assert_eq!(load(&path).unwrap().messages.len(), 1);
    }

    #[test]
    fn the_data_directory_follows_the_override_then_xdg_then_home() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == k)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        let d = chats_dir_from(env(&[("UNISKIP_DATA", "/d"), ("HOME", "/h")])).unwrap();
        assert_eq!(d, PathBuf::from("/d/chats"));
        let d = chats_dir_from(env(&[("XDG_DATA_HOME", "rel"), ("HOME", "/h")])).unwrap();
        assert_eq!(d, PathBuf::from("/h/.local/share/uniskip/chats"));
        let d = chats_dir_from(env(&[("XDG_DATA_HOME", "/x"), ("HOME", "/h")])).unwrap();
        assert_eq!(d, PathBuf::from("/x/uniskip/chats"));
        assert!(chats_dir_from(env(&[])).is_err());
    }

    #[test]
    fn markdown_lists_speakers_and_leaves_out_notices() {
        let md = markdown(
            "Chat",
            &[
                Entry::System(Some("be brief".into())),
                Entry::Notice("transcript: x".into()),
                Entry::User("hi".into()),
                Entry::Assistant {
                    text: "hello\n".into(),
                    stats: None,
                },
            ],
        );
        assert_eq!(
            md,
            "# Chat\n\n**System prompt:** be brief\n\n## You\n\nhi\n\n## Assistant\n\nhello\n"
        );
    }
}

//! The keys and commands of `uniskip chat`, as the help overlay lists them.

/// Keys, with what they do.
pub const KEYS: &[(&str, &str)] = &[
    ("Enter", "send the message"),
    ("Alt+Enter Shift+Enter Ctrl+J", "new line in the message"),
    ("Up Down", "earlier messages (empty input), else lines"),
    ("PgUp PgDn, wheel", "scroll the conversation"),
    (
        "Ctrl+→ Ctrl+←, + -",
        "target speedup ±0.25 (+ - on empty input)",
    ),
    ("Tab Shift+Tab", "next / previous skipping strategy"),
    ("Ctrl+T", "target counts blocks / measured time"),
    (
        "Ctrl+O",
        "lossless decoding on / off (drafts checked by full depth)",
    ),
    ("Ctrl+C", "stop the reply; on an empty input, quit"),
    ("Ctrl+D, Esc q", "quit"),
    ("F1, ?", "this help (? on an empty input)"),
    ("Shift+drag", "select text (or start with --no-mouse)"),
];

/// Commands typed in the input, with what they do.
pub const COMMANDS: &[(&str, &str)] = &[
    ("/reset", "new conversation (and transcript file)"),
    ("/save FILE", "save the conversation as Markdown"),
    ("/system TEXT", "set the system prompt (no TEXT: remove it)"),
    ("/speedup R", "set the target speedup, e.g. /speedup 1.5"),
    (
        "/strategy NAME",
        "unified early-exit skipdecode block random",
    ),
    ("/lossless", "lossless decoding on / off, like Ctrl+O"),
    ("/help /quit", "this help; quit"),
];

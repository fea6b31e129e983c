//! `uniskip serve` driven over real sockets on the default model: its text against `uniskip
//! run --chat`, concurrent streams against their solo text, per-request knobs, a client
//! that disconnects, every error case, the API key and shutdown.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A running server, stopped (SIGTERM) when dropped.
struct Server {
    child: Child,
    base: String,
    addr: String,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `uniskip serve --port 0 --threads 1` with `args` and waits for its address
    /// (one thread: the tests share the machine's cores).
    fn start(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_uniskip"))
            .args(["serve", "--port", "0", "--threads", "1"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the server starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let line = lines
            .next()
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("no address from the server: {}", stderr.lock().unwrap()));
        let base = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_string();
        let addr = base.trim_start_matches("http://").to_string();
        Server {
            child,
            base,
            addr,
            stderr,
        }
    }

    /// What the server wrote on stderr by the time its start-up line (printed last before
    /// the address) has arrived.
    fn startup_stderr(&self) -> String {
        let start = Instant::now();
        loop {
            let text = self.stderr.lock().unwrap().clone();
            if text.contains(" parallel; full depth ") {
                return text;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no start-up line: {text}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A POST of `body` as JSON; the status and the body read as JSON.
    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_with(path, body, None)
    }

    fn post_with(&self, path: &str, body: &Value, key: Option<&str>) -> (u16, Value) {
        let mut request = agent()
            .post(&self.url(path))
            .header("Content-Type", "application/json");
        if let Some(k) = key {
            request = request.header("Authorization", &format!("Bearer {k}"));
        }
        let mut response = request.send_json(body).expect("the server answers");
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().expect("a body");
        let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        (status, value)
    }

    fn get(&self, path: &str, key: Option<&str>) -> (u16, Value) {
        let mut request = agent().get(&self.url(path));
        if let Some(k) = key {
            request = request.header("Authorization", &format!("Bearer {k}"));
        }
        let mut response = request.call().expect("the server answers");
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().expect("a body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    fn health(&self) -> Value {
        self.get("/health", None).1
    }

    /// Waits until `/health` satisfies `ok` (panics after 60 s).
    fn wait_health(&self, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let h = self.health();
            if ok(&h) {
                return h;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "{what}: {h}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A streamed request: the `data:` payloads in order, `[DONE]` included.
    fn stream(&self, path: &str, body: &Value) -> Vec<String> {
        let mut response = agent()
            .post(&self.url(path))
            .header("Content-Type", "application/json")
            .send_json(body)
            .expect("the server answers");
        assert_eq!(response.status().as_u16(), 200);
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        let reader = BufReader::new(response.body_mut().as_reader());
        reader
            .lines()
            .map(|l| l.expect("a line"))
            .filter_map(|l| l.strip_prefix("data: ").map(str::to_string))
            .collect()
    }

    /// Sends SIGTERM and waits for the exit status.
    fn terminate(mut self) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        let status = self.child.wait().expect("the server exits");
        std::mem::forget(self);
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .new_agent()
}

/// The text of a streamed chat completion, checking the chunks' shape on the way.
fn streamed_text(events: &[String]) -> (String, Option<Value>) {
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    let mut text = String::new();
    let mut finish = None;
    let mut usage = None;
    for (i, e) in events[..events.len() - 1].iter().enumerate() {
        let v: Value = serde_json::from_str(e).expect("a JSON chunk");
        assert!(v.get("error").is_none(), "an error chunk: {v}");
        let object = v["object"].as_str().unwrap_or("");
        assert!(
            object == "chat.completion.chunk" || object == "text_completion",
            "{v}"
        );
        let choices = v["choices"].as_array().expect("choices");
        if choices.is_empty() {
            usage = Some(v.clone());
            continue;
        }
        if i == 0 && object == "chat.completion.chunk" {
            assert_eq!(choices[0]["delta"]["role"], "assistant", "{v}");
        }
        if let Some(t) = choices[0]["delta"]["content"]
            .as_str()
            .or(choices[0]["text"].as_str())
        {
            text.push_str(t);
        }
        if let Some(f) = choices[0]["finish_reason"].as_str() {
            finish = Some(f.to_string());
        }
    }
    assert!(finish.is_some(), "no finish_reason in {events:?}");
    (text, usage)
}

fn chat_body(prompt: &str, max_tokens: u32) -> Value {
    json!({
        "model": "smollm2",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
    })
}

fn chat_text(v: &Value) -> String {
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_else(|| panic!("no content: {v}"))
        .to_string()
}

/// `uniskip run --chat --json` with `args`: its text.
fn run_chat(prompt: &str, max_tokens: u32, args: &[&str]) -> String {
    let n = max_tokens.to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_uniskip"))
        .args([
            "run",
            "--chat",
            "-p",
            prompt,
            "-n",
            &n,
            "--threads",
            "1",
            "--json",
        ])
        .args(args)
        .output()
        .expect("run starts");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    v["text"].as_str().expect("text").to_string()
}

const HAIKU: &str = "Write a haiku about rain";

#[test]
fn serve_chat_text_equals_run_chat_streamed_or_not_greedy_or_sampled() {
    let server = Server::start(&["--parallel", "2"]);
    let expected = run_chat(HAIKU, 24, &[]);
    assert!(!expected.is_empty());
    let (status, v) = server.post("/v1/chat/completions", &chat_body(HAIKU, 24));
    assert_eq!(status, 200, "{v}");
    assert_eq!(chat_text(&v), expected);
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["usage"]["completion_tokens"], 24);
    assert_eq!(
        v["usage"]["total_tokens"].as_u64(),
        Some(v["usage"]["prompt_tokens"].as_u64().unwrap() + 24)
    );
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["uniskip"]["active_blocks"], 30);
    assert!(
        v["uniskip"]["decode_tokens_per_s"].as_f64().unwrap() > 0.0,
        "{v}"
    );

    let mut body = chat_body(HAIKU, 24);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let events = server.stream("/v1/chat/completions", &body);
    let (text, usage) = streamed_text(&events);
    assert_eq!(text, expected);
    let usage = usage.expect("a usage chunk");
    assert_eq!(usage["usage"]["completion_tokens"], 24, "{usage}");
    assert_eq!(usage["uniskip"]["n_layer"], 30, "{usage}");

    // Sampling: the same seed and settings give run's text.
    let sampled = run_chat(HAIKU, 24, &["--temp", "0.9", "--seed", "7"]);
    let mut body = chat_body(HAIKU, 24);
    body["temperature"] = json!(0.9);
    body["seed"] = json!(7);
    let (_, v) = server.post("/v1/chat/completions", &body);
    assert_eq!(chat_text(&v), sampled);

    // Plain completion equals `run` without --chat.
    let out = Command::new(env!("CARGO_BIN_EXE_uniskip"))
        .args([
            "run",
            "-p",
            "The capital of France is",
            "-n",
            "8",
            "--threads",
            "1",
            "--json",
        ])
        .output()
        .expect("run starts");
    let run: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let (status, v) = server.post(
        "/v1/completions",
        &json!({"prompt": "The capital of France is", "max_tokens": 8, "temperature": 0}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["text"], run["text"]);
}

const PROMPTS: [&str; 8] = [
    "Write a haiku about rain",
    "What is the capital of France?",
    "Name three colours.",
    "Tell me a joke about cats.",
    "How do birds fly?",
    "Give me a word that rhymes with moon.",
    "What is two plus two?",
    "Describe the sea in one sentence.",
];

/// A greedy chat body that runs exactly `max_tokens` tokens.
fn fixed_length_body(prompt: &str, max_tokens: u32) -> Value {
    let mut body = chat_body(prompt, max_tokens);
    body["ignore_eos"] = json!(true);
    body
}

/// Every client decodes the same number of tokens (`ignore_eos`): a sequence that ends
/// early frees cells that llama.cpp then refills with the others' next tokens, out of
/// position order, and attention over cells out of order agrees only within F32 rounding,
/// which can part a near-tie (docs/SERVE.md, "Exactness").
#[test]
fn eight_concurrent_streams_each_get_their_solo_text() {
    let server = Arc::new(Server::start(&["--parallel", "8", "--ctx", "2048"]));
    let solo: Vec<String> = PROMPTS
        .iter()
        .map(|p| {
            chat_text(
                &server
                    .post("/v1/chat/completions", &fixed_length_body(p, 16))
                    .1,
            )
        })
        .collect();
    let threads: Vec<_> = PROMPTS
        .iter()
        .map(|p| {
            let server = server.clone();
            let mut body = fixed_length_body(p, 16);
            body["stream"] = json!(true);
            std::thread::spawn(move || {
                streamed_text(&server.stream("/v1/chat/completions", &body)).0
            })
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        assert_eq!(
            t.join().expect("client"),
            solo[i],
            "prompt {i}: {}",
            PROMPTS[i]
        );
    }
    let h = server.wait_health("all sequences freed", |h| h["slots_busy"] == 0);
    assert_eq!(h["kv_cells_used"], 0, "{h}");
}

#[test]
fn per_request_speedup_and_lossless_are_honoured_side_by_side() {
    let server = Arc::new(Server::start(&["--parallel", "4"]));
    let full = run_chat(HAIKU, 24, &[]);
    let skipped = run_chat(HAIKU, 24, &["--speedup", "2"]);
    assert_ne!(full, skipped, "2x should change this text");
    let bodies = [
        chat_body(HAIKU, 24),
        {
            let mut b = chat_body(HAIKU, 24);
            b["speedup"] = json!(2);
            b
        },
        {
            let mut b = chat_body(HAIKU, 24);
            b["speedup"] = json!(2);
            b["lossless"] = json!(true);
            b
        },
    ];
    // All three at once: three masks, scheduled in their own decode calls.
    let threads: Vec<_> = bodies
        .into_iter()
        .map(|b| {
            let server = server.clone();
            std::thread::spawn(move || server.post("/v1/chat/completions", &b))
        })
        .collect();
    let results: Vec<(u16, Value)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    for (status, v) in &results {
        assert_eq!(*status, 200, "{v}");
    }
    let (full_v, skip_v, lossless_v) = (&results[0].1, &results[1].1, &results[2].1);
    assert_eq!(chat_text(full_v), full);
    assert_eq!(chat_text(skip_v), skipped);
    assert_eq!(skip_v["uniskip"]["active_blocks"], 15, "{skip_v}");
    assert_eq!(skip_v["uniskip"]["target_speedup"], 2.0, "{skip_v}");
    assert_eq!(chat_text(lossless_v), full, "lossless text is full depth's");
    assert_eq!(lossless_v["uniskip"]["lossless"], true, "{lossless_v}");
    assert!(
        lossless_v["uniskip"]["acceptance_rate"].is_number(),
        "{lossless_v}"
    );
    // A strategy per request.
    let mut b = chat_body(HAIKU, 4);
    b["speedup"] = json!(2);
    b["strategy"] = json!("early-exit");
    let (status, v) = server.post("/v1/chat/completions", &b);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["uniskip"]["strategy"], "early-exit", "{v}");
}

/// Sends a streaming request on a raw socket and reads until `chunks` data lines came.
fn start_raw_stream(addr: &str, body: &Value, chunks: usize) -> TcpStream {
    let mut socket = TcpStream::connect(addr).expect("connect");
    let body = body.to_string();
    write!(
        socket,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut reader = BufReader::new(socket.try_clone().expect("clone"));
    let mut seen = 0;
    let mut line = String::new();
    while seen < chunks {
        line.clear();
        if reader.read_line(&mut line).expect("read") == 0 {
            panic!("the stream ended early");
        }
        if line.contains("data: ") {
            seen += 1;
        }
    }
    socket
}

#[test]
fn a_client_that_disconnects_mid_stream_frees_its_sequence_at_once() {
    let server = Server::start(&["--parallel", "1", "--ctx", "128"]);
    let mut body = chat_body(HAIKU, 1000);
    body["stream"] = json!(true);
    body["ignore_eos"] = json!(true);
    let socket = start_raw_stream(&server.addr, &body, 3);
    assert_eq!(
        server.health()["slots_busy"],
        1,
        "busy is published before any text"
    );
    drop(socket);
    let h = server.wait_health("the sequence freed", |h| h["slots_busy"] == 0);
    assert_eq!(h["kv_cells_used"], 0, "{h}");
    assert_eq!(
        h["served"], 0,
        "the generation was stopped, not finished: {h}"
    );
    // The next request has the whole context: it runs until the context is full.
    let (status, v) = server.post(
        "/v1/completions",
        &json!({"prompt": "Once upon a time", "max_tokens": 1000, "ignore_eos": true, "temperature": 0}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["total_tokens"], 128, "{v}");
}

#[test]
fn bad_requests_get_openai_error_objects_with_their_status() {
    let server = Server::start(&[
        "--host",
        "0.0.0.0",
        "--parallel",
        "1",
        "--ctx",
        "128",
        "--max-queue",
        "1",
        "--max-body",
        "4096",
    ]);
    assert!(
        server.startup_stderr().contains("WARNING"),
        "no warning for a non-loopback address without a key"
    );
    let addr = server.addr.replace("0.0.0.0", "127.0.0.1");
    let url = |p: &str| format!("http://{addr}{p}");
    let raw = |body: &str| {
        let mut r = agent()
            .post(&url("/v1/chat/completions"))
            .header("Content-Type", "application/json")
            .send(body)
            .expect("answer");
        let status = r.status().as_u16();
        let retry = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        (status, v, retry)
    };
    let error_of = |v: &Value| {
        assert!(v["error"]["message"].is_string(), "{v}");
        assert!(v["error"]["type"].is_string(), "{v}");
        v["error"].clone()
    };
    let (s, v, _) = raw("{\"messages\": [");
    assert_eq!(s, 400);
    assert!(
        error_of(&v)["message"].as_str().unwrap().contains("JSON"),
        "{v}"
    );
    let (s, v, _) =
        raw(r#"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": "many"}"#);
    assert_eq!(s, 400);
    error_of(&v);
    let (s, v, _) = raw(r#"{"messages": "hi"}"#);
    assert_eq!(s, 400);
    error_of(&v);
    let (s, v, _) = raw(r#"{"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}"#);
    assert_eq!(s, 404);
    assert_eq!(error_of(&v)["code"], "model_not_found");
    let long = "word ".repeat(200);
    let (s, v, _) = raw(&json!({"messages": [{"role": "user", "content": long}]}).to_string());
    assert_eq!(s, 400);
    let e = error_of(&v);
    assert_eq!(e["code"], "context_length_exceeded");
    assert!(e["message"].as_str().unwrap().contains("holds 128"), "{e}");
    let (s, v, _) =
        raw(&json!({"messages": [{"role": "user", "content": "x".repeat(5000)}]}).to_string());
    assert_eq!(s, 413);
    error_of(&v);
    let (s, v) = server.get("/v1/nothing", None);
    assert_eq!(s, 404);
    error_of(&v);

    // One request runs, one waits; the next is refused with Retry-After.
    let mut long_body = chat_body(HAIKU, 1000);
    long_body["stream"] = json!(true);
    long_body["ignore_eos"] = json!(true);
    let running = start_raw_stream(&server.addr, &long_body, 1);
    server.wait_health("one running", |h| h["slots_busy"] == 1);
    let mut waiting = TcpStream::connect(&server.addr).unwrap();
    let b = long_body.to_string();
    write!(
        waiting,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
        b.len()
    )
    .unwrap();
    server.wait_health("one waiting", |h| h["waiting"] == 1);
    let (s, v, retry) = raw(&chat_body(HAIKU, 4).to_string());
    assert_eq!(s, 503, "{v}");
    error_of(&v);
    assert_eq!(retry.as_deref(), Some("1"));
    drop(running);
    drop(waiting);
    // The server goes on serving.
    server.wait_health("both gone", |h| h["slots_busy"] == 0 && h["waiting"] == 0);
    let (s, v, _) = raw(&chat_body(HAIKU, 4).to_string());
    assert_eq!(s, 200, "{v}");
}

#[test]
fn the_api_key_is_required_on_every_route() {
    let server = Server::start(&["--api-key", "s3cret", "--parallel", "1", "--ctx", "256"]);
    assert!(!server.startup_stderr().contains("WARNING"));
    for path in ["/health", "/v1/models"] {
        assert_eq!(server.get(path, None).0, 401, "{path}");
        assert_eq!(server.get(path, Some("wrong")).0, 401, "{path}");
        assert_eq!(server.get(path, Some("s3cret")).0, 200, "{path}");
    }
    let (s, v) = server.post("/v1/chat/completions", &chat_body(HAIKU, 2));
    assert_eq!(s, 401);
    assert_eq!(v["error"]["code"], "invalid_api_key");
    let (s, v) = server.post_with("/v1/chat/completions", &chat_body(HAIKU, 2), Some("s3cret"));
    assert_eq!(s, 200, "{v}");
    let (s, v) = server.get("/v1/models", Some("s3cret"));
    assert_eq!(s, 200);
    assert_eq!(v["data"][0]["id"], "smollm2");
}

#[test]
fn sigterm_ends_a_running_stream_cleanly_and_exits_zero() {
    let server = Server::start(&["--parallel", "1", "--ctx", "512"]);
    let mut body = chat_body(HAIKU, 1000);
    body["stream"] = json!(true);
    body["ignore_eos"] = json!(true);
    let socket = start_raw_stream(&server.addr, &body, 2);
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    let mut rest = String::new();
    let mut reader = BufReader::new(socket);
    let _ = reader.read_to_string(&mut rest);
    assert!(rest.contains("\"finish_reason\":\"stop\""), "{rest}");
    assert!(rest.contains("data: [DONE]"), "{rest}");
}

//! `uniskip rpc-server` and `--rpc`: blocks offloaded to two RPC servers on this machine
//! (loopback only), against the same model run locally.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_uniskip");
/// How long anything here may take before the test fails instead of hanging.
const BOUND: Duration = Duration::from_secs(120);

/// An `rpc-server` on 127.0.0.1, killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start() -> Server {
        // A port that was free a moment ago.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(BIN)
            .args(["rpc-server", "--port", &port.to_string(), "-t", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rpc-server starts");
        let deadline = Instant::now() + BOUND;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "rpc-server never listened");
            std::thread::sleep(Duration::from_millis(100));
        }
        Server { child, port }
    }

    fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary to completion, failing the test after [`BOUND`].
fn run_bounded(args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    let deadline = Instant::now() + BOUND;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("uniskip {args:?} did not finish within {BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn generate(extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "run",
        "-m",
        "smollm2",
        "-t",
        "2",
        "-n",
        "24",
        "--json",
        "-p",
        "The old lighthouse keeper climbed the stairs every evening, and",
    ];
    args.extend_from_slice(extra);
    let out = run_bounded(&args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

#[test]
fn two_servers_give_the_local_greedy_output_at_full_depth_and_under_a_mask() {
    let (a, b) = (Server::start(), Server::start());
    let rpc = format!("{},{}", a.endpoint(), b.endpoint());
    for mask in [
        &[][..],
        &["--skip-layers", "10-19"][..],
        &["--speedup", "1.5"][..],
    ] {
        let local = generate(mask);
        let mut remote_args = mask.to_vec();
        remote_args.extend_from_slice(&["--rpc", &rpc]);
        let remote = generate(&remote_args);
        assert_eq!(remote["text"], local["text"], "mask {mask:?}");
        assert_eq!(remote["active_layers"], local["active_layers"]);
        assert_eq!(remote["generated_tokens"], 24, "{remote}");
        // The blocks are split over both servers; the local run has no split.
        let split = remote["rpc_split"].as_array().unwrap();
        assert_eq!(split.len(), 2, "{remote}");
        assert!(split[0].as_str().unwrap().starts_with(&a.endpoint()));
        assert!(
            split[1].as_str().unwrap().contains("output head"),
            "{split:?}"
        );
        assert_eq!(local["rpc_split"], serde_json::json!([]));
    }
}

#[test]
fn a_server_killed_mid_reply_ends_the_client_with_one_clear_error() {
    let (a, mut b) = (Server::start(), Server::start());
    let rpc = format!("{},{}", a.endpoint(), b.endpoint());
    // A long reply: most blocks skipped, so it babbles rather than stopping early.
    let mut client = Command::new(BIN)
        .args([
            "run",
            "-m",
            "smollm2",
            "-t",
            "2",
            "-n",
            "2000",
            "--ctx",
            "4096",
            "--skip-layers",
            "6-23",
            "-p",
            "Once upon a time",
            "--rpc",
            &rpc,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the reply to start streaming, then kill one server.
    let mut stdout = client.stdout.take().unwrap();
    let mut first = [0u8; 16];
    let n = stdout.read(&mut first).unwrap();
    assert!(n > 0, "the reply started");
    b.child.kill().unwrap();
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = client.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = client.kill();
            panic!("the client hung after its server died");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    client
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(
        status.code(),
        Some(1),
        "a failure of the world, not an abort: {stderr}"
    );
    assert!(
        stderr.contains("lost the connection to an RPC server"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("core dumped") && !stderr.contains("GGML_ASSERT"),
        "{stderr}"
    );
}

#[test]
fn malformed_and_unreachable_servers_are_bad_input() {
    // A port nothing listens on (bound, then released).
    let free = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nobody = format!("127.0.0.1:{free}");
    for rpc in [
        "127.0.0.1",
        "127.0.0.1:notaport",
        "127.0.0.1:70000",
        ":50052",
        &nobody,
    ] {
        let out = run_bounded(&["run", "-m", "smollm2", "-n", "4", "-p", "Hi", "--rpc", rpc]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--rpc {rpc}: {stderr}");
        assert!(stderr.contains(rpc.split(':').next().unwrap()), "{stderr}");
    }
    // Something that is not an RPC server answers on the port: refused, not a hang.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let silent = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        let _ = sock.read(&mut buf);
        std::io::Write::write_all(&mut sock, b"HTTP/1.0 400 Bad Request\r\n\r\n").unwrap();
    });
    let out = run_bounded(&[
        "run",
        "-m",
        "smollm2",
        "-n",
        "4",
        "-p",
        "Hi",
        "--rpc",
        &format!("127.0.0.1:{port}"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not in the RPC protocol"));
    silent.join().unwrap();
}

#[test]
fn rpc_server_refuses_a_port_in_use() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = run_bounded(&["rpc-server", "--port", &port]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen"));
}

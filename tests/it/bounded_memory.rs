//! Hostile files: every command that opens a GGUF file keeps its peak memory bounded, measured
//! here as the child's peak RSS, or refuses the file with exit code 2 in one line that names
//! the key and the size.
//!
//! The files are made here from the real SmolLM2 model, never committed: one more metadata
//! entry of 60,000,000 u8 elements (a valid 158 MB file that llama.cpp loads; reading it with
//! gguf-rs once took 3.76 GB), a string value whose length field claims 1 GiB in a 64 KiB
//! file, and arrays exactly at the validator's element limit (accepted, then loaded).

use crate::common;

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::process::{Command, Output};

use uniskip::gguf::{MAX_ARRAY_ELEMENTS, validate_file};

/// Peak RSS of a command that refuses a file: the process and the validator, nothing loaded.
/// (`uniskip plan` on the real model peaks at about 8 MiB; see [`uniskip_peak`] for the floor.)
const REFUSAL_MIB: f64 = 64.0;
/// What arrays at the element limit may add to a command's peak RSS on the real model.
/// llama.cpp formats every metadata array element as text while it loads a model (a few bytes
/// per element, copied a few times): 4,194,304 elements stay within this.
const AT_LIMIT_EXTRA_MIB: f64 = 64.0;

/// Runs `uniskip ARGS`; returns its output and its peak RSS in MiB. python3 runs it and reads
/// `getrusage(RUSAGE_CHILDREN)`: the peak of its only child, untouched by other tests' children.
/// The peak includes a floor of python's own RSS at the fork (about 13 MiB), since the kernel
/// keeps a process's high-water mark across `exec`.
fn uniskip_peak(args: &[&str]) -> (Output, f64) {
    let dir = tempfile::tempdir().unwrap();
    let peak_file = dir.path().join("peak");
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            "import resource, subprocess, sys\n\
             code = subprocess.call(sys.argv[2:])\n\
             open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n\
             sys.exit(code if code >= 0 else 128 - code)",
        )
        .arg(&peak_file)
        .arg(env!("CARGO_BIN_EXE_uniskip"))
        .args(args)
        .output()
        .expect("python3 runs (it also fetches the models)");
    let kib: f64 = std::fs::read_to_string(&peak_file)
        .expect("python3 wrote the peak RSS")
        .trim()
        .parse()
        .unwrap();
    (out, kib / 1024.0)
}

/// The four commands that open a model, with small settings; `out` takes bench's report.
fn commands(model: &str, out: &Path) -> Vec<(&'static str, Vec<String>)> {
    let list = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
    let with_model = |name: &'static str, rest: &str| {
        let mut args = vec![name.to_string(), "-m".into(), model.into()];
        args.extend(list(rest));
        (name, args)
    };
    let mut bench = with_model(
        "bench",
        "-t 2 --strategies unified --targets 2 --batch 1 --rounds 1 --tokens 4 \
         --prompt-tokens 8 --windows 1 --prefix 8 --continuation 8 --no-calibrate --out",
    );
    bench.1.push(out.to_str().unwrap().into());
    vec![
        with_model("plan", "--speedup 2"),
        with_model("run", "-p hello -n 2 -t 2"),
        with_model("ppl", "--windows 1 --prefix 8 --continuation 8 -t 2"),
        bench,
    ]
}

/// Writes `dst`: SmolLM2 with one more metadata entry first, `key…` = an array of `count`
/// zero u8 elements. The key is padded so that the entry is a whole number of alignment units:
/// everything after it moves by whole units, so the tensor data stays aligned and the file
/// valid. Returns the padded key.
fn smollm2_with_u8_array(dst: &Path, key: &str, count: u64) -> String {
    let src = common::model_path("smollm2");
    let align = validate_file(&src).expect("SmolLM2 is valid").alignment;
    let mut key = key.to_string();
    while !(24 + key.len() as u64 + count).is_multiple_of(align) {
        key.push('_');
    }
    let mut input = BufReader::new(File::open(&src).unwrap());
    let mut header = [0u8; 24];
    input.read_exact(&mut header).unwrap();
    let n_kv = u64::from_le_bytes(header[16..24].try_into().unwrap());
    header[16..24].copy_from_slice(&(n_kv + 1).to_le_bytes());
    let mut out = BufWriter::new(File::create(dst).unwrap());
    out.write_all(&header).unwrap();
    out.write_all(&(key.len() as u64).to_le_bytes()).unwrap();
    out.write_all(key.as_bytes()).unwrap();
    out.write_all(&9u32.to_le_bytes()).unwrap(); // array
    out.write_all(&0u32.to_le_bytes()).unwrap(); // of u8
    out.write_all(&count.to_le_bytes()).unwrap();
    std::io::copy(&mut std::io::repeat(0).take(count), &mut out).unwrap();
    std::io::copy(&mut input, &mut out).unwrap();
    out.into_inner().unwrap().sync_all().unwrap();
    key
}

/// Exit code 2, one line on stderr containing every needle, and a peak RSS under `bound_mib`.
fn assert_refused(name: &str, (out, peak): &(Output, f64), needles: &[&str], bound_mib: f64) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{name}: {:?}; stderr: {err}",
        out.status
    );
    assert_eq!(err.trim().lines().count(), 1, "{name}: not one line: {err}");
    for needle in needles {
        assert!(err.contains(needle), "{name}: `{needle}` not in: {err}");
    }
    assert!(
        *peak < bound_mib,
        "{name}: peak RSS {peak:.1} MiB while refusing, bound {bound_mib} MiB"
    );
    eprintln!("{name}: refused, peak RSS {peak:.1} MiB");
}

#[test]
fn a_60_million_element_array_is_refused_by_every_command_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("large-array.gguf");
    let key = smollm2_with_u8_array(&file, "hostile.bytes", 60_000_000);
    assert!(std::fs::metadata(&file).unwrap().len() > 158_000_000);
    for (name, args) in commands(file.to_str().unwrap(), dir.path()) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let result = uniskip_peak(&args);
        assert_refused(
            name,
            &result,
            &[&format!("`{key}`"), "60000000 elements", "large-array.gguf"],
            REFUSAL_MIB,
        );
    }
}

#[test]
fn a_string_claiming_1_gib_in_a_small_file_is_refused_by_every_command_in_bounded_memory() {
    let mut head = vec![0u8; 64 * 1024];
    File::open(common::model_path("smollm2"))
        .unwrap()
        .read_exact(&mut head)
        .unwrap();
    // `general.name`'s value: after the key come its type (u32) and the string length (u64).
    let key = b"general.name";
    let at = head.windows(key.len()).position(|w| w == key).unwrap() + key.len();
    assert_eq!(head[at..at + 4], 8u32.to_le_bytes(), "a string");
    head[at + 4..at + 12].copy_from_slice(&(1u64 << 30).to_le_bytes());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("long-string.gguf");
    std::fs::write(&file, &head).unwrap();
    for (name, args) in commands(file.to_str().unwrap(), dir.path()) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let result = uniskip_peak(&args);
        assert_refused(
            name,
            &result,
            &["`general.name`", "1073741824 bytes", "long-string.gguf"],
            REFUSAL_MIB,
        );
    }
}

#[test]
fn arrays_at_the_element_limit_load_in_bounded_memory() {
    let model = common::model_path("smollm2");
    let real = validate_file(&model).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("at-limit.gguf");
    smollm2_with_u8_array(
        &file,
        "hostile.bytes",
        MAX_ARRAY_ELEMENTS - real.array_elements,
    );
    assert_eq!(
        validate_file(&file)
            .expect("at the limit is valid")
            .array_elements,
        MAX_ARRAY_ELEMENTS
    );
    let real_commands = commands(model.to_str().unwrap(), dir.path());
    let hostile_commands = commands(file.to_str().unwrap(), dir.path());
    for ((name, real_args), (_, hostile_args)) in real_commands.iter().zip(&hostile_commands) {
        let run = |args: &Vec<String>| {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (out, peak) = uniskip_peak(&args);
            assert!(
                out.status.success(),
                "{name} {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            peak
        };
        let (baseline, peak) = (run(real_args), run(hostile_args));
        eprintln!("{name}: peak RSS {baseline:.1} MiB on SmolLM2, {peak:.1} MiB at the limit");
        assert!(
            peak < baseline + AT_LIMIT_EXTRA_MIB,
            "{name}: {peak:.1} MiB at the limit, {baseline:.1} MiB on the model itself"
        );
    }
}

//! scripts/setup.sh, the set-up check that `just setup` and .ci/run share, run against
//! made-up directory trees: it must find libclang where bindgen's loader (clang-sys) finds
//! it, and nowhere else.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A fake file system root holding `files` (paths relative to the root, e.g.
/// "usr/lib/llvm-14/lib/libclang.so").
fn tree(files: &[&str]) -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("temp dir");
    for f in files {
        let path = root.path().join(f);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"\x7fELF").unwrap();
    }
    root
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/setup.sh")
}

/// Runs `setup.sh --check` searching only under `root` (LIBCLANG_PATH as given); returns
/// its exit code and the libclang line.
fn libclang_check(root: &Path, libclang_path: Option<&Path>) -> (i32, String) {
    let mut cmd = Command::new("bash");
    cmd.arg(script())
        .arg("--check")
        .env("UNISKIP_SETUP_ROOT", root)
        .env_remove("LIBCLANG_PATH")
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("LIBRARY_PATH");
    if let Some(p) = libclang_path {
        cmd.env("LIBCLANG_PATH", p);
    }
    let out = cmd.output().expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = stdout
        .lines()
        .find(|l| l.starts_with("libclang:"))
        .unwrap_or_else(|| panic!("no libclang line in:\n{stdout}"))
        .to_string();
    (out.status.code().unwrap_or(-1), line)
}

#[test]
fn only_libclang_cpp_is_missing() {
    // Debian 12 with clang tools but without libclang-dev: the case that fooled a glob.
    let root = tree(&[
        "usr/lib/llvm-14/lib/libclang-cpp.so.14",
        "usr/lib/x86_64-linux-gnu/libclang-cpp.so.14",
    ]);
    let (code, line) = libclang_check(root.path(), None);
    assert!(line.starts_with("libclang: missing"), "{line}");
    assert_eq!(code, 1, "a missing requirement fails the check");
}

#[test]
fn versioned_libclang_is_present() {
    let root = tree(&[
        "usr/lib/llvm-14/lib/libclang-cpp.so.14",
        "usr/lib/x86_64-linux-gnu/libclang-14.so.1",
    ]);
    let (_, line) = libclang_check(root.path(), None);
    assert!(line.starts_with("libclang: present"), "{line}");
    assert!(line.contains("libclang-14.so.1"), "{line}");
}

#[test]
fn plain_libclang_so_in_llvm_lib_is_present() {
    let root = tree(&["usr/lib/llvm-16/lib/libclang.so"]);
    let (_, line) = libclang_check(root.path(), None);
    assert!(line.starts_with("libclang: present"), "{line}");
    assert!(line.contains("llvm-16/lib/libclang.so"), "{line}");
}

#[test]
fn libclang_under_usr_local_and_lib64_is_present() {
    for file in [
        "usr/local/lib/libclang.so.18",
        "usr/lib64/libclang-17.so",
        "usr/local/llvm18/lib/libclang.so",
    ] {
        let root = tree(&[file]);
        let (_, line) = libclang_check(root.path(), None);
        assert!(line.starts_with("libclang: present"), "{file}: {line}");
    }
}

#[test]
fn libclang_elsewhere_is_not_found() {
    // A directory clang-sys does not search (and a static archive, which it never loads).
    let root = tree(&[
        "opt/clang/lib/libclang.so",
        "usr/lib/llvm-14/lib/libclangAST.a",
    ]);
    let (_, line) = libclang_check(root.path(), None);
    assert!(line.starts_with("libclang: missing"), "{line}");
}

#[test]
fn libclang_path_is_the_only_place_searched_when_set() {
    let root = tree(&[
        "usr/lib/llvm-14/lib/libclang.so",
        "opt/clang/lib/libclang-cpp.so.14",
    ]);
    let elsewhere = root.path().join("opt/clang/lib");
    let (_, line) = libclang_check(root.path(), Some(&elsewhere));
    assert!(
        line.starts_with("libclang: missing"),
        "LIBCLANG_PATH wins: {line}"
    );

    std::fs::write(elsewhere.join("libclang.so.1"), b"\x7fELF").unwrap();
    let (_, line) = libclang_check(root.path(), Some(&elsewhere));
    assert!(line.starts_with("libclang: present"), "{line}");
    // LIBCLANG_PATH may also name the file itself.
    let (_, line) = libclang_check(root.path(), Some(&elsewhere.join("libclang.so.1")));
    assert!(line.starts_with("libclang: present"), "{line}");
}

#[test]
fn unknown_argument_is_bad_input() {
    let out = Command::new("bash")
        .arg(script())
        .arg("--bogus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown argument"));
}

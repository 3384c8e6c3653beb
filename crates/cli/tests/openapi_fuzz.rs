//! The API as an outside client sees it (issue 22), against `serve --sandbox` with accounts
//! connected through the sandbox:
//!
//! - schemathesis fuzzes every operation of the served `/openapi.json` with all of its checks, at
//!   a fixed seed and example count, and must find nothing. Its configuration and hooks are in
//!   `tests/peers/openapi/` (`schemathesis.toml` says where an operation answers differently by
//!   design, `hooks.py` why each request comes from an address of its own). Another seed by hand:
//!   `TOKENWARDEN_FUZZ_SEED=2 cargo test -p tokenwarden --test openapi_fuzz`
//!   (`TOKENWARDEN_FUZZ_EXAMPLES` sets the example count).
//! - A Python client that openapi-python-client generates from the same document fetches a token
//!   and lists connections.
//!
//! Both tools are pinned in `tests/peers/openapi/requirements.txt` and installed by
//! `scripts/ensure-peers` into `tests/peers/openapi/.venv`; without them this test fails, never
//! skips.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::Daemon;

/// The CI seed and example count: about half a minute of fuzzing.
const SEED: &str = "1";
const EXAMPLES: &str = "30";

fn peers() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .join("tests/peers/openapi")
}

/// A program of the API test's virtual environment; the test fails, saying how to install it,
/// when it is missing.
fn venv(program: &str) -> PathBuf {
    let path = peers().join(".venv/bin").join(program);
    assert!(
        path.is_file(),
        "{} is missing: the API test runs schemathesis and openapi-python-client from a virtual environment that scripts/ensure-peers makes (python3 -m venv, then pip install -r tests/peers/openapi/requirements.txt); run scripts/ensure-peers",
        path.display()
    );
    path
}

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The daemon with three accounts connected (real connections for the operations that take an
/// id), trusting X-Forwarded-For from loopback so that hooks.py can give each request an
/// address of its own.
fn daemon(data: &Path) -> (Daemon, String) {
    let d = Daemon::start_with(data, &[("TOKENWARDEN_TRUSTED_PROXIES", "127.0.0.1")]);
    for provider in ["snapchat", "meta", "tiktok-business"] {
        d.connect(provider);
    }
    let key = std::fs::read_to_string(data.join("admin.key")).unwrap();
    (d, key.trim().to_string())
}

#[test]
fn schemathesis_finds_nothing_wrong_with_the_api_or_its_document() {
    let schemathesis = venv("schemathesis");
    let data = tempfile::tempdir().unwrap();
    let (d, key) = daemon(data.path());
    // The key's public id (`tw_<id>_<secret>`): hooks.py keeps the run from revoking it.
    let key_id = key.split('_').nth(1).unwrap().to_string();
    let seed = std::env::var("TOKENWARDEN_FUZZ_SEED").unwrap_or_else(|_| SEED.into());
    let examples = std::env::var("TOKENWARDEN_FUZZ_EXAMPLES").unwrap_or_else(|_| EXAMPLES.into());
    let work = tempfile::tempdir().unwrap();
    let out = Command::new(&schemathesis)
        .arg("--config-file")
        .arg(peers().join("schemathesis.toml"))
        .args(["run", &format!("{}openapi.json", d.base)])
        .args(["--header", &format!("Authorization: Bearer {key}")])
        .args(["--checks", "all"])
        .args(["--seed", &seed, "--max-examples", &examples])
        // One worker, and no example database carried between runs: the same seed makes the
        // same run.
        .args(["--workers", "1", "--generation-database", "none"])
        .current_dir(work.path())
        .env("PYTHONPATH", peers())
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("TOKENWARDEN_FUZZ_KEY_ID", &key_id)
        .env("NO_COLOR", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", schemathesis.display()));
    let text = said(&out);
    assert!(!text.contains(&key), "the output never shows the API key");
    // On a failure schemathesis names the operation and the case, with a curl command that
    // replays it (the key shown as [Filtered]).
    assert_eq!(
        out.status.code(),
        Some(0),
        "schemathesis (seed {seed}, {examples} examples per operation) found problems:\n{text}"
    );
    assert!(
        text.contains(&format!("Seed: {seed}")) && text.contains(" passed"),
        "{text}"
    );
    // The summary, for a run by hand with --nocapture.
    let summary = text.split("SUMMARY").last().unwrap_or_default();
    println!("schemathesis, seed {seed}, {examples} examples:{summary}");
    d.stop();
}

#[test]
fn a_client_generated_from_the_document_fetches_a_token_and_lists_connections() {
    let generator = venv("openapi-python-client");
    let python = venv("python");
    let data = tempfile::tempdir().unwrap();
    let (d, key) = daemon(data.path());
    let work = tempfile::tempdir().unwrap();
    let package = work.path().join("tokenwarden_client");
    // With the virtual environment first on PATH, its ruff formats the generated code.
    let path = format!(
        "{}:{}",
        peers().join(".venv/bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(&generator)
        .args(["generate", "--url", &format!("{}openapi.json", d.base)])
        .arg("--output-path")
        .arg(&package)
        .args(["--meta", "none"])
        .current_dir(work.path())
        .env("PATH", &path)
        .output()
        .unwrap();
    let text = said(&out);
    assert_eq!(out.status.code(), Some(0), "openapi-python-client: {text}");
    // It reads the whole document: nothing skipped or half-understood.
    assert!(
        !text.contains("Warning") && !text.contains("Error"),
        "openapi-python-client: {text}"
    );

    let out = Command::new(&python)
        .arg(peers().join("generated_client.py"))
        .arg("snapchat-1")
        .current_dir(work.path())
        .env("PYTHONPATH", work.path())
        .env("TOKENWARDEN_URL", &d.base)
        .env("TOKENWARDEN_API_KEY", &key)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    let text = said(&out);
    assert_eq!(out.status.code(), Some(0), "the generated client: {text}");
    assert!(
        text.contains("connections: meta-1, snapchat-1, tiktok-business-1"),
        "{text}"
    );
    assert!(text.contains("snapchat active: snapchat-1"), "{text}");
    assert!(
        text.contains("token: snapchat-1, Bearer, version 1"),
        "{text}"
    );
    assert!(text.contains("unknown connection: 404 not_found"), "{text}");
    assert!(!text.contains(&key), "{text}");
    // The token it fetched is the one the CLI gets (its last four characters: never the token).
    let token = d.ok(data.path(), &["token", "snapchat-1"]);
    assert!(!text.contains(&token), "the script never prints the token");
    assert!(
        text.contains(&format!("…{}", &token[token.len() - 4..])),
        "{text}"
    );
    d.stop();
}

//! `serve --sandbox` keeps its sandbox across restarts (issue 15, item 3): a connection made
//! before a restart still refreshes after it, including TikTok Login Kit, whose refresh tokens
//! rotate (the sandbox must remember the newest one and that the old one was rotated out).

mod support;

use std::path::Path;
use std::process::Command;
use support::Daemon;

/// Refreshes `id` from the shell and says the token changed and the connection stayed active.
fn refresh_works(d: &Daemon, data: &Path, id: &str) -> String {
    let before = d.ok(data, &["token", id]);
    d.ok(data, &["connections", "refresh", id]);
    let after = d.ok(data, &["token", id]);
    assert_ne!(before, after, "{id}: a new token after the refresh");
    assert_eq!(d.state(data, id), "active", "{id}");
    after
}

#[test]
fn connections_made_through_the_sandbox_still_refresh_after_restarts() {
    let data = tempfile::tempdir().unwrap();
    let d = Daemon::start(data.path());
    d.connect("tiktok");
    d.connect("snapchat");
    // One rotation before the restart: the sandbox must remember which refresh token is current.
    let tiktok_token = refresh_works(&d, data.path(), "tiktok-1");
    d.stop();

    let ledger = data.path().join("sandbox-ledger.json");
    let written = std::fs::read_to_string(&ledger).expect("the sandbox's books are kept");
    assert!(
        !written.contains(&tiktok_token) && !written.contains("demo-tiktok-secret"),
        "the books hold digests, never a token or a secret"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&ledger).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    // New ports, same data directory: the daemon's tokens are the sandbox's tokens still.
    let d = Daemon::start(data.path());
    for id in ["tiktok-1", "snapchat-1"] {
        assert_eq!(d.state(data.path(), id), "active", "{id} after a restart");
        refresh_works(&d, data.path(), id);
    }
    d.stop();

    // And again: the rotation made after the first restart was kept too.
    let d = Daemon::start(data.path());
    refresh_works(&d, data.path(), "tiktok-1");
    d.stop();
}

#[test]
fn a_ledger_that_cannot_be_read_back_stops_serve_with_its_path() {
    let data = tempfile::tempdir().unwrap();
    let ledger = data.path().join("sandbox-ledger.json");
    std::fs::write(&ledger, "{\"format\": 1, \"saved_at\"").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .args([
            "serve",
            "--sandbox",
            "--listen",
            "127.0.0.1:0",
            "--sandbox-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data.path())
        .env("NO_COLOR", "1")
        .env_remove("TOKENWARDEN_MASTER_KEY")
        .env_remove("TOKENWARDEN_DATABASE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&ledger.display().to_string()) && err.contains("move it away"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&ledger).unwrap(),
        "{\"format\": 1, \"saved_at\"",
        "the file is left as it was"
    );
}

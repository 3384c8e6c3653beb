//! The Python (`requests`) and Node (`fetch`) examples in `examples/`, run as a user would run them
//! against `serve --sandbox` (issue 15, item 7): a fresh token and a call through the proxy, then
//! the same after the grant was revoked at the platform, where they must point at the
//! re-authorization link. They need `python3` with `requests` and Node.js 20+, which
//! `scripts/ensure-peers` installs; this test fails, never skips, without them.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::Daemon;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .join("examples")
        .join(name)
}

/// `python3 examples/python/…` or `node examples/node/…` with the daemon's URL and a key.
fn run(program: &str, script: &str, d: &Daemon, key: &str, connection: &str) -> Output {
    Command::new(program)
        .arg(example(script))
        .args([connection, "me"])
        .env("TOKENWARDEN_URL", &d.base)
        .env("TOKENWARDEN_API_KEY", key)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}; run scripts/ensure-peers"))
}

fn peers_present() {
    let python = Command::new("python3")
        .args(["-c", "import requests"])
        .output();
    assert!(
        python.as_ref().is_ok_and(|o| o.status.success()),
        "the Python example needs python3 with requests: run scripts/ensure-peers (pip install -r examples/python/requirements.txt); {:?}",
        python.map(|o| String::from_utf8_lossy(&o.stderr).to_string())
    );
    let node = Command::new("node")
        .args(["-p", "process.versions.node.split('.')[0]"])
        .output();
    let major: u32 = node
        .as_ref()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(0);
    assert!(
        major >= 20,
        "the Node example needs Node.js 20 or later (built-in fetch) on PATH; found {node:?}"
    );
}

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_python_and_node_examples_fetch_a_token_and_call_through_the_proxy() {
    peers_present();
    let data = tempfile::tempdir().unwrap();
    let d = Daemon::start(data.path());
    let dir = data.path();
    d.connect("snapchat");
    let key = std::fs::read_to_string(dir.join("admin.key")).unwrap();
    let key = key.trim();
    let token = d.ok(dir, &["token", "snapchat-1"]);

    for (program, script) in [
        ("python3", "python/tokenwarden_example.py"),
        ("node", "node/tokenwarden_example.mjs"),
    ] {
        let out = run(program, script, &d, key, "snapchat-1");
        let text = said(&out);
        assert_eq!(out.status.code(), Some(0), "{script}: {text}");
        assert!(text.contains("token: fresh (Bearer)"), "{script}: {text}");
        assert!(
            text.contains("proxy: HTTP 200, kind ok, action none"),
            "{script}: {text}"
        );
        assert!(text.contains("\"me\""), "the platform's answer: {text}");
        assert!(!text.contains(&token), "{script} never prints the token");
        assert!(!text.contains(key), "{script} never prints the API key");

        // A wrong key is told apart from a missing connection.
        let out = run(program, script, &d, "tw_nope_nope", "snapchat-1");
        assert_eq!(out.status.code(), Some(1), "{script}: {}", said(&out));
        assert!(said(&out).contains("unauthorized"), "{}", said(&out));
        let out = run(program, script, &d, key, "nope");
        assert_eq!(out.status.code(), Some(1));
        assert!(said(&out).contains("not_found"), "{}", said(&out));
    }

    // The grant is revoked at the platform: the next call finds out, and both examples say who
    // must do what, with the link.
    let http = reqwest::blocking::Client::new();
    let grants: serde_json::Value = http
        .get(format!("{}/_sandbox/grants?provider=snapchat", d.sandbox))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let grant = grants["grants"][0]["id"].as_str().unwrap().to_string();
    assert!(
        http.post(format!("{}/_sandbox/grants/{grant}/revoke", d.sandbox))
            .send()
            .unwrap()
            .status()
            .is_success()
    );
    for (program, script) in [
        ("python3", "python/tokenwarden_example.py"),
        ("node", "node/tokenwarden_example.mjs"),
    ] {
        let out = run(program, script, &d, key, "snapchat-1");
        let text = said(&out);
        assert_eq!(out.status.code(), Some(2), "{script}: {text}");
        assert!(
            text.contains(&format!("re-authorize: {}", d.base)),
            "{script}: {text}"
        );
        assert!(!text.contains(&token));
    }
    assert_eq!(d.state(dir, "snapchat-1"), "reauth_required");

    // Without a daemon they say where they looked.
    d.stop();
    let out = Command::new("node")
        .arg(example("node/tokenwarden_example.mjs"))
        .env("TOKENWARDEN_URL", "http://127.0.0.1:1")
        .env("TOKENWARDEN_API_KEY", key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(said(&out).contains("cannot reach tokenwarden at http://127.0.0.1:1"));
}

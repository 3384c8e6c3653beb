//! `serve --log-format json|text`: one line per event on stderr, JSON objects when asked, readable
//! text otherwise, and no secret in either (the dashboard password, the admin key).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct Daemon {
    child: Child,
    base: String,
    lines: mpsc::Receiver<String>,
    data: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const PASSWORD: &str = "pw-only-in-the-environment";

fn start(format: &str) -> Daemon {
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .args([
            "serve",
            "--sandbox",
            "--listen",
            "127.0.0.1:0",
            "--sandbox-listen",
            "127.0.0.1:0",
            "--log-format",
            format,
            "--data-dir",
        ])
        .arg(data.path())
        .env("NO_COLOR", "1")
        .env("TOKENWARDEN_DASHBOARD_PASSWORD", PASSWORD)
        .env("TOKENWARDEN_LOG", "debug")
        .env_remove("RUST_LOG")
        .env_remove("TOKENWARDEN_MASTER_KEY")
        .env_remove("TOKENWARDEN_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = loop {
        let line = out.next().expect("serve prints its address").unwrap();
        if let Some(rest) = line.strip_prefix("tokenwarden is serving on ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in out {});
    let (tx, lines) = mpsc::channel();
    let err = BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in err.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    Daemon {
        child,
        base,
        lines,
        data,
    }
}

/// Signs in wrongly, then rightly; the log lines up to the one saying the second worked.
fn sign_in_twice(d: &Daemon) -> Vec<String> {
    let http = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = |secret: &str| {
        http.post(format!("{}login", d.base))
            .form(&[("secret", secret)])
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(login("a wrong guess"), 401);
    assert_eq!(login(PASSWORD), 303);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|l: &String| l.contains("dashboard: signed in"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match d.lines.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("no sign-in log line; got:\n{}", seen.join("\n")),
        }
    }
    seen
}

fn no_secrets(d: &Daemon, lines: &[String]) {
    let admin = std::fs::read_to_string(d.data.path().join("admin.key")).unwrap();
    for l in lines {
        assert!(!l.contains(PASSWORD), "{l}");
        assert!(!l.contains(admin.trim()), "{l}");
        assert!(!l.contains("demo-snapchat-secret"), "{l}");
    }
}

#[test]
fn json_logs_are_one_object_per_line() {
    let d = start("json");
    let lines = sign_in_twice(&d);
    for l in &lines {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{l}");
        assert!(v["target"].is_string(), "{l}");
    }
    let refused = lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["message"] == "dashboard: a sign-in was refused")
        .expect("the refused sign-in is logged");
    assert_eq!(refused["level"], "WARN");
    let signed = lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["message"] == "dashboard: signed in")
        .unwrap();
    assert_eq!(signed["who"], "password", "fields are top-level keys");
    no_secrets(&d, &lines);
}

#[test]
fn text_logs_are_readable_lines() {
    let d = start("text");
    let lines = sign_in_twice(&d);
    let refused = lines
        .iter()
        .find(|l| l.contains("dashboard: a sign-in was refused"))
        .expect("the refused sign-in is logged");
    assert!(refused.contains("WARN"), "{refused}");
    assert!(!refused.trim_start().starts_with('{'), "{refused}");
    assert!(
        !refused.contains('\u{1b}'),
        "no colour codes with NO_COLOR or off a terminal"
    );
    no_secrets(&d, &lines);
}

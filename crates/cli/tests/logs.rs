//! `serve --log-format json|text`: one line per event on stderr, JSON objects when asked, readable
//! text otherwise, and no secret in either (the dashboard password, the admin key). At the default
//! level the daemon tells what it does: a scripted day (connect, refresh, an outage, a revoked
//! grant found by a probe, webhooks) is read back from its log, line by line, with no secret the
//! scenario saw and no SQL.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct Daemon {
    child: Child,
    base: String,
    /// The sandbox platforms' origin.
    sandbox: String,
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
    start_at(format, Some("debug"))
}

/// `level`: `TOKENWARDEN_LOG`, or `None` for the default filter.
fn start_at(format: &str, level: Option<&str>) -> Daemon {
    let data = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tokenwarden"));
    match level {
        Some(l) => cmd.env("TOKENWARDEN_LOG", l),
        None => cmd.env_remove("TOKENWARDEN_LOG"),
    };
    let mut child = cmd
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
        .env_remove("RUST_LOG")
        .env_remove("TOKENWARDEN_MASTER_KEY")
        .env_remove("TOKENWARDEN_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let (base, sandbox) = loop {
        let line = out.next().expect("serve prints its address").unwrap();
        if let Some(rest) = line.strip_prefix("tokenwarden is serving on ") {
            let sandbox = rest
                .split_once("sandbox platforms at ")
                .and_then(|(_, s)| s.split([',', ' ']).next())
                .expect("serve --sandbox says where the sandbox is")
                .trim_end_matches('/')
                .to_string();
            break (rest.split_whitespace().next().unwrap().to_string(), sandbox);
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
        sandbox,
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
        // TOKENWARDEN_LOG=debug is about tokenwarden: the database driver's per-query lines
        // stay off unless the filter names sqlx.
        assert!(!v["target"].as_str().unwrap().starts_with("sqlx"), "{l}");
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

/// Reads log lines into `seen` until one satisfies `what`; fails with the log so far.
fn wait_for(
    d: &Daemon,
    seen: &mut Vec<serde_json::Value>,
    why: &str,
    what: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    if let Some(v) = seen.iter().find(|v| what(v)) {
        return v.clone();
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match d.lines.recv_timeout(left) {
            Ok(line) => {
                let v: serde_json::Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                seen.push(v.clone());
                if what(&v) {
                    return v;
                }
            }
            Err(_) => panic!(
                "no log line for {why}; got:\n{}",
                seen.iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        }
    }
}

fn is(v: &serde_json::Value, kind: &str, connection: &str) -> bool {
    v["kind"] == kind && v["connection"] == connection
}

/// A webhook receiver on loopback that answers every request 204 and keeps the bodies.
fn receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let body = loop {
                let Ok(n) = stream.read(&mut chunk) else {
                    break None;
                };
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break Some(body.to_string());
                    }
                }
            };
            if let Some(b) = body {
                kept.lock().unwrap().push(b);
            }
            let _ = stream.write_all(
                b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    (url, bodies)
}

/// Runs of 40 or more URL-safe characters: the shape of every token, code and key the sandbox
/// mints (32 random bytes, base64url) and of the daemon's own secrets. Webhook ids
/// (`msg_…_wh_…`, the `webhook-id` header receivers de-duplicate by) are long but public.
fn secret_shaped(line: &str) -> Option<&str> {
    line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .find(|w| w.len() >= 40 && !w.starts_with("msg_"))
}

#[test]
fn the_default_log_tells_a_day_of_a_connection_and_keeps_its_secrets() {
    let d = start_at("json", None);
    let admin = std::fs::read_to_string(d.data.path().join("admin.key"))
        .unwrap()
        .trim()
        .to_string();
    let http = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let api = |method: reqwest::Method, path: &str| {
        http.request(method, format!("{}{path}", d.base))
            .bearer_auth(&admin)
    };
    let mut secrets: Vec<String> = vec![
        admin.clone(),
        PASSWORD.into(),
        "demo-snapchat-secret".into(),
    ];
    let mut seen = Vec::new();

    // A webhook endpoint on loopback hears about every state change.
    let (hook, bodies) = receiver();
    let r = api(reqwest::Method::POST, "v1/webhooks")
        .json(&serde_json::json!({ "url": hook }))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: serde_json::Value = r.json().unwrap();
    secrets.push(created["secret"].as_str().unwrap().to_string());

    // Connect through the API and the sandbox's consent page.
    let r = api(reqwest::Method::POST, "v1/connect-sessions")
        .json(&serde_json::json!({"provider": "snapchat", "connection_id": "logged"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let minted: serde_json::Value = r.json().unwrap();
    let link = minted["url"].as_str().unwrap().to_string();
    secrets.push(link.rsplit('/').next().unwrap().to_string());
    let landing = tokenwarden_testkit::consent::approve_blocking(&http, &link);
    let callback = url::Url::parse(&landing.callback).unwrap();
    for (k, v) in callback.query_pairs() {
        if k == "code" || k == "state" {
            secrets.push(v.into_owned());
        }
    }
    assert_eq!(landing.response.status(), 303);
    let connected = wait_for(&d, &mut seen, "the connection", |v| {
        is(v, "connected", "logged")
    });
    assert_eq!(connected["provider"], "snapchat");
    assert_eq!(connected["level"], "INFO");
    let changed = wait_for(&d, &mut seen, "pending → active", |v| {
        is(v, "state_changed", "logged") && v["to"] == "active"
    });
    assert_eq!(changed["provider"], "snapchat");
    let token: serde_json::Value = api(reqwest::Method::GET, "v1/connections/logged/token")
        .send()
        .unwrap()
        .json()
        .unwrap();
    secrets.push(token["access_token"].as_str().unwrap().to_string());

    // Refresh now: the log says so, with the new expiry.
    let r = api(reqwest::Method::POST, "v1/connections/logged/refresh")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let fresh: serde_json::Value = r.json().unwrap();
    secrets.push(fresh["access_token"].as_str().unwrap().to_string());
    let refreshed = wait_for(&d, &mut seen, "the refresh", |v| {
        is(v, "refreshed", "logged")
    });
    assert_eq!(refreshed["provider"], "snapchat");
    assert_eq!(refreshed["level"], "INFO");
    let expires = refreshed["expires_at"].as_str().expect("the new expiry");
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(expires).unwrap(),
        chrono::DateTime::parse_from_rfc3339(fresh["expires_at"].as_str().unwrap()).unwrap()
    );

    // An outage: the refresh fails, the log says why, and the connection degrades.
    let sandbox = reqwest::blocking::Client::new();
    let r = sandbox
        .post(format!("{}/_sandbox/faults/snapchat/outage", d.sandbox))
        .json(&serde_json::json!({"for": "1h"}))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().unwrap());
    let r = api(reqwest::Method::POST, "v1/connections/logged/refresh")
        .send()
        .unwrap();
    assert!(!r.status().is_success());
    let failed = wait_for(&d, &mut seen, "the failed refresh", |v| {
        is(v, "refresh_failed", "logged")
    });
    assert_eq!(failed["provider"], "snapchat");
    assert!(
        !failed["reason"].as_str().unwrap_or("").is_empty(),
        "{failed}"
    );
    wait_for(&d, &mut seen, "active → degraded", |v| {
        is(v, "state_changed", "logged") && v["to"] == "degraded"
    });
    sandbox
        .post(format!("{}/_sandbox/faults/snapchat/clear", d.sandbox))
        .send()
        .unwrap();
    let r = api(reqwest::Method::POST, "v1/connections/logged/refresh")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    secrets.push(
        r.json::<serde_json::Value>().unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    wait_for(&d, &mut seen, "degraded → active", |v| {
        is(v, "state_changed", "logged") && v["from"] == "degraded" && v["to"] == "active"
    });

    // The grant is revoked at the platform; a probe finds it and the connection needs a person.
    let grants: serde_json::Value = sandbox
        .get(format!("{}/_sandbox/grants?provider=snapchat", d.sandbox))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let grant = grants["grants"].as_array().unwrap().last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = sandbox
        .post(format!("{}/_sandbox/grants/{grant}/revoke", d.sandbox))
        .send()
        .unwrap();
    assert!(r.status().is_success());
    let r = api(reqwest::Method::POST, "v1/connections/logged/probe")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_for(&d, &mut seen, "a state change to reauth_required", |v| {
        is(v, "state_changed", "logged") && v["to"] == "reauth_required"
    });
    // The probe's call is refused (or its refresh, when the platform answers "expired"): either
    // way one line says what was found and why.
    let found = wait_for(&d, &mut seen, "what the probe found", |v| {
        (v["kind"] == "probe_problem" || v["kind"] == "reauth_required")
            && v["connection"] == "logged"
    });
    assert_eq!(found["provider"], "snapchat");
    assert_eq!(found["level"], "WARN");

    // Every state change went out as a webhook, and each delivery is logged.
    let delivered = wait_for(&d, &mut seen, "a webhook delivery", |v| {
        v["kind"] == "webhook_delivered" && v["connection"] == "logged"
    });
    assert_eq!(delivered["provider"], "snapchat");
    assert_eq!(delivered["event"], "connection.state_changed");
    assert!(!bodies.lock().unwrap().is_empty());

    // Nothing secret, nothing secret-shaped, and no SQL at the default level.
    for v in &seen {
        let line = v.to_string();
        for s in &secrets {
            assert!(!line.contains(s.as_str()), "a secret in the log: {line}");
        }
        assert_eq!(secret_shaped(&line), None, "{line}");
        assert!(
            !v["target"].as_str().unwrap_or("").starts_with("sqlx"),
            "{line}"
        );
        assert_ne!(v["level"], "DEBUG", "{line}");
    }
}

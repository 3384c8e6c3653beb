//! The binary's face of two hardening settings: provider definitions with plain-http endpoints
//! are refused unless `allow_insecure_endpoints` (or its variable) allows them, `serve --sandbox`
//! needs no allowance, and the proxy's body limits come from `[proxy]` and the
//! `TOKENWARDEN_PROXY_*` variables.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A small user definition whose token and API endpoints are plain http on loopback.
const HTTP_DEFINITION: &str = r#"
id = "lab"
name = "A lab platform"
docs_url = "https://example.invalid/docs"

[authorize]
url = "http://127.0.0.1:9/authorize"

[token.exchange]
method = "POST"
url = "http://127.0.0.1:9/token"
encoding = "form"
params = { grant_type = "authorization_code", code = "{code}" }

[refresh]
style = "none"
token_expires = false
margin = "0s"

[api]
base_url = "http://127.0.0.1:9/api"
probe = { method = "GET", path = "/me" }
"#;

fn providers_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lab.toml"), HTTP_DEFINITION).unwrap();
    dir
}

fn tokenwarden() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tokenwarden"));
    c.env("NO_COLOR", "1");
    for var in [
        "TOKENWARDEN_ALLOW_INSECURE_ENDPOINTS",
        "TOKENWARDEN_PROXY_MAX_REQUEST_BYTES",
        "TOKENWARDEN_PROXY_MAX_RESPONSE_BYTES",
        "TOKENWARDEN_PROVIDERS_DIR",
        "TOKENWARDEN_CONFIG",
        "TOKENWARDEN_MASTER_KEY",
        "TOKENWARDEN_DATABASE_URL",
    ] {
        c.env_remove(var);
    }
    c
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits for a child that should exit by itself; kills it and fails if it does not.
fn exits(mut child: Child) -> Output {
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the command did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn http_definitions_are_refused_unless_allowed() {
    let dir = providers_dir();
    let file = dir.path().join("lab.toml");

    let out = tokenwarden()
        .arg("providers")
        .arg("--providers-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for key in ["authorize.url", "token.exchange.url", "api.base_url"] {
        assert!(
            err.contains(&format!(
                "{}: {key}: is a plain http:// URL",
                file.display()
            )),
            "{key}: {err}"
        );
    }
    assert!(
        err.contains("allow_insecure_endpoints = true")
            && err.contains("TOKENWARDEN_ALLOW_INSECURE_ENDPOINTS=true"),
        "the fix is named: {err}"
    );

    let out = tokenwarden()
        .arg("providers")
        .arg("--providers-dir")
        .arg(dir.path())
        .env("TOKENWARDEN_ALLOW_INSECURE_ENDPOINTS", "true")
        .output()
        .unwrap();
    let (listed, err) = text(&out);
    assert!(out.status.success(), "{err}");
    assert!(listed.contains("lab"), "{listed}");

    // `providers validate` says what `serve` would.
    let out = tokenwarden()
        .args(["providers", "validate"])
        .arg(&file)
        .output()
        .unwrap();
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("api.base_url: is a plain http:// URL"),
        "{err}"
    );
    let out = tokenwarden()
        .args(["providers", "validate"])
        .arg(&file)
        .env("TOKENWARDEN_ALLOW_INSECURE_ENDPOINTS", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));

    let out = tokenwarden()
        .arg("providers")
        .arg("--providers-dir")
        .arg(dir.path())
        .env("TOKENWARDEN_ALLOW_INSECURE_ENDPOINTS", "maybe")
        .output()
        .unwrap();
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("TOKENWARDEN_ALLOW_INSECURE_ENDPOINTS: \"maybe\" is not true or false"),
        "{err}"
    );

    // `config check` reads the key from the file.
    let conf = dir.path().join("tw.conf");
    for (allow, ok) in [("", false), ("allow_insecure_endpoints = true\n", true)] {
        std::fs::write(&conf, allow).unwrap();
        let out = tokenwarden()
            .args(["config", "check"])
            .arg(&conf)
            .arg("--providers-dir")
            .arg(dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.success(), ok, "{allow:?}: {:?}", text(&out));
    }

    // The daemon refuses to start on it, before it listens.
    let data = tempfile::tempdir().unwrap();
    let child = tokenwarden()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .arg("--providers-dir")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = exits(child);
    let (printed, err) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{printed}{err}");
    assert!(
        err.contains("token.exchange.url: is a plain http:// URL"),
        "{err}"
    );
    assert!(!printed.contains("serving on"), "{printed}");
}

struct Daemon {
    child: Child,
    base: String,
    data: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_sandbox(providers: &Path, config: &Path, env: &[(&str, &str)]) -> Daemon {
    let data = tempfile::tempdir().unwrap();
    let mut cmd = tokenwarden();
    cmd.args([
        "serve",
        "--sandbox",
        "--listen",
        "127.0.0.1:0",
        "--sandbox-listen",
        "127.0.0.1:0",
        "--data-dir",
    ])
    .arg(data.path())
    .arg("--config")
    .arg(config)
    .arg("--providers-dir")
    .arg(providers)
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("serve prints its address")
            .expect("serve started");
        if let Some(rest) = line.strip_prefix("tokenwarden is serving on ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Daemon { child, base, data }
}

/// Connects `connection` to the sandbox's Snapchat the way a person would.
fn connect(d: &Daemon, http: &reqwest::blocking::Client, connection: &str) {
    let key = std::fs::read_to_string(d.data.path().join("admin.key")).unwrap();
    let minted: serde_json::Value = http
        .post(format!("{}v1/connect-sessions", d.base))
        .bearer_auth(key.trim())
        .json(&serde_json::json!({"provider": "snapchat", "connection_id": connection}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let link = minted["url"].as_str().expect("a connect session");
    let landing = tokenwarden_testkit::consent::approve_blocking(http, link);
    assert_eq!(landing.response.status(), 303);
}

/// `serve --sandbox` points every platform at its emulator, so a user definition on plain http
/// loads without the allowance; and the proxy's request limit comes from the variable over the
/// file, answering 413 with a clear JSON error past it.
#[test]
fn serve_sandbox_takes_http_definitions_and_the_configured_body_limits() {
    let dir = providers_dir();
    let conf = dir.path().join("tw.conf");
    std::fs::write(
        &conf,
        "[proxy]\nmax_request_bytes = \"1MiB\"\nmax_response_bytes = \"64MiB\"\n",
    )
    .unwrap();
    let d = serve_sandbox(
        dir.path(),
        &conf,
        &[("TOKENWARDEN_PROXY_MAX_REQUEST_BYTES", "2KiB")],
    );
    let http = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    connect(&d, &http, "limits");
    let key = std::fs::read_to_string(d.data.path().join("admin.key")).unwrap();
    let post = |bytes: usize| {
        http.post(format!("{}proxy/limits/me", d.base))
            .bearer_auth(key.trim())
            .header("content-type", "application/octet-stream")
            .body(vec![b'x'; bytes])
            .send()
            .unwrap()
    };
    let r = post(3 * 1024);
    assert_eq!(r.status(), 413);
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["error"]["code"], "request_too_large", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limit of 2048 bytes"),
        "{v}"
    );
    let r = post(1024);
    assert_ne!(r.status(), 413, "under the limit it is forwarded");
    assert!(r.headers().contains_key("tokenwarden-kind"), "{r:?}");
}

/// A bad limit stops the daemon before it starts, naming the variable.
#[test]
fn a_bad_limit_stops_serve_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let child = tokenwarden()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("TOKENWARDEN_PROXY_MAX_RESPONSE_BYTES", "12 parsecs")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = exits(child);
    let (printed, err) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{printed}{err}");
    assert!(
        err.contains("TOKENWARDEN_PROXY_MAX_RESPONSE_BYTES: \"12 parsecs\" has an unknown unit"),
        "{err}"
    );
}

//! `serve --sandbox` keeps its sandbox across restarts (issue 15, item 3): a connection made
//! before a restart still refreshes after it, including TikTok Login Kit, whose refresh tokens
//! rotate (the sandbox must remember the newest one and that the old one was rotated out).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

struct Daemon {
    child: Child,
    base: String,
    /// The connect links the banner printed, with their provider.
    links: Vec<(String, String)>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// Ctrl-C, and the exit status.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status:?}");
    }
}

fn start(data: &Path) -> Daemon {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .args([
            "serve",
            "--sandbox",
            "--listen",
            "127.0.0.1:0",
            "--sandbox-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data)
        .env("NO_COLOR", "1")
        .env_remove("TOKENWARDEN_MASTER_KEY")
        .env_remove("TOKENWARDEN_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut base = String::new();
    let mut links = Vec::new();
    loop {
        let line = lines.next().expect("serve prints its banner").unwrap();
        if let Some(rest) = line.strip_prefix("tokenwarden is serving on ") {
            base = rest.split_whitespace().next().unwrap().to_string();
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if let [link, provider, _app] = words[..]
            && link.contains("/connect/s/")
        {
            links.push((
                provider.trim_start_matches('(').to_string(),
                link.to_string(),
            ));
        }
        if line.starts_with("Press Ctrl-C") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Daemon { child, base, links }
}

fn cli(d: &Daemon, data: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .args(args)
        .args(["--url", &d.base, "--data-dir"])
        .arg(data)
        .env("NO_COLOR", "1")
        .env_remove("TOKENWARDEN_API_KEY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs the banner's link for `provider` through the sandbox's authorize page.
fn connect(d: &Daemon, provider: &str) {
    let http = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let (_, link) = d
        .links
        .iter()
        .find(|(p, _)| p == provider)
        .unwrap_or_else(|| panic!("the banner prints a {provider} link: {:?}", d.links));
    let r = http.post(link).send().unwrap();
    assert_eq!(r.status(), 303, "{link}");
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let authorize = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let mut form: Vec<(String, String)> = authorize.query_pairs().into_owned().collect();
    form.push(("decision".into(), "approve".into()));
    let r = http
        .post(format!(
            "{}{}",
            authorize.origin().ascii_serialization(),
            authorize.path()
        ))
        .form(&form)
        .send()
        .unwrap();
    let callback = r.headers()["location"].to_str().unwrap().to_string();
    let r = http.get(&callback).header("cookie", cookie).send().unwrap();
    assert_eq!(r.status(), 303, "the callback stores the connection");
}

fn state(d: &Daemon, data: &Path, id: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&cli(d, data, &["connections", "show", id, "--json"])).unwrap();
    v["state"].as_str().unwrap().to_string()
}

/// Refreshes `id` from the shell and says the token changed and the connection stayed active.
fn refresh_works(d: &Daemon, data: &Path, id: &str) -> String {
    let before = cli(d, data, &["token", id]);
    cli(d, data, &["connections", "refresh", id]);
    let after = cli(d, data, &["token", id]);
    assert_ne!(before, after, "{id}: a new token after the refresh");
    assert_eq!(state(d, data, id), "active", "{id}");
    after
}

#[test]
fn connections_made_through_the_sandbox_still_refresh_after_restarts() {
    let data = tempfile::tempdir().unwrap();
    let d = start(data.path());
    connect(&d, "tiktok");
    connect(&d, "snapchat");
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
    let d = start(data.path());
    for id in ["tiktok-1", "snapchat-1"] {
        assert_eq!(state(&d, data.path(), id), "active", "{id} after a restart");
        refresh_works(&d, data.path(), id);
    }
    d.stop();

    // And again: the rotation made after the first restart was kept too.
    let d = start(data.path());
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

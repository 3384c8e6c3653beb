//! The README's main command as a binary: `serve --sandbox` starts, prints where to look, serves a
//! connect flow through the sandbox, answers `connections` and `token` from the shell, and stops
//! cleanly on Ctrl-C.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

struct Daemon {
    child: Child,
    base: String,
    data: tempfile::TempDir,
    /// The connect links the banner printed, as printed, with their provider.
    links: Vec<(String, String)>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn start() -> Daemon {
    let data = tempfile::tempdir().unwrap();
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
        .arg(data.path())
        .env("NO_COLOR", "1")
        .env_remove("TOKENWARDEN_MASTER_KEY")
        .env_remove("TOKENWARDEN_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = String::new();
    let base = loop {
        let line = lines.next().expect("serve prints its address").unwrap();
        printed.push_str(&line);
        printed.push('\n');
        if let Some(rest) = line.strip_prefix("tokenwarden is serving on ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let mut links = Vec::new();
    loop {
        let line = lines.next().expect("serve prints its banner").unwrap();
        // "     URL  (PROVIDER APP)"
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
    // Keep draining stdout so the daemon never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    assert!(printed.contains("master key"), "{printed}");
    assert!(data.path().join("admin.key").exists());
    Daemon {
        child,
        base,
        data,
        links,
    }
}

/// `tokenwarden connect …` against the daemon, with its admin key file: the link it prints.
fn mint(d: &Daemon, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .arg("connect")
        .args(args)
        .args(["--url", &d.base, "--data-dir"])
        .arg(d.data.path())
        .env_remove("TOKENWARDEN_API_KEY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn cli(d: &Daemon, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .args(args)
        .args(["--url", &d.base, "--data-dir"])
        .arg(d.data.path())
        .env("NO_COLOR", "1")
        .env_remove("TOKENWARDEN_API_KEY")
        .output()
        .unwrap()
}

/// Opens a connect link, approves on the sandbox's consent page, and finishes at the callback.
fn approve(http: &reqwest::blocking::Client, link: &str) {
    let landing = tokenwarden_testkit::consent::approve_blocking(http, link);
    assert_eq!(landing.response.status(), 303);
}

#[test]
fn serve_sandbox_connect_then_the_shell_commands() {
    let d = start();
    let http = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // The banner's Snapchat link, exactly as printed, connects `snapchat-1`.
    assert!(d.links.len() >= 5, "{:?}", d.links);
    let (_, snapchat) = d
        .links
        .iter()
        .find(|(p, l)| p == "snapchat" && l.starts_with(&format!("{}connect/s/", d.base)))
        .expect("the banner prints a Snapchat link");
    let r = http.get(snapchat).send().unwrap();
    assert_eq!(r.status(), 200, "the banner's link shows what it will do");
    approve(&http, snapchat);

    let out = cli(&d, &["connections"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        list.contains("snapchat-1") && list.contains("active"),
        "{list}"
    );

    let out = cli(&d, &["token", "snapchat-1"]);
    assert!(out.status.success());
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        token.len() > 16 && !token.contains(' '),
        "only the token is printed"
    );

    let out = cli(&d, &["connections", "show", "snapchat-1", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["state"], "active");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(&token),
        "show never prints the token"
    );

    let out = cli(&d, &["connections", "refresh", "snapchat-1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&d, &["token", "snapchat-1"]);
    assert_ne!(
        String::from_utf8_lossy(&out.stdout).trim(),
        token,
        "a new token after refresh"
    );

    // A long-term TikTok Business token (the demo app's advertiser grant has no refresh token):
    // "refresh" says nothing was refreshed and why, not that a new token is stored.
    let (_, business) = d
        .links
        .iter()
        .find(|(p, _)| p == "tiktok-business")
        .expect("the banner prints a TikTok Business link");
    approve(&http, business);
    let out = cli(&d, &["connections", "refresh", "tiktok-business-1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("Not refreshed: the platform does not renew this token"),
        "{said}"
    );
    assert!(!said.starts_with("Refreshed"), "{said}");

    let out = cli(&d, &["connections", "show", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not_found"));

    // A token-reader key made from the shell can fetch tokens and nothing else.
    let out = Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .args(["keys", "create", "--role", "token_reader", "--data-dir"])
        .arg(d.data.path())
        .env_remove("TOKENWARDEN_MASTER_KEY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reader = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let r = http
        .get(format!("{}v1/connections/snapchat-1/token", d.base))
        .bearer_auth(&reader)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(format!("{}v1/connections", d.base))
        .bearer_auth(&reader)
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);

    let link = mint(&d, &["tiktok", "--connection-id", "mine"]);
    assert!(link.starts_with(&format!("{}connect/s/", d.base)), "{link}");
    let r = http.post(&link).send().unwrap();
    assert_eq!(r.status(), 303, "the printed link starts a flow");
    let r = http.get(&link).send().unwrap();
    assert_eq!(r.status(), 410, "once");
    // Without an admin key, `connect` cannot make a link.
    let out = Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .args([
            "connect",
            "tiktok",
            "--url",
            &d.base,
            "--api-key",
            "tw_nope_nope",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unauthorized"));

    let out = cli(&d, &["connections", "delete", "snapchat-1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .args([
            "connections",
            "--url",
            "http://127.0.0.1:1/",
            "--api-key",
            "tw_x",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach tokenwarden"));

    // Ctrl-C stops it cleanly.
    let mut d = d;
    let _ = Command::new("kill")
        .args(["-INT", &d.child.id().to_string()])
        .status();
    let status = d.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

/// `[retention]` in a file and its variables: `config check` and `serve` refuse a bad value by
/// its key or variable name, before anything is created.
#[test]
fn a_bad_retention_is_refused_by_name_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let write = |name: &str, retention: &str| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "data_dir = {:?}\n\n[retention]\n{retention}\n",
                data.display().to_string()
            ),
        )
        .unwrap();
        path
    };
    let run = |args: &[&str], file: &std::path::Path, env: Option<(&str, &str)>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tokenwarden"));
        c.args(args)
            .arg(file)
            .env("NO_COLOR", "1")
            .env_remove("TOKENWARDEN_DATA_DIR")
            .env_remove("TOKENWARDEN_RETENTION_EVENTS")
            .env_remove("TOKENWARDEN_RETENTION_DELIVERIES");
        if let Some((k, v)) = env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let good = write("good.toml", "events = \"90d\"\ndeliveries = \"off\"");
    let (code, out, err) = run(&["config", "check"], &good, None);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("events kept 90d, webhook deliveries forever"),
        "{out}"
    );

    let bad = write("bad.toml", "events = \"2 weeks\"");
    let (code, _, err) = run(&["config", "check"], &bad, None);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("[retention] events: \"2 weeks\" is not a duration"),
        "{err}"
    );
    let (code, _, err) = run(
        &["serve", "--listen", "127.0.0.1:0", "--config"],
        &bad,
        None,
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("[retention] events"), "{err}");

    let (code, _, err) = run(
        &["serve", "--listen", "127.0.0.1:0", "--config"],
        &good,
        Some(("TOKENWARDEN_RETENTION_DELIVERIES", "10m")),
    );
    assert_eq!(code, Some(1));
    assert!(
        err.contains("TOKENWARDEN_RETENTION_DELIVERIES: \"10m\" is shorter than the 1h allowed"),
        "{err}"
    );
    assert!(
        !data.exists(),
        "nothing is created for a refused configuration"
    );
}

/// Pointing tokenwarden at a platform is configuration only: a sandbox plays "the real
/// Snapchat", a user definition moves Snapchat's URLs there, and a configuration file registers
/// the app; `serve` without --sandbox then connects and serves tokens.
#[test]
fn serve_with_a_configuration_file_and_no_sandbox() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let sb = format!("http://{}", listener.local_addr().unwrap());
    let sandbox = tokenwarden_sandbox::Sandbox::new(
        tokenwarden_sandbox::SandboxConfig::default(),
        std::sync::Arc::new(tokenwarden_core::clock::SystemClock),
    );
    rt.spawn(sandbox.serve(listener, std::future::pending()));

    let dir = tempfile::tempdir().unwrap();
    let providers = dir.path().join("providers");
    std::fs::create_dir(&providers).unwrap();
    let shipped = Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .args(["providers", "show", "snapchat"])
        .output()
        .unwrap();
    let moved = String::from_utf8(shipped.stdout)
        .unwrap()
        .replace("https://accounts.snapchat.com", &format!("{sb}/snapchat"))
        .replace("https://adsapi.snapchat.com", &format!("{sb}/snapchat"));
    std::fs::write(providers.join("snapchat.toml"), moved).unwrap();
    std::fs::write(dir.path().join("secret"), "demo-snapchat-secret\n").unwrap();
    let config = dir.path().join("tokenwarden.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nproviders_dir = {:?}\n# The emulator is plain http on loopback: allowed explicitly.\nallow_insecure_endpoints = true\n\n[[apps]]\nprovider = \"snapchat\"\nid = \"main\"\nclient_id = \"demo-snapchat\"\nclient_secret_file = {:?}\n",
            dir.path().join("data").display().to_string(),
            providers.display().to_string(),
            dir.path().join("secret").display().to_string()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .args(["config", "check"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut child = Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .env_remove("TOKENWARDEN_MASTER_KEY")
        .env_remove("TOKENWARDEN_DATA_DIR")
        .env_remove("TOKENWARDEN_PROVIDERS_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = loop {
        let line = lines.next().expect("serve prints its address").unwrap();
        if let Some(rest) = line.strip_prefix("tokenwarden is serving on ") {
            break rest.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let d = Daemon {
        child,
        base,
        data: tempfile::tempdir().unwrap(),
        links: Vec::new(),
    };

    let http = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // "The platform's developer portal": register our callback for the app.
    let r = http
        .post(format!(
            "{sb}/_sandbox/apps/snapchat/demo-snapchat/redirect-uris"
        ))
        .json(&serde_json::json!({"redirect_uri": format!("{}callback/snapchat", d.base)}))
        .send()
        .unwrap();
    assert!(r.status().is_success());
    let key = std::fs::read_to_string(dir.path().join("data").join("admin.key")).unwrap();
    let minted: serde_json::Value = http
        .post(format!("{}v1/connect-sessions", d.base))
        .bearer_auth(key.trim())
        .json(&serde_json::json!({"provider": "snapchat", "connection_id": "real", "app": "main"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let link = minted["url"].as_str().expect("a connect session");
    let landing = tokenwarden_testkit::consent::approve_blocking(&http, link);
    assert!(landing.authorize.starts_with(&sb), "{}", landing.authorize);
    assert_eq!(landing.response.status(), 303);
    let v: serde_json::Value = http
        .get(format!("{}v1/connections/real/token", d.base))
        .bearer_auth(key.trim())
        .send()
        .unwrap()
        .json()
        .unwrap();
    let token = v["access_token"].as_str().expect("a token").to_string();
    let me = http
        .get(format!("{sb}/snapchat/v1/me"))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(
        me.status(),
        200,
        "the platform accepts the token tokenwarden handed out"
    );
}

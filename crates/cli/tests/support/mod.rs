//! A `serve --sandbox` daemon as a child process, for the tests of the commands and examples that
//! talk to one: start it on free ports, read its banner, connect accounts through the sandbox's
//! authorize page, and run `tokenwarden` commands against it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

/// A running `serve --sandbox`.
pub struct Daemon {
    child: Child,
    /// The daemon's base URL (ends with `/`).
    pub base: String,
    /// The in-process sandbox's base URL.
    pub sandbox: String,
    /// The connect links the banner printed, with their provider.
    pub links: Vec<(String, String)>,
    /// The banner's lines, as printed.
    pub banner: Vec<String>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// Starts `serve --sandbox` on free ports with `data` as its data directory.
    pub fn start(data: &Path) -> Daemon {
        Daemon::start_with(data, &[])
    }

    /// [`Daemon::start`] with these environment variables set for the daemon.
    pub fn start_with(data: &Path, env: &[(&str, &str)]) -> Daemon {
        let mut serve = Daemon::serve();
        serve.arg("--data-dir").arg(data);
        Daemon::spawn(serve, env)
    }

    /// Starts `serve --sandbox` on free ports in `dir`, with the default data directory
    /// (`tokenwarden-data` there), as the README runs it.
    pub fn start_in(dir: &Path) -> Daemon {
        let mut serve = Daemon::serve();
        serve.current_dir(dir).env_remove("TOKENWARDEN_DATA_DIR");
        Daemon::spawn(serve, &[])
    }

    fn serve() -> Command {
        let mut serve = Command::new(env!("CARGO_BIN_EXE_tokenwarden"));
        serve.args([
            "serve",
            "--sandbox",
            "--listen",
            "127.0.0.1:0",
            "--sandbox-listen",
            "127.0.0.1:0",
        ]);
        serve
    }

    fn spawn(mut serve: Command, env: &[(&str, &str)]) -> Daemon {
        let mut child = serve
            .env("NO_COLOR", "1")
            .env_remove("TOKENWARDEN_MASTER_KEY")
            .env_remove("TOKENWARDEN_DATABASE_URL")
            .env_remove("TOKENWARDEN_CONFIG")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut base, mut sandbox) = (String::new(), String::new());
        let mut links = Vec::new();
        let mut banner = Vec::new();
        loop {
            let line = lines.next().expect("serve prints its banner").unwrap();
            banner.push(line.clone());
            if let Some(rest) = line.strip_prefix("tokenwarden is serving on ") {
                base = rest.split_whitespace().next().unwrap().to_string();
                sandbox = rest
                    .split("sandbox platforms at ")
                    .nth(1)
                    .unwrap()
                    .split([',', ' '])
                    .next()
                    .unwrap()
                    .to_string();
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
        // Keep draining stdout so the daemon never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Daemon {
            child,
            base,
            sandbox,
            links,
            banner,
        }
    }

    /// Ctrl-C, and it exits 0.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status:?}");
    }

    /// `tokenwarden ARGS --url BASE --data-dir DATA` (the admin key file's key).
    pub fn cli(&self, data: &Path, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
            .args(args)
            .args(["--url", &self.base, "--data-dir"])
            .arg(data)
            .env("NO_COLOR", "1")
            .env_remove("TOKENWARDEN_API_KEY")
            .output()
            .unwrap()
    }

    /// [`Daemon::cli`] that must succeed: its stdout, trimmed.
    pub fn ok(&self, data: &Path, args: &[&str]) -> String {
        let out = self.cli(data, args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Runs the banner's link for `provider` through the sandbox's authorize page (approve).
    pub fn connect(&self, provider: &str) {
        let http = reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let (_, link) = self
            .links
            .iter()
            .find(|(p, _)| p == provider)
            .unwrap_or_else(|| panic!("the banner prints a {provider} link: {:?}", self.links));
        let landing = tokenwarden_testkit::consent::approve_blocking(&http, link);
        assert_eq!(
            landing.response.status(),
            303,
            "the callback stores the connection"
        );
    }

    /// A connection's state, from `connections show --json`.
    pub fn state(&self, data: &Path, id: &str) -> String {
        let v: serde_json::Value =
            serde_json::from_str(&self.ok(data, &["connections", "show", id, "--json"])).unwrap();
        v["state"].as_str().unwrap().to_string()
    }
}

//! The README, followed to the letter (issue 15, item 2): every shell command it shows, in its
//! `sh` blocks and as the `$ ` lines of its `console` blocks, is run against `serve --sandbox`
//! and must answer as the README says, in the README's order: the first run, a connected account,
//! a fresh token, a broken grant and its fix, then the tour.
//!
//! What is changed before a command runs, and nothing else:
//! - the daemon and its sandbox listen on free ports, so `http://127.0.0.1:8080` and
//!   `http://127.0.0.1:8181` become their addresses, and the commands that reach the daemon by
//!   default are given `TOKENWARDEN_URL` (the documented variable) instead;
//! - `tokenwarden` is this build's binary (on `PATH`), and `cargo run --release --` is
//!   `tokenwarden` too, as the tour says;
//! - each command runs in `bash` in a fresh directory holding the daemon's `tokenwarden-data/`
//!   (the default data directory) and a link to the checkout's `examples/`, with no
//!   `TOKENWARDEN_*` variable inherited; one that writes under `~` gets a `HOME` of the test's; the
//!   variables the README sets (`K=…`, `S=…`, `export …`) stay set for the commands after them, as
//!   in one terminal;
//! - placeholders (`GRANT_ID`, `KEY_ID`, `WEBHOOK_ID`, `ID`) become ids the product printed
//!   before; the webhook receiver `127.0.0.1:9000` becomes one this test runs; `man --dir` writes
//!   under that directory instead of `/usr/local`.
//!
//! The consent step of a connect link is the sandbox's Approve page, answered over HTTP.
//!
//! A command that cannot run here is listed in [`SKIPPED`] with the reason; a README command that
//! is neither run nor listed fails the test, so a new command in the README needs a step here.
//! The banner's own commands are run as printed too.
//!
//! Needs `bash`, `curl`, `man` (man-db), `python3` with `requests` and Node.js 20+ on `PATH`
//! (`scripts/ensure-peers` sees to the last two); it fails, never skips, without them.

mod support;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::Daemon;

/// README commands that do not run here, and why. Keys are as [`Shown::key`] writes them.
const SKIPPED: &[(&str, &str)] = &[
    (
        "cargo run --release -- serve --sandbox",
        "this test starts it itself, in the same way but on free ports (`--listen 127.0.0.1:0 \
         --sandbox-listen 127.0.0.1:0`): tests never take fixed ports",
    ),
    (
        "bash scripts/test",
        "the whole test suite, which runs this test",
    ),
    (
        "tokenwarden serve --config tokenwarden.toml",
        "the real platforms: it needs apps registered with them, their secrets, and the default port",
    ),
    (
        TIKTOK_CURL,
        "calls TikTok itself; its saved answer, examples/responses/tiktok-business-rate-limit.txt, \
         is diagnosed instead and must print what the README shows",
    ),
];

/// The README's `curl … | tokenwarden diagnose`, which needs TikTok itself.
const TIKTOK_CURL: &str = "curl -si https://business-api.tiktok.com/open_api/v1.3/user/info/ -H \"Access-Token: $TOKEN\" | tokenwarden diagnose";

/// One shell command as the README shows it.
#[derive(Debug, Clone)]
struct Shown {
    /// The heading it sits under.
    section: String,
    /// As bash runs it: continuation lines joined, a trailing comment kept.
    text: String,
    /// What identifies it here: `text` without a trailing comment, spaces collapsed.
    key: String,
    /// What the README shows it answers: a `console` block's lines under the command, or the
    /// comment lines right under it in an `sh` block.
    shown: String,
}

/// Every command of the README's `sh` and `console` blocks, in order.
fn readme_commands(readme: &str) -> Vec<Shown> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        if line.starts_with('#') {
            section = line.trim_start_matches('#').trim().to_string();
            continue;
        }
        let trimmed = line.trim_start();
        let Some(lang) = trimmed.strip_prefix("```") else {
            continue;
        };
        let indent = line.len() - trimmed.len();
        let mut body = Vec::new();
        for l in lines.by_ref() {
            if l.trim_start().starts_with("```") {
                break;
            }
            body.push(if l.len() >= indent && l[..indent].trim().is_empty() {
                l[indent..].to_string()
            } else {
                l.trim_start().to_string()
            });
        }
        match lang.trim() {
            "sh" => sh_block(&section, &body, &mut out),
            "console" => console_block(&section, &body, &mut out),
            _ => {}
        }
    }
    out
}

fn shown(section: &str, text: String) -> Shown {
    let key = strip_comment(&text)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    Shown {
        section: section.to_string(),
        text,
        key,
        shown: String::new(),
    }
}

/// Joins `\`-continued lines from `first` on.
fn joined<'a>(first: &str, rest: &mut impl Iterator<Item = &'a String>) -> String {
    let mut text = first.to_string();
    while text.ends_with('\\') {
        text.pop();
        match rest.next() {
            Some(next) => {
                text.push(' ');
                text.push_str(next.trim());
            }
            None => break,
        }
    }
    text
}

fn sh_block(section: &str, body: &[String], out: &mut Vec<Shown>) {
    let mut lines = body.iter();
    // Whether the line above was a command (a comment right under one is what it answers).
    let mut after_command = false;
    while let Some(line) = lines.next() {
        let t = line.trim();
        if t.is_empty() {
            after_command = false;
        } else if let Some(comment) = t.strip_prefix('#') {
            if after_command && let Some(last) = out.last_mut() {
                last.shown.push_str(comment.trim());
                last.shown.push('\n');
            }
        } else {
            out.push(shown(section, joined(t, &mut lines)));
            after_command = true;
        }
    }
}

fn console_block(section: &str, body: &[String], out: &mut Vec<Shown>) {
    let mut lines = body.iter();
    let mut current: Option<Shown> = None;
    while let Some(line) = lines.next() {
        if let Some(command) = line.strip_prefix("$ ") {
            out.extend(current.take());
            current = Some(shown(section, joined(command, &mut lines)));
        } else if let Some(c) = current.as_mut() {
            c.shown.push_str(line);
            c.shown.push('\n');
        }
    }
    out.extend(current);
}

/// `text` without a trailing `# comment` (a `#` after a space, outside quotes).
fn strip_comment(text: &str) -> &str {
    let (mut single, mut double) = (false, false);
    let mut prev = ' ';
    for (i, c) in text.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && prev.is_whitespace() => return text[..i].trim_end(),
            _ => {}
        }
        prev = c;
    }
    text.trim_end()
}

/// Whether `actual` says what `shown` shows: the same words in the same order, spacing aside,
/// where `…` in `shown` stands for anything.
fn says(actual: &str, shown: &str) -> bool {
    let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let actual = norm(actual);
    let mut rest = actual.as_str();
    for piece in shown.split('…').map(norm).filter(|p| !p.is_empty()) {
        match rest.find(&piece) {
            Some(i) => rest = &rest[i + piece.len()..],
            None => return false,
        }
    }
    true
}

/// The `"key":"value"` pairs of a JSON answer the README sketches (`{"id":"cs_…",…}`).
fn sketched_fields(sketch: &str) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    let parts: Vec<&str> = sketch.split('"').collect();
    // Between quotes at odd positions: key, then `:` and the value at the next odd position.
    let mut i = 1;
    while i + 2 < parts.len() {
        if parts[i + 1] == ":" {
            fields.push((parts[i].to_string(), parts[i + 2].to_string()));
            i += 4;
        } else {
            i += 2;
        }
    }
    fields
}

/// Whether `value` fits `pattern` whole, `…` standing for anything.
fn fits(value: &str, pattern: &str) -> bool {
    let pieces: Vec<&str> = pattern.split('…').collect();
    let (first, last) = (pieces[0], pieces[pieces.len() - 1]);
    if pieces.len() == 1 {
        return value == pattern;
    }
    if !value.starts_with(first) || !value.ends_with(last) || value.len() < first.len() + last.len()
    {
        return false;
    }
    let mut rest = &value[first.len()..value.len() - last.len()];
    for p in &pieces[1..pieces.len() - 1] {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    true
}

/// What a command did.
#[derive(Debug)]
struct Ran {
    what: String,
    status: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn context(&self) -> String {
        format!(
            "`{}` exited {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.what, self.status, self.stdout, self.stderr
        )
    }

    /// It exited 0.
    fn ok(&self) -> &Ran {
        assert_eq!(self.status, Some(0), "{}", self.context());
        self
    }

    fn exited(&self, code: i32) -> &Ran {
        assert_eq!(self.status, Some(code), "{}", self.context());
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.context()))
    }

    fn out_has(&self, what: &str) -> &Ran {
        assert!(
            self.stdout.contains(what),
            "expected {what:?} in stdout: {}",
            self.context()
        );
        self
    }

    fn err_has(&self, what: &str) -> &Ran {
        assert!(
            self.stderr.contains(what),
            "expected {what:?} on stderr: {}",
            self.context()
        );
        self
    }

    /// A `curl -si` answer: its status and headers (names lowercased), and its body.
    fn http(&self) -> (u16, BTreeMap<String, String>, String) {
        let (head, body) = self
            .stdout
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("not an HTTP answer: {}", self.context()));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line: {}", self.context()));
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        (status, headers, body.to_string())
    }
}

/// Runs `script` in bash in `dir` with this process's environment, less any `TOKENWARDEN_*`
/// variable, plus `env`; gives up after a minute.
fn bash(dir: &Path, env: &[(String, String)], what: &str, script: &str) -> Ran {
    let mut bash = Command::new("bash");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("TOKENWARDEN_") {
            bash.env_remove(k);
        }
    }
    let mut child = bash
        .args(["-c", script])
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run bash: {e}"));
    let read = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = read(Box::new(child.stdout.take().unwrap()));
    let err = read(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("`{what}` did not finish within a minute");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ran {
        what: what.to_string(),
        status: status.code(),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// The README's commands and the terminal they run in.
struct Tour {
    commands: Vec<Shown>,
    ran: BTreeSet<String>,
    /// The directory the commands run in (the daemon's data directory is in it).
    dir: PathBuf,
    env: Vec<(String, String)>,
    /// `HOME` for the commands that write under `~`.
    home: PathBuf,
    /// The variables set so far (`K=…`, `S=…`, `export …`), replayed before each command.
    prelude: Vec<String>,
    /// Fixed replacements: the README's addresses by this run's.
    addresses: Vec<(String, String)>,
}

impl Tour {
    fn find(&self, key: &str) -> Shown {
        self.commands
            .iter()
            .find(|c| c.key == key)
            .cloned()
            .unwrap_or_else(|| {
                panic!(
                    "the README no longer shows `{key}`: update this test to what it shows now\n{}",
                    self.commands
                        .iter()
                        .map(|c| format!("  [{}] {}", c.section, c.key))
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            })
    }

    /// `text` with this run's addresses and the given placeholders; each placeholder must occur.
    fn substitute(&self, text: &str, with: &[(&str, &str)]) -> String {
        let mut text = text.replace("cargo run --release --", "tokenwarden");
        for (from, to) in &self.addresses {
            text = text.replace(from.as_str(), to);
        }
        for (from, to) in with {
            assert!(text.contains(from), "`{text}` has no {from}");
            text = text.replace(from, to);
        }
        text
    }

    /// Runs the README's command `key`, with placeholders replaced.
    fn run(&mut self, key: &str, with: &[(&str, &str)]) -> (Ran, Shown) {
        let c = self.find(key);
        self.ran.insert(c.key.clone());
        let text = self.substitute(&c.text, with);
        let ran = self.sh(&text);
        (ran, c)
    }

    /// Runs a command that sets a variable; it stays set for the commands after it.
    fn set(&mut self, key: &str) {
        let (ran, c) = self.run(key, &[]);
        ran.ok();
        let text = self.substitute(&c.text, &[]);
        self.prelude.push(text);
    }

    /// Runs `text` in the tour's terminal.
    fn sh(&self, text: &str) -> Ran {
        let script = format!("set -o pipefail\n{}\n{text}\n", self.prelude.join("\n"));
        let mut env = self.env.clone();
        if text.contains('~') {
            env.push(("HOME".into(), self.home.display().to_string()));
        }
        bash(&self.dir, &env, text, &script)
    }

    /// Every README command was run or is listed as skipped, and every skipped one is still shown.
    fn finish(&self) {
        let skipped: BTreeSet<&str> = SKIPPED.iter().map(|(k, _)| *k).collect();
        let unknown: Vec<String> = self
            .commands
            .iter()
            .filter(|c| !self.ran.contains(&c.key) && !skipped.contains(c.key.as_str()))
            .map(|c| format!("  [{}] {}", c.section, c.key))
            .collect();
        assert!(
            unknown.is_empty(),
            "the README shows commands this test neither runs nor skips (add a step to crates/cli/tests/readme_tour.rs, or list it in SKIPPED with the reason):\n{}",
            unknown.join("\n")
        );
        for (key, _) in SKIPPED {
            self.find(key);
        }
    }
}

/// A webhook receiver on a free port that answers 204 to everything.
fn receiver() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                // Read the head, then as much body as it declares.
                let body_end = loop {
                    let Ok(n) = stream.read(&mut buf) else { return };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    if let Some(i) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&seen[..i]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        break i + 4 + len;
                    }
                };
                while seen.len() < body_end {
                    let Ok(n) = stream.read(&mut buf) else { return };
                    if n == 0 {
                        break;
                    }
                    seen.extend_from_slice(&buf[..n]);
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            });
        }
    });
    port
}

/// Polls `f` until it gives something, for up to 20 s.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Opens a connect link and approves on the sandbox's page, as a person with a browser would.
fn approve(link: &str) {
    let http = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http.get(link).send().unwrap();
    assert_eq!(r.status(), 200, "opening {link} shows what it will do");
    let landing = tokenwarden_testkit::consent::approve_blocking(&http, link);
    assert_eq!(
        landing.response.status(),
        303,
        "the callback stores the connection"
    );
    // The page the person was sent to, as it shows (the sandbox's, with its Approve button).
    let page = http.get(&landing.authorize).send().unwrap();
    assert!(
        page.text().unwrap().contains("Approve"),
        "the sandbox's page has an Approve button"
    );
}

/// The daemon's API with the admin key, for what the test looks at between commands.
struct Api {
    http: reqwest::blocking::Client,
    base: String,
    sandbox: String,
    key: String,
}

impl Api {
    fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .send()
            .unwrap();
        (r.status().as_u16(), r.json().unwrap_or(Value::Null))
    }

    fn post(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .send()
            .unwrap();
        (r.status().as_u16(), r.json().unwrap_or(Value::Null))
    }

    fn state(&self, id: &str) -> String {
        let (status, v) = self.get(&format!("v1/connections/{id}"));
        assert_eq!(status, 200, "{id}: {v}");
        v["state"].as_str().unwrap().to_string()
    }

    /// The sandbox's active grant behind the connection of `provider` (one account per platform).
    fn grant(&self, provider: &str) -> String {
        let v: Value = self
            .http
            .get(format!("{}/_sandbox/grants", self.sandbox))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let ids: Vec<&str> = v["grants"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|g| g["provider"] == provider && g["state"] == "active")
            .filter_map(|g| g["id"].as_str())
            .collect();
        assert_eq!(ids.len(), 1, "one live {provider} grant: {v}");
        ids[0].to_string()
    }

    fn clear_faults(&self, provider: &str) {
        let r = self
            .http
            .post(format!("{}/_sandbox/faults/{provider}/clear", self.sandbox))
            .send()
            .unwrap();
        assert!(r.status().is_success());
    }
}

fn tool_present(program: &str, args: &[&str], hint: &str) {
    let ok = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "the README tour runs `{program}`: {hint}");
}

#[test]
fn the_readme_commands_are_all_known_to_this_test() {
    // The parser reads what the README shows; this part needs no daemon, so a new README command
    // is named here at once even when the tour below stops earlier.
    let readme = std::fs::read_to_string(checkout().join("README.md")).unwrap();
    let commands = readme_commands(&readme);
    assert!(commands.len() > 40, "{commands:#?}");
    let sketch = commands
        .iter()
        .find(|c| c.key.contains("/v1/connect-sessions"))
        .expect("the README makes a connect session with curl");
    assert!(
        !sketched_fields(&sketch.shown).is_empty(),
        "the README sketches its answer: {sketch:?}"
    );
    let tour_source = include_str!("readme_tour.rs");
    let skipped: BTreeSet<&str> = SKIPPED.iter().map(|(k, _)| *k).collect();
    let unknown: Vec<String> = commands
        .iter()
        .filter(|c| !skipped.contains(c.key.as_str()))
        .filter(|c| !tour_source.contains(&format!("{:?}", c.key)))
        .map(|c| format!("  [{}] {}", c.section, c.key))
        .collect();
    assert!(
        unknown.is_empty(),
        "the README shows commands this test neither runs nor skips (add a step to crates/cli/tests/readme_tour.rs, or list it in SKIPPED with the reason):\n{}",
        unknown.join("\n")
    );
}

fn checkout() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

#[test]
fn parsing_follows_the_readme_conventions() {
    let md = "## A\n\n```sh\nK=$(cat k)   # the key\ncurl -s \\\n  -d '{\"a\":\"#b\"}' x  # note\n# {\"id\":\"cs_…\",\"url\":\"http://h/…\"}\n\n# about the next\nnext\n```\n\n### B\n  ```console\n  $ tool --flag \\\n      more\n  ● Verdict\n    detail (…) end\n  ```\n";
    let c = readme_commands(md);
    let keys: Vec<&str> = c.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "K=$(cat k)",
            "curl -s -d '{\"a\":\"#b\"}' x",
            "next",
            "tool --flag more"
        ]
    );
    assert_eq!(c[1].section, "A");
    assert_eq!(c[3].section, "B");
    assert_eq!(c[0].shown, "");
    assert_eq!(
        sketched_fields(&c[1].shown),
        [
            ("id".to_string(), "cs_…".to_string()),
            ("url".to_string(), "http://h/…".to_string())
        ]
    );
    assert_eq!(
        c[2].shown, "",
        "a comment after a blank line is not an answer"
    );
    assert!(says(
        "● Verdict\n detail (the message here) end\n",
        &c[3].shown
    ));
    assert!(!says(
        "● Verdict\n detail end\n",
        "● Verdict\n other (…) end"
    ));
    assert!(fits("cs_123", "cs_…") && !fits("xs_123", "cs_…") && fits("a", "a"));
    assert!(fits("http://h/connect/s/x", "http://h/connect/s/…"));
}

#[test]
fn the_readme_tour_answers_as_the_readme_says() {
    let started = Instant::now();
    tool_present(
        "curl",
        &["--version"],
        "install curl (apt-get install curl)",
    );
    tool_present(
        "man",
        &["--version"],
        "install man-db (apt-get install man-db)",
    );
    tool_present(
        "python3",
        &["-c", "import requests"],
        "install python3 and requests (scripts/ensure-peers)",
    );
    tool_present(
        "node",
        &[
            "-e",
            "process.exit(+process.versions.node.split('.')[0] >= 20 ? 0 : 1)",
        ],
        "install Node.js 20 or later (scripts/ensure-peers says how)",
    );
    let readme = std::fs::read_to_string(checkout().join("README.md")).unwrap();

    // A fresh directory, as a newcomer's: the daemon makes `tokenwarden-data/` in it.
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let bin = dir.join("bin");
    let home = dir.join("home");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_tokenwarden"), bin.join("tokenwarden")).unwrap();
    std::os::unix::fs::symlink(checkout().join("examples"), dir.join("examples")).unwrap();

    // `cargo run --release -- serve --sandbox`, on free ports.
    let d = Daemon::start_in(dir);
    let data = dir.join("tokenwarden-data");
    let mode = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode(&data), 0o700, "tokenwarden-data/ is its owner's alone");
    assert_eq!(mode(&data.join("master.key")), 0o600);
    assert_eq!(mode(&data.join("admin.key")), 0o600);

    let base = d.base.trim_end_matches('/').to_string();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut env = vec![
        ("PATH".to_string(), path),
        ("NO_COLOR".to_string(), "1".to_string()),
        ("MANPAGER".to_string(), "cat".to_string()),
        ("PAGER".to_string(), "cat".to_string()),
        ("PYTHONDONTWRITEBYTECODE".to_string(), "1".to_string()),
    ];
    // The banner's commands stand on their own: they run without TOKENWARDEN_URL.
    let banner_env = env.clone();
    env.push(("TOKENWARDEN_URL".to_string(), base.clone()));
    let mut tour = Tour {
        commands: readme_commands(&readme),
        ran: BTreeSet::new(),
        dir: dir.to_path_buf(),
        env,
        home: home.clone(),
        prelude: Vec::new(),
        addresses: vec![
            ("http://127.0.0.1:8080".to_string(), base.clone()),
            ("http://127.0.0.1:8181".to_string(), d.sandbox.clone()),
        ],
    };
    let api = Api {
        http: reqwest::blocking::Client::new(),
        base: d.base.clone(),
        sandbox: d.sandbox.clone(),
        key: std::fs::read_to_string(data.join("admin.key"))
            .unwrap()
            .trim()
            .to_string(),
    };

    // ## The two commands. The banner: a single-use link per platform, each connecting
    // `PROVIDER-1` once the sandbox's Approve is pressed.
    let providers = ["snapchat", "tiktok-business", "tiktok", "threads", "meta"];
    for p in providers {
        let (_, link) = d
            .links
            .iter()
            .find(|(q, _)| q == p)
            .unwrap_or_else(|| panic!("the banner prints a {p} link: {:?}", d.banner));
        approve(link);
        assert_eq!(api.state(&format!("{p}-1")), "active");
        let http = reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let again = http.post(link).send().unwrap();
        assert_ne!(again.status(), 303, "a banner link works once: {link}");
    }
    // Its commands, as printed, from the same directory, with nothing else set.
    let banner = d.banner.join("\n");
    let command_after = |marker: &str| -> String {
        let line = d
            .banner
            .iter()
            .find(|l| l.contains(marker))
            .unwrap_or_else(|| panic!("the banner has {marker:?}:\n{banner}"));
        line[line.find(marker).unwrap()..].trim().to_string()
    };
    let banner_sh = |text: &str| bash(dir, &banner_env, text, &format!("set -o pipefail\n{text}"));
    let token_curl = command_after("curl -s -H \"Authorization: Bearer $(cat ");
    let r = banner_sh(&token_curl.replace("CONNECTION_ID", "snapchat-1"));
    assert!(
        r.ok().json()["access_token"].as_str().is_some(),
        "{}",
        r.context()
    );
    let step3 = command_after("tokenwarden connections");
    assert!(
        step3.contains(&format!("--url {base}")),
        "step 3 names the daemon's address when it is not the default: {step3}"
    );
    banner_sh(&step3)
        .ok()
        .out_has("snapchat-1")
        .out_has("active");
    let hint = command_after("tokenwarden connect PROVIDER");
    let hint = hint
        .trim_end_matches(['`', '.'])
        .replace("PROVIDER", "threads");
    let r = banner_sh(&hint);
    assert!(
        r.ok()
            .stdout
            .trim()
            .starts_with(&format!("{}connect/s/", d.base)),
        "{}",
        r.context()
    );
    let outage = command_after("curl -s -X POST ");
    assert!(
        outage.contains("/_sandbox/faults/snapchat/outage"),
        "{banner}"
    );
    let grants_then_revoke = command_after("curl -s http");
    let (grants, revoke) = grants_then_revoke
        .split_once("   then   ")
        .unwrap_or_else(|| panic!("{banner}"));
    assert!(banner_sh(grants).ok().json()["grants"].is_array());
    // The banner's revoke, on Meta: the platform calls back, so it is heard at once.
    let r = banner_sh(&revoke.replace("GRANT_ID", &api.grant("meta")));
    assert_eq!(
        r.ok().json()["deauthorize_callback"]["status"],
        200,
        "{}",
        r.context()
    );
    assert_eq!(api.state("meta-1"), "reauth_required");
    // Its outage: the connection turns degraded, never dead, and back once it ends.
    banner_sh(&outage).ok();
    let (status, _) = api.post("v1/connections/snapchat-1/refresh");
    assert!(status >= 500, "a refresh during the outage fails: {status}");
    assert_eq!(api.state("snapchat-1"), "degraded");
    assert_eq!(
        api.get("v1/connections/snapchat-1/token").0,
        200,
        "the current token keeps serving"
    );
    api.clear_faults("snapchat");
    assert_eq!(api.post("v1/connections/snapchat-1/refresh").0, 200);
    assert_eq!(api.state("snapchat-1"), "active");

    // The README's first curls: a fresh token, and the connection's events.
    tour.set("K=$(cat tokenwarden-data/admin.key)");
    let (r, _) = tour.run(
        "curl -s -H \"Authorization: Bearer $K\" http://127.0.0.1:8080/v1/connections/snapchat-1/token",
        &[],
    );
    let token = r.ok().json();
    assert_eq!(token["connection"], "snapchat-1", "{token}");
    let access = token["access_token"].as_str().unwrap().to_string();
    assert!(
        access.len() > 16 && token["expires_at"].is_string(),
        "{token}"
    );
    let (r, _) = tour.run(
        "curl -s -H \"Authorization: Bearer $K\" http://127.0.0.1:8080/v1/connections/snapchat-1/events",
        &[],
    );
    let events = r.ok().json();
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"connected"), "{events}");

    // For the real platforms: the example configuration, and what `config check` says of it
    // before it is filled in.
    let (r, _) = tour.run("tokenwarden config example > tokenwarden.toml", &[]);
    r.ok();
    let example = std::fs::read_to_string(dir.join("tokenwarden.toml")).unwrap();
    assert!(example.contains("[[apps]]") && example.contains("client_secret_file"));
    let (r, _) = tour.run("tokenwarden config check tokenwarden.toml", &[]);
    r.exited(1)
        .err_has("cannot read client_secret_file /run/secrets/snapchat-client-secret");

    // ### Break a token on purpose.
    tour.set("S=http://127.0.0.1:8181/_sandbox");
    let (r, _) = tour.run("curl -s $S/grants", &[]);
    let grants = r.ok().json();
    assert!(grants["grants"].as_array().unwrap().len() >= 5, "{grants}");
    assert!(
        !r.stdout.contains(&access),
        "the grants never show their tokens"
    );
    let revoke = "curl -s -X POST $S/grants/GRANT_ID/revoke";
    // TikTok Login Kit calls back: `reauth_required` before the revoke has answered.
    let tiktok_grant = api.grant("tiktok");
    let (r, _) = tour.run(revoke, &[("GRANT_ID", &tiktok_grant)]);
    let answer = r.ok().json();
    assert_eq!(answer["state"], "revoked", "{answer}");
    assert_eq!(answer["deauthorize_callback"]["status"], 200, "{answer}");
    assert_eq!(api.state("tiktok-1"), "reauth_required");
    // Threads too.
    let (r, _) = tour.run(revoke, &[("GRANT_ID", &api.grant("threads"))]);
    assert_eq!(r.ok().json()["deauthorize_callback"]["status"], 200);
    assert_eq!(api.state("threads-1"), "reauth_required");
    // Snapchat sends no callback: the connection is `reauth_required` at its next probe.
    let (r, _) = tour.run(revoke, &[("GRANT_ID", &api.grant("snapchat"))]);
    let answer = r.ok().json();
    assert!(answer["deauthorize_callback"].is_null(), "{answer}");
    assert_eq!(api.state("snapchat-1"), "active", "nothing has noticed yet");
    let (r, _) = tour.run(
        "curl -s -X POST -H \"Authorization: Bearer $K\" http://127.0.0.1:8080/v1/connections/snapchat-1/probe",
        &[],
    );
    let probed = r.ok().json();
    assert_eq!(probed["probe"]["outcome"], "problem", "{probed}");
    assert_eq!(api.state("snapchat-1"), "reauth_required");
    // The API answers with the fix and a re-authorization link.
    let (status, v) = api.get("v1/connections/snapchat-1/token");
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["code"], "reauth_required", "{v}");
    assert!(
        v["error"]["fix"].as_str().is_some_and(|f| !f.is_empty()),
        "{v}"
    );
    let reauthorize = format!("{}connections/snapchat-1/reauthorize", d.base);
    assert_eq!(v["error"]["reauthorize_url"], reauthorize.as_str(), "{v}");
    let (r, _) = tour.run("tokenwarden connections show snapchat-1", &[]);
    r.ok()
        .out_has("reauth_required")
        .out_has("fix:")
        .out_has(&reauthorize);
    // The fix: a link for the same connection, approved.
    let (r, _) = tour.run(
        "tokenwarden connect snapchat --connection-id snapchat-1",
        &[],
    );
    let link = r.ok().stdout.trim().to_string();
    approve(&link);
    assert_eq!(api.state("snapchat-1"), "active");
    let (status, fresh) = api.get("v1/connections/snapchat-1/token");
    assert_eq!(status, 200, "{fresh}");
    assert_ne!(
        fresh["access_token"],
        access.as_str(),
        "a new grant, a new token"
    );

    // Faults: an HTML 503 outage on Snapchat, five throttled answers on TikTok API for Business.
    let (r, _) = tour.run(
        "curl -s -X POST $S/faults/snapchat/outage -H 'content-type: application/json' -d '{\"for\":\"5m\",\"mode\":\"html\",\"status\":503}'",
        &[],
    );
    let faults = r.ok().json();
    assert_eq!(faults["outage"]["status"], 503, "{faults}");
    let (status, _) = api.post("v1/connections/snapchat-1/refresh");
    assert!(status >= 500, "a refresh during the outage fails: {status}");
    assert_eq!(api.state("snapchat-1"), "degraded");
    assert_eq!(api.get("v1/connections/snapchat-1/token").0, 200);
    let (r, _) = tour.run(
        "curl -s -X POST $S/faults/tiktok-business/throttle -H 'content-type: application/json' -d '{\"next\":5}'",
        &[],
    );
    assert_eq!(r.ok().json()["throttle_next"], 5);
    let (r, _) = tour.run("curl -s $S/counters", &[]);
    let counters = r.ok().json();
    assert!(
        counters["grants"][&tiktok_grant]["token_calls"].as_u64() >= Some(1),
        "token calls per grant: {counters}"
    );
    let snap = &counters["providers"]["snapchat"];
    assert!(
        snap["unauthorized_sent"].as_u64() >= Some(1) && snap["too_many_requests_sent"].is_u64(),
        "401s and 429s sent: {counters}"
    );
    // The outage ends (the sandbox's `clear`, rather than five minutes), and so do the throttles.
    api.clear_faults("snapchat");
    api.clear_faults("tiktok-business");
    assert_eq!(api.post("v1/connections/snapchat-1/refresh").0, 200);
    assert_eq!(api.state("snapchat-1"), "active");

    // ### `tokenwarden diagnose` on a saved response.
    let (r, _) = tour.run(
        "cargo run --release -- diagnose --provider tiktok-business < examples/responses/tiktok-business-rate-limit.txt",
        &[],
    );
    r.exited(3)
        .out_has("● TikTok is throttling the app")
        .out_has("kind: rate_limited · action: backoff_and_retry");

    // ## A short tour. The curl to TikTok cannot run here; its saved answer must diagnose as shown.
    let shown = tour.find(TIKTOK_CURL);
    let r = tour.sh("tokenwarden diagnose < examples/responses/tiktok-business-rate-limit.txt");
    r.exited(3);
    assert!(
        says(&r.stdout, &shown.shown),
        "the README shows\n{}\nbut diagnose prints\n{}",
        shown.shown,
        r.stdout
    );
    let (r, shown) = tour.run("tokenwarden providers", &[]);
    r.ok();
    assert!(
        says(&r.stdout, &shown.shown),
        "the README shows\n{}\nbut providers prints\n{}",
        shown.shown,
        r.stdout
    );

    // ### `tokenwarden serve`: a connect session, from curl and from the shell.
    let (r, shown) = tour.run(
        "curl -s -X POST -H \"Authorization: Bearer $K\" -H 'content-type: application/json' http://127.0.0.1:8080/v1/connect-sessions -d '{\"provider\":\"snapchat\",\"connection_id\":\"acme-snap\",\"end_user\":\"Acme GmbH\"}'",
        &[],
    );
    let session = r.ok().json();
    let sketch = tour.substitute(&shown.shown, &[]);
    for (field, pattern) in sketched_fields(&sketch) {
        let value = session[&field].as_str().unwrap_or_default();
        assert!(
            fits(value, &pattern),
            "{field}: {value:?} is not {pattern:?}: {session}"
        );
    }
    let http = reqwest::blocking::Client::new();
    let preview = http.get(session["url"].as_str().unwrap()).send().unwrap();
    assert_eq!(preview.status(), 200, "opening the link spends nothing");
    let (r, _) = tour.run(
        "tokenwarden connect snapchat --connection-id acme-snap --end-user \"Acme GmbH\"",
        &[],
    );
    let acme_link = r.ok().stdout.trim().to_string();
    assert!(
        acme_link.starts_with(&format!("{}connect/s/", d.base)),
        "{}",
        r.context()
    );

    // Webhooks: one to a receiver here (the README's 127.0.0.1:9000), then a state change.
    let port = receiver().to_string();
    let (r, _) = tour.run(
        "curl -s -H \"Authorization: Bearer $K\" -H 'content-type: application/json' -d '{\"url\":\"http://127.0.0.1:9000/hook\"}' http://127.0.0.1:8080/v1/webhooks",
        &[("9000", &port)],
    );
    let hook = r.ok().json();
    assert!(
        hook["secret"]
            .as_str()
            .is_some_and(|s| s.starts_with("whsec_")),
        "{hook}"
    );
    let hook_id = hook["id"].as_str().unwrap().to_string();
    approve(&acme_link);
    let (_, acme) = api.get("v1/connections/acme-snap");
    assert_eq!(
        (acme["state"].as_str(), acme["end_user"].as_str()),
        (Some("active"), Some("Acme GmbH")),
        "{acme}"
    );
    let deliveries =
        "curl -s -H \"Authorization: Bearer $K\" http://127.0.0.1:8080/v1/webhooks/ID/deliveries";
    let log = eventually("a delivered connection.state_changed", || {
        let (r, _) = tour.run(deliveries, &[("/ID/", &format!("/{hook_id}/"))]);
        let v = r.ok().json();
        let delivered = v["deliveries"]
            .as_array()
            .is_some_and(|a| a.iter().any(|d| d["status"] == "delivered"));
        delivered.then_some(v)
    });
    assert!(!log.to_string().contains("whsec_"), "{log}");

    // From the shell, against the running daemon.
    let (r, _) = tour.run("tokenwarden connections", &[]);
    r.ok()
        .out_has("snapchat-1")
        .out_has("acme-snap")
        .out_has("reauth_required");
    let (r, _) = tour.run("tokenwarden connections show snapchat-1", &[]);
    r.ok().out_has("snapchat-1 (snapchat)  active");
    let (r, _) = tour.run("tokenwarden token snapchat-1", &[]);
    let current = r.ok().stdout.trim().to_string();
    assert_eq!(
        current,
        api.get("v1/connections/snapchat-1/token").1["access_token"]
            .as_str()
            .unwrap(),
        "the token alone"
    );
    let (r, _) = tour.run("tokenwarden connections refresh snapchat-1", &[]);
    r.ok().out_has("Refreshed snapchat-1");
    let (r, _) = tour.run("tokenwarden token snapchat-1", &[]);
    assert_ne!(r.ok().stdout.trim(), current, "refreshed: a new token");
    // tiktok-1's grant was removed by its user above; it is deleted all the same.
    let (r, _) = tour.run("tokenwarden connections delete tiktok-1", &[]);
    r.ok().out_has("Deleted tiktok-1");
    assert_eq!(api.get("v1/connections/tiktok-1").0, 404);
    let (r, _) = tour.run("tokenwarden keys rotate", &[]);
    r.ok();
    assert_eq!(
        api.get("v1/connections/snapchat-1/token").0,
        200,
        "the daemon reads its tokens after the rotation"
    );

    // ### `/proxy`.
    tour.set("K=$(cat tokenwarden-data/admin.key)");
    let (r, _) = tour.run(
        "curl -si http://127.0.0.1:8080/proxy/snapchat-1/me -H \"Authorization: Bearer $K\"",
        &[],
    );
    let (status, headers, body) = r.ok().http();
    assert_eq!(status, 200, "{}", r.context());
    assert_eq!(headers["tokenwarden-kind"], "ok");
    assert_eq!(headers["tokenwarden-attempts"], "1");
    assert!(body.contains("\"me\""), "{body}");
    let (r, _) = tour.run(
        "curl -si http://127.0.0.1:8080/proxy/tiktok-business-1/user/info/ -H \"Authorization: Bearer $K\" -H 'tokenwarden-budget-ms: 5000'",
        &[],
    );
    let (status, headers, body) = r.ok().http();
    assert_eq!(status, 200, "{}", r.context());
    assert_eq!(headers["tokenwarden-kind"], "ok");
    assert!(body.contains("\"code\":0"), "{body}");
    // Where it needs a person, the proxy says so with the link.
    let r = tour.sh(&tour.substitute(
        "curl -si http://127.0.0.1:8080/proxy/meta-1/me -H \"Authorization: Bearer $K\"",
        &[],
    ));
    let (status, headers, _) = r.ok().http();
    assert_eq!(status, 409);
    assert_eq!(
        headers["tokenwarden-reauthorize-url"],
        format!("{}connections/meta-1/reauthorize", d.base)
    );

    // ## Around the daemon: API keys and webhooks from the shell.
    let (r, _) = tour.run("tokenwarden api-keys", &[]);
    r.ok().out_has("admin").out_has("(this key)");
    let (r, _) = tour.run(
        "tokenwarden api-keys create --role token_reader --label \"reporting job\"",
        &[],
    );
    let reader = r.ok().stdout.trim().to_string();
    assert!(
        !reader.is_empty() && !reader.contains(char::is_whitespace),
        "the key alone: {}",
        r.context()
    );
    let key_id = r
        .stderr
        .split("api-keys revoke ")
        .nth(1)
        .and_then(|s| s.split('`').next())
        .unwrap_or_else(|| panic!("create names the key's id: {}", r.context()))
        .to_string();
    let as_reader = |url: &str| {
        http.get(url)
            .bearer_auth(&reader)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    let reader_url = format!("{}v1/connections/snapchat-1/token", d.base);
    assert_eq!(
        as_reader(&reader_url),
        200,
        "a token_reader key reads tokens"
    );
    let (r, _) = tour.run("tokenwarden api-keys revoke KEY_ID", &[("KEY_ID", &key_id)]);
    r.ok();
    assert_eq!(as_reader(&reader_url), 401, "refused at once");
    let (r, _) = tour.run(
        "tokenwarden webhooks create https://hooks.example.com/tw",
        &[],
    );
    let secret = r.ok().stdout.trim().to_string();
    assert!(
        secret.starts_with("whsec_") && !secret.contains(char::is_whitespace),
        "{}",
        r.context()
    );
    let example_id = r
        .stderr
        .split_whitespace()
        .find(|w| w.starts_with("wh_"))
        .unwrap_or_else(|| panic!("create names the webhook's id: {}", r.context()))
        .to_string();
    let (r, _) = tour.run("tokenwarden webhooks", &[]);
    r.ok()
        .out_has(&example_id)
        .out_has("https://hooks.example.com/tw")
        .out_has(&hook_id);
    assert!(!r.stdout.contains("whsec_"), "never their secrets");
    let (r, _) = tour.run(
        "tokenwarden webhooks deliveries WEBHOOK_ID",
        &[("WEBHOOK_ID", &hook_id)],
    );
    r.ok().out_has("delivered");
    let (r, _) = tour.run(
        "tokenwarden webhooks delete WEBHOOK_ID",
        &[("WEBHOOK_ID", &example_id)],
    );
    r.ok();
    let (r, _) = tour.run("tokenwarden webhooks", &[]);
    assert!(!r.ok().stdout.contains(&example_id), "{}", r.context());

    // Shell completions and manual pages.
    let (r, _) = tour.run(
        "mkdir -p ~/.local/share/bash-completion/completions ~/.zfunc",
        &[],
    );
    r.ok();
    let (r, _) = tour.run(
        "tokenwarden completions bash > ~/.local/share/bash-completion/completions/tokenwarden",
        &[],
    );
    r.ok();
    let bash_completion =
        std::fs::read_to_string(home.join(".local/share/bash-completion/completions/tokenwarden"))
            .unwrap();
    assert!(
        bash_completion.contains("_tokenwarden"),
        "a bash completion script"
    );
    let (r, _) = tour.run("tokenwarden completions zsh > ~/.zfunc/_tokenwarden", &[]);
    r.ok();
    let zsh = std::fs::read_to_string(home.join(".zfunc/_tokenwarden")).unwrap();
    assert!(
        zsh.starts_with("#compdef tokenwarden"),
        "a zsh completion function"
    );
    let (r, _) = tour.run("tokenwarden man | man -l -", &[]);
    r.ok().out_has("NAME").out_has("tokenwarden");
    let man_dir = home.join("man/man1");
    let (r, _) = tour.run(
        "tokenwarden man --dir /usr/local/share/man/man1",
        &[("/usr/local/share/man/man1", &man_dir.display().to_string())],
    );
    r.ok();
    assert!(man_dir.join("tokenwarden.1").exists() && man_dir.join("tokenwarden-serve.1").exists());

    // From Python and Node.
    tour.set("export TOKENWARDEN_URL=http://127.0.0.1:8080 TOKENWARDEN_API_KEY=$(cat tokenwarden-data/admin.key)");
    for example in [
        "python3 examples/python/tokenwarden_example.py snapchat-1 me",
        "node examples/node/tokenwarden_example.mjs snapchat-1 me",
    ] {
        let (r, _) = tour.run(example, &[]);
        r.ok().out_has("proxy: HTTP 200, kind ok");
    }

    tour.finish();
    d.stop();
    eprintln!("the README tour took {:?}", started.elapsed());
}

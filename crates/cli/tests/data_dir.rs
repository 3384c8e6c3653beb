//! `serve` and its data directory: private modes whatever the umask, a master key file others can
//! read refused (unless allowed), a key from the environment warned about, a lost key never
//! silently replaced, and one daemon per data directory on SQLite.
#![cfg(unix)]

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;

/// A daemon that got as far as serving.
struct Daemon {
    child: Child,
    stderr: Option<JoinHandle<String>>,
}

impl Daemon {
    /// Kills it (SIGKILL: nothing is cleaned up, as after a crash) and returns what it logged.
    fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr.take().unwrap().join().unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a start ended: serving, or exited with its stdout and stderr.
enum Outcome {
    Serving(Daemon),
    Exited { ok: bool, out: String, err: String },
}

impl Outcome {
    #[track_caller]
    fn serving(self) -> Daemon {
        match self {
            Outcome::Serving(d) => d,
            Outcome::Exited { out, err, .. } => {
                panic!("serve did not start:\nstdout:\n{out}\nstderr:\n{err}")
            }
        }
    }

    /// It exited with an error; its stderr.
    #[track_caller]
    fn refused(self) -> String {
        match self {
            Outcome::Serving(d) => {
                let err = d.kill();
                panic!("serve started but should have refused; stderr:\n{err}")
            }
            Outcome::Exited { ok, out, err } => {
                assert!(!ok, "serve exited successfully:\n{out}\n{err}");
                err
            }
        }
    }
}

fn serve(data: &Path) -> Command {
    serve_with_umask(data, None)
}

/// `serve --sandbox` on `data`, optionally under a umask set by the shell that execs it.
fn serve_with_umask(data: &Path, umask: Option<&str>) -> Command {
    let bin = env!("CARGO_BIN_EXE_tokenwarden");
    let mut cmd = match umask {
        Some(mask) => {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(format!("umask {mask}; exec \"$0\" \"$@\""))
                .arg(bin);
            c
        }
        None => Command::new(bin),
    };
    cmd.args([
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
    .env("TOKENWARDEN_LOG", "info")
    .env_remove("RUST_LOG")
    .env_remove("TOKENWARDEN_MASTER_KEY")
    .env_remove("TOKENWARDEN_DATABASE_URL")
    .env_remove("TOKENWARDEN_DATA_DIR")
    .env_remove("TOKENWARDEN_CONFIG")
    .env_remove("TOKENWARDEN_ALLOW_INSECURE_KEY_FILE");
    cmd
}

/// Starts `cmd` and reads its stdout until it says it serves or it exits (no timing involved:
/// either the line comes or the pipe closes).
fn launch(mut cmd: Command) -> Outcome {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut out = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        out.push_str(&line);
        out.push('\n');
        if line.starts_with("tokenwarden is serving on ") {
            std::thread::spawn(move || for _ in lines {});
            return Outcome::Serving(Daemon {
                child,
                stderr: Some(stderr),
            });
        }
    }
    let status = child.wait().unwrap();
    Outcome::Exited {
        ok: status.success(),
        out,
        err: stderr.join().unwrap(),
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

fn files(data: &Path) -> (PathBuf, PathBuf) {
    (data.join("master.key"), data.join("tokenwarden.db"))
}

#[test]
fn a_new_data_directory_and_its_files_are_private_whatever_the_umask() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("made/by/serve");
    let d = launch(serve_with_umask(&data, Some("000"))).serving();
    assert_eq!(mode(&data), 0o700, "the data directory");
    let (key, db) = files(&data);
    for f in [
        key,
        db.clone(),
        data.join("tokenwarden.db-wal"),
        data.join("tokenwarden.db-shm"),
        data.join("admin.key"),
    ] {
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
    d.kill();
}

#[test]
fn a_key_file_others_can_read_is_refused_unless_allowed() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    launch(serve(&data)).serving().kill();
    let (key, _) = files(&data);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();

    let err = launch(serve(&data)).refused();
    assert!(
        err.contains(&format!("chmod 600 {}", key.display())),
        "{err}"
    );
    assert!(err.contains("--allow-insecure-key-file"), "{err}");
    assert_eq!(mode(&key), 0o644, "left as it was");

    let mut allowed = serve(&data);
    allowed.arg("--allow-insecure-key-file");
    let logged = launch(allowed).serving().kill();
    assert!(
        logged.contains("WARN") && logged.contains("readable by group or others"),
        "{logged}"
    );
    let mut by_env = serve(&data);
    by_env.env("TOKENWARDEN_ALLOW_INSECURE_KEY_FILE", "true");
    launch(by_env).serving().kill();
}

#[test]
fn a_key_from_the_environment_is_warned_about_without_showing_it() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let key_b64 = "env-key:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let mut cmd = serve(&data);
    cmd.env("TOKENWARDEN_MASTER_KEY", key_b64);
    let logged = launch(cmd).serving().kill();
    let warned: Vec<&str> = logged
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("TOKENWARDEN_MASTER_KEY"))
        .collect();
    assert_eq!(warned.len(), 1, "{logged}");
    assert!(!logged.contains("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"));
    assert!(!files(&data).0.exists(), "no key file is written");
}

#[test]
fn a_lost_key_beside_an_existing_database_is_refused_and_not_replaced() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    launch(serve(&data)).serving().kill();
    let (key, db) = files(&data);
    std::fs::remove_file(&key).unwrap();

    let err = launch(serve(&data)).refused();
    assert!(err.contains(&key.display().to_string()), "{err}");
    assert!(err.contains("another key"), "{err}");
    assert!(!key.exists(), "no new key file was written");
    assert!(db.exists());
    // Nor does a second attempt: still refused, still no key.
    launch(serve(&data)).refused();
    assert!(!key.exists());
}

#[test]
fn a_second_daemon_on_the_same_data_directory_is_refused_until_the_first_is_gone() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let first = launch(serve(&data)).serving();
    let pid = first.child.id();

    let err = launch(serve(&data)).refused();
    assert!(err.contains(&format!("pid {pid}")), "{err}");
    assert!(err.contains(&data.display().to_string()), "{err}");

    // Killed outright (no clean-up ran): the lock went with the process.
    first.kill();
    launch(serve(&data)).serving().kill();
}

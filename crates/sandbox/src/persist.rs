//! [`LedgerFile`]: the sandbox's books kept on disk, so an emulator run inside `serve --sandbox`
//! keeps its grants, tokens and rotation state across restarts (issue 15, item 3). Without it
//! every connection turns `reauth_required` at its next refresh after a restart, because the
//! emulator no longer knows the refresh token the daemon holds.
//!
//! - What is kept: apps (secret as a digest), grants, unexpired and expired tokens as digests,
//!   authorization codes as digests, which refresh tokens were rotated out, and each platform's
//!   rotation setting. What is not: faults in progress (outages, throttles, latency), rate-limit
//!   windows, counters and asynchronous jobs; a restart clears those as a platform's own
//!   recovery would.
//! - Written whole, atomically (a temporary file beside it, fsync, rename, fsync of the
//!   directory), mode 0600, after every change and before the answer that made the change is
//!   sent: a refresh token the daemon stored is one the file knows. Writers take turns, and one
//!   write covers every change made before it started, so a burst of refreshes costs a few
//!   writes, not one each.
//! - A file that cannot be read back is refused with its path and what is wrong; it is never
//!   silently replaced by empty books.

use crate::Sandbox;
use crate::ledger::snapshot::{LedgerSnapshot, RestoredCounts};
use crate::provider::Provider;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// The version of the file's layout; a file of another version is refused, not guessed at.
const FORMAT: u32 = 1;

/// Why a ledger file cannot be used. The file holds no credential, so its contents may be quoted.
#[derive(Debug, thiserror::Error)]
pub enum LedgerFileError {
    /// It exists but cannot be read.
    #[error("cannot read the sandbox's ledger {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not a ledger this version can read.
    #[error(
        "the sandbox's ledger {path} cannot be read back ({why}); move it away to start the sandbox with empty books"
    )]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with a line and column where there is one.
        why: String,
    },
}

/// The file's contents.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileContents {
    format: u32,
    /// The sandbox clock when it was written.
    saved_at: DateTime<Utc>,
    /// Each platform's refresh-token rotation, by provider id.
    rotation: BTreeMap<Provider, RotationRecord>,
    ledger: LedgerSnapshot,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotationRecord {
    enabled: bool,
    reuse_grace_ms: u64,
}

/// A ledger file, opened (and read, if it exists) before the sandbox starts.
#[derive(Debug)]
pub struct LedgerFile {
    path: PathBuf,
    contents: Option<FileContents>,
}

impl LedgerFile {
    /// Opens `path`: reads and checks it when it exists; a missing file means empty books.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, LedgerFileError> {
        let path = path.into();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(LedgerFile {
                    path,
                    contents: None,
                });
            }
            Err(source) => return Err(LedgerFileError::Read { path, source }),
        };
        let invalid = |why: String| LedgerFileError::Invalid {
            path: path.clone(),
            why,
        };
        // The version first, so a newer file says so instead of naming a field it does not know.
        #[derive(Deserialize)]
        struct Version {
            format: Option<u32>,
        }
        let version: Version =
            serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        match version.format {
            Some(FORMAT) => {}
            Some(other) => {
                return Err(invalid(format!(
                    "format {other}; this tokenwarden reads format {FORMAT}"
                )));
            }
            None => return Err(invalid("no \"format\" field".into())),
        }
        let contents: FileContents =
            serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        Ok(LedgerFile {
            path,
            contents: Some(contents),
        })
    }

    /// Where the books are kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The sandbox clock when the file was last written; `None` for a new file. A scaled clock
    /// should resume from here rather than go back to the wall clock, or the tokens issued in the
    /// last run would be issued in the future.
    pub fn saved_at(&self) -> Option<DateTime<Utc>> {
        self.contents.as_ref().map(|c| c.saved_at)
    }
}

/// What [`Sandbox::with_ledger_file`] found in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resumed {
    /// There was no file: the books start empty and will be kept from now on.
    Fresh,
    /// The books were read back.
    Restored {
        /// Grants.
        grants: usize,
        /// Access tokens.
        access_tokens: usize,
        /// Refresh tokens.
        refresh_tokens: usize,
    },
}

/// The writer side, held by a sandbox whose books are kept.
#[derive(Debug)]
pub(crate) struct Keeper {
    path: PathBuf,
    /// The ledger's change count the file is known to hold.
    written: AtomicU64,
    /// Writers take turns.
    turn: tokio::sync::Mutex<()>,
    /// Whether the last write failed (so a failure is logged once per episode).
    failing: AtomicBool,
}

impl Sandbox {
    /// Restores the books from `file` (apps already registered from the configuration keep
    /// their registration and take the file's state) and keeps them there from now on.
    pub fn with_ledger_file(
        config: crate::SandboxConfig,
        clock: std::sync::Arc<dyn tokenwarden_core::clock::Clock>,
        file: LedgerFile,
    ) -> Result<(Sandbox, Resumed), LedgerFileError> {
        let LedgerFile { path, contents } = file;
        let keeper = Keeper {
            path: path.clone(),
            written: AtomicU64::new(0),
            turn: tokio::sync::Mutex::new(()),
            failing: AtomicBool::new(false),
        };
        let sandbox = Sandbox::build(config, clock, Some(keeper));
        let resumed = match contents {
            None => Resumed::Fresh,
            Some(c) => {
                let RestoredCounts {
                    grants,
                    access_tokens,
                    refresh_tokens,
                } = sandbox
                    .ledger()
                    .restore(c.ledger)
                    .map_err(|why| LedgerFileError::Invalid {
                        path: path.clone(),
                        why,
                    })?;
                for (p, r) in c.rotation {
                    let mut s = sandbox.faults(p).settings.write();
                    s.rotation = r.enabled;
                    s.reuse_grace = Duration::from_millis(r.reuse_grace_ms);
                }
                Resumed::Restored {
                    grants,
                    access_tokens,
                    refresh_tokens,
                }
            }
        };
        Ok((sandbox, resumed))
    }

    /// Where the books are kept, if they are.
    pub fn ledger_path(&self) -> Option<&Path> {
        self.keeper().map(|k| k.path.as_path())
    }

    /// Makes sure the file holds every change made so far (nothing to do when the books are not
    /// kept or nothing changed). A failed write is logged, once per episode, and retried with the
    /// next change; the answer in hand is still sent, because the sandbox's memory is right.
    pub(crate) async fn keep_books(&self) {
        let Some(k) = self.keeper() else { return };
        let wanted = self.ledger().changes();
        if k.written.load(Ordering::Acquire) >= wanted {
            return;
        }
        let _turn = k.turn.lock().await;
        // Another writer may have covered these changes while this one waited.
        if k.written.load(Ordering::Acquire) >= wanted {
            return;
        }
        let covered = self.ledger().changes();
        let contents = FileContents {
            format: FORMAT,
            saved_at: self.now(),
            rotation: Provider::ALL
                .into_iter()
                .map(|p| {
                    let s = self.faults(p).settings.read();
                    (
                        p,
                        RotationRecord {
                            enabled: s.rotation,
                            reuse_grace_ms: u64::try_from(s.reuse_grace.as_millis())
                                .unwrap_or(u64::MAX),
                        },
                    )
                })
                .collect(),
            ledger: self.ledger().snapshot(),
        };
        let bytes = match serde_json::to_vec(&contents) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode the sandbox's ledger");
                return;
            }
        };
        let path = k.path.clone();
        let written = tokio::task::spawn_blocking(move || write_atomically(&path, &bytes)).await;
        match written {
            Ok(Ok(())) => {
                k.written.store(covered, Ordering::Release);
                if k.failing.swap(false, Ordering::AcqRel) {
                    tracing::info!(path = %k.path.display(), "the sandbox's ledger is written again");
                }
            }
            Ok(Err(e)) => {
                if !k.failing.swap(true, Ordering::AcqRel) {
                    tracing::warn!(
                        path = %k.path.display(),
                        error = %e,
                        "cannot write the sandbox's ledger; a restart now would forget the latest grants and tokens"
                    );
                }
            }
            Err(e) => tracing::error!(error = %e, "the sandbox's ledger writer stopped"),
        }
    }
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one: a 0600
/// temporary file in the same directory, flushed, renamed over `path`, and the directory flushed.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(&tmp)?;
    #[cfg(unix)]
    {
        // A temporary file left by an older run keeps its mode through `open`.
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    #[cfg(unix)]
    if let Some(dir) = dir {
        std::fs::File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SandboxConfig;
    use chrono::TimeZone;
    use std::sync::Arc;
    use tokenwarden_core::clock::Clock;

    #[derive(Debug)]
    struct Fixed(DateTime<Utc>);
    impl Clock for Fixed {
        fn now(&self) -> DateTime<Utc> {
            self.0
        }
    }

    fn clock() -> Arc<dyn Clock> {
        Arc::new(Fixed(Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()))
    }

    #[tokio::test]
    async fn rotation_settings_and_the_clock_come_back_and_the_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sandbox-ledger.json");
        let file = LedgerFile::open(&path).unwrap();
        assert_eq!(file.saved_at(), None);
        let (sb, resumed) =
            Sandbox::with_ledger_file(SandboxConfig::default(), clock(), file).unwrap();
        assert_eq!(resumed, Resumed::Fresh);
        {
            let mut s = sb.faults(Provider::Snapchat).settings.write();
            s.rotation = true;
            s.reuse_grace = Duration::from_secs(30);
        }
        sb.ledger().touch();
        sb.keep_books().await;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert!(!dir.path().join("sandbox-ledger.json.tmp").exists());

        let file = LedgerFile::open(&path).unwrap();
        assert_eq!(file.saved_at(), Some(clock().now()));
        let (back, resumed) =
            Sandbox::with_ledger_file(SandboxConfig::default(), clock(), file).unwrap();
        assert!(matches!(resumed, Resumed::Restored { grants: 0, .. }));
        let s = back.faults(Provider::Snapchat).settings.read();
        assert!(s.rotation);
        assert_eq!(s.reuse_grace, Duration::from_secs(30));
        assert!(!back.faults(Provider::Meta).settings.read().rotation);
    }

    #[test]
    fn a_file_that_cannot_be_read_back_is_refused_by_path_and_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sandbox-ledger.json");
        for (content, says) in [
            ("{\"format\": 1, \"saved_at\": ", "EOF"),
            ("{\"format\": 9}", "format 9"),
            ("\"books\"", "invalid type"),
            ("{}", "no \"format\""),
        ] {
            std::fs::write(&path, content).unwrap();
            let err = LedgerFile::open(&path).unwrap_err().to_string();
            assert!(err.contains(&path.display().to_string()), "{err}");
            assert!(err.contains(says), "{content}: {err}");
            assert!(err.contains("move it away"), "{err}");
        }
    }
}

//! The data directory `serve` keeps its state in, and the master key beside it.
//!
//! - The directory is created 0700 and the SQLite files (database, `-wal`, `-shm`) are kept 0600,
//!   whatever the umask: they hold every encrypted token, and the key file sits next to them.
//! - A master key file that group or others can read is refused (unless the operator says
//!   otherwise); a key from the environment is accepted with a warning.
//! - A key is created only for a database that has none: when the key file is missing but the
//!   database was written under another key, `serve` stops instead of making a useless new key.
//! - One daemon per data directory on SQLite: an advisory lock on `tokenwarden.lock`, which the
//!   kernel releases when the process ends, however it ends.
//! - `serve --sandbox` keeps the in-process emulator's books in [`SANDBOX_LEDGER_FILE`] (0600,
//!   written atomically; token and secret digests only), so a restart keeps its connections.

use anyhow::{Context as _, Result, bail};
use std::fs::File;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "tokenwarden.lock";

/// The in-process sandbox's books inside the data directory (`serve --sandbox`).
#[cfg_attr(not(feature = "sandbox"), allow(dead_code))]
pub const SANDBOX_LEDGER_FILE: &str = "sandbox-ledger.json";

/// Creates `dir` (and its missing parents) readable by its owner only. An existing directory is
/// left as it is, with a warning when group or others may enter it.
pub fn create_private(dir: &Path) -> Result<()> {
    let existed = dir.is_dir();
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if existed {
            let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %dir.display(),
                    mode = format!("{mode:o}"),
                    "the data directory is open to group or others; chmod 700 it"
                );
            }
        } else {
            // The umask may have taken bits away (or, at 000, left group and others in).
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).with_context(
                || format!("cannot make the data directory {} private", dir.display()),
            )?;
        }
    }
    #[cfg(not(unix))]
    let _ = existed;
    Ok(())
}

/// The database file of an SQLite URL (`sqlite://PATH?…` or `sqlite:PATH`); `None` for another
/// backend or an in-memory database.
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.contains(":memory:")).then(|| PathBuf::from(path))
}

/// The database file and the two SQLite keeps beside it in WAL mode.
fn sqlite_files(db: &Path) -> [PathBuf; 3] {
    let with = |suffix: &str| {
        let mut s = db.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    };
    [db.to_path_buf(), with("-wal"), with("-shm")]
}

/// Before SQLite opens `db`: creates it empty with mode 0600 if it is missing (SQLite gives its
/// `-wal` and `-shm` files the database file's mode), and narrows an existing one to 0600.
pub fn prepare_sqlite(db: &Path) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(db)
        .with_context(|| format!("cannot create the database file {}", db.display()))?;
    keep_sqlite_private(db)
}

/// Sets 0600 on the database file and its `-wal` and `-shm` files, those that exist.
pub fn keep_sqlite_private(db: &Path) -> Result<()> {
    #[cfg(unix)]
    for f in sqlite_files(db) {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("cannot make {} private", f.display()));
            }
        }
    }
    #[cfg(not(unix))]
    let _ = sqlite_files(db);
    Ok(())
}

/// The exclusive lock on a data directory, held while this value lives (and released by the
/// kernel if the process dies).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// Takes the data directory's lock, or explains which process holds it.
pub fn lock(dir: &Path) -> Result<DirLock> {
    let path = dir.join(LOCK_FILE);
    let mut opts = std::fs::OpenOptions::new();
    // Not truncated on open: the holder's pid must survive a failed attempt to read it.
    opts.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts
        .open(&path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0)?;
            file.write_all(format!("{}\n", std::process::id()).as_bytes())?;
            file.sync_all()?;
            Ok(DirLock { _file: file })
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut held = String::new();
            let _ = file.read_to_string(&mut held);
            let pid = held.trim();
            let pid = if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
                "unknown".to_string()
            } else {
                pid.to_string()
            };
            bail!(
                "another tokenwarden (pid {pid}) is already serving from the data directory {}: two daemons must not share one SQLite database. Stop that one first, or give this one its own --data-dir (several replicas share a PostgreSQL database: --database postgres://…)",
                dir.display()
            )
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// Refuses a key file that group or others can read, unless `allow_insecure` (then the store's
/// loader warns about it).
pub fn check_key_file(path: &Path, allow_insecure: bool) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .with_context(|| format!("cannot read the key file {}", path.display()))?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 && !allow_insecure {
            bail!(
                "the master key file {path} can be read by group or others (mode {mode:o}); fix: chmod 600 {path} (or start with --allow-insecure-key-file, TOKENWARDEN_ALLOW_INSECURE_KEY_FILE=true or allow_insecure_key_file = true to accept it)",
                path = path.display()
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (path, allow_insecure);
    Ok(())
}

/// Writes a newly made key file (mode 0600 whatever the umask).
pub fn write_new_key(ring: &tokenwarden_store::Keyring, path: &Path) -> Result<()> {
    ring.write_file(path)
        .with_context(|| format!("cannot write the new master key to {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot make {} private", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_their_file() {
        for (url, want) in [
            (
                "sqlite:///var/lib/tw/tw.db?mode=rwc",
                Some("/var/lib/tw/tw.db"),
            ),
            ("sqlite://data/tw.db", Some("data/tw.db")),
            ("sqlite:tw.db?mode=rwc", Some("tw.db")),
            ("sqlite::memory:", None),
            ("sqlite://", None),
            ("postgres://u@h/db", None),
        ] {
            assert_eq!(sqlite_file(url), want.map(PathBuf::from), "{url}");
        }
    }
}

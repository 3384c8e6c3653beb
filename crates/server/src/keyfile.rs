//! Keeps the daemon's keyring in step with its key file, so `tokenwarden keys rotate` can add a
//! key and re-encrypt while the daemon keeps serving: the daemon learns the new key (and starts
//! writing under it) before any row is re-encrypted with it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokenwarden_store::{Keyring, Store};

/// How often the key file is looked at. `keys rotate` waits longer than this before re-encrypting.
pub const KEY_FILE_POLL: Duration = Duration::from_secs(2);

/// Re-reads `path` every [`KEY_FILE_POLL`] and installs a changed keyring until `shutdown`.
/// A file that does not parse, or that drops a key still in use, is refused and logged; the
/// keyring in use stays.
pub async fn watch(
    store: Arc<dyn Store>,
    path: PathBuf,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut last = std::fs::read(&path).ok();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(KEY_FILE_POLL) => {}
            _ = shutdown.changed() => return,
        }
        let Ok(now) = std::fs::read(&path) else {
            continue;
        };
        if last.as_deref() == Some(now.as_slice()) {
            continue;
        }
        let parsed = String::from_utf8(now.clone())
            .ok()
            .and_then(|t| Keyring::parse(&t).ok());
        match parsed {
            Some(ring) => {
                let ids = ring.key_ids().join(", ");
                match store.set_keyring(ring).await {
                    Ok(()) => {
                        tracing::info!(key_ids = %ids, "loaded the changed key file");
                        last = Some(now);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "the changed key file was refused; keeping the keys in use")
                    }
                }
            }
            None => {
                tracing::error!(path = %path.display(), "the key file changed but does not parse; keeping the keys in use")
            }
        }
    }
}

//! The keys that encrypt secrets at rest.

use crate::{Delegate, KeyLoader, KeyStatus, Keyring, RotationReport, StoreError};
use async_trait::async_trait;

/// The keys that encrypt secrets at rest, and their rotation ([`crate::rotate_keys`]).
#[async_trait]
pub trait Encryption: Send + Sync {
    /// The keyring in use.
    fn keyring(&self) -> Keyring;
    /// Where the keys come from: a value met under a key id the keyring lacks makes the store
    /// reload them from there (another replica rotated to a new key), and, when the key is still
    /// missing, the error says where to add it.
    fn set_key_loader(&self, loader: KeyLoader);
    /// Swaps in a keyring whose current key may be new. It must hold every key id still in use
    /// (checked against the key-check records); the new key gets its check record.
    async fn set_keyring(&self, keys: Keyring) -> Result<(), StoreError>;
    /// Re-encrypts up to `batch` values per statement batch under the current key, across every
    /// secret column, while reads go on (they accept every key id in the keyring).
    async fn reencrypt_all(&self, batch: i64) -> Result<RotationReport, StoreError>;
    /// Marks every key other than the current one retired (after a complete `reencrypt_all`), so
    /// the keyring may drop them.
    async fn retire_old_keys(&self) -> Result<(), StoreError>;
    /// Usage of each key.
    async fn key_status(&self) -> Result<Vec<KeyStatus>, StoreError>;
}

/// Every call goes to the [`Delegate`]'s store, unchanged.
#[async_trait]
impl<T: Delegate<dyn Encryption> + Send + Sync> Encryption for T {
    fn keyring(&self) -> Keyring {
        self.delegate().keyring()
    }

    fn set_key_loader(&self, loader: KeyLoader) {
        self.delegate().set_key_loader(loader)
    }

    async fn set_keyring(&self, keys: Keyring) -> Result<(), StoreError> {
        self.delegate().set_keyring(keys).await
    }

    async fn reencrypt_all(&self, batch: i64) -> Result<RotationReport, StoreError> {
        self.delegate().reencrypt_all(batch).await
    }

    async fn retire_old_keys(&self) -> Result<(), StoreError> {
        self.delegate().retire_old_keys().await
    }

    async fn key_status(&self) -> Result<Vec<KeyStatus>, StoreError> {
        self.delegate().key_status().await
    }
}

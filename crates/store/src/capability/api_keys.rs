//! API keys.

use crate::{ApiKeyInfo, ApiKeyRole, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokenwarden_core::secret::Secret;

/// API keys: only a key's hash is stored, and the full key is seen once.
#[async_trait]
pub trait ApiKeys: Send + Sync {
    /// Creates a key; the full key is returned once and only its hash is stored.
    async fn create_api_key(
        &self,
        role: ApiKeyRole,
        label: &str,
        now: DateTime<Utc>,
    ) -> Result<(ApiKeyInfo, Secret), StoreError>;
    /// The key's record if `presented` is a live key (lookup by prefix, constant-time compare).
    async fn verify_api_key(&self, presented: &str) -> Result<Option<ApiKeyInfo>, StoreError>;
    /// All keys, revoked ones included.
    async fn list_api_keys(&self) -> Result<Vec<ApiKeyInfo>, StoreError>;
    /// Revokes a key; true if it was live.
    async fn revoke_api_key(&self, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError>;
}

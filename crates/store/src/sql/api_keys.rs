//! [`ApiKeys`] on SQL.

use super::SqlStore;
use super::row::{from_ms, ms, opt_from_ms};
use crate::ApiKeys;
use crate::error::{Result, StoreError};
use crate::model::*;
use async_trait::async_trait;
use base64::Engine;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;
use tokenwarden_core::secret::Secret;

#[async_trait]
impl ApiKeys for SqlStore {
    async fn create_api_key(
        &self,
        role: ApiKeyRole,
        label: &str,
        now: DateTime<Utc>,
    ) -> Result<(ApiKeyInfo, Secret)> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let id = hex(&rand::random::<[u8; 6]>());
        let key = Secret::new(format!(
            "tw_{id}_{}",
            b64.encode(rand::random::<[u8; 32]>())
        ));
        let hash = hex(&Sha256::digest(key.expose().as_bytes()));
        sqlx::query("INSERT INTO api_keys (id, key_hash, role, label, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, NULL)")
            .bind(&id)
            .bind(hash)
            .bind(role.as_str())
            .bind(label)
            .bind(ms(now))
            .execute(&self.pool)
            .await?;
        Ok((
            ApiKeyInfo {
                id,
                role,
                label: label.to_string(),
                created_at: from_ms(ms(now))?,
                revoked_at: None,
            },
            key,
        ))
    }

    async fn verify_api_key(&self, presented: &str) -> Result<Option<ApiKeyInfo>> {
        // Exactly one row with one column whether the id is known or not (NULL when not), then
        // the same hash and compare (against a dummy hash when there is no key): a wrong secret
        // for a known id takes as long as an unknown id, so timing does not tell which ids exist.
        // Only a match reads the rest of the row.
        let id = api_key_id(presented).unwrap_or_default();
        let stored: Option<String> = sqlx::query(
            "SELECT k.key_hash FROM (SELECT 1 AS probe) AS p LEFT JOIN api_keys AS k ON k.id = $1 AND k.revoked_at IS NULL",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await?
        .try_get("key_hash")?;
        if !api_key_matches(stored.as_deref(), presented) {
            return Ok(None);
        }
        sqlx::query("SELECT * FROM api_keys WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| Self::row_to_api_key(&row))
            .transpose()
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyInfo>> {
        let rows = sqlx::query("SELECT * FROM api_keys ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::row_to_api_key).collect()
    }

    async fn revoke_api_key(&self, id: &str, now: DateTime<Utc>) -> Result<bool> {
        let r =
            sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(id)
                .bind(ms(now))
                .execute(&self.pool)
                .await?;
        Ok(r.rows_affected() > 0)
    }
}

impl SqlStore {
    fn row_to_api_key(r: &AnyRow) -> Result<ApiKeyInfo> {
        let role: String = r.try_get("role")?;
        Ok(ApiKeyInfo {
            id: r.try_get("id")?,
            role: ApiKeyRole::parse(&role)
                .ok_or_else(|| StoreError::Corrupt(format!("api key role {role:?}")))?,
            label: r.try_get("label")?,
            created_at: from_ms(r.try_get("created_at")?)?,
            revoked_at: opt_from_ms(r.try_get("revoked_at")?)?,
        })
    }
}

//! [`Webhooks`] on SQL, and the outbox insert a state change shares.

use super::SqlStore;
use super::row::{from_ms, ms, ttl_ms};
use crate::Webhooks;
use crate::crypto::Place;
use crate::error::{Result, StoreError};
use crate::model::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{Executor, Row};
use std::time::Duration;

const DELIVERY_COLS: &str =
    "id, webhook_id, payload, attempts, next_attempt_at, status, last_error, created_at";

/// One delivery per enabled endpoint, in one statement: every endpoint gets its delivery or none
/// does.
pub(super) async fn enqueue<'e, E>(
    exec: E,
    payload: &str,
    now: DateTime<Utc>,
) -> Result<Vec<String>>
where
    E: Executor<'e, Database = sqlx::Any>,
{
    let msg = hex(&rand::random::<[u8; 12]>());
    let rows = sqlx::query(
        "INSERT INTO webhook_deliveries (id, webhook_id, payload, attempts, next_attempt_at, status, last_error, claimed_until, created_at)
         SELECT 'msg_' || $1 || '_' || id, id, $2, 0, $3, 'pending', NULL, 0, $3 FROM webhooks WHERE enabled = 1
         RETURNING id",
    )
    .bind(msg)
    .bind(payload)
    .bind(ms(now))
    .fetch_all(exec)
    .await?;
    rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
}

#[async_trait]
impl Webhooks for SqlStore {
    async fn put_webhook(&self, w: &WebhookEndpoint) -> Result<()> {
        let ct = self
            .seal_secret(
                &Place::new("webhooks", "secret_ct", &w.id),
                &w.signing_secret,
            )
            .await?;
        sqlx::query(
            "INSERT INTO webhooks (id, url, secret_ct, enabled, created_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO UPDATE SET url = excluded.url, secret_ct = excluded.secret_ct, enabled = excluded.enabled",
        )
        .bind(&w.id)
        .bind(&w.url)
        .bind(ct)
        .bind(i64::from(w.enabled))
        .bind(ms(w.created_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_webhook(&self, id: &str) -> Result<Option<WebhookEndpoint>> {
        let row = sqlx::query("SELECT * FROM webhooks WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        self.decoded(|| row.as_ref().map(|r| self.row_to_webhook(r)).transpose())
            .await
    }

    async fn list_webhooks(&self) -> Result<Vec<WebhookEndpoint>> {
        let rows = sqlx::query("SELECT * FROM webhooks ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        self.decoded(|| rows.iter().map(|r| self.row_to_webhook(r)).collect())
            .await
    }

    async fn delete_webhook(&self, id: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM webhooks WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn enqueue_deliveries(&self, payload: &str, now: DateTime<Utc>) -> Result<Vec<String>> {
        enqueue(&self.pool, payload, now).await
    }

    async fn claim_due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        ttl: Duration,
    ) -> Result<Vec<Delivery>> {
        let db_now = self.now_sql();
        let skip = self.skip_locked();
        let rows = sqlx::query(&format!(
            "UPDATE webhook_deliveries SET claimed_until = {db_now} + $1, attempts = attempts + 1
             WHERE claimed_until <= {db_now} AND id IN (
               SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $2 AND claimed_until <= {db_now}
               ORDER BY next_attempt_at, id LIMIT $3 {skip})
             RETURNING {DELIVERY_COLS}"
        ))
        .bind(ttl_ms(ttl))
        .bind(ms(now))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<Delivery> = rows
            .iter()
            .map(Self::row_to_delivery)
            .collect::<Result<_>>()?;
        out.sort_by(|a, b| (a.next_attempt_at, &a.id).cmp(&(b.next_attempt_at, &b.id)));
        Ok(out)
    }

    async fn mark_delivered(&self, id: &str) -> Result<()> {
        let r = sqlx::query("UPDATE webhook_deliveries SET status = 'delivered', claimed_until = 0, last_error = NULL WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("delivery {id}")));
        }
        Ok(())
    }

    async fn mark_failed(
        &self,
        id: &str,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let (status, next) = match retry_at {
            Some(t) => (DeliveryStatus::Pending, Some(ms(t))),
            None => (DeliveryStatus::Dead, None),
        };
        let error: String = error.chars().take(500).collect();
        let r = sqlx::query(
            "UPDATE webhook_deliveries SET status = $2, next_attempt_at = COALESCE($3, next_attempt_at), last_error = $4, claimed_until = 0
             WHERE id = $1",
        )
        .bind(id)
        .bind(status.as_str())
        .bind(next)
        .bind(error)
        .execute(&self.pool)
        .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("delivery {id}")));
        }
        Ok(())
    }

    async fn list_deliveries(&self, webhook: &str, limit: i64) -> Result<Vec<Delivery>> {
        sqlx::query(&format!(
            "SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE webhook_id = $1
             ORDER BY created_at DESC, id DESC LIMIT $2"
        ))
        .bind(webhook)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(Self::row_to_delivery)
        .collect()
    }

    async fn get_delivery(&self, id: &str) -> Result<Option<Delivery>> {
        sqlx::query(&format!(
            "SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| Self::row_to_delivery(&r))
        .transpose()
    }
}

impl SqlStore {
    fn row_to_webhook(&self, r: &AnyRow) -> Result<WebhookEndpoint> {
        let id: String = r.try_get("id")?;
        let ct: Vec<u8> = r.try_get("secret_ct")?;
        Ok(WebhookEndpoint {
            signing_secret: self.open_secret(&Place::new("webhooks", "secret_ct", &id), &ct)?,
            id,
            url: r.try_get("url")?,
            enabled: r.try_get::<i64, _>("enabled")? != 0,
            created_at: from_ms(r.try_get("created_at")?)?,
        })
    }

    fn row_to_delivery(r: &AnyRow) -> Result<Delivery> {
        let status: String = r.try_get("status")?;
        Ok(Delivery {
            id: r.try_get("id")?,
            webhook: r.try_get("webhook_id")?,
            payload: r.try_get("payload")?,
            attempts: r.try_get("attempts")?,
            next_attempt_at: from_ms(r.try_get("next_attempt_at")?)?,
            status: DeliveryStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("delivery status {status:?}")))?,
            last_error: r.try_get("last_error")?,
            created_at: from_ms(r.try_get("created_at")?)?,
        })
    }
}

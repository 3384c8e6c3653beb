//! [`DashboardSessions`] on SQL.

use super::SqlStore;
use super::row::{from_ms, ms};
use crate::DashboardSessions;
use crate::error::Result;
use crate::model::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

/// How long sign-in failures are kept (far longer than any lockout window).
pub(super) const SIGNIN_FAILURES_KEPT_MS: i64 = 3_600_000;

#[async_trait]
impl DashboardSessions for SqlStore {
    async fn put_dashboard_session(&self, d: &DashboardSession) -> Result<()> {
        sqlx::query(
            "INSERT INTO dashboard_sessions (token_hash, who, created_at, expires_at, last_used) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(d.token_hash.as_str())
        .bind(&d.who)
        .bind(ms(d.created_at))
        .bind(ms(d.expires_at))
        .bind(ms(d.last_used))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn use_dashboard_session(
        &self,
        token_hash: &Sha256Hex,
        now: DateTime<Utc>,
        idle: chrono::TimeDelta,
    ) -> Result<Option<DashboardSession>> {
        let most = self.greatest();
        let row = sqlx::query(&format!(
            "UPDATE dashboard_sessions SET last_used = {most}(last_used, $2)
             WHERE token_hash = $1 AND expires_at > $2 AND $2 - last_used <= $3
             RETURNING token_hash, who, created_at, expires_at, last_used"
        ))
        .bind(token_hash.as_str())
        .bind(ms(now))
        .bind(idle.num_milliseconds())
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => Ok(Some(DashboardSession {
                token_hash: Sha256Hex::from_hex(r.try_get::<String, _>("token_hash")?),
                who: r.try_get("who")?,
                created_at: from_ms(r.try_get("created_at")?)?,
                expires_at: from_ms(r.try_get("expires_at")?)?,
                last_used: from_ms(r.try_get("last_used")?)?,
            })),
            None => {
                // Idle or past its end (or never existed): ended, not just hidden.
                self.end_dashboard_session(token_hash).await?;
                Ok(None)
            }
        }
    }

    async fn end_dashboard_session(&self, token_hash: &Sha256Hex) -> Result<()> {
        sqlx::query("DELETE FROM dashboard_sessions WHERE token_hash = $1")
            .bind(token_hash.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn record_signin_failure(&self, keys: &[String], now: DateTime<Utc>) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for key in keys {
            sqlx::query("INSERT INTO signin_failures (limit_key, at) VALUES ($1, $2)")
                .bind(key)
                .bind(ms(now))
                .execute(&mut *tx)
                .await?;
            // A key's failures older than an hour limit nothing; keep its rows few.
            sqlx::query("DELETE FROM signin_failures WHERE limit_key = $1 AND at < $2")
                .bind(key)
                .bind(ms(now) - SIGNIN_FAILURES_KEPT_MS)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn signin_locked_until(
        &self,
        keys: &[String],
        limit: i64,
        window: chrono::TimeDelta,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        let mut until: Option<DateTime<Utc>> = None;
        for key in keys {
            // The `limit`-th newest failure inside the window: while it is in the window, the key
            // has `limit` failures in it.
            let row = sqlx::query(
                "SELECT at FROM signin_failures WHERE limit_key = $1 AND at > $2 AND at <= $3
                 ORDER BY at DESC LIMIT 1 OFFSET $4",
            )
            .bind(key)
            .bind(ms(now) - window.num_milliseconds())
            .bind(ms(now))
            .bind((limit - 1).max(0))
            .fetch_optional(&self.pool)
            .await?;
            if let Some(r) = row {
                let ends = from_ms(r.try_get::<i64, _>("at")? + window.num_milliseconds())?;
                until = Some(until.map_or(ends, |u| u.max(ends)));
            }
        }
        Ok(until)
    }

    async fn clear_signin_failures(&self, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM signin_failures WHERE limit_key = $1")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

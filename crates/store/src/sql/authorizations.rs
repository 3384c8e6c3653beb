//! [`Authorizations`] on SQL.

use super::SqlStore;
use super::row::{from_ms, json, ms, opt_from_ms, parse_id, unjson};
use crate::Authorizations;
use crate::crypto::Place;
use crate::error::Result;
use crate::model::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

const PENDING_COLS: &str = "state_hash, provider, app_id, connection_id, redirect_uri, verifier_ct, scopes, browser_hash, created_at, expires_at, session_id, region";
const SESSION_COLS: &str = "id, token_hash, provider, connection_id, app_id, end_user, return_to, scopes, allow_account_change, created_by, created_at, expires_at, used_at, region";

#[async_trait]
impl Authorizations for SqlStore {
    async fn put_pending(&self, p: &PendingAuthorization) -> Result<()> {
        let v = match &p.pkce_verifier {
            Some(v) => Some(
                self.seal_secret(
                    &Place::new(
                        "pending_authorizations",
                        "verifier_ct",
                        p.state_hash.as_str(),
                    ),
                    v,
                )
                .await?,
            ),
            None => None,
        };
        sqlx::query(&format!("INSERT INTO pending_authorizations ({PENDING_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"))
            .bind(p.state_hash.as_str())
            .bind(p.provider.as_str())
            .bind(p.app.as_str())
            .bind(p.connection.as_str())
            .bind(&p.redirect_uri)
            .bind(v)
            .bind(json(&p.scopes)?)
            .bind(p.browser_hash.as_str())
            .bind(ms(p.created_at))
            .bind(ms(p.expires_at))
            .bind(p.session.clone())
            .bind(p.region.clone())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn consume_pending(
        &self,
        state_hash: &Sha256Hex,
        now: DateTime<Utc>,
    ) -> Result<Option<PendingAuthorization>> {
        // One statement: two racing callbacks cannot both get the row (hardening rule 1). An
        // expired row is deleted too and answered with None.
        let row = sqlx::query(&format!(
            "DELETE FROM pending_authorizations WHERE state_hash = $1 RETURNING {PENDING_COLS}"
        ))
        .bind(state_hash.as_str())
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => {
                let p = self.decoded(|| self.row_to_pending(&r)).await?;
                Ok((p.expires_at > now).then_some(p))
            }
            None => Ok(None),
        }
    }

    async fn put_connect_session(&self, c: &ConnectSession) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO connect_sessions ({SESSION_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        ))
        .bind(&c.id)
        .bind(c.token_hash.as_str())
        .bind(c.provider.as_str())
        .bind(c.connection.as_str())
        .bind(c.app.as_ref().map(|a| a.as_str().to_string()))
        .bind(c.end_user.clone())
        .bind(c.return_to.clone())
        .bind(json(&c.scopes)?)
        .bind(i64::from(c.allow_account_change))
        .bind(&c.created_by)
        .bind(ms(c.created_at))
        .bind(ms(c.expires_at))
        .bind(c.used_at.map(ms))
        .bind(c.region.clone())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn use_connect_session(
        &self,
        token_hash: &Sha256Hex,
        now: DateTime<Utc>,
    ) -> Result<SessionUse> {
        // One conditional statement: of two racing visits, one sets used_at, the other finds it
        // set (single use without a transaction).
        let row = sqlx::query(&format!(
            "UPDATE connect_sessions SET used_at = $2
             WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 RETURNING {SESSION_COLS}"
        ))
        .bind(token_hash.as_str())
        .bind(ms(now))
        .fetch_optional(&self.pool)
        .await?;
        if let Some(r) = row {
            return Ok(SessionUse::Fresh(Self::row_to_session(&r)?));
        }
        // The update missed: say why. (Never Fresh here: a session usable a moment ago that the
        // update did not take was taken by someone else.)
        Ok(match self.find_connect_session(token_hash, now).await? {
            SessionUse::Fresh(s) => SessionUse::Used(s),
            other => other,
        })
    }

    async fn find_connect_session(
        &self,
        token_hash: &Sha256Hex,
        now: DateTime<Utc>,
    ) -> Result<SessionUse> {
        let row = sqlx::query(&format!(
            "SELECT {SESSION_COLS} FROM connect_sessions WHERE token_hash = $1"
        ))
        .bind(token_hash.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row.map(|r| Self::row_to_session(&r)).transpose()? {
            Some(s) if s.used_at.is_some() => SessionUse::Used(s),
            Some(s) if s.expires_at <= now => SessionUse::Expired(s),
            Some(s) => SessionUse::Fresh(s),
            None => SessionUse::Unknown,
        })
    }

    async fn get_connect_session(&self, id: &str) -> Result<Option<ConnectSession>> {
        sqlx::query(&format!(
            "SELECT {SESSION_COLS} FROM connect_sessions WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| Self::row_to_session(&r))
        .transpose()
    }
}

impl SqlStore {
    fn row_to_pending(&self, r: &AnyRow) -> Result<PendingAuthorization> {
        let hash: String = r.try_get("state_hash")?;
        let v: Option<Vec<u8>> = r.try_get("verifier_ct")?;
        Ok(PendingAuthorization {
            pkce_verifier: v
                .map(|v| {
                    self.open_secret(
                        &Place::new("pending_authorizations", "verifier_ct", &hash),
                        &v,
                    )
                })
                .transpose()?,
            state_hash: Sha256Hex::from_hex(hash),
            provider: parse_id("provider", r.try_get("provider")?)?,
            app: parse_id("app id", r.try_get("app_id")?)?,
            connection: parse_id("connection id", r.try_get("connection_id")?)?,
            redirect_uri: r.try_get("redirect_uri")?,
            scopes: unjson("scopes", &r.try_get::<String, _>("scopes")?)?,
            browser_hash: Sha256Hex::from_hex(r.try_get::<String, _>("browser_hash")?),
            created_at: from_ms(r.try_get("created_at")?)?,
            expires_at: from_ms(r.try_get("expires_at")?)?,
            session: r.try_get("session_id")?,
            region: r.try_get("region")?,
        })
    }

    fn row_to_session(r: &AnyRow) -> Result<ConnectSession> {
        Ok(ConnectSession {
            id: r.try_get("id")?,
            token_hash: Sha256Hex::from_hex(r.try_get::<String, _>("token_hash")?),
            provider: parse_id("provider", r.try_get("provider")?)?,
            connection: parse_id("connection id", r.try_get("connection_id")?)?,
            app: r
                .try_get::<Option<String>, _>("app_id")?
                .map(|a| parse_id("app id", a))
                .transpose()?,
            end_user: r.try_get("end_user")?,
            return_to: r.try_get("return_to")?,
            scopes: unjson("scopes", &r.try_get::<String, _>("scopes")?)?,
            allow_account_change: r.try_get::<i64, _>("allow_account_change")? != 0,
            created_by: r.try_get("created_by")?,
            created_at: from_ms(r.try_get("created_at")?)?,
            expires_at: from_ms(r.try_get("expires_at")?)?,
            used_at: opt_from_ms(r.try_get("used_at")?)?,
            region: r.try_get("region")?,
        })
    }
}

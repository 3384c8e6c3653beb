//! [`Connections`] on SQL, and what a refresh shares with them: sealing a token set, and a state
//! change inside a caller's transaction.

use super::SqlStore;
use super::row::{
    from_ms, json, ms, opt_from_ms, parse_id, problems_from_json, problems_to_json, unjson,
};
use super::webhooks::enqueue;
use crate::Connections;
use crate::crypto::Place;
use crate::error::{Result, StoreError};
use crate::model::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;
use tokenwarden_core::connection::{Connection, ConnectionState, Problem};
use tokenwarden_core::id::ConnectionId;
use tokenwarden_core::token::TokenSet;

const TOKEN_COLS: &str = "access_token_ct, refresh_token_ct, token_secret_ct, token_type, scopes, issued_at, expires_at, refresh_expires_at, version";
const CONNECTION_COLS: &str = "id, provider, app_id, state, environment, api_base, account_ids, scopes, problems, created_at, updated_at, account, end_user, region";

pub(super) struct SealedTokens {
    pub(super) at: Vec<u8>,
    pub(super) rt: Option<Vec<u8>>,
    /// OAuth 1.0a token secret.
    pub(super) ts: Option<Vec<u8>>,
    pub(super) scopes: String,
}

/// [`Connections::set_state`] inside a transaction the caller commits.
pub(super) async fn set_state_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &ConnectionId,
    state: ConnectionState,
    problems: &[Problem],
    now: DateTime<Utc>,
) -> Result<Option<ConnectionState>> {
    // Touch the row first: on SQLite that takes the write lock before anything is read (a
    // read-then-write transaction could deadlock with another); on PostgreSQL it locks the
    // row, so two replicas cannot both see the old state and both announce the change.
    let touched = sqlx::query("UPDATE connections SET updated_at = $2 WHERE id = $1")
        .bind(id.as_str())
        .bind(ms(now))
        .execute(&mut **tx)
        .await?;
    if touched.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("connection {id}")));
    }
    let row = sqlx::query("SELECT state, provider FROM connections WHERE id = $1")
        .bind(id.as_str())
        .fetch_one(&mut **tx)
        .await?;
    let before: String = row.try_get("state")?;
    let provider: String = row.try_get("provider")?;
    let before: ConnectionState = before
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("connection {id} has state {before:?}")))?;
    sqlx::query("UPDATE connections SET state = $2, problems = $3 WHERE id = $1")
        .bind(id.as_str())
        .bind(state.as_str())
        .bind(problems_to_json(problems)?)
        .execute(&mut **tx)
        .await?;
    let changed = before != state;
    if changed {
        // The announcement is written with the change (hardening rule 16): both or neither.
        let body = tokenwarden_core::webhook::Envelope::state_changed(
            id.as_str(),
            &provider,
            before,
            state,
            problems,
            now,
        )
        .to_json();
        enqueue(&mut **tx, &body, now).await?;
    }
    Ok(changed.then_some(before))
}

#[async_trait]
impl Connections for SqlStore {
    async fn put_connection(&self, c: &Connection) -> Result<()> {
        sqlx::query(
            "INSERT INTO connections (id, provider, app_id, state, environment, api_base, account_ids, scopes, problems, created_at, updated_at, account, end_user, region)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
             ON CONFLICT (id) DO UPDATE SET provider = excluded.provider, app_id = excluded.app_id, state = excluded.state,
               environment = excluded.environment, api_base = excluded.api_base, account_ids = excluded.account_ids,
               scopes = excluded.scopes, problems = excluded.problems, updated_at = excluded.updated_at,
               account = excluded.account, end_user = excluded.end_user, region = excluded.region",
        )
        .bind(c.id.as_str())
        .bind(c.provider.as_str())
        .bind(c.app.as_str())
        .bind(c.state.as_str())
        .bind(c.environment.as_str())
        .bind(&c.api_base)
        .bind(json(&c.account_ids)?)
        .bind(json(&c.scopes)?)
        .bind(problems_to_json(&c.problems)?)
        .bind(ms(c.created_at))
        .bind(ms(c.updated_at))
        .bind(c.account.as_ref().map(json).transpose()?)
        .bind(c.end_user.clone())
        .bind(c.region.clone())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_connection(&self, id: &ConnectionId) -> Result<Option<Connection>> {
        sqlx::query(&format!(
            "SELECT {CONNECTION_COLS} FROM connections WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?
        .map(|r| Self::row_to_connection(&r))
        .transpose()
    }

    async fn list_connections(&self) -> Result<Vec<Connection>> {
        let rows = sqlx::query(&format!(
            "SELECT {CONNECTION_COLS} FROM connections ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::row_to_connection).collect()
    }

    async fn set_state(
        &self,
        id: &ConnectionId,
        state: ConnectionState,
        problems: &[Problem],
        now: DateTime<Utc>,
    ) -> Result<Option<ConnectionState>> {
        let mut tx = self.pool.begin().await?;
        let left = set_state_in(&mut tx, id, state, problems, now).await?;
        tx.commit().await?;
        Ok(left)
    }

    async fn delete_connection(&self, id: &ConnectionId) -> Result<bool> {
        let r = sqlx::query("DELETE FROM connections WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn set_next_probe(&self, id: &ConnectionId, at: Option<DateTime<Utc>>) -> Result<()> {
        let r = sqlx::query("UPDATE connections SET next_probe_at = $2 WHERE id = $1")
            .bind(id.as_str())
            .bind(at.map(ms))
            .execute(&self.pool)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("connection {id}")));
        }
        Ok(())
    }

    async fn due_probes(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<ConnectionId>> {
        let rows = sqlx::query(
            "SELECT id FROM connections WHERE next_probe_at IS NOT NULL AND next_probe_at <= $1 ORDER BY next_probe_at, id LIMIT $2",
        )
        .bind(ms(now))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| parse_id("connection id", r.try_get("id")?))
            .collect()
    }

    async fn set_account(
        &self,
        id: &ConnectionId,
        account: &tokenwarden_core::connection::Account,
    ) -> Result<()> {
        sqlx::query("UPDATE connections SET account = $2 WHERE id = $1")
            .bind(id.as_str())
            .bind(json(account)?)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn get_tokens(&self, conn: &ConnectionId) -> Result<Option<StoredTokens>> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLS} FROM token_sets WHERE connection_id = $1"
        ))
        .bind(conn.as_str())
        .fetch_optional(&self.pool)
        .await?;
        self.decoded(|| {
            row.as_ref()
                .map(|r| self.row_to_tokens(conn.as_str(), r))
                .transpose()
        })
        .await
    }

    async fn token_expiries(&self) -> Result<Vec<(ConnectionId, Option<DateTime<Utc>>)>> {
        sqlx::query("SELECT connection_id, expires_at FROM token_sets ORDER BY connection_id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                let at: Option<i64> = r.try_get("expires_at")?;
                Ok((
                    parse_id("connection id", r.try_get("connection_id")?)?,
                    at.map(from_ms).transpose()?,
                ))
            })
            .collect()
    }

    async fn put_initial_tokens(
        &self,
        conn: &ConnectionId,
        set: &TokenSet,
    ) -> Result<StoredTokens> {
        let s = self.seal_tokens(conn, set).await?;
        let row = sqlx::query(
            "INSERT INTO token_sets (connection_id, access_token_ct, refresh_token_ct, token_type, scopes, issued_at, expires_at,
               refresh_expires_at, token_secret_ct, version, lease_owner, lease_until)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, NULL, 0)
             ON CONFLICT (connection_id) DO UPDATE SET access_token_ct = excluded.access_token_ct,
               refresh_token_ct = excluded.refresh_token_ct, token_secret_ct = excluded.token_secret_ct, token_type = excluded.token_type, scopes = excluded.scopes,
               issued_at = excluded.issued_at, expires_at = excluded.expires_at, refresh_expires_at = excluded.refresh_expires_at,
               version = token_sets.version + 1, lease_owner = NULL, lease_until = 0
             RETURNING version",
        )
        .bind(conn.as_str())
        .bind(s.at)
        .bind(s.rt)
        .bind(set.token_type.clone())
        .bind(s.scopes)
        .bind(ms(set.issued_at))
        .bind(set.expires_at.map(ms))
        .bind(set.refresh_expires_at.map(ms))
        .bind(s.ts)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => StoreError::NotFound(format!("connection {conn}")),
            other => other,
        })?;
        Ok(StoredTokens {
            set: set.clone(),
            version: row.try_get("version")?,
        })
    }
}

impl SqlStore {
    fn row_to_connection(r: &AnyRow) -> Result<Connection> {
        let state: String = r.try_get("state")?;
        let env: String = r.try_get("environment")?;
        Ok(Connection {
            id: parse_id("connection id", r.try_get("id")?)?,
            provider: parse_id("provider", r.try_get("provider")?)?,
            app: parse_id("app id", r.try_get("app_id")?)?,
            state: state.parse().map_err(StoreError::Corrupt)?,
            environment: env.parse().map_err(StoreError::Corrupt)?,
            api_base: r.try_get("api_base")?,
            account_ids: unjson("account_ids", &r.try_get::<String, _>("account_ids")?)?,
            account: r
                .try_get::<Option<String>, _>("account")?
                .map(|a| unjson("account", &a))
                .transpose()?,
            end_user: r.try_get("end_user")?,
            region: r.try_get("region")?,
            scopes: unjson("scopes", &r.try_get::<String, _>("scopes")?)?,
            problems: problems_from_json(&r.try_get::<String, _>("problems")?)?,
            created_at: from_ms(r.try_get("created_at")?)?,
            updated_at: from_ms(r.try_get("updated_at")?)?,
        })
    }

    fn row_to_tokens(&self, conn: &str, r: &AnyRow) -> Result<StoredTokens> {
        let at: Vec<u8> = r.try_get("access_token_ct")?;
        let rt: Option<Vec<u8>> = r.try_get("refresh_token_ct")?;
        let ts: Option<Vec<u8>> = r.try_get("token_secret_ct")?;
        Ok(StoredTokens {
            set: TokenSet {
                access_token: self
                    .open_secret(&Place::new("token_sets", "access_token_ct", conn), &at)?,
                refresh_token: rt
                    .map(|rt| {
                        self.open_secret(&Place::new("token_sets", "refresh_token_ct", conn), &rt)
                    })
                    .transpose()?,
                token_type: r.try_get("token_type")?,
                scopes: unjson("scopes", &r.try_get::<String, _>("scopes")?)?,
                issued_at: from_ms(r.try_get("issued_at")?)?,
                expires_at: opt_from_ms(r.try_get("expires_at")?)?,
                refresh_expires_at: opt_from_ms(r.try_get("refresh_expires_at")?)?,
                token_secret: ts
                    .map(|ts| {
                        self.open_secret(&Place::new("token_sets", "token_secret_ct", conn), &ts)
                    })
                    .transpose()?,
            },
            version: r.try_get("version")?,
        })
    }

    pub(super) async fn seal_tokens(
        &self,
        conn: &ConnectionId,
        set: &TokenSet,
    ) -> Result<SealedTokens> {
        let at = self
            .seal_secret(
                &Place::new("token_sets", "access_token_ct", conn.as_str()),
                &set.access_token,
            )
            .await?;
        let rt = match &set.refresh_token {
            Some(rt) => Some(
                self.seal_secret(
                    &Place::new("token_sets", "refresh_token_ct", conn.as_str()),
                    rt,
                )
                .await?,
            ),
            None => None,
        };
        let ts = match &set.token_secret {
            Some(ts) => Some(
                self.seal_secret(
                    &Place::new("token_sets", "token_secret_ct", conn.as_str()),
                    ts,
                )
                .await?,
            ),
            None => None,
        };
        Ok(SealedTokens {
            at,
            rt,
            ts,
            scopes: json(&set.scopes)?,
        })
    }
}

//! [`Refreshes`] on SQL: the lease is a conditional UPDATE on the token row (see the crate's
//! documentation).

use super::SqlStore;
use super::connections::set_state_in;
use super::row::{from_ms, ms, opt_from_ms, parse_id, ttl_ms};
use crate::Refreshes;
use crate::error::{Result, StoreError};
use crate::model::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use std::time::Duration;
use tokenwarden_core::connection::{ConnectionState, Problem};
use tokenwarden_core::id::{ConnectionId, ProviderId};
use tokenwarden_core::policy::CrowdPlan;
use tokenwarden_core::token::TokenSet;

/// Which connections a scheduler claim takes.
enum Claim<'a> {
    /// Every provider's connections due at this time (`active` or `degraded`).
    Due(DateTime<Utc>),
    /// One provider's `active` connections with the earliest deadlines no later than the
    /// second, due or not, whose token has lived a quarter of its life at the third.
    Earliest(&'a ProviderId, DateTime<Utc>, DateTime<Utc>),
}

#[async_trait]
impl Refreshes for SqlStore {
    async fn set_next_refresh(&self, id: &ConnectionId, at: Option<DateTime<Utc>>) -> Result<()> {
        let r = sqlx::query("UPDATE connections SET next_refresh_at = $2 WHERE id = $1")
            .bind(id.as_str())
            .bind(at.map(ms))
            .execute(&self.pool)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("connection {id}")));
        }
        Ok(())
    }

    async fn next_refresh_deadline(&self) -> Result<Option<DateTime<Utc>>> {
        let r = sqlx::query(
            "SELECT MIN(next_refresh_at) AS m FROM connections WHERE next_refresh_at IS NOT NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        opt_from_ms(r.try_get("m")?)
    }

    async fn acquire_refresh_lease(
        &self,
        conn: &ConnectionId,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        let now = self.now_sql();
        let row = sqlx::query(&format!(
            "UPDATE token_sets SET lease_owner = $2, lease_until = {now} + $3
             WHERE connection_id = $1 AND (lease_until <= {now} OR lease_owner IS NULL OR lease_owner = $2)
             RETURNING version, lease_until, refresh_sent_by, refresh_sent_at"
        ))
        .bind(conn.as_str())
        .bind(owner)
        .bind(ttl_ms(ttl))
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => {
                let until: i64 = r.try_get("lease_until")?;
                let sent_by: Option<String> = r.try_get("refresh_sent_by")?;
                let sent_at: Option<i64> = r.try_get("refresh_sent_at")?;
                let unresolved = match (sent_by, sent_at) {
                    (Some(by), Some(at)) => Some(SentRefresh {
                        by,
                        at: from_ms(at)?,
                    }),
                    _ => None,
                };
                Ok(Some(Lease {
                    connection: conn.clone(),
                    owner: owner.to_string(),
                    version: r.try_get("version")?,
                    until: from_ms(until)?,
                    taken_at: from_ms(until.saturating_sub(ttl_ms(ttl)))?,
                    unresolved,
                }))
            }
            None => {
                let exists =
                    sqlx::query("SELECT 1 AS one FROM token_sets WHERE connection_id = $1")
                        .bind(conn.as_str())
                        .fetch_optional(&self.pool)
                        .await?;
                match exists {
                    Some(_) => Ok(None),
                    None => Err(StoreError::NotFound(format!(
                        "token set of connection {conn}"
                    ))),
                }
            }
        }
    }

    async fn commit_refresh(
        &self,
        lease: &Lease,
        new: &TokenSet,
        next_refresh: Option<DateTime<Utc>>,
    ) -> Result<StoredTokens> {
        let s = self.seal_tokens(&lease.connection, new).await?;
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            // The token version is the fence: an answer from the platform is stored unless a
            // newer token was stored meanwhile, even if this holder's lease lapsed (a paused
            // process) and another took it over. With rotating refresh tokens the platform
            // answers only one of them; throwing that answer away would lose the grant.
            "UPDATE token_sets SET access_token_ct = $3, refresh_token_ct = $4, token_type = $5, scopes = $6, issued_at = $7,
               expires_at = $8, refresh_expires_at = $9, token_secret_ct = $10, version = version + 1, lease_owner = NULL, lease_until = 0,
               refresh_sent_by = NULL, refresh_sent_at = NULL
             WHERE connection_id = $1 AND version = $2
             RETURNING version",
        )
        .bind(lease.connection.as_str())
        .bind(lease.version)
        .bind(s.at)
        .bind(s.rt)
        .bind(new.token_type.clone())
        .bind(s.scopes)
        .bind(ms(new.issued_at))
        .bind(new.expires_at.map(ms))
        .bind(new.refresh_expires_at.map(ms))
        .bind(s.ts)
        .fetch_optional(&mut *tx)
        .await?;
        match row {
            Some(r) => {
                let version = r.try_get("version")?;
                sqlx::query("UPDATE connections SET next_refresh_at = $2 WHERE id = $1")
                    .bind(lease.connection.as_str())
                    .bind(next_refresh.map(ms))
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(StoredTokens {
                    set: new.clone(),
                    version,
                })
            }
            None => Err(StoreError::Fenced {
                connection: lease.connection.to_string(),
                version: lease.version,
            }),
        }
    }

    async fn record_refresh_failure(
        &self,
        lease: &Lease,
        state: ConnectionState,
        problems: &[Problem],
        next_refresh: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let db_now = self.now_sql();
        let mut tx = self.pool.begin().await?;
        // The token row first (the write lock on SQLite, the row lock on PostgreSQL): a commit of
        // a newer version cannot slip in between this check and the state written below.
        let released = sqlx::query(&format!(
            "UPDATE token_sets SET lease_owner = NULL, lease_until = 0, refresh_sent_by = NULL, refresh_sent_at = NULL
             WHERE connection_id = $1 AND version = $2
               AND (lease_owner IS NULL OR lease_owner = $3 OR lease_until <= {db_now})"
        ))
        .bind(lease.connection.as_str())
        .bind(lease.version)
        .bind(&lease.owner)
        .execute(&mut *tx)
        .await?;
        if released.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        set_state_in(&mut tx, &lease.connection, state, problems, now).await?;
        sqlx::query("UPDATE connections SET next_refresh_at = $2 WHERE id = $1")
            .bind(lease.connection.as_str())
            .bind(next_refresh.map(ms))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn mark_refresh_sent(&self, lease: &Lease) -> Result<bool> {
        let now = self.now_sql();
        let marked = sqlx::query(&format!(
            "UPDATE token_sets SET refresh_sent_by = $2, refresh_sent_at = {now}
             WHERE connection_id = $1 AND lease_owner = $2 AND version = $3 AND lease_until > {now}"
        ))
        .bind(lease.connection.as_str())
        .bind(&lease.owner)
        .bind(lease.version)
        .execute(&self.pool)
        .await?;
        Ok(marked.rows_affected() == 1)
    }

    async fn release_lease(&self, lease: &Lease) -> Result<()> {
        sqlx::query(
            // The holder gives up a lease it knows the outcome of: a refresh it sent is settled.
            // (Only its own: one that waited for another holder's answer leaves that mark.)
            "UPDATE token_sets SET lease_owner = NULL, lease_until = 0,
               refresh_sent_at = CASE WHEN refresh_sent_by = $2 THEN NULL ELSE refresh_sent_at END,
               refresh_sent_by = CASE WHEN refresh_sent_by = $2 THEN NULL ELSE refresh_sent_by END
             WHERE connection_id = $1 AND lease_owner = $2 AND version = $3",
        )
        .bind(lease.connection.as_str())
        .bind(&lease.owner)
        .bind(lease.version)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn claim_due_refreshes(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        owner: &str,
        ttl: Duration,
    ) -> Result<Vec<(ConnectionId, i64)>> {
        self.claim_refreshes(Claim::Due(now), limit, owner, ttl)
            .await
    }

    async fn refresh_deadlines(
        &self,
        provider: &ProviderId,
        limit: i64,
    ) -> Result<Vec<DateTime<Utc>>> {
        let rows = sqlx::query(
            "SELECT next_refresh_at FROM connections
             WHERE provider = $1 AND next_refresh_at IS NOT NULL AND state = 'active'
             ORDER BY next_refresh_at LIMIT $2",
        )
        .bind(provider.as_str())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| from_ms(r.try_get("next_refresh_at")?))
            .collect()
    }

    async fn crowd_plan(
        &self,
        provider: &ProviderId,
        every: Duration,
        limit: i64,
    ) -> Result<Option<CrowdPlan>> {
        // The k-th deadline (from 0, earliest first) must start k steps earlier; the crowd starts
        // at the earliest of those, and the latest deadline giving it is the crowd's end (ties go
        // to the later deadline, as in policy::crowd_plan).
        let step = i64::try_from(every.as_micros()).unwrap_or(i64::MAX / 4);
        let row = sqlx::query(
            "SELECT until, latest FROM (
               SELECT next_refresh_at AS until,
                      next_refresh_at * 1000 - (ROW_NUMBER() OVER (ORDER BY next_refresh_at) - 1) * $2 AS latest
               FROM (SELECT next_refresh_at FROM connections
                     WHERE provider = $1 AND next_refresh_at IS NOT NULL AND state = 'active'
                     ORDER BY next_refresh_at LIMIT $3) AS upcoming
             ) AS plan
             ORDER BY latest ASC, until DESC LIMIT 1",
        )
        .bind(provider.as_str())
        .bind(step)
        .bind(limit)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let latest: i64 = r.try_get("latest")?;
        Ok(Some(CrowdPlan {
            start: DateTime::from_timestamp_micros(latest).unwrap_or(DateTime::<Utc>::MIN_UTC),
            until: from_ms(r.try_get("until")?)?,
        }))
    }

    async fn claim_earliest_refreshes(
        &self,
        provider: &ProviderId,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: i64,
        owner: &str,
        ttl: Duration,
    ) -> Result<Vec<(ConnectionId, i64)>> {
        self.claim_refreshes(Claim::Earliest(provider, until, now), limit, owner, ttl)
            .await
    }
}

impl SqlStore {
    /// Takes the leases of up to `limit` connections that `which` selects, earliest deadline
    /// first, skipping rows another owner holds (`FOR UPDATE … SKIP LOCKED` on PostgreSQL).
    async fn claim_refreshes(
        &self,
        which: Claim<'_>,
        limit: i64,
        owner: &str,
        ttl: Duration,
    ) -> Result<Vec<(ConnectionId, i64)>> {
        let db_now = self.now_sql();
        let of = match self.backend {
            Backend::Postgres => "FOR UPDATE OF t SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let filter = match which {
            Claim::Due(_) => "c.next_refresh_at <= $3 AND c.state IN ('active', 'degraded')",
            Claim::Earliest(..) => {
                "c.provider = $3 AND c.state = 'active' AND c.next_refresh_at <= $5
                 AND (t.expires_at IS NULL OR ($6 - t.issued_at) * 4 >= t.expires_at - t.issued_at)"
            }
        };
        let sql = format!(
            "UPDATE token_sets SET lease_owner = $1, lease_until = {db_now} + $2
             WHERE lease_until <= {db_now} AND connection_id IN (
               SELECT t.connection_id FROM token_sets t JOIN connections c ON c.id = t.connection_id
               WHERE c.next_refresh_at IS NOT NULL AND {filter} AND t.lease_until <= {db_now}
               ORDER BY c.next_refresh_at, t.connection_id LIMIT $4 {of})
             RETURNING connection_id, version"
        );
        let q = sqlx::query(&sql).bind(owner).bind(ttl_ms(ttl));
        let q = match which {
            Claim::Due(now) => q.bind(ms(now)).bind(limit),
            Claim::Earliest(provider, until, now) => q
                .bind(provider.as_str())
                .bind(limit)
                .bind(ms(until))
                .bind(ms(now)),
        };
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok((
                    parse_id("connection id", r.try_get("connection_id")?)?,
                    r.try_get("version")?,
                ))
            })
            .collect()
    }
}

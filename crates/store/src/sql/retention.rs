//! [`Retention`] on SQL: deletes in bounded batches.

use super::SqlStore;
use super::dashboard_sessions::SIGNIN_FAILURES_KEPT_MS;
use super::row::ms;
use crate::Retention;
use crate::error::Result;
use crate::model::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// A rate lane unused this long is forgotten (it starts again at the full rate).
const RATE_LANE_IDLE_MS: i64 = 3_600_000;
/// Rows deleted per statement when a caller does not choose: small enough that a statement is
/// over in milliseconds, so refreshes writing beside it are not held up.
const PRUNE_BATCH: i64 = 5_000;

#[async_trait]
impl Retention for SqlStore {
    async fn prune_events(&self, before: DateTime<Utc>, batch: i64) -> Result<u64> {
        let skip = self.skip_locked();
        self.delete_in_batches(
            &format!(
                "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE at < $1 LIMIT $2 {skip})"
            ),
            ms(before),
            batch,
        )
        .await
    }

    async fn prune_deliveries(&self, before: DateTime<Utc>, batch: i64) -> Result<u64> {
        // The status is checked again by the DELETE itself, so a row is only ever deleted in a
        // finished state (finished states are final, but the outbox is not to be trusted to it).
        let skip = self.skip_locked();
        self.delete_in_batches(
            &format!(
                "DELETE FROM webhook_deliveries WHERE status IN ('delivered', 'dead') AND id IN (
                   SELECT id FROM webhook_deliveries
                   WHERE status IN ('delivered', 'dead') AND created_at < $1 LIMIT $2 {skip})"
            ),
            ms(before),
            batch,
        )
        .await
    }

    async fn purge_expired_pending(&self, now: DateTime<Utc>) -> Result<u64> {
        // Anyone can start an authorization, so a flood of abandoned ones is deleted in bounded
        // statements too.
        let skip = self.skip_locked();
        let pending = self
            .delete_in_batches(
                &format!(
                    "DELETE FROM pending_authorizations WHERE expires_at <= $1 AND state_hash IN (
                   SELECT state_hash FROM pending_authorizations WHERE expires_at <= $1 LIMIT $2 {skip})"
                ),
                ms(now),
                PRUNE_BATCH,
            )
            .await?;
        let sessions = self
            .delete_in_batches(
                &format!(
                    "DELETE FROM connect_sessions WHERE expires_at <= $1 AND id IN (
                   SELECT id FROM connect_sessions WHERE expires_at <= $1 LIMIT $2 {skip})"
                ),
                ms(now - chrono::TimeDelta::days(1)),
                PRUNE_BATCH,
            )
            .await?;
        Ok(pending + sessions)
    }

    async fn purge_replica_state(
        &self,
        now: DateTime<Utc>,
        alerts_before: DateTime<Utc>,
    ) -> Result<u64> {
        let db_now = self.now_sql();
        let mut gone = 0;
        gone += sqlx::query(&format!(
            "DELETE FROM rate_lanes WHERE next_free < {db_now} - $1 AND hold_until < {db_now} - $1"
        ))
        .bind(RATE_LANE_IDLE_MS)
        .execute(&self.pool)
        .await?
        .rows_affected();
        gone += sqlx::query("DELETE FROM dashboard_sessions WHERE expires_at <= $1")
            .bind(ms(now))
            .execute(&self.pool)
            .await?
            .rows_affected();
        gone += sqlx::query("DELETE FROM signin_failures WHERE at < $1")
            .bind(ms(now) - SIGNIN_FAILURES_KEPT_MS)
            .execute(&self.pool)
            .await?
            .rows_affected();
        gone += sqlx::query("DELETE FROM alerts_sent WHERE sent_at < $1")
            .bind(ms(alerts_before))
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(gone)
    }
}

impl SqlStore {
    /// Runs `delete` (a DELETE whose rows are picked by a subquery with `LIMIT $2`, with the
    /// cutoff as `$1`) until a round deletes fewer than `batch` rows; how many in all. Each round
    /// is its own statement and transaction, so stopping between or during rounds loses nothing
    /// (SQLite has no `DELETE … LIMIT` unless built with it, hence the subquery).
    async fn delete_in_batches(&self, delete: &str, cutoff: i64, batch: i64) -> Result<u64> {
        let batch = batch.max(1);
        let mut total = 0;
        loop {
            let round = std::time::Instant::now();
            let n = sqlx::query(delete)
                .bind(cutoff)
                .bind(batch)
                .execute(&self.pool)
                .await?
                .rows_affected();
            total += n;
            if n < batch.unsigned_abs() {
                return Ok(total);
            }
            match self.backend {
                // SQLite has one writer and no queue: a write that found the lock taken sleeps
                // and retries (busy_timeout, in steps of up to 100 ms), so a lock released and
                // taken again at once would starve it until the whole prune is over (measured:
                // bench/src/bin/retention.rs). Resting as long as the round took lets every
                // waiting write in; the prune takes twice as long, a refresh at most one round.
                Backend::Sqlite => {
                    tokio::time::sleep(round.elapsed().min(Duration::from_secs(1))).await;
                }
                // Row locks: writes of new rows never wait for these.
                Backend::Postgres => tokio::task::yield_now().await,
            }
        }
    }
}

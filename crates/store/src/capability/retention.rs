//! Bounded history.

use crate::{Delegate, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// Bounded history: deletes rows that no longer matter, in bounded batches (the daemon's retention
/// task calls these hourly).
#[async_trait]
pub trait Retention: Send + Sync {
    /// Deletes the events that happened before `before`; how many. At most `batch` rows go per
    /// statement, repeated until a statement finds fewer, so no statement holds a long lock on
    /// a busy table: on SQLite the prune rests between rounds so that waiting writes get the
    /// lock; on PostgreSQL, rows another replica is deleting are skipped. Ids are never reused,
    /// so an `after` cursor into the events stays valid.
    async fn prune_events(&self, before: DateTime<Utc>, batch: i64) -> Result<u64, StoreError>;
    /// Deletes finished webhook deliveries (`delivered` or `dead`) enqueued before `before`, in
    /// batches like [`Retention::prune_events`]; how many. A `pending` delivery, retrying or not
    /// yet tried, stays whatever its age: the outbox must not lose it.
    async fn prune_deliveries(&self, before: DateTime<Utc>, batch: i64) -> Result<u64, StoreError>;
    /// Deletes expired pending authorizations, in batches like [`Retention::prune_events`], and
    /// connect sessions a day past their expiry (kept that long so a late visit still learns the
    /// link was used or expired); how many.
    async fn purge_expired_pending(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;
    /// Deletes shared state that no longer limits or remembers anything: rate lanes idle for an
    /// hour (database clock), dashboard sessions past their end and sign-in failures older than
    /// an hour at `now`, and alert records older than `alerts_before`. How many rows went.
    async fn purge_replica_state(
        &self,
        now: DateTime<Utc>,
        alerts_before: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
}

/// Every call goes to the [`Delegate`]'s store, unchanged.
#[async_trait]
impl<T: Delegate<dyn Retention> + Send + Sync> Retention for T {
    async fn prune_events(&self, before: DateTime<Utc>, batch: i64) -> Result<u64, StoreError> {
        self.delegate().prune_events(before, batch).await
    }

    async fn prune_deliveries(&self, before: DateTime<Utc>, batch: i64) -> Result<u64, StoreError> {
        self.delegate().prune_deliveries(before, batch).await
    }

    async fn purge_expired_pending(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.delegate().purge_expired_pending(now).await
    }

    async fn purge_replica_state(
        &self,
        now: DateTime<Utc>,
        alerts_before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.delegate()
            .purge_replica_state(now, alerts_before)
            .await
    }
}

//! Dashboard sessions and sign-in failures.

use crate::{DashboardSession, Delegate, Sha256Hex, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

/// Signed-in dashboard browsers, and the failed sign-ins that lock guessing out.
#[async_trait]
pub trait DashboardSessions: Send + Sync {
    /// Stores a new dashboard session.
    async fn put_dashboard_session(&self, session: &DashboardSession) -> Result<(), StoreError>;
    /// The session whose cookie hashes to `token_hash`, if it is live at `now` (before its
    /// absolute end and used within `idle`); counts as a use. A session found idle or past its
    /// end is deleted.
    async fn use_dashboard_session(
        &self,
        token_hash: &Sha256Hex,
        now: DateTime<Utc>,
        idle: TimeDelta,
    ) -> Result<Option<DashboardSession>, StoreError>;
    /// Ends a session.
    async fn end_dashboard_session(&self, token_hash: &Sha256Hex) -> Result<(), StoreError>;
    /// Records one failed sign-in under each limit key.
    async fn record_signin_failure(
        &self,
        keys: &[String],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Until when sign-in is refused for any of `keys`: `limit` failures within `window` before
    /// `now` lock a key until the oldest of those `limit` failures is `window` old.
    async fn signin_locked_until(
        &self,
        keys: &[String],
        limit: i64,
        window: TimeDelta,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Forgets a key's failures (its client signed in).
    async fn clear_signin_failures(&self, key: &str) -> Result<(), StoreError>;
}

/// Every call goes to the [`Delegate`]'s store, unchanged.
#[async_trait]
impl<T: Delegate<dyn DashboardSessions> + Send + Sync> DashboardSessions for T {
    async fn put_dashboard_session(&self, session: &DashboardSession) -> Result<(), StoreError> {
        self.delegate().put_dashboard_session(session).await
    }

    async fn use_dashboard_session(
        &self,
        token_hash: &Sha256Hex,
        now: DateTime<Utc>,
        idle: TimeDelta,
    ) -> Result<Option<DashboardSession>, StoreError> {
        self.delegate()
            .use_dashboard_session(token_hash, now, idle)
            .await
    }

    async fn end_dashboard_session(&self, token_hash: &Sha256Hex) -> Result<(), StoreError> {
        self.delegate().end_dashboard_session(token_hash).await
    }

    async fn record_signin_failure(
        &self,
        keys: &[String],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.delegate().record_signin_failure(keys, now).await
    }

    async fn signin_locked_until(
        &self,
        keys: &[String],
        limit: i64,
        window: TimeDelta,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.delegate()
            .signin_locked_until(keys, limit, window, now)
            .await
    }

    async fn clear_signin_failures(&self, key: &str) -> Result<(), StoreError> {
        self.delegate().clear_signin_failures(key).await
    }
}

//! State replicas share through the database.

use crate::{Backend, BreakerRecord, Delegate, RateFeedback, RateLane, RateSlot, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::time::Duration;
use tokenwarden_core::breaker::BreakerState;

/// What replicas share through the database so that they act as one (issue 14 item 4): rate
/// lanes, singleton job leases, alert claims and circuit breakers, timed on the database's clock.
#[async_trait]
pub trait Coordination: Send + Sync {
    /// Which backend this is (replicas share a database, and so these records, only on
    /// PostgreSQL).
    fn backend(&self) -> Backend;
    /// Books one slot on every lane at once, on the database's clock, so that all replicas
    /// together keep each lane's spacing: the earliest time no sooner than `after` from now at
    /// which every lane is free and none is held, provided it is no later than `within` from now
    /// ([`RateSlot::Refused`] otherwise, having booked nothing). Each lane's next slot moves to
    /// the booked one plus its interval divided by its current factor. A lane is created at its
    /// full rate the first time it is named, and its interval follows the latest caller's (a
    /// reloaded definition takes effect at once).
    async fn take_rate_slot(
        &self,
        lanes: &[RateLane],
        after: Duration,
        within: Duration,
    ) -> Result<RateSlot, StoreError>;
    /// Applies the platform's answer to shared lanes (unknown lanes are ignored).
    async fn rate_feedback(
        &self,
        lanes: &[String],
        feedback: RateFeedback,
    ) -> Result<(), StoreError>;
    /// Holds `lanes` for `hold` from now (database clock), creating any not booked yet as a
    /// lane with no spacing of its own: a throttle's pause on a lane without a published limit
    /// (an app's quota, a connection's own lane), for every replica to follow
    /// ([`Coordination::rate_holds`]). A longer hold already there is kept.
    async fn hold_rate_lanes(&self, lanes: &[String], hold: Duration) -> Result<(), StoreError>;
    /// Every lane held now, with how long it is still held (database clock): what a replica
    /// reads every second or so to pause the calls another replica's throttle says must wait.
    async fn rate_holds(&self) -> Result<Vec<(String, Duration)>, StoreError>;
    /// Takes or renews the lease on singleton work `name` for `ttl` (database clock): true when
    /// `holder` now holds it, false while another holder's lease is unexpired.
    async fn take_job_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError>;
    /// Gives the lease up, if `holder` holds it, so another replica takes over at once.
    async fn release_job_lease(&self, name: &str, holder: &str) -> Result<(), StoreError>;
    /// Claims the right to send the alert `key` (a condition and its episode): true for the
    /// first claimant only, whichever replica and however often it restarted.
    async fn claim_alert(
        &self,
        key: &str,
        holder: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Gives a claim back (the alert could not be sent), so a later pass may send it.
    async fn unclaim_alert(&self, key: &str) -> Result<(), StoreError>;
    /// A circuit breaker (`tokenwarden_core::breaker`) and the database's clock reading, to
    /// decide on with one clock across replicas. A breaker never used is closed at version 0.
    async fn breaker(&self, name: &str) -> Result<(BreakerRecord, DateTime<Utc>), StoreError>;
    /// Stores a breaker's next state if it is still at `expected_version`; true if it was.
    async fn put_breaker(
        &self,
        name: &str,
        expected_version: i64,
        state: &BreakerState,
    ) -> Result<bool, StoreError>;
}

/// Every call goes to the [`Delegate`]'s store, unchanged.
#[async_trait]
impl<T: Delegate<dyn Coordination> + Send + Sync> Coordination for T {
    fn backend(&self) -> Backend {
        self.delegate().backend()
    }

    async fn take_rate_slot(
        &self,
        lanes: &[RateLane],
        after: Duration,
        within: Duration,
    ) -> Result<RateSlot, StoreError> {
        self.delegate().take_rate_slot(lanes, after, within).await
    }

    async fn rate_feedback(
        &self,
        lanes: &[String],
        feedback: RateFeedback,
    ) -> Result<(), StoreError> {
        self.delegate().rate_feedback(lanes, feedback).await
    }

    async fn hold_rate_lanes(&self, lanes: &[String], hold: Duration) -> Result<(), StoreError> {
        self.delegate().hold_rate_lanes(lanes, hold).await
    }

    async fn rate_holds(&self) -> Result<Vec<(String, Duration)>, StoreError> {
        self.delegate().rate_holds().await
    }

    async fn take_job_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.delegate().take_job_lease(name, holder, ttl).await
    }

    async fn release_job_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.delegate().release_job_lease(name, holder).await
    }

    async fn claim_alert(
        &self,
        key: &str,
        holder: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.delegate().claim_alert(key, holder, now).await
    }

    async fn unclaim_alert(&self, key: &str) -> Result<(), StoreError> {
        self.delegate().unclaim_alert(key).await
    }

    async fn breaker(&self, name: &str) -> Result<(BreakerRecord, DateTime<Utc>), StoreError> {
        self.delegate().breaker(name).await
    }

    async fn put_breaker(
        &self,
        name: &str,
        expected_version: i64,
        state: &BreakerState,
    ) -> Result<bool, StoreError> {
        self.delegate()
            .put_breaker(name, expected_version, state)
            .await
    }
}

//! The refresh protocol's side in the store: deadlines, the fenced lease, the commit, the claims.

use crate::{Lease, StoreError, StoredTokens};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::time::Duration;
use tokenwarden_core::connection::{ConnectionState, Problem};
use tokenwarden_core::id::{ConnectionId, ProviderId};
use tokenwarden_core::policy::CrowdPlan;
use tokenwarden_core::token::TokenSet;

/// When each connection is next refreshed, and the refresh lease that makes a refresh happen once
/// (DESIGN "Refresh, exactly once"; see the crate's documentation): taking it, marking the call
/// sent, committing or recording the failure, giving it up, and the scheduler's claims and crowd
/// plans.
#[async_trait]
pub trait Refreshes: Send + Sync {
    /// When the scheduler should next refresh it (`None`: not scheduled).
    async fn set_next_refresh(
        &self,
        id: &ConnectionId,
        at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError>;
    /// The earliest scheduled refresh, so the scheduler can sleep until then.
    async fn next_refresh_deadline(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Takes the refresh lease unless another owner holds an unexpired one (`None`). Taking it
    /// again by the same owner succeeds (so a lease claimed by [`Refreshes::claim_due_refreshes`]
    /// can be turned into a [`Lease`]). `NotFound` if the connection has no token set.
    ///
    /// A caller refreshing because the token it used failed compares `lease.version` with the
    /// version of that token: if it moved, someone else refreshed already; release the lease and
    /// use the stored token (so a burst of 401s causes one refresh).
    async fn acquire_refresh_lease(
        &self,
        conn: &ConnectionId,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError>;
    /// Writes the refreshed set if no newer token was stored since the lease was taken (the
    /// version is unchanged), bumps the version, clears the lease and sets the connection's next
    /// refresh deadline to `next_refresh`, in one transaction, durably. Otherwise `Fenced`, and
    /// nothing is written. The version, not the lease's owner, is the fence: a holder whose lease
    /// lapsed while it waited for the platform's answer (a paused process) still stores that
    /// answer when nobody stored a newer token, because with rotating refresh tokens the platform
    /// gives only one answer and losing it loses the grant.
    ///
    /// The deadline moves with the token: were it written after the lease is cleared, the old,
    /// already passed deadline could be claimed in between and the new token refreshed at once.
    async fn commit_refresh(
        &self,
        lease: &Lease,
        new: &TokenSet,
        next_refresh: Option<DateTime<Utc>>,
    ) -> Result<StoredTokens, StoreError>;
    /// Records a failed refresh against the token version it tried to replace: if the token set
    /// is still at `lease.version` and no other owner holds a live lease, gives the lease up and
    /// sets the connection's state, problems and next refresh deadline in one transaction (with
    /// the `connection.state_changed` delivery when the state changes, as
    /// [`Connections::set_state`](crate::Connections::set_state)). Returns `false`, having
    /// written nothing, when the version moved (another actor refreshed meanwhile: its success
    /// stands) or another owner holds the lease.
    async fn record_refresh_failure(
        &self,
        lease: &Lease,
        state: ConnectionState,
        problems: &[Problem],
        next_refresh: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Records, durably and before the call, that `lease`'s holder is sending a refresh of the
    /// lease's token version (by the database's clock). The next holder of a lapsed lease sees it
    /// in [`Lease::unresolved`] until [`Refreshes::commit_refresh`] or
    /// [`Refreshes::record_refresh_failure`] settles that version. `false`, writing nothing, when
    /// the holder no longer holds the lease at that version (it lapsed and was taken, or a newer
    /// token was stored): then it must not send.
    async fn mark_refresh_sent(&self, lease: &Lease) -> Result<bool, StoreError>;
    /// Gives the lease up without writing (the refresh failed); keeps the token set.
    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError>;
    /// Claims up to `limit` connections whose refresh is due at `now`, taking their leases for
    /// `owner` (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so replicas never claim the same row).
    /// Each comes with the token version it was claimed at: refresh only that version (a caller of
    /// the token API on the same replica may have refreshed it since).
    async fn claim_due_refreshes(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        owner: &str,
        ttl: Duration,
    ) -> Result<Vec<(ConnectionId, i64)>, StoreError>;
    /// The refresh deadlines of `provider`'s `active` connections, earliest first, at most
    /// `limit`: how the scheduler sees a crowd coming. (A `degraded` connection's deadline is a
    /// backoff retry, not a token's end; counting those would pull healthy connections forward
    /// during an outage.)
    async fn refresh_deadlines(
        &self,
        provider: &ProviderId,
        limit: i64,
    ) -> Result<Vec<DateTime<Utc>>, StoreError>;
    /// `tokenwarden_core::policy::crowd_plan` over the deadlines [`Refreshes::refresh_deadlines`]
    /// would return (`limit` of them), one refresh every `every`, computed in the database: the
    /// scheduler learns when a crowd must start without reading a row per connection. `every` is
    /// counted in whole microseconds.
    async fn crowd_plan(
        &self,
        provider: &ProviderId,
        every: Duration,
        limit: i64,
    ) -> Result<Option<CrowdPlan>, StoreError>;
    /// Claims up to `limit` of `provider`'s `active` connections with the earliest refresh
    /// deadlines no later than `until`, due or not, taking their leases like
    /// [`Refreshes::claim_due_refreshes`]: a crowd is refreshed ahead of its deadlines. (`degraded`
    /// ones wait for their backoff; a connection whose deadline is past the crowd's, such as one
    /// refreshed a moment ago, waits for its own.) A token that has not lived a quarter of its
    /// life at `now` is never taken early: when the crowd is larger than the pace can ever
    /// catch up with, renewing young tokens would only spend the platform's budget twice.
    async fn claim_earliest_refreshes(
        &self,
        provider: &ProviderId,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: i64,
        owner: &str,
        ttl: Duration,
    ) -> Result<Vec<(ConnectionId, i64)>, StoreError>;
}

//! Storage and secrets for tokenwarden: one [`Store`] trait, SQLite and PostgreSQL behind it.
//!
//! - [`open`] picks the backend by URL scheme, applies the migrations under
//!   `migrations/{sqlite,postgres}` and verifies the keyring against the database.
//! - [`Store`]: the trait the daemon holds as `Arc<dyn Store>`; [`sql`] implements it for both
//!   backends with one set of SQL statements (sqlx `Any`), differing only in the clock expression
//!   and `FOR UPDATE SKIP LOCKED`.
//! - [`crypto`]: the [`Keyring`] and AES-256-GCM encryption at rest bound to table, column, row and
//!   key id (hardening rule 14).
//! - [`model`]: the records (apps, leases, pending authorizations, events, API keys, webhooks).
//! - [`error`]: [`StoreError`], by meaning.
//!
//! History is bounded: [`Store::prune_events`], [`Store::prune_deliveries`] and
//! [`Store::purge_expired_pending`] delete old rows in bounded batches (the daemon's retention
//! task calls them hourly).
//!
//! Times are stored as BIGINT **milliseconds** since the Unix epoch, UTC.
//!
//! The refresh lease (DESIGN "Refresh, exactly once"; hardening rules 4, 13, 15): a lease is a
//! conditional UPDATE on the token row that sets `lease_owner`/`lease_until` when no unexpired lease
//! is held; the commit is one UPDATE that succeeds only while `lease_owner` and `version` are what
//! the lease saw, and bumps `version`. Lease times are compared on the database's clock (PostgreSQL
//! `clock_timestamp()`, SQLite's reading of the one host's clock), never on a replica's.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod crypto;
pub mod error;
pub mod model;
pub mod sql;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use tokenwarden_core::connection::{Connection, ConnectionState, Problem};
use tokenwarden_core::id::{AppId, ConnectionId, ProviderId};
use tokenwarden_core::policy::CrowdPlan;
use tokenwarden_core::secret::Secret;
use tokenwarden_core::token::TokenSet;

pub use crypto::{KeyLoader, KeySource, Keyring};
pub use error::StoreError;
pub use model::*;

/// Everything the daemon keeps. Object safe; every method is one short statement or a few, so a
/// pooled connection is never held across a call to a platform.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Which backend this is.
    fn backend(&self) -> Backend;

    // ---- provider apps ----
    /// Inserts or replaces an app (the client secret is encrypted).
    async fn put_app(&self, app: &App) -> Result<(), StoreError>;
    /// One app.
    async fn get_app(&self, provider: &ProviderId, app: &AppId) -> Result<Option<App>, StoreError>;
    /// Apps, of one provider or all.
    async fn list_apps(&self, provider: Option<&ProviderId>) -> Result<Vec<App>, StoreError>;
    /// Deletes an app; true if it existed.
    async fn delete_app(&self, provider: &ProviderId, app: &AppId) -> Result<bool, StoreError>;
    /// Raises (or refreshes the text of) an app-level problem (hardening rule 5).
    async fn raise_app_problem(
        &self,
        provider: &ProviderId,
        app: &AppId,
        problem: &Problem,
    ) -> Result<(), StoreError>;
    /// Clears an app-level problem by code; true if it was open.
    async fn clear_app_problem(
        &self,
        provider: &ProviderId,
        app: &AppId,
        code: &str,
    ) -> Result<bool, StoreError>;
    /// Open app-level problems.
    async fn app_problems(
        &self,
        provider: &ProviderId,
        app: &AppId,
    ) -> Result<Vec<Problem>, StoreError>;

    // ---- connections ----
    /// Inserts or replaces a connection (keeps its schedule and tokens).
    async fn put_connection(&self, conn: &Connection) -> Result<(), StoreError>;
    /// One connection.
    async fn get_connection(&self, id: &ConnectionId) -> Result<Option<Connection>, StoreError>;
    /// All connections, by id.
    async fn list_connections(&self) -> Result<Vec<Connection>, StoreError>;
    /// Sets the state and open problems in one transaction. When the state changes, a
    /// `connection.state_changed` delivery is enqueued for every enabled webhook in the same
    /// transaction, so a crash can lose neither without the other. Returns the state it left, or
    /// `None` when it did not change.
    async fn set_state(
        &self,
        id: &ConnectionId,
        state: ConnectionState,
        problems: &[Problem],
        now: DateTime<Utc>,
    ) -> Result<Option<ConnectionState>, StoreError>;
    /// Deletes a connection and its tokens; true if it existed.
    async fn delete_connection(&self, id: &ConnectionId) -> Result<bool, StoreError>;
    /// When the scheduler should next refresh it (`None`: not scheduled).
    async fn set_next_refresh(
        &self,
        id: &ConnectionId,
        at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError>;
    /// When the health monitor should next probe it (`None`: not scheduled).
    async fn set_next_probe(
        &self,
        id: &ConnectionId,
        at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError>;
    /// Connections whose probe is due at `now`, earliest first.
    async fn due_probes(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<ConnectionId>, StoreError>;
    /// The earliest scheduled refresh, so the scheduler can sleep until then.
    async fn next_refresh_deadline(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    // ---- token sets and the refresh lease ----
    /// The current token set, decrypted.
    async fn get_tokens(&self, conn: &ConnectionId) -> Result<Option<StoredTokens>, StoreError>;
    /// Every connection's token expiry (`None`: does not expire), without decrypting anything:
    /// what metrics and overviews need.
    async fn token_expiries(
        &self,
    ) -> Result<Vec<(ConnectionId, Option<DateTime<Utc>>)>, StoreError>;
    /// Stores the token set obtained by an authorization, replacing any (version bumps, any lease
    /// is cleared, so an old lease holder is fenced out).
    async fn put_initial_tokens(
        &self,
        conn: &ConnectionId,
        set: &TokenSet,
    ) -> Result<StoredTokens, StoreError>;
    /// Takes the refresh lease unless another owner holds an unexpired one (`None`). Taking it again
    /// by the same owner succeeds (so a lease claimed by [`Store::claim_due_refreshes`] can be
    /// turned into a [`Lease`]). `NotFound` if the connection has no token set.
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
    /// the `connection.state_changed` delivery when the state changes, as [`Store::set_state`]).
    /// Returns `false`, having written nothing, when the version moved (another actor refreshed
    /// meanwhile: its success stands) or another owner holds the lease.
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
    /// in [`Lease::unresolved`] until [`Store::commit_refresh`] or
    /// [`Store::record_refresh_failure`] settles that version. `false`, writing nothing, when the
    /// holder no longer holds the lease at that version (it lapsed and was taken, or a newer token
    /// was stored): then it must not send.
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
    /// `tokenwarden_core::policy::crowd_plan` over the deadlines [`Store::refresh_deadlines`]
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
    /// [`Store::claim_due_refreshes`]: a crowd is refreshed ahead of its deadlines. (`degraded`
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

    // ---- pending authorizations ----
    /// Stores a pending authorization (the PKCE verifier is encrypted).
    async fn put_pending(&self, pending: &PendingAuthorization) -> Result<(), StoreError>;
    /// Deletes and returns it in one statement (`DELETE … RETURNING`, hardening rule 1): a replayed
    /// or raced callback gets `None`, as does an expired one.
    async fn consume_pending(
        &self,
        state_hash: &Sha256Hex,
        now: DateTime<Utc>,
    ) -> Result<Option<PendingAuthorization>, StoreError>;
    /// Deletes expired pending authorizations, in batches like [`Store::prune_events`], and
    /// connect sessions a day past their expiry (kept that long so a late visit still learns the
    /// link was used or expired); how many.
    async fn purge_expired_pending(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;

    // ---- connect sessions ----
    /// Stores a new connect session.
    async fn put_connect_session(&self, session: &ConnectSession) -> Result<(), StoreError>;
    /// Presents a session's token: marks an unused, unexpired session used in one conditional
    /// statement (two racing visits cannot both get [`SessionUse::Fresh`]), else says why not.
    async fn use_connect_session(
        &self,
        token_hash: &Sha256Hex,
        now: DateTime<Utc>,
    ) -> Result<SessionUse, StoreError>;
    /// What presenting a session's token would find, without spending it: [`SessionUse::Fresh`]
    /// here only says it is still usable.
    async fn find_connect_session(
        &self,
        token_hash: &Sha256Hex,
        now: DateTime<Utc>,
    ) -> Result<SessionUse, StoreError>;
    /// One session by id.
    async fn get_connect_session(&self, id: &str) -> Result<Option<ConnectSession>, StoreError>;
    /// Records the platform account behind a connection's grant.
    async fn set_account(
        &self,
        id: &ConnectionId,
        account: &tokenwarden_core::connection::Account,
    ) -> Result<(), StoreError>;

    // ---- events ----
    /// Appends an event; its id.
    async fn append_event(&self, event: &NewEvent) -> Result<i64, StoreError>;
    /// Events after `after_id` (0 for the start), of one connection or all, oldest first.
    async fn list_events(
        &self,
        conn: Option<&ConnectionId>,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<Event>, StoreError>;
    /// The newest `limit` events of one connection, oldest first: what a person looking at it
    /// wants (an hourly refresh writes hundreds a month).
    async fn latest_events(
        &self,
        conn: &ConnectionId,
        limit: i64,
    ) -> Result<Vec<Event>, StoreError>;

    // ---- API keys ----
    /// Creates a key; the full key is returned once and only its hash is stored.
    async fn create_api_key(
        &self,
        role: ApiKeyRole,
        label: &str,
        now: DateTime<Utc>,
    ) -> Result<(ApiKeyInfo, Secret), StoreError>;
    /// The key's record if `presented` is a live key (lookup by prefix, constant-time compare).
    async fn verify_api_key(&self, presented: &str) -> Result<Option<ApiKeyInfo>, StoreError>;
    /// All keys, revoked ones included.
    async fn list_api_keys(&self) -> Result<Vec<ApiKeyInfo>, StoreError>;
    /// Revokes a key; true if it was live.
    async fn revoke_api_key(&self, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError>;

    // ---- webhooks and the outbox ----
    /// Inserts or replaces an endpoint (the signing secret is encrypted).
    async fn put_webhook(&self, endpoint: &WebhookEndpoint) -> Result<(), StoreError>;
    /// One endpoint.
    async fn get_webhook(&self, id: &str) -> Result<Option<WebhookEndpoint>, StoreError>;
    /// All endpoints.
    async fn list_webhooks(&self) -> Result<Vec<WebhookEndpoint>, StoreError>;
    /// Deletes an endpoint and its deliveries.
    async fn delete_webhook(&self, id: &str) -> Result<bool, StoreError>;
    /// Enqueues one delivery per enabled endpoint (durably, hardening rule 16); their ids.
    async fn enqueue_deliveries(
        &self,
        payload: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError>;
    /// Claims due pending deliveries for `ttl` (counts an attempt). `SKIP LOCKED` on PostgreSQL.
    async fn claim_due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        ttl: Duration,
    ) -> Result<Vec<Delivery>, StoreError>;
    /// Marks a delivery done.
    async fn mark_delivered(&self, id: &str) -> Result<(), StoreError>;
    /// Records a failure: retried at `retry_at`, or given up on (`None`).
    async fn mark_failed(
        &self,
        id: &str,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError>;
    /// The latest deliveries to one endpoint, newest first (the delivery log).
    async fn list_deliveries(&self, webhook: &str, limit: i64)
    -> Result<Vec<Delivery>, StoreError>;
    /// One delivery.
    async fn get_delivery(&self, id: &str) -> Result<Option<Delivery>, StoreError>;

    // ---- keys ----
    /// The keyring in use.
    fn keyring(&self) -> Keyring;
    /// Where the keys come from: a value met under a key id the keyring lacks makes the store
    /// reload them from there (another replica rotated to a new key), and, when the key is still
    /// missing, the error says where to add it.
    fn set_key_loader(&self, loader: KeyLoader);
    /// Swaps in a keyring whose current key may be new. It must hold every key id still in use
    /// (checked against the key-check records); the new key gets its check record.
    async fn set_keyring(&self, keys: Keyring) -> Result<(), StoreError>;
    /// Re-encrypts up to `batch` values per statement batch under the current key, across every
    /// secret column, while reads go on (they accept every key id in the keyring).
    async fn reencrypt_all(&self, batch: i64) -> Result<RotationReport, StoreError>;
    /// Marks every key other than the current one retired (after a complete `reencrypt_all`), so
    /// the keyring may drop them.
    async fn retire_old_keys(&self) -> Result<(), StoreError>;
    /// Usage of each key.
    async fn key_status(&self) -> Result<Vec<KeyStatus>, StoreError>;

    // ---- shared by replicas (issue 14 item 4) ----
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
    /// Stores a new dashboard session.
    async fn put_dashboard_session(&self, session: &DashboardSession) -> Result<(), StoreError>;
    /// The session whose cookie hashes to `token_hash`, if it is live at `now` (before its
    /// absolute end and used within `idle`); counts as a use. A session found idle or past its
    /// end is deleted.
    async fn use_dashboard_session(
        &self,
        token_hash: &Sha256Hex,
        now: DateTime<Utc>,
        idle: chrono::TimeDelta,
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
        window: chrono::TimeDelta,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Forgets a key's failures (its client signed in).
    async fn clear_signin_failures(&self, key: &str) -> Result<(), StoreError>;
    /// Deletes shared state that no longer limits or remembers anything: rate lanes idle for an
    /// hour (database clock), dashboard sessions past their end and sign-in failures older than
    /// an hour at `now`, and alert records older than `alerts_before`. How many rows went.
    async fn purge_replica_state(
        &self,
        now: DateTime<Utc>,
        alerts_before: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// A circuit breaker (`tokenwarden_core::breaker`) and the database's clock reading, to
    /// decide on with one clock across replicas. A breaker never used is closed at version 0.
    async fn breaker(&self, name: &str) -> Result<(BreakerRecord, DateTime<Utc>), StoreError>;
    /// Stores a breaker's next state if it is still at `expected_version`; true if it was.
    async fn put_breaker(
        &self,
        name: &str,
        expected_version: i64,
        state: &tokenwarden_core::breaker::BreakerState,
    ) -> Result<bool, StoreError>;

    // ---- retention ----
    /// Deletes the events that happened before `before`; how many. At most `batch` rows go per
    /// statement, repeated until a statement finds fewer, so no statement holds a long lock on
    /// a busy table: on SQLite the prune rests between rounds so that waiting writes get the
    /// lock; on PostgreSQL, rows another replica is deleting are skipped. Ids are never reused,
    /// so an `after` cursor into the events stays valid.
    async fn prune_events(&self, before: DateTime<Utc>, batch: i64) -> Result<u64, StoreError>;
    /// Deletes finished webhook deliveries (`delivered` or `dead`) enqueued before `before`, in
    /// batches like [`Store::prune_events`]; how many. A `pending` delivery, retrying or not yet
    /// tried, stays whatever its age: the outbox must not lose it.
    async fn prune_deliveries(&self, before: DateTime<Utc>, batch: i64) -> Result<u64, StoreError>;
}

/// Opens the store at `url`: `sqlite://path?mode=rwc`, `sqlite:path`, `postgres://…` or
/// `postgresql://…`. Applies migrations and verifies the keyring (a wrong or missing key is a
/// `Crypto` error here, before anything is served).
pub async fn open(url: &str, keys: Keyring) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(sql::SqlStore::open(url, keys).await?))
}

/// Rotates to `new_keyring` (whose current key is the new one and which still holds the old keys):
/// installs it, re-encrypts everything in batches while the store keeps serving, and retires the
/// old keys. Returns what was re-encrypted.
///
/// With several replicas on one PostgreSQL database, every replica must be running with the new
/// keyring (the key file with the new key appended, loaded through [`Store::set_keyring`] or a
/// restart) before this runs: a replica still encrypting under the old key after the old key is
/// retired would leave values that the old key alone can open.
pub async fn rotate_keys(
    store: &dyn Store,
    new_keyring: Keyring,
) -> Result<RotationReport, StoreError> {
    store.set_keyring(new_keyring).await?;
    let mut total = RotationReport::default();
    loop {
        let r = store.reencrypt_all(200).await?;
        total.reencrypted += r.reencrypted;
        total.already_current += r.already_current;
        total.raced += r.raced;
        // A raced value was rewritten by a writer, necessarily under the current key; one more
        // pass confirms nothing old is left before the old keys are retired.
        if r.reencrypted == 0 && r.raced == 0 {
            break;
        }
    }
    store.retire_old_keys().await?;
    // A writer that sealed a value under the old key just before the switch may have stored it
    // after the last pass above (the passes are fast; a writer can be descheduled between its
    // seal and its write). The old keys are still in this keyring: pass again until nothing old
    // is left, so no value stays under a key that is now retired.
    loop {
        let r = store.reencrypt_all(200).await?;
        total.reencrypted += r.reencrypted;
        total.raced += r.raced;
        if r.reencrypted == 0 && r.raced == 0 {
            break;
        }
    }
    Ok(total)
}

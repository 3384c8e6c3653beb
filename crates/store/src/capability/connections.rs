//! Connections, their platform accounts and token sets, and when each is next probed.

use crate::{StoreError, StoredTokens};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokenwarden_core::connection::{Account, Connection, ConnectionState, Problem};
use tokenwarden_core::id::ConnectionId;
use tokenwarden_core::token::TokenSet;

/// Connections and their token sets. An authorization writes the token set here; a refresh
/// writes it through [`Refreshes`](crate::Refreshes), under its lease.
#[async_trait]
pub trait Connections: Send + Sync {
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
    /// Records the platform account behind a connection's grant.
    async fn set_account(&self, id: &ConnectionId, account: &Account) -> Result<(), StoreError>;
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
}

//! Authorizations in flight: pending authorizations and the connect sessions that start them.

use crate::{ConnectSession, Delegate, PendingAuthorization, SessionUse, Sha256Hex, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// Authorizations in flight: the pending authorization between `/connect` and its callback, and
/// the single-use connect sessions (links) that start one.
#[async_trait]
pub trait Authorizations: Send + Sync {
    /// Stores a pending authorization (the PKCE verifier is encrypted).
    async fn put_pending(&self, pending: &PendingAuthorization) -> Result<(), StoreError>;
    /// Deletes and returns it in one statement (`DELETE … RETURNING`, hardening rule 1): a replayed
    /// or raced callback gets `None`, as does an expired one.
    async fn consume_pending(
        &self,
        state_hash: &Sha256Hex,
        now: DateTime<Utc>,
    ) -> Result<Option<PendingAuthorization>, StoreError>;
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
}

/// Every call goes to the [`Delegate`]'s store, unchanged.
#[async_trait]
impl<T: Delegate<dyn Authorizations> + Send + Sync> Authorizations for T {
    async fn put_pending(&self, pending: &PendingAuthorization) -> Result<(), StoreError> {
        self.delegate().put_pending(pending).await
    }

    async fn consume_pending(
        &self,
        state_hash: &Sha256Hex,
        now: DateTime<Utc>,
    ) -> Result<Option<PendingAuthorization>, StoreError> {
        self.delegate().consume_pending(state_hash, now).await
    }

    async fn put_connect_session(&self, session: &ConnectSession) -> Result<(), StoreError> {
        self.delegate().put_connect_session(session).await
    }

    async fn use_connect_session(
        &self,
        token_hash: &Sha256Hex,
        now: DateTime<Utc>,
    ) -> Result<SessionUse, StoreError> {
        self.delegate().use_connect_session(token_hash, now).await
    }

    async fn find_connect_session(
        &self,
        token_hash: &Sha256Hex,
        now: DateTime<Utc>,
    ) -> Result<SessionUse, StoreError> {
        self.delegate().find_connect_session(token_hash, now).await
    }

    async fn get_connect_session(&self, id: &str) -> Result<Option<ConnectSession>, StoreError> {
        self.delegate().get_connect_session(id).await
    }
}

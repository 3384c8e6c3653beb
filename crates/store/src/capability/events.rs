//! The event log.

use crate::{Delegate, Event, NewEvent, StoreError};
use async_trait::async_trait;
use tokenwarden_core::id::ConnectionId;

/// The event log: what happened, of one connection or the whole daemon.
#[async_trait]
pub trait Events: Send + Sync {
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
}

/// Every call goes to the [`Delegate`]'s store, unchanged.
#[async_trait]
impl<T: Delegate<dyn Events> + Send + Sync> Events for T {
    async fn append_event(&self, event: &NewEvent) -> Result<i64, StoreError> {
        self.delegate().append_event(event).await
    }

    async fn list_events(
        &self,
        conn: Option<&ConnectionId>,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<Event>, StoreError> {
        self.delegate().list_events(conn, after_id, limit).await
    }

    async fn latest_events(
        &self,
        conn: &ConnectionId,
        limit: i64,
    ) -> Result<Vec<Event>, StoreError> {
        self.delegate().latest_events(conn, limit).await
    }
}

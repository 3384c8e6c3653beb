//! The one writer of a connection's state.
//!
//! Every part that learns something about a connection (the token service after a refresh, the
//! proxy when the platform refuses a token, the health monitor after a probe, the connect flow
//! after a grant, a platform's deauthorize callback) says what it found as open problems; the
//! state follows from them by [`tokenwarden_core::state::settle`], a pure function, and is written
//! here and nowhere else (the store's `set_state` is called only from this module; the refresh
//! lease's transactions take the state [`settle`] gives). So the state and the problems cannot
//! disagree, and a transition rule lives in one place.

use chrono::{DateTime, Utc};
use std::sync::Arc;
use tokenwarden_core::connection::{Connection, ConnectionState, Problem};
use tokenwarden_core::state::{self, settle};
use tokenwarden_store::{Store, StoreError};

/// Writes connections' states and open problems (see the module docs).
#[derive(Debug, Clone)]
pub struct States {
    store: Arc<dyn Store>,
}

impl States {
    /// Over `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        States { store }
    }

    /// Records `problems` as the open problems of `conn` (as last read from the store); the
    /// state follows. Writes only when something changed; a connection that needs a person is
    /// no longer scheduled for refreshes. Returns the state it is in now.
    pub async fn set_problems(
        &self,
        conn: &Connection,
        problems: Vec<Problem>,
        now: DateTime<Utc>,
    ) -> Result<ConnectionState, StoreError> {
        let next = settle(conn.state, &problems);
        self.write(conn, next, problems, now).await?;
        Ok(next)
    }

    /// A new grant is stored: the connection works, and every problem it had is gone.
    pub async fn connected(&self, conn: &Connection, now: DateTime<Utc>) -> Result<(), StoreError> {
        let (next, problems) = state::connected();
        // Written even when nothing seems to change: the connect flow stores the connection
        // afresh, and the state change (pending → active) is what announces it.
        self.store.set_state(&conn.id, next, &problems, now).await?;
        log_change(conn, next);
        Ok(())
    }

    async fn write(
        &self,
        conn: &Connection,
        next: ConnectionState,
        problems: Vec<Problem>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if next == conn.state && problems == conn.problems {
            return Ok(());
        }
        self.store.set_state(&conn.id, next, &problems, now).await?;
        log_change(conn, next);
        if next == ConnectionState::ReauthRequired {
            self.store.set_next_refresh(&conn.id, None).await?;
        }
        Ok(())
    }
}

/// The log line of a state change (recorded by whoever made it, through [`States`] or the
/// refresh lease's transaction).
pub fn log_change(conn: &Connection, next: ConnectionState) {
    if next != conn.state {
        tracing::info!(
            connection = %conn.id,
            provider = %conn.provider,
            from = conn.state.as_str(),
            to = next.as_str(),
            "connection state changed"
        );
    }
}

//! Storage and secrets for tokenwarden: the [`Store`], SQLite and PostgreSQL behind it.
//!
//! - [`open`] picks the backend by URL scheme, applies the migrations under
//!   `migrations/{sqlite,postgres}` and verifies the keyring against the database.
//! - [`Store`]: what the daemon holds as `Arc<dyn Store>`, every capability at once. Each
//!   capability is a trait of its own, so a reader finds a topic's methods together and a layer in
//!   front of the store implements only what it changes:
//!   - [`Apps`]: provider apps and their app-level problems;
//!   - [`Connections`]: connections, their accounts and token sets, health probe deadlines;
//!   - [`Refreshes`]: refresh deadlines, the fenced refresh lease, the scheduler's claims;
//!   - [`Authorizations`]: pending authorizations and connect sessions;
//!   - [`Events`]: the event log;
//!   - [`Webhooks`]: webhook endpoints and the outbox of deliveries;
//!   - [`ApiKeys`]: API keys;
//!   - [`DashboardSessions`]: dashboard sessions and failed sign-ins;
//!   - [`Encryption`]: the keyring, key rotation and key usage;
//!   - [`Coordination`]: what replicas share (rate lanes, job leases, alert claims, breakers);
//!   - [`Retention`]: deleting what no longer matters.
//!
//!   Code that calls them on a concrete store (not through `dyn Store` or `S: Store`, which reach
//!   every capability) imports [`prelude`]. A layer in front of a store implements the
//!   capabilities it changes and passes the others through with [`Delegate`].
//! - [`sql`] implements every capability for both backends with one set of SQL statements (sqlx
//!   `Any`), differing only in the clock expression and `FOR UPDATE SKIP LOCKED`.
//! - [`crypto`]: the [`Keyring`] and AES-256-GCM encryption at rest bound to table, column, row and
//!   key id (hardening rule 14).
//! - [`model`]: the records (apps, leases, pending authorizations, events, API keys, webhooks).
//! - [`error`]: [`StoreError`], by meaning.
//!
//! History is bounded: [`Retention::prune_events`], [`Retention::prune_deliveries`] and
//! [`Retention::purge_expired_pending`] delete old rows in bounded batches (the daemon's retention
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

mod capability;
pub mod crypto;
pub mod error;
pub mod model;
pub mod sql;

use std::sync::Arc;

pub use capability::*;
pub use crypto::{KeyLoader, KeySource, Keyring};
pub use error::StoreError;
pub use model::*;

/// The capability traits, for calling the store's methods on a concrete store such as
/// [`sql::SqlStore`] (`use tokenwarden_store::prelude::*;`). Through `dyn Store` or a `S: Store`
/// bound they need no import.
pub mod prelude {
    pub use crate::Store;
    pub use crate::capability::*;
}

/// Everything the daemon keeps: every capability at once, the handle passed around as
/// `Arc<dyn Store>`. Object safe; every method is one short statement or a few, so a pooled
/// connection is never held across a call to a platform. Implemented by whatever implements
/// every capability.
pub trait Store:
    Apps
    + Connections
    + Refreshes
    + Authorizations
    + Events
    + Webhooks
    + ApiKeys
    + DashboardSessions
    + Encryption
    + Coordination
    + Retention
    + std::fmt::Debug
{
}

impl<
    T: Apps
        + Connections
        + Refreshes
        + Authorizations
        + Events
        + Webhooks
        + ApiKeys
        + DashboardSessions
        + Encryption
        + Coordination
        + Retention
        + std::fmt::Debug
        + ?Sized,
> Store for T
{
}

/// A layer in front of a store that passes capability `C` through unchanged: with
/// `impl Delegate<dyn Events> for Layer`, the layer is [`Events`], every call going to the store
/// [`Delegate::delegate`] returns. A layer implements the capabilities it changes itself and
/// delegates the rest, so it restates only what it changes (the engine's cache implements
/// [`Connections`], [`Refreshes`] and [`ApiKeys`] and delegates the others).
///
/// Those three have no delegation: every layer so far changes them. Add one beside its trait when
/// a layer needs it.
pub trait Delegate<C: ?Sized> {
    /// The store behind the layer, as capability `C`.
    fn delegate(&self) -> &C;
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
/// keyring (the key file with the new key appended, loaded through [`Encryption::set_keyring`] or a
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

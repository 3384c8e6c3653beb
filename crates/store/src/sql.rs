//! The SQL backends. One implementation over sqlx's `Any` driver: the statements are the same
//! text on SQLite and PostgreSQL (`$n` placeholders, `ON CONFLICT`, `RETURNING`) except for the
//! clock expression (hardening rule 15) and the `FOR UPDATE SKIP LOCKED` of claims, which SQLite
//! neither has nor needs (it serialises writers).
//!
//! [`SqlStore`], its pool and the few SQL fragments that differ between the backends are here;
//! each capability is implemented in the file of its name (`apps.rs`, `connections.rs`,
//! `refreshes.rs`, …, as the traits in `crate::capability`). `row.rs` converts values to and from
//! their columns (milliseconds, JSON, ids); `encryption.rs` also holds the sealing and opening of
//! secrets every capability uses. A table's row decoder lives beside the statements that read it.

mod api_keys;
mod apps;
mod authorizations;
mod connections;
mod coordination;
mod dashboard_sessions;
mod encryption;
mod events;
mod refreshes;
mod retention;
mod row;
mod webhooks;

pub use encryption::KEY_REFUSE_AT;

use crate::Encryption;
use crate::crypto::{KeyLoader, Keyring};
use crate::error::{Result, StoreError};
use crate::model::*;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// The store on SQLite or PostgreSQL.
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    keys: RwLock<Arc<Keyring>>,
    budget: tokio::sync::Mutex<HashMap<String, (i64, i64)>>,
    /// Where this replica's keys come from, to reload them when a value names a key it lacks.
    loader: RwLock<Option<KeyLoader>>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("backend", &self.backend)
            .field("keys", &self.keyring())
            .finish_non_exhaustive()
    }
}

impl SqlStore {
    /// Opens (see [`crate::open`]).
    pub async fn open(url: &str, keys: Keyring) -> Result<SqlStore> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            let scheme: String = url
                .split(':')
                .next()
                .unwrap_or("")
                .chars()
                .take(20)
                .collect();
            return Err(StoreError::Config(format!(
                "unsupported database URL scheme {scheme:?}: use sqlite://PATH?mode=rwc, sqlite:PATH, postgres://… or postgresql://…"
            )));
        };
        let pool = match backend {
            Backend::Sqlite => {
                // Writes serialise on SQLite anyway; a few connections let WAL readers run alongside.
                AnyPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(10))
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            // WAL for concurrent readers; synchronous=FULL so a commit is on disk before
                            // it is acknowledged (hardening rule 13: WAL+NORMAL can lose recent commits).
                            conn.execute("PRAGMA journal_mode=WAL").await?;
                            conn.execute("PRAGMA synchronous=FULL").await?;
                            conn.execute("PRAGMA busy_timeout=10000").await?;
                            conn.execute("PRAGMA foreign_keys=ON").await?;
                            Ok(())
                        })
                    })
                    .connect(url)
                    .await?
            }
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(10)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(url)
                    .await?
            }
        };
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        let store = SqlStore {
            pool,
            backend,
            keys: RwLock::new(Arc::new(keys.clone())),
            budget: tokio::sync::Mutex::new(HashMap::new()),
            loader: RwLock::new(None),
            reloading: tokio::sync::Mutex::new(()),
        };
        store.verify_keyring(&keys).await?;
        Ok(store)
    }

    /// The pool, for tests and tools that need raw access.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The database's clock in milliseconds, as an SQL expression (hardening rule 15).
    fn now_sql(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => "(floor(extract(epoch from clock_timestamp()) * 1000))::bigint",
            Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
        }
    }

    /// The larger of several values: `GREATEST` on PostgreSQL, the scalar `max` on SQLite.
    fn greatest(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => "GREATEST",
            Backend::Sqlite => "max",
        }
    }

    /// The smaller of several values.
    fn least(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => "LEAST",
            Backend::Sqlite => "min",
        }
    }

    fn skip_locked(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        }
    }
}

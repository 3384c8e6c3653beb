//! The SQL backends. One implementation over sqlx's `Any` driver: the statements are the same
//! text on SQLite and PostgreSQL (`$n` placeholders, `ON CONFLICT`, `RETURNING`) except for the
//! clock expression (hardening rule 15) and the `FOR UPDATE SKIP LOCKED` of claims, which SQLite
//! neither has nor needs (it serialises writers).

use crate::crypto::{KeyLoader, Keyring, Place, stored_key_id};
use crate::error::{Result, StoreError};
use crate::model::*;
use crate::{
    ApiKeys, Apps, Authorizations, Connections, Coordination, DashboardSessions, Encryption,
    Events, Refreshes, Retention, Webhooks,
};
use async_trait::async_trait;
use base64::Engine;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokenwarden_core::clock::{Clock as _, SystemClock};
use tokenwarden_core::connection::{Connection, ConnectionState, Problem, ProblemCode};
use tokenwarden_core::id::{AppId, ConnectionId, ProviderId};
use tokenwarden_core::policy::CrowdPlan;
use tokenwarden_core::secret::Secret;
use tokenwarden_core::token::TokenSet;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Encryptions reserved from the database per block: the counter in `store_keys` is an upper bound
/// that survives crashes and is shared by replicas.
const KEY_BLOCK: i64 = 1024;
/// Warn from here (2^30)…
const KEY_WARN_AT: i64 = 1 << 30;
/// …and refuse to encrypt from here (3·2^30), well before the 2^32 limit for random 96-bit nonces
/// (NIST SP 800-38D §8.3, hardening rule 14).
pub const KEY_REFUSE_AT: i64 = 3 << 30;

const CHECK_PLAINTEXT: &[u8] = b"tokenwarden key check v1";

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

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(v)
        .ok_or_else(|| StoreError::Corrupt(format!("time {v} out of range")))
}

fn problem_code(s: &str) -> Result<ProblemCode> {
    s.parse().map_err(StoreError::Corrupt)
}

fn opt_from_ms(v: Option<i64>) -> Result<Option<DateTime<Utc>>> {
    v.map(from_ms).transpose()
}

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis())
        .unwrap_or(i64::MAX / 4)
        .max(1)
}

fn json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn unjson<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn parse_id<T: std::str::FromStr>(what: &str, s: String) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse::<T>()
        .map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn app_row_key(provider: &ProviderId, app: &AppId) -> String {
    // Neither id may contain '/', so the key is unambiguous.
    format!("{provider}/{app}")
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ProblemRow {
    code: String,
    title: String,
    fix: String,
    since: i64,
}

fn problems_to_json(p: &[Problem]) -> Result<String> {
    json(
        &p.iter()
            .map(|p| ProblemRow {
                code: p.code.as_str().to_owned(),
                title: p.title.clone(),
                fix: p.fix.clone(),
                since: ms(p.since),
            })
            .collect::<Vec<_>>(),
    )
}

fn problems_from_json(s: &str) -> Result<Vec<Problem>> {
    let rows: Vec<ProblemRow> = unjson("problems", s)?;
    rows.into_iter()
        .map(|r| {
            Ok(Problem {
                code: problem_code(&r.code)?,
                title: r.title,
                fix: r.fix,
                since: from_ms(r.since)?,
            })
        })
        .collect()
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

    fn ring(&self) -> Arc<Keyring> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Checks every key-check record against `keys`, and records the current key's.
    async fn verify_keyring(&self, keys: &Keyring) -> Result<()> {
        let rows = sqlx::query("SELECT key_id, check_ct, retired FROM store_keys")
            .fetch_all(&self.pool)
            .await?;
        for r in &rows {
            let id: String = r.try_get("key_id")?;
            let ct: Vec<u8> = r.try_get("check_ct")?;
            let retired: i64 = r.try_get("retired")?;
            if keys.has(&id) {
                keys.open(&Place::new("store_keys", "check_ct", &id), &ct).map_err(|_| {
                    StoreError::Crypto(format!(
                        "key {id} in the keyring is not the key this database was written with (wrong key file or environment value?)"
                    ))
                })?;
            } else if retired == 0 {
                return Err(StoreError::Crypto(format!(
                    "the database holds secrets under key {id}, which the keyring ({}) does not hold; supply the key file that contains it",
                    keys.key_ids().join(", ")
                )));
            }
        }
        let current = keys.current_id();
        let check = keys.seal(
            &Place::new("store_keys", "check_ct", current),
            CHECK_PLAINTEXT,
        )?;
        sqlx::query(
            "INSERT INTO store_keys (key_id, check_ct, encryptions, retired, created_at) VALUES ($1, $2, 1, 0, $3)
             ON CONFLICT (key_id) DO UPDATE SET retired = 0",
        )
        .bind(current)
        .bind(check)
        .bind(ms(SystemClock.now()))
        .execute(&self.pool)
        .await?;
        // Another process may have inserted the current key's record first: check it opens.
        let ct: Vec<u8> = sqlx::query("SELECT check_ct FROM store_keys WHERE key_id = $1")
            .bind(current)
            .fetch_one(&self.pool)
            .await?
            .try_get("check_ct")?;
        keys.open(&Place::new("store_keys", "check_ct", current), &ct)
            .map_err(|_| {
                StoreError::Crypto(format!(
                    "key {current} does not match this database's record of it"
                ))
            })?;
        Ok(())
    }

    /// Takes one encryption from the current key's budget, reserving a block from the database
    /// when the local one is used up (hardening rule 14).
    async fn seal(&self, place: &Place<'_>, plaintext: &[u8]) -> Result<Vec<u8>> {
        let ring = self.ring();
        let id = ring.current_id().to_string();
        {
            let mut budget = self.budget.lock().await;
            let entry = budget.entry(id.clone()).or_insert((0, 0));
            if entry.0 >= entry.1 {
                let total: i64 = sqlx::query("UPDATE store_keys SET encryptions = encryptions + $2 WHERE key_id = $1 RETURNING encryptions")
                    .bind(&id)
                    .bind(KEY_BLOCK)
                    .fetch_optional(&self.pool)
                    .await?
                    .ok_or_else(|| StoreError::Crypto(format!("key {id} has no key-check record")))?
                    .try_get("encryptions")?;
                if total > KEY_REFUSE_AT {
                    return Err(StoreError::Crypto(format!(
                        "key {id} has done about {total} encryptions; refusing more before the 2^32 nonce limit: rotate the key (`tokenwarden keys rotate`)"
                    )));
                }
                if total > KEY_WARN_AT {
                    tracing::warn!(key_id = %id, encryptions = total, "the master key is well used; rotate it soon (tokenwarden keys rotate)");
                }
                *entry = (total - KEY_BLOCK, total);
            }
            entry.0 += 1;
        }
        ring.seal(place, plaintext)
    }

    async fn seal_secret(&self, place: &Place<'_>, s: &Secret) -> Result<Vec<u8>> {
        self.seal(place, s.expose().as_bytes()).await
    }

    fn open_secret(&self, place: &Place<'_>, ct: &[u8]) -> Result<Secret> {
        self.ring().open_text(place, ct)
    }

    fn row_to_app(&self, r: &AnyRow) -> Result<App> {
        let row_key: String = r.try_get("row_key")?;
        let ct: Vec<u8> = r.try_get("client_secret_ct")?;
        Ok(App {
            provider: parse_id("provider", r.try_get("provider")?)?,
            id: parse_id("app id", r.try_get("app_id")?)?,
            client_id: r.try_get("client_id")?,
            client_secret: self
                .open_secret(&Place::new("apps", "client_secret_ct", &row_key), &ct)?,
            redirect_uri: r.try_get("redirect_uri")?,
            developer_token: match r.try_get::<Option<Vec<u8>>, _>("developer_token_ct")? {
                Some(ct) => Some(
                    self.open_secret(&Place::new("apps", "developer_token_ct", &row_key), &ct)?,
                ),
                None => None,
            },
            environment: {
                let e: String = r.try_get("environment")?;
                e.parse().map_err(|_| {
                    StoreError::Corrupt(format!("app {row_key} has environment {e:?}"))
                })?
            },
            created_at: from_ms(r.try_get("created_at")?)?,
            updated_at: from_ms(r.try_get("updated_at")?)?,
            region: r.try_get("region")?,
            user_agent: r.try_get("user_agent")?,
        })
    }

    fn row_to_connection(r: &AnyRow) -> Result<Connection> {
        let state: String = r.try_get("state")?;
        let env: String = r.try_get("environment")?;
        Ok(Connection {
            id: parse_id("connection id", r.try_get("id")?)?,
            provider: parse_id("provider", r.try_get("provider")?)?,
            app: parse_id("app id", r.try_get("app_id")?)?,
            state: state.parse().map_err(StoreError::Corrupt)?,
            environment: env.parse().map_err(StoreError::Corrupt)?,
            api_base: r.try_get("api_base")?,
            account_ids: unjson("account_ids", &r.try_get::<String, _>("account_ids")?)?,
            account: r
                .try_get::<Option<String>, _>("account")?
                .map(|a| unjson("account", &a))
                .transpose()?,
            end_user: r.try_get("end_user")?,
            region: r.try_get("region")?,
            scopes: unjson("scopes", &r.try_get::<String, _>("scopes")?)?,
            problems: problems_from_json(&r.try_get::<String, _>("problems")?)?,
            created_at: from_ms(r.try_get("created_at")?)?,
            updated_at: from_ms(r.try_get("updated_at")?)?,
        })
    }

    fn row_to_tokens(&self, conn: &str, r: &AnyRow) -> Result<StoredTokens> {
        let at: Vec<u8> = r.try_get("access_token_ct")?;
        let rt: Option<Vec<u8>> = r.try_get("refresh_token_ct")?;
        let ts: Option<Vec<u8>> = r.try_get("token_secret_ct")?;
        Ok(StoredTokens {
            set: TokenSet {
                access_token: self
                    .open_secret(&Place::new("token_sets", "access_token_ct", conn), &at)?,
                refresh_token: rt
                    .map(|rt| {
                        self.open_secret(&Place::new("token_sets", "refresh_token_ct", conn), &rt)
                    })
                    .transpose()?,
                token_type: r.try_get("token_type")?,
                scopes: unjson("scopes", &r.try_get::<String, _>("scopes")?)?,
                issued_at: from_ms(r.try_get("issued_at")?)?,
                expires_at: opt_from_ms(r.try_get("expires_at")?)?,
                refresh_expires_at: opt_from_ms(r.try_get("refresh_expires_at")?)?,
                token_secret: ts
                    .map(|ts| {
                        self.open_secret(&Place::new("token_sets", "token_secret_ct", conn), &ts)
                    })
                    .transpose()?,
            },
            version: r.try_get("version")?,
        })
    }

    fn row_to_pending(&self, r: &AnyRow) -> Result<PendingAuthorization> {
        let hash: String = r.try_get("state_hash")?;
        let v: Option<Vec<u8>> = r.try_get("verifier_ct")?;
        Ok(PendingAuthorization {
            pkce_verifier: v
                .map(|v| {
                    self.open_secret(
                        &Place::new("pending_authorizations", "verifier_ct", &hash),
                        &v,
                    )
                })
                .transpose()?,
            state_hash: Sha256Hex::from_hex(hash),
            provider: parse_id("provider", r.try_get("provider")?)?,
            app: parse_id("app id", r.try_get("app_id")?)?,
            connection: parse_id("connection id", r.try_get("connection_id")?)?,
            redirect_uri: r.try_get("redirect_uri")?,
            scopes: unjson("scopes", &r.try_get::<String, _>("scopes")?)?,
            browser_hash: Sha256Hex::from_hex(r.try_get::<String, _>("browser_hash")?),
            created_at: from_ms(r.try_get("created_at")?)?,
            expires_at: from_ms(r.try_get("expires_at")?)?,
            session: r.try_get("session_id")?,
        })
    }

    fn row_to_session(r: &AnyRow) -> Result<ConnectSession> {
        Ok(ConnectSession {
            id: r.try_get("id")?,
            token_hash: Sha256Hex::from_hex(r.try_get::<String, _>("token_hash")?),
            provider: parse_id("provider", r.try_get("provider")?)?,
            connection: parse_id("connection id", r.try_get("connection_id")?)?,
            app: r
                .try_get::<Option<String>, _>("app_id")?
                .map(|a| parse_id("app id", a))
                .transpose()?,
            end_user: r.try_get("end_user")?,
            return_to: r.try_get("return_to")?,
            scopes: unjson("scopes", &r.try_get::<String, _>("scopes")?)?,
            allow_account_change: r.try_get::<i64, _>("allow_account_change")? != 0,
            created_by: r.try_get("created_by")?,
            created_at: from_ms(r.try_get("created_at")?)?,
            expires_at: from_ms(r.try_get("expires_at")?)?,
            used_at: opt_from_ms(r.try_get("used_at")?)?,
        })
    }

    fn row_to_webhook(&self, r: &AnyRow) -> Result<WebhookEndpoint> {
        let id: String = r.try_get("id")?;
        let ct: Vec<u8> = r.try_get("secret_ct")?;
        Ok(WebhookEndpoint {
            signing_secret: self.open_secret(&Place::new("webhooks", "secret_ct", &id), &ct)?,
            id,
            url: r.try_get("url")?,
            enabled: r.try_get::<i64, _>("enabled")? != 0,
            created_at: from_ms(r.try_get("created_at")?)?,
        })
    }

    fn row_to_delivery(r: &AnyRow) -> Result<Delivery> {
        let status: String = r.try_get("status")?;
        Ok(Delivery {
            id: r.try_get("id")?,
            webhook: r.try_get("webhook_id")?,
            payload: r.try_get("payload")?,
            attempts: r.try_get("attempts")?,
            next_attempt_at: from_ms(r.try_get("next_attempt_at")?)?,
            status: DeliveryStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("delivery status {status:?}")))?,
            last_error: r.try_get("last_error")?,
            created_at: from_ms(r.try_get("created_at")?)?,
        })
    }

    fn row_to_api_key(r: &AnyRow) -> Result<ApiKeyInfo> {
        let role: String = r.try_get("role")?;
        Ok(ApiKeyInfo {
            id: r.try_get("id")?,
            role: ApiKeyRole::parse(&role)
                .ok_or_else(|| StoreError::Corrupt(format!("api key role {role:?}")))?,
            label: r.try_get("label")?,
            created_at: from_ms(r.try_get("created_at")?)?,
            revoked_at: opt_from_ms(r.try_get("revoked_at")?)?,
        })
    }

    /// Re-encrypts one secret column of one table, paging by primary key.
    async fn reencrypt_column(
        &self,
        table: &str,
        pk: &str,
        column: &str,
        batch: i64,
        report: &mut RotationReport,
    ) -> Result<()> {
        let mut after = String::new();
        let select = format!(
            "SELECT {pk} AS pk, {column} AS ct FROM {table} WHERE {pk} > $1 AND {column} IS NOT NULL ORDER BY {pk} LIMIT $2"
        );
        let update = format!("UPDATE {table} SET {column} = $1 WHERE {pk} = $2 AND {column} = $3");
        loop {
            let rows = sqlx::query(&select)
                .bind(&after)
                .bind(batch.max(1))
                .fetch_all(&self.pool)
                .await?;
            if rows.is_empty() {
                return Ok(());
            }
            for r in &rows {
                let pkv: String = r.try_get("pk")?;
                let ct: Vec<u8> = r.try_get("ct")?;
                let ring = self.ring();
                if stored_key_id(&ct) == Some(ring.current_id()) {
                    report.already_current += 1;
                } else {
                    let place = Place::new(table, column, &pkv);
                    let plain = ring.open(&place, &ct)?;
                    let new = self.seal(&place, &plain).await?;
                    // Compare-and-swap on the old ciphertext: a concurrent writer (a refresh commit)
                    // wins, and its value is already under the current key.
                    let done = sqlx::query(&update)
                        .bind(new)
                        .bind(&pkv)
                        .bind(&ct)
                        .execute(&self.pool)
                        .await?;
                    if done.rows_affected() == 1 {
                        report.reencrypted += 1;
                    } else {
                        report.raced += 1;
                    }
                }
                after = pkv;
            }
        }
    }
}

const TOKEN_COLS: &str = "access_token_ct, refresh_token_ct, token_secret_ct, token_type, scopes, issued_at, expires_at, refresh_expires_at, version";
const PENDING_COLS: &str = "state_hash, provider, app_id, connection_id, redirect_uri, verifier_ct, scopes, browser_hash, created_at, expires_at, session_id";
const SESSION_COLS: &str = "id, token_hash, provider, connection_id, app_id, end_user, return_to, scopes, allow_account_change, created_by, created_at, expires_at, used_at";
/// One delivery per enabled endpoint, in one statement: every endpoint gets its delivery or none
/// does.
async fn enqueue<'e, E>(exec: E, payload: &str, now: DateTime<Utc>) -> Result<Vec<String>>
where
    E: Executor<'e, Database = sqlx::Any>,
{
    let msg = hex(&rand::random::<[u8; 12]>());
    let rows = sqlx::query(
        "INSERT INTO webhook_deliveries (id, webhook_id, payload, attempts, next_attempt_at, status, last_error, claimed_until, created_at)
         SELECT 'msg_' || $1 || '_' || id, id, $2, 0, $3, 'pending', NULL, 0, $3 FROM webhooks WHERE enabled = 1
         RETURNING id",
    )
    .bind(msg)
    .bind(payload)
    .bind(ms(now))
    .fetch_all(exec)
    .await?;
    rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
}

const DELIVERY_COLS: &str =
    "id, webhook_id, payload, attempts, next_attempt_at, status, last_error, created_at";
const CONNECTION_COLS: &str = "id, provider, app_id, state, environment, api_base, account_ids, scopes, problems, created_at, updated_at, account, end_user, region";

struct SealedTokens {
    at: Vec<u8>,
    rt: Option<Vec<u8>>,
    /// OAuth 1.0a token secret.
    ts: Option<Vec<u8>>,
    scopes: String,
}

/// Which connections a scheduler claim takes.
/// [`Connections::set_state`] inside a transaction the caller commits.
async fn set_state_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &ConnectionId,
    state: ConnectionState,
    problems: &[Problem],
    now: DateTime<Utc>,
) -> Result<Option<ConnectionState>> {
    // Touch the row first: on SQLite that takes the write lock before anything is read (a
    // read-then-write transaction could deadlock with another); on PostgreSQL it locks the
    // row, so two replicas cannot both see the old state and both announce the change.
    let touched = sqlx::query("UPDATE connections SET updated_at = $2 WHERE id = $1")
        .bind(id.as_str())
        .bind(ms(now))
        .execute(&mut **tx)
        .await?;
    if touched.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("connection {id}")));
    }
    let row = sqlx::query("SELECT state, provider FROM connections WHERE id = $1")
        .bind(id.as_str())
        .fetch_one(&mut **tx)
        .await?;
    let before: String = row.try_get("state")?;
    let provider: String = row.try_get("provider")?;
    let before: ConnectionState = before
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("connection {id} has state {before:?}")))?;
    sqlx::query("UPDATE connections SET state = $2, problems = $3 WHERE id = $1")
        .bind(id.as_str())
        .bind(state.as_str())
        .bind(problems_to_json(problems)?)
        .execute(&mut **tx)
        .await?;
    let changed = before != state;
    if changed {
        // The announcement is written with the change (hardening rule 16): both or neither.
        let body = tokenwarden_core::webhook::Envelope::state_changed(
            id.as_str(),
            &provider,
            before,
            state,
            problems,
            now,
        )
        .to_json();
        enqueue(&mut **tx, &body, now).await?;
    }
    Ok(changed.then_some(before))
}

enum Claim<'a> {
    /// Every provider's connections due at this time (`active` or `degraded`).
    Due(DateTime<Utc>),
    /// One provider's `active` connections with the earliest deadlines no later than the
    /// second, due or not, whose token has lived a quarter of its life at the third.
    Earliest(&'a ProviderId, DateTime<Utc>, DateTime<Utc>),
}

impl SqlStore {
    /// Event rows as events.
    fn events_from(rows: &[AnyRow]) -> Result<Vec<Event>> {
        rows.iter()
            .map(|r| {
                let c: Option<String> = r.try_get("connection_id")?;
                Ok(Event {
                    id: r.try_get("id")?,
                    connection: c.map(|c| parse_id("connection id", c)).transpose()?,
                    at: from_ms(r.try_get("at")?)?,
                    kind: r.try_get("kind")?,
                    message: r.try_get("message")?,
                    details: unjson::<BTreeMap<String, EventValue>>(
                        "details",
                        &r.try_get::<String, _>("details")?,
                    )?,
                })
            })
            .collect()
    }

    /// Takes the leases of up to `limit` connections that `which` selects, earliest deadline
    /// first, skipping rows another owner holds (`FOR UPDATE … SKIP LOCKED` on PostgreSQL).
    async fn claim_refreshes(
        &self,
        which: Claim<'_>,
        limit: i64,
        owner: &str,
        ttl: Duration,
    ) -> Result<Vec<(ConnectionId, i64)>> {
        let db_now = self.now_sql();
        let of = match self.backend {
            Backend::Postgres => "FOR UPDATE OF t SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let filter = match which {
            Claim::Due(_) => "c.next_refresh_at <= $3 AND c.state IN ('active', 'degraded')",
            Claim::Earliest(..) => {
                "c.provider = $3 AND c.state = 'active' AND c.next_refresh_at <= $5
                 AND (t.expires_at IS NULL OR ($6 - t.issued_at) * 4 >= t.expires_at - t.issued_at)"
            }
        };
        let sql = format!(
            "UPDATE token_sets SET lease_owner = $1, lease_until = {db_now} + $2
             WHERE lease_until <= {db_now} AND connection_id IN (
               SELECT t.connection_id FROM token_sets t JOIN connections c ON c.id = t.connection_id
               WHERE c.next_refresh_at IS NOT NULL AND {filter} AND t.lease_until <= {db_now}
               ORDER BY c.next_refresh_at, t.connection_id LIMIT $4 {of})
             RETURNING connection_id, version"
        );
        let q = sqlx::query(&sql).bind(owner).bind(ttl_ms(ttl));
        let q = match which {
            Claim::Due(now) => q.bind(ms(now)).bind(limit),
            Claim::Earliest(provider, until, now) => q
                .bind(provider.as_str())
                .bind(limit)
                .bind(ms(until))
                .bind(ms(now)),
        };
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok((
                    parse_id("connection id", r.try_get("connection_id")?)?,
                    r.try_get("version")?,
                ))
            })
            .collect()
    }
}

impl SqlStore {
    /// Decodes rows with `decode`; when a value is encrypted under a key id this replica's
    /// keyring lacks (another replica rotated to a new key), reloads the keyring from where it
    /// came from and decodes again, and otherwise says what to do.
    async fn decoded<T>(&self, decode: impl Fn() -> Result<T>) -> Result<T> {
        match decode() {
            Err(e) => match e.missing_key_id().map(str::to_owned) {
                Some(id) => {
                    if self.reload_for(&id).await {
                        decode().map_err(|e| self.explain_missing_key(e))
                    } else {
                        Err(self.explain_missing_key(e))
                    }
                }
                None => Err(e),
            },
            ok => ok,
        }
    }

    /// Reloads the keyring when the loader's holds `key_id`; true when the keyring now does.
    async fn reload_for(&self, key_id: &str) -> bool {
        let _one = self.reloading.lock().await;
        if self.ring().has(key_id) {
            return true; // reloaded meanwhile
        }
        let Some(load) = self
            .loader
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(|l| l.load.clone())
        else {
            return false;
        };
        match load() {
            Ok(ring) if ring.has(key_id) => {
                let ids = ring.key_ids().join(", ");
                match self.set_keyring(ring).await {
                    Ok(()) => {
                        tracing::info!(key_id, key_ids = %ids, "met a value under a key this replica did not have; reloaded the keyring");
                        true
                    }
                    Err(e) => {
                        tracing::error!(key_id, error = %e, "reloaded keys were refused; keeping the keys in use");
                        false
                    }
                }
            }
            Ok(_) => false,
            Err(e) => {
                tracing::error!(key_id, error = %e, "cannot reload the keyring");
                false
            }
        }
    }

    /// Adds what to do to an error about a key this replica does not hold.
    fn explain_missing_key(&self, e: StoreError) -> StoreError {
        let Some(id) = e.missing_key_id().map(str::to_owned) else {
            return e;
        };
        let source = self
            .loader
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or_else(
                || "this replica's keys (the key file or TOKENWARDEN_MASTER_KEY it was started with)".to_string(),
                |l| l.source.clone(),
            );
        match e {
            StoreError::DecryptFailed {
                table,
                column,
                row,
                reason,
            } => StoreError::DecryptFailed {
                table,
                column,
                row,
                reason: format!(
                    "{reason}. Keys come from {source}, and key {id} is not there: another replica \
                     probably rotated to it (`tokenwarden keys rotate` writes the new key to its own key file). \
                     Copy the line starting `{id}:` from that replica's key file into this replica's, \
                     which reloads it at once (or restart it with that key)"
                ),
            },
            other => other,
        }
    }

    async fn seal_tokens(&self, conn: &ConnectionId, set: &TokenSet) -> Result<SealedTokens> {
        let at = self
            .seal_secret(
                &Place::new("token_sets", "access_token_ct", conn.as_str()),
                &set.access_token,
            )
            .await?;
        let rt = match &set.refresh_token {
            Some(rt) => Some(
                self.seal_secret(
                    &Place::new("token_sets", "refresh_token_ct", conn.as_str()),
                    rt,
                )
                .await?,
            ),
            None => None,
        };
        let ts = match &set.token_secret {
            Some(ts) => Some(
                self.seal_secret(
                    &Place::new("token_sets", "token_secret_ct", conn.as_str()),
                    ts,
                )
                .await?,
            ),
            None => None,
        };
        Ok(SealedTokens {
            at,
            rt,
            ts,
            scopes: json(&set.scopes)?,
        })
    }
}

#[async_trait]
impl Apps for SqlStore {
    async fn put_app(&self, app: &App) -> Result<()> {
        let key = app_row_key(&app.provider, &app.id);
        let ct = self
            .seal_secret(
                &Place::new("apps", "client_secret_ct", &key),
                &app.client_secret,
            )
            .await?;
        let developer_token_ct = match &app.developer_token {
            Some(t) => Some(
                self.seal_secret(&Place::new("apps", "developer_token_ct", &key), t)
                    .await?,
            ),
            None => None,
        };
        sqlx::query(
            "INSERT INTO apps (row_key, provider, app_id, client_id, client_secret_ct, redirect_uri, created_at, updated_at, environment, developer_token_ct, region, user_agent)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (row_key) DO UPDATE SET client_id = excluded.client_id, client_secret_ct = excluded.client_secret_ct,
               redirect_uri = excluded.redirect_uri, updated_at = excluded.updated_at, environment = excluded.environment,
               developer_token_ct = excluded.developer_token_ct, region = excluded.region,
               user_agent = excluded.user_agent",
        )
        .bind(&key)
        .bind(app.provider.as_str())
        .bind(app.id.as_str())
        .bind(&app.client_id)
        .bind(ct)
        .bind(&app.redirect_uri)
        .bind(ms(app.created_at))
        .bind(ms(app.updated_at))
        .bind(app.environment.as_str())
        .bind(developer_token_ct)
        .bind(app.region.clone())
        .bind(app.user_agent.clone())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_app(&self, provider: &ProviderId, app: &AppId) -> Result<Option<App>> {
        let row = sqlx::query("SELECT * FROM apps WHERE row_key = $1")
            .bind(app_row_key(provider, app))
            .fetch_optional(&self.pool)
            .await?;
        self.decoded(|| row.as_ref().map(|r| self.row_to_app(r)).transpose())
            .await
    }

    async fn list_apps(&self, provider: Option<&ProviderId>) -> Result<Vec<App>> {
        let rows = match provider {
            Some(p) => {
                sqlx::query("SELECT * FROM apps WHERE provider = $1 ORDER BY row_key")
                    .bind(p.as_str())
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM apps ORDER BY row_key")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        self.decoded(|| rows.iter().map(|r| self.row_to_app(r)).collect())
            .await
    }

    async fn delete_app(&self, provider: &ProviderId, app: &AppId) -> Result<bool> {
        let r = sqlx::query("DELETE FROM apps WHERE row_key = $1")
            .bind(app_row_key(provider, app))
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn raise_app_problem(
        &self,
        provider: &ProviderId,
        app: &AppId,
        p: &Problem,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO app_problems (provider, app_id, code, title, fix, since) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (provider, app_id, code) DO UPDATE SET title = excluded.title, fix = excluded.fix",
        )
        .bind(provider.as_str())
        .bind(app.as_str())
        .bind(p.code.as_str())
        .bind(&p.title)
        .bind(&p.fix)
        .bind(ms(p.since))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn clear_app_problem(
        &self,
        provider: &ProviderId,
        app: &AppId,
        code: &str,
    ) -> Result<bool> {
        let r = sqlx::query(
            "DELETE FROM app_problems WHERE provider = $1 AND app_id = $2 AND code = $3",
        )
        .bind(provider.as_str())
        .bind(app.as_str())
        .bind(code)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn app_problems(&self, provider: &ProviderId, app: &AppId) -> Result<Vec<Problem>> {
        let rows = sqlx::query("SELECT code, title, fix, since FROM app_problems WHERE provider = $1 AND app_id = $2 ORDER BY since, code")
            .bind(provider.as_str())
            .bind(app.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Problem {
                    code: problem_code(r.try_get("code")?)?,
                    title: r.try_get("title")?,
                    fix: r.try_get("fix")?,
                    since: from_ms(r.try_get("since")?)?,
                })
            })
            .collect()
    }
}

#[async_trait]
impl Connections for SqlStore {
    async fn put_connection(&self, c: &Connection) -> Result<()> {
        sqlx::query(
            "INSERT INTO connections (id, provider, app_id, state, environment, api_base, account_ids, scopes, problems, created_at, updated_at, account, end_user, region)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
             ON CONFLICT (id) DO UPDATE SET provider = excluded.provider, app_id = excluded.app_id, state = excluded.state,
               environment = excluded.environment, api_base = excluded.api_base, account_ids = excluded.account_ids,
               scopes = excluded.scopes, problems = excluded.problems, updated_at = excluded.updated_at,
               account = excluded.account, end_user = excluded.end_user, region = excluded.region",
        )
        .bind(c.id.as_str())
        .bind(c.provider.as_str())
        .bind(c.app.as_str())
        .bind(c.state.as_str())
        .bind(c.environment.as_str())
        .bind(&c.api_base)
        .bind(json(&c.account_ids)?)
        .bind(json(&c.scopes)?)
        .bind(problems_to_json(&c.problems)?)
        .bind(ms(c.created_at))
        .bind(ms(c.updated_at))
        .bind(c.account.as_ref().map(json).transpose()?)
        .bind(c.end_user.clone())
        .bind(c.region.clone())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_connection(&self, id: &ConnectionId) -> Result<Option<Connection>> {
        sqlx::query(&format!(
            "SELECT {CONNECTION_COLS} FROM connections WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?
        .map(|r| Self::row_to_connection(&r))
        .transpose()
    }

    async fn list_connections(&self) -> Result<Vec<Connection>> {
        let rows = sqlx::query(&format!(
            "SELECT {CONNECTION_COLS} FROM connections ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::row_to_connection).collect()
    }

    async fn set_state(
        &self,
        id: &ConnectionId,
        state: ConnectionState,
        problems: &[Problem],
        now: DateTime<Utc>,
    ) -> Result<Option<ConnectionState>> {
        let mut tx = self.pool.begin().await?;
        let left = set_state_in(&mut tx, id, state, problems, now).await?;
        tx.commit().await?;
        Ok(left)
    }

    async fn delete_connection(&self, id: &ConnectionId) -> Result<bool> {
        let r = sqlx::query("DELETE FROM connections WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn set_next_probe(&self, id: &ConnectionId, at: Option<DateTime<Utc>>) -> Result<()> {
        let r = sqlx::query("UPDATE connections SET next_probe_at = $2 WHERE id = $1")
            .bind(id.as_str())
            .bind(at.map(ms))
            .execute(&self.pool)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("connection {id}")));
        }
        Ok(())
    }

    async fn due_probes(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<ConnectionId>> {
        let rows = sqlx::query(
            "SELECT id FROM connections WHERE next_probe_at IS NOT NULL AND next_probe_at <= $1 ORDER BY next_probe_at, id LIMIT $2",
        )
        .bind(ms(now))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| parse_id("connection id", r.try_get("id")?))
            .collect()
    }

    async fn set_account(
        &self,
        id: &ConnectionId,
        account: &tokenwarden_core::connection::Account,
    ) -> Result<()> {
        sqlx::query("UPDATE connections SET account = $2 WHERE id = $1")
            .bind(id.as_str())
            .bind(json(account)?)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn get_tokens(&self, conn: &ConnectionId) -> Result<Option<StoredTokens>> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLS} FROM token_sets WHERE connection_id = $1"
        ))
        .bind(conn.as_str())
        .fetch_optional(&self.pool)
        .await?;
        self.decoded(|| {
            row.as_ref()
                .map(|r| self.row_to_tokens(conn.as_str(), r))
                .transpose()
        })
        .await
    }

    async fn token_expiries(&self) -> Result<Vec<(ConnectionId, Option<DateTime<Utc>>)>> {
        sqlx::query("SELECT connection_id, expires_at FROM token_sets ORDER BY connection_id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                let at: Option<i64> = r.try_get("expires_at")?;
                Ok((
                    parse_id("connection id", r.try_get("connection_id")?)?,
                    at.map(from_ms).transpose()?,
                ))
            })
            .collect()
    }

    async fn put_initial_tokens(
        &self,
        conn: &ConnectionId,
        set: &TokenSet,
    ) -> Result<StoredTokens> {
        let s = self.seal_tokens(conn, set).await?;
        let row = sqlx::query(
            "INSERT INTO token_sets (connection_id, access_token_ct, refresh_token_ct, token_type, scopes, issued_at, expires_at,
               refresh_expires_at, token_secret_ct, version, lease_owner, lease_until)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, NULL, 0)
             ON CONFLICT (connection_id) DO UPDATE SET access_token_ct = excluded.access_token_ct,
               refresh_token_ct = excluded.refresh_token_ct, token_secret_ct = excluded.token_secret_ct, token_type = excluded.token_type, scopes = excluded.scopes,
               issued_at = excluded.issued_at, expires_at = excluded.expires_at, refresh_expires_at = excluded.refresh_expires_at,
               version = token_sets.version + 1, lease_owner = NULL, lease_until = 0
             RETURNING version",
        )
        .bind(conn.as_str())
        .bind(s.at)
        .bind(s.rt)
        .bind(set.token_type.clone())
        .bind(s.scopes)
        .bind(ms(set.issued_at))
        .bind(set.expires_at.map(ms))
        .bind(set.refresh_expires_at.map(ms))
        .bind(s.ts)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => StoreError::NotFound(format!("connection {conn}")),
            other => other,
        })?;
        Ok(StoredTokens {
            set: set.clone(),
            version: row.try_get("version")?,
        })
    }
}

#[async_trait]
impl Refreshes for SqlStore {
    async fn set_next_refresh(&self, id: &ConnectionId, at: Option<DateTime<Utc>>) -> Result<()> {
        let r = sqlx::query("UPDATE connections SET next_refresh_at = $2 WHERE id = $1")
            .bind(id.as_str())
            .bind(at.map(ms))
            .execute(&self.pool)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("connection {id}")));
        }
        Ok(())
    }

    async fn next_refresh_deadline(&self) -> Result<Option<DateTime<Utc>>> {
        let r = sqlx::query(
            "SELECT MIN(next_refresh_at) AS m FROM connections WHERE next_refresh_at IS NOT NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        opt_from_ms(r.try_get("m")?)
    }

    async fn acquire_refresh_lease(
        &self,
        conn: &ConnectionId,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        let now = self.now_sql();
        let row = sqlx::query(&format!(
            "UPDATE token_sets SET lease_owner = $2, lease_until = {now} + $3
             WHERE connection_id = $1 AND (lease_until <= {now} OR lease_owner IS NULL OR lease_owner = $2)
             RETURNING version, lease_until, refresh_sent_by, refresh_sent_at"
        ))
        .bind(conn.as_str())
        .bind(owner)
        .bind(ttl_ms(ttl))
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => {
                let until: i64 = r.try_get("lease_until")?;
                let sent_by: Option<String> = r.try_get("refresh_sent_by")?;
                let sent_at: Option<i64> = r.try_get("refresh_sent_at")?;
                let unresolved = match (sent_by, sent_at) {
                    (Some(by), Some(at)) => Some(SentRefresh {
                        by,
                        at: from_ms(at)?,
                    }),
                    _ => None,
                };
                Ok(Some(Lease {
                    connection: conn.clone(),
                    owner: owner.to_string(),
                    version: r.try_get("version")?,
                    until: from_ms(until)?,
                    taken_at: from_ms(until.saturating_sub(ttl_ms(ttl)))?,
                    unresolved,
                }))
            }
            None => {
                let exists =
                    sqlx::query("SELECT 1 AS one FROM token_sets WHERE connection_id = $1")
                        .bind(conn.as_str())
                        .fetch_optional(&self.pool)
                        .await?;
                match exists {
                    Some(_) => Ok(None),
                    None => Err(StoreError::NotFound(format!(
                        "token set of connection {conn}"
                    ))),
                }
            }
        }
    }

    async fn commit_refresh(
        &self,
        lease: &Lease,
        new: &TokenSet,
        next_refresh: Option<DateTime<Utc>>,
    ) -> Result<StoredTokens> {
        let s = self.seal_tokens(&lease.connection, new).await?;
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            // The token version is the fence: an answer from the platform is stored unless a
            // newer token was stored meanwhile, even if this holder's lease lapsed (a paused
            // process) and another took it over. With rotating refresh tokens the platform
            // answers only one of them; throwing that answer away would lose the grant.
            "UPDATE token_sets SET access_token_ct = $3, refresh_token_ct = $4, token_type = $5, scopes = $6, issued_at = $7,
               expires_at = $8, refresh_expires_at = $9, token_secret_ct = $10, version = version + 1, lease_owner = NULL, lease_until = 0,
               refresh_sent_by = NULL, refresh_sent_at = NULL
             WHERE connection_id = $1 AND version = $2
             RETURNING version",
        )
        .bind(lease.connection.as_str())
        .bind(lease.version)
        .bind(s.at)
        .bind(s.rt)
        .bind(new.token_type.clone())
        .bind(s.scopes)
        .bind(ms(new.issued_at))
        .bind(new.expires_at.map(ms))
        .bind(new.refresh_expires_at.map(ms))
        .bind(s.ts)
        .fetch_optional(&mut *tx)
        .await?;
        match row {
            Some(r) => {
                let version = r.try_get("version")?;
                sqlx::query("UPDATE connections SET next_refresh_at = $2 WHERE id = $1")
                    .bind(lease.connection.as_str())
                    .bind(next_refresh.map(ms))
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(StoredTokens {
                    set: new.clone(),
                    version,
                })
            }
            None => Err(StoreError::Fenced {
                connection: lease.connection.to_string(),
                version: lease.version,
            }),
        }
    }

    async fn record_refresh_failure(
        &self,
        lease: &Lease,
        state: ConnectionState,
        problems: &[Problem],
        next_refresh: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let db_now = self.now_sql();
        let mut tx = self.pool.begin().await?;
        // The token row first (the write lock on SQLite, the row lock on PostgreSQL): a commit of
        // a newer version cannot slip in between this check and the state written below.
        let released = sqlx::query(&format!(
            "UPDATE token_sets SET lease_owner = NULL, lease_until = 0, refresh_sent_by = NULL, refresh_sent_at = NULL
             WHERE connection_id = $1 AND version = $2
               AND (lease_owner IS NULL OR lease_owner = $3 OR lease_until <= {db_now})"
        ))
        .bind(lease.connection.as_str())
        .bind(lease.version)
        .bind(&lease.owner)
        .execute(&mut *tx)
        .await?;
        if released.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        set_state_in(&mut tx, &lease.connection, state, problems, now).await?;
        sqlx::query("UPDATE connections SET next_refresh_at = $2 WHERE id = $1")
            .bind(lease.connection.as_str())
            .bind(next_refresh.map(ms))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn mark_refresh_sent(&self, lease: &Lease) -> Result<bool> {
        let now = self.now_sql();
        let marked = sqlx::query(&format!(
            "UPDATE token_sets SET refresh_sent_by = $2, refresh_sent_at = {now}
             WHERE connection_id = $1 AND lease_owner = $2 AND version = $3 AND lease_until > {now}"
        ))
        .bind(lease.connection.as_str())
        .bind(&lease.owner)
        .bind(lease.version)
        .execute(&self.pool)
        .await?;
        Ok(marked.rows_affected() == 1)
    }

    async fn release_lease(&self, lease: &Lease) -> Result<()> {
        sqlx::query(
            // The holder gives up a lease it knows the outcome of: a refresh it sent is settled.
            // (Only its own: one that waited for another holder's answer leaves that mark.)
            "UPDATE token_sets SET lease_owner = NULL, lease_until = 0,
               refresh_sent_at = CASE WHEN refresh_sent_by = $2 THEN NULL ELSE refresh_sent_at END,
               refresh_sent_by = CASE WHEN refresh_sent_by = $2 THEN NULL ELSE refresh_sent_by END
             WHERE connection_id = $1 AND lease_owner = $2 AND version = $3",
        )
        .bind(lease.connection.as_str())
        .bind(&lease.owner)
        .bind(lease.version)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn claim_due_refreshes(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        owner: &str,
        ttl: Duration,
    ) -> Result<Vec<(ConnectionId, i64)>> {
        self.claim_refreshes(Claim::Due(now), limit, owner, ttl)
            .await
    }

    async fn refresh_deadlines(
        &self,
        provider: &ProviderId,
        limit: i64,
    ) -> Result<Vec<DateTime<Utc>>> {
        let rows = sqlx::query(
            "SELECT next_refresh_at FROM connections
             WHERE provider = $1 AND next_refresh_at IS NOT NULL AND state = 'active'
             ORDER BY next_refresh_at LIMIT $2",
        )
        .bind(provider.as_str())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| from_ms(r.try_get("next_refresh_at")?))
            .collect()
    }

    async fn crowd_plan(
        &self,
        provider: &ProviderId,
        every: Duration,
        limit: i64,
    ) -> Result<Option<CrowdPlan>> {
        // The k-th deadline (from 0, earliest first) must start k steps earlier; the crowd starts
        // at the earliest of those, and the latest deadline giving it is the crowd's end (ties go
        // to the later deadline, as in policy::crowd_plan).
        let step = i64::try_from(every.as_micros()).unwrap_or(i64::MAX / 4);
        let row = sqlx::query(
            "SELECT until, latest FROM (
               SELECT next_refresh_at AS until,
                      next_refresh_at * 1000 - (ROW_NUMBER() OVER (ORDER BY next_refresh_at) - 1) * $2 AS latest
               FROM (SELECT next_refresh_at FROM connections
                     WHERE provider = $1 AND next_refresh_at IS NOT NULL AND state = 'active'
                     ORDER BY next_refresh_at LIMIT $3) AS upcoming
             ) AS plan
             ORDER BY latest ASC, until DESC LIMIT 1",
        )
        .bind(provider.as_str())
        .bind(step)
        .bind(limit)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let latest: i64 = r.try_get("latest")?;
        Ok(Some(CrowdPlan {
            start: DateTime::from_timestamp_micros(latest).unwrap_or(DateTime::<Utc>::MIN_UTC),
            until: from_ms(r.try_get("until")?)?,
        }))
    }

    async fn claim_earliest_refreshes(
        &self,
        provider: &ProviderId,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: i64,
        owner: &str,
        ttl: Duration,
    ) -> Result<Vec<(ConnectionId, i64)>> {
        self.claim_refreshes(Claim::Earliest(provider, until, now), limit, owner, ttl)
            .await
    }
}

#[async_trait]
impl Authorizations for SqlStore {
    async fn put_pending(&self, p: &PendingAuthorization) -> Result<()> {
        let v = match &p.pkce_verifier {
            Some(v) => Some(
                self.seal_secret(
                    &Place::new(
                        "pending_authorizations",
                        "verifier_ct",
                        p.state_hash.as_str(),
                    ),
                    v,
                )
                .await?,
            ),
            None => None,
        };
        sqlx::query(&format!("INSERT INTO pending_authorizations ({PENDING_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"))
            .bind(p.state_hash.as_str())
            .bind(p.provider.as_str())
            .bind(p.app.as_str())
            .bind(p.connection.as_str())
            .bind(&p.redirect_uri)
            .bind(v)
            .bind(json(&p.scopes)?)
            .bind(p.browser_hash.as_str())
            .bind(ms(p.created_at))
            .bind(ms(p.expires_at))
            .bind(p.session.clone())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn consume_pending(
        &self,
        state_hash: &Sha256Hex,
        now: DateTime<Utc>,
    ) -> Result<Option<PendingAuthorization>> {
        // One statement: two racing callbacks cannot both get the row (hardening rule 1). An
        // expired row is deleted too and answered with None.
        let row = sqlx::query(&format!(
            "DELETE FROM pending_authorizations WHERE state_hash = $1 RETURNING {PENDING_COLS}"
        ))
        .bind(state_hash.as_str())
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => {
                let p = self.decoded(|| self.row_to_pending(&r)).await?;
                Ok((p.expires_at > now).then_some(p))
            }
            None => Ok(None),
        }
    }

    async fn put_connect_session(&self, c: &ConnectSession) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO connect_sessions ({SESSION_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ))
        .bind(&c.id)
        .bind(c.token_hash.as_str())
        .bind(c.provider.as_str())
        .bind(c.connection.as_str())
        .bind(c.app.as_ref().map(|a| a.as_str().to_string()))
        .bind(c.end_user.clone())
        .bind(c.return_to.clone())
        .bind(json(&c.scopes)?)
        .bind(i64::from(c.allow_account_change))
        .bind(&c.created_by)
        .bind(ms(c.created_at))
        .bind(ms(c.expires_at))
        .bind(c.used_at.map(ms))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn use_connect_session(
        &self,
        token_hash: &Sha256Hex,
        now: DateTime<Utc>,
    ) -> Result<SessionUse> {
        // One conditional statement: of two racing visits, one sets used_at, the other finds it
        // set (single use without a transaction).
        let row = sqlx::query(&format!(
            "UPDATE connect_sessions SET used_at = $2
             WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 RETURNING {SESSION_COLS}"
        ))
        .bind(token_hash.as_str())
        .bind(ms(now))
        .fetch_optional(&self.pool)
        .await?;
        if let Some(r) = row {
            return Ok(SessionUse::Fresh(Self::row_to_session(&r)?));
        }
        // The update missed: say why. (Never Fresh here: a session usable a moment ago that the
        // update did not take was taken by someone else.)
        Ok(match self.find_connect_session(token_hash, now).await? {
            SessionUse::Fresh(s) => SessionUse::Used(s),
            other => other,
        })
    }

    async fn find_connect_session(
        &self,
        token_hash: &Sha256Hex,
        now: DateTime<Utc>,
    ) -> Result<SessionUse> {
        let row = sqlx::query(&format!(
            "SELECT {SESSION_COLS} FROM connect_sessions WHERE token_hash = $1"
        ))
        .bind(token_hash.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row.map(|r| Self::row_to_session(&r)).transpose()? {
            Some(s) if s.used_at.is_some() => SessionUse::Used(s),
            Some(s) if s.expires_at <= now => SessionUse::Expired(s),
            Some(s) => SessionUse::Fresh(s),
            None => SessionUse::Unknown,
        })
    }

    async fn get_connect_session(&self, id: &str) -> Result<Option<ConnectSession>> {
        sqlx::query(&format!(
            "SELECT {SESSION_COLS} FROM connect_sessions WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| Self::row_to_session(&r))
        .transpose()
    }
}

#[async_trait]
impl Events for SqlStore {
    async fn append_event(&self, e: &NewEvent) -> Result<i64> {
        e.check()?;
        let row = sqlx::query("INSERT INTO events (connection_id, at, kind, message, details) VALUES ($1, $2, $3, $4, $5) RETURNING id")
            .bind(e.connection.as_ref().map(|c| c.as_str().to_string()))
            .bind(ms(e.at))
            .bind(e.kind)
            .bind(&e.message)
            .bind(json(&e.details)?)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("id")?)
    }

    async fn list_events(
        &self,
        conn: Option<&ConnectionId>,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<Event>> {
        let rows = match conn {
            Some(c) => sqlx::query(
                "SELECT * FROM events WHERE connection_id = $1 AND id > $2 ORDER BY id LIMIT $3",
            )
            .bind(c.as_str())
            .bind(after_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?,
            None => {
                sqlx::query("SELECT * FROM events WHERE id > $1 ORDER BY id LIMIT $2")
                    .bind(after_id)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        Self::events_from(&rows)
    }

    async fn latest_events(&self, conn: &ConnectionId, limit: i64) -> Result<Vec<Event>> {
        let rows = sqlx::query(
            "SELECT * FROM (SELECT * FROM events WHERE connection_id = $1 ORDER BY id DESC LIMIT $2) AS newest ORDER BY id",
        )
        .bind(conn.as_str())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Self::events_from(&rows)
    }
}

#[async_trait]
impl Webhooks for SqlStore {
    async fn put_webhook(&self, w: &WebhookEndpoint) -> Result<()> {
        let ct = self
            .seal_secret(
                &Place::new("webhooks", "secret_ct", &w.id),
                &w.signing_secret,
            )
            .await?;
        sqlx::query(
            "INSERT INTO webhooks (id, url, secret_ct, enabled, created_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO UPDATE SET url = excluded.url, secret_ct = excluded.secret_ct, enabled = excluded.enabled",
        )
        .bind(&w.id)
        .bind(&w.url)
        .bind(ct)
        .bind(i64::from(w.enabled))
        .bind(ms(w.created_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_webhook(&self, id: &str) -> Result<Option<WebhookEndpoint>> {
        let row = sqlx::query("SELECT * FROM webhooks WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        self.decoded(|| row.as_ref().map(|r| self.row_to_webhook(r)).transpose())
            .await
    }

    async fn list_webhooks(&self) -> Result<Vec<WebhookEndpoint>> {
        let rows = sqlx::query("SELECT * FROM webhooks ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        self.decoded(|| rows.iter().map(|r| self.row_to_webhook(r)).collect())
            .await
    }

    async fn delete_webhook(&self, id: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM webhooks WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn enqueue_deliveries(&self, payload: &str, now: DateTime<Utc>) -> Result<Vec<String>> {
        enqueue(&self.pool, payload, now).await
    }

    async fn claim_due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        ttl: Duration,
    ) -> Result<Vec<Delivery>> {
        let db_now = self.now_sql();
        let skip = self.skip_locked();
        let rows = sqlx::query(&format!(
            "UPDATE webhook_deliveries SET claimed_until = {db_now} + $1, attempts = attempts + 1
             WHERE claimed_until <= {db_now} AND id IN (
               SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $2 AND claimed_until <= {db_now}
               ORDER BY next_attempt_at, id LIMIT $3 {skip})
             RETURNING {DELIVERY_COLS}"
        ))
        .bind(ttl_ms(ttl))
        .bind(ms(now))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<Delivery> = rows
            .iter()
            .map(Self::row_to_delivery)
            .collect::<Result<_>>()?;
        out.sort_by(|a, b| (a.next_attempt_at, &a.id).cmp(&(b.next_attempt_at, &b.id)));
        Ok(out)
    }

    async fn mark_delivered(&self, id: &str) -> Result<()> {
        let r = sqlx::query("UPDATE webhook_deliveries SET status = 'delivered', claimed_until = 0, last_error = NULL WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("delivery {id}")));
        }
        Ok(())
    }

    async fn mark_failed(
        &self,
        id: &str,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let (status, next) = match retry_at {
            Some(t) => (DeliveryStatus::Pending, Some(ms(t))),
            None => (DeliveryStatus::Dead, None),
        };
        let error: String = error.chars().take(500).collect();
        let r = sqlx::query(
            "UPDATE webhook_deliveries SET status = $2, next_attempt_at = COALESCE($3, next_attempt_at), last_error = $4, claimed_until = 0
             WHERE id = $1",
        )
        .bind(id)
        .bind(status.as_str())
        .bind(next)
        .bind(error)
        .execute(&self.pool)
        .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("delivery {id}")));
        }
        Ok(())
    }

    async fn list_deliveries(&self, webhook: &str, limit: i64) -> Result<Vec<Delivery>> {
        sqlx::query(&format!(
            "SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE webhook_id = $1
             ORDER BY created_at DESC, id DESC LIMIT $2"
        ))
        .bind(webhook)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(Self::row_to_delivery)
        .collect()
    }

    async fn get_delivery(&self, id: &str) -> Result<Option<Delivery>> {
        sqlx::query(&format!(
            "SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| Self::row_to_delivery(&r))
        .transpose()
    }
}

#[async_trait]
impl ApiKeys for SqlStore {
    async fn create_api_key(
        &self,
        role: ApiKeyRole,
        label: &str,
        now: DateTime<Utc>,
    ) -> Result<(ApiKeyInfo, Secret)> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let id = hex(&rand::random::<[u8; 6]>());
        let key = Secret::new(format!(
            "tw_{id}_{}",
            b64.encode(rand::random::<[u8; 32]>())
        ));
        let hash = hex(&Sha256::digest(key.expose().as_bytes()));
        sqlx::query("INSERT INTO api_keys (id, key_hash, role, label, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, NULL)")
            .bind(&id)
            .bind(hash)
            .bind(role.as_str())
            .bind(label)
            .bind(ms(now))
            .execute(&self.pool)
            .await?;
        Ok((
            ApiKeyInfo {
                id,
                role,
                label: label.to_string(),
                created_at: from_ms(ms(now))?,
                revoked_at: None,
            },
            key,
        ))
    }

    async fn verify_api_key(&self, presented: &str) -> Result<Option<ApiKeyInfo>> {
        // Exactly one row with one column whether the id is known or not (NULL when not), then
        // the same hash and compare (against a dummy hash when there is no key): a wrong secret
        // for a known id takes as long as an unknown id, so timing does not tell which ids exist.
        // Only a match reads the rest of the row.
        let id = api_key_id(presented).unwrap_or_default();
        let stored: Option<String> = sqlx::query(
            "SELECT k.key_hash FROM (SELECT 1 AS probe) AS p LEFT JOIN api_keys AS k ON k.id = $1 AND k.revoked_at IS NULL",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await?
        .try_get("key_hash")?;
        if !api_key_matches(stored.as_deref(), presented) {
            return Ok(None);
        }
        sqlx::query("SELECT * FROM api_keys WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| Self::row_to_api_key(&row))
            .transpose()
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyInfo>> {
        let rows = sqlx::query("SELECT * FROM api_keys ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::row_to_api_key).collect()
    }

    async fn revoke_api_key(&self, id: &str, now: DateTime<Utc>) -> Result<bool> {
        let r =
            sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(id)
                .bind(ms(now))
                .execute(&self.pool)
                .await?;
        Ok(r.rows_affected() > 0)
    }
}

#[async_trait]
impl DashboardSessions for SqlStore {
    async fn put_dashboard_session(&self, d: &DashboardSession) -> Result<()> {
        sqlx::query(
            "INSERT INTO dashboard_sessions (token_hash, who, created_at, expires_at, last_used) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(d.token_hash.as_str())
        .bind(&d.who)
        .bind(ms(d.created_at))
        .bind(ms(d.expires_at))
        .bind(ms(d.last_used))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn use_dashboard_session(
        &self,
        token_hash: &Sha256Hex,
        now: DateTime<Utc>,
        idle: chrono::TimeDelta,
    ) -> Result<Option<DashboardSession>> {
        let most = self.greatest();
        let row = sqlx::query(&format!(
            "UPDATE dashboard_sessions SET last_used = {most}(last_used, $2)
             WHERE token_hash = $1 AND expires_at > $2 AND $2 - last_used <= $3
             RETURNING token_hash, who, created_at, expires_at, last_used"
        ))
        .bind(token_hash.as_str())
        .bind(ms(now))
        .bind(idle.num_milliseconds())
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => Ok(Some(DashboardSession {
                token_hash: Sha256Hex::from_hex(r.try_get::<String, _>("token_hash")?),
                who: r.try_get("who")?,
                created_at: from_ms(r.try_get("created_at")?)?,
                expires_at: from_ms(r.try_get("expires_at")?)?,
                last_used: from_ms(r.try_get("last_used")?)?,
            })),
            None => {
                // Idle or past its end (or never existed): ended, not just hidden.
                self.end_dashboard_session(token_hash).await?;
                Ok(None)
            }
        }
    }

    async fn end_dashboard_session(&self, token_hash: &Sha256Hex) -> Result<()> {
        sqlx::query("DELETE FROM dashboard_sessions WHERE token_hash = $1")
            .bind(token_hash.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn record_signin_failure(&self, keys: &[String], now: DateTime<Utc>) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for key in keys {
            sqlx::query("INSERT INTO signin_failures (limit_key, at) VALUES ($1, $2)")
                .bind(key)
                .bind(ms(now))
                .execute(&mut *tx)
                .await?;
            // A key's failures older than an hour limit nothing; keep its rows few.
            sqlx::query("DELETE FROM signin_failures WHERE limit_key = $1 AND at < $2")
                .bind(key)
                .bind(ms(now) - SIGNIN_FAILURES_KEPT_MS)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn signin_locked_until(
        &self,
        keys: &[String],
        limit: i64,
        window: chrono::TimeDelta,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        let mut until: Option<DateTime<Utc>> = None;
        for key in keys {
            // The `limit`-th newest failure inside the window: while it is in the window, the key
            // has `limit` failures in it.
            let row = sqlx::query(
                "SELECT at FROM signin_failures WHERE limit_key = $1 AND at > $2 AND at <= $3
                 ORDER BY at DESC LIMIT 1 OFFSET $4",
            )
            .bind(key)
            .bind(ms(now) - window.num_milliseconds())
            .bind(ms(now))
            .bind((limit - 1).max(0))
            .fetch_optional(&self.pool)
            .await?;
            if let Some(r) = row {
                let ends = from_ms(r.try_get::<i64, _>("at")? + window.num_milliseconds())?;
                until = Some(until.map_or(ends, |u| u.max(ends)));
            }
        }
        Ok(until)
    }

    async fn clear_signin_failures(&self, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM signin_failures WHERE limit_key = $1")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Encryption for SqlStore {
    fn keyring(&self) -> Keyring {
        (*self.ring()).clone()
    }

    fn set_key_loader(&self, loader: KeyLoader) {
        *self.loader.write().unwrap_or_else(|p| p.into_inner()) = Some(loader);
    }

    async fn set_keyring(&self, keys: Keyring) -> Result<()> {
        self.verify_keyring(&keys).await?;
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
        Ok(())
    }

    async fn reencrypt_all(&self, batch: i64) -> Result<RotationReport> {
        let mut report = RotationReport::default();
        self.reencrypt_column("apps", "row_key", "client_secret_ct", batch, &mut report)
            .await?;
        self.reencrypt_column("apps", "row_key", "developer_token_ct", batch, &mut report)
            .await?;
        self.reencrypt_column(
            "token_sets",
            "connection_id",
            "access_token_ct",
            batch,
            &mut report,
        )
        .await?;
        self.reencrypt_column(
            "token_sets",
            "connection_id",
            "refresh_token_ct",
            batch,
            &mut report,
        )
        .await?;
        self.reencrypt_column(
            "token_sets",
            "connection_id",
            "token_secret_ct",
            batch,
            &mut report,
        )
        .await?;
        self.reencrypt_column(
            "pending_authorizations",
            "state_hash",
            "verifier_ct",
            batch,
            &mut report,
        )
        .await?;
        self.reencrypt_column("webhooks", "id", "secret_ct", batch, &mut report)
            .await?;
        Ok(report)
    }

    async fn retire_old_keys(&self) -> Result<()> {
        let ring = self.ring();
        sqlx::query("UPDATE store_keys SET retired = 1 WHERE key_id <> $1")
            .bind(ring.current_id())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn key_status(&self) -> Result<Vec<KeyStatus>> {
        let rows = sqlx::query(
            "SELECT key_id, encryptions, retired FROM store_keys ORDER BY created_at, key_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(KeyStatus {
                    key_id: r.try_get("key_id")?,
                    encryptions: r.try_get("encryptions")?,
                    retired: r.try_get::<i64, _>("retired")? != 0,
                })
            })
            .collect()
    }
}

#[async_trait]
impl Coordination for SqlStore {
    fn backend(&self) -> Backend {
        self.backend
    }

    async fn take_rate_slot(
        &self,
        lanes: &[RateLane],
        after: Duration,
        within: Duration,
    ) -> Result<RateSlot> {
        // Rows are locked in key order, so two bookings over overlapping lanes cannot deadlock;
        // the first statement of the transaction is a write, so on SQLite it takes the write
        // lock before anything is read.
        let mut sorted: Vec<&RateLane> = lanes.iter().collect();
        sorted.sort_by(|a, b| a.key.cmp(&b.key));
        sorted.dedup_by(|a, b| a.key == b.key);
        if sorted.is_empty() {
            return Ok(RateSlot::Granted {
                wait: Duration::ZERO,
                slowed: false,
                at: SystemClock.now(),
            });
        }
        let db_now = self.now_sql();
        let upsert = format!(
            "INSERT INTO rate_lanes (lane, interval_ms, factor, next_free, hold_until) VALUES ($1, $2, 1.0, 0, 0)
             ON CONFLICT (lane) DO UPDATE SET interval_ms = excluded.interval_ms
             RETURNING factor, next_free, hold_until, {db_now} AS now"
        );
        let mut tx = self.pool.begin().await?;
        let mut seen = Vec::with_capacity(sorted.len());
        let mut now = 0i64;
        for lane in &sorted {
            let r = sqlx::query(&upsert)
                .bind(&lane.key)
                .bind(ttl_ms(lane.interval))
                .fetch_one(&mut *tx)
                .await?;
            let factor: f64 = r.try_get("factor")?;
            let next_free: i64 = r.try_get("next_free")?;
            let hold_until: i64 = r.try_get("hold_until")?;
            now = now.max(r.try_get("now")?);
            seen.push((lane, factor, next_free.max(hold_until)));
        }
        let earliest = now.saturating_add(ttl_ms(after).min(i64::MAX / 4));
        let slot = seen
            .iter()
            .map(|(_, _, free)| *free)
            .fold(earliest, i64::max);
        let wait = Duration::from_millis(u64::try_from(slot - now).unwrap_or(0));
        if slot - now > i64::try_from(within.as_millis()).unwrap_or(i64::MAX) {
            tx.commit().await?;
            return Ok(RateSlot::Refused { would_wait: wait });
        }
        let mut slowed = false;
        for (lane, factor, _) in &seen {
            let factor = if factor.is_finite() && *factor > 0.0 {
                factor.min(1.0)
            } else {
                1.0
            };
            slowed |= factor < 1.0;
            let spacing = lane.interval.as_secs_f64() * 1000.0 / factor;
            let next = slot.saturating_add(spacing.min(1e15).ceil() as i64);
            sqlx::query("UPDATE rate_lanes SET next_free = $2 WHERE lane = $1")
                .bind(&lane.key)
                .bind(next)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(RateSlot::Granted {
            wait,
            slowed,
            at: from_ms(slot)?,
        })
    }

    async fn rate_feedback(&self, lanes: &[String], feedback: RateFeedback) -> Result<()> {
        let db_now = self.now_sql();
        let (most, least) = (self.greatest(), self.least());
        for lane in lanes {
            match feedback {
                RateFeedback::Throttled { hold, min_factor } => {
                    sqlx::query(&format!(
                        "UPDATE rate_lanes SET factor = {most}(factor / 2, $2),
                           hold_until = {most}(hold_until, {db_now} + $3),
                           next_free = {most}(next_free, {db_now} + $3)
                         WHERE lane = $1"
                    ))
                    .bind(lane)
                    .bind(min_factor)
                    .bind(ttl_ms(hold))
                    .execute(&self.pool)
                    .await?;
                }
                RateFeedback::Slower { by, min_factor } => {
                    sqlx::query(&format!(
                        "UPDATE rate_lanes SET factor = {most}(factor * $2, $3) WHERE lane = $1"
                    ))
                    .bind(lane)
                    .bind(by)
                    .bind(min_factor)
                    .execute(&self.pool)
                    .await?;
                }
                RateFeedback::Recovered { step } => {
                    sqlx::query(&format!(
                        "UPDATE rate_lanes SET factor = {least}(factor + $2, 1.0) WHERE lane = $1 AND factor < 1.0"
                    ))
                    .bind(lane)
                    .bind(step)
                    .execute(&self.pool)
                    .await?;
                }
            }
        }
        Ok(())
    }

    async fn take_job_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let db_now = self.now_sql();
        let row = sqlx::query(&format!(
            "INSERT INTO job_leases (name, holder, expires_at) VALUES ($1, $2, {db_now} + $3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE job_leases.holder = excluded.holder OR job_leases.expires_at <= {db_now}
             RETURNING holder"
        ))
        .bind(name)
        .bind(holder)
        .bind(ttl_ms(ttl))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    async fn release_job_lease(&self, name: &str, holder: &str) -> Result<()> {
        sqlx::query("DELETE FROM job_leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn claim_alert(&self, key: &str, holder: &str, now: DateTime<Utc>) -> Result<bool> {
        let row = sqlx::query(
            "INSERT INTO alerts_sent (alert_key, holder, sent_at) VALUES ($1, $2, $3)
             ON CONFLICT (alert_key) DO NOTHING RETURNING alert_key",
        )
        .bind(key)
        .bind(holder)
        .bind(ms(now))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    async fn unclaim_alert(&self, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM alerts_sent WHERE alert_key = $1")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn breaker(&self, name: &str) -> Result<(BreakerRecord, DateTime<Utc>)> {
        let db_now = self.now_sql();
        let r = sqlx::query(&format!(
            "SELECT {db_now} AS now, b.failures, b.step, b.open_until, b.trial_until, b.version
             FROM (SELECT 1 AS one) AS o LEFT JOIN circuit_breakers b ON b.breaker = $1"
        ))
        .bind(name)
        .fetch_one(&self.pool)
        .await?;
        let now = from_ms(r.try_get("now")?)?;
        let Some(version) = r.try_get::<Option<i64>, _>("version")? else {
            return Ok((BreakerRecord::default(), now));
        };
        let at = |v: i64| (v > 0).then(|| from_ms(v)).transpose();
        let count = |c: &str| -> Result<u32> {
            Ok(u32::try_from(r.try_get::<i64, _>(c)?.max(0)).unwrap_or(u32::MAX))
        };
        Ok((
            BreakerRecord {
                state: tokenwarden_core::breaker::BreakerState {
                    failures: count("failures")?,
                    step: count("step")?,
                    open_until: at(r.try_get("open_until")?)?,
                    trial_until: at(r.try_get("trial_until")?)?,
                },
                version,
            },
            now,
        ))
    }

    async fn put_breaker(
        &self,
        name: &str,
        expected_version: i64,
        st: &tokenwarden_core::breaker::BreakerState,
    ) -> Result<bool> {
        let at = |t: Option<DateTime<Utc>>| t.map_or(0, ms);
        let done = if expected_version == 0 {
            sqlx::query(
                "INSERT INTO circuit_breakers (breaker, failures, step, open_until, trial_until, version)
                 VALUES ($1, $2, $3, $4, $5, 1) ON CONFLICT (breaker) DO NOTHING",
            )
            .bind(name)
            .bind(i64::from(st.failures))
            .bind(i64::from(st.step))
            .bind(at(st.open_until))
            .bind(at(st.trial_until))
            .execute(&self.pool)
            .await?
        } else {
            sqlx::query(
                "UPDATE circuit_breakers SET failures = $2, step = $3, open_until = $4, trial_until = $5, version = version + 1
                 WHERE breaker = $1 AND version = $6",
            )
            .bind(name)
            .bind(i64::from(st.failures))
            .bind(i64::from(st.step))
            .bind(at(st.open_until))
            .bind(at(st.trial_until))
            .bind(expected_version)
            .execute(&self.pool)
            .await?
        };
        Ok(done.rows_affected() == 1)
    }
}

#[async_trait]
impl Retention for SqlStore {
    async fn prune_events(&self, before: DateTime<Utc>, batch: i64) -> Result<u64> {
        let skip = self.skip_locked();
        self.delete_in_batches(
            &format!(
                "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE at < $1 LIMIT $2 {skip})"
            ),
            ms(before),
            batch,
        )
        .await
    }

    async fn prune_deliveries(&self, before: DateTime<Utc>, batch: i64) -> Result<u64> {
        // The status is checked again by the DELETE itself, so a row is only ever deleted in a
        // finished state (finished states are final, but the outbox is not to be trusted to it).
        let skip = self.skip_locked();
        self.delete_in_batches(
            &format!(
                "DELETE FROM webhook_deliveries WHERE status IN ('delivered', 'dead') AND id IN (
                   SELECT id FROM webhook_deliveries
                   WHERE status IN ('delivered', 'dead') AND created_at < $1 LIMIT $2 {skip})"
            ),
            ms(before),
            batch,
        )
        .await
    }

    async fn purge_expired_pending(&self, now: DateTime<Utc>) -> Result<u64> {
        // Anyone can start an authorization, so a flood of abandoned ones is deleted in bounded
        // statements too.
        let skip = self.skip_locked();
        let pending = self
            .delete_in_batches(
                &format!(
                    "DELETE FROM pending_authorizations WHERE expires_at <= $1 AND state_hash IN (
                   SELECT state_hash FROM pending_authorizations WHERE expires_at <= $1 LIMIT $2 {skip})"
                ),
                ms(now),
                PRUNE_BATCH,
            )
            .await?;
        let sessions = self
            .delete_in_batches(
                &format!(
                    "DELETE FROM connect_sessions WHERE expires_at <= $1 AND id IN (
                   SELECT id FROM connect_sessions WHERE expires_at <= $1 LIMIT $2 {skip})"
                ),
                ms(now - chrono::TimeDelta::days(1)),
                PRUNE_BATCH,
            )
            .await?;
        Ok(pending + sessions)
    }

    async fn purge_replica_state(
        &self,
        now: DateTime<Utc>,
        alerts_before: DateTime<Utc>,
    ) -> Result<u64> {
        let db_now = self.now_sql();
        let mut gone = 0;
        gone += sqlx::query(&format!(
            "DELETE FROM rate_lanes WHERE next_free < {db_now} - $1 AND hold_until < {db_now} - $1"
        ))
        .bind(RATE_LANE_IDLE_MS)
        .execute(&self.pool)
        .await?
        .rows_affected();
        gone += sqlx::query("DELETE FROM dashboard_sessions WHERE expires_at <= $1")
            .bind(ms(now))
            .execute(&self.pool)
            .await?
            .rows_affected();
        gone += sqlx::query("DELETE FROM signin_failures WHERE at < $1")
            .bind(ms(now) - SIGNIN_FAILURES_KEPT_MS)
            .execute(&self.pool)
            .await?
            .rows_affected();
        gone += sqlx::query("DELETE FROM alerts_sent WHERE sent_at < $1")
            .bind(ms(alerts_before))
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(gone)
    }
}

/// How long sign-in failures are kept (far longer than any lockout window).
const SIGNIN_FAILURES_KEPT_MS: i64 = 3_600_000;
/// A rate lane unused this long is forgotten (it starts again at the full rate).
const RATE_LANE_IDLE_MS: i64 = 3_600_000;

/// Rows deleted per statement when a caller does not choose: small enough that a statement is
/// over in milliseconds, so refreshes writing beside it are not held up.
const PRUNE_BATCH: i64 = 5_000;

impl SqlStore {
    /// Runs `delete` (a DELETE whose rows are picked by a subquery with `LIMIT $2`, with the
    /// cutoff as `$1`) until a round deletes fewer than `batch` rows; how many in all. Each round
    /// is its own statement and transaction, so stopping between or during rounds loses nothing
    /// (SQLite has no `DELETE … LIMIT` unless built with it, hence the subquery).
    async fn delete_in_batches(&self, delete: &str, cutoff: i64, batch: i64) -> Result<u64> {
        let batch = batch.max(1);
        let mut total = 0;
        loop {
            let round = std::time::Instant::now();
            let n = sqlx::query(delete)
                .bind(cutoff)
                .bind(batch)
                .execute(&self.pool)
                .await?
                .rows_affected();
            total += n;
            if n < batch.unsigned_abs() {
                return Ok(total);
            }
            match self.backend {
                // SQLite has one writer and no queue: a write that found the lock taken sleeps
                // and retries (busy_timeout, in steps of up to 100 ms), so a lock released and
                // taken again at once would starve it until the whole prune is over (measured:
                // bench/src/bin/retention.rs). Resting as long as the round took lets every
                // waiting write in; the prune takes twice as long, a refresh at most one round.
                Backend::Sqlite => {
                    tokio::time::sleep(round.elapsed().min(Duration::from_secs(1))).await;
                }
                // Row locks: writes of new rows never wait for these.
                Backend::Postgres => tokio::task::yield_now().await,
            }
        }
    }
}

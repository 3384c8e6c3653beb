//! What can go wrong in the store, by meaning: the caller decides to retry (`Unavailable`), to
//! re-read (`Fenced`, `Conflict`), to stop (`Crypto`, `Migration`, `Config`) or to report
//! (`NotFound`, and `DecryptFailed`: one row's secret that does not open, which concerns that row
//! only, so callers listing many rows show it as broken and go on). `Display` never carries a secret or a row's secret columns: messages name tables,
//! columns, ids and key ids only.

/// An error from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A uniqueness or precondition conflict (e.g. an id already taken).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The refresh lease was lost (expired and taken over, or the token version moved): nothing was
    /// written; re-read the token set.
    #[error(
        "fenced: the refresh lease on connection {connection} is no longer held at version {version}; nothing was written"
    )]
    Fenced {
        /// The connection.
        connection: String,
        /// The version the lease was taken at.
        version: i64,
    },
    /// The database cannot be reached or refused the write for a reason that may pass (IO, pool
    /// exhausted, busy, disk full). The caller keeps the data and retries (hardening rule 13).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The keyring does not fit the database (checked at open), encryption failed, or a key is
    /// used up. Never answered with garbage (hardening rule 14).
    #[error("crypto: {0}")]
    Crypto(String),
    /// One stored secret did not open: the value was altered or moved from another row, or it is
    /// encrypted under a key the keyring no longer holds. It concerns that row only (other rows
    /// still open). The message names the row and the column, never the value or a key.
    #[error(
        "{table}.{column} of {} {row} cannot be decrypted: {reason}",
        row_noun(table)
    )]
    DecryptFailed {
        /// The table (`token_sets`, `apps`, `webhooks`, `pending_authorizations`, …).
        table: String,
        /// The column holding the ciphertext.
        column: String,
        /// The row's identity: the connection id for `token_sets`.
        row: String,
        /// Why, in words (wrong or missing key id, altered value); no key material.
        reason: String,
    },
    /// Applying the schema migrations failed.
    #[error("migration failed: {0}")]
    Migration(String),
    /// A configuration problem: bad URL, unreadable key file, malformed key.
    #[error("configuration: {0}")]
    Config(String),
    /// A row could not be read back into its type (the database holds something we never wrote).
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

/// What a row of `table` is, for messages.
fn row_noun(table: &str) -> &'static str {
    match table {
        "token_sets" => "connection",
        "apps" => "app",
        "webhooks" => "webhook",
        "pending_authorizations" => "pending authorization",
        "store_keys" => "key check of",
        _ => "row",
    }
}

impl StoreError {
    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }

    /// The connection whose stored token set cannot be decrypted, when this is that error.
    pub fn undecryptable_connection(&self) -> Option<&str> {
        match self {
            StoreError::DecryptFailed { table, row, .. } if table == "token_sets" => Some(row),
            _ => None,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => StoreError::NotFound("row".into()),
            sqlx::Error::Database(db) => {
                if db.is_unique_violation() || db.is_foreign_key_violation() {
                    // The message names the constraint, not the values (PG keeps them in `detail`).
                    return StoreError::Conflict(db.message().to_string());
                }
                let code = db.code().map(|c| c.to_string()).unwrap_or_default();
                StoreError::Unavailable(format!("database error {code}: {}", db.message()))
            }
            sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::ColumnNotFound(_) => StoreError::Corrupt(e.to_string()),
            sqlx::Error::Configuration(_) => StoreError::Config(e.to_string()),
            sqlx::Error::Migrate(_) => StoreError::Migration(e.to_string()),
            _ => StoreError::Unavailable(e.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migration(e.to_string())
    }
}

/// Shorthand.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

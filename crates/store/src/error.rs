//! What can go wrong in the store, by meaning: the caller decides to retry (`Unavailable`, and
//! `Full`/`ReadOnly`, which also need a person to act), to
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
        "fenced: connection {connection} holds a newer token than version {version}, or none; nothing was written"
    )]
    Fenced {
        /// The connection.
        connection: String,
        /// The version the lease was taken at.
        version: i64,
    },
    /// The database cannot be reached or refused the write for a reason that may pass (IO, pool
    /// exhausted, busy). The caller keeps the data and retries (hardening rule 13).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The database's disk is full (SQLite `SQLITE_FULL`, PostgreSQL `53100 disk_full`): reads
    /// work, writes do not until space is freed. The caller keeps what it could not write and
    /// retries (hardening rule 13); a person must free space.
    #[error(
        "store full: the database's disk is full ({0}); free space on the database's volume or grow it: tokenwarden keeps refreshed tokens in memory and stores them as soon as writes succeed"
    )]
    Full(String),
    /// The database accepts no writes (SQLite `SQLITE_READONLY`, PostgreSQL `25006` on a read-only
    /// replica or a database set read-only). As [`StoreError::Full`]: keep, retry, and a person
    /// must act.
    #[error(
        "store read-only: the database refuses writes ({0}); point tokenwarden at a writable primary, or fix the file's permissions or the database's read-only setting: tokenwarden keeps refreshed tokens in memory and stores them as soon as writes succeed"
    )]
    ReadOnly(String),
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
        matches!(
            self,
            StoreError::Unavailable(_) | StoreError::Full(_) | StoreError::ReadOnly(_)
        )
    }

    /// Whether this is the database refusing writes (full or read-only): reads still work, and
    /// nothing that must be written (a rotated refresh token) should be spent until it passes.
    pub fn refuses_writes(&self) -> bool {
        matches!(self, StoreError::Full(_) | StoreError::ReadOnly(_))
    }

    /// A stable code for problems, metrics and API errors: `store_full`, `store_read_only`,
    /// `store_unavailable`, or `store_error` for the rest.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Full(_) => "store_full",
            StoreError::ReadOnly(_) => "store_read_only",
            StoreError::Unavailable(_) => "store_unavailable",
            _ => "store_error",
        }
    }

    /// The key id a value is encrypted under that the keyring does not hold, when this is that
    /// error (another replica rotated to a key this one has not loaded).
    pub fn missing_key_id(&self) -> Option<&str> {
        match self {
            StoreError::DecryptFailed { reason, .. } => reason
                .strip_prefix(crate::crypto::MISSING_KEY_PREFIX)?
                .split_once(',')
                .map(|(id, _)| id),
            _ => None,
        }
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
                let what = format!("database error {code}: {}", db.message());
                match write_refusal(&code) {
                    Some(Refusal::Full) => StoreError::Full(what),
                    Some(Refusal::ReadOnly) => StoreError::ReadOnly(what),
                    None => StoreError::Unavailable(what),
                }
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

enum Refusal {
    Full,
    ReadOnly,
}

/// SQLite result codes (at most four digits; primary, or extended: the primary is the low byte)
/// and PostgreSQL SQLSTATEs (five characters) that mean "no writes for now".
fn write_refusal(code: &str) -> Option<Refusal> {
    match code {
        // PostgreSQL: disk_full; read_only_sql_transaction.
        "53100" => Some(Refusal::Full),
        "25006" => Some(Refusal::ReadOnly),
        _ => match code.parse::<u32>().ok().map(|c| c & 0xff) {
            // SQLITE_FULL, SQLITE_READONLY (and its extended codes).
            Some(13) if code.len() <= 4 => Some(Refusal::Full),
            Some(8) if code.len() <= 4 => Some(Refusal::ReadOnly),
            _ => None,
        },
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migration(e.to_string())
    }
}

/// Shorthand.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_refusals_are_named() {
        let cases = [
            ("13", Some("store_full")),
            ("8", Some("store_read_only")),
            ("264", Some("store_read_only")),
            ("1032", Some("store_read_only")),
            ("53100", Some("store_full")),
            ("25006", Some("store_read_only")),
            ("5", None),
            ("40001", None),
            ("53300", None),
            ("00013", None),
            ("", None),
        ];
        for (code, want) in cases {
            let got = write_refusal(code).map(|r| match r {
                Refusal::Full => "store_full",
                Refusal::ReadOnly => "store_read_only",
            });
            assert_eq!(got, want, "{code}");
        }
    }
}

//! [`Encryption`] on SQL, and how every capability seals and opens secrets: the key budget
//! (hardening rule 14) and reloading the keyring when a value names a key this replica lacks.

use super::SqlStore;
use super::row::ms;
use crate::Encryption;
use crate::crypto::{KeyLoader, Keyring, Place, stored_key_id};
use crate::error::{Result, StoreError};
use crate::model::*;
use async_trait::async_trait;
use sqlx::Row;
use std::sync::Arc;
use tokenwarden_core::clock::{Clock as _, SystemClock};
use tokenwarden_core::secret::Secret;

/// Encryptions reserved from the database per block: the counter in `store_keys` is an upper bound
/// that survives crashes and is shared by replicas.
const KEY_BLOCK: i64 = 1024;
/// Warn from here (2^30)…
const KEY_WARN_AT: i64 = 1 << 30;
/// …and refuse to encrypt from here (3·2^30), well before the 2^32 limit for random 96-bit nonces
/// (NIST SP 800-38D §8.3, hardening rule 14).
pub const KEY_REFUSE_AT: i64 = 3 << 30;
const CHECK_PLAINTEXT: &[u8] = b"tokenwarden key check v1";

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

impl SqlStore {
    fn ring(&self) -> Arc<Keyring> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Checks every key-check record against `keys`, and records the current key's.
    pub(super) async fn verify_keyring(&self, keys: &Keyring) -> Result<()> {
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

    pub(super) async fn seal_secret(&self, place: &Place<'_>, s: &Secret) -> Result<Vec<u8>> {
        self.seal(place, s.expose().as_bytes()).await
    }

    pub(super) fn open_secret(&self, place: &Place<'_>, ct: &[u8]) -> Result<Secret> {
        self.ring().open_text(place, ct)
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

    /// Decodes rows with `decode`; when a value is encrypted under a key id this replica's
    /// keyring lacks (another replica rotated to a new key), reloads the keyring from where it
    /// came from and decodes again, and otherwise says what to do.
    pub(super) async fn decoded<T>(&self, decode: impl Fn() -> Result<T>) -> Result<T> {
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
}

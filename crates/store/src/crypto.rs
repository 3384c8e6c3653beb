//! Encryption at rest (hardening rule 14).
//!
//! AES-256-GCM with a random 96-bit nonce per write. Stored format:
//! `0x01 ‖ len(key_id) ‖ key_id ‖ nonce(12) ‖ ciphertext+tag(16)`. The associated data binds the
//! ciphertext to its place: `table ‖ column ‖ row identity ‖ key id`, each length-prefixed, so a
//! ciphertext copied to another row, another column or relabelled with another key id fails to open
//! instead of decrypting to someone else's token.
//!
//! Keys come from the environment or a key file (`key_id:base64` lines, newest last; a single bare
//! base64 line is key id `default`). The newest key encrypts; every key decrypts, so a rotation can
//! run while the daemon keeps serving.

use crate::error::{Result, StoreError};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::fmt;
use std::path::{Path, PathBuf};
use tokenwarden_core::clock::Clock as _;
use zeroize::Zeroizing;

const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Longest key id accepted (it is stored in every ciphertext).
pub const MAX_KEY_ID_LEN: usize = 32;

/// Where the keyring came from, so the caller can say it (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The environment variable's value.
    Env,
    /// An existing key file.
    File(PathBuf),
    /// A key file created just now (mode 0600): tell the operator where it is and to back it up.
    Created(PathBuf),
}

/// The master keys: the newest encrypts, all decrypt. `Debug` shows key ids only.
#[derive(Clone)]
pub struct Keyring {
    /// Oldest first; the last is current.
    keys: Vec<(String, Zeroizing<[u8; 32]>)>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("key_ids", &self.key_ids())
            .field("current", &self.current_id())
            .finish()
    }
}

fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_KEY_ID_LEN
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl Keyring {
    /// A keyring of one key.
    pub fn single(key_id: &str, key: [u8; 32]) -> Result<Keyring> {
        Keyring::from_keys(vec![(key_id.to_string(), key)])
    }

    /// A keyring from `(id, key)` pairs, oldest first (the last encrypts).
    pub fn from_keys(keys: Vec<(String, [u8; 32])>) -> Result<Keyring> {
        if keys.is_empty() {
            return Err(StoreError::Config("the keyring holds no key".into()));
        }
        let mut out: Vec<(String, Zeroizing<[u8; 32]>)> = Vec::with_capacity(keys.len());
        for (id, key) in keys {
            if !valid_key_id(&id) {
                return Err(StoreError::Config(format!(
                    "key id {:?} is not valid: use 1 to {MAX_KEY_ID_LEN} letters, digits, - _ .",
                    id.chars().take(40).collect::<String>()
                )));
            }
            if out.iter().any(|(k, _)| *k == id) {
                return Err(StoreError::Config(format!(
                    "key id {id} appears twice in the keyring"
                )));
            }
            out.push((id, Zeroizing::new(key)));
        }
        Ok(Keyring { keys: out })
    }

    /// A fresh random key under `key_id`, as a keyring of one.
    pub fn generate(key_id: &str) -> Result<Keyring> {
        Keyring::single(key_id, rand::random::<[u8; 32]>())
    }

    /// Parses key material: lines of `key_id:base64(32 bytes)`, or one bare base64 line (key id
    /// `default`). Blank lines and `#` comments are ignored. Errors never echo the key text.
    pub fn parse(text: &str) -> Result<Keyring> {
        let mut keys = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (id, b64) = match line.split_once(':') {
                Some((id, b64)) => (id.trim().to_string(), b64.trim()),
                None => ("default".to_string(), line),
            };
            let bytes = Zeroizing::new(STANDARD.decode(b64).map_err(|_| {
                StoreError::Config(format!("key line {} (id {id}) is not valid base64", n + 1))
            })?);
            let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                StoreError::Config(format!(
                    "key line {} (id {id}) decodes to {} bytes; a key is 32 bytes (base64 of 32 random bytes)",
                    n + 1,
                    bytes.len()
                ))
            })?;
            keys.push((id, key));
        }
        Keyring::from_keys(keys)
    }

    /// Loads the keyring from the environment variable's value if given, else from `key_file`,
    /// creating that file (mode 0600, one fresh key) when it is missing and `create_if_missing`.
    pub fn from_env_or_file(
        env_var_value: Option<&str>,
        key_file: &Path,
        create_if_missing: bool,
    ) -> Result<(Keyring, KeySource)> {
        if let Some(v) = env_var_value.filter(|v| !v.trim().is_empty()) {
            return Ok((Keyring::parse(v)?, KeySource::Env));
        }
        match std::fs::read_to_string(key_file) {
            Ok(text) => {
                warn_if_readable_by_others(key_file);
                Ok((
                    Keyring::parse(&text)?,
                    KeySource::File(key_file.to_path_buf()),
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create_if_missing => {
                let id = new_key_id();
                let ring = Keyring::generate(&id)?;
                write_new_key_file(key_file, &ring.to_file_text())?;
                Ok((ring, KeySource::Created(key_file.to_path_buf())))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StoreError::Config(format!(
                "no master key: the key file {} does not exist and no key was given in the environment",
                key_file.display()
            ))),
            Err(e) => Err(StoreError::Config(format!(
                "cannot read the key file {}: {e}",
                key_file.display()
            ))),
        }
    }

    /// This keyring plus a fresh key (which becomes current). For `keys rotate`.
    pub fn with_new_key(&self, key_id: &str) -> Result<Keyring> {
        let mut keys: Vec<(String, [u8; 32])> =
            self.keys.iter().map(|(i, k)| (i.clone(), **k)).collect();
        keys.push((key_id.to_string(), rand::random::<[u8; 32]>()));
        Keyring::from_keys(keys)
    }

    /// The key file text (`key_id:base64` lines, newest last). Handle like the key itself.
    pub fn to_file_text(&self) -> Zeroizing<String> {
        let mut s = String::from(
            "# tokenwarden master keys: key_id:base64(32 bytes), newest last. Keep secret; back up.\n",
        );
        for (id, k) in &self.keys {
            s.push_str(id);
            s.push(':');
            s.push_str(&STANDARD.encode(k.as_slice()));
            s.push('\n');
        }
        Zeroizing::new(s)
    }

    /// Writes this keyring to `path` atomically (temporary file with mode 0600, then rename).
    pub fn write_file(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("tmp-new");
        let _ = std::fs::remove_file(&tmp);
        write_new_key_file(&tmp, &self.to_file_text())?;
        std::fs::rename(&tmp, path).map_err(|e| {
            StoreError::Config(format!(
                "cannot replace the key file {}: {e}",
                path.display()
            ))
        })
    }

    /// The id of the key that encrypts.
    pub fn current_id(&self) -> &str {
        // `from_keys` refuses an empty keyring.
        &self.keys[self.keys.len() - 1].0
    }

    /// Every key id, oldest first.
    pub fn key_ids(&self) -> Vec<&str> {
        self.keys.iter().map(|(i, _)| i.as_str()).collect()
    }

    /// Whether the keyring holds `key_id`.
    pub fn has(&self, key_id: &str) -> bool {
        self.keys.iter().any(|(i, _)| i == key_id)
    }

    fn key(&self, key_id: &str) -> Option<&[u8; 32]> {
        self.keys
            .iter()
            .find(|(i, _)| i == key_id)
            .map(|(_, k)| &**k)
    }

    /// Encrypts under the current key, bound to `place`.
    pub fn seal(&self, place: &Place<'_>, plaintext: &[u8]) -> Result<Vec<u8>> {
        self.seal_with(self.current_id(), place, plaintext)
    }

    fn seal_with(&self, key_id: &str, place: &Place<'_>, plaintext: &[u8]) -> Result<Vec<u8>> {
        let key = self
            .key(key_id)
            .ok_or_else(|| StoreError::Crypto(format!("key {key_id} is not in the keyring")))?;
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key));
        let nonce: [u8; NONCE_LEN] = rand::random();
        let aad = place.aad(key_id);
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| StoreError::Crypto(format!("encryption failed for {place}")))?;
        let mut out = Vec::with_capacity(2 + key_id.len() + NONCE_LEN + ct.len());
        out.push(FORMAT_V1);
        out.push(key_id.len() as u8);
        out.extend_from_slice(key_id.as_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Decrypts a stored value found at `place`. A wrong key, a missing key, a tampered value or a
    /// value moved from elsewhere is a `DecryptFailed` error naming the place and key id.
    pub fn open(&self, place: &Place<'_>, stored: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let key_id = stored_key_id(stored)
            .ok_or_else(|| place.decrypt_failed("it does not hold a tokenwarden v1 ciphertext"))?;
        let key = self.key(key_id).ok_or_else(|| {
            place.decrypt_failed(format!(
                "{MISSING_KEY_PREFIX}{key_id}, which the keyring ({}) does not hold",
                self.key_ids().join(", ")
            ))
        })?;
        let body = &stored[2 + key_id.len()..];
        let (nonce, ct) = body.split_at(NONCE_LEN);
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key));
        let aad = place.aad(key_id);
        cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .map(Zeroizing::new)
            .map_err(|_| {
                place.decrypt_failed(format!(
                    "it does not open under key {key_id}: wrong key, or the value was altered or moved from another row"
                ))
            })
    }

    /// Decrypts to text.
    pub fn open_text(
        &self,
        place: &Place<'_>,
        stored: &[u8],
    ) -> Result<tokenwarden_core::secret::Secret> {
        let bytes = self.open(place, stored)?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| place.decrypt_failed("it decrypted to bytes that are not UTF-8"))?;
        Ok(tokenwarden_core::secret::Secret::new(text))
    }
}

/// How the reason of a value under a key the keyring lacks begins (the key id follows, then a
/// comma): [`crate::StoreError::missing_key_id`] reads it back.
pub(crate) const MISSING_KEY_PREFIX: &str = "it is encrypted under key ";

/// Where a replica's keys come from, so the store can reload them when it meets a value under a
/// key id it does not hold, and say where to add a key that is still missing.
#[derive(Clone)]
pub struct KeyLoader {
    /// Where, in words for an error message ("the key file /etc/tokenwarden/master.key").
    pub source: String,
    /// Reads the keys again; `None` when they cannot change while the process runs (an
    /// environment variable).
    pub load:
        Option<std::sync::Arc<dyn Fn() -> std::result::Result<Keyring, String> + Send + Sync>>,
}

impl std::fmt::Debug for KeyLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyLoader")
            .field("source", &self.source)
            .field("reloads", &self.load.is_some())
            .finish()
    }
}

/// The key id a stored value names, if it is a well-formed v1 ciphertext.
pub fn stored_key_id(stored: &[u8]) -> Option<&str> {
    if stored.len() < 2 || stored[0] != FORMAT_V1 {
        return None;
    }
    let n = stored[1] as usize;
    if n == 0 || n > MAX_KEY_ID_LEN || stored.len() < 2 + n + NONCE_LEN + TAG_LEN {
        return None;
    }
    std::str::from_utf8(&stored[2..2 + n]).ok()
}

/// Where a ciphertext lives: its table, its column and its row's identity. Part of the AAD.
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    /// Table name.
    pub table: &'a str,
    /// Column name.
    pub column: &'a str,
    /// The row's primary key as text.
    pub row: &'a str,
}

impl<'a> Place<'a> {
    /// A place.
    pub fn new(table: &'a str, column: &'a str, row: &'a str) -> Self {
        Place { table, column, row }
    }

    /// The error for a value at this place that does not open.
    fn decrypt_failed(&self, reason: impl Into<String>) -> StoreError {
        StoreError::DecryptFailed {
            table: self.table.to_string(),
            column: self.column.to_string(),
            row: self.row.to_string(),
            reason: reason.into(),
        }
    }

    fn aad(&self, key_id: &str) -> Vec<u8> {
        let mut aad = Vec::with_capacity(64);
        for part in [self.table, self.column, self.row, key_id] {
            aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
            aad.extend_from_slice(part.as_bytes());
        }
        aad
    }
}

impl fmt::Display for Place<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{} of row {:?}", self.table, self.column, self.row)
    }
}

/// A key id for a new key: `k` + UTC timestamp (so ids sort by age) + a random suffix, so two keys
/// made in the same second (a rotation right after the first start) never collide.
pub fn new_key_id() -> String {
    use rand::Rng;
    let suffix: u32 = rand::rng().random_range(0..0x10000);
    format!(
        "k{}-{suffix:04x}",
        tokenwarden_core::clock::SystemClock
            .now()
            .format("%Y%m%d%H%M%S")
    )
}

fn write_new_key_file(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Config(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| {
        StoreError::Config(format!(
            "cannot create the key file {}: {e}",
            path.display()
        ))
    })?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| {
            StoreError::Config(format!("cannot write the key file {}: {e}", path.display()))
        })
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(path = %path.display(), "the key file is readable by group or others; chmod 600 it");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let ring = Keyring::generate("k1").unwrap();
        let here = Place::new("token_sets", "access_token", "conn-a");
        let ct = ring.seal(&here, b"secret-access-token").unwrap();
        assert_eq!(&**ring.open(&here, &ct).unwrap(), b"secret-access-token");
        assert_eq!(stored_key_id(&ct), Some("k1"));
        for other in [
            Place::new("token_sets", "access_token", "conn-b"),
            Place::new("token_sets", "refresh_token", "conn-a"),
            Place::new("apps", "access_token", "conn-a"),
        ] {
            assert!(
                matches!(
                    ring.open(&other, &ct),
                    Err(StoreError::DecryptFailed { .. })
                ),
                "{other}"
            );
        }
        let mut tampered = ct.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(ring.open(&here, &tampered).is_err());
        let wrong = Keyring::generate("k1").unwrap();
        let e = wrong.open(&here, &ct).unwrap_err().to_string();
        assert!(e.contains("does not open under key k1"), "{e}");
        assert!(!e.contains("secret-access"), "{e}");
    }

    #[test]
    fn relabelled_key_id_fails() {
        let ring =
            Keyring::from_keys(vec![("k1".into(), [1; 32]), ("k2".into(), [1; 32])]).unwrap();
        let here = Place::new("t", "c", "r");
        let mut ct = ring.seal(&here, b"x").unwrap();
        assert_eq!(stored_key_id(&ct), Some("k2"));
        ct[3] = b'1'; // same key bytes, different id: the AAD still refuses it
        assert!(ring.open(&here, &ct).is_err());
    }

    #[test]
    fn parse_file_formats_and_errors() {
        let a = STANDARD.encode([7u8; 32]);
        let b = STANDARD.encode([9u8; 32]);
        let ring = Keyring::parse(&format!("# c\nold:{a}\n\nnew:{b}\n")).unwrap();
        assert_eq!(ring.key_ids(), vec!["old", "new"]);
        assert_eq!(ring.current_id(), "new");
        assert_eq!(Keyring::parse(&a).unwrap().current_id(), "default");
        let e = Keyring::parse("k:c2hvcnQ=").unwrap_err().to_string();
        assert!(e.contains("32 bytes"), "{e}");
        assert!(Keyring::parse("").is_err());
        assert!(Keyring::parse(&format!("a:{a}\na:{b}")).is_err());
        assert!(!format!("{ring:?}").contains(&a));
    }

    #[test]
    fn key_file_is_created_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/master.key");
        assert!(Keyring::from_env_or_file(None, &path, false).is_err());
        let (ring, src) = Keyring::from_env_or_file(None, &path, true).unwrap();
        assert_eq!(src, KeySource::Created(path.clone()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let (again, src) = Keyring::from_env_or_file(None, &path, true).unwrap();
        assert_eq!(src, KeySource::File(path.clone()));
        let here = Place::new("t", "c", "r");
        assert_eq!(
            &**again.open(&here, &ring.seal(&here, b"v").unwrap()).unwrap(),
            b"v"
        );
        let env = format!("e:{}", STANDARD.encode([3u8; 32]));
        let (from_env, src) = Keyring::from_env_or_file(Some(&env), &path, true).unwrap();
        assert_eq!((from_env.current_id(), src), ("e", KeySource::Env));
        let rotated = again.with_new_key("k-next").unwrap();
        rotated.write_file(&path).unwrap();
        let (reloaded, _) = Keyring::from_env_or_file(None, &path, false).unwrap();
        assert_eq!(reloaded.current_id(), "k-next");
        assert_eq!(reloaded.key_ids().len(), 2);
    }
}

//! The books as plain data, to be written to disk and read back ([`crate::LedgerFile`]).
//!
//! Tokens and codes appear only as their SHA-256 (base64url), app secrets only as theirs: the
//! file can tell a presented token's grant, state and expiry apart exactly as the books in memory
//! do, and holds no credential.

use super::{AccessKind, AccessToken, App, AuthCode, Grant, Ledger, RefreshToken, TokenHash};
use crate::provider::Provider;
use base64::Engine;
use chrono::{DateTime, Utc};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokenwarden_core::connection::Environment;

/// Every app, grant, code and token of a [`Ledger`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LedgerSnapshot {
    apps: Vec<AppRecord>,
    grants: Vec<GrantRecord>,
    codes: Vec<CodeRecord>,
    used_codes: Vec<Digest>,
    access_tokens: Vec<AccessRecord>,
    refresh_tokens: Vec<RefreshRecord>,
}

/// A SHA-256, written base64url without padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Digest(TokenHash);

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.as_bytes())
            .ok()
            .and_then(|b| TokenHash::try_from(b.as_slice()).ok())
            .map(Digest)
            .ok_or_else(|| serde::de::Error::custom("expected a SHA-256 in base64url"))
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppRecord {
    provider: Provider,
    client_id: String,
    name: String,
    environment: Environment,
    refresh_tokens: bool,
    secret_sha256: Digest,
    /// How many times the secret was rotated.
    generation: u64,
    redirect_uris: Vec<String>,
    users: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantRecord {
    id: String,
    provider: Provider,
    client_id: String,
    account: String,
    scopes: Vec<String>,
    role_removed: bool,
    revoked: bool,
    expired_through: Option<DateTime<Utc>>,
    app_generation: u64,
    created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeRecord {
    sha256: Digest,
    provider: Provider,
    client_id: String,
    redirect_uri: String,
    account: String,
    scopes: Vec<String>,
    code_challenge: Option<String>,
    expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum KindRecord {
    Standard,
    ShortLived,
    LongLived,
}

impl From<AccessKind> for KindRecord {
    fn from(k: AccessKind) -> Self {
        match k {
            AccessKind::Standard => KindRecord::Standard,
            AccessKind::ShortLived => KindRecord::ShortLived,
            AccessKind::LongLived => KindRecord::LongLived,
        }
    }
}

impl From<KindRecord> for AccessKind {
    fn from(k: KindRecord) -> Self {
        match k {
            KindRecord::Standard => AccessKind::Standard,
            KindRecord::ShortLived => AccessKind::ShortLived,
            KindRecord::LongLived => AccessKind::LongLived,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessRecord {
    sha256: Digest,
    grant: String,
    kind: KindRecord,
    issued_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    revoked: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshRecord {
    sha256: Digest,
    grant: String,
    expires_at: Option<DateTime<Utc>>,
    superseded_at: Option<DateTime<Utc>>,
}

impl Ledger {
    /// The books as they are now. Each record is read under its own lock, so a change made while
    /// the snapshot is taken may or may not be in it; every change counted by [`Ledger::changes`]
    /// before the call is.
    pub fn snapshot(&self) -> LedgerSnapshot {
        let mut apps: Vec<AppRecord> = self
            .apps
            .iter()
            .map(|a| {
                let a = a.value();
                AppRecord {
                    provider: a.provider,
                    client_id: a.client_id.clone(),
                    name: a.name.clone(),
                    environment: a.environment,
                    refresh_tokens: a.refresh_tokens,
                    secret_sha256: Digest(*a.secret.read()),
                    generation: a.generation(),
                    redirect_uris: a.redirect_uris(),
                    users: a.users(),
                }
            })
            .collect();
        apps.sort_by(|a, b| (a.provider, &a.client_id).cmp(&(b.provider, &b.client_id)));
        // In the order they were made, which a restore keeps (Grant::seq).
        let mut made: Vec<Arc<Grant>> = self.grants.iter().map(|g| g.value().clone()).collect();
        made.sort_by_key(|g| (g.created_at, g.seq));
        let grants: Vec<GrantRecord> = made
            .iter()
            .map(|g| GrantRecord {
                id: g.id.clone(),
                provider: g.provider,
                client_id: g.app.client_id.clone(),
                account: g.account.clone(),
                scopes: g.scopes(),
                role_removed: g.role_removed(),
                revoked: g.revoked.load(Ordering::Acquire),
                expired_through: *g.expired_through.lock(),
                app_generation: g.app_generation,
                created_at: g.created_at,
            })
            .collect();
        let codes = self
            .codes
            .iter()
            .map(|c| {
                let (key, c) = (c.key(), c.value());
                CodeRecord {
                    sha256: Digest(*key),
                    provider: c.app.provider,
                    client_id: c.app.client_id.clone(),
                    redirect_uri: c.redirect_uri.clone(),
                    account: c.account.clone(),
                    scopes: c.scopes.clone(),
                    code_challenge: c.code_challenge.clone(),
                    expires_at: c.expires_at,
                }
            })
            .collect();
        let used_codes = self.used_codes.iter().map(|c| Digest(*c.key())).collect();
        let access_tokens = self
            .access
            .iter()
            .map(|t| {
                let (key, t) = (t.key(), t.value());
                AccessRecord {
                    sha256: Digest(*key),
                    grant: t.grant.id.clone(),
                    kind: t.kind.into(),
                    issued_at: t.issued_at,
                    expires_at: t.expires_at,
                    revoked: t.revoked.load(Ordering::Acquire),
                }
            })
            .collect();
        let refresh_tokens = self
            .refresh
            .iter()
            .map(|t| {
                let (key, t) = (t.key(), t.value());
                RefreshRecord {
                    sha256: Digest(*key),
                    grant: t.grant.id.clone(),
                    expires_at: t.expires_at,
                    superseded_at: *t.superseded_at.lock(),
                }
            })
            .collect();
        LedgerSnapshot {
            apps,
            grants,
            codes,
            used_codes,
            access_tokens,
            refresh_tokens,
        }
    }

    /// Puts a snapshot's books back. An app the sandbox already registered (from its
    /// configuration) takes the snapshot's secret, rotations, users and redirect URIs (added to
    /// the configured ones); any other app is registered as it was. Refuses, changing nothing, a
    /// snapshot whose records name a grant or app it does not hold.
    pub fn restore(&self, snap: LedgerSnapshot) -> Result<RestoredCounts, String> {
        // Check every reference first, so a bad file changes nothing.
        let app_keys: std::collections::HashSet<(Provider, &str)> = snap
            .apps
            .iter()
            .map(|a| (a.provider, a.client_id.as_str()))
            .collect();
        let known_app =
            |p: Provider, id: &str| app_keys.contains(&(p, id)) || self.app(p, id).is_some();
        let grant_ids: std::collections::HashSet<&str> =
            snap.grants.iter().map(|g| g.id.as_str()).collect();
        if let Some(g) = snap
            .grants
            .iter()
            .find(|g| !known_app(g.provider, &g.client_id))
        {
            return Err(format!(
                "grant {} names app {} of {}, which the file does not hold",
                g.id, g.client_id, g.provider
            ));
        }
        if let Some(c) = snap
            .codes
            .iter()
            .find(|c| !known_app(c.provider, &c.client_id))
        {
            return Err(format!(
                "an authorization code names app {} of {}, which the file does not hold",
                c.client_id, c.provider
            ));
        }
        let orphan = snap
            .access_tokens
            .iter()
            .map(|t| &t.grant)
            .chain(snap.refresh_tokens.iter().map(|t| &t.grant))
            .find(|g| !grant_ids.contains(g.as_str()));
        if let Some(g) = orphan {
            return Err(format!(
                "a token names grant {g}, which the file does not hold"
            ));
        }

        for a in snap.apps {
            let app = match self.app(a.provider, &a.client_id) {
                Some(app) => app,
                None => {
                    let app = Arc::new(App {
                        provider: a.provider,
                        client_id: a.client_id.clone(),
                        name: a.name,
                        environment: a.environment,
                        refresh_tokens: a.refresh_tokens,
                        secret: RwLock::new(a.secret_sha256.0),
                        signing_secret: RwLock::new(None),
                        generation: AtomicU64::new(0),
                        redirect_uris: RwLock::new(Vec::new()),
                        users: AtomicU64::new(0),
                        deauthorize_url: RwLock::new(None),
                    });
                    self.apps.insert((a.provider, a.client_id), app.clone());
                    app
                }
            };
            // A rotation made before the restart stands; an app never rotated keeps the secret
            // it is configured with now.
            if a.generation > 0 {
                *app.secret.write() = a.secret_sha256.0;
                // Only the digest was kept: callbacks to this app can no longer be signed.
                *app.signing_secret.write() = None;
            }
            app.generation.store(a.generation, Ordering::Release);
            app.users.store(a.users, Ordering::Relaxed);
            for uri in a.redirect_uris {
                let mut uris = app.redirect_uris.write();
                if !uris.contains(&uri) {
                    uris.push(uri);
                }
            }
        }
        let app = |p: Provider, id: &str| self.app(p, id).ok_or(());
        let mut grants: HashMap<String, Arc<Grant>> = HashMap::new();
        for g in snap.grants {
            let Ok(app) = app(g.provider, &g.client_id) else {
                continue;
            };
            let grant = Arc::new(Grant {
                id: g.id.clone(),
                provider: g.provider,
                app,
                account: g.account,
                scopes: RwLock::new(g.scopes),
                role_removed: AtomicBool::new(g.role_removed),
                revoked: AtomicBool::new(g.revoked),
                expired_through: Mutex::new(g.expired_through),
                app_generation: g.app_generation,
                created_at: g.created_at,
                seq: self.next_grant_seq(),
            });
            self.grants.insert(g.id.clone(), grant.clone());
            grants.insert(g.id, grant);
        }
        for c in snap.codes {
            let Ok(app) = app(c.provider, &c.client_id) else {
                continue;
            };
            self.codes.insert(
                c.sha256.0,
                AuthCode {
                    app,
                    redirect_uri: c.redirect_uri,
                    account: c.account,
                    scopes: c.scopes,
                    code_challenge: c.code_challenge,
                    expires_at: c.expires_at,
                },
            );
        }
        for c in snap.used_codes {
            self.used_codes.insert(c.0, ());
        }
        let mut counts = RestoredCounts {
            grants: grants.len(),
            ..Default::default()
        };
        for t in snap.access_tokens {
            let Some(grant) = grants.get(&t.grant) else {
                continue;
            };
            self.access.insert(
                t.sha256.0,
                Arc::new(AccessToken {
                    grant: grant.clone(),
                    kind: t.kind.into(),
                    issued_at: t.issued_at,
                    expires_at: t.expires_at,
                    revoked: AtomicBool::new(t.revoked),
                }),
            );
            counts.access_tokens += 1;
        }
        for t in snap.refresh_tokens {
            let Some(grant) = grants.get(&t.grant) else {
                continue;
            };
            self.refresh.insert(
                t.sha256.0,
                Arc::new(RefreshToken {
                    grant: grant.clone(),
                    expires_at: t.expires_at,
                    superseded_at: Mutex::new(t.superseded_at),
                }),
            );
            counts.refresh_tokens += 1;
        }
        self.touch();
        Ok(counts)
    }
}

/// What [`Ledger::restore`] put back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoredCounts {
    /// Grants.
    pub grants: usize,
    /// Access tokens.
    pub access_tokens: usize,
    /// Refresh tokens.
    pub refresh_tokens: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AppRegistration;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
    }

    /// A ledger with one grant of the Login Kit demo app, its access token and a rotated-out
    /// refresh token, and what the tokens are.
    fn books() -> (Ledger, String, String, String) {
        let ledger = Ledger::default();
        let app = ledger.register(&AppRegistration::demo(Provider::Tiktok));
        let code = AuthCode {
            app,
            redirect_uri: "http://127.0.0.1/callback/tiktok".into(),
            account: "creator".into(),
            scopes: vec!["user.info.basic".into()],
            code_challenge: None,
            expires_at: now() + chrono::TimeDelta::minutes(10),
        };
        let grant = ledger.new_grant(&code, now());
        let (access, _) = ledger.issue_access(
            &grant,
            AccessKind::Standard,
            "act.",
            Some(std::time::Duration::from_secs(86_400)),
            now(),
        );
        let (old, _) = ledger.issue_refresh(&grant, "rft.", None, now());
        ledger
            .use_refresh(
                Provider::Tiktok,
                "demo-tiktok",
                &old,
                true,
                std::time::Duration::ZERO,
                now(),
            )
            .unwrap();
        let (new, _) = ledger.issue_refresh(&grant, "rft.", None, now());
        (ledger, access, old, new)
    }

    #[test]
    fn a_restored_ledger_answers_every_token_as_the_original_did() {
        let (ledger, access, old, new) = books();
        let json = serde_json::to_string(&ledger.snapshot()).unwrap();
        for secret in [&access, &old, &new, "demo-tiktok-secret"] {
            assert!(!json.contains(secret), "no credential in the snapshot");
        }
        let back = Ledger::default();
        back.register(&AppRegistration::demo(Provider::Tiktok));
        let counts = back.restore(serde_json::from_str(&json).unwrap()).unwrap();
        assert_eq!(
            counts,
            RestoredCounts {
                grants: 1,
                access_tokens: 1,
                refresh_tokens: 2
            }
        );
        assert!(
            back.check_access(Provider::Tiktok, Some(&access), now())
                .is_ok()
        );
        let later = now() + chrono::TimeDelta::days(2);
        assert_eq!(
            back.check_access(Provider::Tiktok, Some(&access), later)
                .err(),
            Some(super::super::Refusal::Expired)
        );
        let grace = std::time::Duration::ZERO;
        assert_eq!(
            back.use_refresh(Provider::Tiktok, "demo-tiktok", &old, true, grace, now())
                .err(),
            Some(super::super::RefreshRefusal::Reused),
            "a rotated-out refresh token stays rotated out"
        );
        assert!(
            back.use_refresh(Provider::Tiktok, "demo-tiktok", &new, true, grace, now())
                .is_ok()
        );
        assert!(
            back.app(Provider::Tiktok, "demo-tiktok")
                .unwrap()
                .secret_matches("demo-tiktok-secret")
        );
    }

    #[test]
    fn a_rotated_secret_and_a_revocation_survive() {
        let (ledger, access, _, _) = books();
        let app = ledger.app(Provider::Tiktok, "demo-tiktok").unwrap();
        let secret = ledger.rotate_secret(&app);
        let snap = serde_json::to_string(&ledger.snapshot()).unwrap();
        assert!(!snap.contains(&secret));
        let back = Ledger::default();
        back.register(&AppRegistration::demo(Provider::Tiktok));
        back.restore(serde_json::from_str(&snap).unwrap()).unwrap();
        let app = back.app(Provider::Tiktok, "demo-tiktok").unwrap();
        assert!(app.secret_matches(&secret));
        assert!(!app.secret_matches("demo-tiktok-secret"));
        assert_eq!(
            back.check_access(Provider::Tiktok, Some(&access), now())
                .err(),
            Some(super::super::Refusal::Revoked),
            "the rotation killed the grant, and still does"
        );
    }

    #[test]
    fn a_snapshot_naming_a_missing_grant_changes_nothing() {
        let (ledger, access, _, _) = books();
        let mut snap = ledger.snapshot();
        snap.grants.clear();
        let back = Ledger::default();
        let err = back.restore(snap).unwrap_err();
        assert!(err.contains("names grant g_"), "{err}");
        assert!(back.grants().is_empty() && back.apps().is_empty());
        assert!(
            back.check_access(Provider::Tiktok, Some(&access), now())
                .is_err()
        );
    }
}

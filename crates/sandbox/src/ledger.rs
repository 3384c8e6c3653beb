//! The sandbox's books: registered apps, grants, authorization codes and tokens.
//!
//! Tokens are looked up by their SHA-256 in `DashMap`s (sharded locks, no global lock on the hot
//! path); the token strings themselves are never stored or logged, and neither are app secrets
//! (only their digest is kept). Every change to the books bumps [`Ledger::changes`], so a
//! snapshot ([`snapshot`]) can tell whether it is behind.

pub(crate) mod snapshot;

use crate::config::AppRegistration;
use crate::provider::Provider;
use base64::Engine;
use chrono::{DateTime, TimeDelta, Utc};
use dashmap::DashMap;
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokenwarden_core::connection::Environment;

/// A token's key in the books.
pub(crate) type TokenHash = [u8; 32];

pub(crate) fn hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// A fresh random credential: 32 random bytes, URL-safe, behind a platform-looking prefix.
pub(crate) fn mint(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// A short random id (request ids, log ids, grant ids).
pub(crate) fn short_id() -> String {
    let bytes: [u8; 12] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn to_delta(d: std::time::Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// A registered app. Rotating the secret bumps `generation`; grants made under an older
/// generation are dead ("every token of the app dies").
#[derive(Debug)]
pub(crate) struct App {
    pub provider: Provider,
    pub client_id: String,
    pub name: String,
    /// The host its tokens work on (production, or the platform's sandbox host).
    pub environment: Environment,
    /// Issues tokens with a refresh token (TikTok Business creator tokens).
    pub refresh_tokens: bool,
    /// The SHA-256 of the current secret: comparing digests is what `secret_matches` does anyway,
    /// and it lets the books be written to disk without a credential in them.
    secret: RwLock<TokenHash>,
    /// The current secret itself, kept in memory only to sign what the platform sends the app
    /// (deauthorize callbacks). `None` after a restart that restored a secret rotated in an
    /// earlier run: the file holds only its digest, so such an app gets no signed callbacks.
    signing_secret: RwLock<Option<String>>,
    generation: AtomicU64,
    redirect_uris: RwLock<Vec<String>>,
    /// Grants ever made to this app: Meta's app budget is 200 calls/hour per user.
    users: AtomicU64,
    /// Where the platform calls back when a user removes the app.
    deauthorize_url: RwLock<Option<String>>,
}

impl App {
    pub fn users(&self) -> u64 {
        self.users.load(Ordering::Relaxed)
    }
    pub fn secret_matches(&self, candidate: &str) -> bool {
        // Constant-time comparison of the digests (hardening.md §12).
        let (a, b) = (*self.secret.read(), hash(candidate));
        a.iter()
            .zip(b.iter())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
    }
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
    pub fn redirect_allowed(&self, uri: &str) -> bool {
        self.redirect_uris.read().iter().any(|u| u == uri)
    }
    pub fn redirect_uris(&self) -> Vec<String> {
        self.redirect_uris.read().clone()
    }
    pub fn deauthorize_url(&self) -> Option<String> {
        self.deauthorize_url.read().clone()
    }
    pub fn set_deauthorize_url(&self, url: Option<String>) {
        *self.deauthorize_url.write() = url;
    }
    /// The current client secret, for signing what the platform sends the app (never shown);
    /// `None` when only its digest is known (see `signing_secret`).
    pub fn secret(&self) -> Option<String> {
        self.signing_secret.read().clone()
    }
}

/// What the grant looks like to the admin API: never a token value.
#[derive(Debug, Clone, Serialize)]
pub struct GrantView {
    /// Grant id (`g_…`).
    pub id: String,
    /// Platform id.
    pub provider: Provider,
    /// The app's client id.
    pub app: String,
    /// The app's environment: the host the grant's tokens work on.
    pub environment: Environment,
    /// The account chosen on the authorize page.
    pub account: String,
    /// Scopes currently granted.
    pub scopes: Vec<String>,
    /// Whether the account's role on its ad accounts was removed.
    pub role_removed: bool,
    /// `active`, `revoked` or `app_secret_rotated`.
    pub state: &'static str,
    /// When the grant was made (sandbox clock).
    pub created_at: DateTime<Utc>,
}

/// One user's consent to one app: the thing that revocation, scope and role removal act on.
#[derive(Debug)]
pub(crate) struct Grant {
    pub id: String,
    pub provider: Provider,
    pub app: Arc<App>,
    pub account: String,
    scopes: RwLock<Vec<String>>,
    role_removed: AtomicBool,
    revoked: AtomicBool,
    /// Access tokens issued at or before this instant are expired ("expire now").
    expired_through: Mutex<Option<DateTime<Utc>>>,
    app_generation: u64,
    pub created_at: DateTime<Utc>,
    /// Order of creation in this ledger (grants made in one clock instant are still ordered).
    pub seq: u64,
}

impl Grant {
    pub fn scopes(&self) -> Vec<String> {
        self.scopes.read().clone()
    }
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.read().iter().any(|s| s == scope)
    }
    pub fn role_removed(&self) -> bool {
        self.role_removed.load(Ordering::Acquire)
    }
    /// Dead: revoked, or its app's secret was rotated since.
    pub fn is_dead(&self) -> bool {
        self.revoked.load(Ordering::Acquire) || self.app_generation != self.app.generation()
    }
    fn state(&self) -> &'static str {
        if self.revoked.load(Ordering::Acquire) {
            "revoked"
        } else if self.app_generation != self.app.generation() {
            "app_secret_rotated"
        } else {
            "active"
        }
    }
    pub fn view(&self) -> GrantView {
        GrantView {
            id: self.id.clone(),
            provider: self.provider,
            app: self.app.client_id.clone(),
            environment: self.app.environment,
            account: self.account.clone(),
            scopes: self.scopes(),
            role_removed: self.role_removed(),
            state: self.state(),
            created_at: self.created_at,
        }
    }
    /// A stable numeric id derived from the account (user ids, ad account ids).
    pub fn numeric_id(&self, salt: &str) -> u64 {
        let d = Sha256::digest(format!("{}:{}:{salt}", self.provider, self.account).as_bytes());
        let n = u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
        1_000_000_000_000_000 + n % 9_000_000_000_000_000
    }
}

/// Which kind of access token: Threads and Meta distinguish short- and long-lived ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AccessKind {
    Standard,
    ShortLived,
    LongLived,
}

#[derive(Debug)]
pub(crate) struct AccessToken {
    pub grant: Arc<Grant>,
    pub kind: AccessKind,
    pub issued_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    revoked: AtomicBool,
}

impl AccessToken {
    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|e| now >= e)
            || self
                .grant
                .expired_through
                .lock()
                .is_some_and(|t| self.issued_at <= t)
    }
}

#[derive(Debug)]
pub(crate) struct RefreshToken {
    pub grant: Arc<Grant>,
    pub expires_at: Option<DateTime<Utc>>,
    /// When a rotation replaced this token.
    superseded_at: Mutex<Option<DateTime<Utc>>>,
}

/// An authorization code: single use (removed on exchange), short-lived.
#[derive(Debug, Clone)]
pub(crate) struct AuthCode {
    pub app: Arc<App>,
    pub redirect_uri: String,
    pub account: String,
    pub scopes: Vec<String>,
    pub code_challenge: Option<String>,
    pub expires_at: DateTime<Utc>,
}

/// Why an access token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Missing,
    Unknown,
    Revoked,
    Expired,
}

/// Why a code or refresh token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CodeRefusal {
    /// Never issued, or issued by another platform.
    Unknown,
    /// Already exchanged (codes are single use).
    Used,
    Expired,
    /// Issued to another app.
    WrongApp,
    RedirectMismatch,
    PkceMismatch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefreshRefusal {
    Unknown,
    Dead,
    Expired,
    /// Rotated out and past the reuse grace window.
    Reused,
}

#[derive(Debug, Default)]
pub(crate) struct Ledger {
    apps: DashMap<(Provider, String), Arc<App>>,
    grants: DashMap<String, Arc<Grant>>,
    codes: DashMap<TokenHash, AuthCode>,
    /// Hashes of codes already exchanged, so reuse is told apart from an unknown code.
    used_codes: DashMap<TokenHash, ()>,
    access: DashMap<TokenHash, Arc<AccessToken>>,
    refresh: DashMap<TokenHash, Arc<RefreshToken>>,
    /// Bumped after every change, so a writer of snapshots knows whether it is behind.
    changes: AtomicU64,
    /// The next grant's [`Grant::seq`].
    grant_seq: AtomicU64,
}

impl Ledger {
    /// Records that the books changed; called after the change is complete.
    pub fn touch(&self) {
        self.changes.fetch_add(1, Ordering::AcqRel);
    }

    /// How many changes the books have seen.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    pub fn register(&self, reg: &AppRegistration) -> Arc<App> {
        let app = Arc::new(App {
            provider: reg.provider,
            client_id: reg.client_id.clone(),
            name: reg.name.clone(),
            environment: reg.environment,
            refresh_tokens: reg.refresh_tokens,
            secret: RwLock::new(hash(&reg.client_secret)),
            signing_secret: RwLock::new(Some(reg.client_secret.clone())),
            generation: AtomicU64::new(0),
            redirect_uris: RwLock::new(reg.redirect_uris.clone()),
            users: AtomicU64::new(0),
            deauthorize_url: RwLock::new(reg.deauthorize_url.clone()),
        });
        self.apps
            .insert((reg.provider, reg.client_id.clone()), app.clone());
        self.touch();
        app
    }

    pub fn app(&self, provider: Provider, client_id: &str) -> Option<Arc<App>> {
        self.apps
            .get(&(provider, client_id.to_string()))
            .map(|a| a.clone())
    }

    pub fn apps(&self) -> Vec<Arc<App>> {
        self.apps.iter().map(|a| a.value().clone()).collect()
    }

    pub fn add_redirect_uri(&self, app: &App, uri: String) {
        let mut uris = app.redirect_uris.write();
        if !uris.contains(&uri) {
            uris.push(uri);
        }
        drop(uris);
        self.touch();
    }

    /// New secret; every grant of the app dies.
    pub fn rotate_secret(&self, app: &App) -> String {
        let secret = mint("sec_");
        *app.secret.write() = hash(&secret);
        *app.signing_secret.write() = Some(secret.clone());
        app.generation.fetch_add(1, Ordering::AcqRel);
        self.touch();
        secret
    }

    pub fn issue_code(&self, code: AuthCode) -> String {
        let value = mint("");
        self.codes.insert(hash(&value), code);
        self.touch();
        value
    }

    /// Takes a code out of the books (single use), checking app, redirect_uri and PKCE.
    pub fn redeem_code(
        &self,
        value: &str,
        provider: Provider,
        client_id: &str,
        redirect_uri: Option<&str>,
        code_verifier: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<AuthCode, CodeRefusal> {
        let key = hash(value);
        let Some((_, code)) = self.codes.remove(&key) else {
            return Err(if self.used_codes.contains_key(&key) {
                CodeRefusal::Used
            } else {
                CodeRefusal::Unknown
            });
        };
        self.used_codes.insert(key, ());
        self.touch();
        if code.app.provider != provider {
            return Err(CodeRefusal::Unknown);
        }
        if now >= code.expires_at {
            return Err(CodeRefusal::Expired);
        }
        if code.app.client_id != client_id {
            return Err(CodeRefusal::WrongApp);
        }
        if let Some(uri) = redirect_uri
            && uri != code.redirect_uri
        {
            return Err(CodeRefusal::RedirectMismatch);
        }
        if let Some(challenge) = &code.code_challenge {
            let ok = code_verifier.is_some_and(|v| {
                let digest = Sha256::digest(v.as_bytes());
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest) == *challenge
            });
            if !ok {
                return Err(CodeRefusal::PkceMismatch);
            }
        }
        Ok(code)
    }

    pub fn new_grant(&self, code: &AuthCode, now: DateTime<Utc>) -> Arc<Grant> {
        let grant = Arc::new(Grant {
            id: format!("g_{}", short_id()),
            provider: code.app.provider,
            app: code.app.clone(),
            account: code.account.clone(),
            scopes: RwLock::new(code.scopes.clone()),
            role_removed: AtomicBool::new(false),
            revoked: AtomicBool::new(false),
            expired_through: Mutex::new(None),
            app_generation: code.app.generation(),
            created_at: now,
            seq: self.next_grant_seq(),
        });
        self.grants.insert(grant.id.clone(), grant.clone());
        code.app.users.fetch_add(1, Ordering::Relaxed);
        self.touch();
        grant
    }

    pub fn grant(&self, id: &str) -> Option<Arc<Grant>> {
        self.grants.get(id).map(|g| g.clone())
    }

    pub fn grants(&self) -> Vec<Arc<Grant>> {
        self.grants.iter().map(|g| g.value().clone()).collect()
    }

    /// The next grant's place in the order of creation.
    pub fn next_grant_seq(&self) -> u64 {
        self.grant_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// A per-account cap on refresh tokens (Google: "a limit of 100 refresh tokens per Google
    /// Account per OAuth 2.0 client ID … creating a new refresh token automatically invalidates the
    /// oldest refresh token without warning", platforms-ads.md Part A §1): after `grant` was made,
    /// the refresh tokens of the oldest live grants of the same account on the same app beyond
    /// `cap` stop working (a refresh with them is refused as spent); their access tokens keep
    /// working until they expire. Returns how many grants lost theirs.
    pub fn cap_refresh_tokens(&self, grant: &Grant, cap: usize, now: DateTime<Utc>) -> usize {
        let same = |g: &Grant| {
            g.provider == grant.provider
                && g.app.client_id == grant.app.client_id
                && g.account == grant.account
        };
        let live = |t: &RefreshToken| t.superseded_at.lock().is_none() && !t.grant.is_dead();
        let mut holders: Vec<Arc<Grant>> = Vec::new();
        for t in self.refresh.iter() {
            if same(&t.grant) && live(&t) && !holders.iter().any(|h| Arc::ptr_eq(h, &t.grant)) {
                holders.push(t.grant.clone());
            }
        }
        if holders.len() <= cap {
            return 0;
        }
        holders.sort_by_key(|g| (g.created_at, g.seq));
        let evicted: Vec<Arc<Grant>> = holders.drain(..holders.len() - cap).collect();
        // Long spent, whatever reuse grace a fault set.
        let spent = now - TimeDelta::days(36_500);
        for t in self.refresh.iter() {
            if evicted.iter().any(|g| Arc::ptr_eq(g, &t.grant)) {
                let mut at = t.superseded_at.lock();
                if at.is_none() {
                    *at = Some(spent);
                }
            }
        }
        self.touch();
        evicted.len()
    }

    /// Revokes the grant; `false` when it was revoked already.
    pub fn revoke_grant(&self, grant: &Grant) -> bool {
        let changed = !grant.revoked.swap(true, Ordering::AcqRel);
        if changed {
            self.touch();
        }
        changed
    }

    pub fn expire_now(&self, grant: &Grant, now: DateTime<Utc>) {
        *grant.expired_through.lock() = Some(now);
        self.touch();
    }

    pub fn remove_scope(&self, grant: &Grant, scope: &str) -> bool {
        let mut scopes = grant.scopes.write();
        let before = scopes.len();
        scopes.retain(|s| s != scope);
        let removed = scopes.len() != before;
        drop(scopes);
        self.touch();
        removed
    }

    pub fn remove_role(&self, grant: &Grant) {
        grant.role_removed.store(true, Ordering::Release);
        self.touch();
    }

    pub fn issue_access(
        &self,
        grant: &Arc<Grant>,
        kind: AccessKind,
        prefix: &str,
        lifetime: Option<std::time::Duration>,
        now: DateTime<Utc>,
    ) -> (String, Arc<AccessToken>) {
        let value = mint(prefix);
        let token = Arc::new(AccessToken {
            grant: grant.clone(),
            kind,
            issued_at: now,
            expires_at: lifetime.map(|l| now + to_delta(l)),
            revoked: AtomicBool::new(false),
        });
        self.access.insert(hash(&value), token.clone());
        self.touch();
        (value, token)
    }

    pub fn issue_refresh(
        &self,
        grant: &Arc<Grant>,
        prefix: &str,
        lifetime: Option<std::time::Duration>,
        now: DateTime<Utc>,
    ) -> (String, Arc<RefreshToken>) {
        let value = mint(prefix);
        let token = Arc::new(RefreshToken {
            grant: grant.clone(),
            expires_at: lifetime.map(|l| now + to_delta(l)),
            superseded_at: Mutex::new(None),
        });
        self.refresh.insert(hash(&value), token.clone());
        self.touch();
        (value, token)
    }

    /// Looks an access token up and says whether it may be used now.
    pub fn check_access(
        &self,
        provider: Provider,
        value: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Arc<AccessToken>, Refusal> {
        let value = value.filter(|v| !v.is_empty()).ok_or(Refusal::Missing)?;
        let token = self
            .access
            .get(&hash(value))
            .map(|t| t.clone())
            .ok_or(Refusal::Unknown)?;
        if token.grant.provider != provider {
            return Err(Refusal::Unknown);
        }
        if token.revoked.load(Ordering::Acquire) || token.grant.is_dead() {
            return Err(Refusal::Revoked);
        }
        if token.expired(now) {
            return Err(Refusal::Expired);
        }
        Ok(token)
    }

    /// An access token of `provider`, whatever its state (LinkedIn's introspection describes
    /// expired and revoked tokens too).
    pub fn access_any(&self, provider: Provider, value: &str) -> Option<Arc<AccessToken>> {
        let t = self.access.get(&hash(value))?;
        (t.grant.provider == provider).then(|| t.clone())
    }

    /// When a token expires (for Graph's "Session has expired on …"), whatever its state.
    pub fn peek_expiry(&self, value: &str) -> Option<DateTime<Utc>> {
        let t = self.access.get(&hash(value))?;
        let forced = (*t.grant.expired_through.lock()).filter(|at| t.issued_at <= *at);
        match (t.expires_at, forced) {
            (Some(e), Some(f)) => Some(e.min(f)),
            (e, f) => e.or(f),
        }
    }

    /// Revokes one access token (TikTok Business `/oauth2/revoke_token/`).
    pub fn revoke_access(&self, value: &str) -> Option<Arc<AccessToken>> {
        let t = self.access.get(&hash(value)).map(|t| t.clone())?;
        t.revoked.store(true, Ordering::Release);
        self.touch();
        Some(t)
    }

    /// The grant a refresh token belongs to, whatever its state (Google's `/revoke` takes either
    /// token).
    pub fn refresh_grant(&self, provider: Provider, value: &str) -> Option<Arc<Grant>> {
        let t = self.refresh.get(&hash(value))?;
        (t.grant.provider == provider).then(|| t.grant.clone())
    }

    /// Accepts a refresh token; with `rotate`, marks it superseded (the caller issues the next).
    pub fn use_refresh(
        &self,
        provider: Provider,
        client_id: &str,
        value: &str,
        rotate: bool,
        grace: std::time::Duration,
        now: DateTime<Utc>,
    ) -> Result<(Arc<Grant>, Option<DateTime<Utc>>), RefreshRefusal> {
        let token = self
            .refresh
            .get(&hash(value))
            .map(|t| t.clone())
            .ok_or(RefreshRefusal::Unknown)?;
        if token.grant.provider != provider || token.grant.app.client_id != client_id {
            return Err(RefreshRefusal::Unknown);
        }
        if token.grant.is_dead() {
            return Err(RefreshRefusal::Dead);
        }
        if token.expires_at.is_some_and(|e| now >= e) {
            return Err(RefreshRefusal::Expired);
        }
        let mut superseded = token.superseded_at.lock();
        match *superseded {
            Some(at) if now >= at + to_delta(grace) => return Err(RefreshRefusal::Reused),
            Some(_) => {}
            None if rotate => {
                *superseded = Some(now);
                self.touch();
            }
            None => {}
        }
        Ok((token.grant.clone(), token.expires_at))
    }
}

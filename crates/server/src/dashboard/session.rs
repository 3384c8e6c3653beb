//! Dashboard sessions: a random id in an `HttpOnly`, `SameSite=Strict` cookie (`__Host-` and
//! `Secure` when the public URL is https, hardening rule 12), a CSRF token per session, and a
//! limit on failed sign-ins per client address and per API key id.
//!
//! A session ends [`SESSION_TTL`] after sign-in, or sooner when unused for the idle timeout
//! ([`IDLE_TIMEOUT`] unless configured); every signed-in request extends it. Times are read from
//! the daemon's clock, and both lifetimes are real time: on a clock sped up by `--time-scale`
//! they are stretched by the same factor.
//!
//! Sessions and failed sign-ins live in the store (issue 14 item 4), so any replica serves any
//! signed-in browser and a guesser meets one limit whichever replica it reaches. A session is
//! stored by the SHA-256 of its cookie value, never the value; its CSRF token is derived from the
//! cookie value (a keyed hash nobody holding only the stored hash can compute), so it is not
//! stored either.

use crate::limits::ClientKey;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use parking_lot::Mutex;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokenwarden_store::{DashboardSession, Sha256Hex, Store, StoreError};

/// How long a session lasts after sign-in.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// How long an unused session lasts, unless configured.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Failed sign-ins allowed per minute, per address and per API key id, before sign-in from that
/// address (or with that key id) is refused until the minute has passed.
pub const MAX_FAILURES_PER_MINUTE: usize = 10;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// One signed-in browser.
#[derive(Clone)]
pub struct Session {
    /// The CSRF token every state-changing form carries.
    pub csrf: String,
    /// Who signed in, for the header and logs ("API key tw_ab12…", "password").
    pub who: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("who", &self.who)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Whether `presented` is this session's CSRF token (constant time).
    pub fn csrf_ok(&self, presented: &str) -> bool {
        let a = self.csrf.as_bytes();
        let b = presented.as_bytes();
        a.len() == b.len() && bool::from(a.ct_eq(b))
    }
}

/// The dashboard's sign-in settings: the configured password (its SHA-256), the idle timeout
/// and the clock's speed. Sessions themselves are in the store.
pub struct Sessions {
    password: Mutex<Option<[u8; 32]>>,
    idle: Mutex<Duration>,
    time_scale: Mutex<f64>,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            password: Mutex::default(),
            idle: Mutex::new(IDLE_TIMEOUT),
            time_scale: Mutex::new(1.0),
        }
    }
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("password_set", &self.password.lock().is_some())
            .field("idle", &*self.idle.lock())
            .finish_non_exhaustive()
    }
}

fn digest(v: &str) -> [u8; 32] {
    Sha256::digest(v.as_bytes()).into()
}

/// The CSRF token of the session whose cookie value is `cookie`.
fn csrf_of(cookie: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"tokenwarden dashboard csrf v1\0");
    h.update(cookie.as_bytes());
    URL_SAFE_NO_PAD.encode(h.finalize())
}

/// The limit key of a client address.
fn address_key(client: ClientKey) -> String {
    format!("addr:{client:?}")
}

/// The limit key of a presented API key id (hashed: a long id costs no more room).
fn key_id_key(key_id: &str) -> String {
    format!("key:{}", Sha256Hex::of(key_id).as_str())
}

/// A random URL-safe token of 32 bytes.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

impl Sessions {
    /// Sets (or clears, with an empty value) the dashboard password.
    pub fn set_password(&self, password: Option<&str>) {
        *self.password.lock() = password.filter(|p| !p.is_empty()).map(digest);
    }

    /// Whether `presented` is the configured password (digests compared in constant time).
    pub fn password_ok(&self, presented: &str) -> bool {
        match *self.password.lock() {
            Some(want) => bool::from(want.ct_eq(&digest(presented))),
            None => false,
        }
    }

    /// Sets how long an unused session lasts (at least a minute, at most [`SESSION_TTL`]).
    pub fn set_idle_timeout(&self, idle: Duration) {
        *self.idle.lock() = idle.clamp(Duration::from_secs(60), SESSION_TTL);
    }

    /// Tells the sessions that the daemon's clock runs `scale` times faster than real time
    /// (`--time-scale`), so their lifetimes stay the same in real time.
    pub fn set_time_scale(&self, scale: f64) {
        *self.time_scale.lock() = if scale.is_finite() && scale >= 1.0 {
            scale
        } else {
            1.0
        };
    }

    /// A real-time span as the daemon's clock measures it.
    fn on_clock(&self, real: Duration) -> TimeDelta {
        Duration::try_from_secs_f64(real.as_secs_f64() * *self.time_scale.lock())
            .ok()
            .and_then(|d| TimeDelta::from_std(d).ok())
            .unwrap_or(TimeDelta::MAX)
    }

    /// Starts a session at `now`; the cookie value to send (shown nowhere else, stored only as
    /// its hash).
    pub async fn start(
        &self,
        store: &dyn Store,
        who: String,
        now: DateTime<Utc>,
    ) -> Result<(String, Session), StoreError> {
        let id = random_token();
        store
            .put_dashboard_session(&DashboardSession {
                token_hash: Sha256Hex::of(&id),
                who: who.clone(),
                created_at: now,
                expires_at: now
                    .checked_add_signed(self.on_clock(SESSION_TTL))
                    .unwrap_or(DateTime::<Utc>::MAX_UTC),
                last_used: now,
            })
            .await?;
        let session = Session {
            csrf: csrf_of(&id),
            who,
        };
        Ok((id, session))
    }

    /// The live session for a cookie value at `now`, which counts as a use of it (extending its
    /// idle timeout). A session found idle or expired is ended. A store that does not answer
    /// signs nobody in (logged).
    pub async fn get(&self, store: &dyn Store, id: &str, now: DateTime<Utc>) -> Option<Session> {
        let idle = self.on_clock(*self.idle.lock());
        match store
            .use_dashboard_session(&Sha256Hex::of(id), now, idle)
            .await
        {
            Ok(found) => found.map(|s| Session {
                csrf: csrf_of(id),
                who: s.who,
            }),
            Err(e) => {
                tracing::error!(error = %e, "dashboard: cannot read sessions from the store");
                None
            }
        }
    }

    /// Ends a session.
    pub async fn end(&self, store: &dyn Store, id: &str) {
        if let Err(e) = store.end_dashboard_session(&Sha256Hex::of(id)).await {
            tracing::warn!(error = %e, "dashboard: cannot end a session in the store; it ends at its idle timeout");
        }
    }

    /// Records a failed sign-in from `client`, presenting API key id `key_id` if it presented one.
    pub async fn failed(
        &self,
        store: &dyn Store,
        client: ClientKey,
        key_id: Option<&str>,
        now: DateTime<Utc>,
    ) {
        let mut keys = vec![address_key(client)];
        keys.extend(key_id.map(key_id_key));
        if let Err(e) = store.record_signin_failure(&keys, now).await {
            tracing::warn!(error = %e, "dashboard: cannot record a failed sign-in");
        }
    }

    /// How long sign-in from `client` (with API key id `key_id`, if one was presented) is refused
    /// for, after too many recent failures from that address or with that key id.
    pub async fn locked_out(
        &self,
        store: &dyn Store,
        client: ClientKey,
        key_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<Duration>, StoreError> {
        let mut keys = vec![address_key(client)];
        keys.extend(key_id.map(key_id_key));
        let window = TimeDelta::from_std(FAILURE_WINDOW).unwrap_or(TimeDelta::minutes(1));
        let until = store
            .signin_locked_until(&keys, MAX_FAILURES_PER_MINUTE as i64, window, now)
            .await?;
        Ok(until
            .filter(|u| *u > now)
            .and_then(|u| (u - now).to_std().ok()))
    }

    /// Forgets `client`'s failures once it signed in.
    pub async fn signed_in(&self, store: &dyn Store, client: ClientKey) {
        if let Err(e) = store.clear_signin_failures(&address_key(client)).await {
            tracing::warn!(error = %e, "dashboard: cannot clear failed sign-ins");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::ClientAddr;
    use std::sync::Arc;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn addr(last: u8) -> ClientKey {
        ClientAddr(Some(std::net::IpAddr::from([192, 0, 2, last]))).key()
    }

    async fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
        let store =
            tokenwarden_store::open(&url, tokenwarden_store::Keyring::generate("k1").unwrap())
                .await
                .unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn sessions_start_find_and_end() {
        let (_d, st) = store().await;
        let st = &*st;
        let s = Sessions::default();
        let (id, sess) = s.start(st, "password".into(), t0()).await.unwrap();
        let found = s.get(st, &id, t0()).await.unwrap();
        assert_eq!(
            found.csrf, sess.csrf,
            "the CSRF token follows from the cookie"
        );
        assert!(s.get(st, "another", t0()).await.is_none());
        assert!(sess.csrf_ok(&sess.csrf));
        assert!(!sess.csrf_ok(""));
        assert!(!sess.csrf_ok(&random_token()));
        s.end(st, &id).await;
        assert!(s.get(st, &id, t0()).await.is_none());
        // Neither the cookie value nor the CSRF token is stored.
        let (id, sess) = s.start(st, "password".into(), t0()).await.unwrap();
        let dump = format!(
            "{:?}",
            st.use_dashboard_session(&Sha256Hex::of(&id), t0(), TimeDelta::minutes(1))
                .await
                .unwrap()
        );
        assert!(!dump.contains(&id) && !dump.contains(&sess.csrf), "{dump}");
    }

    #[tokio::test]
    async fn a_session_ends_when_idle_and_at_its_absolute_end_however_used() {
        let (_d, st) = store().await;
        let st = &*st;
        let s = Sessions::default();
        let (id, _) = s.start(st, "password".into(), t0()).await.unwrap();
        let mut now = t0();
        // Used every 29 minutes, it lives until its absolute end.
        while now + TimeDelta::minutes(29) < t0() + SESSION_TTL {
            now += TimeDelta::minutes(29);
            assert!(s.get(st, &id, now).await.is_some(), "{now}");
        }
        assert!(
            s.get(st, &id, t0() + SESSION_TTL).await.is_none(),
            "absolute end"
        );

        let (id, _) = s.start(st, "password".into(), t0()).await.unwrap();
        assert!(
            s.get(st, &id, t0() + TimeDelta::minutes(30))
                .await
                .is_some(),
            "at the limit"
        );
        assert!(
            s.get(st, &id, t0() + TimeDelta::minutes(61))
                .await
                .is_none(),
            "idle 31 minutes"
        );
        assert!(
            s.get(st, &id, t0()).await.is_none(),
            "ended, not just hidden"
        );

        s.set_idle_timeout(Duration::from_secs(120));
        let (id, _) = s.start(st, "password".into(), t0()).await.unwrap();
        assert!(
            s.get(st, &id, t0() + TimeDelta::seconds(121))
                .await
                .is_none()
        );
        // Out-of-range settings are clamped to something usable.
        s.set_idle_timeout(Duration::ZERO);
        let (id, _) = s.start(st, "password".into(), t0()).await.unwrap();
        assert!(
            s.get(st, &id, t0() + TimeDelta::seconds(59))
                .await
                .is_some()
        );
    }

    #[tokio::test]
    async fn on_a_sped_up_clock_sessions_last_the_same_real_time() {
        // `serve --sandbox --time-scale 60`: a clock minute is a real second.
        let (_d, st) = store().await;
        let st = &*st;
        let s = Sessions::default();
        s.set_time_scale(60.0);
        let (id, _) = s.start(st, "password".into(), t0()).await.unwrap();
        let real = |minutes: i64| t0() + TimeDelta::minutes(minutes * 60);
        assert!(
            s.get(st, &id, real(29)).await.is_some(),
            "29 real minutes idle"
        );
        assert!(s.get(st, &id, real(58)).await.is_some());
        assert!(
            s.get(st, &id, real(89)).await.is_none(),
            "31 real minutes idle"
        );
        let (id, _) = s.start(st, "password".into(), t0()).await.unwrap();
        let mut m = 0;
        while m + 20 < 12 * 60 {
            m += 20;
            assert!(s.get(st, &id, real(m)).await.is_some(), "{m}");
        }
        assert!(
            s.get(st, &id, real(12 * 60)).await.is_none(),
            "12 real hours"
        );
    }

    #[test]
    fn password_is_checked_and_can_be_unset() {
        let s = Sessions::default();
        assert!(
            !s.password_ok(""),
            "no password configured: nothing matches"
        );
        s.set_password(Some("correct horse"));
        assert!(s.password_ok("correct horse"));
        assert!(!s.password_ok("correct hors"));
        s.set_password(Some(""));
        assert!(!s.password_ok(""));
    }

    #[tokio::test]
    async fn failures_lock_their_address_and_their_key_id_only() {
        let (_d, st) = store().await;
        let st = &*st;
        let s = Sessions::default();
        for _ in 0..MAX_FAILURES_PER_MINUTE {
            assert_eq!(s.locked_out(st, addr(1), None, t0()).await.unwrap(), None);
            s.failed(st, addr(1), None, t0()).await;
        }
        assert_eq!(
            s.locked_out(st, addr(1), None, t0() + TimeDelta::seconds(15))
                .await
                .unwrap(),
            Some(Duration::from_secs(45))
        );
        assert_eq!(
            s.locked_out(st, addr(2), None, t0()).await.unwrap(),
            None,
            "another address"
        );
        assert_eq!(
            s.locked_out(st, addr(1), None, t0() + TimeDelta::seconds(60))
                .await
                .unwrap(),
            None
        );

        // Guesses at one key id from many addresses lock that id, not the addresses.
        for i in 0..MAX_FAILURES_PER_MINUTE {
            s.failed(st, addr(10 + i as u8), Some("abc123"), t0()).await;
        }
        assert!(
            s.locked_out(st, addr(99), Some("abc123"), t0())
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(
            s.locked_out(st, addr(99), Some("def456"), t0())
                .await
                .unwrap(),
            None
        );
        assert_eq!(s.locked_out(st, addr(99), None, t0()).await.unwrap(), None);
        // Signing in forgets the address's failures.
        s.failed(st, addr(3), None, t0()).await;
        s.signed_in(st, addr(3)).await;
        for _ in 0..MAX_FAILURES_PER_MINUTE - 1 {
            s.failed(st, addr(3), None, t0()).await;
        }
        assert_eq!(s.locked_out(st, addr(3), None, t0()).await.unwrap(), None);
    }

    #[tokio::test]
    async fn debug_shows_no_token() {
        let (_d, st) = store().await;
        let s = Sessions::default();
        let (id, sess) = s.start(&*st, "password".into(), t0()).await.unwrap();
        let text = format!("{s:?} {sess:?}");
        assert!(!text.contains(&id) && !text.contains(&sess.csrf), "{text}");
    }
}

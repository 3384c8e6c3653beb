//! Dashboard sessions: a random id in an `HttpOnly`, `SameSite=Strict` cookie (`__Host-` and
//! `Secure` when the public URL is https, hardening rule 12), a CSRF token per session, and a
//! short memory of failed sign-ins per client address and per API key id.
//!
//! A session ends [`SESSION_TTL`] after sign-in, or sooner when unused for the idle timeout
//! ([`IDLE_TIMEOUT`] unless configured); every signed-in request extends it. Times are read from
//! the daemon's clock, and both lifetimes are real time: on a clock sped up by `--time-scale`
//! they are stretched by the same factor.
//!
//! Sessions live in this replica's memory, keyed by the SHA-256 of the cookie value; behind a load
//! balancer use sticky sessions (or sign in again on another replica).

use crate::limits::{ClientKey, FailureWindow, MAX_CLIENTS};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use parking_lot::Mutex;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::Duration;
use subtle::ConstantTimeEq;

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
    expires: DateTime<Utc>,
    last_used: DateTime<Utc>,
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

/// The sessions of this replica, the configured dashboard password (its SHA-256), the idle
/// timeout, and recent failed sign-ins.
pub struct Sessions {
    live: Mutex<HashMap<[u8; 32], Session>>,
    password: Mutex<Option<[u8; 32]>>,
    idle: Mutex<Duration>,
    time_scale: Mutex<f64>,
    by_address: FailureWindow<ClientKey>,
    /// Keyed by the SHA-256 of the presented key id, so a long id costs no more memory.
    by_key_id: FailureWindow<[u8; 32]>,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            live: Mutex::default(),
            password: Mutex::default(),
            idle: Mutex::new(IDLE_TIMEOUT),
            time_scale: Mutex::new(1.0),
            by_address: FailureWindow::new(MAX_FAILURES_PER_MINUTE, FAILURE_WINDOW, MAX_CLIENTS),
            by_key_id: FailureWindow::new(MAX_FAILURES_PER_MINUTE, FAILURE_WINDOW, MAX_CLIENTS),
        }
    }
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("live", &self.live.lock().len())
            .field("password_set", &self.password.lock().is_some())
            .field("idle", &*self.idle.lock())
            .finish_non_exhaustive()
    }
}

fn digest(v: &str) -> [u8; 32] {
    Sha256::digest(v.as_bytes()).into()
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

    /// Starts a session at `now`; the cookie value to send (shown nowhere else).
    pub fn start(&self, who: String, now: DateTime<Utc>) -> (String, Session) {
        let id = random_token();
        let s = Session {
            csrf: random_token(),
            who,
            expires: now
                .checked_add_signed(self.on_clock(SESSION_TTL))
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            last_used: now,
        };
        let idle = self.on_clock(*self.idle.lock());
        let mut live = self.live.lock();
        live.retain(|_, s| s.live_at(now, idle));
        live.insert(digest(&id), s.clone());
        (id, s)
    }

    /// The live session for a cookie value at `now`, which counts as a use of it (extending its
    /// idle timeout). A session found idle or expired is ended.
    pub fn get(&self, id: &str, now: DateTime<Utc>) -> Option<Session> {
        let idle = self.on_clock(*self.idle.lock());
        let mut live = self.live.lock();
        let key = digest(id);
        let s = live.get_mut(&key)?;
        if !s.live_at(now, idle) {
            live.remove(&key);
            return None;
        }
        s.last_used = s.last_used.max(now);
        Some(s.clone())
    }

    /// Ends a session.
    pub fn end(&self, id: &str) {
        self.live.lock().remove(&digest(id));
    }

    /// Records a failed sign-in from `client`, presenting API key id `key_id` if it presented one.
    pub fn failed(&self, client: ClientKey, key_id: Option<&str>, now: DateTime<Utc>) {
        self.by_address.record(client, now);
        if let Some(id) = key_id {
            self.by_key_id.record(digest(id), now);
        }
    }

    /// How long sign-in from `client` (with API key id `key_id`, if one was presented) is refused
    /// for, after too many recent failures from that address or with that key id.
    pub fn locked_out(
        &self,
        client: ClientKey,
        key_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Option<Duration> {
        let by_address = self.by_address.locked(&client, now);
        let by_key = key_id.and_then(|id| self.by_key_id.locked(&digest(id), now));
        by_address.max(by_key)
    }

    /// Forgets `client`'s failures once it signed in.
    pub fn signed_in(&self, client: ClientKey) {
        self.by_address.clear(&client);
    }
}

impl Session {
    fn live_at(&self, now: DateTime<Utc>, idle: TimeDelta) -> bool {
        now < self.expires && now - self.last_used <= idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::ClientAddr;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn addr(last: u8) -> ClientKey {
        ClientAddr(Some(std::net::IpAddr::from([192, 0, 2, last]))).key()
    }

    #[test]
    fn sessions_start_find_and_end() {
        let s = Sessions::default();
        let (id, sess) = s.start("password".into(), t0());
        assert!(s.get(&id, t0()).is_some());
        assert!(s.get("another", t0()).is_none());
        assert!(sess.csrf_ok(&sess.csrf));
        assert!(!sess.csrf_ok(""));
        assert!(!sess.csrf_ok(&random_token()));
        s.end(&id);
        assert!(s.get(&id, t0()).is_none());
    }

    #[test]
    fn a_session_ends_when_idle_and_at_its_absolute_end_however_used() {
        let s = Sessions::default();
        let (id, _) = s.start("password".into(), t0());
        let mut now = t0();
        // Used every 29 minutes, it lives until its absolute end.
        while now + TimeDelta::minutes(29) < t0() + SESSION_TTL {
            now += TimeDelta::minutes(29);
            assert!(s.get(&id, now).is_some(), "{now}");
        }
        assert!(s.get(&id, t0() + SESSION_TTL).is_none(), "absolute end");

        let (id, _) = s.start("password".into(), t0());
        assert!(
            s.get(&id, t0() + TimeDelta::minutes(30)).is_some(),
            "at the limit"
        );
        assert!(
            s.get(&id, t0() + TimeDelta::minutes(61)).is_none(),
            "idle 31 minutes"
        );
        assert!(s.get(&id, t0()).is_none(), "ended, not just hidden");

        s.set_idle_timeout(Duration::from_secs(120));
        let (id, _) = s.start("password".into(), t0());
        assert!(s.get(&id, t0() + TimeDelta::seconds(121)).is_none());
        // Out-of-range settings are clamped to something usable.
        s.set_idle_timeout(Duration::ZERO);
        let (id, _) = s.start("password".into(), t0());
        assert!(s.get(&id, t0() + TimeDelta::seconds(59)).is_some());
    }

    #[test]
    fn on_a_sped_up_clock_sessions_last_the_same_real_time() {
        // `serve --sandbox --time-scale 60`: a clock minute is a real second.
        let s = Sessions::default();
        s.set_time_scale(60.0);
        let (id, _) = s.start("password".into(), t0());
        let real = |minutes: i64| t0() + TimeDelta::minutes(minutes * 60);
        assert!(s.get(&id, real(29)).is_some(), "29 real minutes idle");
        assert!(s.get(&id, real(58)).is_some());
        assert!(s.get(&id, real(89)).is_none(), "31 real minutes idle");
        let (id, _) = s.start("password".into(), t0());
        let mut m = 0;
        while m + 20 < 12 * 60 {
            m += 20;
            assert!(s.get(&id, real(m)).is_some(), "{m}");
        }
        assert!(s.get(&id, real(12 * 60)).is_none(), "12 real hours");
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

    #[test]
    fn failures_lock_their_address_and_their_key_id_only() {
        let s = Sessions::default();
        for _ in 0..MAX_FAILURES_PER_MINUTE {
            assert_eq!(s.locked_out(addr(1), None, t0()), None);
            s.failed(addr(1), None, t0());
        }
        assert_eq!(
            s.locked_out(addr(1), None, t0() + TimeDelta::seconds(15)),
            Some(Duration::from_secs(45))
        );
        assert_eq!(s.locked_out(addr(2), None, t0()), None, "another address");
        assert_eq!(
            s.locked_out(addr(1), None, t0() + TimeDelta::seconds(60)),
            None
        );

        // Guesses at one key id from many addresses lock that id, not the addresses.
        for i in 0..MAX_FAILURES_PER_MINUTE {
            s.failed(addr(10 + i as u8), Some("abc123"), t0());
        }
        assert!(s.locked_out(addr(99), Some("abc123"), t0()).is_some());
        assert_eq!(s.locked_out(addr(99), Some("def456"), t0()), None);
        assert_eq!(s.locked_out(addr(99), None, t0()), None);
        // Signing in forgets the address's failures.
        s.failed(addr(3), None, t0());
        s.signed_in(addr(3));
        for _ in 0..MAX_FAILURES_PER_MINUTE - 1 {
            s.failed(addr(3), None, t0());
        }
        assert_eq!(s.locked_out(addr(3), None, t0()), None);
    }

    #[test]
    fn debug_shows_no_token() {
        let s = Sessions::default();
        let (id, sess) = s.start("password".into(), t0());
        let text = format!("{s:?} {sess:?}");
        assert!(!text.contains(&id) && !text.contains(&sess.csrf), "{text}");
    }
}

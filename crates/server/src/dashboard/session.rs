//! Dashboard sessions: a random id in an `HttpOnly`, `SameSite=Strict` cookie (`__Host-` and
//! `Secure` when the public URL is https, hardening rule 12), a CSRF token per session, and a
//! short memory of failed sign-ins.
//!
//! Sessions live in this replica's memory, keyed by the SHA-256 of the cookie value; behind a load
//! balancer use sticky sessions (or sign in again on another replica).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use parking_lot::Mutex;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// How long a session lasts after sign-in.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Failed sign-ins allowed per minute before sign-in is refused for a while.
const MAX_FAILURES_PER_MINUTE: usize = 10;

/// One signed-in browser.
#[derive(Clone)]
pub struct Session {
    /// The CSRF token every state-changing form carries.
    pub csrf: String,
    /// Who signed in, for the header and logs ("API key tw_ab12…", "password").
    pub who: String,
    expires: Instant,
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

/// The sessions of this replica, and the configured dashboard password (its SHA-256).
#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<[u8; 32], Session>>,
    password: Mutex<Option<[u8; 32]>>,
    failures: Mutex<VecDeque<Instant>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("live", &self.live.lock().len())
            .field("password_set", &self.password.lock().is_some())
            .finish()
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

    /// Starts a session; the cookie value to send (shown nowhere else).
    pub fn start(&self, who: String) -> (String, Session) {
        let id = random_token();
        let s = Session {
            csrf: random_token(),
            who,
            expires: Instant::now() + SESSION_TTL,
        };
        let mut live = self.live.lock();
        let now = Instant::now();
        live.retain(|_, s| s.expires > now);
        live.insert(digest(&id), s.clone());
        (id, s)
    }

    /// The live session for a cookie value.
    pub fn get(&self, id: &str) -> Option<Session> {
        let live = self.live.lock();
        live.get(&digest(id))
            .filter(|s| s.expires > Instant::now())
            .cloned()
    }

    /// Ends a session.
    pub fn end(&self, id: &str) {
        self.live.lock().remove(&digest(id));
    }

    /// Records a failed sign-in; true when too many failed in the last minute.
    pub fn failed(&self) -> bool {
        let mut f = self.failures.lock();
        let now = Instant::now();
        while f
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
        {
            f.pop_front();
        }
        f.push_back(now);
        f.len() > MAX_FAILURES_PER_MINUTE
    }

    /// Whether sign-in is refused for now (too many recent failures).
    pub fn locked_out(&self) -> bool {
        let f = self.failures.lock();
        let now = Instant::now();
        f.iter()
            .filter(|t| now.duration_since(**t) <= Duration::from_secs(60))
            .count()
            > MAX_FAILURES_PER_MINUTE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_start_find_and_end() {
        let s = Sessions::default();
        let (id, sess) = s.start("password".into());
        assert!(s.get(&id).is_some());
        assert!(s.get("another").is_none());
        assert!(sess.csrf_ok(&sess.csrf));
        assert!(!sess.csrf_ok(""));
        assert!(!sess.csrf_ok(&random_token()));
        s.end(&id);
        assert!(s.get(&id).is_none());
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
    fn too_many_failures_lock_sign_in() {
        let s = Sessions::default();
        for _ in 0..MAX_FAILURES_PER_MINUTE {
            assert!(!s.failed());
        }
        assert!(s.failed());
        assert!(s.locked_out());
    }

    #[test]
    fn debug_shows_no_token() {
        let s = Sessions::default();
        let (id, sess) = s.start("password".into());
        let text = format!("{s:?} {sess:?}");
        assert!(!text.contains(&id) && !text.contains(&sess.csrf), "{text}");
    }
}

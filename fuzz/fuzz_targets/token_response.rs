//! The token-response reader over every provider definition: a hostile answer from a token
//! endpoint (a `curl -i` paste) yields tokens only with a non-empty access token, never loses the
//! refresh token being renewed, and otherwise an error that quotes nothing the platform sent.
#![no_main]

use arbitrary::Unstructured;
use chrono::{DateTime, TimeDelta, Utc};
use libfuzzer_sys::fuzz_target;
use tokenwarden_core::secret::Secret;
use tokenwarden_core::token::TokenSet;
use tokenwarden_fuzz::{provider, response};
use tokenwarden_oauth::response::read;

/// What the previous set holds; no platform answer contains it.
const PREVIOUS_REFRESH: &str = "rt-previous-7f3a";
const PREVIOUS_ACCESS: &str = "at-previous-c41e";

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let (Ok(selector), Ok(refreshing), Ok(now_secs), Ok(status)) = (
        u.arbitrary::<u8>(),
        u.arbitrary::<bool>(),
        u.arbitrary::<u32>(),
        u.arbitrary::<u16>(),
    ) else {
        return;
    };
    let p = provider(selector);
    let now = DateTime::<Utc>::from_timestamp(i64::from(now_secs), 0).expect("in range");
    let previous = TokenSet {
        access_token: Secret::new(PREVIOUS_ACCESS),
        refresh_token: Some(Secret::new(PREVIOUS_REFRESH)),
        token_type: None,
        scopes: vec!["s".into()],
        issued_at: now - TimeDelta::hours(1),
        expires_at: Some(now),
        refresh_expires_at: None,
        token_secret: None,
    };
    let r = response(status % 1000, u.take_rest());
    match read(
        p,
        r.status,
        &r.headers,
        &r.body,
        refreshing.then_some(&previous),
        now,
    ) {
        Ok(g) => {
            let at = g.tokens.access_token.expose();
            assert!(!at.trim().is_empty(), "Ok without an access token");
            assert_eq!(at, at.trim());
            assert_eq!(g.tokens.issued_at, now);
            if refreshing {
                assert!(g.tokens.refresh_token.is_some(), "the refresh token was lost");
            }
            for a in &g.account_ids {
                assert!(!a.is_empty());
            }
            if let Some(exp) = g.tokens.expires_at {
                assert!(exp > now, "a new token that expired already: {exp} at {now}");
            }
            // Long enough not to occur in "token set (expires …)" by chance.
            if at.len() >= 12 {
                assert!(!g.to_string().contains(at), "a grant's Display shows its token");
            }
        }
        Err(e) => {
            // The set being renewed never reaches an error (unless the platform sent it back).
            let shown = e.to_string();
            let sent = String::from_utf8_lossy(data);
            for ours in [PREVIOUS_REFRESH, PREVIOUS_ACCESS] {
                assert!(sent.contains(ours) || !shown.contains(ours), "{shown}");
            }
        }
    }
});

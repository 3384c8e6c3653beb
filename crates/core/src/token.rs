//! What a grant yields: the token set, and the arithmetic of its expiry.

use crate::secret::Secret;
use chrono::{DateTime, TimeDelta, Utc};

/// The credentials of one connection at one moment. Stored encrypted, handed out decrypted, never
/// printed (`Debug` redacts the tokens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSet {
    /// The bearer credential sent to the platform.
    pub access_token: Secret,
    /// The credential that obtains a new access token, where the platform issues one. Platforms that
    /// refresh a long-lived token with itself (Threads) have none.
    pub refresh_token: Option<Secret>,
    /// `Bearer`, `bearer`, or absent (TikTok Business, Threads code exchange).
    pub token_type: Option<String>,
    /// Scopes the platform says it granted (numeric ids for TikTok Business, names elsewhere).
    pub scopes: Vec<String>,
    /// When this access token was issued (by our clock, at the moment the response arrived).
    pub issued_at: DateTime<Utc>,
    /// When the access token stops working. `None` only for tokens the platform documents as
    /// non-expiring (TikTok Business advertiser tokens); missing `expires_in` elsewhere is replaced
    /// by the provider's default lifetime, never by "no expiry".
    pub expires_at: Option<DateTime<Utc>>,
    /// When the refresh token stops working, where the platform says or the provider documents it.
    pub refresh_expires_at: Option<DateTime<Utc>>,
    /// OAuth 1.0a: the token secret that, with the app's consumer secret, signs every request
    /// (`oauth_token_secret`). Never sent to the platform, logged or shown; stored encrypted.
    pub token_secret: Option<Secret>,
}

impl TokenSet {
    /// How long the access token has left at `now` (zero when expired; `None` when it has no expiry).
    pub fn remaining(&self, now: DateTime<Utc>) -> Option<TimeDelta> {
        self.expires_at.map(|e| (e - now).max(TimeDelta::zero()))
    }

    /// Whether the access token is valid for at least `margin` more at `now`.
    pub fn fresh_for(&self, now: DateTime<Utc>, margin: TimeDelta) -> bool {
        match self.expires_at {
            None => true,
            Some(e) => now.checked_add_signed(margin).is_some_and(|t| t < e),
        }
    }

    /// Whether the access token has expired at `now`.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }

    /// Age of the access token at `now`.
    pub fn age(&self, now: DateTime<Utc>) -> TimeDelta {
        now - self.issued_at
    }
}

/// Adds a platform-reported `expires_in` (seconds) to `now` with checked arithmetic. Values that are
/// zero, negative or absurdly large (over ten years) are refused, so the caller falls back to the
/// provider's default lifetime rather than to "never expires".
pub fn expiry_from_seconds(now: DateTime<Utc>, seconds: i64) -> Option<DateTime<Utc>> {
    const TEN_YEARS: i64 = 10 * 366 * 86_400;
    if seconds <= 0 || seconds > TEN_YEARS {
        return None;
    }
    now.checked_add_signed(TimeDelta::seconds(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(expires_in: Option<i64>) -> TokenSet {
        let now = DateTime::from_timestamp(1_000_000, 0).unwrap();
        TokenSet {
            access_token: Secret::new("at-0123456789abcdef"),
            refresh_token: None,
            token_type: Some("Bearer".into()),
            scopes: vec![],
            issued_at: now,
            expires_at: expires_in.and_then(|s| expiry_from_seconds(now, s)),
            refresh_expires_at: None,
            token_secret: None,
        }
    }

    #[test]
    fn freshness() {
        let t = set(Some(3600));
        let now = t.issued_at;
        assert!(t.fresh_for(now, TimeDelta::minutes(59)));
        assert!(!t.fresh_for(now, TimeDelta::minutes(60)));
        assert!(!t.is_expired(now + TimeDelta::minutes(59)));
        assert!(t.is_expired(now + TimeDelta::minutes(60)));
        assert!(set(None).fresh_for(now, TimeDelta::days(10_000)));
    }

    #[test]
    fn hostile_expires_in_is_refused() {
        let now = DateTime::from_timestamp(0, 0).unwrap();
        for bad in [0, -5, i64::MAX, 400_000_000] {
            assert_eq!(expiry_from_seconds(now, bad), None, "{bad}");
        }
        assert!(expiry_from_seconds(now, 3600).is_some());
    }

    #[test]
    fn debug_does_not_print_tokens() {
        let shown = format!("{:?}", set(Some(1)));
        assert!(!shown.contains("at-0123"), "{shown}");
    }
}

//! Fault injection, scoped per provider: throttling, outages, latency, malformed token responses,
//! refresh-token rotation and the shape of Snapchat's 401.
//!
//! Settings sit behind a per-provider `RwLock` (read on every request, written only by the admin
//! API); the "next N requests" budgets are atomics.

use chrono::{DateTime, Utc};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How an outage answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutageMode {
    /// The platform's own service error: Snapchat 503 envelope, TikTok Business 50002 inside
    /// HTTP 200, TikTok `internal_error` 500, Threads/Meta Graph code 2 with HTTP 500.
    Platform,
    /// An HTML error page from the load balancer in front of the platform (502 or 503); on Meta,
    /// the "Sorry, something went wrong." page.
    Html,
}

/// What a malformed token response looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MalformedMode {
    /// The JSON is cut off half-way.
    Truncated,
    /// An HTML page with status 200.
    Html,
    /// Valid JSON without `access_token` (and without `expires_in`).
    MissingFields,
    /// `expires_in` sent as a string.
    ExpiresInString,
}

/// Snapchat's 401 comes in two shapes (platforms.md §1): the RFC 6750 challenge with an empty
/// body, or a bare `unauthorized` text body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnauthorizedStyle {
    /// Body `unauthorized`, text/plain: the evidenced shape (platforms.md §1, "Corrections
    /// (2026-12)" 6), so the default.
    #[default]
    Plain,
    /// An empty body (tap-snapchat-ads handles `content_length == 0`).
    Empty,
    /// `WWW-Authenticate: Bearer error="invalid_token", …` and an empty body: the RFC 6750 shape,
    /// with no first-party source for Snapchat, so only on request.
    Challenge,
}

/// Which requests a throttle fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThrottleTarget {
    /// API calls (the default).
    #[default]
    Api,
    /// Token-endpoint calls (exchange, refresh, revoke).
    Token,
    /// Both.
    All,
}

impl ThrottleTarget {
    /// Whether a request of this kind is affected.
    pub fn covers(self, token_endpoint: bool) -> bool {
        match self {
            ThrottleTarget::Api => !token_endpoint,
            ThrottleTarget::Token => token_endpoint,
            ThrottleTarget::All => true,
        }
    }
}

/// The settings an admin can change for one provider.
#[derive(Debug, Clone, Serialize)]
pub struct FaultSettings {
    /// Limit the target's calls to `rate_per_sec` until `until`.
    pub throttle_rate: Option<(f64, DateTime<Utc>, ThrottleTarget)>,
    /// The API throttle answers with the app's quota, where the platform has one of its own
    /// (Google Ads' daily developer quota), instead of the per-user or per-account one.
    pub throttle_app: bool,
    /// An outage until the instant, in the mode.
    pub outage: Option<(DateTime<Utc>, OutageMode, u16)>,
    /// Added latency (sandbox time) until the instant (or for ever).
    pub latency: Option<(Duration, Option<DateTime<Utc>>)>,
    /// Latency added after the platform acted, before its answer leaves (the request did its work,
    /// the answer is late: a rotated refresh token whose answer is still on its way).
    pub answer_latency: Option<(Duration, Option<DateTime<Utc>>)>,
    /// The shape of the next malformed token responses.
    pub malformed_mode: MalformedMode,
    /// Snapchat's 401 shape.
    pub unauthorized_style: UnauthorizedStyle,
    /// Refresh tokens rotate.
    pub rotation: bool,
    /// How long a rotated-out refresh token still works.
    pub reuse_grace: Duration,
}

/// One provider's faults.
#[derive(Debug)]
pub(crate) struct ProviderFaults {
    pub settings: RwLock<FaultSettings>,
    /// The next N API calls are throttled.
    pub throttle_next: AtomicU64,
    /// The next N token-endpoint calls are throttled.
    pub throttle_next_token: AtomicU64,
    pub malformed_next: AtomicU64,
}

impl ProviderFaults {
    pub fn new(rotation: bool, reuse_grace: Duration) -> Self {
        ProviderFaults {
            settings: RwLock::new(FaultSettings {
                throttle_rate: None,
                throttle_app: false,
                outage: None,
                latency: None,
                answer_latency: None,
                malformed_mode: MalformedMode::Truncated,
                unauthorized_style: UnauthorizedStyle::Plain,
                rotation,
                reuse_grace,
            }),
            throttle_next: AtomicU64::new(0),
            throttle_next_token: AtomicU64::new(0),
            malformed_next: AtomicU64::new(0),
        }
    }

    /// Takes one unit from a "next N" budget; true if the budget had one.
    pub fn take(budget: &AtomicU64) -> bool {
        budget
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }

    /// The active outage, if any: (mode, HTML status).
    pub fn outage(&self, now: DateTime<Utc>) -> Option<(OutageMode, u16)> {
        self.settings
            .read()
            .outage
            .filter(|(until, _, _)| now < *until)
            .map(|(_, m, s)| (m, s))
    }

    pub fn latency(&self, now: DateTime<Utc>) -> Option<Duration> {
        self.settings
            .read()
            .latency
            .filter(|(_, until)| until.is_none_or(|u| now < u))
            .map(|(d, _)| d)
    }

    pub fn answer_latency(&self, now: DateTime<Utc>) -> Option<Duration> {
        self.settings
            .read()
            .answer_latency
            .filter(|(_, until)| until.is_none_or(|u| now < u))
            .map(|(d, _)| d)
    }

    /// The throttle rate in force for API calls (`token_endpoint = false`) or token calls.
    pub fn throttle_rate(&self, now: DateTime<Utc>, token_endpoint: bool) -> Option<f64> {
        self.settings
            .read()
            .throttle_rate
            .filter(|(_, until, target)| now < *until && target.covers(token_endpoint))
            .map(|(r, _, _)| r)
    }

    /// Whether this request is throttled: takes from the right "next N" budget, then applies
    /// the rate, counted under `key` on the shared limiter.
    pub fn throttled(
        &self,
        limits: &crate::rate_limit::RateLimiter,
        key: String,
        token_endpoint: bool,
        now: DateTime<Utc>,
    ) -> bool {
        let budget = if token_endpoint {
            &self.throttle_next_token
        } else {
            &self.throttle_next
        };
        if ProviderFaults::take(budget) {
            return true;
        }
        let Some(rate) = self.throttle_rate(now, token_endpoint) else {
            return false;
        };
        let per_sec = rate.max(0.0);
        // A rate below 1/s is enforced over a longer window.
        let (limit, window) = if per_sec >= 1.0 {
            (per_sec as u64, Duration::from_secs(1))
        } else if per_sec > 0.0 {
            (1, Duration::from_secs_f64(1.0 / per_sec))
        } else {
            (0, Duration::from_secs(1))
        };
        limits.admit(key, limit, window, now).is_err()
    }

    /// Clears every fault but keeps rotation settings.
    pub fn clear(&self) {
        let mut s = self.settings.write();
        s.throttle_rate = None;
        s.throttle_app = false;
        s.outage = None;
        s.latency = None;
        s.answer_latency = None;
        // Back to the shape a fresh sandbox sends, not the one only sent on request.
        s.unauthorized_style = UnauthorizedStyle::default();
        self.throttle_next.store(0, Ordering::Release);
        self.throttle_next_token.store(0, Ordering::Release);
        self.malformed_next.store(0, Ordering::Release);
    }
}

//! The emulated platforms and the facts about them that do not depend on a request
//! (lifetimes, code validity, path prefix). Figures cite `docs/platforms.md`.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One emulated platform. Its [`Provider::id`] is also its path prefix in the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Provider {
    /// Snapchat Marketing API (`accounts.snapchat.com` + `adsapi.snapchat.com`).
    Snapchat,
    /// TikTok API for Business (`business-api.tiktok.com`).
    TiktokBusiness,
    /// TikTok Login Kit v2 (`www.tiktok.com` + `open.tiktokapis.com`).
    Tiktok,
    /// Threads API (`threads.net` + `graph.threads.net`).
    Threads,
    /// Meta Graph / Marketing API v24.0 (`www.facebook.com` + `graph.facebook.com`).
    Meta,
    /// Google Ads API v21 (`accounts.google.com` + `oauth2.googleapis.com` +
    /// `googleads.googleapis.com`; platforms-ads.md Part A §1).
    GoogleAds,
    /// Microsoft Advertising API v13 (`login.microsoftonline.com` +
    /// `*.api.bingads.microsoft.com`; platforms-ads.md Part A §2).
    MicrosoftAds,
    /// Amazon Ads API with Login with Amazon, per region (`www.amazon.com` / `eu.account.amazon.com`
    /// / `apac.account.amazon.com` + `api.amazon.com` / `.co.uk` / `.co.jp` +
    /// `advertising-api(-eu|-fe).amazon.com`; platforms-ads.md Part A §3). The NA hosts are served
    /// under `/amazon-ads`, EU and FE under `/amazon-ads/region/<eu|fe>`.
    AmazonAds,
    /// LinkedIn Marketing API (`www.linkedin.com/oauth/v2` + `api.linkedin.com`; platforms-ads.md
    /// Part B §1).
    Linkedin,
    /// Pinterest API v5 (`www.pinterest.com/oauth/` + `api.pinterest.com/v5`, sandbox host
    /// `api-sandbox.pinterest.com`; platforms-ads.md Part B §2).
    Pinterest,
    /// Reddit Ads API v3 with Reddit's OAuth (`www.reddit.com` + `ads-api.reddit.com`;
    /// platforms-ads.md Part B §3).
    Reddit,
    /// X API v2 with OAuth 2.0 and PKCE (`x.com` + `api.x.com`; platforms-ads.md Part B §4).
    X,
    /// X Ads API with OAuth 1.0a (`api.twitter.com/oauth/*` + `ads-api.x.com`, sandbox host
    /// `ads-api-sandbox.x.com`; platforms-ads.md Part B §4): HMAC-SHA1 signed requests, checked
    /// the way X checks them.
    XAds,
}

/// How a platform tells an app that a user removed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeauthorizeCallback {
    /// A POST form with `signed_request` (Meta's deauthorize callback, Threads' uninstall
    /// callback): base64url(HMAC-SHA256 over the base64url payload, keyed by the app secret)
    /// "." base64url(`{"algorithm":"HMAC-SHA256","issued_at":…,"user_id":…}`).
    SignedRequest,
    /// TikTok's `authorization.removed` webhook: a JSON body signed in the `TikTok-Signature:
    /// t=…,s=…` header (HMAC-SHA256 of `"{t}.{body}"`, keyed by the client secret).
    TiktokWebhook,
}

impl Provider {
    /// Every platform, in a stable order.
    pub const ALL: [Provider; 13] = [
        Provider::Snapchat,
        Provider::TiktokBusiness,
        Provider::Tiktok,
        Provider::Threads,
        Provider::Meta,
        Provider::GoogleAds,
        Provider::MicrosoftAds,
        Provider::AmazonAds,
        Provider::Linkedin,
        Provider::Pinterest,
        Provider::Reddit,
        Provider::X,
        Provider::XAds,
    ];

    /// The provider id, which is also the sandbox path prefix (`/snapchat/...`).
    pub fn id(self) -> &'static str {
        match self {
            Provider::Snapchat => "snapchat",
            Provider::TiktokBusiness => "tiktok-business",
            Provider::Tiktok => "tiktok",
            Provider::Threads => "threads",
            Provider::Meta => "meta",
            Provider::GoogleAds => "google-ads",
            Provider::MicrosoftAds => "microsoft-ads",
            Provider::AmazonAds => "amazon-ads",
            Provider::Linkedin => "linkedin",
            Provider::Pinterest => "pinterest",
            Provider::Reddit => "reddit",
            Provider::X => "x",
            Provider::XAds => "x-ads",
        }
    }

    /// Reads a provider id.
    pub fn parse(id: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.id() == id)
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The authorize path under the provider prefix.
    pub fn authorize_path(self) -> &'static str {
        match self {
            Provider::Snapchat => "/login/oauth2/authorize",
            Provider::TiktokBusiness => "/portal/auth",
            Provider::Tiktok => "/v2/auth/authorize/",
            Provider::Threads => "/oauth/authorize",
            Provider::Meta => "/v24.0/dialog/oauth",
            Provider::GoogleAds => "/o/oauth2/v2/auth",
            Provider::MicrosoftAds => "/common/oauth2/v2.0/authorize",
            Provider::AmazonAds => "/ap/oa",
            Provider::Linkedin => "/oauth/v2/authorization",
            Provider::Pinterest => "/oauth/",
            Provider::Reddit => "/api/v1/authorize",
            Provider::X => "/i/oauth2/authorize",
            // OAuth 1.0a: served by the platform module itself (it takes `oauth_token`).
            Provider::XAds => "/oauth/authorize",
        }
    }

    /// The platform's own sandbox API host, where it has one (platforms.md §2: TikTok Business
    /// `sandbox-ads.tiktok.com`). The sandbox serves that host's API under
    /// `/<provider>/sandbox/…` ([`tokenwarden_core::provider::SANDBOX_HOST_PREFIX`]); it knows only
    /// the tokens of apps registered for the sandbox environment, and the production host only
    /// those of production apps.
    pub fn sandbox_host(self) -> Option<&'static str> {
        match self {
            Provider::TiktokBusiness => Some("sandbox-ads.tiktok.com"),
            // Sandbox tokens work only there (Part B §2 Sandbox).
            Provider::Pinterest => Some("api-sandbox.pinterest.com"),
            // Part B §4 Sandbox: campaigns never serve; same OAuth 1.0a credentials.
            Provider::XAds => Some("ads-api-sandbox.x.com"),
            // Part A §2 Sandbox: its own users and scope; the same sign-in host.
            Provider::MicrosoftAds => Some("clientcenter.api.sandbox.bingads.microsoft.com"),
            _ => None,
        }
    }

    /// The developer token the platform wants on every API call besides OAuth, as the sandbox
    /// issues it to every app; `None` for platforms without one.
    pub fn developer_token(self) -> Option<&'static str> {
        match self {
            // The universal sandbox developer token (Part A §2 Sandbox).
            Provider::MicrosoftAds => Some("BBD37VB98"),
            _ => None,
        }
    }

    /// The callback the platform sends when a user removes the app, where it documents one
    /// (Meta, Threads, TikTok Login Kit). Snapchat and TikTok API for Business document none.
    pub fn deauthorize_callback(self) -> Option<DeauthorizeCallback> {
        match self {
            Provider::Meta | Provider::Threads => Some(DeauthorizeCallback::SignedRequest),
            Provider::Tiktok => Some(DeauthorizeCallback::TiktokWebhook),
            Provider::Snapchat
            | Provider::TiktokBusiness
            | Provider::GoogleAds
            | Provider::MicrosoftAds
            | Provider::AmazonAds
            | Provider::Linkedin
            | Provider::Pinterest => None,
            Provider::Reddit | Provider::X => None,
            Provider::XAds => None,
        }
    }

    /// The lifetime of the first access token the platform issues; `None` = never expires.
    /// Snapchat 60 min (quick-start), TikTok Login Kit 2 h (Nov-2026 pages), Threads and Meta
    /// short-lived 1 h; TikTok Business long-term tokens have no expiry (platforms.md §0.5).
    pub fn default_access_lifetime(self) -> Option<Duration> {
        match self {
            Provider::Snapchat | Provider::Threads | Provider::Meta | Provider::MicrosoftAds => {
                Some(HOUR)
            }
            // expires_in 3600 (platforms-ads.md Part A §3, Part B §3).
            Provider::AmazonAds | Provider::Reddit => Some(HOUR),
            // 2 hours (Part B §4).
            Provider::X => Some(2 * HOUR),
            // expires_in 3599 (platforms-ads.md Part A §1).
            Provider::GoogleAds => Some(HOUR - Duration::from_secs(1)),
            Provider::Tiktok => Some(2 * HOUR),
            // OAuth 1.0a token credentials never expire (Part B §4).
            Provider::TiktokBusiness | Provider::XAds => None,
            // expires_in 5184000 (Part B §1).
            Provider::Linkedin => Some(60 * DAY),
            // expires_in 2592000 (Part B §2).
            Provider::Pinterest => Some(30 * DAY),
        }
    }

    /// Threads and Meta long-lived tokens: 60 days.
    pub fn default_long_lived_lifetime(self) -> Duration {
        60 * DAY
    }

    /// Refresh-token lifetime; `None` = never expires (Snapchat: "never expires", tap-snapchat-ads).
    pub fn refresh_lifetime(self) -> Option<Duration> {
        match self {
            Provider::Tiktok => Some(180 * DAY),
            // 90 days after issue; every refresh issues a new one (Part A §2).
            Provider::MicrosoftAds => Some(90 * DAY),
            // 365 days from the first consent, never extended by a refresh (Part B §1).
            Provider::Linkedin => Some(365 * DAY),
            // Continuous refresh tokens: 60 days from each refresh (Part B §2).
            Provider::Pinterest => Some(60 * DAY),
            _ => None,
        }
    }

    /// Whether refresh tokens rotate by default: TikTok Login Kit says "the previous refresh token
    /// stops working once a new one is issued"; Snapchat's rotation is undocumented, so it does not.
    pub fn rotates_by_default(self) -> bool {
        // X API v2: every refresh issues a new refresh token and spends the old one (Part B §4).
        matches!(self, Provider::Tiktok | Provider::Pinterest | Provider::X)
    }

    /// Authorization codes are single use; TikTok Business auth_code is valid 1 h, others 10 min.
    pub fn code_lifetime(self) -> Duration {
        match self {
            Provider::TiktokBusiness => HOUR,
            // Login with Amazon: 5 minutes (platforms-ads.md Part A §3).
            Provider::AmazonAds => 5 * MINUTE,
            _ => 10 * MINUTE,
        }
    }

    /// The scopes shown on the authorize page when a request names none.
    pub(crate) fn default_scopes(self) -> Vec<String> {
        let s: &[&str] = match self {
            Provider::Snapchat => &["snapchat-marketing-api"],
            // No scope parameter: the permissions are fixed on the developer app.
            Provider::TiktokBusiness => {
                &["ad_account_management", "campaign_management", "reporting"]
            }
            Provider::Tiktok => &["user.info.basic"],
            Provider::Threads => &["threads_basic"],
            Provider::Meta => &["public_profile"],
            Provider::GoogleAds => &["https://www.googleapis.com/auth/adwords"],
            Provider::MicrosoftAds => &[
                "openid",
                "offline_access",
                "https://ads.microsoft.com/msads.manage",
            ],
            Provider::AmazonAds => &["advertising::campaign_management"],
            Provider::Linkedin => &["r_ads", "rw_ads", "r_ads_reporting"],
            Provider::Pinterest => &["ads:read", "user_accounts:read"],
            Provider::Reddit => &["adsread"],
            Provider::X => &["tweet.read", "users.read", "offline.access"],
            // No scopes in OAuth 1.0a: the app's permission level (x_auth_access_type).
            Provider::XAds => &["write"],
        };
        s.iter().map(|s| s.to_string()).collect()
    }

    /// How the `scope` query parameter separates scopes (Snapchat: space, RFC 6749; others: comma).
    pub(crate) fn scope_separator(self) -> char {
        match self {
            Provider::Snapchat
            | Provider::GoogleAds
            | Provider::MicrosoftAds
            | Provider::AmazonAds
            | Provider::Linkedin => ' ',
            Provider::Reddit | Provider::X => ' ',
            Provider::XAds => ' ',
            _ => ',',
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

pub(crate) const MINUTE: Duration = Duration::from_secs(60);
pub(crate) const HOUR: Duration = Duration::from_secs(3600);
pub(crate) const DAY: Duration = Duration::from_secs(86_400);

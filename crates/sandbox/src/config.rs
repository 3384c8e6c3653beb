//! [`SandboxConfig`]: time scale, lifetimes, registered apps, rotation and rate-limit settings.

use crate::provider::Provider;
use std::collections::HashMap;
use std::time::Duration;
use tokenwarden_core::connection::Environment;

/// A developer app registered with one platform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppRegistration {
    /// The platform.
    pub provider: Provider,
    /// `client_id` / `app_id` / `client_key`, depending on the platform.
    pub client_id: String,
    /// `client_secret` / `secret`.
    pub client_secret: String,
    /// Shown on the authorize page.
    pub name: String,
    /// Redirect URIs; a request's `redirect_uri` must equal one of them exactly.
    pub redirect_uris: Vec<String>,
    /// Which of the platform's hosts the app's tokens work on. A developer app lives in
    /// production or in the platform's sandbox (TikTok Business: one sandbox per developer app,
    /// platforms.md §2); its tokens look alike either way and work only on its own host. Only
    /// platforms with a [`Provider::sandbox_host`] have sandbox apps.
    pub environment: Environment,
    /// TikTok Business only: the app's `/oauth2/access_token/` answers carry a refresh token and
    /// a 24 h access token (the creator tokens of the SDK's `AuthenticationApi.md`), renewed at
    /// `/tt_user/oauth2/refresh_token/`. Otherwise it issues long-term advertiser tokens.
    pub refresh_tokens: bool,
    /// Where the platform calls back when a user removes the app (Meta's Deauthorize Callback
    /// URL, Threads' Uninstall Callback URL, TikTok's webhook callback URL); `None`: nowhere.
    /// Only platforms with a [`Provider::deauthorize_callback`] send one.
    pub deauthorize_url: Option<String>,
}

impl AppRegistration {
    /// The demo app of a platform: `demo-<provider>` / `demo-<provider>-secret`, "Demo app".
    pub fn demo(provider: Provider) -> Self {
        AppRegistration {
            provider,
            client_id: format!("demo-{}", provider.id()),
            client_secret: format!("demo-{}-secret", provider.id()),
            name: "Demo app".to_string(),
            redirect_uris: Vec::new(),
            environment: Environment::Production,
            refresh_tokens: false,
            deauthorize_url: None,
        }
    }

    /// The demo sandbox-environment app of a platform with a sandbox host:
    /// `demo-<provider>-sandbox` / `demo-<provider>-sandbox-secret`, "Demo app (sandbox)". Its
    /// tokens work only on the sandbox host (`/<provider>/sandbox/…`).
    pub fn demo_sandbox(provider: Provider) -> Option<Self> {
        provider.sandbox_host()?;
        Some(AppRegistration {
            provider,
            client_id: format!("demo-{}-sandbox", provider.id()),
            client_secret: format!("demo-{}-sandbox-secret", provider.id()),
            name: "Demo app (sandbox)".to_string(),
            redirect_uris: Vec::new(),
            environment: Environment::Sandbox,
            refresh_tokens: false,
            deauthorize_url: None,
        })
    }

    /// Whether this is one of the demo apps, which get the configured demo redirect URIs.
    pub fn is_demo(&self) -> bool {
        let p = self.provider.id();
        self.client_id == format!("demo-{p}") || self.client_id == format!("demo-{p}-sandbox")
    }
}

/// Everything the sandbox needs to start.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// How many times faster than real time the sandbox clock runs (1.0 = real time). Used to
    /// turn scaled waits (latency) into real sleeps; the clock passed to `Sandbox::new` must agree.
    pub time_scale: f64,
    /// Overrides the lifetime of the first access token a platform issues (Snapchat and TikTok
    /// access tokens, Threads/Meta short-lived tokens; gives TikTok Business tokens an expiry).
    pub access_lifetimes: HashMap<Provider, Duration>,
    /// Overrides the lifetime of Threads/Meta long-lived tokens (default 60 d).
    pub long_lived_lifetimes: HashMap<Provider, Duration>,
    /// Registered apps (the default holds one demo app per platform, and one sandbox-environment
    /// demo app per platform with a sandbox host).
    pub apps: Vec<AppRegistration>,
    /// Redirect URIs added to every demo app (`demo-<provider>`); the daemon fills these in.
    pub demo_redirect_uris: Vec<String>,
    /// Refresh-token rotation for every platform; `None` keeps each platform's default
    /// (only TikTok Login Kit rotates).
    pub rotate_refresh_tokens: Option<bool>,
    /// How long a rotated-out refresh token is still accepted.
    pub refresh_reuse_grace: Duration,
    /// Enforce the platforms' published rate limits.
    pub enforce_rate_limits: bool,
    /// TikTok Business limits per app, over all its endpoints: (QPS, QPM, QPD). Default: the
    /// Basic tier, 10/600/864000 (platforms.md "Corrections (2026-12)" 5: the limits are per
    /// app, not per endpoint, and there is a daily one). Endpoints with stricter limits of their
    /// own (`/report/task/create/`: 2/60/4500, platforms.md §2) are held to those as well.
    pub tiktok_business_limits: (u32, u32, u32),
    /// TikTok Business's sandbox host, per endpoint: (QPS, QPM, QPD). Default: 1/30/1000
    /// ("Sandbox: 1 QPS, 30 QPM, 1000 QPD per endpoint", platforms.md §2).
    pub tiktok_business_sandbox_limits: (u32, u32, u32),
    /// How long asynchronous jobs (reports, publishing containers) stay pending.
    pub async_job_duration: Duration,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            time_scale: 1.0,
            access_lifetimes: HashMap::new(),
            long_lived_lifetimes: HashMap::new(),
            apps: Provider::ALL
                .into_iter()
                .map(AppRegistration::demo)
                .chain(
                    Provider::ALL
                        .into_iter()
                        .filter_map(AppRegistration::demo_sandbox),
                )
                .collect(),
            demo_redirect_uris: Vec::new(),
            rotate_refresh_tokens: None,
            refresh_reuse_grace: Duration::ZERO,
            enforce_rate_limits: true,
            tiktok_business_limits: (10, 600, 864_000),
            tiktok_business_sandbox_limits: (1, 30, 1000),
            async_job_duration: Duration::from_secs(30),
        }
    }
}

impl SandboxConfig {
    pub(crate) fn access_lifetime(&self, p: Provider) -> Option<Duration> {
        self.access_lifetimes
            .get(&p)
            .copied()
            .or(p.default_access_lifetime())
    }

    pub(crate) fn long_lived_lifetime(&self, p: Provider) -> Duration {
        self.long_lived_lifetimes
            .get(&p)
            .copied()
            .unwrap_or(p.default_long_lived_lifetime())
    }
}

//! The configuration file: optional; `TOKENWARDEN_*` environment variables and flags override it.
//! Unknown keys are refused with their name, and secrets can come from files.

use anyhow::{Context as _, Result, anyhow, bail};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokenwarden_core::connection::Environment;
use tokenwarden_core::provider::{Endpoints, Registry};
use tokenwarden_core::secret::Secret;
use tokenwarden_core::span;
use tokenwarden_server::daemon::BodyLimits;
use tokenwarden_server::retention::{self, Retention};

/// The commented example `tokenwarden config example` prints.
pub const EXAMPLE: &str = r#"# tokenwarden configuration. Every key is optional; TOKENWARDEN_* environment variables and
# command-line flags override what is here.

# Where the daemon listens, and the URL people use to reach it (callback and re-authorization
# links are built from it).
listen = "127.0.0.1:8080"
public_url = "https://tokens.example.com"
# Behind a reverse proxy, name it here so the per-address limits (failed sign-ins, refused API
# keys, the connect flow's rate) see each client's address from its X-Forwarded-For header instead
# of the proxy's. Addresses or CIDR ranges; none by default (the header is then ignored, since
# anyone can send it). TOKENWARDEN_TRUSTED_PROXIES (comma-separated) overrides it.
# trusted_proxies = ["127.0.0.1", "10.0.0.0/8"]

# The embedded database, the master key file and the admin key file live here. serve creates it
# readable by its owner only (0700), and refuses a master key file that group or others can read
# unless this is set (or --allow-insecure-key-file / TOKENWARDEN_ALLOW_INSECURE_KEY_FILE=true).
data_dir = "tokenwarden-data"
# allow_insecure_key_file = false

# SQLite in data_dir by default. For several replicas, share one PostgreSQL:
# database = "postgres://tokenwarden@db.internal/tokenwarden"

# Your own provider definitions (*.toml); a file with a shipped id replaces it.
# providers_dir = "/etc/tokenwarden/providers"
# Their endpoints (authorize, token calls, API bases) must be https. For a test server or an
# emulator on plain http, allow it (also TOKENWARDEN_ALLOW_INSECURE_ENDPOINTS=true; --sandbox
# needs nothing, it points every platform at its own emulator):
# allow_insecure_endpoints = true

# The forwarding proxy (/proxy/{connection_id}/…): the largest request and response bodies it
# passes, in bytes or with a unit (KiB, MiB, GiB; KB, MB, GB), at least 1KiB. A bigger request is
# refused with 413; a bigger response is a 502 (or, once it is streaming, a broken connection).
# Also TOKENWARDEN_PROXY_MAX_REQUEST_BYTES and TOKENWARDEN_PROXY_MAX_RESPONSE_BYTES.
# [proxy]
# max_request_bytes = "1GiB"
# max_response_bytes = "1GiB"

# Webhook endpoints are added with `POST /v1/webhooks`. They must be https URLs on public
# addresses; allow http and private addresses (a receiver on this host or your network) with:
# [webhooks]
# allow_private = true

# A connect flow starts only from a single-use link that an administrator made (the dashboard's
# Connect and Re-authorize buttons, `tokenwarden connect`, or POST /v1/connect-sessions). Such a
# session may send the browser back to your app when the flow ends (`return_to`); list the
# origins it may use beside public_url's own:
# [connect]
# return_to = ["https://app.example.com"]

# One [[apps]] per OAuth app (client) registered with a platform. Several per platform are fine;
# a connect session's `app` picks one (the first is the default).
[[apps]]
provider = "snapchat"
id = "main"
client_id = "your-snapchat-client-id"
# The secret inline, or (better) from a file only the daemon can read:
client_secret_file = "/run/secrets/snapchat-client-secret"
# Default: {public_url}/callback/{provider}. It must equal the one registered with the platform.
# redirect_uri = "https://tokens.example.com/callback/snapchat"

[[apps]]
provider = "tiktok-business"
id = "main"
client_id = "your-tiktok-app-id"
client_secret = "your-tiktok-app-secret"

# A developer app whose advertisers live in TikTok's sandbox: its tokens only work on the sandbox
# host (sandbox-ads.tiktok.com), which tokenwarden then calls for them. Default: "production".
[[apps]]
provider = "tiktok-business"
id = "sandbox"
client_id = "your-tiktok-sandbox-app-id"
client_secret_file = "/run/secrets/tiktok-sandbox-secret"
environment = "sandbox"

# An Amazon Ads app whose advertisers are in Europe: consent, tokens and API calls use the EU
# hosts (eu.account.amazon.com, api.amazon.co.uk, advertising-api-eu.amazon.com). The regions are
# the definition's [[regions]]: "na" (the default), "eu", "fe".
# [[apps]]
# provider = "amazon-ads"
# id = "eu"
# client_id = "amzn1.application-oa2-client.your-id"
# client_secret_file = "/run/secrets/amazon-ads-secret"
# region = "eu"

# A Reddit Ads app: Reddit wants a unique, descriptive User-Agent on every call (token calls
# included) and throttles a generic one. Default: one naming tokenwarden and the client id.
# [[apps]]
# provider = "reddit"
# client_id = "your-reddit-client-id"
# client_secret_file = "/run/secrets/reddit-secret"
# user_agent = "web:com.example.ads:v1.0 (by /u/yourname)"

# A Google Ads app whose OAuth consent screen is still in Testing status: Google ends its refresh
# tokens 7 days after the consent. Said here, tokenwarden warns before that end (expires_soon)
# instead of finding out from invalid_grant. Remove it once the consent screen is published.
# [[apps]]
# provider = "google-ads"
# id = "testing"
# client_id = "your-id.apps.googleusercontent.com"
# client_secret_file = "/run/secrets/google-ads-secret"
# refresh_token_ends_after = "7d"

# Microsoft Advertising users who sign in with a Google account: a Google OAuth client (its own
# client id and secret, redirect URI registered at Google) whose tokens come from Google and whose
# API calls carry IdentityProvider: Google. The identities are the definition's [identities].
# [[apps]]
# provider = "microsoft-ads"
# id = "google"
# client_id = "your-id.apps.googleusercontent.com"
# client_secret_file = "/run/secrets/microsoft-ads-google-secret"
# developer_token_file = "/run/secrets/microsoft-ads-developer-token"
# identity = "google"

# The dashboard at public_url: sign in with an admin API key, or with this password.
[dashboard]
password_file = "/run/secrets/tokenwarden-dashboard-password"
# A session ends when unused this long (each page extends it), and 12h after sign-in in any case.
# Between 1m and 12h; TOKENWARDEN_DASHBOARD_SESSION_IDLE_TIMEOUT overrides it.
session_idle_timeout = "30m"

# Alerts to a Slack-compatible incoming webhook (Slack, Mattermost, …) when a connection needs
# re-authorization, stays degraded, or will expire soon. Run it on one replica only.
[alerts]
slack_webhook_url_file = "/run/secrets/slack-webhook-url"
degraded_after_minutes = 30

# How long history is kept before it is deleted (at start, then hourly), so the database stops
# growing: every refresh writes an event. 0 or "off" keeps it forever. Expired authorizations are
# always deleted, and a webhook delivery still being retried is never.
# [retention]
# events = "30d"       # the API's and the dashboard's event history; at least 1d
# deliveries = "14d"   # the webhook delivery log (delivered or given up); at least 1h
# Short-lived caches in front of the database for token fetches (the API, the proxy). A change
# made through this daemon (a refresh, a revoked grant, a deleted connection, a revoked API key)
# takes effect at once; one made through another replica is seen here within the TTL. Seconds,
# fractions allowed; 0 turns a cache off. A cached token is still handed out only while it is
# fresh for the provider's margin.
[cache]
token_ttl_seconds = 1
api_key_ttl_seconds = 5
# The most connections held in memory (a few KiB each); the oldest entry makes room.
max_connections = 10000
"#;

/// The file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Listen address.
    pub listen: Option<SocketAddr>,
    /// Public URL.
    pub public_url: Option<url::Url>,
    /// Reverse proxies whose `X-Forwarded-For` is believed (read by
    /// [`FileConfig::trusted_proxies`]).
    pub trusted_proxies: Option<Vec<String>>,
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// Database URL.
    pub database: Option<String>,
    /// Start even when the master key file can be read by group or others (with a warning).
    pub allow_insecure_key_file: Option<bool>,
    /// User provider definitions.
    pub providers_dir: Option<PathBuf>,
    /// OAuth apps.
    #[serde(default)]
    pub apps: Vec<AppConfig>,
    /// Webhook delivery.
    #[serde(default)]
    pub webhooks: WebhooksConfig,
    /// The dashboard.
    #[serde(default)]
    pub dashboard: DashboardConfig,
    /// Alerts to a Slack-compatible incoming webhook.
    #[serde(default)]
    pub alerts: Option<AlertsConfig>,
    /// How long history is kept.
    #[serde(default)]
    pub retention: RetentionConfig,
    /// The token and API-key caches.
    #[serde(default)]
    pub cache: CacheSection,
    /// Connect sessions.
    #[serde(default)]
    pub connect: ConnectConfig,
    /// Allow plain-http endpoints in provider definitions (test servers, emulators).
    pub allow_insecure_endpoints: Option<bool>,
    /// The forwarding proxy's body limits.
    #[serde(default)]
    pub proxy: ProxySection,
}

/// `[connect]`: where a finished connect flow may send the browser back to.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectConfig {
    /// Origins (or URLs, of which the origin counts) a connect session's `return_to` may point
    /// at, beside `public_url`'s own.
    #[serde(default)]
    pub return_to: Vec<url::Url>,
}

/// The variable that allows plain-http endpoints in provider definitions.
pub const ALLOW_INSECURE_ENDPOINTS: &str = "TOKENWARDEN_ALLOW_INSECURE_ENDPOINTS";

/// Whether provider definitions may use plain-http endpoints: the variable's value (`true`/`false`,
/// `1`/`0`, `yes`/`no`) over the file's `allow_insecure_endpoints` over no.
pub fn endpoints(file: Option<bool>, env: Option<&str>) -> Result<Endpoints> {
    let allow = match env.map(|v| v.trim().to_ascii_lowercase()) {
        None => file.unwrap_or(false),
        Some(v) if v.is_empty() => file.unwrap_or(false),
        Some(v) => match v.as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => bail!("{ALLOW_INSECURE_ENDPOINTS}: {v:?} is not true or false"),
        },
    };
    Ok(if allow {
        Endpoints::AllowHttp
    } else {
        Endpoints::HttpsOnly
    })
}

/// `[proxy]`: the largest bodies the forwarding proxy passes. Each value is a whole number of
/// bytes or a size with its unit (`"64MiB"`); read by [`ProxySection::resolve`], which names the
/// key or variable of a bad one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySection {
    /// Largest request body.
    pub max_request_bytes: Option<toml::Value>,
    /// Largest response body.
    pub max_response_bytes: Option<toml::Value>,
}

/// The smallest body limit accepted: below it ordinary API calls would fail.
const MIN_BODY_LIMIT: u64 = 1024;

impl ProxySection {
    /// The limits: the defaults, then this section, then `env_request` and `env_response` (the
    /// values of `TOKENWARDEN_PROXY_MAX_REQUEST_BYTES` and `TOKENWARDEN_PROXY_MAX_RESPONSE_BYTES`).
    pub fn resolve(
        &self,
        env_request: Option<&str>,
        env_response: Option<&str>,
    ) -> Result<BodyLimits> {
        let defaults = BodyLimits::default();
        let one =
            |key: &str, var: &str, file: Option<&toml::Value>, env: Option<&str>, default: u64| {
                match (env, file) {
                    (Some(v), _) => body_size(var, &toml::Value::String(v.to_string())),
                    (None, Some(v)) => body_size(key, v),
                    (None, None) => Ok(default),
                }
            };
        Ok(BodyLimits {
            max_request_bytes: one(
                "[proxy] max_request_bytes",
                "TOKENWARDEN_PROXY_MAX_REQUEST_BYTES",
                self.max_request_bytes.as_ref(),
                env_request,
                defaults.max_request_bytes,
            )?,
            max_response_bytes: one(
                "[proxy] max_response_bytes",
                "TOKENWARDEN_PROXY_MAX_RESPONSE_BYTES",
                self.max_response_bytes.as_ref(),
                env_response,
                defaults.max_response_bytes,
            )?,
        })
    }
}

/// A size in bytes: a whole number, or a number with a unit. `what` names the key or variable.
fn body_size(what: &str, v: &toml::Value) -> Result<u64> {
    const WRITE: &str =
        "write a number of bytes or a size with its unit, such as \"64MiB\" or \"1GiB\"";
    let bytes = match v {
        toml::Value::Integer(n) => {
            u64::try_from(*n).map_err(|_| anyhow!("{what}: {n} is negative; {WRITE}"))?
        }
        toml::Value::String(t) => {
            let t = t.trim();
            let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            let (number, unit) = t.split_at(split);
            let n: u64 = number
                .parse()
                .map_err(|_| anyhow!("{what}: {t:?} is not a size; {WRITE}"))?;
            let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
                "" | "b" => 1,
                "kib" => 1 << 10,
                "mib" => 1 << 20,
                "gib" => 1 << 30,
                "kb" => 1_000,
                "mb" => 1_000_000,
                "gb" => 1_000_000_000,
                _ => bail!("{what}: {t:?} has an unknown unit; {WRITE}"),
            };
            n.checked_mul(scale)
                .ok_or_else(|| anyhow!("{what}: {t:?} is too large"))?
        }
        other => bail!("{what}: {other} is not a size; {WRITE}"),
    };
    if bytes < MIN_BODY_LIMIT {
        bail!(
            "{what}: {bytes} bytes is below the 1KiB allowed (ordinary API calls would be refused); {WRITE}"
        );
    }
    Ok(bytes)
}

/// `[cache]`: TTLs in seconds (0 turns a cache off) and the size cap.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSection {
    /// How long a connection's token set is served from memory.
    pub token_ttl_seconds: Option<f64>,
    /// How long a verified API key is trusted without asking the database.
    pub api_key_ttl_seconds: Option<f64>,
    /// The most connections held.
    pub max_connections: Option<usize>,
}

/// The longest TTL accepted: past it, a change on another replica would go unseen for longer
/// than anyone expects of a cache in front of credentials.
const MAX_TTL_SECONDS: f64 = 3600.0;

impl CacheSection {
    /// The cache settings, with the defaults for what is not given.
    pub fn resolve(&self) -> Result<tokenwarden_server::daemon::CacheConfig> {
        let defaults = tokenwarden_server::daemon::CacheConfig::default();
        let ttl = |key: &str, v: Option<f64>, default: std::time::Duration| match v {
            None => Ok(default),
            Some(s) if s.is_finite() && (0.0..=MAX_TTL_SECONDS).contains(&s) => {
                Ok(std::time::Duration::from_secs_f64(s))
            }
            Some(s) => Err(anyhow!(
                "[cache] {key} must be between 0 (off) and {MAX_TTL_SECONDS} seconds, not {s}"
            )),
        };
        Ok(tokenwarden_server::daemon::CacheConfig {
            token_ttl: ttl(
                "token_ttl_seconds",
                self.token_ttl_seconds,
                defaults.token_ttl,
            )?,
            api_key_ttl: ttl(
                "api_key_ttl_seconds",
                self.api_key_ttl_seconds,
                defaults.api_key_ttl,
            )?,
            max_connections: self.max_connections.unwrap_or(defaults.max_connections),
            max_api_keys: defaults.max_api_keys,
        })
    }
}

/// `[retention]`: how long history is kept. Each value is a duration with its unit (`"30d"`,
/// `"12h"`), or `0` / `"off"` to keep forever; read by [`RetentionConfig::resolve`], which names
/// the key of a bad one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Events (default 30d).
    pub events: Option<toml::Value>,
    /// Finished webhook deliveries (default 14d).
    pub deliveries: Option<toml::Value>,
}

impl RetentionConfig {
    /// The retention: the defaults, then this section, then `env_events` and `env_deliveries`
    /// (the values of `TOKENWARDEN_RETENTION_EVENTS` and `TOKENWARDEN_RETENTION_DELIVERIES`).
    pub fn resolve(
        &self,
        env_events: Option<&str>,
        env_deliveries: Option<&str>,
    ) -> Result<Retention> {
        let defaults = Retention::default();
        Ok(Retention {
            events: RetentionKey::EVENTS.read(self.events.as_ref(), env_events, defaults.events)?,
            deliveries: RetentionKey::DELIVERIES.read(
                self.deliveries.as_ref(),
                env_deliveries,
                defaults.deliveries,
            )?,
        })
    }
}

/// One key of `[retention]`, its variable and its floor.
struct RetentionKey {
    key: &'static str,
    env: &'static str,
    floor: Duration,
    why: &'static str,
}

impl RetentionKey {
    const EVENTS: RetentionKey = RetentionKey {
        key: "[retention] events",
        env: "TOKENWARDEN_RETENTION_EVENTS",
        floor: retention::MIN_EVENTS,
        why: "the dashboard charts the last day from them",
    };
    const DELIVERIES: RetentionKey = RetentionKey {
        key: "[retention] deliveries",
        env: "TOKENWARDEN_RETENTION_DELIVERIES",
        floor: retention::MIN_DELIVERIES,
        why: "the delivery log should show at least the last hour",
    };

    /// The variable's value over the file's over the default; `None` keeps forever.
    fn read(
        &self,
        file: Option<&toml::Value>,
        env: Option<&str>,
        default: Option<Duration>,
    ) -> Result<Option<Duration>> {
        let from_file = match file {
            Some(v) => self.parse(self.key, v)?,
            None => default,
        };
        match env {
            Some(v) => self.parse(self.env, &toml::Value::String(v.to_string())),
            None => Ok(from_file),
        }
    }

    /// `what` names the key or the variable in errors.
    fn parse(&self, what: &str, v: &toml::Value) -> Result<Option<Duration>> {
        const FOREVER: &str = "or 0 or \"off\" to keep forever";
        let text = match v {
            toml::Value::Integer(0) => return Ok(None),
            toml::Value::String(t) => t.trim(),
            other => bail!(
                "{what}: {other} is not a duration: write one with its unit, such as \"30d\" or \"12h\", {FOREVER}"
            ),
        };
        if text == "0" || text.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        // Read as seconds elsewhere, a bare number here is more likely days meant: refused.
        if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) {
            bail!(
                "{what}: {text:?} has no unit: write a duration such as \"30d\" or \"12h\", {FOREVER}"
            );
        }
        let keep = span::parse(text).map_err(|e| anyhow!("{what}: {e}, {FOREVER}"))?;
        if keep.is_zero() {
            return Ok(None);
        }
        if keep < self.floor {
            bail!(
                "{what}: {text:?} is shorter than the {floor} allowed ({}): write at least {floor}, {FOREVER}",
                self.why,
                floor = span::format(self.floor),
            );
        }
        Ok(Some(keep))
    }
}

/// `[webhooks]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Allow `http` URLs and private, loopback and link-local addresses (default: only with
    /// `--sandbox`).
    pub allow_private: Option<bool>,
}

/// `[dashboard]`: people sign in with an admin API key, or with this password.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardConfig {
    /// The password, inline.
    pub password: Option<Secret>,
    /// Or a file holding it.
    pub password_file: Option<PathBuf>,
    /// How long an unused session lasts (`"30m"`; read by [`DashboardConfig::idle_timeout`]).
    pub session_idle_timeout: Option<String>,
}

impl std::fmt::Debug for DashboardConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashboardConfig")
            .field("password_set", &self.password.is_some())
            .field("password_file", &self.password_file)
            .field("session_idle_timeout", &self.session_idle_timeout)
            .finish()
    }
}

/// `[alerts]`: where and when to alert.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// The incoming-webhook URL, inline (it is a secret: anyone holding it can post).
    pub slack_webhook_url: Option<Secret>,
    /// Or a file holding it.
    pub slack_webhook_url_file: Option<PathBuf>,
    /// Alert when a connection has been degraded this many minutes.
    #[serde(default = "default_degraded_after")]
    pub degraded_after_minutes: u32,
    /// How often to look for something to alert, in seconds.
    #[serde(default = "default_alert_poll")]
    pub poll_seconds: u32,
}

fn default_degraded_after() -> u32 {
    30
}
fn default_alert_poll() -> u32 {
    15
}

impl std::fmt::Debug for AlertsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertsConfig")
            .field("slack_webhook_url_file", &self.slack_webhook_url_file)
            .field("degraded_after_minutes", &self.degraded_after_minutes)
            .field("poll_seconds", &self.poll_seconds)
            .finish_non_exhaustive()
    }
}

/// A secret given inline or in a file (not both); `None` when neither.
fn secret_from(
    what: &str,
    inline: Option<&Secret>,
    file: Option<&PathBuf>,
) -> Result<Option<Secret>> {
    let s = match (inline, file) {
        (Some(s), None) => s.clone(),
        (None, Some(f)) => {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("{what}: cannot read {}", f.display()))?;
            Secret::new(text.trim().to_string())
        }
        (Some(_), Some(_)) => bail!("{what}: give the value or the file, not both"),
        (None, None) => return Ok(None),
    };
    if s.is_empty() {
        bail!("{what}: the value is empty");
    }
    Ok(Some(s))
}

impl DashboardConfig {
    /// The configured password, if any.
    pub fn password(&self) -> Result<Option<Secret>> {
        secret_from(
            "[dashboard] password",
            self.password.as_ref(),
            self.password_file.as_ref(),
        )
    }
}

/// The variable that overrides `trusted_proxies`.
pub const TRUSTED_PROXIES_ENV: &str = "TOKENWARDEN_TRUSTED_PROXIES";

/// The variable that overrides `[dashboard] session_idle_timeout`.
pub const IDLE_TIMEOUT_ENV: &str = "TOKENWARDEN_DASHBOARD_SESSION_IDLE_TIMEOUT";

impl DashboardConfig {
    /// How long an unused dashboard session lasts: `env` (the value of [`IDLE_TIMEOUT_ENV`]) over
    /// the file over the default (30 minutes). Between a minute and a session's 12 hours.
    pub fn idle_timeout(&self, env: Option<&str>) -> Result<Duration> {
        use tokenwarden_server::dashboard::session::{IDLE_TIMEOUT, SESSION_TTL};
        let (what, text) = match (env, self.session_idle_timeout.as_deref()) {
            (Some(v), _) => (IDLE_TIMEOUT_ENV, v),
            (None, Some(v)) => ("[dashboard] session_idle_timeout", v),
            (None, None) => return Ok(IDLE_TIMEOUT),
        };
        let idle = span::parse(text).map_err(|e| anyhow!("{what}: {e}"))?;
        let min = Duration::from_secs(60);
        if idle < min || idle > SESSION_TTL {
            bail!(
                "{what}: {text:?} must be between {} and {} (a session's whole lifetime)",
                span::format(min),
                span::format(SESSION_TTL)
            );
        }
        Ok(idle)
    }
}

impl AlertsConfig {
    /// The webhook URL (required when `[alerts]` is present).
    pub fn webhook_url(&self) -> Result<Secret> {
        secret_from(
            "[alerts] slack_webhook_url",
            self.slack_webhook_url.as_ref(),
            self.slack_webhook_url_file.as_ref(),
        )?
        .ok_or_else(|| anyhow!("[alerts] needs slack_webhook_url or slack_webhook_url_file"))
    }
}

/// One app.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// Provider id.
    pub provider: String,
    /// Our id for the app.
    #[serde(default = "default_app_id")]
    pub id: String,
    /// The platform's client id.
    pub client_id: String,
    /// The secret, inline.
    pub client_secret: Option<Secret>,
    /// Or a file holding it.
    pub client_secret_file: Option<PathBuf>,
    /// The platform's developer token for this app (Microsoft Advertising `DeveloperToken`),
    /// inline; optional. Sent only in the headers a definition fills with `{developer_token}`.
    pub developer_token: Option<Secret>,
    /// Or a file holding it.
    pub developer_token_file: Option<PathBuf>,
    /// The redirect URI registered with the platform.
    pub redirect_uri: Option<String>,
    /// `production` (default) or `sandbox`: which of the platform's environments the app's
    /// tokens belong to.
    pub environment: Option<String>,
    /// Which of the platform's regions (its definition's `[[regions]]`, e.g. Amazon Ads `na`,
    /// `eu`, `fe`) the app's accounts are in; default: the definition's first region.
    pub region: Option<String>,
    /// The `User-Agent` sent where the definition sends `{user_agent}` (Reddit asks for a unique
    /// one such as `web:com.example.ads:v1.2 (by /u/yourname)`, on token calls too); default:
    /// one naming tokenwarden and the app's client id.
    pub user_agent: Option<String>,
    /// Where the platform ends this app's refresh tokens a fixed time after the consent, sooner
    /// than its definition (Google: `"7d"` for an app whose OAuth consent screen is in Testing
    /// status). tokenwarden then forecasts that end and warns before it.
    pub refresh_token_ends_after: Option<String>,
    /// Who issues the app's tokens when it is not the platform's own sign-in: one of its
    /// definition's `[identities]` (Microsoft Advertising: `"google"`, a Google OAuth client).
    pub identity: Option<String>,
}

impl std::fmt::Debug for AppConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppConfig")
            .field("provider", &self.provider)
            .field("id", &self.id)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

fn default_app_id() -> String {
    "main".into()
}

/// A validated app, ready to register.
#[derive(Debug)]
pub struct ResolvedApp {
    /// Provider id.
    pub provider: String,
    /// App id.
    pub id: String,
    /// Client id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: Secret,
    /// Developer token, when configured.
    pub developer_token: Option<Secret>,
    /// Redirect URI.
    pub redirect_uri: String,
    /// Environment.
    pub environment: Environment,
    /// Region (`None`: the definition's default region, or a platform without regions).
    pub region: Option<String>,
    /// User-Agent for `{user_agent}` (`None`: the default naming tokenwarden).
    pub user_agent: Option<String>,
    /// The app's own refresh-token end, counted from the consent (`None`: the definition's).
    pub refresh_token_ends_after: Option<Duration>,
    /// The issuer of the app's tokens (`None`: the platform's own).
    pub identity: Option<String>,
}

/// Every syntax and type problem of the configuration file at `path`, in one error listing each
/// with its line (`config check`); `Ok` when the file reads.
pub fn check_syntax(path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
    let found = crate::toml_check::problems::<FileConfig>(&text);
    if found.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = found
        .iter()
        .map(|p| format!("  {}:{p}", path.display()))
        .collect();
    bail!(
        "the configuration file {} has {} problem(s):\n{}",
        path.display(),
        found.len(),
        list.join("\n")
    )
}

impl FileConfig {
    /// Reads and parses `path`; errors name the file and the offending key.
    pub fn load(path: &Path) -> Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
        FileConfig::parse(&text)
            .with_context(|| format!("in the configuration file {}", path.display()))
    }

    /// Parses configuration text, and checks the values that need no file or provider.
    pub fn parse(text: &str) -> Result<FileConfig> {
        let c: FileConfig =
            toml::from_str(text).map_err(|e| anyhow!("{}", e.to_string().trim_end()))?;
        c.retention.resolve(None, None)?;
        c.proxy.resolve(None, None)?;
        Ok(c)
    }

    /// The reverse proxies whose `X-Forwarded-For` is believed: `env` (the comma-separated value
    /// of [`TRUSTED_PROXIES_ENV`]) over the file; none by default.
    pub fn trusted_proxies(
        &self,
        env: Option<&str>,
    ) -> Result<tokenwarden_server::limits::TrustedProxies> {
        let (what, entries): (&str, Vec<&str>) = match (env, &self.trusted_proxies) {
            (Some(v), _) => (TRUSTED_PROXIES_ENV, v.split(',').collect()),
            (None, Some(list)) => ("trusted_proxies", list.iter().map(String::as_str).collect()),
            (None, None) => return Ok(Default::default()),
        };
        tokenwarden_server::limits::TrustedProxies::parse(entries)
            .map_err(|e| anyhow!("{what}: {e}"))
    }

    /// Checks every app against the loaded providers and reads secrets from files.
    pub fn resolve_apps(
        &self,
        providers: &Registry,
        public_url: &url::Url,
    ) -> Result<Vec<ResolvedApp>> {
        let mut out: Vec<ResolvedApp> = Vec::new();
        for (i, a) in self.apps.iter().enumerate() {
            let at = format!("apps[{i}] ({} {})", a.provider, a.id);
            if providers.get(&a.provider).is_none() {
                bail!(
                    "{at}: unknown provider {:?}; known: {}",
                    a.provider,
                    providers.ids()
                );
            }
            if a.client_id.trim().is_empty() {
                bail!("{at}: client_id is empty");
            }
            let secret = match (&a.client_secret, &a.client_secret_file) {
                (Some(s), None) => s.clone(),
                (None, Some(f)) => {
                    let text = std::fs::read_to_string(f).with_context(|| {
                        format!("{at}: cannot read client_secret_file {}", f.display())
                    })?;
                    Secret::new(text.trim().to_string())
                }
                (Some(_), Some(_)) => {
                    bail!("{at}: give client_secret or client_secret_file, not both")
                }
                (None, None) => bail!("{at}: client_secret or client_secret_file is required"),
            };
            if secret.is_empty() {
                bail!("{at}: the client secret is empty");
            }
            let developer_token = match (&a.developer_token, &a.developer_token_file) {
                (Some(s), None) => Some(Secret::new(s.expose().trim().to_string())),
                (None, Some(f)) => {
                    let text = std::fs::read_to_string(f).with_context(|| {
                        format!("{at}: cannot read developer_token_file {}", f.display())
                    })?;
                    Some(Secret::new(text.trim().to_string()))
                }
                (Some(_), Some(_)) => {
                    bail!("{at}: give developer_token or developer_token_file, not both")
                }
                (None, None) => None,
            };
            if developer_token
                .as_ref()
                .is_some_and(|t| t.is_empty() || t.expose().bytes().any(|b| b.is_ascii_control()))
            {
                bail!("{at}: the developer token is empty or has control characters");
            }
            let user_agent = a.user_agent.as_deref().map(str::trim);
            if let Some(ua) = user_agent
                && (ua.is_empty()
                    || ua.len() > 256
                    || ua.bytes().any(|b| b.is_ascii_control() || !b.is_ascii()))
            {
                bail!(
                    "{at}: user_agent must be 1 to 256 printable ASCII characters (no line breaks), such as \"web:com.example.ads:v1.0 (by /u/yourname)\""
                );
            }
            let refresh_token_ends_after = match a.refresh_token_ends_after.as_deref() {
                None => None,
                Some(text) => {
                    let d = span::parse(text.trim()).map_err(|e| {
                        anyhow!(
                            "{at}: refresh_token_ends_after: {e}; write a duration such as \"7d\""
                        )
                    })?;
                    if d < Duration::from_secs(3600) || d > Duration::from_secs(3650 * 86_400) {
                        bail!(
                            "{at}: refresh_token_ends_after must be between 1h and 3650d (Google apps in Testing status: \"7d\")"
                        );
                    }
                    if providers
                        .get(&a.provider)
                        .is_some_and(|p| !p.spec.refresh.style.can_refresh())
                    {
                        bail!(
                            "{at}: {} issues no refresh tokens (its definition does not refresh), so refresh_token_ends_after means nothing for it",
                            a.provider
                        );
                    }
                    Some(d)
                }
            };
            if out.iter().any(|o| o.provider == a.provider && o.id == a.id) {
                bail!("{at}: a second app with the same provider and id");
            }
            let environment = match a.environment.as_deref() {
                None | Some("production") => Environment::Production,
                Some("sandbox") => Environment::Sandbox,
                Some(other) => {
                    bail!("{at}: environment must be \"production\" or \"sandbox\", not {other:?}")
                }
            };
            if environment == Environment::Sandbox
                && providers
                    .get(&a.provider)
                    .is_some_and(|p| p.spec.api.sandbox_base_url.is_none())
            {
                bail!(
                    "{at}: {} has no sandbox host in its definition (api.sandbox_base_url); use environment = \"production\"",
                    a.provider
                );
            }
            if let Some(p) = providers.get(&a.provider)
                && let Err(e) = p.spec.check_region(a.region.as_deref())
            {
                bail!("{at}: {e}");
            }
            if let Some(p) = providers.get(&a.provider)
                && let Err(e) = p.spec.check_identity(a.identity.as_deref())
            {
                bail!("{at}: {e}");
            }
            let base = public_url.as_str().trim_end_matches('/');
            out.push(ResolvedApp {
                provider: a.provider.clone(),
                id: a.id.clone(),
                client_id: a.client_id.trim().to_string(),
                client_secret: secret,
                developer_token,
                redirect_uri: a
                    .redirect_uri
                    .clone()
                    .unwrap_or_else(|| format!("{base}/callback/{}", a.provider)),
                environment,
                region: a.region.clone(),
                user_agent: user_agent.map(str::to_string),
                refresh_token_ends_after,
                identity: a.identity.clone(),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_parses() {
        let c = FileConfig::parse(EXAMPLE).unwrap();
        assert_eq!(c.apps.len(), 3);
        assert_eq!(c.listen.unwrap().port(), 8080);
        // The commented [retention] section is the defaults, and parses once uncommented.
        let uncommented = EXAMPLE
            .replace("# [retention]", "[retention]")
            .replace("# events = ", "events = ")
            .replace("# deliveries = ", "deliveries = ");
        assert!(uncommented.contains("\n[retention]\nevents = \"30d\""));
        let c = FileConfig::parse(&uncommented).unwrap();
        assert_eq!(
            c.retention.resolve(None, None).unwrap(),
            Retention::default()
        );
        // The example shows the defaults, so copying it changes nothing.
        assert_eq!(
            c.dashboard.idle_timeout(None).unwrap(),
            tokenwarden_server::dashboard::session::IDLE_TIMEOUT
        );
        assert_eq!(
            c.cache.resolve().unwrap(),
            tokenwarden_server::daemon::CacheConfig::default()
        );
    }

    #[test]
    fn the_example_proxy_section_is_the_defaults() {
        let uncommented = EXAMPLE
            .replace("# [proxy]", "[proxy]")
            .replace("# max_request_bytes = ", "max_request_bytes = ")
            .replace("# max_response_bytes = ", "max_response_bytes = ")
            .replace(
                "# allow_insecure_endpoints = ",
                "allow_insecure_endpoints = ",
            );
        assert!(uncommented.contains("\n[proxy]\nmax_request_bytes = \"1GiB\""));
        let c = FileConfig::parse(&uncommented).unwrap();
        assert_eq!(c.proxy.resolve(None, None).unwrap(), BodyLimits::default());
        assert_eq!(c.allow_insecure_endpoints, Some(true));
    }

    #[test]
    fn proxy_limits_parse_with_units_and_variables_over_the_file() {
        let r = |text: &str| FileConfig::parse(text).and_then(|c| c.proxy.resolve(None, None));
        assert_eq!(r("").unwrap(), BodyLimits::default());
        let c = r("[proxy]\nmax_request_bytes = 65536\nmax_response_bytes = \"64MiB\"\n").unwrap();
        assert_eq!(
            (c.max_request_bytes, c.max_response_bytes),
            (65536, 64 << 20)
        );
        for (text, bytes) in [
            ("\"1KiB\"", 1024),
            ("\"2 GiB\"", 2 << 30),
            ("\"10mb\"", 10_000_000),
            ("\"1500B\"", 1500),
            ("\"4096\"", 4096),
            ("\"3kb\"", 3000),
        ] {
            let c = r(&format!("[proxy]\nmax_request_bytes = {text}\n")).unwrap();
            assert_eq!(c.max_request_bytes, bytes, "{text}");
            assert_eq!(
                c.max_response_bytes,
                BodyLimits::default().max_response_bytes
            );
        }
        // The variables win over the file, and are checked the same way, by their name.
        let file = FileConfig::parse("[proxy]\nmax_request_bytes = \"1MiB\"\n").unwrap();
        let c = file.proxy.resolve(Some("2KiB"), Some("8MiB")).unwrap();
        assert_eq!((c.max_request_bytes, c.max_response_bytes), (2048, 8 << 20));
        let e = file
            .proxy
            .resolve(None, Some("lots"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("TOKENWARDEN_PROXY_MAX_RESPONSE_BYTES: "),
            "{e}"
        );
    }

    #[test]
    fn bad_proxy_limits_name_the_key_and_say_what_to_write() {
        for (text, says) in [
            ("max_request_bytes = 0", "below the 1KiB allowed"),
            ("max_request_bytes = 1023", "below the 1KiB allowed"),
            ("max_request_bytes = -5", "is negative"),
            ("max_request_bytes = \"\"", "is not a size"),
            ("max_request_bytes = \"MiB\"", "is not a size"),
            ("max_request_bytes = \"-1MiB\"", "is not a size"),
            ("max_request_bytes = \"1.5MiB\"", "unknown unit"),
            ("max_request_bytes = \"64 megs\"", "unknown unit"),
            ("max_request_bytes = \"99999999999GiB\"", "too large"),
            ("max_request_bytes = 1.5", "is not a size"),
            ("max_request_bytes = true", "is not a size"),
        ] {
            let e = FileConfig::parse(&format!("[proxy]\n{text}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("[proxy] max_request_bytes: "), "{text}: {e}");
            assert!(e.contains(says), "{text}: {e}");
        }
        let e = FileConfig::parse("[proxy]\nmax_body = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_body") && e.contains("unknown field"), "{e}");
    }

    #[test]
    fn insecure_endpoints_are_off_unless_allowed_and_the_variable_wins() {
        use tokenwarden_core::provider::Endpoints;
        assert_eq!(endpoints(None, None).unwrap(), Endpoints::HttpsOnly);
        assert_eq!(endpoints(Some(false), None).unwrap(), Endpoints::HttpsOnly);
        assert_eq!(endpoints(Some(true), None).unwrap(), Endpoints::AllowHttp);
        assert_eq!(endpoints(None, Some("true")).unwrap(), Endpoints::AllowHttp);
        assert_eq!(endpoints(None, Some("1")).unwrap(), Endpoints::AllowHttp);
        assert_eq!(
            endpoints(Some(true), Some("false")).unwrap(),
            Endpoints::HttpsOnly
        );
        assert_eq!(
            endpoints(Some(true), Some("")).unwrap(),
            Endpoints::AllowHttp
        );
        let e = endpoints(None, Some("maybe")).unwrap_err().to_string();
        assert!(
            e.starts_with("TOKENWARDEN_ALLOW_INSECURE_ENDPOINTS: "),
            "{e}"
        );
        let c = FileConfig::parse("allow_insecure_endpoints = true\n").unwrap();
        assert_eq!(c.allow_insecure_endpoints, Some(true));
        assert!(FileConfig::parse("allow_insecure_endpoints = \"yes\"\n").is_err());
    }

    #[test]
    fn cache_ttls_parse_with_zero_for_off_and_bad_values_named() {
        use std::time::Duration;
        let c = FileConfig::parse(
            "[cache]\ntoken_ttl_seconds = 0\napi_key_ttl_seconds = 2.5\nmax_connections = 7\n",
        )
        .unwrap()
        .cache
        .resolve()
        .unwrap();
        assert_eq!(c.token_ttl, Duration::ZERO);
        assert_eq!(c.api_key_ttl, Duration::from_millis(2500));
        assert_eq!(c.max_connections, 7);
        let none = FileConfig::parse("").unwrap().cache.resolve().unwrap();
        assert_eq!(none, tokenwarden_server::daemon::CacheConfig::default());
        for (text, named) in [
            ("[cache]\ntoken_ttl_seconds = -1\n", "token_ttl_seconds"),
            (
                "[cache]\napi_key_ttl_seconds = nan\n",
                "api_key_ttl_seconds",
            ),
            ("[cache]\ntoken_ttl_seconds = 86400\n", "token_ttl_seconds"),
        ] {
            let e = FileConfig::parse(text)
                .unwrap()
                .cache
                .resolve()
                .unwrap_err()
                .to_string();
            assert!(e.contains(named) && e.contains("0 (off)"), "{e}");
        }
        let e = FileConfig::parse("[cache]\ntoken_ttl = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("token_ttl"), "{e}");
        let e = FileConfig::parse("[cache]\nmax_connections = -3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_connections"), "{e}");
    }

    #[test]
    fn an_app_names_its_environment() {
        let providers = Registry::builtin().unwrap();
        let public = url::Url::parse("https://tw.example").unwrap();
        let app = |provider: &str, env: &str| {
            FileConfig::parse(&format!(
                "[[apps]]\nprovider = {provider:?}\nclient_id = \"x\"\nclient_secret = \"y\"\nenvironment = {env:?}\n"
            ))
            .unwrap()
            .resolve_apps(&providers, &public)
        };
        assert_eq!(
            app("tiktok-business", "sandbox").unwrap()[0].environment,
            Environment::Sandbox
        );
        let e = app("snapchat", "sandbox").unwrap_err().to_string();
        assert!(e.contains("no sandbox host"), "{e}");
        let e = app("tiktok-business", "staging").unwrap_err().to_string();
        assert!(e.contains("\"staging\""), "{e}");
    }

    /// The example's commented `[[apps]]` block for `provider`, uncommented, with an inline
    /// secret in place of its secret file.
    fn example_app(provider: &str) -> String {
        let start = EXAMPLE
            .find(&format!("# [[apps]]\n# provider = \"{provider}\""))
            .unwrap();
        let block: String = EXAMPLE[start..]
            .lines()
            .take_while(|l| l.starts_with("# "))
            .map(|l| format!("{}\n", &l[2..]))
            .collect();
        block.replace(
            &format!("client_secret_file = \"/run/secrets/{provider}-secret\""),
            "client_secret = \"s\"",
        )
    }

    #[test]
    fn an_app_names_its_identity_from_the_definition() {
        let providers = Registry::builtin().unwrap();
        let public = url::Url::parse("https://tw.example").unwrap();
        // The example's commented Microsoft Advertising Google-sign-in app, uncommented.
        let start = EXAMPLE
            .find("# [[apps]]\n# provider = \"microsoft-ads\"\n# id = \"google\"")
            .unwrap();
        let block: String = EXAMPLE[start..]
            .lines()
            .take_while(|l| l.starts_with("# "))
            .map(|l| format!("{}\n", &l[2..]))
            .collect::<String>()
            .replace(
                "client_secret_file = \"/run/secrets/microsoft-ads-google-secret\"",
                "client_secret = \"s\"",
            )
            .replace(
                "developer_token_file = \"/run/secrets/microsoft-ads-developer-token\"",
                "developer_token = \"d\"",
            );
        let apps = FileConfig::parse(&block)
            .unwrap()
            .resolve_apps(&providers, &public)
            .unwrap();
        assert_eq!(apps[0].identity.as_deref(), Some("google"));
        let app = |provider: &str, identity: &str| {
            FileConfig::parse(&format!(
                "[[apps]]\nprovider = {provider:?}\nclient_id = \"x\"\nclient_secret = \"y\"\nidentity = {identity:?}\n"
            ))
            .unwrap()
            .resolve_apps(&providers, &public)
        };
        let e = app("microsoft-ads", "facebook").unwrap_err().to_string();
        assert!(
            e.contains("microsoft-ads has no identity \"facebook\"; its identities are google"),
            "{e}"
        );
        let e = app("snapchat", "google").unwrap_err().to_string();
        assert!(
            e.contains("snapchat has no identity \"google\"") && e.contains("remove identity"),
            "{e}"
        );
    }

    #[test]
    fn an_app_names_its_region_from_the_definition() {
        let providers = Registry::builtin().unwrap();
        let public = url::Url::parse("https://tw.example").unwrap();
        // The example's commented Amazon app, uncommented, is one of the EU region.
        let block = example_app("amazon-ads");
        let apps = FileConfig::parse(&block)
            .unwrap()
            .resolve_apps(&providers, &public)
            .unwrap();
        assert_eq!(apps[0].region.as_deref(), Some("eu"));
        let app = |provider: &str, region: &str| {
            FileConfig::parse(&format!(
                "[[apps]]\nprovider = {provider:?}\nclient_id = \"x\"\nclient_secret = \"y\"\nregion = {region:?}\n"
            ))
            .unwrap()
            .resolve_apps(&providers, &public)
        };
        assert_eq!(
            app("amazon-ads", "eu").unwrap()[0].region.as_deref(),
            Some("eu")
        );
        let e = app("amazon-ads", "us").unwrap_err().to_string();
        assert!(
            e.contains("amazon-ads has no region \"us\"; its regions are na, eu, fe"),
            "{e}"
        );
        let e = app("snapchat", "eu").unwrap_err().to_string();
        assert!(e.contains("snapchat has no regions"), "{e}");
    }

    #[test]
    fn an_app_says_when_its_refresh_tokens_end_which_is_checked() {
        let providers = Registry::builtin().unwrap();
        let public = url::Url::parse("https://tw.example").unwrap();
        // The example's commented Google Ads Testing app, uncommented.
        let block = example_app("google-ads");
        let apps = FileConfig::parse(&block)
            .unwrap()
            .resolve_apps(&providers, &public)
            .unwrap();
        assert_eq!(
            apps[0].refresh_token_ends_after,
            Some(Duration::from_secs(7 * 86_400))
        );
        let app = |provider: &str, v: &str| {
            FileConfig::parse(&format!(
                "[[apps]]\nprovider = {provider:?}\nclient_id = \"x\"\nclient_secret = \"y\"\nrefresh_token_ends_after = {v:?}\n"
            ))
            .unwrap()
            .resolve_apps(&providers, &public)
        };
        for (bad, want) in [
            ("7", "refresh_token_ends_after"),
            ("seven days", "refresh_token_ends_after"),
            ("30m", "between 1h and 3650d"),
            ("4000d", "between 1h and 3650d"),
        ] {
            let e = app("google-ads", bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad:?}: {e}");
        }
        // A platform that issues no refresh tokens has nothing to end.
        let e = app("x-ads", "7d").unwrap_err().to_string();
        assert!(e.contains("issues no refresh tokens"), "{e}");
    }

    #[test]
    fn an_app_names_its_user_agent_which_is_checked() {
        let providers = Registry::builtin().unwrap();
        let public = url::Url::parse("https://tw.example").unwrap();
        // The example's commented Reddit app, uncommented.
        let block = example_app("reddit");
        let apps = FileConfig::parse(&block)
            .unwrap()
            .resolve_apps(&providers, &public)
            .unwrap();
        assert_eq!(
            apps[0].user_agent.as_deref(),
            Some("web:com.example.ads:v1.0 (by /u/yourname)")
        );
        let app = |ua: &str| {
            FileConfig::parse(&format!(
                "[[apps]]\nprovider = \"reddit\"\nclient_id = \"x\"\nclient_secret = \"y\"\nuser_agent = {ua:?}\n"
            ))
            .unwrap()
            .resolve_apps(&providers, &public)
        };
        for bad in ["", "   ", "a\r\nX-Evil: 1", "caf\u{e9}", &"x".repeat(300)] {
            let e = app(bad).unwrap_err().to_string();
            assert!(e.contains("user_agent must be"), "{bad:?}: {e}");
        }
        assert_eq!(
            app(" ua:x:1 ").unwrap()[0].user_agent.as_deref(),
            Some("ua:x:1")
        );
    }

    #[test]
    fn dashboard_and_alert_keys_parse_and_unknown_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("hook");
        std::fs::write(&f, "https://hooks.slack.com/services/T/B/x\n").unwrap();
        let c = FileConfig::parse(&format!(
            "[dashboard]\npassword = \"pw-inline\"\n[alerts]\nslack_webhook_url_file = {:?}\n",
            f.display().to_string()
        ))
        .unwrap();
        assert_eq!(
            c.dashboard.password().unwrap().unwrap().expose(),
            "pw-inline"
        );
        let a = c.alerts.as_ref().unwrap();
        assert_eq!(a.degraded_after_minutes, 30);
        assert_eq!(
            a.webhook_url().unwrap().expose(),
            "https://hooks.slack.com/services/T/B/x"
        );
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("pw-inline") && !shown.contains("hooks.slack.com"),
            "{shown}"
        );
        for (text, key) in [
            ("[dashboard]\npasword = \"x\"\n", "pasword"),
            ("[alerts]\nslack_url = \"x\"\n", "slack_url"),
        ] {
            let e = FileConfig::parse(text).unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
        let e = FileConfig::parse("[alerts]\ndegraded_after_minutes = 5\n")
            .unwrap()
            .alerts
            .unwrap()
            .webhook_url()
            .unwrap_err()
            .to_string();
        assert!(e.contains("slack_webhook_url"), "{e}");
        assert!(
            FileConfig::parse("[dashboard]\n")
                .unwrap()
                .dashboard
                .password()
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn trusted_proxies_parse_with_none_by_default_and_the_variable_over_the_file() {
        let ip = |a: &str| a.parse::<std::net::IpAddr>().unwrap();
        assert!(
            FileConfig::parse("")
                .unwrap()
                .trusted_proxies(None)
                .unwrap()
                .is_empty()
        );
        let c = FileConfig::parse("trusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]\n").unwrap();
        let t = c.trusted_proxies(None).unwrap();
        assert!(t.contains(ip("10.1.2.3")) && t.contains(ip("127.0.0.1")));
        assert!(!t.contains(ip("192.0.2.1")));
        let t = c
            .trusted_proxies(Some("192.0.2.0/24, 2001:db8::1"))
            .unwrap();
        assert!(t.contains(ip("192.0.2.1")) && !t.contains(ip("10.1.2.3")));
        let e = FileConfig::parse("trusted_proxies = [\"proxy.internal\"]\n")
            .unwrap()
            .trusted_proxies(None)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("trusted_proxies: ") && e.contains("proxy.internal"),
            "{e}"
        );
        let e = c
            .trusted_proxies(Some("10.0.0.0/40"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(TRUSTED_PROXIES_ENV), "{e}");
        // The example's commented line parses once uncommented.
        let uncommented = EXAMPLE.replace("# trusted_proxies = ", "trusted_proxies = ");
        let t = FileConfig::parse(&uncommented)
            .unwrap()
            .trusted_proxies(None)
            .unwrap();
        assert!(t.contains(ip("10.0.0.1")));
    }

    #[test]
    fn the_session_idle_timeout_parses_with_its_default_and_the_variable_over_the_file() {
        let idle = |text: &str, env: Option<&str>| {
            FileConfig::parse(text).and_then(|c| c.dashboard.idle_timeout(env))
        };
        assert_eq!(idle("", None).unwrap(), Duration::from_secs(30 * 60));
        assert_eq!(
            idle("[dashboard]\nsession_idle_timeout = \"10m\"\n", None).unwrap(),
            Duration::from_secs(600)
        );
        assert_eq!(
            idle("[dashboard]\nsession_idle_timeout = \"10m\"\n", Some("2h")).unwrap(),
            Duration::from_secs(7200)
        );
        for (text, env, named) in [
            (
                "[dashboard]\nsession_idle_timeout = \"soon\"\n",
                None,
                "[dashboard] session_idle_timeout",
            ),
            (
                "[dashboard]\nsession_idle_timeout = \"10s\"\n",
                None,
                "[dashboard] session_idle_timeout",
            ),
            ("", Some("13h"), IDLE_TIMEOUT_ENV),
            ("", Some("0"), IDLE_TIMEOUT_ENV),
        ] {
            let e = idle(text, env).unwrap_err().to_string();
            assert!(e.starts_with(named), "{e}");
        }
        let e = FileConfig::parse("[dashboard]\nsession_idle_timeout = 30\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("session_idle_timeout"), "{e}");
    }

    #[test]
    fn retention_parses_with_defaults_forever_and_variables_over_the_file() {
        let day = Duration::from_secs(86_400);
        let r = |text: &str| FileConfig::parse(text).and_then(|c| c.retention.resolve(None, None));
        assert_eq!(r("").unwrap(), Retention::default());
        assert_eq!(r("[retention]\n").unwrap(), Retention::default());
        assert_eq!(Retention::default().events, Some(30 * day));
        assert_eq!(Retention::default().deliveries, Some(14 * day));
        let c = r("[retention]\nevents = \"90d\"\ndeliveries = \"36h\"\n").unwrap();
        assert_eq!(
            (c.events, c.deliveries),
            (Some(90 * day), Some(Duration::from_secs(36 * 3600)))
        );
        // 0 and "off" keep forever; a key left out keeps its default.
        for forever in ["0", "\"0\"", "\"off\"", "\"OFF\"", "\"0d\""] {
            let c = r(&format!("[retention]\nevents = {forever}\n")).unwrap();
            assert_eq!(c.events, None, "{forever}");
            assert_eq!(c.deliveries, Retention::default().deliveries, "{forever}");
        }
        // The variables win over the file, and are checked the same way, by their name.
        let file =
            FileConfig::parse("[retention]\nevents = \"90d\"\ndeliveries = \"off\"\n").unwrap();
        let c = file.retention.resolve(Some("7d"), Some("2h")).unwrap();
        assert_eq!(
            (c.events, c.deliveries),
            (Some(7 * day), Some(Duration::from_secs(7200)))
        );
        assert_eq!(
            file.retention.resolve(Some("off"), None).unwrap().events,
            None
        );
        let e = file
            .retention
            .resolve(None, Some("2 weeks"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("TOKENWARDEN_RETENTION_DELIVERIES: "), "{e}");
        assert!(!format!("{file:?}").is_empty());
    }

    #[test]
    fn bad_retention_values_name_the_key_and_say_what_to_write() {
        for (text, key, says) in [
            (
                "events = \"30x\"",
                "[retention] events",
                "is not a duration",
            ),
            ("events = \"30\"", "[retention] events", "has no unit"),
            ("events = 30", "[retention] events", "is not a duration"),
            ("events = -1", "[retention] events", "is not a duration"),
            ("events = true", "[retention] events", "is not a duration"),
            (
                "events = \"12h\"",
                "[retention] events",
                "shorter than the 1d allowed",
            ),
            (
                "deliveries = \"\"",
                "[retention] deliveries",
                "is not a duration",
            ),
            (
                "deliveries = \"59m\"",
                "[retention] deliveries",
                "shorter than the 1h allowed",
            ),
            (
                "deliveries = 1.5",
                "[retention] deliveries",
                "is not a duration",
            ),
        ] {
            let e = FileConfig::parse(&format!("[retention]\n{text}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(&format!("{key}: ")), "{text}: {e}");
            assert!(e.contains(says), "{text}: {e}");
            assert!(e.contains("\"off\" to keep forever"), "{text}: {e}");
        }
        let e = FileConfig::parse("[retention]\nevent = \"30d\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("event") && e.contains("unknown field"), "{e}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = FileConfig::parse("listen = \"127.0.0.1:1\"\nlisten_port = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen_port"), "{e}");
        let e = FileConfig::parse(
            "[[apps]]\nprovider = \"snapchat\"\nclient_id = \"x\"\nsecret = \"y\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("secret"), "{e}");
    }

    #[test]
    fn apps_resolve_with_secrets_from_files_and_clear_errors() {
        let reg = Registry::builtin().unwrap();
        let public = url::Url::parse("https://t.example.com/").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s");
        std::fs::write(&f, "from-file\n").unwrap();
        let text = format!(
            "[[apps]]\nprovider = \"snapchat\"\nclient_id = \"c\"\nclient_secret_file = {:?}\n",
            f.display().to_string()
        );
        let apps = FileConfig::parse(&text)
            .unwrap()
            .resolve_apps(&reg, &public)
            .unwrap();
        assert_eq!(apps[0].client_secret.expose(), "from-file");
        assert_eq!(
            apps[0].redirect_uri,
            "https://t.example.com/callback/snapchat"
        );
        assert!(!format!("{:?}", FileConfig::parse(&text).unwrap()).contains("from-file"));

        let bad = FileConfig::parse(
            "[[apps]]\nprovider = \"myspace\"\nclient_id = \"c\"\nclient_secret = \"s\"\n",
        )
        .unwrap();
        assert!(
            bad.resolve_apps(&reg, &public)
                .unwrap_err()
                .to_string()
                .contains("unknown provider")
        );
        let none = FileConfig::parse("[[apps]]\nprovider = \"meta\"\nclient_id = \"c\"\n").unwrap();
        assert!(
            none.resolve_apps(&reg, &public)
                .unwrap_err()
                .to_string()
                .contains("required")
        );
        let inline = FileConfig::parse(
            "[[apps]]\nprovider = \"meta\"\nclient_id = \"c\"\nclient_secret = \"shh-inline\"\n",
        )
        .unwrap();
        assert!(
            !format!("{inline:?}").contains("shh-inline"),
            "Debug never shows a secret"
        );

        // A developer token, inline or from a file; optional; never in Debug.
        let dev_file = dir.path().join("dev");
        std::fs::write(&dev_file, "DEV-FROM-FILE\n").unwrap();
        let text = format!(
            "[[apps]]\nprovider = \"microsoft-ads\"\nclient_id = \"c\"\nclient_secret = \"s\"\ndeveloper_token_file = {:?}\n",
            dev_file.display().to_string()
        );
        let apps = FileConfig::parse(&text)
            .unwrap()
            .resolve_apps(&reg, &public)
            .unwrap();
        assert_eq!(
            apps[0].developer_token.as_ref().map(Secret::expose),
            Some("DEV-FROM-FILE")
        );
        assert!(!format!("{apps:?}").contains("DEV-FROM-FILE"));
        let inline = "[[apps]]\nprovider = \"microsoft-ads\"\nclient_id = \"c\"\nclient_secret = \"s\"\ndeveloper_token = \"DEV-INLINE\"\n";
        let parsed = FileConfig::parse(inline).unwrap();
        assert!(!format!("{parsed:?}").contains("DEV-INLINE"));
        let apps = parsed.resolve_apps(&reg, &public).unwrap();
        assert_eq!(
            apps[0].developer_token.as_ref().map(Secret::expose),
            Some("DEV-INLINE")
        );
        let both = format!("{inline}developer_token_file = \"/x\"\n");
        assert!(
            FileConfig::parse(&both)
                .unwrap()
                .resolve_apps(&reg, &public)
                .unwrap_err()
                .to_string()
                .contains("not both")
        );
        let without = FileConfig::parse(
            "[[apps]]\nprovider = \"microsoft-ads\"\nclient_id = \"c\"\nclient_secret = \"s\"\n",
        )
        .unwrap()
        .resolve_apps(&reg, &public)
        .unwrap();
        assert!(without[0].developer_token.is_none());
    }
}

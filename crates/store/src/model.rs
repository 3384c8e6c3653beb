//! The records the store keeps besides connections (which are `tokenwarden_core` types).

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use tokenwarden_core::connection::Environment;
use tokenwarden_core::id::{AppId, ConnectionId, ProviderId};
use tokenwarden_core::secret::Secret;
use tokenwarden_core::token::TokenSet;

/// A provider app (OAuth client). Several per provider are allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    /// The platform.
    pub provider: ProviderId,
    /// Our id for the app, unique per provider.
    pub id: AppId,
    /// The platform's client id (public).
    pub client_id: String,
    /// The client secret (encrypted at rest).
    pub client_secret: Secret,
    /// The redirect URI registered with the platform.
    pub redirect_uri: String,
    /// The platform's developer token for this app (Microsoft Advertising `DeveloperToken`),
    /// encrypted at rest like the client secret; `None` when the app has none.
    pub developer_token: Option<Secret>,
    /// Which of the platform's environments its tokens belong to (decides the API host).
    pub environment: Environment,
    /// Which of the platform's regions (`[[regions]]`) its tokens and accounts belong to
    /// (decides the authorize, token and API hosts); `None`: the default region, or a platform
    /// without regions.
    pub region: Option<String>,
    /// The `User-Agent` the app sends where its definition sends `{user_agent}` (Reddit);
    /// `None`: the default naming tokenwarden and the client id.
    pub user_agent: Option<String>,
    /// Where the platform ends this app's refresh tokens a fixed time after the consent, sooner
    /// than its definition says (Google: 7 days for an app whose OAuth consent screen is in
    /// Testing status); refreshing never moves that end. `None`: the definition's lifetime.
    pub refresh_token_ends_after: Option<std::time::Duration>,
    /// The issuer of the app's tokens when it is not the platform's own: the name of one of its
    /// definition's `[identities]` (Microsoft Advertising accounts signed in with Google:
    /// `google`). `None`: the definition's own issuer.
    pub identity: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// The current token set of a connection and its version (the fencing token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTokens {
    /// The tokens, decrypted.
    pub set: TokenSet,
    /// Bumped by every write; a lease is only good for the version it was taken at.
    pub version: i64,
}

/// A refresh lease: the right to refresh one connection until `until`, fenced by `version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The connection.
    pub connection: ConnectionId,
    /// Who holds it (unique per worker: replica id + task).
    pub owner: String,
    /// The token version when the lease was taken; the commit succeeds only at this version.
    pub version: i64,
    /// When it lapses, by the database's clock (milliseconds precision).
    pub until: DateTime<Utc>,
    /// When it was taken, by the database's clock.
    pub taken_at: DateTime<Utc>,
    /// A refresh of this token version that was sent (see [`crate::Refreshes::mark_refresh_sent`])
    /// and whose answer nobody has stored or recorded yet: its sender may have been stopped, or
    /// paused while holding the platform's answer.
    pub unresolved: Option<SentRefresh>,
}

/// A refresh sent and not yet settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentRefresh {
    /// The lease owner that sent it.
    pub by: String,
    /// When, by the database's clock.
    pub at: DateTime<Utc>,
}

/// SHA-256 of a secret-ish value (an OAuth `state`, a browser-binding cookie), hex encoded. Only
/// the hash is stored, so a database dump cannot be replayed against the callback.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Sha256Hex(String);

impl Sha256Hex {
    /// Hashes `value`.
    pub fn of(value: &str) -> Self {
        Sha256Hex(hex(&Sha256::digest(value.as_bytes())))
    }

    /// Wraps an already computed hex digest (as read back from the database).
    pub fn from_hex(h: impl Into<String>) -> Self {
        Sha256Hex(h.into())
    }

    /// The hex text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A prefix is enough to tell two apart in a log; the full hash is not needed there.
        write!(
            f,
            "Sha256Hex({}…)",
            self.0.chars().take(8).collect::<String>()
        )
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An authorization in flight, between `/connect` and the callback (hardening rules 1–3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingAuthorization {
    /// SHA-256 of the `state` value sent to the platform.
    pub state_hash: Sha256Hex,
    /// The provider the flow was started for (mix-up defence: the callback must match).
    pub provider: ProviderId,
    /// The app.
    pub app: AppId,
    /// The connection the grant will land in.
    pub connection: ConnectionId,
    /// The redirect URI used in the authorization request (the token request repeats it).
    pub redirect_uri: String,
    /// The flow's secret, encrypted at rest: the PKCE verifier where the platform takes PKCE, or
    /// for an OAuth 1.0a flow the request token's secret (which signs the access-token call; the
    /// request token itself is the flow's `state`, so only its hash is stored).
    pub pkce_verifier: Option<Secret>,
    /// Scopes requested.
    pub scopes: Vec<String>,
    /// SHA-256 of the browser-binding cookie set by `/connect`.
    pub browser_hash: Sha256Hex,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// After this the callback is refused.
    pub expires_at: DateTime<Utc>,
    /// The connect session the flow was started from.
    pub session: Option<String>,
    /// The region the flow runs in when it is not the app's (the code is redeemed at its token
    /// host and the connection records it); `None`: the app's.
    pub region: Option<String>,
}

/// A connect session: the authority to run one connect flow for one provider and connection,
/// handed to a person as a link (`/connect/s/{token}`). Only the token's hash is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectSession {
    /// Its public id (`cs_…`): names it in events and API answers; grants nothing.
    pub id: String,
    /// SHA-256 of the token in the link.
    pub token_hash: Sha256Hex,
    /// The provider the flow must use.
    pub provider: ProviderId,
    /// The connection the grant lands in (new, or one to re-authorize).
    pub connection: ConnectionId,
    /// The app to use; `None`: the connection's app, or the provider's first.
    pub app: Option<AppId>,
    /// A free-form label of who the connection is for, kept on the connection.
    pub end_user: Option<String>,
    /// Where the browser goes after the flow (an allow-listed URL).
    pub return_to: Option<String>,
    /// Scopes to request (empty: the definition's defaults).
    pub scopes: Vec<String>,
    /// Whether a re-authorization may land another platform account than the recorded one.
    pub allow_account_change: bool,
    /// Who made it: `key:<id>`, `dashboard:<who>` or `banner`.
    pub created_by: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// After this the link is refused.
    pub expires_at: DateTime<Utc>,
    /// When the link was used (the browser was sent to the platform), once.
    pub used_at: Option<DateTime<Utc>>,
    /// The platform region to connect in (one of the definition's `[[regions]]`); `None`: the
    /// connection's recorded region on a re-authorization, else the app's.
    pub region: Option<String>,
}

/// What presenting a connect session's token found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionUse {
    /// Unused and in time: it is now marked used, and this caller may run the flow.
    Fresh(ConnectSession),
    /// It was used before.
    Used(ConnectSession),
    /// It expired unused.
    Expired(ConnectSession),
    /// No session has this token.
    Unknown,
}

/// A value in an event's details. Deliberately has no conversion from `Secret`: an event is shown
/// on the dashboard and sent to webhooks, so it must never carry one (DESIGN "Secrets").
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum EventValue {
    /// A number.
    Int(i64),
    /// A flag.
    Bool(bool),
    /// Text (ids, codes, plain-words explanations; never a token).
    Text(String),
}

impl From<i64> for EventValue {
    fn from(v: i64) -> Self {
        EventValue::Int(v)
    }
}
impl From<bool> for EventValue {
    fn from(v: bool) -> Self {
        EventValue::Bool(v)
    }
}
impl From<&str> for EventValue {
    fn from(v: &str) -> Self {
        EventValue::Text(v.to_string())
    }
}
impl From<String> for EventValue {
    fn from(v: String) -> Self {
        EventValue::Text(v)
    }
}

/// Detail keys that name a secret are refused outright, as a last line of defence.
const FORBIDDEN_DETAIL_KEYS: [&str; 6] = [
    "token",
    "secret",
    "password",
    "verifier",
    "authorization",
    "api_key",
];

/// An event to append. Kind and detail keys are `&'static str`, so they come from code, not data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// The connection it concerns, if any.
    pub connection: Option<ConnectionId>,
    /// When.
    pub at: DateTime<Utc>,
    /// A stable kind, e.g. `refreshed`, `reauth_required`, `probe_failed`.
    pub kind: &'static str,
    /// One line for a person.
    pub message: String,
    /// Structured details.
    pub details: BTreeMap<&'static str, EventValue>,
}

impl NewEvent {
    /// An event without details.
    pub fn new(
        connection: Option<ConnectionId>,
        at: DateTime<Utc>,
        kind: &'static str,
        message: impl Into<String>,
    ) -> Self {
        NewEvent {
            connection,
            at,
            kind,
            message: message.into(),
            details: BTreeMap::new(),
        }
    }

    /// Adds a detail.
    pub fn with(mut self, key: &'static str, value: impl Into<EventValue>) -> Self {
        self.details.insert(key, value.into());
        self
    }

    pub(crate) fn check(&self) -> Result<(), crate::StoreError> {
        for k in self.details.keys() {
            let lower = k.to_ascii_lowercase();
            if FORBIDDEN_DETAIL_KEYS.iter().any(|f| lower.contains(f)) {
                return Err(crate::StoreError::Config(format!(
                    "event detail key {k:?} names a secret; events must never carry one"
                )));
            }
        }
        Ok(())
    }
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Increasing id (the order of appends).
    pub id: i64,
    /// The connection, if any.
    pub connection: Option<ConnectionId>,
    /// When.
    pub at: DateTime<Utc>,
    /// Kind.
    pub kind: String,
    /// Message.
    pub message: String,
    /// Details.
    pub details: BTreeMap<String, EventValue>,
}

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiKeyRole {
    /// Everything.
    Admin,
    /// Read tokens and connection status only.
    TokenReader,
}

impl ApiKeyRole {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiKeyRole::Admin => "admin",
            ApiKeyRole::TokenReader => "token_reader",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(ApiKeyRole::Admin),
            "token_reader" => Some(ApiKeyRole::TokenReader),
            _ => None,
        }
    }
}

/// An API key's public record (the key itself is shown once at creation and stored hashed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyInfo {
    /// The lookup prefix (public; appears in the key as `tw_<id>_…`).
    pub id: String,
    /// Its role.
    pub role: ApiKeyRole,
    /// A label for people.
    pub label: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The lookup id of a presented API key (`tw_<id>_<secret>`): public, it names the row the key is
/// checked against, and limits (per key id) may be keyed by it. `None` when it is not shaped so.
pub fn api_key_id(presented: &str) -> Option<&str> {
    presented
        .strip_prefix("tw_")
        .and_then(|rest| rest.split_once('_'))
        .map(|(id, _)| id)
        .filter(|id| !id.is_empty())
}

/// The SHA-256 (hex) that no key has, compared against when the presented key's id is unknown.
const NO_KEY_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Whether `presented` hashes to `stored` (the row's `key_hash`), compared in constant time
/// (hardening rule 12). With no row (an unknown or revoked id, or no id at all) the same hash and
/// compare run against [`NO_KEY_HASH`], so a wrong secret for a known id costs what an unknown
/// id costs and the answer's timing does not tell which ids exist.
pub(crate) fn api_key_matches(stored: Option<&str>, presented: &str) -> bool {
    #[cfg(test)]
    KEY_HASHES.with(|c| c.set(c.get() + 1));
    let given = hex(&Sha256::digest(presented.as_bytes()));
    let same = Secret::new(stored.unwrap_or(NO_KEY_HASH).to_string()).ct_eq(&given);
    same & stored.is_some()
}

/// A webhook endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEndpoint {
    /// Its id.
    pub id: String,
    /// Where deliveries go (the sender applies the proxy's SSRF rules, hardening rule 16).
    pub url: String,
    /// The signing secret (encrypted at rest).
    pub signing_secret: Secret,
    /// Whether deliveries are enqueued for it.
    pub enabled: bool,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    /// Accepted by the endpoint.
    Delivered,
    /// Given up on.
    Dead,
}

impl DeliveryStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
        }
    }
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(DeliveryStatus::Pending),
            "delivered" => Some(DeliveryStatus::Delivered),
            "dead" => Some(DeliveryStatus::Dead),
            _ => None,
        }
    }
}

/// One message to one endpoint, in the durable outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The `webhook-id`: the same across retries, so receivers can de-duplicate.
    pub id: String,
    /// The endpoint.
    pub webhook: String,
    /// The JSON body.
    pub payload: String,
    /// Attempts so far (a claim counts as one).
    pub attempts: i64,
    /// When it is due.
    pub next_attempt_at: DateTime<Utc>,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// The last failure, in plain words (never a response body).
    pub last_error: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// Which backend a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// How much of each key has been used, and whether it is still needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStatus {
    /// Key id.
    pub key_id: String,
    /// Encryptions reserved under it (an upper bound of those done; hardening rule 14).
    pub encryptions: i64,
    /// No ciphertext uses it any more (after a completed rotation).
    pub retired: bool,
}

/// What a re-encryption pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RotationReport {
    /// Values re-encrypted under the current key.
    pub reencrypted: u64,
    /// Values already under the current key.
    pub already_current: u64,
    /// Values changed by someone else meanwhile (they were written under the current key).
    pub raced: u64,
}

#[cfg(test)]
thread_local! {
    /// How many times this thread hashed and compared a presented API key (tests only: shows
    /// that every path through `verify_api_key` does the same work).
    pub(crate) static KEY_HASHES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use tokenwarden_core::clock::Clock as _;

    #[tokio::test]
    async fn an_unknown_key_id_costs_the_same_hash_and_compare_as_a_wrong_secret() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("k.db").display());
        let store = crate::open(&url, crate::Keyring::generate("k1").unwrap())
            .await
            .unwrap();
        let now = tokenwarden_core::clock::SystemClock.now();
        let (info, key) = store
            .create_api_key(ApiKeyRole::Admin, "t", now)
            .await
            .unwrap();
        let (revoked, revoked_key) = store
            .create_api_key(ApiKeyRole::Admin, "old", now)
            .await
            .unwrap();
        assert!(store.revoke_api_key(&revoked.id, now).await.unwrap());
        let secret = "x".repeat(43);
        let cases = [
            (key.expose().to_string(), true),
            (format!("tw_{}_{secret}", info.id), false),
            (format!("tw_{}_{secret}", "0".repeat(12)), false),
            (revoked_key.expose().to_string(), false),
            (format!("tw_{}", "0".repeat(12)), false),
            ("not a key".to_string(), false),
        ];
        for (presented, ok) in cases {
            let before = KEY_HASHES.with(Cell::get);
            let verified = store.verify_api_key(&presented).await.unwrap();
            assert_eq!(verified.is_some(), ok, "{presented}");
            assert_eq!(
                KEY_HASHES.with(Cell::get) - before,
                1,
                "{presented}: one hash and constant-time compare, known id or not"
            );
        }
    }
}

/// A lane of outgoing calls whose budget replicas share (a platform's per-app, per-endpoint,
/// per-account or per-token limit): its key (never a secret) and the spacing its limit implies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLane {
    /// What the lane is, e.g. `snapchat/app/main`.
    pub key: String,
    /// The spacing between calls at the full rate (real time).
    pub interval: std::time::Duration,
}

/// What [`crate::Coordination::take_rate_slot`] booked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateSlot {
    /// A slot on every lane, `wait` from now (database time).
    Granted {
        /// How long to wait before calling.
        wait: std::time::Duration,
        /// Whether any lane runs below its full rate (a success should tell it so).
        slowed: bool,
        /// The slot, on the database's clock.
        at: DateTime<Utc>,
    },
    /// The earliest slot lies beyond the caller's budget: nothing was booked.
    Refused {
        /// How long the caller would have waited.
        would_wait: std::time::Duration,
    },
}

/// How the platform answered on shared lanes: the adaptive slow-down every replica follows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateFeedback {
    /// Throttled: halve the rate (not below `min_factor`) and hold every caller for `hold`.
    Throttled {
        /// The pause the platform asked for (real time).
        hold: std::time::Duration,
        /// The lowest share of the published rate.
        min_factor: f64,
    },
    /// Usage close to the limit (Meta's headers): multiply the rate by `by`.
    Slower {
        /// Below 1.
        by: f64,
        /// The lowest share of the published rate.
        min_factor: f64,
    },
    /// A success: give back `step` of the published rate, up to all of it.
    Recovered {
        /// The share given back.
        step: f64,
    },
}

/// A signed-in dashboard browser, as stored: the cookie value itself never is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardSession {
    /// SHA-256 of the cookie value.
    pub token_hash: Sha256Hex,
    /// Who signed in ("API key tw_ab12…", "password").
    pub who: String,
    /// Signed in at.
    pub created_at: DateTime<Utc>,
    /// The absolute end.
    pub expires_at: DateTime<Utc>,
    /// The last request that used it.
    pub last_used: DateTime<Utc>,
}

/// A platform's circuit breaker as stored: its state and the version every change compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BreakerRecord {
    /// The state (times on the database's clock).
    pub state: tokenwarden_core::breaker::BreakerState,
    /// Bumped by every change; 0 when there is no row yet.
    pub version: i64,
}

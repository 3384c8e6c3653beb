//! Connect sessions: the authority to run one connect flow, handed to a person as a link.
//!
//! A connect flow no longer starts from a bare `/connect/{provider}?connection_id=…` (anyone who
//! could reach the daemon could replace a live connection's tokens with their own account's).
//! Someone with authority mints a session (`POST /v1/connect-sessions` with an admin API key, the
//! signed-in dashboard's Connect and Re-authorize buttons, `tokenwarden connect`, the sandbox
//! banner); the answer is a link `/connect/s/{token}` bound to one provider and one connection.
//! The token is 256 random bits, stored only as its SHA-256, and single use: it is spent when the
//! browser is sent on to the platform's consent page ([`crate::connect`]).
//!
//! This is the shape Nango and others use to gate their connect UI: the backend that knows who
//! the end user is asks for a short-lived session, the front end only opens its link.

use crate::ServerState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::Body;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use parking_lot::RwLock;
use rand::RngCore;
use serde::Deserialize;
use serde_json::{Value, json};
use tokenwarden_core::id::{AppId, ConnectionId, ProviderId};
use tokenwarden_core::secret::Secret;
use tokenwarden_store::{ConnectSession, Sha256Hex};
use url::Url;

/// How long a session lives when the request names no lifetime.
pub const DEFAULT_LIFETIME: TimeDelta = TimeDelta::minutes(30);
/// The longest a session may live.
pub const MAX_LIFETIME: TimeDelta = TimeDelta::days(7);
/// The shortest lifetime a request may ask for.
pub const MIN_LIFETIME: TimeDelta = TimeDelta::minutes(1);
/// Longest `end_user` label.
const MAX_END_USER: usize = 200;

/// The `POST /v1/connect-sessions` route.
pub fn routes() -> Router<ServerState> {
    Router::new()
        .route("/v1/connect-sessions", post(create))
        .method_not_allowed_fallback(crate::error::method_not_allowed)
}

/// Where a finished flow may send the browser back to: this daemon's own origin, and the origins
/// the configuration allows (`[connect] return_to`).
#[derive(Debug, Default)]
pub struct ConnectPolicy {
    return_to: RwLock<Vec<url::Origin>>,
}

impl ConnectPolicy {
    /// Replaces the allowed `return_to` origins (each URL's scheme, host and port count).
    pub fn allow_return_to(&self, urls: &[Url]) {
        *self.return_to.write() = urls.iter().map(Url::origin).collect();
    }

    fn allows(&self, public_url: &Url, target: &Url) -> bool {
        let origin = target.origin();
        origin.is_tuple()
            && (origin == public_url.origin() || self.return_to.read().contains(&origin))
    }
}

/// What a session is asked for; every field but `provider` is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    /// The platform.
    pub provider: String,
    /// Re-authorize this connection (it must be of `provider`), or create it under this id.
    /// Default: a new generated id.
    #[serde(default)]
    pub connection_id: Option<String>,
    /// The app; default: the connection's own app, or the provider's first.
    #[serde(default)]
    pub app: Option<String>,
    /// A label of who the connection is for, kept on the connection.
    #[serde(default)]
    pub end_user: Option<String>,
    /// Where to send the browser when the flow ends (an allowed origin).
    #[serde(default)]
    pub return_to: Option<String>,
    /// Scopes to request instead of the definition's defaults.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// Lifetime in seconds (60 … 604800; default 1800).
    #[serde(default)]
    pub expires_in: Option<i64>,
    /// Whether the flow may land another platform account than the connection's recorded one.
    #[serde(default)]
    pub allow_account_change: bool,
    /// The platform region to connect in (one of the definition's `[[regions]]`, e.g. Amazon
    /// Ads `eu`); default: the connection's own on a re-authorization, else the app's.
    #[serde(default)]
    pub region: Option<String>,
}

/// A minted session: its link is the only place the token appears.
#[derive(Clone)]
pub struct Minted {
    /// The session.
    pub session: ConnectSession,
    /// The link to hand to the person (`{public_url}/connect/s/{token}`).
    pub url: String,
    /// The token alone (the dashboard starts the flow with it at once).
    pub(crate) token: Secret,
}

impl std::fmt::Debug for Minted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minted")
            .field("session", &self.session.id)
            .field("url", &"[redacted]")
            .finish()
    }
}

impl Minted {
    /// The API's answer.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.session.id,
            "url": self.url,
            "expires_at": self.session.expires_at,
            "provider": self.session.provider,
            "connection_id": self.session.connection,
            "app": self.session.app,
            "end_user": self.session.end_user,
            "return_to": self.session.return_to,
            "allow_account_change": self.session.allow_account_change,
        })
    }
}

fn random(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// A generated connection id: `{provider}-{10 lowercase letters or digits}`.
pub fn new_connection_id(provider: &str) -> Option<ConnectionId> {
    let tail: String = random(16)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(10)
        .collect::<String>()
        .to_ascii_lowercase();
    ConnectionId::parse(format!("{provider}-{tail}")).ok()
}

/// Says that `provider` has no app `wanted`, and which apps it has (or that it has none).
pub(crate) fn no_such_app(
    provider: &ProviderId,
    wanted: &str,
    apps: &[tokenwarden_store::App],
) -> String {
    if apps.is_empty() {
        return format!(
            "{provider} has no app called {wanted}: no OAuth app is configured for {provider} at all; add one under [[apps]] first"
        );
    }
    let names: Vec<&str> = apps.iter().map(|a| a.id.as_str()).collect();
    format!(
        "{provider} has no app called {wanted}; its apps are: {}",
        names.join(", ")
    )
}

fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

/// Checks a request and stores a new session; `created_by` says who asked (`key:<id>`,
/// `dashboard:<who>`, `banner`, `cli`).
pub async fn mint(
    s: &ServerState,
    req: SessionRequest,
    created_by: &str,
) -> Result<Minted, ApiError> {
    let Some(p) = s.providers.get(&req.provider) else {
        return Err(bad(
            "unknown_provider",
            format!(
                "there is no platform called {:?}; known: {}",
                req.provider,
                s.providers.ids()
            ),
        ));
    };
    let provider = p.spec.id.clone();
    let (connection, existing) = match req.connection_id.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => {
            let id = ConnectionId::parse(c).map_err(|e| bad("bad_id", e.to_string()))?;
            let existing = s.store.get_connection(&id).await?;
            (id, existing)
        }
        None => (
            new_connection_id(provider.as_str())
                .ok_or_else(|| bad("bad_id", "cannot name a connection for this platform"))?,
            None,
        ),
    };
    // Re-authorization never changes a connection's provider.
    if let Some(c) = &existing
        && c.provider != provider
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "provider_mismatch",
            format!(
                "connection {connection} is a {} connection; it can only be re-authorized with {}",
                c.provider, c.provider
            ),
        ));
    }
    let app = match req.app.as_deref().filter(|a| !a.is_empty()) {
        Some(a) => Some(AppId::parse(a).map_err(|e| bad("bad_id", e.to_string()))?),
        None => existing.as_ref().map(|c| c.app.clone()),
    };
    let apps = s.store.list_apps(Some(&provider)).await?;
    match &app {
        // A well-formed name the configuration lacks: 409 like `no_app`, not a malformed request.
        Some(a) if !apps.iter().any(|x| &x.id == a) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "unknown_app",
                no_such_app(&provider, a.as_str(), &apps),
            ));
        }
        None if apps.is_empty() => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "no_app",
                format!("no OAuth app is configured for {provider}: add one under [[apps]] first"),
            ));
        }
        _ => {}
    }
    // Checked as sent (the document's bound and pattern), then trimmed.
    let end_user = match req.end_user {
        Some(e) if e.chars().count() > MAX_END_USER || e.chars().any(char::is_control) => {
            return Err(bad(
                "bad_end_user",
                format!(
                    "end_user is a label of at most {MAX_END_USER} characters, without control characters"
                ),
            ));
        }
        e => e.map(|e| e.trim().to_string()).filter(|e| !e.is_empty()),
    };
    let return_to = match req.return_to.as_deref().filter(|r| !r.is_empty()) {
        Some(r) => {
            let u = Url::parse(r)
                .ok()
                .filter(|u| matches!(u.scheme(), "https" | "http"))
                .ok_or_else(|| bad("bad_return_to", "return_to is not an http(s) URL"))?;
            // A well-formed URL that the policy does not allow: 403, not a malformed request.
            if !s.connect.allows(&s.public_url, &u) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "return_to_not_allowed",
                    format!(
                        "return_to must be on this daemon's origin or one listed under [connect] return_to; {} is not",
                        u.origin().ascii_serialization()
                    ),
                ));
            }
            Some(u.to_string())
        }
        None => None,
    };
    let lifetime = match req.expires_in {
        None => DEFAULT_LIFETIME,
        Some(secs) if (MIN_LIFETIME.num_seconds()..=MAX_LIFETIME.num_seconds()).contains(&secs) => {
            TimeDelta::seconds(secs)
        }
        Some(_) => {
            return Err(bad(
                "bad_expires_in",
                format!(
                    "expires_in is in seconds, from {} to {} (7 days)",
                    MIN_LIFETIME.num_seconds(),
                    MAX_LIFETIME.num_seconds()
                ),
            ));
        }
    };
    // Checked as sent (at most 100 items of at most 200 characters), then split: an item may
    // hold several names separated by spaces or commas.
    let given = req.scopes.unwrap_or_default();
    if given
        .iter()
        .any(|s| s.chars().count() > 200 || s.chars().any(char::is_control))
        || given.len() > 100
    {
        return Err(bad(
            "bad_scopes",
            "scopes are at most 100 items of at most 200 characters, without control characters",
        ));
    }
    let scopes: Vec<String> = given
        .into_iter()
        .flat_map(|s| {
            s.split([',', ' '])
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    // A name as the definitions write them (checked before it is quoted back; empty: none),
    // then one of this platform's: a well-formed name it lacks is 409 like `unknown_app`.
    let region = req.region.filter(|r| !r.is_empty());
    if region.as_deref().is_some_and(|r| {
        r.len() > 32
            || !r
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    }) {
        return Err(bad(
            "bad_region",
            "region is one of the platform's region names: 1 to 32 lower-case letters, digits or '-' (Amazon Ads: na, eu, fe)",
        ));
    }
    if let Some(p) = s.providers.get(provider.as_str())
        && let Err(e) = p.spec.check_region(region.as_deref())
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "unknown_region",
            e.to_string(),
        ));
    }
    let token = random(32);
    let now: DateTime<Utc> = s.clock.now();
    let session = ConnectSession {
        id: format!("cs_{}", &Sha256Hex::of(&random(16)).as_str()[..20]),
        token_hash: Sha256Hex::of(&token),
        provider: provider.clone(),
        connection,
        app,
        end_user,
        return_to,
        scopes,
        allow_account_change: req.allow_account_change,
        created_by: created_by.to_string(),
        created_at: now,
        expires_at: now + lifetime,
        used_at: None,
        region,
    };
    s.store.put_connect_session(&session).await?;
    let mut url = s.public_url.clone();
    url.set_path(&format!("/connect/s/{token}"));
    url.set_query(None);
    tracing::info!(
        session = %session.id,
        provider = %session.provider,
        connection = %session.connection,
        created_by,
        "connect session created"
    );
    Ok(Minted {
        session,
        url: url.to_string(),
        token: Secret::new(token),
    })
}

/// `POST /v1/connect-sessions` (admin API key).
async fn create(
    State(s): State<ServerState>,
    caller: Caller,
    Body(req): Body<SessionRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.admin()?;
    let minted = mint(&s, req, &format!("key:{}", caller.0.id)).await?;
    Ok((StatusCode::CREATED, Json(minted.to_json())))
}

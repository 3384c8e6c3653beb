//! `POST /callbacks/{provider}/{app}/deauthorize`: where a platform tells the app that a user
//! removed it (issue 18, item 7), so the connections of that user turn `reauth_required` at
//! once instead of at the next probe.
//!
//! The route is public by nature (the platform cannot hold an API key); what protects it is the
//! signature, keyed by the app's client secret and verified in constant time by
//! [`tokenwarden_core::platform_callback`], as the provider definition's
//! `[callbacks.deauthorize]` table says (which kind, where the user id sits). Around it:
//!
//! - bodies are capped at [`MAX_BODY`]; requests are rate limited per address
//!   ([`crate::limits::CALLBACK_RATE`]);
//! - a forged, stale, replayed or malformed callback, an unknown app, or a platform without the
//!   callback all get the same `400 signature_invalid` and change nothing; the daemon's log says
//!   which it was (never the body, the signed request or the secret);
//! - a good one finds the connections of that provider and app whose recorded account is the
//!   user ([`tokenwarden_core::connection::Account`], or the grant's external ids), and records
//!   the revocation through the one writer of a connection's state
//!   ([`tokenwarden_engine::States`], in [`record_revocation`]): one `reauth_required` event and,
//!   through the outbox, one `connection.state_changed` webhook each. Then `200`, which is what
//!   Meta and TikTok expect;
//! - if the store fails, `503` and the callback is forgotten, so the platform's retry is taken.

use crate::ServerState;
use crate::limits::{ClientAddr, retry_secs};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{DateTime, TimeDelta, Utc};
use parking_lot::Mutex;
use serde_json::json;
use tokenwarden_core::connection::{Connection, ConnectionState, Problem, ProblemCode};
use tokenwarden_core::id::{AppId, ProviderId};
use tokenwarden_core::platform_callback::{
    self, CallbackRequest, Deauthorization, Refusal, SeenSignatures, Verified,
};
use tokenwarden_core::state;
use tokenwarden_store::{NewEvent, StoreError};

/// The route.
pub const DEAUTHORIZE_ROUTE: &str = "/callbacks/{provider}/{app}/deauthorize";

/// The largest body taken: a signed request or a webhook event is a few hundred bytes.
pub const MAX_BODY: usize = 64 * 1024;

/// How many recent callbacks are remembered against replays (per process).
pub const REMEMBERED: usize = 100_000;

/// What the callback route keeps between requests: the callbacks already taken.
#[derive(Debug)]
pub struct Callbacks {
    seen: Mutex<SeenSignatures>,
}

impl Default for Callbacks {
    fn default() -> Self {
        Callbacks {
            seen: Mutex::new(SeenSignatures::new(REMEMBERED)),
        }
    }
}

/// The callback routes.
pub fn routes() -> Router<ServerState> {
    Router::new()
        .route(DEAUTHORIZE_ROUTE, post(receive))
        .method_not_allowed_fallback(crate::error::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

/// The one answer every refused callback gets, whatever the reason.
fn refused() -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": {"code": "signature_invalid", "message": "signature invalid"}})),
    )
        .into_response()
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"error": {"code": "store_unavailable", "message": "tokenwarden cannot reach its database right now; retry later"}})),
    )
        .into_response()
}

async fn receive(
    State(s): State<ServerState>,
    client: ClientAddr,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    // Over MAX_BODY (or cut off): the JSON error every route answers, not axum's text.
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            let code = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                "request_too_large"
            } else {
                "bad_body"
            };
            return (
                e.status(),
                Json(json!({"error": {"code": code, "message": e.body_text()}})),
            )
                .into_response();
        }
    };
    let now = s.clock.now();
    if let Err(wait) = s.limits.callbacks.take(&client.key(), now) {
        tracing::warn!(%client, "platform callbacks: too many requests from one address");
        let mut r = (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({"error": {"code": "rate_limited", "message": "too many callbacks from this address"}})),
        )
            .into_response();
        if let Ok(v) = HeaderValue::from_str(&retry_secs(wait).to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    // A segment that is not UTF-8 text names no provider or app.
    let Ok(Path((provider, app))) = path else {
        tracing::warn!(%client, "deauthorize callback refused: the path is not UTF-8 text");
        return refused();
    };
    // Said only in the log: the sender learns "signature invalid" whatever went wrong.
    let refuse = |why: &dyn std::fmt::Display| {
        tracing::warn!(%client, provider = %provider, app = %app, reason = %why, "deauthorize callback refused");
        refused()
    };
    let Some(def) = s.providers.get(&provider) else {
        return refuse(&"no such provider");
    };
    let Some(spec) = def.spec.callbacks.deauthorize.as_ref() else {
        return refuse(&"the provider's definition has no [callbacks.deauthorize]");
    };
    let (Ok(provider_id), Ok(app_id)) = (
        ProviderId::parse(provider.as_str()),
        AppId::parse(app.as_str()),
    ) else {
        return refuse(&"no such app");
    };
    let app_row = match s.store.get_app(&provider_id, &app_id).await {
        Ok(Some(a)) => a,
        Ok(None) => return refuse(&"no such app"),
        Err(e) => {
            tracing::error!(error = %e, "deauthorize callback: cannot read the app");
            return unavailable();
        }
    };
    let signature_header = spec
        .kind
        .signature_header()
        .and_then(|h| headers.get(h))
        .and_then(|v| v.to_str().ok());
    let verified = platform_callback::verify(
        spec,
        app_row.client_secret.expose().as_bytes(),
        CallbackRequest {
            body: &body,
            signature_header,
        },
        now,
    );
    let d = match verified {
        Err(why) => return refuse(&why),
        Ok(Verified::OtherEvent { event, .. }) => {
            tracing::debug!(provider = %provider, app = %app, event = %event, "platform callback: not a deauthorization, nothing to do");
            return received();
        }
        Ok(Verified::Deauthorized(d)) => d,
    };
    let fresh_until = d.signed_at + TimeDelta::from_std(spec.max_age).unwrap_or(TimeDelta::MAX);
    if !s
        .callbacks
        .seen
        .lock()
        .first_time(d.replay_key, fresh_until, now)
    {
        return refuse(&Refusal::Replayed);
    }
    match revoke_user(&s, &provider_id, &app_id, &def.spec.name, &d, now).await {
        Ok(changed) => {
            tracing::info!(
                provider = %provider,
                app = %app,
                connections = changed,
                "the platform says a user removed the app"
            );
            received()
        }
        Err(e) => {
            // Not taken: the platform's retry of this very callback must be.
            s.callbacks.seen.lock().forget(&d.replay_key);
            tracing::error!(error = %e, provider = %provider, app = %app, "deauthorize callback: cannot record the revocation");
            unavailable()
        }
    }
}

fn received() -> Response {
    (StatusCode::OK, Json(json!({"received": true}))).into_response()
}

/// Whether `conn` holds a grant of the user the platform names: its recorded account, or one
/// of the grant's external ids (Threads `user_id`, TikTok `open_id`).
fn belongs_to(conn: &Connection, user_id: &str) -> bool {
    conn.account.as_ref().is_some_and(|a| a.id == user_id)
        || conn.account_ids.iter().any(|i| i == user_id)
}

/// Records the revocation on every connection of `provider`/`app` that belongs to the user; how
/// many changed.
async fn revoke_user(
    s: &ServerState,
    provider: &ProviderId,
    app: &AppId,
    platform: &str,
    d: &Deauthorization,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let mut changed = 0;
    for conn in s.store.list_connections().await? {
        if conn.provider != *provider || conn.app != *app || !belongs_to(&conn, &d.user_id) {
            continue;
        }
        if record_revocation(s, &conn, platform, now).await? {
            changed += 1;
        }
    }
    Ok(changed)
}

/// The one place a deauthorize callback changes a connection: a `revoked` problem, through the
/// state's one writer (so the state follows by `core::state::settle`, and the webhook goes out
/// through the outbox with the change), and one `reauth_required` event when the state changed.
/// A connection that already carries the revocation is left alone (a platform's retry, or a
/// second app removal), so nothing is announced twice. Returns whether it changed.
pub async fn record_revocation(
    s: &ServerState,
    conn: &Connection,
    platform: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    if conn.problems.iter().any(|p| p.code == ProblemCode::Revoked) {
        return Ok(false);
    }
    let title = format!("{platform} says the user removed the app, which revoked the grant");
    let problem = Problem {
        code: ProblemCode::Revoked,
        title: title.clone(),
        fix:
            "Re-authorize the connection with the connect link: the person must add the app again."
                .into(),
        since: now,
    };
    let to = s
        .tokens
        .states()
        .set_problems(conn, state::replace(&conn.problems, problem), now)
        .await?;
    if to == ConnectionState::ReauthRequired && conn.state != ConnectionState::ReauthRequired {
        let event = NewEvent::new(Some(conn.id.clone()), now, "reauth_required", title)
            .with("via", "deauthorize_callback");
        s.store.append_event(&event).await?;
    }
    Ok(true)
}

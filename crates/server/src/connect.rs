//! The authorization-code flow. The callback checks `state` before anything else (even an
//! `error=` parameter) and consumes it in one statement, so a replayed or raced callback causes no
//! token request; the flow is bound to the provider in the path and to the browser that started
//! it (a cookie set by `/connect`). Nothing half-made is kept: a connection is written only after
//! the exchange (and, for Threads and Meta, the long-lived upgrade) succeeded.

use crate::ServerState;
use crate::page;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::TimeDelta;
use rand::RngCore;
use std::collections::HashMap;
use tokenwarden_core::classify::ResponseView;
use tokenwarden_core::connection::{Connection, ConnectionState, Environment};
use tokenwarden_core::id::{ConnectionId, ProviderId};
use tokenwarden_core::policy;
use tokenwarden_core::provider::Context;
use tokenwarden_core::secret::Secret;
use tokenwarden_oauth::AppCredentials;
use tokenwarden_oauth::pkce::Pkce;
use tokenwarden_store::{App, NewEvent, PendingAuthorization, Sha256Hex};

/// How long a started authorization may take.
const FLOW_LIFETIME: TimeDelta = TimeDelta::minutes(10);

/// The connect and callback routes.
pub fn routes() -> Router<ServerState> {
    Router::new()
        .route("/connect/{provider}", get(start))
        .route("/callback/{provider}", get(callback))
        .route("/done", get(done))
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// The flow cookie's name is derived from the state, so two flows in one browser do not clash.
fn cookie_name(state_hash: &Sha256Hex) -> String {
    format!("tw_flow_{}", &state_hash.as_str()[..12])
}

fn bad(title: &str, text: impl Into<String>) -> Response {
    page::render(StatusCode::BAD_REQUEST, title, &[text.into()], None)
}

async fn default_app(
    s: &ServerState,
    provider: &ProviderId,
    wanted: Option<&str>,
) -> Result<App, Response> {
    let apps = s
        .store
        .list_apps(Some(provider))
        .await
        .map_err(|_| unavailable())?;
    let app = match wanted {
        Some(w) => apps.into_iter().find(|a| a.id.as_str() == w),
        None => apps.into_iter().next(),
    };
    app.ok_or_else(|| {
        page::render(
            StatusCode::NOT_FOUND,
            "No app is configured for this platform",
            &[format!("tokenwarden has no OAuth app registered for {provider}. Register the app's client id, secret and redirect URI first.")],
            None,
        )
    })
}

fn unavailable() -> Response {
    page::render(
        StatusCode::SERVICE_UNAVAILABLE,
        "tokenwarden cannot reach its database",
        &["Try again in a moment.".to_string()],
        None,
    )
}

async fn start(
    State(s): State<ServerState>,
    Path(provider): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(p) = s.providers.get(&provider).cloned() else {
        return page::render(
            StatusCode::NOT_FOUND,
            "Unknown platform",
            &[format!(
                "There is no platform called {provider:?}. Known: {}.",
                s.providers.ids()
            )],
            None,
        );
    };
    let connection = match q.get("connection_id").filter(|c| !c.is_empty()) {
        Some(c) => match ConnectionId::parse(c.as_str()) {
            Ok(c) => c,
            Err(e) => return bad("That connection id cannot be used", e.to_string()),
        },
        None => match ConnectionId::parse(format!(
            "{provider}-{}",
            &random_token()[..10]
                .to_ascii_lowercase()
                .replace(['-', '_'], "x")
        )) {
            Ok(c) => c,
            Err(e) => return bad("Could not name the connection", e.to_string()),
        },
    };
    // Re-authorizing an existing connection keeps its app unless another is named: every
    // re-authorization link (dashboard, webhooks, alerts, API errors) names only the connection.
    let existing_app = match q.get("app") {
        Some(_) => None,
        None => match s.store.get_connection(&connection).await {
            Ok(c) => c
                .filter(|c| c.provider == p.spec.id)
                .map(|c| c.app.to_string()),
            Err(_) => return unavailable(),
        },
    };
    let wanted = q.get("app").cloned().or(existing_app);
    let app = match default_app(&s, &p.spec.id, wanted.as_deref()).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let scopes: Vec<String> = q
        .get("scopes")
        .map(|v| {
            v.split([',', ' '])
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let state = random_token();
    let browser = random_token();
    let state_hash = Sha256Hex::of(&state);
    let pkce = p.spec.authorize.pkce.then(Pkce::generate);
    let now = s.clock.now();
    let pending = PendingAuthorization {
        state_hash: state_hash.clone(),
        provider: p.spec.id.clone(),
        app: app.id.clone(),
        connection: connection.clone(),
        redirect_uri: app.redirect_uri.clone(),
        pkce_verifier: pkce.as_ref().map(|k| k.verifier.clone()),
        scopes: scopes.clone(),
        browser_hash: Sha256Hex::of(&browser),
        created_at: now,
        expires_at: now + FLOW_LIFETIME,
    };
    if s.store.put_pending(&pending).await.is_err() {
        return unavailable();
    }
    let creds = AppCredentials {
        client_id: app.client_id.clone(),
        client_secret: app.client_secret.clone(),
        redirect_uri: app.redirect_uri.clone(),
    };
    let url = s.oauth.authorize_url(
        &p,
        &creds,
        &state,
        &scopes,
        pkce.as_ref().map(|k| k.challenge.as_str()),
    );
    let secure = if s.public_url.scheme() == "https" {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{}={browser}; Path=/callback; HttpOnly; SameSite=Lax; Max-Age=600{secure}",
        cookie_name(&state_hash)
    );
    let mut resp = Redirect::to(url.as_str()).into_response();
    page::secure_headers(resp.headers_mut());
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// The public name of one flow: part of the hash of its (consumed) state. Events of the flow
/// carry it, and only a browser that was sent to `/done` with it sees the flow's outcome there.
fn flow_id(state_hash: &Sha256Hex) -> &str {
    &state_hash.as_str()[..24]
}

async fn record(
    s: &ServerState,
    connection: &ConnectionId,
    flow: &str,
    kind: &'static str,
    message: String,
) {
    let event =
        NewEvent::new(Some(connection.clone()), s.clock.now(), kind, message).with("flow", flow);
    if let Err(e) = s.store.append_event(&event).await {
        tracing::warn!(error = %e, "could not record event {kind}");
    }
}

async fn callback(
    State(s): State<ServerState>,
    Path(provider): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    // Rule 1: state before anything else, consumed once.
    let Some(state) = q.get("state").filter(|v| !v.is_empty()) else {
        return bad(
            "This link is not a valid authorization callback",
            "It carries no state. Start again from the connect link.",
        );
    };
    let state_hash = Sha256Hex::of(state);
    let now = s.clock.now();
    let pending = match s.store.consume_pending(&state_hash, now).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return bad(
                "This authorization link was already used or has expired",
                "Each authorization can complete once, within ten minutes. Start again from the connect link.",
            );
        }
        Err(_) => return unavailable(),
    };
    // Rule 2: the provider in the path must be the one the flow was started for.
    if pending.provider.as_str() != provider {
        record(
            &s,
            &pending.connection,
            flow_id(&state_hash),
            "authorization_refused",
            format!(
                "A callback for {provider} arrived for a flow started with {}",
                pending.provider
            ),
        )
        .await;
        return bad(
            "This callback does not belong to this platform",
            "The authorization was started for another platform. Start again from the connect link.",
        );
    }
    let Some(p) = s.providers.get(&provider).cloned() else {
        return bad("Unknown platform", "This platform is no longer configured.");
    };
    if let (Some(iss), Some(expected)) = (q.get("iss"), p.spec.authorize.issuer.as_ref())
        && iss != expected
    {
        record(
            &s,
            &pending.connection,
            flow_id(&state_hash),
            "authorization_refused",
            "The callback's issuer did not match the platform's".into(),
        )
        .await;
        return bad(
            "This callback came from an unexpected issuer",
            "Start again from the connect link.",
        );
    }
    // The flow is bound to the browser that started it.
    let bound = page::cookie(&headers, &cookie_name(&state_hash))
        .is_some_and(|c| Sha256Hex::of(c) == pending.browser_hash);
    if !bound {
        record(
            &s,
            &pending.connection,
            flow_id(&state_hash),
            "authorization_refused",
            "The callback arrived in a browser that did not start the flow".into(),
        )
        .await;
        return bad(
            "This authorization was started in another browser",
            "For your safety it can only be completed where it was started. Start again from the connect link.",
        );
    }
    if let Some(error) = q.get("error") {
        let body = serde_json::json!({"error": error, "error_description": q.get("error_description").or(q.get("error_reason")).cloned().unwrap_or_default()}).to_string();
        let c = p.classifier().classify(
            &ResponseView {
                status: 400,
                headers: &[],
                body: body.as_bytes(),
            },
            Context::Api,
            now,
        );
        record(
            &s,
            &pending.connection,
            flow_id(&state_hash),
            "authorization_declined",
            format!("{}: {}", c.title, c.explanation),
        )
        .await;
        return done_redirect(&pending.connection, flow_id(&state_hash));
    }
    let Some(code) = p
        .spec
        .authorize
        .callback_code_params
        .iter()
        .find_map(|k| q.get(k))
        .filter(|c| !c.is_empty())
    else {
        record(
            &s,
            &pending.connection,
            flow_id(&state_hash),
            "authorization_failed",
            "The callback carried no authorization code".into(),
        )
        .await;
        return done_redirect(&pending.connection, flow_id(&state_hash));
    };
    let app = match s.store.get_app(&pending.provider, &pending.app).await {
        Ok(Some(a)) => a,
        Ok(None) => {
            return bad(
                "The app is gone",
                "The app this authorization was started for is no longer configured.",
            );
        }
        Err(_) => return unavailable(),
    };
    let creds = AppCredentials {
        client_id: app.client_id,
        client_secret: app.client_secret,
        redirect_uri: pending.redirect_uri.clone(),
    };
    let grant = match s
        .oauth
        .exchange_code(
            &p,
            &creds,
            &Secret::new(code.clone()),
            pending.pkce_verifier.as_ref(),
        )
        .await
    {
        Ok(g) => g,
        Err(e) => {
            let (title, fix) = e.classification().map_or_else(
                || (e.to_string(), String::new()),
                |c| (c.title.clone(), c.fix.clone()),
            );
            record(
                &s,
                &pending.connection,
                flow_id(&state_hash),
                "authorization_failed",
                format!("{title}. {fix}"),
            )
            .await;
            return done_redirect(&pending.connection, flow_id(&state_hash));
        }
    };
    match save(
        &s,
        &pending,
        &p,
        app.environment,
        grant,
        flow_id(&state_hash),
    )
    .await
    {
        Ok(()) => {
            s.wake.notify_one();
            done_redirect(&pending.connection, flow_id(&state_hash))
        }
        Err(_) => unavailable(),
    }
}

async fn save(
    s: &ServerState,
    pending: &PendingAuthorization,
    p: &tokenwarden_core::provider::Provider,
    environment: Environment,
    grant: tokenwarden_oauth::TokenGrant,
    flow: &str,
) -> Result<(), tokenwarden_store::StoreError> {
    let now = s.clock.now();
    let existing = s.store.get_connection(&pending.connection).await?;
    let conn = Connection {
        id: pending.connection.clone(),
        provider: pending.provider.clone(),
        app: pending.app.clone(),
        // The state moves to active last, once the tokens are stored, so the change is
        // announced (event, webhook) only for a connection that works.
        state: existing
            .as_ref()
            .map_or(ConnectionState::Pending, |c| c.state),
        // The app says which environment its tokens belong to; the host follows (TikTok sandbox
        // tokens look like production ones and work only on the sandbox host).
        environment,
        api_base: p.spec.api_base(environment).to_string(),
        account_ids: grant.account_ids.clone(),
        scopes: grant.tokens.scopes.clone(),
        problems: Vec::new(),
        created_at: existing.as_ref().map_or(now, |c| c.created_at),
        updated_at: now,
    };
    s.store.put_connection(&conn).await?;
    let stored = s.store.put_initial_tokens(&conn.id, &grant.tokens).await?;
    s.store
        .set_state(&conn.id, ConnectionState::Active, &[], now)
        .await?;
    let due = policy::refresh_due_at(&p.spec.refresh, &stored.set, rand::random::<f64>());
    s.store.set_next_refresh(&conn.id, due).await?;
    s.store
        .set_next_probe(
            &conn.id,
            Some(
                now + TimeDelta::from_std(p.spec.api.probe.every).unwrap_or(TimeDelta::minutes(15)),
            ),
        )
        .await?;
    let verb = if existing.is_some() {
        "Re-authorized"
    } else {
        "Connected"
    };
    let event = NewEvent::new(
        Some(conn.id.clone()),
        now,
        "connected",
        format!(
            "{verb} {} ({} account(s))",
            p.spec.name,
            conn.account_ids.len()
        ),
    )
    .with("provider", conn.provider.as_str())
    .with("flow", flow);
    s.store.append_event(&event).await?;
    Ok(())
}

/// After the callback, move the browser to a URL without `code` and `state` (rule 12).
fn done_redirect(connection: &ConnectionId, flow: &str) -> Response {
    let mut resp = Redirect::to(&format!(
        "/done?connection={}&flow={flow}",
        connection.as_str()
    ))
    .into_response();
    page::secure_headers(resp.headers_mut());
    resp
}

async fn done(State(s): State<ServerState>, Query(q): Query<HashMap<String, String>>) -> Response {
    let nothing = || {
        bad(
            "Nothing to show",
            "This page shows the outcome of an authorization, to the browser that made it.",
        )
    };
    let (Some(id), Some(flow)) = (
        q.get("connection")
            .and_then(|c| ConnectionId::parse(c.as_str()).ok()),
        q.get("flow").filter(|f| f.len() == 24),
    ) else {
        return nothing();
    };
    // Only the outcome of the flow named in the link: knowing a connection id is not enough to
    // read how its authorizations went.
    let last = s
        .store
        .latest_events(&id, 1000)
        .await
        .ok()
        .and_then(|e| {
            e.into_iter().rev().find(|e| {
                matches!(e.details.get("flow"), Some(tokenwarden_store::EventValue::Text(f)) if f == flow)
            })
        });
    if last.is_none() {
        return nothing();
    }
    let conn = s.store.get_connection(&id).await.ok().flatten();
    let message = last
        .as_ref()
        .map(|e| e.message.clone())
        .unwrap_or_else(|| "No authorization has completed for this connection.".into());
    match (conn, last.as_ref().map(|e| e.kind.as_str())) {
        (Some(c), Some("connected")) => page::render(
            StatusCode::OK,
            "Connected",
            &[
                message,
                format!(
                    "Connection {} is {}. tokenwarden keeps its token fresh from now on.",
                    c.id, c.state
                ),
            ],
            None,
        ),
        (conn, _) => {
            let provider = conn
                .as_ref()
                .map(|c| c.provider.to_string())
                .unwrap_or_default();
            let link = (!provider.is_empty()).then(|| s.connect_link(&provider, id.as_str()));
            page::render(
                StatusCode::OK,
                "The authorization did not complete",
                &[message],
                link.as_deref().map(|l| (l, "Try again")),
            )
        }
    }
}

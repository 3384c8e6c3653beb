//! The authorization-code flow. It starts only from a connect session's single-use link
//! (`GET /connect/s/{token}`, minted by [`crate::connect_session`]), bound to one provider and one
//! connection; the bare `/connect/{provider}` of old only explains where links come from. The
//! callback refuses repeated parameters, checks `state` before anything else (even an `error=`
//! parameter) and consumes it in one statement, so a replayed or raced callback causes no token
//! request; the flow is bound to the provider in the path and to the browser that started it (a
//! cookie set by `/connect/s/…`). Nothing half-made is kept: a connection is written only after
//! the exchange (and, for Threads and Meta, the long-lived upgrade) succeeded.
//!
//! Re-authorization keeps the connection's provider and its platform account: the account behind
//! the new grant is read with the definition's probe (`api.probe.account_id`) and compared with
//! the recorded one; another account is refused (the old tokens stay, the new grant is revoked)
//! unless the session said `allow_account_change`. When an allowed change replaces the tokens,
//! the old account's grant is revoked at the platform where the definition has an endpoint; with
//! the same account, the superseded tokens are revoked only where the definition's revocation
//! withdraws just the tokens sent (`revokes = "token"`).

use crate::ServerState;
use crate::page;
use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::TimeDelta;
use rand::RngCore;
use std::collections::HashMap;
use tokenwarden_core::callback;
use tokenwarden_core::classify::{Blame, ResponseView};
use tokenwarden_core::connection::{
    Account, AccountCheck, Connection, ConnectionState, Environment, Problem, check_account,
};
use tokenwarden_core::id::{ConnectionId, ProviderId};
use tokenwarden_core::policy;
use tokenwarden_core::provider::Context;
use tokenwarden_core::secret::Secret;
use tokenwarden_core::state::ProblemCode;
use tokenwarden_oauth::AppCredentials;
use tokenwarden_oauth::pkce::Pkce;
use tokenwarden_store::{
    App, ConnectSession, NewEvent, PendingAuthorization, SessionUse, Sha256Hex,
};

/// How long a started authorization may take.
const FLOW_LIFETIME: TimeDelta = TimeDelta::minutes(10);

/// The connect and callback routes.
pub fn routes() -> Router<ServerState> {
    Router::new()
        .route("/connect/s/{token}", get(show).post(start))
        .route("/connect/{provider}", get(closed))
        .route("/callback/{provider}", get(callback))
        .route("/done", get(done))
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// The open app problem a failed consent step raises (issue 18 item 5); a later successful
/// authorization for the same app clears it.
const CONSENT_REFUSED: ProblemCode = ProblemCode::ConsentRefused;

/// `GET /connect/{provider}`: no longer a way in. A flow starts only from a connect session's
/// link, so say where those come from.
async fn closed(provider: Result<Path<String>, PathRejection>) -> Response {
    let provider = provider.map_or_else(|_| "this platform".to_string(), |Path(p)| p);
    page::render(
        StatusCode::FORBIDDEN,
        "Connect links are issued per person",
        &[
            format!("A connection to {provider} can only be started from a connect link that an administrator created for you."),
            "Administrators: use Connect or Re-authorize on the dashboard, `tokenwarden connect PROVIDER`, or POST /v1/connect-sessions with an admin API key, and send the link it gives.".to_string(),
        ],
        None,
    )
}

fn gone(title: &str, text: &str) -> Response {
    page::render(StatusCode::GONE, title, &[text.to_string()], None)
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
    if let Some(w) = wanted
        && !apps.is_empty()
        && !apps.iter().any(|a| a.id.as_str() == w)
    {
        return Err(page::render(
            StatusCode::NOT_FOUND,
            "No such app for this platform",
            &[crate::connect_session::no_such_app(provider, w, &apps)],
            None,
        ));
    }
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

fn not_valid() -> Response {
    page::render(
        StatusCode::NOT_FOUND,
        "This connect link is not valid",
        &[
            "Check that the whole link was copied, or ask whoever sent it for a new one."
                .to_string(),
        ],
        None,
    )
}

fn token_shape_ok(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 128
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Why a session cannot start a flow, as a page; `None` when it can.
fn refused(use_: &SessionUse) -> Option<Response> {
    match use_ {
        SessionUse::Fresh(_) => None,
        SessionUse::Used(used) => {
            tracing::info!(session = %used.id, connection = %used.connection, "a used connect link was opened again");
            Some(gone(
                "This connect link was already used",
                "Each connect link works once. If the connection did not complete, ask whoever sent the link for a new one.",
            ))
        }
        SessionUse::Expired(_) => Some(gone(
            "This connect link has expired",
            "Ask whoever sent it for a new one.",
        )),
        SessionUse::Unknown => Some(not_valid()),
    }
}

/// `GET /connect/s/{token}`: what the link will do, and a button that does it. Opening the link
/// spends nothing, so a chat or mail client that fetches links to preview them (Slack, Teams,
/// Outlook's safe links) cannot use it up before the person does.
async fn show(
    State(s): State<ServerState>,
    token: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(token)) = token else {
        return not_valid();
    };
    if !token_shape_ok(&token) {
        return not_valid();
    }
    let session = match s
        .store
        .find_connect_session(&Sha256Hex::of(&token), s.clock.now())
        .await
    {
        Ok(SessionUse::Fresh(session)) => session,
        Ok(other) => return refused(&other).unwrap_or_else(not_valid),
        Err(_) => return unavailable(),
    };
    let Some(p) = s.providers.get(session.provider.as_str()) else {
        return bad(
            "This platform is no longer configured",
            "Ask whoever sent the link for a new one.",
        );
    };
    let mut text = vec![format!(
        "You will be sent to {} to sign in and approve access for the connection {}.",
        p.spec.name, session.connection
    )];
    if let Some(who) = &session.end_user {
        text.push(format!("It is for {who}."));
    }
    text.push("This link works once.".to_string());
    // The consent page is on the host of the app's region (Amazon EU: eu.account.amazon.com),
    // which the page's form-action must allow: the app `begin` will pick (the session's, else the
    // connection's, else the first).
    let existing = s
        .store
        .get_connection(&session.connection)
        .await
        .ok()
        .flatten();
    let wanted = match &session.app {
        Some(a) => Some(a.to_string()),
        None => existing.as_ref().map(|c| c.app.to_string()),
    };
    // The same order `begin` uses: the link's region, the connection's own, the app's. An app
    // of another identity (Google sign-in) sends the browser to that issuer's consent page.
    let (app_region, app_identity) = match default_app(&s, &p.spec.id, wanted.as_deref()).await {
        Ok(app) => (app.region, app.identity),
        Err(_) => (None, None),
    };
    let region = session
        .region
        .clone()
        .or_else(|| existing.and_then(|c| c.region))
        .or(app_region);
    let p = p.in_region(region.as_deref());
    page::render_form(
        StatusCode::OK,
        &format!("Connect {}", p.spec.name),
        &text,
        &format!("/connect/s/{token}"),
        &format!("Continue to {}", p.spec.name),
        p.spec
            .identities
            .get(app_identity.as_deref().unwrap_or_default())
            .map_or(&p.spec.authorize.url, |i| &i.authorize.url),
    )
}

/// `POST /connect/s/{token}`: spends the link and sends the browser to the platform.
async fn start(
    State(s): State<ServerState>,
    token: Result<Path<String>, PathRejection>,
) -> Response {
    match token {
        Ok(Path(token)) => begin(&s, &token).await,
        // Not UTF-8 text once decoded: no link looks like that.
        Err(_) => not_valid(),
    }
}

/// Spends a connect session's token and starts its flow: the redirect to the platform's consent
/// page, with the cookie that binds the flow to this browser. The dashboard calls it directly
/// for the sessions it mints, so a signed-in person clicks once.
pub(crate) async fn begin(s: &ServerState, token: &str) -> Response {
    if !token_shape_ok(token) {
        return not_valid();
    }
    let session = match s
        .store
        .use_connect_session(&Sha256Hex::of(token), s.clock.now())
        .await
    {
        Ok(SessionUse::Fresh(session)) => session,
        Ok(other) => return refused(&other).unwrap_or_else(not_valid),
        Err(_) => return unavailable(),
    };
    let Some(p) = s.providers.get(session.provider.as_str()).cloned() else {
        return bad(
            "This platform is no longer configured",
            "Ask whoever sent the link for a new one.",
        );
    };
    let connection = session.connection.clone();
    let existing = match s.store.get_connection(&connection).await {
        Ok(c) => c,
        Err(_) => return unavailable(),
    };
    // Re-authorization never changes a connection's provider (checked when the session was
    // made, and again here: the connection may have been made since).
    if let Some(c) = &existing
        && c.provider != p.spec.id
    {
        return bad(
            "This link cannot be used for that connection",
            format!(
                "The connection belongs to another platform than {}. Ask for a new link.",
                p.spec.name
            ),
        );
    }
    // Re-authorizing an existing connection keeps its app unless the session named another.
    let wanted = session
        .app
        .as_ref()
        .map(|a| a.to_string())
        .or_else(|| existing.as_ref().map(|c| c.app.to_string()));
    let app = match default_app(s, &p.spec.id, wanted.as_deref()).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    // The region decides the consent page's host (and, at the callback, the token host): the
    // link's, else the connection's own on a re-authorization, else the app's. The app's
    // environment decides the names of the scopes asked for.
    let region = session
        .region
        .clone()
        .or_else(|| existing.as_ref().and_then(|c| c.region.clone()))
        .or_else(|| app.region.clone());
    let p = p
        .for_app(
            region.as_deref(),
            app.identity.as_deref(),
            app.environment,
            app.refresh_token_ends_after,
        )
        .into_owned();
    let scopes = p.spec.scopes_in(app.environment, &session.scopes);
    let creds = AppCredentials {
        client_id: app.client_id.clone(),
        client_secret: app.client_secret.clone(),
        redirect_uri: app.redirect_uri.clone(),
        user_agent: app.user_agent.clone(),
    };
    // OAuth 1.0a: the flow starts with a signed call for a request token, which then plays the
    // part of `state` (it comes back on the callback as `oauth_token`, is unguessable and is
    // consumed once); its secret is sealed with the pending flow, in the PKCE verifier's place.
    let (state, flow_secret) = if p.spec.oauth1.is_some() {
        match s.oauth.request_token(&p, &creds).await {
            Ok(rt) => (rt.token, Some(rt.secret)),
            Err(e) => {
                let (title, fix) = e.classification().map_or_else(
                    || (e.to_string(), String::new()),
                    |c| (c.title.clone(), c.fix.clone()),
                );
                tracing::warn!(provider = %p.spec.id, connection = %connection, error = %e, "the request-token call failed");
                return bad(
                    "The platform did not let the authorization start",
                    format!("{title}. {fix} Try the link again later, or ask whoever sent it."),
                );
            }
        }
    } else {
        (random_token(), None)
    };
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
        pkce_verifier: pkce.as_ref().map(|k| k.verifier.clone()).or(flow_secret),
        scopes: scopes.clone(),
        browser_hash: Sha256Hex::of(&browser),
        created_at: now,
        expires_at: now + FLOW_LIFETIME,
        session: Some(session.id.clone()),
        region,
    };
    if s.store.put_pending(&pending).await.is_err() {
        return unavailable();
    }
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
    provider: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Ok(Path(provider)) = provider else {
        return bad(
            "This link is not a valid authorization callback",
            "Its address is not valid. Start again from a new connect link.",
        );
    };
    let code_params = s
        .providers
        .get(&provider)
        .map(|p| p.spec.authorize.callback_code_params.clone())
        .unwrap_or_default();
    let q = match callback::parse(raw.as_deref(), &code_params) {
        Ok(q) => q,
        Err(callback::Repeated(name)) => {
            tracing::warn!(provider = %provider, parameter = %name, "refused a callback with a repeated parameter");
            return bad(
                "This link is not a valid authorization callback",
                format!(
                    "It carries the parameter {name:?} more than once. Start again from a new connect link."
                ),
            );
        }
    };
    // OAuth 1.0a has no `state`: the request token is the flow's key. It comes back as
    // `oauth_token` after an approval and as `denied` after a cancel; both at once must agree.
    let oauth1 = s
        .providers
        .get(&provider)
        .is_some_and(|p| p.spec.oauth1.is_some());
    let flow_key = if oauth1 {
        match (q.get("oauth_token"), q.get("denied")) {
            (Some(t), Some(d)) if t != d => None,
            (Some(t), _) | (None, Some(t)) => Some(t),
            (None, None) => None,
        }
    } else {
        q.state()
    };
    // Rule 1: state before anything else, consumed once.
    let Some(state) = flow_key.filter(|s| !s.is_empty()) else {
        return bad(
            "This link is not a valid authorization callback",
            "It carries no state. Ask for a new connect link and start again.",
        );
    };
    let state_hash = Sha256Hex::of(state);
    let now = s.clock.now();
    let pending = match s.store.consume_pending(&state_hash, now).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return bad(
                "This authorization link was already used or has expired",
                "Each authorization can complete once, within ten minutes. Ask for a new connect link and start again.",
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
            "The authorization was started for another platform. Ask for a new connect link and start again.",
        );
    }
    let Some(p) = s.providers.get(&provider).cloned() else {
        return bad("Unknown platform", "This platform is no longer configured.");
    };
    if let (Some(iss), Some(expected)) = (q.issuer(), p.spec.authorize.issuer.as_ref())
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
            "Ask for a new connect link and start again.",
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
            "For your safety it can only be completed where it was started. Ask for a new connect link and start again.",
        );
    }
    let session = match &pending.session {
        Some(id) => match s.store.get_connect_session(id).await {
            Ok(found) => found,
            Err(_) => return unavailable(),
        },
        None => None,
    };
    let session = session.as_ref();
    if let Some(body) = q.consent_error() {
        // The consent step failed (issue 18 item 5): the app's problem (not set up for the
        // product, redirect URI not registered, development mode), fixed in its dashboard. It is
        // shown on the done page and recorded against the app, never against a connection.
        let c = p.classifier().classify(
            &ResponseView {
                status: 400,
                headers: &[],
                body: body.as_bytes(),
            },
            Context::Authorize,
            now,
        );
        if c.blame == Blame::App {
            let problem = Problem {
                code: CONSENT_REFUSED,
                title: c.title.clone(),
                fix: c.fix.clone(),
                since: now,
            };
            if let Err(e) = s
                .store
                .raise_app_problem(&pending.provider, &pending.app, &problem)
                .await
            {
                tracing::warn!(error = %e, "could not record the app problem {CONSENT_REFUSED}");
            }
        }
        record(
            &s,
            &pending.connection,
            flow_id(&state_hash),
            "authorization_declined",
            format!("{}: {} {}", c.title, c.explanation, c.fix),
        )
        .await;
        return done_redirect(&pending.connection, flow_id(&state_hash), session, false);
    }
    if oauth1 && q.get("denied").is_some() {
        // X sends the person back with `denied=<request token>` when they cancel.
        record(
            &s,
            &pending.connection,
            flow_id(&state_hash),
            "authorization_declined",
            format!(
                "The person cancelled the authorization at {}. Nothing changed; send a new connect link to try again.",
                p.spec.name
            ),
        )
        .await;
        return done_redirect(&pending.connection, flow_id(&state_hash), session, false);
    }
    let Some(code) = q.code(&p.spec.authorize.callback_code_params) else {
        record(
            &s,
            &pending.connection,
            flow_id(&state_hash),
            "authorization_failed",
            "The callback carried no authorization code".into(),
        )
        .await;
        return done_redirect(&pending.connection, flow_id(&state_hash), session, false);
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
    // The code is redeemed at the token host of the flow's region (the link's, else the app's),
    // and the connection records that region's API host.
    let flow_region = pending.region.clone().or_else(|| app.region.clone());
    let p = p
        .for_app(
            flow_region.as_deref(),
            app.identity.as_deref(),
            app.environment,
            app.refresh_token_ends_after,
        )
        .into_owned();
    // Recorded by name (the default region's too), so a connection says where its account is.
    let region = p
        .spec
        .region(flow_region.as_deref())
        .map(|r| r.name.clone());
    let creds = AppCredentials {
        client_id: app.client_id,
        client_secret: app.client_secret,
        redirect_uri: pending.redirect_uri.clone(),
        user_agent: app.user_agent.clone(),
    };
    let exchanged = if oauth1 {
        // The request token's secret was sealed with the flow; without it nothing can be signed.
        let Some(secret) = pending.pkce_verifier.clone() else {
            return bad(
                "This authorization cannot be completed",
                "Its flow lost the request token's secret. Ask for a new connect link and start again.",
            );
        };
        let request = tokenwarden_oauth::client::RequestToken {
            token: state.to_string(),
            secret,
        };
        s.oauth
            .access_token(&p, &creds, &request, &Secret::new(code))
            .await
    } else {
        s.oauth
            .exchange_code(
                &p,
                &creds,
                &Secret::new(code),
                pending.pkce_verifier.as_ref(),
            )
            .await
    };
    let grant = match exchanged {
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
            return done_redirect(&pending.connection, flow_id(&state_hash), session, false);
        }
    };
    let flow = flow_id(&state_hash);
    let existing = match s.store.get_connection(&pending.connection).await {
        Ok(c) => c,
        Err(_) => {
            revoke_quietly(&s, &p, &creds, &grant.tokens, "the store did not answer").await;
            return unavailable();
        }
    };
    let base = p.spec.api_base(app.environment).to_string();
    let values = tokenwarden_core::provider::HeaderValues {
        client_id: creds.client_id.clone(),
        account_id: None,
        developer_token: app.developer_token.clone(),
        user_agent: app.user_agent.clone(),
        identity: app.identity.clone(),
    };
    let identity = crate::probe::identify(&p, &base, &grant.tokens, &values, now).await;
    let new_account = match &identity {
        crate::probe::Identity::Known(a) => Some(a.clone()),
        _ => None,
    };
    let check = match &existing {
        // Re-authorization never changes a connection's provider.
        Some(c) if c.provider != pending.provider => {
            revoke_quietly(
                &s,
                &p,
                &creds,
                &grant.tokens,
                "the connection belongs to another platform",
            )
            .await;
            record(
                &s,
                &pending.connection,
                flow,
                "authorization_refused",
                format!(
                    "A {} grant was refused for a {} connection",
                    pending.provider, c.provider
                ),
            )
            .await;
            return bad(
                "This authorization cannot be used for that connection",
                "The connection belongs to another platform. Nothing was changed.",
            );
        }
        Some(c) => check_account(
            c.account.as_ref(),
            &c.account_ids,
            new_account.as_ref(),
            &grant.account_ids,
        ),
        None => AccountCheck::First,
    };
    let allow_change = session.is_some_and(|x| x.allow_account_change);
    match (&check, existing.as_ref()) {
        (AccountCheck::Changed, Some(c)) if !allow_change => {
            revoke_quietly(
                &s,
                &p,
                &creds,
                &grant.tokens,
                "another account than the connection's",
            )
            .await;
            let was = c.account.as_ref().map_or_else(
                || format!("account ids {}", c.account_ids.join(", ")),
                Account::label,
            );
            let now_is = new_account.as_ref().map_or_else(
                || format!("account ids {}", grant.account_ids.join(", ")),
                Account::label,
            );
            let event = NewEvent::new(
                Some(c.id.clone()),
                s.clock.now(),
                "account_change_refused",
                format!("A re-authorization came back with {now_is}, not the connection's {was}; the connection keeps its tokens"),
            )
            .with("flow", flow);
            if let Err(e) = s.store.append_event(&event).await {
                tracing::warn!(error = %e, "could not record event account_change_refused");
            }
            tracing::warn!(connection = %c.id, provider = %c.provider, "refused a re-authorization with another platform account");
            return page::render(
                StatusCode::CONFLICT,
                "This is not the account this connection belongs to",
                &[
                    format!("You approved access as {now_is}, but connection {} belongs to another {} account. Nothing was changed: the connection keeps its tokens, and the access you just gave was withdrawn.", c.id, p.spec.name),
                    "Sign in to the platform with the connection's own account and use a new connect link. To move the connection to another account on purpose, an administrator creates a link that allows it (allow_account_change).".to_string(),
                ],
                None,
            );
        }
        (AccountCheck::Unconfirmed, Some(c)) if !allow_change => {
            revoke_quietly(
                &s,
                &p,
                &creds,
                &grant.tokens,
                "the account could not be confirmed",
            )
            .await;
            record(&s, &c.id, flow, "authorization_failed", format!("{} did not say which account approved, so the re-authorization could not be checked against the connection's account; the connection keeps its tokens", p.spec.name)).await;
            return page::render(
                StatusCode::SERVICE_UNAVAILABLE,
                "The account could not be confirmed",
                &[format!(
                    "{} did not say which account approved access, so tokenwarden cannot tell whether it is the connection's own. Nothing was changed. Ask for a new connect link and try again in a moment.",
                    p.spec.name
                )],
                None,
            );
        }
        _ => {}
    }
    // The old grant is no longer ours to keep when the account changed. With the same account,
    // only where the platform revokes per token: where it revokes the person's whole grant to
    // the app, that would withdraw the new tokens too.
    let revokes_per_token = p
        .spec
        .token
        .revoke
        .as_ref()
        .is_some_and(|r| r.revokes == tokenwarden_core::provider::Revokes::Token);
    let old_tokens = if existing.is_some() && (check == AccountCheck::Changed || revokes_per_token)
    {
        s.store.get_tokens(&pending.connection).await.ok().flatten()
    } else {
        None
    };
    match save(
        &s,
        &pending,
        &p,
        app.environment,
        grant,
        Saved {
            // The new grant's account, or none: never the old one for a grant that could not be
            // read (an allowed change that the platform did not confirm); the monitor reads it
            // at the next good probe.
            account: new_account,
            end_user: session
                .and_then(|x| x.end_user.clone())
                .or_else(|| existing.as_ref().and_then(|c| c.end_user.clone())),
            account_changed: check == AccountCheck::Changed,
            region,
        },
        flow,
    )
    .await
    {
        Ok(()) => {
            s.wake.notify_one();
            // The consent step works again for this app: its earlier refusal is over.
            if let Err(e) = s
                .store
                .clear_app_problem(&pending.provider, &pending.app, CONSENT_REFUSED.as_str())
                .await
            {
                tracing::warn!(error = %e, "could not clear the app problem {CONSENT_REFUSED}");
            }
            if let Some(old) = old_tokens {
                revoke_quietly(
                    &s,
                    &p,
                    &creds,
                    &old.set,
                    "replaced by another account's grant",
                )
                .await;
            }
            done_redirect(&pending.connection, flow, session, true)
        }
        Err(_) => unavailable(),
    }
}

/// Revokes a grant tokenwarden will not keep, where the definition has a revocation endpoint;
/// a failure is logged (never the token) and otherwise ignored.
async fn revoke_quietly(
    s: &ServerState,
    p: &tokenwarden_core::provider::Provider,
    creds: &AppCredentials,
    tokens: &tokenwarden_core::token::TokenSet,
    why: &str,
) {
    match s.oauth.revoke(p, creds, tokens).await {
        Ok(true) => tracing::info!(provider = %p.spec.id, why, "revoked a grant at the platform"),
        Ok(false) => {
            tracing::info!(provider = %p.spec.id, why, "the platform has no revocation endpoint; the unused grant is left to expire")
        }
        Err(e) => {
            tracing::warn!(provider = %p.spec.id, why, error = %e, "could not revoke a grant at the platform")
        }
    }
}

/// What the callback decided about the connection beside its tokens.
#[derive(Debug)]
struct Saved {
    account: Option<Account>,
    end_user: Option<String>,
    account_changed: bool,
    /// The region of the app the grant was made through (by name; `None` without regions).
    region: Option<String>,
}

async fn save(
    s: &ServerState,
    pending: &PendingAuthorization,
    p: &tokenwarden_core::provider::Provider,
    environment: Environment,
    grant: tokenwarden_oauth::TokenGrant,
    saved: Saved,
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
        account: saved.account,
        end_user: saved.end_user,
        region: saved.region,
        scopes: grant.tokens.scopes.clone(),
        problems: Vec::new(),
        created_at: existing.as_ref().map_or(now, |c| c.created_at),
        updated_at: now,
    };
    s.store.put_connection(&conn).await?;
    let stored = s.store.put_initial_tokens(&conn.id, &grant.tokens).await?;
    s.tokens.states().connected(&conn, now).await?;
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
    let verb = match (existing.is_some(), saved.account_changed) {
        (true, true) => "Re-authorized with another account:",
        (true, false) => "Re-authorized",
        (false, _) => "Connected",
    };
    let mut event = NewEvent::new(
        Some(conn.id.clone()),
        now,
        "connected",
        format!(
            "{verb} {}{}{}",
            p.spec.name,
            who(conn.account.as_ref(), &conn.account_ids),
            conn.region
                .as_deref()
                .map(|r| format!(" in region {r}"))
                .unwrap_or_default()
        ),
    )
    .with("provider", conn.provider.as_str())
    .with("flow", flow);
    if let Some(r) = &conn.region {
        event = event.with("region", r.as_str());
    }
    tracing::info!(connection = %conn.id, provider = %conn.provider, kind = "connected", reauthorized = existing.is_some(), account_changed = saved.account_changed, "connection authorized");
    s.store.append_event(&event).await?;
    Ok(())
}

/// Whom a grant is for, as the end of "Connected Snapchat…": the platform's account when it named
/// one; else the account ids of the token response (advertiser ids: not secret), never
/// "0 account(s)".
fn who(account: Option<&Account>, ids: &[String]) -> String {
    if let Some(a) = account {
        return format!(" as {}", a.label());
    }
    match ids {
        [] => " (the platform did not say which account)".to_string(),
        [one] => format!(" for account {one}"),
        [first, rest @ ..] => format!(
            " for {} accounts ({first} and {} more)",
            rest.len() + 1,
            rest.len()
        ),
    }
}

/// After the callback, move the browser to a URL without `code` and `state` (rule 12): the
/// session's `return_to` (with the connection id and the outcome), or the done page.
fn done_redirect(
    connection: &ConnectionId,
    flow: &str,
    session: Option<&ConnectSession>,
    connected: bool,
) -> Response {
    let target = session
        .and_then(|x| x.return_to.as_deref())
        .and_then(|r| url::Url::parse(r).ok())
        .map(|mut u| {
            u.query_pairs_mut()
                .append_pair("connection_id", connection.as_str())
                .append_pair("status", if connected { "connected" } else { "failed" });
            u.to_string()
        })
        .unwrap_or_else(|| format!("/done?connection={}&flow={flow}", connection.as_str()));
    let mut resp = Redirect::to(&target).into_response();
    page::secure_headers(resp.headers_mut());
    resp
}

/// The done page, in the dashboard's style, with a way back to the dashboard. (A session with a
/// `return_to` never comes here: its browser is sent back there, with the outcome.)
fn done_page(
    s: &ServerState,
    status: StatusCode,
    title: &str,
    lead: Option<&str>,
    text: &[String],
) -> Response {
    use crate::dashboard::view::{Nav, Page};
    let mut body = String::from("<section class=\"card narrow\">");
    if let Some(lead) = lead {
        body.push_str(&format!(
            "<p class=\"notice ok\">{}</p>",
            page::escape(lead)
        ));
    }
    for t in text {
        body.push_str(&format!("<p>{}</p>", page::escape(t)));
    }
    body.push_str(
        "<p><a class=\"button primary\" href=\"/\" id=\"to-dashboard\">Go to the dashboard</a></p>\
<p class=\"muted\">You may close this tab: nothing else happens here.</p></section>",
    );
    Page {
        title,
        nav: Nav::None,
        csrf: None,
        who: None,
        body,
        refresh_secs: None,
    }
    .send(status, &s.providers)
}

async fn done(State(s): State<ServerState>, Query(q): Query<HashMap<String, String>>) -> Response {
    // 400 when the link is malformed, 404 when it names no flow of this connection: the same page.
    let nothing = |status| {
        done_page(
            &s,
            status,
            "Nothing to show",
            None,
            &[
                "This page shows the outcome of an authorization, to the browser that made it."
                    .to_string(),
            ],
        )
    };
    let (Some(id), Some(flow)) = (
        q.get("connection")
            .and_then(|c| ConnectionId::parse(c.as_str()).ok()),
        q.get("flow")
            .filter(|f| f.len() == 24 && f.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))),
    ) else {
        return nothing(StatusCode::BAD_REQUEST);
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
        return nothing(StatusCode::NOT_FOUND);
    }
    let conn = s.store.get_connection(&id).await.ok().flatten();
    let message = last
        .as_ref()
        .map(|e| e.message.clone())
        .unwrap_or_else(|| "No authorization has completed for this connection.".into());
    match (conn, last.as_ref().map(|e| e.kind.as_str())) {
        (Some(c), Some("connected")) => done_page(
            &s,
            StatusCode::OK,
            "Connected",
            Some(&message),
            &[format!(
                "Connection {} is {}. tokenwarden keeps its token fresh from now on.",
                c.id, c.state
            )],
        ),
        (_, _) => done_page(
            &s,
            StatusCode::OK,
            "The authorization did not complete",
            None,
            &[
                message,
                "Connect links work once: to try again, ask whoever sent this one for a new link."
                    .to_string(),
            ],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::who;

    #[test]
    fn whom_a_grant_is_for_is_said_in_words() {
        assert_eq!(who(None, &[]), " (the platform did not say which account)");
        assert_eq!(who(None, &["7".into()]), " for account 7");
        assert_eq!(
            who(None, &["7".into(), "8".into(), "9".into()]),
            " for 3 accounts (7 and 2 more)"
        );
        for n in 0..4 {
            let ids: Vec<String> = (0..n).map(|i| i.to_string()).collect();
            assert!(!who(None, &ids).contains("(s)"), "{n}");
        }
    }
}

//! The REST API under `/v1`, authenticated by API key (`Authorization: Bearer tw_…`, checked by
//! [`Caller`]). Failures are answered as [`ApiError`]s.

use crate::ServerState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{Body, PathParam, Query, fitted, limit};
use crate::page;
use crate::refreshed::NotRefreshed;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tokenwarden_core::classify::ResponseView;
use tokenwarden_core::connection::{Connection, ConnectionState};
use tokenwarden_core::id::ConnectionId;
use tokenwarden_core::provider::Context;
use tokenwarden_engine::TokenFailure;
use tokenwarden_proxy::answer::ErrorAnswer;
use tokenwarden_store::{ApiKeyInfo, ApiKeyRole, StoreError};

/// The `/v1` routes.
pub fn routes() -> Router<ServerState> {
    Router::new()
        .route("/v1/apps", get(apps))
        .route("/v1/connections", get(list))
        .route("/v1/connections/{id}", get(one).delete(delete))
        .route("/v1/connections/{id}/token", get(token))
        .route("/v1/connections/{id}/refresh", post(refresh))
        .route("/v1/connections/{id}/probe", post(probe))
        .route("/v1/connections/{id}/events", get(events))
        .route("/v1/events", get(all_events))
        .route("/v1/diagnose", post(diagnose))
        .route("/v1/api-keys", get(list_api_keys).post(create_api_key))
        .route("/v1/api-keys/{id}", axum::routing::delete(revoke_api_key))
        // The methods a platform API takes (HEAD comes with GET); TRACE, CONNECT and OPTIONS are
        // answered 405 here rather than forwarded.
        .route(
            tokenwarden_proxy::handler::ROUTE,
            get(proxy).post(proxy).put(proxy).patch(proxy).delete(proxy),
        )
        .fallback(unknown_route)
        .method_not_allowed_fallback(crate::error::method_not_allowed)
}

/// Any path no route serves. Under `/v1/` and `/proxy/` (programs) the answer is always the JSON
/// error every API failure has; elsewhere too, unless the client asks for HTML (a browser that
/// mistyped a dashboard address), which gets a page with a way back to the dashboard.
async fn unknown_route(headers: axum::http::HeaderMap, uri: axum::http::Uri) -> Response {
    let path = uri.path();
    let api = path.starts_with("/v1/") || path == "/v1" || path.starts_with("/proxy/");
    let browser = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if browser && !api {
        return page::render(
            StatusCode::NOT_FOUND,
            "No such page",
            &["There is nothing at this address.".to_string()],
            Some(("/", "Go to the dashboard")),
        );
    }
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_such_route",
        format!("there is no route {path}; the API's routes are listed at /openapi.json"),
    )
    .into_response()
}

/// `/proxy/{connection_id}/{*path}` (GET, HEAD, POST, PUT, PATCH, DELETE): any API key may call through the proxy (it hands out no
/// token); the proxy crate does the rest.
async fn proxy(
    _caller: Caller,
    State(s): State<ServerState>,
    req: axum::extract::Request,
) -> Response {
    s.proxy.handle(req).await
}

/// A connection's token set that cannot be decrypted, as the lists show it: the row stays listed.
fn broken(e: &StoreError) -> Value {
    json!({"code": "decrypt_failed", "message": e.to_string(), "fix": tokenwarden_proxy::answer::decrypt_fix(e)})
}

/// The connection's token set, or the reason it cannot be shown; other store errors fail the call.
async fn tokens_or_broken(
    s: &ServerState,
    id: &ConnectionId,
) -> Result<(Option<tokenwarden_store::StoredTokens>, Option<Value>), ApiError> {
    match s.store.get_tokens(id).await {
        Ok(t) => Ok((t, None)),
        Err(e @ StoreError::DecryptFailed { .. }) => {
            tracing::warn!(connection = %id, error = %e, "listing a connection whose token set cannot be decrypted");
            Ok((None, Some(broken(&e))))
        }
        Err(e) => Err(e.into()),
    }
}

fn failure(s: &ServerState, f: TokenFailure) -> ApiError {
    ErrorAnswer::token_failure(&f, &s.public_url).into()
}

fn not_found(id: &ConnectionId) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("there is no connection {id}"),
    )
}

fn parse_id(id: &str) -> Result<ConnectionId, ApiError> {
    ConnectionId::parse(id)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_id", e.to_string()))
}

fn view(
    s: &ServerState,
    c: &Connection,
    tokens: Option<&tokenwarden_store::StoredTokens>,
) -> Value {
    view_broken(s, c, tokens, None)
}

/// The view of a connection, with `"broken"` when its token set cannot be decrypted.
fn view_broken(
    s: &ServerState,
    c: &Connection,
    tokens: Option<&tokenwarden_store::StoredTokens>,
    broken: Option<Value>,
) -> Value {
    let mut v = json!({
        "id": c.id,
        "provider": c.provider,
        "app": c.app,
        "state": c.state,
        "environment": c.environment,
        "region": c.region,
        "api_base": c.api_base,
        "account_ids": c.account_ids,
        "account": c.account,
        "end_user": c.end_user,
        "scopes": c.scopes,
        "problems": c.problems,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
        "token": tokens.map(|t| json!({
            "hint": t.set.access_token.hint(),
            "expires_at": t.set.expires_at,
            "refresh_expires_at": t.set.refresh_expires_at,
            "issued_at": t.set.issued_at,
            "version": t.version,
        })),
        "reauthorize_url": s.reauthorize_link(c.id.as_str()),
    });
    if let (Some(b), Some(obj)) = (broken, v.as_object_mut()) {
        obj.insert("broken".into(), b);
    }
    v
}

/// `?provider=…&state=…` (both optional).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    provider: Option<String>,
    state: Option<String>,
}

async fn list(
    State(s): State<ServerState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.admin()?;
    // A filter that is present must name something: `?state=` is refused like `?state=nope`.
    let state = match q.state.as_deref() {
        None => None,
        Some(v) => Some(v.parse::<ConnectionState>().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_filter",
                format!("unknown state {v:?}; use pending, active, degraded or reauth_required"),
            )
        })?),
    };
    let provider = q.provider;
    if let Some(p) = &provider
        && s.providers.get(p).is_none()
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_filter",
            format!("unknown provider {p:?}; known: {}", s.providers.ids()),
        ));
    }
    let mut out = Vec::new();
    for c in s.store.list_connections().await? {
        if state.is_some_and(|st| st != c.state)
            || provider
                .as_deref()
                .is_some_and(|p| p != c.provider.as_str())
        {
            continue;
        }
        let (t, broken) = tokens_or_broken(&s, &c.id).await?;
        out.push(view_broken(&s, &c, t.as_ref(), broken));
    }
    Ok(Json(json!({ "connections": out })))
}

async fn one(
    State(s): State<ServerState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> Result<Json<Value>, ApiError> {
    caller.admin()?;
    let id = parse_id(&id)?;
    let c = s
        .store
        .get_connection(&id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    let (t, broken) = tokens_or_broken(&s, &id).await?;
    let mut v = view_broken(&s, &c, t.as_ref(), broken);
    // Who issued its tokens: the app's identity (`google` for a Microsoft Advertising account
    // signed in with Google), null for the platform's own sign-in.
    let identity = s
        .store
        .get_app(&c.provider, &c.app)
        .await?
        .and_then(|a| a.identity);
    if let Some(obj) = v.as_object_mut() {
        obj.insert("identity".into(), json!(identity));
    }
    Ok(Json(v))
}

#[derive(Debug, Deserialize, Default)]
struct DeleteQuery {
    #[serde(default)]
    force: bool,
}

/// Deletes a connection, revoking its tokens at the platform first where the platform has a
/// revocation endpoint. If the platform cannot be reached the connection is kept (so the grant is
/// not left live and forgotten) unless `?force=true`; a connection whose grant the platform had
/// already refused (`reauth_required`) is deleted even when the revocation endpoint rejects its
/// dead token. A connection whose token set (or whose app's
/// secret) cannot be decrypted cannot be revoked: it is deleted here only, and the answer and the
/// event say so.
async fn delete(
    State(s): State<ServerState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
    Query(q): Query<DeleteQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.admin()?;
    let id = parse_id(&id)?;
    let c = s
        .store
        .get_connection(&id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    let mut revoked = false;
    let mut not_revoked: Option<String> = None;
    let tokens = match s.store.get_tokens(&id).await {
        Ok(t) => t,
        Err(e @ StoreError::DecryptFailed { .. }) => {
            not_revoked = Some(e.to_string());
            None
        }
        Err(e) => return Err(e.into()),
    };
    let app = match tokens {
        Some(_) => match s.store.get_app(&c.provider, &c.app).await {
            Ok(a) => a,
            Err(e @ StoreError::DecryptFailed { .. }) => {
                not_revoked = Some(e.to_string());
                None
            }
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    if let (Some(t), Some(app), Some(p)) = (tokens, app, s.providers.get(c.provider.as_str())) {
        // Revoked where it was issued: the connection's region, the app's identity (a Google
        // sign-in's grant is revoked at Google).
        let p = p.for_app(
            c.region.as_deref().or(app.region.as_deref()),
            app.identity.as_deref(),
            c.environment,
            None,
        );
        let creds = tokenwarden_oauth::AppCredentials {
            client_id: app.client_id,
            client_secret: app.client_secret,
            redirect_uri: app.redirect_uri,
            user_agent: app.user_agent.clone(),
        };
        match s.oauth.revoke(&p, &creds, &t.set).await {
            Ok(made) => revoked = made,
            // The platform already refuses the token: nothing left to revoke.
            Err(tokenwarden_oauth::TokenError::Refused { .. }) => {}
            // The platform had already refused this connection's grant (the user removed the
            // app, or it was revoked): its revocation endpoint may well reject a dead token
            // (TikTok answers invalid_request), and nothing live is forgotten by deleting.
            Err(e @ tokenwarden_oauth::TokenError::Misconfigured { .. })
                if c.state == ConnectionState::ReauthRequired =>
            {
                tracing::info!(connection = %id, error = %e, "deleting a connection whose grant the platform had already refused; the revocation endpoint did not take its token")
            }
            Err(e) if !q.force => {
                let mut err = ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "revocation_failed",
                    format!("the connection was kept because revoking its tokens failed: {e}"),
                );
                err.extra = json!({"fix": "Retry, or delete it without revoking at the platform: add ?force=true (tokenwarden connections delete ID --force)."});
                return Err(err);
            }
            Err(e) => {
                tracing::warn!(connection = %id, error = %e, "deleting without revocation (force)")
            }
        }
    }
    let not_revoked = not_revoked.map(|why| {
        tracing::warn!(connection = %id, error = %why, "deleting a connection without revoking at the platform");
        format!(
            "{why}; so it was not revoked at {}: revoke the grant in the platform's settings if it is still live",
            c.provider
        )
    });
    let mut event = tokenwarden_store::NewEvent::new(
        None,
        s.clock.now(),
        "connection_deleted",
        match &not_revoked {
            None => format!("Deleted connection {id} ({})", c.provider),
            Some(why) => format!("Deleted connection {id} ({}) here only: {why}", c.provider),
        },
    )
    .with("revoked_at_platform", revoked);
    if not_revoked.is_some() {
        event = event.with("not_revoked", "decrypt_failed");
    }
    s.store.append_event(&event).await?;
    s.store.delete_connection(&id).await?;
    let mut answer = json!({"deleted": true, "connection": id, "revoked_at_platform": revoked});
    if let (Some(why), Some(obj)) = (not_revoked, answer.as_object_mut()) {
        obj.insert("not_revoked".into(), Value::String(why));
    }
    Ok(Json(answer))
}

fn token_response(issued: tokenwarden_engine::Issued, connection: &ConnectionId) -> Response {
    token_response_with(issued, connection, None)
}

fn token_response_with(
    issued: tokenwarden_engine::Issued,
    connection: &ConnectionId,
    not_refreshed: Option<NotRefreshed>,
) -> Response {
    match token_body(&issued, connection, not_refreshed) {
        Some(body) => token_answer(body.into()),
        // Strings, numbers and a date: it cannot fail, but if it did the caller gets a 500.
        None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// A token answer with `body` (from [`token_body`]).
pub(crate) fn token_answer(body: axum::body::Bytes) -> Response {
    let mut resp = Response::new(axum::body::Body::from(body));
    *resp.headers_mut() = page::TOKEN_HEADERS.clone();
    resp
}

/// The token API's answer body for `issued`; `None` only if it could not be written (logged).
pub(crate) fn token_body(
    issued: &tokenwarden_engine::Issued,
    connection: &ConnectionId,
    not_refreshed: Option<NotRefreshed>,
) -> Option<Vec<u8>> {
    /// The answer's fields in the order a `serde_json::Value` prints them (sorted), written
    /// straight into the body instead of through a map built for every fetch.
    #[derive(serde::Serialize)]
    struct TokenAnswer<'a> {
        access_token: &'a str,
        connection: &'a ConnectionId,
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        not_refreshed: Option<Why>,
        refreshed: bool,
        token_type: Option<&'a str>,
        version: i64,
    }
    #[derive(serde::Serialize)]
    struct Why {
        code: &'static str,
        message: &'static str,
    }
    let answer = TokenAnswer {
        access_token: issued.tokens.access_token.expose(),
        connection,
        expires_at: issued.tokens.expires_at,
        not_refreshed: not_refreshed.map(|why| Why {
            code: why.code(),
            message: why.message(),
        }),
        refreshed: issued.refreshed,
        token_type: issued.tokens.token_type.as_deref(),
        version: issued.version,
    };
    let mut body = Vec::with_capacity(256);
    if let Err(e) = serde_json::to_writer(&mut body, &answer) {
        tracing::error!(error = %e, "could not write a token answer");
        return None;
    }
    Some(body)
}

async fn token(
    State(s): State<ServerState>,
    _caller: Caller,
    PathParam(id): PathParam<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    match s.tokens.token(&id).await {
        Ok(issued) => Ok(token_response(issued, &id)),
        Err(f) => Err(failure(&s, f)),
    }
}

/// `{"rejected_token": "…"}`: the token the caller just saw refused. Without it, refresh now.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RefreshBody {
    #[serde(default)]
    rejected_token: Option<String>,
}

async fn refresh(
    State(s): State<ServerState>,
    _caller: Caller,
    PathParam(id): PathParam<String>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    // Read whatever its Content-Type, so that a bare `curl -X POST` (no body) works.
    let body = body.map_err(|e| ApiError::new(e.status(), "bad_body", e.body_text()))?;
    let body: RefreshBody = if body.iter().all(u8::is_ascii_whitespace) {
        RefreshBody::default()
    } else {
        let v: Value = serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                format!("expected {{\"rejected_token\": \"…\"}} or no body: {e}"),
            )
        })?;
        fitted(v)?
    };
    let result = match body.rejected_token.as_deref().filter(|t| !t.is_empty()) {
        Some(rejected) => s.tokens.replace(&id, rejected).await,
        None => s.tokens.refresh_now(&id).await,
    };
    match result {
        Ok(issued) => {
            let why = NotRefreshed::of(&s, &id, &issued).await;
            Ok(token_response_with(issued, &id, why))
        }
        Err(f) => Err(failure(&s, f)),
    }
}

/// Probes a connection now and answers with what it found.
async fn probe(
    State(s): State<ServerState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> Result<Json<Value>, ApiError> {
    caller.admin()?;
    let id = parse_id(&id)?;
    let Some(before) = s.store.get_connection(&id).await? else {
        return Err(not_found(&id));
    };
    let found =
        crate::monitor::probe_on_demand(&s, &crate::probe::client(), &before, &caller.who()).await;
    let c = s
        .store
        .get_connection(&id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    let t = s.store.get_tokens(&id).await?;
    let mut answer = view(&s, &c, t.as_ref());
    answer["probe"] = json!(found);
    Ok(Json(answer))
}

/// The configured apps (never their secrets) and their open problems.
async fn apps(State(s): State<ServerState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.admin()?;
    let mut out = Vec::new();
    for a in s.store.list_apps(None).await? {
        let problems = s.store.app_problems(&a.provider, &a.id).await?;
        out.push(json!({
            "provider": a.provider,
            "id": a.id,
            "client_id": a.client_id,
            "redirect_uri": a.redirect_uri,
            "environment": a.environment,
            "region": a.region,
            "identity": a.identity,
            "problems": problems,
            "created_at": a.created_at,
            "updated_at": a.updated_at,
        }));
    }
    Ok(Json(json!({ "apps": out })))
}

/// `?after=ID&limit=N`: events after an id, oldest first, for following along.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    #[serde(default)]
    after: i64,
    limit: Option<i64>,
}

fn event_views(events: &[tokenwarden_store::Event]) -> Vec<Value> {
    events
        .iter()
        .map(|e| json!({"id": e.id, "connection": e.connection, "at": e.at, "kind": e.kind, "message": e.message, "details": e.details}))
        .collect()
}

async fn all_events(
    State(s): State<ServerState>,
    caller: Caller,
    Query(q): Query<EventsQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.admin()?;
    let limit = limit(q.limit, 100, 1000)?;
    let after = after(q.after)?;
    let events = s.store.list_events(None, after, limit).await?;
    Ok(Json(json!({ "events": event_views(&events) })))
}

fn after(given: i64) -> Result<i64, ApiError> {
    if given < 0 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_filter",
            format!("after is an event id (0 or more); {given} is not"),
        ));
    }
    Ok(given)
}

/// `?limit=N`: the newest N events of a connection (1 … 500, default 500).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConnectionEventsQuery {
    limit: Option<i64>,
}

async fn events(
    State(s): State<ServerState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
    Query(q): Query<ConnectionEventsQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.admin()?;
    let id = parse_id(&id)?;
    let limit = limit(q.limit, 500, 500)?;
    if s.store.get_connection(&id).await?.is_none() {
        return Err(not_found(&id));
    }
    let events = s.store.latest_events(&id, limit).await?;
    Ok(Json(json!({ "events": event_views(&events) })))
}

/// `{"provider","status","headers":[["Name","value"]] or {"Name":"value"},"body","token_endpoint"}`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DiagnoseBody {
    provider: String,
    status: u16,
    #[serde(default)]
    headers: Value,
    #[serde(default)]
    body: String,
    #[serde(default)]
    token_endpoint: bool,
}

async fn diagnose(
    State(s): State<ServerState>,
    caller: Caller,
    Body(b): Body<DiagnoseBody>,
) -> Result<Json<Value>, ApiError> {
    caller.admin()?;
    let p = s.providers.get(&b.provider).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown_provider",
            format!(
                "unknown provider {:?}; known: {}",
                b.provider,
                s.providers.ids()
            ),
        )
    })?;
    if !(100..=599).contains(&b.status) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_body",
            format!("status is an HTTP status, 100 to 599; {} is not", b.status),
        ));
    }
    let headers = diagnose_headers(&b.headers)?;
    let ctx = if b.token_endpoint {
        Context::TokenEndpoint
    } else {
        Context::Api
    };
    let c = p.classifier().classify(
        &ResponseView {
            status: b.status,
            headers: &headers,
            body: b.body.as_bytes(),
        },
        ctx,
        s.clock.now(),
    );
    let mut v = serde_json::to_value(&c).unwrap_or(Value::Null);
    v["provider"] = Value::String(p.spec.id.to_string());
    Ok(Json(v))
}

/// `{"Name": "value"}`, `[["Name", "value"], …]` or nothing; anything else is refused rather than
/// read in part.
fn diagnose_headers(given: &Value) -> Result<Vec<(String, String)>, ApiError> {
    let bad = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_body",
            "headers is {\"Name\": \"value\"} or [[\"Name\", \"value\"], …], with text values",
        )
    };
    match given {
        Value::Null => Ok(Vec::new()),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.as_str().ok_or_else(bad)?.to_string())))
            .collect(),
        Value::Array(a) => a
            .iter()
            .map(|pair| match pair.as_array().map(Vec::as_slice) {
                Some([Value::String(k), Value::String(v)]) => Ok((k.clone(), v.clone())),
                _ => Err(bad()),
            })
            .collect(),
        _ => Err(bad()),
    }
}

/// An API key's public record: never the key, which exists only in the answer that created it.
fn api_key_view(k: &ApiKeyInfo) -> Value {
    json!({
        "id": k.id,
        "role": k.role.as_str(),
        "label": k.label,
        "created_at": k.created_at,
        "revoked_at": k.revoked_at,
    })
}

/// `GET /v1/api-keys`: every key, revoked ones included, newest first.
async fn list_api_keys(
    State(s): State<ServerState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.admin()?;
    let mut keys = s.store.list_api_keys().await?;
    keys.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    let out: Vec<Value> = keys.iter().map(api_key_view).collect();
    Ok(Json(json!({ "api_keys": out })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateApiKey {
    role: String,
    #[serde(default)]
    label: Option<String>,
}

/// `POST /v1/api-keys`: a new key; the answer carries the key, the only time it is shown.
async fn create_api_key(
    State(s): State<ServerState>,
    caller: Caller,
    Body(b): Body<CreateApiKey>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.admin()?;
    let role = match b.role.as_str() {
        "admin" => ApiKeyRole::Admin,
        "token_reader" => ApiKeyRole::TokenReader,
        other => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                format!("role {other:?} is not one of admin, token_reader"),
            ));
        }
    };
    let label = b.label.unwrap_or_else(|| "created through the API".into());
    if label.chars().count() > 200 || label.chars().any(char::is_control) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_body",
            "label must be at most 200 characters, without control characters",
        ));
    }
    let (info, key) = s.store.create_api_key(role, &label, s.clock.now()).await?;
    let mut v = api_key_view(&info);
    v["key"] = Value::String(key.expose().to_owned());
    v["note"] =
        Value::String("Keep the key: only its hash is stored, and it is not shown again.".into());
    Ok((StatusCode::CREATED, Json(v)))
}

/// `DELETE /v1/api-keys/{id}`: revokes a key at once on this daemon (other replicas within
/// their key cache's TTL). Revoking a revoked key answers as the first revocation did. The last
/// live admin key is kept: without it nobody could manage the daemon through the API.
async fn revoke_api_key(
    State(s): State<ServerState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> Result<Json<Value>, ApiError> {
    caller.admin()?;
    let keys = s.store.list_api_keys().await?;
    let Some(key) = keys.iter().find(|k| k.id == id) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("there is no API key {id}"),
        ));
    };
    if key.revoked_at.is_some() {
        return Ok(Json(api_key_view(key)));
    }
    let live_admins = keys
        .iter()
        .filter(|k| k.role == ApiKeyRole::Admin && k.revoked_at.is_none())
        .count();
    if key.role == ApiKeyRole::Admin && live_admins <= 1 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "last_admin_key",
            format!(
                "{id} is the last live admin key; create another admin key first, then revoke this one"
            ),
        ));
    }
    let now = s.clock.now();
    s.store.revoke_api_key(&id, now).await?;
    let revoked = s
        .store
        .list_api_keys()
        .await?
        .into_iter()
        .find(|k| k.id == id)
        .unwrap_or_else(|| ApiKeyInfo {
            revoked_at: Some(now),
            ..key.clone()
        });
    Ok(Json(api_key_view(&revoked)))
}

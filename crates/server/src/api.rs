//! The REST API under `/v1`, authenticated by API key (`Authorization: Bearer tw_…`). The one
//! place where failures become HTTP responses: JSON `{"error":{"code","message"}}` with a stable
//! code; internal details are logged, never sent.

use crate::ServerState;
use crate::page;
use axum::Json;
use axum::Router;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tokenwarden_core::classify::ResponseView;
use tokenwarden_core::connection::Connection;
use tokenwarden_core::id::ConnectionId;
use tokenwarden_core::provider::Context;
use tokenwarden_engine::TokenFailure;
use tokenwarden_store::{ApiKeyInfo, ApiKeyRole, StoreError};

/// The `/v1` routes.
pub fn routes() -> Router<ServerState> {
    Router::new()
        .route("/v1/connections", get(list))
        .route("/v1/connections/{id}", get(one).delete(delete))
        .route("/v1/connections/{id}/token", get(token))
        .route("/v1/connections/{id}/refresh", post(refresh))
        .route("/v1/connections/{id}/events", get(events))
        .route("/v1/diagnose", post(diagnose))
        .route(tokenwarden_proxy::handler::ROUTE, any(proxy))
}

/// `ANY /proxy/{connection_id}/{*path}`: any API key may call through the proxy (it hands out no
/// token); the proxy crate does the rest.
async fn proxy(
    _caller: Caller,
    State(s): State<ServerState>,
    req: axum::extract::Request,
) -> Response {
    s.proxy.handle(req).await
}

/// A failure, as the API reports it.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    extra: Value,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            extra: Value::Null,
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let (Value::Object(extra), Some(obj)) = (self.extra, error.as_object_mut()) {
            obj.extend(extra);
        }
        let mut resp = (self.status, Json(json!({ "error": error }))).into_response();
        page::secure_headers(resp.headers_mut());
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store failure while serving the API");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "tokenwarden cannot reach its database right now",
        )
    }
}

fn failure(s: &ServerState, provider: Option<&str>, f: TokenFailure) -> ApiError {
    match f {
        TokenFailure::NotFound(id) => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("there is no connection {id}"),
        ),
        TokenFailure::Pending(id) => ApiError::new(
            StatusCode::CONFLICT,
            "pending",
            format!("connection {id} is not authorized yet"),
        ),
        TokenFailure::ReauthRequired {
            connection,
            title,
            fix,
        } => {
            let mut e = ApiError::new(
                StatusCode::CONFLICT,
                "reauth_required",
                format!("connection {connection} needs re-authorization: {title}"),
            );
            e.extra = json!({"fix": fix, "reauthorize_url": provider.map(|p| s.connect_link(p, connection.as_str()))});
            e
        }
        TokenFailure::AppMisconfigured { title, fix, .. } => {
            let mut e = ApiError::new(StatusCode::BAD_GATEWAY, "app_misconfigured", title);
            e.extra = json!({"fix": fix});
            e
        }
        TokenFailure::Unavailable {
            connection,
            reason,
            retry_after,
        } => {
            let mut e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("connection {connection}: {reason}"),
            );
            e.retry_after = Some(retry_after.map_or(5, |d| d.as_secs().max(1)));
            e
        }
        TokenFailure::UnknownProvider(p) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "unknown_provider",
            format!("provider {p} is not configured"),
        ),
        TokenFailure::Store(e) => e.into(),
    }
}

/// The authenticated caller.
#[derive(Debug)]
pub struct Caller(pub ApiKeyInfo);

impl FromRequestParts<ServerState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &ServerState) -> Result<Self, ApiError> {
        let unauthorized = || {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send an API key as 'Authorization: Bearer tw_…'",
            )
        };
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .ok_or_else(unauthorized)?;
        let info = s
            .store
            .verify_api_key(presented.trim())
            .await?
            .ok_or_else(unauthorized)?;
        Ok(Caller(info))
    }
}

impl Caller {
    fn admin(&self) -> Result<(), ApiError> {
        match self.0.role {
            ApiKeyRole::Admin => Ok(()),
            ApiKeyRole::TokenReader => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this API key may only fetch tokens",
            )),
        }
    }
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
    json!({
        "id": c.id,
        "provider": c.provider,
        "app": c.app,
        "state": c.state,
        "environment": c.environment,
        "api_base": c.api_base,
        "account_ids": c.account_ids,
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
        "reauthorize_url": s.connect_link(c.provider.as_str(), c.id.as_str()),
    })
}

async fn list(State(s): State<ServerState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.admin()?;
    let mut out = Vec::new();
    for c in s.store.list_connections().await? {
        let t = s.store.get_tokens(&c.id).await?;
        out.push(view(&s, &c, t.as_ref()));
    }
    Ok(Json(json!({ "connections": out })))
}

async fn one(
    State(s): State<ServerState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.admin()?;
    let id = parse_id(&id)?;
    let c = s.store.get_connection(&id).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("there is no connection {id}"),
        )
    })?;
    let t = s.store.get_tokens(&id).await?;
    Ok(Json(view(&s, &c, t.as_ref())))
}

#[derive(Debug, Deserialize, Default)]
struct DeleteQuery {
    #[serde(default)]
    force: bool,
}

/// Deletes a connection, revoking its tokens at the platform first where the platform has a
/// revocation endpoint. If the platform cannot be reached the connection is kept (so the grant is
/// not left live and forgotten) unless `?force=true`.
async fn delete(
    State(s): State<ServerState>,
    caller: Caller,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<DeleteQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.admin()?;
    let id = parse_id(&id)?;
    let c = s.store.get_connection(&id).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("there is no connection {id}"),
        )
    })?;
    let mut revoked = false;
    let tokens = s.store.get_tokens(&id).await?;
    let app = s.store.get_app(&c.provider, &c.app).await?;
    if let (Some(t), Some(app), Some(p)) = (tokens, app, s.providers.get(c.provider.as_str())) {
        let creds = tokenwarden_oauth::AppCredentials {
            client_id: app.client_id,
            client_secret: app.client_secret,
            redirect_uri: app.redirect_uri,
        };
        match s.oauth.revoke(p, &creds, &t.set).await {
            Ok(made) => revoked = made,
            // The platform already refuses the token: nothing left to revoke.
            Err(tokenwarden_oauth::TokenError::Refused { .. }) => {}
            Err(e) if !q.force => {
                let mut err = ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "revocation_failed",
                    format!("the connection was kept because revoking its tokens failed: {e}"),
                );
                err.extra = json!({"fix": "Retry, or add ?force=true to delete it without revoking at the platform."});
                return Err(err);
            }
            Err(e) => {
                tracing::warn!(connection = %id, error = %e, "deleting without revocation (force)")
            }
        }
    }
    let event = tokenwarden_store::NewEvent::new(
        None,
        s.clock.now(),
        "connection_deleted",
        format!("Deleted connection {id} ({})", c.provider),
    )
    .with("revoked_at_platform", revoked);
    s.store.append_event(&event).await?;
    s.store.delete_connection(&id).await?;
    Ok(Json(
        json!({"deleted": true, "connection": id, "revoked_at_platform": revoked}),
    ))
}

fn token_response(issued: tokenwarden_engine::Issued, connection: &ConnectionId) -> Response {
    let body = json!({
        "connection": connection,
        "access_token": issued.tokens.access_token.expose(),
        "token_type": issued.tokens.token_type,
        "expires_at": issued.tokens.expires_at,
        "version": issued.version,
        "refreshed": issued.refreshed,
    });
    let mut resp = Json(body).into_response();
    page::secure_headers(resp.headers_mut());
    resp
}

async fn provider_of(s: &ServerState, id: &ConnectionId) -> Option<String> {
    s.store
        .get_connection(id)
        .await
        .ok()
        .flatten()
        .map(|c| c.provider.to_string())
}

async fn token(
    State(s): State<ServerState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    match s.tokens.token(&id).await {
        Ok(issued) => Ok(token_response(issued, &id)),
        Err(f) => Err(failure(&s, provider_of(&s, &id).await.as_deref(), f)),
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
    Path(id): Path<String>,
    body: Option<Json<RefreshBody>>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let result = match body.rejected_token.as_deref().filter(|t| !t.is_empty()) {
        Some(rejected) => s.tokens.replace(&id, rejected).await,
        None => s.tokens.refresh_now(&id).await,
    };
    match result {
        Ok(issued) => Ok(token_response(issued, &id)),
        Err(f) => Err(failure(&s, provider_of(&s, &id).await.as_deref(), f)),
    }
}

async fn events(
    State(s): State<ServerState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.admin()?;
    let id = parse_id(&id)?;
    let events = s.store.list_events(Some(&id), 0, 500).await?;
    let out: Vec<Value> = events.iter().map(|e| json!({"id": e.id, "at": e.at, "kind": e.kind, "message": e.message, "details": e.details})).collect();
    Ok(Json(json!({ "events": out })))
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
    Json(b): Json<DiagnoseBody>,
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
    let headers: Vec<(String, String)> = match &b.headers {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect(),
        Value::Array(a) => a
            .iter()
            .filter_map(|pair| {
                Some((
                    pair.get(0)?.as_str()?.to_string(),
                    pair.get(1)?.as_str()?.to_string(),
                ))
            })
            .collect(),
        _ => Vec::new(),
    };
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

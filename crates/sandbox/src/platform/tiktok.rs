//! TikTok Login Kit v2 (platforms.md §3): form-encoded token endpoint with a flat response,
//! access 2 h / refresh 180 d with rotating refresh tokens, PKCE, and API errors as
//! `{data, error:{code, message, log_id}}` with real HTTP statuses.

use super::{bearer, refuse, token_reply, uuid_like};
use crate::error_case::{ErrorCase, ErrorDetail, Limit, Reply, load_balancer_page};
use crate::ledger::{AccessKind, AccessToken, CodeRefusal, RefreshRefusal, short_id};
use crate::provider::Provider;
use crate::{Gate, Sandbox};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokenwarden_core::clock::Clock as _;

const P: Provider = Provider::Tiktok;

/// The endpoints with a documented 600 requests/min limit (platforms.md "Corrections (2026-12)" 3).
pub(crate) const LIMITED_600_PER_MINUTE: &[&str] =
    &["/v2/user/info/", "/v2/video/query/", "/v2/video/list/"];

pub(crate) const CASES: &[ErrorCase] = &[
    ErrorCase::WorkPending,
    ErrorCase::MediaRejected { expired: false },
    ErrorCase::ConsentRefused { declined: true },
    ErrorCase::ConsentRefused { declined: false },
    ErrorCase::TokenInvalid,
    ErrorCase::ScopeMissing,
    ErrorCase::InvalidParams,
    ErrorCase::RateLimited { limit: Limit::App },
    ErrorCase::Outage,
    ErrorCase::OutagePage { status: 502 },
    ErrorCase::OutagePage { status: 503 },
    ErrorCase::OAuthInvalidRequest,
    ErrorCase::OAuthInvalidClient,
    ErrorCase::OAuthInvalidGrant,
    ErrorCase::OAuthUnsupportedGrant,
];

/// TikTok Login Kit's one rendering function.
pub(crate) fn render(case: ErrorCase, d: &ErrorDetail) -> Reply {
    let api = |status: u16, code: &str, message: &str| {
        Reply::json(
            status,
            &json!({"data": {}, "error": {"code": code, "message": message, "log_id": log_id()}}),
        )
    };
    let oauth = |status: u16, error: &str, default: &str| {
        Reply::json(
            status,
            &json!({"error": error, "error_description": d.message.as_deref().unwrap_or(default), "log_id": log_id()}),
        )
        .header("cache-control", "no-store")
    };
    match case {
        // One code for every token problem, expired included: "refresh the token and retry"
        // (platforms.md §3). The code says "invalid", so that is the kind it carries.
        ErrorCase::TokenExpired
        | ErrorCase::TokenRefusedPlainText
        | ErrorCase::TokenRefusedEmpty
        | ErrorCase::TokenInvalid
        | ErrorCase::TokenExpiredUnspecific
        | ErrorCase::TokenRevoked
        | ErrorCase::AuthorizerGone { .. }
        | ErrorCase::CredentialMissing => api(
            401,
            "access_token_invalid",
            "The access token is invalid or not found in the request.",
        ),
        ErrorCase::ScopeMissing
        | ErrorCase::RoleMissing
        | ErrorCase::AppMismatch
        | ErrorCase::AccessRefused { .. } => api(
            401,
            "scope_not_authorized",
            "The user did not authorize the scope required for completing this request.",
        ),
        ErrorCase::InvalidParams
        | ErrorCase::NotFound
        | ErrorCase::ObjectDeleted
        | ErrorCase::BatchItemsFailed { .. }
        | ErrorCase::TaskPending
        | ErrorCase::EndpointGone { .. }
        | ErrorCase::StaleSignature => api(
            400,
            "invalid_params",
            d.message
                .as_deref()
                .unwrap_or("The request parameters are invalid."),
        ),
        ErrorCase::RateLimited { .. } => {
            let reply = api(
                429,
                "rate_limit_exceeded",
                "The API rate limit was exceeded. Please try again later.",
            );
            match d.reset_at {
                Some(at) => reply.header("x-ratelimit-reset", at.timestamp().to_string()),
                None => reply,
            }
        }
        ErrorCase::Outage | ErrorCase::WorkFailed | ErrorCase::TransientParamError => {
            api(500, "internal_error", "Internal error. Please retry later.")
        }
        ErrorCase::WorkPending => {
            post_status(json!({"status": "PROCESSING_DOWNLOAD", "uploaded_bytes": 0}))
        }
        ErrorCase::MediaRejected { .. } => {
            post_status(json!({"status": "FAILED", "fail_reason": "duration_check_failed"}))
        }
        ErrorCase::ConsentRefused { declined } => super::consent_redirect(P, declined),
        ErrorCase::OutagePage { status } => load_balancer_page(status),
        ErrorCase::OAuthInvalidRequest => oauth(400, "invalid_request", "The request is invalid."),
        ErrorCase::OAuthInvalidClient => {
            oauth(401, "invalid_client", "Client key or secret is invalid.")
        }
        ErrorCase::OAuthInvalidGrant | ErrorCase::RefreshTokenRefused { .. } => {
            oauth(400, "invalid_grant", "The grant is invalid.")
        }
        ErrorCase::OAuthUnsupportedGrant => oauth(
            400,
            "unsupported_grant_type",
            "The grant type is not supported.",
        ),
    }
}

/// A post's status answer (/v2/post/publish/status/fetch/): HTTP 200 with `error.code = "ok"`
/// whatever the status (Content Posting API, Get Post Status).
pub(crate) fn post_status(data: Value) -> Reply {
    Reply::json(
        200,
        &json!({"data": data, "error": {"code": "ok", "message": "", "log_id": log_id()}}),
    )
}

fn log_id() -> String {
    format!(
        "{}{}",
        tokenwarden_core::clock::SystemClock
            .now()
            .format("%Y%m%d%H%M%S"),
        short_id().to_uppercase()
    )
}

pub(crate) fn routes() -> Router<Sandbox> {
    Router::new()
        .route("/v2/oauth/token/", post(token))
        .route("/v2/oauth/revoke/", post(revoke))
        .route("/v2/user/info/", get(user_info))
        .route("/v2/video/list/", post(video_list))
        .route("/v2/post/publish/video/init/", post(publish_init))
        .route("/v2/post/publish/status/fetch/", post(publish_status))
}

fn fail(sb: &Sandbox, case: ErrorCase, message: &str) -> Response {
    refuse(sb, P, case, &ErrorDetail::message(message))
}

async fn token(State(sb): State<Sandbox>, Form(f): Form<HashMap<String, String>>) -> Response {
    let get = |k: &str| f.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let grant_type = get("grant_type").unwrap_or("-");
    let count_fail = || sb.counters().token_call(P, None, grant_type);
    let Some(client_key) = get("client_key") else {
        count_fail();
        return fail(
            &sb,
            ErrorCase::OAuthInvalidRequest,
            "client_key is required.",
        );
    };
    if sb
        .ledger()
        .app(P, client_key)
        .filter(|a| a.secret_matches(get("client_secret").unwrap_or("")))
        .is_none()
    {
        count_fail();
        return fail(
            &sb,
            ErrorCase::OAuthInvalidClient,
            "Client key or secret is invalid.",
        );
    }
    let now = sb.now();
    let (rotate, grace) = {
        let s = sb.faults(P).settings.read();
        (s.rotation, s.reuse_grace)
    };
    let (grant, new_refresh, kept_refresh_expiry) = match grant_type {
        "authorization_code" => {
            let (Some(code), Some(redirect_uri)) = (get("code"), get("redirect_uri")) else {
                count_fail();
                return fail(
                    &sb,
                    ErrorCase::OAuthInvalidRequest,
                    "code and redirect_uri are required.",
                );
            };
            match sb.ledger().redeem_code(
                code,
                P,
                client_key,
                Some(redirect_uri),
                get("code_verifier"),
                now,
            ) {
                Ok(c) => (sb.ledger().new_grant(&c, now), true, None),
                Err(r) => {
                    count_fail();
                    let why = match r {
                        CodeRefusal::Used => "Authorization code has been used.",
                        CodeRefusal::Expired => "Authorization code is expired.",
                        CodeRefusal::RedirectMismatch => "redirect_uri does not match.",
                        CodeRefusal::PkceMismatch => "code_verifier does not match code_challenge.",
                        _ => "Authorization code is invalid.",
                    };
                    return fail(&sb, ErrorCase::OAuthInvalidGrant, why);
                }
            }
        }
        "refresh_token" => {
            let Some(rt) = get("refresh_token") else {
                count_fail();
                return fail(
                    &sb,
                    ErrorCase::OAuthInvalidRequest,
                    "refresh_token is required.",
                );
            };
            match sb
                .ledger()
                .use_refresh(P, client_key, rt, rotate, grace, now)
            {
                Ok((g, expiry)) => (g, rotate, expiry),
                Err(r) => {
                    count_fail();
                    let why = match r {
                        RefreshRefusal::Reused => {
                            "Refresh token is invalid: it was already rotated."
                        }
                        RefreshRefusal::Expired => "Refresh token is expired.",
                        RefreshRefusal::Dead => "Refresh token has been revoked.",
                        RefreshRefusal::Unknown => "Refresh token is invalid.",
                    };
                    return fail(&sb, ErrorCase::OAuthInvalidGrant, why);
                }
            }
        }
        _ => {
            count_fail();
            return fail(
                &sb,
                ErrorCase::OAuthUnsupportedGrant,
                "The grant type is not supported.",
            );
        }
    };
    sb.counters().token_call(P, Some(&grant.id), grant_type);
    let lifetime = sb.config().access_lifetime(P);
    let (access, _) = sb
        .ledger()
        .issue_access(&grant, AccessKind::Standard, "act.", lifetime, now);
    let (refresh, refresh_expiry) = if new_refresh {
        // A rotated refresh token keeps the remaining lifetime of the one it replaces: TikTok's
        // pages say refresh_expires_in gives the REMAINING lifetime (platforms.md "Corrections
        // (2026-12)" 3), so the 180-day end of the authorization stands.
        let lifetime = match kept_refresh_expiry {
            Some(end) => Some((end - now).to_std().unwrap_or_default()),
            None => P.refresh_lifetime(),
        };
        let (v, t) = sb.ledger().issue_refresh(&grant, "rft.", lifetime, now);
        (v, t.expires_at)
    } else {
        (
            get("refresh_token").unwrap_or("").to_string(),
            kept_refresh_expiry,
        )
    };
    let refresh_expires_in = refresh_expiry.map_or(0, |e| (e - now).num_seconds().max(0));
    token_reply(
        &sb,
        P,
        json!({
            "open_id": uuid_like(&grant, "open_id"),
            "scope": grant.scopes().join(","),
            "access_token": access,
            "expires_in": lifetime.map_or(7200, |l| l.as_secs()),
            "refresh_token": refresh,
            "refresh_expires_in": refresh_expires_in,
            "token_type": "Bearer",
        }),
    )
}

async fn revoke(State(sb): State<Sandbox>, Form(f): Form<HashMap<String, String>>) -> Response {
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    let Some(app) = sb
        .ledger()
        .app(P, get("client_key"))
        .filter(|a| a.secret_matches(get("client_secret")))
    else {
        return fail(
            &sb,
            ErrorCase::OAuthInvalidClient,
            "Client key or secret is invalid.",
        );
    };
    match sb.ledger().check_access(P, Some(get("token")), sb.now()) {
        Ok(t) if t.grant.app.client_id == app.client_id => {
            // Revoking ends the user's authorization, refresh token included.
            sb.ledger().revoke_grant(&t.grant);
            Reply::json(200, &json!({})).into_response()
        }
        _ => fail(&sb, ErrorCase::OAuthInvalidRequest, "The token is invalid."),
    }
}

/// Gate + 600 requests/min per endpoint (sliding window), + the endpoint's scope.
fn authorize(
    sb: &Sandbox,
    headers: &HeaderMap,
    uri: &Uri,
    scope: &[&str],
) -> Result<Arc<AccessToken>, Response> {
    let access = match sb.gate(P, bearer(headers).as_deref()) {
        Ok(a) => a,
        Err(Gate::Token(_)) => {
            return Err(refuse(
                sb,
                P,
                ErrorCase::TokenInvalid,
                &ErrorDetail::default(),
            ));
        }
        Err(Gate::Throttled) => {
            let reset_at = Some(sb.now() + chrono::TimeDelta::seconds(60));
            return Err(refuse(
                sb,
                P,
                ErrorCase::RateLimited { limit: Limit::App },
                &ErrorDetail {
                    reset_at,
                    ..Default::default()
                },
            ));
        }
    };
    // 600 requests/min is documented for these three endpoints only ("limits for each API are
    // set and enforced separately"), and no x-ratelimit-reset header is documented: the 429
    // carries none, so a client's fallback wait is what gets tested (platforms.md "Corrections
    // (2026-12)" 3). The throttle fault still sends one, for clients that read it.
    if sb.config().enforce_rate_limits && LIMITED_600_PER_MINUTE.contains(&uri.path()) {
        let key = format!("tt:{}:{}", access.grant.app.client_id, uri.path());
        if sb
            .limits()
            .admit(key, 600, Duration::from_secs(60), sb.now())
            .is_err()
        {
            return Err(refuse(
                sb,
                P,
                ErrorCase::RateLimited { limit: Limit::App },
                &ErrorDetail::default(),
            ));
        }
    }
    if !scope.iter().any(|s| access.grant.has_scope(s)) {
        return Err(refuse(
            sb,
            P,
            ErrorCase::ScopeMissing,
            &ErrorDetail::default(),
        ));
    }
    Ok(access)
}

fn ok(data: Value) -> Response {
    Reply::json(
        200,
        &json!({"data": data, "error": {"code": "ok", "message": "", "log_id": log_id()}}),
    )
    .into_response()
}

async fn user_info(
    State(sb): State<Sandbox>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let a = match authorize(&sb, &headers, &uri, &["user.info.basic"]) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let Some(fields) = q.get("fields").filter(|f| !f.is_empty()) else {
        return fail(&sb, ErrorCase::InvalidParams, "fields is required.");
    };
    let g = &a.grant;
    let all = json!({
        "open_id": uuid_like(g, "open_id"),
        "union_id": uuid_like(g, "union_id"),
        "avatar_url": "https://example.invalid/avatar.jpeg",
        "display_name": g.account,
    });
    let mut user = serde_json::Map::new();
    for f in fields.split(',') {
        if let Some(v) = all.get(f.trim()) {
            user.insert(f.trim().to_string(), v.clone());
        }
    }
    ok(json!({"user": user}))
}

const VIDEOS: usize = 30;

async fn video_list(
    State(sb): State<Sandbox>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let a = match authorize(&sb, &headers, &uri, &["video.list"]) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let body: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => {
                return fail(
                    &sb,
                    ErrorCase::InvalidParams,
                    "The request body must be JSON.",
                );
            }
        }
    };
    let max = body.get("max_count").and_then(Value::as_u64).unwrap_or(10);
    if !(1..=20).contains(&max) {
        return fail(
            &sb,
            ErrorCase::InvalidParams,
            "max_count must be between 1 and 20.",
        );
    }
    let cursor = body.get("cursor").and_then(Value::as_u64).unwrap_or(0) as usize;
    let (range, more) = super::page_of(VIDEOS, cursor, max as usize);
    let end = range.end;
    let videos: Vec<Value> = range
        .map(|i| json!({"id": a.grant.numeric_id(&format!("video/{i}")).to_string(), "title": format!("Video {}", i + 1)}))
        .collect();
    ok(json!({"videos": videos, "cursor": end, "has_more": more}))
}

async fn publish_init(State(sb): State<Sandbox>, headers: HeaderMap, uri: Uri) -> Response {
    if let Err(r) = authorize(&sb, &headers, &uri, &["video.publish", "video.upload"]) {
        return r;
    }
    ok(json!({"publish_id": sb.start_job("v_pub_file~v2-1.")}))
}

/// Publishing stays `PROCESSING_DOWNLOAD` for a while, then `PUBLISH_COMPLETE`.
async fn publish_status(
    State(sb): State<Sandbox>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    if let Err(r) = authorize(&sb, &headers, &uri, &["video.publish", "video.upload"]) {
        return r;
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(id) = body.get("publish_id").and_then(Value::as_str) else {
        return fail(&sb, ErrorCase::InvalidParams, "publish_id is required.");
    };
    match sb.job_done(id) {
        None => fail(&sb, ErrorCase::InvalidParams, "publish_id is invalid."),
        Some(false) => post_status(json!({"status": "PROCESSING_DOWNLOAD", "uploaded_bytes": 0}))
            .into_response(),
        Some(true) => ok(
            json!({"status": "PUBLISH_COMPLETE", "publicaly_available_post_id": [a_post_id(id)]}),
        ),
    }
}

fn a_post_id(publish_id: &str) -> String {
    let n: u64 = publish_id
        .bytes()
        .fold(7, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    (n % 10_000_000_000_000_000_000).to_string()
}

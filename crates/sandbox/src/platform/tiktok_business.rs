//! TikTok API for Business (platforms.md §0.1, §0.5, §2): JSON token endpoint with
//! `app_id`/`secret`/`auth_code`, long-term tokens without refresh, the `Access-Token` header,
//! and every API or token error as HTTP 200 with a non-zero `code`.
//!
//! The same routes serve both hosts: production (`business-api.tiktok.com`) and the sandbox
//! (`sandbox-ads.tiktok.com`, "one sandbox ad account per developer app"). A token belongs to its
//! app's environment and "looks the same" on both, but each API host knows only its own: on the
//! other it is an unknown token, 40105 in HTTP 200. The token endpoints issue and revoke tokens
//! for the app whatever host they are called on (tokenwarden's definition names one token URL for
//! both environments; platforms.md does not say the sandbox has its own).

use super::{CAMPAIGNS_PER_ACCOUNT, page_of, refuse, token_reply};
use crate::error_case::{ErrorCase, ErrorDetail, Limit, Reply, load_balancer_page};
use crate::ledger::{AccessKind, AccessToken, CodeRefusal, RefreshRefusal, Refusal, short_id};
use crate::provider::Provider;
use crate::{Gate, Sandbox};
use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokenwarden_core::clock::Clock as _;
use tokenwarden_core::connection::Environment;

const P: Provider = Provider::TiktokBusiness;
const BASE: &str = "/open_api/v1.3";
/// Creator tokens: "The creator access token is valid for 24 hours and the refresh token is valid
/// for one year" (SDK `docs/AuthenticationApi.md`, platforms.md "Corrections (2026-12)" 2).
const CREATOR_ACCESS: Duration = Duration::from_secs(24 * 3600);
const CREATOR_REFRESH: Duration = Duration::from_secs(365 * 24 * 3600);

pub(crate) const CASES: &[ErrorCase] = &[
    ErrorCase::CredentialMissing,
    ErrorCase::TokenExpired,
    ErrorCase::TokenRevoked,
    ErrorCase::ScopeMissing,
    ErrorCase::RoleMissing,
    ErrorCase::AppMismatch,
    ErrorCase::RateLimited { limit: Limit::App },
    ErrorCase::Outage,
    ErrorCase::OutagePage { status: 502 },
    ErrorCase::OutagePage { status: 503 },
    ErrorCase::TaskPending,
    ErrorCase::WorkPending,
    ErrorCase::WorkFailed,
    ErrorCase::ConsentRefused { declined: true },
    ErrorCase::ConsentRefused { declined: false },
    ErrorCase::NotFound,
    ErrorCase::InvalidParams,
    ErrorCase::OAuthInvalidRequest,
    ErrorCase::OAuthInvalidClient,
    ErrorCase::OAuthInvalidGrant,
    ErrorCase::OAuthUnsupportedGrant,
    // The codes of platforms.md "Corrections (2026-12)" 1, from the official SDK table.
    ErrorCase::RateLimited {
        limit: Limit::Restricted,
    },
    ErrorCase::AuthorizerGone {
        user_logged_out: false,
    },
    ErrorCase::AuthorizerGone {
        user_logged_out: true,
    },
    ErrorCase::AccessRefused { blocked: false },
    ErrorCase::AccessRefused { blocked: true },
    ErrorCase::EndpointGone { retired: false },
    ErrorCase::EndpointGone { retired: true },
    ErrorCase::StaleSignature,
    ErrorCase::RefreshTokenRefused { expired: false },
    ErrorCase::RefreshTokenRefused { expired: true },
];

/// The numeric permission ids the token response lists (platforms.md §2: `scope` is numeric).
const SCOPE_IDS: &[(&str, u32)] = &[
    ("ad_account_management", 1),
    ("campaign_management", 2),
    ("reporting", 4),
];

fn request_id() -> String {
    format!(
        "{}{}",
        tokenwarden_core::clock::SystemClock
            .now()
            .format("%Y%m%d%H%M%S"),
        short_id().to_uppercase()
    )
}

/// TikTok Business's one rendering function: everything is HTTP 200 with a code, except the
/// edge's own HTML pages.
pub(crate) fn render(case: ErrorCase, d: &ErrorDetail) -> Reply {
    let msg = |default: &str| d.message.clone().unwrap_or_else(|| default.to_string());
    let (code, message) = match case {
        ErrorCase::OutagePage { status } => return load_balancer_page(status),
        ErrorCase::WorkPending => return task_status("7300000000000000001", "PROCESSING"),
        ErrorCase::WorkFailed => return task_status("7300000000000000001", "FAILED"),
        ErrorCase::ConsentRefused { declined } => return super::consent_redirect(P, declined),
        ErrorCase::CredentialMissing => (
            40104,
            msg("Access token is null, please check and try again."),
        ),
        ErrorCase::TokenExpired
        | ErrorCase::TokenExpiredUnspecific
        | ErrorCase::TokenRefusedPlainText
        | ErrorCase::TokenRefusedEmpty => (40102, msg("Access token has expired.")),
        ErrorCase::TokenRevoked | ErrorCase::TokenInvalid => (
            40105,
            msg("The access token is incorrect or has been revoked."),
        ),
        ErrorCase::ScopeMissing => (
            40001,
            msg(
                "No permission to operate: the access token is not authorized for the scope this API needs.",
            ),
        ),
        ErrorCase::RoleMissing => (
            40001,
            msg(
                "No permission to operate advertiser: the user's role on the advertiser has been removed.",
            ),
        ),
        ErrorCase::AppMismatch => (40113, msg("The app_id does not match the access token.")),
        ErrorCase::RateLimited {
            limit: Limit::Restricted,
        } => (61000, msg("Too many requests, please try again later.")),
        ErrorCase::RateLimited { .. } => (
            40100,
            format!(
                "Due to too many requests, requests from App [{}] are temporarily restricted.",
                d.app_id.as_deref().unwrap_or("")
            ),
        ),
        ErrorCase::Outage | ErrorCase::TransientParamError => {
            (50002, msg("System error, please try again later."))
        }
        ErrorCase::TaskPending => (40201, msg("Task is not ready, please try again later.")),
        ErrorCase::NotFound | ErrorCase::ObjectDeleted | ErrorCase::BatchItemsFailed { .. } => {
            (40007, msg("The object does not exist."))
        }
        ErrorCase::InvalidParams
        | ErrorCase::OAuthInvalidRequest
        | ErrorCase::MediaRejected { .. } => (40002, msg("Invalid parameters.")),
        ErrorCase::OAuthInvalidClient => (40101, msg("The app_id or secret is invalid.")),
        ErrorCase::OAuthInvalidGrant => (40110, msg("The auth_code is invalid, used or expired.")),
        ErrorCase::RefreshTokenRefused { expired: false } => {
            (40107, msg("The refresh token is invalid."))
        }
        ErrorCase::RefreshTokenRefused { expired: true } => {
            (40103, msg("The refresh token has expired."))
        }
        ErrorCase::AuthorizerGone {
            user_logged_out: false,
        } => (
            40114,
            msg("The advertiser has logged out of this authorization."),
        ),
        ErrorCase::AuthorizerGone {
            user_logged_out: true,
        } => (40120, msg("The TikTok user is not logged in.")),
        ErrorCase::AccessRefused { blocked: false } => (40003, msg("Forbidden.")),
        ErrorCase::AccessRefused { blocked: true } => (41000, msg("Blocked.")),
        ErrorCase::EndpointGone { retired: false } => (40400, msg("Route not found.")),
        ErrorCase::EndpointGone { retired: true } => (41001, msg("This interface is offline.")),
        ErrorCase::StaleSignature => (40115, msg("The request timestamp has expired.")),
        ErrorCase::OAuthUnsupportedGrant => (40108, msg("The grant_type is invalid.")),
    };
    let rid = request_id();
    Reply::json(
        200,
        &json!({"code": code, "message": message, "request_id": rid, "data": {}}),
    )
    .header("x-tt-logid", rid)
}

/// A report task's status answer (/report/task/check/): code 0 in HTTP 200 whatever the status.
pub(crate) fn task_status(id: &str, status: &str) -> Reply {
    let rid = request_id();
    Reply::json(
        200,
        &json!({"code": 0, "message": "OK", "request_id": rid, "data": {"task_id": id, "status": status}}),
    )
    .header("x-tt-logid", rid)
}

pub(crate) fn routes() -> Router<Sandbox> {
    Router::new()
        .route(&format!("{BASE}/oauth2/access_token/"), post(token))
        .route(&format!("{BASE}/oauth2/revoke_token/"), post(revoke))
        .route(
            &format!("{BASE}/tt_user/oauth2/refresh_token/"),
            post(refresh),
        )
        .route(&format!("{BASE}/user/info/"), get(user_info))
        .route(&format!("{BASE}/oauth2/advertiser/get/"), get(advertisers))
        .route(&format!("{BASE}/campaign/get/"), get(campaigns))
        .route(&format!("{BASE}/report/task/create/"), post(report_create))
        .route(&format!("{BASE}/report/task/check/"), get(report_check))
        .route(
            &format!("{BASE}/report/task/download/"),
            get(report_download),
        )
}

fn fail(sb: &Sandbox, case: ErrorCase, message: &str) -> Response {
    refuse(sb, P, case, &ErrorDetail::message(message))
}

fn ok(data: Value) -> Response {
    let rid = request_id();
    Reply::json(
        200,
        &json!({"code": 0, "message": "OK", "request_id": rid, "data": data}),
    )
    .header("x-tt-logid", rid)
    .into_response()
}

fn field<'a>(body: &'a Value, name: &str) -> Option<&'a str> {
    body.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

async fn token(State(sb): State<Sandbox>, body: Bytes) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        sb.counters().token_call(P, None, "auth_code");
        return fail(
            &sb,
            ErrorCase::OAuthInvalidRequest,
            "The request body must be JSON.",
        );
    };
    if body.get("refresh_token").is_some() {
        // Marketing API tokens are long-term: a refresh token sent here is not one (40107).
        sb.counters().token_call(P, None, "refresh_token");
        return fail(
            &sb,
            ErrorCase::RefreshTokenRefused { expired: false },
            "Refresh tokens are not accepted here: Marketing API access tokens are long-term.",
        );
    }
    let (Some(app_id), Some(secret), Some(code)) = (
        field(&body, "app_id"),
        field(&body, "secret"),
        field(&body, "auth_code"),
    ) else {
        sb.counters().token_call(P, None, "auth_code");
        return fail(
            &sb,
            ErrorCase::OAuthInvalidRequest,
            "app_id, secret and auth_code are required.",
        );
    };
    let Some(app) = sb
        .ledger()
        .app(P, app_id)
        .filter(|a| a.secret_matches(secret))
    else {
        sb.counters().token_call(P, None, "auth_code");
        return fail(
            &sb,
            ErrorCase::OAuthInvalidClient,
            "The app_id or secret is invalid.",
        );
    };
    let now = sb.now();
    let redeemed = sb
        .ledger()
        .redeem_code(code, P, &app.client_id, None, None, now);
    let code = match redeemed {
        Ok(c) => c,
        Err(r) => {
            sb.counters().token_call(P, None, "auth_code");
            return match r {
                CodeRefusal::WrongApp => fail(
                    &sb,
                    ErrorCase::AppMismatch,
                    "The auth_code was issued to another app.",
                ),
                CodeRefusal::Used => fail(
                    &sb,
                    ErrorCase::OAuthInvalidGrant,
                    "The auth_code has been used.",
                ),
                CodeRefusal::Expired => fail(
                    &sb,
                    ErrorCase::OAuthInvalidGrant,
                    "The auth_code has expired.",
                ),
                _ => fail(
                    &sb,
                    ErrorCase::OAuthInvalidGrant,
                    "The auth_code is invalid.",
                ),
            };
        }
    };
    let grant = sb.ledger().new_grant(&code, now);
    sb.counters().token_call(P, Some(&grant.id), "auth_code");
    if app.refresh_tokens {
        // A creator token: 24 h, with a one-year refresh token.
        let lifetime = sb.config().access_lifetime(P).unwrap_or(CREATOR_ACCESS);
        let (access, _) =
            sb.ledger()
                .issue_access(&grant, AccessKind::Standard, "", Some(lifetime), now);
        let (refresh, _) = sb
            .ledger()
            .issue_refresh(&grant, "", Some(CREATOR_REFRESH), now);
        return token_reply(
            &sb,
            P,
            json!({"code": 0, "message": "OK", "request_id": request_id(), "data": {
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": lifetime.as_secs(),
                "refresh_token": refresh,
                "refresh_token_expires_in": CREATOR_REFRESH.as_secs(),
                "advertiser_ids": advertiser_ids(&grant),
                "scope": scope_ids(&grant),
            }}),
        );
    }
    let (access, _) = sb.ledger().issue_access(
        &grant,
        AccessKind::Standard,
        "",
        sb.config().access_lifetime(P),
        now,
    );
    token_reply(
        &sb,
        P,
        json!({"code": 0, "message": "OK", "request_id": request_id(), "data": {
            "access_token": access,
            "advertiser_ids": advertiser_ids(&grant),
            "scope": scope_ids(&grant),
        }}),
    )
}

fn scope_ids(grant: &crate::ledger::Grant) -> Vec<u32> {
    SCOPE_IDS
        .iter()
        .filter(|(name, _)| grant.has_scope(name))
        .map(|(_, id)| *id)
        .collect()
}

/// Renews a creator token (platforms.md §2: `{client_id, client_secret, grant_type:
/// "refresh_token", refresh_token}` as JSON). The refresh token is kept, with its remaining
/// lifetime, unless the rotation fault is on.
async fn refresh(State(sb): State<Sandbox>, body: Bytes) -> Response {
    let body = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
    let (Some(client_id), Some(secret), Some(grant_type), Some(rt)) = (
        field(&body, "client_id"),
        field(&body, "client_secret"),
        field(&body, "grant_type"),
        field(&body, "refresh_token"),
    ) else {
        sb.counters().token_call(P, None, "refresh_token");
        return fail(
            &sb,
            ErrorCase::OAuthInvalidRequest,
            "client_id, client_secret, grant_type and refresh_token are required.",
        );
    };
    if grant_type != "refresh_token" {
        sb.counters().token_call(P, None, "refresh_token");
        return fail(
            &sb,
            ErrorCase::OAuthUnsupportedGrant,
            "grant_type must be refresh_token.",
        );
    }
    if sb
        .ledger()
        .app(P, client_id)
        .filter(|a| a.secret_matches(secret))
        .is_none()
    {
        sb.counters().token_call(P, None, "refresh_token");
        return fail(
            &sb,
            ErrorCase::OAuthInvalidClient,
            "The client_id or client_secret is invalid.",
        );
    }
    let now = sb.now();
    let (rotate, grace) = {
        let s = sb.faults(P).settings.read();
        (s.rotation, s.reuse_grace)
    };
    let (grant, refresh_expiry) = match sb
        .ledger()
        .use_refresh(P, client_id, rt, rotate, grace, now)
    {
        Ok(ok) => ok,
        Err(r) => {
            sb.counters().token_call(P, None, "refresh_token");
            let expired = matches!(r, RefreshRefusal::Expired);
            return fail(
                &sb,
                ErrorCase::RefreshTokenRefused { expired },
                if expired {
                    "The refresh token has expired."
                } else {
                    "The refresh token is invalid."
                },
            );
        }
    };
    sb.counters()
        .token_call(P, Some(&grant.id), "refresh_token");
    let lifetime = sb.config().access_lifetime(P).unwrap_or(CREATOR_ACCESS);
    let (access, _) =
        sb.ledger()
            .issue_access(&grant, AccessKind::Standard, "", Some(lifetime), now);
    let remaining = refresh_expiry.map(|e| (e - now).to_std().unwrap_or_default());
    let refresh = if rotate {
        sb.ledger().issue_refresh(&grant, "", remaining, now).0
    } else {
        rt.to_string()
    };
    token_reply(
        &sb,
        P,
        json!({"code": 0, "message": "OK", "request_id": request_id(), "data": {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": lifetime.as_secs(),
            "refresh_token": refresh,
            "refresh_token_expires_in": remaining.map_or(0, |d| d.as_secs()),
            "scope": scope_ids(&grant),
        }}),
    )
}

fn advertiser_ids(grant: &crate::ledger::Grant) -> Vec<String> {
    (0..2)
        .map(|i| {
            (grant.numeric_id(&format!("advertiser/{i}")) % 10_000_000_000_000_000_000).to_string()
        })
        .collect()
}

async fn revoke(State(sb): State<Sandbox>, body: Bytes) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return fail(
            &sb,
            ErrorCase::OAuthInvalidRequest,
            "The request body must be JSON.",
        );
    };
    let (Some(app_id), Some(secret), Some(token)) = (
        field(&body, "app_id"),
        field(&body, "secret"),
        field(&body, "access_token"),
    ) else {
        return fail(
            &sb,
            ErrorCase::OAuthInvalidRequest,
            "app_id, secret and access_token are required.",
        );
    };
    if sb
        .ledger()
        .app(P, app_id)
        .filter(|a| a.secret_matches(secret))
        .is_none()
    {
        return fail(
            &sb,
            ErrorCase::OAuthInvalidClient,
            "The app_id or secret is invalid.",
        );
    }
    match sb.ledger().check_access(P, Some(token), sb.now()) {
        Ok(t) if t.grant.app.client_id != app_id => fail(
            &sb,
            ErrorCase::AppMismatch,
            "The app_id does not match the access token.",
        ),
        Ok(_) => {
            sb.ledger().revoke_access(token);
            ok(json!({}))
        }
        Err(_) => fail(&sb, ErrorCase::TokenRevoked, ""),
    }
}

/// Gate + the per-app, per-endpoint QPS/QPM limits of the host, signalled with 40100 inside
/// HTTP 200.
fn authorize(
    sb: &Sandbox,
    host: Environment,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Arc<AccessToken>, Response> {
    let token = headers
        .get("access-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let access = match sb.gate_on(P, host, token.as_deref()) {
        Ok(a) => a,
        Err(Gate::Token(r)) => {
            let case = match r {
                Refusal::Missing => ErrorCase::CredentialMissing,
                Refusal::Expired => ErrorCase::TokenExpired,
                // 40105 is "incorrect or revoked": the platform does not tell them apart.
                Refusal::Unknown | Refusal::Revoked => ErrorCase::TokenRevoked,
            };
            return Err(refuse(sb, P, case, &ErrorDetail::default()));
        }
        Err(Gate::Throttled) => {
            return Err(rate_limited(sb, None));
        }
    };
    if sb.config().enforce_rate_limits {
        let now = sb.now();
        let app = &access.grant.app.client_id;
        let path = uri
            .path()
            .strip_prefix(tokenwarden_core::provider::SANDBOX_HOST_PREFIX)
            .filter(|rest| rest.starts_with('/'))
            .unwrap_or(uri.path());
        // Production counts per app over every endpoint; the sandbox host per endpoint.
        let (limits, scope) = match host {
            Environment::Production => (sb.config().tiktok_business_limits, "app".to_string()),
            Environment::Sandbox => (sb.config().tiktok_business_sandbox_limits, path.to_string()),
        };
        let mut windows: Vec<(String, u32, Duration)> = Vec::new();
        let key = |scope: &str, w: &str| format!("ttb:{}:{app}:{scope}:{w}", host.as_str());
        let (qps, qpm, qpd) = limits;
        windows.push((key(&scope, "s"), qps, Duration::from_secs(1)));
        windows.push((key(&scope, "m"), qpm, Duration::from_secs(60)));
        windows.push((key(&scope, "d"), qpd, Duration::from_secs(86_400)));
        if host == Environment::Production
            && let Some((_, s, m, d)) = STRICTER.iter().find(|(p, ..)| *p == path)
        {
            windows.push((key(path, "s"), *s, Duration::from_secs(1)));
            windows.push((key(path, "m"), *m, Duration::from_secs(60)));
            windows.push((key(path, "d"), *d, Duration::from_secs(86_400)));
        }
        let over = windows
            .into_iter()
            .any(|(k, n, w)| sb.limits().admit(k, n.into(), w, now).is_err());
        if over {
            return Err(rate_limited(sb, Some(app.clone())));
        }
    }
    Ok(access)
}

/// Endpoints whose own limits are stricter than the app's: (path, QPS, QPM, QPD) on the Basic
/// tier (platforms.md §2: "`/report/task/create/` 2/60/4500").
const STRICTER: &[(&str, u32, u32, u32)] = &[("/open_api/v1.3/report/task/create/", 2, 60, 4500)];

fn rate_limited(sb: &Sandbox, app: Option<String>) -> Response {
    refuse(
        sb,
        P,
        ErrorCase::RateLimited { limit: Limit::App },
        &ErrorDetail {
            app_id: app,
            ..Default::default()
        },
    )
}

async fn user_info(
    State(sb): State<Sandbox>,
    Extension(host): Extension<Environment>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let a = match authorize(&sb, host, &headers, &uri) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let g = &a.grant;
    ok(json!({
        "core_user_id": g.numeric_id("user").to_string(),
        "display_name": g.account,
        "email": format!("{}@example.com", g.account),
        "avatar_url": "",
        "create_time": g.created_at.timestamp(),
    }))
}

async fn advertisers(
    State(sb): State<Sandbox>,
    Extension(host): Extension<Environment>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let a = match authorize(&sb, host, &headers, &uri) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let (Some(app_id), Some(secret)) = (q.get("app_id"), q.get("secret")) else {
        return fail(
            &sb,
            ErrorCase::InvalidParams,
            "app_id and secret are required.",
        );
    };
    if *app_id != a.grant.app.client_id {
        return fail(
            &sb,
            ErrorCase::AppMismatch,
            "The app_id does not match the access token.",
        );
    }
    if !a.grant.app.secret_matches(secret) {
        return fail(
            &sb,
            ErrorCase::OAuthInvalidClient,
            "The app_id or secret is invalid.",
        );
    }
    let list: Vec<Value> = if a.grant.role_removed() {
        Vec::new()
    } else {
        advertiser_ids(&a.grant)
            .into_iter()
            .enumerate()
            .map(|(i, id)| json!({"advertiser_id": id, "advertiser_name": format!("Advertiser {}", i + 1)}))
            .collect()
    };
    ok(json!({"list": list}))
}

/// The advertiser must be one of the grant's, the role must be intact, and the scope granted.
fn advertiser_check(
    sb: &Sandbox,
    a: &AccessToken,
    advertiser: Option<&str>,
    scope: &str,
) -> Result<String, Response> {
    let Some(adv) = advertiser.filter(|s| !s.is_empty()) else {
        return Err(fail(
            sb,
            ErrorCase::InvalidParams,
            "advertiser_id: Missing data for required field.",
        ));
    };
    if !advertiser_ids(&a.grant).iter().any(|id| id == adv) || a.grant.role_removed() {
        return Err(fail(
            sb,
            ErrorCase::RoleMissing,
            &format!(
                "No permission to operate advertiser {adv}: the user's role on the advertiser has been removed or was never granted."
            ),
        ));
    }
    if !a.grant.has_scope(scope) {
        return Err(refuse(
            sb,
            P,
            ErrorCase::ScopeMissing,
            &ErrorDetail::default(),
        ));
    }
    Ok(adv.to_string())
}

async fn campaigns(
    State(sb): State<Sandbox>,
    Extension(host): Extension<Environment>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let a = match authorize(&sb, host, &headers, &uri) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let adv = match advertiser_check(
        &sb,
        &a,
        q.get("advertiser_id").map(String::as_str),
        "campaign_management",
    ) {
        Ok(adv) => adv,
        Err(r) => return r,
    };
    let parse = |k: &str| q.get(k).map(|v| v.parse::<usize>());
    let page = match parse("page") {
        None => 1,
        Some(Ok(p)) if p >= 1 => p,
        _ => {
            return fail(
                &sb,
                ErrorCase::InvalidParams,
                "page: Must be greater than or equal to 1.",
            );
        }
    };
    let page_size = match parse("page_size") {
        None => 10,
        Some(Ok(s)) if (1..=1000).contains(&s) => s,
        _ => {
            return fail(
                &sb,
                ErrorCase::InvalidParams,
                "page_size: Must be between 1 and 1000.",
            );
        }
    };
    let (range, _) = page_of(
        CAMPAIGNS_PER_ACCOUNT,
        (page - 1).saturating_mul(page_size),
        page_size,
    );
    let list: Vec<Value> = range
        .map(|i| json!({
            "campaign_id": (a.grant.numeric_id(&format!("{adv}/campaign/{i}")) % 10_000_000_000_000_000_000).to_string(),
            "campaign_name": format!("Campaign {}", i + 1),
            "advertiser_id": adv,
            "operation_status": if i % 3 == 0 { "DISABLE" } else { "ENABLE" },
            "objective_type": "TRAFFIC",
        }))
        .collect();
    ok(json!({"list": list, "page_info": {
        "page": page, "page_size": page_size,
        "total_number": CAMPAIGNS_PER_ACCOUNT,
        "total_page": CAMPAIGNS_PER_ACCOUNT.div_ceil(page_size),
    }}))
}

async fn report_create(
    State(sb): State<Sandbox>,
    Extension(host): Extension<Environment>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let a = match authorize(&sb, host, &headers, &uri) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Err(r) = advertiser_check(&sb, &a, field(&body, "advertiser_id"), "reporting") {
        return r;
    }
    ok(json!({"task_id": sb.start_job("")}))
}

fn task<'a>(
    sb: &Sandbox,
    a: &AccessToken,
    q: &'a HashMap<String, String>,
) -> Result<(&'a str, bool), Response> {
    advertiser_check(
        sb,
        a,
        q.get("advertiser_id").map(String::as_str),
        "reporting",
    )?;
    let Some(id) = q.get("task_id").filter(|s| !s.is_empty()) else {
        return Err(fail(
            sb,
            ErrorCase::InvalidParams,
            "task_id: Missing data for required field.",
        ));
    };
    match sb.job_done(id) {
        None => Err(fail(sb, ErrorCase::NotFound, "The task does not exist.")),
        Some(done) => Ok((id, done)),
    }
}

async fn report_check(
    State(sb): State<Sandbox>,
    Extension(host): Extension<Environment>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let a = match authorize(&sb, host, &headers, &uri) {
        Ok(a) => a,
        Err(r) => return r,
    };
    match task(&sb, &a, &q) {
        Ok((id, done)) => {
            task_status(id, if done { "SUCCESS" } else { "PROCESSING" }).into_response()
        }
        Err(r) => r,
    }
}

/// Fetching a report before it is done gives 40201 "task not ready".
async fn report_download(
    State(sb): State<Sandbox>,
    Extension(host): Extension<Environment>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let a = match authorize(&sb, host, &headers, &uri) {
        Ok(a) => a,
        Err(r) => return r,
    };
    match task(&sb, &a, &q) {
        Ok((_, false)) => refuse(&sb, P, ErrorCase::TaskPending, &ErrorDetail::default()),
        Ok((id, true)) => {
            ok(json!({"download_url": format!("https://example.invalid/reports/{id}.csv")}))
        }
        Err(r) => r,
    }
}

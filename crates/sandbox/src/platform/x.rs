//! X API v2 with OAuth 2.0 user context (platforms-ads.md Part B §4, the v2 parts).
//!
//! - Consent at `/i/oauth2/authorize` (x.com) with PKCE required; the token endpoint at
//!   `/2/oauth2/token` (api.x.com; form-encoded, HTTP Basic required of a confidential client,
//!   else 401 `unauthorized_client` "Missing valid authorization header"); a refresh token only
//!   with `offline.access`; every refresh issues a new refresh token and spends the old one, and
//!   a spent, unknown or revoked one is 400 `invalid_request` "Value passed for the token was
//!   invalid."; a reused code "Value passed for the authorization code was invalid.".
//! - Revocation at `/2/oauth2/revoke` (Basic, `token` + `token_type_hint`): `{"revoked": true}`.
//! - The API: `/2/users/me` (the probe, `users.read`), `/2/users/{id}`; RFC 7807 problems
//!   (`{"title","detail","type","status"}`); `x-rate-limit-limit/remaining/reset` (epoch seconds)
//!   on every answer; the throttle fault answers the 15-minute window's 429, or with
//!   `"limit": "app"` the plan's monthly usage cap (`usage-capped`); an app that is not
//!   enrolled gets 403 `client-not-enrolled`.

use super::reddit::basic_client;
use super::{bearer, refuse, token_reply};
use crate::error_case::{ErrorCase, ErrorDetail, Limit, Reply};
use crate::ledger::{AccessKind, AccessToken, App, CodeRefusal, Refusal};
use crate::provider::Provider;
use crate::{Gate, Sandbox};
use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

const P: Provider = Provider::X;
const PROBLEMS: &str = "https://api.twitter.com/2/problems";

pub(crate) const TOKEN_PATHS: &[&str] = &["/2/oauth2/token", "/2/oauth2/revoke"];

pub(crate) const CASES: &[ErrorCase] = &[
    ErrorCase::TokenExpired,
    ErrorCase::ScopeMissing,
    ErrorCase::AppMismatch,
    ErrorCase::NotFound,
    ErrorCase::InvalidParams,
    ErrorCase::RateLimited { limit: Limit::User },
    ErrorCase::RateLimited { limit: Limit::App },
    ErrorCase::Outage,
    ErrorCase::OutagePage { status: 503 },
    ErrorCase::OAuthInvalidRequest,
    ErrorCase::OAuthInvalidClient,
    ErrorCase::OAuthInvalidGrant,
    ErrorCase::OAuthUnsupportedGrant,
    ErrorCase::ConsentRefused { declined: true },
    ErrorCase::ConsentRefused { declined: false },
];

/// An RFC 7807 problem as X sends it.
fn problem(status: u16, title: &str, detail: &str, kind: &str) -> Reply {
    Reply::json(
        status,
        &json!({"title": title, "detail": detail, "type": kind, "status": status}),
    )
}

/// The epoch second the rate window resets.
fn reset_epoch(d: &ErrorDetail) -> i64 {
    d.reset_at
        .or(d.now.map(|n| n + chrono::TimeDelta::seconds(900)))
        .map_or(1_800_000_900, |t| t.timestamp())
}

/// X's one rendering function.
pub(crate) fn render(case: ErrorCase, d: &ErrorDetail) -> Reply {
    let oauth = |status: u16, error: &str, description: &str| {
        Reply::json(
            status,
            &json!({"error": error, "error_description": description}),
        )
    };
    match case {
        ErrorCase::TokenExpired
        | ErrorCase::TokenExpiredUnspecific
        | ErrorCase::TokenInvalid
        | ErrorCase::TokenRevoked
        | ErrorCase::TokenRefusedPlainText
        | ErrorCase::TokenRefusedEmpty
        | ErrorCase::AuthorizerGone { .. }
        | ErrorCase::CredentialMissing => {
            problem(401, "Unauthorized", "Unauthorized", "about:blank")
        }
        ErrorCase::ScopeMissing | ErrorCase::RoleMissing | ErrorCase::AccessRefused { .. } => {
            problem(403, "Forbidden", "Forbidden", "about:blank")
        }
        // The app is not attached to a Project with the access this endpoint needs.
        ErrorCase::AppMismatch => Reply::json(
            403,
            &json!({
                "client_id": "28431637",
                "detail": "When authenticating requests to the Twitter API v2 endpoints, you must use keys and tokens from a Twitter developer App that is attached to a Project. You can create a project via the developer portal.",
                "registration_url": "https://developer.twitter.com/en/docs/projects/overview",
                "title": "Client Forbidden",
                "required_enrollment": "Appropriate Level of API Access",
                "reason": "client-not-enrolled",
                "type": format!("{PROBLEMS}/client-forbidden"),
            }),
        ),
        ErrorCase::NotFound | ErrorCase::ObjectDeleted => problem(
            404,
            "Not Found Error",
            d.message
                .as_deref()
                .unwrap_or("Could not find the resource."),
            &format!("{PROBLEMS}/resource-not-found"),
        ),
        ErrorCase::InvalidParams
        | ErrorCase::EndpointGone { .. }
        | ErrorCase::StaleSignature
        | ErrorCase::MediaRejected { .. }
        | ErrorCase::BatchItemsFailed { .. }
        | ErrorCase::WorkPending
        | ErrorCase::TaskPending => Reply::json(
            400,
            &json!({
                "errors": [{"parameters": {"id": ["x"]}, "message": d.message.as_deref().unwrap_or("The `id` query parameter value [x] is not valid")}],
                "title": "Invalid Request",
                "detail": "One or more parameters to your request was invalid.",
                "type": format!("{PROBLEMS}/invalid-request"),
            }),
        ),
        // This user's 15-minute window.
        ErrorCase::RateLimited {
            limit: Limit::User | Limit::AdAccount | Limit::UnderUnknownCode,
        } => problem(429, "Too Many Requests", "Too Many Requests", "about:blank")
            .header("x-rate-limit-limit", "75")
            .header("x-rate-limit-remaining", "0")
            .header("x-rate-limit-reset", reset_epoch(d).to_string()),
        // The app's plan: the monthly usage cap.
        ErrorCase::RateLimited {
            limit: Limit::App | Limit::Restricted,
        } => Reply::json(
            429,
            &json!({
                "title": "UsageCapExceeded",
                "detail": "Usage cap exceeded: Monthly product cap",
                "type": format!("{PROBLEMS}/usage-capped"),
                "account_id": 1_234_567_890u64,
                "product_name": "standard-basic",
                "period": "Monthly",
                "scope": "Product",
                "status": 429,
            }),
        ),
        ErrorCase::Outage | ErrorCase::TransientParamError | ErrorCase::WorkFailed => problem(
            503,
            "Service Unavailable",
            "Service Unavailable",
            "about:blank",
        ),
        ErrorCase::OutagePage { status } => crate::error_case::load_balancer_page(status),
        ErrorCase::ConsentRefused { declined } => super::consent_redirect(P, declined),
        ErrorCase::OAuthInvalidRequest => oauth(
            400,
            "invalid_request",
            d.message
                .as_deref()
                .unwrap_or("Missing required parameter [code_verifier]."),
        ),
        ErrorCase::OAuthInvalidClient => oauth(
            401,
            "unauthorized_client",
            "Missing valid authorization header",
        ),
        ErrorCase::OAuthInvalidGrant | ErrorCase::RefreshTokenRefused { .. } => oauth(
            400,
            "invalid_request",
            d.message
                .as_deref()
                .unwrap_or("Value passed for the token was invalid."),
        ),
        ErrorCase::OAuthUnsupportedGrant => {
            oauth(400, "unsupported_grant_type", "Unsupported grant type")
        }
    }
}

pub(crate) fn routes() -> Router<Sandbox> {
    Router::new()
        .route("/2/oauth2/token", post(token))
        .route("/2/oauth2/revoke", post(revoke))
        .route("/2/users/me", get(me))
        .route("/2/users/{id}", get(user))
}

fn basic_app(sb: &Sandbox, headers: &HeaderMap) -> Option<Arc<App>> {
    let (id, secret) = basic_client(headers)?;
    sb.ledger()
        .app(P, &id)
        .filter(|a| a.secret_matches(&secret))
}

fn fail(sb: &Sandbox, case: ErrorCase, message: Option<&str>) -> Response {
    let d = ErrorDetail {
        message: message.map(str::to_string),
        ..Default::default()
    };
    refuse(sb, P, case, &d)
}

async fn token(
    State(sb): State<Sandbox>,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let get = |k: &str| f.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let grant_type = get("grant_type").unwrap_or("-");
    let count_fail = || sb.counters().token_call(P, None, grant_type);
    let Some(app) = basic_app(&sb, &headers) else {
        count_fail();
        return fail(&sb, ErrorCase::OAuthInvalidClient, None);
    };
    let client_id = app.client_id.clone();
    if get("client_id").is_some_and(|c| c != client_id) {
        count_fail();
        return fail(&sb, ErrorCase::OAuthInvalidClient, None);
    }
    let now = sb.now();
    let (rotate, grace) = {
        let s = sb.faults(P).settings.read();
        (s.rotation, s.reuse_grace)
    };
    let grant = match grant_type {
        "authorization_code" => {
            let (Some(code), Some(redirect_uri)) = (get("code"), get("redirect_uri")) else {
                count_fail();
                return fail(
                    &sb,
                    ErrorCase::OAuthInvalidRequest,
                    Some("Missing required parameter [code]."),
                );
            };
            let Some(verifier) = get("code_verifier") else {
                count_fail();
                return fail(&sb, ErrorCase::OAuthInvalidRequest, None);
            };
            match sb.ledger().redeem_code(
                code,
                P,
                &client_id,
                Some(redirect_uri),
                Some(verifier),
                now,
            ) {
                Ok(c) => sb.ledger().new_grant(&c, now),
                Err(r) => {
                    count_fail();
                    let why = match r {
                        CodeRefusal::RedirectMismatch => {
                            "Value passed for the redirect uri did not match the uri of the authorization code."
                        }
                        CodeRefusal::PkceMismatch => {
                            "Value passed for the code verifier did not match the code challenge."
                        }
                        _ => "Value passed for the authorization code was invalid.",
                    };
                    return fail(&sb, ErrorCase::OAuthInvalidGrant, Some(why));
                }
            }
        }
        "refresh_token" => {
            let Some(rt) = get("refresh_token") else {
                count_fail();
                return fail(
                    &sb,
                    ErrorCase::OAuthInvalidRequest,
                    Some("Missing required parameter [refresh_token]."),
                );
            };
            match sb
                .ledger()
                .use_refresh(P, &client_id, rt, rotate, grace, now)
            {
                Ok((g, _)) => g,
                Err(_) => {
                    count_fail();
                    return fail(&sb, ErrorCase::OAuthInvalidGrant, None);
                }
            }
        }
        _ => {
            count_fail();
            return fail(&sb, ErrorCase::OAuthUnsupportedGrant, None);
        }
    };
    sb.counters().token_call(P, Some(&grant.id), grant_type);
    let lifetime = sb.config().access_lifetime(P);
    let (access, _) = sb
        .ledger()
        .issue_access(&grant, AccessKind::Standard, "", lifetime, now);
    let mut body = json!({
        "token_type": "bearer",
        "expires_in": lifetime.map_or(7200, |l| l.as_secs()),
        "access_token": access,
        "scope": grant.scopes().join(" "),
    });
    // A refresh token only with offline.access; a new one on every refresh (rotation).
    if grant.has_scope("offline.access") {
        let (v, _) = sb
            .ledger()
            .issue_refresh(&grant, "", P.refresh_lifetime(), now);
        body["refresh_token"] = json!(v);
    }
    token_reply(&sb, P, body)
}

/// `POST /2/oauth2/revoke`: a refresh token ends the grant, an access token only itself.
async fn revoke(
    State(sb): State<Sandbox>,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    if basic_app(&sb, &headers).is_none() {
        return fail(&sb, ErrorCase::OAuthInvalidClient, None);
    }
    let token = f.get("token").map(String::as_str).unwrap_or("");
    if token.is_empty() {
        return fail(
            &sb,
            ErrorCase::OAuthInvalidRequest,
            Some("Missing required parameter [token]."),
        );
    }
    if let Some(g) = sb.ledger().refresh_grant(P, token) {
        sb.ledger().revoke_grant(&g);
    } else {
        sb.ledger().revoke_access(token);
    }
    Reply::json(200, &json!({"revoked": true})).into_response()
}

/// The 15-minute window's headers, on every answer.
fn with_rate(sb: &Sandbox, r: Reply) -> Reply {
    let reset = (sb.now() + chrono::TimeDelta::seconds(900)).timestamp();
    r.header("x-rate-limit-limit", "75")
        .header("x-rate-limit-remaining", "74")
        .header("x-rate-limit-reset", reset.to_string())
}

/// The gate (throttle fault, token), then `users.read`.
fn authorize(sb: &Sandbox, headers: &HeaderMap) -> Result<Arc<AccessToken>, Reply> {
    let access = match sb.gate(P, bearer(headers).as_deref()) {
        Ok(a) => a,
        Err(Gate::Token(r)) => {
            let case = match r {
                Refusal::Missing => ErrorCase::CredentialMissing,
                Refusal::Expired => ErrorCase::TokenExpired,
                Refusal::Revoked => ErrorCase::TokenRevoked,
                Refusal::Unknown => ErrorCase::TokenInvalid,
            };
            return Err(render(case, &ErrorDetail::default()));
        }
        Err(Gate::Throttled) => {
            crate::counters::Counters::bump(&sb.counters().of(P).rate_limited_sent);
            let limit = if sb.faults(P).settings.read().throttle_app {
                Limit::App
            } else {
                Limit::User
            };
            let d = ErrorDetail {
                now: Some(sb.now()),
                reset_at: Some(sb.now() + chrono::TimeDelta::seconds(60)),
                ..Default::default()
            };
            return Err(render(ErrorCase::RateLimited { limit }, &d));
        }
    };
    if !access.grant.has_scope("users.read") || !access.grant.has_scope("tweet.read") {
        return Err(render(ErrorCase::ScopeMissing, &ErrorDetail::default()));
    }
    Ok(access)
}

fn user_id(a: &AccessToken) -> String {
    (a.grant.numeric_id("user") % 1_900_000_000_000_000_000).to_string()
}

/// The probe: `{"data": {"id", "name", "username"}}`.
async fn me(State(sb): State<Sandbox>, headers: HeaderMap) -> Response {
    match authorize(&sb, &headers) {
        Ok(a) => with_rate(
            &sb,
            Reply::json(
                200,
                &json!({"data": {"id": user_id(&a), "name": a.grant.account, "username": a.grant.account}}),
            ),
        )
        .into_response(),
        Err(r) => r.into_response(),
    }
}

/// `GET /2/users/{id}`: the user itself, a numeric id of nobody (404 problem), or a bad id (400).
async fn user(State(sb): State<Sandbox>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let a = match authorize(&sb, &headers) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    if id.is_empty() || id.len() > 19 || !id.bytes().all(|b| b.is_ascii_digit()) {
        let d = ErrorDetail::message(format!(
            "The `id` query parameter value [{}] is not valid",
            id.chars().take(40).collect::<String>()
        ));
        return render(ErrorCase::InvalidParams, &d).into_response();
    }
    if id != user_id(&a) {
        let d = ErrorDetail::message(format!("Could not find user with id: [{id}]."));
        return render(ErrorCase::NotFound, &d).into_response();
    }
    with_rate(
        &sb,
        Reply::json(
            200,
            &json!({"data": {"id": id, "name": a.grant.account, "username": a.grant.account}}),
        ),
    )
    .into_response()
}

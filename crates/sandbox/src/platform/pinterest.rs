//! Pinterest API v5 (platforms-ads.md Part B §2): consent at `/oauth/` (comma-separated scopes),
//! the token endpoint `POST /v5/oauth/token` with HTTP Basic `app_id:app_secret` (form-encoded;
//! code exchange, and refresh answering a NEW refresh token with `refresh_token_expires_in` and
//! `refresh_token_expires_at` every time: continuous refresh tokens of 60 days), and the API:
//! `GET /v5/user_account` (the probe, `user_accounts:read`), `GET /v5/ad_accounts` (`ads:read`),
//! `POST /v5/ad_accounts/{id}/reports` and `GET /v5/ad_accounts/{id}/reports?token=…` (async,
//! `report_status` IN_PROGRESS → FINISHED).
//!
//! The same routes serve both hosts: production (`api.pinterest.com`) and the API sandbox
//! (`api-sandbox.pinterest.com`), where only sandbox apps' tokens work; on the other host a token
//! gets the one authentication failure, 401 code 2, as production answers a sandbox token. Errors
//! are `{"code": <int>, "message": "…"}` (with `"status":"failure"` on authentication failures):
//! 401 code 3 for a missing scope, 401 code 283 for a dead refresh token at the token endpoint,
//! 403 code 29 for a Trial app or a resource the account may not reach, 429 code 8, 503 code 4197.

use super::{bearer, refuse, token_reply};
use crate::error_case::{ErrorCase, ErrorDetail, Limit, Reply, load_balancer_page};
use crate::ledger::{AccessKind, AccessToken, Refusal};
use crate::provider::Provider;
use crate::{Gate, Sandbox};
use axum::Extension;
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use tokenwarden_core::connection::Environment;

const P: Provider = Provider::Pinterest;

pub(crate) const CASES: &[ErrorCase] = &[
    // 401 code 2: expired, invalid and the other environment alike.
    ErrorCase::TokenExpired,
    // 401 code 3.
    ErrorCase::ScopeMissing,
    // 403 code 29: the Trial tier writing to production; a resource the account may not reach.
    ErrorCase::AccessRefused { blocked: false },
    ErrorCase::RoleMissing,
    ErrorCase::NotFound,
    ErrorCase::InvalidParams,
    ErrorCase::RateLimited { limit: Limit::User },
    ErrorCase::RateLimited { limit: Limit::App },
    ErrorCase::Outage,
    ErrorCase::OutagePage { status: 502 },
    ErrorCase::OutagePage { status: 503 },
    ErrorCase::WorkPending,
    ErrorCase::WorkFailed,
    ErrorCase::OAuthInvalidRequest,
    ErrorCase::OAuthInvalidClient,
    ErrorCase::OAuthInvalidGrant,
    ErrorCase::OAuthUnsupportedGrant,
    ErrorCase::ConsentRefused { declined: true },
    ErrorCase::ConsentRefused { declined: false },
];

/// The envelope, with the request id Pinterest sends on every answer.
fn error(status: u16, code: u32, message: &str, failure: bool) -> Reply {
    let mut v = json!({"code": code, "message": message});
    if failure {
        v["status"] = json!("failure");
    }
    with_rid(Reply::json(status, &v))
}

fn with_rid(r: Reply) -> Reply {
    r.header("x-pinterest-rid", crate::ledger::short_id())
        .header("pinterest-generated-by", "sandbox")
}

fn report_status(status: &str) -> Reply {
    with_rid(Reply::json(
        200,
        &json!({"report_status": status, "url": null, "size": null}),
    ))
}

/// Pinterest's one rendering function.
pub(crate) fn render(case: ErrorCase, d: &ErrorDetail) -> Reply {
    let msg = |default: &str| d.message.clone().unwrap_or_else(|| default.to_string());
    match case {
        ErrorCase::TokenExpired
        | ErrorCase::TokenExpiredUnspecific
        | ErrorCase::TokenInvalid
        | ErrorCase::TokenRevoked
        | ErrorCase::TokenRefusedPlainText
        | ErrorCase::TokenRefusedEmpty
        | ErrorCase::AuthorizerGone { .. }
        | ErrorCase::AppMismatch
        | ErrorCase::CredentialMissing => error(401, 2, "Authentication failed.", true),
        ErrorCase::ScopeMissing => error(
            401,
            3,
            "Your token does not have sufficient permissions to perform this operation. Please ensure your token is authorized with the correct set of scopes.",
            false,
        ),
        ErrorCase::AccessRefused { .. } => error(
            403,
            29,
            "Apps with Trial access may not create Pins in production https://api.pinterest.com - use API Sandbox https://api-sandbox.pinterest.com instead.",
            false,
        ),
        ErrorCase::RoleMissing => error(
            403,
            29,
            "You are not permitted to access that resource.",
            false,
        ),
        ErrorCase::NotFound | ErrorCase::ObjectDeleted | ErrorCase::BatchItemsFailed { .. } => {
            error(404, 404, &msg("Ad account not found."), false)
        }
        ErrorCase::InvalidParams
        | ErrorCase::EndpointGone { .. }
        | ErrorCase::StaleSignature
        | ErrorCase::MediaRejected { .. } => error(400, 1, &msg("Invalid parameters."), false),
        ErrorCase::RateLimited {
            limit: Limit::App | Limit::Restricted,
        } => error(429, 30, "This request exceeded a rate limit.", false),
        ErrorCase::RateLimited { .. } => error(
            429,
            8,
            "This request exceeded a rate limit. This can be caused by too many requests from an app.",
            false,
        ),
        ErrorCase::Outage | ErrorCase::TransientParamError | ErrorCase::TaskPending => {
            error(500, 500, "Internal server error.", false)
        }
        ErrorCase::OutagePage { status: 503 } => error(
            503,
            4197,
            "The endpoint has been ramped down and is currently not accepting any traffic.",
            false,
        ),
        ErrorCase::OutagePage { status } => load_balancer_page(status),
        ErrorCase::WorkPending => report_status("IN_PROGRESS"),
        ErrorCase::WorkFailed => report_status("FAILED"),
        ErrorCase::ConsentRefused { declined } => super::consent_redirect(P, declined),
        ErrorCase::OAuthInvalidRequest => error(
            400,
            1,
            &msg("Missing request body parameter: grant_type"),
            false,
        ),
        // The app's Basic credentials refused.
        ErrorCase::OAuthInvalidClient => error(401, 2, "Authentication failed.", true),
        // pinterest-python-sdk#114: 401, not invalid_grant.
        ErrorCase::OAuthInvalidGrant | ErrorCase::RefreshTokenRefused { .. } => {
            error(401, 283, "The authorization grant is invalid", false)
        }
        ErrorCase::OAuthUnsupportedGrant => {
            error(400, 1, &msg("Invalid request body: grant_type"), false)
        }
    }
}

/// Both hosts serve these; each learns which one it is from the `Environment` extension.
pub(crate) fn routes() -> Router<Sandbox> {
    Router::new()
        .route("/v5/oauth/token", post(token))
        .route("/v5/user_account", get(user_account))
        .route("/v5/ad_accounts", get(ad_accounts))
        .route(
            "/v5/ad_accounts/{id}/reports",
            post(create_report).get(get_report),
        )
}

fn fail(sb: &Sandbox, case: ErrorCase, message: &str) -> Response {
    refuse(sb, P, case, &ErrorDetail::message(message))
}

/// The app named by `Authorization: Basic` (id and secret each form-urlencoded, RFC 6749
/// §2.3.1), when its secret matches.
fn basic_client(sb: &Sandbox, headers: &HeaderMap) -> Option<Arc<crate::ledger::App>> {
    use base64::Engine;
    let v = headers.get("authorization")?.to_str().ok()?;
    let (scheme, b64) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (id, secret) = raw.split_once(':')?;
    let decode = |s: &str| -> String {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let (id, secret) = (decode(id), decode(secret));
    sb.ledger()
        .app(P, &id)
        .filter(|a| a.secret_matches(&secret))
}

/// `POST /v5/oauth/token` (either host).
async fn token(
    State(sb): State<Sandbox>,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let get = |k: &str| f.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let grant_type = get("grant_type").unwrap_or("-");
    let count_fail = || sb.counters().token_call(P, None, grant_type);
    // Client credentials in the body are not what Pinterest takes: Basic only.
    let Some(app) = basic_client(&sb, &headers) else {
        count_fail();
        return fail(&sb, ErrorCase::OAuthInvalidClient, "Authentication failed.");
    };
    let now = sb.now();
    let (rotate, grace) = {
        let s = sb.faults(P).settings.read();
        (s.rotation, s.reuse_grace)
    };
    let (grant, echoed, response_type) = match grant_type {
        "authorization_code" => {
            let (Some(code), Some(redirect_uri)) = (get("code"), get("redirect_uri")) else {
                count_fail();
                return fail(
                    &sb,
                    ErrorCase::OAuthInvalidRequest,
                    "Missing request body parameter: code",
                );
            };
            match sb
                .ledger()
                .redeem_code(code, P, &app.client_id, Some(redirect_uri), None, now)
            {
                Ok(c) => (sb.ledger().new_grant(&c, now), None, "authorization_code"),
                Err(_) => {
                    count_fail();
                    return fail(
                        &sb,
                        ErrorCase::OAuthInvalidGrant,
                        "The authorization grant is invalid",
                    );
                }
            }
        }
        "refresh_token" => {
            let Some(rt) = get("refresh_token") else {
                count_fail();
                return fail(
                    &sb,
                    ErrorCase::OAuthInvalidRequest,
                    "Missing request body parameter: refresh_token",
                );
            };
            match sb
                .ledger()
                .use_refresh(P, &app.client_id, rt, rotate, grace, now)
            {
                Ok((g, exp)) => (g, (!rotate).then(|| (rt.to_string(), exp)), "refresh_token"),
                Err(_) => {
                    count_fail();
                    return fail(
                        &sb,
                        ErrorCase::OAuthInvalidGrant,
                        "The authorization grant is invalid",
                    );
                }
            }
        }
        _ => {
            count_fail();
            return fail(
                &sb,
                ErrorCase::OAuthUnsupportedGrant,
                "Invalid request body: grant_type",
            );
        }
    };
    sb.counters().token_call(P, Some(&grant.id), grant_type);
    let lifetime = sb.config().access_lifetime(P);
    let (access, _) =
        sb.ledger()
            .issue_access(&grant, AccessKind::Standard, "pina_", lifetime, now);
    let (refresh, refresh_end) = match echoed {
        Some((rt, exp)) => (rt, exp),
        None => {
            let (v, t) = sb
                .ledger()
                .issue_refresh(&grant, "pinr_", P.refresh_lifetime(), now);
            (v, t.expires_at)
        }
    };
    let end = refresh_end.unwrap_or(now);
    token_reply(
        &sb,
        P,
        json!({
            "access_token": access,
            "refresh_token": refresh,
            "response_type": response_type,
            "token_type": "bearer",
            "expires_in": lifetime.map_or(2_592_000, |l| l.as_secs()),
            "refresh_token_expires_in": (end - now).num_seconds().max(0),
            "refresh_token_expires_at": end.timestamp(),
            // Space-separated in the answer, whatever the authorize request used.
            "scope": grant.scopes().join(" "),
        }),
    )
}

/// The checks every API call passes on `host`: the throttle fault, the token (of this host's
/// environment), and the scope the endpoint needs.
fn authorize(
    sb: &Sandbox,
    host: Environment,
    headers: &HeaderMap,
    scope: &str,
) -> Result<Arc<AccessToken>, Reply> {
    let a = match sb.gate_on(P, host, bearer(headers).as_deref()) {
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
            return Err(render(
                ErrorCase::RateLimited { limit: Limit::User },
                &ErrorDetail::default(),
            ));
        }
    };
    if !a.grant.has_scope(scope) {
        return Err(render(ErrorCase::ScopeMissing, &ErrorDetail::default()));
    }
    Ok(a)
}

/// `GET /v5/user_account` (the probe).
async fn user_account(
    State(sb): State<Sandbox>,
    Extension(host): Extension<Environment>,
    headers: HeaderMap,
) -> Response {
    match authorize(&sb, host, &headers, "user_accounts:read") {
        Ok(a) => with_rid(Reply::json(
            200,
            &json!({
                "account_type": "BUSINESS",
                "id": a.grant.numeric_id("user").to_string(),
                "username": a.grant.account,
                "profile_image": "https://i.pinimg.com/600x600_R/42/f5/36/42f5364f8c5a2b3e.jpg",
                "website_url": "https://www.example.com",
                "business_name": a.grant.account,
                "board_count": 3,
                "pin_count": 12,
                "follower_count": 0,
                "following_count": 0,
                "monthly_views": 0,
            }),
        ))
        .into_response(),
        Err(r) => r.into_response(),
    }
}

fn account_ids(a: &AccessToken) -> Vec<String> {
    (0..2)
        .map(|i| (549_755_000_000 + a.grant.numeric_id(&format!("ad/{i}")) % 1_000_000).to_string())
        .collect()
}

/// `GET /v5/ad_accounts`: `{"items": [...], "bookmark": null}`; a role removed leaves none the
/// account may reach (code 29).
async fn ad_accounts(
    State(sb): State<Sandbox>,
    Extension(host): Extension<Environment>,
    headers: HeaderMap,
) -> Response {
    let a = match authorize(&sb, host, &headers, "ads:read") {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    if a.grant.role_removed() {
        return render(ErrorCase::RoleMissing, &ErrorDetail::default()).into_response();
    }
    let items: Vec<Value> = account_ids(&a)
        .into_iter()
        .enumerate()
        .map(|(i, id)| {
            json!({
                "id": id,
                "name": format!("{} ads {}", a.grant.account, i + 1),
                "owner": {"username": a.grant.account, "id": a.grant.numeric_id("user").to_string()},
                "country": "US",
                "currency": "USD",
                "permissions": ["ADMIN"],
            })
        })
        .collect();
    with_rid(Reply::json(200, &json!({"items": items, "bookmark": null}))).into_response()
}

/// The ad account a call names, when it is one of the token's.
fn own_account(a: &AccessToken, id: &str) -> Result<(), Reply> {
    if a.grant.role_removed() {
        return Err(render(ErrorCase::RoleMissing, &ErrorDetail::default()));
    }
    if account_ids(a).iter().any(|x| x == id) {
        Ok(())
    } else {
        Err(render(
            ErrorCase::NotFound,
            &ErrorDetail::message("Ad account not found."),
        ))
    }
}

/// `POST /v5/ad_accounts/{id}/reports`: `{"report_status": "IN_PROGRESS", "token": …}`.
async fn create_report(
    State(sb): State<Sandbox>,
    Extension(host): Extension<Environment>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let a = match authorize(&sb, host, &headers, "ads:read") {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    if let Err(r) = own_account(&a, &id) {
        return r.into_response();
    }
    let token = sb.start_job("pinrep_");
    with_rid(Reply::json(
        200,
        &json!({"report_status": "IN_PROGRESS", "token": token, "message": null}),
    ))
    .into_response()
}

/// `GET /v5/ad_accounts/{id}/reports?token=…`: IN_PROGRESS until the job is done, then
/// FINISHED with a download URL; an unknown token DOES_NOT_EXIST.
async fn get_report(
    State(sb): State<Sandbox>,
    Extension(host): Extension<Environment>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let a = match authorize(&sb, host, &headers, "ads:read") {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    if let Err(r) = own_account(&a, &id) {
        return r.into_response();
    }
    let Some(token) = q.get("token") else {
        return render(
            ErrorCase::InvalidParams,
            &ErrorDetail::message("Missing query parameter: token"),
        )
        .into_response();
    };
    match sb.job_done(token) {
        Some(true) => with_rid(Reply::json(
            200,
            &json!({"report_status": "FINISHED", "url": format!("https://pinterest-sandbox-reports.s3.amazonaws.com/{token}.json"), "size": 2048}),
        ))
        .into_response(),
        Some(false) => render(ErrorCase::WorkPending, &ErrorDetail::default()).into_response(),
        None => report_status("DOES_NOT_EXIST").into_response(),
    }
}

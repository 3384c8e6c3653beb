//! LinkedIn Marketing API (platforms-ads.md Part B §1): OAuth at `/oauth/v2/*` (consent at
//! `authorization`, the form-encoded token endpoint `accessToken` with the client credentials in
//! the BODY, token introspection at `introspectToken`, `revoke`), and the API:
//!
//! - `/rest/*` (versioned): `GET /rest/adAccounts?q=search` and `GET /rest/adAccounts/{id}`,
//!   which need `LinkedIn-Version: YYYYMM` (missing → 400 `VERSION_MISSING` with
//!   `X-Restli-Gateway-Error`; not one of the last twelve months → 426 `NONEXISTENT_VERSION`) and
//!   an ads scope (else 403 `ACCESS_DENIED` "Not enough permissions to access: …");
//! - `/v2/userinfo` (legacy, unversioned), which needs the OpenID product's `openid` and
//!   `profile` (else 403 ACCESS_DENIED `userinfo.GET.NO_VERSION`).
//!
//! Tokens: access 60 days; the refresh token ends 365 days after the consent and a refresh never
//! moves that end (the answer's `refresh_token_expires_in` is what is LEFT); a refresh answer
//! echoes the same refresh token unless the rotation fault asks for new ones, which keep the
//! same end. A dead refresh token is 400 `invalid_request` "… invalid, expired or revoked", not
//! invalid_grant (§0.2). API errors: `{"serviceErrorCode","message","status"}`, with `code` in the
//! newer envelope; a missing role on the ad account is the same ACCESS_DENIED as a missing scope.

use super::{bearer, refuse, token_reply};
use crate::error_case::{ErrorCase, ErrorDetail, Limit, Reply, load_balancer_page};
use crate::ledger::{AccessKind, AccessToken, CodeRefusal, Refusal, to_delta};
use crate::provider::Provider;
use crate::{Gate, Sandbox};
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Datelike, Utc};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

const P: Provider = Provider::Linkedin;

/// The scopes that let a member read ad accounts.
const ADS_SCOPES: &[&str] = &["r_ads", "rw_ads"];

pub(crate) const CASES: &[ErrorCase] = &[
    // 65602, 65601, 65600 (the legacy form without `code`).
    ErrorCase::TokenExpired,
    ErrorCase::TokenRevoked,
    ErrorCase::TokenInvalid,
    // serviceErrorCode 401 "Empty oauth2_access_token".
    ErrorCase::CredentialMissing,
    // 403 ACCESS_DENIED: a scope (or a role) missing, or the application not approved.
    ErrorCase::ScopeMissing,
    ErrorCase::AccessRefused { blocked: false },
    // 400 VERSION_MISSING and 426 NONEXISTENT_VERSION: the app's configuration.
    ErrorCase::EndpointGone { retired: false },
    ErrorCase::EndpointGone { retired: true },
    ErrorCase::NotFound,
    ErrorCase::InvalidParams,
    // 429 serviceErrorCode 101 (the member's, and the app's at the token endpoint).
    ErrorCase::RateLimited { limit: Limit::User },
    ErrorCase::RateLimited { limit: Limit::App },
    ErrorCase::Outage,
    ErrorCase::OutagePage { status: 502 },
    ErrorCase::OutagePage { status: 503 },
    ErrorCase::OAuthInvalidRequest,
    ErrorCase::OAuthInvalidClient,
    ErrorCase::OAuthInvalidGrant,
    ErrorCase::OAuthUnsupportedGrant,
    ErrorCase::ConsentRefused { declined: true },
    ErrorCase::ConsentRefused { declined: false },
];

/// The legacy envelope, with the newer `code` where LinkedIn sends it.
fn api_error(status: u16, service_code: u32, code: Option<&str>, message: &str) -> Reply {
    let mut v = json!({"status": status, "serviceErrorCode": service_code, "message": message});
    if let Some(c) = code {
        v["code"] = json!(c);
    }
    with_ids(Reply::json(status, &v))
}

/// The support headers LinkedIn sends on every answer (error-handling doc).
fn with_ids(r: Reply) -> Reply {
    let id = crate::ledger::short_id();
    r.header("x-li-uuid", format!("AAY{id}"))
        .header("x-li-fabric", "prod-lva1")
        .header("x-li-request-id", id)
}

/// LinkedIn's one rendering function.
pub(crate) fn render(case: ErrorCase, d: &ErrorDetail) -> Reply {
    let oauth = |status: u16, error: &str, default: &str| {
        Reply::json(
            status,
            &json!({"error": error, "error_description": d.message.as_deref().unwrap_or(default)}),
        )
        .header("cache-control", "no-store")
    };
    match case {
        ErrorCase::TokenExpired | ErrorCase::TokenExpiredUnspecific => api_error(
            401,
            65602,
            Some("EXPIRED_ACCESS_TOKEN"),
            "The token used in the request has expired",
        ),
        ErrorCase::TokenRevoked | ErrorCase::AuthorizerGone { .. } => api_error(
            401,
            65601,
            Some("REVOKED_ACCESS_TOKEN"),
            "The token used in the request has been revoked by the user",
        ),
        ErrorCase::TokenInvalid
        | ErrorCase::TokenRefusedPlainText
        | ErrorCase::TokenRefusedEmpty
        | ErrorCase::AppMismatch => api_error(401, 65600, None, "Invalid access token"),
        ErrorCase::CredentialMissing => api_error(401, 401, None, "Empty oauth2_access_token"),
        ErrorCase::ScopeMissing | ErrorCase::RoleMissing => api_error(
            403,
            100,
            Some("ACCESS_DENIED"),
            d.message
                .as_deref()
                .unwrap_or("Not enough permissions to access: adAccounts.GET.20260101"),
        ),
        ErrorCase::AccessRefused { .. } => api_error(
            403,
            100,
            None,
            "Your application does not have permission to create non-test advertiser accounts",
        ),
        ErrorCase::EndpointGone { retired: false } => with_ids(Reply::json(
            400,
            &json!({"status": 400, "code": "VERSION_MISSING", "message": "A version must be present. Please specify a version by adding the LinkedIn-Version header."}),
        ))
        .header("x-restli-gateway-error", "true"),
        ErrorCase::EndpointGone { retired: true } => with_ids(Reply::json(
            426,
            &json!({"status": 426, "code": "NONEXISTENT_VERSION", "message": format!("Requested version {} is not active", d.message.as_deref().unwrap_or("20220601"))}),
        )),
        ErrorCase::NotFound | ErrorCase::ObjectDeleted | ErrorCase::BatchItemsFailed { .. } => {
            with_ids(Reply::json(
                404,
                &json!({"message": "Not Found.", "status": 404}),
            ))
        }
        ErrorCase::InvalidParams
        | ErrorCase::StaleSignature
        | ErrorCase::MediaRejected { .. } => with_ids(Reply::json(
            400,
            &json!({"status": 400, "code": "ILLEGAL_ARGUMENT", "message": d.message.as_deref().unwrap_or("Invalid param. Please see errorDetails for more information."), "errorDetailType": "com.linkedin.common.error.BadRequest", "errorDetails": {"inputErrors": [{"description": "Invalid value", "input": {"inputPath": {"fieldPath": "search"}}, "code": "INVALID_VALUE"}]}}),
        )),
        ErrorCase::RateLimited { .. } => api_error(
            429,
            101,
            None,
            "Resource level throttle limit for calls to this resource is reached.",
        ),
        ErrorCase::Outage
        | ErrorCase::WorkFailed
        | ErrorCase::TransientParamError
        | ErrorCase::TaskPending
        | ErrorCase::WorkPending => with_ids(Reply::json(
            500,
            &json!({"message": "Internal Server Error", "status": 500}),
        )),
        ErrorCase::OutagePage { status: 503 } => with_ids(Reply::json(
            503,
            &json!({"status": 503, "code": "UNDER_MAINTENANCE", "message": "Under Maintenance"}),
        )),
        ErrorCase::OutagePage { status } => load_balancer_page(status),
        ErrorCase::ConsentRefused { declined } => super::consent_redirect(P, declined),
        ErrorCase::OAuthInvalidRequest => oauth(
            400,
            "invalid_request",
            "A required parameter \"client_id\" is missing",
        ),
        ErrorCase::OAuthInvalidClient => {
            oauth(401, "invalid_client", "Client authentication failed")
        }
        // §0.2: not invalid_grant.
        ErrorCase::OAuthInvalidGrant | ErrorCase::RefreshTokenRefused { .. } => oauth(
            400,
            "invalid_request",
            "The provided authorization grant or refresh token is invalid, expired or revoked",
        ),
        ErrorCase::OAuthUnsupportedGrant => oauth(
            400,
            "unsupported_grant_type",
            "The provided grant type is not supported",
        ),
    }
}

pub(crate) fn routes() -> Router<Sandbox> {
    Router::new()
        .route("/oauth/v2/accessToken", post(token))
        .route("/oauth/v2/introspectToken", post(introspect))
        .route("/oauth/v2/revoke", post(revoke))
        .route("/rest/adAccounts", get(search_ad_accounts))
        .route("/rest/adAccounts/{id}", get(get_ad_account))
        .route("/v2/userinfo", get(userinfo))
}

fn fail(sb: &Sandbox, case: ErrorCase, message: &str) -> Response {
    refuse(sb, P, case, &ErrorDetail::message(message))
}

/// The app, when the body names it with its secret (credentials in the body, §1 Token).
fn client(
    sb: &Sandbox,
    f: &HashMap<String, String>,
) -> Result<Arc<crate::ledger::App>, &'static str> {
    let get = |k: &str| f.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let id = get("client_id").ok_or("A required parameter \"client_id\" is missing")?;
    let secret = get("client_secret").ok_or("A required parameter \"client_secret\" is missing")?;
    sb.ledger()
        .app(P, id)
        .filter(|a| a.secret_matches(secret))
        .ok_or("")
}

/// The refresh token's end: 365 days after the consent (the grant), whatever happened since.
fn refresh_end(grant: &crate::ledger::Grant) -> DateTime<Utc> {
    grant.created_at + to_delta(P.refresh_lifetime().unwrap_or_default())
}

/// `POST /oauth/v2/accessToken`.
async fn token(State(sb): State<Sandbox>, Form(f): Form<HashMap<String, String>>) -> Response {
    let get = |k: &str| f.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let grant_type = get("grant_type").unwrap_or("-");
    let count_fail = || sb.counters().token_call(P, None, grant_type);
    let app = match client(&sb, &f) {
        Ok(a) => a,
        Err(missing) if !missing.is_empty() => {
            count_fail();
            return fail(&sb, ErrorCase::OAuthInvalidRequest, missing);
        }
        Err(_) => {
            count_fail();
            return fail(
                &sb,
                ErrorCase::OAuthInvalidClient,
                "Client authentication failed",
            );
        }
    };
    let now = sb.now();
    let (rotate, grace) = {
        let s = sb.faults(P).settings.read();
        (s.rotation, s.reuse_grace)
    };
    let (grant, echoed) = match grant_type {
        "authorization_code" => {
            let (Some(code), Some(redirect_uri)) = (get("code"), get("redirect_uri")) else {
                count_fail();
                return fail(
                    &sb,
                    ErrorCase::OAuthInvalidRequest,
                    "A required parameter \"code\" is missing",
                );
            };
            match sb
                .ledger()
                .redeem_code(code, P, &app.client_id, Some(redirect_uri), None, now)
            {
                Ok(c) => (sb.ledger().new_grant(&c, now), None),
                Err(r) => {
                    count_fail();
                    // LinkedIn answers every bad code with invalid_redirect_uri (§1 codes).
                    let why = match r {
                        CodeRefusal::RedirectMismatch => {
                            "Unable to retrieve access token: appid/redirect uri/code verifier does not match authorization code."
                        }
                        _ => {
                            "Unable to retrieve access token: appid/redirect uri/code verifier does not match authorization code. Or authorization code expired. Or external member binding exists"
                        }
                    };
                    return Reply::json(
                        400,
                        &json!({"error": "invalid_redirect_uri", "error_description": why}),
                    )
                    .into_response();
                }
            }
        }
        "refresh_token" => {
            let Some(rt) = get("refresh_token") else {
                count_fail();
                return fail(
                    &sb,
                    ErrorCase::OAuthInvalidRequest,
                    "A required parameter \"refresh_token\" is missing",
                );
            };
            match sb
                .ledger()
                .use_refresh(P, &app.client_id, rt, rotate, grace, now)
            {
                Ok((g, _)) => (g, (!rotate).then(|| rt.to_string())),
                Err(_) => {
                    count_fail();
                    return fail(
                        &sb,
                        ErrorCase::OAuthInvalidGrant,
                        "The provided authorization grant or refresh token is invalid, expired or revoked",
                    );
                }
            }
        }
        _ => {
            count_fail();
            return fail(
                &sb,
                ErrorCase::OAuthUnsupportedGrant,
                "The provided grant type is not supported",
            );
        }
    };
    sb.counters().token_call(P, Some(&grant.id), grant_type);
    let end = refresh_end(&grant);
    // "On day 360 both expire in 5 days": an access token never outlives the refresh token.
    let left = (end - now).to_std().unwrap_or_default();
    let lifetime = sb.config().access_lifetime(P).map(|l| l.min(left));
    let (access, _) = sb
        .ledger()
        .issue_access(&grant, AccessKind::Standard, "AQV", lifetime, now);
    let refresh = match echoed {
        Some(rt) => rt,
        None => {
            let left = (end - now).to_std().unwrap_or_default();
            sb.ledger().issue_refresh(&grant, "AQX", Some(left), now).0
        }
    };
    token_reply(
        &sb,
        P,
        json!({
            "access_token": access,
            "expires_in": lifetime.map_or(5_184_000, |l| l.as_secs()),
            "refresh_token": refresh,
            "refresh_token_expires_in": (end - now).num_seconds().max(0),
            "scope": grant.scopes().join(","),
        }),
    )
}

/// `POST /oauth/v2/introspectToken`: `active`, `status` (active / expired / revoked),
/// `expires_at`, `created_at`, a comma-separated `scope`. Needs the app's credentials in the body.
async fn introspect(State(sb): State<Sandbox>, Form(f): Form<HashMap<String, String>>) -> Response {
    let app = match client(&sb, &f) {
        Ok(a) => a,
        Err(missing) if !missing.is_empty() => {
            return fail(&sb, ErrorCase::OAuthInvalidRequest, missing);
        }
        Err(_) => {
            return fail(
                &sb,
                ErrorCase::OAuthInvalidClient,
                "Client authentication failed",
            );
        }
    };
    let Some(token) = f.get("token").filter(|t| !t.is_empty()) else {
        return fail(
            &sb,
            ErrorCase::OAuthInvalidRequest,
            "A required parameter \"token\" is missing",
        );
    };
    let now = sb.now();
    let status = match sb.ledger().check_access(P, Some(token), now) {
        Ok(_) => "active",
        Err(Refusal::Expired) => "expired",
        Err(Refusal::Revoked) => "revoked",
        Err(_) => "unknown",
    };
    // A token of another app, or none LinkedIn issued: only `active: false`.
    let Some(a) = sb
        .ledger()
        .access_any(P, token)
        .filter(|a| status != "unknown" && a.grant.app.client_id == app.client_id)
    else {
        return Reply::json(200, &json!({"active": false})).into_response();
    };
    let ts = |t: DateTime<Utc>| t.timestamp();
    Reply::json(
        200,
        &json!({
            "active": status == "active",
            "client_id": app.client_id,
            "authorized_at": ts(a.grant.created_at),
            "created_at": ts(a.issued_at),
            "status": status,
            "expires_at": a.expires_at.map(ts),
            "scope": a.grant.scopes().join(","),
            "auth_type": "3L",
        }),
    )
    .into_response()
}

/// `POST /oauth/v2/revoke`: a refresh token ends the grant; an access token only itself.
async fn revoke(State(sb): State<Sandbox>, Form(f): Form<HashMap<String, String>>) -> Response {
    match client(&sb, &f) {
        Ok(_) => {}
        Err(missing) if !missing.is_empty() => {
            return fail(&sb, ErrorCase::OAuthInvalidRequest, missing);
        }
        Err(_) => {
            return fail(
                &sb,
                ErrorCase::OAuthInvalidClient,
                "Client authentication failed",
            );
        }
    }
    let Some(token) = f.get("token").filter(|t| !t.is_empty()) else {
        return fail(
            &sb,
            ErrorCase::OAuthInvalidRequest,
            "A required parameter \"token\" is missing",
        );
    };
    if let Some(g) = sb.ledger().refresh_grant(P, token) {
        sb.ledger().revoke_grant(&g);
    } else {
        sb.ledger().revoke_access(token);
    }
    Reply {
        status: 200,
        headers: vec![],
        body: Vec::new(),
    }
    .into_response()
}

/// The token checks every API call passes (the throttle fault, the token).
fn authorize(sb: &Sandbox, headers: &HeaderMap) -> Result<Arc<AccessToken>, Reply> {
    match sb.gate(P, bearer(headers).as_deref()) {
        Ok(a) => Ok(a),
        Err(Gate::Token(r)) => {
            let case = match r {
                Refusal::Missing => ErrorCase::CredentialMissing,
                Refusal::Expired => ErrorCase::TokenExpired,
                Refusal::Revoked => ErrorCase::TokenRevoked,
                Refusal::Unknown => ErrorCase::TokenInvalid,
            };
            Err(render(case, &ErrorDetail::default()))
        }
        Err(Gate::Throttled) => {
            crate::counters::Counters::bump(&sb.counters().of(P).rate_limited_sent);
            Err(render(
                ErrorCase::RateLimited { limit: Limit::User },
                &ErrorDetail::default(),
            ))
        }
    }
}

/// Whether `v` (YYYYMM or YYYYMMDD) is one of the versions LinkedIn serves at `now`: released
/// (not in the future) and not older than twelve months.
pub(crate) fn version_active(v: &str, now: DateTime<Utc>) -> bool {
    if !(v.len() == 6 || v.len() == 8) || !v.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let (Ok(year), Ok(month)) = (v[..4].parse::<i32>(), v[4..6].parse::<i32>()) else {
        return false;
    };
    if !(1..=12).contains(&month) {
        return false;
    }
    let asked = year * 12 + month - 1;
    let current = now.year() * 12 + now.month0() as i32;
    asked <= current && current - asked <= 12
}

/// The checks of a versioned `/rest` call: the version headers, then the token and an ads scope.
fn rest(sb: &Sandbox, headers: &HeaderMap, resource: &str) -> Result<Arc<AccessToken>, Reply> {
    let version = headers
        .get("linkedin-version")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty());
    let Some(version) = version else {
        sb.counters().api_call(P, sb.now());
        return Err(render(
            ErrorCase::EndpointGone { retired: false },
            &ErrorDetail::default(),
        ));
    };
    if !version_active(version, sb.now()) {
        sb.counters().api_call(P, sb.now());
        return Err(render(
            ErrorCase::EndpointGone { retired: true },
            &ErrorDetail::message(version.to_string()),
        ));
    }
    let a = authorize(sb, headers)?;
    let scoped = ADS_SCOPES.iter().any(|s| a.grant.has_scope(s));
    if !scoped || a.grant.role_removed() {
        return Err(render(
            ErrorCase::ScopeMissing,
            &ErrorDetail::message(format!(
                "Not enough permissions to access: {resource}.GET.{version}01"
            )),
        ));
    }
    Ok(a)
}

/// The member's ad accounts: one production account and the test account (`test: true`).
fn ad_accounts(a: &AccessToken) -> Vec<Value> {
    let base = a.grant.numeric_id("adAccount") % 900_000_000 + 500_000_000;
    [(base, false), (base + 1, true)]
        .into_iter()
        .map(|(id, test)| {
            json!({
                "id": id,
                "name": if test { format!("{} (test)", a.grant.account) } else { a.grant.account.clone() },
                "status": "ACTIVE",
                "type": "BUSINESS",
                "currency": "USD",
                "reference": format!("urn:li:organization:{}", a.grant.numeric_id("org") % 100_000_000),
                "test": test,
                "notifiedOnCampaignOptimization": false,
                "servingStatuses": ["RUNNABLE"],
            })
        })
        .collect()
}

/// `GET /rest/adAccounts?q=search` (Airbyte's check stream).
async fn search_ad_accounts(
    State(sb): State<Sandbox>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let a = match rest(&sb, &headers, "adAccounts") {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    if q.get("q").map(String::as_str) != Some("search") {
        return render(
            ErrorCase::InvalidParams,
            &ErrorDetail::message("Invalid query parameters passed to request"),
        )
        .into_response();
    }
    let all = ad_accounts(&a);
    with_ids(Reply::json(
        200,
        &json!({"elements": all, "paging": {"start": 0, "count": 10, "total": all.len(), "links": []}}),
    ))
    .into_response()
}

/// `GET /rest/adAccounts/{id}`.
async fn get_ad_account(
    State(sb): State<Sandbox>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let a = match rest(&sb, &headers, "adAccounts") {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    match ad_accounts(&a)
        .into_iter()
        .find(|x| x["id"].as_u64().is_some_and(|n| n.to_string() == id))
    {
        Some(x) => with_ids(Reply::json(200, &x)).into_response(),
        None => render(ErrorCase::NotFound, &ErrorDetail::default()).into_response(),
    }
}

/// `GET /v2/userinfo`: OpenID Connect, needs `openid` and `profile` (ads apps often lack them).
async fn userinfo(State(sb): State<Sandbox>, headers: HeaderMap) -> Response {
    let a = match authorize(&sb, &headers) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    if !(a.grant.has_scope("openid") && a.grant.has_scope("profile")) {
        return render(
            ErrorCase::ScopeMissing,
            &ErrorDetail::message("Not enough permissions to access: userinfo.GET.NO_VERSION"),
        )
        .into_response();
    }
    with_ids(Reply::json(
        200,
        &json!({"sub": format!("{:x}", a.grant.numeric_id("member")), "name": a.grant.account, "email_verified": true, "locale": {"country": "US", "language": "en"}}),
    ))
    .into_response()
}

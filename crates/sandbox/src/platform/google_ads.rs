//! Google Ads API v21 (platforms-ads.md Part A §1): Google's OAuth server (form-encoded token
//! endpoint at `/token`, client credentials in the body, PKCE, refresh answers WITHOUT a
//! `refresh_token` because Google does not rotate, `invalid_grant` "Token has been expired or
//! revoked." once the grant is gone, `/revoke` ending the whole grant) and the REST API with
//! google.rpc.Status errors whose GoogleAdsFailure names the family as the key of `errorCode`,
//! quota errors that carry their wait as `quotaErrorDetails.retryDelay` (no Retry-After), and
//! `searchStream` answering — errors included — inside a one-element JSON array.

use super::{CAMPAIGNS_PER_ACCOUNT, bearer, refuse, token_reply};
use crate::error_case::{ErrorCase, ErrorDetail, Limit, Reply};
use crate::ledger::{AccessKind, AccessToken, CodeRefusal, RefreshRefusal, Refusal, short_id};
use crate::provider::Provider;
use crate::{Gate, Sandbox};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Form, Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

const P: Provider = Provider::GoogleAds;
/// "There is currently a limit of 100 refresh tokens per Google Account per OAuth 2.0 client ID"
/// (platforms-ads.md Part A §1, "Too many tokens").
pub(crate) const REFRESH_TOKENS_PER_ACCOUNT: usize = 100;
const SCOPE: &str = "https://www.googleapis.com/auth/adwords";
const FAILURE_TYPE: &str = "type.googleapis.com/google.ads.googleads.v21.errors.GoogleAdsFailure";

pub(crate) const CASES: &[ErrorCase] = &[
    ErrorCase::TokenExpired,
    ErrorCase::TokenInvalid,
    ErrorCase::TokenRevoked,
    ErrorCase::ScopeMissing,
    ErrorCase::AppMismatch,
    ErrorCase::AccessRefused { blocked: true },
    ErrorCase::NotFound,
    ErrorCase::InvalidParams,
    ErrorCase::RateLimited { limit: Limit::User },
    ErrorCase::RateLimited { limit: Limit::App },
    ErrorCase::Outage,
    ErrorCase::OutagePage { status: 502 },
    ErrorCase::OutagePage { status: 503 },
    ErrorCase::WorkPending,
    ErrorCase::OAuthInvalidRequest,
    ErrorCase::OAuthInvalidClient,
    ErrorCase::OAuthInvalidGrant,
    ErrorCase::OAuthUnsupportedGrant,
    ErrorCase::ConsentRefused { declined: true },
    ErrorCase::ConsentRefused { declined: false },
];

/// A google.rpc.Status with a GoogleAdsFailure holding one error of `family`.
fn ads_failure(
    status: u16,
    rpc: &str,
    message: &str,
    family: &str,
    code: &str,
    error_message: &str,
    details: Option<Value>,
) -> Reply {
    let mut error_code = serde_json::Map::new();
    error_code.insert(family.to_string(), json!(code));
    let mut error = json!({
        "errorCode": error_code,
        "message": error_message,
    });
    if let Some(d) = details {
        error["details"] = d;
    }
    Reply::json(
        status,
        &json!({"error": {
            "code": status,
            "message": message,
            "status": rpc,
            "details": [{
                "@type": FAILURE_TYPE,
                "errors": [error],
                "requestId": short_id(),
            }],
        }}),
    )
}

/// A google.rpc.Status rejected before the Ads API (google.rpc.ErrorInfo `reason`).
fn front_end(status: u16, rpc: &str, message: &str, reason: &str) -> Reply {
    Reply::json(
        status,
        &json!({"error": {
            "code": status,
            "message": message,
            "status": rpc,
            "details": [{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": "googleapis.com",
                "metadata": {"service": "googleads.googleapis.com"},
            }],
        }}),
    )
}

/// A protobuf Duration string for the wait until `d.reset_at` ("40591s").
fn retry_delay(d: &ErrorDetail, fallback: i64) -> String {
    let secs = match (d.reset_at, d.now) {
        (Some(reset), Some(now)) => (reset - now).num_seconds().max(1),
        _ => fallback,
    };
    format!("{secs}s")
}

/// Google's own HTML error page (its front end, not nginx).
fn google_error_page(status: u16) -> Reply {
    let (title, text) = if status == 502 {
        (
            "Error 502 (Server Error)!!1",
            "The server encountered a temporary error and could not complete your request.<p>Please try again in 30 seconds.",
        )
    } else {
        (
            "Error 503 (Service Unavailable)!!1",
            "The service you requested is not available at this time.<p>Service error -27.",
        )
    };
    Reply::html(
        status,
        format!(
            "<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n  <title>{title}</title>\n  <p><b>{status}.</b> <ins>That’s an error.</ins>\n  <p>{text} <ins>That’s all we know.</ins>\n"
        ),
    )
}

/// Google Ads' one rendering function.
pub(crate) fn render(case: ErrorCase, d: &ErrorDetail) -> Reply {
    const UNAUTHENTICATED: &str = "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.";
    let oauth = |status: u16, error: &str, default: &str| {
        Reply::json(
            status,
            &json!({"error": error, "error_description": d.message.as_deref().unwrap_or(default)}),
        )
        .header("cache-control", "no-store")
    };
    let auth = |code: &str| {
        ads_failure(
            401,
            "UNAUTHENTICATED",
            UNAUTHENTICATED,
            "authenticationError",
            code,
            "Authentication of the request failed.",
            None,
        )
    };
    let authz = |code: &str, message: &str| {
        ads_failure(
            403,
            "PERMISSION_DENIED",
            "The caller does not have permission",
            "authorizationError",
            code,
            message,
            None,
        )
    };
    match case {
        ErrorCase::TokenExpired | ErrorCase::TokenExpiredUnspecific => auth("OAUTH_TOKEN_EXPIRED"),
        ErrorCase::TokenInvalid
        | ErrorCase::TokenRefusedPlainText
        | ErrorCase::TokenRefusedEmpty => auth("OAUTH_TOKEN_INVALID"),
        ErrorCase::TokenRevoked | ErrorCase::AuthorizerGone { .. } => auth("OAUTH_TOKEN_REVOKED"),
        // No Authorization header: the front end answers before the Ads API.
        ErrorCase::CredentialMissing => front_end(
            401,
            "UNAUTHENTICATED",
            "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            "CREDENTIALS_MISSING",
        ),
        ErrorCase::ScopeMissing => front_end(
            403,
            "PERMISSION_DENIED",
            "Request had insufficient authentication scopes.",
            "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
        ),
        ErrorCase::RoleMissing => authz(
            "USER_PERMISSION_DENIED",
            "User doesn't have permission to access customer. Note: If you're accessing a client customer, the manager's customer id must be set in the 'login-customer-id' header.",
        ),
        // The app's Cloud project has Test access only (v25+ wording).
        ErrorCase::AppMismatch => authz(
            "CLOUD_PROJECT_NOT_APPROVED_FOR_PRODUCTION",
            "The Google Cloud project is only approved for use with test accounts.",
        ),
        ErrorCase::AccessRefused { .. } => authz(
            "PROJECT_DISABLED",
            "The Google Cloud project that made the request is disabled.",
        ),
        ErrorCase::NotFound | ErrorCase::ObjectDeleted => Reply::json(
            404,
            &json!({"error": {
                "code": 404,
                "message": d.message.as_deref().unwrap_or("Requested entity was not found."),
                "status": "NOT_FOUND",
            }}),
        ),
        ErrorCase::InvalidParams
        | ErrorCase::EndpointGone { .. }
        | ErrorCase::StaleSignature
        | ErrorCase::MediaRejected { .. } => ads_failure(
            400,
            "INVALID_ARGUMENT",
            "Request contains an invalid argument.",
            "queryError",
            "QUERY_ERROR",
            d.message.as_deref().unwrap_or("The query is not valid."),
            None,
        ),
        // Short-term: the account's requests per second.
        ErrorCase::RateLimited {
            limit: Limit::User | Limit::AdAccount | Limit::UnderUnknownCode,
        } => ads_failure(
            429,
            "RESOURCE_EXHAUSTED",
            "Too many requests. Retry in 30 seconds.",
            "quotaError",
            "RESOURCE_TEMPORARILY_EXHAUSTED",
            "Too many requests. Retry in 30 seconds.",
            Some(json!({"quotaErrorDetails": {
                "rateScope": "ACCOUNT",
                "rateName": "Requests per account",
                "retryDelay": retry_delay(d, 30),
            }})),
        ),
        // The app's daily operations (rateScope DEVELOPER): shared by every connection.
        ErrorCase::RateLimited {
            limit: Limit::App | Limit::Restricted,
        } => {
            let delay = retry_delay(d, 40_591);
            let message = format!(
                "Resource has been exhausted (e.g. check quota). Retry in {delay} seconds.",
                delay = delay.trim_end_matches('s')
            );
            ads_failure(
                429,
                "RESOURCE_EXHAUSTED",
                "Resource has been exhausted (e.g. check quota).",
                "quotaError",
                "RESOURCE_EXHAUSTED",
                &message,
                Some(json!({"quotaErrorDetails": {
                    "rateScope": "DEVELOPER",
                    "rateName": "Number of operations for explorer access",
                    "retryDelay": delay,
                }})),
            )
        }
        ErrorCase::Outage | ErrorCase::TransientParamError | ErrorCase::WorkFailed => Reply::json(
            503,
            &json!({"error": {
                "code": 503,
                "message": "The service is currently unavailable.",
                "status": "UNAVAILABLE",
            }}),
        ),
        ErrorCase::OutagePage { status } => google_error_page(status),
        ErrorCase::WorkPending | ErrorCase::TaskPending | ErrorCase::BatchItemsFailed { .. } => {
            ads_failure(
                400,
                "INVALID_ARGUMENT",
                "Request contains an invalid argument.",
                "batchJobError",
                "BATCH_JOB_NOT_COMPLETED",
                "The batch job has not completed yet.",
                None,
            )
        }
        ErrorCase::ConsentRefused { declined } => super::consent_redirect(P, declined),
        ErrorCase::OAuthInvalidRequest => {
            oauth(400, "invalid_request", "Missing required parameter")
        }
        ErrorCase::OAuthInvalidClient => oauth(401, "invalid_client", "Unauthorized"),
        ErrorCase::OAuthInvalidGrant | ErrorCase::RefreshTokenRefused { .. } => {
            oauth(400, "invalid_grant", "Token has been expired or revoked.")
        }
        ErrorCase::OAuthUnsupportedGrant => {
            oauth(400, "unsupported_grant_type", "Invalid grant_type")
        }
    }
}

/// searchStream answers in a one-element array, errors too.
fn in_array(mut r: Reply) -> Reply {
    if let Ok(v) = serde_json::from_slice::<Value>(&r.body) {
        r.body = serde_json::to_vec(&json!([v])).unwrap_or_default();
    }
    r
}

pub(crate) fn routes() -> Router<Sandbox> {
    Router::new()
        .route("/token", post(token))
        .route("/revoke", post(revoke))
        .route(
            "/v21/customers:listAccessibleCustomers",
            get(list_accessible_customers),
        )
        .route("/v21/customers/{id}/googleAds:search", post(search))
        .route(
            "/v21/customers/{id}/googleAds:searchStream",
            post(search_stream),
        )
}

/// Google's OAuth server alone (consent page, token, revoke), for a platform that takes Google
/// identities: Microsoft Advertising serves it under `/identity/google`. The books are Google's.
pub(crate) fn oauth_routes() -> Router<Sandbox> {
    Router::new()
        .route("/token", post(token))
        .route("/revoke", post(revoke))
        .merge(crate::authorize::routes(P))
}

fn fail(sb: &Sandbox, case: ErrorCase, message: &str) -> Response {
    refuse(sb, P, case, &ErrorDetail::message(message))
}

async fn token(State(sb): State<Sandbox>, Form(f): Form<HashMap<String, String>>) -> Response {
    let get = |k: &str| f.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let grant_type = get("grant_type").unwrap_or("-");
    let count_fail = || sb.counters().token_call(P, None, grant_type);
    let Some(client_id) = get("client_id") else {
        count_fail();
        return fail(
            &sb,
            ErrorCase::OAuthInvalidRequest,
            "Could not determine client ID from request.",
        );
    };
    if sb
        .ledger()
        .app(P, client_id)
        .filter(|a| a.secret_matches(get("client_secret").unwrap_or("")))
        .is_none()
    {
        count_fail();
        return fail(&sb, ErrorCase::OAuthInvalidClient, "Unauthorized");
    }
    let now = sb.now();
    let (rotate, grace) = {
        let s = sb.faults(P).settings.read();
        (s.rotation, s.reuse_grace)
    };
    let (grant, new_refresh) = match grant_type {
        "authorization_code" => {
            let (Some(code), Some(redirect_uri)) = (get("code"), get("redirect_uri")) else {
                count_fail();
                return fail(
                    &sb,
                    ErrorCase::OAuthInvalidRequest,
                    "Missing required parameter: code",
                );
            };
            match sb.ledger().redeem_code(
                code,
                P,
                client_id,
                Some(redirect_uri),
                get("code_verifier"),
                now,
            ) {
                Ok(c) => (sb.ledger().new_grant(&c, now), true),
                Err(r) => {
                    count_fail();
                    let why = match r {
                        CodeRefusal::RedirectMismatch => "Bad Request",
                        CodeRefusal::PkceMismatch => "Invalid code verifier.",
                        _ => "Malformed auth code.",
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
                    "Missing required parameter: refresh_token",
                );
            };
            match sb
                .ledger()
                .use_refresh(P, client_id, rt, rotate, grace, now)
            {
                Ok((g, _)) => (g, rotate),
                Err(r) => {
                    count_fail();
                    let why = match r {
                        RefreshRefusal::Unknown => "Bad Request",
                        _ => "Token has been expired or revoked.",
                    };
                    return fail(&sb, ErrorCase::OAuthInvalidGrant, why);
                }
            }
        }
        _ => {
            count_fail();
            return fail(&sb, ErrorCase::OAuthUnsupportedGrant, "Invalid grant_type");
        }
    };
    sb.counters().token_call(P, Some(&grant.id), grant_type);
    let lifetime = sb.config().access_lifetime(P);
    let (access, _) =
        sb.ledger()
            .issue_access(&grant, AccessKind::Standard, "ya29.", lifetime, now);
    let mut body = json!({
        "access_token": access,
        "expires_in": lifetime.map_or(3599, |l| l.as_secs()),
        "scope": grant.scopes().join(" "),
        "token_type": "Bearer",
    });
    // Google does not rotate: a refresh answer carries no refresh_token and the stored one stays
    // valid (Part A §1). Only the rotation fault makes it send a new one.
    if new_refresh {
        let (v, _) = sb
            .ledger()
            .issue_refresh(&grant, "1//", P.refresh_lifetime(), now);
        body["refresh_token"] = json!(v);
        // 100 refresh tokens per Google Account per client: the oldest stops working, silently.
        sb.ledger()
            .cap_refresh_tokens(&grant, REFRESH_TOKENS_PER_ACCOUNT, now);
    }
    token_reply(&sb, P, body)
}

/// `POST /revoke` with `token=<access or refresh token>`: either ends the whole grant.
async fn revoke(State(sb): State<Sandbox>, Form(f): Form<HashMap<String, String>>) -> Response {
    let token = f.get("token").map(String::as_str).unwrap_or("");
    let refused = || {
        Reply::json(
            400,
            &json!({"error": "invalid_token", "error_description": "Token expired or revoked"}),
        )
        .into_response()
    };
    if token.is_empty() {
        return fail(
            &sb,
            ErrorCase::OAuthInvalidRequest,
            "Missing required parameter: token",
        );
    }
    let now = sb.now();
    let grant = match sb.ledger().check_access(P, Some(token), now) {
        Ok(t) => Some(t.grant.clone()),
        Err(_) => sb.ledger().refresh_grant(P, token),
    };
    match grant {
        Some(g) if !g.is_dead() => {
            sb.ledger().revoke_grant(&g);
            Reply::json(200, &json!({})).into_response()
        }
        _ => refused(),
    }
}

/// Gate (throttle fault, token) + the adwords scope.
fn authorize(sb: &Sandbox, headers: &HeaderMap) -> Result<Arc<AccessToken>, Reply> {
    let detail = ErrorDetail::default();
    let access = match sb.gate(P, bearer(headers).as_deref()) {
        Ok(a) => a,
        Err(Gate::Token(r)) => {
            let case = match r {
                Refusal::Missing => ErrorCase::CredentialMissing,
                Refusal::Expired => ErrorCase::TokenExpired,
                Refusal::Revoked => ErrorCase::TokenRevoked,
                Refusal::Unknown => ErrorCase::TokenInvalid,
            };
            return Err(render(case, &detail));
        }
        Err(Gate::Throttled) => {
            crate::counters::Counters::bump(&sb.counters().of(P).rate_limited_sent);
            // The throttle fault answers per account unless it was asked for the app's daily
            // quota (rateScope DEVELOPER).
            let limit = if sb.faults(P).settings.read().throttle_app {
                Limit::App
            } else {
                Limit::User
            };
            return Err(render(ErrorCase::RateLimited { limit }, &detail));
        }
    };
    if !access.grant.has_scope(SCOPE) {
        return Err(render(ErrorCase::ScopeMissing, &detail));
    }
    Ok(access)
}

/// The customer ids this user reaches: ten digits, without hyphens.
fn customer_ids(a: &AccessToken) -> Vec<String> {
    (0..2)
        .map(|i| {
            let n = a.grant.numeric_id(&format!("customer/{i}")) % 9_000_000_000 + 1_000_000_000;
            n.to_string()
        })
        .collect()
}

/// The client accounts under this user's first customer, a manager (MCC): not listed by
/// `listAccessibleCustomers` and reached only through the manager, with its id in
/// `login-customer-id` (Part A §1 headers: "Needed only when reaching a client account through a
/// manager … Wrong or missing → USER_PERMISSION_DENIED").
fn client_ids(a: &AccessToken) -> Vec<String> {
    (0..2)
        .map(|i| {
            let n = a.grant.numeric_id(&format!("client/{i}")) % 9_000_000_000 + 1_000_000_000;
            n.to_string()
        })
        .collect()
}

/// The probe: `{"resourceNames": ["customers/1234567890", …]}`.
async fn list_accessible_customers(State(sb): State<Sandbox>, headers: HeaderMap) -> Response {
    let a = match authorize(&sb, &headers) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let names: Vec<String> = customer_ids(&a)
        .into_iter()
        .map(|id| format!("customers/{id}"))
        .collect();
    Reply::json(200, &json!({"resourceNames": names})).into_response()
}

/// Checks the customer id in the path and the query; returns the campaign rows.
fn run_query(
    sb: &Sandbox,
    headers: &HeaderMap,
    id: &str,
    body: &[u8],
) -> Result<Vec<Value>, Reply> {
    let a = authorize(sb, headers)?;
    if id.len() != 10 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ads_failure(
            400,
            "INVALID_ARGUMENT",
            "Request contains an invalid argument.",
            "authenticationError",
            "CUSTOMER_ID_PARSE_ERROR",
            "The customer id is not a 10-digit number without hyphens.",
            None,
        ));
    }
    // A directly accessible customer, or a client of the user's manager reached with the
    // manager's id in login-customer-id; a login-customer-id the user cannot use is refused too.
    let own = customer_ids(&a);
    let login = headers
        .get("login-customer-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let through_manager =
        login.is_some_and(|m| m == own[0]) && client_ids(&a).iter().any(|c| c == id);
    let direct = own.iter().any(|c| c == id) && login.is_none_or(|m| own.iter().any(|c| c == m));
    if !(direct || through_manager) {
        return Err(render(ErrorCase::RoleMissing, &ErrorDetail::default()));
    }
    let query = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("query")?.as_str().map(str::to_string))
        .unwrap_or_default();
    if !query
        .trim_start()
        .to_ascii_uppercase()
        .starts_with("SELECT ")
    {
        return Err(render(
            ErrorCase::InvalidParams,
            &ErrorDetail::message("Error in query: unexpected input, expected SELECT."),
        ));
    }
    // `FROM customer_client` on the manager lists its client accounts (how a caller finds the
    // ids it then reaches with login-customer-id).
    if query.to_ascii_lowercase().contains("from customer_client") {
        if id != own[0] {
            return Ok(Vec::new());
        }
        return Ok(client_ids(&a)
            .into_iter()
            .map(|c| {
                json!({"customerClient": {
                    "resourceName": format!("customers/{id}/customerClients/{c}"),
                    "id": c,
                    "manager": false,
                    "level": "1",
                }})
            })
            .collect());
    }
    Ok((1..=CAMPAIGNS_PER_ACCOUNT)
        .map(|i| {
            json!({"campaign": {
                "resourceName": format!("customers/{id}/campaigns/{}", 20_000_000_000u64 + i as u64),
                "id": (20_000_000_000u64 + i as u64).to_string(),
                "name": format!("Campaign {i}"),
            }})
        })
        .collect())
}

/// `POST …/googleAds:search` with `{"query": "SELECT …"}`.
async fn search(
    State(sb): State<Sandbox>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    match run_query(&sb, &headers, &id, &body) {
        Ok(rows) => Reply::json(
            200,
            &json!({"results": rows, "fieldMask": "campaign.id,campaign.name", "requestId": short_id()}),
        )
        .into_response(),
        Err(r) => r.into_response(),
    }
}

/// `POST …/googleAds:searchStream`: the same rows, and any error, in a one-element array.
async fn search_stream(
    State(sb): State<Sandbox>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    match run_query(&sb, &headers, &id, &body) {
        Ok(rows) => Reply::json(
            200,
            &json!([{"results": rows, "fieldMask": "campaign.id,campaign.name", "requestId": short_id()}]),
        )
        .into_response(),
        Err(r) => in_array(r).into_response(),
    }
}

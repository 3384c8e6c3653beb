//! Snapchat Marketing API (platforms.md §1): form-encoded RFC 6749 token endpoint, Bearer API
//! under `/v1` with the `request_status`/`request_id` envelope, 401 challenge on any token
//! problem, 20 req/s per app and 10 req/s per token (429, no Retry-After).

use super::{CAMPAIGNS_PER_ACCOUNT, bearer, origin, page_of, refuse, token_reply, uuid_like};
use crate::error_case::{ErrorCase, ErrorDetail, Limit, Reply, load_balancer_page};
use crate::fault::UnauthorizedStyle;
use crate::ledger::{
    AccessKind, AccessToken, CodeRefusal, RefreshRefusal, Refusal, hash, short_id,
};
use crate::provider::Provider;
use crate::{Gate, Sandbox};
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const P: Provider = Provider::Snapchat;
const SCOPE: &str = "snapchat-marketing-api";

pub(crate) const CASES: &[ErrorCase] = &[
    ErrorCase::TokenExpired,
    ErrorCase::TokenInvalid,
    ErrorCase::TokenRefusedPlainText,
    ErrorCase::TokenRefusedEmpty,
    ErrorCase::RoleMissing,
    ErrorCase::NotFound,
    ErrorCase::RateLimited { limit: Limit::User },
    ErrorCase::RateLimited { limit: Limit::App },
    ErrorCase::Outage,
    ErrorCase::OutagePage { status: 502 },
    ErrorCase::OutagePage { status: 503 },
    ErrorCase::OAuthInvalidRequest,
    ErrorCase::OAuthInvalidClient,
    ErrorCase::OAuthInvalidGrant,
    ErrorCase::OAuthUnsupportedGrant,
    ErrorCase::WorkPending,
    ErrorCase::WorkFailed,
    ErrorCase::BatchItemsFailed { coded: true },
    ErrorCase::BatchItemsFailed { coded: false },
    ErrorCase::ConsentRefused { declined: true },
    ErrorCase::ConsentRefused { declined: false },
];

/// An asynchronous stats report's answer: HTTP 200 with the report inside the usual item list,
/// whatever its `async_status`.
pub(crate) fn report_answer(request_id: String, report: Value) -> Reply {
    Reply::json(
        200,
        &json!({
            "request_status": "SUCCESS",
            "request_id": request_id,
            "async_stats_reports": [{"sub_request_status": "SUCCESS", "async_stats_report": report}],
        }),
    )
}

/// Snapchat's one rendering function.
pub(crate) fn render(case: ErrorCase, d: &ErrorDetail) -> Reply {
    let envelope = |status: u16, code: Option<&str>, debug: &str, display: &str| {
        let mut v = json!({
            "request_status": "ERROR",
            "request_id": short_id(),
            "debug_message": debug,
            "display_message": display,
        });
        // Only E-codes with evidence are sent (platforms.md §1 lists no full table); rate-limit and
        // service errors carry the status alone.
        if let Some(code) = code {
            v["error_code"] = json!(code);
        }
        Reply::json(status, &v)
    };
    let oauth = |status: u16, error: &str, default: &str| {
        Reply::json(
            status,
            &json!({"error": error, "error_description": d.message.as_deref().unwrap_or(default)}),
        )
        .header("cache-control", "no-store")
    };
    match case {
        // RFC 6750 §3.1 challenge with an empty body. Snap answers every token problem (expired,
        // revoked, unknown) with it; "on any Snap 401, refresh once" (platforms.md §1).
        // The RFC 6750 §3.1 challenge (a fault option: no first-party source shows Snapchat
        // sending it). Only an expired token is described as expired.
        ErrorCase::TokenExpired
        | ErrorCase::TokenExpiredUnspecific
        | ErrorCase::TokenInvalid
        | ErrorCase::TokenRevoked
        | ErrorCase::AuthorizerGone { .. }
        | ErrorCase::CredentialMissing => Reply {
            status: 401,
            headers: vec![
                ("content-type".into(), "text/html".into()),
                (
                    "www-authenticate".into(),
                    format!(
                        "Bearer error=\"invalid_token\", error_description=\"{}\"",
                        if case == ErrorCase::TokenExpired {
                            "The access token expired"
                        } else {
                            "The access token is invalid"
                        }
                    ),
                ),
            ],
            body: Vec::new(),
        },
        ErrorCase::TokenRefusedEmpty => Reply {
            status: 401,
            headers: Vec::new(),
            body: Vec::new(),
        },
        ErrorCase::TokenRefusedPlainText => Reply {
            status: 401,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: b"unauthorized".to_vec(),
        },
        ErrorCase::RoleMissing
        | ErrorCase::ScopeMissing
        | ErrorCase::AppMismatch
        | ErrorCase::AccessRefused { .. } => envelope(
            403,
            Some("E3002"),
            "Caller does not have permission",
            "You do not have permission to perform this action.",
        ),
        ErrorCase::NotFound | ErrorCase::ObjectDeleted => envelope(
            404,
            Some("E3003"),
            "Resource can not be found",
            "The resource you requested can not be found.",
        ),
        ErrorCase::RateLimited { .. } => envelope(
            429,
            None,
            "Too many requests: lower the rate",
            "Too many requests. Please try again later.",
        ),
        ErrorCase::WorkPending => report_answer(
            short_id(),
            json!({"report_run_id": "a1b2c3d4-0000-4000-8000-000000000001", "async_status": "RUNNING"}),
        ),
        ErrorCase::WorkFailed => report_answer(
            short_id(),
            json!({"report_run_id": "a1b2c3d4-0000-4000-8000-000000000001", "async_status": "FAILED"}),
        ),
        // platforms.md §1: "Batch responses carry a per-item sub_request_status, so an HTTP 200
        // can hide failed items".
        ErrorCase::BatchItemsFailed { coded } => {
            let mut failed = json!({
                "sub_request_status": "ERROR",
                "sub_request_error_reason": "Resource can not be found",
            });
            if coded {
                failed["error_code"] = json!("E3003");
            }
            Reply::json(
                200,
                &json!({
                    "request_status": "SUCCESS",
                    "request_id": short_id(),
                    "campaigns": [
                        {"sub_request_status": "SUCCESS", "campaign": {"id": "6f3a0000-0000-4000-8000-000000000001", "name": "Campaign 1"}},
                        failed,
                    ],
                }),
            )
        }
        ErrorCase::ConsentRefused { declined } => super::consent_redirect(P, declined),
        ErrorCase::Outage | ErrorCase::TaskPending | ErrorCase::TransientParamError => envelope(
            503,
            None,
            "Service temporarily unavailable",
            "Something went wrong. Please try again later.",
        ),
        ErrorCase::OutagePage { status } => load_balancer_page(status),
        ErrorCase::InvalidParams
        | ErrorCase::EndpointGone { .. }
        | ErrorCase::StaleSignature
        | ErrorCase::MediaRejected { .. } => envelope(
            400,
            None,
            d.message.as_deref().unwrap_or("Invalid request"),
            "The request is invalid.",
        ),
        ErrorCase::OAuthInvalidRequest => oauth(400, "invalid_request", "Missing parameter"),
        ErrorCase::OAuthInvalidClient => {
            oauth(401, "invalid_client", "Client authentication failed")
        }
        ErrorCase::OAuthInvalidGrant | ErrorCase::RefreshTokenRefused { .. } => {
            oauth(400, "invalid_grant", "Invalid grant")
        }
        ErrorCase::OAuthUnsupportedGrant => {
            oauth(400, "unsupported_grant_type", "Unsupported grant type")
        }
    }
}

pub(crate) fn routes() -> Router<Sandbox> {
    Router::new()
        .route("/login/oauth2/access_token", post(token))
        .route("/v1/me", get(me))
        .route("/v1/me/organizations", get(organizations))
        .route("/v1/organizations/{id}/adaccounts", get(adaccounts))
        .route("/v1/adaccounts/{id}/campaigns", get(campaigns))
        .route("/v1/adaccounts/{id}/stats", get(stats))
        .route(
            "/v1/adaccounts/{id}/async_stats_reports/{run}",
            get(stats_report),
        )
}

fn fail(sb: &Sandbox, case: ErrorCase, message: &str) -> Response {
    refuse(sb, P, case, &ErrorDetail::message(message))
}

async fn token(State(sb): State<Sandbox>, Form(f): Form<HashMap<String, String>>) -> Response {
    let grant_type = f.get("grant_type").map(String::as_str).unwrap_or("");
    let client_id = f.get("client_id").map(String::as_str).unwrap_or("");
    let app = sb.ledger().app(P, client_id);
    let secret_ok = app.as_ref().is_some_and(|a| {
        a.secret_matches(f.get("client_secret").map(String::as_str).unwrap_or(""))
    });
    let now = sb.now();
    let grant = match grant_type {
        "authorization_code" if !secret_ok => None,
        "refresh_token" if !secret_ok => None,
        "authorization_code" => {
            let (Some(code), Some(redirect_uri)) = (f.get("code"), f.get("redirect_uri")) else {
                sb.counters().token_call(P, None, grant_type);
                return fail(
                    &sb,
                    ErrorCase::OAuthInvalidRequest,
                    "code and redirect_uri are required",
                );
            };
            match sb
                .ledger()
                .redeem_code(code, P, client_id, Some(redirect_uri), None, now)
            {
                Ok(c) => Some(sb.ledger().new_grant(&c, now)),
                Err(r) => {
                    sb.counters().token_call(P, None, grant_type);
                    let why = match r {
                        CodeRefusal::Used => "Authorization code has already been used",
                        CodeRefusal::Expired => "Authorization code expired",
                        CodeRefusal::RedirectMismatch => "redirect_uri does not match",
                        _ => "Invalid authorization code",
                    };
                    return fail(&sb, ErrorCase::OAuthInvalidGrant, why);
                }
            }
        }
        "refresh_token" => {
            let Some(rt) = f.get("refresh_token") else {
                sb.counters().token_call(P, None, grant_type);
                return fail(
                    &sb,
                    ErrorCase::OAuthInvalidRequest,
                    "refresh_token is required",
                );
            };
            let (rotate, grace) = {
                let s = sb.faults(P).settings.read();
                (s.rotation, s.reuse_grace)
            };
            match sb
                .ledger()
                .use_refresh(P, client_id, rt, rotate, grace, now)
            {
                Ok((g, _)) => Some(g),
                Err(r) => {
                    sb.counters().token_call(P, None, grant_type);
                    let why = match r {
                        RefreshRefusal::Reused => "Refresh token has already been used",
                        RefreshRefusal::Dead => "Refresh token has been revoked",
                        _ => "Invalid refresh token",
                    };
                    return fail(&sb, ErrorCase::OAuthInvalidGrant, why);
                }
            }
        }
        "" => {
            sb.counters().token_call(P, None, "-");
            return fail(
                &sb,
                ErrorCase::OAuthInvalidRequest,
                "grant_type is required",
            );
        }
        other => {
            sb.counters().token_call(P, None, other);
            return fail(
                &sb,
                ErrorCase::OAuthUnsupportedGrant,
                "Unsupported grant type",
            );
        }
    };
    let Some(grant) = grant else {
        sb.counters().token_call(P, None, grant_type);
        return fail(
            &sb,
            ErrorCase::OAuthInvalidClient,
            "Client authentication failed",
        );
    };
    sb.counters().token_call(P, Some(&grant.id), grant_type);
    let lifetime = sb.config().access_lifetime(P);
    let (access, _) =
        sb.ledger()
            .issue_access(&grant, AccessKind::Standard, "snapat.", lifetime, now);
    let rotate = sb.faults(P).settings.read().rotation;
    let refresh = if grant_type == "authorization_code" || rotate {
        sb.ledger()
            .issue_refresh(&grant, "snaprt.", P.refresh_lifetime(), now)
            .0
    } else {
        // Without rotation the same refresh token stays valid and is sent back.
        f.get("refresh_token").cloned().unwrap_or_default()
    };
    token_reply(
        &sb,
        P,
        json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": lifetime.map_or(3600, |l| l.as_secs()),
            "refresh_token": refresh,
            "scope": grant.scopes().join(" "),
        }),
    )
}

/// Gate + Snapchat's own limits: 10 req/s per token and 20 req/s per app.
fn authorize(sb: &Sandbox, headers: &HeaderMap) -> Result<(Arc<AccessToken>, String), Response> {
    let token = bearer(headers);
    let unauthorized = |r: Refusal| {
        let case = match sb.faults(P).settings.read().unauthorized_style {
            UnauthorizedStyle::Challenge if r == Refusal::Expired => ErrorCase::TokenExpired,
            UnauthorizedStyle::Challenge => ErrorCase::TokenInvalid,
            UnauthorizedStyle::Plain => ErrorCase::TokenRefusedPlainText,
            UnauthorizedStyle::Empty => ErrorCase::TokenRefusedEmpty,
        };
        refuse(sb, P, case, &ErrorDetail::default())
    };
    let access = match sb.gate(P, token.as_deref()) {
        Ok(a) => a,
        Err(Gate::Token(r)) => return Err(unauthorized(r)),
        Err(Gate::Throttled) => {
            return Err(refuse(
                sb,
                P,
                ErrorCase::RateLimited { limit: Limit::User },
                &ErrorDetail::default(),
            ));
        }
    };
    if sb.config().enforce_rate_limits {
        let now = sb.now();
        let h = hash(token.as_deref().unwrap_or(""));
        let tkey = format!(
            "snap:t:{:x}",
            u128::from_be_bytes(h[..16].try_into().unwrap_or_default())
        );
        let akey = format!("snap:a:{}", access.grant.app.client_id);
        let second = Duration::from_secs(1);
        if sb.limits().admit(tkey, 10, second, now).is_err() {
            return Err(refuse(
                sb,
                P,
                ErrorCase::RateLimited { limit: Limit::User },
                &ErrorDetail::default(),
            ));
        }
        if sb.limits().admit(akey, 20, second, now).is_err() {
            return Err(refuse(
                sb,
                P,
                ErrorCase::RateLimited { limit: Limit::App },
                &ErrorDetail::default(),
            ));
        }
    }
    if !access.grant.has_scope(SCOPE) {
        return Err(refuse(
            sb,
            P,
            ErrorCase::ScopeMissing,
            &ErrorDetail::default(),
        ));
    }
    let req = short_id();
    Ok((access, req))
}

fn ok(request_id: String, mut body: Value) -> Response {
    body["request_status"] = json!("SUCCESS");
    body["request_id"] = json!(request_id);
    Reply::json(200, &body).into_response()
}

async fn me(State(sb): State<Sandbox>, headers: HeaderMap) -> Response {
    let (a, req) = match authorize(&sb, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let g = &a.grant;
    ok(
        req,
        json!({"me": {
            "id": uuid_like(g, "user"),
            "email": format!("{}@example.com", g.account),
            "organization_id": uuid_like(g, "org"),
            "display_name": g.account,
        }}),
    )
}

/// Ad-account access needs the role; an id the user cannot see is "not found".
fn role_check(sb: &Sandbox, a: &AccessToken) -> Result<(), Response> {
    if a.grant.role_removed() {
        return Err(refuse(
            sb,
            P,
            ErrorCase::RoleMissing,
            &ErrorDetail::default(),
        ));
    }
    Ok(())
}

fn ad_account_ids(a: &AccessToken) -> [String; 2] {
    [
        uuid_like(&a.grant, "adaccount/0"),
        uuid_like(&a.grant, "adaccount/1"),
    ]
}

async fn organizations(State(sb): State<Sandbox>, headers: HeaderMap) -> Response {
    let (a, req) = match authorize(&sb, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Err(r) = role_check(&sb, &a) {
        return r;
    }
    ok(
        req,
        json!({"organizations": [{"sub_request_status": "SUCCESS", "organization": {
            "id": uuid_like(&a.grant, "org"),
            "name": format!("{} organization", a.grant.account),
            "type": "ENTERPRISE",
            "state": "ACTIVE",
        }}]}),
    )
}

async fn adaccounts(
    State(sb): State<Sandbox>,
    headers: HeaderMap,
    Path(org): Path<String>,
) -> Response {
    let (a, req) = match authorize(&sb, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Err(r) = role_check(&sb, &a) {
        return r;
    }
    if org != uuid_like(&a.grant, "org") {
        return fail(&sb, ErrorCase::NotFound, "Resource can not be found");
    }
    let list: Vec<Value> = ad_account_ids(&a)
        .iter()
        .enumerate()
        .map(|(i, id)| {
            json!({"sub_request_status": "SUCCESS", "adaccount": {
                "id": id, "name": format!("Ad account {}", i + 1), "organization_id": org,
                "status": "ACTIVE", "type": "PARTNER", "currency": "USD", "timezone": "UTC",
            }})
        })
        .collect();
    ok(req, json!({"adaccounts": list}))
}

async fn campaigns(
    State(sb): State<Sandbox>,
    headers: HeaderMap,
    Path(account): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (a, req) = match authorize(&sb, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Err(r) = role_check(&sb, &a) {
        return r;
    }
    if !ad_account_ids(&a).contains(&account) {
        return fail(&sb, ErrorCase::NotFound, "Resource can not be found");
    }
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(50)
        .clamp(1, 1000);
    let offset = q
        .get("cursor")
        .and_then(|c| c.parse::<usize>().ok())
        .unwrap_or(0);
    let (range, more) = page_of(CAMPAIGNS_PER_ACCOUNT, offset, limit);
    let end = range.end;
    let list: Vec<Value> = range
        .map(|i| {
            json!({"sub_request_status": "SUCCESS", "campaign": {
                "id": uuid_like(&a.grant, &format!("{account}/campaign/{i}")),
                "name": format!("Campaign {}", i + 1),
                "ad_account_id": account,
                "status": if i % 3 == 0 { "PAUSED" } else { "ACTIVE" },
                "objective": "AWARENESS",
            }})
        })
        .collect();
    let mut body = json!({"campaigns": list, "paging": {}});
    if more {
        body["paging"]["next_link"] = json!(format!(
            "{}/snapchat/v1/adaccounts/{account}/campaigns?limit={limit}&cursor={end}",
            origin(&headers)
        ));
    }
    ok(req, body)
}

/// `GET …/stats?async=true` starts a report run that stays pending for a while.
async fn stats(
    State(sb): State<Sandbox>,
    headers: HeaderMap,
    Path(account): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (a, req) = match authorize(&sb, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Err(r) = role_check(&sb, &a) {
        return r;
    }
    if !ad_account_ids(&a).contains(&account) {
        return fail(&sb, ErrorCase::NotFound, "Resource can not be found");
    }
    if q.get("async").map(String::as_str) != Some("true") {
        return ok(
            req,
            json!({"timeseries_stats": [{"sub_request_status": "SUCCESS", "timeseries_stat": {
                "id": account, "type": "AD_ACCOUNT", "granularity": "TOTAL",
                "stats": {"impressions": 1200, "swipes": 34, "spend": 1500000},
            }}]}),
        );
    }
    let run = sb.start_job("");
    report_answer(
        req,
        json!({"report_run_id": run, "async_status": "STARTED"}),
    )
    .into_response()
}

async fn stats_report(
    State(sb): State<Sandbox>,
    headers: HeaderMap,
    Path((account, run)): Path<(String, String)>,
) -> Response {
    let (a, req) = match authorize(&sb, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Err(r) = role_check(&sb, &a) {
        return r;
    }
    if !ad_account_ids(&a).contains(&account) {
        return fail(&sb, ErrorCase::NotFound, "Resource can not be found");
    }
    let report = match sb.job_done(&run) {
        None => return fail(&sb, ErrorCase::NotFound, "Resource can not be found"),
        Some(false) => json!({"report_run_id": run, "async_status": "RUNNING"}),
        Some(true) => json!({
            "report_run_id": run, "async_status": "COMPLETED",
            "result": format!("{}/snapchat/reports/{run}.csv", origin(&headers)),
        }),
    };
    report_answer(req, report).into_response()
}

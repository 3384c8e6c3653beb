//! Meta Graph / Marketing API v24.0 (platforms.md §5): code → short-lived token (1 h) →
//! `fb_exchange_token` → 60-day token that cannot be refreshed; Graph error envelope with codes
//! and subcodes; `X-App-Usage` and `X-Business-Use-Case-Usage` on every API response.

use super::{
    GraphError, cursor, cursor_offset, graph_token, refuse, session_expired_message, token_reply,
};
use crate::error_case::{ErrorCase, ErrorDetail, Limit, Reply};
use crate::ledger::{AccessKind, AccessToken, CodeRefusal, Refusal};
use crate::provider::Provider;
use crate::{Gate, Sandbox};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const P: Provider = Provider::Meta;
const HOUR: Duration = Duration::from_secs(3600);
/// Calls per hour per user in the app budget (Graph platform rate limit: 200 × users).
const APP_CALLS_PER_USER: u64 = 200;
/// Ads-management calls per hour per ad account (development tier, before the per-ad bonus).
const AD_ACCOUNT_CALLS: u64 = 300;

pub(crate) const CASES: &[ErrorCase] = &[
    ErrorCase::CredentialMissing,
    ErrorCase::TokenExpired,
    ErrorCase::TokenInvalid,
    ErrorCase::TokenRevoked,
    ErrorCase::ScopeMissing,
    ErrorCase::RateLimited { limit: Limit::User },
    ErrorCase::RateLimited { limit: Limit::App },
    ErrorCase::RateLimited {
        limit: Limit::AdAccount,
    },
    ErrorCase::Outage,
    ErrorCase::OutagePage { status: 502 },
    ErrorCase::OutagePage { status: 503 },
    ErrorCase::NotFound,
    ErrorCase::InvalidParams,
    ErrorCase::OAuthInvalidRequest,
    ErrorCase::OAuthInvalidClient,
    ErrorCase::TaskPending,
    ErrorCase::WorkPending,
    ErrorCase::WorkFailed,
    ErrorCase::TokenExpiredUnspecific,
    ErrorCase::TransientParamError,
    ErrorCase::ObjectDeleted,
    ErrorCase::RateLimited {
        limit: Limit::UnderUnknownCode,
    },
    ErrorCase::ConsentRefused { declined: true },
    ErrorCase::ConsentRefused { declined: false },
];

/// An asynchronous report run's answer (GET /{report_run_id}): HTTP 200 whatever its
/// `async_status` (Marketing API insights, asynchronous jobs).
pub(crate) fn report_run(id: &str, status: &str, percent: u8) -> Reply {
    Reply::json(
        200,
        &json!({"id": id, "async_status": status, "async_percent_completion": percent}),
    )
}

/// Meta's one rendering function. `type` is OAuthException throughout, as Meta sends it even on
/// rate limits and parameter errors (platforms.md §0.4).
pub(crate) fn render(case: ErrorCase, d: &ErrorDetail) -> Reply {
    let msg = |default: &str| d.message.clone().unwrap_or_else(|| default.to_string());
    let g = |status: u16, message: &str, code: u32, subcode: Option<u32>| {
        GraphError {
            status,
            message,
            kind: "OAuthException",
            code,
            subcode,
            transient: false,
        }
        .reply()
    };
    match case {
        ErrorCase::CredentialMissing => g(400, "An active access token must be used to query information about the current user.", 2500, None),
        ErrorCase::TokenExpired | ErrorCase::TokenRefusedPlainText | ErrorCase::TokenRefusedEmpty => g(400, &session_expired_message(d), 190, Some(463)),
        ErrorCase::TokenInvalid => g(400, "Invalid OAuth access token - Cannot parse access token", 190, None),
        ErrorCase::TokenRevoked | ErrorCase::AuthorizerGone { .. } => g(400, "Error validating access token: The user has not authorized application.", 190, Some(458)),
        // Permission errors may come as 403 (platforms.md §5).
        ErrorCase::ScopeMissing | ErrorCase::RoleMissing | ErrorCase::AppMismatch | ErrorCase::AccessRefused { .. } => {
            g(403, "(#200) Requires ads_management or ads_read permission to manage the object", 200, None)
        }
        ErrorCase::RateLimited { limit: Limit::User } => g(400, "User request limit reached", 17, Some(2_446_079)),
        ErrorCase::RateLimited { limit: Limit::App | Limit::Restricted } => g(400, "(#4) Application request limit reached", 4, None),
        ErrorCase::RateLimited { limit: Limit::AdAccount } => g(
            400,
            "(#80004) There have been too many calls to this ad-account. Wait a bit and try again.",
            80004,
            Some(2_446_079),
        ),
        ErrorCase::RateLimited { limit: Limit::UnderUnknownCode } => g(400, "An unknown error occurred", 1, Some(2_446_079)),
        // Instagram publishing before the container is FINISHED (Instagram Graph API error codes).
        ErrorCase::TaskPending => g(400, "Media ID is not available", 9007, Some(2_207_027)),
        ErrorCase::WorkPending => report_run("6000000000001", "Job Running", 50),
        ErrorCase::WorkFailed => report_run("6000000000001", "Job Failed", 0),
        ErrorCase::TokenExpiredUnspecific => g(400, &session_expired_message(d), 190, None),
        ErrorCase::TransientParamError => GraphError {
            status: 400,
            message: "(#100) Please reduce the amount of data you're asking for, then retry your request",
            kind: "OAuthException",
            code: 100,
            subcode: None,
            transient: true,
        }
        .reply(),
        ErrorCase::ObjectDeleted => g(400, &msg("(#100) The ad 120200000000001 has been deleted"), 100, None),
        ErrorCase::ConsentRefused { declined } => super::consent_redirect(P, declined),
        ErrorCase::Outage => GraphError {
            status: 500,
            message: "An unexpected error has occurred. Please retry your request later.",
            kind: "OAuthException",
            code: 2,
            subcode: None,
            transient: true,
        }
        .reply(),
        // Meta's own HTML error page rather than a bare load-balancer page.
        ErrorCase::OutagePage { status } => Reply::html(
            status,
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Error</title></head><body><div><h1>Sorry, something went wrong.</h1><p>We're working on getting this fixed as soon as we can.</p></div></body></html>".into(),
        ),
        ErrorCase::NotFound => g(400, &msg("Unsupported get request. Object does not exist, cannot be loaded due to missing permissions, or does not support this operation."), 100, Some(33)),
        ErrorCase::InvalidParams | ErrorCase::EndpointGone { .. } | ErrorCase::StaleSignature | ErrorCase::MediaRejected { .. } | ErrorCase::BatchItemsFailed { .. } => {
            g(400, &msg("(#100) Invalid parameter"), 100, None)
        }
        ErrorCase::OAuthInvalidRequest | ErrorCase::OAuthInvalidGrant | ErrorCase::OAuthUnsupportedGrant | ErrorCase::RefreshTokenRefused { .. } => {
            g(400, &msg("Invalid parameter"), 100, d.graph_subcode)
        }
        ErrorCase::OAuthInvalidClient => g(400, "Error validating client secret.", 101, None),
    }
}

pub(crate) fn routes() -> Router<Sandbox> {
    Router::new()
        .route("/v24.0/oauth/access_token", get(token))
        .route("/v24.0/{node}", get(node))
        .route("/v24.0/{node}/{edge}", get(edge).post(edge))
}

fn param_error(sb: &Sandbox, message: &str, subcode: Option<u32>) -> Response {
    refuse(
        sb,
        P,
        ErrorCase::OAuthInvalidRequest,
        &ErrorDetail {
            message: Some(message.into()),
            graph_subcode: subcode,
            ..Default::default()
        },
    )
}

fn token_refusal(sb: &Sandbox, r: Refusal, token: Option<&str>) -> Response {
    let case = match r {
        Refusal::Missing => ErrorCase::CredentialMissing,
        Refusal::Unknown => ErrorCase::TokenInvalid,
        Refusal::Revoked => ErrorCase::TokenRevoked,
        Refusal::Expired => ErrorCase::TokenExpired,
    };
    let expired_at = token.and_then(|t| sb.ledger().peek_expiry(t));
    refuse(
        sb,
        P,
        case,
        &ErrorDetail {
            expired_at,
            now: Some(sb.now()),
            ..Default::default()
        },
    )
}

/// One path, two grants: `code` → short-lived; `grant_type=fb_exchange_token` → long-lived.
async fn token(State(sb): State<Sandbox>, Query(q): Query<HashMap<String, String>>) -> Response {
    let get = |k: &str| q.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let exchange = get("grant_type") == Some("fb_exchange_token");
    let gt = if exchange {
        "fb_exchange_token"
    } else {
        "authorization_code"
    };
    let Some(client_id) = get("client_id") else {
        sb.counters().token_call(P, None, gt);
        return param_error(&sb, "Missing client_id parameter.", None);
    };
    let Some(app) = sb.ledger().app(P, client_id) else {
        sb.counters().token_call(P, None, gt);
        return param_error(
            &sb,
            "Error validating application. Invalid application ID.",
            None,
        );
    };
    if !app.secret_matches(get("client_secret").unwrap_or("")) {
        sb.counters().token_call(P, None, gt);
        return refuse(
            &sb,
            P,
            ErrorCase::OAuthInvalidClient,
            &ErrorDetail::default(),
        );
    }
    let now = sb.now();
    if exchange {
        let short = get("fb_exchange_token");
        let access = match sb.ledger().check_access(P, short, now) {
            Ok(a) => a,
            Err(r) => {
                sb.counters().token_call(P, None, gt);
                return token_refusal(&sb, r, short);
            }
        };
        sb.counters().token_call(P, Some(&access.grant.id), gt);
        if access.grant.app.client_id != app.client_id {
            return token_refusal(&sb, Refusal::Unknown, short);
        }
        // Long-lived user tokens cannot be refreshed (platforms.md §0.3): re-exchanging one fails.
        if access.kind != AccessKind::ShortLived {
            return param_error(
                &sb,
                "The access token is already long-lived and cannot be extended.",
                None,
            );
        }
        let lifetime = sb.config().long_lived_lifetime(P);
        let (token, _) = sb.ledger().issue_access(
            &access.grant,
            AccessKind::LongLived,
            "EAAG",
            Some(lifetime),
            now,
        );
        return token_reply(
            &sb,
            P,
            json!({"access_token": token, "token_type": "bearer", "expires_in": lifetime.as_secs()}),
        );
    }
    let (Some(code), Some(redirect_uri)) = (get("code"), get("redirect_uri")) else {
        sb.counters().token_call(P, None, gt);
        return param_error(&sb, "Missing code or redirect_uri parameter.", None);
    };
    let c = match sb
        .ledger()
        .redeem_code(code, P, client_id, Some(redirect_uri), None, now)
    {
        Ok(c) => c,
        Err(r) => {
            sb.counters().token_call(P, None, gt);
            let (m, sub) = match r {
                CodeRefusal::Used => ("This authorization code has been used.", 36009),
                CodeRefusal::Expired => ("This authorization code has expired.", 36007),
                CodeRefusal::RedirectMismatch => (
                    "Error validating verification code. Please make sure your redirect_uri is identical to the one you used in the OAuth dialog request",
                    36008,
                ),
                _ => ("Invalid verification code format.", 36004),
            };
            return param_error(&sb, m, Some(sub));
        }
    };
    let grant = sb.ledger().new_grant(&c, now);
    sb.counters().token_call(P, Some(&grant.id), gt);
    let lifetime = sb.config().access_lifetime(P);
    let (access, _) =
        sb.ledger()
            .issue_access(&grant, AccessKind::ShortLived, "EAAG", lifetime, now);
    token_reply(
        &sb,
        P,
        json!({"access_token": access, "token_type": "bearer", "expires_in": lifetime.map_or(3600, |l| l.as_secs())}),
    )
}

/// The usage an API response reports, in percent of each budget.
struct Usage {
    app_pct: u64,
    account: Option<(String, u64, u64)>,
}

impl Usage {
    fn apply(&self, mut resp: Response) -> Response {
        let cpu = self.app_pct / 3;
        let time = self.app_pct / 2;
        let h = resp.headers_mut();
        if let Ok(v) = json!({"call_count": self.app_pct, "total_cputime": cpu, "total_time": time})
            .to_string()
            .parse()
        {
            h.insert("x-app-usage", v);
        }
        let buc = match &self.account {
            Some((id, pct, eta)) => json!({ id.clone(): [{
                "type": "ads_management", "call_count": pct, "total_cputime": pct / 3,
                "total_time": pct / 2, "estimated_time_to_regain_access": eta,
            }]}),
            None => json!({}),
        };
        if let Ok(v) = buc.to_string().parse() {
            h.insert("x-business-use-case-usage", v);
        }
        resp
    }
}

fn pct(estimate: f64, budget: u64) -> u64 {
    ((estimate * 100.0) / budget.max(1) as f64).round() as u64
}

/// Gate + the app budget (code 4) + the ad account's BUC budget (80004), returning the usage to
/// report. `account` is the `act_…` id when the call is about an ad account.
fn authorize(
    sb: &Sandbox,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    account: Option<&str>,
) -> Result<(Arc<AccessToken>, Usage), Response> {
    let token = graph_token(headers, q);
    let access = match sb.gate(P, token.as_deref()) {
        Ok(a) => a,
        Err(Gate::Token(r)) => return Err(token_refusal(sb, r, token.as_deref())),
        Err(Gate::Throttled) => {
            // Meta sends its usage headers with the throttle: every counter past 100 and the
            // minutes until access returns (platforms.md §5).
            let usage = Usage {
                app_pct: 100,
                account: Some((
                    account
                        .unwrap_or("0")
                        .trim_start_matches("act_")
                        .to_string(),
                    100,
                    1,
                )),
            };
            return Err(usage.apply(refuse(
                sb,
                P,
                ErrorCase::RateLimited { limit: Limit::User },
                &ErrorDetail::default(),
            )));
        }
    };
    let now = sb.now();
    let app = &access.grant.app;
    let budget = APP_CALLS_PER_USER * app.users().max(1);
    let app_est = sb
        .limits()
        .record(format!("meta:app:{}", app.client_id), HOUR, now);
    let mut usage = Usage {
        app_pct: pct(app_est, budget),
        account: None,
    };
    if let Some(act) = account {
        let est = sb.limits().record(format!("meta:buc:{act}"), HOUR, now);
        let p = pct(est, AD_ACCOUNT_CALLS);
        let eta = if p > 100 {
            let into_window = now.timestamp() % HOUR.as_secs() as i64;
            ((HOUR.as_secs() as i64 - into_window) / 60).max(1) as u64
        } else {
            0
        };
        usage.account = Some((act.trim_start_matches("act_").to_string(), p, eta));
    }
    if sb.config().enforce_rate_limits {
        // Throttling starts once a counter passes 100 (platforms.md §5).
        if usage.app_pct > 100 {
            return Err(usage.apply(refuse(
                sb,
                P,
                ErrorCase::RateLimited { limit: Limit::App },
                &ErrorDetail::default(),
            )));
        }
        if usage.account.as_ref().is_some_and(|(_, p, _)| *p > 100) {
            return Err(usage.apply(refuse(
                sb,
                P,
                ErrorCase::RateLimited {
                    limit: Limit::AdAccount,
                },
                &ErrorDetail::default(),
            )));
        }
    }
    Ok((access, usage))
}

fn ad_accounts(a: &AccessToken) -> Vec<String> {
    (0..2)
        .map(|i| format!("act_{}", a.grant.numeric_id(&format!("adaccount/{i}"))))
        .collect()
}

fn has_ads_scope(a: &AccessToken) -> bool {
    a.grant.has_scope("ads_read") || a.grant.has_scope("ads_management")
}

fn not_found(sb: &Sandbox, id: &str) -> Response {
    refuse(
        sb,
        P,
        ErrorCase::NotFound,
        &ErrorDetail::message(format!(
            "Unsupported get request. Object with ID '{id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation. Please read the Graph API documentation at https://developers.facebook.com/docs/graph-api"
        )),
    )
}

fn ok(v: Value) -> Response {
    Reply::json(200, &v).into_response()
}

async fn node(
    State(sb): State<Sandbox>,
    headers: HeaderMap,
    Path(node): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (a, usage) = match authorize(&sb, &headers, &q, None) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let resp = if node == "me" || node == a.grant.numeric_id("user").to_string() {
        let all = json!({"id": a.grant.numeric_id("user").to_string(), "name": a.grant.account, "email": format!("{}@example.com", a.grant.account)});
        let fields = q.get("fields").map(String::as_str).unwrap_or("id,name");
        let mut out = serde_json::Map::new();
        for f in fields.split(',') {
            if let Some(v) = all.get(f.trim()) {
                out.insert(f.trim().into(), v.clone());
            }
        }
        ok(Value::Object(out))
    } else {
        // An async insights report run: "Job Running", then "Job Completed".
        match sb.job_done(&node) {
            None => not_found(&sb, &node),
            Some(false) => report_run(&node, "Job Running", 50).into_response(),
            Some(true) => ok(
                json!({"id": node, "async_status": "Job Completed", "async_percent_completion": 100}),
            ),
        }
    };
    usage.apply(resp)
}

const CAMPAIGNS: usize = super::CAMPAIGNS_PER_ACCOUNT;

async fn edge(
    State(sb): State<Sandbox>,
    method: axum::http::Method,
    headers: HeaderMap,
    Path((node, edge)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let account = node.starts_with("act_").then_some(node.as_str());
    let (a, usage) = match authorize(&sb, &headers, &q, account) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let resp = edge_inner(&sb, &method, &headers, &a, &node, &edge, &q);
    usage.apply(resp)
}

fn edge_inner(
    sb: &Sandbox,
    method: &axum::http::Method,
    headers: &HeaderMap,
    a: &AccessToken,
    node: &str,
    edge: &str,
    q: &HashMap<String, String>,
) -> Response {
    let is_me = node == "me" || node == a.grant.numeric_id("user").to_string();
    let post = method == axum::http::Method::POST;
    if !has_ads_scope(a) && (edge == "adaccounts" || node.starts_with("act_")) {
        return refuse(sb, P, ErrorCase::ScopeMissing, &ErrorDetail::default());
    }
    let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 25,
        Some(Ok(l)) if (1..=500).contains(&l) => l,
        _ => {
            return refuse(
                sb,
                P,
                ErrorCase::InvalidParams,
                &ErrorDetail::message("(#100) Param limit must be a number between 1 and 500"),
            );
        }
    };
    let offset = q.get("after").and_then(|c| cursor_offset(c)).unwrap_or(0);
    let base = format!("{}/meta/v24.0/{node}/{edge}", super::origin(headers));
    match (is_me, edge, post) {
        (true, "adaccounts", false) => {
            // Losing the role on an ad account hides it (Meta then answers 100/33 on it).
            let list: Vec<String> = if a.grant.role_removed() {
                Vec::new()
            } else {
                ad_accounts(a)
            };
            let (range, more) = super::page_of(list.len(), offset, limit);
            let data: Vec<Value> = list[range.clone()].iter().enumerate()
                .map(|(i, id)| json!({"id": id, "account_id": id.trim_start_matches("act_"), "name": format!("Ad account {}", range.start + i + 1), "account_status": 1}))
                .collect();
            ok(paged(data, range, more, &base, limit))
        }
        (false, "campaigns", false) if owns(a, node) => {
            let (range, more) = super::page_of(CAMPAIGNS, offset, limit);
            let data: Vec<Value> = range.clone()
                .map(|i| json!({"id": a.grant.numeric_id(&format!("{node}/campaign/{i}")).to_string(), "name": format!("Campaign {}", i + 1), "status": if i % 3 == 0 { "PAUSED" } else { "ACTIVE" }, "objective": "OUTCOME_TRAFFIC"}))
                .collect();
            ok(paged(data, range, more, &base, limit))
        }
        (false, "insights", true) if owns(a, node) => {
            ok(json!({"report_run_id": sb.start_job("")}))
        }
        _ => not_found(sb, node),
    }
}

/// The ad account is one of the user's and the user still has a role on it; otherwise Meta
/// answers 100/33 "cannot be loaded due to missing permissions".
fn owns(a: &AccessToken, node: &str) -> bool {
    !a.grant.role_removed() && ad_accounts(a).iter().any(|id| id == node)
}

fn paged(
    data: Vec<Value>,
    range: std::ops::Range<usize>,
    more: bool,
    base: &str,
    limit: usize,
) -> Value {
    let mut paging =
        json!({"cursors": {"before": cursor(range.start), "after": cursor(range.end)}});
    if more {
        paging["next"] = json!(format!("{base}?limit={limit}&after={}", cursor(range.end)));
    }
    json!({"data": data, "paging": paging})
}

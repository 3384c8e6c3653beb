//! Threads API (platforms.md §4): code → short-lived token (1 h) → `th_exchange_token` → 60-day
//! token, refreshed with `th_refresh_token` only when ≥ 24 h old, unexpired and `threads_basic`
//! is granted. Errors use the Graph envelope (§5), HTTP 400 for most.

use super::{
    GraphError, cursor, cursor_offset, graph_token, refuse, session_expired_message, token_reply,
};
use crate::error_case::{ErrorCase, ErrorDetail, Limit, Reply, load_balancer_page};
use crate::ledger::{AccessKind, AccessToken, CodeRefusal, Refusal};
use crate::provider::Provider;
use crate::{Gate, Sandbox};
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::TimeDelta;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const P: Provider = Provider::Threads;

/// The message of the sandbox's answer to a refresh of a token under 24 hours old. Invented:
/// no first-party body was found (platforms.md §4 "The error body for refreshing a token under
/// 24 h old was not found [?]").
pub(crate) const TOO_EARLY_REFRESH_MESSAGE: &str =
    "The access token must be at least 24 hours old to be refreshed.";

pub(crate) const CASES: &[ErrorCase] = &[
    ErrorCase::CredentialMissing,
    ErrorCase::TokenExpired,
    ErrorCase::TokenInvalid,
    ErrorCase::TokenRevoked,
    ErrorCase::ScopeMissing,
    ErrorCase::RateLimited { limit: Limit::User },
    ErrorCase::RateLimited { limit: Limit::App },
    ErrorCase::Outage,
    ErrorCase::OutagePage { status: 502 },
    ErrorCase::OutagePage { status: 503 },
    ErrorCase::NotFound,
    ErrorCase::InvalidParams,
    ErrorCase::OAuthInvalidRequest,
    ErrorCase::OAuthInvalidClient,
    ErrorCase::TaskPending,
    ErrorCase::WorkPending,
    ErrorCase::MediaRejected { expired: false },
    ErrorCase::MediaRejected { expired: true },
    ErrorCase::TokenExpiredUnspecific,
    ErrorCase::TransientParamError,
    ErrorCase::ObjectDeleted,
    ErrorCase::ConsentRefused { declined: true },
    ErrorCase::ConsentRefused { declined: false },
];

/// A media container's status answer (GET /{container-id}?fields=status,error_message): HTTP 200
/// whatever the status (developers.facebook.com/docs/threads/troubleshooting).
pub(crate) fn container_status(id: &str, status: &str, error_message: Option<&str>) -> Reply {
    Reply::json(
        200,
        &json!({"id": id, "status": status, "error_message": error_message}),
    )
}

/// Threads' one rendering function (Graph envelope; API errors carry `THApiException`,
/// token errors `OAuthException`).
pub(crate) fn render(case: ErrorCase, d: &ErrorDetail) -> Reply {
    let msg = |default: &str| d.message.clone().unwrap_or_else(|| default.to_string());
    let g = |status: u16, message: &str, kind: &str, code: u32, subcode: Option<u32>| {
        GraphError {
            status,
            message,
            kind,
            code,
            subcode,
            transient: false,
        }
        .reply()
    };
    match case {
        ErrorCase::CredentialMissing => g(
            400,
            "An active access token must be used to query information about the current user.",
            "OAuthException",
            2500,
            None,
        ),
        ErrorCase::TokenExpired
        | ErrorCase::TokenRefusedPlainText
        | ErrorCase::TokenRefusedEmpty => g(
            400,
            &session_expired_message(d),
            "OAuthException",
            190,
            Some(463),
        ),
        ErrorCase::TokenInvalid => g(
            400,
            "Invalid OAuth access token - Cannot parse access token",
            "OAuthException",
            190,
            None,
        ),
        ErrorCase::TokenRevoked | ErrorCase::AuthorizerGone { .. } => g(
            400,
            "Error validating access token: The session has been invalidated because the user changed their password or Threads has changed the session for security reasons.",
            "OAuthException",
            190,
            Some(460),
        ),
        ErrorCase::ScopeMissing
        | ErrorCase::RoleMissing
        | ErrorCase::AppMismatch
        | ErrorCase::AccessRefused { .. } => g(
            400,
            "(#10) Application does not have permission for this action",
            "THApiException",
            10,
            None,
        ),
        ErrorCase::RateLimited { limit: Limit::App } => g(
            400,
            "(#4) Application request limit reached",
            "THApiException",
            4,
            None,
        ),
        ErrorCase::RateLimited { .. } => g(
            400,
            "(#17) User request limit reached",
            "THApiException",
            17,
            None,
        ),
        // Publishing a container that is not FINISHED yet (fbsamples/threads_api#70).
        ErrorCase::TaskPending => GraphError {
            status: 400,
            message: "The requested resource does not exist",
            kind: "OAuthException",
            code: 24,
            subcode: Some(4_279_009),
            transient: false,
        }
        .reply(),
        ErrorCase::WorkPending => container_status("17889615691921648", "IN_PROGRESS", None),
        ErrorCase::MediaRejected { expired: false } => container_status(
            "17889615691921648",
            "ERROR",
            Some("FAILED_PROCESSING_VIDEO"),
        ),
        ErrorCase::MediaRejected { expired: true } => {
            container_status("17889615691921648", "EXPIRED", None)
        }
        ErrorCase::TokenExpiredUnspecific => g(
            400,
            &session_expired_message(d),
            "OAuthException",
            190,
            None,
        ),
        ErrorCase::TransientParamError => GraphError {
            status: 400,
            message: "(#100) An unexpected error happened. Please retry your request.",
            kind: "THApiException",
            code: 100,
            subcode: None,
            transient: true,
        }
        .reply(),
        ErrorCase::ObjectDeleted => g(
            400,
            &msg("The media with id 17889615691921648 does not exist"),
            "THApiException",
            100,
            None,
        ),
        ErrorCase::ConsentRefused { declined } => super::consent_redirect(P, declined),
        ErrorCase::Outage | ErrorCase::WorkFailed => GraphError {
            status: 500,
            message: "An unexpected error has occurred. Please retry your request later.",
            kind: "THApiException",
            code: 2,
            subcode: None,
            transient: true,
        }
        .reply(),
        ErrorCase::OutagePage { status } => load_balancer_page(status),
        ErrorCase::NotFound => g(
            400,
            &msg(
                "Unsupported get request. Object with ID does not exist, cannot be loaded due to missing permissions, or does not support this operation.",
            ),
            "THApiException",
            100,
            Some(33),
        ),
        ErrorCase::InvalidParams
        | ErrorCase::EndpointGone { .. }
        | ErrorCase::StaleSignature
        | ErrorCase::BatchItemsFailed { .. } => g(
            400,
            &msg("(#100) Invalid parameter"),
            "THApiException",
            100,
            None,
        ),
        ErrorCase::OAuthInvalidRequest
        | ErrorCase::OAuthInvalidGrant
        | ErrorCase::OAuthUnsupportedGrant
        | ErrorCase::RefreshTokenRefused { .. } => g(
            400,
            &msg("Invalid parameter"),
            "OAuthException",
            100,
            d.graph_subcode,
        ),
        ErrorCase::OAuthInvalidClient => g(
            400,
            "Error validating client secret.",
            "OAuthException",
            101,
            None,
        ),
    }
}

pub(crate) fn routes() -> Router<Sandbox> {
    Router::new()
        .route("/oauth/access_token", post(code_exchange))
        .route("/access_token", get(exchange))
        .route("/refresh_access_token", get(refresh))
        .route("/v1.0/{node}", get(node))
        .route("/v1.0/{node}/{edge}", get(edge_list).post(edge_create))
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

/// Maps a token refusal to Threads' 190 family, with the "Session has expired on …" text.
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

async fn code_exchange(
    State(sb): State<Sandbox>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let get = |k: &str| f.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let gt = "authorization_code";
    let (Some(client_id), Some(code), Some(redirect_uri)) =
        (get("client_id"), get("code"), get("redirect_uri"))
    else {
        sb.counters().token_call(P, None, gt);
        return param_error(&sb, "Missing client_id, code or redirect_uri", None);
    };
    if get("grant_type") != Some(gt) {
        sb.counters().token_call(P, None, gt);
        return param_error(&sb, "Invalid grant_type", None);
    }
    if sb
        .ledger()
        .app(P, client_id)
        .filter(|a| a.secret_matches(get("client_secret").unwrap_or("")))
        .is_none()
    {
        sb.counters().token_call(P, None, gt);
        return refuse(
            &sb,
            P,
            ErrorCase::OAuthInvalidClient,
            &ErrorDetail::default(),
        );
    }
    let now = sb.now();
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
    let (access, _) = sb.ledger().issue_access(
        &grant,
        AccessKind::ShortLived,
        "THAA",
        sb.config().access_lifetime(P),
        now,
    );
    token_reply(
        &sb,
        P,
        json!({"access_token": access, "user_id": grant.numeric_id("user")}),
    )
}

/// `th_exchange_token`: a valid short-lived token and the app's secret give a 60-day token.
async fn exchange(State(sb): State<Sandbox>, Query(q): Query<HashMap<String, String>>) -> Response {
    let gt = "th_exchange_token";
    if q.get("grant_type").map(String::as_str) != Some(gt) {
        sb.counters().token_call(P, None, gt);
        return param_error(&sb, "Invalid grant_type", None);
    }
    let token = q.get("access_token").map(String::as_str);
    let access = match sb.ledger().check_access(P, token, sb.now()) {
        Ok(a) => a,
        Err(r) => {
            sb.counters().token_call(P, None, gt);
            return token_refusal(&sb, r, token);
        }
    };
    sb.counters().token_call(P, Some(&access.grant.id), gt);
    if !access
        .grant
        .app
        .secret_matches(q.get("client_secret").map(String::as_str).unwrap_or(""))
    {
        return refuse(
            &sb,
            P,
            ErrorCase::OAuthInvalidClient,
            &ErrorDetail::default(),
        );
    }
    if access.kind != AccessKind::ShortLived {
        return param_error(&sb, "The access token is not a short-lived token.", None);
    }
    long_lived(&sb, &access)
}

fn long_lived(sb: &Sandbox, access: &AccessToken) -> Response {
    let lifetime = sb.config().long_lived_lifetime(P);
    let (token, _) = sb.ledger().issue_access(
        &access.grant,
        AccessKind::LongLived,
        "THAA",
        Some(lifetime),
        sb.now(),
    );
    token_reply(
        sb,
        P,
        json!({"access_token": token, "token_type": "bearer", "expires_in": lifetime.as_secs()}),
    )
}

/// `th_refresh_token`: the long-lived token is its own refresh credential.
async fn refresh(State(sb): State<Sandbox>, Query(q): Query<HashMap<String, String>>) -> Response {
    let gt = "th_refresh_token";
    if q.get("grant_type").map(String::as_str) != Some(gt) {
        sb.counters().token_call(P, None, gt);
        return param_error(&sb, "Invalid grant_type", None);
    }
    let token = q.get("access_token").map(String::as_str);
    let now = sb.now();
    let access = match sb.ledger().check_access(P, token, now) {
        Ok(a) => a,
        Err(r) => {
            sb.counters().token_call(P, None, gt);
            // "an expired long-lived token can no longer be refreshed" (platforms.md §0.3).
            return token_refusal(&sb, r, token);
        }
    };
    sb.counters().token_call(P, Some(&access.grant.id), gt);
    if access.kind != AccessKind::LongLived {
        return param_error(&sb, "Only long-lived access tokens can be refreshed.", None);
    }
    if now - access.issued_at < TimeDelta::hours(24) {
        // INVENTED: the 24 h rule is documented, the error body is not (platforms.md §4, §6);
        // listed in `crate::INVENTED` so nothing is tuned to its wording.
        return param_error(&sb, TOO_EARLY_REFRESH_MESSAGE, None);
    }
    if !access.grant.has_scope("threads_basic") {
        return refuse(&sb, P, ErrorCase::ScopeMissing, &ErrorDetail::default());
    }
    long_lived(&sb, &access)
}

/// Gate + the per app–user limit (4800 × impressions per rolling 24 h; impressions floor 10).
fn authorize(
    sb: &Sandbox,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    scope: &str,
) -> Result<Arc<AccessToken>, Response> {
    let token = graph_token(headers, q);
    // The documented credential is the access_token parameter (platforms.md Corrections 4).
    if super::bearer(headers).is_some() {
        crate::counters::Counters::bump(&sb.counters().of(P).undocumented_credentials);
    }
    let access = match sb.gate(P, token.as_deref()) {
        Ok(a) => a,
        Err(Gate::Token(r)) => return Err(token_refusal(sb, r, token.as_deref())),
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
        let key = format!("th:{}", access.grant.id);
        if sb
            .limits()
            .admit(key, 48_000, Duration::from_secs(86_400), sb.now())
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
    // threads_basic is "required for every endpoint" (platforms.md §4).
    if !access.grant.has_scope("threads_basic") || !access.grant.has_scope(scope) {
        return Err(refuse(
            sb,
            P,
            ErrorCase::ScopeMissing,
            &ErrorDetail::default(),
        ));
    }
    Ok(access)
}

fn ok(v: Value) -> Response {
    Reply::json(200, &v).into_response()
}

fn is_me(a: &AccessToken, node: &str) -> bool {
    node == "me" || node == a.grant.numeric_id("user").to_string()
}

fn not_found(sb: &Sandbox, node: &str) -> Response {
    refuse(
        sb,
        P,
        ErrorCase::NotFound,
        &ErrorDetail::message(format!(
            "Unsupported get request. Object with ID '{node}' does not exist, cannot be loaded due to missing permissions, or does not support this operation."
        )),
    )
}

async fn node(
    State(sb): State<Sandbox>,
    headers: HeaderMap,
    Path(node): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let a = match authorize(&sb, &headers, &q, "threads_basic") {
        Ok(a) => a,
        Err(r) => return r,
    };
    if is_me(&a, &node) {
        let all = json!({
            "id": a.grant.numeric_id("user").to_string(),
            "username": a.grant.account,
            "name": a.grant.account,
            "threads_profile_picture_url": "https://example.invalid/p.jpg",
            "threads_biography": "",
        });
        let fields = q.get("fields").map(String::as_str).unwrap_or("id");
        let mut out = serde_json::Map::new();
        for f in fields.split(',') {
            if let Some(v) = all.get(f.trim()) {
                out.insert(f.trim().into(), v.clone());
            }
        }
        return ok(Value::Object(out));
    }
    // A media container: IN_PROGRESS for a while, then FINISHED.
    match sb.job_done(&node) {
        None => not_found(&sb, &node),
        Some(done) => container_status(&node, if done { "FINISHED" } else { "IN_PROGRESS" }, None)
            .into_response(),
    }
}

const POSTS: usize = 25;

async fn edge_list(
    State(sb): State<Sandbox>,
    headers: HeaderMap,
    Path((node, edge)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let a = match authorize(&sb, &headers, &q, "threads_basic") {
        Ok(a) => a,
        Err(r) => return r,
    };
    if !is_me(&a, &node) || edge != "threads" {
        return not_found(&sb, &format!("{node}/{edge}"));
    }
    let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 25,
        Some(Ok(l)) if (1..=100).contains(&l) => l,
        _ => {
            return refuse(
                &sb,
                P,
                ErrorCase::InvalidParams,
                &ErrorDetail::message("(#100) The parameter limit must be between 1 and 100"),
            );
        }
    };
    let offset = q.get("after").and_then(|c| cursor_offset(c)).unwrap_or(0);
    let (range, more) = super::page_of(POSTS, offset, limit);
    let (start, end) = (range.start, range.end);
    let data: Vec<Value> = range
        .map(|i| json!({"id": a.grant.numeric_id(&format!("post/{i}")).to_string(), "text": format!("Post {}", i + 1), "media_type": "TEXT_POST"}))
        .collect();
    let mut paging = json!({"cursors": {"before": cursor(start), "after": cursor(end)}});
    if more {
        paging["next"] = json!(format!(
            "{}/threads/v1.0/{node}/threads?limit={limit}&after={}",
            super::origin(&headers),
            cursor(end)
        ));
    }
    ok(json!({"data": data, "paging": paging}))
}

/// `POST /me/threads` creates a media container (needs threads_content_publish).
async fn edge_create(
    State(sb): State<Sandbox>,
    headers: HeaderMap,
    Path((node, edge)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let a = match authorize(&sb, &headers, &q, "threads_content_publish") {
        Ok(a) => a,
        Err(r) => return r,
    };
    if !is_me(&a, &node) || edge != "threads" {
        return not_found(&sb, &format!("{node}/{edge}"));
    }
    if !q.contains_key("media_type") {
        return refuse(
            &sb,
            P,
            ErrorCase::InvalidParams,
            &ErrorDetail::message("(#100) The parameter media_type is required"),
        );
    }
    ok(json!({"id": sb.start_job("1789")}))
}

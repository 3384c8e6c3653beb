//! Reddit Ads API v3 with Reddit's OAuth (platforms-ads.md Part B §3).
//!
//! - Consent at `/api/v1/authorize` (space-separated scopes, `duration` required), the token
//!   endpoint at `/api/v1/access_token` (form-encoded, HTTP Basic `client_id:client_secret`;
//!   code exchange and refresh; a refresh answer echoes the same permanent refresh token unless
//!   the rotation fault is on), revocation at `/api/v1/revoke_token` (Basic, `token` +
//!   `token_type_hint`; the refresh token takes its access tokens with it; 204 whatever the token).
//! - Reddit's quirks: a bad or used code is refused in **HTTP 200** `{"error": "invalid_grant"}`;
//!   a dead refresh token in 400 `{"error": 400}`; bad client credentials in 401 `{"message":
//!   "Unauthorized", "error": 401}`.
//! - Every call, token calls included, must carry a unique User-Agent: a missing or generic one
//!   (a library's default) gets the HTML "whoa there, pardner!" 429 with `retry-after`.
//! - The Ads API at `/api/v3/…`: `/api/v3/me` (the probe), an ad account's campaigns; the token's
//!   refusals in `WWW-Authenticate: Bearer realm="reddit", error="invalid_token"` with a body of
//!   just `{"error": 401}`; the v3 envelopes `{"error": {"code", "message"}}` and `{"success":
//!   false, "error": {"reason", "explanation"}}`; `X-Ratelimit-Used/Remaining/Reset` (seconds) on
//!   every answer; 5xx with an empty body; v2 endpoints answer 410 (sunset 2025-09-30).

use super::{CAMPAIGNS_PER_ACCOUNT, bearer, page_of, refuse, token_reply};
use crate::error_case::{ErrorCase, ErrorDetail, Limit, Reply};
use crate::ledger::{AccessKind, AccessToken, App, Refusal};
use crate::provider::Provider;
use crate::{Gate, Sandbox};
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

const P: Provider = Provider::Reddit;
const ADS_SCOPE: &str = "adsread";

pub(crate) const TOKEN_PATHS: &[&str] = &["/api/v1/access_token", "/api/v1/revoke_token"];

pub(crate) const CASES: &[ErrorCase] = &[
    ErrorCase::TokenExpired,
    ErrorCase::ScopeMissing,
    ErrorCase::RoleMissing,
    ErrorCase::NotFound,
    ErrorCase::InvalidParams,
    ErrorCase::EndpointGone { retired: true },
    ErrorCase::RateLimited { limit: Limit::User },
    ErrorCase::RateLimited { limit: Limit::App },
    ErrorCase::Outage,
    ErrorCase::OutagePage { status: 522 },
    ErrorCase::OAuthInvalidRequest,
    ErrorCase::OAuthInvalidClient,
    ErrorCase::OAuthInvalidGrant,
    ErrorCase::OAuthUnsupportedGrant,
    ErrorCase::RefreshTokenRefused { expired: false },
    ErrorCase::ConsentRefused { declined: true },
    ErrorCase::ConsentRefused { declined: false },
];

/// Reddit's bot page, sent with 429 to a missing or generic User-Agent.
const WHOA: &str = "<!doctype html><html><head><title>Too Many Requests</title><style>body{font:small verdana,arial,helvetica,sans-serif;width:600px;margin:0 auto}h1{height:40px;background:transparent url(//www.redditstatic.com/reddit.com.header.png) no-repeat scroll top right}</style></head><body><h1>whoa there, pardner!</h1><p>we're sorry, but you appear to be a bot and we've seen too many requests from you lately. we enforce a hard speed limit on requests that appear to come from bots to prevent abuse.</p><p>if you are not a bot but are spoofing one via your browser's user agent string: please change your user agent string to avoid seeing this message again.</p><p>please wait 4 second(s) and try again.</p><p>as a reminder to developers, we recommend that clients make no more than <a href=\"http://github.com/reddit/reddit/wiki/API\">one request every two seconds</a> to avoid seeing this message.</p></body></html>";

/// Seconds until the rate window resets (`X-Ratelimit-Reset` counts seconds, not a time).
fn reset_seconds(d: &ErrorDetail) -> i64 {
    match (d.reset_at, d.now) {
        (Some(r), Some(n)) => (r - n).num_seconds().max(1),
        _ => 82,
    }
}

/// `{"error": {"code": …, "message": …}}`.
fn v3_error(status: u16, message: &str) -> Reply {
    Reply::json(
        status,
        &json!({"error": {"code": status, "message": message}}),
    )
}

/// `{"success": false, "error": {"reason": …, "explanation": …}}`.
fn v3_reason(status: u16, reason: &str, explanation: &str) -> Reply {
    Reply::json(
        status,
        &json!({"success": false, "error": {"reason": reason, "explanation": explanation}}),
    )
}

/// Reddit's one rendering function.
pub(crate) fn render(case: ErrorCase, d: &ErrorDetail) -> Reply {
    let challenge = |status: u16, error: &str| {
        Reply::json(status, &json!({"error": status})).header(
            "www-authenticate",
            format!("Bearer realm=\"reddit\", error=\"{error}\""),
        )
    };
    match case {
        // The token's refusals all look alike: the header says invalid_token, the body nothing.
        ErrorCase::TokenExpired
        | ErrorCase::TokenExpiredUnspecific
        | ErrorCase::TokenInvalid
        | ErrorCase::TokenRevoked
        | ErrorCase::TokenRefusedPlainText
        | ErrorCase::TokenRefusedEmpty
        | ErrorCase::AuthorizerGone { .. } => challenge(401, "invalid_token"),
        ErrorCase::CredentialMissing => {
            Reply::json(401, &json!({"message": "Unauthorized", "error": 401}))
        }
        ErrorCase::ScopeMissing => {
            v3_reason(403, "UNAUTHORIZED", "Insufficient authentication scopes")
        }
        // A plain 403: the resource is forbidden to this user (no scope challenge).
        ErrorCase::RoleMissing | ErrorCase::AppMismatch | ErrorCase::AccessRefused { .. } => {
            Reply::json(403, &json!({"error": 403}))
        }
        ErrorCase::NotFound | ErrorCase::ObjectDeleted => v3_error(
            404,
            d.message
                .as_deref()
                .unwrap_or("The specified resource was not found"),
        ),
        ErrorCase::InvalidParams
        | ErrorCase::StaleSignature
        | ErrorCase::MediaRejected { .. }
        | ErrorCase::BatchItemsFailed { .. } => v3_reason(
            400,
            "BAD_REQUEST",
            d.message.as_deref().unwrap_or("Unknown Ad Account"),
        ),
        ErrorCase::EndpointGone { .. } => v3_error(
            410,
            "This endpoint has been sunset; use the v3 API (https://ads-api.reddit.com/docs/v3/).",
        ),
        // The rate window is spent: JSON, with the window's headers.
        ErrorCase::RateLimited {
            limit: Limit::User | Limit::AdAccount | Limit::UnderUnknownCode,
        } => Reply::json(429, &json!({"message": "Too Many Requests", "error": 429}))
            .header("x-ratelimit-used", "600")
            .header("x-ratelimit-remaining", "0.0")
            .header("x-ratelimit-reset", reset_seconds(d).to_string()),
        // The User-Agent is throttled as a bot: the HTML page with retry-after.
        ErrorCase::RateLimited {
            limit: Limit::App | Limit::Restricted,
        } => Reply::html(429, WHOA.into()).header("retry-after", "4"),
        // 5xx come with an empty body (prawcore cassettes), Cloudflare's 522 too.
        ErrorCase::Outage | ErrorCase::TransientParamError | ErrorCase::WorkFailed => Reply {
            status: 503,
            headers: Vec::new(),
            body: Vec::new(),
        },
        ErrorCase::OutagePage { status } => Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        },
        ErrorCase::WorkPending | ErrorCase::TaskPending => {
            v3_reason(400, "BAD_REQUEST", "The report is not ready yet")
        }
        ErrorCase::ConsentRefused { declined } => super::consent_redirect(P, declined),
        ErrorCase::OAuthInvalidRequest => Reply::json(400, &json!({"error": "invalid_request"})),
        ErrorCase::OAuthInvalidClient => {
            Reply::json(401, &json!({"message": "Unauthorized", "error": 401}))
        }
        // A dead refresh token: a bare number, no OAuth error name.
        ErrorCase::OAuthInvalidGrant | ErrorCase::RefreshTokenRefused { expired: true } => {
            Reply::json(400, &json!({"error": 400}))
        }
        // A bad or used code: in HTTP 200.
        ErrorCase::RefreshTokenRefused { expired: false } => {
            Reply::json(200, &json!({"error": "invalid_grant"}))
        }
        ErrorCase::OAuthUnsupportedGrant => {
            Reply::json(400, &json!({"error": "unsupported_grant_type"}))
        }
    }
}

pub(crate) fn routes() -> Router<Sandbox> {
    Router::new()
        .route("/api/v1/access_token", post(token))
        .route("/api/v1/revoke_token", post(revoke))
        .route("/api/v3/me", get(me))
        .route("/api/v3/me/ad_accounts", get(ad_accounts))
        .route("/api/v3/ad_accounts/{id}/campaigns", get(campaigns))
        .route("/api/v2.0/{*rest}", any(sunset))
}

/// Whether a User-Agent is one Reddit takes for a bot: missing, empty, or a library's default
/// (tokenwarden's own HTTP client default too, which means the definition's `{user_agent}`
/// header was not sent).
pub(crate) fn generic_user_agent(headers: &HeaderMap) -> bool {
    let ua = headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    const GENERIC: &[&str] = &[
        "python-requests",
        "python-urllib",
        "curl/",
        "wget/",
        "go-http-client",
        "reqwest",
        "okhttp",
        "axios",
        "node-fetch",
        "java/",
        "tokenwarden/",
    ];
    ua.len() < 8 || GENERIC.iter().any(|g| ua.starts_with(g))
}

/// The bot page, counted as a rate-limit signal.
fn whoa(sb: &Sandbox) -> Response {
    refuse(
        sb,
        P,
        ErrorCase::RateLimited { limit: Limit::App },
        &ErrorDetail::default(),
    )
}

/// HTTP Basic `client_id:client_secret` (each form-urlencoded first, RFC 6749 §2.3.1).
pub(crate) fn basic_client(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let v = headers.get("authorization")?.to_str().ok()?;
    let (scheme, b64) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    let dec = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((dec(id), dec(secret)))
}

/// The app named and proven by HTTP Basic, if any.
fn basic_app(sb: &Sandbox, headers: &HeaderMap) -> Option<Arc<App>> {
    let (id, secret) = basic_client(headers)?;
    sb.ledger()
        .app(P, &id)
        .filter(|a| a.secret_matches(&secret))
}

fn fail(sb: &Sandbox, case: ErrorCase) -> Response {
    refuse(sb, P, case, &ErrorDetail::default())
}

async fn token(
    State(sb): State<Sandbox>,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let get = |k: &str| f.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let grant_type = get("grant_type").unwrap_or("-");
    let count_fail = || sb.counters().token_call(P, None, grant_type);
    if generic_user_agent(&headers) {
        count_fail();
        return whoa(&sb);
    }
    let Some(app) = basic_app(&sb, &headers) else {
        count_fail();
        return fail(&sb, ErrorCase::OAuthInvalidClient);
    };
    let client_id = app.client_id.clone();
    let now = sb.now();
    let (rotate, grace) = {
        let s = sb.faults(P).settings.read();
        (s.rotation, s.reuse_grace)
    };
    let (grant, refresh_value) = match grant_type {
        "authorization_code" => {
            let (Some(code), Some(redirect_uri)) = (get("code"), get("redirect_uri")) else {
                count_fail();
                return fail(&sb, ErrorCase::OAuthInvalidRequest);
            };
            match sb
                .ledger()
                .redeem_code(code, P, &client_id, Some(redirect_uri), None, now)
            {
                Ok(c) => {
                    let g = sb.ledger().new_grant(&c, now);
                    let (v, _) = sb.ledger().issue_refresh(&g, "", P.refresh_lifetime(), now);
                    (g, v)
                }
                // A bad, used or expired code: HTTP 200 with an error (Part B §3).
                Err(_) => {
                    count_fail();
                    return fail(&sb, ErrorCase::RefreshTokenRefused { expired: false });
                }
            }
        }
        "refresh_token" => {
            let Some(rt) = get("refresh_token") else {
                count_fail();
                return fail(&sb, ErrorCase::OAuthInvalidRequest);
            };
            match sb
                .ledger()
                .use_refresh(P, &client_id, rt, rotate, grace, now)
            {
                // Reddit echoes the permanent refresh token; the rotation fault issues a new one.
                Ok((g, _)) if rotate => {
                    let (v, _) = sb.ledger().issue_refresh(&g, "", P.refresh_lifetime(), now);
                    (g, v)
                }
                Ok((g, _)) => (g, rt.to_string()),
                Err(_) => {
                    count_fail();
                    return fail(&sb, ErrorCase::OAuthInvalidGrant);
                }
            }
        }
        _ => {
            count_fail();
            return fail(&sb, ErrorCase::OAuthUnsupportedGrant);
        }
    };
    sb.counters().token_call(P, Some(&grant.id), grant_type);
    let lifetime = sb.config().access_lifetime(P);
    let (access, _) = sb
        .ledger()
        .issue_access(&grant, AccessKind::Standard, "", lifetime, now);
    token_reply(
        &sb,
        P,
        json!({
            "access_token": access,
            "token_type": "bearer",
            "expires_in": lifetime.map_or(3600, |l| l.as_secs()),
            "refresh_token": refresh_value,
            "scope": grant.scopes().join(" "),
        }),
    )
}

/// `POST /api/v1/revoke_token`: a refresh token ends the grant (its access tokens with it), an
/// access token only itself. 204 whatever the token (RFC 7009 §2.2).
async fn revoke(
    State(sb): State<Sandbox>,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    if generic_user_agent(&headers) {
        return whoa(&sb);
    }
    if basic_app(&sb, &headers).is_none() {
        return fail(&sb, ErrorCase::OAuthInvalidClient);
    }
    let token = f.get("token").map(String::as_str).unwrap_or("");
    let hint = f.get("token_type_hint").map(String::as_str);
    let as_refresh = || sb.ledger().refresh_grant(P, token);
    if hint != Some("access_token")
        && let Some(g) = as_refresh()
    {
        sb.ledger().revoke_grant(&g);
    } else if sb.ledger().revoke_access(token).is_none()
        && let Some(g) = as_refresh()
    {
        sb.ledger().revoke_grant(&g);
    }
    Reply {
        status: 204,
        headers: Vec::new(),
        body: Vec::new(),
    }
    .into_response()
}

/// The data API's rate headers, on every answer.
fn with_rate(r: Reply) -> Reply {
    r.header("x-ratelimit-used", "1")
        .header("x-ratelimit-remaining", "599.0")
        .header("x-ratelimit-reset", "540")
}

/// User-Agent, then the gate (throttle fault, token), then the ads scope.
fn authorize(sb: &Sandbox, headers: &HeaderMap) -> Result<Arc<AccessToken>, Response> {
    if generic_user_agent(headers) {
        return Err(whoa(sb));
    }
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
            return Err(render(case, &detail).into_response());
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
            return Err(render(ErrorCase::RateLimited { limit }, &d).into_response());
        }
    };
    if !access.grant.has_scope(ADS_SCOPE) {
        return Err(render(ErrorCase::ScopeMissing, &detail).into_response());
    }
    Ok(access)
}

/// The user's ad accounts: `a2_` and a short base-36 id.
fn ad_account_ids(a: &AccessToken) -> Vec<String> {
    (0..2)
        .map(|i| {
            let n = a.grant.numeric_id(&format!("ad_account/{i}")) % 2_000_000_000;
            format!("a2_{}", radix36(n))
        })
        .collect()
}

fn radix36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// The probe: the Reddit user behind the grant.
async fn me(State(sb): State<Sandbox>, headers: HeaderMap) -> Response {
    let a = match authorize(&sb, &headers) {
        Ok(a) => a,
        Err(r) => return r,
    };
    with_rate(Reply::json(
        200,
        &json!({"data": {
            "id": format!("t2_{}", radix36(a.grant.numeric_id("user") % 3_000_000_000)),
            "username": a.grant.account,
            "email": Value::Null,
        }}),
    ))
    .into_response()
}

async fn ad_accounts(State(sb): State<Sandbox>, headers: HeaderMap) -> Response {
    let a = match authorize(&sb, &headers) {
        Ok(a) => a,
        Err(r) => return r,
    };
    if a.grant.role_removed() {
        return with_rate(Reply::json(200, &json!({"data": []}))).into_response();
    }
    let data: Vec<Value> = ad_account_ids(&a)
        .into_iter()
        .enumerate()
        .map(
            |(i, id)| json!({"id": id, "name": format!("Ad account {}", i + 1), "currency": "USD"}),
        )
        .collect();
    with_rate(Reply::json(200, &json!({"data": data}))).into_response()
}

/// `GET /api/v3/ad_accounts/{id}/campaigns?page.size=&page.token=`: an unknown account is
/// Reddit's BAD_REQUEST "Unknown Ad Account"; a user whose role was removed gets a plain 403.
async fn campaigns(
    State(sb): State<Sandbox>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let a = match authorize(&sb, &headers) {
        Ok(a) => a,
        Err(r) => return r,
    };
    if !ad_account_ids(&a).contains(&id) {
        return render(ErrorCase::InvalidParams, &ErrorDetail::default()).into_response();
    }
    if a.grant.role_removed() {
        return render(ErrorCase::RoleMissing, &ErrorDetail::default()).into_response();
    }
    let size = q
        .get("page.size")
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(10)
        .clamp(1, 100);
    let offset = q
        .get("page.token")
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(0);
    let (range, more) = page_of(CAMPAIGNS_PER_ACCOUNT, offset, size);
    let data: Vec<Value> = range
        .clone()
        .map(|i| {
            json!({
                "id": format!("{}", 1_000_000_000_000_000_000u128 + i as u128),
                "ad_account_id": id,
                "name": format!("Campaign {}", i + 1),
                "configured_status": "ACTIVE",
            })
        })
        .collect();
    let next = more.then(|| range.end.to_string());
    with_rate(Reply::json(
        200,
        &json!({"data": data, "pagination": {"next_url": next}}),
    ))
    .into_response()
}

/// v2 Ads endpoints were sunset on 2025-09-30: 410 for any of them.
async fn sunset(State(sb): State<Sandbox>, headers: HeaderMap) -> Response {
    if generic_user_agent(&headers) {
        return whoa(&sb);
    }
    render(
        ErrorCase::EndpointGone { retired: true },
        &ErrorDetail::default(),
    )
    .into_response()
}

//! X Ads API with OAuth 1.0a user context (platforms-ads.md Part B §0.1 and §4).
//!
//! - The three legs at X's paths (`api.twitter.com`): `POST /oauth/request_token` (signed with
//!   the consumer secret alone, `oauth_callback` in the header, `x_auth_access_type` in the body;
//!   a callback the app did not register is refused), the authorize page `/oauth/authorize?
//!   oauth_token=…` (Approve sends the person back with `oauth_token` and `oauth_verifier`, Deny
//!   with `denied=<token>`), and `POST /oauth/access_token` (signed with the request token's
//!   secret, `oauth_verifier`; single use), answering form-encoded `oauth_token`,
//!   `oauth_token_secret`, `user_id`, `screen_name`. Token credentials never expire.
//! - The Ads API at `/<version>/…` (`ads-api.x.com`, and the sandbox host
//!   `ads-api-sandbox.x.com` under `/sandbox`): `GET accounts` (the probe), `GET
//!   accounts/:id/campaigns`, and async analytics jobs (`POST`/`GET stats/jobs/accounts/:id`,
//!   `status: PROCESSING` with `url: null` until done).
//! - Every call is VERIFIED the way X does: the `Authorization: OAuth` header's HMAC-SHA1
//!   signature over the method, the URL as sent, the query, a form body and the `oauth_*`
//!   parameters, keyed by the app's consumer secret and the token's secret; the timestamp must be
//!   near the sandbox clock and a nonce is accepted once. Anything wrong (no header, unknown
//!   consumer or token, bad signature, replay, stale timestamp) is a 401: on the Ads API
//!   `UNAUTHORIZED_ACCESS` in X's envelope, on `/oauth/*` X's `{"errors":[{"code":32,…}]}`.
//! - Faults: revoke (the grant dies: 401 `UNAUTHORIZED_ACCESS`), throttle (429 with
//!   `x-rate-limit-*`, resets in epoch seconds), outage (503 with `retry-after`).
//!
//! Token secrets are not kept in the books: each is derived from its token with a key this
//! process draws at start, so the sandbox can check signatures without storing a secret. A
//! sandbox restarted from its ledger file therefore refuses the X Ads tokens of its previous run
//! (as if the keys had been regenerated), and pending request tokens live in memory only.

use crate::error_case::{ErrorCase, ErrorDetail, Limit, Reply, load_balancer_page};
use crate::ledger::{AccessKind, AuthCode, Refusal, hash, mint, short_id, to_delta};
use crate::provider::Provider;
use crate::{Gate, Sandbox};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Form, OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use tokenwarden_core::connection::Environment;
use tokenwarden_core::oauth1;

const P: Provider = Provider::XAds;

/// The `/oauth/*` calls that are token endpoints.
pub(crate) const TOKEN_PATHS: &[&str] = &["/oauth/request_token", "/oauth/access_token"];

/// How far `oauth_timestamp` may be from the sandbox's clock. X does not publish its window;
/// Twitter answered a skewed clock with code 135 "Timestamp out of bounds".
const TIMESTAMP_WINDOW_SECS: i64 = 15 * 60;

/// How long a request token can be authorized and exchanged.
const REQUEST_TOKEN_LIFE_SECS: i64 = 15 * 60;

/// The oldest Ads API version the sandbox serves (the SDK pinned 11 in 2022; 12 is current).
const OLDEST_VERSION: u32 = 11;

pub(crate) const CASES: &[ErrorCase] = &[
    ErrorCase::TokenInvalid,
    ErrorCase::AccessRefused { blocked: false },
    ErrorCase::NotFound,
    ErrorCase::InvalidParams,
    ErrorCase::RateLimited { limit: Limit::User },
    ErrorCase::RateLimited {
        limit: Limit::AdAccount,
    },
    ErrorCase::Outage,
    ErrorCase::OutagePage { status: 503 },
    ErrorCase::WorkPending,
];

/// The Ads API's envelope.
fn envelope(status: u16, code: &str, message: &str) -> Reply {
    Reply::json(
        status,
        &json!({"errors": [{"code": code, "message": message}], "request": {"params": {}}}),
    )
}

/// What `/oauth/*` answers when authentication fails (X's v1.1 shape, numeric code).
fn oauth_refusal(code: u32, message: &str) -> Reply {
    Reply::json(
        401,
        &json!({"errors": [{"code": code, "message": message}]}),
    )
}

const NOT_AUTHENTICATED: &str = "This request is not properly authenticated";

/// X Ads' one rendering function.
pub(crate) fn render(case: ErrorCase, d: &ErrorDetail) -> Reply {
    let msg = |default: &str| d.message.clone().unwrap_or_else(|| default.to_string());
    match case {
        // OAuth 1.0a has one answer for every credential problem: reauthorize.
        ErrorCase::CredentialMissing
        | ErrorCase::TokenExpired
        | ErrorCase::TokenExpiredUnspecific
        | ErrorCase::TokenInvalid
        | ErrorCase::TokenRefusedPlainText
        | ErrorCase::TokenRefusedEmpty
        | ErrorCase::TokenRevoked
        | ErrorCase::AuthorizerGone { .. }
        | ErrorCase::StaleSignature => envelope(401, "UNAUTHORIZED_ACCESS", NOT_AUTHENTICATED),
        ErrorCase::AccessRefused { .. } | ErrorCase::AppMismatch => envelope(
            403,
            "UNAUTHORIZED_CLIENT_APPLICATION",
            "The client application making this request does not have access to this API",
        ),
        ErrorCase::RoleMissing | ErrorCase::ScopeMissing => envelope(
            403,
            "INSUFFICIENT_USER_AUTHORIZED_PERMISSION",
            &msg("User does not have access to this account"),
        ),
        ErrorCase::NotFound | ErrorCase::ObjectDeleted | ErrorCase::EndpointGone { .. } => {
            envelope(
                404,
                "NOT_FOUND",
                &msg("The requested resource could not be found"),
            )
        }
        ErrorCase::RateLimited { limit } => {
            let reset = d
                .reset_at
                .or(d.now.map(|n| n + chrono::TimeDelta::minutes(15)))
                .map_or(0, |t| t.timestamp());
            // Ad-account limits (GET endpoints) and user-token limits have their own headers.
            let prefix = if limit == Limit::AdAccount {
                "x-account-rate-limit"
            } else {
                "x-rate-limit"
            };
            envelope(429, "TOO_MANY_REQUESTS", "Rate limit exceeded")
                .header(&format!("{prefix}-limit"), "10000")
                .header(&format!("{prefix}-remaining"), "0")
                .header(&format!("{prefix}-reset"), reset.to_string())
        }
        ErrorCase::Outage | ErrorCase::WorkFailed | ErrorCase::TransientParamError => {
            envelope(503, "SERVICE_UNAVAILABLE", "Service unavailable").header("retry-after", "30")
        }
        ErrorCase::OutagePage { status } => load_balancer_page(status),
        ErrorCase::TaskPending | ErrorCase::WorkPending => Reply::json(
            200,
            &json!({"request": {"params": {}}, "data_type": "job",
                    "data": {"id": "1366436934516649985", "status": "PROCESSING", "url": null}}),
        ),
        ErrorCase::OAuthInvalidClient | ErrorCase::OAuthInvalidRequest => {
            oauth_refusal(32, "Could not authenticate you.")
        }
        ErrorCase::OAuthInvalidGrant
        | ErrorCase::OAuthUnsupportedGrant
        | ErrorCase::RefreshTokenRefused { .. } => oauth_refusal(89, "Invalid or expired token."),
        ErrorCase::ConsentRefused { .. } => Reply {
            status: 302,
            headers: vec![(
                "location".into(),
                "https://app.example.invalid/callback?denied=example-request-token".into(),
            )],
            body: Vec::new(),
        },
        ErrorCase::InvalidParams
        | ErrorCase::MediaRejected { .. }
        | ErrorCase::BatchItemsFailed { .. } => {
            envelope(400, "INVALID_PARAMETER", &msg("Invalid parameter"))
        }
    }
}

pub(crate) fn routes() -> Router<Sandbox> {
    api_routes()
        .route("/oauth/request_token", axum::routing::post(request_token))
        .route(
            "/oauth/authorize",
            get(authorize_page).post(authorize_decide),
        )
        .route("/oauth/access_token", axum::routing::post(access_token))
}

/// The Ads API, served on the production host and (under `/sandbox`) the sandbox host.
pub(crate) fn api_routes() -> Router<Sandbox> {
    Router::new()
        .route("/{version}/accounts", get(accounts))
        .route("/{version}/accounts/{account}/campaigns", get(campaigns))
        .route(
            "/{version}/stats/jobs/accounts/{account}",
            get(jobs).post(new_job),
        )
}

// ---- Secrets and books kept outside the ledger ----

/// This process's key for deriving token secrets from tokens.
static SECRET_KEY: LazyLock<[u8; 32]> = LazyLock::new(rand::random);

/// The secret of a token (request or access), derived: never stored.
fn token_secret(token: &str) -> String {
    use base64::Engine as _;
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(SECRET_KEY.as_slice());
    h.update(token.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&h.finalize()[..30])
}

/// A request token between `request_token` and `access_token`.
#[derive(Debug, Clone)]
struct PendingRequest {
    consumer_key: String,
    callback: String,
    expires_at: DateTime<Utc>,
    /// Set when the person approved: the verifier and the account.
    approved: Option<(String, String)>,
}

/// Pending request tokens, by the digest of the token.
static PENDING: LazyLock<DashMap<[u8; 32], PendingRequest>> = LazyLock::new(DashMap::new);

/// Nonces seen, per consumer key and timestamp (RFC 5849 §3.3): each is accepted once.
static NONCES: LazyLock<DashMap<(String, String, i64), ()>> = LazyLock::new(DashMap::new);

fn pending_key(token: &str) -> [u8; 32] {
    hash(token)
}

// ---- Verification ----

/// Why a signed request was refused (each is a 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unsigned {
    NoHeader,
    UnknownConsumer,
    Stale,
    Replayed,
    BadSignature,
    UnknownToken,
}

/// A verified request: the app, its protocol parameters.
struct Verified {
    app: Arc<crate::ledger::App>,
    oauth: Vec<(String, String)>,
}

impl Verified {
    fn get(&self, name: &str) -> Option<&str> {
        self.oauth
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Checks a request's OAuth 1.0a signature as X does. `secret_of` gives the secret of the
/// request's `oauth_token` (`None` when there must be none: the request-token call), or `Err`
/// when the token is unknown.
fn verify(
    sb: &Sandbox,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &[u8],
    secret_of: impl Fn(Option<&str>) -> Result<String, Unsigned>,
) -> Result<Verified, Unsigned> {
    let oauth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(oauth1::parse_authorization)
        .ok_or(Unsigned::NoHeader)?;
    let get = |name: &str| {
        oauth
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let key = get("oauth_consumer_key").ok_or(Unsigned::NoHeader)?;
    let app = sb.ledger().app(P, key).ok_or(Unsigned::UnknownConsumer)?;
    // The consumer secret is known only while the sandbox has it in memory.
    let consumer_secret = app.secret().ok_or(Unsigned::UnknownConsumer)?;
    let now = sb.now().timestamp();
    let ts: i64 = get("oauth_timestamp")
        .and_then(|t| t.parse().ok())
        .ok_or(Unsigned::Stale)?;
    if (ts - now).abs() > TIMESTAMP_WINDOW_SECS {
        return Err(Unsigned::Stale);
    }
    let token_secret = secret_of(get("oauth_token"))?;
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let url = url::Url::parse(&format!("http://{host}{uri}")).map_err(|_| Unsigned::NoHeader)?;
    let form = oauth1::is_form(headers.get("content-type").and_then(|v| v.to_str().ok()));
    oauth1::verify(
        &oauth1::Request {
            method: method.as_str(),
            url: &url,
            form_body: form.then_some(body),
        },
        &oauth,
        &consumer_secret,
        &token_secret,
    )
    .map_err(|_| Unsigned::BadSignature)?;
    // A nonce counts only once the signature holds (nobody else can burn the app's nonces).
    let nonce = get("oauth_nonce").unwrap_or_default().to_string();
    if NONCES.insert((key.to_string(), nonce, ts), ()).is_some() {
        return Err(Unsigned::Replayed);
    }
    if NONCES.len() > 50_000 {
        NONCES.retain(|(_, _, t), _| (t - now).abs() <= TIMESTAMP_WINDOW_SECS);
    }
    Ok(Verified { app, oauth })
}

/// `/oauth/*`'s answer to a request that failed verification.
fn oauth_unsigned(why: Unsigned) -> Response {
    match why {
        Unsigned::UnknownToken => oauth_refusal(89, "Invalid or expired token."),
        Unsigned::Stale => oauth_refusal(135, "Timestamp out of bounds."),
        Unsigned::NoHeader => Reply::json(
            400,
            &json!({"errors": [{"code": 215, "message": "Bad Authentication data."}]}),
        ),
        _ => oauth_refusal(32, "Could not authenticate you."),
    }
    .into_response()
}

fn form_reply(pairs: &[(&str, &str)]) -> Response {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    Reply {
        status: 200,
        headers: vec![
            (
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            ),
            ("cache-control".into(), "no-store".into()),
        ],
        body: body.into_bytes(),
    }
    .into_response()
}

// ---- The three legs ----

/// `POST /oauth/request_token`: signed with the consumer secret and no token.
async fn request_token(
    State(sb): State<Sandbox>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let v = match verify(&sb, &method, &uri, &headers, &body, |token| match token {
        None => Ok(String::new()),
        Some(_) => Err(Unsigned::BadSignature),
    }) {
        Ok(v) => v,
        Err(why) => {
            sb.counters().token_call(P, None, "request_token");
            return oauth_unsigned(why);
        }
    };
    let Some(callback) = v.get("oauth_callback").map(str::to_string) else {
        sb.counters().token_call(P, None, "request_token");
        return oauth_unsigned(Unsigned::NoHeader);
    };
    // X refuses a callback the app's settings do not list.
    if !v.app.redirect_allowed(&callback) {
        sb.counters().token_call(P, None, "request_token");
        return Reply::json(
            403,
            &json!({"errors": [{"code": 415, "message": "Callback URL not approved for this client application. Approved callback URLs can be adjusted in your application settings"}]}),
        )
        .into_response();
    }
    sb.counters().token_call(P, None, "request_token");
    let token = mint("");
    PENDING.insert(
        pending_key(&token),
        PendingRequest {
            consumer_key: v.app.client_id.clone(),
            callback,
            expires_at: sb.now() + chrono::TimeDelta::seconds(REQUEST_TOKEN_LIFE_SECS),
            approved: None,
        },
    );
    let secret = token_secret(&token);
    form_reply(&[
        ("oauth_token", &token),
        ("oauth_token_secret", &secret),
        ("oauth_callback_confirmed", "true"),
    ])
}

/// The pending request behind `token`, if it can still be used.
fn live_pending(sb: &Sandbox, token: &str) -> Option<PendingRequest> {
    let p = PENDING.get(&pending_key(token))?.clone();
    (sb.now() < p.expires_at).then_some(p)
}

/// `GET /oauth/authorize?oauth_token=…`: the page a person sees.
async fn authorize_page(
    State(sb): State<Sandbox>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    use crate::authorize::{error_page, escape, page};
    let token = q.get("oauth_token").map(String::as_str).unwrap_or("");
    let Some(p) = live_pending(&sb, token) else {
        return error_page(
            "Invalid request token",
            "This page is no longer valid: the request token is unknown, used or expired.",
        );
    };
    let app = sb
        .ledger()
        .app(P, &p.consumer_key)
        .map_or_else(|| "An app".to_string(), |a| a.name.clone());
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Authorize {app} · x-ads (tokenwarden sandbox)</title></head>\
<body style=\"font-family:sans-serif;max-width:32em;margin:3em auto\">\
<p>tokenwarden sandbox · x-ads</p>\
<h1>Authorize {app} to access your account?</h1>\
<form method=\"post\" action=\"/x-ads/oauth/authorize\"><input type=\"hidden\" name=\"oauth_token\" value=\"{token}\">\
<label>Account <input type=\"text\" name=\"account\" value=\"test-user\" maxlength=\"64\"></label>\
<p><button type=\"submit\" name=\"decision\" value=\"approve\">Authorize app</button> \
<button type=\"submit\" name=\"decision\" value=\"deny\">Cancel</button></p></form></body></html>",
        app = escape(&app),
        token = escape(token),
    );
    page(StatusCode::OK, body)
}

/// The page's buttons: back to the callback with `oauth_token` and `oauth_verifier`, or with
/// `denied=<token>` when the person cancelled.
async fn authorize_decide(
    State(sb): State<Sandbox>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    use crate::authorize::{error_page, harden};
    let token = f.get("oauth_token").map(String::as_str).unwrap_or("");
    let Some(p) = live_pending(&sb, token) else {
        return error_page(
            "Invalid request token",
            "The request token is unknown, used or expired.",
        );
    };
    let account = f
        .get("account")
        .map(String::as_str)
        .filter(|a| !a.is_empty())
        .unwrap_or("test-user");
    if account.len() > 64 {
        return error_page("Bad account", "The account name is too long.");
    }
    let Ok(mut url) = url::Url::parse(&p.callback) else {
        return error_page("Bad callback", "The callback is not a URL.");
    };
    if f.get("decision").map(String::as_str) == Some("approve") {
        let verifier = mint("");
        if let Some(mut e) = PENDING.get_mut(&pending_key(token)) {
            e.approved = Some((verifier.clone(), account.to_string()));
        }
        url.query_pairs_mut()
            .append_pair("oauth_token", token)
            .append_pair("oauth_verifier", &verifier);
    } else {
        PENDING.remove(&pending_key(token));
        url.query_pairs_mut().append_pair("denied", token);
    }
    let mut resp = StatusCode::FOUND.into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(url.as_str()) {
        resp.headers_mut().insert(axum::http::header::LOCATION, v);
    }
    harden(&mut resp);
    resp
}

/// `POST /oauth/access_token`: signed with the request token and its secret, with the
/// verifier; the request token is spent whatever the outcome.
async fn access_token(
    State(sb): State<Sandbox>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let count = || sb.counters().token_call(P, None, "access_token");
    let v = match verify(&sb, &method, &uri, &headers, &body, |token| {
        let t = token.ok_or(Unsigned::UnknownToken)?;
        live_pending(&sb, t).ok_or(Unsigned::UnknownToken)?;
        Ok(token_secret(t))
    }) {
        Ok(v) => v,
        Err(why) => {
            count();
            return oauth_unsigned(why);
        }
    };
    let token = v.get("oauth_token").unwrap_or_default().to_string();
    let Some((_, pending)) = PENDING.remove(&pending_key(&token)) else {
        count();
        return oauth_unsigned(Unsigned::UnknownToken);
    };
    // The verifier may come in the header or the body.
    let body_verifier = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "oauth_verifier")
        .map(|(_, v)| v.into_owned());
    let verifier = v
        .get("oauth_verifier")
        .map(str::to_string)
        .or(body_verifier);
    let Some((want, account)) = pending.approved.clone() else {
        count();
        return oauth_refusal(89, "Invalid or expired token.").into_response();
    };
    if pending.consumer_key != v.app.client_id || verifier.is_none_or(|g| g != want) {
        count();
        return Reply::json(
            401,
            &json!({"errors": [{"code": 32, "message": "Error processing your OAuth request: Invalid oauth_verifier parameter"}]}),
        )
        .into_response();
    }
    let now = sb.now();
    let grant = sb.ledger().new_grant(
        &AuthCode {
            app: v.app.clone(),
            redirect_uri: pending.callback.clone(),
            account: account.clone(),
            scopes: P.default_scopes(),
            code_challenge: None,
            expires_at: now + to_delta(P.code_lifetime()),
        },
        now,
    );
    sb.counters().token_call(P, Some(&grant.id), "access_token");
    let user_id = (grant.numeric_id("user") % 9_000_000_000 + 1_000_000_000).to_string();
    // X's access tokens start with the user id (`370773112-GmHx…`).
    let (access, _) = sb.ledger().issue_access(
        &grant,
        AccessKind::Standard,
        &format!("{user_id}-"),
        None,
        now,
    );
    let secret = token_secret(&access);
    form_reply(&[
        ("oauth_token", &access),
        ("oauth_token_secret", &secret),
        ("user_id", &user_id),
        ("screen_name", &account),
    ])
}

// ---- The Ads API ----

/// Verifies the signature, then the common gate (throttle fault, the token's grant alive, the
/// host of its app's environment).
fn authorize(
    sb: &Sandbox,
    host: Environment,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &[u8],
    version: &str,
) -> Result<Arc<crate::ledger::AccessToken>, Reply> {
    let detail = ErrorDetail {
        now: Some(sb.now()),
        ..Default::default()
    };
    if version.parse::<u32>().map_or(true, |v| v < OLDEST_VERSION) {
        return Err(render(ErrorCase::NotFound, &detail));
    }
    let verified = verify(sb, method, uri, headers, body, |token| {
        let t = token.ok_or(Unsigned::UnknownToken)?;
        // Only tokens the books know have secrets; a revoked one still verifies, and is then
        // refused by the gate below like any dead grant.
        if !token_known(sb, t) {
            return Err(Unsigned::UnknownToken);
        }
        Ok(token_secret(t))
    });
    let verified = match verified {
        Ok(v) => v,
        Err(_) => {
            // Counted like any API call that reached the platform.
            sb.counters().api_call(P, sb.now());
            return Err(render(ErrorCase::TokenInvalid, &detail));
        }
    };
    match sb.gate_on(P, host, verified.get("oauth_token")) {
        Ok(a) => Ok(a),
        Err(Gate::Token(Refusal::Missing | Refusal::Unknown)) => {
            Err(render(ErrorCase::TokenInvalid, &detail))
        }
        Err(Gate::Token(_)) => Err(render(ErrorCase::TokenRevoked, &detail)),
        Err(Gate::Throttled) => {
            crate::counters::Counters::bump(&sb.counters().of(P).rate_limited_sent);
            Err(render(
                ErrorCase::RateLimited { limit: Limit::User },
                &ErrorDetail {
                    reset_at: Some(sb.now() + chrono::TimeDelta::minutes(15)),
                    ..detail
                },
            ))
        }
    }
}

/// Whether the books know this access token at all (alive, revoked or of a dead grant).
fn token_known(sb: &Sandbox, token: &str) -> bool {
    !matches!(
        sb.ledger().check_access(P, Some(token), sb.now()),
        Err(Refusal::Unknown | Refusal::Missing)
    )
}

/// The ad accounts a user holds a role on: two, ids like X's (`18ce54d4x5t`).
fn account_ids(a: &crate::ledger::AccessToken) -> Vec<String> {
    (0..2)
        .map(|i| {
            format!(
                "{:x}",
                a.grant.numeric_id(&format!("account/{i}")) % 0xff_ffff_ffff
            )
        })
        .collect()
}

/// `GET /<v>/accounts`: the probe.
async fn accounts(
    State(sb): State<Sandbox>,
    Extension(host): Extension<Environment>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    Path(version): Path<String>,
    headers: HeaderMap,
) -> Response {
    let a = match authorize(&sb, host, &method, &uri, &headers, &[], &version) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let data: Vec<Value> = account_ids(&a)
        .into_iter()
        .enumerate()
        .map(|(i, id)| {
            json!({"id": id, "name": format!("{} account {}", a.grant.account, i + 1),
                   "approval_status": "ACCEPTED", "business_id": null, "deleted": false,
                   "timezone": "America/Los_Angeles", "salt": short_id()})
        })
        .collect();
    Reply::json(
        200,
        &json!({"request": {"params": {}}, "data_type": "account", "data": data,
                "total_count": 2, "next_cursor": null}),
    )
    .into_response()
}

/// `GET /<v>/accounts/:id/campaigns?count=…&cursor=…`: the query is part of the signature.
async fn campaigns(
    State(sb): State<Sandbox>,
    Extension(host): Extension<Environment>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    Path((version, account)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let a = match authorize(&sb, host, &method, &uri, &headers, &[], &version) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    if !account_ids(&a).contains(&account) {
        return render(
            ErrorCase::RoleMissing,
            &ErrorDetail::message(format!(
                "User {} does not have access to account {account}",
                a.grant.numeric_id("user")
            )),
        )
        .into_response();
    }
    let count: usize = match q.get("count").map(|c| c.parse::<usize>()) {
        None => 200,
        Some(Ok(c)) if (1..=1000).contains(&c) => c,
        Some(_) => {
            return render(
                ErrorCase::InvalidParams,
                &ErrorDetail::message("count must be between 1 and 1000"),
            )
            .into_response();
        }
    };
    let offset: usize = q.get("cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
    let (range, more) = super::page_of(super::CAMPAIGNS_PER_ACCOUNT, offset, count);
    let data: Vec<Value> = range
        .clone()
        .map(|i| json!({"id": format!("{account}c{i}"), "name": format!("Campaign {}", i + 1), "account_id": account}))
        .collect();
    Reply::json(
        200,
        &json!({"request": {"params": {"account_id": account}}, "data_type": "campaign",
                "data": data, "total_count": super::CAMPAIGNS_PER_ACCOUNT,
                "next_cursor": more.then(|| range.end.to_string())}),
    )
    .into_response()
}

/// `POST /<v>/stats/jobs/accounts/:id?…`: starts an async analytics job (PROCESSING).
async fn new_job(
    State(sb): State<Sandbox>,
    Extension(host): Extension<Environment>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    Path((version, account)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let a = match authorize(&sb, host, &method, &uri, &headers, &body, &version) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    if !account_ids(&a).contains(&account) {
        return render(ErrorCase::RoleMissing, &ErrorDetail::default()).into_response();
    }
    let id = sb.start_job("");
    Reply::json(
        200,
        &json!({"request": {"params": {"account_id": account}}, "data_type": "job",
                "data": {"id": id, "status": "PROCESSING", "url": null, "account_id": account}}),
    )
    .into_response()
}

/// `GET /<v>/stats/jobs/accounts/:id?job_ids=…`: PROCESSING until done, then SUCCESS with a url.
async fn jobs(
    State(sb): State<Sandbox>,
    Extension(host): Extension<Environment>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    Path((version, account)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let a = match authorize(&sb, host, &method, &uri, &headers, &[], &version) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    if !account_ids(&a).contains(&account) {
        return render(ErrorCase::RoleMissing, &ErrorDetail::default()).into_response();
    }
    let data: Vec<Value> = q
        .get("job_ids")
        .map(String::as_str)
        .unwrap_or("")
        .split(',')
        .filter(|j| !j.is_empty())
        .filter_map(|j| {
            let done = sb.job_done(j)?;
            Some(if done {
                json!({"id": j, "status": "SUCCESS", "url": format!("https://ton.x.com/advertiser-api-async-analytics/{j}.json.gz")})
            } else {
                json!({"id": j, "status": "PROCESSING", "url": null})
            })
        })
        .collect();
    Reply::json(
        200,
        &json!({"request": {"params": {"account_id": account}}, "data_type": "job", "data": data}),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_secrets_are_derived_and_differ_per_token() {
        assert_eq!(token_secret("a"), token_secret("a"));
        assert_ne!(token_secret("a"), token_secret("b"));
        assert_eq!(token_secret("a").len(), 40);
    }
}

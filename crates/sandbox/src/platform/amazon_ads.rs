//! Amazon Ads API with Login with Amazon (platforms-ads.md Part A §3), per region.
//!
//! - Consent at `/ap/oa`, the token endpoint at `/auth/o2/token` (form-encoded, client
//!   credentials in the body; code exchange and refresh; a refresh answer echoes the same
//!   refresh token, which is not rotated; `invalid_grant` "… User may have revoked or didn't
//!   grant the permission." once the grant is gone; codes live 5 minutes).
//! - The API: `GET /v2/profiles` (the probe; no Scope header needed; the profiles of THIS
//!   region's host, an empty list where the user has none), the advertiser-scoped
//!   `POST /sp/campaigns/list` and `GET /v2/sp/campaigns`, and v3 reporting
//!   (`POST /reporting/reports`, 425 "The Request is a duplicate of : <reportId>" while an
//!   identical report is generating, `GET /reporting/reports/{reportId}` going
//!   PENDING → PROCESSING → COMPLETED).
//! - Every API call needs `Amazon-Advertising-API-ClientId` equal to the token's app; advertiser
//!   calls need `Amazon-Advertising-API-Scope`: missing → 401 "Scope header is missing", a profile
//!   of another region (or none of the user's) → 401 "No matching advertiser found for scope".
//! - Envelope `{"code","details","requestId"}`; the 425 body says `detail`; the API Gateway's
//!   throttle `{"message" : "Too Many Requests"}` with `x-amzn-ErrorType: AccessDeniedException`
//!   and `amazon-advertising-api-throttled: true` and no Retry-After (amzn/ads-advanced-tools-docs
//!   #422); the reporting API's throttle carries the documented Retry-After.
//!
//! The NA hosts are served under `/amazon-ads`, EU and FE under `/amazon-ads/region/<eu|fe>`
//! (where `with_origin` moves a definition's other regions); one token works on every region's
//! host, a profile only on its own.

use super::{bearer, refuse, token_reply};
use crate::error_case::{ErrorCase, ErrorDetail, Limit, Reply};
use crate::ledger::{AccessKind, AccessToken, CodeRefusal, RefreshRefusal, Refusal, short_id};
use crate::provider::Provider;
use crate::{Gate, Sandbox};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Form, Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

const P: Provider = Provider::AmazonAds;

/// The scopes Login with Amazon knows for the Ads API; any other is "unknown" (invalid_scope).
pub(crate) const SCOPES: &[&str] = &[
    "advertising::campaign_management",
    "cpc_advertising:campaign_management",
    "advertising::audiences",
    "advertising::test:create_account",
];

/// The token endpoint on each region's host, under the provider prefix.
pub(crate) const TOKEN_PATHS: &[&str] = &[
    "/auth/o2/token",
    "/region/eu/auth/o2/token",
    "/region/fe/auth/o2/token",
];

const CLIENT_ID_HEADER: &str = "amazon-advertising-api-clientid";
const SCOPE_HEADER: &str = "amazon-advertising-api-scope";

pub(crate) const CASES: &[ErrorCase] = &[
    ErrorCase::TokenExpired,
    ErrorCase::ScopeMissing,
    ErrorCase::ObjectDeleted,
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

/// The region whose hosts answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Region {
    Na,
    Eu,
    Fe,
}

impl Region {
    fn name(self) -> &'static str {
        match self {
            Region::Na => "na",
            Region::Eu => "eu",
            Region::Fe => "fe",
        }
    }

    /// The marketplaces a sandbox user advertises in on this region's host: (country, currency,
    /// time zone, marketplace id). Every user has NA and EU profiles and none in FE, so the
    /// probe's empty answer is there to be seen.
    fn marketplaces(self) -> &'static [(&'static str, &'static str, &'static str, &'static str)] {
        match self {
            Region::Na => &[
                ("US", "USD", "America/Los_Angeles", "ATVPDKIKX0DER"),
                ("CA", "CAD", "America/Los_Angeles", "A2EUQ1WTGCTBG2"),
            ],
            Region::Eu => &[
                ("UK", "GBP", "Europe/London", "A1F83G8C2ARO7P"),
                ("DE", "EUR", "Europe/Paris", "A1PA6795UKMFR9"),
            ],
            Region::Fe => &[],
        }
    }
}

/// A profile id: 15 digits, stable per user, region and country.
fn profile_id(a: &AccessToken, region: Region, country: &str) -> u64 {
    a.grant
        .numeric_id(&format!("profile/{}/{country}", region.name()))
        % 900_000_000_000_000
        + 100_000_000_000_000
}

/// The user's profiles on `region`'s host.
fn profiles(a: &AccessToken, region: Region) -> Vec<Value> {
    region
        .marketplaces()
        .iter()
        .map(|(country, currency, tz, marketplace)| {
            json!({
                "profileId": profile_id(a, region, country),
                "countryCode": country,
                "currencyCode": currency,
                "dailyBudget": 999_999_999.0,
                "timezone": tz,
                "accountInfo": {
                    "marketplaceStringId": marketplace,
                    "id": format!("A{}", a.grant.numeric_id(&format!("seller/{}", region.name())) % 10_000_000_000_000),
                    "type": "seller",
                    "name": format!("{} {country}", a.grant.account),
                    "validPaymentMethod": true,
                },
            })
        })
        .collect()
}

/// The API's envelope.
fn envelope(status: u16, details: &str) -> Reply {
    Reply::json(
        status,
        &json!({"code": status.to_string(), "details": details, "requestId": request_id()}),
    )
    .header("x-amz-request-id", request_id())
}

/// Amazon's request ids: 20 upper-case letters and digits.
fn request_id() -> String {
    short_id()
        .to_ascii_uppercase()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .chain("0000000000000000000".chars())
        .take(20)
        .collect()
}

/// Seconds until `d.reset_at`, at least 1.
fn retry_after(d: &ErrorDetail, fallback: i64) -> String {
    match (d.reset_at, d.now) {
        (Some(reset), Some(now)) => (reset - now).num_seconds().max(1).to_string(),
        _ => fallback.to_string(),
    }
}

/// Amazon Ads' one rendering function.
pub(crate) fn render(case: ErrorCase, d: &ErrorDetail) -> Reply {
    let lwa = |status: u16, error: &str, default: &str| {
        Reply::json(
            status,
            &json!({"error_description": d.message.as_deref().unwrap_or(default), "error": error}),
        )
        .header("cache-control", "no-store")
    };
    match case {
        // No machine code for "expired": every refused token is "Authentication failed" (§0.3).
        ErrorCase::TokenExpired
        | ErrorCase::TokenExpiredUnspecific
        | ErrorCase::TokenInvalid
        | ErrorCase::TokenRefusedPlainText
        | ErrorCase::TokenRefusedEmpty
        | ErrorCase::TokenRevoked
        | ErrorCase::AuthorizerGone { .. }
        | ErrorCase::CredentialMissing
        | ErrorCase::AppMismatch => envelope(401, "Authentication failed"),
        ErrorCase::ScopeMissing | ErrorCase::RoleMissing => {
            envelope(401, "Not authorized to access scope")
        }
        ErrorCase::ObjectDeleted => envelope(401, "No matching advertiser found for scope"),
        ErrorCase::AccessRefused { .. } => envelope(403, "Forbidden"),
        ErrorCase::NotFound => envelope(404, d.message.as_deref().unwrap_or("Not Found")),
        ErrorCase::InvalidParams
        | ErrorCase::EndpointGone { .. }
        | ErrorCase::StaleSignature
        | ErrorCase::MediaRejected { .. }
        | ErrorCase::BatchItemsFailed { .. } => envelope(
            422,
            d.message
                .as_deref()
                .unwrap_or("Invalid argument: the request body is not valid"),
        ),
        // The documented throttle: Retry-After in seconds.
        ErrorCase::RateLimited {
            limit: Limit::User | Limit::AdAccount | Limit::UnderUnknownCode,
        } => envelope(429, "Too Many Requests").header("retry-after", retry_after(d, 2)),
        // The one seen in the wild (#422): API Gateway's body, its exception class in a header
        // that reads like a permission error, the throttled flag, and no Retry-After.
        ErrorCase::RateLimited {
            limit: Limit::App | Limit::Restricted,
        } => Reply {
            status: 429,
            headers: vec![("content-type".into(), "application/json".into())],
            body: br#"{"message" : "Too Many Requests"}"#.to_vec(),
        }
        .header("x-amzn-errortype", "AccessDeniedException")
        .header("amazon-advertising-api-throttled", "true")
        .header("x-amzn-requestid", request_id()),
        ErrorCase::Outage | ErrorCase::WorkFailed => envelope(500, "Internal Server Error"),
        ErrorCase::TransientParamError => envelope(503, "Service Unavailable"),
        ErrorCase::OutagePage { status: 503 } => envelope(503, "Service Unavailable"),
        // CloudFront in front of the API.
        ErrorCase::OutagePage { status } => Reply::html(
            status,
            format!(
                "<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 4.01 Transitional//EN\" \"http://www.w3.org/TR/html4/loose.dtd\">\n<HTML><HEAD><META HTTP-EQUIV=\"Content-Type\" CONTENT=\"text/html; charset=iso-8859-1\">\n<TITLE>ERROR: The request could not be satisfied</TITLE>\n</HEAD><BODY>\n<H1>{status} ERROR</H1>\n<H2>The request could not be satisfied.</H2>\n<HR noshade size=\"1px\">\nWe can't connect to the server for this app or website at this time.\n</BODY></HTML>"
            ),
        )
        .header("x-cache", "Error from cloudfront"),
        // An identical report is already generating: `detail`, not `details`.
        ErrorCase::WorkPending | ErrorCase::TaskPending => Reply::json(
            425,
            &json!({"code": "425", "detail": format!("The Request is a duplicate of : {}", d.message.as_deref().unwrap_or("9f6c1e52-0b7d-4f3a-9a4e-2d51c8b0a7e3"))}),
        ),
        ErrorCase::ConsentRefused { declined } => super::consent_redirect(P, declined),
        ErrorCase::OAuthInvalidRequest => lwa(
            400,
            "invalid_request",
            "The request is missing a required parameter : code",
        ),
        ErrorCase::OAuthInvalidClient => lwa(401, "invalid_client", "Client authentication failed"),
        ErrorCase::OAuthInvalidGrant | ErrorCase::RefreshTokenRefused { .. } => lwa(
            400,
            "invalid_grant",
            "The request has an invalid grant parameter : refresh_token. User may have revoked or didn't grant the permission.",
        ),
        ErrorCase::OAuthUnsupportedGrant => lwa(
            400,
            "unsupported_grant_type",
            "The authorization grant type is not supported by the authorization server",
        ),
    }
}

/// The NA hosts at the prefix, EU and FE under `/region/<name>`: token endpoint, consent page
/// and API on each.
pub(crate) fn routes() -> Router<Sandbox> {
    let mut router = region_routes(Region::Na);
    for r in [Region::Eu, Region::Fe] {
        router = router.nest(
            &format!("/region/{}", r.name()),
            region_routes(r).merge(crate::authorize::routes(P)),
        );
    }
    router
}

fn region_routes(r: Region) -> Router<Sandbox> {
    Router::new()
        .route("/auth/o2/token", post(token))
        .route("/v2/profiles", get(list_profiles))
        .route("/sp/campaigns/list", post(list_campaigns))
        .route("/v2/sp/campaigns", get(list_campaigns_v2))
        .route("/reporting/reports", post(create_report))
        .route("/reporting/reports/{id}", get(get_report))
        .layer(Extension(r))
}

fn fail(sb: &Sandbox, case: ErrorCase, message: &str) -> Response {
    refuse(sb, P, case, &ErrorDetail::message(message))
}

/// `POST /auth/o2/token` (Login with Amazon, on any region's host).
async fn token(State(sb): State<Sandbox>, Form(f): Form<HashMap<String, String>>) -> Response {
    let get = |k: &str| f.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let grant_type = get("grant_type").unwrap_or("-");
    let count_fail = || sb.counters().token_call(P, None, grant_type);
    let Some(client_id) = get("client_id") else {
        count_fail();
        return fail(
            &sb,
            ErrorCase::OAuthInvalidRequest,
            "The request is missing a required parameter : client_id",
        );
    };
    if sb
        .ledger()
        .app(P, client_id)
        .filter(|a| a.secret_matches(get("client_secret").unwrap_or("")))
        .is_none()
    {
        count_fail();
        return fail(
            &sb,
            ErrorCase::OAuthInvalidClient,
            "Client authentication failed",
        );
    }
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
                    "The request is missing a required parameter : code",
                );
            };
            match sb
                .ledger()
                .redeem_code(code, P, client_id, Some(redirect_uri), None, now)
            {
                Ok(c) => (sb.ledger().new_grant(&c, now), None),
                Err(r) => {
                    count_fail();
                    let why = match r {
                        CodeRefusal::RedirectMismatch => {
                            "The request has an invalid parameter : redirect_uri"
                        }
                        _ => "The request has an invalid grant parameter : code",
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
                    "The request is missing a required parameter : refresh_token",
                );
            };
            match sb
                .ledger()
                .use_refresh(P, client_id, rt, rotate, grace, now)
            {
                // Not rotated: the answer echoes the refresh token it was given (fixtures do),
                // unless the rotation fault asks for a new one.
                Ok((g, _)) => (g, (!rotate).then(|| rt.to_string())),
                Err(r) => {
                    count_fail();
                    let why = match r {
                        RefreshRefusal::Unknown => {
                            "The request has an invalid grant parameter : refresh_token"
                        }
                        _ => {
                            "The request has an invalid grant parameter : refresh_token. User may have revoked or didn't grant the permission."
                        }
                    };
                    return fail(&sb, ErrorCase::OAuthInvalidGrant, why);
                }
            }
        }
        _ => {
            count_fail();
            return fail(
                &sb,
                ErrorCase::OAuthUnsupportedGrant,
                "The authorization grant type is not supported by the authorization server",
            );
        }
    };
    sb.counters().token_call(P, Some(&grant.id), grant_type);
    let lifetime = sb.config().access_lifetime(P);
    let (access, _) =
        sb.ledger()
            .issue_access(&grant, AccessKind::Standard, "Atza|", lifetime, now);
    let refresh = match echoed {
        Some(rt) => rt,
        None => {
            sb.ledger()
                .issue_refresh(&grant, "Atzr|", P.refresh_lifetime(), now)
                .0
        }
    };
    token_reply(
        &sb,
        P,
        json!({
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "bearer",
            "expires_in": lifetime.map_or(3600, |l| l.as_secs()),
        }),
    )
}

/// The checks every API call passes: the throttle fault, the token, the ClientId header.
fn authorize(
    sb: &Sandbox,
    headers: &HeaderMap,
    reporting: bool,
) -> Result<Arc<AccessToken>, Reply> {
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
            // The reporting API sends the documented Retry-After; elsewhere the API Gateway's
            // answer without one.
            let limit = if reporting { Limit::User } else { Limit::App };
            return Err(render(
                ErrorCase::RateLimited { limit },
                &ErrorDetail::default(),
            ));
        }
    };
    // A call without the app's client id is not authenticated (the docs list "client not
    // onboarded" under "Authentication failed").
    let client = headers.get(CLIENT_ID_HEADER).and_then(|v| v.to_str().ok());
    if client != Some(access.grant.app.client_id.as_str()) {
        return Err(render(ErrorCase::AppMismatch, &ErrorDetail::default()));
    }
    if !access
        .grant
        .scopes()
        .iter()
        .any(|s| s == SCOPES[0] || s == SCOPES[1])
        || access.grant.role_removed()
    {
        return Err(render(ErrorCase::ScopeMissing, &ErrorDetail::default()));
    }
    Ok(access)
}

/// The advertiser a call acts on: its Scope header, which must be one of the user's profiles on
/// this region's host.
fn advertiser(
    sb: &Sandbox,
    headers: &HeaderMap,
    region: Region,
    reporting: bool,
) -> Result<(Arc<AccessToken>, u64), Reply> {
    let a = authorize(sb, headers, reporting)?;
    let Some(scope) = headers.get(SCOPE_HEADER).and_then(|v| v.to_str().ok()) else {
        return Err(envelope(401, "Scope header is missing"));
    };
    let mine = region
        .marketplaces()
        .iter()
        .map(|(c, ..)| profile_id(&a, region, c))
        .find(|id| scope.trim() == id.to_string());
    match mine {
        Some(id) => Ok((a, id)),
        // Another region's profile, a deleted or a mistyped one: unknown on this host.
        None => Err(render(ErrorCase::ObjectDeleted, &ErrorDetail::default())),
    }
}

/// `GET /v2/profiles`: the probe; no Scope header needed.
async fn list_profiles(
    State(sb): State<Sandbox>,
    Extension(region): Extension<Region>,
    headers: HeaderMap,
) -> Response {
    match authorize(&sb, &headers, false) {
        Ok(a) => Reply::json(200, &Value::Array(profiles(&a, region))).into_response(),
        Err(r) => r.into_response(),
    }
}

fn campaigns(profile: u64) -> Vec<Value> {
    (1..=super::CAMPAIGNS_PER_ACCOUNT)
        .map(|i| {
            json!({
                "campaignId": (profile % 1_000_000_000 * 100 + i as u64).to_string(),
                "name": format!("Campaign {i}"),
                "state": "ENABLED",
                "targetingType": "MANUAL",
                "budget": {"budget": 10.0, "budgetType": "DAILY"},
                "startDate": "2026-01-01",
            })
        })
        .collect()
}

/// `POST /sp/campaigns/list` (Sponsored Products v3).
async fn list_campaigns(
    State(sb): State<Sandbox>,
    Extension(region): Extension<Region>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let profile = match advertiser(&sb, &headers, region, false) {
        Ok((_, p)) => p,
        Err(r) => return r.into_response(),
    };
    if !body.is_empty() && serde_json::from_slice::<Value>(&body).is_err() {
        return envelope(400, "Request body is not valid JSON").into_response();
    }
    let all = campaigns(profile);
    let mut r = Reply::json(200, &json!({"campaigns": all, "totalResults": all.len()}));
    r.headers = vec![(
        "content-type".into(),
        "application/vnd.spCampaign.v3+json".into(),
    )];
    r.into_response()
}

/// `GET /v2/sp/campaigns` (the older v2 listing: a plain array).
async fn list_campaigns_v2(
    State(sb): State<Sandbox>,
    Extension(region): Extension<Region>,
    headers: HeaderMap,
) -> Response {
    match advertiser(&sb, &headers, region, false) {
        Ok((_, p)) => Reply::json(200, &Value::Array(campaigns(p))).into_response(),
        Err(r) => r.into_response(),
    }
}

/// One v3 report.
struct Report {
    key: String,
    grant: String,
    profile: u64,
    created: DateTime<Utc>,
    done: DateTime<Utc>,
    request: Value,
}

/// Reports by id, and the id of the report a request key names.
static REPORTS: LazyLock<DashMap<String, Report>> = LazyLock::new(DashMap::new);
static REPORT_KEYS: LazyLock<DashMap<String, String>> = LazyLock::new(DashMap::new);

fn status_of(r: &Report, now: DateTime<Utc>) -> &'static str {
    if now >= r.done {
        "COMPLETED"
    } else if now >= r.created + (r.done - r.created) / 2 {
        "PROCESSING"
    } else {
        "PENDING"
    }
}

fn report_view(id: &str, r: &Report, now: DateTime<Utc>) -> Value {
    let status = status_of(r, now);
    let mut v = json!({
        "reportId": id,
        "name": r.request.get("name").cloned().unwrap_or(Value::Null),
        "startDate": r.request.get("startDate").cloned().unwrap_or(Value::Null),
        "endDate": r.request.get("endDate").cloned().unwrap_or(Value::Null),
        "configuration": r.request.get("configuration").cloned().unwrap_or(Value::Null),
        "status": status,
        "createdAt": r.created.to_rfc3339(),
        "updatedAt": if status == "PENDING" { r.created } else { now.min(r.done) }.to_rfc3339(),
        "url": Value::Null,
        "urlExpiresAt": Value::Null,
        "fileSize": Value::Null,
        "failureReason": Value::Null,
    });
    if status == "COMPLETED" {
        // A pre-signed S3 link: no auth headers go to it.
        v["url"] = json!(format!(
            "https://offline-report-storage-us-east-1-prod.s3.amazonaws.com/{id}.json.gz?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=3600"
        ));
        v["urlExpiresAt"] = json!((r.done + chrono::TimeDelta::hours(1)).to_rfc3339());
        v["fileSize"] = json!(2048);
    }
    v
}

/// `POST /reporting/reports`: a new report, or 425 while an identical one is generating.
async fn create_report(
    State(sb): State<Sandbox>,
    Extension(region): Extension<Region>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (a, profile) = match advertiser(&sb, &headers, region, true) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return envelope(400, "Request body is not valid JSON").into_response();
    };
    for field in ["startDate", "endDate"] {
        if request.get(field).and_then(Value::as_str).is_none() {
            return envelope(400, &format!("{field} is required")).into_response();
        }
    }
    if request
        .pointer("/configuration/reportTypeId")
        .and_then(Value::as_str)
        .is_none()
    {
        return envelope(400, "configuration.reportTypeId is required").into_response();
    }
    let now = sb.now();
    // serde_json's maps are ordered by key: the same request reads the same.
    let key = format!("{}|{}|{profile}|{}", a.grant.id, region.name(), request);
    if let Some(id) = REPORT_KEYS.get(&key).map(|i| i.clone())
        && let Some(r) = REPORTS.get(&id)
        && status_of(&r, now) != "COMPLETED"
    {
        return render(ErrorCase::WorkPending, &ErrorDetail::message(id)).into_response();
    }
    let id = super::uuid_like(&a.grant, &format!("report/{}", short_id()));
    let report = Report {
        key: key.clone(),
        grant: a.grant.id.clone(),
        profile,
        created: now,
        done: now + crate::ledger::to_delta(sb.config().async_job_duration),
        request,
    };
    let view = report_view(&id, &report, now);
    REPORTS.insert(id.clone(), report);
    REPORT_KEYS.insert(key, id);
    Reply::json(200, &view).into_response()
}

/// `GET /reporting/reports/{reportId}`.
async fn get_report(
    State(sb): State<Sandbox>,
    Extension(region): Extension<Region>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (a, profile) = match advertiser(&sb, &headers, region, true) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    match REPORTS.get(&id) {
        Some(r) if r.grant == a.grant.id && r.profile == profile && !r.key.is_empty() => {
            Reply::json(200, &report_view(&id, &r, sb.now())).into_response()
        }
        _ => render(
            ErrorCase::NotFound,
            &ErrorDetail::message(format!("Report {id} not found")),
        )
        .into_response(),
    }
}

//! Microsoft Advertising API v13 (platforms-ads.md Part A §2): the Microsoft identity platform at
//! `/common/oauth2/v2.0/{authorize,token}` (form-encoded, client credentials in the body, PKCE;
//! `scope` required on refresh; every refresh answer carries a NEW refresh token while the old one
//! keeps working until it expires, 90 days after it was issued; AADSTS errors with `error_codes`),
//! and the API in both transports:
//!
//! - REST: `POST /CustomerManagement/v13/User/Query` (GetUser, the probe: needs the token and the
//!   `DeveloperToken` header) and `POST /CampaignManagement/v13/Campaigns/QueryByAccountId`
//!   (also needs `CustomerId` and `CustomerAccountId`), errors as `AdApiFaultDetail` JSON with the
//!   expired token in HTTP 401;
//! - SOAP: `POST /Api/CustomerManagement/v13/CustomerManagementService.svc` (GetUser, the token in
//!   the `AuthenticationToken` header element without "Bearer "), faults in HTTP 500, and the
//!   throttle's fault in HTTP 200 as Microsoft is seen to send some.
//!
//! Accounts signed in with Google (Part A §0.7, §2 "Google as identity provider"): Google's OAuth
//! server is served again under `/identity/google` (where `with_origin` moves the definition's
//! `[identities.google]` hosts; the same books as `/google-ads`), and a call carrying
//! `IdentityProvider: Google` (an HTTP header for REST, a SOAP header element) is checked against
//! the tokens Google issued. A Google token without it, or a Microsoft token with it, is not valid
//! credentials here: 105.
//!
//! The real services live on several hosts (clientcenter, campaign, …); the sandbox serves them
//! all under the platform prefix. The developer token is the universal sandbox one, `BBD37VB98`.

use super::{CAMPAIGNS_PER_ACCOUNT, bearer, token_reply};
use crate::error_case::{ErrorCase, ErrorDetail, Limit, Reply};
use crate::ledger::{AccessKind, AccessToken, CodeRefusal, RefreshRefusal, Refusal, short_id};
use crate::provider::Provider;
use crate::{Gate, Sandbox};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Form, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use tokenwarden_core::connection::Environment;

const P: Provider = Provider::MicrosoftAds;
const SCOPE: &str = "https://ads.microsoft.com/msads.manage";
/// The sandbox environment's scope: what the current SDK asks for on the same sign-in host
/// (Part A §2 Sandbox). A token for the other environment's scope answers 105 on either host.
const SANDBOX_SCOPE: &str = "https://si.ads.microsoft.com/msads.manage";

/// The msads.manage scope of the host's environment, and the other one's.
fn scopes_of(host: Environment) -> (&'static str, &'static str) {
    match host {
        Environment::Production => (SCOPE, SANDBOX_SCOPE),
        Environment::Sandbox => (SANDBOX_SCOPE, SCOPE),
    }
}

pub(crate) const CASES: &[ErrorCase] = &[
    // REST: 109 in HTTP 401; SOAP: 109 in HTTP 500.
    ErrorCase::TokenExpired,
    ErrorCase::TokenExpiredUnspecific,
    // 105 over REST and SOAP.
    ErrorCase::TokenInvalid,
    ErrorCase::TokenRefusedPlainText,
    // 106: valid credentials, not this account.
    ErrorCase::ScopeMissing,
    // 108 UserCompromised, 126 IdentityTypeMismatch.
    ErrorCase::AccessRefused { blocked: true },
    ErrorCase::AppMismatch,
    // 116, 1009, 303.
    ErrorCase::CredentialMissing,
    ErrorCase::InvalidParams,
    ErrorCase::EndpointGone { retired: true },
    // 117 over REST, 4204 (bulk), and 117 as a SOAP fault in HTTP 200.
    ErrorCase::RateLimited { limit: Limit::User },
    ErrorCase::RateLimited { limit: Limit::App },
    ErrorCase::RateLimited {
        limit: Limit::Restricted,
    },
    // 0 InternalError over REST and SOAP, and an edge's page.
    ErrorCase::Outage,
    ErrorCase::TransientParamError,
    ErrorCase::OutagePage { status: 503 },
    // The token endpoint.
    ErrorCase::OAuthInvalidRequest,
    ErrorCase::OAuthInvalidClient,
    ErrorCase::OAuthInvalidGrant,
    ErrorCase::OAuthUnsupportedGrant,
    ErrorCase::ConsentRefused { declined: true },
    ErrorCase::ConsentRefused { declined: false },
];

/// A REST `AdApiFaultDetail`.
fn rest_fault(status: u16, code: u32, error_code: &str, message: &str) -> Reply {
    Reply::json(
        status,
        &json!({
            "Errors": [{
                "Code": code,
                "Detail": null,
                "ErrorCode": error_code,
                "Message": message,
            }],
            "TrackingId": tracking_id(),
            "Type": "AdApiFaultDetail",
        }),
    )
}

/// A SOAP 1.1 fault with an `AdApiFaultDetail`, as the v13 services send it.
fn soap_fault(status: u16, code: u32, error_code: &str, message: &str) -> Reply {
    let t = tracking_id();
    let body = format!(
        "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Header><h:TrackingId xmlns:h=\"https://bingads.microsoft.com/Customer/v13\">{t}</h:TrackingId></s:Header><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring xml:lang=\"en-US\">Invalid client data. Check the SOAP fault details for more information. TrackingId: {t}.</faultstring><detail><AdApiFaultDetail xmlns=\"https://adapi.microsoft.com\" xmlns:i=\"http://www.w3.org/2001/XMLSchema-instance\"><TrackingId>{t}</TrackingId><Errors><AdApiError><Code>{code}</Code><Detail i:nil=\"true\"/><ErrorCode>{error_code}</ErrorCode><Message>{}</Message></AdApiError></Errors></AdApiFaultDetail></detail></s:Fault></s:Body></s:Envelope>",
        xml_escape(message)
    );
    Reply {
        status,
        headers: vec![("content-type".into(), "text/xml; charset=utf-8".into())],
        body: body.into_bytes(),
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A GUID-shaped tracking id.
fn tracking_id() -> String {
    let h = format!("{}{}", short_id(), short_id());
    let h: String = h
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .chain(std::iter::repeat('0'))
        .take(32)
        .collect::<String>()
        .to_ascii_lowercase();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The identity platform's error body, with its AADSTS number.
fn aad(status: u16, error: &str, number: u32, text: &str) -> Reply {
    let trace = tracking_id();
    let correlation = tracking_id();
    Reply::json(
        status,
        &json!({
            "error": error,
            "error_description": format!("AADSTS{number}: {text} Trace ID: {trace} Correlation ID: {correlation} Timestamp: 2026-11-20 10:00:00Z"),
            "error_codes": [number],
            "timestamp": "2026-11-20 10:00:00Z",
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": format!("https://login.microsoftonline.com/error?code={number}"),
        }),
    )
    .header("cache-control", "no-store")
}

const EXPIRED: &str = "Authentication token expired. Please renew it or obtain a new token.";
const INVALID_CREDENTIALS: &str =
    "Authentication failed. Either supplied credentials are invalid or the account is inactive";

/// Microsoft Advertising's one rendering function.
pub(crate) fn render(case: ErrorCase, d: &ErrorDetail) -> Reply {
    let msg = |default: &str| d.message.clone().unwrap_or_else(|| default.to_string());
    match case {
        ErrorCase::TokenExpired => rest_fault(401, 109, "AuthenticationTokenExpired", EXPIRED),
        ErrorCase::TokenExpiredUnspecific => {
            soap_fault(500, 109, "AuthenticationTokenExpired", EXPIRED)
        }
        ErrorCase::TokenInvalid | ErrorCase::TokenRefusedEmpty => {
            rest_fault(401, 105, "InvalidCredentials", INVALID_CREDENTIALS)
        }
        ErrorCase::TokenRefusedPlainText => {
            soap_fault(500, 105, "InvalidCredentials", INVALID_CREDENTIALS)
        }
        // Microsoft has no "revoked" code: a token of a withdrawn grant is not valid credentials.
        ErrorCase::TokenRevoked | ErrorCase::AuthorizerGone { .. } => {
            rest_fault(401, 105, "InvalidCredentials", INVALID_CREDENTIALS)
        }
        ErrorCase::ScopeMissing | ErrorCase::RoleMissing => rest_fault(
            401,
            106,
            "UserIsNotAuthorized",
            "The user does not represent a authorized developer.",
        ),
        ErrorCase::AccessRefused { .. } => rest_fault(
            401,
            108,
            "UserCompromised",
            "The user's account has been locked due to suspicious activity. The user must reset the password.",
        ),
        ErrorCase::AppMismatch => rest_fault(
            400,
            126,
            "IdentityTypeMismatch",
            "WorkAccountIsRequired: the user must sign in with a work or school account.",
        ),
        ErrorCase::CredentialMissing => rest_fault(
            400,
            116,
            "RequestMissingHeaders",
            "The request is missing one or more required header elements.",
        ),
        ErrorCase::InvalidParams | ErrorCase::StaleSignature | ErrorCase::MediaRejected { .. } => {
            rest_fault(
                400,
                1009,
                "AccountIdMissingInRequestHeader",
                &msg("The CustomerAccountId header element cannot be null or empty."),
            )
        }
        ErrorCase::EndpointGone { .. } => rest_fault(
            400,
            303,
            "ApiVersionNoLongerSupported",
            "The version of the API that you are using is no longer supported.",
        ),
        ErrorCase::RateLimited { limit: Limit::App } => rest_fault(
            400,
            4204,
            "BulkServiceNoMoreCallsPermittedForTheTimePeriod",
            "You have exceeded the number of calls allowed for this time period; please try again later.",
        ),
        // A SOAP fault in HTTP 200 (BingAds-Python-SDK#190, #251, #259).
        ErrorCase::RateLimited {
            limit: Limit::Restricted,
        } => soap_fault(
            200,
            117,
            "CallRateExceeded",
            "You have exceeded the number of calls that you are allowed to make in a given time period. Please resubmit your request after waiting 60 seconds.",
        ),
        ErrorCase::RateLimited { .. } => rest_fault(
            429,
            117,
            "CallRateExceeded",
            "You have exceeded the number of calls that you are allowed to make in a given time period. Please resubmit your request after waiting 60 seconds.",
        ),
        ErrorCase::Outage | ErrorCase::WorkFailed => rest_fault(
            500,
            0,
            "InternalError",
            "An internal error has occurred. Please try again later.",
        ),
        ErrorCase::TransientParamError => soap_fault(
            500,
            0,
            "InternalError",
            "An internal error has occurred. Please try again later.",
        ),
        ErrorCase::OutagePage { status } => Reply::html(
            status,
            format!(
                "<!DOCTYPE html><html><head><title>Service Unavailable</title></head><body><h2>Service Unavailable</h2><hr><p>HTTP Error {status}. The service is unavailable.</p></body></html>"
            ),
        ),
        // No Microsoft Advertising operation answers "not yet": reports poll in HTTP 200.
        ErrorCase::WorkPending
        | ErrorCase::TaskPending
        | ErrorCase::NotFound
        | ErrorCase::ObjectDeleted
        | ErrorCase::BatchItemsFailed { .. } => Reply::json(
            404,
            &json!({"Message": "No HTTP resource was found that matches the request URI."}),
        ),
        ErrorCase::ConsentRefused { declined } => super::consent_redirect(P, declined),
        ErrorCase::OAuthInvalidRequest => aad(
            400,
            "invalid_request",
            90014,
            &msg("The request body must contain the following parameter: 'scope'."),
        ),
        ErrorCase::OAuthInvalidClient => aad(
            401,
            "invalid_client",
            7_000_215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
        ),
        ErrorCase::OAuthInvalidGrant | ErrorCase::RefreshTokenRefused { expired: false } => aad(
            400,
            "invalid_grant",
            70008,
            &msg(
                "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
            ),
        ),
        ErrorCase::RefreshTokenRefused { expired: true } => aad(
            400,
            "invalid_grant",
            700_082,
            "The refresh token has expired due to inactivity. The token was issued and was inactive for 90.00:00:00.",
        ),
        ErrorCase::OAuthUnsupportedGrant => aad(
            400,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        ),
    }
}

pub(crate) fn routes() -> Router<Sandbox> {
    api_routes()
        .route("/common/oauth2/v2.0/token", post(token))
        .nest(
            &format!(
                "{}/google",
                tokenwarden_core::provider::IDENTITY_HOST_PREFIX
            ),
            super::google_ads::oauth_routes(),
        )
}

/// Who issued the token a call carries: Google when the call says `IdentityProvider: Google`
/// (case as Microsoft's guides write it, compared without case), else Microsoft's own platform.
fn issuer(identity_provider: Option<&str>) -> Provider {
    match identity_provider {
        Some(v) if v.trim().eq_ignore_ascii_case("google") => Provider::GoogleAds,
        _ => P,
    }
}

/// The API, served on the production hosts and (under `/sandbox`) the sandbox's
/// (`*.api.sandbox.bingads.microsoft.com`); each learns which it is from the `Environment`
/// extension. The sign-in host is one for both environments: the scope makes the difference.
pub(crate) fn api_routes() -> Router<Sandbox> {
    Router::new()
        .route("/CustomerManagement/v13/User/Query", post(get_user_rest))
        .route(
            "/CampaignManagement/v13/Campaigns/QueryByAccountId",
            post(campaigns_rest),
        )
        .route(
            "/Api/CustomerManagement/v13/CustomerManagementService.svc",
            post(customer_soap),
        )
}

async fn token(State(sb): State<Sandbox>, Form(f): Form<HashMap<String, String>>) -> Response {
    let get = |k: &str| f.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let grant_type = get("grant_type").unwrap_or("-");
    let count_fail = || sb.counters().token_call(P, None, grant_type);
    let refuse = |case: ErrorCase, message: Option<&str>| {
        count_fail();
        let d = ErrorDetail {
            message: message.map(str::to_string),
            ..Default::default()
        };
        super::refuse(&sb, P, case, &d)
    };
    let Some(client_id) = get("client_id") else {
        return refuse(
            ErrorCase::OAuthInvalidRequest,
            Some("The request body must contain the following parameter: 'client_id'."),
        );
    };
    let Some(app) = sb.ledger().app(P, client_id) else {
        count_fail();
        return aad(
            400,
            "unauthorized_client",
            700_016,
            &format!("Application with identifier '{client_id}' was not found in the directory 'Microsoft Accounts'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant."),
        )
        .into_response();
    };
    if !app.secret_matches(get("client_secret").unwrap_or("")) {
        return refuse(ErrorCase::OAuthInvalidClient, None);
    }
    let now = sb.now();
    let grant = match grant_type {
        "authorization_code" => {
            let (Some(code), Some(redirect_uri)) = (get("code"), get("redirect_uri")) else {
                return refuse(
                    ErrorCase::OAuthInvalidRequest,
                    Some("The request body must contain the following parameter: 'code'."),
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
                Ok(c) => sb.ledger().new_grant(&c, now),
                Err(CodeRefusal::RedirectMismatch) => {
                    count_fail();
                    return aad(
                        400,
                        "invalid_client",
                        50011,
                        &format!("The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for the application '{client_id}'."),
                    )
                    .into_response();
                }
                Err(CodeRefusal::PkceMismatch) => {
                    return refuse(
                        ErrorCase::OAuthInvalidGrant,
                        Some(
                            "The code_verifier does not match the code_challenge supplied in the authorization request for PKCE.",
                        ),
                    );
                }
                Err(_) => {
                    return refuse(
                        ErrorCase::OAuthInvalidGrant,
                        Some("The provided authorization code is invalid or has expired."),
                    );
                }
            }
        }
        "refresh_token" => {
            let Some(rt) = get("refresh_token") else {
                return refuse(
                    ErrorCase::OAuthInvalidRequest,
                    Some("The request body must contain the following parameter: 'refresh_token'."),
                );
            };
            // Unlike Google and Amazon, the identity platform wants the scopes on refresh.
            let Some(scope) = get("scope") else {
                return refuse(
                    ErrorCase::OAuthInvalidRequest,
                    Some("The request body must contain the following parameter: 'scope'."),
                );
            };
            // Each refresh issues a new refresh token; the one sent is NOT retired and keeps
            // working until it expires (Part A §0.2: "old ones are not revoked server-side").
            let grant = match sb.ledger().use_refresh(
                P,
                client_id,
                rt,
                false,
                std::time::Duration::ZERO,
                now,
            ) {
                Ok((g, _)) => g,
                Err(RefreshRefusal::Expired) => {
                    return refuse(ErrorCase::RefreshTokenRefused { expired: true }, None);
                }
                Err(_) => {
                    return refuse(ErrorCase::OAuthInvalidGrant, None);
                }
            };
            if scope
                .split(' ')
                .filter(|s| {
                    !s.is_empty()
                        && !matches!(*s, "openid" | "offline_access" | "profile" | "email")
                })
                .any(|s| !grant.has_scope(s))
            {
                count_fail();
                return aad(
                    400,
                    "invalid_grant",
                    70000,
                    "The request was denied because one or more scopes requested are unauthorized or expired. The user must first sign in and grant the client application access to the requested scope.",
                )
                .into_response();
            }
            grant
        }
        _ => {
            return refuse(ErrorCase::OAuthUnsupportedGrant, None);
        }
    };
    sb.counters().token_call(P, Some(&grant.id), grant_type);
    let lifetime = sb.config().access_lifetime(P);
    let (access, _) = sb
        .ledger()
        .issue_access(&grant, AccessKind::Standard, "EwB", lifetime, now);
    let scopes: Vec<String> = grant
        .scopes()
        .into_iter()
        .filter(|s| !matches!(s.as_str(), "openid" | "offline_access"))
        .collect();
    let mut body = json!({
        "token_type": "Bearer",
        "scope": scopes.join(" "),
        "expires_in": lifetime.map_or(3600, |l| l.as_secs()),
        "ext_expires_in": lifetime.map_or(3600, |l| l.as_secs()),
        "access_token": access,
    });
    // offline_access is what makes the identity platform issue refresh tokens, on every answer.
    if grant.has_scope("offline_access") {
        let (v, _) = sb
            .ledger()
            .issue_refresh(&grant, "M.C5", P.refresh_lifetime(), now);
        body["refresh_token"] = json!(v);
    }
    token_reply(&sb, P, body)
}

/// The token (Bearer for REST, the raw `AuthenticationToken` for SOAP), the throttle fault, and
/// the msads.manage scope. `soap` picks the transport of the error.
fn authorize(
    sb: &Sandbox,
    host: Environment,
    token: Option<&str>,
    identity_provider: Option<&str>,
    soap: bool,
) -> Result<Arc<AccessToken>, Reply> {
    let render_as = |case: ErrorCase| {
        if soap {
            soap_render(case)
        } else {
            render(case, &ErrorDetail::default())
        }
    };
    let issuer = issuer(identity_provider);
    let access = match sb.gate_issued_by(P, issuer, host, token) {
        Ok(a) => a,
        Err(Gate::Token(r)) => {
            let case = match r {
                Refusal::Missing => ErrorCase::TokenInvalid,
                Refusal::Expired => ErrorCase::TokenExpired,
                Refusal::Revoked | Refusal::Unknown => ErrorCase::TokenInvalid,
            };
            return Err(render_as(case));
        }
        Err(Gate::Throttled) => {
            crate::counters::Counters::bump(&sb.counters().of(P).rate_limited_sent);
            return Err(if soap {
                render(
                    ErrorCase::RateLimited {
                        limit: Limit::Restricted,
                    },
                    &ErrorDetail::default(),
                )
            } else {
                render(
                    ErrorCase::RateLimited { limit: Limit::User },
                    &ErrorDetail::default(),
                )
            });
        }
    };
    // A Google token carries Google's sign-in scopes, not msads.manage: Google vouched for the
    // person, and the Microsoft Advertising user signed up with that Google account.
    if issuer != P {
        return Ok(access);
    }
    // A token for the other environment's scope is an unknown credential here (105), as a
    // production token on the sandbox is; tokens minted for the pre-MFA scopes answer 3101.
    let (scope, other) = scopes_of(host);
    if !access.grant.has_scope(scope) && access.grant.has_scope(other) {
        crate::counters::Counters::bump(&sb.counters().of(P).wrong_environment_sent);
        return Err(render_as(ErrorCase::TokenInvalid));
    }
    if !access.grant.has_scope(scope) {
        let (status, code, error_code, message) = (
            401,
            3101,
            "OAuthTokenInvalid",
            "The OAuth access token is invalid: it was not issued for the msads.manage scope.",
        );
        return Err(if soap {
            soap_fault(500, code, error_code, message)
        } else {
            rest_fault(status, code, error_code, message)
        });
    }
    Ok(access)
}

/// The SOAP rendering of the auth cases (faults in HTTP 500).
fn soap_render(case: ErrorCase) -> Reply {
    match case {
        ErrorCase::TokenExpired => soap_fault(500, 109, "AuthenticationTokenExpired", EXPIRED),
        _ => soap_fault(500, 105, "InvalidCredentials", INVALID_CREDENTIALS),
    }
}

/// Whether the developer token is the one this sandbox issues.
fn developer_token_ok(value: Option<&str>) -> bool {
    value.is_some_and(|v| Some(v.trim()) == P.developer_token())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The user behind a grant: its id, its customer and its ad accounts.
struct User {
    id: u64,
    customer_id: u64,
    account_ids: Vec<u64>,
    user_name: String,
}

fn user_of(a: &AccessToken) -> User {
    let g = &a.grant;
    User {
        id: g.numeric_id("user") % 900_000_000 + 100_000_000,
        customer_id: g.numeric_id("customer") % 900_000_000 + 100_000_000,
        account_ids: (0..2)
            .map(|i| g.numeric_id(&format!("account/{i}")) % 900_000_000 + 100_000_000)
            .collect(),
        user_name: format!(
            "sandbox-user-{}@outlook.com",
            g.numeric_id("name") % 100_000
        ),
    }
}

fn user_json(u: &User) -> Value {
    json!({
        "User": {
            "ContactInfo": {"Email": u.user_name, "Phone1": null},
            "CustomerId": u.customer_id,
            "Id": u.id,
            "JobTitle": null,
            "Lcid": "EnglishUS",
            "Name": {"FirstName": "Sandbox", "LastName": "User", "MiddleInitial": null},
            "UserName": u.user_name,
            "UserLifeCycleStatus": "Active",
            "TimeStamp": null,
        },
        "CustomerRoles": [{
            "RoleId": 41,
            "CustomerId": u.customer_id,
            "AccountIds": u.account_ids,
            "LinkedAccountIds": null,
            "CustomerLinkPermission": null,
        }],
    })
}

/// REST GetUser: `POST /CustomerManagement/v13/User/Query` with `{"UserId": null}`.
async fn get_user_rest(
    State(sb): State<Sandbox>,
    Extension(host): Extension<Environment>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let a = match authorize(
        &sb,
        host,
        bearer(&headers).as_deref(),
        header(&headers, "IdentityProvider"),
        false,
    ) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    if !developer_token_ok(header(&headers, "DeveloperToken")) {
        return rest_fault(401, 105, "InvalidCredentials", INVALID_CREDENTIALS).into_response();
    }
    let u = user_of(&a);
    let wanted = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("UserId").cloned());
    match wanted {
        None | Some(Value::Null) => {}
        Some(id) if id.as_u64() == Some(u.id) || id.as_str() == Some(&u.id.to_string()) => {}
        Some(_) => {
            return render(ErrorCase::ScopeMissing, &ErrorDetail::default()).into_response();
        }
    }
    Reply::json(200, &user_json(&u)).into_response()
}

/// REST `Campaigns/QueryByAccountId`: needs `CustomerId` and `CustomerAccountId` too.
async fn campaigns_rest(
    State(sb): State<Sandbox>,
    Extension(host): Extension<Environment>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let a = match authorize(
        &sb,
        host,
        bearer(&headers).as_deref(),
        header(&headers, "IdentityProvider"),
        false,
    ) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let Some(dev) = header(&headers, "DeveloperToken") else {
        return render(ErrorCase::CredentialMissing, &ErrorDetail::default()).into_response();
    };
    if !developer_token_ok(Some(dev)) {
        return rest_fault(401, 105, "InvalidCredentials", INVALID_CREDENTIALS).into_response();
    }
    let Some(customer) = header(&headers, "CustomerId") else {
        return render(ErrorCase::CredentialMissing, &ErrorDetail::default()).into_response();
    };
    let Some(account) = header(&headers, "CustomerAccountId") else {
        return render(ErrorCase::InvalidParams, &ErrorDetail::default()).into_response();
    };
    let u = user_of(&a);
    if customer != u.customer_id.to_string()
        || !u.account_ids.iter().any(|id| id.to_string() == account)
    {
        return render(ErrorCase::ScopeMissing, &ErrorDetail::default()).into_response();
    }
    let req = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
    let account_in_body = req.get("AccountId").map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    if account_in_body.as_deref() != Some(account) {
        return rest_fault(
            400,
            1030,
            "AccountIdHasToBeSpecified",
            "The AccountId must be specified and match the CustomerAccountId header.",
        )
        .into_response();
    }
    let campaigns: Vec<Value> = (1..=CAMPAIGNS_PER_ACCOUNT)
        .map(|i| {
            json!({
                "Id": 500_000_000u64 + i as u64,
                "Name": format!("Campaign {i}"),
                "Status": "Active",
                "CampaignType": "Search",
                "BudgetType": "DailyBudgetStandard",
                "DailyBudget": 25.0,
            })
        })
        .collect();
    Reply::json(200, &json!({"Campaigns": campaigns, "PartialErrors": null})).into_response()
}

/// The text of the first element named `local` (any prefix) in a small XML request.
fn element_text<'a>(xml: &'a str, local: &str) -> Option<&'a str> {
    let mut rest = xml;
    loop {
        let lt = rest.find('<')?;
        rest = &rest[lt + 1..];
        let end = rest.find('>')?;
        let tag = &rest[..end];
        let name = tag.split(|c: char| c.is_ascii_whitespace()).next()?;
        let name_local = name.rsplit_once(':').map_or(name, |(_, l)| l);
        if name_local == local && !tag.ends_with('/') && !name.starts_with('/') {
            let content = &rest[end + 1..];
            let close = content.find("</")?;
            return Some(content[..close].trim()).filter(|t| !t.is_empty());
        }
    }
}

/// SOAP `GetUser` at the Customer Management service; the token travels in the
/// `AuthenticationToken` header element, without "Bearer ".
async fn customer_soap(
    State(sb): State<Sandbox>,
    Extension(host): Extension<Environment>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let text = String::from_utf8_lossy(&body[..body.len().min(64 * 1024)]).into_owned();
    let action = header(&headers, "SOAPAction")
        .unwrap_or("")
        .trim_matches('"');
    if !action.ends_with("GetUser") && !text.contains("GetUserRequest") {
        return soap_fault(
            500,
            0,
            "InternalError",
            "The sandbox emulates only GetUser on this service.",
        )
        .into_response();
    }
    let a = match authorize(
        &sb,
        host,
        element_text(&text, "AuthenticationToken"),
        element_text(&text, "IdentityProvider"),
        true,
    ) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    if !developer_token_ok(element_text(&text, "DeveloperToken")) {
        return soap_fault(500, 105, "InvalidCredentials", INVALID_CREDENTIALS).into_response();
    }
    let u = user_of(&a);
    let body = format!(
        "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Header><h:TrackingId xmlns:h=\"https://bingads.microsoft.com/Customer/v13\">{t}</h:TrackingId></s:Header><s:Body><GetUserResponse xmlns=\"https://bingads.microsoft.com/Customer/v13\"><User xmlns:a=\"https://bingads.microsoft.com/Customer/v13/Entities\"><a:CustomerId>{c}</a:CustomerId><a:Id>{id}</a:Id><a:UserName>{name}</a:UserName></User><CustomerRoles xmlns:a=\"https://bingads.microsoft.com/Customer/v13/Entities\"><a:CustomerRole><a:AccountIds xmlns:b=\"http://schemas.microsoft.com/2003/10/Serialization/Arrays\">{accounts}</a:AccountIds><a:CustomerId>{c}</a:CustomerId><a:RoleId>41</a:RoleId></a:CustomerRole></CustomerRoles></GetUserResponse></s:Body></s:Envelope>",
        t = tracking_id(),
        c = u.customer_id,
        id = u.id,
        name = xml_escape(&u.user_name),
        accounts = u
            .account_ids
            .iter()
            .map(|a| format!("<b:long>{a}</b:long>"))
            .collect::<String>(),
    );
    Reply {
        status: 200,
        headers: vec![("content-type".into(), "text/xml; charset=utf-8".into())],
        body: body.into_bytes(),
    }
    .into_response()
}

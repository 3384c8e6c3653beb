//! LinkedIn Marketing API: table-driven classifier tests from the documented answers
//! (../shared/docs/platforms-ads.md Part B §1 "Errors" and §0.2, §0.4–§0.6), built from their
//! semantics: the three 401 serviceErrorCodes (with and without the newer `code` field), ACCESS
//! DENIED as a scope unless it names the application, the version errors as the app's
//! configuration (never a connection's), the dead refresh token that is NOT invalid_grant, and
//! the definition's model features (headers on /rest only, the refresh token's end counted from
//! the consent).

use chrono::{DateTime, Utc};
use tokenwarden_core::classify::{Action, Blame, Classification, Kind, ResponseView};
use tokenwarden_core::provider::{Context, HeaderValues, Provider, Registry};

fn linkedin() -> Provider {
    Registry::builtin()
        .unwrap()
        .get("linkedin")
        .unwrap()
        .as_ref()
        .clone()
}

fn classify_in(status: u16, body: &str, context: Context) -> Classification {
    let h: Vec<(String, String)> = vec![("content-type".into(), "application/json".into())];
    linkedin().classifier().classify(
        &ResponseView {
            status,
            headers: &h,
            body: body.as_bytes(),
        },
        context,
        DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap(),
    )
}

fn classify(status: u16, body: &str) -> Classification {
    classify_in(status, body, Context::Api)
}

#[test]
fn documented_api_answers_classify_as_the_table_says() {
    use Action::*;
    use Kind::*;
    let cases: &[(u16, &str, Kind, Action, Blame)] = &[
        (
            401,
            r#"{"status":401,"serviceErrorCode":65602,"code":"EXPIRED_ACCESS_TOKEN","message":"The token used in the request has expired"}"#,
            TokenExpired,
            RefreshAndRetry,
            Blame::Connection,
        ),
        (
            401,
            r#"{"serviceErrorCode":65602,"message":"The token used in the request has expired","status":401}"#,
            TokenExpired,
            RefreshAndRetry,
            Blame::Connection,
        ),
        (
            401,
            r#"{"status":401,"serviceErrorCode":65601,"code":"REVOKED_ACCESS_TOKEN","message":"The token used in the request has been revoked by the user"}"#,
            TokenRevoked,
            Reauthorize,
            Blame::Connection,
        ),
        (
            401,
            r#"{"status":401,"serviceErrorCode":65600,"code":"INVALID_ACCESS_TOKEN","message":"Invalid access token"}"#,
            TokenInvalid,
            Reauthorize,
            Blame::Connection,
        ),
        // The 2018-19 form without `code`.
        (
            401,
            r#"{"serviceErrorCode":65600,"message":"Invalid access token","status":401}"#,
            TokenInvalid,
            Reauthorize,
            Blame::Connection,
        ),
        // Only the newer name, no number.
        (
            401,
            r#"{"status":401,"code":"REVOKED_ACCESS_TOKEN","message":"The token used in the request has been revoked by the user"}"#,
            TokenRevoked,
            Reauthorize,
            Blame::Connection,
        ),
        (
            401,
            r#"{"message":"Empty oauth2_access_token","serviceErrorCode":401,"status":401}"#,
            InvalidRequest,
            FixRequest,
            Blame::Request,
        ),
        (
            401,
            r#"{"serviceErrorCode":65604,"message":"Empty oauth2_access_token","status":401}"#,
            InvalidRequest,
            FixRequest,
            Blame::Request,
        ),
        (
            403,
            r#"{"status":403,"serviceErrorCode":100,"code":"ACCESS_DENIED","message":"Not enough permissions to access: adAccounts.GET.20251101"}"#,
            InsufficientScope,
            RequestScopes,
            Blame::Connection,
        ),
        (
            403,
            r#"{"status":403,"serviceErrorCode":100,"code":"ACCESS_DENIED","message":"Not enough permissions to access: userinfo.GET.NO_VERSION"}"#,
            InsufficientScope,
            RequestScopes,
            Blame::Connection,
        ),
        (
            403,
            r#"{"serviceErrorCode":100,"message":"Your application does not have permission to create non-test advertiser accounts","status":403}"#,
            AppNotAuthorized,
            FixRequest,
            Blame::Connection,
        ),
        (
            400,
            r#"{"status":400,"code":"VERSION_MISSING","message":"A version must be present. Please specify a version by adding the LinkedIn-Version header."}"#,
            InvalidRequest,
            FixRequest,
            Blame::App,
        ),
        (
            426,
            r#"{"status":426,"code":"NONEXISTENT_VERSION","message":"Requested version 20220601 is not active"}"#,
            InvalidRequest,
            FixRequest,
            Blame::App,
        ),
        // A 426 whatever its body says.
        (
            426,
            r#"{"message":"Upgrade Required"}"#,
            InvalidRequest,
            FixRequest,
            Blame::App,
        ),
        (
            429,
            r#"{"serviceErrorCode":101,"message":"Resource level throttle limit for calls to this resource is reached.","status":429}"#,
            RateLimited,
            BackoffAndRetry,
            Blame::Platform,
        ),
        (
            429,
            r#"{"status":429,"code":"TOO_MANY_REQUESTS","message":"Too many requests"}"#,
            RateLimited,
            BackoffAndRetry,
            Blame::Platform,
        ),
        (
            404,
            r#"{"message":"Not Found.","status":404}"#,
            NotFound,
            FixRequest,
            Blame::Request,
        ),
        (
            500,
            r#"{"message":"Internal Server Error","status":500}"#,
            ServiceUnavailable,
            BackoffAndRetry,
            Blame::Platform,
        ),
        (
            503,
            r#"{"status":503,"code":"UNDER_MAINTENANCE","message":"Under Maintenance"}"#,
            ServiceUnavailable,
            BackoffAndRetry,
            Blame::Platform,
        ),
    ];
    for (status, body, kind, action, blame) in cases {
        let c = classify(*status, body);
        assert_eq!(
            (c.kind, c.action, c.blame),
            (*kind, *action, *blame),
            "{status} {body}: {} ({})",
            c.rule,
            c.title
        );
    }
}

/// A throttle waits: five minutes by default, until midnight UTC when LinkedIn says it is the
/// day's limit. It never marks the connection.
#[test]
fn throttles_wait_and_a_daily_limit_waits_for_midnight() {
    let c = classify(
        429,
        r#"{"serviceErrorCode":101,"message":"Resource level throttle limit for calls to this resource is reached.","status":429}"#,
    );
    assert_eq!(c.retry_after, Some(std::time::Duration::from_secs(300)));
    let c = classify(
        429,
        r#"{"serviceErrorCode":101,"message":"Daily application request limit reached","status":429}"#,
    );
    // 1_800_000_000 is 2027-01-15 08:00:00 UTC: 16 hours to midnight.
    assert_eq!(
        c.retry_after,
        Some(std::time::Duration::from_secs(16 * 3600))
    );
}

/// §0.2: a dead refresh token is 400 invalid_request, not invalid_grant; the common rules would
/// call that a request bug. Code reuse reads as a redirect problem, a wrong secret is the app's.
#[test]
fn token_endpoint_answers_are_told_apart() {
    let c = classify_in(
        400,
        r#"{"error":"invalid_request","error_description":"The provided authorization grant or refresh token is invalid, expired or revoked"}"#,
        Context::TokenEndpoint,
    );
    assert_eq!(
        (c.kind, c.action),
        (Kind::TokenRevoked, Action::Reauthorize)
    );
    assert!(c.fix.contains("Re-authorize"), "{}", c.fix);
    // Nango's reading (Google's wording) works too.
    let c = classify_in(
        400,
        r#"{"error":"invalid_grant","error_description":"The provided authorization grant is invalid"}"#,
        Context::TokenEndpoint,
    );
    assert_eq!(c.kind, Kind::TokenRevoked);
    // A request that really is malformed is the definition's (the app's), never the grant's.
    let c = classify_in(
        400,
        r#"{"error":"invalid_request","error_description":"A required parameter \"client_id\" is missing"}"#,
        Context::TokenEndpoint,
    );
    assert_eq!((c.kind, c.blame), (Kind::InvalidRequest, Blame::App));
    let c = classify_in(
        400,
        r#"{"error":"invalid_redirect_uri","error_description":"Unable to retrieve access token: appid/redirect uri/code verifier does not match authorization code. Or authorization code expired. Or external member binding exists"}"#,
        Context::TokenEndpoint,
    );
    assert_eq!(c.kind, Kind::TokenRevoked);
    // The same words under invalid_request, as LinkedIn also answers a stale code.
    let c = classify_in(
        400,
        r#"{"error":"invalid_request","error_description":"Unable to retrieve access token: appid/redirect uri/code verifier does not match authorization code. Or authorization code expired. Or external member binding exists"}"#,
        Context::TokenEndpoint,
    );
    assert_eq!(c.kind, Kind::TokenRevoked);
    let c = classify_in(
        401,
        r#"{"error":"invalid_client","error_description":"Client authentication failed"}"#,
        Context::TokenEndpoint,
    );
    assert_eq!(c.blame, Blame::App);
}

/// The version headers go on /rest calls only, with the configured version; /v2 gets none.
#[test]
fn version_headers_go_on_rest_calls_only() {
    let p = linkedin();
    let api = &p.spec.api;
    let headers = api.extra_headers(&HeaderValues {
        client_id: "cid".into(),
        ..Default::default()
    });
    let on = |path: &str| -> Vec<(String, String)> {
        headers
            .iter()
            .filter(|h| h.applies_to(path))
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect()
    };
    let version = api.version.clone().unwrap();
    assert_eq!(version.len(), 6, "YYYYMM: {version}");
    assert_eq!(
        on("/rest/adAccounts"),
        [
            ("LinkedIn-Version".to_string(), version),
            ("X-Restli-Protocol-Version".to_string(), "2.0.0".to_string())
        ]
    );
    assert_eq!(on("rest/adAnalytics").len(), 2);
    assert!(on("/v2/userinfo").is_empty());
    assert!(on("/restricted").is_empty(), "a prefix is a path prefix");
    assert!(!p.spec.refresh.refresh_token_extends);
    assert_eq!(p.spec.authorize.scope_separator, " ");
    assert!(!p.spec.authorize.pkce);
}

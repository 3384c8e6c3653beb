//! Pinterest API v5: table-driven classifier tests from the documented answers
//! (../shared/docs/platforms-ads.md Part B §2 "Errors" and §0.2, §0.4, §0.7), built from their
//! semantics: 401 code 2 is the one authentication failure (expired, invalid or the other
//! environment: refresh once), 401 code 3 is a missing scope that a refresh cannot fix, code 283
//! at the token endpoint is a dead refresh token, code 29 is the Trial tier (the app's) or a
//! resource the account may not reach, and status echoes in `code` are read with the status.

use chrono::{DateTime, Utc};
use tokenwarden_core::classify::{Action, Blame, Classification, Kind, ResponseView};
use tokenwarden_core::provider::{Context, Provider, Registry};

fn pinterest() -> Provider {
    Registry::builtin()
        .unwrap()
        .get("pinterest")
        .unwrap()
        .as_ref()
        .clone()
}

fn classify_in(status: u16, body: &str, context: Context) -> Classification {
    let h: Vec<(String, String)> = vec![
        ("content-type".into(), "application/json".into()),
        ("x-pinterest-rid".into(), "5861946392133761".into()),
    ];
    pinterest().classifier().classify(
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
            r#"{"code":2,"message":"Authentication failed.","status":"failure"}"#,
            TokenExpired,
            RefreshAndRetry,
            Blame::Connection,
        ),
        (
            401,
            r#"{"code":2,"message":"Authentication failed."}"#,
            TokenExpired,
            RefreshAndRetry,
            Blame::Connection,
        ),
        // A missing scope in HTTP 401: never a refresh.
        (
            401,
            r#"{"code":3,"message":"Your token does not have sufficient permissions to perform this operation. Please ensure your token is authorized with the correct set of scopes."}"#,
            InsufficientScope,
            RequestScopes,
            Blame::Connection,
        ),
        (
            403,
            r#"{"code":29,"message":"Apps with Trial access may not create Pins in production https://api.pinterest.com - use API Sandbox https://api-sandbox.pinterest.com instead."}"#,
            AppNotAuthorized,
            FixRequest,
            Blame::App,
        ),
        (
            403,
            r#"{"code":29,"message":"You are not permitted to access that resource."}"#,
            AppNotAuthorized,
            FixRequest,
            Blame::Request,
        ),
        (
            403,
            r#"{"code":403,"message":"Not authorized to access the user account."}"#,
            AppNotAuthorized,
            FixRequest,
            Blame::Request,
        ),
        (
            429,
            r#"{"code":8,"message":"This request exceeded a rate limit. This can be caused by too many requests from an app."}"#,
            RateLimited,
            BackoffAndRetry,
            Blame::Platform,
        ),
        (
            429,
            r#"{"code":30,"message":"This request exceeded a rate limit."}"#,
            RateLimited,
            BackoffAndRetry,
            Blame::Platform,
        ),
        (
            503,
            r#"{"code":4197,"message":"The endpoint has been ramped down and is currently not accepting any traffic."}"#,
            ServiceUnavailable,
            BackoffAndRetry,
            Blame::Platform,
        ),
        // Status echoes: the status decides.
        (
            404,
            r#"{"code":404,"message":"Ad account not found."}"#,
            NotFound,
            FixRequest,
            Blame::Request,
        ),
        (
            400,
            r#"{"code":1,"message":"Invalid parameters."}"#,
            InvalidRequest,
            FixRequest,
            Blame::Request,
        ),
        (
            500,
            r#"{"code":500,"message":"Internal server error."}"#,
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

/// Code 2's fix names the other environment, since a sandbox token on production answers it.
#[test]
fn code_2_says_the_environment_may_be_the_cause() {
    let c = classify(
        401,
        r#"{"code":2,"message":"Authentication failed.","status":"failure"}"#,
    );
    assert!(c.fix.contains("api-sandbox.pinterest.com"), "{}", c.fix);
    assert_eq!(c.platform_code.as_deref(), Some("2"));
}

/// A spam block waits an hour (message_detail is read before message); an ordinary throttle
/// backs off.
#[test]
fn a_spam_block_is_not_a_short_backoff() {
    let c = classify(
        429,
        r#"{"code":8,"message":"This request exceeded a rate limit.","message_detail":"Your request was blocked by our spam filter.","status":"failure"}"#,
    );
    assert_eq!(c.kind, Kind::RateLimited);
    assert_eq!(c.retry_after, Some(std::time::Duration::from_secs(3600)));
    let c = classify(
        429,
        r#"{"code":8,"message":"This request exceeded a rate limit."}"#,
    );
    assert_ne!(c.retry_after, Some(std::time::Duration::from_secs(3600)));
}

/// The token endpoint: 401 code 283 is the refresh token gone (not invalid_grant, §0.2); the
/// app's Basic credentials refused are the app's problem.
#[test]
fn token_endpoint_answers_are_told_apart() {
    let c = classify_in(
        401,
        r#"{"code":283,"message":"The authorization grant is invalid"}"#,
        Context::TokenEndpoint,
    );
    assert_eq!(
        (c.kind, c.action),
        (Kind::TokenRevoked, Action::Reauthorize)
    );
    let c = classify_in(
        401,
        r#"{"code":2,"message":"Authentication failed.","status":"failure"}"#,
        Context::TokenEndpoint,
    );
    assert_eq!(c.blame, Blame::App, "{}", c.rule);
    assert_ne!(c.kind, Kind::TokenRevoked);
    let c = classify_in(
        400,
        r#"{"error":"invalid_grant","error_description":"Invalid refresh token"}"#,
        Context::TokenEndpoint,
    );
    assert_eq!(c.kind, Kind::TokenRevoked);
}

/// The definition: Basic auth, comma-separated scopes, rotation stored atomically, the sandbox
/// host, no revocation endpoint.
#[test]
fn the_definition_says_what_pinterest_does() {
    use tokenwarden_core::provider::ClientAuth;
    let p = pinterest();
    let s = &p.spec;
    assert_eq!(s.authorize.scope_separator, ",");
    assert_eq!(s.token.exchange.client_auth, ClientAuth::Basic);
    assert_eq!(
        s.token.refresh.as_ref().unwrap().client_auth,
        ClientAuth::Basic
    );
    assert!(s.refresh.rotates);
    assert!(s.refresh.reuse_grace.is_none());
    assert!(s.token.revoke.is_none());
    assert_eq!(
        s.api.sandbox_base_url.as_ref().unwrap().as_str(),
        "https://api-sandbox.pinterest.com/v5"
    );
    assert_eq!(s.api.probe.path, "/user_account");
}

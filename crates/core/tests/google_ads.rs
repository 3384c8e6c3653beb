//! Google Ads: table-driven classifier tests from the documented codes
//! (../shared/docs/platforms-ads.md Part A §1 "Error envelope and codes"), built from the
//! envelope's semantics: the error family is the key of `errorCode`, `searchStream` wraps the
//! failure in an array, front-end rejections carry `ErrorInfo`, and waits are in the body.

use chrono::{DateTime, Utc};
use std::time::Duration;
use tokenwarden_core::classify::{Action, Blame, Classification, Kind, ResponseView};
use tokenwarden_core::provider::{Context, Registry};

fn classify(status: u16, body: &str, context: Context) -> Classification {
    let reg = Registry::builtin().unwrap();
    let p = reg.get("google-ads").unwrap();
    p.classifier().classify(
        &ResponseView {
            status,
            headers: &[("content-type".into(), "application/json".into())],
            body: body.as_bytes(),
        },
        context,
        DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap(),
    )
}

/// A GoogleAdsFailure as the REST API sends it, with an optional quotaErrorDetails.
fn failure(
    http: u16,
    status: &str,
    family: &str,
    code: &str,
    quota: Option<(&str, &str)>,
) -> String {
    let details = match quota {
        Some((scope, delay)) => format!(
            r#","details":{{"quotaErrorDetails":{{"rateScope":"{scope}","rateName":"Number of operations for basic access","retryDelay":"{delay}"}}}}"#
        ),
        None => String::new(),
    };
    format!(
        r#"{{"error":{{"code":{http},"message":"Request had a problem.","status":"{status}","details":[{{"@type":"type.googleapis.com/google.ads.googleads.v21.errors.GoogleAdsFailure","errors":[{{"errorCode":{{"{family}":"{code}"}},"message":"The {code} case."{details}}}],"requestId":"reqAbc123"}}]}}}}"#
    )
}

#[test]
fn documented_codes_classify_as_the_table_says() {
    use Action::*;
    use Kind::*;
    let cases: &[(u16, &str, &str, &str, Kind, Action)] = &[
        (
            401,
            "UNAUTHENTICATED",
            "authenticationError",
            "OAUTH_TOKEN_EXPIRED",
            TokenExpired,
            RefreshAndRetry,
        ),
        (
            401,
            "UNAUTHENTICATED",
            "authenticationError",
            "OAUTH_TOKEN_INVALID",
            TokenInvalid,
            RefreshAndRetry,
        ),
        (
            401,
            "UNAUTHENTICATED",
            "authenticationError",
            "OAUTH_TOKEN_DISABLED",
            TokenInvalid,
            RefreshAndRetry,
        ),
        (
            401,
            "UNAUTHENTICATED",
            "authenticationError",
            "OAUTH_TOKEN_REVOKED",
            TokenRevoked,
            Reauthorize,
        ),
        // A 401 that no refresh can fix (§0.4).
        (
            401,
            "UNAUTHENTICATED",
            "authenticationError",
            "NOT_ADS_USER",
            AppNotAuthorized,
            FixRequest,
        ),
        (
            400,
            "INVALID_ARGUMENT",
            "authenticationError",
            "CUSTOMER_NOT_FOUND",
            InvalidRequest,
            FixRequest,
        ),
        (
            401,
            "UNAUTHENTICATED",
            "authenticationError",
            "CLIENT_CUSTOMER_ID_INVALID",
            InvalidRequest,
            FixRequest,
        ),
        (
            401,
            "UNAUTHENTICATED",
            "authenticationError",
            "TWO_STEP_VERIFICATION_NOT_ENROLLED",
            AppNotAuthorized,
            FixRequest,
        ),
        (
            403,
            "PERMISSION_DENIED",
            "authorizationError",
            "USER_PERMISSION_DENIED",
            InsufficientScope,
            FixRequest,
        ),
        (
            403,
            "PERMISSION_DENIED",
            "authorizationError",
            "DEVELOPER_TOKEN_NOT_APPROVED",
            AppNotAuthorized,
            FixRequest,
        ),
        (
            403,
            "PERMISSION_DENIED",
            "authorizationError",
            "CLOUD_PROJECT_NOT_APPROVED_FOR_PRODUCTION",
            AppNotAuthorized,
            FixRequest,
        ),
        (
            403,
            "PERMISSION_DENIED",
            "authorizationError",
            "ACTION_NOT_PERMITTED",
            AppNotAuthorized,
            FixRequest,
        ),
        (
            403,
            "PERMISSION_DENIED",
            "authorizationError",
            "PROJECT_DISABLED",
            AppNotAuthorized,
            FixRequest,
        ),
        (
            403,
            "PERMISSION_DENIED",
            "authorizationError",
            "CUSTOMER_NOT_ENABLED",
            NotFound,
            FixRequest,
        ),
        (
            429,
            "RESOURCE_EXHAUSTED",
            "quotaError",
            "RESOURCE_TEMPORARILY_EXHAUSTED",
            RateLimited,
            BackoffAndRetry,
        ),
        (
            429,
            "RESOURCE_EXHAUSTED",
            "quotaError",
            "EXCESSIVE_SHORT_TERM_QUERY_RESOURCE_CONSUMPTION",
            RateLimited,
            BackoffAndRetry,
        ),
        (
            500,
            "INTERNAL",
            "internalError",
            "INTERNAL_ERROR",
            ServiceUnavailable,
            BackoffAndRetry,
        ),
        (
            503,
            "UNAVAILABLE",
            "internalError",
            "TRANSIENT_ERROR",
            ServiceUnavailable,
            BackoffAndRetry,
        ),
        (
            400,
            "INVALID_ARGUMENT",
            "batchJobError",
            "BATCH_JOB_NOT_COMPLETED",
            AsyncPending,
            PollLater,
        ),
    ];
    for (http, status, family, code, kind, action) in cases {
        let body = failure(*http, status, family, code, Option::None);
        for wrapped in [body.clone(), format!("[{body}]")] {
            let c = classify(*http, &wrapped, Context::Api);
            assert_eq!(
                (c.kind, c.action),
                (*kind, *action),
                "{code} ({}): {c:#?}",
                &wrapped[..1]
            );
            assert_eq!(c.platform_code.as_deref(), Some(*code));
            assert_eq!(c.platform_subcode.as_deref(), Some(*family));
            assert_eq!(c.trace_id.as_deref(), Some("reqAbc123"));
            assert!(
                c.rule.starts_with("google-ads#"),
                "{code}: decided by {}",
                c.rule
            );
        }
    }
}

#[test]
fn the_app_quota_waits_as_long_as_retry_delay_says_and_blames_the_app() {
    let body = failure(
        429,
        "RESOURCE_EXHAUSTED",
        "quotaError",
        "RESOURCE_EXHAUSTED",
        Some(("DEVELOPER", "40591s")),
    );
    let c = classify(429, &body, Context::Api);
    assert_eq!(c.kind, Kind::RateLimited);
    assert_eq!(c.blame, Blame::App, "{c:#?}");
    assert_eq!(c.retry_after, Some(Duration::from_secs(40591)));
    // The per-customer quota is the platform throttling that account, not the app's allowance.
    let body = failure(
        429,
        "RESOURCE_EXHAUSTED",
        "quotaError",
        "RESOURCE_EXHAUSTED",
        Some(("ACCOUNT", "1.5s")),
    );
    let c = classify(429, &body, Context::Api);
    assert_eq!((c.kind, c.blame), (Kind::RateLimited, Blame::Platform));
    assert_eq!(c.retry_after, Some(Duration::from_millis(1500)));
    // The same inside searchStream's array.
    let body = format!(
        "[{}]",
        failure(
            429,
            "RESOURCE_EXHAUSTED",
            "quotaError",
            "RESOURCE_EXHAUSTED",
            Some(("DEVELOPER", "3600s"))
        )
    );
    let c = classify(429, &body, Context::Api);
    assert_eq!(c.retry_after, Some(Duration::from_secs(3600)));
    assert_eq!(c.blame, Blame::App);
}

#[test]
fn front_end_rejections_and_bare_statuses_classify() {
    let scope = r#"{"error":{"code":403,"message":"Request had insufficient authentication scopes.","status":"PERMISSION_DENIED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"ACCESS_TOKEN_SCOPE_INSUFFICIENT","domain":"googleapis.com"}]}}"#;
    let c = classify(403, scope, Context::Api);
    assert_eq!(
        (c.kind, c.action),
        (Kind::InsufficientScope, Action::RequestScopes)
    );
    let expired = r#"{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"ACCESS_TOKEN_EXPIRED"}]}}"#;
    let c = classify(401, expired, Context::Api);
    assert_eq!(
        (c.kind, c.action),
        (Kind::TokenInvalid, Action::RefreshAndRetry)
    );
    let bare = r#"{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED"}}"#;
    let c = classify(401, bare, Context::Api);
    assert_eq!(
        (c.kind, c.action),
        (Kind::TokenInvalid, Action::RefreshAndRetry)
    );
    let down = r#"{"error":{"code":503,"message":"The service is currently unavailable.","status":"UNAVAILABLE"}}"#;
    assert_eq!(
        classify(503, down, Context::Api).kind,
        Kind::ServiceUnavailable
    );
}

#[test]
fn invalid_grant_at_the_token_endpoint_means_reauthorize_with_the_testing_status_hint() {
    for description in ["Token has been expired or revoked.", "Bad Request"] {
        let body = format!(r#"{{"error":"invalid_grant","error_description":"{description}"}}"#);
        let c = classify(400, &body, Context::TokenEndpoint);
        assert_eq!(
            (c.kind, c.action),
            (Kind::TokenRevoked, Action::Reauthorize),
            "{c:#?}"
        );
        assert!(c.fix.contains("Testing"), "{}", c.fix);
        assert!(c.rule.starts_with("google-ads#"));
    }
    let c = classify(
        401,
        r#"{"error":"invalid_client","error_description":"Unauthorized"}"#,
        Context::TokenEndpoint,
    );
    assert_eq!(c.blame, Blame::App);
}

//! Table-driven tests per platform, from the codes and shapes in docs/platforms.md.

use super::*;
use crate::provider::{Context, Registry};

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T22:00:00Z")
        .unwrap()
        .into()
}

/// `c` without its shortcuts: every JSON body read whole, no verdict remembered. What the
/// shortcuts answer must be what this answers.
fn reading_everything(c: &Classifier) -> Classifier {
    Classifier {
        json_keys: std::sync::OnceLock::from(None),
        plain: std::sync::OnceLock::from(None),
        ..c.clone()
    }
}

struct Case {
    name: &'static str,
    status: u16,
    headers: &'static [(&'static str, &'static str)],
    body: &'static str,
    kind: Kind,
    action: Action,
}

fn run(provider: &str, ctx: Context, cases: &[Case]) {
    let reg = Registry::builtin().expect("shipped definitions load");
    let p = reg.get(provider).expect("provider exists");
    let mut failures = Vec::new();
    for c in cases {
        let headers: Vec<(String, String)> = c
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let resp = ResponseView {
            status: c.status,
            headers: &headers,
            body: c.body.as_bytes(),
        };
        let got = p.classifier().classify(&resp, ctx, now());
        if got.kind != c.kind || got.action != c.action {
            failures.push(format!(
                "{provider}/{}: expected {}/{}, got {}/{} (rule {})",
                c.name, c.kind, c.action, got.kind, got.action, got.rule
            ));
        }
        assert!(
            !got.title.is_empty() && !got.explanation.is_empty() && !got.fix.is_empty(),
            "{}: texts",
            c.name
        );
        assert!(
            !got.explanation.contains('{'),
            "{}: unfilled placeholder in {:?}",
            c.name,
            got.explanation
        );
        assert_eq!(got.retryable, got.action.retryable());
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

fn one(provider: &str, status: u16, headers: &[(&str, &str)], body: &str) -> Classification {
    let reg = Registry::builtin().unwrap();
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let resp = ResponseView {
        status,
        headers: &headers,
        body: body.as_bytes(),
    };
    reg.get(provider)
        .unwrap()
        .classifier()
        .classify(&resp, Context::Api, now())
}

const TT_OK: &str = r#"{"code":0,"message":"OK","request_id":"2026112301","data":{"list":[]}}"#;

#[test]
fn tiktok_business_reads_the_body_before_the_status() {
    use Action as A;
    use Kind as K;
    run(
        "tiktok-business",
        Context::Api,
        &[
            Case {
                name: "ok",
                status: 200,
                headers: &[],
                body: TT_OK,
                kind: K::Ok,
                action: A::None,
            },
            Case {
                name: "40100 rate limit in 200",
                status: 200,
                headers: &[],
                body: r#"{"code":40100,"message":"Due to too many requests, requests from App [123] are temporarily restricted.","request_id":"x","data":{}}"#,
                kind: K::RateLimited,
                action: A::BackoffAndRetry,
            },
            Case {
                // Tokens with an expiry come with a refresh token (platforms.md §2, Corrections 2).
                name: "40102 expired",
                status: 200,
                headers: &[],
                body: r#"{"code":40102,"message":"Access token is expired","request_id":"x","data":{}}"#,
                kind: K::TokenExpired,
                action: A::RefreshAndRetry,
            },
            Case {
                name: "40105 revoked",
                status: 200,
                headers: &[],
                body: r#"{"code":40105,"message":"Access token is incorrect or has been revoked.","request_id":"x","data":{}}"#,
                kind: K::TokenRevoked,
                action: A::Reauthorize,
            },
            Case {
                name: "40104 empty token",
                status: 200,
                headers: &[],
                body: r#"{"code":40104,"message":"Access token is null","data":{}}"#,
                kind: K::InvalidRequest,
                action: A::FixRequest,
            },
            Case {
                name: "40001 scope",
                status: 200,
                headers: &[],
                body: r#"{"code":40001,"message":"No permission to operate. The permission scope is not authorized.","data":{}}"#,
                kind: K::InsufficientScope,
                action: A::RequestScopes,
            },
            Case {
                name: "40001 role",
                status: 200,
                headers: &[],
                body: r#"{"code":40001,"message":"No permission to operate advertiser 123","data":{}}"#,
                kind: K::AppNotAuthorized,
                action: A::Reauthorize,
            },
            Case {
                name: "40133 advertiser qps",
                status: 200,
                headers: &[],
                body: r#"{"code":40133,"message":"QPS limit","data":{}}"#,
                kind: K::RateLimited,
                action: A::BackoffAndRetry,
            },
            Case {
                name: "40201 task not ready",
                status: 200,
                headers: &[],
                body: r#"{"code":40201,"message":"Task is not ready","data":{}}"#,
                kind: K::AsyncPending,
                action: A::PollLater,
            },
            Case {
                name: "50002 in 200",
                status: 200,
                headers: &[],
                body: r#"{"code":50002,"message":"System error","data":{}}"#,
                kind: K::ServiceUnavailable,
                action: A::BackoffAndRetry,
            },
            Case {
                name: "51021 unknown 5xxxx",
                status: 200,
                headers: &[],
                body: r#"{"code":51021,"message":"?","data":{}}"#,
                kind: K::ServiceUnavailable,
                action: A::BackoffAndRetry,
            },
            Case {
                name: "unknown 4xxxx",
                status: 200,
                headers: &[],
                body: r#"{"code":41999,"message":"new thing","data":{}}"#,
                kind: K::InvalidRequest,
                action: A::FixRequest,
            },
            Case {
                name: "2200006 unknown",
                status: 200,
                headers: &[],
                body: r#"{"code":2200006,"message":"?","data":{}}"#,
                kind: K::InvalidRequest,
                action: A::FixRequest,
            },
            Case {
                name: "20001 partial",
                status: 200,
                headers: &[],
                body: r#"{"code":20001,"message":"Partial success","data":{}}"#,
                kind: K::Ok,
                action: A::None,
            },
            Case {
                name: "40007 missing",
                status: 200,
                headers: &[],
                body: r#"{"code":40007,"message":"object does not exist"}"#,
                kind: K::NotFound,
                action: A::FixRequest,
            },
            Case {
                name: "edge 404 no slash",
                status: 404,
                headers: &[],
                body: "404 page not found",
                kind: K::NotFound,
                action: A::FixRequest,
            },
            Case {
                name: "nginx 502 html",
                status: 502,
                headers: &[("Content-Type", "text/html")],
                body: "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>",
                kind: K::ServiceUnavailable,
                action: A::BackoffAndRetry,
            },
        ],
    );
}

#[test]
fn tiktok_40100_wait_follows_the_guidance() {
    let qps = one(
        "tiktok-business",
        200,
        &[],
        r#"{"code":40100,"message":"Due to too many requests, requests from App [1] are temporarily restricted."}"#,
    );
    assert_eq!(qps.retry_after, Some(Duration::from_secs(1)));
    let qpm = one(
        "tiktok-business",
        200,
        &[],
        r#"{"code":40100,"message":"QPM limit exceeded"}"#,
    );
    assert_eq!(qpm.retry_after, Some(Duration::from_secs(300)));
    let qpd = one(
        "tiktok-business",
        200,
        &[],
        r#"{"code":40100,"message":"Daily (QPD) limit exceeded"}"#,
    );
    assert_eq!(
        qpd.retry_after,
        Some(Duration::from_secs(7200)),
        "until 00:00 UTC"
    );
    assert_eq!(qps.platform_code.as_deref(), Some("40100"));
}

#[test]
fn snapchat() {
    use Action as A;
    use Kind as K;
    run(
        "snapchat",
        Context::Api,
        &[
            Case {
                name: "ok",
                status: 200,
                headers: &[],
                body: r#"{"request_status":"SUCCESS","request_id":"r1","me":{"id":"u"}}"#,
                kind: K::Ok,
                action: A::None,
            },
            Case {
                name: "401 empty body with challenge",
                status: 401,
                headers: &[
                    (
                        "WWW-Authenticate",
                        r#"Bearer error="invalid_token", error_description="The access token expired""#,
                    ),
                    ("Content-Type", "text/html"),
                ],
                body: "",
                kind: K::TokenExpired,
                action: A::RefreshAndRetry,
            },
            Case {
                name: "401 plain text",
                status: 401,
                headers: &[],
                body: "unauthorized",
                kind: K::TokenInvalid,
                action: A::RefreshAndRetry,
            },
            Case {
                name: "401 empty, no header",
                status: 401,
                headers: &[],
                body: "",
                kind: K::TokenInvalid,
                action: A::RefreshAndRetry,
            },
            Case {
                name: "E3002",
                status: 403,
                headers: &[],
                body: r#"{"request_status":"ERROR","request_id":"r","debug_message":"Caller does not have permission","display_message":"We're sorry, but you don't have permission","error_code":"E3002"}"#,
                kind: K::AppNotAuthorized,
                action: A::FixRequest,
            },
            Case {
                name: "E3003",
                status: 404,
                headers: &[],
                body: r#"{"request_status":"ERROR","error_code":"E3003","debug_message":"Resource can not be found"}"#,
                kind: K::NotFound,
                action: A::FixRequest,
            },
            Case {
                name: "429 no retry-after",
                status: 429,
                headers: &[],
                body: "",
                kind: K::RateLimited,
                action: A::BackoffAndRetry,
            },
            Case {
                name: "500",
                status: 500,
                headers: &[],
                body: r#"{"request_status":"ERROR","request_id":"r"}"#,
                kind: K::ServiceUnavailable,
                action: A::BackoffAndRetry,
            },
            Case {
                name: "503 html",
                status: 503,
                headers: &[],
                body: "<!DOCTYPE html><html><title>Service Unavailable</title></html>",
                kind: K::ServiceUnavailable,
                action: A::BackoffAndRetry,
            },
            Case {
                name: "unknown E-code 400",
                status: 400,
                headers: &[],
                body: r#"{"request_status":"ERROR","error_code":"E1008","debug_message":"bad"}"#,
                kind: K::InvalidRequest,
                action: A::FixRequest,
            },
        ],
    );
    run(
        "snapchat",
        Context::TokenEndpoint,
        &[
            Case {
                name: "invalid_grant",
                status: 400,
                headers: &[],
                body: r#"{"error":"invalid_grant","error_description":"Invalid refresh token"}"#,
                kind: K::TokenRevoked,
                action: A::Reauthorize,
            },
            Case {
                name: "invalid_client",
                status: 401,
                headers: &[],
                body: r#"{"error":"invalid_client","error_description":"Client authentication failed"}"#,
                kind: K::InvalidRequest,
                action: A::FixRequest,
            },
            Case {
                name: "401 no body at token endpoint",
                status: 401,
                headers: &[],
                body: "",
                kind: K::InvalidRequest,
                action: A::FixRequest,
            },
            Case {
                name: "token ok",
                status: 200,
                headers: &[],
                body: r#"{"access_token":"a","token_type":"Bearer","expires_in":1800,"refresh_token":"r","scope":"snapchat-marketing-api"}"#,
                kind: K::Ok,
                action: A::None,
            },
        ],
    );
}

#[test]
fn invalid_client_blames_the_app_not_the_connection() {
    let reg = Registry::builtin().unwrap();
    for p in reg.iter() {
        let headers = vec![];
        let resp = ResponseView {
            status: 401,
            headers: &headers,
            body: br#"{"error":"invalid_client"}"#,
        };
        let c = p
            .classifier()
            .classify(&resp, Context::TokenEndpoint, now());
        assert_eq!(c.blame, Blame::App, "{}", p.spec.id);
        let resp = ResponseView {
            status: 400,
            headers: &headers,
            body: br#"{"error":"invalid_grant"}"#,
        };
        let c = p
            .classifier()
            .classify(&resp, Context::TokenEndpoint, now());
        assert_eq!(c.blame, Blame::Connection, "{}", p.spec.id);
        assert_eq!(c.action, Action::Reauthorize, "{}", p.spec.id);
    }
}

const META_HDR: &[(&str, &str)] = &[(
    "WWW-Authenticate",
    r#"OAuth "Facebook Platform" "invalid_token" "Error validating access token""#,
)];

#[test]
fn meta() {
    use Action as A;
    use Kind as K;
    run(
        "meta",
        Context::Api,
        &[
            Case {
                name: "ok",
                status: 200,
                headers: &[],
                body: r#"{"id":"1","name":"x"}"#,
                kind: K::Ok,
                action: A::None,
            },
            Case {
                name: "190/458",
                status: 400,
                headers: META_HDR,
                body: r#"{"error":{"message":"Error validating access token: The user has not authorized application 1.","type":"OAuthException","code":190,"error_subcode":458,"fbtrace_id":"A1"}}"#,
                kind: K::TokenRevoked,
                action: A::Reauthorize,
            },
            Case {
                name: "190/460",
                status: 400,
                headers: META_HDR,
                body: r#"{"error":{"message":"Error validating access token: The session has been invalidated because the user changed their password","type":"OAuthException","code":190,"error_subcode":460}}"#,
                kind: K::TokenRevoked,
                action: A::Reauthorize,
            },
            Case {
                name: "190/463",
                status: 400,
                headers: META_HDR,
                body: r#"{"error":{"message":"Error validating access token: Session has expired on Tuesday, 01-Jan-26 12:00:00 PST.","type":"OAuthException","code":190,"error_subcode":463}}"#,
                kind: K::TokenExpired,
                action: A::Reauthorize,
            },
            Case {
                name: "190/467",
                status: 400,
                headers: META_HDR,
                body: r#"{"error":{"message":"Error validating access token: The user is not logged in.","type":"OAuthException","code":190,"error_subcode":467}}"#,
                kind: K::TokenRevoked,
                action: A::Reauthorize,
            },
            Case {
                name: "190 no subcode",
                status: 400,
                headers: META_HDR,
                body: r#"{"error":{"message":"Invalid OAuth access token.","type":"OAuthException","code":190}}"#,
                kind: K::TokenInvalid,
                action: A::Reauthorize,
            },
            Case {
                name: "190/459",
                status: 400,
                headers: &[],
                body: r#"{"error":{"message":"checkpoint","type":"OAuthException","code":190,"error_subcode":459}}"#,
                kind: K::AppNotAuthorized,
                action: A::Reauthorize,
            },
            Case {
                name: "4 app limit (OAuthException type)",
                status: 400,
                headers: &[],
                body: r#"{"error":{"message":"(#4) Application request limit reached","type":"OAuthException","is_transient":true,"code":4}}"#,
                kind: K::RateLimited,
                action: A::BackoffAndRetry,
            },
            Case {
                name: "17 user limit",
                status: 400,
                headers: &[],
                body: r#"{"error":{"message":"(#17) User request limit reached","type":"OAuthException","code":17,"error_subcode":2446079}}"#,
                kind: K::RateLimited,
                action: A::BackoffAndRetry,
            },
            Case {
                name: "32 page limit",
                status: 400,
                headers: &[],
                body: r#"{"error":{"message":"(#32) Page request limit reached","code":32}}"#,
                kind: K::RateLimited,
                action: A::BackoffAndRetry,
            },
            Case {
                name: "613/1487742",
                status: 400,
                headers: &[],
                body: r#"{"error":{"message":"(#613) Calls to this api have exceeded the rate limit.","type":"OAuthException","code":613,"error_subcode":1487742}}"#,
                kind: K::RateLimited,
                action: A::BackoffAndRetry,
            },
            Case {
                name: "80004",
                status: 400,
                headers: &[],
                body: r#"{"error":{"message":"There have been too many calls to this ad-account.","type":"OAuthException","code":80004,"error_subcode":2446079}}"#,
                kind: K::RateLimited,
                action: A::BackoffAndRetry,
            },
            Case {
                name: "100/33",
                status: 400,
                headers: &[],
                body: r#"{"error":{"message":"Unsupported get request. Object with ID 'x' does not exist","type":"GraphMethodException","code":100,"error_subcode":33}}"#,
                kind: K::NotFound,
                action: A::FixRequest,
            },
            Case {
                name: "100 param",
                status: 400,
                headers: &[],
                body: r#"{"error":{"message":"(#100) Invalid parameter","type":"OAuthException","code":100}}"#,
                kind: K::InvalidRequest,
                action: A::FixRequest,
            },
            Case {
                name: "200 permission",
                status: 403,
                headers: &[],
                body: r#"{"error":{"message":"(#200) Permissions error","type":"OAuthException","code":200}}"#,
                kind: K::InsufficientScope,
                action: A::RequestScopes,
            },
            Case {
                name: "294 ads_management",
                status: 400,
                headers: &[],
                body: r#"{"error":{"message":"(#294) Managing advertisements requires ads_management","code":294}}"#,
                kind: K::InsufficientScope,
                action: A::RequestScopes,
            },
            Case {
                name: "code 2 transient 500",
                status: 500,
                headers: &[],
                body: r#"{"error":{"message":"An unexpected error has occurred. Please retry your request later.","type":"OAuthException","is_transient":true,"code":2}}"#,
                kind: K::ServiceUnavailable,
                action: A::BackoffAndRetry,
            },
            Case {
                name: "unknown transient",
                status: 400,
                headers: &[],
                body: r#"{"error":{"message":"?","code":99999,"is_transient":true}}"#,
                kind: K::ServiceUnavailable,
                action: A::BackoffAndRetry,
            },
            Case {
                name: "HTML sorry page",
                status: 500,
                headers: &[("content-type", "text/html")],
                body: "<!DOCTYPE html><html><head><title>Sorry, something went wrong.</title></head><body>...</body></html>",
                kind: K::ServiceUnavailable,
                action: A::BackoffAndRetry,
            },
            Case {
                name: "HTML sorry page in 200",
                status: 200,
                headers: &[],
                body: "<html><title>Sorry, something went wrong.</title></html>",
                kind: K::ServiceUnavailable,
                action: A::BackoffAndRetry,
            },
        ],
    );
}

#[test]
fn meta_waits_for_estimated_time_to_regain_access() {
    let buc = r#"{"1234":[{"type":"ads_management","call_count":100,"total_cputime":30,"total_time":40,"estimated_time_to_regain_access":7}]}"#;
    let c = one(
        "meta",
        400,
        &[
            ("X-Business-Use-Case-Usage", buc),
            (
                "X-App-Usage",
                r#"{"call_count":95,"total_cputime":10,"total_time":12}"#,
            ),
        ],
        r#"{"error":{"message":"(#17) User request limit reached","code":17,"error_subcode":2446079}}"#,
    );
    assert_eq!(c.kind, Kind::RateLimited);
    assert_eq!(c.retry_after, Some(Duration::from_secs(7 * 60)));
    assert_eq!(c.usage_pct, Some(100));
    // Usage on a success is reported, with no wait.
    let ok = one(
        "meta",
        200,
        &[("x-app-usage", r#"{"call_count":91}"#)],
        r#"{"id":"1"}"#,
    );
    assert_eq!(
        (ok.kind, ok.usage_pct, ok.retry_after),
        (Kind::Ok, Some(91), None)
    );
    assert_eq!(c.platform_subcode.as_deref(), Some("2446079"));
}

#[test]
fn threads() {
    use Action as A;
    use Kind as K;
    run(
        "threads",
        Context::Api,
        &[
            Case {
                name: "ok",
                status: 200,
                headers: &[],
                body: r#"{"id":"1","username":"zuck"}"#,
                kind: K::Ok,
                action: A::None,
            },
            Case {
                name: "190/463 cannot be refreshed",
                status: 400,
                headers: META_HDR,
                body: r#"{"error":{"message":"Error validating access token: Session has expired on Sunday, 22-Nov-26 10:00:00 PST.","type":"OAuthException","code":190,"error_subcode":463,"fbtrace_id":"Ax"}}"#,
                kind: K::TokenExpired,
                action: A::Reauthorize,
            },
            Case {
                name: "190/460",
                status: 400,
                headers: &[],
                body: r#"{"error":{"message":"password changed","type":"OAuthException","code":190,"error_subcode":460}}"#,
                kind: K::TokenRevoked,
                action: A::Reauthorize,
            },
            Case {
                name: "100/33 THApiException",
                status: 400,
                headers: &[],
                body: r#"{"error":{"message":"Object with ID 'zuck' does not exist, cannot be loaded due to missing permissions, or does not support this operation","type":"THApiException","code":100,"error_subcode":33,"fbtrace_id":"A"}}"#,
                kind: K::NotFound,
                action: A::FixRequest,
            },
            Case {
                name: "authorize 1349245",
                status: 400,
                headers: &[],
                body: r#"{"error_message":"The user has not accepted the invite to test the app.","error_code":1349245}"#,
                // Issue 18 family 5: a consent-step refusal is the app's problem.
                kind: K::AppNotAuthorized,
                action: A::FixRequest,
            },
            Case {
                name: "wrong app id 1349026",
                status: 400,
                headers: &[],
                body: r#"{"error_message":"No application data was given","error_code":1349026}"#,
                kind: K::AppNotAuthorized,
                action: A::FixRequest,
            },
            Case {
                name: "rate limit 17",
                status: 400,
                headers: &[],
                body: r#"{"error":{"message":"User request limit reached","code":17}}"#,
                kind: K::RateLimited,
                action: A::BackoffAndRetry,
            },
        ],
    );
}

#[test]
fn tiktok_login_kit() {
    use Action as A;
    use Kind as K;
    run(
        "tiktok",
        Context::Api,
        &[
            Case {
                name: "ok",
                status: 200,
                headers: &[],
                body: r#"{"data":{"user":{"open_id":"x"}},"error":{"code":"ok","message":"","log_id":"L"}}"#,
                kind: K::Ok,
                action: A::None,
            },
            Case {
                name: "access_token_invalid 401",
                status: 401,
                headers: &[],
                body: r#"{"data":{},"error":{"code":"access_token_invalid","message":"The access token is invalid or not found in the request.","log_id":"L"}}"#,
                kind: K::TokenInvalid,
                action: A::RefreshAndRetry,
            },
            Case {
                name: "scope_not_authorized",
                status: 401,
                headers: &[],
                body: r#"{"data":{},"error":{"code":"scope_not_authorized","message":"The user did not authorize the scope required for completing this request.","log_id":"L"}}"#,
                kind: K::InsufficientScope,
                action: A::RequestScopes,
            },
            Case {
                name: "scope_permission_missed",
                status: 400,
                headers: &[],
                body: r#"{"error":{"code":"scope_permission_missed","message":"m"}}"#,
                kind: K::InsufficientScope,
                action: A::RequestScopes,
            },
            Case {
                name: "invalid_params",
                status: 400,
                headers: &[],
                body: r#"{"error":{"code":"invalid_params","message":"m"}}"#,
                kind: K::InvalidRequest,
                action: A::FixRequest,
            },
            Case {
                name: "rate_limit_exceeded",
                status: 429,
                headers: &[],
                body: r#"{"data":{},"error":{"code":"rate_limit_exceeded","message":"API rate limit was exceeded","log_id":"L"}}"#,
                kind: K::RateLimited,
                action: A::BackoffAndRetry,
            },
            Case {
                name: "internal_error",
                status: 500,
                headers: &[],
                body: r#"{"error":{"code":"internal_error","message":"m"}}"#,
                kind: K::ServiceUnavailable,
                action: A::BackoffAndRetry,
            },
        ],
    );
    run(
        "tiktok",
        Context::TokenEndpoint,
        &[
            Case {
                name: "rotated refresh token",
                status: 400,
                headers: &[],
                body: r#"{"error":"invalid_grant","error_description":"Refresh token is invalid or expired.","log_id":"L"}"#,
                // Issue 18 family 4: invalid_grant is a refusal, whatever the text says.
                kind: K::TokenRevoked,
                action: A::Reauthorize,
            },
            Case {
                name: "revoked refresh token",
                status: 400,
                headers: &[],
                body: r#"{"error":"invalid_grant","error_description":"Refresh token has been revoked.","log_id":"L"}"#,
                kind: K::TokenRevoked,
                action: A::Reauthorize,
            },
            Case {
                name: "invalid_client",
                status: 401,
                headers: &[],
                body: r#"{"error":"invalid_client","error_description":"Client key or secret is incorrect.","log_id":"L"}"#,
                kind: K::InvalidRequest,
                action: A::FixRequest,
            },
            Case {
                name: "token ok flat",
                status: 200,
                headers: &[],
                body: r#"{"open_id":"o","scope":"user.info.basic","access_token":"act.x","expires_in":7200,"refresh_token":"rft.x","refresh_expires_in":15552000,"token_type":"Bearer"}"#,
                kind: K::Ok,
                action: A::None,
            },
        ],
    );
}

#[test]
fn tiktok_login_kit_uses_the_reset_header() {
    let reset = (now().timestamp() + 42).to_string();
    let reg = Registry::builtin().unwrap();
    let headers = vec![("x-ratelimit-reset".to_string(), reset)];
    let resp = ResponseView {
        status: 429,
        headers: &headers,
        body: br#"{"error":{"code":"rate_limit_exceeded","message":""}}"#,
    };
    let c = reg
        .get("tiktok")
        .unwrap()
        .classifier()
        .classify(&resp, Context::Api, now());
    assert_eq!(c.retry_after, Some(Duration::from_secs(42)));
}

#[test]
fn retry_after_header_wins_for_any_provider() {
    for p in ["snapchat", "tiktok", "meta", "threads", "tiktok-business"] {
        let c = one(p, 429, &[("Retry-After", "3")], "");
        assert_eq!(c.kind, Kind::RateLimited, "{p}");
        assert_eq!(c.retry_after, Some(Duration::from_secs(3)), "{p}");
        let c = one(
            p,
            503,
            &[("Retry-After", "Mon, 23 Nov 2026 22:00:30 GMT")],
            "",
        );
        assert_eq!(
            (c.kind, c.retry_after),
            (Kind::ServiceUnavailable, Some(Duration::from_secs(30))),
            "{p}"
        );
    }
}

#[test]
fn hostile_bodies_classify_by_status() {
    let huge_ok = format!(
        r#"{{"code":0,"message":"OK","data":{{"list":[{}"#,
        r#"{"a":1},"#.repeat(20_000)
    );
    let c = one("tiktok-business", 200, &[], &huge_ok);
    assert_eq!(c.kind, Kind::Ok, "a truncated huge success stays a success");
    let huge_err = format!(
        r#"{{"code":40100,"message":"slow","data":{{"x":"{}"}}}}"#,
        "y".repeat(200_000)
    );
    assert_eq!(
        one("tiktok-business", 200, &[], &huge_err).kind,
        Kind::RateLimited
    );
    assert_eq!(
        one("meta", 400, &[], "{not json").kind,
        Kind::InvalidRequest
    );
    assert_eq!(
        one("meta", 502, &[], "[1,2,").kind,
        Kind::ServiceUnavailable
    );
    assert_eq!(
        one(
            "snapchat",
            200,
            &[],
            r#"{"error": {"code": {"nested": true}}}"#
        )
        .kind,
        Kind::Ok
    );
    assert_eq!(one("snapchat", 200, &[], "[]").kind, Kind::Ok);
    assert_eq!(one("snapchat", 200, &[], "null").kind, Kind::Ok);
    assert_eq!(one("meta", 599, &[], "").kind, Kind::ServiceUnavailable);
    assert_eq!(
        one("meta", 302, &[("Location", "https://elsewhere")], "").kind,
        Kind::InvalidRequest
    );
    assert_eq!(one("meta", 999, &[], "").kind, Kind::InvalidRequest);
    let reg = Registry::builtin().unwrap();
    let resp = ResponseView {
        status: 400,
        headers: &[],
        body: b"\xff\xfe{\"error\":\x00\x80",
    };
    let c = reg
        .get("meta")
        .unwrap()
        .classifier()
        .classify(&resp, Context::Api, now());
    assert_eq!(c.kind, Kind::InvalidRequest);
}

#[test]
fn a_token_echoed_by_the_platform_never_reaches_the_texts() {
    let token = "EAAGm0PX4ZCpsBAKZCZC8ZBZAZCoZA9ZB3hZAbcdEFGH12345";
    let body =
        format!(r#"{{"error":{{"message":"Invalid OAuth access token {token}","code":190}}}}"#);
    let c = one("meta", 400, &[], &body);
    let all = serde_json::to_string(&c).unwrap();
    assert!(!all.contains(token), "{all}");
}

#[test]
fn graph_code_exchange_failures() {
    for p in ["threads", "meta"] {
        let reg = Registry::builtin().unwrap();
        let classify = |body: &str| {
            let headers = vec![];
            let resp = ResponseView {
                status: 400,
                headers: &headers,
                body: body.as_bytes(),
            };
            reg.get(p)
                .unwrap()
                .classifier()
                .classify(&resp, Context::TokenEndpoint, now())
        };
        let used = classify(
            r#"{"error":{"message":"This authorization code has been used.","type":"OAuthException","code":100,"error_subcode":36009}}"#,
        );
        assert_eq!(
            (used.kind, used.action, used.blame),
            (Kind::TokenRevoked, Action::Reauthorize, Blame::Connection),
            "{p}"
        );
        let redirect = classify(
            r#"{"error":{"message":"Error validating verification code. Please make sure your redirect_uri is identical","type":"OAuthException","code":100,"error_subcode":36008}}"#,
        );
        assert_eq!(redirect.blame, Blame::App, "{p}");
    }
}

/// TikTok API for Business codes from the official SDK table
/// (`tiktok/tiktok-business-api-sdk:python_sdk/business_api_client/tiktok_business/tiktok_code.py`,
/// platforms.md "Corrections (2026-12)" 1): each one has its own rule, none falls to the 4xxxx
/// catch-all or the fallback.
#[test]
fn tiktok_business_sdk_codes_each_have_their_meaning() {
    use Action as A;
    use Blame as B;
    use Kind as K;
    // (code, SDK name, kind, action, blame)
    let table: &[(u32, &str, Kind, Action, Blame)] = &[
        (
            61000,
            "TOO_MANY_REQUESTS_BL",
            K::RateLimited,
            A::BackoffAndRetry,
            B::Platform,
        ),
        (
            40114,
            "ADVERTISER_LOGOUT",
            K::TokenRevoked,
            A::Reauthorize,
            B::Connection,
        ),
        (
            40120,
            "TIKTOK_USER_NOT_LOGGED_IN",
            K::TokenRevoked,
            A::Reauthorize,
            B::Connection,
        ),
        (
            40003,
            "FORBIDDEN",
            K::AppNotAuthorized,
            A::FixRequest,
            B::Connection,
        ),
        (
            41000,
            "BLOCKED",
            K::AppNotAuthorized,
            A::FixRequest,
            B::Connection,
        ),
        (
            40108,
            "INVALID_GRANT_TYPE",
            K::InvalidRequest,
            A::FixRequest,
            B::App,
        ),
        (
            40400,
            "ROUTE_NOT_FOUND",
            K::InvalidRequest,
            A::FixRequest,
            B::Request,
        ),
        (
            41001,
            "INTERFACE_OFFLINE",
            K::InvalidRequest,
            A::FixRequest,
            B::App,
        ),
        (
            41002,
            "FIELDS_OFFLINE",
            K::InvalidRequest,
            A::FixRequest,
            B::App,
        ),
        (
            40115,
            "AUTH_TIMESTAMP_EXPIRE",
            K::InvalidRequest,
            A::FixRequest,
            B::App,
        ),
        (
            40110,
            "AUTH_CODE_ERROR",
            K::TokenRevoked,
            A::Reauthorize,
            B::Connection,
        ),
    ];
    let mut failures = Vec::new();
    for (code, name, kind, action, blame) in table {
        let body = format!(r#"{{"code":{code},"message":"m","request_id":"x","data":{{}}}}"#);
        let got = one("tiktok-business", 200, &[], &body);
        if got.kind != *kind || got.action != *action || got.blame != *blame {
            failures.push(format!(
                "{code} {name}: expected {kind}/{action}/{blame}, got {}/{}/{} (rule {})",
                got.kind, got.action, got.blame, got.rule
            ));
        }
        // Its own rule names it; the catch-all would say it does not know the code.
        if !got.explanation.contains(name) || got.explanation.contains("does not know") {
            failures.push(format!(
                "{code} {name}: not explained by its own rule: {:?}",
                got.explanation
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// The 4xxxx catch-all covers unknown 40xxx codes only; an unknown 41xxx (the SDK's blocked /
/// retired family) is not explained as a parameter error.
#[test]
fn tiktok_business_unknown_41xxx_is_not_read_as_a_40xxx_parameter_error() {
    let c40 = one(
        "tiktok-business",
        200,
        &[],
        r#"{"code":40999,"message":"new thing","data":{}}"#,
    );
    assert_eq!(c40.kind, Kind::InvalidRequest);
    assert!(c40.explanation.contains("does not know this code"));
    let c41 = one(
        "tiktok-business",
        200,
        &[],
        r#"{"code":41999,"message":"new thing","data":{}}"#,
    );
    assert_eq!(c41.kind, Kind::InvalidRequest);
    assert_ne!(c41.rule, c40.rule, "41xxx is not 40xxx");
    assert!(c41.explanation.contains("41xxx"), "{}", c41.explanation);
}

/// The texts as they were filled before the one-pass filler: each placeholder replaced in turn.
fn fill_in_turn(t: &str, provider: &str, f: &Facts<'_>, message: Option<&str>) -> String {
    let t = if message.is_none() {
        t.replace(" ({message})", "").replace("({message})", "")
    } else {
        t.to_string()
    };
    t.replace("{provider}", provider)
        .replace("{code}", f.code.unwrap_or("none"))
        .replace("{subcode}", f.subcode.unwrap_or("none"))
        .replace("{status}", &f.status.to_string())
        .replace("{message}", message.unwrap_or("no message"))
}

#[test]
fn every_text_is_filled_as_the_placeholders_replaced_in_turn_filled_it() {
    let common = include_str!("../../../../providers/_common.toml");
    let mut templates: Vec<&str> = common
        .lines()
        .filter_map(|l| l.split_once(" = \"").map(|(_, v)| v.trim_end_matches('"')))
        .filter(|v| v.contains('{'))
        .collect();
    assert!(templates.len() > 20, "{}", templates.len());
    templates.extend([
        "",
        "no placeholder",
        "({message})",
        " ({message}) and {message}",
        "{message} first",
        "an unknown {placeholder} and a lone { brace {",
        "{status}{code}{subcode}{provider}",
    ]);
    for (code, subcode) in [(Some("190"), Some("463")), (None, None)] {
        let facts = Facts {
            status: 401,
            headers: &[],
            body_kind: BodyKind::Json,
            json: None,
            code,
            subcode,
            text_lc: String::new(),
            context: Context::Api,
        };
        for message in [Some("Session has expired"), None] {
            for t in &templates {
                assert_eq!(
                    fill_placeholders(t, "Meta", &facts, message),
                    fill_in_turn(t, "Meta", &facts, message),
                    "{t:?} {message:?}"
                );
            }
        }
    }
    // What is filled in is not read again: a platform's message with braces stays as it came.
    let facts = Facts {
        status: 400,
        headers: &[],
        body_kind: BodyKind::Json,
        json: None,
        code: Some("{status}"),
        subcode: None,
        text_lc: String::new(),
        context: Context::Api,
    };
    assert_eq!(
        fill_placeholders("{code}: {message}", "X", &facts, Some("{provider}")),
        "{status}: {provider}"
    );
}

mod read_only_what_a_lookup_needs {
    use super::*;
    use proptest::prelude::*;

    /// A JSON value of the keys the shipped definitions look up, some others, and values that
    /// look like codes, messages, statuses and waits.
    fn json(keys: Vec<String>) -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let key = prop_oneof![
            4 => proptest::sample::select(keys),
            1 => "[a-z_]{1,8}",
            1 => Just("0".to_string()),
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (0i64..2_000_000).prop_map(Value::from),
            prop_oneof![
                Just("SUCCESS"),
                Just("ERROR"),
                Just("true"),
                Just("OK"),
                Just("invalid_token"),
                Just("rate limit reached, retry after 30 seconds"),
                Just("40100"),
                Just("190"),
            ]
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 24, 5, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::vec((key.clone(), inner), 0..5)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    /// The keys the classifiers look for, and those of the envelopes' other fields and the
    /// items' codes and messages (looked up only beside a code or a status).
    fn all_keys() -> Vec<String> {
        let reg = Registry::builtin().unwrap();
        let mut keys: Vec<String> = reg
            .iter()
            .flat_map(|p| {
                p.classifier()
                    .json_keys()
                    .map_or(&[][..], |k| k.as_slice())
                    .to_vec()
            })
            .collect();
        for p in reg.iter() {
            let c = p.classifier();
            for e in c.envelopes.iter().chain(&c.common.envelopes) {
                let others = [&e.subcode, &e.message, &e.trace_id, &e.transient];
                for path in others.into_iter().flatten() {
                    keys.extend(path.split(['.', '|']).map(str::to_string));
                }
            }
            if let Some(items) = &c.items {
                for path in items.code.iter().chain(&items.message) {
                    keys.extend(path.split('.').map(str::to_string));
                }
            }
        }
        keys.retain(|k| k != "*" && k.parse::<usize>().is_err());
        keys.sort();
        keys.dedup();
        keys
    }

    #[test]
    fn every_shipped_classifier_knows_its_keys() {
        let reg = Registry::builtin().unwrap();
        for p in reg.iter() {
            let keys = p.classifier().json_keys();
            assert!(
                // The common envelope's `error` at least, and the definition's own.
                keys.is_some_and(
                    |k| k.as_slice().iter().any(|k| k == "error") && k.as_slice().len() >= 2
                ),
                "{}: {keys:?}",
                p.spec.id
            );
        }
        assert!(all_keys().iter().any(|k| k == "error"), "{:?}", all_keys());
    }

    /// Every key of every shipped definition, alone, with each kind of value, at the top, in a
    /// list and one level down: read as the whole body reads it.
    #[test]
    fn each_key_alone_is_read_as_the_whole_body_reads_it() {
        use serde_json::json;
        let reg = Registry::builtin().unwrap();
        let headers = [("content-type".to_string(), "application/json".to_string())];
        let mut bodies = 0;
        for p in reg.iter() {
            let fast = p.classifier();
            let whole = reading_everything(fast);
            for k in all_keys() {
                for v in [
                    json!("invalid_token"),
                    json!(190),
                    json!(true),
                    json!({"code": 40105, "message": "expired"}),
                    json!([{"status": "ERROR", "code": "E1"}]),
                ] {
                    for body in [json!({&k: v}), json!([{&k: v}]), json!({"data": {&k: v}})] {
                        let body = serde_json::to_vec(&body).unwrap();
                        for status in [200, 400, 401, 429] {
                            let view = ResponseView {
                                status,
                                headers: &headers,
                                body: &body,
                            };
                            assert_eq!(
                                fast.classify(&view, Context::Api, now()),
                                whole.classify(&view, Context::Api, now()),
                                "{} {}",
                                p.spec.id,
                                String::from_utf8_lossy(&body)
                            );
                            bodies += 1;
                        }
                    }
                }
            }
        }
        assert!(bodies > 1000, "{bodies}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        /// Whatever the body, each shipped definition classifies it exactly as it does when it
        /// reads every JSON body whole.
        #[test]
        fn the_verdict_is_the_one_reading_the_whole_body_gives(
            value in json(all_keys()),
            status in prop_oneof![Just(200u16), Just(201), Just(400), Just(401), Just(403), Just(429), Just(500)],
            pretty in any::<bool>(),
        ) {
            let body = if pretty {
                serde_json::to_vec_pretty(&value).unwrap()
            } else {
                serde_json::to_vec(&value).unwrap()
            };
            let reg = Registry::builtin().unwrap();
            let headers = [("content-type".to_string(), "application/json".to_string())];
            let view = ResponseView { status, headers: &headers, body: &body };
            for p in reg.iter() {
                let fast = p.classifier();
                let whole = reading_everything(fast);
                for context in [Context::Api, Context::TokenEndpoint] {
                    prop_assert_eq!(
                        fast.classify(&view, context, now()),
                        whole.classify(&view, context, now()),
                        "{} {}", p.spec.id, String::from_utf8_lossy(&body)
                    );
                }
            }
        }
    }
}

#[test]
fn a_status_is_written_as_its_decimal_digits() {
    let mut buf = [0u8; 5];
    for n in [
        0u16,
        7,
        10,
        99,
        100,
        200,
        404,
        429,
        599,
        999,
        1000,
        9999,
        10000,
        u16::MAX,
    ] {
        assert_eq!(super::decimal(n, &mut buf), n.to_string());
    }
}

/// Every shipped definition classifies an answer given only the headers it reads
/// ([`Classifier::reads_header`]) as it does the answer with all of them: waits, usage, HTML pages
/// and redirects among headers it does not read.
#[test]
fn the_headers_it_does_not_read_change_nothing() {
    let reg = Registry::builtin().unwrap();
    // Every header any definition names, with values each format reads, and others.
    let mut names: Vec<String> = Vec::new();
    for p in reg.iter() {
        let c = p.classifier();
        names.extend(
            c.wait_headers
                .iter()
                .chain(&c.common.wait_headers)
                .map(|w| w.name.to_ascii_lowercase()),
        );
        names.extend(
            c.rules
                .iter()
                .chain(&c.common.rules)
                .filter_map(|r| r.header.as_ref().map(|(n, _)| n.to_ascii_lowercase())),
        );
    }
    names.sort();
    names.dedup();
    assert!(names.len() >= 5, "{names:?}");
    let values = [
        "30",
        "Tue, 24 Nov 2026 01:00:00 GMT",
        "1795482000",
        r#"{"call_count":95,"total_time":10,"total_cputime":3}"#,
        r#"{"123":[{"type":"ads_management","call_count":99,"estimated_time_to_regain_access":4}]}"#,
        "limit=100, remaining=0, reset=50",
        "text/html; charset=utf-8",
    ];
    let bodies = [
        &br#"{"error":{"code":190,"message":"expired","type":"OAuthException"}}"#[..],
        br#"{"code":40100,"message":"Too many requests","request_id":"r1"}"#,
        b"<html><title>Rate limited</title></html>",
        b"",
    ];
    let mut checked = 0;
    for value in values {
        let mut all: Vec<(String, String)> = names
            .iter()
            .map(|n| (n.clone(), value.to_string()))
            .collect();
        all.push(("x-unread".into(), value.into()));
        all.push(("content-type".into(), value.into()));
        all.push((
            "location".into(),
            "https://app.example/cb?error=access_denied".into(),
        ));
        for p in reg.iter() {
            let c = p.classifier();
            let read: Vec<(String, String)> = all
                .iter()
                .filter(|(n, _)| c.reads_header(n))
                .cloned()
                .collect();
            assert!(read.len() < all.len(), "x-unread is never read");
            for body in bodies {
                for status in [200, 302, 400, 401, 429, 503] {
                    let view = |headers| ResponseView {
                        status,
                        headers,
                        body,
                    };
                    assert_eq!(
                        c.classify(&view(&all), Context::Api, now()),
                        c.classify(&view(&read), Context::Api, now()),
                        "{} {status} {value}",
                        p.spec.id
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 1000, "{checked}");
}

/// The verdict on a plain success, remembered per status and body kind, is the one worked out
/// afresh: for every shipped definition, every 2xx status, bodies with and without JSON, and
/// headers that bring a wait, a usage report or a challenge a rule reads.
#[test]
fn a_remembered_plain_verdict_is_the_one_worked_out_afresh() {
    let reg = Registry::builtin().unwrap();
    let h = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    };
    let header_sets = [
        h(&[]),
        h(&[("content-type", "application/json")]),
        h(&[
            ("retry-after", "30"),
            ("x-app-usage", r#"{"call_count":95}"#),
        ]),
        h(&[("www-authenticate", r#"Bearer error="invalid_token""#)]),
        h(&[("WWW-Authenticate", "Bearer error=\"insufficient_scope\"")]),
        h(&[("amazon-advertising-api-throttled", "true")]),
    ];
    let bodies: [&[u8]; 6] = [
        b"",
        b"  \n",
        b"{}",
        br#"{"data":[1,2],"id":"x"}"#,
        b"[]",
        b"[{}]",
    ];
    let mut checked = 0;
    for p in reg.iter() {
        let fast = p.classifier();
        let whole = reading_everything(fast);
        for status in [200u16, 201, 202, 204, 206, 207, 299] {
            for headers in &header_sets {
                for body in bodies {
                    let view = ResponseView {
                        status,
                        headers,
                        body,
                    };
                    for context in [Context::Api, Context::TokenEndpoint] {
                        let afresh = whole.classify(&view, context, now());
                        // The first fills the memo, the second reads it.
                        for _ in 0..2 {
                            assert_eq!(
                                fast.classify(&view, context, now()),
                                afresh,
                                "{} {status} {headers:?} {}",
                                p.spec.id,
                                String::from_utf8_lossy(body)
                            );
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 5000, "{checked}");
}

#[test]
fn the_headers_read_are_named_in_any_case() {
    let reg = Registry::builtin().unwrap();
    let meta = reg.get("meta").unwrap().classifier();
    for name in [
        "retry-after",
        "Retry-After",
        "RETRY-AFTER",
        "content-type",
        "Location",
    ] {
        assert!(meta.reads_header(name), "{name}");
    }
    assert!(meta.reads_header("x-app-usage"));
    for name in ["x-unread", "X-Unread", "retry-afte", "retry-after2", ""] {
        assert!(!meta.reads_header(name), "{name}");
    }
}

//! Reddit Ads and X API v2: table-driven classifier tests from the documented answers
//! (../shared/docs/platforms-ads.md Part B §0, §3 and §4), built from their semantics rather than
//! their wording: Reddit's token endpoint refuses a dead refresh token in HTTP 200 or as a bare
//! `{"error": 400}`, its API says why in `WWW-Authenticate` while the body says only `{"error":
//! 401}`, and its 429 can be an HTML page; X refuses a spent refresh token with `invalid_request`,
//! and its usage cap and enrolment errors are the app's, not the token's.

use chrono::{DateTime, Utc};
use std::time::Duration;
use tokenwarden_core::classify::{Action, Blame, Classification, Kind, ResponseView};
use tokenwarden_core::provider::{Context, Registry};

fn now() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap()
}

fn classify(
    provider: &str,
    status: u16,
    headers: &[(&str, &str)],
    body: &str,
    context: Context,
) -> Classification {
    let reg = Registry::builtin().unwrap();
    let p = reg.get(provider).unwrap();
    let mut h: Vec<(String, String)> = Vec::new();
    if !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
    {
        h.push(("content-type".into(), "application/json".into()));
    }
    h.extend(headers.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    p.classifier().classify(
        &ResponseView {
            status,
            headers: &h,
            body: body.as_bytes(),
        },
        context,
        now(),
    )
}

const TOKEN: Context = Context::TokenEndpoint;
const API: Context = Context::Api;

const WHOA: &str = "<!doctype html><html><head><title>Too Many Requests</title></head><body><h1>whoa there, pardner!</h1><p>we're sorry, but you appear to be a bot and we've seen too many requests from you lately. please wait a few seconds and try again, or change your user agent string.</p></body></html>";

#[test]
fn reddit_documented_answers_classify_as_the_table_says() {
    use Action::*;
    use Blame as B;
    use Kind::*;
    let invalid_token = [(
        "www-authenticate",
        r#"Bearer realm="reddit", error="invalid_token""#,
    )];
    let insufficient = [(
        "www-authenticate",
        r#"Bearer realm="reddit", error="insufficient_scope""#,
    )];
    type Case<'a> = (
        u16,
        &'a [(&'a str, &'a str)],
        &'a str,
        Context,
        Kind,
        Action,
        Blame,
    );
    let cases: &[Case<'_>] = &[
        // Token endpoint (§3 "Token-endpoint failures").
        (
            200,
            &[],
            r#"{"error": "invalid_grant"}"#,
            TOKEN,
            TokenRevoked,
            Reauthorize,
            B::Connection,
        ),
        (
            400,
            &[],
            r#"{"error": 400}"#,
            TOKEN,
            TokenRevoked,
            Reauthorize,
            B::Connection,
        ),
        (
            400,
            &[],
            r#"{"error":"invalid_grant"}"#,
            TOKEN,
            TokenRevoked,
            Reauthorize,
            B::Connection,
        ),
        (
            401,
            &[],
            r#"{"message":"Unauthorized","error":401}"#,
            TOKEN,
            InvalidRequest,
            FixRequest,
            B::App,
        ),
        (
            429,
            &[],
            r#"{"message": "Too Many Requests", "error": 429}"#,
            TOKEN,
            RateLimited,
            BackoffAndRetry,
            B::Platform,
        ),
        (
            500,
            &[],
            "",
            TOKEN,
            ServiceUnavailable,
            BackoffAndRetry,
            B::Platform,
        ),
        // API: the header says why.
        (
            401,
            &invalid_token,
            r#"{"error": 401}"#,
            API,
            TokenExpired,
            RefreshAndRetry,
            B::Connection,
        ),
        (
            403,
            &insufficient,
            r#"{"error": 403}"#,
            API,
            InsufficientScope,
            RequestScopes,
            B::Connection,
        ),
        // A plain 403 without the challenge: the resource is forbidden, the token is fine.
        (
            403,
            &[],
            r#"{"error": 403}"#,
            API,
            AppNotAuthorized,
            FixRequest,
            B::Request,
        ),
        (
            401,
            &[],
            r#"{"error": 401}"#,
            API,
            TokenExpired,
            RefreshAndRetry,
            B::Connection,
        ),
        // Ads v3 envelopes.
        (
            404,
            &[],
            r#"{"error":{"code":404,"message":"The specified resource was not found"}}"#,
            API,
            NotFound,
            FixRequest,
            B::Request,
        ),
        (
            400,
            &[],
            r#"{"error":{"code":400,"message":"invalid field: campaign_name"}}"#,
            API,
            InvalidRequest,
            FixRequest,
            B::Request,
        ),
        (
            403,
            &[],
            r#"{"success":false,"error":{"reason":"UNAUTHORIZED","explanation":"Insufficient authentication scopes"}}"#,
            API,
            InsufficientScope,
            RequestScopes,
            B::Connection,
        ),
        (
            400,
            &[],
            r#"{"success":false,"error":{"reason":"BAD_REQUEST","explanation":"Unknown Ad Account"}}"#,
            API,
            InvalidRequest,
            FixRequest,
            B::Request,
        ),
        (
            404,
            &[],
            r#"{"reason": "PAGE_NOT_CREATED", "message": "Not Found"}"#,
            API,
            NotFound,
            FixRequest,
            B::Request,
        ),
        // Throttling: JSON or the HTML bot page, with Retry-After.
        (
            429,
            &[("retry-after", "4")],
            r#"{"message": "Too Many Requests", "error": 429}"#,
            API,
            RateLimited,
            BackoffAndRetry,
            B::Platform,
        ),
        (
            429,
            &[
                ("content-type", "text/html; charset=UTF-8"),
                ("retry-after", "4"),
            ],
            WHOA,
            API,
            RateLimited,
            BackoffAndRetry,
            B::Platform,
        ),
        // 5xx with an empty body, Cloudflare's 522.
        (
            503,
            &[],
            "",
            API,
            ServiceUnavailable,
            BackoffAndRetry,
            B::Platform,
        ),
        (
            522,
            &[],
            "",
            API,
            ServiceUnavailable,
            BackoffAndRetry,
            B::Platform,
        ),
        (
            500,
            &[],
            "",
            API,
            ServiceUnavailable,
            BackoffAndRetry,
            B::Platform,
        ),
        // v2 endpoints sunset: migrate to v3.
        (
            410,
            &[],
            r#"{"error":{"code":410,"message":"GONE"}}"#,
            API,
            InvalidRequest,
            FixRequest,
            B::Request,
        ),
        (410, &[], "", API, InvalidRequest, FixRequest, B::Request),
        // Success.
        (
            200,
            &[],
            r#"{"data":{"id":"t2_abc","username":"someone"}}"#,
            API,
            Ok,
            None,
            B::None,
        ),
    ];
    let mut wrong = Vec::new();
    for (status, headers, body, context, kind, action, blame) in cases {
        let got = classify("reddit", *status, headers, body, *context);
        if (got.kind, got.action, got.blame) != (*kind, *action, *blame) {
            wrong.push(format!(
                "{status} {body:.60} ({context:?}): got {} / {} / {} (rule {}), want {kind} / {action} / {blame}",
                got.kind, got.action, got.blame, got.rule
            ));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

#[test]
fn reddit_waits_follow_retry_after_and_the_seconds_of_x_ratelimit_reset() {
    let html = classify(
        "reddit",
        429,
        &[("content-type", "text/html"), ("retry-after", "4")],
        WHOA,
        API,
    );
    assert_eq!(html.retry_after, Some(Duration::from_secs(4)));
    assert!(html.rule.starts_with("reddit"), "{}", html.rule);
    // X-Ratelimit-Reset is seconds to the end of the window on Reddit, not a Unix time.
    let json = classify(
        "reddit",
        429,
        &[
            ("x-ratelimit-used", "600"),
            ("x-ratelimit-remaining", "0.0"),
            ("x-ratelimit-reset", "82"),
        ],
        r#"{"message": "Too Many Requests", "error": 429}"#,
        API,
    );
    assert_eq!(json.retry_after, Some(Duration::from_secs(82)));
}

#[test]
fn x_documented_answers_classify_as_the_table_says() {
    use Action::*;
    use Blame as B;
    use Kind::*;
    type Case<'a> = (u16, &'a str, Context, Kind, Action, Blame);
    let cases: &[Case<'_>] = &[
        // Token endpoint: a spent refresh token, a reused code — re-authorize, never transient.
        (
            400,
            r#"{"error":"invalid_request","error_description":"Value passed for the token was invalid."}"#,
            TOKEN,
            TokenRevoked,
            Reauthorize,
            B::Connection,
        ),
        (
            400,
            r#"{"error":"invalid_request","error_description":"Value passed for the authorization code was invalid."}"#,
            TOKEN,
            TokenRevoked,
            Reauthorize,
            B::Connection,
        ),
        // Any other invalid_request is how tokenwarden's call for the app was made (common rule).
        (
            400,
            r#"{"error":"invalid_request","error_description":"Missing required parameter [code_verifier]."}"#,
            TOKEN,
            InvalidRequest,
            FixRequest,
            B::App,
        ),
        (
            401,
            r#"{"error":"unauthorized_client","error_description":"Missing valid authorization header"}"#,
            TOKEN,
            InvalidRequest,
            FixRequest,
            B::App,
        ),
        (
            400,
            r#"{"error":"invalid_grant","error_description":"Value passed for the token was invalid."}"#,
            TOKEN,
            TokenRevoked,
            Reauthorize,
            B::Connection,
        ),
        (
            503,
            "",
            TOKEN,
            ServiceUnavailable,
            BackoffAndRetry,
            B::Platform,
        ),
        // API.
        (
            401,
            r#"{"title":"Unauthorized","type":"about:blank","status":401,"detail":"Unauthorized"}"#,
            API,
            TokenExpired,
            RefreshAndRetry,
            B::Connection,
        ),
        (
            403,
            r#"{"client_id":"28431637","detail":"When authenticating requests to the Twitter API v2 endpoints, you must use keys and tokens from a Twitter developer App that is attached to a Project. You can create a project via the developer portal.","registration_url":"https://developer.twitter.com/en/docs/projects/overview","title":"Client Forbidden","required_enrollment":"Appropriate Level of API Access","reason":"client-not-enrolled","type":"https://api.twitter.com/2/problems/client-forbidden"}"#,
            API,
            AppNotAuthorized,
            FixRequest,
            B::App,
        ),
        (
            429,
            r#"{"title":"Too Many Requests","detail":"Too Many Requests","type":"about:blank","status":429}"#,
            API,
            RateLimited,
            BackoffAndRetry,
            B::Platform,
        ),
        (
            429,
            r#"{"title":"UsageCapExceeded","detail":"Usage cap exceeded: Monthly product cap","type":"https://api.twitter.com/2/problems/usage-capped","account_id":1234567890,"product_name":"standard-basic","period":"Monthly","scope":"Product","status":429}"#,
            API,
            RateLimited,
            BackoffAndRetry,
            B::App,
        ),
        (
            429,
            r#"{"errors":[{"code":88,"message":"Rate limit exceeded"}]}"#,
            API,
            RateLimited,
            BackoffAndRetry,
            B::Platform,
        ),
        (
            403,
            r#"{"title":"Forbidden","type":"about:blank","status":403,"detail":"Forbidden"}"#,
            API,
            InsufficientScope,
            FixRequest,
            B::Request,
        ),
        (
            404,
            r#"{"title":"Not Found Error","type":"https://api.twitter.com/2/problems/resource-not-found","detail":"Could not find user with id: [1].","status":404}"#,
            API,
            NotFound,
            FixRequest,
            B::Request,
        ),
        (
            503,
            r#"{"title":"Service Unavailable","detail":"Service Unavailable","type":"about:blank","status":503}"#,
            API,
            ServiceUnavailable,
            BackoffAndRetry,
            B::Platform,
        ),
        // A 200 with partial errors is a success.
        (
            200,
            r#"{"data":[{"id":"2244994945","username":"XDevelopers"}],"errors":[{"value":"1","detail":"Could not find user with ids: [1].","title":"Not Found Error","resource_type":"user","parameter":"ids","resource_id":"1","type":"https://api.twitter.com/2/problems/resource-not-found"}]}"#,
            API,
            Ok,
            None,
            B::None,
        ),
    ];
    let mut wrong = Vec::new();
    for (status, body, context, kind, action, blame) in cases {
        let got = classify("x", *status, &[], body, *context);
        if (got.kind, got.action, got.blame) != (*kind, *action, *blame) {
            wrong.push(format!(
                "{status} {body:.70} ({context:?}): got {} / {} / {} (rule {}), want {kind} / {action} / {blame}",
                got.kind, got.action, got.blame, got.rule
            ));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

#[test]
fn x_waits_until_the_epoch_reset_and_the_usage_cap_holds_the_app() {
    // x-rate-limit-reset is a Unix time: 90 s after "now".
    let reset = (now().timestamp() + 90).to_string();
    let got = classify(
        "x",
        429,
        &[
            ("x-rate-limit-limit", "75"),
            ("x-rate-limit-remaining", "0"),
            ("x-rate-limit-reset", &reset),
        ],
        r#"{"title":"Too Many Requests","detail":"Too Many Requests","type":"about:blank","status":429}"#,
        API,
    );
    assert_eq!(got.retry_after, Some(Duration::from_secs(90)));
    assert_eq!(got.blame, Blame::Platform);
    // The monthly cap without a reset header: a day, blamed on the app, never a short wait.
    let cap = classify(
        "x",
        429,
        &[],
        r#"{"title":"UsageCapExceeded","detail":"Usage cap exceeded: Monthly product cap","type":"https://api.twitter.com/2/problems/usage-capped","status":429}"#,
        API,
    );
    assert_eq!(cap.blame, Blame::App);
    assert!(
        cap.retry_after >= Some(Duration::from_secs(3600)),
        "{:?}",
        cap.retry_after
    );
}

#[test]
fn the_definitions_send_what_the_platforms_require() {
    let reg = Registry::builtin().unwrap();
    let r = &reg.get("reddit").unwrap().spec;
    assert_eq!(
        r.authorize.extra_params.get("duration").map(String::as_str),
        Some("permanent")
    );
    assert_eq!(r.authorize.scope_separator, " ");
    let refresh = r.token.refresh.as_ref().unwrap();
    for call in [&r.token.exchange, refresh, r.token.revoke.as_ref().unwrap()] {
        assert!(
            call.headers
                .iter()
                .any(|h| h.name == "User-Agent" && h.value == "{user_agent}"),
            "{} has no User-Agent",
            call.url
        );
        assert_eq!(
            call.client_auth,
            tokenwarden_core::provider::ClientAuth::Basic
        );
    }
    // The API calls carry it too: the app's, or the default naming tokenwarden.
    let values = tokenwarden_core::provider::HeaderValues {
        client_id: "reddit-client-1".into(),
        ..Default::default()
    };
    let ua = r.api.extra_headers(&values);
    assert_eq!(ua.len(), 1);
    assert!(
        ua[0].value.contains("tokenwarden") && ua[0].value.contains("reddit-client-1"),
        "{}",
        ua[0].value
    );
    let own = tokenwarden_core::provider::HeaderValues {
        user_agent: Some("web:com.example.ads:v1.0 (by /u/someone)".into()),
        ..values
    };
    assert_eq!(
        r.api.extra_headers(&own)[0].value,
        "web:com.example.ads:v1.0 (by /u/someone)"
    );

    let x = &reg.get("x").unwrap().spec;
    assert!(x.authorize.pkce);
    assert!(
        x.authorize
            .default_scopes
            .iter()
            .any(|s| s == "offline.access")
    );
    assert!(x.refresh.rotates && x.refresh.reuse_grace.is_none());
    assert_eq!(
        x.token.refresh.as_ref().unwrap().client_auth,
        tokenwarden_core::provider::ClientAuth::Basic
    );
    assert_eq!(x.api.probe.path, "/2/users/me");
}

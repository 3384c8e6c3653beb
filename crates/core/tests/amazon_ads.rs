//! Amazon Ads: table-driven classifier tests from the documented answers
//! (../shared/docs/platforms-ads.md Part A §3 "Error envelope and codes" and §0.4/§0.5), built
//! from their semantics: 401s that are not token problems are decided by `details` before any
//! refresh, the API Gateway's throttle (`x-amzn-ErrorType: AccessDeniedException`, no
//! Retry-After) is a throttle, the 425 duplicate report is work in progress, and the regions are
//! data.

use chrono::{DateTime, Utc};
use std::time::Duration;
use tokenwarden_core::classify::{Action, Blame, Classification, Kind, ResponseView};
use tokenwarden_core::provider::{Context, Provider, Registry};

fn amazon() -> Provider {
    Registry::builtin()
        .unwrap()
        .get("amazon-ads")
        .unwrap()
        .as_ref()
        .clone()
}

fn classify_with(
    status: u16,
    headers: &[(&str, &str)],
    body: &str,
    context: Context,
) -> Classification {
    let mut h: Vec<(String, String)> = vec![("content-type".into(), "application/json".into())];
    h.extend(headers.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    amazon().classifier().classify(
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
    classify_with(status, &[], body, Context::Api)
}

/// The API's envelope as Amazon sends it.
fn envelope(code: &str, details: &str) -> String {
    format!(r#"{{"code":"{code}","details":"{details}","requestId":"7ZQ2X1V0B4N8M6K3J5H9"}}"#)
}

#[test]
fn documented_answers_classify_as_the_table_says() {
    use Action::*;
    use Kind::*;
    let cases: &[(u16, String, Kind, Action)] = &[
        (
            401,
            envelope("401", "Authentication failed"),
            TokenExpired,
            RefreshAndRetry,
        ),
        // The code string is not documented beyond "401": the details decide either way.
        (
            401,
            envelope("UNAUTHORIZED", "Authentication failed"),
            TokenExpired,
            RefreshAndRetry,
        ),
        (
            401,
            envelope("401", "No matching advertiser found for scope"),
            NotFound,
            FixRequest,
        ),
        (
            401,
            envelope("401", "Scope header is missing"),
            InvalidRequest,
            FixRequest,
        ),
        (
            401,
            envelope("401", "Not authorized to access scope"),
            InsufficientScope,
            FixRequest,
        ),
        (
            403,
            envelope("403", "Forbidden"),
            InsufficientScope,
            FixRequest,
        ),
        (404, envelope("404", "Not Found"), NotFound, FixRequest),
        (
            422,
            envelope("422", "Invalid argument: startDate"),
            InvalidRequest,
            FixRequest,
        ),
        (
            400,
            envelope("400", "Advertiser ID cannot be decrypted"),
            InvalidRequest,
            FixRequest,
        ),
        (
            429,
            envelope("429", "Too Many Requests"),
            RateLimited,
            BackoffAndRetry,
        ),
        (
            500,
            envelope("500", "Internal Server Error"),
            ServiceUnavailable,
            BackoffAndRetry,
        ),
        (
            503,
            envelope("503", "Service Unavailable"),
            ServiceUnavailable,
            BackoffAndRetry,
        ),
        (
            401,
            envelope("401", "Something else entirely"),
            TokenInvalid,
            RefreshAndRetry,
        ),
    ];
    for (status, body, kind, action) in cases {
        let c = classify(*status, body);
        assert_eq!(
            (c.kind, c.action),
            (*kind, *action),
            "{status} {body}: {c:?}"
        );
        assert_eq!(
            c.trace_id.as_deref(),
            Some("7ZQ2X1V0B4N8M6K3J5H9"),
            "{body}"
        );
        assert!(
            !c.title.is_empty() && !c.explanation.is_empty() && !c.fix.is_empty(),
            "{body}: {c:?}"
        );
    }
}

#[test]
fn the_three_401s_that_are_not_token_problems_never_ask_for_a_refresh() {
    for details in [
        "No matching advertiser found for scope",
        "Scope header is missing",
        "Not authorized to access scope",
    ] {
        let c = classify(401, &envelope("401", details));
        assert_ne!(c.action, Action::RefreshAndRetry, "{details}");
        assert_ne!(c.action, Action::Reauthorize, "{details}");
        assert_eq!(c.blame, Blame::Request, "{details}: a request's problem");
        assert!(!c.retryable, "{details}");
    }
    // As connectors and applications meet them (airbytehq/airbyte source-amazon-ads skips
    // `(401, "Not authorized to access scope 0001")` as a known error; applications' clients
    // match both texts under 401 with the profile id after them, and mocks answer the permission
    // case in a 403 with code UNAUTHORIZED): the profile id after the text, either status, either
    // code, and none of them refreshes.
    for (status, code, details) in [
        (401, "401", "Not authorized to access scope 0001"),
        (
            403,
            "UNAUTHORIZED",
            "Not authorized to access scope 3312345678901234",
        ),
        (
            401,
            "UNAUTHORIZED",
            "No matching advertiser found for scope 3312345678901234",
        ),
        (403, "403", "No matching advertiser found for scope 42"),
    ] {
        let c = classify(status, &envelope(code, details));
        assert_eq!(c.action, Action::FixRequest, "{status} {details}: {c:?}");
        assert_eq!(c.blame, Blame::Request, "{status} {details}");
    }
    // The wrong-region case names the regions' hosts in its fix.
    let c = classify(
        401,
        &envelope("401", "No matching advertiser found for scope"),
    );
    assert!(c.fix.contains("advertising-api-eu.amazon.com"), "{}", c.fix);
    // Only "Authentication failed" refreshes, and with the connection to blame.
    let c = classify(401, &envelope("401", "Authentication failed"));
    assert_eq!(c.blame, Blame::Connection);
}

#[test]
fn the_gateway_throttle_is_a_throttle_not_a_permission_problem() {
    // amzn/ads-advanced-tools-docs#422: no Retry-After, the API Gateway's body and headers.
    let gateway = r#"{"message" : "Too Many Requests"}"#;
    let c = classify_with(
        429,
        &[
            ("x-amzn-ErrorType", "AccessDeniedException"),
            ("amazon-advertising-api-throttled", "true"),
        ],
        gateway,
        Context::Api,
    );
    assert_eq!(
        (c.kind, c.action),
        (Kind::RateLimited, Action::BackoffAndRetry)
    );
    assert_eq!(c.blame, Blame::Platform);
    assert!(c.retryable);
    assert_eq!(c.retry_after, None, "no Retry-After: the caller backs off");
    // With only the exception header, still a throttle.
    let c = classify_with(
        429,
        &[("x-amzn-ErrorType", "AccessDeniedException")],
        gateway,
        Context::Api,
    );
    assert_eq!(c.kind, Kind::RateLimited);
    // The throttled header decides even on another status.
    let c = classify_with(
        403,
        &[("amazon-advertising-api-throttled", "true")],
        &envelope("403", "Forbidden"),
        Context::Api,
    );
    assert_eq!(c.kind, Kind::RateLimited);
    // With the promised Retry-After, its wait.
    let c = classify_with(
        429,
        &[("Retry-After", "7")],
        &envelope("429", "Too Many Requests"),
        Context::Api,
    );
    assert_eq!(c.kind, Kind::RateLimited);
    assert_eq!(c.retry_after, Some(Duration::from_secs(7)));
}

#[test]
fn a_duplicate_report_is_work_in_progress_pointing_at_its_report() {
    // The 425 body says `detail`, not `details`.
    let body = r#"{"code":"425","detail":"The Request is a duplicate of : 2a1b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"}"#;
    let c = classify(425, body);
    assert_eq!((c.kind, c.action), (Kind::AsyncPending, Action::PollLater));
    assert_eq!(c.blame, Blame::None);
    // The explanation quotes Amazon's text, but a long id-like run is scrubbed from every message
    // tokenwarden writes (it could be a secret); the fix points at the answer's own `detail`,
    // which the caller receives unchanged.
    assert!(
        c.explanation.contains("The Request is a duplicate of"),
        "{}",
        c.explanation
    );
    assert!(
        !c.explanation.contains("2a1b3c4d-5e6f"),
        "{}",
        c.explanation
    );
    assert!(c.fix.contains("`detail`"), "{}", c.fix);
    // Without a code at all, the status still decides.
    let c = classify(
        425,
        r#"{"detail":"The Request is a duplicate of : 2a1b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"}"#,
    );
    assert_eq!(c.kind, Kind::AsyncPending);
}

#[test]
fn login_with_amazon_errors_blame_the_user_or_the_app() {
    let token = |body: &str| classify_with(400, &[], body, Context::TokenEndpoint);
    let c = token(
        r#"{"error_description":"The request has an invalid grant parameter : refresh_token. User may have revoked or didn't grant the permission.","error":"invalid_grant"}"#,
    );
    assert_eq!(
        (c.kind, c.action),
        (Kind::TokenRevoked, Action::Reauthorize)
    );
    assert_eq!(c.blame, Blame::Connection);
    let c = token(
        r#"{"error_description":"The request has an invalid grant parameter : code","error":"invalid_grant","error_index":"a1b2","request_id":"r-1"}"#,
    );
    assert_eq!(c.kind, Kind::TokenRevoked);
    let c =
        token(r#"{"error_description":"Client authentication failed","error":"invalid_client"}"#);
    assert_eq!((c.kind, c.blame), (Kind::InvalidRequest, Blame::App));
    assert!(c.fix.contains("Login with Amazon"), "{}", c.fix);
    // Not approved for the Ads API: the app's problem, at the token endpoint or the consent step.
    let c =
        token(r#"{"error_description":"An unknown scope was requested","error":"invalid_scope"}"#);
    assert_eq!(
        (c.kind, c.action, c.blame),
        (Kind::AppNotAuthorized, Action::FixRequest, Blame::App)
    );
    let c = classify_with(
        302,
        &[(
            "location",
            "https://tw.example/callback/amazon-ads?error=invalid_scope&error_description=An+unknown+scope+was+requested&state=s",
        )],
        "",
        Context::Authorize,
    );
    assert_eq!((c.kind, c.blame), (Kind::AppNotAuthorized, Blame::App));
    // A 401 from the token endpoint is the app's credentials.
    let c = classify_with(
        401,
        &[],
        r#"{"error":"invalid_client"}"#,
        Context::TokenEndpoint,
    );
    assert_eq!(c.blame, Blame::App);
}

#[test]
fn the_definition_has_three_regions_and_sends_the_profile_headers() {
    let p = amazon();
    assert_eq!(p.spec.region_names(), ["na", "eu", "fe"]);
    assert!(
        !p.spec.refresh.rotates,
        "Amazon does not rotate refresh tokens"
    );
    assert!(p.spec.token.revoke.is_none(), "no public revoke endpoint");
    let hosts = |r: &str| {
        let s = p.spec.in_region(Some(r));
        (
            s.authorize.url.to_string(),
            s.token.exchange.url.to_string(),
            s.token.refresh.unwrap().url.to_string(),
            s.api.base_url.to_string(),
        )
    };
    assert_eq!(
        hosts("na"),
        (
            "https://www.amazon.com/ap/oa".into(),
            "https://api.amazon.com/auth/o2/token".into(),
            "https://api.amazon.com/auth/o2/token".into(),
            "https://advertising-api.amazon.com/".into()
        )
    );
    assert_eq!(
        hosts("eu"),
        (
            "https://eu.account.amazon.com/ap/oa".into(),
            "https://api.amazon.co.uk/auth/o2/token".into(),
            "https://api.amazon.co.uk/auth/o2/token".into(),
            "https://advertising-api-eu.amazon.com/".into()
        )
    );
    assert_eq!(
        hosts("fe"),
        (
            "https://apac.account.amazon.com/ap/oa".into(),
            "https://api.amazon.co.jp/auth/o2/token".into(),
            "https://api.amazon.co.jp/auth/o2/token".into(),
            "https://advertising-api-fe.amazon.com/".into()
        )
    );
    let err = p.spec.check_region(Some("us")).unwrap_err().to_string();
    assert_eq!(
        err,
        "amazon-ads has no region \"us\"; its regions are na, eu, fe"
    );
    // The client id always, the profile by default (a caller's own Scope header is kept).
    let headers = p
        .spec
        .api
        .extra_headers(&tokenwarden_core::provider::HeaderValues {
            client_id: "amzn1.application-oa2-client.abc".into(),
            account_id: Some("3141592653589793".into()),
            developer_token: None,
            user_agent: None,
            identity: None,
        });
    let find = |n: &str| headers.iter().find(|h| h.name == n).unwrap();
    let id = find("Amazon-Advertising-API-ClientId");
    assert_eq!(
        (id.value.as_str(), id.replaces),
        ("amzn1.application-oa2-client.abc", true)
    );
    let scope = find("Amazon-Advertising-API-Scope");
    assert_eq!(
        (scope.value.as_str(), scope.replaces),
        ("3141592653589793", false)
    );
    // No profile recorded: no Scope header, never an empty one.
    let headers = p
        .spec
        .api
        .extra_headers(&tokenwarden_core::provider::HeaderValues {
            client_id: "c".into(),
            account_id: None,
            developer_token: None,
            user_agent: None,
            identity: None,
        });
    assert_eq!(headers.len(), 1);
    // The probe records the first profile.
    let acct = p
        .spec
        .api
        .probe
        .account(br#"[{"profileId":3141592653589793,"countryCode":"US","accountInfo":{"name":"Acme","type":"seller"}}]"#)
        .unwrap();
    assert_eq!(
        (acct.id.as_str(), acct.name.as_deref()),
        ("3141592653589793", Some("Acme"))
    );
    assert!(p.spec.api.probe.account(b"[]").is_none());
}

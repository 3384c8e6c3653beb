//! X Ads API: the OAuth 1.0a definition model and table-driven classifier tests from the
//! documented answers (../shared/docs/platforms-ads.md Part B §0.1 and §4 "Errors"): any 401 is a
//! re-authorization (OAuth 1.0a cannot refresh), the app's missing Ads API access is the app's,
//! the rate-limit resets are Unix times, and async jobs are polled.

use chrono::{DateTime, Utc};
use std::time::Duration;
use tokenwarden_core::classify::{Action, Blame, Classification, Kind, ResponseView};
use tokenwarden_core::provider::{
    Context, CredentialPlacement, Provider, RefreshStyle, Registry, SignatureMethod,
};

const NOW: i64 = 1_800_000_000;

fn x_ads() -> Provider {
    Registry::builtin()
        .unwrap()
        .get("x-ads")
        .unwrap()
        .as_ref()
        .clone()
}

fn classify_with(status: u16, headers: &[(&str, &str)], body: &str) -> Classification {
    let mut h: Vec<(String, String)> = vec![("content-type".into(), "application/json".into())];
    h.extend(headers.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    x_ads().classifier().classify(
        &ResponseView {
            status,
            headers: &h,
            body: body.as_bytes(),
        },
        Context::Api,
        DateTime::<Utc>::from_timestamp(NOW, 0).unwrap(),
    )
}

/// The Ads API's envelope as X sends it.
fn envelope(code: &str, message: &str) -> String {
    format!(
        r#"{{"errors":[{{"code":"{code}","message":"{message}"}}],"request":{{"params":{{}}}}}}"#
    )
}

#[test]
fn the_definition_is_oauth1_signed_and_never_refreshed() {
    let p = x_ads();
    let o = p.spec.oauth1.as_ref().expect("[oauth1]");
    assert_eq!(
        o.request_token_url.as_str(),
        "https://api.twitter.com/oauth/request_token"
    );
    assert_eq!(o.signature_method, SignatureMethod::HmacSha1);
    assert_eq!(
        o.request_token_params
            .get("x_auth_access_type")
            .map(String::as_str),
        Some("write")
    );
    assert_eq!(
        p.spec.authorize.url.as_str(),
        "https://api.twitter.com/oauth/authorize"
    );
    assert_eq!(
        p.spec.token.exchange.url.as_str(),
        "https://api.twitter.com/oauth/access_token"
    );
    assert_eq!(p.spec.refresh.style, RefreshStyle::None);
    assert!(!p.spec.refresh.style.can_refresh());
    assert!(!p.spec.refresh.token_expires);
    assert_eq!(p.spec.api.credential_in, CredentialPlacement::OAuth1);
    // The signed credential is never a plain header value.
    assert_eq!(p.spec.api.credential_header_value("tok"), None);
    assert_eq!(
        p.spec.token.response.token_secret.as_deref(),
        Some("oauth_token_secret")
    );
    assert_eq!(p.spec.api.probe.path, "/12/accounts");
    // Pointed at the sandbox, the request-token endpoint moves with the others.
    let moved = p.with_origin(&url::Url::parse("http://127.0.0.1:9/x-ads").unwrap());
    assert_eq!(
        moved.spec.oauth1.unwrap().request_token_url.as_str(),
        "http://127.0.0.1:9/x-ads/oauth/request_token"
    );
}

#[test]
fn documented_answers_classify_as_the_table_says() {
    use Action::*;
    use Kind::*;
    let cases: &[(u16, String, Kind, Action)] = &[
        (
            401,
            envelope("UNAUTHORIZED_ACCESS", "This request is not properly authenticated"),
            TokenInvalid,
            Reauthorize,
        ),
        (
            403,
            envelope(
                "UNAUTHORIZED_CLIENT_APPLICATION",
                "The client application making this request does not have access to this API",
            ),
            AppNotAuthorized,
            FixRequest,
        ),
        (
            403,
            envelope("ACCOUNT_NOT_FOUND", "Account 18ce54d4x5t was not found"),
            InsufficientScope,
            FixRequest,
        ),
        (
            403,
            envelope(
                "INSUFFICIENT_USER_AUTHORIZED_PERMISSION",
                "User 2417045708 does not have access to account 18ce54d4x5t",
            ),
            InsufficientScope,
            FixRequest,
        ),
        (
            400,
            envelope("INVALID_ACCOUNT_SERVICE_LEVEL", "not available"),
            InvalidRequest,
            FixRequest,
        ),
        (
            500,
            envelope("INTERNAL_ERROR", "Internal error"),
            ServiceUnavailable,
            BackoffAndRetry,
        ),
        // A 401 with no envelope (an HTML page, an empty body): still never a refresh.
        (401, "<html><body>Unauthorized</body></html>".into(), TokenInvalid, Reauthorize),
        (401, String::new(), TokenInvalid, Reauthorize),
        (
            200,
            r#"{"request":{"params":{}},"data":{"id":"1","status":"PROCESSING","url":null}}"#
                .into(),
            AsyncPending,
            PollLater,
        ),
        (
            200,
            r#"{"request":{"params":{}},"data":[{"id":"1","status":"PROCESSING","url":null}]}"#
                .into(),
            AsyncPending,
            PollLater,
        ),
        (
            200,
            r#"{"request":{"params":{}},"data":[{"id":"1","status":"SUCCESS","url":"https://ton.x.com/a"}]}"#
                .into(),
            Ok,
            None,
        ),
    ];
    for (status, body, kind, action) in cases {
        let c = classify_with(*status, &[], body);
        assert_eq!((c.kind, c.action), (*kind, *action), "{status} {body}");
        assert_ne!(c.action, RefreshAndRetry, "{status} {body}");
    }
    let c = classify_with(
        403,
        &[],
        &envelope("UNAUTHORIZED_CLIENT_APPLICATION", "no access"),
    );
    assert_eq!(c.blame, Blame::App);
}

#[test]
fn rate_limit_resets_are_unix_times_the_account_level_preferred() {
    let c = classify_with(
        429,
        &[
            ("x-account-rate-limit-limit", "10000"),
            ("x-account-rate-limit-remaining", "0"),
            ("x-account-rate-limit-reset", &(NOW + 120).to_string()),
        ],
        &envelope("TOO_MANY_REQUESTS", "Rate limit exceeded"),
    );
    assert_eq!(
        (c.kind, c.action),
        (Kind::RateLimited, Action::BackoffAndRetry)
    );
    assert_eq!(c.retry_after, Some(Duration::from_secs(120)));
    let c = classify_with(
        429,
        &[
            ("x-rate-limit-limit", "250"),
            ("x-rate-limit-remaining", "0"),
            ("x-rate-limit-reset", &(NOW + 60).to_string()),
        ],
        &envelope("TOO_MANY_REQUESTS", "Rate limit exceeded"),
    );
    assert_eq!(c.kind, Kind::RateLimited);
    assert_eq!(c.retry_after, Some(Duration::from_secs(60)));
    let c = classify_with(503, &[("retry-after", "30")], "Service Unavailable");
    assert_eq!(c.kind, Kind::ServiceUnavailable);
    assert_eq!(c.retry_after, Some(Duration::from_secs(30)));
}

/// The x-ads file with one line replaced.
fn edited(from: &str, to: &str) -> String {
    let text = include_str!("../../../providers/x-ads.toml");
    assert!(text.contains(from), "{from}");
    text.replacen(from, to, 1)
}

fn problems(text: &str) -> String {
    match Registry::check("x-ads.toml", text) {
        Ok(_) => String::new(),
        Err(e) => e
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

#[test]
fn oauth1_definitions_that_do_not_hold_together_are_refused_by_key() {
    assert_eq!(problems(include_str!("../../../providers/x-ads.toml")), "");
    let cases = [
        (
            edited(
                "signature_method = \"HMAC-SHA1\"",
                "signature_method = \"RSA-SHA1\"",
            ),
            "signature_method",
        ),
        (
            edited("credential_in = \"oauth1\"", "credential_in = \"header\""),
            "api.credential_in",
        ),
        (
            edited(
                "token_expires = false",
                "token_expires = true\ndefault_lifetime = \"1h\"",
            ),
            "refresh.token_expires",
        ),
        (
            edited(
                "params = { oauth_verifier = \"{code}\" }",
                "params = { verifier = \"{code}\" }",
            ),
            "token.exchange.params",
        ),
        (
            edited("token_secret = \"oauth_token_secret\"\n", ""),
            "token.response.token_secret",
        ),
        (
            edited(
                "request_token_params = { x_auth_access_type = \"write\" }",
                "request_token_params = { oauth_callback = \"https://evil.example\" }",
            ),
            "oauth1.request_token_params.oauth_callback",
        ),
        (
            edited(
                "request_token_url = \"https://api.twitter.com/oauth/request_token\"",
                "request_token_url = \"http://api.twitter.com/oauth/request_token\"",
            ),
            "oauth1.request_token_url",
        ),
        (
            edited(
                "encoding = \"form\"\nparams",
                "encoding = \"form\"\nclient_auth = \"client_secret_basic\"\nparams",
            ),
            "token.exchange.client_auth",
        ),
    ];
    for (text, key) in cases {
        let got = problems(&text);
        assert!(
            got.contains(key),
            "expected a problem at {key}, got:\n{got}"
        );
    }
    // credential_in = "oauth1" without [oauth1].
    let start = include_str!("../../../providers/x-ads.toml");
    let from = start.find("[oauth1]").unwrap();
    let to = start.find("[authorize]").unwrap();
    let without = format!("{}{}", &start[..from], &start[to..]);
    let got = problems(&without);
    assert!(got.contains("api.credential_in"), "{got}");
    assert!(got.contains("token.response.token_secret"), "{got}");
}

//! Microsoft Advertising: table-driven classifier tests from the documented codes
//! (../shared/docs/platforms-ads.md Part A §2 "Error envelope and codes"), over both transports:
//! REST JSON (`AdApiFaultDetail`, `ApiFaultDetail`, the `ApplicationFault` wrapper, Code as a
//! number or a string) and SOAP faults (XML, in HTTP 500 and in HTTP 200), and the Microsoft
//! identity platform's AADSTS token errors.

use chrono::{DateTime, Utc};
use std::time::Duration;
use tokenwarden_core::classify::{Action, Blame, Classification, Kind, ResponseView};
use tokenwarden_core::provider::{Context, Registry};

fn classify(status: u16, content_type: &str, body: &str, context: Context) -> Classification {
    let reg = Registry::builtin().unwrap();
    let p = reg.get("microsoft-ads").unwrap();
    p.classifier().classify(
        &ResponseView {
            status,
            headers: &[("content-type".into(), content_type.into())],
            body: body.as_bytes(),
        },
        context,
        DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap(),
    )
}

fn rest(status: u16, body: &str) -> Classification {
    classify(
        status,
        "application/json; charset=utf-8",
        body,
        Context::Api,
    )
}

/// REST AdApiFaultDetail; `code` is written as given (a number, or a quoted string).
fn ad_api_fault(code: &str, error_code: &str) -> String {
    format!(
        r#"{{"Errors":[{{"Code":{code},"Detail":null,"ErrorCode":"{error_code}","Message":"The {error_code} case."}}],"TrackingId":"9c8e0c1e-2f1a-4b55-8f0e-111122223333","Type":"AdApiFaultDetail"}}"#
    )
}

/// A SOAP fault as the v13 services send it (`s:Fault/detail/AdApiFaultDetail/Errors/AdApiError`).
fn soap_fault(code: u32, error_code: &str) -> String {
    format!(
        r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header><h:TrackingId xmlns:h="https://bingads.microsoft.com/CampaignManagement/v13">7d1b3e1a-0c55-4a4e-9b8e-444455556666</h:TrackingId></s:Header><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring xml:lang="en-US">Invalid client data. Check the SOAP fault details for more information. TrackingId: 7d1b3e1a-0c55-4a4e-9b8e-444455556666.</faultstring><detail><AdApiFaultDetail xmlns="https://adapi.microsoft.com" xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><TrackingId>7d1b3e1a-0c55-4a4e-9b8e-444455556666</TrackingId><Errors><AdApiError><Code>{code}</Code><Detail i:nil="true"/><ErrorCode>{error_code}</ErrorCode><Message>The {error_code} case.</Message></AdApiError></Errors></AdApiFaultDetail></detail></s:Fault></s:Body></s:Envelope>"#
    )
}

/// A SOAP ApiFaultDetail (Campaign Management) with an operation error.
fn soap_api_fault(code: u32, error_code: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault><faultcode>s:Server</faultcode><faultstring>Invalid client data. Check the SOAP fault details for more information.</faultstring><detail><ApiFaultDetail xmlns="https://bingads.microsoft.com/CampaignManagement/v13"><TrackingId>t-2</TrackingId><BatchErrors/><OperationErrors><OperationError><Code>{code}</Code><Details/><ErrorCode>{error_code}</ErrorCode><Message>The {error_code} case.</Message></OperationError></OperationErrors></ApiFaultDetail></detail></s:Fault></s:Body></s:Envelope>"#
    )
}

const TABLE: &[(u32, &str, Kind, Action)] = &[
    (
        0,
        "InternalError",
        Kind::ServiceUnavailable,
        Action::BackoffAndRetry,
    ),
    (
        105,
        "InvalidCredentials",
        Kind::TokenInvalid,
        Action::RefreshAndRetry,
    ),
    (
        106,
        "UserIsNotAuthorized",
        Kind::InsufficientScope,
        Action::FixRequest,
    ),
    (
        108,
        "UserCompromised",
        Kind::AppNotAuthorized,
        Action::FixRequest,
    ),
    (
        109,
        "AuthenticationTokenExpired",
        Kind::TokenExpired,
        Action::RefreshAndRetry,
    ),
    (
        116,
        "RequestMissingHeaders",
        Kind::InvalidRequest,
        Action::FixRequest,
    ),
    (
        117,
        "CallRateExceeded",
        Kind::RateLimited,
        Action::BackoffAndRetry,
    ),
    (
        120,
        "UserLoginAccessDenied",
        Kind::AppNotAuthorized,
        Action::Reauthorize,
    ),
    (
        122,
        "PersonalIdentityNotAvailable",
        Kind::AppNotAuthorized,
        Action::Reauthorize,
    ),
    (
        123,
        "WorkIdentityNotAvailable",
        Kind::AppNotAuthorized,
        Action::Reauthorize,
    ),
    (
        124,
        "PersonalIdentityMigratedToWork",
        Kind::AppNotAuthorized,
        Action::Reauthorize,
    ),
    (
        125,
        "PersonalIdentityNotAllowedByCustomer",
        Kind::AppNotAuthorized,
        Action::Reauthorize,
    ),
    (
        126,
        "IdentityTypeMismatch",
        Kind::AppNotAuthorized,
        Action::Reauthorize,
    ),
    (
        207,
        "ConcurrentRequestOverLimit",
        Kind::RateLimited,
        Action::BackoffAndRetry,
    ),
    (
        303,
        "ApiVersionNoLongerSupported",
        Kind::InvalidRequest,
        Action::FixRequest,
    ),
    (
        1009,
        "AccountIdMissingInRequestHeader",
        Kind::InvalidRequest,
        Action::FixRequest,
    ),
    (
        1030,
        "AccountIdHasToBeSpecified",
        Kind::InvalidRequest,
        Action::FixRequest,
    ),
    (
        3101,
        "OAuthTokenInvalid",
        Kind::InsufficientScope,
        Action::Reauthorize,
    ),
    (
        4204,
        "BulkServiceNoMoreCallsPermittedForTheTimePeriod",
        Kind::RateLimited,
        Action::BackoffAndRetry,
    ),
];

fn check(c: &Classification, code: u32, kind: Kind, action: Action, how: &str) {
    assert_eq!(c.kind, kind, "{code} {how}: {c:?}");
    assert_eq!(c.action, action, "{code} {how}: {c:?}");
    assert_eq!(
        c.platform_code.as_deref(),
        Some(code.to_string().as_str()),
        "{how}"
    );
    assert!(
        c.rule.starts_with("microsoft-ads#"),
        "{code} {how}: decided by {}",
        c.rule
    );
    for words in [&c.title, &c.explanation, &c.fix] {
        assert!(
            !words.trim().is_empty() && !words.contains('{'),
            "{code} {how}: {words:?}"
        );
    }
}

#[test]
fn every_documented_code_classifies_the_same_on_both_transports() {
    for &(code, error_code, kind, action) in TABLE {
        // REST: the status does not decide (401 for expiry, 400 or 500 for the others).
        for status in [400, 401, 500] {
            let n = rest(status, &ad_api_fault(&code.to_string(), error_code));
            check(&n, code, kind, action, &format!("REST {status} numeric"));
            let s = rest(status, &ad_api_fault(&format!("\"{code}\""), error_code));
            check(&s, code, kind, action, &format!("REST {status} string"));
            assert_eq!(
                n.trace_id.as_deref(),
                Some("9c8e0c1e-2f1a-4b55-8f0e-111122223333")
            );
            assert_eq!(n.platform_subcode.as_deref(), Some(error_code));
        }
        // SOAP: in HTTP 500 and in HTTP 200, never trusting the status.
        for status in [500, 200] {
            let c = classify(
                status,
                "text/xml; charset=utf-8",
                &soap_fault(code, error_code),
                Context::Api,
            );
            check(&c, code, kind, action, &format!("SOAP {status}"));
            assert_eq!(
                c.trace_id.as_deref(),
                Some("7d1b3e1a-0c55-4a4e-9b8e-444455556666")
            );
            let c = classify(
                status,
                "text/xml",
                &soap_api_fault(code, error_code),
                Context::Api,
            );
            check(
                &c,
                code,
                kind,
                action,
                &format!("SOAP ApiFaultDetail {status}"),
            );
        }
        // ApiFaultDetail over REST, in OperationErrors and in BatchErrors, and the ApplicationFault
        // wrapper.
        let op = format!(
            r#"{{"BatchErrors":[],"OperationErrors":[{{"Code":{code},"Details":null,"ErrorCode":"{error_code}","Message":"m"}}],"TrackingId":"t","Type":"ApiFaultDetail"}}"#
        );
        check(&rest(400, &op), code, kind, action, "REST OperationErrors");
        let batch = format!(
            r#"{{"BatchErrors":[{{"Code":"{code}","ErrorCode":"{error_code}","Index":0,"Message":"m"}}],"OperationErrors":[],"TrackingId":"t","Type":"ApiFaultDetail"}}"#
        );
        check(&rest(400, &batch), code, kind, action, "REST BatchErrors");
        let wrapped = format!(
            r#"{{"ApplicationFault":{}}}"#,
            ad_api_fault(&code.to_string(), error_code)
        );
        check(&rest(400, &wrapped), code, kind, action, "ApplicationFault");
    }
}

#[test]
fn expiry_refreshes_but_106_does_not() {
    let expired = rest(401, &ad_api_fault("109", "AuthenticationTokenExpired"));
    assert_eq!(expired.action, Action::RefreshAndRetry);
    let soap = classify(
        500,
        "text/xml",
        &soap_fault(109, "AuthenticationTokenExpired"),
        Context::Api,
    );
    assert_eq!(soap.kind, Kind::TokenExpired);
    assert!(soap.retryable);
    // 106 in a 401 (the status REST uses for auth) is still not a token problem.
    let not_authorized = rest(401, &ad_api_fault("106", "UserIsNotAuthorized"));
    assert_ne!(not_authorized.action, Action::RefreshAndRetry);
    assert_eq!(not_authorized.blame, Blame::Request);
    let soap = classify(
        200,
        "text/xml",
        &soap_fault(106, "UserIsNotAuthorized"),
        Context::Api,
    );
    assert_ne!(soap.action, Action::RefreshAndRetry);
    assert!(!soap.retryable);
}

#[test]
fn waits_follow_the_documented_advice() {
    let throttled = rest(400, &ad_api_fault("117", "CallRateExceeded"));
    assert_eq!(throttled.retry_after, Some(Duration::from_secs(60)));
    assert_eq!(throttled.blame, Blame::Platform);
    let soap = classify(
        500,
        "text/xml",
        &soap_fault(117, "CallRateExceeded"),
        Context::Api,
    );
    assert_eq!(soap.retry_after, Some(Duration::from_secs(60)));
    let bulk = rest(
        400,
        &ad_api_fault("4204", "BulkServiceNoMoreCallsPermittedForTheTimePeriod"),
    );
    assert_eq!(bulk.retry_after, Some(Duration::from_secs(15 * 60)));
    // A Retry-After, were one sent, would win over the documented wait.
    let reg = Registry::builtin().unwrap();
    let c = reg.get("microsoft-ads").unwrap().classifier().classify(
        &ResponseView {
            status: 429,
            headers: &[("retry-after".into(), "7".into())],
            body: ad_api_fault("117", "CallRateExceeded").as_bytes(),
        },
        Context::Api,
        DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap(),
    );
    assert_eq!(c.retry_after, Some(Duration::from_secs(7)));
}

/// The identity platform's error body.
fn aadsts(error: &str, number: u32, text: &str) -> String {
    format!(
        r#"{{"error":"{error}","error_description":"AADSTS{number}: {text} Trace ID: 0b1c2d3e-aaaa-bbbb-cccc-ddddeeeeffff Correlation ID: 11112222-3333-4444-5555-666677778888 Timestamp: 2026-11-20 10:00:00Z","error_codes":[{number}],"timestamp":"2026-11-20 10:00:00Z","trace_id":"0b1c2d3e-aaaa-bbbb-cccc-ddddeeeeffff","correlation_id":"11112222-3333-4444-5555-666677778888"}}"#
    )
}

#[test]
fn token_endpoint_errors_name_the_aadsts_case() {
    let cases: &[(u16, &str, u32, &str, Kind, Action, Blame)] = &[
        (
            400,
            "invalid_grant",
            700082,
            "The refresh token has expired due to inactivity. The token was issued on 2026-08-01 and was inactive for 90.00:00:00.",
            Kind::TokenRevoked,
            Action::Reauthorize,
            Blame::Connection,
        ),
        (
            400,
            "invalid_grant",
            70000,
            "The request was denied because one or more scopes requested are unauthorized or expired.",
            Kind::InsufficientScope,
            Action::Reauthorize,
            Blame::Connection,
        ),
        (
            400,
            "invalid_grant",
            65001,
            "The user or administrator has not consented to use the application.",
            Kind::AppNotAuthorized,
            Action::Reauthorize,
            Blame::Connection,
        ),
        (
            400,
            "invalid_client",
            50011,
            "The redirect URI specified in the request does not match the redirect URIs configured for the application.",
            Kind::AppNotAuthorized,
            Action::FixRequest,
            Blame::App,
        ),
        (
            400,
            "invalid_request",
            650052,
            "The app is trying to access a service that your organization lacks a service principal for.",
            Kind::AppNotAuthorized,
            Action::FixRequest,
            Blame::Connection,
        ),
        (
            400,
            "unauthorized_client",
            700016,
            "Application with identifier '0000000040000000' was not found in the directory 'Microsoft Accounts'.",
            Kind::AppNotAuthorized,
            Action::FixRequest,
            Blame::App,
        ),
        // An invalid_grant whose number the definition does not list: still the grant is gone.
        (
            400,
            "invalid_grant",
            50173,
            "The provided grant has expired due to it being revoked, a fresh auth token is needed.",
            Kind::TokenRevoked,
            Action::Reauthorize,
            Blame::Connection,
        ),
    ];
    for &(status, error, number, text, kind, action, blame) in cases {
        let c = classify(
            status,
            "application/json",
            &aadsts(error, number, text),
            Context::TokenEndpoint,
        );
        assert_eq!(
            (c.kind, c.action, c.blame),
            (kind, action, blame),
            "AADSTS{number}: {c:?}"
        );
        assert_eq!(c.platform_code.as_deref(), Some(error));
        assert_eq!(
            c.platform_subcode.as_deref(),
            Some(number.to_string().as_str())
        );
        assert_eq!(
            c.trace_id.as_deref(),
            Some("0b1c2d3e-aaaa-bbbb-cccc-ddddeeeeffff")
        );
        assert!(
            !c.fix.contains('{') && !c.explanation.contains('{'),
            "{c:?}"
        );
    }
    // Without error_codes (an older or trimmed answer): the common rules still read `error`.
    let c = classify(
        400,
        "application/json",
        r#"{"error":"invalid_grant","error_description":"AADSTS70008: The refresh token has expired."}"#,
        Context::TokenEndpoint,
    );
    assert_eq!(c.kind, Kind::TokenRevoked);
    let c = classify(
        401,
        "application/json",
        r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}"#,
        Context::TokenEndpoint,
    );
    assert_eq!(c.blame, Blame::App);
    let c = classify(
        503,
        "application/json",
        r#"{"error":"temporarily_unavailable","error_description":"AADSTS90033: A transient error has occurred."}"#,
        Context::TokenEndpoint,
    );
    assert!(c.retryable);
    assert_ne!(c.blame, Blame::Connection);
}

#[test]
fn consent_refusals_are_read_from_the_redirect() {
    let reg = Registry::builtin().unwrap();
    let p = reg.get("microsoft-ads").unwrap();
    let location = "https://tw.example/callback/microsoft-ads?error=invalid_client&error_description=AADSTS650052%3A+The+app+is+trying+to+access+a+service+that+your+organization+lacks+a+service+principal+for.&state=s";
    let c = p.classifier().classify(
        &ResponseView {
            status: 302,
            headers: &[("location".into(), location.into())],
            body: b"",
        },
        Context::Authorize,
        DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap(),
    );
    assert_eq!(c.kind, Kind::AppNotAuthorized);
    assert!(c.title.contains("organisation"), "{c:?}");
}

#[test]
fn hostile_and_odd_bodies_never_panic_and_fall_back_soundly() {
    let odd = [
        "<s:Envelope><s:Body><s:Fault><detail><AdApiFaultDetail><Errors><AdApiError><Code>109",
        "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY a \"aaaa\">]><x>&a;</x>",
        "<s:Envelope><s:Body><GetUserResponse><User><Id>1</Id></User></GetUserResponse></s:Body></s:Envelope>",
        r#"{"Errors":[]}"#,
        r#"{"Errors":[{"Code":null}]}"#,
        r#"{"ApplicationFault":[]}"#,
        "",
    ];
    for body in odd {
        for status in [200, 401, 500] {
            let c = classify(status, "text/xml", body, Context::Api);
            assert!(!c.title.is_empty());
        }
    }
    // A SOAP success in HTTP 200 is ok; a fault the definition cannot read falls back on status.
    let ok = classify(200, "text/xml", odd[2], Context::Api);
    assert_eq!(ok.kind, Kind::Ok);
    let cut = classify(500, "text/xml", odd[0], Context::Api);
    assert_eq!(cut.kind, Kind::ServiceUnavailable);
    assert_eq!(cut.blame, Blame::Platform);
}

#[test]
fn the_definition_sends_scope_on_refresh_and_rotates() {
    let reg = Registry::builtin().unwrap();
    let p = reg.get("microsoft-ads").unwrap();
    let refresh = p.spec.token.refresh.as_ref().unwrap();
    assert_eq!(
        refresh.params.get("scope").map(String::as_str),
        Some("openid offline_access https://ads.microsoft.com/msads.manage")
    );
    assert!(p.spec.refresh.rotates);
    // The old refresh token works until it ends: a grace as long as its life.
    assert_eq!(
        p.spec.refresh.reuse_grace,
        Some(Duration::from_secs(90 * 86_400))
    );
    assert!(p.spec.token.revoke.is_none());
    assert_eq!(
        p.spec.refresh.refresh_token_lifetime,
        Some(Duration::from_secs(90 * 86_400))
    );
    assert_eq!(p.spec.api.probe.method, "POST");
    assert_eq!(
        p.spec.api.probe.body.as_deref(),
        Some(r#"{"UserId": null}"#)
    );
    let names: Vec<&str> = p.spec.api.headers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["DeveloperToken", "CustomerId"]);
}

/// The sandbox environment's scope (Part A §2 Sandbox): a sandbox app asks for
/// `https://si.ads.microsoft.com/msads.manage` wherever the definition writes the production one
/// (consent, exchange, the fixed `scope` sent on refresh), and nothing else moves; production is
/// the definition itself.
#[test]
fn a_sandbox_app_sees_the_sandbox_scope_everywhere_the_definition_writes_it() {
    use tokenwarden_core::connection::Environment;
    const PROD: &str = "https://ads.microsoft.com/msads.manage";
    const SBX: &str = "https://si.ads.microsoft.com/msads.manage";
    let reg = Registry::builtin().unwrap();
    let p = reg.get("microsoft-ads").unwrap();
    assert!(std::ptr::eq(
        &*p.for_app(None, None, Environment::Production, None),
        &**p
    ));
    let s = p
        .for_app(None, None, Environment::Sandbox, None)
        .into_owned()
        .spec;
    assert_eq!(
        s.authorize.default_scopes,
        ["openid", "offline_access", SBX]
    );
    assert_eq!(s.authorize.required_scopes, [SBX]);
    let want = format!("openid offline_access {SBX}");
    assert_eq!(s.token.exchange.params["scope"], want);
    assert_eq!(s.token.refresh.as_ref().unwrap().params["scope"], want);
    // Hosts are not the environment's business here: the connection records its API base.
    assert_eq!(s.authorize.url, p.spec.authorize.url);
    assert_eq!(s.token.exchange.url, p.spec.token.exchange.url);
    assert_eq!(
        s.scopes_in(Environment::Sandbox, &[PROD.into(), "openid".into()]),
        [SBX, "openid"]
    );
    // A platform without [environments.sandbox] is the same in both.
    let t = reg.get("tiktok-business").unwrap();
    assert!(std::ptr::eq(
        &*t.for_app(None, None, Environment::Sandbox, None),
        &**t
    ));
}

/// Accounts signed in with Google (Part A §0.7, §2 "Google as identity provider"): an app of
/// identity `google` consents at accounts.google.com with `access_type=offline` and
/// `prompt=consent` for the openid/email/profile scopes, exchanges and refreshes at
/// oauth2.googleapis.com (no scope on refresh, no rotation: Google's rules, §1), and its API calls
/// carry `IdentityProvider: Google` beside the definition's headers. Google's invalid_grant is
/// explained in Google's words; the API's own rules stay Microsoft's.
#[test]
fn a_google_identity_app_signs_in_and_refreshes_at_google_and_says_so_on_calls() {
    use tokenwarden_core::connection::Environment;
    use tokenwarden_core::provider::HeaderValues;
    let reg = Registry::builtin().unwrap();
    let p = reg.get("microsoft-ads").unwrap();
    let g = p
        .for_app(None, Some("google"), Environment::Production, None)
        .into_owned();
    let s = &g.spec;
    assert_eq!(
        s.authorize.url.as_str(),
        "https://accounts.google.com/o/oauth2/v2/auth"
    );
    assert_eq!(s.authorize.default_scopes, ["openid", "email", "profile"]);
    assert_eq!(s.authorize.extra_params["access_type"], "offline");
    assert_eq!(s.authorize.extra_params["prompt"], "consent");
    for call in [&s.token.exchange, s.token.refresh.as_ref().unwrap()] {
        assert_eq!(call.url.as_str(), "https://oauth2.googleapis.com/token");
        assert!(!call.params.contains_key("scope"), "{:?}", call.params);
    }
    assert!(!s.refresh.rotates && s.refresh.reuse_grace.is_none());
    assert_eq!(s.refresh.refresh_token_lifetime, None);
    // The API is Microsoft's, in either environment.
    assert_eq!(s.api.base_url, p.spec.api.base_url);
    let sbx = p
        .for_app(None, Some("google"), Environment::Sandbox, None)
        .into_owned();
    assert_eq!(
        sbx.spec.authorize.default_scopes,
        ["openid", "email", "profile"]
    );
    // The header goes only with an app of that identity.
    let mut values = HeaderValues {
        client_id: "c".into(),
        account_id: Some("123".into()),
        ..Default::default()
    };
    let names = |v: &HeaderValues| -> Vec<String> {
        p.spec
            .extra_headers(v)
            .into_iter()
            .map(|h| format!("{}={}", h.name, h.value))
            .collect()
    };
    assert_eq!(names(&values), ["CustomerId=123"]);
    values.identity = Some("google".into());
    assert_eq!(
        names(&values),
        ["CustomerId=123", "IdentityProvider=Google"]
    );
    // SOAP: the envelope's entries get it too (Part A §2: "optionally IdentityProvider").
    let entries: Vec<String> = p
        .spec
        .soap_elements(&values)
        .into_iter()
        .map(|h| format!("{}={}", h.name, h.value))
        .collect();
    assert_eq!(entries, ["CustomerId=123", "IdentityProvider=Google"]);
    // Google's refusal of the refresh token: reauthorize, in Google's words.
    let at = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
    let body =
        r#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#;
    let view = ResponseView {
        status: 400,
        headers: &[("content-type".into(), "application/json".into())],
        body: body.as_bytes(),
    };
    let c = g.classifier().classify(&view, Context::TokenEndpoint, at);
    assert_eq!(
        (c.kind, c.action),
        (Kind::TokenRevoked, Action::Reauthorize)
    );
    assert!(c.title.contains("Google refused"), "{}", c.title);
    assert!(
        c.explanation.contains("Token has been expired or revoked."),
        "{}",
        c.explanation
    );
    // The Microsoft app's own classifier keeps Microsoft's words, and the identity's keeps the
    // API's rules.
    let m = p.classifier().classify(&view, Context::TokenEndpoint, at);
    assert!(m.title.contains("Microsoft"), "{}", m.title);
    let expired = ad_api_fault("109", "AuthenticationTokenExpired");
    let api = ResponseView {
        status: 401,
        headers: &[("content-type".into(), "application/json".into())],
        body: expired.as_bytes(),
    };
    assert_eq!(
        g.classifier().classify(&api, Context::Api, at).kind,
        Kind::TokenExpired
    );
    // An identity the definition lacks is refused by name.
    let e = p.spec.check_identity(Some("facebook")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "microsoft-ads has no identity \"facebook\"; its identities are google"
    );
    assert!(p.spec.check_identity(Some("google")).is_ok());
    let snap = reg.get("snapchat").unwrap();
    assert!(snap.spec.check_identity(Some("google")).is_err());
}

/// `[identities.NAME]` is checked like the definition's own sections, under its own keys.
#[test]
fn identities_are_validated_like_the_definition_sections() {
    let text = include_str!("../../../providers/microsoft-ads.toml");
    let bad = text
        .replace(
            "[identities.google.token.refresh]\nmethod = \"POST\"\nurl = \"https://oauth2.googleapis.com/token\"",
            "[identities.google.token.refresh]\nmethod = \"POST\"\nurl = \"http://oauth2.googleapis.com/token\"",
        )
        .replace(
            "name = \"IdentityProvider\"\nvalue = \"Google\"",
            "name = \"IdentityProvider\"\nvalue = \"{refresh_token}\"",
        );
    assert_ne!(bad, text);
    let e = Registry::check("microsoft-ads.toml", &bad).unwrap_err();
    let all: Vec<String> = e.iter().map(|e| e.to_string()).collect();
    assert!(
        all.iter()
            .any(|e| e.contains("identities.google.token.refresh.url")),
        "{all:?}"
    );
    assert!(
        all.iter()
            .any(|e| e.contains("identities.google.api_headers[0].value")),
        "{all:?}"
    );
    // Unknown keys are refused.
    let unknown = text.replace(
        "[identities.google]\nnote",
        "[identities.google]\nissuer_url = \"https://accounts.google.com\"\nnote",
    );
    assert_ne!(unknown, text);
    let e = Registry::check("microsoft-ads.toml", &unknown).unwrap_err();
    assert!(
        e.iter().any(|e| e.to_string().contains("issuer_url")),
        "{e:?}"
    );
    // A header the definition already sends, a name an app cannot write, and a sub-section of
    // the identity that is incomplete (no refresh call for a refresh-token style).
    let clash = text
        .replace(
            "name = \"IdentityProvider\"\nvalue = \"Google\"",
            "name = \"DeveloperToken\"\nvalue = \"Google\"",
        )
        .replace("[identities.google]\n", "[identities.Google]\n")
        .replace("[identities.google.", "[identities.Google.")
        .replace("[[identities.google.", "[[identities.Google.");
    let e = Registry::check("microsoft-ads.toml", &clash).unwrap_err();
    let all: Vec<String> = e.iter().map(|e| e.to_string()).collect();
    assert!(
        all.iter()
            .any(|e| e.contains("\"DeveloperToken\" is already in api.headers")),
        "{all:?}"
    );
    assert!(
        all.iter()
            .any(|e| e.contains("\"Google\" is not an identity name")),
        "{all:?}"
    );
    // Not with regions: whose region an identity's hosts would be is not said.
    let amazon = include_str!("../../../providers/amazon-ads.toml");
    let identity = &text[text.find("[identities.google]\n").unwrap()..];
    let e = Registry::check("amazon-ads.toml", &format!("{amazon}\n{identity}")).unwrap_err();
    assert!(
        e.iter()
            .any(|e| e.to_string().contains("not supported with [[regions]]")),
        "{e:?}"
    );
}

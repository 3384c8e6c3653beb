//! Microsoft Advertising at its real paths (platforms-ads.md Part A §2): consent with PKCE at
//! `/common/oauth2/v2.0/authorize`, the code exchange, refreshes that need `scope` and answer a
//! NEW refresh token while the old one keeps working until it expires, `invalid_grant` with
//! AADSTS700082 once it has, the REST `User/Query` probe (needs the developer token), a campaign
//! call needing `CustomerId` and `CustomerAccountId`, and SOAP GetUser with its faults in HTTP 500.

mod harness;

use harness::{Harness, REDIRECT, call};
use reqwest::StatusCode;
use serde_json::{Value, json};

const AUTH: &str = "/microsoft-ads/common/oauth2/v2.0/authorize";
const TOKEN: &str = "/microsoft-ads/common/oauth2/v2.0/token";
const PROBE: &str = "/microsoft-ads/CustomerManagement/v13/User/Query";
const CAMPAIGNS: &str = "/microsoft-ads/CampaignManagement/v13/Campaigns/QueryByAccountId";
const SOAP: &str = "/microsoft-ads/Api/CustomerManagement/v13/CustomerManagementService.svc";
const SCOPES: &str = "openid offline_access https://ads.microsoft.com/msads.manage";
const DEV: &str = "BBD37VB98";
const VERIFIER: &str = "dBjftJeZ4CVP-mJ92K9KDkBKNPbPkCNOJzUdSl2LVMU";
const CHALLENGE: &str = "qFv1gU0l-qER3UxSJqc_CAdmE0HHDTRMsrQh10aiZxw";

async fn connect(h: &Harness) -> (String, String) {
    connect_as(h, "demo-microsoft-ads", SCOPES).await
}

/// Consent and code exchange for `client` asking for `scopes`; the access and refresh tokens.
async fn connect_as(h: &Harness, client: &str, scopes: &str) -> (String, String) {
    let secret = format!("{client}-secret");
    let q = h
        .authorize(
            AUTH,
            &[
                ("client_id", client),
                ("redirect_uri", REDIRECT),
                ("response_type", "code"),
                ("response_mode", "query"),
                ("scope", scopes),
                ("state", "s1"),
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "S256"),
            ],
            "approve",
        )
        .await;
    assert_eq!(q["state"], "s1");
    let (st, _, tok, _) = call(h.http.post(h.url(TOKEN)).form(&[
        ("grant_type", "authorization_code"),
        ("client_id", client),
        ("client_secret", &secret),
        ("code", q["code"].as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
        ("scope", scopes),
    ]))
    .await;
    assert_eq!(st, StatusCode::OK, "{tok}");
    assert_eq!(tok["expires_in"], 3600);
    assert_eq!(tok["token_type"], "Bearer");
    assert_eq!(
        tok["scope"].as_str(),
        scopes.rsplit(' ').next(),
        "the answer names the msads.manage scope asked for"
    );
    (
        tok["access_token"].as_str().unwrap().into(),
        tok["refresh_token"].as_str().unwrap().into(),
    )
}

async fn refresh(h: &Harness, rt: &str, scope: Option<&str>) -> (StatusCode, Value) {
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("client_id", "demo-microsoft-ads"),
        ("client_secret", "demo-microsoft-ads-secret"),
        ("refresh_token", rt),
    ];
    if let Some(s) = scope {
        form.push(("scope", s));
    }
    let (st, _, v, _) = call(h.http.post(h.url(TOKEN)).form(&form)).await;
    (st, v)
}

async fn probe(h: &Harness, at: &str, dev: Option<&str>) -> (StatusCode, Value) {
    probe_at(h, PROBE, at, dev).await
}

async fn probe_at(h: &Harness, path: &str, at: &str, dev: Option<&str>) -> (StatusCode, Value) {
    let mut req = h
        .http
        .post(h.url(path))
        .bearer_auth(at)
        .json(&json!({"UserId": null}));
    if let Some(d) = dev {
        req = req.header("DeveloperToken", d);
    }
    let (st, _, v, _) = call(req).await;
    (st, v)
}

fn code(v: &Value) -> &Value {
    &v["Errors"][0]["Code"]
}

#[tokio::test]
async fn connect_probe_campaigns_and_rotating_refresh() {
    let h = Harness::start().await;
    let (at, rt) = connect(&h).await;

    // The probe needs the developer token: without it (or with another) 105.
    let (st, v) = probe(&h, &at, None).await;
    assert_eq!(
        (st, code(&v).clone()),
        (StatusCode::UNAUTHORIZED, json!(105))
    );
    let (st, v) = probe(&h, &at, Some("NOT-THE-TOKEN")).await;
    assert_eq!(
        (st, code(&v).clone()),
        (StatusCode::UNAUTHORIZED, json!(105))
    );
    let (st, user) = probe(&h, &at, Some(DEV)).await;
    assert_eq!(st, StatusCode::OK, "{user}");
    let customer = user["CustomerRoles"][0]["CustomerId"].as_u64().unwrap();
    let account = user["CustomerRoles"][0]["AccountIds"][0].as_u64().unwrap();
    assert!(user["User"]["UserName"].as_str().unwrap().contains('@'));

    // The campaign call needs CustomerId (116) and CustomerAccountId (1009), and a customer the
    // user manages (106).
    let campaigns = |customer: Option<String>, account: Option<String>| {
        let mut req = h
            .http
            .post(h.url(CAMPAIGNS))
            .bearer_auth(&at)
            .header("DeveloperToken", DEV)
            .json(&json!({"AccountId": account.clone().unwrap_or_default(), "CampaignType": "Search"}));
        if let Some(c) = customer {
            req = req.header("CustomerId", c);
        }
        if let Some(a) = account {
            req = req.header("CustomerAccountId", a);
        }
        call(req)
    };
    let (st, _, v, _) = campaigns(None, Some(account.to_string())).await;
    assert_eq!(
        (st, code(&v).clone()),
        (StatusCode::BAD_REQUEST, json!(116))
    );
    let (st, _, v, _) = campaigns(Some(customer.to_string()), None).await;
    assert_eq!(
        (st, code(&v).clone()),
        (StatusCode::BAD_REQUEST, json!(1009))
    );
    let (_, _, v, _) = campaigns(Some("1".into()), Some(account.to_string())).await;
    assert_eq!(code(&v).clone(), json!(106));
    let (st, _, v, _) = campaigns(Some(customer.to_string()), Some(account.to_string())).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(!v["Campaigns"].as_array().unwrap().is_empty());

    // Refresh needs scope.
    let (st, v) = refresh(&h, &rt, None).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    assert_eq!(v["error_codes"][0], 90014);
    // Every refresh rotates; the old refresh token keeps working until it expires.
    let (st, v) = refresh(&h, &rt, Some(SCOPES)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let rt2 = v["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(rt2, rt);
    let (st, v) = refresh(&h, &rt, Some(SCOPES)).await;
    assert_eq!(st, StatusCode::OK, "the old refresh token still works: {v}");
    // The access token expires after an hour: REST 401 with 109.
    h.advance(3601);
    let (st, v) = probe(&h, &at, Some(DEV)).await;
    assert_eq!(
        (st, code(&v).clone()),
        (StatusCode::UNAUTHORIZED, json!(109))
    );
    assert_eq!(v["Errors"][0]["ErrorCode"], "AuthenticationTokenExpired");
    // 90 days later the first refresh token has ended: invalid_grant AADSTS700082.
    h.advance(90 * 86_400);
    let (st, v) = refresh(&h, &rt, Some(SCOPES)).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    assert_eq!(v["error_codes"][0], 700_082);
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS700082:")
    );
    h.stop().await;
}

fn soap_get_user(token: &str, dev: &str) -> String {
    format!(
        r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header xmlns="https://bingads.microsoft.com/Customer/v13"><Action mustUnderstand="1">GetUser</Action><AuthenticationToken i:nil="false" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">{token}</AuthenticationToken><DeveloperToken i:nil="false" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">{dev}</DeveloperToken></s:Header><s:Body><GetUserRequest xmlns="https://bingads.microsoft.com/Customer/v13"><UserId i:nil="true" xmlns:i="http://www.w3.org/2001/XMLSchema-instance"/></GetUserRequest></s:Body></s:Envelope>"#
    )
}

#[tokio::test]
async fn soap_get_user_and_its_faults_in_http_500() {
    let h = Harness::start().await;
    let (at, _) = connect(&h).await;
    let send = |body: String| {
        call(
            h.http
                .post(h.url(SOAP))
                .header("content-type", "text/xml; charset=utf-8")
                .header("SOAPAction", "\"GetUser\"")
                .body(body),
        )
    };
    let (st, _, _, text) = send(soap_get_user(&at, DEV)).await;
    assert_eq!(st, StatusCode::OK, "{text}");
    assert!(text.contains("<GetUserResponse"));
    let (st, _, _, text) = send(soap_get_user(&at, "WRONG")).await;
    assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(text.contains("<Code>105</Code>"), "{text}");
    h.advance(3601);
    let (st, _, _, text) = send(soap_get_user(&at, DEV)).await;
    assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(text.contains("<Code>109</Code>") && text.contains("AuthenticationTokenExpired"));
    h.stop().await;
}

/// The sandbox environment (Part A §2 Sandbox): its own API hosts, the same sign-in host, its own
/// scope. A sandbox token works on the sandbox host only; a production token, or a token for the
/// other environment's scope, answers 105 InvalidCredentials there, as on the real services.
#[tokio::test]
async fn the_sandbox_environment_has_its_own_host_and_scope() {
    const SANDBOX_PROBE: &str = "/microsoft-ads/sandbox/CustomerManagement/v13/User/Query";
    const SANDBOX_SCOPES: &str = "openid offline_access https://si.ads.microsoft.com/msads.manage";
    let h = Harness::start().await;
    let (sbx, sbx_rt) = connect_as(&h, "demo-microsoft-ads-sandbox", SANDBOX_SCOPES).await;
    let (prod, _) = connect(&h).await;

    let (st, v) = probe_at(&h, SANDBOX_PROBE, &sbx, Some(DEV)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["User"]["Id"].is_number(), "{v}");
    let (st, v) = probe_at(&h, PROBE, &prod, Some(DEV)).await;
    assert_eq!(st, StatusCode::OK, "{v}");

    for (path, token, what) in [
        (PROBE, &sbx, "a sandbox token on production"),
        (SANDBOX_PROBE, &prod, "a production token on the sandbox"),
    ] {
        let (st, v) = probe_at(&h, path, token, Some(DEV)).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{what}: {v}");
        assert_eq!(code(&v), 105, "{what}: {v}");
    }
    // A sandbox app that asks for the production scope gets a token the sandbox host does not
    // take: the scope, not the client id, makes a sandbox token.
    let (wrong, _) = connect_as(&h, "demo-microsoft-ads-sandbox", SCOPES).await;
    let (st, v) = probe_at(&h, SANDBOX_PROBE, &wrong, Some(DEV)).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::UNAUTHORIZED, &json!(105)),
        "{v}"
    );

    // Refreshing with the sandbox scope keeps it a sandbox token.
    let (st, _, v, _) = call(h.http.post(h.url(TOKEN)).form(&[
        ("grant_type", "refresh_token"),
        ("client_id", "demo-microsoft-ads-sandbox"),
        ("client_secret", "demo-microsoft-ads-sandbox-secret"),
        ("refresh_token", sbx_rt.as_str()),
        ("scope", SANDBOX_SCOPES),
    ]))
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let fresh = v["access_token"].as_str().unwrap();
    assert_eq!(
        probe_at(&h, SANDBOX_PROBE, fresh, Some(DEV)).await.0,
        StatusCode::OK
    );
    let counters = h.counters().await;
    assert_eq!(
        counters["providers"]["microsoft-ads"]["wrong_environment_sent"], 3,
        "{counters}"
    );
    h.stop().await;
}

const GOOGLE_AUTH: &str = "/microsoft-ads/identity/google/o/oauth2/v2/auth";
const GOOGLE_TOKEN: &str = "/microsoft-ads/identity/google/token";
const GOOGLE_REVOKE: &str = "/microsoft-ads/identity/google/revoke";

/// Consent and code exchange at Google (a Google OAuth client, the Google-identity scopes) under
/// the Microsoft prefix; Google's access and refresh tokens.
async fn connect_with_google(h: &Harness) -> (String, String) {
    let q = h
        .authorize(
            GOOGLE_AUTH,
            &[
                ("client_id", "demo-google-ads"),
                ("redirect_uri", REDIRECT),
                ("response_type", "code"),
                ("scope", "openid email profile"),
                ("access_type", "offline"),
                ("prompt", "consent"),
                ("state", "g1"),
            ],
            "approve",
        )
        .await;
    assert_eq!(q["state"], "g1");
    let (st, _, tok, _) = call(h.http.post(h.url(GOOGLE_TOKEN)).form(&[
        ("grant_type", "authorization_code"),
        ("client_id", "demo-google-ads"),
        ("client_secret", "demo-google-ads-secret"),
        ("code", q["code"].as_str()),
        ("redirect_uri", REDIRECT),
    ]))
    .await;
    assert_eq!(st, StatusCode::OK, "{tok}");
    (
        tok["access_token"].as_str().unwrap().into(),
        tok["refresh_token"].as_str().unwrap().into(),
    )
}

/// Accounts signed in with Google (Part A §0.7, §2): a token Google issued works with
/// `IdentityProvider: Google` (REST header, SOAP header element) and is 105 without it; a
/// Microsoft token with the header is 105 too. Google's refresh keeps its refresh token (no
/// rotation), and once the grant is revoked the refresh is Google's invalid_grant and the call 105.
#[tokio::test]
async fn google_identity_tokens_work_with_identity_provider_google_only() {
    let h = Harness::start().await;
    let (gat, grt) = connect_with_google(&h).await;
    let (mat, _) = connect(&h).await;
    let get_user = |at: String, identity: Option<&'static str>| {
        let mut req = h
            .http
            .post(h.url(PROBE))
            .bearer_auth(at)
            .header("DeveloperToken", DEV)
            .json(&json!({"UserId": null}));
        if let Some(i) = identity {
            req = req.header("IdentityProvider", i);
        }
        call(req)
    };
    let (st, _, v, _) = get_user(gat.clone(), Some("Google")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["User"]["Id"].is_number(), "{v}");
    let (st, _, v, _) = get_user(gat.clone(), None).await;
    assert_eq!(
        (st, code(&v).clone()),
        (StatusCode::UNAUTHORIZED, json!(105)),
        "a Google token without IdentityProvider: {v}"
    );
    let (st, _, v, _) = get_user(mat.clone(), Some("Google")).await;
    assert_eq!(
        (st, code(&v).clone()),
        (StatusCode::UNAUTHORIZED, json!(105)),
        "a Microsoft token with IdentityProvider: Google: {v}"
    );
    let (st, _, v, _) = get_user(mat.clone(), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");

    // SOAP: the IdentityProvider header element.
    let soap = |token: &str, identity: bool| {
        let envelope = soap_get_user(token, DEV);
        if identity {
            envelope.replace(
                "</s:Header>",
                "<IdentityProvider>Google</IdentityProvider></s:Header>",
            )
        } else {
            envelope
        }
    };
    let send = |body: String| {
        call(
            h.http
                .post(h.url(SOAP))
                .header("content-type", "text/xml; charset=utf-8")
                .header("SOAPAction", "\"GetUser\"")
                .body(body),
        )
    };
    let (st, _, _, text) = send(soap(&gat, true)).await;
    assert_eq!(st, StatusCode::OK, "{text}");
    let (st, _, _, text) = send(soap(&gat, false)).await;
    assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR, "{text}");
    assert!(text.contains("<Code>105</Code>"), "{text}");

    // Google's refresh: no scope needed, no new refresh token, the stored one keeps working.
    let refresh = || {
        call(h.http.post(h.url(GOOGLE_TOKEN)).form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "demo-google-ads"),
            ("client_secret", "demo-google-ads-secret"),
            ("refresh_token", grt.as_str()),
        ]))
    };
    let (st, _, tok, _) = refresh().await;
    assert_eq!(st, StatusCode::OK, "{tok}");
    assert!(tok.get("refresh_token").is_none(), "{tok}");
    let gat2 = tok["access_token"].as_str().unwrap().to_string();
    let (st, _, v, _) = get_user(gat2.clone(), Some("Google")).await;
    assert_eq!(st, StatusCode::OK, "{v}");

    // Revoked at Google: the refresh is invalid_grant in Google's words, the call 105.
    let (st, _, _, text) = call(
        h.http
            .post(h.url(GOOGLE_REVOKE))
            .form(&[("token", grt.as_str())]),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{text}");
    let (st, _, tok, _) = refresh().await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{tok}");
    assert_eq!(tok["error"], "invalid_grant");
    assert_eq!(
        tok["error_description"],
        "Token has been expired or revoked."
    );
    let (st, _, v, _) = get_user(gat2, Some("Google")).await;
    assert_eq!(
        (st, code(&v).clone()),
        (StatusCode::UNAUTHORIZED, json!(105)),
        "{v}"
    );
}

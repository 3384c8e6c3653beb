//! Google Ads at its real paths (platforms-ads.md Part A §1): consent with PKCE, the code
//! exchange, refreshes that send no new refresh token and leave the old one working,
//! `/revoke` ending the grant (then `invalid_grant`), the `listAccessibleCustomers` probe, a
//! search and a searchStream, and the faults answered with Google's own envelopes.

mod harness;

use harness::{Harness, REDIRECT, call};
use reqwest::StatusCode;
use serde_json::{Value, json};

const AUTH: &str = "/google-ads/o/oauth2/v2/auth";
const TOKEN: &str = "/google-ads/token";
const REVOKE: &str = "/google-ads/revoke";
const PROBE: &str = "/google-ads/v21/customers:listAccessibleCustomers";
const SCOPE: &str = "https://www.googleapis.com/auth/adwords";
// base64url(SHA-256(VERIFIER)), as RFC 7636 S256 has it.
const VERIFIER: &str = "dBjftJeZ4CVP-mJ92K9KDkBKNPbPkCNOJzUdSl2LVMU";
const CHALLENGE: &str = "qFv1gU0l-qER3UxSJqc_CAdmE0HHDTRMsrQh10aiZxw";

async fn connect(h: &Harness) -> (String, String) {
    let q = h
        .authorize(
            AUTH,
            &[
                ("client_id", "demo-google-ads"),
                ("redirect_uri", REDIRECT),
                ("response_type", "code"),
                ("scope", SCOPE),
                ("access_type", "offline"),
                ("prompt", "consent"),
                ("state", "s1"),
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "S256"),
            ],
            "approve",
        )
        .await;
    assert_eq!(q["state"], "s1");
    // The wrong verifier is refused with invalid_grant.
    let (st, _, err, _) = call(h.http.post(h.url(TOKEN)).form(&[
        ("grant_type", "authorization_code"),
        ("client_id", "demo-google-ads"),
        ("client_secret", "demo-google-ads-secret"),
        ("code", q["code"].as_str()),
        ("redirect_uri", REDIRECT),
        (
            "code_verifier",
            "not-the-verifier-not-the-verifier-not-the-verifier",
        ),
    ]))
    .await;
    assert_eq!(
        (st, err["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let q = h
        .authorize(
            AUTH,
            &[
                ("client_id", "demo-google-ads"),
                ("redirect_uri", REDIRECT),
                ("response_type", "code"),
                ("scope", SCOPE),
                ("state", "s2"),
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "S256"),
            ],
            "approve",
        )
        .await;
    let (st, _, tok, _) = call(h.http.post(h.url(TOKEN)).form(&[
        ("grant_type", "authorization_code"),
        ("client_id", "demo-google-ads"),
        ("client_secret", "demo-google-ads-secret"),
        ("code", q["code"].as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ]))
    .await;
    assert_eq!(st, StatusCode::OK, "{tok}");
    assert_eq!(tok["expires_in"], 3599);
    assert_eq!(tok["token_type"], "Bearer");
    assert_eq!(tok["scope"], SCOPE);
    (
        tok["access_token"].as_str().unwrap().into(),
        tok["refresh_token"].as_str().unwrap().into(),
    )
}

async fn refresh(h: &Harness, rt: &str) -> (StatusCode, Value) {
    let (st, _, v, _) = call(h.http.post(h.url(TOKEN)).form(&[
        ("grant_type", "refresh_token"),
        ("client_id", "demo-google-ads"),
        ("client_secret", "demo-google-ads-secret"),
        ("refresh_token", rt),
    ]))
    .await;
    (st, v)
}

async fn probe(h: &Harness, at: &str) -> (StatusCode, Value) {
    let (st, _, v, _) = call(h.http.get(h.url(PROBE)).bearer_auth(at)).await;
    (st, v)
}

/// The first GoogleAdsFailure error's `errorCode` object.
fn error_code(v: &Value) -> &Value {
    &v["error"]["details"][0]["errors"][0]["errorCode"]
}

#[tokio::test]
async fn connect_probe_query_refresh_and_revoke() {
    let h = Harness::start().await;
    let (at, rt) = connect(&h).await;
    let (st, v) = probe(&h, &at).await;
    assert_eq!(st, StatusCode::OK);
    let names = v["resourceNames"].as_array().unwrap();
    assert!(!names.is_empty());
    let customer = names[0]
        .as_str()
        .unwrap()
        .strip_prefix("customers/")
        .unwrap()
        .to_string();
    assert_eq!(customer.len(), 10);

    let query = json!({"query": "SELECT campaign.id, campaign.name FROM campaign"});
    let (st, _, v, _) = call(
        h.http
            .post(h.url(&format!(
                "/google-ads/v21/customers/{customer}/googleAds:search"
            )))
            .bearer_auth(&at)
            .json(&query),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert!(!v["results"].as_array().unwrap().is_empty());
    // searchStream answers in a one-element array, and so do its errors.
    let (st, _, v, _) = call(
        h.http
            .post(h.url(&format!(
                "/google-ads/v21/customers/{customer}/googleAds:searchStream"
            )))
            .bearer_auth(&at)
            .json(&query),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert!(v[0]["results"].is_array());
    let (st, _, v, _) = call(
        h.http
            .post(h.url("/google-ads/v21/customers/1111111111/googleAds:searchStream"))
            .bearer_auth(&at)
            .json(&query),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(
        v[0]["error"]["details"][0]["errors"][0]["errorCode"]["authorizationError"],
        "USER_PERMISSION_DENIED"
    );
    // Hyphenated customer ids are refused as such.
    let (st, _, v, _) = call(
        h.http
            .post(h.url("/google-ads/v21/customers/123-456-7890/googleAds:search"))
            .bearer_auth(&at)
            .json(&query),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(
        error_code(&v)["authenticationError"],
        "CUSTOMER_ID_PARSE_ERROR"
    );

    // No rotation: the refresh answer has no refresh_token, and the old one keeps working.
    h.advance(3600);
    let (st, v) = probe(&h, &at).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(v["error"]["status"], "UNAUTHENTICATED");
    assert_eq!(error_code(&v)["authenticationError"], "OAUTH_TOKEN_EXPIRED");
    let (st, v) = refresh(&h, &rt).await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        v.get("refresh_token").is_none(),
        "Google does not rotate: {v}"
    );
    let at2 = v["access_token"].as_str().unwrap().to_string();
    assert_eq!(probe(&h, &at2).await.0, StatusCode::OK);
    let (st, v) = refresh(&h, &rt).await;
    assert_eq!(st, StatusCode::OK);
    let at3 = v["access_token"].as_str().unwrap().to_string();

    // Revoking the refresh token ends the grant: its access tokens and the refresh token.
    let (st, _, _, _) = call(h.http.post(h.url(REVOKE)).form(&[("token", rt.as_str())])).await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = probe(&h, &at3).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&v)["authenticationError"], "OAUTH_TOKEN_REVOKED");
    let (st, v) = refresh(&h, &rt).await;
    assert_eq!(
        (st, v["error"].as_str(), v["error_description"].as_str()),
        (
            StatusCode::BAD_REQUEST,
            Some("invalid_grant"),
            Some("Token has been expired or revoked.")
        )
    );
    // A second revoke of the same token is refused.
    let (st, _, v, _) = call(h.http.post(h.url(REVOKE)).form(&[("token", rt.as_str())])).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_token"))
    );
    h.stop().await;
}

#[tokio::test]
async fn faults_answer_with_googles_own_signals() {
    let h = Harness::start().await;
    let (at, rt) = connect(&h).await;
    let g = h.grant_id("google-ads").await;

    // Throttle: RESOURCE_EXHAUSTED with quotaErrorDetails.retryDelay, and no Retry-After.
    h.admin("/faults/google-ads/throttle", json!({"next": 1}))
        .await;
    let (st, headers, v, _) = call(h.http.get(h.url(PROBE)).bearer_auth(&at)).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    assert!(headers.get("retry-after").is_none());
    assert_eq!(v["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(
        error_code(&v)["quotaError"],
        "RESOURCE_TEMPORARILY_EXHAUSTED"
    );
    let delay =
        &v["error"]["details"][0]["errors"][0]["details"]["quotaErrorDetails"]["retryDelay"];
    assert!(delay.as_str().unwrap().ends_with('s'), "{delay}");
    assert_eq!(probe(&h, &at).await.0, StatusCode::OK);

    // Outage: 503 UNAVAILABLE, at the API and at the token endpoint.
    h.admin("/faults/google-ads/outage", json!({"for": 60}))
        .await;
    let (st, v) = probe(&h, &at).await;
    assert_eq!(
        (st, v["error"]["status"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("UNAVAILABLE"))
    );
    assert_eq!(refresh(&h, &rt).await.0, StatusCode::SERVICE_UNAVAILABLE);
    h.advance(61);
    assert_eq!(probe(&h, &at).await.0, StatusCode::OK);

    // Remove the scope: the front end's ErrorInfo ACCESS_TOKEN_SCOPE_INSUFFICIENT.
    h.admin(
        &format!("/grants/{g}/remove-scope"),
        json!({"scope": SCOPE}),
    )
    .await;
    let (st, v) = probe(&h, &at).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(
        v["error"]["details"][0]["reason"],
        "ACCESS_TOKEN_SCOPE_INSUFFICIENT"
    );

    // Expire, then revoke at the platform.
    let (at, rt) = connect(&h).await;
    let g = h.grant_id("google-ads").await;
    h.admin(&format!("/grants/{g}/expire"), json!({})).await;
    let (st, v) = probe(&h, &at).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&v)["authenticationError"], "OAUTH_TOKEN_EXPIRED");
    let (st, v) = refresh(&h, &rt).await;
    assert_eq!(st, StatusCode::OK);
    let at = v["access_token"].as_str().unwrap().to_string();
    h.admin(&format!("/grants/{g}/revoke"), json!({})).await;
    let (st, v) = probe(&h, &at).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&v)["authenticationError"], "OAUTH_TOKEN_REVOKED");
    assert_eq!(refresh(&h, &rt).await.1["error"], "invalid_grant");
    h.stop().await;
}

/// Consent and exchange for `account` (no PKCE): its access and refresh tokens.
async fn grant_for(h: &Harness, account: &str) -> (String, String) {
    let q = h
        .authorize(
            AUTH,
            &[
                ("client_id", "demo-google-ads"),
                ("redirect_uri", REDIRECT),
                ("response_type", "code"),
                ("scope", SCOPE),
                ("access_type", "offline"),
                ("prompt", "consent"),
                ("state", "s"),
                ("account", account),
            ],
            "approve",
        )
        .await;
    let (st, _, tok, _) = call(h.http.post(h.url(TOKEN)).form(&[
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

/// Part A §1 "Too many tokens": 100 refresh tokens per Google Account per client; the 101st
/// silently ends the oldest (its refresh is refused with invalid_grant, its access token lasts
/// until it expires). Another account on the same client is not touched.
#[tokio::test]
async fn the_101st_refresh_token_of_an_account_ends_its_oldest() {
    let h = Harness::start().await;
    let (first_at, first_rt) = grant_for(&h, "reconnecting@example.com").await;
    let (_, other_rt) = grant_for(&h, "someone-else@example.com").await;
    let mut second_rt = String::new();
    for i in 0..99 {
        let (_, rt) = grant_for(&h, "reconnecting@example.com").await;
        if i == 0 {
            second_rt = rt;
        }
    }
    // A hundred so far: all still work.
    let (st, v) = refresh(&h, &first_rt).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // The 101st ends the oldest, and only it.
    grant_for(&h, "reconnecting@example.com").await;
    let (st, v) = refresh(&h, &first_rt).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "{v}"
    );
    assert_eq!(probe(&h, &first_at).await.0, StatusCode::OK);
    assert_eq!(refresh(&h, &second_rt).await.0, StatusCode::OK);
    assert_eq!(refresh(&h, &other_rt).await.0, StatusCode::OK);
    h.stop().await;
}

/// A client account under the user's manager (Part A §1 headers): `listAccessibleCustomers`
/// does not list it, `FROM customer_client` on the manager does, and it answers only with the
/// manager's id in `login-customer-id`; missing or wrong → 403 USER_PERMISSION_DENIED.
#[tokio::test]
async fn a_client_account_is_reached_through_its_manager_with_login_customer_id() {
    let h = Harness::start().await;
    let (at, _) = connect(&h).await;
    let (_, v) = probe(&h, &at).await;
    let listed: Vec<String> = v["resourceNames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            n.as_str()
                .unwrap()
                .trim_start_matches("customers/")
                .to_string()
        })
        .collect();
    let manager = listed[0].clone();
    let search = |customer: String, login: Option<String>, query: &'static str| {
        let h = &h;
        let at = at.clone();
        async move {
            let mut req = h
                .http
                .post(h.url(&format!(
                    "/google-ads/v21/customers/{customer}/googleAds:search"
                )))
                .bearer_auth(&at)
                .json(&json!({ "query": query }));
            if let Some(m) = login {
                req = req.header("login-customer-id", m);
            }
            let (st, _, v, _) = call(req).await;
            (st, v)
        }
    };
    let (st, v) = search(
        manager.clone(),
        None,
        "SELECT customer_client.id FROM customer_client",
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let clients: Vec<String> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["customerClient"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(clients.len(), 2, "{v}");
    assert!(
        clients.iter().all(|c| !listed.contains(c)),
        "not directly accessible"
    );
    const CAMPAIGNS: &str = "SELECT campaign.id FROM campaign";
    let (st, v) = search(clients[0].clone(), Some(manager.clone()), CAMPAIGNS).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    for login in [
        None,
        Some(clients[1].clone()),
        Some("1111111111".to_string()),
    ] {
        let (st, v) = search(clients[0].clone(), login.clone(), CAMPAIGNS).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{login:?}: {v}");
        assert_eq!(
            error_code(&v)["authorizationError"],
            "USER_PERMISSION_DENIED",
            "{login:?}: {v}"
        );
    }
    // The manager itself, with or without its own id as login-customer-id.
    assert_eq!(
        search(manager.clone(), Some(manager.clone()), CAMPAIGNS)
            .await
            .0,
        StatusCode::OK
    );
    h.stop().await;
}

//! LinkedIn at its real paths (platforms-ads.md Part B §1): consent at `/oauth/v2/authorization`
//! with space-separated scopes, the code exchange and refresh with the client credentials in the
//! body, a refresh token whose end stays 365 days after the consent however often it is used,
//! `invalid_request` (not invalid_grant) once it is gone, introspection's active/expired/revoked,
//! revocation, and `/rest` calls that need `LinkedIn-Version` (400 VERSION_MISSING, 426
//! NONEXISTENT_VERSION) and an ads scope (403 ACCESS_DENIED).

mod harness;

use harness::{Harness, REDIRECT, call};
use reqwest::StatusCode;
use serde_json::{Value, json};

const AUTH: &str = "/linkedin/oauth/v2/authorization";
const TOKEN: &str = "/linkedin/oauth/v2/accessToken";
const INTROSPECT: &str = "/linkedin/oauth/v2/introspectToken";
const REVOKE: &str = "/linkedin/oauth/v2/revoke";
const ACCOUNTS: &str = "/linkedin/rest/adAccounts?q=search";
const ID: &str = "demo-linkedin";
const SECRET: &str = "demo-linkedin-secret";
const DAY: i64 = 86_400;

async fn connect(h: &Harness, scope: &str) -> (String, String, Value) {
    let q = h
        .authorize(
            AUTH,
            &[
                ("response_type", "code"),
                ("client_id", ID),
                ("redirect_uri", REDIRECT),
                ("scope", scope),
                ("state", "s1"),
            ],
            "approve",
        )
        .await;
    assert_eq!(q["state"], "s1");
    let code = q["code"].clone();
    // Basic auth alone is refused: the credentials go in the body.
    let (st, _, v, _) = call(
        h.http
            .post(h.url(TOKEN))
            .basic_auth(ID, Some(SECRET))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", REDIRECT),
            ]),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"], "invalid_request");
    let (st, _, tok, _) = call(h.http.post(h.url(TOKEN)).form(&[
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("client_id", ID),
        ("client_secret", SECRET),
    ]))
    .await;
    assert_eq!(st, StatusCode::OK, "{tok}");
    assert_eq!(tok["expires_in"], 5_184_000);
    assert_eq!(tok["refresh_token_expires_in"], 365 * DAY);
    (
        tok["access_token"].as_str().unwrap().into(),
        tok["refresh_token"].as_str().unwrap().into(),
        tok,
    )
}

async fn refresh(h: &Harness, rt: &str) -> (StatusCode, Value) {
    let (st, _, v, _) = call(h.http.post(h.url(TOKEN)).form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", rt),
        ("client_id", ID),
        ("client_secret", SECRET),
    ]))
    .await;
    (st, v)
}

async fn introspect(h: &Harness, token: &str) -> Value {
    let (st, _, v, _) = call(h.http.post(h.url(INTROSPECT)).form(&[
        ("client_id", ID),
        ("client_secret", SECRET),
        ("token", token),
    ]))
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v
}

async fn accounts(h: &Harness, at: &str, version: Option<&str>) -> (StatusCode, Value) {
    let mut req = h
        .http
        .get(h.url(ACCOUNTS))
        .bearer_auth(at)
        .header("X-Restli-Protocol-Version", "2.0.0");
    if let Some(v) = version {
        req = req.header("LinkedIn-Version", v);
    }
    let (st, _, v, _) = call(req).await;
    (st, v)
}

#[tokio::test]
async fn the_refresh_token_ends_365_days_after_the_consent_however_often_it_is_used() {
    let h = Harness::start().await;
    let (at, rt, _) = connect(&h, "r_ads rw_ads r_ads_reporting").await;
    let v = introspect(&h, &at).await;
    assert_eq!(
        (v["active"].clone(), v["status"].clone()),
        (json!(true), json!("active"))
    );
    assert_eq!(
        v["scope"], "r_ads,rw_ads,r_ads_reporting",
        "comma-separated here"
    );

    // Day 59: a refresh answers a new access token and 306 days left, the same refresh token.
    h.advance(59 * DAY);
    let (st, v) = refresh(&h, &rt).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["refresh_token_expires_in"], 306 * DAY);
    assert_eq!(v["refresh_token"], rt.as_str());
    let at2 = v["access_token"].as_str().unwrap().to_string();
    // Day 61: the first access token has expired (introspection says so, the API says 65602).
    h.advance(2 * DAY);
    let v = introspect(&h, &at).await;
    assert_eq!(
        (v["active"].clone(), v["status"].clone()),
        (json!(false), json!("expired"))
    );
    // (2027-03-17 now: 202601 is retired, 202603 is served.)
    assert_eq!(accounts(&h, &at2, Some("202601")).await.0.as_u16(), 426);
    let (st, v) = accounts(&h, &at, Some("202603")).await;
    assert_eq!(
        (st, v["serviceErrorCode"].clone()),
        (StatusCode::UNAUTHORIZED, json!(65602))
    );
    assert_eq!(v["code"], "EXPIRED_ACCESS_TOKEN");
    let (st, v) = accounts(&h, &at2, Some("202603")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["elements"].as_array().unwrap().len(), 2);
    assert!(
        v["elements"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["test"] == true)
    );

    // Day 360: five days left, whatever the refreshes since.
    h.advance(299 * DAY);
    let (st, v) = refresh(&h, &rt).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["refresh_token_expires_in"], 5 * DAY);
    assert_eq!(v["expires_in"], 5 * DAY, "both expire in 5 days");
    // Day 366: gone, and LinkedIn says invalid_request, not invalid_grant.
    h.advance(6 * DAY);
    let (st, v) = refresh(&h, &rt).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"], "invalid_request");
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("invalid, expired or revoked")
    );
    h.stop().await;
}

#[tokio::test]
async fn rest_calls_need_a_live_version_and_an_ads_scope() {
    let h = Harness::start().await;
    let (at, _, _) = connect(&h, "r_ads").await;
    let (st, v) = accounts(&h, &at, None).await;
    assert_eq!(
        (st, v["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("VERSION_MISSING"))
    );
    // Twelve months back from the sandbox's 2027-01-15 is still served; thirteen is not, nor a
    // version from the future.
    assert_eq!(accounts(&h, &at, Some("202601")).await.0, StatusCode::OK);
    assert_eq!(accounts(&h, &at, Some("20270101")).await.0, StatusCode::OK);
    for retired in ["202512", "202201", "202702", "latest"] {
        let (st, v) = accounts(&h, &at, Some(retired)).await;
        assert_eq!(st.as_u16(), 426, "{retired}: {v}");
        assert_eq!(v["code"], "NONEXISTENT_VERSION");
        assert_eq!(
            v["message"],
            format!("Requested version {retired} is not active")
        );
    }
    // /v2/userinfo needs the OpenID product's scopes.
    let (st, _, v, _) = call(h.http.get(h.url("/linkedin/v2/userinfo")).bearer_auth(&at)).await;
    assert_eq!(
        (st, v["serviceErrorCode"].clone()),
        (StatusCode::FORBIDDEN, json!(100))
    );
    assert_eq!(
        v["message"],
        "Not enough permissions to access: userinfo.GET.NO_VERSION"
    );
    // Without an ads scope: ACCESS_DENIED naming the resource and version.
    let g = h.grant_id("linkedin").await;
    h.admin(
        &format!("/grants/{g}/remove-scope"),
        json!({"scope": "r_ads"}),
    )
    .await;
    let (st, v) = accounts(&h, &at, Some("202601")).await;
    assert_eq!(
        (st, v["code"].clone()),
        (StatusCode::FORBIDDEN, json!("ACCESS_DENIED"))
    );
    assert_eq!(
        v["message"],
        "Not enough permissions to access: adAccounts.GET.20260101"
    );
    // No token at all.
    let (st, _, v, _) = call(
        h.http
            .get(h.url(ACCOUNTS))
            .header("LinkedIn-Version", "202601"),
    )
    .await;
    assert_eq!(
        (st, v["serviceErrorCode"].clone()),
        (StatusCode::UNAUTHORIZED, json!(401))
    );
    h.stop().await;
}

#[tokio::test]
async fn revocation_and_faults_answer_as_linkedin() {
    let h = Harness::start().await;
    let (at, rt, _) = connect(&h, "r_ads rw_ads").await;
    // The member revokes in privacy settings: 65601 on the API, "revoked" from introspection.
    let g = h.grant_id("linkedin").await;
    h.admin(&format!("/grants/{g}/revoke"), json!({})).await;
    let (st, v) = accounts(&h, &at, Some("202601")).await;
    assert_eq!(
        (st, v["serviceErrorCode"].clone()),
        (StatusCode::UNAUTHORIZED, json!(65601))
    );
    assert_eq!(introspect(&h, &at).await["status"], "revoked");
    assert_eq!(refresh(&h, &rt).await.0, StatusCode::BAD_REQUEST);
    // An unknown token: 65600, and introspection knows nothing of it.
    let (st, v) = accounts(&h, "AQVnot-a-token", Some("202601")).await;
    assert_eq!(
        (st, v["serviceErrorCode"].clone()),
        (StatusCode::UNAUTHORIZED, json!(65600))
    );
    assert_eq!(
        introspect(&h, "AQVnot-a-token").await,
        json!({"active": false})
    );

    // The revoke endpoint: the refresh token ends the grant.
    let (at, rt, _) = connect(&h, "r_ads rw_ads").await;
    let (st, _, _, _) = call(h.http.post(h.url(REVOKE)).form(&[
        ("client_id", ID),
        ("client_secret", SECRET),
        ("token", rt.as_str()),
    ]))
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(introspect(&h, &at).await["status"], "revoked");
    // A wrong secret is invalid_client, on the token and introspection endpoints alike.
    let (st, _, v, _) = call(h.http.post(h.url(INTROSPECT)).form(&[
        ("client_id", ID),
        ("client_secret", "wrong"),
        ("token", at.as_str()),
    ]))
    .await;
    assert_eq!(
        (st, v["error"].clone()),
        (StatusCode::UNAUTHORIZED, json!("invalid_client"))
    );

    // Throttle: 429 serviceErrorCode 101; outage: 503 UNDER_MAINTENANCE.
    let (at, _, _) = connect(&h, "r_ads").await;
    h.admin("/faults/linkedin/throttle", json!({"next": 1}))
        .await;
    let (st, v) = accounts(&h, &at, Some("202601")).await;
    assert_eq!(
        (st, v["serviceErrorCode"].clone()),
        (StatusCode::TOO_MANY_REQUESTS, json!(101))
    );
    h.admin(
        "/faults/linkedin/outage",
        json!({"for": "1m", "mode": "html", "status": 503}),
    )
    .await;
    let (st, v) = accounts(&h, &at, Some("202601")).await;
    assert_eq!(
        (st, v["code"].clone()),
        (StatusCode::SERVICE_UNAVAILABLE, json!("UNDER_MAINTENANCE"))
    );
    h.stop().await;
}

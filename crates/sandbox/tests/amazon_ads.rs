//! Amazon Ads at its real paths, per region (platforms-ads.md Part A §3): consent and Login with
//! Amazon's token endpoint on the EU hosts, refreshes that echo the same refresh token, the
//! `/v2/profiles` probe answering each region's profiles (none in FE), the Scope header checked
//! on advertiser calls (missing; another region's profile), the 425 duplicate report and its
//! states, and the faults answered with Amazon's own signals; the live answers classified by the
//! shipped definition.

mod harness;

use harness::{Harness, REDIRECT, call};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokenwarden_core::classify::{Action, Kind, ResponseView};
use tokenwarden_core::provider::{Context, Registry};

const SCOPE: &str = "advertising::campaign_management";
const CLIENT: &str = "demo-amazon-ads";
const SECRET: &str = "demo-amazon-ads-secret";

/// The path of `rest` on `region`'s hosts (NA at the prefix).
fn at(region: &str, rest: &str) -> String {
    match region {
        "na" => format!("/amazon-ads{rest}"),
        r => format!("/amazon-ads/region/{r}{rest}"),
    }
}

async fn connect(h: &Harness, region: &str) -> (String, String) {
    let q = h
        .authorize(
            &at(region, "/ap/oa"),
            &[
                ("client_id", CLIENT),
                ("redirect_uri", REDIRECT),
                ("response_type", "code"),
                ("scope", SCOPE),
                ("state", "s1"),
            ],
            "approve",
        )
        .await;
    assert_eq!(q["state"], "s1");
    let (st, _, tok, _) = call(h.http.post(h.url(&at(region, "/auth/o2/token"))).form(&[
        ("grant_type", "authorization_code"),
        ("client_id", CLIENT),
        ("client_secret", SECRET),
        ("code", q["code"].as_str()),
        ("redirect_uri", REDIRECT),
    ]))
    .await;
    assert_eq!(st, StatusCode::OK, "{tok}");
    assert_eq!(tok["expires_in"], 3600);
    assert_eq!(tok["token_type"], "bearer");
    let access = tok["access_token"].as_str().unwrap();
    let refresh = tok["refresh_token"].as_str().unwrap();
    assert!(access.starts_with("Atza|") && refresh.starts_with("Atzr|"));
    // The code was spent.
    let (st, _, err, _) = call(h.http.post(h.url(&at(region, "/auth/o2/token"))).form(&[
        ("grant_type", "authorization_code"),
        ("client_id", CLIENT),
        ("client_secret", SECRET),
        ("code", q["code"].as_str()),
        ("redirect_uri", REDIRECT),
    ]))
    .await;
    assert_eq!(
        (st, err["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    (access.into(), refresh.into())
}

async fn refresh(h: &Harness, region: &str, rt: &str) -> (StatusCode, Value) {
    let (st, _, v, _) = call(h.http.post(h.url(&at(region, "/auth/o2/token"))).form(&[
        ("grant_type", "refresh_token"),
        ("client_id", CLIENT),
        ("client_secret", SECRET),
        ("refresh_token", rt),
    ]))
    .await;
    (st, v)
}

async fn get(
    h: &Harness,
    region: &str,
    path: &str,
    token: &str,
    profile: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, Value, String) {
    let mut req = h
        .http
        .get(h.url(&at(region, path)))
        .bearer_auth(token)
        .header("Amazon-Advertising-API-ClientId", CLIENT);
    if let Some(p) = profile {
        req = req.header("Amazon-Advertising-API-Scope", p);
    }
    call(req).await
}

async fn post(
    h: &Harness,
    region: &str,
    path: &str,
    token: &str,
    profile: &str,
    body: &Value,
) -> (StatusCode, reqwest::header::HeaderMap, Value, String) {
    call(
        h.http
            .post(h.url(&at(region, path)))
            .bearer_auth(token)
            .header("Amazon-Advertising-API-ClientId", CLIENT)
            .header("Amazon-Advertising-API-Scope", profile)
            .json(body),
    )
    .await
}

fn profile_ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| p["profileId"].as_u64().unwrap().to_string())
        .collect()
}

/// The shipped definition's verdict on a live answer.
fn verdict(status: StatusCode, headers: &reqwest::header::HeaderMap, body: &str) -> (Kind, Action) {
    let reg = Registry::builtin().unwrap();
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let c = reg.get("amazon-ads").unwrap().classifier().classify(
        &ResponseView {
            status: status.as_u16(),
            headers: &headers,
            body: body.as_bytes(),
        },
        Context::Api,
        tokenwarden_core::clock::Clock::now(&tokenwarden_core::clock::SystemClock),
    );
    (c.kind, c.action)
}

#[tokio::test]
async fn connect_in_eu_probe_each_region_scope_the_calls_and_refresh() {
    let h = Harness::start().await;
    let (token, rt) = connect(&h, "eu").await;

    // One token works on every region's host; each lists its own profiles, FE none.
    let (st, _, eu, _) = get(&h, "eu", "/v2/profiles", &token, None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _, na, _) = get(&h, "na", "/v2/profiles", &token, None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _, fe, _) = get(&h, "fe", "/v2/profiles", &token, None).await;
    assert_eq!((st, fe), (StatusCode::OK, json!([])));
    let eu_ids = profile_ids(&eu);
    let na_ids = profile_ids(&na);
    assert_eq!(eu[0]["countryCode"], "UK");
    assert_eq!(eu[0]["accountInfo"]["type"], "seller");
    assert!(eu_ids.iter().all(|p| !na_ids.contains(p)));

    // The advertiser call: with its own profile, without one, with another region's.
    let list = json!({"stateFilter": {"include": ["ENABLED"]}});
    let (st, headers, v, _) = post(&h, "eu", "/sp/campaigns/list", &token, &eu_ids[0], &list).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        headers["content-type"],
        "application/vnd.spCampaign.v3+json"
    );
    assert!(!v["campaigns"].as_array().unwrap().is_empty());
    let (st, headers, v, body) = get(&h, "eu", "/v2/sp/campaigns", &token, None).await;
    assert_eq!(
        (st, v["details"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("Scope header is missing"))
    );
    assert_eq!(
        verdict(st, &headers, &body),
        (Kind::InvalidRequest, Action::FixRequest)
    );
    let (st, headers, v, body) =
        post(&h, "eu", "/sp/campaigns/list", &token, &na_ids[0], &list).await;
    assert_eq!(
        (st, v["details"].as_str()),
        (
            StatusCode::UNAUTHORIZED,
            Some("No matching advertiser found for scope")
        )
    );
    assert_eq!(v["code"], "401");
    assert!(v["requestId"].as_str().is_some());
    assert_eq!(
        verdict(st, &headers, &body),
        (Kind::NotFound, Action::FixRequest)
    );
    // The same profile works on its own region's host.
    let (st, _, _, _) = post(&h, "na", "/sp/campaigns/list", &token, &na_ids[0], &list).await;
    assert_eq!(st, StatusCode::OK);
    // Without the app's client id the call is not authenticated.
    let (st, _, v, _) = call(
        h.http
            .get(h.url(&at("eu", "/v2/profiles")))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(
        (st, v["details"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("Authentication failed"))
    );

    // Expiry: "Authentication failed"; the refresh echoes the same refresh token.
    h.advance(3600);
    let (st, headers, v, body) = get(&h, "eu", "/v2/profiles", &token, None).await;
    assert_eq!(
        (st, v["details"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("Authentication failed"))
    );
    assert_eq!(
        verdict(st, &headers, &body),
        (Kind::TokenExpired, Action::RefreshAndRetry)
    );
    let (st, v) = refresh(&h, "eu", &rt).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["refresh_token"], rt.as_str(), "not rotated");
    let token2 = v["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        get(&h, "eu", "/v2/profiles", &token2, None).await.0,
        StatusCode::OK
    );
    // Refreshing at another region's token host works too (one LwA account).
    assert_eq!(refresh(&h, "na", &rt).await.0, StatusCode::OK);

    // Revoked at Amazon: Amazon's invalid_grant text.
    let g = h.grant_id("amazon-ads").await;
    h.admin(&format!("/grants/{g}/revoke"), json!({})).await;
    let (st, v) = refresh(&h, "eu", &rt).await;
    assert_eq!(
        (st, v["error"].as_str(), v["error_description"].as_str()),
        (
            StatusCode::BAD_REQUEST,
            Some("invalid_grant"),
            Some(
                "The request has an invalid grant parameter : refresh_token. User may have revoked or didn't grant the permission."
            )
        )
    );
    h.stop().await;
}

#[tokio::test]
async fn a_duplicate_report_is_425_until_the_first_completes() {
    let h = Harness::start().await;
    let (token, _) = connect(&h, "na").await;
    let (_, _, na, _) = get(&h, "na", "/v2/profiles", &token, None).await;
    let profile = profile_ids(&na)[0].clone();
    let report = json!({
        "name": "SP campaigns",
        "startDate": "2026-11-01",
        "endDate": "2026-11-30",
        "configuration": {
            "adProduct": "SPONSORED_PRODUCTS",
            "groupBy": ["campaign"],
            "columns": ["impressions", "clicks", "cost"],
            "reportTypeId": "spCampaigns",
            "timeUnit": "SUMMARY",
            "format": "GZIP_JSON"
        }
    });
    let (st, _, v, _) = post(&h, "na", "/reporting/reports", &token, &profile, &report).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "PENDING");
    let id = v["reportId"].as_str().unwrap().to_string();
    let (st, headers, v, body) =
        post(&h, "na", "/reporting/reports", &token, &profile, &report).await;
    assert_eq!(st.as_u16(), 425);
    assert_eq!(
        v["detail"],
        format!("The Request is a duplicate of : {id}").as_str()
    );
    assert!(v.get("details").is_none(), "the 425 says detail");
    assert_eq!(
        verdict(st, &headers, &body),
        (Kind::AsyncPending, Action::PollLater)
    );
    let path = format!("/reporting/reports/{id}");
    let status = |v: &Value| v["status"].as_str().unwrap().to_string();
    let (_, _, v, _) = get(&h, "na", &path, &token, Some(&profile)).await;
    assert_eq!(status(&v), "PENDING");
    h.advance(16);
    let (_, _, v, _) = get(&h, "na", &path, &token, Some(&profile)).await;
    assert_eq!(status(&v), "PROCESSING");
    h.advance(15);
    let (_, _, v, _) = get(&h, "na", &path, &token, Some(&profile)).await;
    assert_eq!(status(&v), "COMPLETED");
    assert!(v["url"].as_str().unwrap().starts_with("https://"));
    // Once completed, the same request makes a new report.
    let (st, _, v, _) = post(&h, "na", "/reporting/reports", &token, &profile, &report).await;
    assert_eq!(st, StatusCode::OK);
    assert_ne!(v["reportId"], id.as_str());
    // Another profile does not see it.
    let other = profile_ids(&na)[1].clone();
    assert_eq!(
        get(&h, "na", &path, &token, Some(&other)).await.0,
        StatusCode::NOT_FOUND
    );
    h.stop().await;
}

#[tokio::test]
async fn faults_answer_with_amazons_own_signals() {
    let h = Harness::start().await;
    let (token, rt) = connect(&h, "eu").await;
    let (_, _, eu, _) = get(&h, "eu", "/v2/profiles", &token, None).await;
    let profile = profile_ids(&eu)[0].clone();

    // The API Gateway's throttle: no Retry-After, AccessDeniedException, the throttled flag.
    h.admin("/faults/amazon-ads/throttle", json!({"next": 1}))
        .await;
    let (st, headers, v, body) = get(&h, "eu", "/v2/profiles", &token, None).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    assert!(headers.get("retry-after").is_none());
    assert_eq!(headers["x-amzn-errortype"], "AccessDeniedException");
    assert_eq!(headers["amazon-advertising-api-throttled"], "true");
    assert_eq!(v, json!({"message": "Too Many Requests"}));
    assert_eq!(
        verdict(st, &headers, &body),
        (Kind::RateLimited, Action::BackoffAndRetry)
    );
    // The reporting API's: the documented Retry-After.
    h.admin("/faults/amazon-ads/throttle", json!({"next": 1}))
        .await;
    let (st, headers, v, _) = get(&h, "eu", "/reporting/reports/x", &token, Some(&profile)).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    assert!(headers.get("retry-after").is_some());
    assert_eq!(v["code"], "429");

    // Outage: 500 in Amazon's envelope, at the API and at the token endpoint.
    h.admin("/faults/amazon-ads/outage", json!({"for": 60}))
        .await;
    let (st, _, v, _) = get(&h, "eu", "/v2/profiles", &token, None).await;
    assert_eq!(
        (st, v["details"].as_str()),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            Some("Internal Server Error")
        )
    );
    assert_eq!(
        refresh(&h, "eu", &rt).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    h.advance(61);
    assert_eq!(
        get(&h, "eu", "/v2/profiles", &token, None).await.0,
        StatusCode::OK
    );

    // The scope removed: "Not authorized to access scope", which no refresh fixes.
    let g = h.grant_id("amazon-ads").await;
    h.admin(
        &format!("/grants/{g}/remove-scope"),
        json!({"scope": SCOPE}),
    )
    .await;
    let (st, headers, v, body) = get(&h, "eu", "/v2/profiles", &token, None).await;
    assert_eq!(
        (st, v["details"].as_str()),
        (
            StatusCode::UNAUTHORIZED,
            Some("Not authorized to access scope")
        )
    );
    assert_ne!(verdict(st, &headers, &body).1, Action::RefreshAndRetry);

    // An app Amazon has not approved asks for a scope Login with Amazon does not know.
    let q = h
        .authorize(
            &at("fe", "/ap/oa"),
            &[
                ("client_id", CLIENT),
                ("redirect_uri", REDIRECT),
                ("response_type", "code"),
                ("scope", "advertising::everything"),
                ("state", "s9"),
            ],
            "approve",
        )
        .await;
    assert_eq!(q["error"], "invalid_scope");
    assert_eq!(q["error_description"], "An unknown scope was requested");
    h.stop().await;
}

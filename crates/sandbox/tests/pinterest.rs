//! Pinterest at its real paths (platforms-ads.md Part B §2): consent at `/oauth/` with
//! comma-separated scopes, the token endpoint with HTTP Basic only, refreshes that rotate (a new
//! refresh token with its own 60 days each time, the old one refused with 401 code 283), the
//! `user_account` probe, 401 code 3 for a missing scope, and the API sandbox host where only
//! sandbox apps' tokens work (401 code 2 on the other host).

mod harness;

use harness::{Harness, REDIRECT, call};
use reqwest::StatusCode;
use serde_json::{Value, json};

const AUTH: &str = "/pinterest/oauth/";
const TOKEN: &str = "/pinterest/v5/oauth/token";
const PROBE: &str = "/pinterest/v5/user_account";
const SANDBOX_PROBE: &str = "/pinterest/sandbox/v5/user_account";
const DAY: i64 = 86_400;

async fn connect(h: &Harness, client: &str, secret: &str, scope: &str) -> Value {
    let q = h
        .authorize(
            AUTH,
            &[
                ("client_id", client),
                ("redirect_uri", REDIRECT),
                ("response_type", "code"),
                ("scope", scope),
                ("state", "p1"),
            ],
            "approve",
        )
        .await;
    // Credentials in the body are not Pinterest's way: Basic only.
    let (st, _, v, _) = call(h.http.post(h.url(TOKEN)).form(&[
        ("grant_type", "authorization_code"),
        ("code", q["code"].as_str()),
        ("redirect_uri", REDIRECT),
        ("client_id", client),
        ("client_secret", secret),
    ]))
    .await;
    assert_eq!(
        (st, v["code"].clone()),
        (StatusCode::UNAUTHORIZED, json!(2))
    );
    let (st, _, tok, _) = call(
        h.http
            .post(h.url(TOKEN))
            .basic_auth(client, Some(secret))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", q["code"].as_str()),
                ("redirect_uri", REDIRECT),
            ]),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{tok}");
    assert!(tok["access_token"].as_str().unwrap().starts_with("pina_"));
    assert!(tok["refresh_token"].as_str().unwrap().starts_with("pinr_"));
    assert_eq!(tok["expires_in"], 30 * DAY);
    assert_eq!(tok["refresh_token_expires_in"], 60 * DAY);
    tok
}

async fn refresh(h: &Harness, rt: &str) -> (StatusCode, Value) {
    let (st, _, v, _) = call(
        h.http
            .post(h.url(TOKEN))
            .basic_auth("demo-pinterest", Some("demo-pinterest-secret"))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", rt),
                ("continuous_refresh", "true"),
            ]),
    )
    .await;
    (st, v)
}

async fn probe(h: &Harness, path: &str, at: &str) -> (StatusCode, Value) {
    let (st, _, v, _) = call(h.http.get(h.url(path)).bearer_auth(at)).await;
    (st, v)
}

#[tokio::test]
async fn connect_probe_and_rotating_refresh() {
    let h = Harness::start().await;
    let tok = connect(
        &h,
        "demo-pinterest",
        "demo-pinterest-secret",
        "ads:read,user_accounts:read",
    )
    .await;
    assert_eq!(tok["scope"], "ads:read user_accounts:read");
    let at = tok["access_token"].as_str().unwrap();
    let rt = tok["refresh_token"].as_str().unwrap();
    let (st, v) = probe(&h, PROBE, at).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["account_type"], "BUSINESS");
    assert!(v["id"].as_str().is_some() && v["username"].as_str().is_some());

    // Day 29: the refresh rotates, with a new 60 days.
    h.advance(29 * DAY);
    let (st, v) = refresh(&h, rt).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let rt2 = v["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(rt2, rt);
    assert_eq!(v["refresh_token_expires_in"], 60 * DAY);
    assert_eq!(
        v["refresh_token_expires_at"],
        1_800_000_000 + 29 * DAY + 60 * DAY
    );
    // The old one is refused: 401 code 283.
    let (st, v) = refresh(&h, rt).await;
    assert_eq!(
        (st, v["code"].clone()),
        (StatusCode::UNAUTHORIZED, json!(283))
    );
    // Day 31: the first access token expired, 401 code 2; the new one works.
    h.advance(2 * DAY);
    let (st, v) = probe(&h, PROBE, at).await;
    assert_eq!(
        (st, v["code"].clone()),
        (StatusCode::UNAUTHORIZED, json!(2))
    );
    assert_eq!(v["status"], "failure");
    let (st, v) = refresh(&h, &rt2).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        probe(&h, PROBE, v["access_token"].as_str().unwrap())
            .await
            .0,
        StatusCode::OK
    );
    h.stop().await;
}

#[tokio::test]
async fn a_missing_scope_is_401_code_3_and_the_environments_keep_their_tokens() {
    let h = Harness::start().await;
    let tok = connect(
        &h,
        "demo-pinterest",
        "demo-pinterest-secret",
        "ads:read,user_accounts:read",
    )
    .await;
    let at = tok["access_token"].as_str().unwrap();
    let g = h.grant_id("pinterest").await;
    h.admin(
        &format!("/grants/{g}/remove-scope"),
        json!({"scope": "user_accounts:read"}),
    )
    .await;
    let (st, v) = probe(&h, PROBE, at).await;
    assert_eq!(
        (st, v["code"].clone()),
        (StatusCode::UNAUTHORIZED, json!(3))
    );
    // ads:read is still there.
    let (st, v) = probe(&h, "/pinterest/v5/ad_accounts", at).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["items"].as_array().unwrap().len(), 2);

    // A production token on the sandbox host: the one authentication failure, code 2.
    let (st, v) = probe(&h, "/pinterest/sandbox/v5/ad_accounts", at).await;
    assert_eq!(
        (st, v["code"].clone()),
        (StatusCode::UNAUTHORIZED, json!(2))
    );
    // A sandbox app's token works there only.
    let sb = connect(
        &h,
        "demo-pinterest-sandbox",
        "demo-pinterest-sandbox-secret",
        "ads:read,user_accounts:read",
    )
    .await;
    let sat = sb["access_token"].as_str().unwrap();
    assert_eq!(probe(&h, SANDBOX_PROBE, sat).await.0, StatusCode::OK);
    let (st, v) = probe(&h, PROBE, sat).await;
    assert_eq!(
        (st, v["code"].clone()),
        (StatusCode::UNAUTHORIZED, json!(2))
    );
    let counters = h.counters().await;
    assert!(
        counters["providers"]["pinterest"]["wrong_environment_sent"]
            .as_u64()
            .unwrap()
            >= 2,
        "{counters}"
    );

    // Revoked by the person: code 2 as well; the refresh token is dead (283).
    h.admin(&format!("/grants/{g}/revoke"), json!({})).await;
    let (st, v) = probe(&h, "/pinterest/v5/ad_accounts", at).await;
    assert_eq!(
        (st, v["code"].clone()),
        (StatusCode::UNAUTHORIZED, json!(2))
    );
    let (st, v) = refresh(&h, tok["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        (st, v["code"].clone()),
        (StatusCode::UNAUTHORIZED, json!(283))
    );
    h.stop().await;
}

#[tokio::test]
async fn reports_are_pending_then_finished_and_faults_answer_as_pinterest() {
    let h = Harness::start().await;
    let tok = connect(
        &h,
        "demo-pinterest",
        "demo-pinterest-secret",
        "ads:read,user_accounts:read",
    )
    .await;
    let at = tok["access_token"].as_str().unwrap();
    let (_, v) = probe(&h, "/pinterest/v5/ad_accounts", at).await;
    let account = v["items"][0]["id"].as_str().unwrap().to_string();
    let (st, _, v, _) = call(
        h.http
            .post(h.url(&format!("/pinterest/v5/ad_accounts/{account}/reports")))
            .bearer_auth(at)
            .json(&json!({"start_date": "2027-01-01", "end_date": "2027-01-14", "granularity": "DAY"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["report_status"], "IN_PROGRESS");
    let token = v["token"].as_str().unwrap().to_string();
    let path = format!("/pinterest/v5/ad_accounts/{account}/reports?token={token}");
    let (st, v) = probe(&h, &path, at).await;
    assert_eq!(
        (st, v["report_status"].clone()),
        (StatusCode::OK, json!("IN_PROGRESS"))
    );
    h.advance(3600);
    let (_, v) = probe(&h, &path, at).await;
    assert_eq!(v["report_status"], "FINISHED", "{v}");
    // Another account's: not found.
    let (st, _) = probe(&h, "/pinterest/v5/ad_accounts/1/reports?token=x", at).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    h.admin("/faults/pinterest/throttle", json!({"next": 1}))
        .await;
    let (st, v) = probe(&h, PROBE, at).await;
    assert_eq!(
        (st, v["code"].clone()),
        (StatusCode::TOO_MANY_REQUESTS, json!(8))
    );
    h.admin(
        "/faults/pinterest/outage",
        json!({"for": "1m", "mode": "html", "status": 503}),
    )
    .await;
    let (st, v) = probe(&h, PROBE, at).await;
    assert_eq!(
        (st, v["code"].clone()),
        (StatusCode::SERVICE_UNAVAILABLE, json!(4197))
    );
    h.stop().await;
}

//! X Ads at its real paths (platforms-ads.md Part B §4): the OAuth 1.0a three legs
//! (`/oauth/request_token`, `/oauth/authorize`, `/oauth/access_token`) and the Ads API, every
//! request's HMAC-SHA1 signature checked the way X does — a tampered, replayed, stale or unknown
//! one is a 401 in X's envelope — plus the revoke, throttle and outage faults.

mod harness;

use harness::{Harness, REDIRECT, call};
use reqwest::StatusCode;
use serde_json::json;
use std::collections::HashMap;
use tokenwarden_core::oauth1;

const KEY: &str = "demo-x-ads";
const SECRET: &str = "demo-x-ads-secret";
const NOW: i64 = 1_800_000_000;

/// Signs `method url` (with a form body, when given) as tokenwarden does.
fn sign(
    method: &str,
    url: &str,
    form: Option<&[u8]>,
    token: Option<(&str, &str)>,
    nonce: &str,
    timestamp: i64,
    extra: &[(&str, &str)],
) -> String {
    let url = url::Url::parse(url).unwrap();
    oauth1::authorization(
        &oauth1::Request {
            method,
            url: &url,
            form_body: form,
        },
        &oauth1::Credentials {
            consumer_key: KEY,
            consumer_secret: SECRET,
            token: token.map(|t| t.0),
            token_secret: token.map_or("", |t| t.1),
        },
        &oauth1::Stamp {
            nonce,
            timestamp,
            extra,
        },
    )
}

fn form_of(text: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(text.as_bytes())
        .into_owned()
        .collect()
}

/// The three legs; returns (token, token secret, user id, screen name).
async fn connect(h: &Harness, n: &str) -> (String, String, String, String) {
    let url = h.url("/x-ads/oauth/request_token");
    let body = b"x_auth_access_type=write";
    let auth = sign(
        "POST",
        &url,
        Some(body),
        None,
        &format!("rt-{n}"),
        NOW,
        &[("oauth_callback", REDIRECT)],
    );
    let (st, headers, _, text) = call(
        h.http
            .post(&url)
            .header("authorization", auth)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_vec()),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{text}");
    assert_eq!(headers["content-type"], "application/x-www-form-urlencoded");
    let rt = form_of(&text);
    assert_eq!(rt["oauth_callback_confirmed"], "true");
    let (req_token, req_secret) = (rt["oauth_token"].clone(), rt["oauth_token_secret"].clone());
    // The page, then its button.
    let page = h
        .http
        .get(h.url("/x-ads/oauth/authorize"))
        .query(&[("oauth_token", &req_token)])
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let r = h
        .http
        .post(h.url("/x-ads/oauth/authorize"))
        .form(&[
            ("oauth_token", req_token.as_str()),
            ("decision", "approve"),
            ("account", "ads-person"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let back = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    assert!(back.as_str().starts_with(REDIRECT), "{back}");
    let q: HashMap<String, String> = back.query_pairs().into_owned().collect();
    assert_eq!(q["oauth_token"], req_token);
    let verifier = q["oauth_verifier"].clone();
    let url = h.url("/x-ads/oauth/access_token");
    let auth = sign(
        "POST",
        &url,
        None,
        Some((&req_token, &req_secret)),
        &format!("at-{n}"),
        NOW,
        &[("oauth_verifier", &verifier)],
    );
    let (st, _, _, text) = call(h.http.post(&url).header("authorization", auth)).await;
    assert_eq!(st, StatusCode::OK, "{text}");
    let at = form_of(&text);
    assert_eq!(at["screen_name"], "ads-person");
    assert!(at["oauth_token"].starts_with(&format!("{}-", at["user_id"])));
    // The request token is spent: the same exchange again is refused.
    let again = sign(
        "POST",
        &url,
        None,
        Some((&req_token, &req_secret)),
        &format!("at2-{n}"),
        NOW,
        &[("oauth_verifier", &verifier)],
    );
    let (st, _, v, _) = call(h.http.post(&url).header("authorization", again)).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(v["errors"][0]["code"], 89);
    (
        at["oauth_token"].clone(),
        at["oauth_token_secret"].clone(),
        at["user_id"].clone(),
        at["screen_name"].clone(),
    )
}

async fn accounts(
    h: &Harness,
    token: (&str, &str),
    nonce: &str,
) -> (StatusCode, reqwest::header::HeaderMap, serde_json::Value) {
    let url = h.url("/x-ads/12/accounts");
    let auth = sign("GET", &url, None, Some(token), nonce, NOW, &[]);
    let (st, headers, v, _) = call(h.http.get(&url).header("authorization", auth)).await;
    (st, headers, v)
}

fn unauthorized(v: &serde_json::Value) {
    assert_eq!(v["errors"][0]["code"], "UNAUTHORIZED_ACCESS", "{v}");
    assert!(v["request"].is_object(), "{v}");
}

#[tokio::test]
async fn three_legs_then_signed_calls_and_every_bad_signature_refused() {
    let h = Harness::start().await;
    let (tok, sec, _, _) = connect(&h, "a").await;
    let (st, _, v) = accounts(&h, (&tok, &sec), "n1").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["data_type"], "account");
    let account = v["data"][0]["id"].as_str().unwrap().to_string();

    // The query is signed: the campaigns of one account, a page of 5.
    let url = h.url(&format!("/x-ads/12/accounts/{account}/campaigns?count=5"));
    let auth = sign("GET", &url, None, Some((&tok, &sec)), "n2", NOW, &[]);
    let (st, _, v, _) = call(h.http.get(&url).header("authorization", &auth)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["data"].as_array().unwrap().len(), 5);
    // Tampered: the same header on another query.
    let other = h.url(&format!("/x-ads/12/accounts/{account}/campaigns?count=6"));
    let (st, _, v, _) = call(h.http.get(&other).header("authorization", &auth)).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    unauthorized(&v);
    // Replayed: the same header again.
    let (st, _, v, _) = call(h.http.get(&url).header("authorization", &auth)).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "a nonce is accepted once");
    unauthorized(&v);
    // Another token secret, another consumer secret.
    let (st, _, v) = accounts(&h, (&tok, "not-the-secret"), "n3").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    unauthorized(&v);
    let url = h.url("/x-ads/12/accounts");
    let forged = oauth1::authorization(
        &oauth1::Request {
            method: "GET",
            url: &url::Url::parse(&url).unwrap(),
            form_body: None,
        },
        &oauth1::Credentials {
            consumer_key: KEY,
            consumer_secret: "guessed",
            token: Some(&tok),
            token_secret: &sec,
        },
        &oauth1::Stamp {
            nonce: "n4",
            timestamp: NOW,
            extra: &[],
        },
    );
    let (st, _, v, _) = call(h.http.get(&url).header("authorization", forged)).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    unauthorized(&v);
    // Stale: an hour off the platform's clock.
    let stale = sign("GET", &url, None, Some((&tok, &sec)), "n5", NOW - 3600, &[]);
    let (st, _, v, _) = call(h.http.get(&url).header("authorization", stale)).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    unauthorized(&v);
    // A token never issued, a Bearer token, no header at all.
    let (st, _, v) = accounts(&h, ("1-unknown", &sec), "n6").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    unauthorized(&v);
    let (st, _, v, _) = call(h.http.get(&url).bearer_auth(&tok)).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    unauthorized(&v);
    let (st, _, v, _) = call(h.http.get(&url)).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    unauthorized(&v);
    // Still good with a fresh nonce: nothing above hurt the connection.
    let (st, _, _) = accounts(&h, (&tok, &sec), "n7").await;
    assert_eq!(st, StatusCode::OK);
    h.stop().await;
}

#[tokio::test]
async fn the_request_token_leg_checks_its_signature_and_callback() {
    let h = Harness::start().await;
    let url = h.url("/x-ads/oauth/request_token");
    // The body is signed: changing it after signing breaks the signature.
    let auth = sign(
        "POST",
        &url,
        Some(b"x_auth_access_type=write"),
        None,
        "r1",
        NOW,
        &[("oauth_callback", REDIRECT)],
    );
    let (st, _, v, _) = call(
        h.http
            .post(&url)
            .header("authorization", auth)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("x_auth_access_type=read"),
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(v["errors"][0]["code"], 32);
    // A callback the app did not register.
    let auth = sign(
        "POST",
        &url,
        None,
        None,
        "r2",
        NOW,
        &[("oauth_callback", "https://evil.example/cb")],
    );
    let (st, _, v, _) = call(h.http.post(&url).header("authorization", auth)).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(v["errors"][0]["code"], 415);
    // Deny on the page: back with denied=<token>, and the token cannot be exchanged.
    let auth = sign(
        "POST",
        &url,
        None,
        None,
        "r3",
        NOW,
        &[("oauth_callback", REDIRECT)],
    );
    let (st, _, _, text) = call(h.http.post(&url).header("authorization", auth)).await;
    assert_eq!(st, StatusCode::OK);
    let rt = form_of(&text);
    let r = h
        .http
        .post(h.url("/x-ads/oauth/authorize"))
        .form(&[
            ("oauth_token", rt["oauth_token"].as_str()),
            ("decision", "deny"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(loc.contains("denied="), "{loc}");
    assert!(!loc.contains("oauth_verifier"), "{loc}");
    let page = h
        .http
        .get(h.url("/x-ads/oauth/authorize"))
        .query(&[("oauth_token", rt["oauth_token"].as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 400, "a denied request token is gone");
    h.stop().await;
}

#[tokio::test]
async fn revoke_throttle_and_outage_faults() {
    let h = Harness::start().await;
    let (tok, sec, _, _) = connect(&h, "b").await;
    // Throttle: 429 with X's headers, the reset a Unix time.
    h.admin("/faults/x-ads/throttle", json!({"next": 1})).await;
    let (st, headers, v) = accounts(&h, (&tok, &sec), "f1").await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{v}");
    let reset: i64 = headers["x-rate-limit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(reset > NOW && reset <= NOW + 3600, "{reset}");
    assert_eq!(headers["x-rate-limit-remaining"], "0");
    let (st, _, _) = accounts(&h, (&tok, &sec), "f2").await;
    assert_eq!(st, StatusCode::OK, "the throttle was for one call");
    // Outage: 503 with retry-after.
    h.admin("/faults/x-ads/outage", json!({"for": 60})).await;
    let (st, headers, _) = accounts(&h, (&tok, &sec), "f3").await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    assert!(headers.contains_key("retry-after"));
    h.admin("/faults/x-ads/clear", json!({})).await;
    // Revoke: the user removed the app; the token is refused for good.
    let grant = h.grant_id("x-ads").await;
    h.admin(&format!("/grants/{grant}/revoke"), json!({})).await;
    let (st, _, v) = accounts(&h, (&tok, &sec), "f4").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    unauthorized(&v);
    h.stop().await;
}

#[tokio::test]
async fn async_jobs_are_processing_until_done() {
    let h = Harness::start().await;
    let (tok, sec, _, _) = connect(&h, "c").await;
    let (_, _, v) = accounts(&h, (&tok, &sec), "j0").await;
    let account = v["data"][0]["id"].as_str().unwrap().to_string();
    let url = h.url(&format!(
        "/x-ads/12/stats/jobs/accounts/{account}?entity=CAMPAIGN&granularity=DAY&metric_groups=ENGAGEMENT"
    ));
    let auth = sign("POST", &url, None, Some((&tok, &sec)), "j1", NOW, &[]);
    let (st, _, v, _) = call(h.http.post(&url).header("authorization", auth)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["status"], "PROCESSING");
    assert!(v["data"]["url"].is_null());
    let id = v["data"]["id"].as_str().unwrap().to_string();
    let get = h.url(&format!(
        "/x-ads/12/stats/jobs/accounts/{account}?job_ids={id}"
    ));
    let auth = sign("GET", &get, None, Some((&tok, &sec)), "j2", NOW, &[]);
    let (_, _, v, _) = call(h.http.get(&get).header("authorization", auth)).await;
    assert_eq!(v["data"][0]["status"], "PROCESSING");
    h.advance(60);
    let auth = sign("GET", &get, None, Some((&tok, &sec)), "j3", NOW + 60, &[]);
    let (_, _, v, _) = call(h.http.get(&get).header("authorization", auth)).await;
    assert_eq!(v["data"][0]["status"], "SUCCESS", "{v}");
    h.stop().await;
}

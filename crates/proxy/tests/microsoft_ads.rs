//! The proxy against the sandbox's Microsoft Advertising (platforms-ads.md Part A §2): the app's
//! developer token rides on every call; an expired token (109 in a REST 401) is healed by one
//! refresh that stores the rotated refresh token; 117 CallRateExceeded is waited out for the
//! documented 60 s (on the sandbox's scaled clock); 106 UserIsNotAuthorized comes back as it is,
//! with no refresh, and leaves the connection active.

mod support;

use serde_json::json;
use support::{World, seen, world};

const PROBE: &str = "/CustomerManagement/v13/User/Query";
const CAMPAIGNS: &str = "/CampaignManagement/v13/Campaigns/QueryByAccountId";

fn get_user(w: &World, connection: &str) -> reqwest::RequestBuilder {
    w.http
        .post(w.proxy_url(connection, PROBE))
        .bearer_auth(&w.key)
        .json(&json!({"UserId": null}))
}

async fn stored_refresh_token(w: &World, connection: &str) -> String {
    w.d.state
        .store
        .get_tokens(&connection.parse().unwrap())
        .await
        .unwrap()
        .unwrap()
        .set
        .refresh_token
        .unwrap()
        .expose()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn microsoft_ads_expiry_is_healed_by_one_refresh_storing_the_rotated_token() {
    let w = world(1.0).await;
    let grant = w.connect("microsoft-ads", "msa").await;
    // The connect flow's probe recorded the customer: the CustomerId header's default.
    let conn =
        w.d.state
            .store
            .get_connection(&"msa".parse().unwrap())
            .await
            .unwrap()
            .unwrap();
    let customer = conn
        .account
        .as_ref()
        .map(|a| a.id.clone())
        .expect("the customer is recorded");
    let s = seen(get_user(&w, "msa")).await;
    assert_eq!((s.status, s.kind.as_str()), (200, "ok"), "{s:?}");
    assert_eq!(
        s.body["CustomerRoles"][0]["CustomerId"].to_string(),
        customer
    );
    let before = stored_refresh_token(&w, "msa").await;
    w.admin_post(&format!("/grants/{grant}/expire"), json!({}))
        .await;
    let s = seen(get_user(&w, "msa")).await;
    assert_eq!((s.status, s.kind.as_str()), (200, "ok"), "{s:?}");
    assert!(s.refreshed, "healed by a refresh: {s:?}");
    assert_eq!(s.attempts, 2);
    assert_eq!(w.refreshes(&grant).await, 1);
    let after = stored_refresh_token(&w, "msa").await;
    assert_ne!(before, after, "the rotated refresh token is stored");
    // The next expiry refreshes with the stored (rotated) token, and it works.
    w.admin_post(&format!("/grants/{grant}/expire"), json!({}))
        .await;
    let s = seen(get_user(&w, "msa")).await;
    assert_eq!((s.status, s.kind.as_str()), (200, "ok"), "{s:?}");
    assert_eq!(w.refreshes(&grant).await, 2);
    assert_ne!(stored_refresh_token(&w, "msa").await, after);
    // A campaign call: CustomerId comes from the connection, CustomerAccountId from the caller.
    let account = s.body["CustomerRoles"][0]["AccountIds"][0].to_string();
    let s = seen(
        w.http
            .post(w.proxy_url("msa", CAMPAIGNS))
            .bearer_auth(&w.key)
            .header("CustomerAccountId", &account)
            .json(&json!({"AccountId": account, "CampaignType": "Search"})),
    )
    .await;
    assert_eq!((s.status, s.kind.as_str()), (200, "ok"), "{s:?}");
    assert!(s.body["Campaigns"].is_array());
    // Without CustomerAccountId: 1009, the caller's request to fix, no refresh.
    let s = seen(
        w.http
            .post(w.proxy_url("msa", CAMPAIGNS))
            .bearer_auth(&w.key)
            .json(&json!({"AccountId": account})),
    )
    .await;
    assert_eq!(
        (s.status, s.kind.as_str()),
        (400, "invalid_request"),
        "{s:?}"
    );
    assert_eq!(s.body["Errors"][0]["Code"], 1009);
    assert_eq!(w.refreshes(&grant).await, 2);
    w.d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn microsoft_ads_call_rate_exceeded_is_waited_out_for_sixty_seconds() {
    // Microsoft asks for 60 s (no header, only the documented advice); at 120× that is half a
    // real second.
    let w = world(120.0).await;
    w.connect("microsoft-ads", "mq").await;
    w.admin_post("/counters/reset", json!({})).await;
    w.admin_post("/faults/microsoft-ads/throttle", json!({"next": 1}))
        .await;
    let s = seen(get_user(&w, "mq")).await;
    assert_eq!((s.status, s.kind.as_str()), (200, "ok"), "{s:?}");
    assert_eq!(s.attempts, 2);
    // With a budget shorter than the wait, Microsoft's answer comes back classified, with the
    // 60 s wait (in real milliseconds: 60 s of the sandbox's clock at 120×).
    w.admin_post("/faults/microsoft-ads/throttle", json!({"next": 1}))
        .await;
    let s = seen(get_user(&w, "mq").header("tokenwarden-budget-ms", "50")).await;
    assert_eq!((s.status, s.kind.as_str()), (429, "rate_limited"), "{s:?}");
    assert_eq!(s.attempts, 1);
    assert_eq!(s.body["Errors"][0]["Code"], 117);
    assert_eq!(
        s.headers
            .get("tokenwarden-retry-after-ms")
            .and_then(|v| v.to_str().ok()),
        Some("500"),
        "{s:?}"
    );
    w.d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microsoft_ads_user_is_not_authorized_is_not_refreshed() {
    let w = world(1.0).await;
    let grant = w.connect("microsoft-ads", "m106").await;
    // Another customer than the user's: 106 in a 401, which a new token cannot fix.
    let s = seen(
        w.http
            .post(w.proxy_url("m106", CAMPAIGNS))
            .bearer_auth(&w.key)
            .header("CustomerId", "1")
            .header("CustomerAccountId", "2")
            .json(&json!({"AccountId": "2"})),
    )
    .await;
    assert_eq!(s.status, 401, "{s:?}");
    assert_eq!(s.kind, "insufficient_scope", "{s:?}");
    assert_ne!(s.action, "refresh_and_retry");
    assert!(!s.refreshed);
    assert_eq!(s.attempts, 1);
    assert_eq!(s.body["Errors"][0]["Code"], 106);
    assert_eq!(w.refreshes(&grant).await, 0);
    let conn =
        w.d.state
            .store
            .get_connection(&"m106".parse().unwrap())
            .await
            .unwrap()
            .unwrap();
    assert_eq!(conn.state.as_str(), "active");
    // The connection still works for the user's own customer.
    let s = seen(get_user(&w, "m106")).await;
    assert_eq!((s.status, s.kind.as_str()), (200, "ok"), "{s:?}");
    w.d.stop().await;
}

const SOAP_GET_USER: &str = "/Api/CustomerManagement/v13/CustomerManagementService.svc";

/// A GetUser envelope as the platform documents it, with the `AuthenticationToken` header entry
/// left empty for tokenwarden and no developer token (the app's is added).
fn soap_get_user(header_entries: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header>{header_entries}</s:Header><s:Body><GetUserRequest xmlns="https://bingads.microsoft.com/Customer/v13"><UserId i:nil="true" xmlns:i="http://www.w3.org/2001/XMLSchema-instance"/></GetUserRequest></s:Body></s:Envelope>"#
    )
}

const EMPTY_TOKEN: &str =
    r#"<h:AuthenticationToken xmlns:h="https://bingads.microsoft.com/Customer/v13"/>"#;

async fn soap(w: &World, connection: &str, envelope: String) -> (u16, HeaderMap, String) {
    let r = w
        .http
        .post(w.proxy_url(connection, SOAP_GET_USER))
        .bearer_auth(&w.key)
        .header("Content-Type", "text/xml; charset=utf-8")
        .header("SOAPAction", "GetUser")
        .body(envelope)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap())
}

use reqwest::header::HeaderMap;

fn attempts(h: &HeaderMap) -> &str {
    h.get("tokenwarden-attempts")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microsoft_ads_soap_calls_carry_the_token_in_the_envelope_and_heal_an_expiry() {
    let w = world(1.0).await;
    let grant = w.connect("microsoft-ads", "msoap").await;
    // The token goes into the empty AuthenticationToken entry and the app's developer token is
    // added beside it: the sandbox's SOAP GetUser checks both (105 otherwise).
    let (status, h, body) = soap(&w, "msoap", soap_get_user(EMPTY_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<GetUserResponse"), "{body}");
    assert_eq!(attempts(&h), "1");
    // An expired token answers a SOAP fault 109 in HTTP 500: one refresh, the envelope written
    // again with the new token, and the replay succeeds.
    w.admin_post(&format!("/grants/{grant}/expire"), json!({}))
        .await;
    let (status, h, body) = soap(&w, "msoap", soap_get_user(EMPTY_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(attempts(&h), "2");
    assert_eq!(
        h.get("tokenwarden-refreshed").and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(w.refreshes(&grant).await, 1);
    // A token the caller wrote there is replaced by the connection's.
    let own = r#"<AuthenticationToken xmlns="https://bingads.microsoft.com/Customer/v13">not-a-token</AuthenticationToken>"#;
    let (status, _, body) = soap(&w, "msoap", soap_get_user(own)).await;
    assert_eq!(status, 200, "{body}");
    // An envelope without the entry is refused before anything is sent, saying what to send.
    let (status, h, body) = soap(&w, "msoap", soap_get_user("")).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("bad_envelope") && body.contains("<AuthenticationToken>"),
        "{body}"
    );
    assert_eq!(attempts(&h), "0");
    let (status, _, body) = soap(&w, "msoap", "not xml at all".into()).await;
    assert_eq!(status, 400, "{body}");
    // The same call as JSON is REST: the Bearer header, as before.
    let s = seen(get_user(&w, "msoap")).await;
    assert_eq!((s.status, s.kind.as_str()), (200, "ok"), "{s:?}");
    let conn =
        w.d.state
            .store
            .get_connection(&"msoap".parse().unwrap())
            .await
            .unwrap()
            .unwrap();
    assert_eq!(conn.state.as_str(), "active");
    w.d.stop().await;
}

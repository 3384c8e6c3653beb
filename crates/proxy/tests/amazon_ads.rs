//! The proxy against the sandbox's Amazon Ads (platforms-ads.md Part A §3), through an app of the
//! EU region: calls go to the EU API host with the app's client id and the connection's profile,
//! an expired token is healed by one refresh ("Authentication failed") keeping the stored refresh
//! token, the 401s that are not token problems come back classified without a refresh, and the
//! throttles are waited out (the API Gateway's without Retry-After by backoff).

mod support;

use serde_json::{Value, json};
use support::{World, seen, world};

const PROBE: &str = "/v2/profiles";

/// Registers the app `eu` (the sandbox's demo client, region EU) and connects `connection`
/// through it; returns the sandbox grant id.
async fn connect_eu(w: &World, connection: &str) -> String {
    let now = w.d.state.clock.now();
    w.d.state
        .store
        .put_app(&tokenwarden_store::App {
            provider: "amazon-ads".parse().unwrap(),
            id: "eu".parse().unwrap(),
            client_id: "demo-amazon-ads".into(),
            client_secret: tokenwarden_core::secret::Secret::new("demo-amazon-ads-secret"),
            redirect_uri: format!("{}callback/amazon-ads", w.d.base),
            environment: tokenwarden_core::connection::Environment::Production,
            region: Some("eu".into()),
            developer_token: None,
            user_agent: None,
            refresh_token_ends_after: None,
            identity: None,
            created_at: now,
            updated_at: now,
        })
        .await
        .unwrap();
    w.connect_app("amazon-ads", connection, Some("eu")).await
}

fn profiles(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| p["profileId"].as_u64().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn amazon_ads_eu_calls_expiry_is_healed_by_one_refresh() {
    let w = world(1.0).await;
    let grant = connect_eu(&w, "amz").await;
    let conn =
        w.d.state
            .store
            .get_connection(&"amz".parse().unwrap())
            .await
            .unwrap()
            .unwrap();
    assert_eq!(conn.region.as_deref(), Some("eu"));
    assert!(
        conn.api_base
            .trim_end_matches('/')
            .ends_with("/amazon-ads/region/eu"),
        "{}",
        conn.api_base
    );
    // The EU host's profiles (UK first), and its first profile recorded as the account.
    let s = seen(w.get("amz", PROBE)).await;
    assert_eq!((s.status, s.kind.as_str()), (200, "ok"), "{s:?}");
    let eu = profiles(&s.body);
    assert_eq!(s.body[0]["countryCode"], "UK");
    assert_eq!(
        conn.account.as_ref().map(|a| a.id.as_str()),
        Some(eu[0].as_str())
    );
    // Advertiser calls carry the recorded profile by default, and the caller's own when sent.
    let s = seen(
        w.http
            .post(w.proxy_url("amz", "/sp/campaigns/list"))
            .bearer_auth(&w.key)
            .json(&json!({})),
    )
    .await;
    assert_eq!(s.status, 200, "{s:?}");
    let s = seen(
        w.http
            .post(w.proxy_url("amz", "/sp/campaigns/list"))
            .bearer_auth(&w.key)
            .header("Amazon-Advertising-API-Scope", &eu[1])
            .json(&json!({})),
    )
    .await;
    assert_eq!(s.status, 200, "{s:?}");

    w.admin_post(&format!("/grants/{grant}/expire"), json!({}))
        .await;
    let s = seen(w.get("amz", PROBE)).await;
    assert_eq!((s.status, s.kind.as_str()), (200, "ok"), "{s:?}");
    assert!(s.refreshed, "healed by a refresh: {s:?}");
    assert_eq!(s.attempts, 2);
    assert_eq!(w.refreshes(&grant).await, 1);
    // Not rotated: the kept refresh token works again.
    w.admin_post(&format!("/grants/{grant}/expire"), json!({}))
        .await;
    let s = seen(w.get("amz", PROBE)).await;
    assert_eq!((s.status, s.kind.as_str()), (200, "ok"), "{s:?}");
    assert_eq!(w.refreshes(&grant).await, 2);
    w.d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn amazon_ads_scope_401s_are_not_refreshed() {
    let w = world(1.0).await;
    let grant = connect_eu(&w, "amzs").await;
    // A profile unknown on the EU host (another region's, or none): no matching advertiser.
    let s = seen(
        w.get("amzs", "/v2/sp/campaigns")
            .header("Amazon-Advertising-API-Scope", "100000000000001"),
    )
    .await;
    assert_eq!(s.status, 401, "{s:?}");
    assert_eq!(
        (s.kind.as_str(), s.action.as_str()),
        ("not_found", "fix_request"),
        "{s:?}"
    );
    assert_eq!(s.body["details"], "No matching advertiser found for scope");
    assert_eq!(s.attempts, 1);
    assert!(!s.refreshed);
    // No permission on the profile (the scope removed at Amazon).
    w.admin_post(
        &format!("/grants/{grant}/remove-scope"),
        json!({"scope": "advertising::campaign_management"}),
    )
    .await;
    let s = seen(w.get("amzs", PROBE)).await;
    assert_eq!(s.status, 401, "{s:?}");
    assert_eq!(s.kind, "insufficient_scope", "{s:?}");
    assert_eq!(s.body["details"], "Not authorized to access scope");
    assert!(!s.refreshed);
    assert_eq!(w.refreshes(&grant).await, 0, "no 401 of these refreshed");
    let conn =
        w.d.state
            .store
            .get_connection(&"amzs".parse().unwrap())
            .await
            .unwrap()
            .unwrap();
    assert_ne!(conn.state.as_str(), "reauth_required");
    w.d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn amazon_ads_throttles_are_waited_out() {
    // The backoff's first step and the reporting API's Retry-After, at 60× platform time.
    let w = world(60.0).await;
    connect_eu(&w, "amzt").await;
    w.admin_post("/counters/reset", json!({})).await;
    // The API Gateway's 429: no Retry-After, AccessDeniedException: backed off, then retried.
    w.admin_post("/faults/amazon-ads/throttle", json!({"next": 1}))
        .await;
    let s = seen(w.get("amzt", PROBE)).await;
    assert_eq!((s.status, s.kind.as_str()), (200, "ok"), "{s:?}");
    assert_eq!(s.attempts, 2);
    // The reporting API's 429 with Retry-After.
    let s = seen(w.get("amzt", PROBE)).await;
    let profile = profiles(&s.body)[0].clone();
    w.admin_post("/faults/amazon-ads/throttle", json!({"next": 1}))
        .await;
    let s = seen(
        w.http
            .post(w.proxy_url("amzt", "/reporting/reports"))
            .bearer_auth(&w.key)
            .header("Amazon-Advertising-API-Scope", &profile)
            .json(&json!({
                "name": "r", "startDate": "2026-11-01", "endDate": "2026-11-02",
                "configuration": {"reportTypeId": "spCampaigns", "adProduct": "SPONSORED_PRODUCTS",
                                  "groupBy": ["campaign"], "columns": ["clicks"],
                                  "timeUnit": "SUMMARY", "format": "GZIP_JSON"}
            })),
    )
    .await;
    assert_eq!(s.status, 200, "{s:?}");
    assert_eq!(s.attempts, 2);
    assert!(s.waited_ms > 0, "{s:?}");
    let c = w.counters("amazon-ads").await;
    assert_eq!(c["too_many_requests_sent"], 2, "{c}");
    w.d.stop().await;
}

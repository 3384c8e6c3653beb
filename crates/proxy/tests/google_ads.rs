//! The proxy against the sandbox's Google Ads (platforms-ads.md Part A §1): an expired token is
//! healed by one refresh (OAUTH_TOKEN_EXPIRED), a short-term quota answer is waited out as its
//! `quotaErrorDetails.retryDelay` says (Google sends no Retry-After), and a revoked grant turns
//! the connection `reauth_required` with the link.

mod support;

use serde_json::json;
use support::{seen, world};

const PROBE: &str = "/customers:listAccessibleCustomers";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn google_ads_expiry_is_healed_by_one_refresh() {
    let w = world(1.0).await;
    let grant = w.connect("google-ads", "gads").await;
    let s = seen(w.get("gads", PROBE)).await;
    assert_eq!((s.status, s.kind.as_str()), (200, "ok"), "{s:?}");
    assert!(s.body["resourceNames"].is_array(), "{s:?}");
    w.admin_post(&format!("/grants/{grant}/expire"), json!({}))
        .await;
    let s = seen(w.get("gads", PROBE)).await;
    assert_eq!((s.status, s.kind.as_str()), (200, "ok"), "{s:?}");
    assert!(s.refreshed, "healed by a refresh: {s:?}");
    assert_eq!(s.attempts, 2);
    assert_eq!(w.refreshes(&grant).await, 1);
    // Google does not rotate: the refresh kept the stored refresh token, which still works.
    w.admin_post(&format!("/grants/{grant}/expire"), json!({}))
        .await;
    let s = seen(w.get("gads", PROBE)).await;
    assert_eq!((s.status, s.kind.as_str()), (200, "ok"), "{s:?}");
    assert_eq!(w.refreshes(&grant).await, 2);
    w.d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn google_ads_quota_answer_is_waited_out_as_retry_delay_says() {
    // The sandbox asks for 30 s (retryDelay "30s"); at 60× that is half a real second.
    let w = world(60.0).await;
    w.connect("google-ads", "gq").await;
    w.admin_post("/counters/reset", json!({})).await;
    w.admin_post("/faults/google-ads/throttle", json!({"next": 1}))
        .await;
    let s = seen(w.get("gq", PROBE)).await;
    assert_eq!((s.status, s.kind.as_str()), (200, "ok"), "{s:?}");
    assert_eq!(s.attempts, 2);
    assert!(s.waited_ms >= 400, "waited the retryDelay: {s:?}");
    // With a budget shorter than the wait, Google's answer comes back classified, with the wait.
    w.admin_post("/faults/google-ads/throttle", json!({"next": 1}))
        .await;
    let s = seen(w.get("gq", PROBE).header("tokenwarden-budget-ms", "50")).await;
    assert_eq!((s.status, s.kind.as_str()), (429, "rate_limited"), "{s:?}");
    assert_eq!(s.attempts, 1);
    assert!(
        s.headers.contains_key("tokenwarden-retry-after-ms"),
        "{s:?}"
    );
    let c = w.counters("google-ads").await;
    assert_eq!(c["too_many_requests_sent"], 2, "{c}");
    w.d.stop().await;
}

/// Issue 16: the app's daily quota (rateScope DEVELOPER, blamed on the app, a retryDelay of
/// hours) pauses every connection of that app, not just the one that met it: the next call of
/// another connection is answered by tokenwarden without reaching Google. One user's throttle
/// (rateScope ACCOUNT) pauses only that connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn google_ads_app_quota_pauses_every_connection_of_the_app() {
    let w = world(60.0).await;
    w.connect("google-ads", "gq-a").await;
    w.connect("google-ads", "gq-b").await;
    w.connect("google-ads", "gq-c").await;

    // One user's throttle: the other connections carry on.
    w.admin_post("/faults/google-ads/throttle", json!({"next": 1}))
        .await;
    let s = seen(w.get("gq-a", PROBE).header("tokenwarden-budget-ms", "50")).await;
    assert_eq!((s.status, s.kind.as_str()), (429, "rate_limited"), "{s:?}");
    let s = seen(w.get("gq-b", PROBE).header("tokenwarden-budget-ms", "50")).await;
    assert_eq!((s.status, s.kind.as_str()), (200, "ok"), "{s:?}");

    // The app's daily quota: every connection of the app waits the retryDelay.
    w.admin_post("/counters/reset", json!({})).await;
    w.admin_post(
        "/faults/google-ads/throttle",
        json!({"next": 1, "limit": "app"}),
    )
    .await;
    let s = seen(w.get("gq-b", PROBE).header("tokenwarden-budget-ms", "50")).await;
    assert_eq!((s.status, s.kind.as_str()), (429, "rate_limited"), "{s:?}");
    assert_eq!(
        s.body["error"]["details"][0]["errors"][0]["errorCode"]["quotaError"], "RESOURCE_EXHAUSTED",
        "{s:?}"
    );
    let calls_before = w.counters("google-ads").await["api_calls"].clone();
    let s = seen(w.get("gq-c", PROBE).header("tokenwarden-budget-ms", "50")).await;
    assert_eq!(s.status, 503, "{s:?}");
    assert_eq!(s.body["error"]["code"], "budget_exhausted", "{s:?}");
    let retry_after: u64 = s.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(
        retry_after > 60,
        "the quota's wait, not a guess: {retry_after}"
    );
    let c = w.counters("google-ads").await;
    assert_eq!(
        c["api_calls"], calls_before,
        "gq-c never reached Google: {c}"
    );
    assert_eq!(c["too_many_requests_sent"], 1, "{c}");
    // One problem, on the app, saying when calls resume; no connection carries one.
    let problems =
        w.d.state
            .store
            .app_problems(&"google-ads".parse().unwrap(), &"demo".parse().unwrap())
            .await
            .unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].code.as_str(), "app_quota_exhausted");
    assert!(
        problems[0]
            .fix
            .contains("Every connection of this app waits until"),
        "{problems:?}"
    );
    for id in ["gq-a", "gq-b", "gq-c"] {
        let conn =
            w.d.state
                .store
                .get_connection(&id.parse().unwrap())
                .await
                .unwrap()
                .unwrap();
        assert_eq!(conn.state.as_str(), "active", "{id}");
        assert!(conn.problems.is_empty(), "{id}: {:?}", conn.problems);
    }
    w.d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_ads_revoked_grant_asks_for_reauthorization() {
    let w = world(1.0).await;
    let grant = w.connect("google-ads", "ggone").await;
    w.admin_post(&format!("/grants/{grant}/revoke"), json!({}))
        .await;
    let link = format!("{}connections/ggone/reauthorize", w.d.base);
    // OAUTH_TOKEN_REVOKED says so itself: Google's answer comes back, classified, with the link,
    // and no refresh is tried (it would be refused).
    let s = seen(w.get("ggone", PROBE)).await;
    assert_eq!(s.status, 401, "{s:?}");
    assert_eq!(
        (s.kind.as_str(), s.action.as_str()),
        ("token_revoked", "reauthorize"),
        "{s:?}"
    );
    assert_eq!(
        s.body["error"]["details"][0]["errors"][0]["errorCode"]["authenticationError"],
        "OAUTH_TOKEN_REVOKED"
    );
    assert_eq!(s.headers["tokenwarden-reauthorize-url"], link.as_str());
    assert_eq!(w.refreshes(&grant).await, 0);
    // The next call answers at once without reaching Google.
    let calls = w.counters("google-ads").await["api_calls"].as_u64();
    let s = seen(w.get("ggone", PROBE)).await;
    assert_eq!(s.status, 409, "{s:?}");
    assert_eq!(s.body["error"]["code"], "reauth_required");
    assert_eq!(s.body["error"]["reauthorize_url"].as_str().unwrap(), link);
    assert_eq!(w.counters("google-ads").await["api_calls"].as_u64(), calls);
    let conn =
        w.d.state
            .store
            .get_connection(&"ggone".parse().unwrap())
            .await
            .unwrap()
            .unwrap();
    assert_eq!(conn.state.as_str(), "reauth_required");
    w.d.stop().await;
}

/// A client account under the user's manager, through the proxy: the caller's own
/// `login-customer-id` passes unchanged and the call works; without it Google's 403
/// USER_PERMISSION_DENIED comes back classified as a missing permission with the header named in
/// the fix, no refresh is tried, and the connection stays active (Part A §1 headers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_ads_client_account_through_the_manager_with_login_customer_id() {
    let w = world(1.0).await;
    let grant = w.connect("google-ads", "gmcc").await;
    let s = seen(w.get("gmcc", PROBE)).await;
    let manager = s.body["resourceNames"][0]
        .as_str()
        .unwrap()
        .trim_start_matches("customers/")
        .to_string();
    let search = |customer: &str| {
        w.http
            .post(w.proxy_url("gmcc", &format!("/customers/{customer}/googleAds:search")))
            .bearer_auth(&w.key)
    };
    let s = seen(
        search(&manager).json(&json!({"query": "SELECT customer_client.id FROM customer_client"})),
    )
    .await;
    assert_eq!((s.status, s.kind.as_str()), (200, "ok"), "{s:?}");
    let client = s.body["results"][0]["customerClient"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let campaigns = json!({"query": "SELECT campaign.id FROM campaign"});
    let s = seen(
        search(&client)
            .header("login-customer-id", &manager)
            .json(&campaigns),
    )
    .await;
    assert_eq!((s.status, s.kind.as_str()), (200, "ok"), "{s:?}");
    let s = seen(search(&client).json(&campaigns)).await;
    assert_eq!(s.status, 403, "{s:?}");
    assert_eq!(s.action.as_str(), "fix_request", "{s:?}");
    assert!(
        s.headers
            .get("tokenwarden-kind")
            .is_some_and(|k| k != "token_revoked" && k != "token_expired"),
        "{s:?}"
    );
    assert_eq!(w.refreshes(&grant).await, 0, "no refresh for a permission");
    let conn =
        w.d.state
            .store
            .get_connection(&"gmcc".parse().unwrap())
            .await
            .unwrap()
            .unwrap();
    assert_eq!(conn.state.as_str(), "active");
    w.d.stop().await;
}

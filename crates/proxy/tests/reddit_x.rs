//! The proxy against the sandbox's Reddit Ads and X API v2 (platforms-ads.md Part B §3, §4):
//! Reddit's calls carry the app's User-Agent even when the caller's HTTP library sent its own
//! default (which Reddit throttles as a bot), an expiry said only in `WWW-Authenticate` is healed
//! by one refresh that itself passes Reddit's User-Agent check and keeps the permanent refresh
//! token; X's expiries are healed by refreshes that each spend the refresh token stored by the one
//! before (single-use rotation), and a missing scope comes back without a refresh.

mod support;

use serde_json::json;
use support::{seen, world};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reddit_calls_carry_the_apps_user_agent_and_expiry_is_healed_by_one_refresh() {
    let w = world(1.0).await;
    let grant = w.connect("reddit", "rd").await;
    // A library's default User-Agent: replaced by the app's, so Reddit answers.
    let s = seen(
        w.get("rd", "/api/v3/me")
            .header("user-agent", "python-requests/2.31.0"),
    )
    .await;
    assert_eq!((s.status, s.kind.as_str()), (200, "ok"), "{s:?}");
    assert!(s.body["data"]["id"].as_str().unwrap().starts_with("t2_"));
    let s = seen(w.get("rd", "/api/v3/me/ad_accounts")).await;
    assert_eq!(s.status, 200, "{s:?}");
    let account = s.body["data"][0]["id"].as_str().unwrap().to_string();
    let s = seen(w.get("rd", &format!("/api/v3/ad_accounts/{account}/campaigns"))).await;
    assert_eq!(s.status, 200, "{s:?}");

    // Expired: 401 {"error": 401} with the reason only in WWW-Authenticate; one refresh heals it.
    for round in 1..=2 {
        w.admin_post(&format!("/grants/{grant}/expire"), json!({}))
            .await;
        let s = seen(w.get("rd", "/api/v3/me")).await;
        assert_eq!((s.status, s.kind.as_str()), (200, "ok"), "{s:?}");
        assert!(s.refreshed, "healed by a refresh: {s:?}");
        assert_eq!(
            w.refreshes(&grant).await,
            round,
            "the kept refresh token works again"
        );
    }
    // A retired v2 endpoint comes back as is, never refreshed.
    let s = seen(w.get("rd", "/api/v2.0/accounts")).await;
    assert_eq!((s.status, s.action.as_str()), (410, "fix_request"), "{s:?}");
    assert!(!s.refreshed);
    // The sandbox saw no call without a proper User-Agent.
    let c = w.counters("reddit").await;
    assert_eq!(c["rate_limited_sent"], 0, "{c}");
    w.d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn x_expiries_are_healed_by_refreshes_that_each_spend_the_last_refresh_token() {
    let w = world(1.0).await;
    let grant = w.connect("x", "xv2").await;
    let s = seen(w.get("xv2", "/2/users/me")).await;
    assert_eq!((s.status, s.kind.as_str()), (200, "ok"), "{s:?}");
    for round in 1..=3 {
        w.admin_post(&format!("/grants/{grant}/expire"), json!({}))
            .await;
        let s = seen(w.get("xv2", "/2/users/me")).await;
        assert_eq!(
            (s.status, s.kind.as_str()),
            (200, "ok"),
            "round {round}: {s:?}"
        );
        assert!(s.refreshed, "{s:?}");
        assert_eq!(w.refreshes(&grant).await, round);
    }
    // The scope removed at X: 403, returned without a refresh, the connection kept.
    w.admin_post(
        &format!("/grants/{grant}/remove-scope"),
        json!({"scope": "users.read"}),
    )
    .await;
    let s = seen(w.get("xv2", "/2/users/me")).await;
    assert_eq!(
        (s.status, s.kind.as_str()),
        (403, "insufficient_scope"),
        "{s:?}"
    );
    assert!(!s.refreshed);
    let conn =
        w.d.state
            .store
            .get_connection(&"xv2".parse().unwrap())
            .await
            .unwrap()
            .unwrap();
    assert_ne!(conn.state.as_str(), "reauth_required");
    w.d.stop().await;
}

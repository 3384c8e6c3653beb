//! The app's developer token never leaves the wire: Microsoft Advertising calls run through the
//! proxy and the monitor's probe with every crate logging at TRACE into a buffer (a healthy call,
//! an expiry healed by a refresh, a 106, a throttle, a missing header, an outage), and neither
//! the logs, the proxied answers, the connection's events, the apps list nor the API's errors
//! contain it, although the sandbox saw it on every call.

mod support;

use serde_json::json;
use support::{seen, world};
use tokenwarden_testkit::logs::logs;

const DEVELOPER_TOKEN: &str = "BBD37VB98";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_developer_token_is_never_logged_shown_or_returned() {
    let logs = logs();
    assert_eq!(
        tokenwarden_sandbox::demo_developer_token("microsoft-ads"),
        Some(DEVELOPER_TOKEN)
    );

    let w = world(1.0).await;
    let grant = w.connect("microsoft-ads", "mlog").await;
    let mut answers = String::new();
    let user_query = || {
        w.http
            .post(w.proxy_url("mlog", "/CustomerManagement/v13/User/Query"))
            .bearer_auth(&w.key)
            .json(&json!({"UserId": null}))
    };
    let mut record = |s: &support::Seen| {
        answers.push_str(&format!("{:?} {}\n", s.headers, s.body));
    };
    // A healthy call: the sandbox accepted the developer token (it answers 105 without it).
    let s = seen(user_query()).await;
    assert_eq!(s.status, 200, "{s:?}");
    record(&s);
    // Expiry healed by a refresh.
    w.admin_post(&format!("/grants/{grant}/expire"), json!({}))
        .await;
    let s = seen(user_query()).await;
    assert!(s.refreshed, "{s:?}");
    record(&s);
    // 106, and a missing CustomerAccountId (1009).
    let campaigns = "/CampaignManagement/v13/Campaigns/QueryByAccountId";
    let s = seen(
        w.http
            .post(w.proxy_url("mlog", campaigns))
            .bearer_auth(&w.key)
            .header("CustomerId", "1")
            .header("CustomerAccountId", "2")
            .json(&json!({"AccountId": "2"})),
    )
    .await;
    assert_eq!(s.body["Errors"][0]["Code"], 106);
    record(&s);
    let s = seen(
        w.http
            .post(w.proxy_url("mlog", campaigns))
            .bearer_auth(&w.key)
            .json(&json!({})),
    )
    .await;
    assert_eq!(s.body["Errors"][0]["Code"], 1009);
    record(&s);
    // A throttle returned with its wait, and an outage.
    w.admin_post("/faults/microsoft-ads/throttle", json!({"next": 1}))
        .await;
    let s = seen(user_query().header("tokenwarden-budget-ms", "1")).await;
    assert_eq!(s.kind, "rate_limited", "{s:?}");
    record(&s);
    w.admin_post("/faults/microsoft-ads/outage", json!({"for": "10m"}))
        .await;
    let s = seen(user_query().header("tokenwarden-budget-ms", "1")).await;
    assert_ne!(s.status, 200);
    record(&s);
    // The monitor's probe during the outage and after it.
    for _ in 0..2 {
        let r = w
            .http
            .post(format!("{}v1/connections/mlog/probe", w.d.base))
            .bearer_auth(&w.admin)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        answers.push_str(&r.text().await.unwrap());
        w.admin_post("/faults/microsoft-ads/clear", json!({})).await;
    }
    // The pages of the API a person reads: the connection's events, the apps, an error.
    for path in [
        "v1/connections/mlog/events",
        "v1/connections/mlog",
        "v1/apps",
        "v1/events",
        "v1/connections/no-such-connection",
    ] {
        let r = w
            .http
            .get(format!("{}{path}", w.d.base))
            .bearer_auth(&w.admin)
            .send()
            .await
            .unwrap();
        answers.push_str(&r.text().await.unwrap());
    }
    w.d.stop().await;

    let text = logs.text();
    assert!(
        text.len() > 1000,
        "the scenario logged something at trace level ({} bytes)",
        text.len()
    );
    assert!(answers.contains("mlog"), "the pages were read: {answers}");
    assert!(
        !text.contains(DEVELOPER_TOKEN),
        "the developer token reached the logs"
    );
    assert!(
        !answers.contains(DEVELOPER_TOKEN),
        "the developer token reached an answer, event or page"
    );
}

//! The per-platform circuit breaker (issue 14 item 4): during an outage of a platform's token
//! endpoint, a few failures open it; then refreshes are held back without a call, one trial goes
//! at a time once the wait is over, a failed trial opens it for longer, and an answer closes it.
//! Counted at the sandbox's token endpoint, not timed.

use crate::support;

use support::{World, world};
use tokenwarden_store::Store;

async fn refresh_calls(w: &World) -> u64 {
    let sb = w.d.sandbox_base.clone().unwrap();
    let v: serde_json::Value = w
        .http
        .get(format!("{sb}/_sandbox/counters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Those that reached the token endpoint, and those an outage answered at the edge.
    let p = &v["providers"]["snapchat"];
    p["token_calls_by_grant_type"]["refresh_token"]
        .as_u64()
        .unwrap_or(0)
        + p["token_calls_in_outage"].as_u64().unwrap()
}

async fn force_refresh(w: &World, id: &str) -> (u16, serde_json::Value) {
    let r = w
        .http
        .post(format!("{}v1/connections/{id}/refresh", w.d.base))
        .bearer_auth(&w.admin)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

/// Ends the breaker's current wait at once (as if it had passed), keeping everything else.
async fn wait_over(w: &World) {
    sqlx::query(
        "UPDATE circuit_breakers SET open_until = 1 WHERE breaker = 'token_endpoint/snapchat'",
    )
    .execute(w.raw.pool())
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_outage_gets_one_trial_refresh_at_a_time_not_one_per_connection() {
    let w = world().await;
    let sb = w.d.sandbox_base.clone().unwrap();
    let ids: Vec<String> = (1..=6).map(|i| format!("br-{i}")).collect();
    for id in &ids {
        let flow = w.start_and_approve("snapchat", id).await;
        assert_eq!(w.finish(&flow).await.0, 303);
    }
    let r = w
        .http
        .post(format!("{sb}/_sandbox/faults/snapchat/outage"))
        .json(&serde_json::json!({"for": "10h", "status": 503}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let before = refresh_calls(&w).await;

    // Three failures in a row open the breaker; the other connections are held back without a
    // call, told when to come back, and stay usable.
    for (i, id) in ids.iter().enumerate() {
        let (status, body) = force_refresh(&w, id).await;
        assert_eq!(status, 503, "{id}: {body}");
        let calls = refresh_calls(&w).await - before;
        assert_eq!(calls, (i as u64 + 1).min(3), "{id}: {body}");
    }
    let (_, last) = force_refresh(&w, "br-6").await;
    assert!(
        last.to_string().contains("one trial refresh at a time"),
        "{last}"
    );
    let (_, c) = w.api(&w.admin, "v1/connections/br-6").await;
    assert_ne!(c["state"], "reauth_required", "{c}");
    let (status, _) = w.api(&w.reader, "v1/connections/br-6/token").await;
    assert_eq!(
        status, 200,
        "a held-back connection's valid token still serves"
    );
    let store: &dyn Store = &*w.d.state.store;
    let (first, _) = store.breaker("token_endpoint/snapchat").await.unwrap();
    assert_eq!(first.state.step, 1);

    // The wait is over: of six callers at once, one makes the trial call. It fails: the breaker
    // opens again, for longer.
    wait_over(&w).await;
    let calls_before = refresh_calls(&w).await;
    let all = futures::future::join_all(ids.iter().map(|id| force_refresh(&w, id))).await;
    assert!(all.iter().all(|(s, _)| *s == 503), "{all:?}");
    assert_eq!(refresh_calls(&w).await - calls_before, 1, "one trial");
    let (again, now) = store.breaker("token_endpoint/snapchat").await.unwrap();
    assert_eq!(again.state.step, 2);
    let open_for = again.state.open_until.unwrap() - now;
    assert!(
        open_for > chrono::TimeDelta::seconds(6),
        "the second wait (10 s) is longer than the first (5 s): {open_for}"
    );

    // The platform is back: the next trial succeeds and closes the breaker; every connection
    // refreshes again, each with its own call.
    let r = w
        .http
        .post(format!("{sb}/_sandbox/faults/snapchat/clear"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    wait_over(&w).await;
    let calls_before = refresh_calls(&w).await;
    let (status, body) = force_refresh(&w, "br-1").await;
    assert_eq!(status, 200, "{body}");
    for id in &ids[1..] {
        let (status, body) = force_refresh(&w, id).await;
        assert_eq!(status, 200, "{id}: {body}");
    }
    assert_eq!(refresh_calls(&w).await - calls_before, 6);
    let (closed, _) = store.breaker("token_endpoint/snapchat").await.unwrap();
    assert_eq!(closed.state, Default::default());
    w.d.stop().await;
}

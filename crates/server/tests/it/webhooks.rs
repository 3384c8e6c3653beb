//! Webhooks end to end: a revocation at the sandbox turns into one event and one signed webhook,
//! retried under the same `webhook-id` when the receiver fails, and re-connecting announces the
//! recovery.

#![allow(
    clippy::disallowed_methods,
    reason = "tests and benchmarks may read the wall clock"
)]
use crate::support;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use chrono::TimeDelta;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use support::*;
use tokenwarden_core::webhook;

#[derive(Debug, Clone)]
struct Received {
    id: String,
    timestamp: i64,
    signature: String,
    body: String,
}

/// A receiver on loopback that fails its first `fail_first` requests with a 503.
async fn receiver(fail_first: usize) -> (String, Arc<Mutex<Vec<Received>>>) {
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let seen = Arc::new(Mutex::new(0usize));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let got = got.clone();
            move |headers: HeaderMap, body: Bytes| {
                let got = got.clone();
                let seen = seen.clone();
                async move {
                    let h = |n: &str| {
                        headers
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string()
                    };
                    got.lock().unwrap().push(Received {
                        id: h("webhook-id"),
                        timestamp: h("webhook-timestamp").parse().unwrap_or(0),
                        signature: h("webhook-signature"),
                        body: String::from_utf8_lossy(&body).into_owned(),
                    });
                    let mut n = seen.lock().unwrap();
                    *n += 1;
                    if *n <= fail_first {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::NO_CONTENT
                    }
                }
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, got)
}

async fn wait_for(got: &Arc<Mutex<Vec<Received>>>, n: usize) -> Vec<Received> {
    for _ in 0..200 {
        if got.lock().unwrap().len() >= n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    got.lock().unwrap().clone()
}

#[tokio::test]
async fn a_revocation_is_one_event_and_one_signed_webhook_and_recovery_is_announced() {
    let w = world().await;
    let (url, got) = receiver(1).await;

    // Only admins manage endpoints; bad URLs are refused with the reason.
    assert_eq!(
        w.post(&w.reader, "v1/webhooks", json!({"url": url}))
            .await
            .0,
        403
    );
    let (status, e) = w
        .post(&w.admin, "v1/webhooks", json!({"url": "ftp://x/"}))
        .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (400, Some("bad_webhook_url"))
    );
    let (status, e) = w
        .post(
            &w.admin,
            "v1/webhooks",
            json!({"url": "https://user:pw@hooks.example.com/"}),
        )
        .await;
    assert_eq!(status, 400, "{e}");
    let (status, created) = w.post(&w.admin, "v1/webhooks", json!({"url": url})).await;
    assert_eq!(status, 201, "{created}");
    let hook = created["id"].as_str().unwrap().to_string();
    let secret = created["secret"].as_str().unwrap().to_string();
    let key = webhook::secret_key(&secret).unwrap();
    // The secret is shown once; listings never carry it.
    let (_, list) = w.api(&w.admin, "v1/webhooks").await;
    assert_eq!(list["webhooks"].as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains(&secret));

    let flow = w.start_and_approve("snapchat", "wh-snap").await;
    assert_eq!(w.finish(&flow).await.0, 303);
    // pending -> active is a transition too. The receiver fails the first attempt; the retry
    // is due 5 s later on the daemon's clock.
    wait_for(&got, 1).await;
    // The failure is recorded (and its retry scheduled from the clock's reading then) only after
    // the receiver has answered: advancing the clock before that would schedule the retry past
    // the advance, so wait for the record first.
    for _ in 0..200 {
        let recorded =
            w.d.state
                .store
                .list_deliveries(&hook, 10)
                .await
                .unwrap()
                .iter()
                .any(|d| d.last_error.is_some());
        if recorded {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    w.clock.advance(TimeDelta::seconds(6));
    let first = wait_for(&got, 2).await;
    let activated: Value = serde_json::from_str(&first.last().unwrap().body).unwrap();
    assert_eq!(activated["data"]["to"], "active");
    assert_eq!(first[0].id, first[1].id, "the retry keeps its webhook-id");
    got.lock().unwrap().clear();

    // Revoke at the platform; the next probe finds it.
    w.revoke_latest_grant("snapchat").await;
    let probe_every = TimeDelta::minutes(31);
    w.clock.advance(probe_every);
    let http = tokenwarden_server::probe::client();
    tokenwarden_server::monitor::probe_due(&w.d.state, &http).await;
    let (_, c) = w.api(&w.admin, "v1/connections/wh-snap").await;
    assert_eq!(c["state"], "reauth_required", "{c}");
    // A second probe of a dead connection changes nothing and announces nothing.
    w.clock.advance(probe_every);
    tokenwarden_server::monitor::probe_due(&w.d.state, &http).await;

    wait_for(&got, 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let got_now = got.lock().unwrap().clone();
    assert_eq!(got_now.len(), 1, "exactly one webhook");
    let m = &got_now[0];
    assert!(
        webhook::verify(&key, &m.id, m.timestamp, &m.body, &m.signature),
        "the signature verifies over id.timestamp.body"
    );
    assert!(!webhook::verify(
        &key,
        &m.id,
        m.timestamp + 1,
        &m.body,
        &m.signature
    ));
    let now = chrono::Utc::now().timestamp();
    assert!((now - m.timestamp).abs() < 60, "timestamp is real time");
    let body: Value = serde_json::from_str(&m.body).unwrap();
    assert_eq!(body["type"], "connection.state_changed");
    assert_eq!(body["data"]["connection_id"], "wh-snap");
    assert_eq!(body["data"]["from"], "active");
    assert_eq!(body["data"]["to"], "reauth_required");
    assert!(
        !body["data"]["problems"][0]["fix"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    assert!(
        body["data"]["reauthorize_url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}connections/wh-snap/reauthorize", w.d.base))
    );
    let (_, events) = w.api(&w.admin, "v1/connections/wh-snap/events").await;
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "reauth_required").count(),
        1,
        "{kinds:?}"
    );
    got.lock().unwrap().clear();

    // Re-connect: active again, announced.
    let flow = w.start_and_approve("snapchat", "wh-snap").await;
    assert_eq!(w.finish(&flow).await.0, 303);
    let back = wait_for(&got, 1).await;
    let body: Value = serde_json::from_str(&back[0].body).unwrap();
    assert_eq!(
        (body["data"]["from"].as_str(), body["data"]["to"].as_str()),
        (Some("reauth_required"), Some("active"))
    );

    // The delivery log: every delivery, the first with its failed attempt. The receiver has the
    // last message as soon as it answers; the outbox records "delivered" a moment after.
    let mut log = Vec::new();
    for attempt in 0.. {
        let (_, l) = w
            .api(&w.admin, &format!("v1/webhooks/{hook}/deliveries"))
            .await;
        log = l["deliveries"].as_array().unwrap().clone();
        if log.len() == 3 && log.iter().all(|d| d["status"] == "delivered") || attempt == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(log.iter().all(|d| d["status"] == "delivered"), "{log:?}");
    assert_eq!(log[2]["attempts"], 2);
    let everything = format!("{log:?}{:?}", got.lock().unwrap());
    assert!(!everything.contains(&secret));

    // Deleting the endpoint stops deliveries.
    assert_eq!(
        w.delete(&w.admin, &format!("v1/webhooks/{hook}")).await,
        200
    );
    assert_eq!(w.api(&w.admin, &format!("v1/webhooks/{hook}")).await.0, 404);
    w.d.stop().await;
}

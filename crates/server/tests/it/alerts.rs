//! Alerts reach a Slack-compatible receiver on loopback: a revoked grant, a connection degraded
//! for longer than the threshold and an expiry forecast each alert once, with the fix, and never
//! with a secret. A receiver that fails gets the alert again on the next pass.

use crate::support;

use chrono::TimeDelta;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use support::{World, world};
use tokenwarden_core::secret::Secret;
use tokenwarden_server::alerts::{AlertSettings, SlackWebhook, Watcher};

struct Receiver {
    url: String,
    got: tokio::sync::mpsc::UnboundedReceiver<String>,
    status: Arc<AtomicU16>,
}

async fn receiver() -> Receiver {
    let (tx, got) = tokio::sync::mpsc::unbounded_channel();
    let status = Arc::new(AtomicU16::new(200));
    let st = status.clone();
    let app = axum::Router::new().route(
        "/services/T000/B000/hook",
        axum::routing::post(move |body: axum::Json<serde_json::Value>| {
            let tx = tx.clone();
            let st = st.clone();
            async move {
                let code = st.load(Ordering::SeqCst);
                if code == 200 {
                    let _ = tx.send(body["text"].as_str().unwrap_or_default().to_string());
                }
                axum::http::StatusCode::from_u16(code).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/services/T000/B000/hook",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver { url, got, status }
}

impl Receiver {
    fn drain(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(m) = self.got.try_recv() {
            out.push(m);
        }
        out
    }
}

async fn post(w: &World, url: String, body: serde_json::Value) {
    let r = w.http.post(url).json(&body).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

async fn last_grant(w: &World, provider: &str) -> String {
    let sb = w.d.sandbox_base.clone().unwrap();
    let v: serde_json::Value = w
        .http
        .get(format!("{sb}/_sandbox/grants?provider={provider}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["grants"].as_array().unwrap().last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn revocation_sustained_degradation_and_expiry_forecasts_alert_once_with_the_fix() {
    let w = world().await;
    let sb = w.d.sandbox_base.clone().unwrap();
    let mut rx = receiver().await;
    let notifier = SlackWebhook::new(&Secret::new(rx.url.clone())).unwrap();
    let settings = AlertSettings {
        degraded_after: TimeDelta::minutes(30),
        poll: std::time::Duration::from_millis(50),
    };
    let s = &w.d.state;

    for (p, id) in [
        ("snapchat", "al-snap"),
        ("tiktok", "al-tt"),
        ("meta", "al-meta"),
    ] {
        let flow = w.start_and_approve(p, id).await;
        assert_eq!(w.finish(&flow).await.0, 303);
    }
    // History before the notifier started is not alerted.
    let mut watcher = Watcher::start(s).await;
    watcher.pass(s, &notifier, &settings).await;
    assert_eq!(rx.drain(), Vec::<String>::new());

    // The platform revokes the Snapchat grant; the next refresh is refused.
    let g = last_grant(&w, "snapchat").await;
    post(
        &w,
        format!("{sb}/_sandbox/grants/{g}/revoke"),
        serde_json::json!({}),
    )
    .await;
    let (status, _) = w.api(&w.reader, "v1/connections/al-snap/token").await;
    assert_eq!(
        status, 200,
        "the current token still serves until it is refused"
    );
    let r = w
        .http
        .post(format!("{}v1/connections/al-snap/refresh", w.d.base))
        .bearer_auth(&w.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    watcher.pass(s, &notifier, &settings).await;
    let got = rx.drain();
    assert_eq!(got.len(), 1, "{got:?}");
    let m = &got[0];
    assert!(
        m.contains("`al-snap`") && m.contains("needs re-authorization"),
        "{m}"
    );
    assert!(
        m.contains("*Fix:*") && m.to_lowercase().contains("authoriz"),
        "{m}"
    );
    assert!(m.contains("/connections/al-snap/reauthorize"), "{m}");
    assert!(m.contains("/connections/al-snap|dashboard"), "{m}");
    assert!(!m.contains("demo-snapchat-secret"));
    watcher.pass(s, &notifier, &settings).await;
    assert!(rx.drain().is_empty(), "alerted once");

    // TikTok's token endpoint is down: degraded at once, alerted only after 30 minutes of it.
    post(
        &w,
        format!("{sb}/_sandbox/faults/tiktok/outage"),
        serde_json::json!({"for": "10h", "status": 503}),
    )
    .await;
    let r = w
        .http
        .post(format!("{}v1/connections/al-tt/refresh", w.d.base))
        .bearer_auth(&w.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let (_, c) = w.api(&w.admin, "v1/connections/al-tt").await;
    assert_eq!(c["state"], "degraded", "{c}");
    watcher.pass(s, &notifier, &settings).await;
    assert!(
        rx.drain().is_empty(),
        "not yet: degraded for less than 30 minutes"
    );
    w.clock.advance(TimeDelta::minutes(31));
    // The receiver is down for a moment: the alert waits for the next pass.
    rx.status.store(500, Ordering::SeqCst);
    watcher.pass(s, &notifier, &settings).await;
    assert!(rx.drain().is_empty());
    rx.status.store(200, Ordering::SeqCst);
    watcher.pass(s, &notifier, &settings).await;
    let got = rx.drain();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].contains("`al-tt`") && got[0].contains("degraded"),
        "{}",
        got[0]
    );
    assert!(got[0].contains("*Fix:*"));
    watcher.pass(s, &notifier, &settings).await;
    assert!(rx.drain().is_empty(), "alerted once per episode");
    post(
        &w,
        format!("{sb}/_sandbox/faults/tiktok/clear"),
        serde_json::json!({}),
    )
    .await;

    // The platform stops accepting the TikTok app's secret: one alert for the app, not one per
    // connection or per attempt.
    post(
        &w,
        format!("{sb}/_sandbox/apps/tiktok/demo-tiktok/rotate-secret"),
        serde_json::json!({}),
    )
    .await;
    for _ in 0..2 {
        w.http
            .post(format!("{}v1/connections/al-tt/refresh", w.d.base))
            .bearer_auth(&w.admin)
            .send()
            .await
            .unwrap();
        watcher.pass(s, &notifier, &settings).await;
    }
    let got = rx.drain();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].contains("app `demo` (TikTok Login Kit) was refused"),
        "{}",
        got[0]
    );
    assert!(
        got[0].contains("*Fix:*") && !got[0].contains("re-authorize page"),
        "{}",
        got[0]
    );

    // Meta's long-lived token cannot be renewed: the monitor forecasts its end days ahead.
    w.clock.advance(TimeDelta::days(55));
    let http = tokenwarden_server::probe::client();
    let id = tokenwarden_core::id::ConnectionId::parse("al-meta").unwrap();
    tokenwarden_server::monitor::probe(s, &http, &id).await;
    watcher.pass(s, &notifier, &settings).await;
    let got: Vec<String> = rx
        .drain()
        .into_iter()
        .filter(|m| m.contains("`al-meta`"))
        .collect();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].contains("will stop working soon"), "{}", got[0]);
    assert!(got[0].contains("re-authorize"), "{}", got[0]);
    for _ in 0..3 {
        w.clock.advance(TimeDelta::hours(20));
        tokenwarden_server::monitor::probe(s, &http, &id).await;
        watcher.pass(s, &notifier, &settings).await;
        assert!(
            !rx.drain().iter().any(|m| m.contains("`al-meta`")),
            "the same forecast is not repeated as the days count down"
        );
    }
    // A replica taking the notifier over (or this one restarted) reads the whole history and
    // every open condition again: each alert was recorded as sent in the database, so none goes
    // twice.
    let mut other = Watcher::default();
    other.pass(s, &notifier, &settings).await;
    other.pass(s, &notifier, &settings).await;
    let again = rx.drain();
    assert!(again.is_empty(), "re-sent after a takeover: {again:?}");
    w.d.stop().await;
}

#[tokio::test]
async fn the_notifier_runs_beside_the_daemon_until_it_stops() {
    let mut w = world().await;
    let mut rx = receiver().await;
    let notifier = SlackWebhook::new(&Secret::new(rx.url.clone())).unwrap();
    let task = tokio::spawn(tokenwarden_server::alerts::run(
        w.d.state.clone(),
        notifier,
        AlertSettings {
            degraded_after: TimeDelta::minutes(30),
            poll: std::time::Duration::from_millis(20),
        },
        w.d.stopping(),
    ));
    w.d.adopt(task);
    let flow = w.start_and_approve("snapchat", "run-1").await;
    w.finish(&flow).await;
    let sb = w.d.sandbox_base.clone().unwrap();
    let g = last_grant(&w, "snapchat").await;
    post(
        &w,
        format!("{sb}/_sandbox/grants/{g}/revoke"),
        serde_json::json!({}),
    )
    .await;
    w.http
        .post(format!("{}v1/connections/run-1/refresh", w.d.base))
        .bearer_auth(&w.admin)
        .send()
        .await
        .unwrap();
    let m = tokio::time::timeout(std::time::Duration::from_secs(30), rx.got.recv())
        .await
        .expect("an alert arrives")
        .unwrap();
    assert!(m.contains("`run-1`"), "{m}");
    w.d.stop().await;
}

/// Issue 24: a database that refuses writes cannot record a problem on a connection, so the
/// alert comes from the token service's memory: once per episode, with the fix, and again for a
/// new episode after the held sets were stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_refusing_writes_alerts_once_per_episode() {
    let w = world().await;
    let mut rx = receiver().await;
    let notifier = SlackWebhook::new(&Secret::new(rx.url.clone())).unwrap();
    let settings = AlertSettings {
        degraded_after: TimeDelta::minutes(30),
        poll: std::time::Duration::from_millis(50),
    };
    let s = &w.d.state;
    let flow = w.start_and_approve("tiktok", "al-full").await;
    assert_eq!(w.finish(&flow).await.0, 303);
    let mut watcher = Watcher::start(s).await;
    watcher.pass(s, &notifier, &settings).await;
    assert_eq!(rx.drain(), Vec::<String>::new());

    for episode in 0..2 {
        // The token is due; the platform answers the refresh slowly, and the database stops
        // taking writes after the refresh took its lease: the answer cannot be stored.
        w.clock.advance(TimeDelta::hours(3));
        let sb = w.d.sandbox_base.clone().unwrap();
        post(
            &w,
            format!("{sb}/_sandbox/faults/tiktok/latency"),
            serde_json::json!({"latency": "1500ms", "for": "1m"}),
        )
        .await;
        let fetch = {
            let (http, base, key) = (w.http.clone(), w.d.base.clone(), w.reader.clone());
            tokio::spawn(async move {
                let r = http
                    .get(format!("{base}v1/connections/al-full/token"))
                    .bearer_auth(key)
                    .send()
                    .await
                    .unwrap();
                (
                    r.status().as_u16(),
                    r.json::<serde_json::Value>().await.unwrap(),
                )
            })
        };
        // Writes stop once the refresh is on its way: its lease taken and, TikTok's refresh
        // tokens rotating, its sending recorded (a holder that cannot record that it is about to
        // spend a rotating refresh token does not spend it).
        for attempt in 0.. {
            assert!(attempt < 1000, "the refresh never took its lease");
            let (owner, sent): (Option<String>, Option<String>) = sqlx::query_as(
                "SELECT lease_owner, refresh_sent_by FROM token_sets WHERE connection_id = 'al-full'",
            )
            .fetch_one(w.raw.pool())
            .await
            .unwrap();
            if owner.is_some() && sent.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        w.refuse_writes(true).await;
        let (status, body) = fetch.await.unwrap();
        post(
            &w,
            format!("{sb}/_sandbox/faults/tiktok/clear"),
            serde_json::json!({}),
        )
        .await;
        assert_eq!(status, 200, "the new token is served from memory: {body}");
        assert_eq!(s.tokens.held_in_memory(), 1);
        watcher.pass(s, &notifier, &settings).await;
        watcher.pass(s, &notifier, &settings).await;
        let got = rx.drain();
        assert_eq!(got.len(), 1, "episode {episode}: one alert: {got:?}");
        assert!(got[0].contains("refuses writes"), "{}", got[0]);
        assert!(
            got[0].contains("*Fix:*") && got[0].contains("Free space"),
            "{}",
            got[0]
        );
        let token = body["access_token"].as_str().unwrap();
        assert!(!got[0].contains(token));
        // Writes come back: the held set is stored, and the episode is over.
        w.refuse_writes(false).await;
        let (status, _) = w.api(&w.reader, "v1/connections/al-full/token").await;
        assert_eq!(status, 200);
        assert_eq!(s.tokens.held_in_memory(), 0);
        watcher.pass(s, &notifier, &settings).await;
        assert_eq!(rx.drain(), Vec::<String>::new());
    }
}

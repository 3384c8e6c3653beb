//! Revocations heard when they happen (issue 18, item 7): a user removing the app at the
//! platform reaches the daemon as the platform's signed callback, and the connection turns
//! `reauth_required` at once, with one event and one webhook. Per callback kind, end to end
//! through the sandbox (which signs as the platform does); and forged, stale, replayed,
//! oversized or misaddressed callbacks change nothing and are told only "signature invalid".

mod support;

use axum::body::Bytes;
use axum::http::StatusCode;
use serde_json::{Value, json};

use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;
use tokenwarden_core::clock::Clock;
use tokenwarden_core::platform_callback::{meta_signed_request, tiktok_signature};
use tokenwarden_testkit::logs::{Logs, logs};

fn assert_not_logged(logs: &Logs, secrets: &[String]) {
    let text = logs.text();
    assert!(
        text.contains("deauthorize callback refused") || text.contains("removed the app"),
        "the callbacks were logged at all"
    );
    for s in secrets {
        assert!(!s.is_empty());
        assert!(!text.contains(s.as_str()), "logged: {s}");
    }
}

/// A webhook receiver on loopback: the bodies it got.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let got = got.clone();
            move |body: Bytes| {
                let got = got.clone();
                async move {
                    got.lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                    StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, got)
}

/// Polls until `done` holds (generous: machines are shared); no timing is asserted.
async fn eventually<F: Fn() -> bool>(done: F) -> bool {
    for _ in 0..200 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done()
}

async fn state(w: &World, id: &str) -> Value {
    let (status, c) = w.api(&w.admin, &format!("v1/connections/{id}")).await;
    assert_eq!(status, 200, "{c}");
    c
}

async fn wait_for_state(w: &World, id: &str, want: &str) -> Value {
    for _ in 0..200 {
        let c = state(w, id).await;
        if c["state"] == want {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let c = state(w, id).await;
    assert_eq!(c["state"], want, "{c}");
    c
}

async fn reauth_events(w: &World, id: &str) -> Vec<Value> {
    let (_, events) = w
        .api(&w.admin, &format!("v1/connections/{id}/events"))
        .await;
    events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "reauth_required")
        .cloned()
        .collect()
}

async fn connect(w: &World, provider: &str, id: &str) -> Value {
    let flow = w.start_and_approve(provider, id).await;
    assert_eq!(w.finish(&flow).await.0, 303);
    let c = wait_for_state(w, id, "active").await;
    assert!(
        c["account"]["id"].is_string(),
        "the grant's account is recorded: {c}"
    );
    c
}

/// The newest grant of `provider` at the sandbox.
async fn latest_grant(w: &World, provider: &str) -> String {
    let sb = w.d.sandbox_base.clone().unwrap();
    let grants: Value = w
        .http
        .get(format!("{sb}/_sandbox/grants?provider={provider}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    grants["grants"].as_array().unwrap().last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn revoke_at_sandbox(w: &World, grant: &str) -> Value {
    let sb = w.d.sandbox_base.clone().unwrap();
    let r = w
        .http
        .post(format!("{sb}/_sandbox/grants/{grant}/revoke"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    r.json().await.unwrap()
}

/// Posts a callback to the daemon as a platform would.
async fn post_callback(
    w: &World,
    path: &str,
    content_type: &str,
    header: Option<(&str, String)>,
    body: Vec<u8>,
) -> (u16, String) {
    let mut req = w
        .http
        .post(format!("{}{path}", w.d.base))
        .header("content-type", content_type)
        .body(body);
    if let Some((name, value)) = header {
        req = req.header(name, value);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn signed_form(secret: &str, user: &str, issued_at: i64) -> (String, Vec<u8>) {
    let payload =
        json!({"algorithm": "HMAC-SHA256", "issued_at": issued_at, "user_id": user}).to_string();
    let signed = meta_signed_request(secret.as_bytes(), &payload);
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("signed_request", &signed)
        .finish()
        .into_bytes();
    (signed, body)
}

fn tiktok_body(user: &str, event: &str, at: i64) -> Vec<u8> {
    json!({"client_key": "demo-tiktok", "event": event, "create_time": at, "user_openid": user, "content": "{\"reason\":1}"})
        .to_string()
        .into_bytes()
}

const REFUSED: &str = r#"{"error":{"code":"signature_invalid","message":"signature invalid"}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_at_the_platform_turns_the_connection_reauth_required_at_once() {
    let logs = logs();
    let w = world().await;
    let (url, got) = receiver().await;
    let (status, created) = w.post(&w.admin, "v1/webhooks", json!({"url": url})).await;
    assert_eq!(status, 201, "{created}");

    // One per callback kind and platform that sends one: Meta and Threads sign a request,
    // TikTok Login Kit signs a webhook.
    for provider in ["meta", "threads", "tiktok"] {
        let id = format!("deauth-{provider}");
        connect(&w, provider, &id).await;
        assert!(
            eventually(|| got
                .lock()
                .unwrap()
                .iter()
                .any(|b| b["data"]["connection_id"] == id.as_str() && b["data"]["to"] == "active"))
            .await,
            "the activation was announced"
        );
        got.lock().unwrap().clear();

        // The person removes the app at the platform; the platform calls back at once.
        let grant = latest_grant(&w, provider).await;
        let revoked = revoke_at_sandbox(&w, &grant).await;
        assert_eq!(
            revoked["deauthorize_callback"]["status"], 200,
            "the daemon took the {provider} callback: {revoked}"
        );
        let c = wait_for_state(&w, &id, "reauth_required").await;
        assert_eq!(c["problems"][0]["code"], "revoked", "{c}");
        assert!(
            c["problems"][0]["fix"]
                .as_str()
                .unwrap()
                .contains("Re-authorize")
        );

        // One event, one webhook.
        let events = reauth_events(&w, &id).await;
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(
            events[0]["details"]["via"], "deauthorize_callback",
            "{events:?}"
        );
        assert!(
            eventually(|| !got.lock().unwrap().is_empty()).await,
            "the webhook"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let hooks = got.lock().unwrap().clone();
        assert_eq!(hooks.len(), 1, "{hooks:?}");
        assert_eq!(hooks[0]["data"]["connection_id"], id.as_str());
        assert_eq!(hooks[0]["data"]["from"], "active");
        assert_eq!(hooks[0]["data"]["to"], "reauth_required");
        assert_eq!(hooks[0]["data"]["problems"][0]["code"], "revoked");
        got.lock().unwrap().clear();

        // Revoking again at the platform sends nothing more, and nothing more is announced.
        let again = revoke_at_sandbox(&w, &grant).await;
        assert!(again.get("deauthorize_callback").is_none(), "{again}");
        assert_eq!(reauth_events(&w, &id).await.len(), 1);
    }

    // The sandbox counted each delivered callback.
    let sb = w.d.sandbox_base.clone().unwrap();
    let counters: Value = w
        .http
        .get(format!("{sb}/_sandbox/counters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for p in ["meta", "threads", "tiktok"] {
        assert_eq!(
            counters["providers"][p]["deauthorize_callbacks_delivered"], 1,
            "{p}: {counters}"
        );
    }
    // Snapchat documents no callback: there the probe is the bound, and nothing is sent.
    connect(&w, "snapchat", "deauth-snapchat").await;
    let grant = latest_grant(&w, "snapchat").await;
    let revoked = revoke_at_sandbox(&w, &grant).await;
    assert!(revoked.get("deauthorize_callback").is_none(), "{revoked}");
    assert_eq!(state(&w, "deauth-snapchat").await["state"], "active");

    let secrets: Vec<String> = ["meta", "threads", "tiktok"]
        .iter()
        .map(|p| format!("demo-{p}-secret"))
        .collect();
    assert_not_logged(logs, &secrets);
    w.d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_stale_and_replayed_signed_requests_change_nothing() {
    let logs = logs();
    let w = world().await;
    let c = connect(&w, "meta", "neg-meta").await;
    let user = c["account"]["id"].as_str().unwrap().to_string();
    let now = w.clock.now().timestamp();
    let path = "callbacks/meta/demo/deauthorize";
    let form = "application/x-www-form-urlencoded";
    let mut logged_never = vec!["demo-meta-secret".to_string()];

    let (forged, forged_body) = signed_form("not-the-app-secret", &user, now);
    let (stale, stale_body) = signed_form("demo-meta-secret", &user, now - 10 * 60);
    let (future, future_body) = signed_form("demo-meta-secret", &user, now + 10 * 60);
    logged_never.extend([forged, stale, future]);
    // A good signature over one payload, with another payload put beside it.
    let (good, _) = signed_form("demo-meta-secret", &user, now);
    let sig = good.split_once('.').unwrap().0.to_string();
    let other = signed_form("demo-meta-secret", "someone-else", now).0;
    let spliced = format!("{sig}.{}", other.split_once('.').unwrap().1);
    let spliced_body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("signed_request", &spliced)
        .finish()
        .into_bytes();
    logged_never.push(sig.clone());
    for (what, body) in [
        ("forged", forged_body),
        ("stale", stale_body),
        ("from the future", future_body),
        ("spliced", spliced_body),
        ("empty", Vec::new()),
        ("not a form", b"{\"signed_request\": 1}".to_vec()),
    ] {
        let (status, text) = post_callback(&w, path, form, None, body).await;
        assert_eq!((status, text.as_str()), (400, REFUSED), "{what}");
    }
    // A good callback at an address that is not this app's, or a platform without the
    // callback, is refused the same way: nothing says which apps exist.
    let (_, good_body) = signed_form("demo-meta-secret", &user, now);
    for wrong in [
        "callbacks/meta/nope/deauthorize",
        "callbacks/threads/demo/deauthorize",
        "callbacks/snapchat/demo/deauthorize",
        "callbacks/nope/demo/deauthorize",
        "callbacks/meta/..%2Fdemo/deauthorize",
    ] {
        let (status, text) = post_callback(&w, wrong, form, None, good_body.clone()).await;
        assert_eq!((status, text.as_str()), (400, REFUSED), "{wrong}");
    }
    // Too large a body is not read.
    let mut huge = good_body.clone();
    huge.extend(std::iter::repeat_n(b'a', 100 * 1024));
    let (status, text) = post_callback(&w, path, form, None, huge).await;
    assert_eq!(status, 413);
    assert!(text.contains("\"code\":\"request_too_large\""), "{text}");
    let c = state(&w, "neg-meta").await;
    assert_eq!(c["state"], "active", "nothing changed: {c}");
    assert!(reauth_events(&w, "neg-meta").await.is_empty());

    // The real one is taken once ...
    let (status, _) = post_callback(&w, path, form, None, good_body.clone()).await;
    assert_eq!(status, 200);
    wait_for_state(&w, "neg-meta", "reauth_required").await;
    // ... and after the person re-authorized, replaying it changes nothing.
    connect(&w, "meta", "neg-meta").await;
    let (status, text) = post_callback(&w, path, form, None, good_body).await;
    assert_eq!((status, text.as_str()), (400, REFUSED), "a replay");
    assert_eq!(state(&w, "neg-meta").await["state"], "active");
    assert_eq!(reauth_events(&w, "neg-meta").await.len(), 1);

    assert_not_logged(logs, &logged_never);
    w.d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_stale_and_replayed_tiktok_webhooks_change_nothing() {
    let logs = logs();
    let w = world().await;
    let c = connect(&w, "tiktok", "neg-tiktok").await;
    let user = c["account"]["id"].as_str().unwrap().to_string();
    let now = w.clock.now().timestamp();
    let path = "callbacks/tiktok/demo/deauthorize";
    let json_type = "application/json";
    let secret = b"demo-tiktok-secret";
    let body = tiktok_body(&user, "authorization.removed", now);
    let good = tiktok_signature(secret, now, &body);
    let mut logged_never = vec![
        "demo-tiktok-secret".to_string(),
        good.split_once(",s=").unwrap().1.to_string(),
    ];

    let forged = tiktok_signature(b"not-the-secret", now, &body);
    let stale_body = tiktok_body(&user, "authorization.removed", now - 600);
    let stale = tiktok_signature(secret, now - 600, &stale_body);
    let mut tampered = body.clone();
    let at = tampered.len() - 3;
    tampered[at] ^= 1;
    logged_never.push(forged.split_once(",s=").unwrap().1.to_string());
    for (what, header, body) in [
        ("forged", Some(forged), body.clone()),
        ("stale", Some(stale), stale_body),
        ("tampered", Some(good.clone()), tampered),
        ("unsigned", None, body.clone()),
        ("garbled", Some("t=x,s=y".to_string()), body.clone()),
    ] {
        let (status, text) = post_callback(
            &w,
            path,
            json_type,
            header.map(|h| ("TikTok-Signature", h)),
            body,
        )
        .await;
        assert_eq!((status, text.as_str()), (400, REFUSED), "{what}");
    }
    // Another event to the same URL is taken and changes nothing.
    let other = tiktok_body(&user, "video.publish.completed", now);
    let signed = tiktok_signature(secret, now, &other);
    let (status, _) = post_callback(
        &w,
        path,
        json_type,
        Some(("TikTok-Signature", signed)),
        other,
    )
    .await;
    assert_eq!(status, 200);
    let c = state(&w, "neg-tiktok").await;
    assert_eq!(c["state"], "active", "nothing changed: {c}");
    assert!(reauth_events(&w, "neg-tiktok").await.is_empty());

    let (status, _) = post_callback(
        &w,
        path,
        json_type,
        Some(("TikTok-Signature", good.clone())),
        body.clone(),
    )
    .await;
    assert_eq!(status, 200);
    wait_for_state(&w, "neg-tiktok", "reauth_required").await;
    connect(&w, "tiktok", "neg-tiktok").await;
    let (status, text) =
        post_callback(&w, path, json_type, Some(("TikTok-Signature", good)), body).await;
    assert_eq!((status, text.as_str()), (400, REFUSED), "a replay");
    assert_eq!(state(&w, "neg-tiktok").await["state"], "active");
    assert_eq!(reauth_events(&w, "neg-tiktok").await.len(), 1);

    assert_not_logged(logs, &logged_never);
    w.d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_make_the_daemon_verify_without_end() {
    let _logs = logs();
    let w = world().await;
    let path = "callbacks/meta/demo/deauthorize";
    let mut limited = None;
    for i in 0..400 {
        let (status, _) = post_callback(
            &w,
            path,
            "application/x-www-form-urlencoded",
            None,
            b"signed_request=x.y".to_vec(),
        )
        .await;
        if status == 429 {
            limited = Some(i);
            break;
        }
        assert_eq!(status, 400);
    }
    assert_eq!(
        limited,
        Some(tokenwarden_server::limits::CALLBACK_RATE.burst as usize),
        "the burst passes, then the address waits (the clock does not move)"
    );
    w.d.stop().await;
}

//! The callback a platform sends when a user removes the app: sent on revoke to the app's
//! `deauthorize_url`, signed with the app's secret as the platform signs it (checked here with
//! tokenwarden's verifier and the shipped definitions), retried after a failure, and only by
//! the platforms that document one.

mod harness;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use harness::{Harness, REDIRECT, call};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokenwarden_core::clock::Clock;
use tokenwarden_core::platform_callback::{CallbackRequest, Verified, verify};
use tokenwarden_core::provider::Registry;

#[derive(Debug, Clone)]
struct Got {
    content_type: String,
    signature: Option<String>,
    body: Vec<u8>,
}

/// An app's callback URL on loopback that answers 503 to its first `fail_first` requests.
async fn receiver(fail_first: usize) -> (String, Arc<Mutex<Vec<Got>>>) {
    let got: Arc<Mutex<Vec<Got>>> = Arc::default();
    let app = axum::Router::new().route(
        "/deauth",
        axum::routing::post({
            let got = got.clone();
            move |headers: HeaderMap, body: Bytes| {
                let got = got.clone();
                async move {
                    let h = |n: &str| {
                        headers
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .map(String::from)
                    };
                    let mut g = got.lock().unwrap();
                    g.push(Got {
                        content_type: h("content-type").unwrap_or_default(),
                        signature: h("tiktok-signature"),
                        body: body.to_vec(),
                    });
                    if g.len() <= fail_first {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    }
                }
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/deauth", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, got)
}

/// Authorizes and exchanges a code for `provider`'s demo app, making a grant; the answer.
async fn grant(h: &Harness, provider: &str) -> Value {
    let (authorize, token, id_param) = match provider {
        "meta" => (
            "/meta/v24.0/dialog/oauth",
            "/meta/v24.0/oauth/access_token",
            "client_id",
        ),
        "threads" => (
            "/threads/oauth/authorize",
            "/threads/oauth/access_token",
            "client_id",
        ),
        _ => (
            "/tiktok/v2/auth/authorize/",
            "/tiktok/v2/oauth/token/",
            "client_key",
        ),
    };
    let client = format!("demo-{provider}");
    let q = h
        .authorize(
            authorize,
            &[
                (id_param, client.as_str()),
                ("redirect_uri", REDIRECT),
                ("state", "s"),
                ("response_type", "code"),
            ],
            "approve",
        )
        .await;
    let secret = format!("demo-{provider}-secret");
    let form = [
        (id_param, client.as_str()),
        ("client_secret", secret.as_str()),
        ("code", q["code"].as_str()),
        ("redirect_uri", REDIRECT),
        ("grant_type", "authorization_code"),
    ];
    let req = if provider == "meta" {
        h.http.get(h.url(token)).query(&form)
    } else {
        h.http.post(h.url(token)).form(&form)
    };
    let (status, _, body, _) = call(req).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn post(h: &Harness, path: &str, body: Value) -> (u16, Value) {
    let r = h
        .http
        .post(h.url(&format!("/_sandbox{path}")))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn revoking_sends_the_platforms_signed_callback_which_tokenwarden_verifies() {
    let h = Harness::start().await;
    let defs = Registry::builtin().unwrap();
    for provider in ["meta", "threads", "tiktok"] {
        let (url, got) = receiver(0).await;
        let (status, app) = post(
            &h,
            &format!("/apps/{provider}/demo-{provider}/deauthorize-url"),
            json!({"url": url}),
        )
        .await;
        assert_eq!(
            (status, app["deauthorize_url"].as_str()),
            (200, Some(url.as_str()))
        );
        let token = grant(&h, provider).await;
        // The user as the platform's own answers name it (what tokenwarden records).
        let expected_user = match provider {
            "tiktok" => token["open_id"].as_str().unwrap().to_string(),
            "threads" => token["user_id"].to_string(),
            _ => {
                let (_, _, me, _) = call(
                    h.http
                        .get(h.url("/meta/v24.0/me"))
                        .bearer_auth(token["access_token"].as_str().unwrap()),
                )
                .await;
                me["id"].as_str().unwrap().to_string()
            }
        };
        let id = h.grant_id(provider).await;
        let revoked = h.admin(&format!("/grants/{id}/revoke"), json!({})).await;
        assert_eq!(revoked["deauthorize_callback"]["status"], 200, "{revoked}");
        let g = got.lock().unwrap().clone();
        assert_eq!(g.len(), 1, "one callback per removal");

        // tokenwarden's verifier, with the shipped definition, accepts it and finds the user
        // the platform's own answers name.
        let spec = defs
            .get(provider)
            .unwrap()
            .spec
            .callbacks
            .deauthorize
            .clone()
            .unwrap();
        let secret = format!("demo-{provider}-secret");
        let verified = verify(
            &spec,
            secret.as_bytes(),
            CallbackRequest {
                body: &g[0].body,
                signature_header: g[0].signature.as_deref(),
            },
            h.clock.now(),
        );
        let Ok(Verified::Deauthorized(d)) = verified else {
            panic!("{provider}: {verified:?}")
        };
        assert_eq!(d.user_id, expected_user, "{provider}");
        assert_eq!(
            g[0].content_type,
            if provider == "tiktok" {
                "application/json"
            } else {
                "application/x-www-form-urlencoded"
            }
        );
        // Another secret does not verify it.
        assert!(
            verify(
                &spec,
                b"another-secret",
                CallbackRequest {
                    body: &g[0].body,
                    signature_header: g[0].signature.as_deref(),
                },
                h.clock.now(),
            )
            .is_err()
        );
        // Revoking again sends nothing.
        let again = h.admin(&format!("/grants/{id}/revoke"), json!({})).await;
        assert!(again.get("deauthorize_callback").is_none());
        assert_eq!(got.lock().unwrap().len(), 1);
    }
    let c = h.counters().await;
    for p in ["meta", "threads", "tiktok"] {
        assert_eq!(
            c["providers"][p]["deauthorize_callbacks_delivered"], 1,
            "{c}"
        );
    }
    h.stop().await;
}

#[tokio::test]
async fn a_failed_callback_is_retried_and_only_platforms_that_call_back_take_a_url() {
    let h = Harness::start().await;
    let (url, got) = receiver(1).await;
    let (status, _) = post(
        &h,
        "/apps/tiktok/demo-tiktok/deauthorize-url",
        json!({"url": url}),
    )
    .await;
    assert_eq!(status, 200);
    grant(&h, "tiktok").await;
    let id = h.grant_id("tiktok").await;
    let revoked = h.admin(&format!("/grants/{id}/revoke"), json!({})).await;
    assert_eq!(
        revoked["deauthorize_callback"]["retrying"], true,
        "{revoked}"
    );
    for _ in 0..100 {
        if got.lock().unwrap().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let g = got.lock().unwrap().clone();
    assert_eq!(g.len(), 2, "retried after the 503");
    assert_eq!(g[0].body, g[1].body);
    assert_eq!(g[0].signature, g[1].signature);
    let c = h.counters().await;
    assert_eq!(c["providers"]["tiktok"]["deauthorize_callbacks_failed"], 1);
    assert_eq!(
        c["providers"]["tiktok"]["deauthorize_callbacks_delivered"],
        1
    );

    // Snapchat and TikTok API for Business document no such callback; URLs must be http(s).
    for (path, body) in [
        (
            "/apps/snapchat/demo-snapchat/deauthorize-url",
            json!({"url": url}),
        ),
        (
            "/apps/tiktok-business/demo-tiktok-business/deauthorize-url",
            json!({"url": url}),
        ),
        (
            "/apps/meta/demo-meta/deauthorize-url",
            json!({"url": "ftp://x/y"}),
        ),
        ("/apps/meta/demo-meta/deauthorize-url", json!({"url": 5})),
        (
            "/apps",
            json!({"provider": "snapchat", "client_id": "s2", "client_secret": "x", "deauthorize_url": url}),
        ),
    ] {
        let (status, e) = post(&h, path, body).await;
        assert_eq!(status, 400, "{path}: {e}");
    }
    let (status, app) = post(
        &h,
        "/apps/tiktok/demo-tiktok/deauthorize-url",
        json!({"url": null}),
    )
    .await;
    assert_eq!((status, &app["deauthorize_url"]), (200, &Value::Null));
    let (status, app) = post(
        &h,
        "/apps",
        json!({"provider": "threads", "client_id": "t2", "client_secret": "x", "deauthorize_url": url}),
    )
    .await;
    assert_eq!(
        (status, app["deauthorize_url"].as_str()),
        (201, Some(url.as_str()))
    );
    // The secret is never shown.
    let apps = h.admin_get("/apps").await;
    assert!(!apps.to_string().contains("demo-tiktok-secret"));
    h.stop().await;
}

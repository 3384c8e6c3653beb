//! X Ads with OAuth 1.0a against the sandbox, which verifies every signature the way X does:
//! the three-legged connect (request token, authorize, access token) with the token secret stored
//! encrypted; hostile callbacks refused; proxied calls signed afresh; a revocation found by a
//! proxied 401 marks the connection at once with no refresh attempted; and no secret of the story
//! reaches a log line.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use tokenwarden_core::id::ConnectionId;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'a self) -> Buffer {
        self.clone()
    }
}

/// Every test of this binary logs at TRACE into one buffer.
fn logs() -> &'static Buffer {
    static LOGS: OnceLock<Buffer> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(logs.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("set once");
        logs
    })
}

async fn sandbox_counters(w: &support::World) -> serde_json::Value {
    let sb = w.d.sandbox_base.clone().unwrap();
    w.http
        .get(format!("{sb}/_sandbox/counters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn proxied(
    w: &support::World,
    conn: &str,
    path: &str,
) -> (u16, reqwest::header::HeaderMap, String) {
    let r = w
        .http
        .get(format!("{}proxy/{conn}/{path}", w.d.base))
        .bearer_auth(&w.admin)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_signed_calls_and_revocation_with_no_secret_logged() {
    let logs = logs();
    let w = support::world().await;
    let mut seen: Vec<String> = vec![
        w.admin.clone(),
        w.reader.clone(),
        "demo-x-ads-secret".into(),
    ];

    // Connect: request token → authorize → callback with oauth_token + oauth_verifier.
    let flow = w.start_and_approve("x-ads", "xa1").await;
    let cb = url::Url::parse(&flow.callback).unwrap();
    let q: std::collections::HashMap<String, String> = cb.query_pairs().into_owned().collect();
    assert!(
        q.contains_key("oauth_token") && q.contains_key("oauth_verifier"),
        "{cb}"
    );
    assert!(!q.contains_key("state"), "OAuth 1.0a has no state: {cb}");
    seen.extend(q.values().cloned());
    let (status, page) = w.finish(&flow).await;
    assert_eq!(status, 303, "{page}");
    assert!(page.contains("Connected"), "{page}");

    // The callback again: the request token was the flow's key, consumed once.
    let r = w
        .http
        .get(&flow.callback)
        .header("cookie", &flow.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "a replayed callback is refused");

    let (status, c) = w.api(&w.admin, "v1/connections/xa1").await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["state"], "active", "{c}");
    let ids = c["account_ids"].to_string();
    assert!(
        ids.contains(char::is_numeric),
        "the user id is recorded: {c}"
    );

    // The token set holds the token secret, sealed: readable through the store only.
    let stored =
        w.d.state
            .store
            .get_tokens(&ConnectionId::parse("xa1").unwrap())
            .await
            .unwrap()
            .unwrap();
    let token = stored.set.access_token.expose().to_string();
    let secret = stored
        .set
        .token_secret
        .as_ref()
        .expect("the token secret is stored")
        .expose()
        .to_string();
    assert!(stored.set.refresh_token.is_none());
    assert!(
        stored.set.expires_at.is_none(),
        "OAuth 1.0a tokens do not expire"
    );
    seen.push(token.clone());
    seen.push(secret.clone());
    // Nor does the token API hand it out.
    let (_, v) = w.api(&w.reader, "v1/connections/xa1/token").await;
    assert!(!v.to_string().contains(&secret), "{v}");

    // Proxied calls are signed per request (the sandbox checks each signature, nonce and time).
    for path in ["12/accounts", "12/accounts", "12/accounts?count=5"] {
        let (status, _, body) = proxied(&w, "xa1", path).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(body.contains("\"data_type\":\"account\""), "{body}");
    }
    let (_, _, body) = proxied(&w, "xa1", "12/accounts").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let account = v["data"][0]["id"].as_str().unwrap().to_string();
    let (status, _, body) = proxied(
        &w,
        "xa1",
        &format!("12/accounts/{account}/campaigns?count=3&with_deleted=false"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["data"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    // A POST with a form body: its parameters are signed too. The job is PROCESSING: the caller
    // is told to poll later.
    let r = w
        .http
        .post(format!(
            "{}proxy/xa1/12/stats/jobs/accounts/{account}?entity=CAMPAIGN",
            w.d.base
        ))
        .bearer_auth(&w.admin)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("granularity=DAY&metric_groups=ENGAGEMENT%2CBILLING")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["tokenwarden-kind"], "async_pending");
    assert!(r.text().await.unwrap().contains("PROCESSING"));
    // A year later the token still works and nothing was ever refreshed: OAuth 1.0a token
    // credentials neither expire nor renew.
    w.clock.advance(chrono::TimeDelta::days(400));
    let (status, _, body) = proxied(&w, "xa1", "12/accounts").await;
    assert_eq!(status, 200, "{body}");
    // The probe signs too.
    let (status, c) = w
        .post(&w.admin, "v1/connections/xa1/probe", serde_json::json!({}))
        .await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["state"], "active", "{c}");

    // The user removes the app at X: the next proxied call meets a 401, and the connection is
    // reauth_required at once. Nothing is refreshed: the only token calls were the two legs.
    w.revoke_latest_grant("x-ads").await;
    let (status, headers, body) = proxied(&w, "xa1", "12/accounts").await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("UNAUTHORIZED_ACCESS"), "{body}");
    assert_eq!(headers["tokenwarden-kind"], "token_invalid");
    let (_, c) = w.api(&w.admin, "v1/connections/xa1").await;
    assert_eq!(c["state"], "reauth_required", "{c}");
    let counters = sandbox_counters(&w).await;
    let x = &counters["providers"]["x-ads"];
    assert_eq!(
        x["token_calls_by_grant_type"],
        serde_json::json!({"request_token": 1, "access_token": 1}),
        "{x}"
    );
    // The next call is refused by tokenwarden itself.
    let (status, _, body) = proxied(&w, "xa1", "12/accounts").await;
    assert_ne!(status, 200, "{body}");
    assert!(body.contains("reauth"), "{body}");

    // Re-authorizing the same connection makes it work again.
    let flow = w.start_and_approve("x-ads", "xa1").await;
    let cb = url::Url::parse(&flow.callback).unwrap();
    seen.extend(cb.query_pairs().map(|(_, v)| v.into_owned()));
    assert_eq!(w.finish(&flow).await.0, 303);
    let (status, _, body) = proxied(&w, "xa1", "12/accounts").await;
    assert_eq!(status, 200, "{body}");
    let stored =
        w.d.state
            .store
            .get_tokens(&ConnectionId::parse("xa1").unwrap())
            .await
            .unwrap()
            .unwrap();
    seen.push(stored.set.access_token.expose().to_string());
    seen.push(stored.set.token_secret.unwrap().expose().to_string());

    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(text.len() > 1000, "the story was logged");
    for s in &seen {
        assert!(!text.contains(s.as_str()), "a secret reached the logs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_callbacks_are_refused() {
    let _ = logs();
    let w = support::world().await;
    let flow = w.start_and_approve("x-ads", "xa2").await;
    let cb = url::Url::parse(&flow.callback).unwrap();
    let with = |pairs: &[(&str, &str)]| {
        let mut u = cb.clone();
        u.set_query(None);
        u.query_pairs_mut().extend_pairs(pairs);
        u.to_string()
    };
    let q: std::collections::HashMap<String, String> = cb.query_pairs().into_owned().collect();
    let get = |url: String| {
        let w = &w;
        let cookie = flow.cookie.clone();
        async move {
            w.http
                .get(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // An oauth_token nobody asked for, none at all, a denied= that disagrees, a repeated one.
    assert_eq!(
        get(with(&[
            ("oauth_token", "forged"),
            ("oauth_verifier", &q["oauth_verifier"])
        ]))
        .await,
        400
    );
    assert_eq!(
        get(with(&[("oauth_verifier", &q["oauth_verifier"])])).await,
        400
    );
    assert_eq!(
        get(with(&[
            ("oauth_token", &q["oauth_token"]),
            ("denied", "other")
        ]))
        .await,
        400
    );
    assert_eq!(
        get(with(&[
            ("oauth_token", &q["oauth_token"]),
            ("oauth_token", "forged"),
            ("oauth_verifier", &q["oauth_verifier"]),
        ]))
        .await,
        400
    );
    // None of that spent the flow: the genuine callback still completes, once.
    let (status, page) = w.finish(&flow).await;
    assert_eq!(status, 303, "{page}");
    assert!(page.contains("Connected"), "{page}");
    assert_eq!(get(flow.callback.clone()).await, 400);
    // A wrong verifier with the right token: X refuses the exchange; the flow is spent and the
    // connection is not made.
    let flow = w.start_and_approve("x-ads", "xa3").await;
    let cb = url::Url::parse(&flow.callback).unwrap();
    let q: std::collections::HashMap<String, String> = cb.query_pairs().into_owned().collect();
    let mut u = cb.clone();
    u.set_query(None);
    u.query_pairs_mut()
        .append_pair("oauth_token", &q["oauth_token"])
        .append_pair("oauth_verifier", "guessed");
    let bad = support::Flow {
        cookie: flow.cookie.clone(),
        callback: u.to_string(),
    };
    let (status, page) = w.finish(&bad).await;
    assert_eq!(status, 303, "{page}");
    assert!(!page.contains("Connected"), "{page}");
    let (status, _) = w.api(&w.admin, "v1/connections/xa3").await;
    assert_eq!(status, 404);
}

//! Secrets never reach a log line: the whole connect → token → refresh → failure story runs with
//! every crate logging at TRACE into a buffer, which must contain no access token, refresh token,
//! client secret, API key, authorization code or state.

mod support;

use chrono::TimeDelta;
use tokenwarden_testkit::logs::logs;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_secret_is_logged_at_any_level() {
    let logs = logs();

    let w = support::world().await;
    let mut seen: Vec<String> = vec![w.admin.clone(), w.reader.clone()];
    for p in ["snapchat", "tiktok", "tiktok-business", "threads", "meta"] {
        seen.push(format!("demo-{p}-secret"));
        let flow = w.start_and_approve(p, &format!("logs-{p}")).await;
        w.finish(&flow).await;
        // The code and state are secrets of the flow too.
        let cb = url::Url::parse(&flow.callback).unwrap();
        seen.extend(
            cb.query_pairs()
                .filter(|(k, _)| k != "iss")
                .map(|(_, v)| v.into_owned()),
        );
    }
    // Connect sessions: the link's token is a secret too; a re-authorization with another
    // account is refused (and its grant revoked), a replayed link is turned away.
    let link = w
        .mint("snapchat", "logs-snapchat", serde_json::json!({}))
        .await;
    seen.push(link.rsplit('/').next().unwrap().to_string());
    let flow = w.approve_link("snapchat", &link, "someone-else").await;
    assert_eq!(w.finish(&flow).await.0, 409);
    let cb = url::Url::parse(&flow.callback).unwrap();
    seen.extend(cb.query_pairs().map(|(_, v)| v.into_owned()));
    assert_eq!(w.http.get(&link).send().await.unwrap().status(), 410);
    // A token of the sandbox environment in an app configured for production: the monitor's
    // check on the other host logs what it found.
    w.tiktok_app("sbx-creds", "demo-tiktok-business-sandbox", "production")
        .await;
    seen.push("demo-tiktok-business-sandbox-secret".into());
    let flow = w
        .start_and_approve("tiktok-business", "logs-mismatch&app=sbx-creds")
        .await;
    w.finish(&flow).await;
    let cb = url::Url::parse(&flow.callback).unwrap();
    seen.extend(cb.query_pairs().map(|(_, v)| v.into_owned()));
    let (_, c) = w
        .post(
            &w.admin,
            "v1/connections/logs-mismatch/probe",
            serde_json::json!({}),
        )
        .await;
    assert_eq!(c["problems"][0]["code"], "environment_mismatch", "{c}");
    let (_, v) = w.api(&w.reader, "v1/connections/logs-mismatch/token").await;
    seen.push(v["access_token"].as_str().unwrap().to_string());
    // Threads carries the token in the URL (the documented access_token parameter): calls
    // through the proxy, one with a caller's own access_token to be replaced, calls during an
    // outage, and the monitor's probe, before and during it.
    let sandbox = w.d.sandbox_base.clone().unwrap();
    let (_, v) = w.api(&w.reader, "v1/connections/logs-threads/token").await;
    seen.push(v["access_token"].as_str().unwrap().to_string());
    seen.push("callers-own-threads-token".into());
    let threads_call = |path: &'static str| {
        let w = &w;
        async move {
            w.http
                .get(format!("{}proxy/logs-threads/{path}", w.d.base))
                .bearer_auth(&w.admin)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // (Threads' per-token limit spaces calls through the proxy some seconds apart: two suffice.)
    assert_eq!(
        threads_call("me?fields=id,username&access_token=callers-own-threads-token").await,
        200
    );
    let (status, c) = w
        .post(
            &w.admin,
            "v1/connections/logs-threads/probe",
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 200, "{c}");
    w.http
        .post(format!("{sandbox}/_sandbox/faults/threads/outage"))
        .json(&serde_json::json!({"for": "10m"}))
        .send()
        .await
        .unwrap();
    assert_ne!(threads_call("me?fields=id").await, 200);
    w.post(
        &w.admin,
        "v1/connections/logs-threads/probe",
        serde_json::json!({}),
    )
    .await;
    w.http
        .post(format!("{sandbox}/_sandbox/faults/threads/clear"))
        .send()
        .await
        .unwrap();
    for _ in 0..3 {
        w.clock.advance(TimeDelta::hours(3));
        for p in ["snapchat", "tiktok"] {
            let (_, v) = w
                .api(&w.reader, &format!("v1/connections/logs-{p}/token"))
                .await;
            seen.push(v["access_token"].as_str().unwrap().to_string());
        }
    }
    // Failures log too: an outage during refresh, then a revoked grant.
    w.http
        .post(format!("{sandbox}/_sandbox/faults/snapchat/outage"))
        .json(&serde_json::json!({"for": "10m"}))
        .send()
        .await
        .unwrap();
    w.clock.advance(TimeDelta::hours(3));
    w.api(&w.reader, "v1/connections/logs-snapchat/token").await;
    let grants: serde_json::Value = w
        .http
        .get(format!("{sandbox}/_sandbox/grants?provider=tiktok"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let grant = grants["grants"][0]["id"].as_str().unwrap().to_string();
    w.http
        .post(format!("{sandbox}/_sandbox/grants/{grant}/revoke"))
        .send()
        .await
        .unwrap();
    w.clock.advance(TimeDelta::hours(3));
    w.api(&w.reader, "v1/connections/logs-tiktok/token").await;
    // Every stored token set, refresh tokens included.
    for p in ["snapchat", "tiktok", "tiktok-business", "threads", "meta"] {
        if let Some(t) =
            w.d.state
                .store
                .get_tokens(&format!("logs-{p}").parse().unwrap())
                .await
                .unwrap()
        {
            seen.push(t.set.access_token.expose().to_string());
            if let Some(r) = &t.set.refresh_token {
                seen.push(r.expose().to_string());
            }
        }
    }
    w.d.stop().await;

    let text = logs.text();
    assert!(
        text.len() > 1000,
        "the scenario logged something at trace level ({} bytes)",
        text.len()
    );
    for secret in seen.iter().filter(|s| s.len() >= 8) {
        assert!(
            !text.contains(secret.as_str()),
            "a secret reached the logs: …{}",
            &secret[secret.len() - 4..]
        );
    }
}

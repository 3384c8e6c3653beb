//! LinkedIn and Pinterest through the daemon (issue 17): LinkedIn's refresh token ends a year
//! after the consent and the monitor warns ahead with the date to re-authorize by; a member's
//! revocation is found by the introspection probe; a LinkedIn call with a retired version is one
//! problem on the app and none on the connection. Pinterest's sandbox tokens in an app configured
//! for production are `environment_mismatch`, not a revocation; its rotated refresh tokens keep
//! the connection alive.

use crate::support;

use chrono::TimeDelta;
use support::{World, world};
use tokenwarden_core::id::{AppId, ProviderId};

async fn probe_now(w: &World, id: &str) -> serde_json::Value {
    let (status, c) = w
        .post(
            &w.admin,
            &format!("v1/connections/{id}/probe"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 200, "{c}");
    c
}

fn codes(c: &serde_json::Value) -> Vec<String> {
    c["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap().to_string())
        .collect()
}

/// A GET through the proxy (admin key), with the caller's own headers: status and body.
async fn proxy_get(
    w: &World,
    connection: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut req = w
        .http
        .get(format!("{}proxy/{connection}/{path}", w.d.base))
        .bearer_auth(&w.admin);
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// A copy of the demo app of `provider` with other credentials and environment.
async fn app(w: &World, provider: &str, id: &str, credentials: &str, environment: &str) {
    let mut app =
        w.d.state
            .store
            .get_app(
                &ProviderId::parse(provider).unwrap(),
                &AppId::parse("demo").unwrap(),
            )
            .await
            .unwrap()
            .unwrap();
    app.id = AppId::parse(id).unwrap();
    app.client_id = credentials.to_string();
    app.client_secret = tokenwarden_core::secret::Secret::new(format!("{credentials}-secret"));
    app.environment = environment.parse().unwrap();
    w.d.state.store.put_app(&app).await.unwrap();
}

#[tokio::test]
async fn linkedin_warns_before_the_year_ends_and_finds_a_revocation() {
    let w = world().await;
    let flow = w.start_and_approve("linkedin", "li-1").await;
    assert_eq!(w.finish(&flow).await.0, 303);
    let c = probe_now(&w, "li-1").await;
    assert_eq!(c["state"], "active", "{c}");
    assert!(codes(&c).is_empty(), "{c}");
    // Refreshed along the way (tokens read every 50 days), never extended: 340 days in, the end
    // (day 365) is within the 31-day warning.
    for _ in 0..6 {
        w.clock.advance(TimeDelta::days(50));
        let (status, body) = w.api(&w.reader, "v1/connections/li-1/token").await;
        assert_eq!(status, 200, "{body}");
    }
    w.clock.advance(TimeDelta::days(40));
    let (status, _) = w.api(&w.reader, "v1/connections/li-1/token").await;
    assert_eq!(status, 200);
    let c = probe_now(&w, "li-1").await;
    assert_eq!(c["state"], "active", "{c}");
    let soon = c["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["code"] == "expires_soon")
        .unwrap_or_else(|| panic!("expires_soon: {c}"))
        .clone();
    let fix = soon["fix"].as_str().unwrap();
    // The consent was at 2027-01-15 08:00 UTC: the end is a year later.
    assert!(
        fix.contains("re-authorize before 2028-01-15 08:00 UTC"),
        "{fix}"
    );
    assert!(fix.contains("counted from the consent"), "{fix}");

    // The member revokes the app: introspection says so, the refresh is refused, and the
    // connection needs a person.
    w.revoke_latest_grant("linkedin").await;
    let c = probe_now(&w, "li-1").await;
    assert_eq!(c["state"], "reauth_required", "{c}");
    w.d.stop().await;
}

#[tokio::test]
async fn a_retired_linkedin_version_is_the_apps_problem_not_the_connections() {
    let w = world().await;
    let flow = w.start_and_approve("linkedin", "li-v").await;
    assert_eq!(w.finish(&flow).await.0, 303);
    // The definition's version, sent by the proxy on /rest: served.
    let (status, body) = proxy_get(&w, "li-v", "rest/adAccounts?q=search", &[]).await;
    assert_eq!(status, 200, "{body}");
    // A caller's own retired version is kept, and LinkedIn answers 426.
    let (status, body) = proxy_get(
        &w,
        "li-v",
        "rest/adAccounts?q=search",
        &[("LinkedIn-Version", "202001")],
    )
    .await;
    assert_eq!(status, 426, "{body}");
    let (_, c) = w.api(&w.admin, "v1/connections/li-v").await;
    assert_eq!(c["state"], "active", "{c}");
    assert!(codes(&c).is_empty(), "no connection problem: {c}");
    let problems =
        w.d.state
            .store
            .app_problems(
                &ProviderId::parse("linkedin").unwrap(),
                &AppId::parse("demo").unwrap(),
            )
            .await
            .unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].fix.contains("api.version"), "{problems:?}");
    // No secret in the problem: not the token, not the client secret.
    let (_, token) = w.api(&w.admin, "v1/connections/li-v/token").await;
    let token = token["access_token"].as_str().unwrap();
    let words = format!("{} {}", problems[0].title, problems[0].fix);
    assert!(!words.contains(token) && !words.contains("demo-linkedin-secret"));
    // The version is rolled forward (here: the caller stops sending the retired one) and the
    // app's calls work again: the problem is over, not left on the dashboard until a refresh.
    let (status, body) = proxy_get(&w, "li-v", "rest/adAccounts?q=search", &[]).await;
    assert_eq!(status, 200, "{body}");
    let problems =
        w.d.state
            .store
            .app_problems(
                &ProviderId::parse("linkedin").unwrap(),
                &AppId::parse("demo").unwrap(),
            )
            .await
            .unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    w.d.stop().await;
}

#[tokio::test]
async fn pinterest_sandbox_tokens_in_a_production_app_are_an_environment_mismatch() {
    let w = world().await;
    app(
        &w,
        "pinterest",
        "sbx-creds",
        "demo-pinterest-sandbox",
        "production",
    )
    .await;
    app(
        &w,
        "pinterest",
        "sbx-ok",
        "demo-pinterest-sandbox",
        "sandbox",
    )
    .await;
    for (id, app) in [("pin-mm", "sbx-creds"), ("pin-ok", "sbx-ok")] {
        let flow = w
            .start_and_approve("pinterest", &format!("{id}&app={app}"))
            .await;
        assert_eq!(w.finish(&flow).await.0, 303, "{id}");
    }
    let c = probe_now(&w, "pin-ok").await;
    assert_eq!(c["state"], "active", "{c}");
    assert!(codes(&c).is_empty(), "{c}");
    let c = probe_now(&w, "pin-mm").await;
    assert_eq!(c["state"], "active", "{c}");
    assert_eq!(codes(&c), ["environment_mismatch"], "{c}");
    let fix = c["problems"][0]["fix"].as_str().unwrap();
    assert!(fix.contains("set environment = \"sandbox\""), "{fix}");

    // Rotation across 90 days: the sandbox connection's tokens keep working.
    for _ in 0..3 {
        w.clock.advance(TimeDelta::days(30));
        let (status, body) = w.api(&w.reader, "v1/connections/pin-ok/token").await;
        assert_eq!(status, 200, "{body}");
    }
    let c = probe_now(&w, "pin-ok").await;
    assert_eq!(c["state"], "active", "{c}");
    w.d.stop().await;
}

#[tokio::test]
async fn hostile_callbacks_are_refused_for_linkedin_and_pinterest() {
    let w = world().await;
    // Replay.
    let flow = w.start_and_approve("linkedin", "li-replayed").await;
    assert_eq!(w.finish(&flow).await.0, 303);
    let (status, page) = w.finish(&flow).await;
    assert_eq!(status, 400, "{page}");
    // Another browser (no flow cookie).
    let flow = w.start_and_approve("pinterest", "pin-stolen").await;
    let r = w.http.get(&flow.callback).send().await.unwrap();
    assert_eq!(r.status(), 400);
    // A tampered state.
    let flow = w.start_and_approve("pinterest", "pin-tampered").await;
    let tampered = flow.callback.replace("state=", "state=x");
    let r = w
        .http
        .get(&tampered)
        .header("cookie", &flow.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // A LinkedIn flow's callback delivered to Pinterest's endpoint (mix-up).
    let flow = w.start_and_approve("linkedin", "li-mixed").await;
    let mixed = flow
        .callback
        .replace("/callback/linkedin", "/callback/pinterest");
    let r = w
        .http
        .get(&mixed)
        .header("cookie", &flow.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    for id in ["pin-stolen", "pin-tampered", "li-mixed"] {
        assert_eq!(
            w.api(&w.admin, &format!("v1/connections/{id}")).await.0,
            404,
            "{id}"
        );
    }
    w.d.stop().await;
}

//! Platform facts end to end (issue 23, platforms.md "Corrections (2026-12)"): the daemon over
//! real HTTP with the sandbox in-process and a fake clock.

use crate::support;

use chrono::TimeDelta;
use support::world;

/// TikTok Business `/oauth2/access_token/` answers that carry a refresh token (creator tokens:
/// 24 h access, one-year refresh; SDK `docs/AuthenticationApi.md`) are refreshed, day after day,
/// while advertiser tokens from the same daemon stay long-term and are never refreshed.
#[tokio::test]
async fn tiktok_business_tokens_with_a_refresh_token_are_refreshed_and_long_term_ones_are_not() {
    let w = world().await;
    let sb = w.d.sandbox_base.clone().unwrap();
    // A developer app whose answers carry refresh tokens, registered at the sandbox and in
    // tokenwarden (`tiktok_app` gives it the secret `<credentials>-secret`).
    let r = w
        .http
        .post(format!("{sb}/_sandbox/apps"))
        .json(&serde_json::json!({
            "provider": "tiktok-business",
            "client_id": "creator-app",
            "client_secret": "creator-app-secret",
            "redirect_uris": [format!("{}callback/tiktok-business", w.d.base)],
            "refresh_tokens": true,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    w.tiktok_app("creator", "creator-app", "production").await;

    let flow = w
        .start_and_approve("tiktok-business", "cr-1&app=creator")
        .await;
    let (status, page) = w.finish(&flow).await;
    assert_eq!(status, 303, "{page}");
    let flow = w
        .start_and_approve("tiktok-business", "adv-1&app=demo")
        .await;
    let (status, page) = w.finish(&flow).await;
    assert_eq!(status, 303, "{page}");

    let token = |id: &'static str| {
        let w = &w;
        async move {
            let (status, body) = w
                .api(&w.reader, &format!("v1/connections/{id}/token"))
                .await;
            assert_eq!(status, 200, "{id}: {body}");
            body["access_token"].as_str().unwrap().to_string()
        }
    };
    let works = |t: String| {
        let w = &w;
        async move {
            let p = w.d.state.providers.get("tiktok-business").unwrap();
            let body: serde_json::Value = w
                .http
                .get(format!(
                    "{}{}",
                    p.spec.api.base_url.as_str().trim_end_matches('/'),
                    p.spec.api.probe.path
                ))
                .header("Access-Token", t)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            body["code"].as_i64() == Some(0)
        }
    };

    let creator_first = token("cr-1").await;
    let advertiser_first = token("adv-1").await;
    let mut creator_tokens = vec![creator_first.clone()];
    // Three days, in steps shorter than the 24 h access token: each day a new one, and the
    // platform accepts every token the daemon hands out.
    for step in 0..9 {
        w.clock.advance(TimeDelta::hours(8));
        let c = token("cr-1").await;
        assert!(
            works(c.clone()).await,
            "step {step}: creator token accepted"
        );
        if creator_tokens.last() != Some(&c) {
            creator_tokens.push(c);
        }
        let a = token("adv-1").await;
        assert_eq!(a, advertiser_first, "the advertiser token is long-term");
        assert!(works(a).await, "step {step}: advertiser token accepted");
    }
    assert!(
        creator_tokens.len() >= 3,
        "the creator token was refreshed about daily: {} tokens",
        creator_tokens.len()
    );
    assert!(
        !works(creator_first).await,
        "the first creator token has expired at the platform"
    );

    let counters: serde_json::Value = w
        .http
        .get(format!("{sb}/_sandbox/counters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let by_type = &counters["providers"]["tiktok-business"]["token_calls_by_grant_type"];
    assert_eq!(
        by_type["refresh_token"].as_u64(),
        Some(creator_tokens.len() as u64 - 1),
        "one refresh per new creator token, none for the advertiser: {counters}"
    );
}

/// Threads: calls through the proxy and the monitor's probes send the token the documented way,
/// as the `access_token` query parameter (no `Authorization: Bearer`; platforms.md "Corrections
/// (2026-12)" 4), a caller's own `access_token` cannot override it, and the token, now in a URL,
/// reaches no error text, event, connection view or metric, in success or in an outage.
#[tokio::test]
async fn threads_calls_and_probes_carry_the_token_as_the_access_token_query_parameter() {
    let w = world().await;
    let sb = w.d.sandbox_base.clone().unwrap();
    let flow = w.start_and_approve("threads", "th-1").await;
    let (status, page) = w.finish(&flow).await;
    assert_eq!(status, 303, "{page}");
    let (_, v) = w.api(&w.reader, "v1/connections/th-1/token").await;
    let token = v["access_token"].as_str().unwrap().to_string();
    w.http
        .post(format!("{sb}/_sandbox/counters/reset"))
        .send()
        .await
        .unwrap();

    let call = |path: &'static str| {
        let w = &w;
        async move {
            let r = w
                .http
                .get(format!("{}proxy/th-1/{path}", w.d.base))
                .bearer_auth(&w.admin)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let headers = format!("{:?}", r.headers());
            (status, headers, r.text().await.unwrap())
        }
    };
    let mut texts = Vec::new();
    // The caller's own access_token is replaced by ours: the call works as the connection.
    // (Threads' per-token limit spaces proxied calls some seconds apart: two calls suffice.)
    let (status, headers, body) = call("me?fields=id,username&access_token=not-a-token").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"username\""), "{body}");
    texts.push(headers + &body);
    let (status, c) = w
        .post(&w.admin, "v1/connections/th-1/probe", serde_json::json!({}))
        .await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["state"], "active", "{c}");

    let counters: serde_json::Value = w
        .http
        .get(format!("{sb}/_sandbox/counters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let th = &counters["providers"]["threads"];
    assert!(th["api_calls"].as_u64().unwrap() >= 2, "{counters}");
    assert_eq!(
        th["undocumented_credentials"], 0,
        "no call or probe sent Authorization: Bearer: {counters}"
    );

    // An outage: the errors the proxy and the probe produce are not allowed to quote the URL.
    w.http
        .post(format!("{sb}/_sandbox/faults/threads/outage"))
        .json(&serde_json::json!({"for": "10m"}))
        .send()
        .await
        .unwrap();
    let (status, headers, body) = call("me?fields=id").await;
    assert_ne!(status, 200);
    texts.push(headers + &body);
    let (_, c) = w
        .post(&w.admin, "v1/connections/th-1/probe", serde_json::json!({}))
        .await;
    texts.push(c.to_string());
    let (_, c) = w.api(&w.admin, "v1/connections/th-1").await;
    texts.push(c.to_string());
    let (_, e) = w.api(&w.admin, "v1/connections/th-1/events").await;
    assert!(!e["events"].as_array().unwrap().is_empty());
    texts.push(e.to_string());
    let (_, e) = w.api(&w.admin, "v1/events?limit=1000").await;
    texts.push(e.to_string());
    let metrics = w
        .http
        .get(format!("{}metrics", w.d.base))
        .bearer_auth(&w.admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("threads"), "the metrics name Threads");
    texts.push(metrics);
    for (i, t) in texts.iter().enumerate() {
        assert!(
            !t.contains(&token),
            "text {i} holds the Threads token: …{}",
            &token[token.len() - 4..]
        );
    }
}

/// TikTok Login Kit: a rotated refresh token keeps the remaining lifetime of the one it
/// replaces ("both fields give the remaining lifetime", platforms.md "Corrections (2026-12)"
/// 3), so however often it is refreshed, the 180-day end of the authorization arrives and the
/// monitor forecasts it days ahead.
#[tokio::test]
async fn tiktok_login_kit_reaches_its_180_day_end_and_it_is_forecast() {
    let w = world().await;
    let flow = w.start_and_approve("tiktok", "tt-1").await;
    let (status, page) = w.finish(&flow).await;
    assert_eq!(status, 303, "{page}");
    let problems = |c: &serde_json::Value| -> Vec<String> {
        c["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["code"].as_str().unwrap().to_string())
            .collect()
    };
    // A refresh a day, every day, for 175 days: the refresh token rotates each time.
    for day in 0..175 {
        w.clock.advance(TimeDelta::days(1));
        let (status, body) = w.api(&w.reader, "v1/connections/tt-1/token").await;
        assert_eq!(status, 200, "day {day}: {body}");
    }
    let (status, c) = w
        .post(&w.admin, "v1/connections/tt-1/probe", serde_json::json!({}))
        .await;
    assert_eq!(status, 200, "{c}");
    assert!(
        problems(&c).contains(&"expires_soon".to_string()),
        "the end of the authorization is forecast: {c}"
    );
    // Past day 180 the platform refuses the refresh token: a person must authorize again.
    w.clock.advance(TimeDelta::days(6));
    let (status, body) = w.api(&w.reader, "v1/connections/tt-1/token").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "reauth_required");
}

/// "Refresh now" on a long-term TikTok Business token (no refresh token in its set) serves the
/// token it has: no call to the platform, no `degraded`, no retries scheduled. The refresh style
/// `refresh_token_when_issued` is decided per token set in the token service too.
#[tokio::test]
async fn refreshing_a_long_term_tiktok_business_token_keeps_it_and_calls_nobody() {
    let w = world().await;
    let flow = w.start_and_approve("tiktok-business", "long-1").await;
    assert_eq!(w.finish(&flow).await.0, 303);
    let (_, before) = w.api(&w.reader, "v1/connections/long-1/token").await;
    let (status, after) = w
        .post(
            &w.reader,
            "v1/connections/long-1/refresh",
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after["access_token"], before["access_token"]);
    // The answer says it was not refreshed, and why, in words that match.
    assert_eq!(after["refreshed"], false, "{after}");
    assert_eq!(after["not_refreshed"]["code"], "not_renewable", "{after}");
    let why = after["not_refreshed"]["message"].as_str().unwrap();
    assert!(why.contains("does not renew this token"), "{why}");
    assert!(!why.contains("new token is stored"), "{why}");
    let (_, c) = w.api(&w.admin, "v1/connections/long-1").await;
    assert_eq!(c["state"], "active", "{c}");
    assert!(c["problems"].as_array().unwrap().is_empty(), "{c}");
}

/// A Google Ads app whose consent screen is in Testing status (`refresh_token_ends_after = "7d"`
/// in its configuration): its connections' refresh tokens end 7 days after the consent, no
/// refresh moves that end, and the probe forecasts it (`expires_soon`, naming the date) instead
/// of the team finding out from `invalid_grant` a week later. The published app beside it has no
/// end and no warning.
#[tokio::test]
async fn a_google_app_in_testing_status_has_its_7_day_end_forecast() {
    use tokenwarden_core::clock::Clock;
    use tokenwarden_core::id::{AppId, ProviderId};
    let w = world().await;
    let google = ProviderId::parse("google-ads").unwrap();
    let mut app =
        w.d.state
            .store
            .get_app(&google, &AppId::parse("demo").unwrap())
            .await
            .unwrap()
            .unwrap();
    app.id = AppId::parse("testing").unwrap();
    app.refresh_token_ends_after = Some(std::time::Duration::from_secs(7 * 86_400));
    w.d.state.store.put_app(&app).await.unwrap();
    let consent = w.clock.now();
    let link = w
        .mint(
            "google-ads",
            "g-test",
            serde_json::json!({"app": "testing"}),
        )
        .await;
    let flow = w.approve_link("google-ads", &link, "tester").await;
    assert_eq!(w.finish(&flow).await.0, 303);
    let flow = w.start_and_approve("google-ads", "g-live").await;
    assert_eq!(w.finish(&flow).await.0, 303);
    let ends = |id: &'static str| {
        let store = w.d.state.store.clone();
        async move {
            store
                .get_tokens(&id.parse().unwrap())
                .await
                .unwrap()
                .unwrap()
                .set
                .refresh_expires_at
        }
    };
    let end = ends("g-test")
        .await
        .expect("the Testing app's end is known");
    assert!(
        (end - (consent + TimeDelta::days(7))).num_seconds().abs() < 60,
        "7 days after the consent: {end}"
    );
    assert_eq!(ends("g-live").await, None, "a published app's has no end");
    // A day of hourly refreshes: the end stays where the consent put it.
    let mut tokens = std::collections::HashSet::new();
    for _ in 0..24 {
        w.clock.advance(TimeDelta::minutes(61));
        let (status, body) = w.api(&w.reader, "v1/connections/g-test/token").await;
        assert_eq!(status, 200, "{body}");
        tokens.insert(body["access_token"].as_str().unwrap().to_string());
    }
    assert!(
        tokens.len() > 20,
        "refreshed along the way: {}",
        tokens.len()
    );
    assert_eq!(ends("g-test").await, Some(end));
    let probe = |id: &'static str| {
        let w = &w;
        async move {
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
    };
    let c = probe("g-test").await;
    let soon: Vec<&serde_json::Value> = c["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["code"] == "expires_soon")
        .collect();
    assert_eq!(soon.len(), 1, "{c}");
    let date = end.format("%Y-%m-%d").to_string();
    assert!(
        soon[0]["fix"].as_str().unwrap().contains(&date),
        "the fix names the end: {c}"
    );
    let c = probe("g-live").await;
    assert_eq!(c["problems"], serde_json::json!([]), "{c}");
}

/// A Microsoft Advertising user who signs in with Google (platforms-ads.md Part A §0.7, §2 "Google
/// as identity provider"): an app of identity `google` (a Google OAuth client) sends the person to
/// Google's consent page for openid/email/profile with access_type=offline and prompt=consent,
/// its tokens come from and refresh at Google's token endpoint (none at Microsoft's), the refresh
/// token is kept (Google does not rotate), the GetUser probe and proxied calls carry
/// `IdentityProvider: Google` (the sandbox refuses a Google token without it: 105), for 90 days
/// of fake time without a 401; once the person revokes the Google grant the connection needs
/// re-authorization, in Google's words.
#[tokio::test]
async fn a_microsoft_ads_account_signed_in_with_google_lives_at_google() {
    use tokenwarden_core::id::{AppId, ProviderId};
    use tokenwarden_core::secret::Secret;
    let w = world().await;
    let ms = ProviderId::parse("microsoft-ads").unwrap();
    let mut app =
        w.d.state
            .store
            .get_app(&ms, &AppId::parse("demo").unwrap())
            .await
            .unwrap()
            .unwrap();
    // The sandbox's Google OAuth client, calling back to tokenwarden's Microsoft callback; the
    // Microsoft developer token stays.
    app.id = AppId::parse("google").unwrap();
    app.client_id = "demo-google-ads".into();
    app.client_secret = Secret::new("demo-google-ads-secret");
    app.identity = Some("google".into());
    w.d.state.store.put_app(&app).await.unwrap();

    let link = w
        .mint(
            "microsoft-ads",
            "ms-g",
            serde_json::json!({"app": "google"}),
        )
        .await;
    let r = w.http.post(&link).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let consent = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    assert!(
        consent
            .path()
            .ends_with("/microsoft-ads/identity/google/o/oauth2/v2/auth"),
        "{consent}"
    );
    let q: std::collections::HashMap<String, String> = consent.query_pairs().into_owned().collect();
    assert_eq!(q["scope"], "openid email profile", "{consent}");
    assert_eq!(q["access_type"], "offline");
    assert_eq!(q["prompt"], "consent");
    assert_eq!(q["client_id"], "demo-google-ads");
    let link = w
        .mint(
            "microsoft-ads",
            "ms-g",
            serde_json::json!({"app": "google"}),
        )
        .await;
    let flow = w.approve_link("microsoft-ads", &link, "g-user").await;
    let (status, page) = w.finish(&flow).await;
    assert_eq!(status, 303, "{page}");
    let (_, conn) = w.api(&w.admin, "v1/connections/ms-g").await;
    assert_eq!(conn["identity"], "google", "{conn}");
    assert_eq!(conn["state"], "active", "{conn}");
    assert!(
        conn["account"]["id"].is_string(),
        "GetUser named the customer: {conn}"
    );
    let refresh_token = |w: &support::World| {
        let store = w.d.state.store.clone();
        async move {
            store
                .get_tokens(&"ms-g".parse().unwrap())
                .await
                .unwrap()
                .unwrap()
                .set
                .refresh_token
                .map(|t| t.expose().to_string())
        }
    };
    let first = refresh_token(&w)
        .await
        .expect("Google issued a refresh token");
    // The dashboard says who signed in, and asks for Google's scopes, not msads.manage.
    let r = w
        .http
        .post(format!("{}login", w.d.base))
        .form(&[("secret", w.admin.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = w
        .http
        .get(format!("{}connections/ms-g", w.d.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("google (signed in with google)"), "{page}");
    assert!(!page.contains("msads.manage"), "{page}");

    let proxied = |w: &support::World| {
        let url = format!("{}proxy/ms-g/CustomerManagement/v13/User/Query", w.d.base);
        let http = w.http.clone();
        let admin = w.admin.clone();
        async move {
            let r = http
                .post(url)
                .bearer_auth(admin)
                .header("content-type", "application/json")
                .body(r#"{"UserId": null}"#)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        }
    };
    let mut seen = std::collections::HashSet::new();
    for day in 0..90 {
        w.clock.advance(TimeDelta::hours(24));
        let (status, body) = w.api(&w.reader, "v1/connections/ms-g/token").await;
        assert_eq!(status, 200, "day {day}: {body}");
        seen.insert(body["access_token"].as_str().unwrap().to_string());
        let (status, body) = proxied(&w).await;
        assert_eq!(status, 200, "day {day}: {body}");
        if day % 10 == 0 {
            let (status, c) = w
                .post(&w.admin, "v1/connections/ms-g/probe", serde_json::json!({}))
                .await;
            assert_eq!(status, 200, "{c}");
            assert_eq!(c["probe"]["outcome"], "ok", "day {day}: {c}");
            assert_eq!(c["state"], "active", "day {day}: {c}");
        }
    }
    assert!(seen.len() >= 89, "refreshed along the way: {}", seen.len());
    // SOAP through the proxy: the token and the IdentityProvider entry go into the envelope (the
    // sandbox's SOAP GetUser reads the entry, not the HTTP header).
    let envelope = r#"<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header><h:AuthenticationToken xmlns:h="https://bingads.microsoft.com/Customer/v13"/></s:Header><s:Body><GetUserRequest xmlns="https://bingads.microsoft.com/Customer/v13"><UserId i:nil="true" xmlns:i="http://www.w3.org/2001/XMLSchema-instance"/></GetUserRequest></s:Body></s:Envelope>"#;
    let r = w
        .http
        .post(format!(
            "{}proxy/ms-g/Api/CustomerManagement/v13/CustomerManagementService.svc",
            w.d.base
        ))
        .bearer_auth(&w.admin)
        .header("content-type", "text/xml; charset=utf-8")
        .header("SOAPAction", "GetUser")
        .body(envelope)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<GetUserResponse"), "{body}");
    assert_eq!(
        refresh_token(&w).await.as_deref(),
        Some(first.as_str()),
        "Google does not rotate: the stored refresh token is kept"
    );
    let counters = w.sandbox_counters().await;
    let google = &counters["providers"]["google-ads"];
    let refreshes = google["token_calls_by_grant_type"]["refresh_token"]
        .as_u64()
        .unwrap_or(0);
    assert!(refreshes >= 89, "the refreshes went to Google: {google}");
    let microsoft = &counters["providers"]["microsoft-ads"];
    assert_eq!(
        microsoft["token_calls"], 0,
        "none at Microsoft: {microsoft}"
    );
    assert_eq!(microsoft["unauthorized_sent"], 0, "no 401: {microsoft}");

    // The person revokes the app at Google: the next refresh is Google's invalid_grant.
    w.revoke_latest_grant("google-ads").await;
    w.clock.advance(TimeDelta::hours(2));
    let (status, body) = w.api(&w.reader, "v1/connections/ms-g/token").await;
    assert_ne!(status, 200, "{body}");
    let (_, conn) = w.api(&w.admin, "v1/connections/ms-g").await;
    assert_eq!(conn["state"], "reauth_required", "{conn}");
    let (_, events) = w.api(&w.admin, "v1/connections/ms-g/events").await;
    let text = format!("{body}{conn}{events}");
    assert!(text.contains("Google refused the refresh token"), "{text}");
    assert!(
        text.contains("signing in with the same Google account"),
        "{text}"
    );
    assert!(!text.contains("Microsoft refused"), "{text}");
    w.d.stop().await;
}

//! Every fault kind, the authorize page's checks, and the admin API, over real HTTP.

mod harness;

use harness::{Harness, REDIRECT, call};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokenwarden_sandbox::SandboxConfig;

const SNAP_AUTH: &str = "/snapchat/login/oauth2/authorize";
const SNAP_TOKEN: &str = "/snapchat/login/oauth2/access_token";
const TTB: &str = "/tiktok-business/open_api/v1.3";

fn snap_params(redirect: &str) -> Vec<(&'static str, String)> {
    vec![
        ("client_id", "demo-snapchat".into()),
        ("redirect_uri", redirect.into()),
        ("response_type", "code".into()),
        ("scope", "snapchat-marketing-api".into()),
        ("state", "st<&>".into()),
    ]
}

/// Authorizes and exchanges on Snapchat: (access, refresh).
async fn snap_tokens(h: &Harness) -> (String, String) {
    let p = snap_params(REDIRECT);
    let p: Vec<(&str, &str)> = p.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let q = h.authorize(SNAP_AUTH, &p, "approve").await;
    assert_eq!(q["state"], "st<&>");
    let (st, _, tok, _) = call(h.http.post(h.url(SNAP_TOKEN)).form(&[
        ("grant_type", "authorization_code"),
        ("client_id", "demo-snapchat"),
        ("client_secret", "demo-snapchat-secret"),
        ("code", q["code"].as_str()),
        ("redirect_uri", REDIRECT),
    ]))
    .await;
    assert_eq!(st, StatusCode::OK, "{tok}");
    (
        tok["access_token"].as_str().unwrap().into(),
        tok["refresh_token"].as_str().unwrap().into(),
    )
}

async fn snap_me(
    h: &Harness,
    access: &str,
) -> (StatusCode, reqwest::header::HeaderMap, Value, String) {
    call(h.http.get(h.url("/snapchat/v1/me")).bearer_auth(access)).await
}

async fn ttb_token(h: &Harness) -> String {
    let q = h
        .authorize(
            "/tiktok-business/portal/auth",
            &[
                ("app_id", "demo-tiktok-business"),
                ("redirect_uri", REDIRECT),
                ("state", "b"),
            ],
            "approve",
        )
        .await;
    let (_, _, tok, _) = call(h.http.post(h.url(&format!("{TTB}/oauth2/access_token/"))).json(&json!({
        "app_id": "demo-tiktok-business", "secret": "demo-tiktok-business-secret", "auth_code": q["auth_code"],
    })))
    .await;
    tok["data"]["access_token"].as_str().unwrap().to_string()
}

async fn meta_token(h: &Harness) -> String {
    let q = h
        .authorize(
            "/meta/v24.0/dialog/oauth",
            &[
                ("client_id", "demo-meta"),
                ("redirect_uri", REDIRECT),
                ("state", "m"),
                ("scope", "ads_read"),
                ("response_type", "code"),
            ],
            "approve",
        )
        .await;
    let (_, _, tok, _) = call(h.http.get(h.url("/meta/v24.0/oauth/access_token")).query(&[
        ("client_id", "demo-meta"),
        ("redirect_uri", REDIRECT),
        ("client_secret", "demo-meta-secret"),
        ("code", q["code"].as_str()),
    ]))
    .await;
    tok["access_token"].as_str().unwrap().to_string()
}

async fn tiktok_token(h: &Harness, scope: &str) -> (String, String) {
    let q = h
        .authorize(
            "/tiktok/v2/auth/authorize/",
            &[
                ("client_key", "demo-tiktok"),
                ("scope", scope),
                ("response_type", "code"),
                ("redirect_uri", REDIRECT),
                ("state", "t"),
            ],
            "approve",
        )
        .await;
    let (_, _, tok, _) = call(h.http.post(h.url("/tiktok/v2/oauth/token/")).form(&[
        ("client_key", "demo-tiktok"),
        ("client_secret", "demo-tiktok-secret"),
        ("code", q["code"].as_str()),
        ("grant_type", "authorization_code"),
        ("redirect_uri", REDIRECT),
    ]))
    .await;
    (
        tok["access_token"].as_str().unwrap().into(),
        tok["refresh_token"].as_str().unwrap().into(),
    )
}

async fn threads_token(h: &Harness, scope: &str) -> String {
    let q = h
        .authorize(
            "/threads/oauth/authorize",
            &[
                ("client_id", "demo-threads"),
                ("redirect_uri", REDIRECT),
                ("scope", scope),
                ("response_type", "code"),
                ("state", "th"),
            ],
            "approve",
        )
        .await;
    let (_, _, tok, _) = call(h.http.post(h.url("/threads/oauth/access_token")).form(&[
        ("client_id", "demo-threads"),
        ("client_secret", "demo-threads-secret"),
        ("code", q["code"].as_str()),
        ("grant_type", "authorization_code"),
        ("redirect_uri", REDIRECT),
    ]))
    .await;
    tok["access_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn authorize_page_escapes_checks_redirect_uri_and_denies_with_platform_params() {
    let h = Harness::start().await;
    let resp = h
        .http
        .get(h.url(SNAP_AUTH))
        .query(&snap_params(REDIRECT))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-frame-options"], "DENY");
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(!csp.contains("script-src") && csp.contains("default-src 'none'"));
    let page = resp.text().await.unwrap();
    assert!(page.contains("Demo app") && page.contains("snapchat-marketing-api"));
    assert!(
        page.contains("st&lt;&amp;&gt;") && !page.contains("st<&>"),
        "reflected values are escaped"
    );
    assert!(!page.contains("<script"));

    // An unregistered redirect_uri: an error page, never a redirect.
    for uri in [
        "http://127.0.0.1:9/other",
        "http://127.0.0.1:9/callback/",
        "https://evil.example/cb",
    ] {
        let resp = h
            .http
            .get(h.url(SNAP_AUTH))
            .query(&snap_params(uri))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{uri}");
        assert!(resp.headers().get("location").is_none());
        let mut form = snap_params(uri);
        form.push(("decision", "approve".into()));
        let resp = h
            .http
            .post(h.url(SNAP_AUTH))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert!(resp.headers().get("location").is_none());
    }

    let p = snap_params(REDIRECT);
    let p: Vec<(&str, &str)> = p.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let q = h.authorize(SNAP_AUTH, &p, "deny").await;
    assert_eq!(q["error"], "access_denied");
    assert!(
        q.contains_key("error_description") && q["state"] == "st<&>" && !q.contains_key("code")
    );

    let q = h
        .authorize(
            "/meta/v24.0/dialog/oauth",
            &[
                ("client_id", "demo-meta"),
                ("redirect_uri", REDIRECT),
                ("state", "m"),
                ("scope", "ads_read"),
                ("response_type", "code"),
            ],
            "deny",
        )
        .await;
    assert_eq!(
        (
            q["error"].as_str(),
            q["error_reason"].as_str(),
            q["error_description"].as_str()
        ),
        ("access_denied", "user_denied", "Permissions error")
    );

    // A code exchanged with another redirect_uri than it was issued for is refused.
    let q = h.authorize(SNAP_AUTH, &p, "approve").await;
    let (st, _, err, _) = call(h.http.post(h.url(SNAP_TOKEN)).form(&[
        ("grant_type", "authorization_code"),
        ("client_id", "demo-snapchat"),
        ("client_secret", "demo-snapchat-secret"),
        ("code", q["code"].as_str()),
        ("redirect_uri", "http://127.0.0.1:9/other"),
    ]))
    .await;
    assert_eq!(
        (st, err["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );

    // Codes live 10 minutes.
    let q = h.authorize(SNAP_AUTH, &p, "approve").await;
    h.advance(601);
    let (_, _, err, _) = call(h.http.post(h.url(SNAP_TOKEN)).form(&[
        ("grant_type", "authorization_code"),
        ("client_id", "demo-snapchat"),
        ("client_secret", "demo-snapchat-secret"),
        ("code", q["code"].as_str()),
        ("redirect_uri", REDIRECT),
    ]))
    .await;
    assert_eq!(err["error"], "invalid_grant");
    h.stop().await;
}

#[tokio::test]
async fn throttle_next_n_uses_each_platforms_own_signal() {
    let h = Harness::start().await;
    let (snap, _) = snap_tokens(&h).await;
    let ttb = ttb_token(&h).await;
    let meta = meta_token(&h).await;
    let (tt, _) = tiktok_token(&h, "user.info.basic").await;
    let th = threads_token(&h, "threads_basic").await;
    for p in ["snapchat", "tiktok-business", "meta", "tiktok", "threads"] {
        h.admin(&format!("/faults/{p}/throttle"), json!({"next": 2}))
            .await;
    }
    for _ in 0..2 {
        let (st, headers, _, _) = snap_me(&h, &snap).await;
        assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
        assert!(
            headers.get("retry-after").is_none(),
            "Snapchat sends no Retry-After"
        );
        let (st, _, b, _) = call(
            h.http
                .get(h.url(&format!("{TTB}/user/info/")))
                .header("Access-Token", &ttb),
        )
        .await;
        assert_eq!((st, b["code"].as_i64()), (StatusCode::OK, Some(40100)));
        assert!(
            b["message"]
                .as_str()
                .unwrap()
                .starts_with("Due to too many requests, requests from App [")
        );
        let (st, _, b, _) = call(h.http.get(h.url("/meta/v24.0/me")).bearer_auth(&meta)).await;
        assert_eq!(
            (
                st,
                b["error"]["code"].as_i64(),
                b["error"]["error_subcode"].as_i64()
            ),
            (StatusCode::BAD_REQUEST, Some(17), Some(2_446_079))
        );
        let (st, headers, b, _) = call(
            h.http
                .get(h.url("/tiktok/v2/user/info/?fields=open_id"))
                .bearer_auth(&tt),
        )
        .await;
        assert_eq!(
            (st, b["error"]["code"].as_str()),
            (StatusCode::TOO_MANY_REQUESTS, Some("rate_limit_exceeded"))
        );
        assert!(
            headers["x-ratelimit-reset"]
                .to_str()
                .unwrap()
                .parse::<i64>()
                .unwrap()
                > 1_800_000_000
        );
        let (st, _, b, _) = call(h.http.get(h.url("/threads/v1.0/me")).bearer_auth(&th)).await;
        assert_eq!(
            (st, b["error"]["code"].as_i64()),
            (StatusCode::BAD_REQUEST, Some(17))
        );
    }
    assert_eq!(
        snap_me(&h, &snap).await.0,
        StatusCode::OK,
        "only the next N"
    );
    let c = h.counters().await;
    assert_eq!(c["providers"]["snapchat"]["too_many_requests_sent"], 2);
    assert_eq!(c["providers"]["tiktok-business"]["rate_limited_sent"], 2);
    assert_eq!(
        c["providers"]["tiktok-business"]["too_many_requests_sent"],
        0
    );
    assert_eq!(c["providers"]["meta"]["rate_limited_sent"], 2);
    h.stop().await;
}

#[tokio::test]
async fn throttle_at_a_rate_for_a_duration_then_recovers() {
    let h = Harness::start().await;
    let (snap, _) = snap_tokens(&h).await;
    h.admin(
        "/faults/snapchat/throttle",
        json!({"rate_per_sec": 1, "for": "10s"}),
    )
    .await;
    assert_eq!(snap_me(&h, &snap).await.0, StatusCode::OK);
    assert_eq!(snap_me(&h, &snap).await.0, StatusCode::TOO_MANY_REQUESTS);
    h.advance(2);
    assert_eq!(snap_me(&h, &snap).await.0, StatusCode::OK);
    h.advance(10);
    for _ in 0..5 {
        assert_eq!(
            snap_me(&h, &snap).await.0,
            StatusCode::OK,
            "the throttle ended"
        );
    }
    h.stop().await;
}

#[tokio::test]
async fn snapchat_enforces_10_per_second_per_token_and_20_per_app() {
    let h = Harness::start().await;
    let (a, _) = snap_tokens(&h).await;
    for _ in 0..10 {
        assert_eq!(snap_me(&h, &a).await.0, StatusCode::OK);
    }
    assert_eq!(
        snap_me(&h, &a).await.0,
        StatusCode::TOO_MANY_REQUESTS,
        "11th call in a second on one token"
    );
    let (b, _) = snap_tokens(&h).await;
    let (c, _) = snap_tokens(&h).await;
    let mut ok = 0;
    for t in [&b, &c] {
        for _ in 0..10 {
            if snap_me(&h, t).await.0 == StatusCode::OK {
                ok += 1;
            }
        }
    }
    assert_eq!(
        ok, 10,
        "the app's 20 per second were shared with the first token's 10"
    );
    h.advance(2);
    assert_eq!(snap_me(&h, &a).await.0, StatusCode::OK);
    h.stop().await;
}

#[tokio::test]
async fn rate_limits_can_be_turned_off() {
    let h = Harness::with(SandboxConfig {
        enforce_rate_limits: false,
        ..Default::default()
    })
    .await;
    let (a, _) = snap_tokens(&h).await;
    for _ in 0..30 {
        assert_eq!(snap_me(&h, &a).await.0, StatusCode::OK);
    }
    h.stop().await;
}

#[tokio::test]
async fn outages_in_every_mode_end_when_their_time_is_up() {
    let h = Harness::start().await;
    let (snap, _) = snap_tokens(&h).await;
    let ttb = ttb_token(&h).await;
    let meta = meta_token(&h).await;
    h.admin("/faults/snapchat/outage", json!({"for": "5m"}))
        .await;
    h.admin(
        "/faults/tiktok-business/outage",
        json!({"for": "5m", "mode": "platform"}),
    )
    .await;
    h.admin(
        "/faults/meta/outage",
        json!({"for": "5m", "mode": "html", "status": 502}),
    )
    .await;

    let (st, _, b, _) = snap_me(&h, &snap).await;
    assert_eq!(
        (st, b["request_status"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("ERROR"))
    );
    // The token endpoint is down too.
    let (st, _, _, _) = call(
        h.http
            .post(h.url(SNAP_TOKEN))
            .form(&[("grant_type", "refresh_token")]),
    )
    .await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    let (st, _, b, _) = call(
        h.http
            .get(h.url(&format!("{TTB}/user/info/")))
            .header("Access-Token", &ttb),
    )
    .await;
    assert_eq!((st, b["code"].as_i64()), (StatusCode::OK, Some(50002)));
    let (st, headers, _, text) = call(h.http.get(h.url("/meta/v24.0/me")).bearer_auth(&meta)).await;
    assert_eq!(st, StatusCode::BAD_GATEWAY);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(text.contains("Sorry, something went wrong."));

    h.admin(
        "/faults/threads/outage",
        json!({"for": "1m", "mode": "html", "status": 503}),
    )
    .await;
    let (st, _, _, text) = call(h.http.get(h.url("/threads/v1.0/me"))).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    assert!(text.contains("503 Service Temporarily Unavailable"));

    h.advance(300);
    assert_eq!(snap_me(&h, &snap).await.0, StatusCode::OK);
    let (_, _, b, _) = call(
        h.http
            .get(h.url(&format!("{TTB}/user/info/")))
            .header("Access-Token", &ttb),
    )
    .await;
    assert_eq!(b["code"], 0);
    let (st, _, _, _) = call(h.http.get(h.url("/meta/v24.0/me")).bearer_auth(&meta)).await;
    assert_eq!(st, StatusCode::OK);
    h.stop().await;
}

#[tokio::test]
async fn meta_outage_in_platform_mode_is_code_2_with_http_500() {
    let h = Harness::start().await;
    h.admin("/faults/meta/outage", json!({"for": 60})).await;
    let (st, _, b, _) = call(h.http.get(h.url("/meta/v24.0/me"))).await;
    assert_eq!(
        (
            st,
            b["error"]["code"].as_i64(),
            b["error"]["is_transient"].as_bool()
        ),
        (StatusCode::INTERNAL_SERVER_ERROR, Some(2), Some(true))
    );
    h.admin("/faults/meta/clear", json!({})).await;
    let (st, _, b, _) = call(h.http.get(h.url("/meta/v24.0/me"))).await;
    assert_eq!(
        (st, b["error"]["code"].as_i64()),
        (StatusCode::BAD_REQUEST, Some(2500)),
        "cleared; no token sent"
    );
    h.stop().await;
}

#[tokio::test]
async fn added_latency_is_scaled_sandbox_time() {
    // At ×10, 1 s of sandbox latency is 100 ms of real time.
    let h = Harness::with(SandboxConfig {
        time_scale: 10.0,
        ..Default::default()
    })
    .await;
    let (snap, _) = snap_tokens(&h).await;
    h.admin("/faults/snapchat/latency", json!({"latency": "1s"}))
        .await;
    let t = std::time::Instant::now();
    assert_eq!(snap_me(&h, &snap).await.0, StatusCode::OK);
    let took = t.elapsed();
    assert!(took >= std::time::Duration::from_millis(95), "{took:?}");
    assert!(took < std::time::Duration::from_millis(900), "{took:?}");
    h.admin("/faults/snapchat/latency", json!({"latency": "0"}))
        .await;
    let t = std::time::Instant::now();
    snap_me(&h, &snap).await;
    assert!(t.elapsed() < std::time::Duration::from_millis(90));
    h.stop().await;
}

#[tokio::test]
async fn malformed_token_responses_in_every_mode() {
    let h = Harness::start().await;
    let (_, refresh) = snap_tokens(&h).await;
    let refresh_call = || {
        h.http.post(h.url(SNAP_TOKEN)).form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "demo-snapchat"),
            ("client_secret", "demo-snapchat-secret"),
            ("refresh_token", refresh.as_str()),
        ])
    };
    h.admin(
        "/faults/snapchat/malformed",
        json!({"next": 1, "mode": "truncated"}),
    )
    .await;
    let (st, _, json, text) = call(refresh_call()).await;
    assert_eq!(st, StatusCode::OK);
    assert!(json.is_null() && text.starts_with('{') && !text.ends_with('}'));
    h.admin(
        "/faults/snapchat/malformed",
        json!({"next": 1, "mode": "html"}),
    )
    .await;
    let (st, headers, _, text) = call(refresh_call()).await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        text.starts_with("<!DOCTYPE html>")
            && headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
    );
    h.admin(
        "/faults/snapchat/malformed",
        json!({"next": 1, "mode": "missing_fields"}),
    )
    .await;
    let (_, _, json, _) = call(refresh_call()).await;
    assert!(
        json["access_token"].is_null()
            && json["expires_in"].is_null()
            && json["token_type"] == "Bearer"
    );
    h.admin(
        "/faults/snapchat/malformed",
        json!({"next": 1, "mode": "expires_in_string"}),
    )
    .await;
    let (_, _, json, _) = call(refresh_call()).await;
    assert_eq!(json["expires_in"], "3600");
    let (_, _, json, _) = call(refresh_call()).await;
    assert_eq!(json["expires_in"], 3600, "only the next N");

    // TikTok Business nests the token under data.
    h.admin(
        "/faults/tiktok-business/malformed",
        json!({"next": 1, "mode": "missing_fields"}),
    )
    .await;
    let q = h
        .authorize(
            "/tiktok-business/portal/auth",
            &[
                ("app_id", "demo-tiktok-business"),
                ("redirect_uri", REDIRECT),
            ],
            "approve",
        )
        .await;
    let (_, _, b, _) = call(h.http.post(h.url(&format!("{TTB}/oauth2/access_token/"))).json(&json!({
        "app_id": "demo-tiktok-business", "secret": "demo-tiktok-business-secret", "auth_code": q["auth_code"],
    })))
    .await;
    assert_eq!(b["code"], 0);
    assert!(b["data"]["access_token"].is_null() && b["data"]["advertiser_ids"].is_array());
    h.stop().await;
}

#[tokio::test]
async fn rotation_off_and_rotation_with_a_reuse_grace_window() {
    let h = Harness::start().await;
    let refresh = |r: &str| {
        h.http.post(h.url("/tiktok/v2/oauth/token/")).form(&[
            ("client_key", "demo-tiktok"),
            ("client_secret", "demo-tiktok-secret"),
            ("grant_type", "refresh_token"),
            ("refresh_token", r),
        ])
    };
    h.admin("/faults/tiktok/rotation", json!({"enabled": false}))
        .await;
    let (_, rt) = tiktok_token(&h, "user.info.basic").await;
    let (_, _, a, _) = call(refresh(&rt)).await;
    assert_eq!(a["refresh_token"], rt.as_str());
    let (st, _, _, _) = call(refresh(&rt)).await;
    assert_eq!(
        st,
        StatusCode::OK,
        "without rotation the refresh token is reusable"
    );

    h.admin(
        "/faults/tiktok/rotation",
        json!({"enabled": true, "grace": "30s"}),
    )
    .await;
    let (_, rt) = tiktok_token(&h, "user.info.basic").await;
    let (_, _, a, _) = call(refresh(&rt)).await;
    assert_ne!(a["refresh_token"], rt.as_str());
    h.advance(10);
    let (st, _, _, _) = call(refresh(&rt)).await;
    assert_eq!(st, StatusCode::OK, "reuse inside the grace window");
    h.advance(25);
    let (st, _, e, _) = call(refresh(&rt)).await;
    assert_eq!(
        (st, e["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    h.stop().await;
}

#[tokio::test]
async fn revoke_and_expire_a_grant_give_each_platforms_error() {
    let h = Harness::start().await;
    let (snap, snap_rt) = snap_tokens(&h).await;
    let ttb = ttb_token(&h).await;
    let meta = meta_token(&h).await;
    let grants = h.admin_get("/grants").await;
    let list = grants["grants"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    let text = grants.to_string();
    for secret in [&snap, &snap_rt, &ttb, &meta] {
        assert!(
            !text.contains(secret.as_str()),
            "the grant list never shows token values"
        );
    }
    for g in list {
        assert_eq!(g["state"], "active");
        assert_eq!(g["account"], "test-user");
    }
    let id = |p: &str| {
        list.iter().find(|g| g["provider"] == p).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };

    let g = h
        .admin(&format!("/grants/{}/revoke", id("snapchat")), json!({}))
        .await;
    assert_eq!(g["state"], "revoked");
    assert_eq!(snap_me(&h, &snap).await.0, StatusCode::UNAUTHORIZED);
    let (st, _, e, _) = call(h.http.post(h.url(SNAP_TOKEN)).form(&[
        ("grant_type", "refresh_token"),
        ("client_id", "demo-snapchat"),
        ("client_secret", "demo-snapchat-secret"),
        ("refresh_token", snap_rt.as_str()),
    ]))
    .await;
    assert_eq!(
        (st, e["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );

    h.admin(
        &format!("/grants/{}/revoke", id("tiktok-business")),
        json!({}),
    )
    .await;
    let (_, _, b, _) = call(
        h.http
            .get(h.url(&format!("{TTB}/user/info/")))
            .header("Access-Token", &ttb),
    )
    .await;
    assert_eq!(b["code"], 40105);

    h.admin(&format!("/grants/{}/expire", id("meta")), json!({}))
        .await;
    let (_, _, b, _) = call(h.http.get(h.url("/meta/v24.0/me")).bearer_auth(&meta)).await;
    assert_eq!(
        (
            b["error"]["code"].as_i64(),
            b["error"]["error_subcode"].as_i64()
        ),
        (Some(190), Some(463))
    );
    h.admin(&format!("/grants/{}/revoke", id("meta")), json!({}))
        .await;
    let (_, _, b, _) = call(h.http.get(h.url("/meta/v24.0/me")).bearer_auth(&meta)).await;
    assert_eq!(
        (
            b["error"]["code"].as_i64(),
            b["error"]["error_subcode"].as_i64()
        ),
        (Some(190), Some(458))
    );
    h.stop().await;
}

#[tokio::test]
async fn snapchat_plain_text_401_is_selectable() {
    let h = Harness::start().await;
    h.admin(
        "/faults/snapchat/unauthorized-style",
        json!({"style": "plain"}),
    )
    .await;
    let (st, headers, _, text) = snap_me(&h, "not-a-token").await;
    assert_eq!(
        (st, text.as_str()),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    assert!(headers.get("www-authenticate").is_none());
    h.stop().await;
}

#[tokio::test]
async fn clearing_faults_restores_the_default_401_shape() {
    let h = Harness::start().await;
    h.admin(
        "/faults/snapchat/unauthorized-style",
        json!({"style": "challenge"}),
    )
    .await;
    let (_, headers, _, _) = snap_me(&h, "not-a-token").await;
    assert!(headers.get("www-authenticate").is_some());
    h.admin("/faults/snapchat/clear", json!({})).await;
    // The plain `unauthorized` body a fresh sandbox sends, not the on-request challenge.
    let (st, headers, _, text) = snap_me(&h, "not-a-token").await;
    assert_eq!(
        (st, text.as_str()),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    assert!(headers.get("www-authenticate").is_none());
    h.stop().await;
}

#[tokio::test]
async fn removing_a_scope_or_a_role_gives_the_platforms_permission_error() {
    let h = Harness::start().await;
    let (tt, _) = tiktok_token(&h, "user.info.basic").await;
    let th = threads_token(&h, "threads_basic,threads_content_publish").await;
    let (snap, _) = snap_tokens(&h).await;
    let ttb = ttb_token(&h).await;
    let meta = meta_token(&h).await;

    let tt_grant = h.grant_id("tiktok").await;
    h.admin(
        &format!("/grants/{tt_grant}/remove-scope"),
        json!({"scope": "user.info.basic"}),
    )
    .await;
    let (st, _, b, _) = call(
        h.http
            .get(h.url("/tiktok/v2/user/info/?fields=open_id"))
            .bearer_auth(&tt),
    )
    .await;
    assert_eq!(
        (st, b["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("scope_not_authorized"))
    );

    let th_grant = h.grant_id("threads").await;
    h.admin(
        &format!("/grants/{th_grant}/remove-scope"),
        json!({"scope": "threads_content_publish"}),
    )
    .await;
    let (st, _, b, _) = call(
        h.http
            .post(h.url("/threads/v1.0/me/threads?media_type=TEXT"))
            .bearer_auth(&th),
    )
    .await;
    assert_eq!(
        (st, b["error"]["code"].as_i64()),
        (StatusCode::BAD_REQUEST, Some(10))
    );
    let resp = h
        .http
        .post(h.url(&format!("/_sandbox/grants/{th_grant}/remove-role")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CONFLICT, "Threads has no roles");

    let snap_grant = h.grant_id("snapchat").await;
    h.admin(&format!("/grants/{snap_grant}/remove-role"), json!({}))
        .await;
    let (st, _, b, _) = call(
        h.http
            .get(h.url("/snapchat/v1/me/organizations"))
            .bearer_auth(&snap),
    )
    .await;
    assert_eq!(
        (st, b["error_code"].as_str()),
        (StatusCode::FORBIDDEN, Some("E3002"))
    );
    assert_eq!(
        snap_me(&h, &snap).await.0,
        StatusCode::OK,
        "who-am-I still works"
    );

    let (_, _, advs, _) = call(h.http.get(h.url(&format!("{TTB}/oauth2/advertiser/get/?app_id=demo-tiktok-business&secret=demo-tiktok-business-secret"))).header("Access-Token", &ttb)).await;
    let adv = advs["data"]["list"][0]["advertiser_id"]
        .as_str()
        .unwrap()
        .to_string();
    let ttb_grant = h.grant_id("tiktok-business").await;
    h.admin(
        &format!("/grants/{ttb_grant}/remove-scope"),
        json!({"scope": "campaign_management"}),
    )
    .await;
    let (_, _, b, _) = call(
        h.http
            .get(h.url(&format!("{TTB}/campaign/get/?advertiser_id={adv}")))
            .header("Access-Token", &ttb),
    )
    .await;
    assert_eq!(b["code"], 40001);
    assert!(b["message"].as_str().unwrap().contains("scope"));
    h.admin(&format!("/grants/{ttb_grant}/remove-role"), json!({}))
        .await;
    let (_, _, b, _) = call(
        h.http
            .get(h.url(&format!("{TTB}/campaign/get/?advertiser_id={adv}")))
            .header("Access-Token", &ttb),
    )
    .await;
    assert_eq!(b["code"], 40001);
    assert!(b["message"].as_str().unwrap().contains("role"));

    let (_, _, accts, _) = call(
        h.http
            .get(h.url("/meta/v24.0/me/adaccounts"))
            .bearer_auth(&meta),
    )
    .await;
    let act = accts["data"][0]["id"].as_str().unwrap().to_string();
    let meta_grant = h.grant_id("meta").await;
    h.admin(&format!("/grants/{meta_grant}/remove-role"), json!({}))
        .await;
    let (st, _, b, _) = call(
        h.http
            .get(h.url(&format!("/meta/v24.0/{act}/campaigns")))
            .bearer_auth(&meta),
    )
    .await;
    assert_eq!(
        (
            st,
            b["error"]["code"].as_i64(),
            b["error"]["error_subcode"].as_i64()
        ),
        (StatusCode::BAD_REQUEST, Some(100), Some(33))
    );
    h.admin(
        &format!("/grants/{meta_grant}/remove-scope"),
        json!({"scope": "ads_read"}),
    )
    .await;
    let (st, _, b, _) = call(
        h.http
            .get(h.url("/meta/v24.0/me/adaccounts"))
            .bearer_auth(&meta),
    )
    .await;
    assert_eq!(
        (st, b["error"]["code"].as_i64()),
        (StatusCode::FORBIDDEN, Some(200))
    );
    h.stop().await;
}

#[tokio::test]
async fn rotating_an_app_secret_kills_every_token_of_the_app() {
    let h = Harness::start().await;
    let (a1, rt1) = snap_tokens(&h).await;
    let (a2, _) = snap_tokens(&h).await;
    let r = h
        .admin("/apps/snapchat/demo-snapchat/rotate-secret", json!({}))
        .await;
    let secret = r["client_secret"].as_str().unwrap().to_string();
    assert_ne!(secret, "demo-snapchat-secret");
    assert_eq!(snap_me(&h, &a1).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(snap_me(&h, &a2).await.0, StatusCode::UNAUTHORIZED);
    let (st, _, e, _) = call(h.http.post(h.url(SNAP_TOKEN)).form(&[
        ("grant_type", "refresh_token"),
        ("client_id", "demo-snapchat"),
        ("client_secret", "demo-snapchat-secret"),
        ("refresh_token", rt1.as_str()),
    ]))
    .await;
    assert_eq!(
        (st, e["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
    let (st, _, e, _) = call(h.http.post(h.url(SNAP_TOKEN)).form(&[
        ("grant_type", "refresh_token"),
        ("client_id", "demo-snapchat"),
        ("client_secret", secret.as_str()),
        ("refresh_token", rt1.as_str()),
    ]))
    .await;
    assert_eq!(
        (st, e["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "old grants are dead"
    );
    let grants = h.admin_get("/grants?provider=snapchat").await;
    assert!(
        grants["grants"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["state"] == "app_secret_rotated")
    );

    // TikTok Business: the old secret gets 40101.
    h.admin(
        "/apps/tiktok-business/demo-tiktok-business/rotate-secret",
        json!({}),
    )
    .await;
    let (_, _, b, _) = call(h.http.post(h.url(&format!("{TTB}/oauth2/access_token/"))).json(&json!({
        "app_id": "demo-tiktok-business", "secret": "demo-tiktok-business-secret", "auth_code": "x",
    })))
    .await;
    assert_eq!(b["code"], 40101);
    h.stop().await;
}

#[tokio::test]
async fn apps_registered_through_the_admin_api_authorize_with_exact_redirect_uris() {
    let h = Harness::start().await;
    let resp = h
        .http
        .post(h.url("/_sandbox/apps"))
        .json(&json!({"provider": "meta", "client_id": "42", "client_secret": "s3", "name": "Acme <Ads>", "redirect_uris": ["http://localhost:7777/cb"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let page = h
        .http
        .get(h.url("/meta/v24.0/dialog/oauth"))
        .query(&[
            ("client_id", "42"),
            ("redirect_uri", "http://localhost:7777/cb"),
            ("response_type", "code"),
            ("scope", "ads_read"),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Acme &lt;Ads&gt;"));
    let resp = h
        .http
        .get(h.url("/meta/v24.0/dialog/oauth"))
        .query(&[
            ("client_id", "42"),
            ("redirect_uri", REDIRECT),
            ("response_type", "code"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    h.admin(
        "/apps/meta/42/redirect-uris",
        json!({"redirect_uri": REDIRECT}),
    )
    .await;
    let q = h
        .authorize(
            "/meta/v24.0/dialog/oauth",
            &[
                ("client_id", "42"),
                ("redirect_uri", REDIRECT),
                ("response_type", "code"),
                ("state", "z"),
            ],
            "approve",
        )
        .await;
    assert!(q.contains_key("code"));
    let apps = h.admin_get("/apps").await;
    assert!(!apps.to_string().contains("s3"), "secrets are not listed");
    h.stop().await;
}

#[tokio::test]
async fn counters_reset_and_clock() {
    let h = Harness::start().await;
    let (snap, _) = snap_tokens(&h).await;
    snap_me(&h, &snap).await;
    snap_me(&h, "bogus").await;
    let c = h.counters().await;
    assert_eq!(c["providers"]["snapchat"]["api_calls"], 2);
    assert_eq!(c["providers"]["snapchat"]["unauthorized_sent"], 1);
    assert_eq!(c["providers"]["snapchat"]["token_calls"], 1);
    let c = h.admin("/counters/reset", json!({})).await;
    assert_eq!(c["providers"]["snapchat"]["api_calls"], 0);
    assert_eq!(c["grants"], json!({}));
    let errors = h.admin_get("/errors?provider=tiktok-business").await;
    let list = errors["errors"].as_array().unwrap();
    assert!(list.iter().all(|e| e["provider"] == "tiktok-business"));
    assert!(list.iter().any(|e| e["case"]["case"] == "task_pending"
        && e["intended_kind"] == "async_pending"
        && e["body"].as_str().unwrap().contains("40201")));
    let clock = h.admin_get("/clock").await;
    assert_eq!(clock["now"], "2027-01-15T08:00:00Z");
    h.advance(60);
    assert_eq!(h.admin_get("/clock").await["now"], "2027-01-15T08:01:00Z");
    h.stop().await;
}

/// Many concurrent callers of one expired token: every one gets the 401, none touches the token
/// endpoint, and the counters say so exactly.
#[tokio::test]
async fn concurrent_callers_are_counted_exactly() {
    let h = Harness::with(SandboxConfig {
        enforce_rate_limits: false,
        ..Default::default()
    })
    .await;
    let (snap, _) = snap_tokens(&h).await;
    h.admin("/counters/reset", json!({})).await;
    h.advance(3600);
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let http = h.http.clone();
        let url = h.url("/snapchat/v1/me");
        let t = snap.clone();
        tasks.push(tokio::spawn(async move {
            http.get(url).bearer_auth(t).send().await.unwrap().status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::UNAUTHORIZED);
    }
    let c = h.counters().await;
    assert_eq!(c["providers"]["snapchat"]["unauthorized_sent"], 200);
    assert_eq!(c["providers"]["snapchat"]["api_calls"], 200);
    assert_eq!(c["providers"]["snapchat"]["token_calls"], 0);
    h.stop().await;
}

#[tokio::test]
async fn tiktok_business_app_qps_over_every_endpoint_is_signalled_with_40100_in_http_200() {
    let h = Harness::start().await;
    let ttb = ttb_token(&h).await;
    let info = || {
        h.http
            .get(h.url(&format!("{TTB}/user/info/")))
            .header("Access-Token", &ttb)
    };
    for _ in 0..10 {
        assert_eq!(call(info()).await.2["code"], 0);
    }
    let (st, _, b, _) = call(info()).await;
    assert_eq!((st, b["code"].as_i64()), (StatusCode::OK, Some(40100)));
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains("[demo-tiktok-business]")
    );
    // The limit is the app's, over every endpoint (platforms.md "Corrections (2026-12)" 5).
    let (_, _, b, _) = call(h.http.get(h.url(&format!("{TTB}/oauth2/advertiser/get/?app_id=demo-tiktok-business&secret=demo-tiktok-business-secret"))).header("Access-Token", &ttb)).await;
    assert_eq!(b["code"], 40100);
    h.advance(2);
    assert_eq!(call(info()).await.2["code"], 0);
    h.stop().await;
}

#[tokio::test]
async fn meta_usage_grows_until_code_4_then_the_ad_account_limit_80004() {
    // Meta short-lived tokens live an hour; this test spans hours of budget windows.
    let h = Harness::with(SandboxConfig {
        access_lifetimes: [(
            tokenwarden_sandbox::Provider::Meta,
            std::time::Duration::from_secs(30 * 86_400),
        )]
        .into(),
        ..Default::default()
    })
    .await;
    let meta = meta_token(&h).await;
    let mut last_pct = 0;
    let mut limited_at = None;
    for n in 1..=260 {
        let (st, headers, b, _) =
            call(h.http.get(h.url("/meta/v24.0/me")).bearer_auth(&meta)).await;
        let usage: Value = serde_json::from_str(headers["x-app-usage"].to_str().unwrap()).unwrap();
        let pct = usage["call_count"].as_u64().unwrap();
        assert!(pct >= last_pct, "usage only grows within the hour");
        last_pct = pct;
        if st != StatusCode::OK {
            assert_eq!(b["error"]["code"], 4);
            limited_at = Some(n);
            break;
        }
    }
    let n = limited_at.expect("the app budget of 200 calls/hour per user runs out");
    assert!((200..=205).contains(&n), "{n}");
    h.advance(2 * 3600);
    assert_eq!(
        call(h.http.get(h.url("/meta/v24.0/me")).bearer_auth(&meta))
            .await
            .0,
        StatusCode::OK
    );

    // With more users the app budget grows, and the ad account's own budget (300/h) runs out.
    meta_token(&h).await;
    let (_, _, accts, _) = call(
        h.http
            .get(h.url("/meta/v24.0/me/adaccounts"))
            .bearer_auth(&meta),
    )
    .await;
    let act = accts["data"][0]["id"].as_str().unwrap().to_string();
    let mut buc_at = None;
    for n in 1..=320 {
        let (st, headers, b, _) = call(
            h.http
                .get(h.url(&format!("/meta/v24.0/{act}/campaigns?limit=1")))
                .bearer_auth(&meta),
        )
        .await;
        if st != StatusCode::OK {
            assert_eq!(
                (
                    b["error"]["code"].as_i64(),
                    b["error"]["error_subcode"].as_i64()
                ),
                (Some(80004), Some(2_446_079))
            );
            let buc: Value =
                serde_json::from_str(headers["x-business-use-case-usage"].to_str().unwrap())
                    .unwrap();
            let entry = &buc[act.trim_start_matches("act_")][0];
            assert!(entry["call_count"].as_u64().unwrap() > 100);
            assert!(entry["estimated_time_to_regain_access"].as_u64().unwrap() > 0);
            buc_at = Some(n);
            break;
        }
    }
    let n = buc_at.expect("the ad account budget runs out");
    assert!((300..=305).contains(&n), "{n}");
    h.stop().await;
}

#[tokio::test]
async fn every_platforms_authorize_page_renders_and_tiktok_business_codes_live_an_hour() {
    let h = Harness::start().await;
    let pages: [(&str, Vec<(&str, &str)>); 5] = [
        (
            SNAP_AUTH,
            vec![
                ("client_id", "demo-snapchat"),
                ("response_type", "code"),
                ("scope", "snapchat-marketing-api"),
            ],
        ),
        (
            "/tiktok-business/portal/auth",
            vec![("app_id", "demo-tiktok-business")],
        ),
        (
            "/tiktok/v2/auth/authorize/",
            vec![
                ("client_key", "demo-tiktok"),
                ("response_type", "code"),
                ("scope", "user.info.basic,video.list"),
            ],
        ),
        (
            "/threads/oauth/authorize",
            vec![
                ("client_id", "demo-threads"),
                ("response_type", "code"),
                ("scope", "threads_basic"),
            ],
        ),
        (
            "/meta/v24.0/dialog/oauth",
            vec![
                ("client_id", "demo-meta"),
                ("response_type", "code"),
                ("scope", "ads_read"),
            ],
        ),
    ];
    for (path, mut q) in pages {
        q.push(("redirect_uri", REDIRECT));
        let resp = h.http.get(h.url(path)).query(&q).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert_eq!(resp.headers()["cache-control"], "no-store");
        let page = resp.text().await.unwrap();
        assert!(
            page.contains("name=\"decision\" value=\"approve\"") && page.contains("value=\"deny\""),
            "{path}"
        );
        assert!(page.contains("value=\"test-user\""), "{path}");
    }
    // PKCE methods other than S256 are refused with a redirect.
    let resp = h
        .http
        .get(h.url("/tiktok/v2/auth/authorize/"))
        .query(&[
            ("client_key", "demo-tiktok"),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("code_challenge", "abc"),
            ("code_challenge_method", "plain"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    assert!(
        resp.headers()["location"]
            .to_str()
            .unwrap()
            .contains("error=invalid_request")
    );

    let q = h
        .authorize(
            "/tiktok-business/portal/auth",
            &[
                ("app_id", "demo-tiktok-business"),
                ("redirect_uri", REDIRECT),
            ],
            "approve",
        )
        .await;
    h.advance(59 * 60);
    let (_, _, b, _) = call(h.http.post(h.url(&format!("{TTB}/oauth2/access_token/"))).json(&json!({
        "app_id": "demo-tiktok-business", "secret": "demo-tiktok-business-secret", "auth_code": q["auth_code"],
    })))
    .await;
    assert_eq!(b["code"], 0, "an auth_code lives an hour");
    let (_, _, b, _) = call(h.http.post(h.url(&format!("{TTB}/oauth2/access_token/"))).json(&json!({
        "app_id": "demo-tiktok-business", "secret": "demo-tiktok-business-secret", "auth_code": q["auth_code"],
    })))
    .await;
    assert_eq!(b["code"], 40110, "and is single use");
    h.stop().await;
}

#[tokio::test]
async fn tiktok_login_kit_allows_600_calls_a_minute_per_endpoint() {
    let h = Harness::start().await;
    let (tt, _) = tiktok_token(&h, "user.info.basic").await;
    let url = h.url("/tiktok/v2/user/info/?fields=open_id");
    for _ in 0..600 {
        let r = h.http.get(&url).bearer_auth(&tt).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let (st, headers, b, _) = call(h.http.get(&url).bearer_auth(&tt)).await;
    assert_eq!(
        (st, b["error"]["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limit_exceeded"))
    );
    // No x-ratelimit-reset header is documented (platforms.md "Corrections (2026-12)" 3).
    assert!(headers.get("x-ratelimit-reset").is_none(), "{headers:?}");
    h.advance(120);
    assert_eq!(
        call(h.http.get(&url).bearer_auth(&tt)).await.0,
        StatusCode::OK
    );
    h.stop().await;
}

#[tokio::test]
async fn threads_refresh_needs_threads_basic() {
    let h = Harness::start().await;
    let short = threads_token(&h, "threads_basic").await;
    let (_, _, long, _) = call(h.http.get(h.url("/threads/access_token")).query(&[
        ("grant_type", "th_exchange_token"),
        ("client_secret", "demo-threads-secret"),
        ("access_token", &short),
    ]))
    .await;
    let long = long["access_token"].as_str().unwrap().to_string();
    let grant = h.grant_id("threads").await;
    h.admin(
        &format!("/grants/{grant}/remove-scope"),
        json!({"scope": "threads_basic"}),
    )
    .await;
    h.advance(25 * 3600);
    let (st, _, b, _) = call(
        h.http
            .get(h.url("/threads/refresh_access_token"))
            .query(&[("grant_type", "th_refresh_token"), ("access_token", &long)]),
    )
    .await;
    assert_eq!(
        (st, b["error"]["code"].as_i64()),
        (StatusCode::BAD_REQUEST, Some(10))
    );
    h.stop().await;
}

#[tokio::test]
async fn throttling_the_token_endpoint_leaves_api_calls_alone() {
    let h = Harness::start().await;
    let (snap, refresh) = snap_tokens(&h).await;
    h.admin(
        "/faults/snapchat/throttle",
        json!({"next": 1, "target": "token"}),
    )
    .await;
    assert_eq!(snap_me(&h, &snap).await.0, StatusCode::OK);
    let refresh_call = || {
        h.http.post(h.url(SNAP_TOKEN)).form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "demo-snapchat"),
            ("client_secret", "demo-snapchat-secret"),
            ("refresh_token", refresh.as_str()),
        ])
    };
    assert_eq!(call(refresh_call()).await.0, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(call(refresh_call()).await.0, StatusCode::OK);
    let c = h.counters().await;
    assert_eq!(
        c["providers"]["snapchat"]["token_calls_by_grant_type"]["refresh_token"], 1,
        "the throttled call never reached the endpoint"
    );

    h.admin(
        "/faults/tiktok-business/throttle",
        json!({"rate_per_sec": 0, "for": "1m", "target": "all"}),
    )
    .await;
    let (st, _, b, _) = call(h.http.post(h.url(&format!("{TTB}/oauth2/access_token/"))).json(&json!({
        "app_id": "demo-tiktok-business", "secret": "demo-tiktok-business-secret", "auth_code": "x",
    })))
    .await;
    assert_eq!((st, b["code"].as_i64()), (StatusCode::OK, Some(40100)));
    h.advance(61);
    let (_, _, b, _) = call(h.http.post(h.url(&format!("{TTB}/oauth2/access_token/"))).json(&json!({
        "app_id": "demo-tiktok-business", "secret": "demo-tiktok-business-secret", "auth_code": "x",
    })))
    .await;
    assert_eq!(
        b["code"], 40110,
        "the throttle ended; the made-up code is refused"
    );
    h.stop().await;
}

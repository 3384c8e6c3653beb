//! Each platform's full lifecycle over real HTTP: authorize (scripted POST), exchange, call the
//! probe, expire by advancing the fake clock, then refresh or get the platform's error.

mod harness;

use base64::Engine;
use harness::{Harness, REDIRECT, call};
use reqwest::StatusCode;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::time::Duration;
use tokenwarden_sandbox::{Provider, SandboxConfig};

const SNAP_AUTH: &str = "/snapchat/login/oauth2/authorize";
const SNAP_TOKEN: &str = "/snapchat/login/oauth2/access_token";

async fn snap_code(h: &Harness) -> String {
    let q = h
        .authorize(
            SNAP_AUTH,
            &[
                ("client_id", "demo-snapchat"),
                ("redirect_uri", REDIRECT),
                ("response_type", "code"),
                ("scope", "snapchat-marketing-api"),
                ("state", "s-1"),
            ],
            "approve",
        )
        .await;
    assert_eq!(q["state"], "s-1");
    q["code"].clone()
}

fn snap_exchange(h: &Harness, code: &str) -> reqwest::RequestBuilder {
    h.http.post(h.url(SNAP_TOKEN)).form(&[
        ("grant_type", "authorization_code"),
        ("client_id", "demo-snapchat"),
        ("client_secret", "demo-snapchat-secret"),
        ("code", code),
        ("redirect_uri", REDIRECT),
    ])
}

#[tokio::test]
async fn snapchat_code_exchange_probe_expiry_and_refresh() {
    let h = Harness::start().await;
    let code = snap_code(&h).await;
    let (st, _, tok, _) = call(snap_exchange(&h, &code)).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(tok["token_type"], "Bearer");
    assert_eq!(tok["expires_in"], 3600);
    assert_eq!(tok["scope"], "snapchat-marketing-api");
    let access = tok["access_token"].as_str().unwrap().to_string();
    let refresh = tok["refresh_token"].as_str().unwrap().to_string();
    assert!(access.len() > 40);

    let me = || h.http.get(h.url("/snapchat/v1/me")).bearer_auth(&access);
    let (st, _, body, _) = call(me()).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["request_status"], "SUCCESS");
    assert!(body["request_id"].is_string());
    assert!(body["me"]["organization_id"].is_string());

    // The code is single use.
    let (st, _, err, _) = call(snap_exchange(&h, &code)).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"], "invalid_grant");

    h.advance(3600);
    // The evidenced 401: plain text `unauthorized`, no challenge (platforms.md "Corrections
    // (2026-12)" 6); the RFC 6750 challenge is a fault option.
    let (st, headers, _, text) = call(me()).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(headers.get("www-authenticate").is_none(), "{headers:?}");
    assert_eq!(text, "unauthorized");

    let (st, _, fresh, _) = call(h.http.post(h.url(SNAP_TOKEN)).form(&[
        ("grant_type", "refresh_token"),
        ("client_id", "demo-snapchat"),
        ("client_secret", "demo-snapchat-secret"),
        ("refresh_token", &refresh),
    ]))
    .await;
    assert_eq!(st, StatusCode::OK);
    // Snapchat does not rotate by default: the same refresh token comes back and keeps working.
    assert_eq!(fresh["refresh_token"], refresh.as_str());
    let access2 = fresh["access_token"].as_str().unwrap();
    let (st, _, _, _) = call(h.http.get(h.url("/snapchat/v1/me")).bearer_auth(access2)).await;
    assert_eq!(st, StatusCode::OK);

    let grant = h.grant_id("snapchat").await;
    let c = h.counters().await;
    assert_eq!(
        c["grants"][&grant]["token_calls_by_grant_type"]["authorization_code"],
        1
    );
    assert_eq!(
        c["grants"][&grant]["token_calls_by_grant_type"]["refresh_token"],
        1
    );
    assert_eq!(c["providers"]["snapchat"]["unauthorized_sent"], 1);
    assert_eq!(c["providers"]["snapchat"]["api_calls"], 3);
    h.stop().await;
}

#[tokio::test]
async fn snapchat_ad_accounts_campaign_paging_and_async_report() {
    let h = Harness::start().await;
    let code = snap_code(&h).await;
    let (_, _, tok, _) = call(snap_exchange(&h, &code)).await;
    let access = tok["access_token"].as_str().unwrap().to_string();
    let get = |path: String| h.http.get(path).bearer_auth(&access);
    let (_, _, orgs, _) = call(get(h.url("/snapchat/v1/me/organizations"))).await;
    let org = orgs["organizations"][0]["organization"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, _, accts, _) = call(get(
        h.url(&format!("/snapchat/v1/organizations/{org}/adaccounts"))
    ))
    .await;
    let acct = accts["adaccounts"][0]["adaccount"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    let mut next = Some(h.url(&format!(
        "/snapchat/v1/adaccounts/{acct}/campaigns?limit=10"
    )));
    let mut seen = 0;
    while let Some(url) = next {
        let (st, _, page, _) = call(get(url)).await;
        assert_eq!(st, StatusCode::OK);
        seen += page["campaigns"].as_array().unwrap().len();
        next = page["paging"]["next_link"].as_str().map(str::to_string);
    }
    assert_eq!(seen, 25);

    let (st, _, err, _) = call(get(h.url("/snapchat/v1/adaccounts/nope/campaigns"))).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(err["error_code"], "E3003");
    assert_eq!(err["request_status"], "ERROR");

    let (_, _, started, _) = call(get(
        h.url(&format!("/snapchat/v1/adaccounts/{acct}/stats?async=true"))
    ))
    .await;
    let run = started["async_stats_reports"][0]["async_stats_report"]["report_run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let report = h.url(&format!(
        "/snapchat/v1/adaccounts/{acct}/async_stats_reports/{run}"
    ));
    let (_, _, r, _) = call(get(report.clone())).await;
    assert_eq!(
        r["async_stats_reports"][0]["async_stats_report"]["async_status"],
        "RUNNING"
    );
    h.advance(31);
    let (_, _, r, _) = call(get(report)).await;
    assert_eq!(
        r["async_stats_reports"][0]["async_stats_report"]["async_status"],
        "COMPLETED"
    );
    h.stop().await;
}

const TTB: &str = "/tiktok-business/open_api/v1.3";

async fn ttb_token(h: &Harness) -> String {
    ttb_token_of(h, "demo-tiktok-business", TTB).await
}

/// A long-term token of `app`, its code exchanged at the token endpoint under `api` (either host).
async fn ttb_token_of(h: &Harness, app: &str, api: &str) -> String {
    let q = h
        .authorize(
            "/tiktok-business/portal/auth",
            &[("app_id", app), ("redirect_uri", REDIRECT), ("state", "b")],
            "approve",
        )
        .await;
    assert_eq!(
        q["auth_code"], q["code"],
        "the callback carries auth_code and code"
    );
    assert_eq!(q["state"], "b");
    let (st, _, tok, _) = call(
        h.http
            .post(h.url(&format!("{api}/oauth2/access_token/")))
            .json(&json!({
                "app_id": app, "secret": format!("{app}-secret"), "auth_code": q["auth_code"],
            })),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(tok["code"], 0);
    assert_eq!(tok["message"], "OK");
    assert!(tok["data"]["expires_in"].is_null() && tok["data"]["refresh_token"].is_null());
    assert!(tok["data"]["scope"][0].is_number());
    assert_eq!(tok["data"]["advertiser_ids"].as_array().unwrap().len(), 2);
    tok["data"]["access_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn tiktok_business_long_term_token_errors_inside_http_200_and_revoke() {
    let h = Harness::start().await;
    let access = ttb_token(&h).await;
    let info = |t: Option<&str>| {
        let r = h.http.get(h.url(&format!("{TTB}/user/info/")));
        match t {
            Some(t) => r.header("Access-Token", t),
            None => r,
        }
    };
    let (st, _, body, _) = call(info(Some(&access))).await;
    assert_eq!((st, body["code"].as_i64()), (StatusCode::OK, Some(0)));

    // Months later the long-term token still works.
    h.advance(86_400 * 120);
    let (_, _, body, _) = call(info(Some(&access))).await;
    assert_eq!(body["code"], 0);

    let (st, _, body, _) = call(info(None)).await;
    assert_eq!((st, body["code"].as_i64()), (StatusCode::OK, Some(40104)));
    let (_, _, body, _) = call(
        h.http
            .get(h.url(&format!("{TTB}/user/info/")))
            .bearer_auth(&access),
    )
    .await;
    assert_eq!(
        body["code"], 40104,
        "Authorization: Bearer is not how TikTok Business takes the token"
    );
    let (st, _, _, _) = call(
        h.http
            .get(h.url(&format!("{TTB}/user/info")))
            .header("Access-Token", &access),
    )
    .await;
    assert_eq!(
        st,
        StatusCode::NOT_FOUND,
        "the edge 404s without the trailing slash"
    );

    // No refresh for Marketing API tokens.
    let (_, _, body, _) = call(h.http.post(h.url(&format!("{TTB}/oauth2/access_token/"))).json(&json!({
        "app_id": "demo-tiktok-business", "secret": "demo-tiktok-business-secret", "refresh_token": "x",
    })))
    .await;
    assert_eq!(body["code"], 40107);
    let (_, _, body, _) = call(
        h.http
            .post(h.url(&format!("{TTB}/oauth2/access_token/")))
            .json(&json!({
                "app_id": "demo-tiktok-business", "secret": "wrong", "auth_code": "x",
            })),
    )
    .await;
    assert_eq!(body["code"], 40101);

    let (_, _, body, _) = call(h.http.post(h.url(&format!("{TTB}/oauth2/revoke_token/"))).json(&json!({
        "app_id": "demo-tiktok-business", "secret": "demo-tiktok-business-secret", "access_token": access,
    })))
    .await;
    assert_eq!(body["code"], 0);
    let (st, _, body, _) = call(info(Some(&access))).await;
    assert_eq!((st, body["code"].as_i64()), (StatusCode::OK, Some(40105)));
    assert!(body["request_id"].is_string() && body["data"].is_object());
    h.stop().await;
}

/// TikTok Business's sandbox host (platforms.md §2): the same API under another host, which
/// knows only the tokens of sandbox apps; the production host knows only production ones.
const TTB_SANDBOX: &str = "/tiktok-business/sandbox/open_api/v1.3";

#[tokio::test]
async fn tiktok_business_tokens_work_only_on_their_own_environments_host() {
    let h = Harness::start().await;
    let apps = h.admin_get("/apps").await;
    let env_of = |id: &str| {
        apps["apps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["client_id"] == id)
            .map(|a| a["environment"].clone())
    };
    assert_eq!(env_of("demo-tiktok-business"), Some(json!("production")));
    assert_eq!(
        env_of("demo-tiktok-business-sandbox"),
        Some(json!("sandbox"))
    );
    // Whichever host's token endpoint exchanges the code, the token belongs to the app's
    // environment.
    let prod = ttb_token(&h).await;
    let sandbox = ttb_token_of(&h, "demo-tiktok-business-sandbox", TTB).await;
    let sandbox2 = ttb_token_of(&h, "demo-tiktok-business-sandbox", TTB_SANDBOX).await;
    let grants = h.admin_get("/grants?provider=tiktok-business").await;
    let mut envs: Vec<&str> = grants["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["environment"].as_str().unwrap())
        .collect();
    envs.sort();
    assert_eq!(envs, ["production", "sandbox", "sandbox"]);
    h.admin("/counters/reset", json!({})).await;

    let info = |api: &str, token: &str| {
        h.http
            .get(h.url(&format!("{api}/user/info/")))
            .header("Access-Token", token)
    };
    // Each token is healthy on its own host (spaced out: the sandbox host allows one query per
    // second per app and endpoint, over a sliding window).
    for (api, token) in [
        (TTB, &prod),
        (TTB_SANDBOX, &sandbox),
        (TTB_SANDBOX, &sandbox2),
    ] {
        h.advance(2);
        let (st, _, body, _) = call(info(api, token)).await;
        assert_eq!(
            (st, body["code"].as_i64()),
            (StatusCode::OK, Some(0)),
            "{api}"
        );
        assert!(body["data"]["display_name"].is_string());
    }
    let (_, _, body, _) = call(info(TTB_SANDBOX, &sandbox2)).await;
    assert_eq!(
        body["code"], 40100,
        "the sandbox host's own limit: 1 QPS per endpoint"
    );
    // On the other host it is simply not known: exactly the platform's unknown-token answer.
    let (_, _, unknown, _) = call(info(TTB, "never-issued")).await;
    for (api, token) in [(TTB_SANDBOX, &prod), (TTB, &sandbox)] {
        let (st, headers, body, _) = call(info(api, token)).await;
        assert_eq!(st, StatusCode::OK, "{api}");
        assert_eq!(body["code"], 40105, "{api}: {body}");
        assert_eq!(body["message"], unknown["message"]);
        assert_eq!(body["data"], json!({}));
        assert!(body["request_id"].is_string() && headers.contains_key("x-tt-logid"));
        // The same refusal on every API route of the host, not only the probe.
        let (_, _, adv, _) = call(h.http.get(h.url(&format!(
            "{api}/oauth2/advertiser/get/?app_id=demo-tiktok-business&secret=demo-tiktok-business-secret"
        ))).header("Access-Token", token.as_str()))
        .await;
        assert_eq!(adv["code"], 40105, "{api}");
    }
    let c = h.counters().await;
    assert_eq!(
        c["providers"]["tiktok-business"]["wrong_environment_sent"],
        4
    );
    assert_eq!(c["providers"]["tiktok-business"]["api_calls"], 9);
    // The sandbox host is the same edge: a missing trailing slash is nginx's 404 there too.
    let (st, _, _, text) = call(
        h.http
            .get(h.url(&format!("{TTB_SANDBOX}/user/info")))
            .header("Access-Token", &sandbox),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(text.contains("nginx"));

    // Sandbox apps are registered through the admin API, only where the platform has a sandbox.
    let r = h
        .http
        .post(h.url("/_sandbox/apps"))
        .json(&json!({"provider": "snapchat", "client_id": "s", "client_secret": "x", "environment": "sandbox"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("no sandbox host"));
    let r = h
        .http
        .post(h.url("/_sandbox/apps"))
        .json(&json!({"provider": "tiktok-business", "client_id": "s", "client_secret": "x", "environment": "staging"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let made = h
        .admin(
            "/apps",
            json!({"provider": "tiktok-business", "client_id": "my-sbx", "client_secret": "my-sbx-secret",
                   "environment": "sandbox", "redirect_uris": [REDIRECT]}),
        )
        .await;
    assert_eq!(made["environment"], "sandbox");
    let mine = ttb_token_of(&h, "my-sbx", TTB).await;
    let (_, _, body, _) = call(info(TTB_SANDBOX, &mine)).await;
    assert_eq!(body["code"], 0);
    let (_, _, body, _) = call(info(TTB, &mine)).await;
    assert_eq!(body["code"], 40105);
    h.stop().await;
}

#[tokio::test]
async fn tiktok_business_campaign_pages_and_report_task_not_ready() {
    let h = Harness::start().await;
    let access = ttb_token(&h).await;
    let (_, _, advs, _) = call(
        h.http
            .get(h.url(&format!("{TTB}/oauth2/advertiser/get/?app_id=demo-tiktok-business&secret=demo-tiktok-business-secret")))
            .header("Access-Token", &access),
    )
    .await;
    let adv = advs["data"]["list"][0]["advertiser_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, _, page, _) = call(
        h.http
            .get(h.url(&format!(
                "{TTB}/campaign/get/?advertiser_id={adv}&page=3&page_size=10"
            )))
            .header("Access-Token", &access),
    )
    .await;
    assert_eq!(page["code"], 0);
    assert_eq!(page["data"]["list"].as_array().unwrap().len(), 5);
    assert_eq!(page["data"]["page_info"]["total_page"], 3);
    assert_eq!(page["data"]["page_info"]["total_number"], 25);

    let (_, _, other, _) = call(
        h.http
            .get(h.url(&format!("{TTB}/campaign/get/?advertiser_id=123")))
            .header("Access-Token", &access),
    )
    .await;
    assert_eq!(other["code"], 40001);

    let (_, _, task, _) = call(
        h.http
            .post(h.url(&format!("{TTB}/report/task/create/")))
            .header("Access-Token", &access)
            .json(&json!({"advertiser_id": adv})),
    )
    .await;
    let id = task["data"]["task_id"].as_str().unwrap().to_string();
    let download = h.url(&format!(
        "{TTB}/report/task/download/?advertiser_id={adv}&task_id={id}"
    ));
    let (_, _, early, _) = call(h.http.get(&download).header("Access-Token", &access)).await;
    assert_eq!(early["code"], 40201);
    h.advance(31);
    let (_, _, done, _) = call(h.http.get(&download).header("Access-Token", &access)).await;
    assert_eq!(done["code"], 0);
    h.stop().await;
}

const TT_AUTH: &str = "/tiktok/v2/auth/authorize/";
const TT_TOKEN: &str = "/tiktok/v2/oauth/token/";

fn challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

async fn tt_code(h: &Harness, scope: &str, verifier: &str) -> String {
    let ch = challenge(verifier);
    let q = h
        .authorize(
            TT_AUTH,
            &[
                ("client_key", "demo-tiktok"),
                ("scope", scope),
                ("response_type", "code"),
                ("redirect_uri", REDIRECT),
                ("state", "t"),
                ("code_challenge", &ch),
                ("code_challenge_method", "S256"),
            ],
            "approve",
        )
        .await;
    assert_eq!(q["scopes"], scope);
    q["code"].clone()
}

fn tt_exchange<'a>(h: &Harness, code: &'a str, verifier: &'a str) -> reqwest::RequestBuilder {
    h.http.post(h.url(TT_TOKEN)).form(&[
        ("client_key", "demo-tiktok"),
        ("client_secret", "demo-tiktok-secret"),
        ("code", code),
        ("grant_type", "authorization_code"),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier),
    ])
}

fn tt_refresh(h: &Harness, refresh: &str) -> reqwest::RequestBuilder {
    h.http.post(h.url(TT_TOKEN)).form(&[
        ("client_key", "demo-tiktok"),
        ("client_secret", "demo-tiktok-secret"),
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh),
    ])
}

#[tokio::test]
async fn tiktok_login_kit_pkce_expiry_and_rotating_refresh() {
    let h = Harness::start().await;
    let verifier = "a-verifier-that-is-long-enough-0123456789-abcdefgh";
    let code = tt_code(&h, "user.info.basic,video.list", verifier).await;
    let (st, _, err, _) = call(tt_exchange(
        &h,
        &code,
        "the-wrong-verifier-0123456789-0123456789",
    ))
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"], "invalid_grant");
    assert!(err["log_id"].is_string());

    let code = tt_code(&h, "user.info.basic,video.list", verifier).await;
    let (st, _, tok, _) = call(tt_exchange(&h, &code, verifier)).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(tok["expires_in"], 7200);
    assert_eq!(tok["refresh_expires_in"], 180 * 86_400);
    assert_eq!(tok["scope"], "user.info.basic,video.list");
    assert_eq!(tok["token_type"], "Bearer");
    assert!(tok["open_id"].is_string());
    let access = tok["access_token"].as_str().unwrap().to_string();
    let refresh = tok["refresh_token"].as_str().unwrap().to_string();

    let info = |t: &str| {
        h.http
            .get(h.url("/tiktok/v2/user/info/?fields=open_id,display_name"))
            .bearer_auth(t.to_string())
    };
    let (st, _, body, _) = call(info(&access)).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["error"]["code"], "ok");
    assert_eq!(body["data"]["user"]["display_name"], "test-user");

    h.advance(7200);
    let (st, _, body, _) = call(info(&access)).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "access_token_invalid");

    let (st, _, fresh, _) = call(tt_refresh(&h, &refresh)).await;
    assert_eq!(st, StatusCode::OK);
    let refresh2 = fresh["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(refresh2, refresh, "refresh tokens rotate");
    let (st, _, _, _) = call(info(fresh["access_token"].as_str().unwrap())).await;
    assert_eq!(st, StatusCode::OK);

    // The rotated-out refresh token is dead.
    let (st, _, err, _) = call(tt_refresh(&h, &refresh)).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"], "invalid_grant");
    let (st, _, _, _) = call(tt_refresh(&h, &refresh2)).await;
    assert_eq!(st, StatusCode::OK);

    let grant = h.grant_id("tiktok").await;
    let c = h.counters().await;
    assert_eq!(
        c["grants"][&grant]["token_calls_by_grant_type"]["refresh_token"],
        2
    );
    assert_eq!(
        c["providers"]["tiktok"]["token_calls_by_grant_type"]["refresh_token"],
        3
    );
    h.stop().await;
}

#[tokio::test]
async fn tiktok_login_kit_scope_errors_video_list_and_publish_status() {
    let h = Harness::start().await;
    let code = tt_code(
        &h,
        "user.info.basic",
        "v-0123456789-0123456789-0123456789-0123456789",
    )
    .await;
    let (_, _, tok, _) = call(tt_exchange(
        &h,
        &code,
        "v-0123456789-0123456789-0123456789-0123456789",
    ))
    .await;
    let access = tok["access_token"].as_str().unwrap().to_string();
    let (st, _, body, _) = call(
        h.http
            .post(h.url("/tiktok/v2/video/list/"))
            .bearer_auth(&access)
            .json(&json!({})),
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "scope_not_authorized");
    let (st, _, body, _) = call(
        h.http
            .get(h.url("/tiktok/v2/user/info/"))
            .bearer_auth(&access),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "invalid_params");

    let code = tt_code(
        &h,
        "user.info.basic,video.list,video.publish",
        "w-0123456789-0123456789-0123456789-0123456789",
    )
    .await;
    let (_, _, tok, _) = call(tt_exchange(
        &h,
        &code,
        "w-0123456789-0123456789-0123456789-0123456789",
    ))
    .await;
    let access = tok["access_token"].as_str().unwrap().to_string();
    let (_, _, page, _) = call(
        h.http
            .post(h.url("/tiktok/v2/video/list/"))
            .bearer_auth(&access)
            .json(&json!({"max_count": 20})),
    )
    .await;
    assert_eq!(page["data"]["has_more"], true);
    let cursor = page["data"]["cursor"].clone();
    let (_, _, page, _) = call(
        h.http
            .post(h.url("/tiktok/v2/video/list/"))
            .bearer_auth(&access)
            .json(&json!({"max_count": 20, "cursor": cursor})),
    )
    .await;
    assert_eq!(page["data"]["has_more"], false);
    assert_eq!(page["data"]["videos"].as_array().unwrap().len(), 10);

    let (_, _, init, _) = call(
        h.http
            .post(h.url("/tiktok/v2/post/publish/video/init/"))
            .bearer_auth(&access),
    )
    .await;
    let id = init["data"]["publish_id"].clone();
    let status = || {
        h.http
            .post(h.url("/tiktok/v2/post/publish/status/fetch/"))
            .bearer_auth(&access)
            .json(&json!({"publish_id": id}))
    };
    let (_, _, s, _) = call(status()).await;
    assert_eq!(s["data"]["status"], "PROCESSING_DOWNLOAD");
    h.advance(31);
    let (_, _, s, _) = call(status()).await;
    assert_eq!(s["data"]["status"], "PUBLISH_COMPLETE");
    h.stop().await;
}

async fn threads_short(h: &Harness, scope: &str) -> (String, serde_json::Value) {
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
    let (st, _, tok, _) = call(h.http.post(h.url("/threads/oauth/access_token")).form(&[
        ("client_id", "demo-threads"),
        ("client_secret", "demo-threads-secret"),
        ("code", q["code"].as_str()),
        ("grant_type", "authorization_code"),
        ("redirect_uri", REDIRECT),
    ]))
    .await;
    assert_eq!(st, StatusCode::OK);
    assert!(tok["user_id"].is_number());
    (tok["access_token"].as_str().unwrap().to_string(), tok)
}

fn threads_exchange(h: &Harness, short: &str, secret: &str) -> reqwest::RequestBuilder {
    h.http.get(h.url("/threads/access_token")).query(&[
        ("grant_type", "th_exchange_token"),
        ("client_secret", secret),
        ("access_token", short),
    ])
}

fn threads_refresh(h: &Harness, long: &str) -> reqwest::RequestBuilder {
    h.http
        .get(h.url("/threads/refresh_access_token"))
        .query(&[("grant_type", "th_refresh_token"), ("access_token", long)])
}

#[tokio::test]
async fn threads_exchange_the_24_hour_refresh_rule_and_expiry() {
    let h = Harness::start().await;
    let (short, _) = threads_short(&h, "threads_basic,threads_content_publish").await;
    let (st, _, long, _) = call(threads_exchange(&h, &short, "demo-threads-secret")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(long["token_type"], "bearer");
    assert_eq!(long["expires_in"], 5_184_000);
    let long = long["access_token"].as_str().unwrap().to_string();

    let (st, _, me, _) = call(
        h.http
            .get(h.url("/threads/v1.0/me?fields=id,username"))
            .bearer_auth(&long),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(me["username"], "test-user");
    let (st, _, _, _) = call(
        h.http
            .get(h.url("/threads/v1.0/me"))
            .query(&[("access_token", &long)]),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "the access_token parameter works too");

    // Under 24 h old: refused.
    let (st, _, err, _) = call(threads_refresh(&h, &long)).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("24 hours")
    );
    h.advance(24 * 3600);
    let (st, _, fresh, _) = call(threads_refresh(&h, &long)).await;
    assert_eq!(st, StatusCode::OK);
    let fresh = fresh["access_token"].as_str().unwrap().to_string();
    assert_ne!(fresh, long, "a refresh returns a new token string");

    // 61 days later the refreshed token has expired and can no longer be refreshed.
    h.advance(61 * 86_400);
    let (st, headers, err, _) =
        call(h.http.get(h.url("/threads/v1.0/me")).bearer_auth(&fresh)).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(
        (
            err["error"]["code"].as_i64(),
            err["error"]["error_subcode"].as_i64()
        ),
        (Some(190), Some(463))
    );
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Error validating access token: Session has expired on")
    );
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("OAuth \"Facebook Platform\" \"invalid_token\"")
    );
    let (_, _, err, _) = call(threads_refresh(&h, &fresh)).await;
    assert_eq!(err["error"]["code"], 190);
    h.stop().await;
}

#[tokio::test]
async fn threads_expired_short_token_cannot_be_exchanged_and_containers_finish() {
    let h = Harness::start().await;
    let (short, _) = threads_short(&h, "threads_basic,threads_content_publish").await;
    let (_, _, err, _) = call(threads_exchange(&h, &short, "wrong")).await;
    assert_eq!(err["error"]["code"], 101);
    let (st, _, c, _) = call(
        h.http
            .post(h.url("/threads/v1.0/me/threads?media_type=TEXT&text=hi"))
            .bearer_auth(&short),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let id = c["id"].as_str().unwrap().to_string();
    let status = || {
        h.http
            .get(h.url(&format!("/threads/v1.0/{id}?fields=status,error_message")))
            .bearer_auth(&short)
    };
    let (_, _, s, _) = call(status()).await;
    assert_eq!(s["status"], "IN_PROGRESS");
    h.advance(31);
    let (_, _, s, _) = call(status()).await;
    assert_eq!(s["status"], "FINISHED");

    let (_, _, page, _) = call(
        h.http
            .get(h.url("/threads/v1.0/me/threads?limit=20"))
            .bearer_auth(&short),
    )
    .await;
    let next = page["paging"]["next"].as_str().unwrap().to_string();
    let (_, _, page2, _) = call(h.http.get(next).bearer_auth(&short)).await;
    assert_eq!(page2["data"].as_array().unwrap().len(), 5);
    assert!(page2["paging"]["next"].is_null());

    h.advance(3600);
    let (_, _, err, _) = call(threads_exchange(&h, &short, "demo-threads-secret")).await;
    assert_eq!(
        (
            err["error"]["code"].as_i64(),
            err["error"]["error_subcode"].as_i64()
        ),
        (Some(190), Some(463))
    );
    h.stop().await;
}

#[tokio::test]
async fn meta_short_to_long_lived_usage_headers_paging_and_async_insights() {
    let h = Harness::start().await;
    let q = h
        .authorize(
            "/meta/v24.0/dialog/oauth",
            &[
                ("client_id", "demo-meta"),
                ("redirect_uri", REDIRECT),
                ("state", "m"),
                ("scope", "ads_read,ads_management"),
                ("response_type", "code"),
            ],
            "approve",
        )
        .await;
    let token_url = h.url("/meta/v24.0/oauth/access_token");
    let (st, _, short, _) = call(h.http.get(&token_url).query(&[
        ("client_id", "demo-meta"),
        ("redirect_uri", REDIRECT),
        ("client_secret", "demo-meta-secret"),
        ("code", q["code"].as_str()),
    ]))
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(short["expires_in"], 3600);
    let short = short["access_token"].as_str().unwrap().to_string();
    let exchange = |t: &str| {
        h.http.get(&token_url).query(&[
            ("grant_type", "fb_exchange_token"),
            ("client_id", "demo-meta"),
            ("client_secret", "demo-meta-secret"),
            ("fb_exchange_token", t),
        ])
    };
    let (st, _, long, _) = call(exchange(&short)).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(long["expires_in"], 5_184_000);
    let long = long["access_token"].as_str().unwrap().to_string();
    let (st, _, err, _) = call(exchange(&long)).await;
    assert_eq!(
        st,
        StatusCode::BAD_REQUEST,
        "a long-lived Meta token cannot be extended"
    );
    assert_eq!(err["error"]["code"], 100);

    let (st, headers, me, _) = call(
        h.http
            .get(h.url("/meta/v24.0/me?fields=id,name"))
            .bearer_auth(&long),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(me["name"], "test-user");
    let usage: serde_json::Value =
        serde_json::from_str(headers["x-app-usage"].to_str().unwrap()).unwrap();
    assert!(usage["call_count"].is_number());
    assert!(headers.contains_key("x-business-use-case-usage"));

    let (_, _, accts, _) = call(
        h.http
            .get(h.url("/meta/v24.0/me/adaccounts?limit=1"))
            .bearer_auth(&long),
    )
    .await;
    let act = accts["data"][0]["id"].as_str().unwrap().to_string();
    let next = accts["paging"]["next"].as_str().unwrap().to_string();
    let (_, _, accts2, _) = call(h.http.get(next).bearer_auth(&long)).await;
    assert_ne!(accts2["data"][0]["id"], act.as_str());
    assert!(accts2["paging"]["next"].is_null());

    let (_, headers, camps, _) = call(
        h.http
            .get(h.url(&format!("/meta/v24.0/{act}/campaigns")))
            .bearer_auth(&long),
    )
    .await;
    assert_eq!(camps["data"].as_array().unwrap().len(), 25);
    let buc: serde_json::Value =
        serde_json::from_str(headers["x-business-use-case-usage"].to_str().unwrap()).unwrap();
    let entry = &buc[act.trim_start_matches("act_")][0];
    assert_eq!(entry["type"], "ads_management");
    assert!(entry["estimated_time_to_regain_access"].is_number());

    let (_, _, run, _) = call(
        h.http
            .post(h.url(&format!("/meta/v24.0/{act}/insights")))
            .bearer_auth(&long),
    )
    .await;
    let run = run["report_run_id"].as_str().unwrap().to_string();
    let (_, _, r, _) = call(
        h.http
            .get(h.url(&format!("/meta/v24.0/{run}")))
            .bearer_auth(&long),
    )
    .await;
    assert_eq!(r["async_status"], "Job Running");
    h.advance(31);
    let (_, _, r, _) = call(
        h.http
            .get(h.url(&format!("/meta/v24.0/{run}")))
            .query(&[("access_token", &long)]),
    )
    .await;
    assert_eq!(r["async_status"], "Job Completed");

    h.advance(60 * 86_400);
    let (st, headers, err, _) = call(h.http.get(h.url("/meta/v24.0/me")).bearer_auth(&long)).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(
        (
            err["error"]["code"].as_i64(),
            err["error"]["error_subcode"].as_i64()
        ),
        (Some(190), Some(463))
    );
    assert!(headers.contains_key("www-authenticate"));
    h.stop().await;
}

#[tokio::test]
async fn per_provider_lifetime_overrides_shorten_tokens() {
    let config = SandboxConfig {
        access_lifetimes: [
            (Provider::Snapchat, Duration::from_secs(60)),
            (Provider::TiktokBusiness, Duration::from_secs(120)),
        ]
        .into(),
        long_lived_lifetimes: [(Provider::Threads, Duration::from_secs(48 * 3600))].into(),
        ..Default::default()
    };
    let h = Harness::with(config).await;
    let code = snap_code(&h).await;
    let (_, _, tok, _) = call(snap_exchange(&h, &code)).await;
    assert_eq!(tok["expires_in"], 60);
    let access = tok["access_token"].as_str().unwrap().to_string();
    h.advance(59);
    assert_eq!(
        call(h.http.get(h.url("/snapchat/v1/me")).bearer_auth(&access))
            .await
            .0,
        StatusCode::OK
    );
    h.advance(1);
    assert_eq!(
        call(h.http.get(h.url("/snapchat/v1/me")).bearer_auth(&access))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );

    // A TikTok Business token given a lifetime expires with 40102.
    let ttb = ttb_token(&h).await;
    h.advance(120);
    let (_, _, b, _) = call(
        h.http
            .get(h.url(&format!("{TTB}/user/info/")))
            .header("Access-Token", &ttb),
    )
    .await;
    assert_eq!(b["code"], 40102);

    let (short, _) = threads_short(&h, "threads_basic").await;
    let (_, _, long, _) = call(threads_exchange(&h, &short, "demo-threads-secret")).await;
    assert_eq!(long["expires_in"], 48 * 3600);
    h.stop().await;
}

//! The dashboard over plain HTTP: sign-in, the cookie's attributes, CSRF and origin checks, the
//! headers of hardening rule 12, escaping of platform-provided text, and no token on any page.

mod support;

use chrono::DateTime;
use support::{World, world, world_at};
use tokenwarden_core::connection::{Connection, ConnectionState, Environment, Problem};
use tokenwarden_core::id::{AppId, ConnectionId, ProviderId};
use tokenwarden_testkit::logs::logs;

fn logged() -> String {
    logs().text()
}

async fn sign_in(w: &World, secret: &str) -> reqwest::Response {
    w.http
        .post(format!("{}login", w.d.base))
        .form(&[("secret", secret)])
        .send()
        .await
        .unwrap()
}

/// Signs in with the admin key; the cookie pair to send back.
async fn session(w: &World) -> String {
    let r = sign_in(w, &w.admin).await;
    assert_eq!(r.status(), 303);
    r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

async fn page(w: &World, cookie: &str, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let r = w
        .http
        .get(format!("{}{path}", w.d.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap())
}

fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    html[at..at + html[at..].find('"').unwrap()].to_string()
}

#[tokio::test]
async fn sign_in_sets_a_strict_http_only_cookie_and_pages_carry_rule_12_headers() {
    let w = world().await;
    // Signed out: to the sign-in page.
    let (status, h, _) = page(&w, "", "").await;
    assert_eq!(status, 303);
    assert_eq!(h["location"], "/login");

    // Wrong secrets are refused; a token reader is not an admin.
    for bad in [
        "",
        "tw_nope_nope",
        "a password nobody set",
        w.reader.as_str(),
    ] {
        let r = sign_in(&w, bad).await;
        assert_eq!(r.status(), 401, "{bad}");
        assert!(r.headers().get("set-cookie").is_none());
    }

    let r = sign_in(&w, &w.admin).await;
    assert_eq!(r.status(), 303);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    for attr in ["tw_session=", "Path=/", "HttpOnly", "SameSite=Strict"] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(
        !set.contains("Secure"),
        "plain http: no Secure, or the browser drops it"
    );
    let cookie = set.split(';').next().unwrap().to_string();

    for path in ["", "connections", "diagnose", "login"] {
        let (status, h, html) = page(&w, &cookie, path).await;
        assert_eq!(status, 200, "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"));
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert!(!html.contains("<script>"), "no inline script on {path}");
        assert!(!html.contains(" style="), "no inline style on {path}");
        assert!(!html.contains(&w.admin), "the key never shows");
    }
    let (status, h, css) = page(&w, "", "assets/app.css").await;
    assert_eq!(status, 200);
    assert!(h["content-type"].to_str().unwrap().starts_with("text/css"));
    assert!(css.contains(".badge"));

    // Signing out ends the session on the server, not only in the browser.
    let (_, _, html) = page(&w, &cookie, "").await;
    let r = w
        .http
        .post(format!("{}logout", w.d.base))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf_of(&html))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(page(&w, &cookie, "").await.0, 303);
    w.d.stop().await;
}

#[tokio::test]
async fn on_https_the_cookie_is_host_prefixed_and_secure() {
    let w = world_at(Some(url::Url::parse("https://tokens.example.com").unwrap())).await;
    // Straight to the listener (the public name is not resolved: loopback only).
    let r = w
        .http
        .post(format!("http://{}/login", w.addr))
        .form(&[("secret", w.admin.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let set = r.headers()["set-cookie"].to_str().unwrap();
    assert!(set.starts_with("__Host-tw_session="), "{set}");
    assert!(set.contains("; Secure") && set.contains("Path=/") && !set.contains("Domain"));
    w.d.stop().await;
}

#[tokio::test]
async fn the_configured_password_signs_in_and_guessing_is_cut_off() {
    logs();
    let w = world().await;
    w.d.state
        .dashboard
        .set_password(Some("correct horse battery"));
    assert_eq!(sign_in(&w, "correct horse battery").await.status(), 303);
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(sign_in(&w, "wrong").await.status().as_u16());
    }
    assert_eq!(statuses[0], 401);
    assert_eq!(*statuses.last().unwrap(), 429, "{statuses:?}");
    assert_eq!(
        sign_in(&w, "correct horse battery").await.status(),
        429,
        "locked for a minute, even for the right password"
    );
    assert!(!logged().contains("correct horse battery"));
    assert!(logged().contains("a sign-in was refused"));
    w.d.stop().await;
}

#[tokio::test]
async fn state_changing_posts_need_the_session_csrf_token_and_this_origin() {
    logs();
    let w = world().await;
    let flow = w.start_and_approve("snapchat", "csrf-target").await;
    w.finish(&flow).await;
    let cookie = session(&w).await;
    let (_, _, html) = page(&w, &cookie, "connections/csrf-target").await;
    let csrf = csrf_of(&html);
    let post = |csrf: Option<String>, origin: Option<&'static str>, cookie: Option<String>| {
        let mut r = w
            .http
            .post(format!("{}connections/csrf-target/refresh", w.d.base));
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        let form: Vec<(&str, String)> = csrf.into_iter().map(|c| ("csrf", c)).collect();
        async move { r.form(&form).send().await.unwrap().status().as_u16() }
    };
    let version = || async {
        w.api(&w.admin, "v1/connections/csrf-target").await.1["token"]["version"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(version().await, 1);
    assert_eq!(
        post(None, None, Some(cookie.clone())).await,
        403,
        "no token"
    );
    assert_eq!(
        post(Some("forged".into()), None, Some(cookie.clone())).await,
        403,
        "wrong token"
    );
    assert_eq!(
        post(
            Some(csrf.clone()),
            Some("http://evil.example"),
            Some(cookie.clone())
        )
        .await,
        403,
        "another origin"
    );
    assert_eq!(
        post(Some(csrf.clone()), None, None).await,
        303,
        "no session: to sign-in"
    );
    assert_eq!(version().await, 1, "nothing was refreshed");
    // Another session's token does not work either.
    let other = session(&w).await;
    assert_eq!(post(Some(csrf.clone()), None, Some(other)).await, 403);
    assert_eq!(version().await, 1);

    assert_eq!(
        post(Some(csrf.clone()), Some("null"), Some(cookie.clone())).await,
        303
    );
    assert_eq!(version().await, 2, "the real form refreshes");
    let origin: &'static str =
        Box::leak(w.d.base.trim_end_matches('/').to_string().into_boxed_str());
    assert_eq!(
        post(Some(csrf.clone()), Some(origin), Some(cookie.clone())).await,
        303
    );
    assert_eq!(version().await, 3);
    let text = logged();
    assert!(
        text.contains("dashboard: refresh now"),
        "the action is logged"
    );
    let session_id = cookie.split_once('=').unwrap().1;
    for secret in [w.admin.as_str(), session_id, csrf.as_str()] {
        assert!(!text.contains(secret), "a secret reached a log line");
    }
    w.d.stop().await;
}

/// "Refresh now" says what happened: a new token for a renewable connection; for a long-term
/// TikTok Business token (which the platform does not renew), that nothing was refreshed and why,
/// never "a new token is stored".
#[tokio::test]
async fn refresh_now_says_whether_a_new_token_was_stored() {
    let w = world().await;
    for (provider, id) in [("tiktok-business", "tb-long"), ("snapchat", "sc-renews")] {
        let flow = w.start_and_approve(provider, id).await;
        assert_eq!(w.finish(&flow).await.0, 303);
    }
    let cookie = session(&w).await;
    let click = |id: &'static str| {
        let (w, cookie) = (&w, cookie.clone());
        async move {
            let (_, _, html) = page(w, &cookie, &format!("connections/{id}")).await;
            let r = w
                .http
                .post(format!("{}connections/{id}/refresh", w.d.base))
                .header("cookie", cookie.clone())
                .form(&[("csrf", csrf_of(&html))])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 303);
            let to = r.headers()["location"]
                .to_str()
                .unwrap()
                .trim_start_matches('/')
                .to_string();
            page(w, &cookie, &to).await.2
        }
    };
    let long = click("tb-long").await;
    assert!(!long.contains("a new token is stored"), "{long}");
    assert!(
        long.contains("Not refreshed: the platform does not renew this token"),
        "{long}"
    );
    let renewed = click("sc-renews").await;
    assert!(
        renewed.contains("Refreshed: a new token is stored."),
        "{renewed}"
    );
    w.d.stop().await;
}

#[tokio::test]
async fn platform_text_is_escaped_and_no_token_reaches_a_page() {
    let w = world().await;
    let flow = w.start_and_approve("tiktok", "tt-1").await;
    w.finish(&flow).await;
    let (_, token) = w.api(&w.reader, "v1/connections/tt-1/token").await;
    let token = token["access_token"].as_str().unwrap().to_string();

    // A connection whose platform-provided strings carry markup.
    let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    w.d.state
        .store
        .put_connection(&Connection {
            id: ConnectionId::parse("hostile").unwrap(),
            provider: ProviderId::parse("meta").unwrap(),
            app: AppId::parse("demo").unwrap(),
            state: ConnectionState::ReauthRequired,
            environment: Environment::Production,
            region: None,
            api_base: "http://127.0.0.1:9".into(),
            account_ids: vec!["<script>alert(1)</script>".into()],
            account: None,
            end_user: None,
            scopes: vec!["ads_read\"><img src=x>".into()],
            problems: vec![Problem {
                code: tokenwarden_core::state::ProblemCode::GrantRefused,
                title: "<img src=x onerror=alert(2)>".into(),
                fix: "Re-authorize & <b>retry</b>".into(),
                since: now,
            }],
            created_at: now,
            updated_at: now,
        })
        .await
        .unwrap();
    let cookie = session(&w).await;
    for path in ["", "connections", "connections/hostile", "connections/tt-1"] {
        let (status, _, html) = page(&w, &cookie, path).await;
        assert_eq!(status, 200, "{path}");
        assert!(!html.contains("<script>alert"), "{path}");
        assert!(!html.contains("<img src=x"), "{path}");
        assert!(!html.contains(&token), "{path} shows the token");
        assert!(
            !html.contains("demo-tiktok-secret"),
            "{path} shows the client secret"
        );
    }
    let (_, _, html) = page(&w, &cookie, "connections/hostile").await;
    assert!(html.contains("&lt;img src=x onerror=alert(2)&gt;"));
    assert!(html.contains("Re-authorize &amp; &lt;b&gt;retry&lt;/b&gt;"));
    let (_, _, html) = page(&w, &cookie, "connections/tt-1").await;
    assert!(
        html.contains(&format!("…{}", &token[token.len() - 4..])),
        "the hint is shown"
    );

    // Search filters server-side too.
    let (_, _, html) = page(&w, &cookie, "connections?q=hostile").await;
    assert!(
        html.contains("data-connection=\"hostile\"") && !html.contains("data-connection=\"tt-1\"")
    );
    let (_, _, html) = page(&w, &cookie, "connections?state=active").await;
    assert!(
        !html.contains("data-connection=\"hostile\"") && html.contains("data-connection=\"tt-1\"")
    );
    w.d.stop().await;
}

#[tokio::test]
async fn an_environment_mismatch_shows_with_its_fix_and_logs_no_secret() {
    logs();
    let w = world().await;
    // Credentials of a sandbox developer app, configured for production.
    w.tiktok_app("sbx-creds", "demo-tiktok-business-sandbox", "production")
        .await;
    let flow = w
        .start_and_approve("tiktok-business", "mismatched&app=sbx-creds")
        .await;
    assert_eq!(w.finish(&flow).await.0, 303);
    let (status, c) = w
        .post(
            &w.admin,
            "v1/connections/mismatched/probe",
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(c["problems"][0]["code"], "environment_mismatch", "{c}");
    let (_, token) = w.api(&w.reader, "v1/connections/mismatched/token").await;
    let token = token["access_token"].as_str().unwrap().to_string();

    let cookie = session(&w).await;
    let (_, _, html) = page(&w, &cookie, "connections/mismatched").await;
    assert!(
        html.contains("data-code=\"environment_mismatch\""),
        "{html}"
    );
    assert!(
        html.contains(
            "The token belongs to TikTok API for Business&#39;s sandbox environment, but app sbx-creds is configured for production"
        ),
        "{html}"
    );
    assert!(
        html.contains("set environment = &quot;sandbox&quot;"),
        "{html}"
    );
    // On the overview it needs action, and the button leads to the details rather than to a
    // re-authorization that would not help.
    let (_, _, html) = page(&w, &cookie, "").await;
    let at = html
        .find("<tr data-connection=\"mismatched\">")
        .expect("a needs-action row");
    let row = &html[at..at + html[at..].find("</tr>").unwrap()];
    assert!(
        row.contains("sandbox environment") && row.contains("Details"),
        "{row}"
    );
    assert!(!row.contains("Re-authorize"), "{row}");
    for path in ["", "connections", "connections/mismatched"] {
        let (_, _, html) = page(&w, &cookie, path).await;
        assert!(!html.contains(&token), "{path}");
        assert!(!html.contains("-secret"), "{path}");
    }
    w.d.stop().await;
    let text = logged();
    assert!(
        text.contains("the token works only on the platform's other environment's host"),
        "the new path logged"
    );
    assert!(!text.contains(&token), "the token reached the logs");
    assert!(!text.contains("demo-tiktok-business-sandbox-secret"));
}

#[tokio::test]
async fn a_refused_app_shows_on_the_overview_with_its_fix() {
    let w = world().await;
    let flow = w.start_and_approve("snapchat", "app-victim").await;
    w.finish(&flow).await;
    let cookie = session(&w).await;
    let (_, _, html) = page(&w, &cookie, "").await;
    assert!(!html.contains("id=\"app-problems\""));
    let sb = w.d.sandbox_base.clone().unwrap();
    let r = w
        .http
        .post(format!(
            "{sb}/_sandbox/apps/snapchat/demo-snapchat/rotate-secret"
        ))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let new_secret = r.json::<serde_json::Value>().await.unwrap()["client_secret"]
        .as_str()
        .unwrap()
        .to_string();
    let r = w
        .http
        .post(format!("{}v1/connections/app-victim/refresh", w.d.base))
        .bearer_auth(&w.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502, "{}", r.text().await.unwrap());
    let (_, _, html) = page(&w, &cookie, "").await;
    let at = html
        .find("id=\"app-problems\"")
        .expect("an app problems card");
    let card = &html[at..at + html[at..].find("</section>").unwrap()];
    assert!(card.contains("Snapchat Marketing API · app demo"), "{card}");
    assert!(card.contains("Fix:"), "{card}");
    assert!(!html.contains(&new_secret) && !html.contains("demo-snapchat-secret"));
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
    assert!(
        metrics.contains("tokenwarden_app_problems{provider=\"snapchat\",code=\"app_refused\"} 1"),
        "{metrics}"
    );
    w.d.stop().await;
}

#[tokio::test]
async fn the_connections_table_pages_through_many_connections() {
    let w = world().await;
    let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    for i in 0..230 {
        w.d.state
            .store
            .put_connection(&Connection {
                id: ConnectionId::parse(format!("many-{i:03}")).unwrap(),
                provider: ProviderId::parse("snapchat").unwrap(),
                app: AppId::parse("demo").unwrap(),
                state: ConnectionState::Pending,
                environment: Environment::Production,
                region: None,
                api_base: "http://127.0.0.1:9".into(),
                account_ids: vec![],
                account: None,
                end_user: None,
                scopes: vec![],
                problems: vec![],
                created_at: now,
                updated_at: now,
            })
            .await
            .unwrap();
    }
    let cookie = session(&w).await;
    let rows = |html: &str| html.matches("<tr data-search=").count();
    let (_, _, first) = page(&w, &cookie, "connections?q=many").await;
    assert_eq!(rows(&first), 100);
    assert!(first.contains("230 of 230 connections match; rows 1–100 (page 1 of 3)"));
    assert!(first.contains("href=\"/connections?q=many&amp;state=&amp;provider=&amp;page=1\""));
    assert!(!first.contains(">Previous<"));
    let (_, _, last) = page(&w, &cookie, "connections?q=many&page=2").await;
    assert_eq!(rows(&last), 30);
    assert!(
        last.contains("data-connection=\"many-229\"")
            && !last.contains("data-connection=\"many-000\"")
    );
    assert!(last.contains(">Previous<") && !last.contains(">Next<"));
    let (_, _, beyond) = page(&w, &cookie, "connections?q=many&page=99").await;
    assert_eq!(rows(&beyond), 30, "a page past the end shows the last one");
    let (_, _, few) = page(&w, &cookie, "connections?q=many-00").await;
    assert_eq!(rows(&few), 10);
    assert!(few.contains("10 of 230 connections match. "));
    w.d.stop().await;
}

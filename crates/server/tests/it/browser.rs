//! The dashboard in headless Chromium (Debian's `chromium` and `chromium-driver`, driven over
//! WebDriver): sign in, see the overview, connect a sandbox account by clicking through the
//! sandbox's authorize page, see it healthy, revoke it at the sandbox, see it turn
//! `reauth_required` with the fix, re-authorize with one click, and have a form post without its
//! CSRF token refused. Screenshots of each page land in `target/screenshots/`.

use crate::support;
#[path = "../webdriver/mod.rs"]
mod webdriver;

use chrono::TimeDelta;
use support::{World, world};
use webdriver::Browser;

fn skip() -> bool {
    if std::env::var_os("TOKENWARDEN_SKIP_BROWSER_TESTS").is_some() {
        eprintln!("browser tests skipped: TOKENWARDEN_SKIP_BROWSER_TESTS is set");
        return true;
    }
    false
}

async fn approve_at_sandbox(b: &Browser, sandbox: &str) {
    let approve = b.find("button[value=approve]").await;
    assert!(
        b.url().await.starts_with(sandbox),
        "the browser is at the platform's (sandbox's) authorize page"
    );
    b.click_through(approve).await;
    let h1 = b.find("h1").await.text().await;
    assert_eq!(h1, "Connected", "{}", b.source().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_connects_watches_a_revocation_and_reauthorizes_in_the_browser() {
    if skip() {
        return;
    }
    let w = world().await;
    let base = w.d.base.clone();
    let sandbox = w.d.sandbox_base.clone().unwrap();
    let b = Browser::start().await;

    // Signed out: every page leads to the sign-in form; a wrong key is refused.
    b.goto(&format!("{base}connections")).await;
    assert!(
        b.url().await.ends_with("/login?next=%2Fconnections"),
        "{}",
        b.url().await
    );
    b.find("#secret").await.type_text("tw_not_a_key").await;
    b.click_through(b.find("button[type=submit]").await).await;
    let err = b.find("p.error").await.text().await;
    assert!(err.contains("not an admin API key"), "{err}");
    b.screenshot("01-sign-in-refused").await;
    // A token-reader key is not enough either.
    b.find("#secret").await.type_text(&w.reader).await;
    b.click_through(b.find("button[type=submit]").await).await;
    b.find("p.error").await;
    assert!(b.url().await.ends_with("/login"));

    // Signed in, the browser goes on to the page it was going to.
    b.find("#secret").await.type_text(&w.admin).await;
    b.click_through(b.find("button[type=submit]").await).await;
    b.find("#connections").await;
    assert!(b.url().await.ends_with("/connections"), "{}", b.url().await);
    b.goto(&base).await;
    b.find("section.stats").await;
    assert_eq!(b.title().await, "Overview · tokenwarden");
    assert!(
        b.find("#needs-action")
            .await
            .text()
            .await
            .contains("Nothing needs you"),
        "an empty daemon needs nothing"
    );
    b.screenshot("02-overview-empty").await;

    // Connect a sandbox account: pick the platform, name the connection, approve at the platform.
    b.find("#connect-provider option[value=snapchat]")
        .await
        .click()
        .await;
    b.find("#connect-id").await.type_text("acme-snap").await;
    b.click_through(b.find("#connect-go").await).await;
    b.find("button[value=approve]").await;
    b.screenshot("03-sandbox-authorize").await;
    approve_at_sandbox(&b, &sandbox).await;

    // Healthy, with the token shown only as its last four characters.
    b.goto(&format!("{base}connections/acme-snap")).await;
    b.find(".head .badge[data-state=active]").await;
    let hint = b.find("#token-hint").await.text().await;
    assert!(hint.starts_with('…') && hint.chars().count() == 5, "{hint}");
    let (status, token) = w.api(&w.reader, "v1/connections/acme-snap/token").await;
    assert_eq!(status, 200);
    let token = token["access_token"].as_str().unwrap().to_string();
    assert!(token.ends_with(&hint[hint.len() - 4..]));
    assert!(
        !b.source().await.contains(&token),
        "the page never shows the token"
    );
    // The platform account behind the grant is shown (the sandbox's consent page approves as
    // "test-user").
    let account = b.find("#account").await.text().await;
    assert!(account.contains("test-user"), "{account}");
    b.screenshot("04-connection-healthy").await;

    // Refresh now (a CSRF-protected form) gives a new token version.
    b.click_through(b.find("#refresh-now").await).await;
    let notice = b.find("p.notice").await.text().await;
    assert!(notice.starts_with("Refreshed"), "{notice}");
    let (_, after) = w.api(&w.admin, "v1/connections/acme-snap").await;
    assert_eq!(after["token"]["version"], 2, "{after}");
    assert!(
        b.source().await.contains("refreshed"),
        "the timeline shows the refresh"
    );

    // Overview and connections list show it healthy.
    b.goto(&format!("{base}connections")).await;
    let row = b.find("tr[data-connection=acme-snap]").await.text().await;
    assert!(row.contains("healthy"), "{row}");
    // The page's own script runs under the CSP: the search box filters rows as one types.
    let visible = "return document.querySelectorAll('#connections tbody tr[data-search]:not([hidden])').length;";
    assert_eq!(b.execute(visible).await, 1);
    b.find("#filter")
        .await
        .type_text("no-such-connection")
        .await;
    assert_eq!(b.execute(visible).await, 0, "the live filter hid the row");

    // The platform revokes the grant; probing now finds it and says what to do.
    let grants: serde_json::Value = w
        .http
        .get(format!("{sandbox}/_sandbox/grants?provider=snapchat"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let grant = grants["grants"].as_array().unwrap().last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = w
        .http
        .post(format!("{sandbox}/_sandbox/grants/{grant}/revoke"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    b.goto(&format!("{base}connections/acme-snap")).await;
    b.click_through(b.find("#probe-now").await).await;
    b.find(".head .badge[data-state=reauth_required]").await;
    let problem = b.find("#problems li").await.text().await;
    assert!(problem.contains("Fix:"), "{problem}");
    assert!(
        problem.to_lowercase().contains("authoriz"),
        "the fix says to re-authorize: {problem}"
    );
    b.screenshot("05-connection-reauth-required").await;
    b.goto(&base).await;
    let needs = b
        .find("#needs-action tr[data-connection=acme-snap]")
        .await
        .text()
        .await;
    assert!(needs.contains("reauth required"), "{needs}");
    assert_eq!(b.find(".stat.reauth_required .n").await.text().await, "1");
    b.screenshot("06-overview-needs-action").await;

    // The re-authorization link API errors and webhooks carry is the dashboard's page: it starts
    // nothing until its button is pressed.
    let (_, c) = w.api(&w.admin, "v1/connections/acme-snap").await;
    let link = c["reauthorize_url"].as_str().unwrap().to_string();
    b.goto(&link).await;
    assert!(
        b.url().await.starts_with(&base),
        "no redirect to the platform yet"
    );
    b.click_through(b.find("#reauthorize-go").await).await;
    approve_at_sandbox(&b, &sandbox).await;

    // One click on Re-authorize, then approve at the platform: healthy again.
    b.goto(&format!("{base}connections/acme-snap")).await;
    b.click_through(b.find("#reauthorize").await).await;
    approve_at_sandbox(&b, &sandbox).await;
    b.goto(&format!("{base}connections/acme-snap")).await;
    b.find(".head .badge[data-state=active]").await;
    assert!(
        b.find("#problems")
            .await
            .text()
            .await
            .contains("No open problems"),
        "re-authorization clears the problem"
    );
    b.screenshot("07-connection-reauthorized").await;

    // A form post without the CSRF token is refused, and changes nothing.
    let (_, before) = w.api(&w.admin, "v1/connections/acme-snap").await;
    b.execute(
        "document.querySelectorAll('input[name=csrf]').forEach(function (e) { e.remove(); });",
    )
    .await;
    b.click_through(b.find("#refresh-now").await).await;
    let h1 = b.find("h1").await.text().await;
    assert_eq!(h1, "Refused");
    assert!(b.source().await.contains("anti-forgery token"));
    b.screenshot("08-csrf-refused").await;
    let (_, after) = w.api(&w.admin, "v1/connections/acme-snap").await;
    assert_eq!(
        before["token"]["version"], after["token"]["version"],
        "nothing was refreshed"
    );

    // Diagnose a pasted response.
    b.goto(&format!("{base}diagnose")).await;
    b.find("#diagnose-provider option[value=tiktok-business]")
        .await
        .click()
        .await;
    b.find("#response")
        .await
        .type_text("HTTP/1.1 200 OK\ncontent-type: application/json\n\n{\"code\":40100,\"message\":\"Too many requests\",\"data\":{}}")
        .await;
    b.click_through(b.find("#diagnose-go").await).await;
    let verdict = b.find("#verdict").await.text().await;
    assert!(verdict.contains("rate_limited"), "{verdict}");
    b.screenshot("09-diagnose").await;

    // A link minted through the API, opened in the browser, connects once; opened again, it says
    // it was used.
    let (status, minted) = w
        .post(
            &w.admin,
            "v1/connect-sessions",
            serde_json::json!({"provider": "tiktok", "connection_id": "api-minted"}),
        )
        .await;
    assert_eq!(status, 201, "{minted}");
    let link = minted["url"].as_str().unwrap().to_string();
    b.goto(&link).await;
    assert!(
        b.url().await.starts_with(&base),
        "opening the link spends nothing"
    );
    b.screenshot("10-connect-link").await;
    b.click_through(b.find("#continue").await).await;
    approve_at_sandbox(&b, &sandbox).await;
    b.goto(&link).await;
    let h1 = b.find("h1").await.text().await;
    assert_eq!(
        h1,
        "This connect link was already used",
        "{}",
        b.source().await
    );
    b.goto(&format!("{base}connect/snapchat?connection_id=acme-snap"))
        .await;
    let h1 = b.find("h1").await.text().await;
    assert_eq!(h1, "Connect links are issued per person");

    // Sign out: the session is gone.
    b.goto(&base).await;
    b.click_through(b.find("header button.link").await).await;
    b.find("#secret").await;
    b.goto(&base).await;
    assert!(b.url().await.ends_with("/login"));

    b.quit().await;
    w.d.stop().await;
}

async fn sandbox_post(w: &World, path: &str, body: serde_json::Value) {
    let sb = w.d.sandbox_base.clone().unwrap();
    let r = w
        .http
        .post(format!("{sb}/_sandbox/{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "{path}: {}",
        r.text().await.unwrap()
    );
}

async fn sign_in(b: &Browser, w: &World) {
    b.goto(&format!("{}login", w.d.base)).await;
    b.find("#secret").await.type_text(&w.admin).await;
    b.click_through(b.find("button[type=submit]").await).await;
    b.find("section.stats").await;
}

/// Regenerates `docs/dashboard.png` (the README's screenshot) from a day of sandbox activity:
/// `cargo test -p tokenwarden-server --test it -- --ignored readme_screenshot`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes docs/dashboard.png; run it by name to refresh the README's screenshot"]
async fn readme_screenshot() {
    let w = world().await;
    for (p, id) in [
        ("snapchat", "acme-snapchat"),
        ("tiktok", "acme-tiktok"),
        ("tiktok-business", "acme-ads"),
        ("threads", "brand-threads"),
        ("meta", "acme-meta"),
        ("snapchat", "shop-snapchat"),
    ] {
        let flow = w.start_and_approve(p, id).await;
        assert_eq!(w.finish(&flow).await.0, 303);
    }
    // A day of refreshes, with throttling and a failure or two along the way.
    for hour in 0..22 {
        w.clock.advance(TimeDelta::minutes(61));
        if hour % 7 == 3 {
            sandbox_post(
                &w,
                "faults/snapchat/throttle",
                serde_json::json!({"next": 1, "target": "token"}),
            )
            .await;
        }
        if hour == 12 {
            sandbox_post(
                &w,
                "faults/tiktok/outage",
                serde_json::json!({"for": "30m", "status": 503}),
            )
            .await;
        }
        for id in ["acme-snapchat", "shop-snapchat", "acme-tiktok"] {
            w.api(&w.reader, &format!("v1/connections/{id}/token"))
                .await;
        }
    }
    // Now: TikTok's token endpoint is down, and Meta's grant was revoked.
    sandbox_post(
        &w,
        "faults/tiktok/outage",
        serde_json::json!({"for": "10h", "status": 502}),
    )
    .await;
    w.http
        .post(format!("{}v1/connections/acme-tiktok/refresh", w.d.base))
        .bearer_auth(&w.admin)
        .send()
        .await
        .unwrap();
    let sb = w.d.sandbox_base.clone().unwrap();
    let grants: serde_json::Value = w
        .http
        .get(format!("{sb}/_sandbox/grants?provider=meta"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let g = grants["grants"][0]["id"].as_str().unwrap().to_string();
    sandbox_post(&w, &format!("grants/{g}/revoke"), serde_json::json!({})).await;
    let http = tokenwarden_server::probe::client();
    for id in ["acme-meta", "acme-ads", "acme-snapchat"] {
        let id = tokenwarden_core::id::ConnectionId::parse(id).unwrap();
        tokenwarden_server::monitor::probe(&w.d.state, &http, &id).await;
    }

    let b = Browser::start().await;
    b.resize(1360, 1240).await;
    sign_in(&b, &w).await;
    assert_eq!(b.find(".stat.reauth_required .n").await.text().await, "1");
    assert_eq!(b.find(".stat.degraded .n").await.text().await, "1");
    let shot = b.screenshot("readme-overview").await;
    let docs =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/dashboard.png");
    std::fs::copy(&shot, &docs).unwrap();
    b.goto(&format!("{}connections", w.d.base)).await;
    b.find("#connections").await;
    b.screenshot("readme-connections").await;
    b.goto(&format!("{}connections/acme-snapchat", w.d.base))
        .await;
    b.find("#timeline").await;
    b.screenshot("readme-connection").await;
    b.quit().await;
    w.d.stop().await;
}

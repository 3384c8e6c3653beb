//! The connect flow played by an attacker who can reach the daemon (they must, to connect
//! accounts) and knows connection ids (they are in links, webhooks and alerts): none of their
//! moves changes a stored token, and each gets a clear page. The honest flows still work.

use crate::support;

use serde_json::{Value, json};
use support::{World, world};

/// The token a reader gets for `id`, and its version, or the error code.
async fn token_of(w: &World, id: &str) -> (String, i64) {
    let (status, t) = w
        .api(&w.reader, &format!("v1/connections/{id}/token"))
        .await;
    assert_eq!(status, 200, "{t}");
    let (_, c) = w.api(&w.admin, &format!("v1/connections/{id}")).await;
    (
        t["access_token"].as_str().unwrap().to_string(),
        c["token"]["version"].as_i64().unwrap(),
    )
}

async fn connect(
    w: &World,
    provider: &str,
    id: &str,
    account: &str,
    extra: Value,
) -> (u16, String) {
    let link = w.mint(provider, id, extra).await;
    let flow = w.approve_link(provider, &link, account).await;
    w.finish(&flow).await
}

async fn grants(w: &World, provider: &str) -> Vec<(String, String)> {
    let sb = w.d.sandbox_base.clone().unwrap();
    let v: Value = w
        .http
        .get(format!("{sb}/_sandbox/grants?provider={provider}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["account"].as_str().unwrap().to_string(),
                g["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn kinds(w: &World, id: &str) -> Vec<String> {
    let (_, e) = w
        .api(&w.admin, &format!("v1/connections/{id}/events"))
        .await;
    e["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn an_anonymous_connect_link_starts_nothing() {
    let w = world().await;
    let (status, _) = connect(&w, "snapchat", "victim", "alice", json!({})).await;
    assert_eq!(status, 303);
    let before = token_of(&w, "victim").await;
    for path in [
        "connect/snapchat?connection_id=victim",
        "connect/tiktok?connection_id=victim",
        "connect/snapchat",
    ] {
        let r = w
            .http
            .get(format!("{}{path}", w.d.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}");
        assert!(r.headers().get("location").is_none());
        assert!(r.headers().get("set-cookie").is_none());
        let page = r.text().await.unwrap();
        assert!(
            page.contains("Connect links are issued per person"),
            "{page}"
        );
    }
    assert_eq!(token_of(&w, "victim").await, before);
}

#[tokio::test]
async fn only_an_admin_key_mints_a_session() {
    let w = world().await;
    let body = json!({"provider": "snapchat", "connection_id": "x"});
    let r = w
        .http
        .post(format!("{}v1/connect-sessions", w.d.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (status, v) = w.post(&w.reader, "v1/connect-sessions", body).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
}

#[tokio::test]
async fn a_link_works_once_and_a_replay_gets_a_clear_page() {
    let w = world().await;
    let link = w
        .mint("snapchat", "once", json!({"end_user": "Acme GmbH"}))
        .await;
    assert!(
        link.starts_with(&format!("{}connect/s/", w.d.base)),
        "{link}"
    );
    let flow = w.approve_link("snapchat", &link, "alice").await;
    assert_eq!(w.finish(&flow).await.0, 303);
    let before = token_of(&w, "once").await;
    // The link again, and a second browser racing with it: both told it was used.
    for _ in 0..2 {
        let r = w.http.get(&link).send().await.unwrap();
        assert_eq!(r.status(), 410);
        assert!(r.headers().get("location").is_none());
        assert!(r.text().await.unwrap().contains("already used"));
    }
    // A link that never existed, and one with junk in it.
    let forged = format!("{}connect/s/{}", w.d.base, "A".repeat(43));
    assert_eq!(w.http.get(&forged).send().await.unwrap().status(), 404);
    let junk = format!("{}connect/s/%3Cscript%3E", w.d.base);
    let r = w.http.get(&junk).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(!r.text().await.unwrap().contains("<script>"));
    assert_eq!(token_of(&w, "once").await, before);
    // The session's label and the account are kept on the connection.
    let (_, c) = w.api(&w.admin, "v1/connections/once").await;
    assert_eq!(c["end_user"], "Acme GmbH", "{c}");
    assert_eq!(c["account"]["name"], "alice", "{c}");
    assert!(
        c["account"]["id"].as_str().is_some_and(|i| !i.is_empty()),
        "{c}"
    );
}

#[tokio::test]
async fn an_expired_link_is_refused() {
    let w = world().await;
    let link = w.mint("snapchat", "late", json!({"expires_in": 60})).await;
    w.clock.advance(chrono::TimeDelta::seconds(61));
    let r = w.http.get(&link).send().await.unwrap();
    assert_eq!(r.status(), 410);
    assert!(r.text().await.unwrap().contains("expired"));
    let (status, _) = w.api(&w.admin, "v1/connections/late").await;
    assert_eq!(status, 404, "nothing was made");
}

#[tokio::test]
async fn a_link_is_bound_to_its_connection_and_its_provider() {
    let w = world().await;
    assert_eq!(
        connect(&w, "snapchat", "victim", "alice", json!({}))
            .await
            .0,
        303
    );
    assert_eq!(
        connect(&w, "threads", "threads-1", "alice", json!({}))
            .await
            .0,
        303
    );
    let victim = token_of(&w, "victim").await;
    let threads = token_of(&w, "threads-1").await;

    // The attacker's own link for connection "mine": query parameters naming another connection,
    // provider or app are ignored.
    let link = w.mint("snapchat", "mine", json!({})).await;
    let tampered = format!("{link}?connection_id=victim&provider=tiktok&app=other");
    let flow = w.approve_link("snapchat", &tampered, "mallory").await;
    assert_eq!(w.finish(&flow).await.0, 303);
    assert_eq!(token_of(&w, "victim").await, victim);
    let (_, mine) = w.api(&w.admin, "v1/connections/mine").await;
    assert_eq!(mine["provider"], "snapchat");

    // A session for another provider than the connection's is refused when it is made...
    let (status, v) = w
        .post(
            &w.admin,
            "v1/connect-sessions",
            json!({"provider": "tiktok", "connection_id": "threads-1"}),
        )
        .await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["code"], "provider_mismatch");

    // ...and a flow of provider X completed on provider Y's callback is refused.
    let link = w.mint("tiktok", "tt-1", json!({})).await;
    let flow = w.approve_link("tiktok", &link, "mallory").await;
    let wrong = flow
        .callback
        .replace("/callback/tiktok", "/callback/threads");
    let r = w
        .http
        .get(&wrong)
        .header("cookie", &flow.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("another platform"));
    assert_eq!(token_of(&w, "threads-1").await, threads);
    let (_, c) = w.api(&w.admin, "v1/connections/threads-1").await;
    assert_eq!(c["provider"], "threads");
}

#[tokio::test]
async fn a_reauthorization_with_another_account_keeps_the_tokens_unless_allowed() {
    let w = world().await;
    // TikTok Login Kit: its revocation endpoint withdraws the whole grant, which the sandbox shows.
    assert_eq!(
        connect(&w, "tiktok", "acct", "alice", json!({})).await.0,
        303
    );
    let before = token_of(&w, "acct").await;
    let (_, c) = w.api(&w.admin, "v1/connections/acct").await;
    let alice = c["account"].clone();
    assert_eq!(alice["name"], "alice", "{c}");

    // Another account: refused, old tokens kept, the new grant withdrawn at the platform.
    let (status, page) = connect(&w, "tiktok", "acct", "mallory", json!({})).await;
    assert_eq!(status, 409, "{page}");
    assert!(
        page.contains("not the account this connection belongs to"),
        "{page}"
    );
    assert!(page.contains("mallory"), "{page}");
    assert!(
        !page.contains("alice"),
        "the old account is not shown to whoever approved"
    );
    assert_eq!(token_of(&w, "acct").await, before);
    let (_, c) = w.api(&w.admin, "v1/connections/acct").await;
    assert_eq!(c["account"], alice);
    assert!(
        kinds(&w, "acct")
            .await
            .contains(&"account_change_refused".to_string())
    );
    let g = grants(&w, "tiktok").await;
    assert!(g.contains(&("alice".into(), "active".into())), "{g:?}");
    assert!(g.contains(&("mallory".into(), "revoked".into())), "{g:?}");

    // The same account again: the tokens are replaced, nothing is revoked.
    let (status, page) = connect(&w, "tiktok", "acct", "alice", json!({})).await;
    assert_eq!(status, 303, "{page}");
    assert!(page.contains("Connected"), "{page}");
    let same = token_of(&w, "acct").await;
    assert_ne!(same, before);
    assert!(
        grants(&w, "tiktok")
            .await
            .iter()
            .filter(|(a, s)| a == "alice" && s == "active")
            .count()
            == 2
    );

    // A session that allows the change: the new account is taken, the old grant revoked.
    let (status, page) = connect(
        &w,
        "tiktok",
        "acct",
        "bob",
        json!({"allow_account_change": true}),
    )
    .await;
    assert_eq!(status, 303, "{page}");
    let (_, c) = w.api(&w.admin, "v1/connections/acct").await;
    assert_eq!(c["account"]["name"], "bob", "{c}");
    assert_ne!(token_of(&w, "acct").await, same);
    // The grant whose tokens were replaced is revoked. (The first alice grant was superseded by
    // the same-account re-authorization; the sandbox keeps grants apart, so it stays active.)
    let g = grants(&w, "tiktok").await;
    assert!(g.contains(&("bob".into(), "active".into())), "{g:?}");
    assert_eq!(
        g.iter()
            .filter(|(a, s)| a == "alice" && s == "revoked")
            .count(),
        1,
        "{g:?}"
    );
}

#[tokio::test]
async fn repeated_callback_parameters_are_refused_before_the_state_is_spent() {
    let w = world().await;
    assert_eq!(
        connect(&w, "snapchat", "dup", "alice", json!({})).await.0,
        303
    );
    let before = token_of(&w, "dup").await;
    let link = w.mint("snapchat", "dup", json!({})).await;
    let flow = w.approve_link("snapchat", &link, "alice").await;
    for extra in [
        "&code=attacker",
        "&state=other",
        "&iss=x&iss=y",
        "&error=a&error=b",
    ] {
        let r = w
            .http
            .get(format!("{}{extra}", flow.callback))
            .header("cookie", &flow.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{extra}");
        assert!(
            r.text().await.unwrap().contains("more than once"),
            "{extra}"
        );
        assert_eq!(token_of(&w, "dup").await, before, "{extra}");
    }
    // The honest callback still completes: nothing was consumed by the refused ones.
    assert_eq!(w.finish(&flow).await.0, 303);
    assert_ne!(token_of(&w, "dup").await, before);
}

#[tokio::test]
async fn return_to_must_be_allowed_and_the_browser_goes_back_there() {
    let w = world().await;
    let (status, v) = w
        .post(
            &w.admin,
            "v1/connect-sessions",
            json!({"provider": "snapchat", "return_to": "https://evil.example/steal"}),
        )
        .await;
    // A well-formed URL the policy refuses is 403; one that is no http(s) URL is 400.
    assert_eq!(status, 403);
    assert_eq!(v["error"]["code"], "return_to_not_allowed");
    let (status, v) = w
        .post(
            &w.admin,
            "v1/connect-sessions",
            json!({"provider": "snapchat", "return_to": "javascript:alert(1)"}),
        )
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("bad_return_to"))
    );
    w.d.state
        .connect
        .allow_return_to(&["https://app.example.com".parse().unwrap()]);
    let link = w
        .mint(
            "snapchat",
            "back",
            json!({"return_to": "https://app.example.com/connected?x=1"}),
        )
        .await;
    let flow = w.approve_link("snapchat", &link, "alice").await;
    let r = w
        .http
        .get(&flow.callback)
        .header("cookie", &flow.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let to = r.headers()["location"].to_str().unwrap();
    assert!(
        to.starts_with("https://app.example.com/connected?x=1&connection_id=back&status=connected"),
        "{to}"
    );
    assert!(!to.contains("code=") && !to.contains("state="));
    // Bad lifetimes and ids are refused with their reason.
    for (body, code) in [
        (
            json!({"provider": "snapchat", "expires_in": 10}),
            "bad_expires_in",
        ),
        (
            json!({"provider": "snapchat", "expires_in": 700000}),
            "bad_expires_in",
        ),
        (
            json!({"provider": "snapchat", "connection_id": "a b"}),
            "bad_id",
        ),
        (json!({"provider": "nope"}), "unknown_provider"),
        (json!({"provider": "snapchat", "app": "no pe"}), "bad_id"),
        (
            json!({"provider": "snapchat", "end_user": "a\nb"}),
            "bad_end_user",
        ),
        (
            json!({"provider": "snapchat", "scopes": ["x".repeat(201)]}),
            "bad_scopes",
        ),
    ] {
        let (status, v) = w.post(&w.admin, "v1/connect-sessions", body).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (400, Some(code)),
            "{v}"
        );
    }
    // A well-formed app name the platform does not have conflicts with the configuration.
    let (status, v) = w
        .post(
            &w.admin,
            "v1/connect-sessions",
            json!({"provider": "snapchat", "app": "nope"}),
        )
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("unknown_app"))
    );
}

#[tokio::test]
async fn no_token_reaches_a_page_event_or_answer_on_these_paths() {
    let w = world().await;
    assert_eq!(
        connect(&w, "tiktok", "sec", "alice", json!({})).await.0,
        303
    );
    let (alice_token, _) = token_of(&w, "sec").await;
    let (status, refused) = connect(&w, "tiktok", "sec", "mallory", json!({})).await;
    assert_eq!(status, 409);
    let (_, events) = w.api(&w.admin, "v1/connections/sec/events").await;
    let (_, conn) = w.api(&w.admin, "v1/connections/sec").await;
    let link = w.mint("tiktok", "sec", json!({})).await;
    let token_in_link = link.rsplit('/').next().unwrap().to_string();
    let (_, all) = w.api(&w.admin, "v1/events").await;
    for text in [
        refused,
        events.to_string(),
        conn.to_string(),
        all.to_string(),
    ] {
        assert!(!text.contains(&alice_token));
        assert!(
            !text.contains(&token_in_link),
            "the link's token is shown only once"
        );
        assert!(!text.contains("demo-tiktok-secret"));
    }
}

#[tokio::test]
async fn a_connection_without_a_recorded_account_learns_it_from_its_next_probe() {
    let w = world().await;
    assert_eq!(
        connect(&w, "meta", "older", "carol", json!({})).await.0,
        303
    );
    // As a connection made before accounts were recorded.
    let id = "older".parse().unwrap();
    let mut c = w.d.state.store.get_connection(&id).await.unwrap().unwrap();
    c.account = None;
    w.d.state.store.put_connection(&c).await.unwrap();
    let (_, v) = w.api(&w.admin, "v1/connections/older").await;
    assert!(v["account"].is_null(), "{v}");
    let (status, v) = w
        .post(&w.admin, "v1/connections/older/probe", json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    let (_, v) = w.api(&w.admin, "v1/connections/older").await;
    assert_eq!(v["account"]["name"], "carol", "{v}");
}

#[tokio::test]
async fn a_reauthorization_link_needs_sign_in_and_comes_back_after_it() {
    let w = world().await;
    assert_eq!(
        connect(&w, "snapchat", "needs-me", "alice", json!({}))
            .await
            .0,
        303
    );
    let (_, c) = w.api(&w.admin, "v1/connections/needs-me").await;
    let link = c["reauthorize_url"].as_str().unwrap();
    assert_eq!(
        link,
        format!("{}connections/needs-me/reauthorize", w.d.base)
    );
    // Signed out: to the sign-in page, which remembers where the visit was going.
    let r = w.http.get(link).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let to = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(to, "/login?next=%2Fconnections%2Fneeds-me%2Freauthorize");
    let form = w
        .http
        .get(format!("{}{}", w.d.base, to.trim_start_matches('/')))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        form.contains("value=\"/connections/needs-me/reauthorize\""),
        "{form}"
    );
    let r = w
        .http
        .post(format!("{}login", w.d.base))
        .form(&[
            ("secret", w.admin.as_str()),
            ("next", "/connections/needs-me/reauthorize"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/connections/needs-me/reauthorize");
    // Never on to another site.
    let r = w
        .http
        .post(format!("{}login", w.d.base))
        .form(&[("secret", w.admin.as_str()), ("next", "//evil.example/")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/");
}

#[tokio::test]
async fn opening_a_link_to_preview_it_spends_nothing() {
    let w = world().await;
    let link = w
        .mint("snapchat", "preview", json!({"end_user": "Team <Blue>"}))
        .await;
    // A chat client unfurling the link, twice.
    for _ in 0..2 {
        let r = w.http.get(&link).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("set-cookie").is_none());
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        let page = r.text().await.unwrap();
        assert!(
            page.contains("Continue to Snapchat Marketing API"),
            "{page}"
        );
        assert!(page.contains("Team &lt;Blue&gt;"), "escaped: {page}");
        // The button's redirect may go on to the platform's consent page.
        assert!(
            csp.contains("form-action 'self' http://127.0.0.1:"),
            "{csp}"
        );
    }
    // The person still gets through.
    let flow = w.approve_link("snapchat", &link, "alice").await;
    assert_eq!(w.finish(&flow).await.0, 303);
    let r = w.http.post(&link).send().await.unwrap();
    assert_eq!(r.status(), 410);
}

#[tokio::test]
async fn the_same_account_again_revokes_the_superseded_token_only_where_revocation_is_per_token() {
    let w = world().await;
    // TikTok Business `revoke_token` withdraws the token it is sent (`revokes = "token"`).
    assert_eq!(
        connect(&w, "tiktok-business", "tb", "alice", json!({}))
            .await
            .0,
        303
    );
    let (old, _) = token_of(&w, "tb").await;
    assert_eq!(w.probe("tiktok-business", &old).await, 200);
    assert_eq!(
        connect(&w, "tiktok-business", "tb", "alice", json!({}))
            .await
            .0,
        303
    );
    let (new, _) = token_of(&w, "tb").await;
    assert_ne!(new, old);
    let refused = |status: u16, body: &str| status != 200 || body.contains("40105");
    let call = |token: String| {
        let w = &w;
        async move {
            let p = w.d.state.providers.get("tiktok-business").unwrap();
            let r = w
                .http
                .get(format!(
                    "{}/user/info/",
                    p.spec.api.base_url.as_str().trim_end_matches('/')
                ))
                .header("Access-Token", token)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (s, b) = call(old).await;
    assert!(refused(s, &b), "the superseded token was revoked: {s} {b}");
    let (s, b) = call(new).await;
    assert!(!refused(s, &b), "the new one works: {s} {b}");

    // TikTok Login Kit revokes the person's whole grant (`revokes = "grant"`): a same-account
    // re-authorization leaves the old grant alone rather than risk the new one.
    assert_eq!(connect(&w, "tiktok", "tk", "alice", json!({})).await.0, 303);
    assert_eq!(connect(&w, "tiktok", "tk", "alice", json!({})).await.0, 303);
    let g = grants(&w, "tiktok").await;
    assert!(g.iter().all(|(_, s)| s == "active"), "{g:?}");
}
